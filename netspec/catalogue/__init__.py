"""The one registry: layers, losses, optimizers, LR schedulers, initialisers, metrics,
data sources and section keys.

In: nothing (pure data plus small shape functions; imports no torch).
Out: tables read by the checker (argument schemas, shape rules), the builder (factories),
the exporter (ONNX support), `netspec layers`, docs/language.md and the parametrized tests.

Adding a layer is one row in LAYERS. Shapes are per sample: the batch axis is implicit;
``None`` is a dynamic `_` dimension. Torch `dim` arguments count the batch axis, as in torch.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

Shape = tuple  # tuple[int | None, ...]


class _Required:
    def __repr__(self) -> str:
        return "REQUIRED"


REQUIRED = _Required()


class ShapeError(Exception):
    """Raised by shape rules; the checker turns it into a positioned diagnostic."""

    def __init__(self, message: str, help: str | None = None):
        super().__init__(message)
        self.message = message
        self.help = help


@dataclass(frozen=True)
class P:
    """One constructor parameter. `type` is a small type language, see `type_ok`;
    `domain` an interval every number in the value must lie in, see `in_domain`
    (`"[0,inf)"`, `"(0,1]"`): torch raises at construction time, netspec at check time."""

    name: str
    type: str
    default: object = REQUIRED
    inferred: bool = False  # supplied by shape inference; user may give it by keyword only
    domain: str = ""


@dataclass(frozen=True)
class LayerSpec:
    name: str
    factory: str  # dotted path of the torch (or netspec.layers) class
    params: tuple[P, ...]
    shape: Callable[[Shape, dict], Shape]
    expects: str = "any shape"  # the input it needs, in words, for messages
    ranks: tuple[int, ...] | None = None  # allowed per-sample ranks; None: any
    infer: Callable[[Shape, dict], dict] | None = None  # inferred params from input
    onnx: bool = True
    onnx_note: str = ""
    category: str = "other"
    fixed: tuple[tuple[str, object], ...] = ()  # constructor args netspec always passes
    int_input: bool = False  # consumes integer indices (Embedding)
    weights: Callable[[dict], list] | None = None  # [(parameter name, shape)] in torch's order
    examples: tuple[tuple[str, str], ...] = ()  # (input shape, layer text) for tests/docs
    doc: str = ""
    aliases: bool = False  # may return its input (or a view of it): a later in-place layer would change it
    onnx_lowering: str = ""  # netspec.layers factory of an exact exportable equivalent, swapped in at export

    @property
    def user_params(self) -> tuple[P, ...]:
        return tuple(p for p in self.params if not p.inferred)


# ------------------------------------------------------------------ type language


def type_ok(value: object, t: str) -> bool:
    """`int float bool str number ints floats any`, `a|b` unions, `choice(x,y)`, `?` = none ok."""
    if t.endswith("?"):
        return value is None or type_ok(value, t[:-1])
    if t.startswith("choice("):
        return isinstance(value, str) and value in t[7:-1].split(",")
    if "|" in t:
        return any(type_ok(value, part) for part in t.split("|"))
    if t == "any":
        return True
    if t == "int":
        return isinstance(value, int) and not isinstance(value, bool)
    if t == "float":
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if t == "bool":
        return isinstance(value, bool)
    if t == "str":
        return isinstance(value, str)
    if t == "ints":
        return isinstance(value, tuple) and all(type_ok(v, "int") for v in value)
    if t == "optints":
        return isinstance(value, tuple) and all(v is None or type_ok(v, "int") for v in value)
    if t == "floats":
        return isinstance(value, tuple) and all(type_ok(v, "float") for v in value)
    if t == "strs":
        return isinstance(value, tuple) and all(isinstance(v, str) for v in value)
    raise ValueError(f"unknown type {t}")


def describe_type(t: str) -> str:
    words = {
        "int": "an integer",
        "float": "a number",
        "bool": "true or false",
        "str": "a string",
        "ints": "a list of integers",
        "optints": "a list of integers (or none)",
        "floats": "a list of numbers",
        "strs": "a list of strings",
        "any": "a value",
    }
    if t.endswith("?"):
        return describe_type(t[:-1]) + " or none"
    if t.startswith("choice("):
        return "one of " + ", ".join(f'"{c}"' for c in t[7:-1].split(","))
    if "|" in t:
        return " or ".join(describe_type(p) for p in t.split("|"))
    return words.get(t, t)


def _interval(domain: str) -> tuple[float, float, bool, bool]:
    lo, hi = domain[1:-1].split(",")
    return float(lo), float(hi), domain[0] == "[", domain[-1] == "]"


def in_domain(value: object, domain: str) -> bool:
    """Every number in `value` (a number or a list) lies in the interval `domain`."""
    if not domain:
        return True
    lo, hi, lo_in, hi_in = _interval(domain)
    items = value if isinstance(value, tuple) else (value,)
    for v in items:
        if isinstance(v, bool) or not isinstance(v, (int, float)):
            continue
        if v != v or (v < lo or (v == lo and not lo_in)) or (v > hi or (v == hi and not hi_in)):
            return False
    return True


def describe_domain(domain: str) -> str:
    lo, hi, lo_in, hi_in = _interval(domain)

    def num(x: float) -> str:
        return str(int(x)) if x.is_integer() else repr(x)

    if math.isinf(hi):
        return f"{'at least' if lo_in else 'greater than'} {num(lo)}"
    return f"in {'[' if lo_in else '('}{num(lo)}, {num(hi)}{']' if hi_in else ')'}"


# ------------------------------------------------------------------ shape helpers


def fmt_shape(s: Shape) -> str:
    return "[" + ", ".join("_" if d is None else str(d) for d in s) + "]"


def _tuple(v: object, n: int) -> tuple:
    return tuple(v) if isinstance(v, (tuple, list)) else (v,) * n


def _conv_len(n, k, s, p, d):
    if n is None:
        return None
    out = (n + 2 * p - d * (k - 1) - 1) // s + 1
    return out


def _pool_len(n, k, s, p, d, ceil):
    if n is None:
        return None
    num = n + 2 * p - d * (k - 1) - 1
    out = (-(-num // s) if ceil else num // s) + 1
    if ceil and (out - 1) * s >= n + p:
        out -= 1
    return out


def _check_positive(name: str, dims: Shape, kind: str, k: object) -> Shape:
    if any(d is not None and d <= 0 for d in dims):
        raise ShapeError(
            f"{name} would produce {kind} {fmt_shape(dims)} (kernel {k}); the input is too small",
            "use a smaller kernel or stride, add padding, or remove a downsampling layer",
        )
    return dims


def same(s: Shape, a: dict) -> Shape:
    return s


def conv(nd: int, transposed: bool = False):
    def rule(s: Shape, a: dict) -> Shape:
        c, spatial = s[0], s[1:]
        groups = a.get("groups", 1)
        if c is not None and c % groups:
            raise ShapeError(f"in_channels {c} is not divisible by groups={groups}")
        if a["out_channels"] % groups:
            raise ShapeError(f"out_channels {a['out_channels']} is not divisible by groups={groups}")
        k = _tuple(a["kernel_size"], nd)
        st = _tuple(a.get("stride", 1), nd)
        d = _tuple(a.get("dilation", 1), nd)
        pad = a.get("padding", 0)
        if isinstance(pad, str):
            if pad == "same":
                if any(x != 1 for x in st):
                    raise ShapeError("padding=\"same\" needs stride 1")
                return (a["out_channels"], *spatial)
            p = (0,) * nd
        else:
            p = _tuple(pad, nd)
        for tup, what in ((k, "kernel_size"), (st, "stride"), (d, "dilation"), (p, "padding")):
            if len(tup) != nd:
                raise ShapeError(f"{what} needs {nd} values, got {len(tup)}")
        if transposed:
            op = _tuple(a.get("output_padding", 0), nd)
            out = tuple(
                None if n is None else (n - 1) * st[i] - 2 * p[i] + d[i] * (k[i] - 1) + op[i] + 1
                for i, n in enumerate(spatial)
            )
        else:
            out = tuple(_conv_len(n, k[i], st[i], p[i], d[i]) for i, n in enumerate(spatial))
        return (a["out_channels"], *_check_positive("this convolution", out, "spatial size", k))

    return rule


def pool(nd: int, kind: str):
    def rule(s: Shape, a: dict) -> Shape:
        k = _tuple(a["kernel_size"], nd)
        st = _tuple(a.get("stride") if a.get("stride") is not None else a["kernel_size"], nd)
        p = _tuple(a.get("padding", 0), nd)
        d = _tuple(a.get("dilation", 1), nd) if kind == "max" else (1,) * nd
        if any(pi * 2 > ki for pi, ki in zip(p, k)):
            raise ShapeError(f"padding {a.get('padding')} must be at most half of kernel_size {a['kernel_size']}")
        ceil = bool(a.get("ceil_mode", False))
        out = tuple(_pool_len(n, k[i], st[i], p[i], d[i], ceil) for i, n in enumerate(s[1:]))
        return (s[0], *_check_positive("this pooling", out, "spatial size", k))

    return rule


def adaptive(nd: int):
    def rule(s: Shape, a: dict) -> Shape:
        o = _tuple(a["output_size"], nd)
        if len(o) != nd:
            raise ShapeError(f"output_size needs {nd} values, got {len(o)}")
        return (s[0], *(n if oi is None else oi for n, oi in zip(s[1:], o)))

    return rule


def padding(nd: int, reflect: bool = False):
    def rule(s: Shape, a: dict) -> Shape:
        pad = _tuple(a["padding"], 2 * nd)
        if len(pad) != 2 * nd:
            raise ShapeError(f"padding needs 1 or {2 * nd} values, got {len(pad)}")
        spatial = list(s[1:])
        out = []
        for i, n in enumerate(spatial):
            # torch pads the last dimension with the first pair
            lo, hi = pad[2 * (len(spatial) - 1 - i)], pad[2 * (len(spatial) - 1 - i) + 1]
            if reflect and n is not None and (lo >= n or hi >= n):
                raise ShapeError(f"reflection padding {max(lo, hi)} must be smaller than the input size {n}")
            out.append(None if n is None else n + lo + hi)
        return (s[0], *_check_positive("this padding", tuple(out), "size", pad))

    return rule


def channels(s: Shape, a: dict) -> dict:
    if s[0] is None:
        raise ShapeError("the channel dimension must be fixed, not `_`")
    return {"__c": s[0]}


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


def linear_rule(s: Shape, a: dict) -> Shape:
    return (*s[:-1], a["out_features"])


def bilinear_rule(s: Shape, a: dict) -> Shape:
    return (*s[:-1], a["out_features"])


def _norm_dim(dim: int, rank: int) -> int:
    """A torch dim (counting the batch axis) -> index into the per-sample shape."""
    full = rank + 1
    if not -full <= dim < full:
        raise ShapeError(f"dim {dim} is out of range for a batch of shape [N, ...] with {rank} sample dims")
    d = dim % full
    if d == 0:
        raise ShapeError(f"dim {dim} is the batch axis", "dims count the batch axis as 0; use dim=1 or dim=-1")
    return d - 1


def softmax_rule(s: Shape, a: dict) -> Shape:
    _norm_dim(a.get("dim", -1), len(s))
    return s


def glu_rule(s: Shape, a: dict) -> Shape:
    i = _norm_dim(a.get("dim", -1), len(s))
    if s[i] is not None and s[i] % 2:
        raise ShapeError(f"GLU halves dimension {a.get('dim', -1)}, which has odd size {s[i]}")
    return tuple(None if (j == i and n is None) else (n // 2 if j == i else n) for j, n in enumerate(s))


def flatten_rule(s: Shape, a: dict) -> Shape:
    r = len(s)
    lo = _norm_dim(a.get("start_dim", 1), r)
    hi = _norm_dim(a.get("end_dim", -1), r)
    if lo > hi:
        raise ShapeError("start_dim comes after end_dim")
    mid = s[lo : hi + 1]
    n = None if any(d is None for d in mid) else math.prod(mid)
    return (*s[:lo], n, *s[hi + 1 :])


def unflatten_rule(s: Shape, a: dict) -> Shape:
    i = _norm_dim(a["dim"], len(s))
    sizes = tuple(a["unflattened_size"])
    return (*s[:i], *_resolve_reshape(s[i], sizes), *s[i + 1 :])


def _resolve_reshape(total: int | None, target: tuple) -> tuple:
    unknown = [i for i, d in enumerate(target) if d == -1]
    if len(unknown) > 1:
        raise ShapeError("at most one dimension may be -1")
    known = math.prod(d for d in target if d != -1)
    if total is None:
        return tuple(None if d == -1 else d for d in target)
    if unknown:
        if known == 0 or total % known:
            raise ShapeError(f"cannot reshape {total} elements into {fmt_shape(target)}")
        return tuple(total // known if d == -1 else d for d in target)
    if known != total:
        raise ShapeError(f"cannot reshape {total} elements into {fmt_shape(target)} ({known} elements)")
    return target


def reshape_rule(s: Shape, a: dict) -> Shape:
    total = None if any(d is None for d in s) else math.prod(s)
    return _resolve_reshape(total, tuple(a["shape"]))


def last_rule(s: Shape, a: dict) -> Shape:
    return s[1:]


def poly_rule(s: Shape, a: dict) -> Shape:
    if a["degree"] < 1:
        raise ShapeError("degree must be at least 1")
    return (*s[:-1], None if s[-1] is None else s[-1] * a["degree"])


def rnn_rule(s: Shape, a: dict) -> Shape:
    h = a.get("proj_size") or a["hidden_size"]
    return (s[0], h * (2 if a.get("bidirectional") else 1))


def embedding_rule(s: Shape, a: dict) -> Shape:
    return (*s, a["embedding_dim"])


def upsample_rule(s: Shape, a: dict) -> Shape:
    nd = len(s) - 1
    size, scale = a.get("size"), a.get("scale_factor")
    if (size is None) == (scale is None):
        raise ShapeError("Upsample needs exactly one of size= or scale_factor=")
    if size is not None:
        return (s[0], *_tuple(size, nd))
    sc = _tuple(scale, nd)
    return (s[0], *(None if n is None else int(math.floor(n * f)) for n, f in zip(s[1:], sc)))


def pixel_shuffle_rule(s: Shape, a: dict) -> Shape:
    r = a["upscale_factor"]
    c, h, w = s
    if c is not None and c % (r * r):
        raise ShapeError(f"channels {c} are not divisible by upscale_factor² = {r * r}")
    return (None if c is None else c // (r * r), None if h is None else h * r, None if w is None else w * r)


def pixel_unshuffle_rule(s: Shape, a: dict) -> Shape:
    r = a["downscale_factor"]
    c, h, w = s
    for n in (h, w):
        if n is not None and n % r:
            raise ShapeError(f"height and width must be divisible by downscale_factor {r}")
    return (None if c is None else c * r * r, None if h is None else h // r, None if w is None else w // r)


def unfold_rule(s: Shape, a: dict) -> Shape:
    k = _tuple(a["kernel_size"], 2)
    d = _tuple(a.get("dilation", 1), 2)
    p = _tuple(a.get("padding", 0), 2)
    st = _tuple(a.get("stride", 1), 2)
    c, h, w = s
    blocks = [_conv_len(n, k[i], st[i], p[i], d[i]) for i, n in enumerate((h, w))]
    _check_positive("Unfold", tuple(blocks), "block grid", k)
    total = None if None in blocks else blocks[0] * blocks[1]
    return (None if c is None else c * k[0] * k[1], total)


def fold_rule(s: Shape, a: dict) -> Shape:
    k = _tuple(a["kernel_size"], 2)
    o = _tuple(a["output_size"], 2)
    d = _tuple(a.get("dilation", 1), 2)
    p = _tuple(a.get("padding", 0), 2)
    st = _tuple(a.get("stride", 1), 2)
    ck, length = s
    if ck is not None and ck % (k[0] * k[1]):
        raise ShapeError(f"Fold needs the first dimension divisible by kernel area {k[0] * k[1]}, got {ck}")
    blocks = [_conv_len(o[i], k[i], st[i], p[i], d[i]) for i in range(2)]
    if length is not None and length != blocks[0] * blocks[1]:
        raise ShapeError(
            f"Fold with output_size {fmt_shape(o)} needs {blocks[0] * blocks[1]} blocks, got {length}"
        )
    return (None if ck is None else ck // (k[0] * k[1]), *o)


def groupnorm_rule(s: Shape, a: dict) -> Shape:
    if a["num_channels"] % a["num_groups"]:
        raise ShapeError(f"{a['num_channels']} channels are not divisible by num_groups={a['num_groups']}")
    return s


def layernorm_infer(s: Shape, a: dict) -> dict:
    given = a.get("normalized_shape")
    if given is not None:
        given = _tuple(given, 1)
        if tuple(s[len(s) - len(given) :]) != tuple(given):
            raise ShapeError(f"normalized_shape {fmt_shape(given)} does not match the trailing dims of {fmt_shape(s)}")
        return {"normalized_shape": given}
    if s[-1] is None:
        raise ShapeError("normalized_shape is inferred from the last dimension, which must be fixed")
    return {"normalized_shape": (s[-1],)}


def prelu_rule(s: Shape, a: dict) -> Shape:
    n = a.get("num_parameters", 1)
    if n != 1 and n != s[0]:
        raise ShapeError(f"PReLU num_parameters must be 1 or the channel count {s[0]}, got {n}")
    return s


def softmax2d_rule(s: Shape, a: dict) -> Shape:
    return s


def channel_shuffle_rule(s: Shape, a: dict) -> Shape:
    if s[0] is not None and s[0] % a["groups"]:
        raise ShapeError(f"channels {s[0]} are not divisible by groups={a['groups']}")
    return s


# ------------------------------------------------------------------ layer rows

IT = "int|ints"  # a size given as one int or a tuple per spatial dim
SPATIAL = {1: "[channels, length]", 2: "[channels, height, width]", 3: "[channels, depth, height, width]"}
ACT_INPLACE = (P("inplace", "bool", False),)


def _conv_rows() -> list[LayerSpec]:
    rows = []
    for nd in (1, 2, 3):
        size = {1: "8", 2: "8, 8", 3: "6, 6, 6"}[nd]
        rows.append(LayerSpec(
            f"Conv{nd}d", f"torch.nn.Conv{nd}d",
            (P("in_channels", "int", inferred=True), P("out_channels", "int"), P("kernel_size", IT),
             P("stride", IT, 1), P("padding", "int|ints|choice(same,valid)", 0), P("dilation", IT, 1),
             P("groups", "int", 1), P("bias", "bool", True),
             P("padding_mode", "choice(zeros,reflect,replicate,circular)", "zeros")),
            conv(nd), SPATIAL[nd], (nd + 1,), _infer_first("in_channels"), category="convolution",
            examples=((f"[3, {size}]", f"Conv{nd}d(4, 3)"), (f"[2, {size}]", f"Conv{nd}d(6, 3, stride=2, padding=1, bias=false)"),
                      (f"[4, {size}]", f"Conv{nd}d(4, 3, padding=\"same\", groups=2)")),
            doc=f"{nd}-D convolution; in_channels is inferred.",
        ))
        rows.append(LayerSpec(
            f"ConvTranspose{nd}d", f"torch.nn.ConvTranspose{nd}d",
            (P("in_channels", "int", inferred=True), P("out_channels", "int"), P("kernel_size", IT),
             P("stride", IT, 1), P("padding", IT, 0), P("output_padding", IT, 0), P("groups", "int", 1),
             P("bias", "bool", True), P("dilation", IT, 1), P("padding_mode", "choice(zeros)", "zeros")),
            conv(nd, transposed=True), SPATIAL[nd], (nd + 1,), _infer_first("in_channels"),
            category="convolution",
            examples=((f"[3, {size}]", f"ConvTranspose{nd}d(4, 3)"),
                      (f"[2, {size}]", f"ConvTranspose{nd}d(2, 3, stride=2, padding=1, output_padding=1)")),
            doc=f"{nd}-D transposed convolution; in_channels is inferred.",
        ))
    return rows


def _pool_rows() -> list[LayerSpec]:
    rows = []
    for nd in (1, 2, 3):
        size = {1: "9", 2: "9, 9", 3: "6, 6, 6"}[nd]
        rows.append(LayerSpec(
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
        rows.append(LayerSpec(
            f"AvgPool{nd}d", f"torch.nn.AvgPool{nd}d", tuple(avg_params),
            pool(nd, "avg"), SPATIAL[nd], (nd + 1,), category="pooling",
            examples=((f"[2, {size}]", f"AvgPool{nd}d(2)"), (f"[2, {size}]", f"AvgPool{nd}d(3, stride=2, padding=1)")),
            doc=f"{nd}-D average pooling.",
        ))
        for kind in ("Avg", "Max"):
            rows.append(LayerSpec(
                f"Adaptive{kind}Pool{nd}d", f"torch.nn.Adaptive{kind}Pool{nd}d",
                (P("output_size", "int|optints"),),
                adaptive(nd), SPATIAL[nd], (nd + 1,), category="pooling",
                examples=((f"[2, {size}]", f"Adaptive{kind}Pool{nd}d(1)"), (f"[2, {size.replace('9', '8')}]", f"Adaptive{kind}Pool{nd}d(4)")),
                onnx_note="exports when each input size is a multiple of the output size",
                doc=f"{nd}-D adaptive {kind.lower()} pooling to a fixed output size.",
            ))
        if nd < 3:
            rows.append(LayerSpec(
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
            rows.append(LayerSpec(
                f"{kind}Pad{nd}d", f"torch.nn.{kind}Pad{nd}d", (P("padding", IT),) + extra,
                padding(nd, reflect=kind == "Reflection"), SPATIAL[nd], (nd + 1,), category="padding",
                examples=((f"[2, {size}]", f"{kind}Pad{nd}d(1{', 0.5' if extra else ''})"),
                          (f"[2, {size}]", f"{kind}Pad{nd}d(({', '.join(['1', '2'] * nd)}){', 0.5' if extra else ''})")),
                doc=f"{kind.lower()} padding of the last {nd} dimension(s).",
            ))
    return rows


def _norm_rows() -> list[LayerSpec]:
    rows = []
    for nd, ranks, expects in ((1, (1, 2), "[features] or [channels, length]"), (2, (3,), SPATIAL[2]), (3, (4,), SPATIAL[3])):
        size = {1: "6", 2: "6, 6", 3: "4, 4, 4"}[nd]
        rows.append(LayerSpec(
            f"BatchNorm{nd}d", f"torch.nn.BatchNorm{nd}d",
            (P("num_features", "int", inferred=True), P("eps", "float", 1e-5), P("momentum", "float?", 0.1),
             P("affine", "bool", True), P("track_running_stats", "bool", True)),
            same, expects, ranks, _infer_first("num_features"), category="normalization",
            examples=((f"[3, {size}]", f"BatchNorm{nd}d"), (f"[3, {size}]", f"BatchNorm{nd}d(eps=0.001, momentum=0.01)")),
            doc="batch normalization; num_features is inferred.",
        ))
        rows.append(LayerSpec(
            f"InstanceNorm{nd}d", f"torch.nn.InstanceNorm{nd}d",
            (P("num_features", "int", inferred=True), P("eps", "float", 1e-5), P("momentum", "float?", 0.1),
             P("affine", "bool", False), P("track_running_stats", "bool", False)),
            same, SPATIAL[nd], (nd + 1,), _infer_first("num_features"), category="normalization",
            examples=((f"[3, {size}]", f"InstanceNorm{nd}d"), (f"[3, {size}]", f"InstanceNorm{nd}d(affine=true)")),
            doc="instance normalization; num_features is inferred.",
        ))
    rows.append(LayerSpec(
        "LayerNorm", "torch.nn.LayerNorm",
        (P("normalized_shape", "int|ints", inferred=True), P("eps", "float", 1e-5),
         P("elementwise_affine", "bool", True), P("bias", "bool", True)),
        same, "[..., features]", None, layernorm_infer, category="normalization",
        examples=(("[10]", "LayerNorm"), ("[5, 8]", "LayerNorm(eps=0.001)"), ("[3, 4, 4]", "LayerNorm(normalized_shape=[4, 4])")),
        doc="layer normalization over the last dimension (or `normalized_shape=` trailing dims).",
    ))
    rows.append(LayerSpec(
        "GroupNorm", "torch.nn.GroupNorm",
        (P("num_groups", "int"), P("num_channels", "int", inferred=True), P("eps", "float", 1e-5), P("affine", "bool", True)),
        groupnorm_rule, "[channels, ...]", (1, 2, 3, 4), _infer_first("num_channels"), category="normalization",
        examples=(("[4, 6, 6]", "GroupNorm(2)"), ("[6, 5]", "GroupNorm(3, eps=0.0001)")),
        doc="group normalization; num_channels is inferred.",
    ))
    rows.append(LayerSpec(
        "LocalResponseNorm", "torch.nn.LocalResponseNorm",
        (P("size", "int"), P("alpha", "float", 1e-4), P("beta", "float", 0.75), P("k", "float", 1.0)),
        same, "[channels, ...]", (2, 3, 4), category="normalization",
        examples=(("[6, 5, 5]", "LocalResponseNorm(3)"),),
        doc="local response normalization across channels.",
    ))
    return rows


def _activation(name: str, params: tuple[P, ...] = (), rule=same, doc: str = "", ranks=None,
                expects: str = "any shape", examples: tuple = ()) -> LayerSpec:
    return LayerSpec(
        name, f"torch.nn.{name}", params, rule, expects, ranks, category="activation",
        examples=examples or (("[5]", name), ("[3, 4, 4]", name)), doc=doc or f"elementwise {name}.",
    )


ACTIVATIONS = [
    _activation("ReLU", ACT_INPLACE, doc="max(0, x)."),
    _activation("LeakyReLU", (P("negative_slope", "float", 0.01),) + ACT_INPLACE,
                examples=(("[5]", "LeakyReLU"), ("[5]", "LeakyReLU(0.2)"))),
    _activation("PReLU", (P("num_parameters", "int", 1), P("init", "float", 0.25)), prelu_rule,
                examples=(("[5]", "PReLU"), ("[3, 4, 4]", "PReLU(3)"))),
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
                examples=(("[5]", "Threshold(0.1, 20)"),)),
    _activation("Softmax", (P("dim", "int", -1),), softmax_rule, "softmax over `dim` (default -1, the last).",
                examples=(("[5]", "Softmax"), ("[3, 4]", "Softmax(dim=1)"))),
    _activation("LogSoftmax", (P("dim", "int", -1),), softmax_rule, "log-softmax over `dim` (default -1).",
                examples=(("[5]", "LogSoftmax"), ("[3, 4]", "LogSoftmax(1)"))),
    _activation("Softmin", (P("dim", "int", -1),), softmax_rule, "softmin over `dim` (default -1).",
                examples=(("[5]", "Softmin"),)),
    _activation("Softmax2d", (), softmax2d_rule, "softmax over channels at each location.", (3,), SPATIAL[2],
                examples=(("[3, 4, 4]", "Softmax2d"),)),
    _activation("GLU", (P("dim", "int", -1),), glu_rule, "gated linear unit; halves `dim`.",
                examples=(("[6]", "GLU"), ("[4, 6]", "GLU(dim=1)"))),
]


LAYERS_LIST: list[LayerSpec] = [
    LayerSpec(
        "Linear", "torch.nn.Linear",
        (P("in_features", "int", inferred=True), P("out_features", "int"), P("bias", "bool", True)),
        linear_rule, "[features] or [steps, features]", (1, 2), _infer_last("in_features"), category="linear",
        examples=(("[20]", "Linear(7)"), ("[5, 20]", "Linear(3, bias=false)")),
        doc="fully connected layer; in_features is inferred.",
    ),
    LayerSpec(
        "Bilinear", "netspec.layers.Bilinear",
        (P("in1_features", "int", inferred=True), P("in2_features", "int", inferred=True),
         P("out_features", "int"), P("bias", "bool", True)),
        bilinear_rule, "[features]", (1,),
        lambda s, a: {**_infer_last("in1_features")(s, a), "in2_features": s[-1]}, category="linear",
        examples=(("[6]", "Bilinear(4)"),),
        doc="x^T A x + b: torch's Bilinear applied to the input with itself (a Sequential has one input).",
    ),
    LayerSpec("Identity", "torch.nn.Identity", (), same, category="utility",
              examples=(("[5]", "Identity"),), doc="passes the input through."),
    LayerSpec(
        "Flatten", "torch.nn.Flatten", (P("start_dim", "int", 1), P("end_dim", "int", -1)),
        flatten_rule, "at least one dimension", None, category="reshape",
        examples=(("[3, 4, 5]", "Flatten"), ("[3, 4, 5]", "Flatten(2)")),
        doc="flattens dims start_dim..end_dim (torch dims: 0 is the batch axis).",
    ),
    LayerSpec(
        "Unflatten", "torch.nn.Unflatten", (P("dim", "int"), P("unflattened_size", "ints")),
        unflatten_rule, "any shape", None, category="reshape",
        examples=(("[12]", "Unflatten(1, [3, 4])"), ("[2, 12]", "Unflatten(-1, [2, 6])")),
        doc="splits one dim into several (torch dims).",
    ),
    LayerSpec(
        "Reshape", "netspec.layers.Reshape", (P("shape", "ints"),), reshape_rule, "any shape", None,
        category="reshape", examples=(("[784]", "Reshape([1, 28, 28])"), ("[2, 3, 4]", "Reshape([-1, 4])")),
        doc="reshapes each sample to `shape` (one entry may be -1).",
    ),
    LayerSpec(
        "Last", "netspec.layers.Last", (), last_rule, "[steps, features]", (2,), category="recurrent",
        examples=(("[7, 5]", "Last"),), doc="selects the final time step of a sequence.",
    ),
    LayerSpec(
        "Polynomial", "netspec.layers.Polynomial", (P("degree", "int"),), poly_rule, "[features]", None,
        category="utility", examples=(("[1]", "Polynomial(5)"), ("[3]", "Polynomial(2)")),
        doc="x -> [x, x^2, ..., x^degree] concatenated along the last dim (powers outermost).",
    ),
    LayerSpec(
        "Scale", "netspec.layers.Scale", (P("factor", "float"),), same, category="utility",
        examples=(("[5]", "Scale(0.5)"),), doc="multiplies by a constant factor.",
    ),
    LayerSpec(
        "Dropout", "torch.nn.Dropout", (P("p", "float", 0.5),) + ACT_INPLACE, same, category="dropout",
        examples=(("[5]", "Dropout"), ("[3, 4]", "Dropout(0.2)")), doc="zeroes elements with probability p while training.",
    ),
    LayerSpec(
        "Dropout1d", "torch.nn.Dropout1d", (P("p", "float", 0.5),) + ACT_INPLACE, same, SPATIAL[1], (2,),
        category="dropout", examples=(("[3, 8]", "Dropout1d(0.2)"),), doc="zeroes whole channels.",
    ),
    LayerSpec(
        "Dropout2d", "torch.nn.Dropout2d", (P("p", "float", 0.5),) + ACT_INPLACE, same, SPATIAL[2], (3,),
        category="dropout", examples=(("[3, 4, 4]", "Dropout2d(0.2)"),), doc="zeroes whole channels.",
    ),
    LayerSpec(
        "Dropout3d", "torch.nn.Dropout3d", (P("p", "float", 0.5),) + ACT_INPLACE, same, SPATIAL[3], (4,),
        category="dropout", examples=(("[3, 4, 4, 4]", "Dropout3d(0.2)"),), doc="zeroes whole channels.",
    ),
    LayerSpec(
        "AlphaDropout", "torch.nn.AlphaDropout", (P("p", "float", 0.5),) + ACT_INPLACE, same, category="dropout",
        examples=(("[5]", "AlphaDropout(0.2)"),), doc="dropout that keeps SELU's self-normalization.",
    ),
    LayerSpec(
        "Embedding", "torch.nn.Embedding",
        (P("num_embeddings", "int"), P("embedding_dim", "int"), P("padding_idx", "int?", None),
         P("max_norm", "float?", None), P("norm_type", "float", 2.0), P("scale_grad_by_freq", "bool", False),
         P("sparse", "bool", False)),
        embedding_rule, "integer indices", None, category="embedding", int_input=True,
        examples=(("[7]", "Embedding(10, 4)"),), doc="lookup table for integer tokens (must be the first layer).",
    ),
    LayerSpec(
        "Upsample", "torch.nn.Upsample",
        (P("size", "int|ints?", None), P("scale_factor", "float|floats?", None),
         P("mode", "choice(nearest,linear,bilinear,bicubic,trilinear,nearest-exact)", "nearest"),
         P("align_corners", "bool?", None)),
        upsample_rule, "[channels, *spatial]", (2, 3, 4), category="upsampling",
        examples=(("[2, 4, 4]", "Upsample(scale_factor=2)"), ("[2, 4, 4]", 'Upsample(size=[6, 6], mode="bilinear")'),
                  ("[2, 5]", "Upsample(scale_factor=2)")),
        doc="upsampling by size or scale factor.",
    ),
    LayerSpec(
        "PixelShuffle", "torch.nn.PixelShuffle", (P("upscale_factor", "int"),), pixel_shuffle_rule,
        SPATIAL[2], (3,), category="upsampling", examples=(("[8, 3, 3]", "PixelShuffle(2)"),),
        doc="[C*r*r, H, W] -> [C, H*r, W*r].",
    ),
    LayerSpec(
        "PixelUnshuffle", "torch.nn.PixelUnshuffle", (P("downscale_factor", "int"),), pixel_unshuffle_rule,
        SPATIAL[2], (3,), category="upsampling", examples=(("[2, 6, 6]", "PixelUnshuffle(2)"),),
        doc="[C, H*r, W*r] -> [C*r*r, H, W].",
    ),
    LayerSpec(
        "ChannelShuffle", "torch.nn.ChannelShuffle", (P("groups", "int"),), channel_shuffle_rule,
        "[channels, ...]", (2, 3, 4), category="utility", examples=(("[6, 4, 4]", "ChannelShuffle(3)"),),
        doc="shuffles channels across groups.",
    ),
    LayerSpec(
        "Unfold", "torch.nn.Unfold",
        (P("kernel_size", IT), P("dilation", IT, 1), P("padding", IT, 0), P("stride", IT, 1)),
        unfold_rule, SPATIAL[2], (3,), category="reshape",
        examples=(("[2, 6, 6]", "Unfold(3)"), ("[2, 6, 6]", "Unfold(2, stride=2)")),
        doc="sliding blocks: [C, H, W] -> [C*kh*kw, blocks].",
    ),
    LayerSpec(
        "Fold", "torch.nn.Fold",
        (P("output_size", IT), P("kernel_size", IT), P("dilation", IT, 1), P("padding", IT, 0), P("stride", IT, 1)),
        fold_rule, "[channels*kh*kw, blocks]", (2,), category="reshape",
        examples=(("[8, 9]", "Fold(4, 2, stride=1)"), ("[18, 4]", "Fold([4, 4], 3, padding=1, stride=2)")),
        doc="inverse of Unfold: [C*kh*kw, blocks] -> [C, H, W].",
    ),
]

for _kind in ("RNN", "LSTM", "GRU"):
    _params = [P("input_size", "int", inferred=True), P("hidden_size", "int"), P("num_layers", "int", 1)]
    if _kind == "RNN":
        _params.append(P("nonlinearity", "choice(tanh,relu)", "tanh"))
    _params += [P("bias", "bool", True), P("dropout", "float", 0.0), P("bidirectional", "bool", False)]
    if _kind == "LSTM":
        _params.append(P("proj_size", "int", 0))
    LAYERS_LIST.append(LayerSpec(
        _kind, f"netspec.layers.{_kind}", tuple(_params), rnn_rule, "[steps, features]", (2,),
        _infer_last("input_size"), category="recurrent", fixed=(("batch_first", True),),
        examples=(("[7, 5]", f"{_kind}(6)"), ("[4, 3]", f"{_kind}(5, num_layers=2, bidirectional=true)")),
        doc=f"batch-first {_kind}; outputs the whole sequence [steps, hidden] (use Last for the final step).",
    ))

LAYERS_LIST += _conv_rows() + _pool_rows() + _pad_rows() + _norm_rows() + ACTIVATIONS

# ------------------------------------------------------------------ attention and sequence layers


def attention_infer(s: Shape, a: dict) -> dict:
    e = s[-1]
    if e is None:
        raise ShapeError("the feature size (last dimension) must be fixed, not `_`")
    heads = a.get("num_heads") or a.get("nhead")
    if heads and e % heads:
        raise ShapeError(f"the feature size {e} is not divisible by the number of heads {heads}",
                         f"use a head count that divides {e}, or project to a multiple of {heads} with Linear first")
    return {"embed_dim" if "num_heads" in a else "d_model": e}


def positional_rule(s: Shape, a: dict) -> Shape:
    if s[0] is not None and s[0] > a["max_len"]:
        raise ShapeError(f"the sequence has {s[0]} steps but max_len is {a['max_len']}",
                         f"raise max_len to at least {s[0]}")
    return s


def reduce_rule(s: Shape, a: dict) -> Shape:
    i = _norm_dim(a["dim"], len(s))
    if a.get("keepdim"):
        return tuple(1 if j == i else n for j, n in enumerate(s))
    if len(s) == 1:
        raise ShapeError("reducing the only sample dimension would leave a scalar per sample",
                         "use keepdim=true to keep it as [1]")
    return tuple(n for j, n in enumerate(s) if j != i)


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


LAYERS_LIST += [
    LayerSpec(
        "MultiheadAttention", "netspec.layers.MultiheadAttention",
        (P("embed_dim", "int", inferred=True), P("num_heads", "int"), P("dropout", "float", 0.0),
         P("bias", "bool", True), P("add_bias_kv", "bool", False), P("add_zero_attn", "bool", False)),
        same, "[steps, features]", (2,), attention_infer, category="attention", fixed=(("batch_first", True),),
        examples=(("[7, 8]", "MultiheadAttention(2)"), ("[5, 12]", "MultiheadAttention(3, bias=false)"),
                  ("[4, 8]", "MultiheadAttention(4, add_bias_kv=true)"),
                  ("[_, 8]", "MultiheadAttention(2)"),
                  ("[_, 8]", "MultiheadAttention(2, add_bias_kv=true, add_zero_attn=true)")),
        doc="self-attention (query = key = value = the input), batch-first; returns the attended "
            "sequence only. embed_dim is inferred.",
    ),
    LayerSpec(
        "TransformerEncoderLayer", "netspec.layers.TransformerEncoderLayer",
        (P("d_model", "int", inferred=True), P("nhead", "int"), P("dim_feedforward", "int", 2048),
         P("dropout", "float", 0.1), P("activation", "choice(relu,gelu)", "relu"), P("layer_norm_eps", "float", 1e-5),
         P("norm_first", "bool", False), P("bias", "bool", True)),
        same, "[steps, features]", (2,), attention_infer, category="attention", fixed=(("batch_first", True),),
        examples=(("[6, 8]", "TransformerEncoderLayer(2, dim_feedforward=16)"),
                  ("[5, 12]", 'TransformerEncoderLayer(3, dim_feedforward=24, activation="gelu", norm_first=true)'),
                  ("[_, 8]", "TransformerEncoderLayer(2, dim_feedforward=16)")),
        doc="torch's encoder layer (self-attention + feed-forward), batch-first; d_model is inferred.",
    ),
    LayerSpec(
        "PositionalEmbedding", "netspec.layers.PositionalEmbedding",
        (P("max_len", "int"), P("features", "int", inferred=True)),
        positional_rule, "[steps, features]", (2,), _infer_last("features"), category="attention",
        examples=(("[7, 8]", "PositionalEmbedding(16)"), ("[_, 4]", "PositionalEmbedding(10)")),
        doc="adds a learned [max_len, features] table to [steps, features] (steps <= max_len); "
            "initialised N(0, 0.02) as GPT-2's position embedding.",
    ),
    LayerSpec(
        "Mean", "netspec.layers.Mean", (P("dim", "int"), P("keepdim", "bool", False)), reduce_rule,
        "any shape", None, category="reshape",
        examples=(("[7, 8]", "Mean(1)"), ("[3, 4, 5]", "Mean(-1, keepdim=true)")),
        doc="mean over `dim` (torch dims: 0 is the batch axis), e.g. Mean(1) averages the steps of [steps, features].",
    ),
    LayerSpec(
        "Max", "netspec.layers.Max", (P("dim", "int"), P("keepdim", "bool", False)), reduce_rule,
        "any shape", None, category="reshape",
        examples=(("[7, 8]", "Max(1)"), ("[3, 4, 5]", "Max(2, keepdim=true)")),
        doc="maximum over `dim` (torch dims).",
    ),
]

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


def _with_domains(row: LayerSpec) -> LayerSpec:
    from dataclasses import replace

    params = tuple(
        p if p.domain or p.name not in NAME_DOMAINS or (row.category == "padding" and p.name == "padding")
        else replace(p, domain=NAME_DOMAINS[p.name]) for p in row.params)
    return replace(row, params=params)


LAYERS_LIST[:] = [_with_domains(row) for row in LAYERS_LIST]

LAYERS: dict[str, LayerSpec] = {row.name: row for row in LAYERS_LIST}

# layers that may hand back their input tensor itself or a view of it (Dropout does in eval mode)
for _name in ("Identity", "Flatten", "Unflatten", "Reshape", "Last", "Dropout", "Dropout1d", "Dropout2d",
              "Dropout3d", "AlphaDropout"):
    object.__setattr__(LAYERS[_name], "aliases", True)

# torch.onnx cannot export these as they are; export.py swaps in the exact equivalent
# named here (a netspec.layers class with `from_layer(kwargs, in_shape)`) and verifies it.
ONNX_LOWERINGS = {
    "ChannelShuffle": "netspec.layers.ChannelShuffleLowered",  # no export for aten::channel_shuffle
    "Threshold": "netspec.layers.ThresholdLowered",  # exported only for threshold 0
}
for _nd in (1, 2, 3):  # non-divisible adaptive pooling has no ONNX export
    ONNX_LOWERINGS[f"AdaptiveAvgPool{_nd}d"] = "netspec.layers.AdaptivePoolLowered"
    ONNX_LOWERINGS[f"AdaptiveMaxPool{_nd}d"] = "netspec.layers.AdaptivePoolLowered"
for _name, _factory in ONNX_LOWERINGS.items():
    object.__setattr__(LAYERS[_name], "onnx_lowering", _factory)


def needs_lowering(layer: str, kwargs: dict, in_shape: Shape) -> bool:
    """Whether export must swap this layer for its exact exportable equivalent."""
    if not LAYERS[layer].onnx_lowering:
        return False
    if layer.startswith("Adaptive"):
        out = _tuple(kwargs["output_size"], len(in_shape) - 1)
        return any(o is not None and (n is None or n % o) for n, o in zip(in_shape[1:], out))
    if layer == "Threshold":
        return kwargs["threshold"] != 0
    return True


def onnx_problem(layer: str, kwargs: dict, in_shape: Shape) -> str | None:
    """What truly cannot be exported (checked by `netspec check --target onnx`); layers with
    a lowering are exportable."""
    spec = LAYERS[layer]
    if not spec.onnx:
        return spec.onnx_note or f"{layer} has no ONNX export"
    if layer.startswith("Adaptive"):
        out = _tuple(kwargs["output_size"], len(in_shape) - 1)
        for n, o in zip(in_shape[1:], out):
            if o is not None and n is None:
                return (f"{layer} over a variable-size (`_`) dimension exports only with output_size none "
                        "there; ONNX needs the pooling windows fixed")
    if layer == "Upsample" and kwargs.get("mode") in ("bicubic",) and kwargs.get("align_corners"):
        return "Upsample(mode=\"bicubic\", align_corners=true) does not match onnxruntime"
    return None


# ------------------------------------------------------------------ losses


@dataclass(frozen=True)
class LossSpec:
    name: str
    params: tuple[P, ...]
    target: str  # class | value | binary | unsupported
    doc: str = ""
    wants: str = ""  # the activation it expects before it ("logits", "log_probs", "probs")

    @property
    def factory(self) -> str:
        return f"torch.nn.{self.name}"


RED = P("reduction", "choice(mean,sum,none)", "mean")
WEIGHT = P("weight", "floats?", None, domain="[0,inf)")

LOSSES_LIST = [
    LossSpec("L1Loss", (RED,), "value", "mean absolute error."),
    LossSpec("MSELoss", (RED,), "value", "mean squared error."),
    LossSpec("SmoothL1Loss", (RED, P("beta", "float", 1.0)), "value", "smooth L1."),
    LossSpec("HuberLoss", (RED, P("delta", "float", 1.0)), "value", "Huber loss."),
    LossSpec("CrossEntropyLoss", (WEIGHT, P("ignore_index", "int", -100), RED, P("label_smoothing", "float", 0.0)),
             "class", "softmax cross-entropy on logits; targets are class indices.", "logits"),
    LossSpec("NLLLoss", (WEIGHT, P("ignore_index", "int", -100), RED), "class",
             "negative log-likelihood on log-probabilities (after LogSoftmax).", "log_probs"),
    LossSpec("BCELoss", (WEIGHT, RED), "binary", "binary cross-entropy on probabilities (after Sigmoid).", "probs"),
    LossSpec("BCEWithLogitsLoss", (WEIGHT, RED, P("pos_weight", "floats?", None)), "binary",
             "binary cross-entropy on logits.", "logits"),
    LossSpec("KLDivLoss", (RED, P("log_target", "bool", False)), "value",
             "KL divergence; input log-probabilities, target probabilities (use one_hot).", "log_probs"),
    LossSpec("PoissonNLLLoss", (P("log_input", "bool", True), P("full", "bool", False), P("eps", "float", 1e-8), RED),
             "value", "Poisson negative log-likelihood."),
    LossSpec("HingeEmbeddingLoss", (P("margin", "float", 1.0), RED), "value", "hinge loss for targets of 1/-1."),
    LossSpec("SoftMarginLoss", (RED,), "value", "logistic loss for targets of 1/-1."),
    LossSpec("MultiMarginLoss", (P("p", "int", 1), P("margin", "float", 1.0), WEIGHT, RED), "class",
             "multi-class hinge loss on class indices."),
    LossSpec("MultiLabelSoftMarginLoss", (WEIGHT, RED), "binary", "multi-label one-vs-all loss."),
    LossSpec("GaussianNLLLoss", (P("full", "bool", False), P("eps", "float", 1e-6), RED), "unsupported",
             "needs a variance input beside the prediction."),
    LossSpec("CosineEmbeddingLoss", (P("margin", "float", 0.0), RED), "unsupported", "needs two inputs and a target."),
    LossSpec("MarginRankingLoss", (P("margin", "float", 0.0), RED), "unsupported", "needs two inputs and a target."),
    LossSpec("TripletMarginLoss", (P("margin", "float", 1.0), P("p", "float", 2.0), RED), "unsupported",
             "needs anchor, positive and negative inputs."),
    LossSpec("CTCLoss", (P("blank", "int", 0), RED, P("zero_infinity", "bool", False)), "unsupported",
             "needs input and target lengths."),
]
LOSSES = {row.name: row for row in LOSSES_LIST}

# ------------------------------------------------------------------ optimizers


@dataclass(frozen=True)
class OptimizerSpec:
    name: str
    params: tuple[P, ...]
    closure: bool = False  # step() needs a closure (LBFGS)
    doc: str = ""
    fused: bool = False  # has fused CPU/CUDA kernels: netspec uses them unless fused/foreach is given

    @property
    def factory(self) -> str:
        return f"torch.optim.{self.name}"


NONNEG = "[0,inf)"
POS = "(0,inf)"
LR = P("lr", "float", 1e-3, domain=NONNEG)
WD = P("weight_decay", "float", 0.0, domain=NONNEG)
MAX = P("maximize", "bool", False)
BETAS = P("betas", "floats", (0.9, 0.999), domain="[0,1)")
FOREACH = P("foreach", "bool?", None)
FUSED = P("fused", "bool?", None)

OPTIMIZERS_LIST = [
    OptimizerSpec("SGD", (LR, P("momentum", "float", 0.0), P("dampening", "float", 0.0), WD,
                          P("nesterov", "bool", False), MAX, FOREACH, FUSED), doc="stochastic gradient descent.", fused=True),
    OptimizerSpec("Adam", (LR, BETAS, P("eps", "float", 1e-8), WD, P("amsgrad", "bool", False), MAX, FOREACH, FUSED),
                  doc="Adam.", fused=True),
    OptimizerSpec("AdamW", (LR, BETAS, P("eps", "float", 1e-8), P("weight_decay", "float", 1e-2),
                            P("amsgrad", "bool", False), MAX, FOREACH, FUSED), doc="Adam with decoupled weight decay.",
                  fused=True),
    OptimizerSpec("Adadelta", (P("lr", "float", 1.0), P("rho", "float", 0.9), P("eps", "float", 1e-6), WD, MAX), doc="Adadelta."),
    OptimizerSpec("Adagrad", (P("lr", "float", 1e-2), P("lr_decay", "float", 0.0), WD,
                              P("initial_accumulator_value", "float", 0.0), P("eps", "float", 1e-10), MAX, FOREACH, FUSED),
                  doc="Adagrad.", fused=True),
    OptimizerSpec("Adamax", (P("lr", "float", 2e-3), BETAS, P("eps", "float", 1e-8), WD, MAX), doc="Adamax."),
    OptimizerSpec("NAdam", (P("lr", "float", 2e-3), BETAS, P("eps", "float", 1e-8), WD,
                            P("momentum_decay", "float", 4e-3), P("decoupled_weight_decay", "bool", False), MAX), doc="Nesterov Adam."),
    OptimizerSpec("RAdam", (LR, BETAS, P("eps", "float", 1e-8), WD, P("decoupled_weight_decay", "bool", False), MAX),
                  doc="rectified Adam."),
    OptimizerSpec("RMSprop", (P("lr", "float", 1e-2), P("alpha", "float", 0.99), P("eps", "float", 1e-8), WD,
                              P("momentum", "float", 0.0), P("centered", "bool", False), MAX), doc="RMSprop."),
    OptimizerSpec("Rprop", (P("lr", "float", 1e-2), P("etas", "floats", (0.5, 1.2)), P("step_sizes", "floats", (1e-6, 50.0)), MAX),
                  doc="resilient backpropagation (full-batch)."),
    OptimizerSpec("ASGD", (P("lr", "float", 1e-2), P("lambd", "float", 1e-4), P("alpha", "float", 0.75),
                           P("t0", "float", 1e6), WD, MAX), doc="averaged SGD."),
    OptimizerSpec("LBFGS", (P("lr", "float", 1.0), P("max_iter", "int", 20), P("max_eval", "int?", None),
                            P("tolerance_grad", "float", 1e-7), P("tolerance_change", "float", 1e-9),
                            P("history_size", "int", 100), P("line_search_fn", "choice(strong_wolfe)?", None)),
                  closure=True, doc="L-BFGS (step with a closure; best full-batch)."),
]
OPTIMIZERS = {row.name: row for row in OPTIMIZERS_LIST}

# ------------------------------------------------------------------ LR schedulers


@dataclass(frozen=True)
class SchedulerSpec:
    name: str
    params: tuple[P, ...]
    interval: str = "epoch"  # epoch | batch | plateau
    doc: str = ""

    @property
    def factory(self) -> str:
        return f"torch.optim.lr_scheduler.{self.name}"


SCHEDULERS_LIST = [
    SchedulerSpec("StepLR", (P("step_size", "int"), P("gamma", "float", 0.1)), doc="decay by gamma every step_size epochs."),
    SchedulerSpec("MultiStepLR", (P("milestones", "ints"), P("gamma", "float", 0.1)), doc="decay at milestone epochs."),
    SchedulerSpec("ConstantLR", (P("factor", "float", 1 / 3, domain="(0,1]"), P("total_iters", "int", 5)), doc="constant factor for a while."),
    SchedulerSpec("LinearLR", (P("start_factor", "float", 1 / 3), P("end_factor", "float", 1.0), P("total_iters", "int", 5)),
                  doc="linear warm-up/decay."),
    SchedulerSpec("ExponentialLR", (P("gamma", "float"),), doc="decay by gamma every epoch."),
    SchedulerSpec("PolynomialLR", (P("total_iters", "int", 5), P("power", "float", 1.0)), doc="polynomial decay."),
    SchedulerSpec("CosineAnnealingLR", (P("T_max", "int"), P("eta_min", "float", 0.0)), doc="cosine annealing."),
    SchedulerSpec("CosineAnnealingWarmRestarts", (P("T_0", "int"), P("T_mult", "int", 1), P("eta_min", "float", 0.0)),
                  doc="cosine annealing with restarts."),
    SchedulerSpec("CyclicLR", (P("base_lr", "float"), P("max_lr", "float"), P("step_size_up", "int", 2000),
                               P("step_size_down", "int?", None), P("mode", "choice(triangular,triangular2,exp_range)", "triangular"),
                               P("gamma", "float", 1.0), P("cycle_momentum", "bool", True)),
                  "batch", doc="cyclical learning rate (steps every batch)."),
    SchedulerSpec("OneCycleLR", (P("max_lr", "float"), P("total_steps", "int?", None), P("pct_start", "float", 0.3),
                                 P("anneal_strategy", "choice(cos,linear)", "cos"), P("div_factor", "float", 25.0),
                                 P("final_div_factor", "float", 1e4), P("three_phase", "bool", False)),
                  "batch", doc="one-cycle policy (steps every batch; epochs and steps filled in)."),
    SchedulerSpec("ReduceLROnPlateau", (P("mode", "choice(min,max)", "min"), P("factor", "float", 0.1, domain="[0,1)"),
                                        P("patience", "int", 10), P("threshold", "float", 1e-4),
                                        P("threshold_mode", "choice(rel,abs)", "rel"), P("cooldown", "int", 0),
                                        P("min_lr", "float", 0.0), P("eps", "float", 1e-8)),
                  "plateau", doc="reduce when the validation loss stops improving."),
]
SCHEDULERS = {row.name: row for row in SCHEDULERS_LIST}

# ------------------------------------------------------------------ initialisers


@dataclass(frozen=True)
class InitSpec:
    name: str
    function: str  # torch.nn.init function
    params: tuple[P, ...]
    matrix_only: bool = False  # needs a tensor with >= 2 dims (fan in/out)
    doc: str = ""


INITIALISERS_LIST = [
    InitSpec("zeros", "zeros_", (), doc="all zeros."),
    InitSpec("ones", "ones_", (), doc="all ones."),
    InitSpec("constant", "constant_", (P("val", "float"),), doc="a constant value."),
    InitSpec("normal", "normal_", (P("mean", "float", 0.0), P("std", "float", 1.0)), doc="normal distribution."),
    InitSpec("uniform", "uniform_", (P("a", "float", 0.0), P("b", "float", 1.0)), doc="uniform on [a, b)."),
    InitSpec("trunc_normal", "trunc_normal_", (P("mean", "float", 0.0), P("std", "float", 1.0),
                                               P("a", "float", -2.0), P("b", "float", 2.0)), doc="truncated normal."),
    InitSpec("xavier_uniform", "xavier_uniform_", (P("gain", "float", 1.0),), True, "Glorot uniform."),
    InitSpec("xavier_normal", "xavier_normal_", (P("gain", "float", 1.0),), True, "Glorot normal."),
    InitSpec("kaiming_uniform", "kaiming_uniform_", (P("a", "float", 0.0), P("mode", "choice(fan_in,fan_out)", "fan_in"),
                                                     P("nonlinearity", "choice(relu,leaky_relu,linear,tanh,sigmoid,selu)", "leaky_relu")),
             True, "He uniform."),
    InitSpec("kaiming_normal", "kaiming_normal_", (P("a", "float", 0.0), P("mode", "choice(fan_in,fan_out)", "fan_in"),
                                                   P("nonlinearity", "choice(relu,leaky_relu,linear,tanh,sigmoid,selu)", "leaky_relu")),
             True, "He normal."),
    InitSpec("orthogonal", "orthogonal_", (P("gain", "float", 1.0),), True, "(semi-)orthogonal matrix."),
]
INITIALISERS = {row.name: row for row in INITIALISERS_LIST}

# ------------------------------------------------------------------ metrics


@dataclass(frozen=True)
class MetricSpec:
    name: str
    params: tuple[P, ...]
    task: str  # class | value
    higher_is_better: bool
    doc: str = ""


METRICS_LIST = [
    MetricSpec("accuracy", (), "class", True, "fraction of correct top-1 predictions."),
    MetricSpec("top_k", (P("k", "int", 5),), "class", True, "fraction with the target in the top k."),
    MetricSpec("precision", (), "class", True, "precision, macro-averaged over classes (binary: of class 1)."),
    MetricSpec("recall", (), "class", True, "recall, macro-averaged over classes (binary: of class 1)."),
    MetricSpec("f1", (), "class", True, "F1 score, macro-averaged over classes (binary: of class 1)."),
    MetricSpec("auc", (), "binary", True, "area under the ROC curve (two classes)."),
    MetricSpec("mae", (), "value", False, "mean absolute error."),
    MetricSpec("mse", (), "value", False, "mean squared error."),
    MetricSpec("rmse", (), "value", False, "root mean squared error."),
    MetricSpec("r2", (), "value", True, "coefficient of determination."),
]
METRICS = {row.name: row for row in METRICS_LIST}

# ------------------------------------------------------------------ branch constructs


@dataclass(frozen=True)
class BranchSpec:
    """`add { ... }`, `concat(dim=N) { ... }`, `multiply { ... }`: every branch gets the same
    input; `combine` gives the output shape from the branches' shapes (raising ShapeError)."""

    name: str
    factory: str
    params: tuple[P, ...]
    combine: Callable[[list, dict], Shape]
    doc: str = ""


