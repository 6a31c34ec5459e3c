"""ONNX export: onnxruntime matches torch for every exportable catalogue layer; dynamic
axes; metadata makes the file self-contained; predict and eval through onnxruntime."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch

import netspec
from netspec import catalogue as cat
from netspec.builder import build_model
from netspec.deploy.export import export_model
from netspec.errors import ExportError, NetspecError
from netspec.ir import layers
from tests.conftest import EXAMPLES, ROOT, have_dataset

CASES = [(row.name, shape, text) for row in cat.LAYERS_LIST for shape, text in row.examples]


def checked_for(shape: str, text: str):
    return netspec.check(netspec.parse(f"model m {{\n    input: {shape}\n    {text}\n}}\n", "case.net"))


@pytest.mark.parametrize("layer,shape,text", CASES, ids=[f"{t}@{s}" for _, s, t in CASES])
def test_layer_exports_with_parity(layer, shape, text, tmp_path):
    checked = checked_for(shape, text)
    node = layers(checked.model.root)[0]
    net = build_model(checked.model, seed=0)
    problem = cat.onnx_problem(node.type, dict(node.kwargs), node.in_shape)
    out = tmp_path / "m.onnx"
    if problem:
        with pytest.raises(ExportError):
            export_model(checked, net, out)
        assert not out.exists()
        return
    report = export_model(checked, net, out)
    assert report["max_abs_diff"] <= 1e-4
    onnx.checker.check_model(str(out), full_check=True)


def test_recurrent_export_dynamic_sequence(tmp_path):
    checked = netspec.load(str(EXAMPLES / "sequence_sum.net"))
    net = build_model(checked.model, 0).eval()
    out = tmp_path / "seq.onnx"
    export_model(checked, net, out)
    sess = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    for batch, steps in ((1, 3), (4, 17)):
        x = torch.randn(batch, steps, 1)
        got = sess.run(None, {"input": x.numpy()})[0]
        with torch.no_grad():
            assert np.allclose(got, net(x).numpy(), atol=1e-5)
    dims = sess.get_inputs()[0].shape
    assert isinstance(dims[0], str) and isinstance(dims[1], str) and dims[2] == 1


def test_failed_verification_leaves_nothing(tmp_path, monkeypatch):
    checked = checked_for("[4]", "Linear(2)")
    net = build_model(checked.model, 0)
    out = tmp_path / "m.onnx"
    out.write_bytes(b"previous export")
    with pytest.raises(ExportError, match="disagrees with torch"):
        export_model(checked, net, out, tolerance=-1.0)
    assert out.read_bytes() == b"previous export"
    assert [p.name for p in tmp_path.iterdir()] == ["m.onnx"]


def test_unexportable_layer_refused_at_spec_line(spec_file):
    path = spec_file("model m {\n    input: [3, _, 10]\n    AdaptiveMaxPool2d(4)\n}\n")
    with pytest.raises(NetspecError) as e:
        netspec.load(path, target="onnx")
    d = e.value.diagnostics[0]
    assert (d.span.line, d.span.column) == (3, 5) and "cannot export to ONNX" in d.message


@pytest.fixture(scope="module")
def trained_mlp(tmp_path_factory):
    if not have_dataset("mnist"):
        pytest.skip("MNIST not installed (make data)")
    from netspec.train.trainer import train_file

    out = tmp_path_factory.mktemp("mlp") / "run"
    train_file(str(EXAMPLES / "mnist_mlp.net"), ("data.subset=5000", "train.epochs=1"), out_dir=str(out), quiet=True)
    onnx_path = out / "mlp.onnx"
    r = subprocess.run([sys.executable, "-m", "netspec", "export", str(EXAMPLES / "mnist_mlp.net"), "-o", str(onnx_path),
                        "--weights", str(out / "model.pt"), "--set", "data.subset=5000"], cwd=ROOT,
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert "max abs diff" in r.stdout
    return out, onnx_path


def test_metadata_is_self_contained(trained_mlp):
    _, path = trained_mlp
    meta = dict(ort.InferenceSession(str(path), providers=["CPUExecutionProvider"]).get_modelmeta().custom_metadata_map)
    assert json.loads(meta["input_shape"]) == [1, 28, 28]  # raw images, as the data files hold them
    assert json.loads(meta["model_input_shape"]) == [784]  # the graph reshapes
    assert json.loads(meta["labels"]) == [str(i) for i in range(10)]
    pre = json.loads(meta["preprocessing"])
    assert pre["normalize"] == "standard" and len(pre["shift"]) == 1 and pre["source_shape"] == [1, 28, 28]
    assert meta["netspec_version"] and len(meta["spec_hash"]) == 64


def test_onnx_eval_equals_torch_eval(trained_mlp):
    out, path = trained_mlp
    from netspec.deploy.export import evaluate_onnx
    from netspec.train.evaluate import evaluate_file

    torch_res = evaluate_file(str(EXAMPLES / "mnist_mlp.net"), str(out / "model.pt"))
    onnx_res = evaluate_onnx(str(path), str(EXAMPLES / "mnist_mlp.net"))
    assert onnx_res["test_accuracy"] == torch_res["test_accuracy"]
    assert onnx_res["samples"] == torch_res["samples"] == 10000


def test_predict_inputs(trained_mlp, tmp_path):
    from netspec.data.prepare import read_idx
    from netspec.deploy.predict import predict_files

    _, path = trained_mlp
    digits = sorted((EXAMPLES / "digits").glob("*.png"))
    res = predict_files(str(path), tuple(str(d) for d in digits), top_k=2)
    assert [r["predictions"][0]["label"] for r in res] == [d.stem for d in digits]
    assert all(len(r["predictions"]) == 2 for r in res)
    assert all(r["predictions"][0]["probability"] >= r["predictions"][1]["probability"] for r in res)
    # all ten classes: the probabilities are a distribution
    full = predict_files(str(path), tuple(str(d) for d in digits), top_k=10)
    assert all(abs(sum(p["probability"] for p in r["predictions"]) - 1) < 1e-4 for r in full)
    from netspec.data.datasets import find_dataset

    folder = find_dataset("mnist", None)[0]
    images = next(folder.glob("t10k-images-idx3-ubyte*"))
    x = read_idx(images)[:20].astype(np.float32) / 255
    np.save(tmp_path / "batch.npy", x)
    np.savetxt(tmp_path / "rows.csv", x.reshape(20, -1)[:3], delimiter=",")
    by_npy = predict_files(str(path), (str(tmp_path / "batch.npy"),))
    by_csv = predict_files(str(path), (str(tmp_path / "rows.csv"),))
    assert len(by_npy) == 20 and len(by_csv) == 3
    assert [r["predictions"][0]["class"] for r in by_csv] == [r["predictions"][0]["class"] for r in by_npy[:3]]
    by_idx = predict_files(str(path), (str(images),), batch_size=1000)
    assert len(by_idx) == 10000


def test_predict_bad_inputs(trained_mlp, tmp_path):
    from netspec.deploy.predict import predict_files

    _, path = trained_mlp
    (tmp_path / "bad.png").write_bytes(b"not an image")
    (tmp_path / "short.csv").write_text("1,2,3\n")
    np.save(tmp_path / "wrong.npy", np.zeros((3, 5)))
    for name, text in (("bad.png", "bad.png"), ("short.csv", r"do not hold samples of the model's input \[1, 28, 28\]"),
                       ("wrong.npy", "do not hold samples"), ("missing.png", "no such file")):
        with pytest.raises(NetspecError, match=text):
            predict_files(str(path), (str(tmp_path / name),))
    r = subprocess.run([sys.executable, "-m", "netspec", "predict", str(path), str(tmp_path / "bad.png")],
                       capture_output=True, text=True, cwd=ROOT)
    assert r.returncode == 1 and "Traceback" not in r.stderr


def test_predict_does_not_import_torch(trained_mlp):
    _, path = trained_mlp
    code = ("import sys\nfrom netspec.deploy.predict import predict_files\n"
            f"predict_files({str(path)!r}, ({str(EXAMPLES / 'digits' / '7.png')!r},))\n"
            "assert 'torch' not in sys.modules\n")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr


def test_predict_sequences_of_any_length(tmp_path):
    from netspec.deploy.predict import predict_files

    checked = netspec.load(str(EXAMPLES / "sequence_sum.net"))
    net = build_model(checked.model, 0).eval()
    path = tmp_path / "seq.onnx"
    export_model(checked, net, path, metadata={"preprocessing": json.dumps({"normalize": "none"}), "task": "value"})
    for shape in ((20, 1), (3, 7, 1)):
        x = np.random.default_rng(0).uniform(-1, 1, shape).astype(np.float32)
        np.save(tmp_path / "x.npy", x)
        res = predict_files(str(path), (str(tmp_path / "x.npy"),))
        batch = x if x.ndim == 3 else x[None]
        with torch.no_grad():
            want = net(torch.from_numpy(batch)).numpy()[:, 0]
        assert np.allclose([r["values"][0] for r in res], want, atol=1e-5)
    np.save(tmp_path / "bad.npy", np.zeros((5, 3), np.float32))
    with pytest.raises(NetspecError, match=r"do not fit the model's input \[_, 1\]"):
        predict_files(str(path), (str(tmp_path / "bad.npy"),))


def test_export_defaults_and_eval_usage(tmp_path, monkeypatch):
    from click.testing import CliRunner

    from netspec.cli import main

    monkeypatch.chdir(tmp_path)
    (tmp_path / "specs").mkdir()
    spec = tmp_path / "specs" / "reg.net"
    spec.write_text("model reg {\n    input: [1]\n    Linear(1)\n}\n"
                    "data { train: table(x=linspace(0, 1, 50), y=3 * x + 1)\n validation: 0.2 }\n"
                    "train { epochs: 2 }\nexport { onnx: \"out/reg.onnx\" }\n")
    runner = CliRunner()
    r = runner.invoke(main, ["export", str(spec)])
    assert r.exit_code == 1 and "runs/reg/model.pt: no such file" in r.output and "netspec train" in r.output
    assert runner.invoke(main, ["train", str(spec), "--quiet"]).exit_code == 0
    assert (tmp_path / "runs" / "reg" / "model.pt").exists()
    r = runner.invoke(main, ["export", str(spec)])
    assert r.exit_code == 0, r.output
    assert (tmp_path / "specs" / "out" / "reg.onnx").exists()  # relative to the spec's folder
    r = runner.invoke(main, ["eval", str(tmp_path / "specs" / "out" / "reg.onnx")])
    assert r.exit_code == 2 and "--spec" in r.output
    r = runner.invoke(main, ["eval", str(spec)])
    assert r.exit_code == 0 and "val_loss" in r.output
