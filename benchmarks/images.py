"""Image folders: netspec's decoded uint8 cache against a hand-written Pillow Dataset and
against in-memory tensors, measured in the same run; and a data set larger than the memory
the process may use.

1. The MNIST PNG folder that `make data` writes (10,000 training digits): epoch time of
   netspec's first epoch (decoding into a cold cache included), of its later epochs, of a
   hand-written `Dataset` that opens each PNG with Pillow per sample inside
   `DataLoader(num_workers=2)`, and of a hand-written loop over in-memory tensors. Same model
   (the MNIST MLP on flattened images), Adam, batch 64; best of 3 epochs for the repeated ones.
2. Larger than memory: a synthetic uint8 `.npy` set (default 1.5 GiB, [N, 3, 64, 64]) trained
   for one epoch by `netspec train` inside a memory cgroup limited to 768 MiB (cgroup v1,
   needs root; otherwise the split is streamed and only the peak RSS is reported).

    .venv/bin/python benchmarks/images.py [--big-gib 1.5] [--limit-mib 768] [--skip-big]
"""

from __future__ import annotations

import argparse
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402
import torch  # noqa: E402
from torch import nn  # noqa: E402

MLP = """
model png_mlp {{
    input: [1, 28, 28]
    Flatten
    fc1: Linear(128)
    ReLU
    fc2: Linear(64)
    ReLU
    out: Linear(10)
}}
data {{ train: image_folder("{root}"); normalize: standard; batch_size: 64 }}
train {{ loss: CrossEntropyLoss; optimizer: Adam(lr=1e-3); epochs: 3 }}
"""


def folder_table(root: Path) -> list[str]:
    import netspec
    from netspec.train.runs import RunDir
    from netspec.train.trainer import Progress, Trainer

    work = Path(tempfile.mkdtemp())
    os.environ["XDG_CACHE_HOME"] = str(work / "cache")  # a cold cache for the first epoch
    spec = work / "png.net"
    spec.write_text(MLP.format(root=root))
    checked = netspec.load(str(spec))
    t = time.perf_counter()
    tr = Trainer(checked, RunDir(work / "run"), quiet=True)
    tr.train_epoch(1, Progress(False))
    first = time.perf_counter() - t
    later = min(_timed(lambda e=e: tr.train_epoch(e, Progress(False))) for e in (2, 3, 4))
    n = len(tr.data.train)
    reopen, check, cache_mb = _cache_open_cost(root)

    from PIL import Image

    files, labels = [], []
    for label, folder in enumerate(sorted(p for p in root.iterdir() if p.is_dir())):
        for f in sorted(folder.rglob("*.png")):
            files.append(f)
            labels.append(label)
    mean, std = tr.data.pre.shift[0], tr.data.pre.div[0]

    class PngFolder(torch.utils.data.Dataset):
        def __len__(self):
            return len(files)

        def __getitem__(self, i):
            with Image.open(files[i]) as im:
                x = np.asarray(im.convert("L"), dtype=np.float32) / 255.0
            return (torch.from_numpy(x).reshape(1, 28, 28) - mean) / std, labels[i]

    def model_and_opt():
        torch.manual_seed(0)
        m = nn.Sequential(nn.Flatten(), nn.Linear(784, 128), nn.ReLU(), nn.Linear(128, 64), nn.ReLU(), nn.Linear(64, 10))
        return m, torch.optim.Adam(m.parameters(), lr=1e-3)

    loss_fn = nn.CrossEntropyLoss()
    model, opt = model_and_opt()
    loader = torch.utils.data.DataLoader(PngFolder(), batch_size=64, shuffle=True, num_workers=2,
                                         persistent_workers=True)

    def pillow_epoch():
        for xb, yb in loader:
            opt.zero_grad()
            loss_fn(model(xb), yb).backward()
            opt.step()

    pillow = min(_timed(pillow_epoch) for _ in range(3))
    xs = torch.stack([PngFolder()[i][0] for i in range(len(files))])
    ys = torch.tensor(labels)
    model2, opt2 = model_and_opt()

    def memory_epoch():
        perm = torch.randperm(len(xs))
        for i in range(0, len(xs), 64):
            idx = perm[i:i + 64]
            opt2.zero_grad()
            loss_fn(model2(xs[idx]), ys[idx]).backward()
            opt2.step()

    memory = min(_timed(memory_epoch) for _ in range(3))
    return [
        f"| netspec, first epoch (decode {n:,} PNGs into the cache + train) | {first:.2f} s | {n / first:,.0f} |",
        f"| netspec, later epochs (from the cache) | {later:.2f} s | {n / later:,.0f} |",
        f"| hand-written Pillow Dataset, DataLoader(num_workers=2) | {pillow:.2f} s | {n / pillow:,.0f} |",
        f"| hand-written loop over in-memory tensors | {memory:.2f} s | {n / memory:,.0f} |",
        f"| netspec, opening the cache again (scan of the folder + sha256 check of {cache_mb:.1f} MB) | "
        f"{reopen:.3f} s (check {check:.3f} s) | |",
        "",
        f"the cache's digest check costs {check / later:.0%} of one later epoch, once per command "
        f"({cache_mb / max(check, 1e-9):,.0f} MB/s)",
        "",
        f"later epochs: {pillow / later:.1f}x faster than the Pillow DataLoader; {later / memory:.2f}x the time of "
        "in-memory tensors",
    ]


