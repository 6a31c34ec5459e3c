"""Inference: torch eager (inference_mode) vs onnxruntime for the MNIST MLP and CNN, in one
process: median latency at batch 1 over 2,000 calls and samples/s at batch 256. Also the
whole-process time of `netspec predict` on one image vs a Python script that imports torch
and runs the same model.

    .venv/bin/python benchmarks/inference.py
"""

from __future__ import annotations

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


def latency(fn, calls: int = CALLS) -> float:
    for _ in range(50):
        fn()
    times = []
    for _ in range(calls):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times) * 1e3


def throughput(fn, batch: int, seconds: float = 2.0) -> float:
    fn()
    n, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        fn()
        n += batch
    return n / (time.perf_counter() - start)


def main() -> None:
    tmp = Path(tempfile.mkdtemp())
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


if __name__ == "__main__":
    main()