def broadcast_rule(shapes: list, a: dict) -> Shape:
    """torch broadcasting of per-sample shapes of equal rank (a rank difference would
    broadcast across the batch axis, which is never meant)."""
    ranks = {len(s) for s in shapes}
    if len(ranks) > 1:
        raise ShapeError("the branches' outputs have different numbers of dimensions",
                         "make every branch produce the same rank; size-1 dims broadcast")
    out = []
    for dims in zip(*shapes):
        known = {d for d in dims if d is not None and d != 1}
        if len(known) > 1:
            raise ShapeError("the branches' outputs do not broadcast",
                             "each dimension must be equal across branches, or 1")
        out.append(known.pop() if known else None if None in dims else 1)
    return tuple(out)


def concat_rule(shapes: list, a: dict) -> Shape:
    ranks = {len(s) for s in shapes}
    if len(ranks) > 1:
        raise ShapeError("the branches' outputs have different numbers of dimensions")
    rank = ranks.pop()
    i = _norm_dim(a.get("dim", 1), rank)
    out = []
    for j, dims in enumerate(zip(*shapes)):
        if j == i:
            out.append(None if None in dims else sum(dims))
            continue
        known = {d for d in dims if d is not None}
        if len(known) > 1:
            raise ShapeError(f"concat(dim={a.get('dim', 1)}) needs the other dimensions equal",
                             "sizes may differ only along the concatenated dim")
        out.append(known.pop() if known else None)
    return tuple(out)


