"""Training speed on an accelerator: netspec's loop against a careful hand-written loop, in the
same process, on random data already on the device.

Models: the MNIST MLP (784-128-64-10), the MNIST CNN (examples/mnist.net's layers) and a
CIFAR-size ResNet-18 (the zoo's BasicBlocks, 3x3 stem, no max-pool, 10 classes, [3, 32, 32]);
batch 64 and 512; precision fp32 and bf16 (autocast). For each cell both loops train the same
model from the same initial weights with the same optimizer (Adam, fused as netspec uses it)
for the same number of steps, interleaved, best of `--rounds`; the table gives samples/s and
the ratio netspec / hand-written (goal >= 0.95x).

    .venv/bin/python benchmarks/gpu.py                          # CUDA when present
    .venv/bin/python benchmarks/gpu.py --device cpu --steps 3   # a smoke run of the script
"""

from __future__ import annotations

import argparse
import copy
import sys
import tempfile
import time
from contextlib import nullcontext
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import torch  # noqa: E402

import netspec  # noqa: E402
from netspec.data.loader import to_units  # noqa: E402
from netspec.train.runs import RunDir  # noqa: E402
from netspec.train.trainer import Progress, Trainer  # noqa: E402

ZOO = ROOT / "examples" / "zoo" / "resnet18.net"
MODELS = {
    "mlp": ("[784]", "fc1: Linear(128); relu1: ReLU; fc2: Linear(64); relu2: ReLU; output: Linear(10)"),
    "cnn": ("[1, 28, 28]", "conv1: { Conv2d(32, 3, padding=1); ReLU; MaxPool2d(2) }\n"
                           "conv2: { Conv2d(64, 3, padding=1); ReLU; MaxPool2d(2) }\n"
                           "Flatten; fc1: Linear(128); ReLU; fc2: Linear(10)"),
    "resnet18": ("[3, 32, 32]", "conv1: Conv2d(64, 3, padding=1, bias=false); bn1: BatchNorm2d; relu: ReLU\n"
                                "layer1: repeat 2 { basic(64) }\n"
                                "layer2: { basic_down(128); basic(128) }\n"
                                "layer3: { basic_down(256); basic(256) }\n"
                                "layer4: { basic_down(512); basic(512) }\n"
                                "avgpool: AdaptiveAvgPool2d(1); Flatten; fc: Linear(10)"),
}


def spec_text(which: str, samples: int, batch: int, precision: str, device: str) -> str:
    shape, body = MODELS[which]
    imports = f'import "{ZOO}"\n' if which == "resnet18" else ""
    dims = shape.strip("[]")
    return f"""{imports}
model {which} {{
    input: {shape}
    {body}
}}
data {{
    train: table(x=normal(0, 1, [{samples}, {dims}]), y=randint(0, 10, [{samples}]))
    batch_size: {batch}
    shuffle: true
}}
train {{
    loss: CrossEntropyLoss
    optimizer: Adam(lr=1e-3)
    epochs: 1
    precision: {precision}
    device: {device}
    seed: 0
}}
"""


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def hand_steps(model, opt, loss_fn, x, y, batch, steps, dtype, device) -> None:
    """The careful hand-written loop: device tensors, randperm on the device, no host reads."""
    model.train()
    perm = torch.randperm(len(x), device=device)
    ctx = torch.autocast(device.type, dtype=dtype) if dtype is not None else nullcontext()
    for s in range(steps):
        idx = perm[s * batch:(s + 1) * batch]
        opt.zero_grad(set_to_none=True)
        with ctx:
            out = model(x[idx])
        loss = loss_fn(out.float(), y[idx])
        loss.backward()
        opt.step()


def cell(which: str, batch: int, precision: str, device: str, steps: int, rounds: int) -> tuple[float, float]:
    samples = batch * steps
    folder = Path(tempfile.mkdtemp())
    spec = folder / f"{which}.net"
    spec.write_text(spec_text(which, samples, batch, precision, device))
    tr = Trainer(netspec.load(str(spec)), RunDir(folder / "run", enabled=False), quiet=True)
    dev = tr.device
    loader = tr.train_loader
    assert loader.x is not None and loader.y is not None
    with torch.no_grad():
        x = tr.transform(to_units(loader.x, tr.data.pre)).contiguous()
    y = loader.y
    model = copy.deepcopy(tr.model)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3, fused=dev.type in ("cpu", "cuda"))
    dtype = {"fp32": None, "bf16": torch.bfloat16}[precision]
    progress = Progress(False)
    tr.train_epoch(1, progress)  # warm-up (kernels, allocator)
    hand_steps(model, opt, tr.loss_fn, x, y, batch, steps, dtype, dev)
    best_ours = best_hand = 0.0
    for r in range(rounds):
        sync(dev)
        t = time.perf_counter()
        tr.train_epoch(r + 2, progress)
        sync(dev)
        best_ours = max(best_ours, samples / (time.perf_counter() - t))
        t = time.perf_counter()
        hand_steps(model, opt, tr.loss_fn, x, y, batch, steps, dtype, dev)
        sync(dev)
        best_hand = max(best_hand, samples / (time.perf_counter() - t))
    return best_ours, best_hand


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--steps", type=int, default=200, help="steps per timed epoch")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--models", default="mlp,cnn,resnet18")
    args = ap.parse_args()
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        sys.exit("no CUDA device here; run with --device cpu for a smoke run")
    name = torch.cuda.get_device_name() if args.device.startswith("cuda") else "CPU"
    print(f"device: {name}, torch {torch.__version__}, {args.steps} steps per epoch, best of {args.rounds}\n")
    print("| model | batch | precision | netspec (samples/s) | hand-written (samples/s) | netspec / hand |")
    print("|---|---|---|---|---|---|")
    for which in args.models.split(","):
        for batch in (64, 512):
            for precision in ("fp32", "bf16"):
                ours, hand = cell(which, batch, precision, args.device, args.steps, args.rounds)
                print(f"| {which} | {batch} | {precision} | {ours:,.0f} | {hand:,.0f} | {ours / hand:.2f}x |",
                      flush=True)


if __name__ == "__main__":
    main()
