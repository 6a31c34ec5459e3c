"""TensorBoard logging (`log: [csv, tensorboard]` or `--tensorboard`): per-epoch scalars,
step scalars every `log_every` steps, the learning rate, the hyper-parameters and the final
metrics, read back with TensorBoard's own reader."""

from __future__ import annotations

import subprocess

import pytest

from tests.conftest import netspec_cmd

pytest.importorskip("tensorboard")

SPEC = """
model reg {
    input: [1]
    Linear(1)
}
data { train: table(x=linspace(0, 1, 64), y=2 * x + 1); validation: 0.25; batch_size: 8 }
train { loss: MSELoss; optimizer: SGD(lr=0.1); epochs: 4; metrics: [mae]; log: [csv, tensorboard]; log_every: 2 }
"""


def test_tensorboard_scalars_and_hparams(tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    (tmp_path / "reg.net").write_text(SPEC)
    r = subprocess.run([*netspec_cmd(), "train", "reg.net", "--quiet", "--out", "run"], cwd=tmp_path,
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert "tensorboard/" in r.stdout
    acc = EventAccumulator(str(tmp_path / "run" / "tensorboard"))
    acc.Reload()
    tags = set(acc.Tags()["scalars"])
    assert {"epoch/loss", "epoch/val_loss", "epoch/val_mae", "epoch/lr", "step/loss", "step/lr"} <= tags
    assert [e.step for e in acc.Scalars("epoch/loss")] == [1, 2, 3, 4]
    assert len(acc.Scalars("step/loss")) == 4 * 6 // 2  # 6 steps per epoch, every 2nd
    runs = list((tmp_path / "run" / "tensorboard").rglob("events.out.tfevents.*"))
    assert len(runs) >= 1


def test_tensorboard_flag(tmp_path):
    (tmp_path / "reg.net").write_text(SPEC.replace("log: [csv, tensorboard]; log_every: 2", ""))
    r = subprocess.run([*netspec_cmd(), "train", "reg.net", "--quiet", "--out", "run", "--tensorboard"], cwd=tmp_path,
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert (tmp_path / "run" / "tensorboard").is_dir()