BRANCHES_LIST = [
    BranchSpec("add", "netspec.layers.Add", (), broadcast_rule,
               "sum of the branches' outputs (broadcast as torch does): residuals, projection shortcuts."),
    BranchSpec("concat", "netspec.layers.Concat", (P("dim", "int", 1),), concat_rule,
               "the branches' outputs joined along `dim` (torch dims; default 1, the channels)."),
    BranchSpec("multiply", "netspec.layers.Multiply", (), broadcast_rule,
               "product of the branches' outputs (broadcast): gates such as squeeze-and-excitation."),
]
BRANCHES = {row.name: row for row in BRANCHES_LIST}

# ------------------------------------------------------------------ augmentation


@dataclass(frozen=True)
class AugmentSpec:
    """One `augment: [...]` entry: torchvision's name and meaning, run by netspec/augment.py
    as batched tensor operations on training batches of images in [0, 1]."""

    name: str
    params: tuple[P, ...]
    doc: str = ""


_PAIR = "float|floats"
_FILL = P("fill", "float", 0.0, domain="[0,1]")
_INTERP = "choice(nearest,bilinear)"
AUGMENTS_LIST = [
    AugmentSpec("RandomCrop", (P("size", IT, domain="[1,inf)"), P("padding", IT, 0, domain="[0,inf)"), _FILL,
                               P("padding_mode", "choice(constant,edge,reflect)", "constant")),
                "pad (optional), then crop `size` at a random position."),
    AugmentSpec("RandomHorizontalFlip", (P("p", "float", 0.5, domain="[0,1]"),), "mirror left-right with probability p."),
    AugmentSpec("RandomVerticalFlip", (P("p", "float", 0.5, domain="[0,1]"),), "mirror top-bottom with probability p."),
    AugmentSpec("RandomRotation", (P("degrees", _PAIR, domain="(-inf,inf)"), P("interpolation", _INTERP, "nearest"), _FILL),
                "rotate by an angle drawn from [-degrees, degrees] (or [a, b]) about the centre."),
    AugmentSpec("RandomAffine", (P("degrees", _PAIR, domain="(-inf,inf)"), P("translate", "floats?", None, domain="[0,1]"),
                                 P("scale", "floats?", None, domain="(0,inf)"), P("shear", "float|floats?", None),
                                 P("interpolation", _INTERP, "nearest"), _FILL),
                "random rotation, translation (fractions of width, height), scale and shear."),
    AugmentSpec("RandomResizedCrop", (P("size", IT, domain="[1,inf)"), P("scale", "floats", (0.08, 1.0), domain="(0,1]"),
                                      P("ratio", "floats", (0.75, 1.3333), domain="(0,inf)"),
                                      P("interpolation", _INTERP, "bilinear")),
                "crop a random area (fraction `scale`, aspect `ratio`) and resize it to `size`."),
    AugmentSpec("ColorJitter", (P("brightness", _PAIR, 0.0, domain="[0,inf)"), P("contrast", _PAIR, 0.0, domain="[0,inf)"),
                                P("saturation", _PAIR, 0.0, domain="[0,inf)"), P("hue", _PAIR, 0.0, domain="[-0.5,0.5]")),
                "random brightness, contrast, saturation and hue factors."),
    AugmentSpec("RandomErasing", (P("p", "float", 0.5, domain="[0,1]"), P("scale", "floats", (0.02, 0.33), domain="(0,1]"),
                                  P("ratio", "floats", (0.3, 3.3), domain="(0,inf)"), P("value", "float", 0.0)),
                "erase a random rectangle (area fraction `scale`, aspect `ratio`) with `value`."),
]
AUGMENTS = {row.name: row for row in AUGMENTS_LIST}