def _cache_open_cost(root: Path) -> tuple[float, float, float]:
    """(seconds to open the built cache again, of which the digest check; its size in MB)."""
    import json

    from netspec.data import images

    t = time.perf_counter()
    arr = images.load_image_folder(root, (28, 28), 1, progress=False)
    reopen = time.perf_counter() - t
    meta = json.loads((arr.cache / "meta.json").read_text())
    check = min(_timed(lambda: images._digest_problem(arr.cache, meta)) for _ in range(3))
    size = sum((arr.cache / f).stat().st_size for f in ("x.uint8", "y.npy")) / 1e6
    return reopen, check, size


def _timed(fn) -> float:
    t = time.perf_counter()
    fn()
    return time.perf_counter() - t


BIG = """
model big {
    input: [3, 64, 64]
    Flatten
    Linear(16)
    ReLU
    Linear(10)
}
data { train: npy(x="x.npy", y="y.npy"); batch_size: 256 }
train { loss: CrossEntropyLoss; optimizer: Adam(lr=1e-3); epochs: 1 }
"""


def larger_than_memory(gib: float, limit_mib: int) -> list[str]:
    work = Path(tempfile.mkdtemp())
    n = int(gib * (1 << 30) // (3 * 64 * 64))
    x = np.lib.format.open_memmap(work / "x.npy", mode="w+", dtype=np.uint8, shape=(n, 3, 64, 64))
    rng = np.random.default_rng(0)
    for start in range(0, n, 8192):
        x[start:start + 8192] = rng.integers(0, 256, (min(8192, n - start), 3, 64, 64), dtype=np.uint8)
    x.flush()
    del x
    np.save(work / "y.npy", rng.integers(0, 10, n))
    (work / "big.net").write_text(BIG)
    cgroup = Path("/sys/fs/cgroup/memory") / f"netspec_bench_{os.getpid()}"
    limited = False
    try:
        cgroup.mkdir()
        (cgroup / "memory.limit_in_bytes").write_text(str(limit_mib << 20))
        limited = True
    except OSError:
        pass

    def enter() -> None:
        if limited:
            (cgroup / "cgroup.procs").write_text(str(os.getpid()))

    env = {**os.environ}
    if not limited:
        env["NETSPEC_RESIDENT_BYTES"] = "0"  # stream even though it would fit
    t = time.perf_counter()
    r = subprocess.run([str(Path(sys.executable).parent / "netspec"), "train", "big.net", "--quiet", "--out", "run"],
                       cwd=work, env=env, preexec_fn=enter, capture_output=True, text=True)
    seconds = time.perf_counter() - t
    peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    cg_peak = None
    if limited:
        cg_peak = int((cgroup / "memory.max_usage_in_bytes").read_text()) / (1 << 20)
        try:
            cgroup.rmdir()
        except OSError:
            pass
    status = "finished" if r.returncode == 0 else f"failed ({r.stderr.strip().splitlines()[-1:]})"
    where = f"in a cgroup limited to {limit_mib} MiB (peak charge {cg_peak:,.0f} MiB, page cache included)" \
        if limited else "streaming forced (no cgroup: not root or no cgroup v1)"
    return [f"| {n:,} samples [3, 64, 64], {gib:.1f} GiB | {where} | {status} in {seconds:.1f} s | "
            f"peak RSS {peak:,.0f} MiB |"]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--big-gib", type=float, default=1.5)
    ap.add_argument("--limit-mib", type=int, default=768)
    ap.add_argument("--skip-big", action="store_true", help="only the MNIST PNG folder table")
    args = ap.parse_args()
    from netspec.data.datasets import cache_dir

    root = cache_dir() / "mnist_png" / "train"
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads\n")
    if root.is_dir():
        print("| MNIST PNG folder, MLP, batch 64 | epoch | samples/s |\n|---|---|---|")
        for row in folder_table(root):
            print(row, flush=True)
    else:
        print(f"{root} is missing: `make data` writes it")
    if args.skip_big:
        return
    print("\n| larger than memory | limit | result | memory |\n|---|---|---|---|")
    for row in larger_than_memory(args.big_gib, args.limit_mib):
        print(row, flush=True)


if __name__ == "__main__":
    main()
