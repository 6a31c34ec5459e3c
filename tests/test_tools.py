"""`netspec diagram` and `netspec diff`: pictures of every example, output-path safety,
layer matching by path, settings, run folders, JSON, and no torch import."""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
from click.testing import CliRunner

import netspec
from netspec import ir
from netspec.cli import main
from netspec.ir import layers as flatten
from netspec.tools.diagram import picture, to_dot, write_diagram
from netspec.tools.diff import diff_paths, to_json
from tests.conftest import EXAMPLES, ROOT

SVG = "{http://www.w3.org/2000/svg}"
SPECS = sorted([*EXAMPLES.glob("*.net"), *(EXAMPLES / "zoo").glob("*.net")])
runner = CliRunner()


def run(*args: str):
    return runner.invoke(main, list(args), catch_exceptions=False)


def svg_of(path: Path, out: Path, depth: int | None = None) -> ET.Element:
    write_diagram(netspec.load(str(path)), str(out), depth)
    return ET.parse(out).getroot()


def texts(root: ET.Element) -> set[str]:
    return {t.text or "" for t in root.iter(f"{SVG}text")}


def groups(root: ET.Element, cls: str) -> list[ET.Element]:
    return [g for g in root.iter(f"{SVG}g") if cls in g.get("class", "").split()]


# ---------------------------------------------------------------- diagram


@pytest.mark.parametrize("spec", SPECS, ids=lambda p: p.stem)
def test_every_example_draws_every_layer(spec: Path, tmp_path: Path):
    """At full depth the SVG is valid XML and names every layer; at depth 1 it names the
    collapsed Sequentials instead."""
    model = netspec.load(str(spec)).model
    root = svg_of(spec, tmp_path / "full.svg", depth=99)
    assert root.tag == f"{SVG}svg" and root.find(f"{SVG}title").text == model.name
    shown = texts(root)
    missing = {layer.name for layer in flatten(model.root)} - shown
    assert not missing, f"layers not in the picture: {sorted(missing)[:5]}"
    pic = picture(model, 1)
    shallow = texts(svg_of(spec, tmp_path / "d1.svg", depth=1))
    collapsed = [b.name for b in _boxes(pic.parts) if b.variant == "collapsed"]
    assert set(collapsed) <= shallow
    dot = to_dot(picture(model, 99))
    assert dot.startswith("digraph ") and dot.rstrip().endswith("}")


def _boxes(parts: list) -> list:
    from netspec.tools.diagram import boxes

    return boxes(parts)


@pytest.mark.parametrize("name, op, sign", [("resnet18", "add", "+"), ("squeezenet1_1", "concat", "concat"),
                                            ("se_cnn", "multiply", "×"), ("unet", "concat", "concat"),
                                            ("densenet121", "concat", "concat")])
def test_branch_joins_are_drawn(name: str, op: str, sign: str, tmp_path: Path):
    root = svg_of(EXAMPLES / "zoo" / f"{name}.net", tmp_path / "m.svg", depth=3)
    joins = groups(root, op)
    assert joins and all(g.get("class", "").startswith("join") for g in joins)
    assert any(t.text == sign for g in joins for t in g.iter(f"{SVG}text"))


def test_resnet_projection_is_a_fork_with_two_branches(tmp_path: Path):
    root = svg_of(EXAMPLES / "zoo" / "resnet18.net", tmp_path / "r.svg", depth=2)
    shown = texts(root)
    assert {"main", "downsample", "add1", "residual1", "identity"} <= shown
    assert len(groups(root, "add")) == 8  # 3 projection blocks + 5 identity blocks (residual = add)


def test_depth_reduces_the_box_count(tmp_path: Path):
    spec = EXAMPLES / "zoo" / "resnet50.net"
    counts = [len(groups(svg_of(spec, tmp_path / f"d{d}.svg", depth=d), "box")) for d in (0, 1, 2, 3)]
    assert counts[0] < counts[1] < counts[2] < counts[3]
    shallow = texts(svg_of(spec, tmp_path / "d1.svg", depth=1))
    assert "bottleneck_down1" in shallow and "conv3" not in shallow