# ------------------------------------------------------------------ data sources and sections


@dataclass(frozen=True)
class SourceSpec:
    name: str
    params: tuple[P, ...]
    doc: str = ""
    raw: tuple[str, ...] = ()  # params kept as expressions (evaluated by data.py)
    paths: tuple[str, ...] = ()  # params naming files or folders, relative to the spec's folder


SOURCES_LIST = [
    SourceSpec("mnist", (P("split", "choice(train,test)", "train"), P("root", "str?", None)), "MNIST digits (IDX files).",
               paths=("root",)),
    SourceSpec("fashion_mnist", (P("split", "choice(train,test)", "train"), P("root", "str?", None)),
               "Fashion-MNIST (IDX files).", paths=("root",)),
    SourceSpec("idx", (P("images", "str"), P("labels", "str")), "any IDX image/label pair (raw or .gz).",
               paths=("images", "labels")),
    SourceSpec("csv", (P("path", "str"), P("target", "str|strs"), P("features", "strs?", None),
                       P("categorical", "strs", ()), P("delimiter", "str", ",")),
               "CSV with a header row: numeric columns, `categorical` ones one-hot encoded.", paths=("path",)),
    SourceSpec("image_folder", (P("path", "str"),),
               "one subfolder per class of PNG/JPEG/BMP/WebP images (class = folder name, sorted).", paths=("path",)),
    SourceSpec("npy", (P("x", "str"), P("y", "str?", None)), "NumPy .npy arrays (memory-mapped).", paths=("x", "y")),
    SourceSpec("npz", (P("path", "str"), P("x", "str", "x"), P("y", "str?", "y")),
               "a NumPy .npz archive: arrays named `x` and `y` (memory-mapped when stored uncompressed).",
               paths=("path",)),
    SourceSpec("table", (P("x", "any"), P("y", "any")), "data written in the spec, with netspec expressions.",
               raw=("x", "y")),
]
SOURCES = {row.name: row for row in SOURCES_LIST}


