"""int8 exports: `export { quantize: int8 }` and `netspec export ... --quantize int8`.

In: the fp32 .onnx that export has just written and verified, the checked spec and its
prepared data. Out: NAME.int8.onnx beside the fp32 file, written atomically and only when

1. onnxruntime's quantizer made it: static QDQ (uint8 activations, int8 per-channel
   weights), calibrated on `calibration` training samples drawn with the spec's seed, in
   the graph's raw input units (the graph normalises); dynamic quantization where static
   does not apply (recurrent layers, attention), said in the report;
2. `onnx.checker` accepts it and onnxruntime loads it (a failure names the node and op);
3. the gate passes: the fp32 and int8 models' test metric, both through onnxruntime, side
   by side; int8 worse by more than `max_metric_drop` refuses the file.

Anything that fails raises an ExportError that says the fp32 file is kept. Element-wise
parity is not a criterion for int8 (its error grows with each tensor's range); the report
gives the outputs' top-1 agreement and largest difference against fp32 for the record.
The file keeps the fp32 file's metadata (labels, preprocessing, shapes) and producer
`netspec`, and adds `quantization` (a JSON object: mode, format, calibration, the gate).

    report = quantize_export(checked, data, "mnist.onnx", "mnist.int8.onnx", calibration=512,
                             max_drop=0.01, tell=print)
    print(quantized_line(report))
"""

from __future__ import annotations

import json
import logging
import os
import re
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np

from netspec import ir
from netspec.errors import NO_SPAN, Diagnostic, ExportError, NetspecError, Span, Tell
from netspec.util import atomic_write

# The ops whose weights and arithmetic int8 shrinks and speeds up.
STATIC_OPS = ("Conv", "ConvTranspose", "Gemm", "MatMul")
# Ops that pass int8 through unchanged: quantizing them too leaves no dequantize/quantize pair
# between two int8 kernels (without them a CNN gets smaller but not faster).
PASS_THROUGH = ("Relu", "Clip", "MaxPool", "AveragePool", "GlobalAveragePool", "Add", "Flatten", "Reshape",
                "Transpose", "Squeeze", "Unsqueeze", "Concat")
DYNAMIC_OPS = ("MatMul", "Gemm", "LSTM", "Attention", "Gather")  # Gather: an Embedding's table
RECURRENT = ("LSTM", "GRU", "RNN")
CONTROL_FLOW = ("Loop", "Scan", "If")
CALIBRATION_BATCH = 32
REDUCE_RANGE = True  # 7-bit weights: no int16 overflow in the U8S8 kernels of CPUs without VNNI


def int8_path(fp32: str | os.PathLike) -> Path:
    """Where the int8 model of `fp32` goes: beside it, `NAME.int8.onnx`."""
    p = Path(fp32)
    return p.with_name(f"{p.stem}.int8{p.suffix or '.onnx'}")


def plan(model: Any) -> tuple[str, str]:
    """('static' | 'dynamic' | 'none', why), read from the fp32 graph alone."""
    g = model.graph
    inits = {i.name: i for i in g.initializer}
    consts = set(inits) | {o for n in g.node if n.op_type == "Constant" for o in n.output}
    ops = {n.op_type for n in g.node}

    def nbytes(name: str) -> int:
        return int(np.prod(inits[name].dims)) * 4 if name in inits else 0

    if ops & set(CONTROL_FLOW):
        return "dynamic", f"the graph has control flow ({', '.join(sorted(ops & set(CONTROL_FLOW)))})"
    if ops & set(RECURRENT):
        return "dynamic", f"recurrent layers ({', '.join(sorted(ops & set(RECURRENT)))}) have no static int8 kernel"
    if ops & {"Attention", "MultiHeadAttention"}:
        return "dynamic", "attention has no static int8 kernel"
    activation_matmuls = [n for n in g.node if n.op_type == "MatMul" and not set(n.input) & consts]
    if activation_matmuls and "Softmax" in ops:  # attention as torch.onnx writes it
        return "dynamic", "attention (activation x activation MatMul with Softmax) has no static int8 kernel"
    weights = sum(nbytes(n.input[1]) for n in g.node if n.op_type in STATIC_OPS and len(n.input) > 1)
    total = sum(nbytes(name) for name in inits)
    if weights == 0:
        return "none", "the model has no Conv, Gemm or MatMul with weights: there is nothing int8 would shrink"
    share = 100 * weights / max(total, 1)
    if weights < 0.5 * total:
        return "dynamic", f"only {share:.0f}% of the weights are in Conv/Gemm/MatMul"
    return "static", f"{share:.0f}% of the weights are in Conv/Gemm/MatMul"


