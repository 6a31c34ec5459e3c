"""`netspec export` and `netspec eval MODEL.onnx`: ONNX out of torch, verified.

In: a checked spec and trained weights (default runs/<model>/model.pt).
Out: an .onnx file with dynamic batch (and `_`) axes, `onnx.checker` full check passed,
outputs matching onnxruntime within tolerance on random and real inputs, and
metadata_props (netspec version, spec hash, input shape, labels, preprocessing) so
`netspec predict` needs nothing but the file. Written atomically; a failed
verification leaves nothing behind.
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np
import torch

from . import __version__, ir, load
from .build import example_input
from .errors import Diagnostic, ExportError, NetspecError
from .util import atomic_write

INPUT, OUTPUT = "input", "output"


def dynamic_axes(model: ir.CheckedModel) -> dict[str, dict[int, str]]:
    inp = {0: "batch", **{i + 1: f"dim{i + 1}" for i, d in enumerate(model.input_shape) if d is None}}
    out = {0: "batch", **{i + 1: f"out_dim{i + 1}" for i, d in enumerate(model.output_shape) if d is None}}
    return {INPUT: inp, OUTPUT: out}


def export_model(checked: ir.CheckedSpec, net: torch.nn.Module, path: str | Path, *, opset: int = 18,
                 tolerance: float = 1e-4, metadata: dict | None = None,
                 real_inputs: np.ndarray | None = None) -> dict:
    """Export `net`, verify against onnxruntime, write atomically. Returns the parity report."""
    import onnx

    problems = []
    from .catalogue import onnx_problem
    from .check import flat_layers

    for layer in flat_layers(checked.model):
        reason = onnx_problem(layer.type, dict(layer.kwargs), layer.in_shape)
        if reason:
            problems.append(Diagnostic(f"cannot export to ONNX: {reason}", layer.span))
    if problems:
        raise ExportError(problems)
    net = net.eval().cpu()
    model = checked.model
    exported = lower_for_onnx(net, model)
    sample = example_input(model, batch=2, dynamic=5)
    report: dict = {}

    def write(tmp: str) -> None:
        fastpath = torch.backends.mha.get_fastpath_enabled()
        # attention layers' inference fast path is a fused op torch.onnx cannot export
        torch.backends.mha.set_fastpath_enabled(False)
        with warnings.catch_warnings(), torch.no_grad():
            warnings.simplefilter("ignore")
            try:
                torch.onnx.export(exported, (sample,), tmp, input_names=[INPUT], output_names=[OUTPUT],
                                  dynamic_axes=dynamic_axes(model), opset_version=opset, dynamo=False)
            except Exception as e:  # noqa: BLE001 - torch raises many types; report them as export errors
                raise ExportError(Diagnostic(f"torch.onnx.export failed: {type(e).__name__}: {str(e).splitlines()[0]}",
                                             model.span)) from None
            finally:
                torch.backends.mha.set_fastpath_enabled(fastpath)
        proto = onnx.load(tmp)
        props = {"netspec_version": __version__, "model_name": model.name,
                 "input_shape": json.dumps(list(model.input_shape)),
                 "output_shape": json.dumps(list(model.output_shape)), **(metadata or {})}
        for k, v in props.items():
            entry = proto.metadata_props.add()
            entry.key, entry.value = k, v if isinstance(v, str) else json.dumps(v)
        proto.producer_name = "netspec"
        proto.doc_string = f"netspec model {model.name}"
        onnx.save(proto, tmp)
        try:
            onnx.checker.check_model(tmp, full_check=True)
        except Exception as e:  # noqa: BLE001 - onnx checker errors are user-facing export failures
            raise ExportError(Diagnostic(f"onnx.checker rejected the export: {str(e).splitlines()[0]}")) from None
        report.update(verify(net, tmp, model, tolerance, real_inputs))

    atomic_write(path, write)
    return report


def lower_for_onnx(net: torch.nn.Module, model: ir.CheckedModel) -> torch.nn.Module:
    """`net` with every layer torch.onnx cannot export swapped for the exact equivalent the
    catalogue names (a copy; `net` itself is untouched). The parity check compares the
    exported graph with the original `net`, so a lowering that were not exact would fail."""
    import copy

    from .build import _factory
    from .catalogue import LAYERS, needs_lowering
    from .check_model import children

    swaps = []

    def walk(node: ir.Node, prefix: str) -> None:
        for c in children(node):
            path = f"{prefix}{c.name}"
            if isinstance(c, ir.LayerNode):
                kwargs = dict(c.kwargs)
                if needs_lowering(c.type, kwargs, c.in_shape):
                    factory = _factory(LAYERS[c.type].onnx_lowering)
                    swaps.append((path, factory.from_layer(c.type, kwargs, c.in_shape)))
            else:
                walk(c, path + ".")

    walk(model.root, "")
    if not swaps:
        return net
    lowered = copy.deepcopy(net)
    for path, module in swaps:
        lowered.set_submodule(path, module)
    return lowered.eval()


def verify(net: torch.nn.Module, onnx_path: str, model: ir.CheckedModel, tolerance: float,
           real_inputs: np.ndarray | None) -> dict:
    import onnxruntime as ort

    session = ort.InferenceSession(onnx_path, providers=["CPUExecutionProvider"])
    batches = [example_input(model, batch=3, dynamic=5, seed=1), example_input(model, batch=1, dynamic=9, seed=2)]
    if real_inputs is not None and len(real_inputs):
        batches.append(torch.from_numpy(np.ascontiguousarray(real_inputs)))
    worst_abs = worst_rel = worst_scaled = 0.0
    for x in batches:
        with torch.inference_mode():
            want = net(x).float().numpy()
        try:
            got = session.run([OUTPUT], {INPUT: x.numpy()})[0]
        except Exception as e:  # noqa: BLE001 - onnxruntime's own exception types; the export is wrong
            raise ExportError(Diagnostic(f"onnxruntime failed on an input of shape {list(x.shape)}: "
                                         f"{str(e).splitlines()[0]}", model.span)) from None
        if got.shape != want.shape:
            raise ExportError(Diagnostic(f"onnxruntime output shape {list(got.shape)} differs from torch's "
                                         f"{list(want.shape)}"))
        diff = np.abs(got.astype(np.float64) - want)
        worst_abs = max(worst_abs, float(diff.max(initial=0.0)))
        worst_rel = max(worst_rel, float((diff / (np.abs(want) + 1e-6)).max(initial=0.0)))
        # absolute for outputs up to 1 in size, relative beyond (float32 keeps ~7 digits)
        worst_scaled = max(worst_scaled, float((diff / np.maximum(1.0, np.abs(want))).max(initial=0.0)))
    report = {"max_abs_diff": worst_abs, "max_rel_diff": worst_rel, "inputs_checked": sum(len(b) for b in batches)}
    if not worst_scaled <= tolerance:
        raise ExportError(Diagnostic(
            f"onnxruntime disagrees with torch: max difference {worst_scaled:.3g} (absolute, relative for "
            f"|outputs| > 1) > tolerance {tolerance:g}; max abs difference {worst_abs:.3g}",
            help="the export was not written; raise `tolerance` in the export section only if the difference "
                 "is acceptable"))
    return report


def _metadata_for(checked: ir.CheckedSpec, weights: Path) -> tuple[dict, np.ndarray | None]:
    """ONNX metadata (the run's preprocessing, spec hash, labels, task) and a few real inputs,
    normalised exactly as in training, for the parity check."""
    from .data import loss_target, prepare
    from .train import run_checkpoint

    stats, spec_hash = run_checkpoint(weights)
    meta: dict = {"preprocessing": stats or {"normalize": "none"}, "spec_hash": spec_hash,
                  "loss": checked.train.loss.name}
    real = None
    if checked.data is not None and checked.data.train is not None:
        meta["task"] = loss_target(checked)
        try:
            data = prepare(checked, allow_download=False, stats=stats)
        except NetspecError:
            data = None  # no data at hand: random inputs only
        if data is not None:
            meta["preprocessing"] = data.preprocessing
            real = (data.test or data.val or data.train)[0][:64]
            if data.labels:
                meta["labels"] = list(data.labels)
    return meta, real


def export_file(path: str, output: str | None = None, weights: str | None = None, opset: int | None = None,
                tolerance: float | None = None, overrides: tuple[str, ...] = ()) -> dict:
    from .train import trained_model

    checked = load(path, overrides, target="onnx")
    model = checked.model
    net, weights_path = trained_model(checked, weights, path)
    out = Path(output or checked.export.onnx or f"{model.name}.onnx")
    meta, real = _metadata_for(checked, weights_path)
    meta["input_dtype"] = "int64" if example_input(model).dtype == torch.long else "float32"
    report = export_model(checked, net, out, opset=opset or checked.export.opset,
                          tolerance=tolerance if tolerance is not None else checked.export.tolerance,
                          metadata={k: (v if isinstance(v, str) else json.dumps(v)) for k, v in meta.items()},
                          real_inputs=real)
    print(f"exported {out} (opset {opset or checked.export.opset}); verified on {report['inputs_checked']} inputs "
          f"against onnxruntime: max abs diff {report['max_abs_diff']:.2e}, max rel diff {report['max_rel_diff']:.2e}")
    return report


def evaluate_onnx(onnx_path: str, spec_file: str, overrides: tuple[str, ...] = ()) -> dict:
    """Test-split metrics computed with onnxruntime on the spec's (preprocessed) data."""

    from .data import evaluation_split, prepare
    from .metrics import compute
    from .predict import load_session

    checked = load(spec_file, overrides)
    session, meta = load_session(onnx_path)
    pre = meta.get("preprocessing")
    data = prepare(checked, stats=pre if isinstance(pre, dict) else None)
    prefix, (x, y) = evaluation_split(data, spec_file)
    outs = [session.run(None, {session.get_inputs()[0].name: x[i : i + 1024]})[0] for i in range(0, len(x), 1024)]
    res = compute(np.concatenate(outs), y, checked.train.metrics, data.task, checked.train.loss.name)
    return {f"{prefix}{k}": v for k, v in res.items()} | {"samples": len(x)}
