"""DDP on CPU with gloo, launched by torchrun through `netspec train --nproc 2`: a two-process
run is the single-process run (same global batches, averaged gradient = single-process
gradient, BatchNorm statistics of the whole batch, every evaluation sample counted once),
it resumes after a kill, and a failing process ends the job with its message."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
import torch

from tests.conftest import ROOT, have_dataset, netspec_cmd

needs_mnist = pytest.mark.skipif(not have_dataset("mnist"), reason="MNIST not installed (make data)")

MLP = """
model mlp {{
    input: [784]
    fc1: Linear(64)
    {bn}
    relu1: ReLU
    fc2: Linear(10)
}}
data {{
    train: mnist(split="train")
    test: mnist(split="test")
    validation: 0.1
    subset: 6000
    normalize: standard
    batch_size: 64
}}
train {{ loss: CrossEntropyLoss; optimizer: {opt}; epochs: 1; metrics: [accuracy, f1] }}
"""


def run(tmp_path: Path, spec: Path, out: str, *extra: str, nproc: int | None = None, timeout: int = 300):
    args = [*netspec_cmd(), "train", str(spec), "--quiet", "--out", out, *extra]
    if nproc:
        args += ["--nproc", str(nproc)]
    r = subprocess.run(args, capture_output=True, text=True, cwd=tmp_path, timeout=timeout,
                       env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert r.returncode == 0, r.stderr[-3000:]
    return json.loads((tmp_path / out / "run.json").read_text())["result"]


def weights(path: Path) -> dict:
    return torch.load(path / "model.pt", weights_only=True)


def max_diff(a: dict, b: dict) -> float:
    assert a.keys() == b.keys()
    return max(float((a[k].double() - b[k].double()).abs().max()) for k in a)


@needs_mnist
@pytest.mark.parametrize("bn,opt", [("", "Adam(lr=1e-3)"), ("bn1: BatchNorm1d", "SGD(lr=0.05, momentum=0.9)")])
def test_two_processes_equal_one(tmp_path, bn, opt):
    """Adam with BatchNorm is left out on purpose: a bias feeding a BatchNorm has a zero
    gradient, and Adam turns its rounding noise (which differs with the reduction order) into
    full-size steps; the function computed stays the same, the parameters do not."""
    spec = tmp_path / "mlp.net"
    spec.write_text(MLP.format(bn=bn, opt=opt))
    one = run(tmp_path, spec, "one")
    two = run(tmp_path, spec, "two", nproc=2)
    assert max_diff(weights(tmp_path / "one"), weights(tmp_path / "two")) < 1e-5
    assert one["test_accuracy"] == two["test_accuracy"] and one["test_f1"] == pytest.approx(two["test_f1"], abs=1e-9)
    assert one["test_loss"] == pytest.approx(two["test_loss"], abs=1e-5)
    assert one["val_loss"] == pytest.approx(two["val_loss"], abs=1e-5)
    summary = (tmp_path / "two" / "summary.txt").read_text()
    assert "x 2 processes" in summary


TABLE = """
model m {
    input: [5]
    Linear(6)
    BatchNorm1d
    ReLU
    Linear(3)
}
data {
    train: table(x=normal(0, 1, [31, 5]), y=randint(0, 3, 31))
    validation: 0.25
    batch_size: 7
}
train { loss: CrossEntropyLoss; optimizer: SGD(lr=0.1, momentum=0.5); epochs: 3; metrics: [accuracy] }
"""


@pytest.mark.parametrize("samples,batchnorm", [(31, True), (30, False)])
def test_uneven_batches_and_odd_validation_sets(tmp_path, samples, batchnorm):
    """23 training samples in batches of 7: shares of 4/3 and a last batch of 2 (1/1, the
    BatchNorm statistics still those of both); 22 samples: a last batch of 1, smaller than the
    world, which every process takes whole; 8 validation samples split 4/4."""
    spec = tmp_path / "t.net"
    text = TABLE.replace("[31, 5]", f"[{samples}, 5]").replace("(0, 3, 31)", f"(0, 3, {samples})")
    spec.write_text(text if batchnorm else text.replace("    BatchNorm1d\n", ""))
    one = run(tmp_path, spec, "one")
    two = run(tmp_path, spec, "two", nproc=2)
    assert max_diff(weights(tmp_path / "one"), weights(tmp_path / "two")) < 1e-5
    h1 = (tmp_path / "one" / "metrics.csv").read_text().splitlines()
    h2 = (tmp_path / "two" / "metrics.csv").read_text().splitlines()
    col = h1[0].split(",").index("val_accuracy")
    assert [r.split(",")[col] for r in h1[1:]] == [r.split(",")[col] for r in h2[1:]]
    assert one["val_loss"] == pytest.approx(two["val_loss"], abs=1e-5)


def _processes_running(marker: str) -> bool:
    """Whether a process whose command line mentions `marker` is still alive (Linux /proc)."""
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit() and proc.name != str(os.getpid()):
            try:
                if marker in (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace"):
                    return True
            except OSError:
                continue
    return False


def test_resume_after_a_kill_under_ddp(tmp_path):
    spec = tmp_path / "t.net"
    spec.write_text(TABLE.replace("epochs: 3", "epochs: 30").replace("[31, 5]", "[2000, 5]").replace(
        "randint(0, 3, 31)", "randint(0, 3, 2000)"))
    full = run(tmp_path, spec, "full", nproc=2)
    assert full["epochs"] == 30
    job = subprocess.Popen([*netspec_cmd(), "train", str(spec), "--quiet", "--out", "cut", "--nproc", "2"],
                           cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True,
                           env={**os.environ, "OMP_NUM_THREADS": "1"})
    ckpt = tmp_path / "cut" / "checkpoint.pt"
    deadline = time.time() + 240
    while time.time() < deadline and job.poll() is None:
        if ckpt.exists() and json.loads((tmp_path / "cut" / "run.json").read_text()).get("epochs_done", 0) >= 5:
            break
        time.sleep(0.05)
    os.killpg(job.pid, signal.SIGKILL)
    job.wait()
    done = torch.load(ckpt, weights_only=True)["epoch"]
    assert 5 <= done < 30, done
    # the workers (torchrun starts them in sessions of their own) notice that their launcher is
    # gone within 20 steps and stop; resume once they have, as a user would after a crash
    deadline = time.time() + 60
    while time.time() < deadline and _processes_running(str(spec)):
        time.sleep(0.1)
    resumed = run(tmp_path, spec, "cut", "--resume", nproc=2)
    assert resumed["epochs"] == 30
    assert max_diff(weights(tmp_path / "full"), weights(tmp_path / "cut")) == 0.0


def test_a_failing_process_ends_the_job_with_its_message(tmp_path):
    spec = tmp_path / "t.net"
    spec.write_text(TABLE.replace("epochs: 3", "epochs: 50"))
    script = tmp_path / "fail_rank1.py"
    script.write_text(textwrap.dedent(f"""
        import os, sys
        sys.path.insert(0, {str(ROOT)!r})
        import netspec.train.trainer as t
        from netspec.errors import NetspecError, error
        original = t.Trainer.train_epoch
        def failing(self, epoch, progress):
            if self.dist.rank == 1 and epoch == 3:
                raise error("rank 1 ran out of something")
            return original(self, epoch, progress)
        t.Trainer.train_epoch = failing
        from netspec.cli import main
        sys.argv = ["netspec", "train", {str(spec)!r}, "--quiet", "--out", "run"]
        main()
    """))
    start = time.time()
    r = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
                        str(script)], capture_output=True, text=True, cwd=tmp_path, timeout=300,
                       env={**os.environ, "OMP_NUM_THREADS": "1", "NETSPEC_DIST_TIMEOUT": "60"})
    assert r.returncode != 0 and time.time() - start < 280
    assert "rank 1 ran out of something" in r.stderr or "rank: 1" in r.stderr


def test_launcher_arguments_are_passed_to_torchrun():
    from netspec.train.distributed import strip_launcher_args

    argv = ["train", "a.net", "--nproc", "4", "--nnodes=2", "--node-rank", "1", "--master-addr", "10.0.0.1",
            "--master-port=29501", "--epochs", "3"]
    assert strip_launcher_args(argv) == ["train", "a.net", "--epochs", "3"]


def test_shards_make_the_single_process_gradient():
    import numpy as np

    from netspec.train.distributed import Dist, shard

    idx = np.arange(7)
    parts = [shard(idx, Dist(r, 2), "mean") for r in range(2)]
    assert [p[0].tolist() for p in parts] == [[0, 1, 2, 3], [4, 5, 6]]
    assert [p[1] for p in parts] == [0, 4]
    for part, _, scale in parts:  # DDP averages over W: each sample's gradient gets weight 1/n, as in one process
        assert scale / len(part) / 2 == pytest.approx(1 / 7)
    small = [shard(np.arange(1), Dist(r, 2), "mean") for r in range(2)]
    assert [p[0].tolist() for p in small] == [[0], [0]] and all(p[2] == 1.0 for p in small)


def test_launcher_errors_read_like_one_process(tmp_path):
    """`--nproc`: a spec error is reported once, before any process starts; a process that
    fails at run time ends the job with its own message and the launcher's line, without
    torchrun's Python traceback and failure box."""
    spec = tmp_path / "t.net"
    spec.write_text(TABLE.replace("epochs: 3", "epochs: 1").replace("Linear(3)", "Linear(3, bias=maybe)"))
    r = subprocess.run([*netspec_cmd(), "train", str(spec), "--nproc", "2", "--out", "run"], capture_output=True,
                       text=True, cwd=tmp_path, timeout=120)
    assert r.returncode == 1 and r.stderr.count("error:") == 1 and "t.net:7:" in r.stderr, r.stderr
    spec.write_text(TABLE.replace("SGD(lr=0.1, momentum=0.5)", "SGD(lr=1e30)").replace("BatchNorm1d\n", ""))
    r = subprocess.run([*netspec_cmd(), "train", str(spec), "--nproc", "2", "--out", "run", "--quiet"],
                       capture_output=True, text=True, cwd=tmp_path, timeout=300,
                       env={**os.environ, "NETSPEC_DIST_TIMEOUT": "60"})
    assert r.returncode == 1, r.stderr
    assert "error: loss became" in r.stderr and "the distributed job failed (exit status 1)" in r.stderr
    assert "Traceback" not in r.stderr and "ChildFailedError" not in r.stderr and "FAILED" not in r.stderr, r.stderr
