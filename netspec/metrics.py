"""Metrics on numpy arrays, shared by torch evaluation (train.py) and onnxruntime
evaluation (export.py), so both report identical numbers for identical outputs.

In: model outputs [N, ...], targets as prepared by data.py, the task and loss name.
Out: {"accuracy": 0.98, "top_2": 0.99, "mae": ...}.
"""

from __future__ import annotations

import numpy as np

from . import ir

LOGIT_LOSSES = ("BCEWithLogitsLoss", "SoftMarginLoss")


def metric_key(m: ir.CallValue) -> str:
    return f"top_{m.get('k', 5)}" if m.name == "top_k" else m.name


def _labels(y: np.ndarray) -> np.ndarray:
    return y if y.ndim == 1 else y.reshape(len(y), -1).argmax(-1)


def compute(outputs: np.ndarray, y: np.ndarray, metrics: tuple[ir.CallValue, ...], task: str, loss: str) -> dict:
    out: dict[str, float] = {}
    outputs = outputs.astype(np.float64)
    for m in metrics:
        key = metric_key(m)
        if m.name in ("accuracy", "top_k"):
            flat = outputs.reshape(len(outputs), -1)
            if task == "binary" or flat.shape[1] == 1:
                threshold = 0.0 if loss in LOGIT_LOSSES else 0.5
                pred = (flat > threshold).astype(np.float64)
                out[key] = float(np.mean(pred == y.reshape(pred.shape)))
                continue
            labels = _labels(y)
            if m.name == "accuracy":
                out[key] = float(np.mean(flat.argmax(-1) == labels))
            else:
                k = min(int(m.get("k", 5)), flat.shape[1])
                top = np.argpartition(-flat, k - 1, axis=1)[:, :k]
                out[key] = float(np.mean(np.any(top == labels[:, None], axis=1)))
            continue
        target = y.astype(np.float64).reshape(outputs.shape)
        err = outputs - target
        if m.name == "mae":
            out[key] = float(np.mean(np.abs(err)))
        elif m.name == "mse":
            out[key] = float(np.mean(err**2))
        elif m.name == "rmse":
            out[key] = float(np.sqrt(np.mean(err**2)))
        elif m.name == "r2":
            total = np.sum((target - target.mean(axis=0)) ** 2)
            out[key] = float(1.0 - np.sum(err**2) / total) if total > 0 else float("nan")
    return out


def lower_is_better(key: str) -> bool:
    base = key.removeprefix("val_").removeprefix("test_")
    return base in ("loss", "mae", "mse", "rmse")
