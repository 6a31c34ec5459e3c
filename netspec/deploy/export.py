"""`netspec export` and `netspec eval MODEL.onnx`: ONNX out of torch, verified.

In: a checked spec and trained weights (default runs/<model>/model.pt).
Out: an .onnx file with dynamic batch (and `_`) axes, `onnx.checker` full check passed,
outputs matching onnxruntime within tolerance on random and real inputs, and
metadata_props (netspec version, spec hash, input shape, labels, preprocessing) so
`netspec predict` needs nothing but the file. Written atomically; a failed
verification leaves nothing behind. This is the torch side; sessions are runtime.py's.
"""

from __future__ import annotations

import io
import json
import math
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from netspec import __version__, ir, load
from netspec.data.prepare import Preprocessing
from netspec.deploy.runtime import INPUT, MASK, OUTPUT, load_session, open_session, run_session
from netspec.errors import NO_SPAN, Diagnostic, ExportError, NetspecError, Tell, error, printable, shell_command
from netspec.outputs import Refusals, check_output_file, check_replaceable
from netspec.util import atomic_write


class Graph(torch.nn.Module):
    """What an exported file computes: the input transform (normalisation with the
    training statistics, reshape) and then the model, so plain onnxruntime takes raw
    inputs (images scaled to [0, 1], CSV rows as numbers) and answers as `predict` does."""

    def __init__(self, transform: torch.nn.Module, model: torch.nn.Module, target: torch.nn.Module | None = None):
        super().__init__()
        self.transform = transform
        self.model = model
        self.target = target  # normalize_target: outputs back in the target's units

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.model(self.transform(x))
        return out if self.target is None else self.target(out)


