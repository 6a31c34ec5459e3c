"""The layer table: one complete `LayerSpec` row per layer, and the branch constructs.

In: the row types (types.py) and shape rules (shapes.py). Out: `LAYERS_LIST` (listing order),
`LAYERS` (name -> row), `BRANCHES_LIST`/`BRANCHES`, `NAME_DOMAINS` and `parameter_shapes`.
Imports no torch.

Adding a layer is one row here, written with `_layer` (which gives its parameters their
conventional domains): factory, parameters (the inferred one marked), shape rule, the input it
expects, examples; `weights=` if it has parameters, `aliases=True` if it may return its input,
`onnx_lowering=` if torch.onnx needs an exact stand-in for it.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from netspec.catalogue.shapes import (
    adaptive,
    attention_infer,
    bilinear_rule,
    broadcast_rule,
    channel_shuffle_rule,
    concat_rule,
    conv,
    embedding_rule,
    flatten_rule,
    fold_rule,
    glu_rule,
    groupnorm_rule,
    last_rule,
    layernorm_infer,
    linear_rule,
    padding,
    per_dim,
    pixel_shuffle_rule,
    pixel_unshuffle_rule,
    poly_rule,
    pool,
    positional_rule,
    prelu_rule,
    reduce_rule,
    reshape_rule,
    rnn_rule,
    same,
    softmax2d_rule,
    softmax_rule,
    unflatten_rule,
    unfold_rule,
    upsample_rule,
)
from netspec.catalogue.types import IT, BranchSpec, LayerSpec, P, Shape, ShapeError, fmt_shape, with_domains

SPATIAL = {1: "[channels, length]", 2: "[channels, height, width]", 3: "[channels, depth, height, width]"}
ACT_INPLACE = (P("inplace", "bool", False),)

# Domains by convention: a parameter with one of these names takes values in this interval
# unless its row says otherwise (torch would raise at construction; netspec says it at check).
NAME_DOMAINS = {
    "out_features": "[1,inf)", "out_channels": "[1,inf)", "kernel_size": "[1,inf)", "stride": "[1,inf)",
    "dilation": "[1,inf)", "padding": "[0,inf)", "output_padding": "[0,inf)", "groups": "[1,inf)",
    "hidden_size": "[1,inf)", "num_layers": "[1,inf)", "proj_size": "[0,inf)", "p": "[0,1]", "dropout": "[0,1]",
    "eps": "[0,inf)", "momentum": "[0,1]", "num_embeddings": "[1,inf)", "embedding_dim": "[1,inf)",
    "upscale_factor": "[1,inf)", "downscale_factor": "[1,inf)", "degree": "[1,inf)", "num_groups": "[1,inf)",
    "num_parameters": "[1,inf)", "size": "[1,inf)", "scale_factor": "(0,inf)", "output_size": "[1,inf)",
    "num_heads": "[1,inf)", "nhead": "[1,inf)", "dim_feedforward": "[1,inf)", "max_len": "[1,inf)",
    "norm_type": "(0,inf)", "max_norm": "(0,inf)", "layer_norm_eps": "[0,inf)", "beta": "(0,inf)",
    "lower": "[0,1]", "upper": "[0,1]", "alpha": "[0,inf)", "threshold": "(-inf,inf)",
}


def _layer(name: str, factory: str, params: tuple[P, ...], *args: Any, **kw: Any) -> LayerSpec:
    """A row whose parameters written without a domain of their own take NAME_DOMAINS' (but a
    padding layer's `padding`)."""
    keep = ("padding",) if kw.get("category") == "padding" else ()
    return LayerSpec(name, factory, with_domains(params, NAME_DOMAINS, keep), *args, **kw)


def _per_position(s: Shape) -> tuple[str, str] | None:
    """Linear on [C, H, W]: torch applies it to the last dimension at every position; after a
    convolution that is usually a missing Flatten (a classifier's loss then says so too)."""
    if len(s) <= 2:
        return None
    return (f"Linear applies to the last dimension of {fmt_shape(s)} at each of the other positions "
            f"({s[-1]} features each), not to the whole sample", "insert Flatten before this layer to use every value")


def _infer_first(param: str) -> Callable[[Shape, dict], dict]:
    def infer(s: Shape, a: dict) -> dict:
        if not s or s[0] is None:
            raise ShapeError(f"{param} is inferred from the first dimension, which must be fixed")
        return {param: s[0]}

    return infer


def _infer_last(param: str) -> Callable[[Shape, dict], dict]:
    def infer(s: Shape, a: dict) -> dict:
        if not s or s[-1] is None:
            raise ShapeError(f"{param} is inferred from the last dimension, which must be fixed")
        return {param: s[-1]}

    return infer


