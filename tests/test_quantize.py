"""int8 exports (deploy/quantize.py): static QDQ for a small CNN, dynamic for an LSTM, the
metric gate (fp32 kept when int8 falls too far), predict/eval on int8 files, and the bad
inputs. The oracle is onnxruntime: the test metric is recomputed from the files here."""

from __future__ import annotations

import json
import re

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from click.testing import CliRunner

import netspec
from netspec.cli import main
from netspec.deploy import quantize as q
from netspec.errors import NetspecError
from tests.conftest import EXAMPLES

QUAD = """model quad {
    input: [1, 8, 8]
    Conv2d(16, 3, padding=1)
    ReLU
    MaxPool2d(2)
    Flatten
    Linear(64)
    ReLU
    Linear(4)
}
data {
    train: npy("x.npy", "y.npy")
    test: npy("xt.npy", "yt.npy")
    normalize: standard
    batch_size: 32
}
train {
    loss: CrossEntropyLoss
    optimizer: Adam(lr=1e-2)
    epochs: 3
    metrics: [accuracy]
    seed: 0
}
export {
    quantize: int8
    calibration: 128
    max_metric_drop: 0.05
}
"""


def quadrants(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """8x8 images, the class is the bright quadrant (raw units: [0, 1], as the files hold them)."""
    g = np.random.default_rng(seed)
    y = g.integers(0, 4, n)
    x = g.uniform(0, 1, (n, 1, 8, 8)).astype(np.float32)
    for i, k in enumerate(y):
        r, c = divmod(int(k), 2)
        x[i, 0, r * 4:r * 4 + 4, c * 4:c * 4 + 4] += 0.3
    return x, y


@pytest.fixture(scope="module")
def quad(tmp_path_factory):
    """A trained quadrant CNN: (spec, weights, test images, test labels)."""
    from netspec.train.trainer import train_file

    root = tmp_path_factory.mktemp("quad")
    x, y = quadrants(400, 0)
    xt, yt = quadrants(200, 1)
    for name, arr in (("x", x), ("y", y), ("xt", xt), ("yt", yt)):
        np.save(root / f"{name}.npy", arr)
    spec = root / "quad.net"
    spec.write_text(QUAD)
    train_file(str(spec), (), out_dir=str(root / "run"), quiet=True)
    return spec, root / "run" / "model.pt", xt, yt


def export(spec, weights, out, *extra):
    return CliRunner().invoke(main, ["export", str(spec), "--weights", str(weights), "-o", str(out), *extra])


def accuracy(path, x, y) -> float:
    s = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return float((s.run(None, {s.get_inputs()[0].name: x})[0].argmax(1) == y).mean())


@pytest.mark.slow
def test_static_int8_export_is_calibrated_gated_and_self_contained(quad, tmp_path):
    spec, weights, xt, yt = quad
    out = tmp_path / "quad.onnx"
    r = export(spec, weights, out)
    assert r.exit_code == 0, r.output
    lines = r.stdout.splitlines()
    assert lines[0].startswith(f"exported {out} (opset 18); verified")
    assert lines[1].startswith(f"quantized {tmp_path / 'quad.int8.onnx'}: static int8 (QDQ")
    assert "calibrated on 128 training samples" in lines[1]
    int8 = tmp_path / "quad.int8.onnx"
    fp32_acc, int8_acc = accuracy(out, xt, yt), accuracy(int8, xt, yt)
    assert fp32_acc > 0.9 and fp32_acc - int8_acc <= 0.05
    assert f"test_accuracy fp32 {fp32_acc:.4f}, int8 {int8_acc:.4f}" in lines[1]  # the oracle's numbers
    assert int8.stat().st_size < 0.5 * out.stat().st_size
    proto, fp32 = onnx.load(str(int8)), onnx.load(str(out))
    ops = {n.op_type for n in proto.graph.node}
    assert {"QuantizeLinear", "DequantizeLinear", "Conv", "Gemm"} <= ops
    inits = {i.name: onnx.numpy_helper.to_array(i) for i in proto.graph.initializer}
    dq = [n for n in proto.graph.node if n.op_type == "DequantizeLinear" and n.input[0].endswith("weight_quantized")]
    assert len(dq) == 3 and all(inits[n.input[0]].dtype == np.int8 for n in dq)
    assert [inits[n.input[1]].size for n in dq] == [16, 64, 4]  # per output channel
    assert proto.producer_name == "netspec" and q.int8_path(out) == int8
    meta, fp32_meta = ({p.key: p.value for p in m.metadata_props} for m in (proto, fp32))
    assert all(meta[k] == v for k, v in fp32_meta.items())  # labels, preprocessing, shapes travel
    info = json.loads(meta["quantization"])
    assert info["mode"] == "static" and info["format"] == "QDQ" and info["calibration_samples"] == 128
    assert info["gate"]["metric"] == "test_accuracy" and info["gate"]["int8"] == pytest.approx(int8_acc)
    # seeded calibration: the same export again gives the same file, and replaces netspec's own int8 file
    before = int8.read_bytes()
    assert export(spec, weights, out).exit_code == 0
    assert int8.read_bytes() == before
    # calibration beyond the training split: all of it, said
    r = export(spec, weights, out, "--calibration", "5000")
    assert r.exit_code == 0, r.output
    assert "calibration: 5000 samples asked, the training split has 400; calibrating on all 400" in r.stderr
    assert "calibrated on 400 training samples (all there are; 5000 asked)" in r.stdout
    assert json.loads(dict((p.key, p.value) for p in onnx.load(str(int8)).metadata_props)["quantization"])[
        "calibration_samples"] == 400


@pytest.mark.slow
def test_predict_and_eval_on_int8_files(quad, tmp_path):
    from netspec.deploy.export import evaluate_onnx
    from netspec.deploy.predict import predict_files

    spec, weights, xt, yt = quad
    assert export(spec, weights, tmp_path / "quad.onnx").exit_code == 0
    int8 = tmp_path / "quad.int8.onnx"
    np.save(tmp_path / "some.npy", xt[:20])
    got = [r["predictions"][0]["class"] for r in predict_files(str(int8), (str(tmp_path / "some.npy"),))]
    s = ort.InferenceSession(str(int8), providers=["CPUExecutionProvider"])
    assert got == s.run(None, {"input": xt[:20]})[0].argmax(1).tolist()
    res = evaluate_onnx(str(int8), str(spec))
    assert res["test_accuracy"] == pytest.approx(accuracy(int8, xt, yt)) and res["samples"] == 200
    r = CliRunner().invoke(main, ["eval", str(int8), "--spec", str(spec)])
    assert r.exit_code == 0 and "test_accuracy" in r.stdout


@pytest.mark.slow
def test_failing_gate_keeps_fp32_and_says_by_how_much(quad, tmp_path, monkeypatch):
    spec, weights, xt, yt = quad
    out, int8 = tmp_path / "quad.onnx", tmp_path / "quad.int8.onnx"
    assert export(spec, weights, out).exit_code == 0
    earlier = int8.read_bytes()
    real = q.calibration_samples
    # calibration in the wrong units (0-255 instead of [0, 1]): ranges 255x too wide
    monkeypatch.setattr(q, "calibration_samples", lambda *a: real(*a) * 255)
    r = export(spec, weights, out)
    assert r.exit_code == 1 and "Traceback" not in r.output
    assert r.stdout.startswith(f"exported {out}")
    assert "error: int8 test_accuracy" in r.stderr and "worse, more than max_metric_drop 0.05" in r.stderr
    assert f"({int8} is from an earlier export); the int8 model was not written, the verified fp32 model {out} " \
        "is kept" in r.stderr
    said = re.search(r"int8 test_accuracy ([\d.]+) vs fp32 ([\d.]+): ([\d.]+) worse", r.stderr)
    assert said is not None and float(said[2]) == pytest.approx(accuracy(out, xt, yt), abs=1e-4)
    assert float(said[3]) == pytest.approx(float(said[2]) - float(said[1]), abs=2e-4) and float(said[3]) > 0.05
    assert int8.read_bytes() == earlier  # the earlier int8 file is untouched
    assert accuracy(out, xt, yt) > 0.9
    assert sorted(p.name for p in tmp_path.iterdir()) == ["quad.int8.onnx", "quad.onnx"]  # no temp files
    # a max_metric_drop below any possible difference: 0 fails as soon as int8 is worse at all
    monkeypatch.setattr(q, "calibration_samples", lambda *a: real(*a) * 0)
    r = export(spec, weights, tmp_path / "other.onnx", "--max-metric-drop", "0")
    assert r.exit_code == 1 and "more than max_metric_drop 0;" in r.stderr
    assert (tmp_path / "other.onnx").exists() and not (tmp_path / "other.int8.onnx").exists()


@pytest.mark.slow
def test_onnxruntime_failure_names_the_op_and_keeps_fp32(quad, tmp_path, monkeypatch):
    spec, weights, _, _ = quad
    real = q.quantize_graph

    def broken(src, dst, *a):  # a quantizer whose output onnxruntime has no kernel for
        real(src, dst, *a)
        proto = onnx.load(dst)
        node = next(n for n in proto.graph.node if n.op_type == "Conv")
        node.op_type, node.domain = "QLinearConvTranspose", "com.microsoft"
        proto.opset_import.add(domain="com.microsoft", version=1)
        onnx.save(proto, dst)

    monkeypatch.setattr(q, "quantize_graph", broken)
    out = tmp_path / "quad.onnx"
    r = export(spec, weights, out)
    assert r.exit_code == 1, r.output
    assert "cannot load the int8 model: node" in r.stderr and "(QLinearConvTranspose)" in r.stderr
    assert out.exists() and not (tmp_path / "quad.int8.onnx").exists()


@pytest.mark.slow
def test_dynamic_fallback_for_an_lstm(tmp_path):
    from netspec.deploy.export import evaluate_onnx
    from netspec.deploy.predict import predict_files
    from netspec.train.trainer import train_file

    spec = EXAMPLES / "sequence_sum.net"
    sets = ("samples=300", "train.epochs=2")
    train_file(str(spec), sets, out_dir=str(tmp_path / "run"), quiet=True)
    out = tmp_path / "seq.onnx"
    r = CliRunner().invoke(main, ["export", str(tmp_path / "run"), "-o", str(out), "--quantize", "int8",
                                  "--max-metric-drop", "0.05"])
    assert r.exit_code == 0, r.output
    assert "dynamic int8 (int8 weights, activations quantized at run time), not static: recurrent layers (LSTM)" \
        in r.stdout and "val_mae fp32" in r.stdout
    int8 = tmp_path / "seq.int8.onnx"
    proto = onnx.load(str(int8))
    assert "DynamicQuantizeLSTM" in {n.op_type for n in proto.graph.node}
    assert json.loads({p.key: p.value for p in proto.metadata_props}["quantization"])["mode"] == "dynamic"
    for steps in (5, 12):
        x = np.random.default_rng(steps).uniform(-1, 1, (4, steps, 1)).astype(np.float32)
        np.save(tmp_path / "x.npy", x)
        got = [v["values"][0] for v in predict_files(str(int8), (str(tmp_path / "x.npy"),))]
        want = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"]).run(None, {"input": x})[0][:, 0]
        assert np.allclose(got, want, atol=0.1 * np.abs(want).max() + 0.05)
    res = evaluate_onnx(str(int8), str(tmp_path / "run" / "spec.net"))
    assert "val_mae" in res


def test_plan_reads_the_graph(tmp_path):
    from netspec.deploy.export import export_model

    def planned(model: str) -> tuple[str, str]:
        checked = netspec.check(netspec.parse(model, "m.net"))
        export_model(checked, netspec.build(checked), tmp_path / "m.onnx")
        return q.plan(onnx.load(str(tmp_path / "m.onnx")))

    assert planned("model m {\n input: [6]\n Linear(4)\n ReLU\n Linear(2)\n}\n")[0] == "static"
    assert planned("model m {\n input: [_, 3]\n GRU(4)\n Last\n Linear(2)\n}\n") == \
        ("dynamic", "recurrent layers (GRU) have no static int8 kernel")
    mode, why = planned("model m {\n input: [_, 8]\n TransformerEncoderLayer(2, dim_feedforward=16)\n Mean(1)\n"
                        " Linear(2)\n}\n")
    assert mode == "dynamic" and "attention" in why
    assert planned("model m {\n input: [4]\n LayerNorm\n}\n")[0] == "none"


def test_quantize_setting_errors(spec_file):
    base = "model m {{\n    input: [4]\n    Linear(2)\n}}\nexport {{\n    {}\n}}\n"
    for text, where, message in (
            ("quantize: int4", (6, 15), "unknown quantization `int4`; allowed: int8, none"),
            ('quantize: "fp16"', (6, 15), 'unknown quantization `"fp16"`; allowed: int8, none'),
            ("quantize: int8\n    opset: 12", (6, 15), "quantize: int8 needs opset 13 or later"),
            ("quantize: int8\n    calibration: 0", (7, 18), "`calibration` must be at least 1"),
            ("quantize: int8\n    max_metric_drop: -0.1", (7, 22), "`max_metric_drop` must be at least 0")):
        with pytest.raises(NetspecError) as e:
            netspec.load(spec_file(base.format(text)))
        d = e.value.diagnostics[0]
        assert (d.span.line, d.span.column) == where and message in d.message, (text, d)
    checked = netspec.load(spec_file(base.format("calibration: 64")))
    assert [w.message for w in checked.warnings] == ["`calibration` has no effect without `quantize: int8`"]
    assert netspec.load(spec_file(base.format("quantize: int8"))).export.quantize == "int8"


@pytest.mark.slow
def test_quantize_bad_inputs_write_nothing(quad, tmp_path, monkeypatch):
    import torch

    spec, weights, _, _ = quad
    runner = CliRunner()
    r = runner.invoke(main, ["export", str(spec), "--weights", str(weights), "--quantize", "int4"])
    assert r.exit_code == 2 and "'int4' is not one of 'int8', 'none'" in r.output
    r = runner.invoke(main, ["export", str(spec), "--weights", str(weights), "--set", "export.quantize=int4"])
    assert r.exit_code == 1 and "unknown quantization `int4`; allowed: int8, none" in r.stderr
    # no data: nothing to calibrate on, said at the setting, and nothing written
    nodata = tmp_path / "nodata.net"
    nodata.write_text("model m {\n    input: [4]\n    Linear(2)\n}\nexport {\n    quantize: int8\n}\n")
    torch.save(netspec.build(netspec.load(str(nodata))).state_dict(), tmp_path / "w.pt")
    r = runner.invoke(main, ["export", str(nodata), "--weights", str(tmp_path / "w.pt"), "-o", str(tmp_path / "m.onnx")])
    assert r.exit_code == 1 and f"{nodata}:6:15: error: quantize: int8: " in r.stderr
    assert "has no data section, so there is nothing to calibrate the int8 model on" in r.stderr
    # a user's file where the int8 model would go: refused before anything is written
    (tmp_path / "mine.int8.onnx").write_bytes(b"my own model")
    r = export(spec, weights, tmp_path / "mine.onnx")
    assert r.exit_code == 1 and "is not an ONNX model that netspec exported" in r.stderr
    assert f"the int8 file {tmp_path / 'mine.int8.onnx'} (beside {tmp_path / 'mine.onnx'})" in r.stderr  # not "-o"
    assert (tmp_path / "mine.int8.onnx").read_bytes() == b"my own model" and not (tmp_path / "mine.onnx").exists()
    r = export(spec, weights, tmp_path / "low.onnx", "--opset", "12")
    assert r.exit_code == 1 and "needs opset 13 or later" in r.stderr and not (tmp_path / "low.onnx").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["mine.int8.onnx", "nodata.net", "w.pt"]


def test_gate_units():
    # higher-is-better metrics: points; losses and errors: a fraction of fp32's value
    assert q.metric_drop("accuracy", 0.99, 0.985) == (pytest.approx(0.005), False)
    assert q.metric_drop("mae", 0.2, 0.21) == (pytest.approx(0.05), True)
    assert q.metric_drop("loss", 0.2, 0.19) == (pytest.approx(-0.05), True)
    assert q.int8_path("out/m.onnx").as_posix() == "out/m.int8.onnx"


def test_shared_constants_do_not_keep_convs_in_float(tmp_path):
    """Folded BatchNorms at initialisation give equal zero biases, which torch.onnx shares
    through Identity nodes; inlined, every Conv's bias is quantized (one int8 kernel each)."""
    from netspec.deploy.export import export_model
    from netspec.deploy.runtime import feeds

    checked = netspec.check(netspec.parse(
        "model m {\n input: [3, 8, 8]\n Conv2d(4, 3, padding=1, bias=false)\n BatchNorm2d\n ReLU\n"
        " Conv2d(4, 3, padding=1, bias=false)\n BatchNorm2d\n ReLU\n Flatten\n Linear(2)\n}\n", "m.net"))
    src, dst = tmp_path / "m.onnx", tmp_path / "m.int8.onnx"
    export_model(checked, netspec.build(checked).eval(), src)
    assert "Identity" in {n.op_type for n in onnx.load(str(src)).graph.node}
    session = ort.InferenceSession(str(src), providers=["CPUExecutionProvider"])
    x = np.random.default_rng(0).random((16, 3, 8, 8), dtype=np.float32)
    q.quantize_graph(str(src), str(dst), "static", x, lambda b: feeds(session, b))
    proto = onnx.load(str(dst))
    made_by = {o: n for n in proto.graph.node for o in n.output}
    convs = [n for n in proto.graph.node if n.op_type == "Conv"]
    assert len(convs) == 2 and all(made_by[c.input[2]].op_type == "DequantizeLinear" for c in convs)
    assert "Identity" not in {n.op_type for n in proto.graph.node}
