"""Metrics through onnxruntime: `netspec eval MODEL.onnx` and the int8 export's gate.

In: the checked spec, its prepared data, a split of it and onnxruntime sessions of exported
models (the graphs take raw samples and normalise themselves). Out: each model's metrics
and loss on the split, as training reports them, and how the other models' outputs compare
with the first's (top-1 agreement, largest difference).

    (fp32, int8), compared = onnx_metrics(checked, data, data.test, {"a.onnx": s1, "b.onnx": s2})
"""

from __future__ import annotations

from typing import Any

import torch

from netspec import ir
from netspec.deploy.runtime import checked_outputs, run_session
from netspec.errors import error


def onnx_metrics(checked: ir.CheckedSpec, data: Any, split: Any, sessions: dict[str, Any],
                 source: str = "", metas: dict[str, dict] | None = None) -> tuple[list[dict], dict]:
    """Each session's metrics and loss on `split` (raw samples, as the graphs take them; the
    same batches for all), and how the other sessions' outputs compare with the first's:
    `max_abs_diff`, and `agreement` (the share of equal top-1 classes) for classifiers. A
    session with its metadata in `metas` has every batch's outputs checked against it (shape,
    NaN: runtime.checked_outputs)."""
    from netspec.builder import build_loss
    from netspec.data.loader import Loader, to_units
    from netspec.train.evaluate import build_target_scale
    from netspec.train.metrics import MetricState

    loss_fn = build_loss(checked.train.loss)
    reduction = str(checked.train.loss.get("reduction", "mean"))
    states = {name: MetricState(checked.train.metrics, data.pre.task, checked.train.loss.name, data.classes)
              for name in sessions}
    target = build_target_scale(data.pre)  # the graphs answer in the target's units; the loss is training's
    same = total = done = 0
    worst = 0.0
    for xb, yb in Loader(split, data.pre, torch.device("cpu"), resident=False).sequential(1024):
        x = to_units(xb, data.pre)
        y = x if yb is None else yb
        outs = []
        for name, session in sessions.items():
            try:
                raw = run_session(session, x.numpy())
            except Exception as e:  # noqa: BLE001 - onnxruntime's own error types
                raise error(f"{name}: onnxruntime could not run it on {source or checked.spec.file}'s data "
                            f"({str(e).splitlines()[0][:300]})") from None
            if metas and name in metas:
                where = f"{source or checked.spec.file}'s samples {done}-{done + len(x) - 1}"
                raw = checked_outputs(name, raw, metas[name], len(x), where)
            out = torch.from_numpy(raw).float()
            with torch.no_grad():
                loss = loss_fn(out, y) if target is None else loss_fn(target.normalize(out), target.normalize(y))
            states[name].update(out, y, loss * len(x) if reduction == "mean" else loss)
            outs.append(out)
        done += len(x)
        for out in outs[1:]:
            if out.numel():
                worst = max(worst, float((out - outs[0]).abs().max()))
            if data.pre.task == "class" and out.ndim == 2 and out.shape[1] > 1:
                same += int((out.argmax(1) == outs[0].argmax(1)).sum())
                total += len(out)
    compared: dict = {}
    if len(sessions) > 1:
        compared = {"max_abs_diff": worst, "agreement": same / total if total else None}
    return [state.result() for state in states.values()], compared