# ------------------------------------------------------------------ parameter shapes
# (name, shape) in torch's registration order: lets `summary` count parameters and `with`
# validate names without importing torch; tests compare them with torch's named_parameters.


def _w_linear(a):
    return [("weight", (a["out_features"], a["in_features"]))] + ([("bias", (a["out_features"],))] if a["bias"] else [])


def _w_bilinear(a):
    o = a["out_features"]
    return [("weight", (o, a["in1_features"], a["in2_features"]))] + ([("bias", (o,))] if a["bias"] else [])


def _w_conv(nd, transposed):
    def w(a):
        k = per_dim(a["kernel_size"], nd)
        i, o, g = a["in_channels"], a["out_channels"], a["groups"]
        shape = (i, o // g, *k) if transposed else (o, i // g, *k)
        return [("weight", shape)] + ([("bias", (o,))] if a["bias"] else [])

    return w


def _w_affine(count_key, flag):
    def w(a):
        if not a.get(flag):
            return []
        n = a[count_key]
        return [("weight", (n,)), ("bias", (n,))]

    return w


def _w_layernorm(a):
    if not a["elementwise_affine"]:
        return []
    shape = tuple(per_dim(a["normalized_shape"], 1))
    return [("weight", shape)] + ([("bias", shape)] if a["bias"] else [])


def _w_rnn(gates):
    def w(a):
        h, proj = a["hidden_size"], a.get("proj_size", 0)
        h_out = proj or h
        dirs = 2 if a["bidirectional"] else 1
        out = []
        for layer in range(a["num_layers"]):
            in_size = a["input_size"] if layer == 0 else h_out * dirs
            for sfx in ("", "_reverse")[:dirs]:
                out.append((f"weight_ih_l{layer}{sfx}", (gates * h, in_size)))
                out.append((f"weight_hh_l{layer}{sfx}", (gates * h, h_out)))
                if a["bias"]:
                    out.append((f"bias_ih_l{layer}{sfx}", (gates * h,)))
                    out.append((f"bias_hh_l{layer}{sfx}", (gates * h,)))
                if proj:
                    out.append((f"weight_hr_l{layer}{sfx}", (proj, h)))
        return out

    return w


def _w_attention(a):
    e = a["embed_dim"]
    out = [("in_proj_weight", (3 * e, e))] + ([("in_proj_bias", (3 * e,))] if a["bias"] else [])
    if a["add_bias_kv"]:
        out += [("bias_k", (1, 1, e)), ("bias_v", (1, 1, e))]
    return out + [("out_proj.weight", (e, e))] + ([("out_proj.bias", (e,))] if a["bias"] else [])


def _w_encoder(a):
    d, f, b = a["d_model"], a["dim_feedforward"], a["bias"]
    attn = [(f"self_attn.{n}", sh) for n, sh in _w_attention({"embed_dim": d, "bias": b, "add_bias_kv": False})]
    lin = [("linear1.weight", (f, d))] + ([("linear1.bias", (f,))] if b else []) + \
        [("linear2.weight", (d, f))] + ([("linear2.bias", (d,))] if b else [])
    norms = [x for i in (1, 2) for x in [(f"norm{i}.weight", (d,))] + ([(f"norm{i}.bias", (d,))] if b else [])]
    return attn + lin + norms


# ------------------------------------------------------------------ rows by kind


def _conv_rows() -> list[LayerSpec]:
    rows = []
    for nd in (1, 2, 3):
        size = {1: "8", 2: "8, 8", 3: "6, 6, 6"}[nd]
        rows.append(_layer(
            f"Conv{nd}d", f"torch.nn.Conv{nd}d",
            (P("in_channels", "int", inferred=True), P("out_channels", "int"), P("kernel_size", IT),
             P("stride", IT, 1), P("padding", "int|ints|choice(same,valid)", 0), P("dilation", IT, 1),
             P("groups", "int", 1), P("bias", "bool", True),
             P("padding_mode", "choice(zeros,reflect,replicate,circular)", "zeros")),
            conv(nd), SPATIAL[nd], (nd + 1,), _infer_first("in_channels"), category="convolution",
            examples=((f"[3, {size}]", f"Conv{nd}d(4, 3)"), (f"[2, {size}]", f"Conv{nd}d(6, 3, stride=2, padding=1, bias=false)"),
                      (f"[4, {size}]", f"Conv{nd}d(4, 3, padding=\"same\", groups=2)")),
            weights=_w_conv(nd, False), doc=f"{nd}-D convolution; in_channels is inferred.",
        ))
        rows.append(_layer(
            f"ConvTranspose{nd}d", f"torch.nn.ConvTranspose{nd}d",
            (P("in_channels", "int", inferred=True), P("out_channels", "int"), P("kernel_size", IT),
             P("stride", IT, 1), P("padding", IT, 0), P("output_padding", IT, 0), P("groups", "int", 1),
             P("bias", "bool", True), P("dilation", IT, 1), P("padding_mode", "choice(zeros)", "zeros")),
            conv(nd, transposed=True), SPATIAL[nd], (nd + 1,), _infer_first("in_channels"),
            category="convolution",
            examples=((f"[3, {size}]", f"ConvTranspose{nd}d(4, 3)"),
                      (f"[2, {size}]", f"ConvTranspose{nd}d(2, 3, stride=2, padding=1, output_padding=1)")),
            weights=_w_conv(nd, True), doc=f"{nd}-D transposed convolution; in_channels is inferred.",
        ))
    return rows


def _pool_rows() -> list[LayerSpec]:
    rows = []
    for nd in (1, 2, 3):
        size = {1: "9", 2: "9, 9", 3: "6, 6, 6"}[nd]
        rows.append(_layer(
            f"MaxPool{nd}d", f"torch.nn.MaxPool{nd}d",
            (P("kernel_size", IT), P("stride", IT + "?", None), P("padding", IT, 0), P("dilation", IT, 1),
             P("ceil_mode", "bool", False)),
            pool(nd, "max"), SPATIAL[nd], (nd + 1,), category="pooling",
            examples=((f"[2, {size}]", f"MaxPool{nd}d(2)"), (f"[2, {size}]", f"MaxPool{nd}d(3, stride=2, padding=1, ceil_mode=true)")),
            doc=f"{nd}-D max pooling.",
        ))
        avg_params = [P("kernel_size", IT), P("stride", IT + "?", None), P("padding", IT, 0),
                      P("ceil_mode", "bool", False), P("count_include_pad", "bool", True)]
        if nd > 1:
            avg_params.append(P("divisor_override", "int?", None))
        rows.append(_layer(
            f"AvgPool{nd}d", f"torch.nn.AvgPool{nd}d", tuple(avg_params),
            pool(nd, "avg"), SPATIAL[nd], (nd + 1,), category="pooling",
            examples=((f"[2, {size}]", f"AvgPool{nd}d(2)"), (f"[2, {size}]", f"AvgPool{nd}d(3, stride=2, padding=1)")),
            doc=f"{nd}-D average pooling.",
        ))
        for kind in ("Avg", "Max"):
            rows.append(_layer(
                f"Adaptive{kind}Pool{nd}d", f"torch.nn.Adaptive{kind}Pool{nd}d",
                (P("output_size", "int|optints"),),
                adaptive(nd), SPATIAL[nd], (nd + 1,), category="pooling",
                examples=((f"[2, {size}]", f"Adaptive{kind}Pool{nd}d(1)"), (f"[2, {size.replace('9', '8')}]", f"Adaptive{kind}Pool{nd}d(4)")),
                onnx_note="exports when each input size is a multiple of the output size",
                onnx_lowering="netspec.layers.AdaptivePoolLowered",  # non-divisible pooling has no ONNX export
                doc=f"{nd}-D adaptive {kind.lower()} pooling to a fixed output size.",
            ))
        if nd < 3:
            rows.append(_layer(
                f"LPPool{nd}d", f"torch.nn.LPPool{nd}d",
                (P("norm_type", "float"), P("kernel_size", IT), P("stride", IT + "?", None), P("ceil_mode", "bool", False)),
                pool(nd, "lp"), SPATIAL[nd], (nd + 1,), category="pooling",
                examples=((f"[2, {size}]", f"LPPool{nd}d(2, 3)"), (f"[2, {size}]", f"LPPool{nd}d(1, 2, stride=1)")),
                doc=f"{nd}-D power-average pooling.",
            ))
    return rows


def _pad_rows() -> list[LayerSpec]:
    rows = []
    for kind, dims, extra in (("Reflection", (1, 2, 3), ()), ("Replication", (1, 2, 3), ()),
                              ("Zero", (1, 2, 3), ()), ("Constant", (1, 2, 3), (P("value", "float"),)),
                              ("Circular", (1, 2, 3), ())):
        for nd in dims:
            size = {1: "8", 2: "8, 8", 3: "5, 5, 5"}[nd]
            constant = kind in ("Zero", "Constant")  # F.pad's constant mode: any rank; the others nd+1 or nd+2
            rows.append(_layer(
                f"{kind}Pad{nd}d", f"torch.nn.{kind}Pad{nd}d", (P("padding", IT),) + extra,
                padding(nd, reflect=kind == "Reflection", least=nd if constant else None),
                f"at least {nd} dimension{'s' if nd > 1 else ''} (the last {nd} are padded)" if constant else
                f"{SPATIAL[nd]} or its last {nd} dimension{'s' if nd > 1 else ''}",
                None if constant else (nd, nd + 1), category="padding",
                onnx_lowering="netspec.layers.CircularPadLowered" if kind == "Circular" else "",
                examples=((f"[2, {size}]", f"{kind}Pad{nd}d(1{', 0.5' if extra else ''})"),
                          (f"[2, {size}]", f"{kind}Pad{nd}d(({', '.join(['1', '2'] * nd)}){', 0.5' if extra else ''})"),
                          (f"[{size}]", f"{kind}Pad{nd}d(1{', 0.5' if extra else ''})")),
                doc=f"{kind.lower()} padding of the last {nd} dimension{'s' if nd > 1 else ''}" +
                    (" of any sample (ConstantPad3d on [C, H, W] pads channels too)." if constant else "."),
            ))
    return rows


def _norm_rows() -> list[LayerSpec]:
    rows = []
    for nd, ranks, expects in ((1, (1, 2), "[features] or [channels, length]"), (2, (3,), SPATIAL[2]), (3, (4,), SPATIAL[3])):
        size = {1: "6", 2: "6, 6", 3: "4, 4, 4"}[nd]
        rows.append(_layer(
            f"BatchNorm{nd}d", f"torch.nn.BatchNorm{nd}d",
            (P("num_features", "int", inferred=True), P("eps", "float", 1e-5), P("momentum", "float?", 0.1),
             P("affine", "bool", True), P("track_running_stats", "bool", True)),
            same, expects, ranks, _infer_first("num_features"), category="normalization",
            examples=((f"[3, {size}]", f"BatchNorm{nd}d"), (f"[3, {size}]", f"BatchNorm{nd}d(eps=0.001, momentum=0.01)")),
            weights=_w_affine("num_features", "affine"), doc="batch normalization; num_features is inferred.",
        ))
        rows.append(_layer(
            f"InstanceNorm{nd}d", f"torch.nn.InstanceNorm{nd}d",
            (P("num_features", "int", inferred=True), P("eps", "float", 1e-5), P("momentum", "float?", 0.1),
             P("affine", "bool", False), P("track_running_stats", "bool", False)),
            same, SPATIAL[nd], (nd + 1,), _infer_first("num_features"), category="normalization",
            examples=((f"[3, {size}]", f"InstanceNorm{nd}d"), (f"[3, {size}]", f"InstanceNorm{nd}d(affine=true)")),
            weights=_w_affine("num_features", "affine"), doc="instance normalization; num_features is inferred.",
        ))
    rows.append(_layer(
        "LayerNorm", "torch.nn.LayerNorm",
        (P("normalized_shape", "int|ints", inferred=True), P("eps", "float", 1e-5),
         P("elementwise_affine", "bool", True), P("bias", "bool", True)),
        same, "[..., features]", None, layernorm_infer, category="normalization",
        examples=(("[10]", "LayerNorm"), ("[5, 8]", "LayerNorm(eps=0.001)"), ("[3, 4, 4]", "LayerNorm(normalized_shape=[4, 4])")),
        weights=_w_layernorm, steps="each",
        doc="layer normalization over the last dimension (or `normalized_shape=` trailing dims).",
    ))
    rows.append(_layer(
        "GroupNorm", "torch.nn.GroupNorm",
        (P("num_groups", "int"), P("num_channels", "int", inferred=True), P("eps", "float", 1e-5), P("affine", "bool", True)),
        groupnorm_rule, "[channels, ...]", (1, 2, 3, 4), _infer_first("num_channels"), category="normalization",
        examples=(("[4, 6, 6]", "GroupNorm(2)"), ("[6, 5]", "GroupNorm(3, eps=0.0001)")),
        weights=_w_affine("num_channels", "affine"), doc="group normalization; num_channels is inferred.",
    ))
    rows.append(_layer(
        "LocalResponseNorm", "torch.nn.LocalResponseNorm",
        (P("size", "int"), P("alpha", "float", 1e-4), P("beta", "float", 0.75), P("k", "float", 1.0)),
        same, "[channels, ...]", (2, 3, 4), category="normalization",
        examples=(("[6, 5, 5]", "LocalResponseNorm(3)"),),
        doc="local response normalization across channels.",
    ))
    return rows


def _activation(name: str, params: tuple[P, ...] = (), rule=same, doc: str = "", ranks=None,
                expects: str = "any shape", examples: tuple = (), **kw: Any) -> LayerSpec:
    steps = "dim" if any(p.name == "dim" for p in params) else "each"
    return _layer(
        name, f"torch.nn.{name}", params, rule, expects, ranks, category="activation",
        examples=examples or (("[5]", name), ("[3, 4, 4]", name)), doc=doc or f"elementwise {name}.",
        steps=kw.pop("steps", steps), **kw,
    )


ACTIVATIONS: list[LayerSpec] = [
    _activation("ReLU", ACT_INPLACE, doc="max(0, x)."),
    _activation("LeakyReLU", (P("negative_slope", "float", 0.01),) + ACT_INPLACE,
                examples=(("[5]", "LeakyReLU"), ("[5]", "LeakyReLU(0.2)"))),
    _activation("PReLU", (P("num_parameters", "int", 1), P("init", "float", 0.25)), prelu_rule,
                examples=(("[5]", "PReLU"), ("[3, 4, 4]", "PReLU(3)")),
                weights=lambda a: [("weight", (a["num_parameters"],))]),
    _activation("RReLU", (P("lower", "float", 1 / 8), P("upper", "float", 1 / 3)) + ACT_INPLACE),
    _activation("ELU", (P("alpha", "float", 1.0),) + ACT_INPLACE),
    _activation("SELU", ACT_INPLACE),
    _activation("CELU", (P("alpha", "float", 1.0),) + ACT_INPLACE),
    _activation("GELU", (P("approximate", "choice(none,tanh)", "none"),),
                examples=(("[5]", "GELU"), ("[5]", 'GELU(approximate="tanh")'))),
    _activation("SiLU", ACT_INPLACE),
    _activation("Mish", ACT_INPLACE),
    _activation("Sigmoid"),
    _activation("Tanh"),
    _activation("Softplus", (P("beta", "float", 1.0), P("threshold", "float", 20.0))),
    _activation("Softsign"),
    _activation("Hardtanh", (P("min_val", "float", -1.0), P("max_val", "float", 1.0)) + ACT_INPLACE),
    _activation("Hardswish", ACT_INPLACE),
    _activation("Hardsigmoid", ACT_INPLACE),
    _activation("Hardshrink", (P("lambd", "float", 0.5),)),
    _activation("Softshrink", (P("lambd", "float", 0.5),)),
    _activation("ReLU6", ACT_INPLACE),
    _activation("LogSigmoid"),
    _activation("Tanhshrink"),
    _activation("Threshold", (P("threshold", "float"), P("value", "float")) + ACT_INPLACE,
                examples=(("[5]", "Threshold(0.1, 20)"),),
                onnx_lowering="netspec.layers.ThresholdLowered"),  # exported only for threshold 0
    _activation("Softmax", (P("dim", "int", -1),), softmax_rule, "softmax over `dim` (default -1, the last).",
                examples=(("[5]", "Softmax"), ("[3, 4]", "Softmax(dim=1)"))),
    _activation("LogSoftmax", (P("dim", "int", -1),), softmax_rule, "log-softmax over `dim` (default -1).",
                examples=(("[5]", "LogSoftmax"), ("[3, 4]", "LogSoftmax(1)"))),
    _activation("Softmin", (P("dim", "int", -1),), softmax_rule, "softmin over `dim` (default -1).",
                examples=(("[5]", "Softmin"),)),
    _activation("Softmax2d", (), softmax2d_rule, "softmax over channels at each location.", (3,), SPATIAL[2],
                examples=(("[3, 4, 4]", "Softmax2d"),), steps=""),
    _activation("GLU", (P("dim", "int", -1),), glu_rule, "gated linear unit; halves `dim`.",
                examples=(("[6]", "GLU"), ("[4, 6]", "GLU(dim=1)"))),
]


def _recurrent_rows() -> list[LayerSpec]:
    rows = []
    for kind, gates in (("RNN", 1), ("LSTM", 4), ("GRU", 3)):
        params = [P("input_size", "int", inferred=True), P("hidden_size", "int"), P("num_layers", "int", 1)]
        if kind == "RNN":
            params.append(P("nonlinearity", "choice(tanh,relu)", "tanh"))
        params += [P("bias", "bool", True), P("dropout", "float", 0.0), P("bidirectional", "bool", False)]
        if kind == "LSTM":
            params.append(P("proj_size", "int", 0))
        rows.append(_layer(
            kind, f"netspec.layers.{kind}", tuple(params), rnn_rule, "[steps, features]", (2,),
            _infer_last("input_size"), category="recurrent", fixed=(("batch_first", True),),
            examples=(("[7, 5]", f"{kind}(6)"), ("[4, 3]", f"{kind}(5, num_layers=2, bidirectional=true)")),
            weights=_w_rnn(gates), steps="masked",
            doc=f"batch-first {kind}; outputs the whole sequence [steps, hidden] (use Last for the final step).",
        ))
    return rows


# `aliases=True`: the layer may hand back its input tensor itself or a view of it (Dropout does
# in eval mode). `onnx_lowering`: torch.onnx cannot export the layer as it is; export.py swaps in
# the exact equivalent named there (a netspec.layers class with `from_layer(kwargs, in_shape)`)
# and verifies it.
LAYERS_LIST: list[LayerSpec] = [
    _layer(
        "Linear", "torch.nn.Linear",
        (P("in_features", "int", inferred=True), P("out_features", "int"), P("bias", "bool", True)),
        linear_rule, "[features] or [..., features]", None, _infer_last("in_features"), category="linear",
        examples=(("[20]", "Linear(7)"), ("[5, 20]", "Linear(3, bias=false)"), ("[2, 3, 6]", "Linear(4)")),
        weights=_w_linear, advice=_per_position, steps="each",
        doc="fully connected layer on the last dimension (per position of any leading ones); in_features is "
            "inferred.",
    ),
    _layer(
        "Bilinear", "netspec.layers.Bilinear",
        (P("in1_features", "int", inferred=True), P("in2_features", "int", inferred=True),
         P("out_features", "int"), P("bias", "bool", True)),
        bilinear_rule, "[features]", (1,),
        lambda s, a: {**_infer_last("in1_features")(s, a), "in2_features": s[-1]}, category="linear",
        examples=(("[6]", "Bilinear(4)"),), weights=_w_bilinear,
        doc="x^T A x + b: torch's Bilinear applied to the input with itself (a Sequential has one input).",
    ),
    _layer("Identity", "torch.nn.Identity", (), same, category="utility",
           examples=(("[5]", "Identity"),), doc="passes the input through.", aliases=True, steps="each"),
    _layer(
        "Flatten", "torch.nn.Flatten", (P("start_dim", "int", 1), P("end_dim", "int", -1)),
        flatten_rule, "at least one dimension", None, category="reshape",
        examples=(("[3, 4, 5]", "Flatten"), ("[3, 4, 5]", "Flatten(2)")),
        doc="flattens dims start_dim..end_dim (torch dims: 0 is the batch axis).", aliases=True,
    ),
    _layer(
        "Unflatten", "torch.nn.Unflatten", (P("dim", "int"), P("unflattened_size", "ints")),
        unflatten_rule, "any shape", None, category="reshape",
        examples=(("[12]", "Unflatten(1, [3, 4])"), ("[2, 12]", "Unflatten(-1, [2, 6])")),
        doc="splits one dim into several (torch dims).", aliases=True,
    ),
    _layer(
        "Reshape", "netspec.layers.Reshape", (P("shape", "ints"),), reshape_rule, "any shape", None,
        category="reshape", examples=(("[784]", "Reshape([1, 28, 28])"), ("[2, 3, 4]", "Reshape([-1, 4])")),
        doc="reshapes each sample to `shape` (one entry may be -1).", aliases=True,
    ),
    _layer(
        "Last", "netspec.layers.Last", (), last_rule, "[steps, features]", (2,), category="recurrent",
        examples=(("[7, 5]", "Last"),), aliases=True, steps="masked",
        doc="selects the final time step of a sequence (of a padded text: its last token).",
    ),
    _layer(
        "Polynomial", "netspec.layers.Polynomial", (P("degree", "int"),), poly_rule, "[features]", None,
        category="utility", examples=(("[1]", "Polynomial(5)"), ("[3]", "Polynomial(2)")), steps="each",
        doc="x -> [x, x^2, ..., x^degree] concatenated along the last dim (powers outermost).",
    ),
    _layer(
        "Scale", "netspec.layers.Scale", (P("factor", "float"),), same, category="utility",
        examples=(("[5]", "Scale(0.5)"),), doc="multiplies by a constant factor.", steps="each",
    ),
    _layer(
        "Dropout", "torch.nn.Dropout", (P("p", "float", 0.5),) + ACT_INPLACE, same, category="dropout",
        examples=(("[5]", "Dropout"), ("[3, 4]", "Dropout(0.2)")), doc="zeroes elements with probability p while training.",
        aliases=True, steps="each",
    ),
    _layer(
        "Dropout1d", "torch.nn.Dropout1d", (P("p", "float", 0.5),) + ACT_INPLACE, same, SPATIAL[1], (2,),
        category="dropout", examples=(("[3, 8]", "Dropout1d(0.2)"),), doc="zeroes whole channels.", aliases=True,
    ),
    _layer(
        "Dropout2d", "torch.nn.Dropout2d", (P("p", "float", 0.5),) + ACT_INPLACE, same, SPATIAL[2], (3,),
        category="dropout", examples=(("[3, 4, 4]", "Dropout2d(0.2)"),), doc="zeroes whole channels.", aliases=True,
    ),
    _layer(
        "Dropout3d", "torch.nn.Dropout3d", (P("p", "float", 0.5),) + ACT_INPLACE, same, SPATIAL[3], (4,),
        category="dropout", examples=(("[3, 4, 4, 4]", "Dropout3d(0.2)"),), doc="zeroes whole channels.", aliases=True,
    ),
    _layer(
        "AlphaDropout", "torch.nn.AlphaDropout", (P("p", "float", 0.5),) + ACT_INPLACE, same, category="dropout",
        examples=(("[5]", "AlphaDropout(0.2)"),), doc="dropout that keeps SELU's self-normalization.", aliases=True,
        steps="each",
    ),
    _layer(
        "Embedding", "torch.nn.Embedding",
        (P("num_embeddings", "int"), P("embedding_dim", "int"), P("padding_idx", "int?", None),
         P("max_norm", "float?", None), P("norm_type", "float", 2.0), P("scale_grad_by_freq", "bool", False),
         P("sparse", "bool", False)),
        embedding_rule, "integer indices", None, category="embedding", int_input=True, steps="each",
        weights=lambda a: [("weight", (a["num_embeddings"], a["embedding_dim"]))],
        examples=(("[7]", "Embedding(10, 4)"),), doc="lookup table for integer tokens (must be the first layer).",
    ),
    _layer(
        "Upsample", "torch.nn.Upsample",
        (P("size", "int|ints?", None), P("scale_factor", "float|floats?", None),
         P("mode", "choice(nearest,linear,bilinear,bicubic,trilinear,nearest-exact)", "nearest"),
         P("align_corners", "bool?", None)),
        upsample_rule, "[channels, *spatial]", (2, 3, 4), category="upsampling",
        examples=(("[2, 4, 4]", "Upsample(scale_factor=2)"), ("[2, 4, 4]", 'Upsample(size=[6, 6], mode="bilinear")'),
                  ("[2, 5]", "Upsample(scale_factor=2)")),
        doc="upsampling by size or scale factor.",
    ),
    _layer(
        "PixelShuffle", "torch.nn.PixelShuffle", (P("upscale_factor", "int"),), pixel_shuffle_rule,
        SPATIAL[2], (3,), category="upsampling", examples=(("[8, 3, 3]", "PixelShuffle(2)"),),
        doc="[C*r*r, H, W] -> [C, H*r, W*r].",
    ),
    _layer(
        "PixelUnshuffle", "torch.nn.PixelUnshuffle", (P("downscale_factor", "int"),), pixel_unshuffle_rule,
        SPATIAL[2], (3,), category="upsampling", examples=(("[2, 6, 6]", "PixelUnshuffle(2)"),),
        doc="[C, H*r, W*r] -> [C*r*r, H, W].",
    ),
    _layer(
        "ChannelShuffle", "torch.nn.ChannelShuffle", (P("groups", "int"),), channel_shuffle_rule,
        "[channels, ...]", (2, 3, 4), category="utility", examples=(("[6, 4, 4]", "ChannelShuffle(3)"),),
        onnx_lowering="netspec.layers.ChannelShuffleLowered",  # no export for aten::channel_shuffle
        doc="shuffles channels across groups.",
    ),
    _layer(
        "Unfold", "torch.nn.Unfold",
        (P("kernel_size", IT), P("dilation", IT, 1), P("padding", IT, 0), P("stride", IT, 1)),
        unfold_rule, SPATIAL[2], (3,), category="reshape",
        examples=(("[2, 6, 6]", "Unfold(3)"), ("[2, 6, 6]", "Unfold(2, stride=2)")),
        doc="sliding blocks: [C, H, W] -> [C*kh*kw, blocks].",
    ),
    _layer(
        "Fold", "torch.nn.Fold",
        (P("output_size", IT), P("kernel_size", IT), P("dilation", IT, 1), P("padding", IT, 0), P("stride", IT, 1)),
        fold_rule, "[channels*kh*kw, blocks]", (2,), category="reshape",
        examples=(("[8, 9]", "Fold(4, 2, stride=1)"), ("[18, 4]", "Fold([4, 4], 3, padding=1, stride=2)")),
        doc="inverse of Unfold: [C*kh*kw, blocks] -> [C, H, W].",
    ),
    *_recurrent_rows(),
    *_conv_rows(),
    *_pool_rows(),
    *_pad_rows(),
    *_norm_rows(),
    *ACTIVATIONS,
    # attention and sequence layers
    _layer(
        "MultiheadAttention", "netspec.layers.MultiheadAttention",
        (P("embed_dim", "int", inferred=True), P("num_heads", "int"), P("dropout", "float", 0.0),
         P("bias", "bool", True), P("add_bias_kv", "bool", False), P("add_zero_attn", "bool", False)),
        same, "[steps, features]", (2,), attention_infer, category="attention", fixed=(("batch_first", True),),
        examples=(("[7, 8]", "MultiheadAttention(2)"), ("[5, 12]", "MultiheadAttention(3, bias=false)"),
                  ("[4, 8]", "MultiheadAttention(4, add_bias_kv=true)"),
                  ("[_, 8]", "MultiheadAttention(2)"),
                  ("[_, 8]", "MultiheadAttention(2, add_bias_kv=true, add_zero_attn=true)")),
        weights=_w_attention, steps="masked",
        doc="self-attention (query = key = value = the input), batch-first; returns the attended "
            "sequence only (padded texts: padded keys masked). embed_dim is inferred.",
    ),
    _layer(
        "TransformerEncoderLayer", "netspec.layers.TransformerEncoderLayer",
        (P("d_model", "int", inferred=True), P("nhead", "int"), P("dim_feedforward", "int", 2048),
         P("dropout", "float", 0.1), P("activation", "choice(relu,gelu)", "relu"), P("layer_norm_eps", "float", 1e-5),
         P("norm_first", "bool", False), P("bias", "bool", True)),
        same, "[steps, features]", (2,), attention_infer, category="attention", fixed=(("batch_first", True),),
        examples=(("[6, 8]", "TransformerEncoderLayer(2, dim_feedforward=16)"),
                  ("[5, 12]", 'TransformerEncoderLayer(3, dim_feedforward=24, activation="gelu", norm_first=true)'),
                  ("[_, 8]", "TransformerEncoderLayer(2, dim_feedforward=16)")),
        weights=_w_encoder, steps="masked",
        doc="torch's encoder layer (self-attention + feed-forward), batch-first (padded texts: padded keys "
            "masked); d_model is inferred.",
    ),
    _layer(
        "PositionalEmbedding", "netspec.layers.PositionalEmbedding",
        (P("max_len", "int"), P("features", "int", inferred=True)),
        positional_rule, "[steps, features]", (2,), _infer_last("features"), category="attention",
        examples=(("[7, 8]", "PositionalEmbedding(16)"), ("[_, 4]", "PositionalEmbedding(10)")),
        weights=lambda a: [("weight", (a["max_len"], a["features"]))], steps="each",
        doc="adds a learned [max_len, features] table to [steps, features] (steps <= max_len); "
            "initialised N(0, 0.02) as GPT-2's position embedding.",
    ),
    _layer(
        "Mean", "netspec.layers.Mean", (P("dim", "int"), P("keepdim", "bool", False)), reduce_rule,
        "any shape", None, category="reshape", steps="masked",
        examples=(("[7, 8]", "Mean(1)"), ("[3, 4, 5]", "Mean(-1, keepdim=true)")),
        doc="mean over `dim` (torch dims: 0 is the batch axis), e.g. Mean(1) averages the steps of [steps, features] "
            "(of a padded text: its tokens).",
    ),
    _layer(
        "Max", "netspec.layers.Max", (P("dim", "int"), P("keepdim", "bool", False)), reduce_rule,
        "any shape", None, category="reshape", steps="masked",
        examples=(("[7, 8]", "Max(1)"), ("[3, 4, 5]", "Max(2, keepdim=true)")),
        doc="maximum over `dim` (torch dims; of a padded text's steps: over its tokens).",
    ),
]


LAYERS: dict[str, LayerSpec] = {row.name: row for row in LAYERS_LIST}


def parameter_shapes(layer: str, kwargs: dict) -> list:
    """[(parameter name, shape)] of `layer` built with `kwargs` (inferred ones included)."""
    fn = LAYERS[layer].weights
    return fn(kwargs) if fn else []


# ------------------------------------------------------------------ branch constructs


BRANCHES_LIST = [
    BranchSpec("add", "netspec.layers.Add", (), broadcast_rule,
               "sum of the branches' outputs (broadcast as torch does): residuals, projection shortcuts."),
    BranchSpec("concat", "netspec.layers.Concat", (P("dim", "int", 1),), concat_rule,
               "the branches' outputs joined along `dim` (torch dims; default 1, the channels)."),
    BranchSpec("multiply", "netspec.layers.Multiply", (), broadcast_rule,
               "product of the branches' outputs (broadcast): gates such as squeeze-and-excitation."),
]
BRANCHES = {row.name: row for row in BRANCHES_LIST}
