"""What augmentation costs next to a training step, on the CPU: a small MNIST CNN (conv 32 - pool -
conv 64 - pool - linear 128 - linear 10, Adam) at batch 64 and 256, random [n, 1, 28, 28] images.
Times, interleaved in one process after a warm-up, with torch's default thread count: one training
step (forward, loss, backward, Adam step) without augmentation; RandomCrop(28, padding=2) +
RandomHorizontalFlip(); the list of all eight augmentations; then each op alone. Medians of --reps.

    .venv/bin/python benchmarks/augment_cost.py [--reps 30]

Prints markdown tables.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import torch  # noqa: E402
from torch import nn  # noqa: E402

from netspec.data.augment import Augmenter, fill_defaults  # noqa: E402

Ops = list[tuple[str, dict[str, Any]]]
CROP_FLIP: Ops = [("RandomCrop", {"size": 28, "padding": 2}), ("RandomHorizontalFlip", {})]
ALL_EIGHT: Ops = CROP_FLIP + [
    ("RandomVerticalFlip", {}),
    ("RandomRotation", {"degrees": 15}),
    ("RandomAffine", {"degrees": 10, "translate": (0.1, 0.1), "scale": (0.9, 1.1), "shear": 5}),
    ("RandomResizedCrop", {"size": 28, "scale": (0.5, 1.0)}),
    ("ColorJitter", {"brightness": 0.2, "contrast": 0.2}),
    ("RandomErasing", {}),
]
SHAPE = (1, 28, 28)


def augmenter(ops: Ops) -> Augmenter:
    return Augmenter([(name, fill_defaults(name, given)) for name, given in ops], SHAPE)


def mnist_cnn() -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(1, 32, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
                         nn.Conv2d(32, 64, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(),
                         nn.Linear(64 * 7 * 7, 128), nn.ReLU(), nn.Linear(128, 10))


def train_step(batch: int) -> Callable[[int], None]:
    model = mnist_cnn()
    optimizer = torch.optim.Adam(model.parameters())
    loss_fn = nn.CrossEntropyLoss()
    x, y = torch.rand(batch, *SHAPE), torch.randint(0, 10, (batch,))

    def step(_: int) -> None:
        optimizer.zero_grad(set_to_none=True)
        loss_fn(model(x), y).backward()
        optimizer.step()

    return step


def augment_step(aug: Augmenter, batch: int) -> Callable[[int], None]:
    x = torch.rand(batch, *SHAPE)

    def step(index: int) -> None:
        aug(x, 0, 0, index)  # a new step number each time: new draws

    return step


def medians(jobs: dict[str, Callable[[int], None]], reps: int, warmup: int = 5) -> dict[str, float]:
    """Median seconds of each job, run round-robin so drift hits all alike."""
    times: dict[str, list[float]] = {name: [] for name in jobs}
    for rep in range(warmup + reps):
        for name, job in jobs.items():
            start = time.perf_counter()
            job(rep)
            if rep >= warmup:
                times[name].append(time.perf_counter() - start)
    return {name: statistics.median(ts) for name, ts in times.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--reps", type=int, default=30)
    args = parser.parse_args()
    reps = max(args.reps, 20)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, median of {reps}\n")
    print("| batch | train step (ms) | crop + flip (ms) | ratio | all eight ops (ms) | ratio |")
    print("|---:|---:|---:|---:|---:|---:|")
    for batch in (64, 256):
        t = medians({"step": train_step(batch), "crop_flip": augment_step(augmenter(CROP_FLIP), batch),
                     "all": augment_step(augmenter(ALL_EIGHT), batch)}, reps)
        print(f"| {batch} | {t['step'] * 1e3:.2f} | {t['crop_flip'] * 1e3:.3f} | {t['crop_flip'] / t['step']:.1%} "
              f"| {t['all'] * 1e3:.2f} | {t['all'] / t['step']:.1%} |")
    print("\nEach op alone, batch 256:\n\n| op | ms |\n|---|---:|")
    alone = medians({name: augment_step(augmenter([(name, given)]), 256) for name, given in ALL_EIGHT}, reps)
    for (name, given), seconds in zip(ALL_EIGHT, alone.values()):
        settings = ", ".join(f"{k}={v}" for k, v in given.items())
        print(f"| {name}({settings}) | {seconds * 1e3:.3f} |")


if __name__ == "__main__":
    main()
