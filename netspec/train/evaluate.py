"""`netspec eval`: test-split metrics of trained weights, through the training loop's evaluate.

In: a spec path (+ `--set` overrides) and a weights file (default runs/<model>/model.pt);
the preprocessing saved in the checkpoint beside it, when there is one. Out: {"test_loss":
..., "test_accuracy": ..., "samples": n} (or val_ metrics where the spec has no test data).
Also the pieces export and train share: ``trained_model`` (the checked model with trained
weights, refused in words when they do not fit) and ``build_transform``.

    netspec eval examples/mnist.net --weights runs/mnist_cnn/model.pt
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from netspec import ir, load
from netspec.builder import build_loss, build_model
from netspec.data.loader import Loader
from netspec.data.prepare import Preprocessing, evaluation_split, prepare, reading_lines
from netspec.errors import Tell, error, shell_command
from netspec.layers import InputTransform, TargetScale
from netspec.train import loop
from netspec.train.checkpoint import load_state_dict_file, run_checkpoint, state_problems
from netspec.train.metrics import MetricState
from netspec.train.resources import ensure_fits
from netspec.train.runs import default_run_dir

EVAL_BATCH = 2048


def build_transform(pre: Preprocessing) -> InputTransform:
    return InputTransform(pre.shift, pre.div, pre.axis, pre.source_shape, pre.input_shape, pre.tokens)


def build_target_scale(pre: Preprocessing) -> TargetScale | None:
    """`normalize_target:`'s module (None when the targets are not scaled)."""
    if pre.target_shift is None or pre.target_div is None:
        return None
    return TargetScale(pre.target_shift, pre.target_div)


def trained_model(checked: ir.CheckedSpec, weights: str | None, spec_path: str) -> tuple[nn.Module, Path]:
    """The checked model with trained weights (default: runs/<model>/model.pt)."""
    weights_path = Path(weights) if weights else default_run_dir(checked) / "model.pt"
    if not weights_path.exists():
        raise error(f"{weights_path}: no such file", f"train first ({shell_command('netspec', 'train', spec_path)}) or pass --weights PATH")
    ensure_fits(checked, "cpu", training=False)
    model = build_model(checked.model, checked.train.seed)
    state = load_state_dict_file(weights_path)
    problems = state_problems(model, state)
    if problems:
        raise error(f"{weights_path}: weights do not fit model `{checked.model.name}`: {'; '.join(problems)}",
                    "these weights were trained for another model: use the run folder they came from, "
                    "or pass the matching --weights")
    model.load_state_dict(state)
    return model, weights_path


def evaluate_file(path: str, weights: str | None = None, overrides: tuple[str, ...] = (),
                  tell: Tell | None = None) -> dict:
    """The metrics of the trained weights on the spec's test data; what reading the data said
    (image folders' warnings, a decoded-image cache built) goes to `tell`."""
    checked = load(path, overrides, read_data=True)
    model, weights_path = trained_model(checked, weights, path)
    data = prepare(checked, saved=run_checkpoint(weights_path)[0])
    if tell is not None:
        for line in reading_lines(data):
            tell(line)
    prefix, split = evaluation_split(data, path)
    device = torch.device("cpu")
    pre = data.pre
    parts = loop.Loop(model, build_loss(checked.train.loss), build_transform(pre), device, scale=pre.scale,
                      tokens=pre.tokens, reduction=str(checked.train.loss.get("reduction", "mean")),
                      target=build_target_scale(pre))
    state = MetricState(checked.train.metrics, pre.task, checked.train.loss.name, data.classes, device)
    res = loop.evaluate(parts, Loader(split, pre, device).sequential(EVAL_BATCH), state)
    return {f"{prefix}{k}": v for k, v in res.items()} | {"samples": len(split)} | tested_weights(checked, weights_path)


def tested_weights(checked: ir.CheckedSpec, weights: Path) -> dict:
    """{"weights": "runs/m/model.pt (best epoch 3 of 5 by val_loss)"} for a run folder's model.pt, as the
    run's test line says it; {"weights": path} for any other file."""
    from netspec.train.runs import read_run_json

    result = read_run_json(weights.parent).get("result") if weights.name == "model.pt" else None
    epochs = result.get("epochs") if isinstance(result, dict) else None
    best = result.get("best_epoch") if isinstance(result, dict) else None
    if not (isinstance(epochs, int) and isinstance(best, int) and 0 < best <= epochs):
        return {"weights": str(weights)}
    if checked.train.save != "best":
        return {"weights": f"{weights} (last epoch {epochs} of {epochs})"}
    from netspec.train.preflight import monitor_of

    monitor = monitor_of(checked, any(str(k).startswith("val_") for k in result or {}))[0]
    return {"weights": f"{weights} (best epoch {best} of {epochs} by {monitor})"}