def test_automatic_depth_keeps_big_models_readable():
    from netspec.tools.diagram import AUTO_MAX_BOXES, count_boxes

    for name in ("densenet121", "resnet50", "mobilenet_v2"):
        pic = picture(netspec.load(str(EXAMPLES / "zoo" / f"{name}.net")).model)
        assert count_boxes(pic.parts) <= AUTO_MAX_BOXES and pic.depth >= 2
    small = picture(netspec.load(str(EXAMPLES / "zoo" / "se_cnn.net")).model)
    assert small.depth == small.max_depth  # small models: everything
    help_text = " ".join(run("diagram", "--help").output.split())
    assert f"within {AUTO_MAX_BOXES} boxes" in help_text and "netspec diagram resnet50 -o resnet50.png" in help_text


def test_layer_boxes_say_what_matters(tmp_path: Path):
    shown = texts(svg_of(EXAMPLES / "zoo" / "resnet18.net", tmp_path / "r.svg"))
    assert {"Conv2d 64, 7x7, /2", "MaxPool2d 3x3, /2", "[64, 112, 112]", "9,408 params", "basic_down(128)"} <= shown
    shown = texts(svg_of(EXAMPLES / "zoo" / "unet.net", tmp_path / "u.svg"))
    assert "ConvTranspose2d 512, 2x2, ×2" in shown


def test_png_and_dot(tmp_path: Path):
    from PIL import Image

    r = run("diagram", str(EXAMPLES / "mnist.net"), "-o", str(tmp_path / "m.png"))
    assert r.exit_code == 0, r.output
    with Image.open(tmp_path / "m.png") as img:
        assert img.format == "PNG" and img.width > 300 and 600 < img.height < 5000
    r = run("diagram", str(EXAMPLES / "zoo" / "se_cnn.net"), "-o", str(tmp_path / "s.png"), "--depth", "1")
    assert r.exit_code == 0
    with Image.open(tmp_path / "s.png") as img:
        assert img.width > 300 and img.height > 600
    r = run("diagram", str(EXAMPLES / "zoo" / "resnet18.net"), "-o", str(tmp_path / "r.dot"))
    text = (tmp_path / "r.dot").read_text()
    assert text.startswith('digraph "resnet18"') and "subgraph cluster_" in text and "->" in text