def calibration_samples(checked: ir.CheckedSpec, data: Any, wanted: int) -> np.ndarray:
    """`wanted` training samples (all there are, if fewer), drawn with the spec's seed, as the
    exported graph takes them: raw units (images in [0, 1]), before normalisation."""
    import torch

    from netspec.data.loader import Loader, to_units

    split = data.train
    rng = np.random.default_rng(checked.train.seed)
    idx = np.sort(rng.choice(len(split), size=min(wanted, len(split)), replace=False))
    xb, _ = Loader(split, data.pre, torch.device("cpu"), resident=False).fetch(idx)
    return np.ascontiguousarray(to_units(xb, data.pre).numpy())


def _reader(feed: Callable[[np.ndarray], dict], x: np.ndarray) -> Any:
    from onnxruntime.quantization import CalibrationDataReader

    class Reader(CalibrationDataReader):
        def __init__(self) -> None:
            self.batches: Iterator[dict] = iter(())
            self.rewind()

        def get_next(self) -> dict | None:
            return next(self.batches, None)

        def rewind(self) -> None:
            self.batches = (feed(x[i:i + CALIBRATION_BATCH]) for i in range(0, len(x), CALIBRATION_BATCH))

    return Reader()


def failing_node(message: str, proto: Any | None = None) -> str | None:
    """'NAME (OpType)' of the node an onnxruntime message names, if it names one."""
    for pattern in (r"node with name '([^']*)'", r"in node \(([^)]*)\)", r'In Node, \("([^"]*)"',
                    r"Name:'([^']*)'", r"node name: ([^)]*)\)"):
        m = re.search(pattern, message)
        if m:
            name = m.group(1)
            ops = [n.op_type for n in proto.graph.node if n.name == name] if proto is not None else []
            return f"{name} ({ops[0]})" if ops else name
    m = re.search(r"([A-Za-z]\w*)\(-?\d+\) is not a registered", message)  # an op with no kernel, no node named
    if m:
        names = [n.name for n in proto.graph.node if n.op_type == m.group(1)] if proto is not None else []
        return f"{names[0]} ({m.group(1)})" if names else m.group(1)
    return None


def _quiet_quantizer() -> Callable[[], None]:
    """onnxruntime's quantizer logs advice ("consider pre-processing") on the root logger."""
    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.ERROR)
    return lambda: root.setLevel(level)


def inline_constant_identities(proto: Any) -> int:
    """Identity nodes that copy a weight become weights themselves. torch.onnx shares equal
    constants this way (the zero biases of BatchNorms folded into convolutions at
    initialisation); a Conv whose bias is not a weight keeps its bias in float, so
    onnxruntime cannot fuse it into one int8 kernel. Returns how many were inlined."""
    import onnx

    inits = {i.name: i for i in proto.graph.initializer}
    outputs = {o.name for o in proto.graph.output}
    inlined = [n for n in proto.graph.node if n.op_type == "Identity" and len(n.input) == 1
               and n.input[0] in inits and n.output[0] not in outputs]
    for node in inlined:
        copy = onnx.TensorProto()
        copy.CopyFrom(inits[node.input[0]])
        copy.name = node.output[0]
        proto.graph.initializer.append(copy)
        proto.graph.node.remove(node)
    return len(inlined)


def quantize_graph(src: str, dst: str, mode: str, calib: np.ndarray | None,
                   feed: Callable[[np.ndarray], dict]) -> None:
    """onnxruntime's static (QDQ, per-channel, U8S8) or dynamic quantizer, `src` -> `dst`."""
    import onnx
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_dynamic, quantize_static

    model = onnx.load(src)
    restore = _quiet_quantizer()
    with tempfile.TemporaryDirectory(prefix="netspec-int8-") as work:
        if inline_constant_identities(model):
            src = os.path.join(work, "fp32.onnx")  # a path, which every onnxruntime >= 1.17 takes
            onnx.save(model, src)
        try:
            if mode == "static":
                assert calib is not None
                quantize_static(src, dst, _reader(feed, calib), quant_format=QuantFormat.QDQ,
                                op_types_to_quantize=[*STATIC_OPS, *PASS_THROUGH], per_channel=True,
                                reduce_range=REDUCE_RANGE, activation_type=QuantType.QUInt8,
                                weight_type=QuantType.QInt8, calibrate_method=CalibrationMethod.MinMax)
            else:
                quantize_dynamic(src, dst, weight_type=QuantType.QInt8, per_channel=True,
                                 reduce_range=REDUCE_RANGE, op_types_to_quantize=list(DYNAMIC_OPS))
        finally:
            restore()