@dataclass(frozen=True)
class SettingSpec:
    key: str
    type: str
    default: object
    doc: str
    domain: str = ""


DATA_SETTINGS = [
    SettingSpec("train", "source", None, "training data source"),
    SettingSpec("test", "source", None, "test data source"),
    SettingSpec("validation", "float", 0.0, "fraction of train held out for validation (seeded)", "[0,1)"),
    SettingSpec("split", "floats?", None, "[train, validation, test] fractions of one source"),
    SettingSpec("stratify", "bool", False, "validation/split keep each class's share of the samples"),
    SettingSpec("normalize", "choice(standard,minmax,none)", "none", "input scaling; statistics from train only"),
    SettingSpec("batch_size", "int|choice(full)", 32, "samples per step (global under DDP), or `full`", "[1,inf)"),
    SettingSpec("shuffle", "bool", True, "reshuffle training data every epoch"),
    SettingSpec("one_hot", "bool", False, "turn class labels into one-hot rows (width: the class count)"),
    SettingSpec("target_type", "choice(auto,class,value)", "auto", "class labels or regression values"),
    SettingSpec("target", "choice(input)?", None, "`input`: the targets are the preprocessed inputs (autoencoders)"),
    SettingSpec("labels", "any", None, "class names, for predictions"),
    SettingSpec("subset", "int?", None, "train on N samples of the training source, drawn at random (seeded)",
                "[1,inf)"),
    SettingSpec("image_size", "int|ints?", None, "decode images to [height, width] (default: the model input's)",
                "[1,inf)"),
    SettingSpec("augment", "augments", (), "training-batch augmentation, torchvision's names"),
    SettingSpec("skip_bad", "bool", False, "skip unreadable images with a warning instead of stopping"),
]
TRAIN_SETTINGS = [
    SettingSpec("loss", "loss", "MSELoss", "torch.nn loss class"),
    SettingSpec("optimizer", "optimizer", "SGD(lr=0.01)", "torch.optim class"),
    SettingSpec("scheduler", "scheduler?", None, "torch.optim.lr_scheduler class"),
    SettingSpec("epochs", "int", 1, "passes over the training data", "[1,inf)"),
    SettingSpec("metrics", "metrics", (), "metrics reported every epoch"),
    SettingSpec("early_stopping", "early_stopping?", None, "EarlyStopping(monitor, patience, min_delta, mode)"),
    SettingSpec("l1", "float", 0.0, "extra L1 penalty on weights", "[0,inf)"),
    SettingSpec("clip_grad_norm", "float?", None, "clip the gradient norm", "(0,inf)"),
    SettingSpec("seed", "int", 0, "seed for initialisation, splits, shuffling, dropout, augmentation",
                "[0,inf)"),
    SettingSpec("device", "str", "auto", "auto | cpu | cuda | cuda:N | mps"),
    SettingSpec("precision", "choice(fp32,bf16,fp16)", "fp32", "autocast precision (fp16 with loss scaling)"),
    SettingSpec("compile", "bool", False, "torch.compile, after checking its gradients against eager"),
    SettingSpec("sync_batchnorm", "bool", True, "under DDP: BatchNorm statistics across processes"),
    SettingSpec("checkpoint_every", "int", 1, "epochs between checkpoints", "[1,inf)"),
    SettingSpec("save", "choice(best,last)", "best", "which epoch's weights model.pt holds"),
    SettingSpec("log", "logs", ("csv",), "where metrics go: csv (metrics.csv), tensorboard"),
    SettingSpec("log_every", "int", 50, "steps between step-level log entries (tensorboard)", "[1,inf)"),
]
EXPORT_SETTINGS = [
    SettingSpec("onnx", "str?", None, "output path of the ONNX file"),
    SettingSpec("opset", "int", 18, "ONNX opset version", "[9,23]"),
    SettingSpec("tolerance", "float", 1e-4, "max torch vs onnxruntime difference (relative where |output| > 1)",
                "(0,inf)"),
]
SECTIONS = {"data": DATA_SETTINGS, "train": TRAIN_SETTINGS, "export": EXPORT_SETTINGS}
LOGS = ("csv", "tensorboard")