class TextGraph(Graph):
    """The graph of a model of texts: token ids [batch, steps], right-padded with 0, and their
    mask (1 at tokens, 0 at padding; the first step always counts, so an empty text is one
    padding token)."""

    def forward(self, ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        first = torch.arange(ids.shape[1], device=ids.device) == 0
        out = self.model(self.transform(ids), (mask != 0) | first)
        return out if self.target is None else self.target(out)


def text_batches(vocab: int, seed: int, longest: int = 40) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """(ids, mask) batches of random texts of several lengths, among them texts alone and an
    empty one, padded to several widths up to `longest`: an export must hold at every length."""
    g = torch.Generator().manual_seed(seed)
    out = []
    for lengths, width in (([3, 1, 7], 7), ([1], 1), ([12, 0, 2, 5], 12), ([5], 30), ([33, 17, 1], 40)):
        width = min(width, longest)
        lengths = [min(n, width) for n in lengths]
        ids = torch.zeros(len(lengths), width, dtype=torch.long)
        for i, n in enumerate(lengths):
            ids[i, :n] = torch.randint(1, max(vocab, 2), (n,), generator=g)
        out.append((ids, (ids != 0).long()))
    return out


def graph_input(checked: ir.CheckedSpec, pre: Preprocessing) -> tuple[tuple, bool]:
    """(per-sample input shape of the exported graph, `_` dims as None; whether it takes token ids)."""
    model_in = tuple(checked.model.input_shape)
    source = tuple(pre.source_shape) or model_in
    if len(source) == len(model_in):
        source = tuple(None if m is None else s for s, m in zip(source, model_in))
    return source, pre.tokens


def sample_input(shape: tuple, tokens: int | None, batch: int, dynamic: int, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    full = (batch, *(dynamic if d is None else d for d in shape))
    if tokens:
        return torch.randint(0, tokens, full, generator=g)
    return torch.rand(full, generator=g)


def default_preprocessing(checked: ir.CheckedSpec) -> Preprocessing:
    """No data at hand: the graph takes model inputs as they are."""
    from netspec.data.prepare import takes_tokens

    shape = [d for d in checked.model.input_shape]
    return Preprocessing(source_shape=shape, input_shape=shape, tokens=takes_tokens(checked))


def export_model(checked: ir.CheckedSpec, net: torch.nn.Module, path: str | Path, *, opset: int = 18,
                 tolerance: float = 1e-4, metadata: dict | None = None, real_inputs: np.ndarray | None = None,
                 pre: Preprocessing | None = None) -> dict:
    """Export the graph (input transform + `net`), verify it against onnxruntime, write it
    atomically. Returns the parity report."""
    import onnx

    from netspec.catalogue import onnx_problem
    from netspec.train.evaluate import build_target_scale, build_transform

    problems = []
    for layer in ir.layers(checked.model.root):
        reason = onnx_problem(layer.type, dict(layer.kwargs), layer.in_shape)
        if reason:
            problems.append(Diagnostic(f"cannot export to ONNX: {reason}", layer.span))
    if problems:
        raise ExportError(problems)
    pre = pre or default_preprocessing(checked)
    model = checked.model
    net = net.eval().cpu()
    transform = build_transform(pre).eval()
    target = build_target_scale(pre)
    texts = model.padded
    kind = TextGraph if texts else Graph
    graph = kind(transform, net, target).eval()
    exported = kind(transform, lower_for_onnx(net, model), target).eval()
    shape, tokens = graph_input(checked, pre)
    vocab = _vocabulary(checked) if tokens else None
    longest = _longest_text(model, pre)
    sample: tuple = text_batches(vocab or 2, 0, longest)[0] if texts else (sample_input(shape, vocab, 2, 5, 0),)
    names = [INPUT, MASK] if texts else [INPUT]
    axes = {INPUT: {0: "batch", **{i + 1: f"dim{i + 1}" for i, d in enumerate(shape) if d is None}},
            OUTPUT: {0: "batch", **{i + 1: f"out_dim{i + 1}" for i, d in enumerate(model.output_shape) if d is None}}}
    if texts:
        axes[INPUT] = axes[MASK] = {0: "batch", 1: "steps"}
    report: dict = {}

    def write(tmp: str) -> None:
        fastpath = torch.backends.mha.get_fastpath_enabled()
        # attention layers' inference fast path is a fused op torch.onnx cannot export
        torch.backends.mha.set_fastpath_enabled(False)
        with warnings.catch_warnings(), torch.no_grad():
            warnings.simplefilter("ignore")
            # into memory, then written by Python: a path of any bytes (torch's C++ takes UTF-8
            # only), and a full disk arrives as the OSError it is
            exported_bytes = io.BytesIO()
            try:
                # the TorchScript exporter (dynamo=False) writes to a file object too (its _export_file
                # takes `io.BytesIO | str`); the public annotation names paths only
                torch.onnx.export(exported, sample, exported_bytes,  # type: ignore[arg-type]
                                  input_names=names, output_names=[OUTPUT],
                                  dynamic_axes=axes, opset_version=opset, dynamo=False)
            except Exception as e:  # noqa: BLE001 - torch raises many types; report them as export errors
                raise ExportError(Diagnostic(f"torch.onnx.export failed: {type(e).__name__}: {str(e).splitlines()[0]}",
                                             model.span)) from None
            finally:
                torch.backends.mha.set_fastpath_enabled(fastpath)
        proto = onnx.load_from_string(exported_bytes.getvalue())
        props = {"netspec_version": __version__, "model_name": model.name,
                 "input_shape": json.dumps(list(shape)),
                 "model_input_shape": json.dumps(list(model.input_shape)),
                 "output_shape": json.dumps(list(model.output_shape)),
                 "preprocessing": json.dumps(pre.to_json()), **(metadata or {})}
        for k, v in props.items():
            entry = proto.metadata_props.add()
            entry.key, entry.value = k, v if isinstance(v, str) else json.dumps(v)
        proto.producer_name = "netspec"
        proto.doc_string = f"netspec model {model.name}"
        with open(tmp, "wb") as f:
            f.write(proto.SerializeToString())
        try:
            onnx.checker.check_model(proto, full_check=True)
        except Exception as e:  # noqa: BLE001 - onnx checker errors are user-facing export failures
            raise ExportError(Diagnostic(f"onnx.checker rejected the export: {str(e).splitlines()[0]}")) from None
        batches: list = text_batches(vocab or 2, 1, longest) if texts else \
            [sample_input(shape, vocab, 3, 5, 1), sample_input(shape, vocab, 1, 9, 2)]
        if real_inputs is not None and len(real_inputs):
            real = torch.from_numpy(np.ascontiguousarray(real_inputs))
            batches.append((real, (real != 0).long()) if texts else real)
        report.update(verify(graph, tmp, batches, tolerance))
        if texts:
            report["padding_invariance"] = padding_invariance(tmp, batches)

    atomic_write(path, write)
    return report


def _longest_text(model: ir.CheckedModel, pre: Preprocessing) -> int:
    """The most steps a model of texts takes: max_len, and no more than its PositionalEmbeddings hold."""
    limits = [int(dict(n.kwargs)["max_len"]) for _, n in ir.walk(model.root)
              if isinstance(n, ir.LayerNode) and n.type == "PositionalEmbedding"]
    return min([*limits, pre.max_len or 40])


def _vocabulary(checked: ir.CheckedSpec) -> int:
    first = ir.first_layer(checked.model)
    return int(dict(first.kwargs)["num_embeddings"]) if first is not None else 2


def lower_for_onnx(net: torch.nn.Module, model: ir.CheckedModel) -> torch.nn.Module:
    """`net` with every layer torch.onnx cannot export swapped for the exact equivalent the
    catalogue names (a copy; `net` itself is untouched). The parity check compares the
    exported graph with the original `net`, so a lowering that were not exact would fail."""
    import copy

    from netspec.builder import _factory
    from netspec.catalogue import LAYERS, needs_lowering

    swaps = []
    for path, c in ir.walk(model.root):
        if isinstance(c, ir.LayerNode) and needs_lowering(c.type, dict(c.kwargs), c.in_shape):
            factory = _factory(LAYERS[c.type].onnx_lowering)
            swaps.append((path, factory.from_layer(c.type, dict(c.kwargs), c.in_shape)))
    if not swaps:
        return net
    lowered = copy.deepcopy(net)
    for path, module in swaps:
        lowered.set_submodule(path, module)
    return lowered.eval()


def padding_invariance(onnx_path: str, batches: list[tuple[torch.Tensor, torch.Tensor]]) -> float:
    """The largest difference (onnxruntime) between a text's output inside a padded batch and
    its output alone."""
    session = open_session(onnx_path)
    worst = 0.0
    for ids, mask in batches:
        together = run_session(session, ids.numpy(), mask.numpy())
        for i in range(len(ids)):
            n = max(1, int(mask[i].sum()))
            alone = run_session(session, ids[i:i + 1, :n].numpy(), mask[i:i + 1, :n].numpy())
            worst = max(worst, float(np.abs(alone[0].astype(np.float64) - together[i]).max(initial=0.0)))
    return worst


def verify(graph: torch.nn.Module, onnx_path: str, batches: list, tolerance: float) -> dict:
    """torch's and onnxruntime's outputs on the same inputs (a tensor, or a model of texts'
    (ids, mask) pair), within `tolerance` (absolute, relative for outputs larger than 1)."""
    session = open_session(onnx_path)
    worst_abs = worst_rel = worst_scaled = 0.0
    for batch in batches:
        inputs = batch if isinstance(batch, tuple) else (batch,)
        x = inputs[0]
        with torch.inference_mode():
            want = graph(*inputs).float().numpy()
        try:
            got = run_session(session, *(t.numpy() for t in inputs))
        except Exception as e:  # noqa: BLE001 - onnxruntime's own exception types; the export is wrong
            raise ExportError(Diagnostic(f"onnxruntime failed on an input of shape {list(x.shape)}: "
                                         f"{str(e).splitlines()[0]}")) from None
        if got.shape != want.shape:
            raise ExportError(Diagnostic(f"onnxruntime output shape {list(got.shape)} differs from torch's "
                                         f"{list(want.shape)}"))
        diff = np.abs(got.astype(np.float64) - want)
        worst_abs = max(worst_abs, float(diff.max(initial=0.0)))
        worst_rel = max(worst_rel, float((diff / (np.abs(want) + 1e-6)).max(initial=0.0)))
        worst_scaled = max(worst_scaled, float((diff / np.maximum(1.0, np.abs(want))).max(initial=0.0)))
    report = {"max_abs_diff": worst_abs, "max_rel_diff": worst_rel,
              "inputs_checked": sum(len(b[0] if isinstance(b, tuple) else b) for b in batches)}
    if not worst_scaled <= tolerance:
        raise ExportError(Diagnostic(
            f"onnxruntime disagrees with torch: max difference {worst_scaled:.3g} (absolute, relative for "
            f"|outputs| > 1) > tolerance {tolerance:g}; max abs difference {worst_abs:.3g}",
            help="the export was not written; raise `tolerance` in the export section only if the difference "
                 "is acceptable"))
    return report


def _metadata_for(checked: ir.CheckedSpec, weights: Path, need_data: bool = False,
                  tell: Tell | None = None) -> tuple[dict, np.ndarray | None, Preprocessing, Any]:
    """ONNX metadata (labels, task, loss, spec hash), the run's preprocessing (from its
    checkpoint; recomputed from the data when there is none), a few real raw inputs for
    the parity check, and the prepared data (None when it cannot be read, unless
    `need_data`: then its error is raised). What reading the data said goes to `tell`."""
    from netspec.data.loader import Loader, to_units
    from netspec.data.prepare import loss_task, prepare, reading_lines
    from netspec.train.checkpoint import run_checkpoint

    saved, spec_hash = run_checkpoint(weights)
    meta: dict = {"spec_hash": spec_hash, "loss": checked.train.loss.name, "task": loss_task(checked)}
    pre = Preprocessing.from_json(saved) if saved else None
    real = data = None
    if checked.data is not None and checked.data.train is not None:
        try:
            data = prepare(checked, allow_download=False, saved=saved)
        except NetspecError as e:
            if need_data:
                raise
            data = None  # no data at hand: random inputs only (what reading it warned of is still said)
            if tell is not None:
                for d in e.diagnostics:
                    if d.severity == "warning":
                        tell(d.render())
        if data is not None and tell is not None:
            for line in reading_lines(data):
                tell(line)
        if data is not None:
            pre = data.pre
            split = data.test or data.val or data.train
            xb, _ = Loader(split, pre, torch.device("cpu"), resident=False).fetch(np.arange(min(64, len(split))))
            real = to_units(xb, pre).numpy()
    pre = pre or default_preprocessing(checked)
    if pre.classes:
        meta["labels"] = list(pre.classes)
    return meta, real, pre, data


def export_source(source: str, output: str | None, weights: str | None,
                  tell: Tell | None = None) -> tuple[str, str | None, Path | None]:
    """(spec path, weights path, default output) for what the user named: a spec, a run
    folder, or (with no -o) an output path ending in .onnx: the latest finished run (which
    run, and a packaged example standing in for a missing spec, are said to `tell`)."""
    from netspec.tools.packaged import resolve_spec
    from netspec.train.runs import latest_finished_run, run_spec

    src = Path(source)
    if src.is_dir():
        spec = run_spec(src)
        return str(spec), weights or str(src / "model.pt"), None
    if source.lower().endswith(".onnx") and output is not None:
        raise error(f"{source}: an .onnx file is what export writes, not what it reads",
                    f"export a spec or a run folder (`{shell_command('netspec', 'export', 'runs/NAME', '-o', output)}`), "
                    f"or write `{shell_command('netspec', 'export', output)}` for the latest finished run")
    if source.lower().endswith(".onnx"):
        run, others = latest_finished_run()
        if tell is not None:
            tell(f"exporting the most recently finished run, {run}/" +
                 (f" ({len(others)} other finished run{'s' if len(others) > 1 else ''} under runs/: pick one with "
                  f"`{shell_command('netspec', 'export', str(others[0]), '-o', source)}`)" if others else ""))
        return str(run_spec(run)), weights or str(run / "model.pt"), Path(source)
    return resolve_spec(source, tell), weights, None


def check_output(out: Path, inputs: list[Path], beside: Path | None = None) -> None:
    """Export writes .onnx files only, never over one of its inputs, and never over an
    existing file that is not an ONNX model netspec exported. `beside`: `out` is the int8
    file written next to that one (the messages name it as such, not as the user's -o)."""
    check_output_file(out, "model.onnx")  # empty, '/', '.', '..', 'dir/', a folder
    if out.suffix.lower() != ".onnx":
        raise error(f"-o {out}: export writes files NAME.onnx",
                    f"e.g. -o {out.with_name((out.stem.lstrip('.') or 'model') + '.onnx')}")
    if out.exists() or out.is_symlink():
        refusals = EXPORT_REFUSALS
        if beside is not None:
            named = f"the int8 file {{output}} (beside {beside})"
            r = EXPORT_REFUSALS
            refusals = Refusals(r.is_input.replace("-o {output}", named), r.is_input_help,
                                r.not_a_file.replace("-o {output}", named), r.not_own.replace("-o {output}", named),
                                r.not_own_help)
        check_replaceable(out, inputs, is_netspec_onnx, refusals, empty_is_free=False)


EXPORT_REFUSALS = Refusals(
    is_input="-o {output}: that is {input}, one of this export's inputs; netspec will not overwrite it",
    is_input_help=None,
    not_a_file="-o {output}: exists and is not a regular file",
    not_own="-o {output}: exists and is not an ONNX model that netspec exported; netspec will not overwrite it",
    not_own_help="choose another output path, or remove the file yourself")


def is_netspec_onnx(path: str | Path) -> bool:
    """An ONNX model written by `netspec export` (its producer and metadata say so): the only
    kind of existing file an export replaces. Another tool's model is the user's."""
    import onnx

    try:
        proto = onnx.load(str(path), load_external_data=False)
    except Exception:  # noqa: BLE001 - anything unparsable is not an ONNX model
        return False
    keys = {p.key for p in proto.metadata_props}
    return proto.producer_name == "netspec" and "netspec_version" in keys and len(proto.graph.node) > 0


def valid_tolerance(tolerance: float) -> bool:
    """A parity tolerance is a finite number above 0 (the CLI and export_file both ask)."""
    return math.isfinite(tolerance) and tolerance > 0


def export_file(source: str, output: str | None = None, weights: str | None = None, opset: int | None = None,
                tolerance: float | None = None, overrides: tuple[str, ...] = (), tell: Tell | None = None,
                quantize: str | None = None, calibration: int | None = None, max_metric_drop: float | None = None,
                exported: Callable[[dict], None] | None = None) -> dict:
    """Export what `source` names (see export_source) and verify it. Returns the parity
    report with the file written (`output`) and the `opset` (`exported_line` says it).
    With int8 quantization (the export section's `quantize`, or `quantize="int8"`), the
    fp32 report goes to `exported` as soon as that file is written, then NAME.int8.onnx is
    made beside it (deploy/quantize.py) and its report returned under "int8"."""
    from netspec.train.evaluate import trained_model
    from netspec.util import clean_stale_temps

    if output is not None:  # as typed: Path() would turn '' into '.' and drop the '/' of 'dir/'
        check_output_file(output, "model.onnx")
    if tolerance is not None and not valid_tolerance(tolerance):
        raise error(f"tolerance {tolerance}: must be a number greater than 0 (and finite)", "e.g. --tolerance 1e-4")
    check_quantize_options(quantize, calibration, max_metric_drop)
    path, weights, default_out = export_source(source, output, weights, tell)
    checked = load(path, overrides, target="onnx")
    model = checked.model
    settings = checked.export
    int8 = (quantize or settings.quantize) == "int8"
    opset = opset or settings.opset
    if int8:
        _check_int8(checked, opset, path, quantize is not None)
    elif (calibration is not None or max_metric_drop is not None) and tell is not None:
        tell("--calibration and --max-metric-drop have no effect without --quantize int8 (or `quantize: int8`)")
    net, weights_path = trained_model(checked, weights, path)
    out = Path(output or default_out or settings.onnx or f"{model.name}.onnx")
    if Path(source).is_dir() and not output:
        out = Path(source) / f"{model.name}.onnx"
    inputs = [Path(path), weights_path, weights_path.parent / "checkpoint.pt", *data_files(checked)]
    check_output(out, inputs)
    outputs = [out]
    if int8:
        from netspec.deploy.quantize import int8_path

        outputs.append(int8_path(out))
        check_output(outputs[1], [*inputs, out], beside=out)
    clean_stale_temps(out.parent, [p.name for p in outputs])
    meta, real, pre, data = _metadata_for(checked, weights_path, need_data=int8, tell=tell)
    if int8 and data.test is None and data.val is None:
        raise ExportError(Diagnostic(
            f"{'--quantize int8' if quantize else 'quantize: int8'}: {path} has no test or validation data to "
            "compare the int8 model with fp32 on; nothing was exported",
            NO_SPAN if quantize else settings.quantize_span, "error",
            "add `test:`, `validation:` or `split:` to the data section"))
    meta["input_dtype"] = "int64" if pre.tokens else "float32"
    if pre.tokens:
        meta["num_embeddings"] = _vocabulary(checked)  # predict checks ids against it
    report = export_model(checked, net, out, opset=opset,
                          tolerance=tolerance if tolerance is not None else settings.tolerance,
                          metadata={k: (v if isinstance(v, str) else json.dumps(v)) for k, v in meta.items()},
                          real_inputs=real, pre=pre)
    report = {**report, "output": str(out), "opset": opset}
    if not int8:
        return report
    if exported is not None:
        exported(report)
    from netspec.deploy.quantize import quantize_export

    report["int8"] = quantize_export(
        checked, data, out, outputs[1], calibration=calibration or settings.calibration,
        max_drop=settings.max_metric_drop if max_metric_drop is None else max_metric_drop,
        span=NO_SPAN if quantize is not None else settings.quantize_span, tell=tell, source=path)
    return report


def check_quantize_options(quantize: str | None, calibration: int | None, max_metric_drop: float | None) -> None:
    """The command-line forms of the export section's int8 keys (click checks them too)."""
    if quantize is not None and quantize not in ("int8", "none"):
        raise error(f"--quantize {quantize}: unknown quantization; allowed: int8, none")
    if calibration is not None and calibration < 1:
        raise error(f"--calibration {calibration}: must be at least 1 (training samples)", "e.g. --calibration 512")
    if max_metric_drop is not None and not (math.isfinite(max_metric_drop) and max_metric_drop >= 0):
        raise error(f"--max-metric-drop {max_metric_drop}: must be a finite number, 0 or more",
                    "e.g. --max-metric-drop 0.01")


def _check_int8(checked: ir.CheckedSpec, opset: int, path: str, from_cli: bool) -> None:
    """What int8 needs before anything is written: data to calibrate and compare on, opset 13+."""
    from netspec.checker.sections import MIN_INT8_OPSET

    span = NO_SPAN if from_cli else checked.export.quantize_span
    asked = "--quantize int8" if from_cli else "quantize: int8"
    if checked.data is None or checked.data.train is None:
        raise ExportError(Diagnostic(
            f"{asked}: {path} has no data section, so there is nothing to calibrate the int8 model on "
            "(training samples) or to compare it with fp32 on (the test split); nothing was exported", span, "error",
            "add a data section with the training data, or export fp32 only (without quantize)"))
    if opset < MIN_INT8_OPSET:
        raise ExportError(Diagnostic(
            f"{asked} needs opset {MIN_INT8_OPSET} or later (per-channel weights in QDQ form); "
            f"this export uses opset {opset}", span, "error", f"--opset {MIN_INT8_OPSET} or more (default 18)"))


def exported_line(report: dict) -> str:
    """What `netspec export` says about a finished export_file."""
    line = (f"exported {report['output']} (opset {report['opset']}); verified on {report['inputs_checked']} inputs "
            f"against onnxruntime: max abs diff {report['max_abs_diff']:.2e}, "
            f"max rel diff {report['max_rel_diff']:.2e}")
    if "padding_invariance" in report:
        line += (f"; inputs: token ids and their mask; a text alone vs inside a padded batch: max diff "
                 f"{report['padding_invariance']:.2e}")
    return line


def data_files(checked: ir.CheckedSpec) -> list[Path]:
    """The files the spec's data sources read (inputs an export must never overwrite)."""
    from netspec import catalogue as cat

    files: list[Path] = []
    data = checked.data
    for src in (data.train, data.test) if data is not None else ():
        if src is None or src.kind not in cat.SOURCES:
            continue
        for key in cat.SOURCES[src.kind].paths:
            v = src.get(key)
            if isinstance(v, str):
                files.append(Path(v))
    return files


def evaluate_onnx(onnx_path: str, spec_file: str, overrides: tuple[str, ...] = (), tell: Tell | None = None) -> dict:
    """Test-split metrics and loss computed with onnxruntime on the spec's raw data (the
    graph normalises as training did). The model must be one exported from this spec: the
    same input and output shapes and the same classes, else an error; a model exported from
    another version of the spec (its spec hash differs: other settings or layers with the
    same inputs and outputs) is evaluated, and said to `tell`. Outputs of the wrong shape, or
    NaN, are errors."""
    from netspec.data.prepare import evaluation_split, prepare, reading_lines
    from netspec.train.checkpoint import spec_hashes

    checked = load(spec_file, overrides)
    session, meta = load_session(onnx_path)
    model = checked.model
    for key, want in (("model_input_shape", model.input_shape), ("output_shape", model.output_shape)):
        have = meta.get(key, meta.get("input_shape") if key == "model_input_shape" else None)
        want_list = [None if d is None else int(d) for d in want]
        if have is not None and have != want_list:
            what = "taking" if key == "model_input_shape" else "answering"
            raise error(f"{onnx_path} was exported from a model {what} {have}, but {spec_file}'s model "
                        f"`{model.name}` {what.replace('ing', 's')} {want_list}: this ONNX file was not exported from "
                        "that spec",
                        f"export the spec first: {shell_command('netspec', 'export', spec_file, '-o', onnx_path)}")
    pre = meta.get("preprocessing")
    data = prepare(checked, saved=pre if isinstance(pre, dict) and "source_shape" in pre else None)
    if tell is not None:
        for line in reading_lines(data):
            tell(line)
    labels, classes = meta.get("labels"), data.pre.classes
    if labels is not None and classes is not None and list(labels) != list(classes):
        raise error(f"{onnx_path} classifies into {_listed(labels)}, but {spec_file}'s data has the classes "
                    f"{_listed(classes)}: its scores would be counted against the wrong labels",
                    "evaluate it with the spec it was exported from")
    recorded = meta.get("spec_hash") or ""
    if recorded and recorded not in spec_hashes(checked.spec) and tell is not None:
        tell(f"note: {onnx_path} was exported from another version of {spec_file} (spec hash "
             f"{recorded[:12]}, this spec's {sorted(spec_hashes(checked.spec))[0][:12]}): its inputs, outputs and "
             "classes match, so it is evaluated on this spec's data")
    prefix, split = evaluation_split(data, spec_file)
    from netspec.deploy.evaluate import onnx_metrics

    (res,), _ = onnx_metrics(checked, data, split, {onnx_path: session}, spec_file, {onnx_path: meta})
    return {f"{prefix}{k}": v for k, v in res.items()} | {"samples": len(split)}


def _listed(names: list) -> str:
    shown = ", ".join(printable(str(n), newlines=False) for n in names[:8])
    return f"{len(names)} classes ({shown}{', ...' if len(names) > 8 else ''})"
