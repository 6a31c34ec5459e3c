"""Metrics as running sums on the training device, so a step never waits for the host.

In: model outputs and encoded targets batch by batch (torch tensors), the task (class,
binary, value, input) and the loss name. Out: ``MetricState.result()`` ->
{"accuracy": 0.98, "f1": ..., "mae": ...}, and for classifiers the confusion matrix.
Under DDP the sums are all-reduced once per epoch (``MetricState.reduce``), so every
sample counts exactly once. ``compute`` runs the same code on numpy arrays (onnxruntime
evaluation), so torch and ONNX evaluation report identical numbers for identical outputs.

Definitions: accuracy and top_k over samples (over every position for per-position
outputs such as segmentation maps); precision, recall and f1 macro-averaged over the
classes that occur in the targets or the predictions (binary: of class 1); auc by the
rank statistic (ties counted half); r2 = 1 - SSE / SST with SST around each output's mean.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from netspec import ir
from netspec.catalogue import lower_is_better  # noqa: F401 - re-exported

LOGIT_LOSSES = ("BCEWithLogitsLoss", "SoftMarginLoss")


def metric_key(m: ir.CallValue) -> str:
    return f"top_{m.get('k', 5)}" if m.name == "top_k" else m.name


class MetricState:
    """Running sums for one pass over a split."""

    def __init__(self, metrics: tuple[ir.CallValue, ...], task: str, loss: str, classes: int | None,
                 device: torch.device | str = "cpu", confusion: bool = False):
        self.metrics = metrics
        self.task = task
        self.loss = loss
        self.classes = classes
        self.device = torch.device(device)
        names = {m.name for m in metrics}
        self.need_confusion = confusion or bool(names & {"precision", "recall", "f1"})
        # one-hot targets under a value loss (MSELoss) are still classes for these metrics
        self.need_classes = task in ("class", "binary") or self.need_confusion or bool(names & {"accuracy", "top_k"})
        self.need_scores = "auc" in names
        self.sums: dict[str, torch.Tensor] = {}
        self.scores: list[torch.Tensor] = []
        self.labels: list[torch.Tensor] = []

    def _add(self, key: str, value: torch.Tensor) -> None:
        value = value.detach().to(torch.float64)
        if key in self.sums:
            self.sums[key] += value
        else:
            self.sums[key] = value.clone()

    # ------------------------------------------------------------ one batch

    @torch.no_grad()
    def update(self, out: torch.Tensor, y: torch.Tensor, loss_sum: torch.Tensor | None = None) -> None:
        out = out.detach().float()
        n = out.shape[0]
        self._add("n", torch.tensor(float(n), device=out.device))
        if loss_sum is not None:
            self._add("loss", loss_sum)
        if self.need_classes:
            self._update_classes(out, y)
        if any(m.name in ("mae", "mse", "rmse", "r2") for m in self.metrics):
            self._update_values(out, y)

    def _predictions(self, out: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor] | None:
        """(predicted labels, true labels), flattened over samples and positions."""
        if self.task == "class" and out.dim() > 1 and not y.is_floating_point():
            return out.argmax(dim=1).reshape(-1), y.long().reshape(-1)
        if y.is_floating_point() and out.shape == y.shape:
            if self.task == "binary" or out.dim() == 1 or out.shape[1] == 1:
                threshold = 0.0 if self.loss in LOGIT_LOSSES else 0.5
                return (out > threshold).long().reshape(-1), (y > 0.5).long().reshape(-1)
            return out.argmax(dim=1).reshape(-1), y.argmax(dim=1).reshape(-1)  # one-hot targets
        return None

    def _update_classes(self, out: torch.Tensor, y: torch.Tensor) -> None:
        pl = self._predictions(out, y)
        if pl is None:
            return
        pred, true = pl
        self._add("correct", (pred == true).sum())
        self._add("positions", torch.tensor(float(true.numel()), device=out.device))
        one_hot = y.is_floating_point() and y.shape == out.shape
        for m in self.metrics:  # class scores: a class loss's, or a value loss's against one-hot rows
            if m.name == "top_k" and out.dim() > 1 and out.shape[1] > 1 and (self.task == "class" or one_hot):
                k = min(int(m.get("k", 5)), out.shape[1])
                top = out.topk(k, dim=1).indices
                labels = y.argmax(dim=1) if one_hot else y.long()
                hit = (top == labels.unsqueeze(1)).any(dim=1)
                self._add(f"top_{m.get('k', 5)}", hit.sum())
        scores = out.shape[1] if self.task == "class" and out.dim() > 1 else 0  # more outputs than classes: counted
        k = max(self.classes or 0, scores) or \
            int(max(int(pred.max()) if pred.numel() else 0, int(true.max()) if true.numel() else 0)) + 1
        if self.need_confusion and k <= 4096:
            idx = (true.clamp(0, k - 1) * k + pred.clamp(0, k - 1)).long()
            self._add("confusion", torch.bincount(idx, minlength=k * k).reshape(k, k))
        if self.need_scores:
            score = out.reshape(out.shape[0], -1)[:, -1]
            if self.task == "class" and out.dim() > 1 and out.shape[1] == 2:
                score = out[:, 1] - out[:, 0]
            self.scores.append(score.detach().float())
            self.labels.append(true.reshape(out.shape[0], -1)[:, 0].detach())

    def _update_values(self, out: torch.Tensor, y: torch.Tensor) -> None:
        if y.dtype in (torch.long, torch.int64) or out.numel() != y.numel():
            return
        t = y.float().reshape(out.shape)
        err = (out - t).reshape(out.shape[0], -1).double()
        tt = t.reshape(t.shape[0], -1).double()
        self._add("abs", err.abs().sum())
        self._add("sq", (err**2).sum())
        self._add("values", torch.tensor(float(err.numel()), device=out.device))
        self._add("t_sum", tt.sum(dim=0))
        self._add("t_sq", (tt**2).sum(dim=0))

    # ------------------------------------------------------------ results

    def reduce(self) -> None:
        """Sum every running total across DDP processes (each sample counted once)."""
        import torch.distributed as dist

        if not (dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1):
            return
        for key in sorted(self.sums):
            dist.all_reduce(self.sums[key])
        if self.need_scores:
            gathered: list[Any] = [None] * dist.get_world_size()
            mine = (torch.cat(self.scores).cpu() if self.scores else torch.zeros(0),
                    torch.cat(self.labels).cpu() if self.labels else torch.zeros(0, dtype=torch.long))
            dist.all_gather_object(gathered, mine)
            self.scores = [g[0] for g in gathered]
            self.labels = [g[1] for g in gathered]

    def result(self) -> dict[str, float]:
        s = {k: v.cpu() for k, v in self.sums.items()}
        out: dict[str, float] = {}
        n = float(s["n"]) if "n" in s else 0.0
        if "loss" in s and n:
            out["loss"] = float(s["loss"]) / n
        for m in self.metrics:
            key = metric_key(m)
            value = self._metric(m, s, n)
            if value is not None:
                out[key] = value
        return out

    def _metric(self, m: ir.CallValue, s: dict[str, torch.Tensor], n: float) -> float | None:
        name = m.name
        if name == "accuracy" and "positions" in s:
            return float(s["correct"]) / max(float(s["positions"]), 1.0)
        if name == "top_k":  # the checker refuses top_k where there are no class scores to rank
            key = f"top_{m.get('k', 5)}"
            return float(s[key]) / max(n, 1.0) if key in s else None
        if name in ("precision", "recall", "f1") and "confusion" in s:
            return _prf(s["confusion"].double(), name, binary=self.task == "binary")
        if name == "auc":
            return _auc(torch.cat(self.scores).cpu() if self.scores else torch.zeros(0),
                        torch.cat(self.labels).cpu() if self.labels else torch.zeros(0))
        if "values" not in s:
            return None
        count = max(float(s["values"]), 1.0)
        if name == "mae":
            return float(s["abs"]) / count
        if name == "mse":
            return float(s["sq"]) / count
        if name == "rmse":
            return float(torch.sqrt(s["sq"] / count))
        if name == "r2":
            rows = max(n, 1.0)
            sst = float((s["t_sq"] - s["t_sum"] ** 2 / rows).sum())
            return 1.0 - float(s["sq"]) / sst if sst > 0 else float("nan")
        return None

    def confusion(self) -> np.ndarray | None:
        c = self.sums.get("confusion")
        return None if c is None else c.cpu().numpy().astype(np.int64)


def _prf(cm: torch.Tensor, name: str, binary: bool) -> float:
    tp = cm.diag()
    predicted = cm.sum(dim=0)
    actual = cm.sum(dim=1)
    precision = torch.where(predicted > 0, tp / predicted.clamp(min=1), torch.zeros_like(tp))
    recall = torch.where(actual > 0, tp / actual.clamp(min=1), torch.zeros_like(tp))
    f1 = torch.where(precision + recall > 0, 2 * precision * recall / (precision + recall).clamp(min=1e-12),
                     torch.zeros_like(tp))
    values = {"precision": precision, "recall": recall, "f1": f1}[name]
    if binary and cm.shape[0] == 2:
        return float(values[1])
    present = (predicted + actual) > 0
    return float(values[present].mean()) if present.any() else 0.0


def _auc(scores: torch.Tensor, labels: torch.Tensor) -> float:
    """Area under the ROC curve (Mann-Whitney U), ties counted half."""
    pos = labels == 1
    n_pos, n_neg = int(pos.sum()), int((~pos).sum())
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    order = torch.argsort(scores.double())
    ranks = torch.empty(len(scores), dtype=torch.float64)
    sorted_scores = scores.double()[order]
    i = 0
    values = sorted_scores.tolist()
    while i < len(values):  # average ranks of ties
        j = i
        while j + 1 < len(values) and values[j + 1] == values[i]:
            j += 1
        ranks[order[i:j + 1]] = (i + j) / 2 + 1
        i = j + 1
    return float((ranks[pos].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def compute(outputs: np.ndarray, y: np.ndarray, metrics: tuple[ir.CallValue, ...], task: str, loss: str,
            classes: int | None = None) -> dict[str, float]:
    """The metrics of numpy outputs (onnxruntime), through the same running sums."""
    state = MetricState(metrics, task, loss, classes)
    state.update(torch.from_numpy(np.ascontiguousarray(outputs)), torch.from_numpy(np.ascontiguousarray(y)))
    result = state.result()
    result.pop("loss", None)
    return result