def lower_is_better(key: str) -> bool:
    """Whether a reported value (`loss`, `val_mae`, `test_accuracy`, ...) improves downwards."""
    base = key.removeprefix("val_").removeprefix("test_")
    return base in ("loss", "mae", "mse", "rmse")


EARLY_STOPPING: tuple[P, ...] = (P("monitor", "str", "val_loss"), P("patience", "int", 3), P("min_delta", "float", 0.0),
                  P("mode", "choice(auto,min,max)", "auto"))

# names that can be `call`ed in the `table(...)` expression language
TABLE_FUNCTIONS = ("linspace", "arange", "normal", "uniform", "sin", "cos", "tan", "exp", "log", "sqrt", "abs",
                   "tanh", "sigmoid", "range", "zeros", "ones", "stack", "concat", "reshape", "round", "floor",
                   "randint", "sum", "mean", "cumsum", "flip", "min", "max")
CONSTANTS = {"pi": math.pi, "e": math.e}


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
        k = _tuple(a["kernel_size"], nd)
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
    shape = tuple(_tuple(a["normalized_shape"], 1))
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


_WEIGHTS: dict[str, Callable[[dict], list]] = {
    "MultiheadAttention": _w_attention,
    "TransformerEncoderLayer": _w_encoder,
    "PositionalEmbedding": lambda a: [("weight", (a["max_len"], a["features"]))],
    "Linear": _w_linear,
    "Bilinear": _w_bilinear,
    "Embedding": lambda a: [("weight", (a["num_embeddings"], a["embedding_dim"]))],
    "PReLU": lambda a: [("weight", (a["num_parameters"],))],
    "LayerNorm": _w_layernorm,
    "GroupNorm": _w_affine("num_channels", "affine"),
    "RNN": _w_rnn(1),
    "LSTM": _w_rnn(4),
    "GRU": _w_rnn(3),
}
for _nd in (1, 2, 3):
    _WEIGHTS[f"Conv{_nd}d"] = _w_conv(_nd, False)
    _WEIGHTS[f"ConvTranspose{_nd}d"] = _w_conv(_nd, True)
    _WEIGHTS[f"BatchNorm{_nd}d"] = _w_affine("num_features", "affine")
    _WEIGHTS[f"InstanceNorm{_nd}d"] = _w_affine("num_features", "affine")

