"""Inference: torch eager (inference_mode) vs onnxruntime for the MNIST MLP and CNN, in one
process: median latency at batch 1 over 2,000 calls and samples/s at batch 256. Also the
whole-process time of `netspec predict` on one image vs a Python script that imports torch
and runs the same model.

Then int8 (`netspec export --quantize int8`) against fp32, both through onnxruntime in this
process, alternating: batch-1 median latency, batch-256 samples/s, file sizes and the
metric of each, for the MNIST MLP and CNN (trained for one epoch here, or the runs under
--runs DIR: DIR/mnist_mlp, DIR/mnist_cnn) and ResNet-18 at 64x64 (random weights,
calibrated on random images: top-1 agreement with fp32 instead of a metric).

    .venv/bin/python benchmarks/inference.py                 # both parts
    .venv/bin/python benchmarks/inference.py --part int8 --runs runs
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402
import onnxruntime as ort  # noqa: E402
import torch  # noqa: E402

import netspec  # noqa: E402
from netspec.deploy.export import export_model  # noqa: E402

MODELS = {"mlp": ROOT / "examples" / "mnist_mlp.net", "cnn": ROOT / "examples" / "mnist.net"}
CALLS = 2000


def latency(fn, calls: int = CALLS, clock=time.perf_counter) -> float:
    for _ in range(50):
        fn()
    times = []
    for _ in range(calls):
        t = clock()
        fn()
        times.append(clock() - t)
    return statistics.median(times) * 1e3


def throughput(fn, batch: int, seconds: float = 2.0, clock=time.perf_counter) -> float:
    fn()
    n, start = 0, clock()
    while clock() - start < seconds:
        fn()
        n += batch
    return n / (clock() - start)


def torch_part(tmp: Path) -> None:
    print(f"torch {torch.__version__} ({torch.get_num_threads()} threads), onnxruntime {ort.__version__}\n")
    print("| model | torch batch-1 median (ms) | onnxruntime batch-1 median (ms) | speed-up | "
          "torch batch-256 (samples/s) | onnxruntime batch-256 | ratio |")
    print("|---|---|---|---|---|---|---|")
    paths = {}
    for name, spec in MODELS.items():
        checked = netspec.load(str(spec))
        net = netspec.build(checked).eval()
        path = tmp / f"{name}.onnx"
        export_model(checked, net, path, metadata={"preprocessing": '{"normalize": "none"}', "task": "class"})
        paths[name] = (path, checked)
        sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        shape = checked.model.input_shape
        x1 = np.random.rand(1, *shape).astype(np.float32)
        x256 = np.random.rand(256, *shape).astype(np.float32)
        t1, t256 = torch.from_numpy(x1), torch.from_numpy(x256)

        def torch_call(x):
            with torch.inference_mode():
                return net(x)

        lt = latency(lambda: torch_call(t1))
        lo = latency(lambda: sess.run(None, {"input": x1}))
        tt = throughput(lambda: torch_call(t256), 256)
        to = throughput(lambda: sess.run(None, {"input": x256}), 256)
        print(f"| {name} | {lt:.3f} | {lo:.3f} | {lt / lo:.2f}x | {tt:,.0f} | {to:,.0f} | {to / tt:.2f}x |")
    path, checked = paths["cnn"]
    state = tmp / "cnn.pt"
    torch.save(netspec.build(checked).state_dict(), state)
    image = ROOT / "examples" / "digits" / "7.png"
    script = tmp / "torch_predict.py"
    script.write_text(
        "import sys, torch, numpy as np\nfrom PIL import Image\n"
        f"sys.path.insert(0, {str(ROOT)!r})\nimport netspec\n"
        f"net = netspec.compile_file({str(MODELS['cnn'])!r})\n"
        f"net.load_state_dict(torch.load({str(state)!r}, weights_only=True)); net.eval()\n"
        f"x = torch.from_numpy(np.asarray(Image.open({str(image)!r}).convert('L'), dtype=np.float32)[None, None] / 255)\n"
        "with torch.inference_mode():\n    print(net(x).softmax(-1).argmax().item())\n")

    def whole(cmd):
        times = []
        for _ in range(5):
            t = time.perf_counter()
            subprocess.run(cmd, check=True, capture_output=True, cwd=ROOT)
            times.append(time.perf_counter() - t)
        return statistics.median(times)

    p = whole([sys.executable, "-m", "netspec", "predict", str(path), str(image)])
    s = whole([sys.executable, str(script)])
    print(f"\nwhole process, one image, CNN (median of 5): netspec predict {p:.2f} s, "
          f"torch script {s:.2f} s ({s / p:.2f}x)")


def session(path: str, threads: int = 0):
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads  # 0: onnxruntime's default (one per core)
    return ort.InferenceSession(path, options, providers=["CPUExecutionProvider"])


def timed_pair(fp32: str, int8: str, x1: np.ndarray, x256: np.ndarray, threads: int, clock,
               rounds: int = 3) -> dict:
    """fp32 and int8 measured alternately (the machine is shared), medians over `rounds`:
    batch-1 latency (ms) and batch-256 samples/s, with `clock` (wall or this thread's CPU time)."""
    sessions = {"fp32": session(fp32, threads), "int8": session(int8, threads)}
    name = sessions["fp32"].get_inputs()[0].name
    out: dict = {k: [] for k in ("b1_fp32", "b1_int8", "b256_fp32", "b256_int8")}
    for _ in range(rounds):
        for tag, s in sessions.items():
            out[f"b1_{tag}"].append(latency(lambda s=s: s.run(None, {name: x1}), 300, clock))
            out[f"b256_{tag}"].append(throughput(lambda s=s: s.run(None, {name: x256}), 256, 1.5, clock))
    return {k: statistics.median(v) for k, v in out.items()}


def mnist_int8(name: str, spec: Path, runs: Path | None, tmp: Path) -> dict:
    """Train briefly (or take the run), export fp32 + int8 as `netspec export --quantize int8`."""
    from netspec.deploy.export import export_file
    from netspec.train.trainer import train_file

    run = runs / netspec.load(str(spec)).model.name if runs else None
    if run is None or not (run / "model.pt").exists():
        run = tmp / f"run_{name}"
        train_file(str(spec), ("train.epochs=1",), out_dir=str(run), quiet=True)
        trained = "1 epoch here"
    else:
        trained = f"{run}"
    report = export_file(str(run), str(tmp / f"{name}.onnx"), quantize="int8")
    q = report["int8"]
    return {"fp32_path": report["output"], "int8_path": q["int8_output"], "trained": trained,
            "metric": f"{q['metric']} {q['fp32']:.4f} / {q['int8']:.4f}", "mode": q["mode"]}


def resnet_int8(tmp: Path) -> dict:
    """ResNet-18 at 64x64, random weights: exported, quantized on 256 random images in [0, 1]."""
    import onnx

    from netspec.deploy import quantize as q
    from netspec.deploy.runtime import feeds

    checked = netspec.load(str(ROOT / "examples" / "zoo" / "resnet18.net"), ("model.input=[3, 64, 64]",))
    net = netspec.build(checked).eval()
    fp32 = tmp / "resnet18.onnx"
    export_model(checked, net, fp32)
    int8 = tmp / "resnet18.int8.onnx"
    g = np.random.default_rng(0)
    calib = g.random((256, 3, 64, 64), dtype=np.float32)
    session = ort.InferenceSession(str(fp32), providers=["CPUExecutionProvider"])
    mode, _ = q.plan(onnx.load(str(fp32)))
    q.quantize_graph(str(fp32), str(int8), mode, calib, lambda x: feeds(session, x))
    x = g.random((512, 3, 64, 64), dtype=np.float32)
    s8 = ort.InferenceSession(str(int8), providers=["CPUExecutionProvider"])
    a = np.concatenate([session.run(None, {"input": x[i:i + 64]})[0] for i in range(0, 512, 64)])
    b = np.concatenate([s8.run(None, {"input": x[i:i + 64]})[0] for i in range(0, 512, 64)])
    agree = float((a.argmax(1) == b.argmax(1)).mean())
    # random weights answer nearly one class for every image: the part of the logits that
    # depends on the image (minus the batch mean) says more than the top-1 agreement
    da, db = a - a.mean(0), b - b.mean(0)
    err = float(np.linalg.norm(db - da) / np.linalg.norm(da))
    return {"fp32_path": str(fp32), "int8_path": str(int8), "trained": "random weights",
            "metric": f"top-1 agreement {100 * agree:.1f}% ({len(set(a.argmax(1)))} distinct fp32 classes in 512 "
                      f"random images); input-dependent logits' relative error {err:.3f}", "mode": mode}


def int8_part(tmp: Path, runs: Path | None) -> None:
    print(f"\nint8 vs fp32, onnxruntime {ort.__version__}, {os.cpu_count()} CPUs, "
          f"load average before: {' '.join(f'{v:.2f}' for v in os.getloadavg())}\n")
    rows = {"mlp": mnist_int8("mlp", MODELS["mlp"], runs, tmp), "cnn": mnist_int8("cnn", MODELS["cnn"], runs, tmp),
            "resnet18@64": resnet_int8(tmp)}
    print("| model | weights | metric fp32 / int8 | file fp32 | file int8 | int8 / fp32 |")
    print("|---|---|---|---|---|---|")
    for name, r in rows.items():
        a, b = os.path.getsize(r["fp32_path"]), os.path.getsize(r["int8_path"])
        print(f"| {name} ({r['mode']}) | {r['trained']} | {r['metric']} | {a / 1e6:.2f} MB | {b / 1e6:.2f} MB | "
              f"{100 * b / a:.0f}% |")
    for title, threads, clock in (
            ("one thread, CPU time of the calling thread (robust to other processes' load)", 1, time.thread_time),
            ("onnxruntime's default threads, wall clock (what this machine gave under its load)", 0,
             time.perf_counter)):
        print(f"\n{title}:\n")
        print("| model | batch-1 fp32 (ms) | batch-1 int8 (ms) | speed-up | batch-256 fp32 (samples/s) | "
              "batch-256 int8 | ratio |")
        print("|---|---|---|---|---|---|---|")
        for name, r in rows.items():
            shape = [d if isinstance(d, int) else 1 for d in session(r["fp32_path"]).get_inputs()[0].shape[1:]]
            g = np.random.default_rng(1)
            t = timed_pair(r["fp32_path"], r["int8_path"], g.random((1, *shape), dtype=np.float32),
                           g.random((256, *shape), dtype=np.float32), threads, clock)
            print(f"| {name} | {t['b1_fp32']:.3f} | {t['b1_int8']:.3f} | {t['b1_fp32'] / t['b1_int8']:.2f}x | "
                  f"{t['b256_fp32']:,.0f} | {t['b256_int8']:,.0f} | {t['b256_int8'] / t['b256_fp32']:.2f}x |")
    print(f"\nload average after: {' '.join(f'{v:.2f}' for v in os.getloadavg())}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--part", choices=["all", "torch", "int8"], default="all")
    ap.add_argument("--runs", type=Path, help="trained runs to quantize (DIR/mnist_mlp, DIR/mnist_cnn)")
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp())
    if args.part in ("all", "torch"):
        torch_part(tmp)
    if args.part in ("all", "int8"):
        int8_part(tmp, args.runs)


if __name__ == "__main__":
    main()
