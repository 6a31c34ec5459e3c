"""Training throughput on MNIST at batch 64: netspec's loop vs a hand-written loop over
preloaded tensors vs the tutorial style (Dataset + DataLoader, one sample at a time),
same model, same data, same batch size, interleaved in one process (best of 5 rounds).
Peak memory (max RSS) of each variant is measured in a process of its own.

    .venv/bin/python benchmarks/train_throughput.py [--samples 12800]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import torch  # noqa: E402
from torch import nn  # noqa: E402

import netspec  # noqa: E402
from netspec.train import Trainer  # noqa: E402

MODELS = {"mlp": ROOT / "examples" / "mnist_mlp.net", "cnn": ROOT / "examples" / "mnist.net"}


def make_trainer(which: str, samples: int, out: Path) -> Trainer:
    checked = netspec.load(str(MODELS[which]), (f"data.subset={samples}", "data.validation=0", "train.scheduler=none"))
    return Trainer(checked, out, quiet=True)


def netspec_epoch(tr: Trainer, epoch: int) -> None:
    from netspec.train import Progress

    tr.train_epoch(epoch, Progress(False))


def hand_epoch(model, opt, loss_fn, x, y, bs, epoch):
    model.train()
    g = torch.Generator().manual_seed(epoch)
    perm = torch.randperm(len(x), generator=g)
    for i in range(0, len(x), bs):
        idx = perm[i : i + bs]
        xb, yb = x[idx], y[idx]
        opt.zero_grad()
        loss = loss_fn(model(xb), yb)
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


def measure(which: str, samples: int, rounds: int = 5) -> dict:
    import tempfile

    tmp = Path(tempfile.mkdtemp())
    tr = make_trainer(which, samples, tmp)
    x, y = tr.x, tr.y
    hand = netspec.build(tr.checked)
    hopt = torch.optim.Adam(hand.parameters(), lr=1e-3)
    tut = netspec.build(tr.checked)
    topt = torch.optim.Adam(tut.parameters(), lr=1e-3)
    loss_fn = nn.CrossEntropyLoss()
    loader = torch.utils.data.DataLoader(Tutorial(x, y), batch_size=64, shuffle=True)
    best = {"netspec": 0.0, "hand": 0.0, "tutorial": 0.0}
    for r in range(rounds):
        for name, fn in (("netspec", lambda: netspec_epoch(tr, r + 1)),
                         ("hand", lambda: hand_epoch(hand, hopt, loss_fn, x, y, 64, r)),
                         ("tutorial", lambda: tutorial_epoch(tut, topt, loss_fn, loader))):
            t = time.perf_counter()
            fn()
            best[name] = max(best[name], samples / (time.perf_counter() - t))
    return best


def peak_rss(which: str, variant: str, samples: int) -> float:
    code = (f"import sys; sys.argv=['x']; sys.path.insert(0, {str(ROOT)!r}); "
            f"import benchmarks.train_throughput as b, resource, json; b.only({which!r}, {variant!r}, {samples}); "
            "print(json.dumps(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1]) / 1024  # MiB


def only(which: str, variant: str, samples: int) -> None:
    import tempfile

    tr = make_trainer(which, samples, Path(tempfile.mkdtemp()))
    if variant == "netspec":
        netspec_epoch(tr, 1)
        return
    model = netspec.build(tr.checked)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    if variant == "hand":
        hand_epoch(model, opt, nn.CrossEntropyLoss(), tr.x, tr.y, 64, 0)
    else:
        loader = torch.utils.data.DataLoader(Tutorial(tr.x, tr.y), batch_size=64, shuffle=True)
        tutorial_epoch(model, opt, nn.CrossEntropyLoss(), loader)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--samples", type=int, default=12800)
    args = ap.parse_args()
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, batch 64, best of 5 epochs\n")
    print("| model | netspec (samples/s) | hand-written preloaded | tutorial DataLoader | netspec / hand | "
          "netspec / tutorial | peak RSS netspec / hand / tutorial (MiB) |")
    print("|---|---|---|---|---|---|---|")
    for which in ("mlp", "cnn"):
        n = args.samples if which == "mlp" else max(args.samples // 4, 640)
        r = measure(which, n)
        mem = [peak_rss(which, v, n) for v in ("netspec", "hand", "tutorial")]
        print(f"| {which} | {r['netspec']:,.0f} | {r['hand']:,.0f} | {r['tutorial']:,.0f} | "
              f"{r['netspec'] / r['hand']:.2f}x | {r['netspec'] / r['tutorial']:.2f}x | "
              f"{mem[0]:.0f} / {mem[1]:.0f} / {mem[2]:.0f} |")


if __name__ == "__main__":
    main()