for _name, _fn in _WEIGHTS.items():
    object.__setattr__(LAYERS[_name], "weights", _fn)


def parameter_shapes(layer: str, kwargs: dict) -> list:
    fn = LAYERS[layer].weights
    return fn(kwargs) if fn else []


# Domains by convention for the training objects (as NAME_DOMAINS for layers).
ARG_DOMAINS = {
    "lr": NONNEG, "momentum": NONNEG, "weight_decay": NONNEG, "eps": NONNEG, "lr_decay": NONNEG,
    "initial_accumulator_value": NONNEG, "rho": "[0,1]", "step_sizes": NONNEG, "lambd": NONNEG, "t0": NONNEG,
    "max_iter": "[1,inf)", "max_eval": "[1,inf)", "tolerance_grad": NONNEG, "tolerance_change": NONNEG,
    "history_size": "[1,inf)", "momentum_decay": NONNEG,
    "step_size": "[1,inf)", "gamma": POS, "milestones": NONNEG, "total_iters": "[1,inf)",
    "start_factor": "(0,1]", "end_factor": "[0,1]", "T_max": "[1,inf)", "T_0": "[1,inf)", "T_mult": "[1,inf)",
    "eta_min": NONNEG, "base_lr": NONNEG, "max_lr": NONNEG, "step_size_up": "[1,inf)", "step_size_down": "[1,inf)",
    "pct_start": "[0,1]", "div_factor": POS, "final_div_factor": POS, "patience": NONNEG, "threshold": NONNEG,
    "cooldown": NONNEG, "min_lr": NONNEG, "total_steps": "[1,inf)",
    "label_smoothing": "[0,1]", "beta": NONNEG, "delta": POS, "pos_weight": NONNEG,
    "std": NONNEG, "min_delta": NONNEG, "k": "[1,inf)",
}


