"""The commands as users type them, in an empty folder: `netspec train mnist.net` (the
packaged example), `netspec export model.onnx` (the latest finished run), `predict` on the
result; a local file always wins; `new` never overwrites; run folders are accepted by
export, eval, predict and summary."""

from __future__ import annotations

import json
import subprocess

import pytest

from tests.conftest import EXAMPLES, have_dataset, netspec_cmd

needs_mnist = pytest.mark.skipif(not have_dataset("mnist"), reason="MNIST not installed (make data)")


def cli(*args: str, cwd, timeout: int = 600) -> subprocess.CompletedProcess:
    return subprocess.run([*netspec_cmd(), *args], capture_output=True, text=True, cwd=cwd, timeout=timeout)


@needs_mnist
def test_the_two_command_lines_in_an_empty_folder(tmp_path):
    r = cli("train", "mnist.net", "--epochs", "1", "--set", "data.subset=2000", "--quiet", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert "using the packaged example" in r.stderr and "netspec new mnist" in r.stderr
    assert (tmp_path / "runs" / "mnist_cnn" / "model.pt").exists()
    r = cli("export", "model.onnx", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert "runs/mnist_cnn" in r.stderr and (tmp_path / "model.onnx").exists()
    r = cli("predict", "model.onnx", str(EXAMPLES / "digits" / "7.png"), cwd=tmp_path)
    assert r.returncode == 0 and "7.png: 7" in r.stdout, r.stdout + r.stderr
    r = cli("predict", "runs/mnist_cnn", str(EXAMPLES / "digits" / "3.png"), cwd=tmp_path)  # a run folder
    assert r.returncode == 0 and "3.png:" in r.stdout, r.stderr
    for args in (["eval", "runs/mnist_cnn"], ["summary", "runs/mnist_cnn"]):
        r = cli(*args, cwd=tmp_path)
        assert r.returncode == 0, (args, r.stderr)


def test_export_model_onnx_without_a_run_is_a_clear_error(tmp_path):
    r = cli("export", "model.onnx", cwd=tmp_path)
    assert r.returncode == 1 and "no finished training run" in r.stderr and "train first" in r.stderr
    assert "Traceback" not in r.stderr and not (tmp_path / "model.onnx").exists()


def test_export_chooses_the_latest_finished_run_and_says_how_to_pick(tmp_path):
    spec = tmp_path / "reg.net"
    spec.write_text((EXAMPLES / "linear_regression.net").read_text().replace("epochs: 3000", "epochs: 5"))
    for out in ("runs/first", "runs/second"):
        assert cli("train", str(spec), "--quiet", "--out", out, cwd=tmp_path).returncode == 0
    r = cli("export", "model.onnx", cwd=tmp_path)
    assert r.returncode == 0 and "runs/second" in r.stderr and "netspec export runs/first" in r.stderr, r.stderr
    meta = json.loads((tmp_path / "runs" / "first" / "run.json").read_text())
    meta["finished"] = None  # an unfinished run is never chosen
    (tmp_path / "runs" / "first" / "run.json").write_text(json.dumps(meta))
    r = cli("export", "again.onnx", cwd=tmp_path)
    assert r.returncode == 0 and "other finished run" not in r.stderr


def test_a_local_spec_wins_over_the_packaged_example(tmp_path):
    (tmp_path / "mnist.net").write_text("model mine {\n    input: [3]\n    Linear(2)\n}\n")
    r = cli("check", "mnist.net", cwd=tmp_path)
    assert r.returncode == 0 and "model `mine`" in r.stdout and "packaged" not in r.stderr
    r = cli("check", "mnist_mlp", cwd=tmp_path)  # a name without .net works too
    assert r.returncode == 0 and "mnist_mlp" in r.stdout and "packaged example" in r.stderr
    r = cli("summary", "resnet18.net", cwd=tmp_path)  # the zoo is packaged as well
    assert r.returncode == 0 and "11,689,512" in r.stdout


def test_new_copies_examples_and_templates_but_never_overwrites(tmp_path):
    r = cli("new", "mnist", cwd=tmp_path)
    assert r.returncode == 0 and (tmp_path / "mnist.net").read_text() == (EXAMPLES / "mnist.net").read_text()
    r = cli("new", "mnist", cwd=tmp_path)
    assert r.returncode == 1 and "already exists" in r.stderr
    r = cli("new", "my_model", cwd=tmp_path)
    assert r.returncode == 0 and "model my_model" in (tmp_path / "my_model.net").read_text()
    assert cli("check", "--no-data", "my_model.net", cwd=tmp_path).returncode == 0
    r = cli("new", "9lives", cwd=tmp_path)
    assert r.returncode == 1 and "neither a packaged example nor a valid model name" in r.stderr


def test_examples_lists_every_packaged_spec(tmp_path):
    r = cli("examples", cwd=tmp_path)
    assert r.returncode == 0
    for name in ("mnist", "mnist_mlp", "fashion_mnist", "linear_regression", "sine_poly", "resnet18", "unet"):
        assert name in r.stdout


def test_help_shows_the_command_forms(tmp_path):
    for cmd, form in (("train", "netspec train mnist.net"), ("export", "netspec export model.onnx"),
                      ("predict", "netspec predict model.onnx"), ("eval", "netspec eval runs/mnist_cnn"),
                      ("new", "netspec new mnist")):
        r = cli(cmd, "--help", cwd=tmp_path)
        assert r.returncode == 0 and form in r.stdout, (cmd, r.stdout)
