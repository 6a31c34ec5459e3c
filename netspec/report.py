"""Pictures and tables of a finished run: curves.png, confusion.csv/png, the per-class report.

In: the run's history rows (metrics.csv), a confusion matrix (rows: true class, columns:
predicted) and class names. Out: files in the run folder, written atomically. matplotlib
(Agg) is imported here only, when a run ends.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from .util import atomic_write, atomic_write_text

SKIP = ("epoch", "lr", "seconds", "samples_per_s")


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


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
    return lo - 0.1 * span, hi + 0.1 * span


def write_curves(out: Path, rows: list[dict], title: str, best_epoch: int, monitor: str) -> None:
    if not rows:
        return
    plt = _plt()
    keys = [k for k in rows[0] if k not in SKIP]
    bases = list(dict.fromkeys(k.removeprefix("val_") for k in keys))
    fig, axes = plt.subplots(1, len(bases), figsize=(4.6 * len(bases), 3.6), squeeze=False)
    epochs = [r["epoch"] for r in rows]
    single = len(rows) == 1
    for ax, base in zip(axes[0], bases):
        for key, label, style in ((base, "train", "-"), (f"val_{base}", "validation", "--")):
            if key not in rows[0]:
                continue
            ys = [r.get(key, float("nan")) for r in rows]
            ax.plot(epochs, ys, style, label=label, marker="o" if len(rows) <= 30 else None, markersize=4)
            if single:
                ax.annotate(f"{ys[0]:.4g}", (epochs[0], ys[0]), textcoords="offset points", xytext=(6, 4), fontsize=8)
            lim = _limits(ys)
            if lim is not None:
                cur = ax.get_ylim() if ax.lines[:-1] else lim
                ax.set_ylim(min(lim[0], cur[0]), max(lim[1], cur[1]))
                ax.annotate(f"epoch 1: {ys[0]:.3g} (off scale)", xy=(0.02, 0.97), xycoords="axes fraction",
                            fontsize=7, va="top", color="gray")
        if best_epoch and monitor.removeprefix("val_") == base:
            ax.axvline(best_epoch, color="gray", linestyle=":", linewidth=1)
            ax.annotate(f"best: epoch {best_epoch}", xy=(best_epoch, 1.0), xycoords=("data", "axes fraction"),
                        xytext=(3, -12), textcoords="offset points", fontsize=8, color="gray")
        values = [r.get(k) for r in rows for k in (base, f"val_{base}") if isinstance(r.get(k), (int, float))]
        positive = [v for v in values if math.isfinite(v)]
        if base == "loss" and positive and min(positive) > 0 and max(positive) / min(positive) > 20 \
                and _limits([r.get(base, float("nan")) for r in rows]) is None:
            ax.set_yscale("log")
        ax.set_title(base)
        ax.set_xlabel("epoch")
        if single:
            ax.set_xlim(epochs[0] - 1, epochs[0] + 1)
        ax.xaxis.get_major_locator().set_params(integer=True)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.suptitle(title)
    fig.tight_layout()
    atomic_write(out / "curves.png", lambda tmp: fig.savefig(tmp, format="png", dpi=90))
    plt.close(fig)


def write_confusion(out: Path, matrix: np.ndarray, labels: list[str], split: str) -> None:
    k = matrix.shape[0]
    names = labels if len(labels) == k else [str(i) for i in range(k)]
    lines = ["true\\predicted," + ",".join(_csv(n) for n in names)]
    lines += [_csv(names[i]) + "," + ",".join(str(int(v)) for v in matrix[i]) for i in range(k)]
    atomic_write_text(out / "confusion.csv", "\n".join(lines) + "\n")
    plt = _plt()
    size = min(max(4.0, 0.45 * k + 2), 14.0)
    fig, ax = plt.subplots(figsize=(size + 1, size))
    rows = matrix.sum(axis=1, keepdims=True)
    share = np.divide(matrix, rows, out=np.zeros_like(matrix, dtype=float), where=rows > 0)
    im = ax.imshow(share, cmap="Blues", vmin=0, vmax=1)
    short = [n if len(n) <= 14 else n[:13] + "…" for n in names]
    if k <= 40:
        ax.set_xticks(range(k), short, rotation=45 if max(map(len, short)) > 3 else 0, ha="right", fontsize=8)
        ax.set_yticks(range(k), short, fontsize=8)
    if k <= 20:
        for i in range(k):
            for j in range(k):
                ax.text(j, i, str(int(matrix[i, j])), ha="center", va="center", fontsize=8,
                        color="white" if share[i, j] > 0.6 else "black")
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    total = int(matrix.sum())
    acc = float(np.trace(matrix)) / max(total, 1)
    ax.set_title(f"confusion matrix ({split}, {total:,} samples, accuracy {acc:.2%})", fontsize=10)
    fig.colorbar(im, ax=ax, fraction=0.046, pad=0.04, label="share of the true class")
    fig.tight_layout()
    atomic_write(out / "confusion.png", lambda tmp: fig.savefig(tmp, format="png", dpi=90))
    plt.close(fig)


def class_report(matrix: np.ndarray, labels: list[str], split: str) -> str:
    """Per-class precision, recall, F1 and support, as a text table (sklearn's layout)."""
    k = matrix.shape[0]
    names = labels if len(labels) == k else [str(i) for i in range(k)]
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