def _arg_domains(params: tuple[P, ...]) -> tuple[P, ...]:
    from dataclasses import replace

    return tuple(p if p.domain or p.name not in ARG_DOMAINS else replace(p, domain=ARG_DOMAINS[p.name])
                 for p in params)


def _rows_with_domains(rows: list) -> None:
    from dataclasses import replace

    rows[:] = [replace(r, params=_arg_domains(r.params)) for r in rows]


for _rows in (OPTIMIZERS_LIST, SCHEDULERS_LIST, LOSSES_LIST, INITIALISERS_LIST, METRICS_LIST):
    _rows_with_domains(_rows)
OPTIMIZERS.update((r.name, r) for r in OPTIMIZERS_LIST)
SCHEDULERS.update((r.name, r) for r in SCHEDULERS_LIST)
LOSSES.update((r.name, r) for r in LOSSES_LIST)
INITIALISERS.update((r.name, r) for r in INITIALISERS_LIST)
METRICS.update((r.name, r) for r in METRICS_LIST)
EARLY_STOPPING = _arg_domains(EARLY_STOPPING)

ALL_KINDS: dict[str, dict[str, Any]] = {
    "layer": LAYERS,
    "loss": LOSSES,
    "optimizer": OPTIMIZERS,
    "scheduler": SCHEDULERS,
    "initialiser": INITIALISERS,
    "metric": METRICS,
    "source": SOURCES,
    "branch construct": BRANCHES,
    "augmentation": AUGMENTS,
}
