"""Training speed on MNIST, netspec against hand-written PyTorch measured in the same run.

1. The loop, in one process (interleaved, best of 5 epochs, batch 64): netspec's
   `Trainer.train_epoch` vs a careful hand-written loop over preloaded tensors vs the
   tutorial style (Dataset + DataLoader, one sample at a time); same model, data, batch size.
2. The whole process: `netspec train examples/mnist_mlp.net --epochs 1` (check, data,
   training, test evaluation, checkpoint, curves, summary) vs a careful hand-written script
   doing the same job (read the IDX files, normalise, train one epoch with Adam, evaluate the
   test set, save the weights); median of 3 alternating runs each.

    .venv/bin/python benchmarks/train_throughput.py [--samples 12800] [--rounds 3]
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import torch  # noqa: E402
from torch import nn  # noqa: E402

import netspec  # noqa: E402
from netspec.data.loader import to_units  # noqa: E402
from netspec.train.runs import RunDir  # noqa: E402
from netspec.train.trainer import Progress, Trainer  # noqa: E402

MODELS = {"mlp": ROOT / "examples" / "mnist_mlp.net", "cnn": ROOT / "examples" / "mnist.net"}


def make_trainer(which: str, samples: int) -> Trainer:
    checked = netspec.load(str(MODELS[which]), (f"data.subset={samples}", "data.validation=0",
                                                "train.scheduler=none", "data.shuffle=true"))
    return Trainer(checked, RunDir(Path(tempfile.mkdtemp()) / "run"), quiet=True)


def preloaded(tr: Trainer) -> tuple[torch.Tensor, torch.Tensor]:
    """The training split as the model sees it: float32, normalised, in model shape."""
    loader = tr.train_loader
    assert loader.x is not None and loader.y is not None
    with torch.no_grad():
        return tr.transform(to_units(loader.x, tr.data.pre)).contiguous(), loader.y


def hand_epoch(model, opt, loss_fn, x, y, bs, epoch):
    model.train()
    perm = torch.randperm(len(x), generator=torch.Generator().manual_seed(epoch))
    for i in range(0, len(x), bs):
        idx = perm[i : i + bs]
        opt.zero_grad()
        loss = loss_fn(model(x[idx]), y[idx])
        loss.backward()
        opt.step()


class Tutorial(torch.utils.data.Dataset):
    def __init__(self, x, y):
        self.x, self.y = x, y

    def __len__(self):
        return len(self.x)

    def __getitem__(self, i):
        return self.x[i], self.y[i]


def tutorial_epoch(model, opt, loss_fn, loader):
    model.train()
    for xb, yb in loader:
        opt.zero_grad()
        loss = loss_fn(model(xb), yb)
        loss.backward()
        opt.step()


def loop_table(samples: int, rounds: int = 5) -> list[str]:
    rows = []
    for which in ("mlp", "cnn"):
        n = samples if which == "mlp" else max(samples // 4, 640)
        tr = make_trainer(which, n)
        x, y = preloaded(tr)
        hand = netspec.build(tr.checked)
        hopt = torch.optim.Adam(hand.parameters(), lr=1e-3)
        tut = netspec.build(tr.checked)
        topt = torch.optim.Adam(tut.parameters(), lr=1e-3)
        loss_fn = nn.CrossEntropyLoss()
        loader = torch.utils.data.DataLoader(Tutorial(x, y), batch_size=64, shuffle=True)
        best = {"netspec": 0.0, "hand": 0.0, "tutorial": 0.0}
        for r in range(rounds):
            for name, fn in (("netspec", lambda: tr.train_epoch(r + 1, Progress(False))),
                             ("hand", lambda: hand_epoch(hand, hopt, loss_fn, x, y, 64, r)),
                             ("tutorial", lambda: tutorial_epoch(tut, topt, loss_fn, loader))):
                t = time.perf_counter()
                fn()
                best[name] = max(best[name], n / (time.perf_counter() - t))
        rows.append(f"| {which} | {best['netspec']:,.0f} | {best['hand']:,.0f} | {best['tutorial']:,.0f} | "
                    f"{best['netspec'] / best['hand']:.2f}x | {best['netspec'] / best['tutorial']:.2f}x |")
    return rows


HAND_SCRIPT = textwrap.dedent('''
    """A careful hand-written MNIST MLP script: the same job as `netspec train mnist_mlp.net --epochs 1`."""
    import gzip, struct, sys
    from pathlib import Path
    import numpy as np
    import torch
    from torch import nn

    folder = Path(sys.argv[1])

    def idx(name):
        path = next(p for p in (folder / name, folder / (name + ".gz")) if p.exists())
        raw = (gzip.open if path.suffix == ".gz" else open)(path, "rb").read()
        ndim = raw[3]
        dims = struct.unpack(f">{ndim}I", raw[4:4 + 4 * ndim])
        return np.frombuffer(raw, np.uint8, offset=4 + 4 * ndim).reshape(dims)

    x = torch.from_numpy(idx("train-images-idx3-ubyte").reshape(-1, 784).astype(np.float32) / 255)
    y = torch.from_numpy(idx("train-labels-idx1-ubyte").astype(np.int64))
    tx = torch.from_numpy(idx("t10k-images-idx3-ubyte").reshape(-1, 784).astype(np.float32) / 255)
    ty = torch.from_numpy(idx("t10k-labels-idx1-ubyte").astype(np.int64))
    mean, std = x.mean(), x.std()
    x, tx = (x - mean) / std, (tx - mean) / std
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(784, 128), nn.ReLU(), nn.Linear(128, 64), nn.ReLU(), nn.Linear(64, 10))
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    loss_fn = nn.CrossEntropyLoss()
    perm = torch.randperm(len(x))
    for i in range(0, len(x), 64):
        idx_ = perm[i:i + 64]
        opt.zero_grad()
        loss_fn(model(x[idx_]), y[idx_]).backward()
        opt.step()
    model.eval()
    with torch.no_grad():
        acc = (model(tx).argmax(1) == ty).float().mean().item()
    torch.save(model.state_dict(), "hand_model.pt")
    print(f"test accuracy {acc:.4f}")
''')


def whole_process_table(rounds: int) -> list[str]:
    from netspec.data.datasets import find_dataset

    folder, _ = find_dataset("mnist", None)
    if folder is None:
        return ["| (MNIST not installed: `make data`) | | | |"]
    work = Path(tempfile.mkdtemp())
    (work / "hand.py").write_text(HAND_SCRIPT)
    spec = work / "mlp.net"  # the example, its validation split off (the hand-written script has none)
    spec.write_text((ROOT / "examples" / "mnist_mlp.net").read_text())
    commands = {
        "netspec": [str(Path(sys.executable).parent / "netspec"), "train", str(spec), "--epochs", "1", "--quiet",
                    "--set", "data.validation=0", "--out", "run"],
        "hand": [sys.executable, str(work / "hand.py"), str(folder)],
    }
    times: dict[str, list[float]] = {"netspec": [], "hand": []}
    for r in range(rounds):
        for name in ("netspec", "hand") if r % 2 == 0 else ("hand", "netspec"):
            for p in work.glob("run*"):
                import shutil

                shutil.rmtree(p)
            t = time.perf_counter()
            subprocess.run(commands[name], cwd=work, check=True, capture_output=True)
            times[name].append(time.perf_counter() - t)
    a, b = statistics.median(times["netspec"]), statistics.median(times["hand"])
    return [f"| mnist_mlp, 1 epoch, 60,000 samples | {a:.2f} s | {b:.2f} s | {a / b:.2f}x |"]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--samples", type=int, default=12800)
    ap.add_argument("--rounds", type=int, default=3, help="whole-process runs of each")
    args = ap.parse_args()
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads\n")
    print("The loop (samples/s, best of 5 epochs, batch 64):\n")
    print("| model | netspec | hand-written preloaded | tutorial DataLoader | netspec / hand | netspec / tutorial |")
    print("|---|---|---|---|---|---|")
    for row in loop_table(args.samples):
        print(row, flush=True)
    print(f"\nThe whole process (median of {args.rounds}, wall time):\n")
    print("| job | netspec train | hand-written script | netspec / hand |")
    print("|---|---|---|---|")
    for row in whole_process_table(args.rounds):
        print(row, flush=True)


if __name__ == "__main__":
    main()