def carry_metadata(proto: Any, fp32: Any, info: dict) -> None:
    """The quantizer keeps metadata_props but writes its own producer: put netspec's back
    (so netspec recognises its file) and record how the model was quantized."""
    proto.producer_name, proto.producer_version = fp32.producer_name, fp32.producer_version
    proto.doc_string = f"{fp32.doc_string} (int8)"
    have = {p.key for p in proto.metadata_props}
    for p in fp32.metadata_props:
        if p.key not in have:
            proto.metadata_props.add(key=p.key, value=p.value)
    for p in [p for p in proto.metadata_props if p.key == "quantization"]:
        proto.metadata_props.remove(p)
    proto.metadata_props.add(key="quantization", value=json.dumps(info))


def gate_metric(checked: ir.CheckedSpec, results: dict) -> str:
    """The metric the gate compares: the spec's first reported metric, else the loss."""
    from netspec.train.metrics import metric_key

    for key in [*(metric_key(m) for m in checked.train.metrics), "loss"]:
        if key in results:
            return key
    raise ExportError(Diagnostic("quantize: int8: the evaluation reported no metric to compare"))


def metric_drop(key: str, fp32: float, int8: float) -> tuple[float, bool]:
    """(how much worse int8 is, whether that is a fraction of fp32's value): points of the
    metric where higher is better (accuracy, f1, r2...); for losses and errors (loss, mae,
    mse, rmse), whose scale is the data's, the increase as a fraction of fp32's value."""
    from netspec.catalogue.training import lower_is_better

    if lower_is_better(key):
        return (int8 - fp32) / max(abs(fp32), 1e-12), True
    return fp32 - int8, False


def _fail(message: str, fp32: Path, span: Span = NO_SPAN, help: str | None = None) -> ExportError:
    return ExportError(Diagnostic(f"{message}; the int8 model was not written, the verified fp32 model {fp32} "
                                  "is kept", span, "error", help))


def quantize_export(checked: ir.CheckedSpec, data: Any, fp32: str | os.PathLike, out: str | os.PathLike, *,
                    calibration: int, max_drop: float, span: Span = NO_SPAN, tell: Tell | None = None,
                    source: str = "") -> dict:
    """Quantize the verified fp32 model `fp32` to `out` (see the module docstring)."""
    import onnx

    from netspec.data.prepare import evaluation_split
    from netspec.deploy.evaluate import onnx_metrics
    from netspec.deploy.runtime import feeds, open_session

    fp32, out = Path(fp32), Path(out)
    fp32_proto = onnx.load(str(fp32))
    mode, why = plan(fp32_proto)
    if mode == "none":
        raise _fail(f"nothing to quantize: {why}", fp32, span, "deploy the fp32 model")
    prefix, split = evaluation_split(data, source or checked.spec.file)
    fp32_session = open_session(str(fp32))
    calib = None
    if mode == "static":
        calib = calibration_samples(checked, data, calibration)
        if len(calib) < calibration and tell is not None:
            tell(f"calibration: {calibration} samples asked, the training split has {len(calib)}; "
                 f"calibrating on all {len(calib)}")
    report: dict = {"int8_output": str(out), "mode": mode, "why": why, "fp32_output": str(fp32),
                    "calibration_samples": 0 if calib is None else len(calib), "calibration_asked": calibration,
                    "max_metric_drop": max_drop}

    def write(tmp: str) -> None:
        try:
            quantize_graph(str(fp32), tmp, mode, calib, lambda x: feeds(fp32_session, x))
        except Exception as e:  # noqa: BLE001 - the quantizer raises anything from ValueError to ORT's own types
            msg = str(e).splitlines()[0][:300] if str(e) else type(e).__name__
            node = failing_node(str(e), fp32_proto)
            raise _fail("onnxruntime's quantizer failed" + (f" at node {node}" if node else "")
                        + f": {type(e).__name__}: {msg}", fp32) from None
        proto = onnx.load(tmp)
        info = {"mode": mode, "reason": why, "format": "QDQ" if mode == "static" else "QOperator",
                "weights": "int8 per-channel" + (", 7-bit range" if REDUCE_RANGE else ""),
                "activations": "uint8, calibrated (MinMax)" if mode == "static" else "uint8, quantized at run time",
                "calibration_samples": report["calibration_samples"], "calibration_seed": checked.train.seed}
        carry_metadata(proto, fp32_proto, info)
        onnx.save(proto, tmp)
        try:
            onnx.checker.check_model(tmp, full_check=True)
        except Exception as e:  # noqa: BLE001 - onnx.checker's error types
            node = failing_node(str(e), proto)
            raise _fail("onnx.checker rejected the int8 model" + (f" at node {node}" if node else "")
                        + f": {str(e).splitlines()[0][:300]}", fp32) from None
        try:
            int8_session = open_session(tmp)
        except Exception as e:  # noqa: BLE001 - onnxruntime_pybind11_state.{InvalidGraph,NotImplemented,Fail}
            node = failing_node(str(e), proto)
            raise _fail("onnxruntime cannot load the int8 model" + (f": node {node}" if node else "")
                        + f" ({str(e).splitlines()[0][:300]})", fp32) from None
        try:
            results, compared = onnx_metrics(checked, data, split, {str(fp32): fp32_session, str(out): int8_session})
        except NetspecError as e:
            node = failing_node(e.diagnostics[0].message, proto)
            raise _fail("the int8 model does not run" + (f" (node {node})" if node else "") + ": "
                        + e.diagnostics[0].message, fp32) from None
        base, quant = results
        name = gate_metric(checked, base)
        key = prefix + name
        drop, relative = metric_drop(name, base[name], quant[name])
        report.update(metric=key, fp32=base[name], int8=quant[name], drop=drop, relative=relative, **compared)
        info["gate"] = {"metric": key, "fp32": base[name], "int8": quant[name], "max_metric_drop": max_drop,
                        "relative": relative, "samples": len(split)}
        if not drop <= max_drop:  # NaN included
            limit = f"{max_drop:g}" + (f" ({100 * max_drop:g}% of fp32's value)" if relative else "")
            earlier = f" ({out} is from an earlier export)" if out.exists() else ""
            raise _fail(f"int8 {key} {_fmt_metric(quant[name])} vs fp32 {_fmt_metric(base[name])}: "
                        f"{_fmt_drop(drop, relative)} worse, more than max_metric_drop {limit}{earlier}", fp32, span,
                        "raise `max_metric_drop` (or --max-metric-drop) if that loss is acceptable"
                        + (", or calibrate on more samples (`calibration`)" if mode == "static" else ""))
        carry_metadata(proto, fp32_proto, info)
        onnx.save(proto, tmp)
        report["fp32_weight_share"] = float_weight_share(proto)

    atomic_write(out, write)
    report["fp32_bytes"], report["int8_bytes"] = fp32.stat().st_size, out.stat().st_size
    return report


