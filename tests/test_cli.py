"""The command line as a user meets it: exit codes, messages, JSON, no tracebacks."""

from __future__ import annotations

import json
import subprocess

from click.testing import CliRunner

from netspec.cli import main
from tests.conftest import EXAMPLES, FIXTURES, netspec_cmd

runner = CliRunner()


def run(*args: str):
    return runner.invoke(main, list(args), catch_exceptions=False)


def test_check_ok_and_summary():
    r = run("check", str(EXAMPLES / "mnist.net"))
    assert r.exit_code == 0
    assert "ok: model `mnist_cnn` [1, 28, 28] -> [10], 421,642 parameters" in r.output
    r = run("summary", str(EXAMPLES / "mnist_mlp.net"))
    assert r.exit_code == 0
    for name in ("fc1", "relu1", "fc2", "relu2", "output", "Total params: 109,386"):
        assert name in r.output
    assert "100,480" in r.output  # fc1: 784*128 + 128


def test_check_error_exit_1_with_caret():
    r = run("check", str(FIXTURES / "invalid" / "shape_flatten.net"))
    assert r.exit_code == 1
    assert "shape_flatten.net:6:5: error: CrossEntropyLoss needs the model to output [classes]" in r.output
    assert "shape_flatten.net:6:9: warning: Linear applies to the last dimension of [8, 26, 26]" in r.output
    assert "help: insert Flatten before this layer" in r.output
    assert "Traceback" not in r.output


def test_check_json_diagnostics():
    r = run("check", "--json", str(FIXTURES / "invalid" / "many_errors.net"))
    assert r.exit_code == 1
    rows = [json.loads(line) for line in r.output.splitlines()]
    assert len(rows) == 3
    assert {"file", "line", "column", "end", "severity", "message", "help"} <= set(rows[0])
    assert rows[0]["line"] == 6 and rows[0]["column"] == 5 and rows[0]["end"]["column"] == 11


def test_usage_error_exit_2():
    r = runner.invoke(main, ["check"])
    assert r.exit_code == 2
    r = runner.invoke(main, ["train", "x.net", "--epochs", "zero"])
    assert r.exit_code == 2


def test_missing_file_exit_1():
    r = run("check", "does-not-exist.net")
    assert r.exit_code == 1
    assert "does-not-exist.net: no such file" in r.output


def test_lint_warnings_do_not_fail(spec_file):
    path = spec_file("""
model m {
    input: [4]
    Linear(3)
    Softmax
}
train { loss: CrossEntropyLoss }
""")
    r = run("check", path)
    assert r.exit_code == 0
    assert "warning: CrossEntropyLoss after Softmax" in r.output


def test_lints(spec_file):
    cases = {
        "NLLLoss": ("Linear(3)", "NLLLoss expects log-probabilities"),
        "BCELoss": ("Linear(1)", "BCELoss expects probabilities"),
        "BCEWithLogitsLoss": ("Linear(1)\n    Sigmoid", "applies the sigmoid twice"),
    }
    for loss, (layers_, text) in cases.items():
        path = spec_file(f"model m {{\n    input: [4]\n    {layers_}\n}}\ntrain {{ loss: {loss} }}\n")
        r = run("check", path)
        assert r.exit_code == 0 and text in r.output, (loss, r.output)


def test_set_override_errors_point_at_override():
    r = run("check", str(EXAMPLES / "mnist_mlp.net"), "--set", "train.epochs=(")
    assert r.exit_code == 1
    assert "--set #1:1:" in r.output
    r = run("check", str(EXAMPLES / "mnist_mlp.net"), "--set", "train.epoch=3")
    assert r.exit_code == 1 and "did you mean `epochs`?" in r.output
    r = run("check", str(EXAMPLES / "mnist_mlp.net"), "--set", "hidden=256")
    assert r.exit_code == 0 and "[784] -> [10]" in r.output and "218,058" in r.output
    r = run("check", str(EXAMPLES / "mnist_mlp.net"), "--set", 'train.epochs="many"')
    assert r.exit_code == 1 and "`epochs` must be an integer" in r.output


def test_fmt_check_and_rewrite(tmp_path):
    p = tmp_path / "a.net"
    p.write_text("model m{\ninput:[4]\n  Linear( 2 )  # out\n}\n")
    r = run("fmt", "--check", str(p))
    assert r.exit_code == 1
    r = run("fmt", str(p))
    assert r.exit_code == 0
    assert p.read_text() == "model m {\n    input: [4]\n    Linear(2)  # out\n}\n"
    assert run("fmt", "--check", str(p)).exit_code == 0


def test_ir_and_layers():
    r = run("ir", str(EXAMPLES / "mnist_mlp.net"))
    assert r.exit_code == 0 and "Model" in r.output and "fc1" in r.output
    r = run("layers")
    assert r.exit_code == 0 and "Conv2d" in r.output and "in_channels*" in r.output
    r = run("layers", "Conv2d")
    assert "in_channels" in r.output and "inferred" in r.output
    r = run("layers", "Conv2D")
    assert r.exit_code == 1 and "did you mean `Conv2d`?" in r.output


def test_check_target_onnx_flags_layer(spec_file):
    # non-divisible adaptive pooling over fixed sizes is lowered at export; over `_` it cannot be
    path = spec_file("model m {\n    input: [3, 10, 10]\n    AdaptiveAvgPool2d(3)\n}\n")
    assert run("check", "--target", "onnx", path).exit_code == 0
    path = spec_file("model m {\n    input: [3, _, 10]\n    AdaptiveAvgPool2d(3)\n}\n")
    r = run("check", "--target", "onnx", path)
    assert r.exit_code == 1 and ":3:5: error: cannot export to ONNX" in r.output


def test_check_does_not_import_torch():
    spec = str(EXAMPLES / "mnist.net")
    code = (f"import sys; from netspec.cli import main; sys.argv=['netspec','check',{spec!r}]\n"
            "try:\n    main()\nexcept SystemExit:\n    pass\nassert 'torch' not in sys.modules, 'torch imported'\n")
    r = subprocess.run([netspec_cmd()[0], "-c", code], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr


def test_internal_errors_have_no_traceback(monkeypatch):
    import netspec.tools.summary

    def boom(*a, **k):
        raise ValueError("kaboom")

    monkeypatch.setattr(netspec.tools.summary, "summary_text", boom)
    r = runner.invoke(main, ["summary", str(EXAMPLES / "mnist.net")])
    assert r.exit_code == 3 and "internal error" in r.output and "Traceback" not in r.output
