"""Augmentation inside training: seeded by (seed, epoch, step), so two runs and a run
resumed after a kill give identical weights, and a DDP run draws per sample what the single
process draws (not the same draws repeated per process). Real PNG folders: when `make data`
wrote the MNIST PNGs, a short run on them."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time

import numpy as np
import pytest
import torch

from netspec.train.trainer import train_file
from tests.conftest import ROOT, netspec_cmd

SPEC = """
model aug {{
    input: [1, 16, 16]
    Conv2d(8, 3, padding=1)
    ReLU
    MaxPool2d(2)
    Flatten
    Linear(2)
}}
data {{
    train: npy(x="x.npy", y="y.npy")
    validation: 0.2
    augment: [RandomCrop(16, padding=2), RandomHorizontalFlip(), RandomErasing(p=0.5)]
    normalize: standard
    batch_size: 32
}}
train {{ loss: CrossEntropyLoss; optimizer: Adam(lr=1e-2); epochs: {epochs}; metrics: [accuracy] }}
"""


@pytest.fixture
def image_spec(tmp_path):
    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 600)
    x = np.zeros((600, 1, 16, 16), np.uint8)
    for i, label in enumerate(y):  # a bright bar: left half (0) or right half (1), with noise
        x[i, 0, 4:12, (2 if label == 0 else 10):(6 if label == 0 else 14)] = 200
    x = np.clip(x + rng.integers(0, 40, x.shape), 0, 255).astype(np.uint8)
    np.save(tmp_path / "x.npy", x)
    np.save(tmp_path / "y.npy", y)

    def make(epochs: int = 3) -> str:
        p = tmp_path / "aug.net"
        p.write_text(SPEC.format(epochs=epochs))
        return str(p)

    return make


def test_same_seed_same_weights_with_augmentation(tmp_path, image_spec):
    path = image_spec()
    a = train_file(path, (), out_dir=str(tmp_path / "a"), quiet=True)
    b = train_file(path, (), out_dir=str(tmp_path / "b"), quiet=True)
    wa = torch.load(tmp_path / "a" / "model.pt", weights_only=True)
    wb = torch.load(tmp_path / "b" / "model.pt", weights_only=True)
    assert all(torch.equal(wa[k], wb[k]) for k in wa) and a["val_loss"] == b["val_loss"]
    c = train_file(path, ("train.seed=1",), out_dir=str(tmp_path / "c"), quiet=True)
    assert c["val_loss"] != a["val_loss"]
    assert a["val_accuracy"] > 0.9 if "val_accuracy" in a else True


def test_resume_after_a_kill_with_augmentation(tmp_path, image_spec):
    path = image_spec(epochs=12)
    train_file(path, (), out_dir=str(tmp_path / "full"), quiet=True)
    proc = subprocess.Popen([*netspec_cmd(), "train", path, "--out", str(tmp_path / "cut"), "--json"], cwd=ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    assert proc.stdout is not None
    for line in proc.stdout:
        if json.loads(line).get("epoch") == 3:
            break
    time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    done = torch.load(tmp_path / "cut" / "checkpoint.pt", weights_only=True)["epoch"]
    assert 3 <= done < 12
    train_file(path, (), out_dir=str(tmp_path / "cut"), resume=True, quiet=True)
    a = torch.load(tmp_path / "full" / "model.pt", weights_only=True)
    b = torch.load(tmp_path / "cut" / "model.pt", weights_only=True)
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_ddp_draws_per_sample_like_one_process(tmp_path, image_spec):
    path = image_spec(epochs=2)
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    for out, extra in (("one", []), ("two", ["--nproc", "2"])):
        r = subprocess.run([*netspec_cmd(), "train", path, "--quiet", "--out", str(tmp_path / out), *extra],
                           cwd=tmp_path, capture_output=True, text=True, env=env, timeout=300)
        assert r.returncode == 0, r.stderr[-2000:]
    a = torch.load(tmp_path / "one" / "model.pt", weights_only=True)
    b = torch.load(tmp_path / "two" / "model.pt", weights_only=True)
    assert max(float((a[k] - b[k]).abs().max()) for k in a) < 1e-5


def test_preview_draws_the_first_augmented_batch(tmp_path, image_spec):
    path = image_spec()
    r = subprocess.run([*netspec_cmd(), "data", path, "--preview", "-o", str(tmp_path / "grid.png"), "--count", "16"],
                       cwd=tmp_path, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert "augment:" in r.stdout and "RandomCrop" in r.stdout and "classes:" in r.stdout
    from PIL import Image

    with Image.open(tmp_path / "grid.png") as im:
        assert im.size[0] > 300 and im.size[1] > 100
    (tmp_path / "notes.png").write_text("not a picture")
    r = subprocess.run([*netspec_cmd(), "data", path, "--preview", "-o", str(tmp_path / "notes.png")], cwd=tmp_path,
                       capture_output=True, text=True)
    assert r.returncode == 1 and "not an unedited preview of netspec data" in r.stderr


@pytest.mark.skipif(not (__import__("netspec.data.datasets").data.datasets.cache_dir() / "mnist_png" / "train").is_dir(),
                    reason="the MNIST PNG folder is written by `make data`")
def test_real_png_folder_trains(tmp_path):
    r = subprocess.run([*netspec_cmd(), "train", "mnist_folder.net", "--epochs", "1", "--set", "data.subset=3000",
                        "--quiet", "--out", "run"], cwd=tmp_path, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr
    result = json.loads((tmp_path / "run" / "run.json").read_text())["result"]
    assert result["test_accuracy"] > 0.8
    assert (tmp_path / "run" / "confusion.png").exists()
    summary = (tmp_path / "run" / "summary.txt").read_text()
    assert "image cache" in summary and "per-class report" in summary
