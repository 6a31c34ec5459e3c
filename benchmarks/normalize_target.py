"""What `normalize_target: standard` does for a regression whose targets are large: scikit-learn's
diabetes table (progression 25..346, tests/fixtures/data/diabetes.csv), an MLP, Adam, the same
seed and split, trained with and without it. Prints the first epoch's validation MAE and how
many epochs each run needs to bring its validation MAE within 5% of the best one either run
reaches (both MAEs are in the target's units), for three seeds.

    .venv/bin/python benchmarks/normalize_target.py [--epochs 200]
"""

from __future__ import annotations

import argparse
import csv
import shutil
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

SPEC = """
model diabetes {
    input: [10]
    Linear(32)
    ReLU
    Linear(1)
}
data {
    train: csv("diabetes.csv", target="progression")
    split: [0.7, 0.15, 0.15]
    normalize: standard
    normalize_target: none
    batch_size: 32
}
train {
    loss: MSELoss
    optimizer: Adam(lr=0.01)
    epochs: 200
    metrics: [mae, r2]
}
"""


def val_mae(run: Path) -> list[float]:
    with open(run / "metrics.csv") as f:
        return [float(row["val_mae"]) for row in csv.DictReader(f)]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--epochs", type=int, default=200)
    args = parser.parse_args()
    from netspec.train.trainer import train_file

    print("| seed | normalize_target | first epoch val MAE | best val MAE | epochs to within 5% of the best | "
          "test MAE (best epoch) |")
    print("|---|---|---:|---:|---:|---:|")
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        shutil.copy(ROOT / "tests" / "fixtures" / "data" / "diabetes.csv", folder)
        (folder / "diabetes.net").write_text(SPEC)
        for seed in (0, 1, 2):
            curves, tests = {}, {}
            for how in ("none", "standard"):
                run = folder / f"run-{how}-{seed}"
                result = train_file(str(folder / "diabetes.net"), (f"data.normalize_target={how}",
                                                                   f"train.epochs={args.epochs}", f"train.seed={seed}"),
                                    out_dir=str(run), quiet=True, as_json=False)
                curves[how], tests[how] = val_mae(run), result["test_mae"]
            goal = 1.05 * min(min(c) for c in curves.values())
            for how, curve in curves.items():
                reached = next((i + 1 for i, v in enumerate(curve) if v <= goal), None)
                print(f"| {seed} | {how} | {curve[0]:.1f} | {min(curve):.1f} | "
                      f"{reached if reached is not None else f'> {args.epochs}'} | {tests[how]:.1f} |", flush=True)


if __name__ == "__main__":
    main()
