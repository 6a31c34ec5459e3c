"""Pictures and tables of a finished run: curves.png, confusion.csv/png, the per-class report.

In: the run's history rows (metrics.csv), a confusion matrix (rows: true class, columns:
predicted) and class names. Out: files in the run folder, written atomically; the
pictures are drawn with Pillow (plot.py), which keeps a short run's fixed cost low.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np

from netspec.util import atomic_write, atomic_write_text, count

SKIP = ("epoch", "lr", "seconds", "samples_per_s")


def _limits(values: list[float]) -> tuple[float, float] | None:
    """y-limits that a wild first epoch does not squash: from the later epochs when epoch 1
    lies far outside their range."""
    finite = [v for v in values if v is not None and math.isfinite(v)]
    if len(finite) < 3:
        return None
    rest = finite[1:]
    lo, hi = min(rest), max(rest)
    span = (hi - lo) or abs(hi) or 1.0
    first = finite[0]
    if lo - 3 * span <= first <= hi + 3 * span:
        return None
    return lo, hi


def curves_image(rows: list[dict], title: str, best_epoch: int, monitor: str) -> Any:
    """One panel per metric: training beside validation, the best epoch marked."""
    from netspec.train import plot

    keys = [k for k in rows[0] if k not in SKIP]
    bases = list(dict.fromkeys(k.removeprefix("val_") for k in keys))
    panel_w, panel_h = 330, 250
    img, draw = plot.new_canvas(panel_w * len(bases) + 10, panel_h + 42)
    draw.text((img.width // 2, 6 * plot.SS), title, fill=plot.TEXT, font=plot.font(12), anchor="mt")
    epochs = [r["epoch"] for r in rows]
    for i, base in enumerate(bases):
        series: list[dict[str, Any]] = []
        for key, label, dashed in ((base, "train", False), (f"val_{base}", "validation", True)):
            if any(key in r for r in rows):
                series.append({"label": label, "xs": epochs, "ys": [r.get(key) for r in rows], "dashed": dashed})
        ys = [y for s in series for y in s["ys"] if isinstance(y, (int, float)) and math.isfinite(y)]
        lim = None
        note = ""
        for s in series:
            found = _limits(s["ys"])
            if found is not None:
                rest = [y for t in series for y in t["ys"][1:] if isinstance(y, (int, float)) and math.isfinite(y)]
                lim = (min(rest), max(rest))
                note = f"epoch 1: {s['ys'][0]:.3g} (off scale)"
        log = base == "loss" and lim is None and ys and min(ys) > 0 and max(ys) / min(ys) > 20
        marker = best_epoch if best_epoch and len(rows) > 1 and monitor.removeprefix("val_") == base else None
        plot.line_panel(draw, (i * panel_w + 5, 34, (i + 1) * panel_w, panel_h + 38), series, base, ylim=lim,
                        log=bool(log), marker_x=marker, marker_text=f"best: epoch {best_epoch}", note=note)
    return plot.finish(img)


def write_curves(out: Path, rows: list[dict], title: str, best_epoch: int, monitor: str) -> None:
    if not rows:
        return
    img = curves_image(rows, title, best_epoch, monitor)
    atomic_write(out / "curves.png", lambda tmp: img.save(tmp, format="PNG"))


def write_confusion(out: Path, matrix: np.ndarray, labels: list[str], split: str) -> None:
    from netspec.train import plot

    k = matrix.shape[0]
    names = class_names(labels, k)
    lines = ["true\\predicted," + ",".join(_csv(n) for n in names)]
    lines += [_csv(names[i]) + "," + ",".join(str(int(v)) for v in matrix[i]) for i in range(k)]
    atomic_write_text(out / "confusion.csv", "\n".join(lines) + "\n")
    total = int(matrix.sum())
    acc = float(np.trace(matrix)) / max(total, 1)
    img = plot.heatmap(matrix.tolist(), names, f"confusion matrix ({split}, {count(total, 'sample')}, accuracy {acc:.2%})",
                       "predicted", "true", show_numbers=k <= 20)
    atomic_write(out / "confusion.png", lambda tmp: img.save(tmp, format="PNG"))


def class_names(labels: list[str], k: int) -> list[str]:
    """The names of a k x k confusion matrix's classes: the labels, and "output N" for outputs
    beyond them (a model with more outputs than classes)."""
    if len(labels) > k:
        return [str(i) for i in range(k)]
    return list(labels) + [f"output {i}" for i in range(len(labels), k)]


def class_report(matrix: np.ndarray, labels: list[str], split: str) -> str:
    """Per-class precision, recall, F1 and support, as a text table (sklearn's layout)."""
    k = matrix.shape[0]
    names = class_names(labels, k)
    tp = np.diag(matrix).astype(float)
    predicted = matrix.sum(axis=0).astype(float)
    support = matrix.sum(axis=1)
    precision = np.divide(tp, predicted, out=np.zeros(k), where=predicted > 0)
    recall = np.divide(tp, support, out=np.zeros(k), where=support > 0)
    f1 = np.divide(2 * precision * recall, precision + recall, out=np.zeros(k), where=(precision + recall) > 0)
    width = max(12, *(len(n) for n in names))
    lines = [f"per-class report ({split}):", f"{'class':<{width}}  precision  recall  f1      support"]
    for i in range(k):
        lines.append(f"{names[i]:<{width}}  {precision[i]:9.4f}  {recall[i]:6.4f}  {f1[i]:6.4f}  {int(support[i]):7d}")
    present = support > 0
    lines.append(f"{'macro avg':<{width}}  {precision[present].mean():9.4f}  {recall[present].mean():6.4f}  "
                 f"{f1[present].mean():6.4f}  {int(support.sum()):7d}")
    return "\n".join(lines)


def _csv(text: str) -> str:
    return '"' + text.replace('"', '""') + '"' if any(c in text for c in ',"\n') else text