def float_weight_share(proto: Any) -> float:
    """The share of a model's weight bytes that are still float (layers int8 left alone)."""
    from onnx import TensorProto, numpy_helper

    floats = total = 0
    for init in proto.graph.initializer:
        n = numpy_helper.to_array(init).nbytes
        total += n
        floats += n if init.data_type in (TensorProto.FLOAT, TensorProto.DOUBLE, TensorProto.FLOAT16) else 0
    return floats / total if total else 0.0


def _fmt_metric(v: float) -> str:
    return f"{v:.4f}" if abs(v) < 1000 else f"{v:.4g}"


def _fmt_drop(drop: float, relative: bool) -> str:
    """A (non-negative) difference: points of the metric, or a percentage of fp32's value."""
    return f"{100 * drop:.2f}%" if relative else f"{drop:.4f}"


def _size(n: int) -> str:
    return f"{n / 1e6:.2f} MB" if n >= 1e5 else f"{n / 1e3:.1f} KB"


def quantized_line(r: dict) -> str:
    """What `netspec export` says about a finished int8 model."""
    how = ("static int8 (QDQ: int8 per-channel weights, uint8 activations), calibrated on "
           f"{r['calibration_samples']} training samples"
           + (f" (all there are; {r['calibration_asked']} asked)" if r["calibration_samples"] < r["calibration_asked"]
              else "")
           if r["mode"] == "static" else
           f"dynamic int8 (int8 weights, activations quantized at run time), not static: {r['why']}")
    drop = r["drop"]
    worse = (f"{_fmt_drop(drop, r['relative'])} worse" if drop > 0 else
             "no worse" if drop == 0 else f"{_fmt_drop(-drop, r['relative'])} better")
    limit = f"{100 * r['max_metric_drop']:g}%" if r["relative"] else f"{r['max_metric_drop']:g}"
    ratio = r["int8_bytes"] / max(r["fp32_bytes"], 1)
    agree = f"; top-1 agreement with fp32 {100 * r['agreement']:.2f}%" if r.get("agreement") is not None else ""
    share = r.get("fp32_weight_share", 0.0)
    note = f" ({100 * share:.0f}% of the weight bytes stay fp32: layers int8 leaves as they are)" if share > 0.5 else ""
    return (f"quantized {r['int8_output']}: {how}; {r['metric']} fp32 {_fmt_metric(r['fp32'])}, "
            f"int8 {_fmt_metric(r['int8'])} ({worse}; max_metric_drop {limit}){agree}; "
            f"{_size(r['fp32_bytes'])} -> {_size(r['int8_bytes'])} ({100 * ratio:.0f}%){note}")
