"""Training: every example learns (briefly), runs are reproducible, resume after SIGKILL
equals an uninterrupted run, NaN stops cleanly, the run directory is complete."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

import netspec
from netspec.errors import NetspecError
from netspec.train.evaluate import evaluate_file
from netspec.train.trainer import train_file
from tests.conftest import EXAMPLES, ROOT, have_dataset

needs_mnist = pytest.mark.skipif(not have_dataset("mnist"), reason="MNIST not installed (make data)")
needs_fashion = pytest.mark.skipif(not have_dataset("fashion_mnist"), reason="Fashion-MNIST not installed")


def history(out: Path) -> list[dict]:
    import csv

    with open(out / "metrics.csv") as f:
        return [{k: float(v) for k, v in row.items() if v} for row in csv.DictReader(f)]


def train(path, tmp_path, *sets, name="run"):
    out = tmp_path / name
    result = train_file(str(path), tuple(sets), out_dir=str(out), quiet=True)
    return result, out


@needs_mnist
def test_mnist_mlp_learns(tmp_path):
    result, out = train(EXAMPLES / "mnist_mlp.net", tmp_path, "data.subset=6000", "train.epochs=2")
    assert result["test_accuracy"] > 0.85
    rows = history(out)
    assert rows[-1]["loss"] < rows[0]["loss"]
    for f in ("model.pt", "checkpoint.pt", "metrics.csv", "curves.png", "summary.txt", "spec.net"):
        assert (out / f).exists(), f
    assert (out / "curves.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    resolved = netspec.load(str(out / "spec.net"))
    assert resolved.data.subset == 6000 and resolved.train.epochs == 2
    evaluated = evaluate_file(str(EXAMPLES / "mnist_mlp.net"), str(out / "model.pt"))
    assert evaluated["test_accuracy"] == pytest.approx(result["test_accuracy"])


@needs_mnist
def test_mnist_cnn_learns(tmp_path):
    result, _ = train(EXAMPLES / "mnist.net", tmp_path, "data.subset=3000", "train.epochs=1")
    assert result["test_accuracy"] > 0.7


@needs_fashion
def test_fashion_mnist_learns(tmp_path):
    result, _ = train(EXAMPLES / "fashion_mnist.net", tmp_path, "data.subset=3000", "train.epochs=1")
    assert result["test_accuracy"] > 0.5
    assert result["test_top_2"] >= result["test_accuracy"]


def test_linear_regression_matches_least_squares(tmp_path):
    _, out = train(EXAMPLES / "linear_regression.net", tmp_path)
    state = torch.load(out / "model.pt", weights_only=True)
    x = np.array([3.3, 4.4, 5.5, 6.71, 6.93, 4.168, 9.779, 6.182, 7.59, 2.167, 7.042, 10.791, 5.313, 7.997, 3.1])
    y = np.array([1.7, 2.76, 2.09, 3.19, 1.694, 1.573, 3.366, 2.596, 2.53, 1.221, 2.827, 3.465, 1.65, 2.904, 1.3])
    w, b = np.linalg.lstsq(np.stack([x, np.ones_like(x)], 1), y, rcond=None)[0]
    assert abs(state["linear1.weight"].item() - w) < 1e-3
    assert abs(state["linear1.bias"].item() - b) < 1e-3


def test_sine_poly_fits(tmp_path):
    _, out = train(EXAMPLES / "sine_poly.net", tmp_path)
    assert history(out)[-1]["val_mse"] < 1e-3


def test_sequence_example_learns(tmp_path):
    _, out = train(EXAMPLES / "sequence_sum.net", tmp_path, "train.epochs=6", "samples=2000")
    rows = history(out)
    assert rows[-1]["val_loss"] < rows[0]["val_loss"] / 3
    assert rows[-1]["val_r2"] > 0.8


SMALL = """
let hidden = 32
model small {{
    input: [8]
    Linear(hidden)
    ReLU
    Dropout(0.2)
    Linear(1)
}}
data {{
    train: table(x=normal(0, 1, [{n}, 8]), y=sum(x, 1) + normal(0, 0.1, {n}))
    validation: 0.2
    batch_size: 16
}}
train {{
    loss: MSELoss
    optimizer: SGD(lr=0.01, momentum=0.9)
    scheduler: StepLR(step_size=2, gamma=0.5)
    epochs: {epochs}
    metrics: [mae]
    seed: 1
}}
"""


def test_same_seed_same_weights(tmp_path, spec_file):
    path = spec_file(SMALL.format(n=400, epochs=3))
    _, a = train(path, tmp_path, name="a")
    _, b = train(path, tmp_path, name="b")
    sa, sb = torch.load(a / "model.pt", weights_only=True), torch.load(b / "model.pt", weights_only=True)
    assert all(torch.equal(sa[k], sb[k]) for k in sa)
    _, c = train(path, tmp_path, "train.seed=2", name="c")
    sc = torch.load(c / "model.pt", weights_only=True)
    assert not all(torch.equal(sa[k], sc[k]) for k in sa)


def test_resume_after_sigkill_equals_uninterrupted(tmp_path, spec_file):
    path = spec_file(SMALL.format(n=12000, epochs=5))
    full = tmp_path / "full"
    subprocess.run([sys.executable, "-m", "netspec", "train", path, "--out", str(full), "--quiet"], check=True,
                   cwd=ROOT, capture_output=True)
    killed = tmp_path / "killed"
    proc = subprocess.Popen([sys.executable, "-m", "netspec", "train", path, "--out", str(killed), "--json"],
                            cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    assert proc.stdout is not None
    for line in proc.stdout:
        if json.loads(line).get("epoch") == 2:
            break
    time.sleep(0.1)  # inside epoch 3
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    ckpt = torch.load(killed / "checkpoint.pt", weights_only=True)
    assert 2 <= ckpt["epoch"] < 5  # killed before the end (normally inside epoch 3)
    r = subprocess.run([sys.executable, "-m", "netspec", "train", path, "--out", str(killed), "--resume", "--quiet"],
                       cwd=ROOT, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert "resumed from" in r.stderr
    a = torch.load(full / "checkpoint.pt", weights_only=True)
    b = torch.load(killed / "checkpoint.pt", weights_only=True)
    assert a["epoch"] == b["epoch"] == 5
    for k in a["model"]:
        assert torch.equal(a["model"][k], b["model"][k]), k
    assert a["history"][-1]["val_loss"] == b["history"][-1]["val_loss"]


def test_resume_refuses_changed_model_allows_epochs(tmp_path, spec_file):
    path = spec_file(SMALL.format(n=200, epochs=2))
    _, out = train(path, tmp_path)
    with pytest.raises(NetspecError, match=r"spec changed[\s\S]*let hidden: 32 -> 64"):
        train_file(path, ("hidden=64", "train.epochs=4"), out_dir=str(out), resume=True, quiet=True)
    with pytest.raises(NetspecError, match="already finished 2 of 2 epochs"):
        train_file(path, (), out_dir=str(out), resume=True, quiet=True)
    result = train_file(path, ("train.epochs=3", "train.optimizer=SGD(lr=0.001, momentum=0.9)"), out_dir=str(out),
                        resume=True, quiet=True)
    assert result["epochs"] == 3
    assert history(out)[-1]["lr"] == pytest.approx(0.001 * 0.5 ** 0)


def test_nan_loss_stops_with_position(tmp_path, spec_file):
    path = spec_file(SMALL.format(n=200, epochs=3))
    with pytest.raises(NetspecError, match=r"loss became (nan|inf) at epoch 1, step \d+ of 10"):
        train_file(path, ("train.optimizer=SGD(lr=1e12)",), out_dir=str(tmp_path / "nan"), quiet=True)


def test_new_run_keeps_previous(tmp_path, spec_file):
    path = spec_file(SMALL.format(n=100, epochs=1))
    _, out = train(path, tmp_path)
    first = (out / "model.pt").read_bytes()
    train(path, tmp_path, "train.seed=5")
    assert (tmp_path / "run.1" / "model.pt").read_bytes() == first


def test_early_stopping(tmp_path, spec_file):
    path = spec_file(SMALL.format(n=200, epochs=10))
    result, out = train(path, tmp_path, "train.optimizer=SGD(lr=0.0)",
                        'train.early_stopping=EarlyStopping(monitor="val_loss", patience=2)')
    assert result["stopped_early"] and result["epochs"] == 3


def test_schedulers_optimizers_and_penalties(tmp_path, spec_file):
    path = spec_file(SMALL.format(n=200, epochs=2))
    for sets in (("train.scheduler=ReduceLROnPlateau(patience=0)",),
                 ("train.scheduler=OneCycleLR(max_lr=0.05)",),
                 ("train.scheduler=CosineAnnealingLR(T_max=2)", "train.optimizer=AdamW(lr=1e-3)"),
                 ("train.optimizer=RMSprop(lr=1e-3)", "train.clip_grad_norm=0.5"),
                 ("train.optimizer=LBFGS(lr=0.5)", "data.batch_size=full"),
                 ("train.l1=0.01",)):
        result, _ = train(path, tmp_path, *sets, name="s" + str(abs(hash(sets))))
        assert result["epochs"] == 2, sets


def test_cli_train_json_and_overrides(tmp_path, spec_file):
    path = spec_file(SMALL.format(n=200, epochs=5))
    r = subprocess.run([sys.executable, "-m", "netspec", "train", path, "--epochs", "2", "--out", str(tmp_path / "o"),
                        "--json", "--device", "cpu"], cwd=ROOT, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    lines = [json.loads(x) for x in r.stdout.splitlines()]
    assert [x["epoch"] for x in lines if "epoch" in x] == [1, 2]
    assert "final" in lines[-1]
    r = subprocess.run([sys.executable, "-m", "netspec", "train", path, "--set", "train.device=cuda:7"], cwd=ROOT,
                       capture_output=True, text=True)
    assert r.returncode == 1 and "Traceback" not in r.stderr


def test_torch_errors_in_a_step_are_reported(tmp_path, spec_file):
    path = spec_file("""
model m {
    input: [2]
    Linear(3)
}
data { train: table(x=[[0, 1], [1, 0], [1, 1], [0, 0]], y=[0, 1, 2, 1]) }
train { loss: CrossEntropyLoss(weight=[1, 2]) }
""")
    # caught before training now: the weight list does not match the 3 classes
    with pytest.raises(NetspecError, match=r"weight= has 2 values but the model outputs \[3\] class scores"):
        train_file(path, (), out_dir=str(tmp_path / "w"), quiet=True)
    # whatever torch still refuses inside a step is reported with the step and the tensors
    import netspec.train.trainer as train_module

    def broken(self, *a, **k):
        raise RuntimeError("mat1 and mat2 shapes cannot be multiplied")

    original = train_module.Trainer.forward_loss
    train_module.Trainer.forward_loss = broken
    try:
        with pytest.raises(NetspecError, match=r"training step failed at epoch 1, step 1: mat1"):
            train_file(path, ("train.loss=CrossEntropyLoss",), out_dir=str(tmp_path / "w2"), quiet=True)
    finally:
        train_module.Trainer.forward_loss = original
