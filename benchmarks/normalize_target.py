"""What `normalize_target: standard` does for a regression whose targets are large: scikit-learn's
diabetes table (progression 25..346, tests/fixtures/data/diabetes.csv), a linear model and an
MLP, Adam(lr=0.01), the same split, with and without it, three seeds each. Per run: the
validation MAE after the first epoch, the epochs until the validation MAE first reaches 50
(ordinary least squares reaches about 44 on this split), the best validation MAE and its epoch,
and the test MAE of model.pt (the best epoch). MAEs are in the target's own units either way;
the table shows the median over the seeds.

    .venv/bin/python benchmarks/normalize_target.py [--epochs 150]
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import io
import math
import shutil
import statistics
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

GOAL = 50.0  # validation MAE, in the target's units
MODELS = {"linear": "Linear(1)", "mlp": "Linear(32)\n    ReLU\n    Linear(1)"}
SPEC = """
model diabetes {{
    input: [10]
    {layers}
}}
data {{
    train: csv("diabetes.csv", target="progression")
    split: [0.7, 0.15, 0.15]
    normalize: standard
    batch_size: 32
}}
train {{
    loss: MSELoss
    optimizer: Adam(lr=0.01)
    metrics: [mae]
    checkpoint_every: 1000
}}
"""


def val_mae(run: Path) -> list[float]:
    with open(run / "metrics.csv") as f:
        return [float(row["val_mae"]) for row in csv.DictReader(f)]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--epochs", type=int, default=150)
    args = parser.parse_args()
    from netspec.train.trainer import train_file

    print(f"| model | normalize_target | val MAE after epoch 1 | epochs to val MAE <= {GOAL:g} | best val MAE (epoch) "
          "| test MAE |")
    print("|---|---|---:|---:|---:|---:|")
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        shutil.copy(ROOT / "tests" / "fixtures" / "data" / "diabetes.csv", folder)
        for model, layers in MODELS.items():
            (folder / f"{model}.net").write_text(SPEC.format(layers=layers))
            for how in ("none", "standard"):
                rows = []
                for seed in (0, 1, 2):
                    run = folder / f"run-{model}-{how}-{seed}"
                    with contextlib.redirect_stdout(io.StringIO()):  # the runs' own lines
                        result = train_file(str(folder / f"{model}.net"), (
                            f"data.normalize_target={how}", f"train.epochs={args.epochs}", f"train.seed={seed}"),
                            out_dir=str(run), quiet=True)
                    curve = val_mae(run)
                    best = min(curve)
                    reached = next((i + 1 for i, v in enumerate(curve) if v <= GOAL), math.inf)
                    rows.append((curve[0], best, curve.index(best) + 1, reached, result["test_mae"]))
                first, best, at, reached, test = (statistics.median(col) for col in zip(*rows))
                shown = f"{reached:.0f}" if math.isfinite(reached) else f"> {args.epochs}"
                print(f"| {model} | {how} | {first:.1f} | {shown} | {best:.1f} ({at:.0f}) | {test:.1f} |", flush=True)


if __name__ == "__main__":
    main()
