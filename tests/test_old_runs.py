"""Run folders written by an earlier netspec still load: evaluated, exported and resumed by
today's, and a resumed run ends with the weights the earlier netspec would have written
(tests/fixtures/old_runs/iris_b1f0bab/README.md says how the fixture was made)."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import torch

from tests.conftest import FIXTURES, netspec_cmd

OLD = FIXTURES / "old_runs" / "iris_b1f0bab"


def netspec(cwd: Path, *args: str) -> subprocess.CompletedProcess:
    r = subprocess.run([*netspec_cmd(), *args], cwd=cwd, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    return r


def test_an_old_run_folder_evaluates_exports_and_resumes_exactly(tmp_path):
    shutil.copy(FIXTURES / "data" / "iris.csv", tmp_path)
    shutil.copy(OLD / "iris.net", tmp_path)
    shutil.copytree(OLD / "run", tmp_path / "run")
    recorded = json.loads((OLD / "run" / "run.json").read_text())["result"]

    scores = json.loads(netspec(tmp_path, "eval", "iris.net", "--weights", "run/model.pt", "--json").stdout)
    assert abs(scores["test_accuracy"] - recorded["test_accuracy"]) < 1e-9
    assert abs(scores["test_loss"] - recorded["test_loss"]) < 1e-6

    netspec(tmp_path, "export", "iris.net", "--weights", "run/model.pt", "-o", "old.onnx")
    assert (tmp_path / "old.onnx").stat().st_size > 0

    netspec(tmp_path, "train", "iris.net", "--out", "run", "--resume", "--set", "train.epochs=5", "--quiet")
    resumed = torch.load(tmp_path / "run" / "model.pt", weights_only=True)
    expected = torch.load(OLD / "model_5_epochs.pt", weights_only=True)
    assert resumed.keys() == expected.keys()
    assert all(torch.equal(resumed[k], expected[k]) for k in expected)