def test_run_folder_and_packaged_name(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.chdir(tmp_path)
    r = run("diagram", "lenet5")
    assert r.exit_code == 0 and (tmp_path / "lenet5.svg").is_file()
    _run_folder(tmp_path / "runs" / "a", 5, {"loss": 1.0})
    r = run("diagram", "runs/a", "-o", "run.svg")
    assert r.exit_code == 0 and "linear1" in texts(ET.parse(tmp_path / "run.svg").getroot())


@pytest.mark.parametrize("name, content, replaced", [
    ("x.svg", b"hello", False),
    ("x.svg", b'<?xml version="1.0"?>\n<svg xmlns="http://www.w3.org/2000/svg"/>', False),  # a user's drawing
    ("x.svg", b"<html><body/></html>", False),
    ("x.png", b"not a png", False),
    ("x.png", b"\x89PNG\r\n\x1a\n rest", False),
    ("x.dot", b"// a graph\ndigraph g { a -> b }", False),
    ("x.dot", b"graph g { a -- b }", False),
    ("x.svg", b"", True),  # an empty file holds nothing to lose
])
def test_overwrites_only_its_own_unedited_outputs(tmp_path: Path, name: str, content: bytes, replaced: bool):
    out = tmp_path / name
    out.write_bytes(content)
    r = run("diagram", str(EXAMPLES / "mnist_mlp.net"), "-o", str(out))
    assert (r.exit_code == 0) == replaced, r.output
    if not replaced:
        assert out.read_bytes() == content and "does not overwrite" in r.output
    else:
        assert out.read_bytes() != content


def test_bad_output_paths(tmp_path: Path):
    spec = str(EXAMPLES / "mnist_mlp.net")
    r = run("diagram", spec, "-o", str(tmp_path / "m.pdf"))
    assert r.exit_code == 1 and ".svg, .png or .dot, not .pdf" in r.output
    r = run("diagram", spec, "-o", str(tmp_path / "m"))
    assert r.exit_code == 1 and "without a suffix" in r.output
    (tmp_path / "d.svg").mkdir()
    r = run("diagram", spec, "-o", str(tmp_path / "d.svg"))
    assert r.exit_code == 1 and "is a folder" in r.output
    odd = tmp_path / "model.svg"  # a spec that happens to end in .svg is never its own output
    shutil.copy(spec, odd)
    r = run("diagram", str(odd), "-o", str(odd))
    assert r.exit_code == 1 and "that is the input" in r.output
    assert odd.read_text() == Path(spec).read_text()
    r = run("diagram", spec, "-o", str(tmp_path / "new" / "m.svg"), "--depth", "-1")
    assert r.exit_code == 2
    assert not list(tmp_path.glob(".*.tmp"))


# ---------------------------------------------------------------- diff

MLP = """\
let hidden = 128
model mlp {
    input: [784]
    fc1: Linear(hidden)
    relu1: ReLU
    fc2: Linear(64)
    ReLU
    output: Linear(10)
}
data {
    train: table(x=normal(0, 1, [32, 784]), y=[0, 1, 2, 3, 4, 5, 6, 7, 8, 9] * 3 + [0, 1])
    batch_size: 64
}
train {
    loss: CrossEntropyLoss
    optimizer: Adam(lr=1e-3)
    epochs: 10
}
"""


def _specs(tmp_path: Path, b_text: str, a_text: str = MLP) -> tuple[str, str]:
    (tmp_path / "a.net").write_text(a_text)
    (tmp_path / "b.net").write_text(b_text)
    return str(tmp_path / "a.net"), str(tmp_path / "b.net")


def _by_path(d) -> dict:
    return {c.path_b or c.path: c for c in d.layers}


def test_identical_specs_have_no_changes(tmp_path: Path):
    a, b = _specs(tmp_path, MLP)
    d = diff_paths(a, b)
    assert not d.differ and not d.layers and not d.settings and not d.renamed
    r = run("diff", a, b)
    assert r.exit_code == 0 and "the specs are the same" in r.output


def test_a_changed_width_propagates(tmp_path: Path):
    a, b = _specs(tmp_path, MLP.replace("let hidden = 128", "let hidden = 256"))
    d = diff_paths(a, b)
    layers = _by_path(d)
    fc1 = layers["fc1"]
    assert fc1.written and fc1.args == {"out_features": ("128", "256")} and fc1.shape == ("[128]", "[256]")
    assert fc1.params == (784 * 128 + 128, 784 * 256 + 256)
    fc2 = layers["fc2"]  # downstream: only its inferred input size and parameters changed
    assert not fc2.written and fc2.args == {"in_features": ("128", "256")} and fc2.inferred == ("in_features",)
    assert fc2.params == (128 * 64 + 64, 256 * 64 + 64)
    assert layers["relu1"].shape == ("[128]", "[256]") and set(layers) == {"fc1", "relu1", "fc2"}
    pa, pb = d.params
    assert pb - pa == fc1.params[1] - fc1.params[0] + fc2.params[1] - fc2.params[0]
    assert [(s.key, s.a, s.b) for s in d.settings] == [("let hidden", "128", "256")]
    out = run("diff", a, b).output
    assert "out_features: 128 -> 256" in out and "in_features: 128 -> 256 (inferred)" in out
    assert f"parameters: {pa:,} -> {pb:,} (+{pb - pa:,}" in out


def test_an_inserted_layer_is_one_insertion(tmp_path: Path):
    # an unnamed ReLU before the unnamed one: auto names shift (relu2 -> relu3), nothing else changes
    a, b = _specs(tmp_path, MLP.replace("    fc2: Linear(64)\n", "    ReLU\n    fc2: Linear(64)\n"))
    d = diff_paths(a, b)
    assert [(c.change, c.path, c.type) for c in d.layers] == [("added", "relu2", (None, "ReLU"))]
    assert d.renamed == [("relu2", "relu3")]
    a, b = _specs(tmp_path, MLP.replace("    relu1: ReLU\n", "    relu1: ReLU\n    drop: Dropout(0.2)\n"))
    d = diff_paths(a, b)
    assert [(c.change, c.path, c.args) for c in d.layers] == [("added", "drop", {"p": (None, "0.2")})]
    assert "+  drop" in run("diff", a, b).output


def test_inserted_block_in_a_deep_model(tmp_path: Path):
    text = (EXAMPLES / "zoo" / "resnet18.net").read_text()
    a, b = _specs(tmp_path, text.replace("layer3: { basic_down(256); basic(256) }",
                                         "layer3: { basic_down(256); basic(256); basic(256) }"), text)
    d = diff_paths(a, b)
    assert [(c.change, c.path, c.layers) for c in d.layers] == [("added", "layer3.basic2", (None, 6))]


def test_a_removed_layer_is_one_removal(tmp_path: Path):
    a, b = _specs(tmp_path, MLP.replace("    relu1: ReLU\n", ""))
    d = diff_paths(a, b)
    written = [c for c in d.layers if c.written]
    assert [(c.change, c.path, c.type) for c in written] == [("removed", "relu1", ("ReLU", None))]
    assert "-  relu1" in run("diff", a, b).output


def test_changed_settings(tmp_path: Path):
    b_text = MLP.replace("lr=1e-3", "lr=3e-4").replace("epochs: 10", "epochs: 20").replace(
        "batch_size: 64", "batch_size: 128").replace("optimizer: Adam", "scheduler: StepLR(step_size=2)\n    "
                                                                         "optimizer: Adam")
    a, b = _specs(tmp_path, b_text)
    d = diff_paths(a, b)
    got = {s.key: (s.a, s.b) for s in d.settings}
    assert got["train.optimizer.lr"] == ("0.001", "0.0003")
    assert got["train.epochs"] == ("10", "20") and got["data.batch_size"] == ("64", "128")
    assert got["train.scheduler"] == ("none", "StepLR(step_size=2)")
    assert not d.layers
    out = run("diff", a, b).output
    assert "train.optimizer.lr  0.001 -> 0.0003" in out


def test_json_structure_and_exit_code(tmp_path: Path):
    a, b = _specs(tmp_path, MLP.replace("let hidden = 128", "let hidden = 256").replace("epochs: 10", "epochs: 3"))
    r = run("diff", a, b, "--json")
    assert r.exit_code == 0
    data = json.loads(r.output)
    assert set(data) == {"a", "b", "differ", "layers", "renamed", "params", "settings", "metrics"}
    assert set(data["a"]) == {"path", "spec", "model", "run", "spec_hash", "finished"}
    assert data["differ"] is True and data["metrics"] is None
    row = data["layers"][0]
    assert set(row) == {"change", "path", "path_b", "type", "args", "inferred", "written", "shape", "params", "layers"}
    assert row["path"] == "fc1" and row["args"] == {"out_features": ["128", "256"]} and row["type"] == ["Linear"] * 2
    assert data["params"]["change"] == data["params"]["b"] - data["params"]["a"] > 0
    assert {"key": "train.epochs", "a": "10", "b": "3"} in data["settings"]
    assert run("diff", a, b, "--exit-code").exit_code == 1
    assert run("diff", a, a, "--exit-code").exit_code == 0
    assert to_json(diff_paths(a, a))["layers"] == []


def test_branch_construct_changes(tmp_path: Path):
    text = (EXAMPLES / "zoo" / "se_cnn.net").read_text()
    a, b = _specs(tmp_path, text.replace("    multiply {", "    add {"), text)
    d = diff_paths(a, b)
    ops = [c for c in d.layers if c.type == ("Multiply", "Add")]
    assert [c.path for c in ops] == ["stage1.residual1.se.multiply1", "stage2.residual1.se.multiply1",
                                     "stage3.residual1.se.multiply1"]
    assert d.renamed and all(x.endswith("multiply1") and y.endswith("add1") for x, y in d.renamed)


def _run_folder(path: Path, epochs: int, result: dict) -> Path:
    path.mkdir(parents=True)
    spec = (EXAMPLES / "linear_regression.net").read_text().replace("epochs: 3000", f"epochs: {epochs}")
    (path / "spec.net").write_text(spec)
    (path / "run.json").write_text(json.dumps({
        "format": "netspec-run-1", "started": 1.0, "finished": 2.0, "model": "linear_regression",
        "spec_hash": hashlib.sha256(str(epochs).encode()).hexdigest(), "result": result}))
    return path


def test_run_folders_compare_metrics(tmp_path: Path):
    a = _run_folder(tmp_path / "a", 5, {"epochs": 5, "best_epoch": 4, "loss": 1.25, "test_mse": 0.5})
    b = _run_folder(tmp_path / "b", 50, {"epochs": 50, "best_epoch": 49, "loss": 0.25})
    r = run("diff", str(a), str(b))
    assert r.exit_code == 0
    out = r.output
    h5, h50 = (hashlib.sha256(str(n).encode()).hexdigest() for n in (5, 50))
    assert "train.epochs  5 -> 50" in out and f"spec hash  {h5[:12]} -> {h50[:12]}" in out
    assert "runs" in out and "loss" in out and "-1" in out and "test_mse" in out
    data = json.loads(run("diff", str(a), str(b), "--json").output)
    assert data["a"]["run"] and data["a"]["spec_hash"] == h5 and data["b"]["finished"]
    assert data["metrics"] == {"epochs": [5, 50], "best_epoch": [4, 49], "loss": [1.25, 0.25], "test_mse": [0.5, None]}
    same = run("diff", str(a), str(a), "--exit-code")
    assert same.exit_code == 0 and "(same)" in same.output


def test_diff_errors_are_user_errors(tmp_path: Path):
    r = run("diff", str(tmp_path / "missing.net"), str(EXAMPLES / "mnist.net"))
    assert r.exit_code == 1 and "no such file" in r.output
    bad = tmp_path / "bad.net"
    bad.write_text("model m { input: [3]\n fc: Linaer(2) }\n")
    r = run("diff", str(bad), str(EXAMPLES / "mnist.net"))
    assert r.exit_code == 1 and "unknown layer `Linaer`" in r.output


# ---------------------------------------------------------------- no torch


def test_commands_do_not_import_torch(tmp_path: Path):
    run_dir = _run_folder(tmp_path / "run", 5, {"loss": 1.0})
    script = (
        "import sys\nfrom netspec.cli import main\n"
        "for args in ([\"diagram\", sys.argv[1], \"-o\", sys.argv[3]], [\"diagram\", sys.argv[1], \"-o\", sys.argv[4]],"
        " [\"diff\", sys.argv[1], sys.argv[2], \"--json\"]):\n"
        "    try:\n        main(args)\n    except SystemExit as e:\n        assert not e.code, e.code\n"
        "assert 'torch' not in sys.modules, 'torch imported'\n")
    r = subprocess.run([sys.executable, "-c", script, str(EXAMPLES / "zoo" / "resnet18.net"), str(run_dir),
                        str(tmp_path / "r.png"), str(tmp_path / "r.svg")],
                       capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert r.returncode == 0, r.stderr
    assert (tmp_path / "r.png").is_file() and (tmp_path / "r.svg").is_file()


def test_picture_of_hand_built_ir_needs_no_source():
    """IR built in code has no source to read block uses from: frames say Sequential."""
    layer = ir.LayerNode("fc", "Linear", (("in_features", 4), ("out_features", 2), ("bias", True)), (4,), (2,))
    inner = ir.SeqNode("block", "sequential", (layer,), (4,), (2,))
    model = ir.CheckedModel("m", (4,), ir.SeqNode("m", "sequential", (inner,), (4,), (2,)))
    pic = picture(model, 0)
    assert pic.parts[0].type == "Sequential" and pic.parts[0].params == 10
