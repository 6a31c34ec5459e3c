"""Hostile output paths and files for export, diagram and diff: '/', '.', '..', 'dir/', ''
as -o (a clear error, never an internal one), nan/inf tolerances, files netspec did not
write (never replaced), damaged run.json files (any shape), and weights that do not fit."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
from click.testing import CliRunner

import netspec
from netspec.cli import main
from netspec.errors import NetspecError
from tests.conftest import EXAMPLES

runner = CliRunner()
TINY = "model tiny {\n    input: [4]\n    fc1: Linear(3)\n    relu1: ReLU\n    output: Linear(2)\n}\n"


def run(*args: str):
    return runner.invoke(main, list(args), catch_exceptions=False)


def snapshot(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.fixture
def tiny(tmp_path: Path) -> Path:
    """A spec and, beside it, weights that fit it (no training: built and saved)."""
    import torch

    from netspec.builder import build_model

    spec = tmp_path / "tiny.net"
    spec.write_text(TINY)
    checked = netspec.load(str(spec))
    torch.save(build_model(checked.model, 0).state_dict(), tmp_path / "model.pt")
    return spec


# ---------------------------------------------------------------- 1, 2: output paths


FOLDERS = ["/", ".", "..", "sub/", "existing", "existing/", "./"]


@pytest.mark.parametrize("output", FOLDERS)
@pytest.mark.parametrize("command", ["export", "diagram"])
def test_folder_outputs_are_user_errors(tmp_path: Path, tiny: Path, command: str, output: str, monkeypatch):
    (tmp_path / "existing").mkdir()
    cwd = tmp_path / "cwd"
    (cwd / "existing").mkdir(parents=True)
    monkeypatch.chdir(cwd)
    before = snapshot(tmp_path)
    extra = ["--weights", str(tmp_path / "model.pt")] if command == "export" else []
    r = run(command, str(tiny), "-o", output, *extra)
    assert r.exit_code == 1, r.output
    assert "is a folder, not a file name" in r.output and "give a file name, e.g. -o" in r.output
    assert "internal error" not in r.output and "Traceback" not in r.output
    assert snapshot(tmp_path) == before and sorted(p.name for p in cwd.iterdir()) == ["existing"]


@pytest.mark.parametrize("command", ["export", "diagram"])
def test_output_under_a_file_is_a_user_error(tmp_path: Path, tiny: Path, command: str):
    (tmp_path / "notes.txt").write_text("mine")
    suffix = ".onnx" if command == "export" else ".svg"
    extra = ["--weights", str(tmp_path / "model.pt")] if command == "export" else []
    r = run(command, str(tiny), "-o", str(tmp_path / "notes.txt" / f"m{suffix}"), *extra)
    assert r.exit_code == 1 and "it is not a folder" in r.output, r.output
    assert (tmp_path / "notes.txt").read_text() == "mine"


@pytest.mark.parametrize("output", ["", " "])
@pytest.mark.parametrize("command", ["export", "diagram", "eject"])
def test_empty_output_is_a_usage_error(tmp_path: Path, tiny: Path, command: str, output: str, monkeypatch):
    """As for eject: an empty -o is not "use the default" (export of a run folder used to
    write into the run folder, diagram into ./)."""
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    (run_dir / "spec.net").write_text(TINY)
    (run_dir / "model.pt").write_bytes((tmp_path / "model.pt").read_bytes())
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    monkeypatch.chdir(cwd)
    before = snapshot(tmp_path)
    r = run(command, str(run_dir), "-o", output)
    assert r.exit_code == 2, r.output
    assert "give a file name" in r.output
    assert snapshot(tmp_path) == before and not list(cwd.iterdir())


def test_empty_output_in_the_functions_is_an_error(tmp_path: Path, tiny: Path):
    from netspec.deploy.export import export_file
    from netspec.tools.diagram import write_diagram

    with pytest.raises(NetspecError, match="the output path is empty"):
        write_diagram(netspec.load(str(tiny)), "")
    with pytest.raises(NetspecError, match="the output path is empty"):
        export_file(str(tiny), "", str(tmp_path / "model.pt"))


@pytest.mark.parametrize("value", ["nan", "inf", "-inf", "0", "-1", "NaN"])
def test_tolerance_must_be_a_finite_positive_number(tmp_path: Path, tiny: Path, value: str):
    out = tmp_path / "m.onnx"
    r = run("export", str(tiny), "--weights", str(tmp_path / "model.pt"), "-o", str(out), "--tolerance", value)
    assert r.exit_code == 2 and "--tolerance" in r.output and "not a finite number greater than 0" in r.output
    assert not out.exists()


def test_tolerance_nan_in_the_function_is_an_error(tmp_path: Path, tiny: Path):
    from netspec.deploy.export import export_file

    with pytest.raises(NetspecError, match="must be a number greater than 0"):
        export_file(str(tiny), str(tmp_path / "m.onnx"), str(tmp_path / "model.pt"), tolerance=math.nan)
    assert not (tmp_path / "m.onnx").exists()


def test_export_to_a_good_path_still_works(tmp_path: Path, tiny: Path):
    out = tmp_path / "deep" / "m.onnx"
    r = run("export", str(tiny), "--weights", str(tmp_path / "model.pt"), "-o", str(out), "--tolerance", "1e-3")
    assert r.exit_code == 0, r.output
    assert out.is_file()


def test_export_suffix_errors_never_crash(tmp_path: Path, tiny: Path):
    for output in (".onnx", "m.txt", "m"):
        r = run("export", str(tiny), "--weights", str(tmp_path / "model.pt"), "-o", str(tmp_path / output))
        assert r.exit_code == 1 and "export writes files NAME.onnx" in r.output, r.output


# ---------------------------------------------------------------- 3: diagram never replaces others' files


HAND_MADE = {
    "user.svg": b'<?xml version="1.0"?>\n<svg xmlns="http://www.w3.org/2000/svg"><circle r="4"/></svg>\n',
    "user.dot": b"// my graph\ndigraph g { a -> b }\n",
    "user.png": None,  # a real PNG made with Pillow
}


def _hand_made(tmp_path: Path, name: str) -> Path:
    path = tmp_path / name
    content = HAND_MADE[name]
    if content is None:
        from PIL import Image

        Image.new("RGB", (8, 8), "red").save(path)
    else:
        path.write_bytes(content)
    return path


@pytest.mark.parametrize("name", sorted(HAND_MADE))
def test_diagram_never_replaces_a_file_it_did_not_write(tmp_path: Path, tiny: Path, name: str):
    path = _hand_made(tmp_path, name)
    before = path.read_bytes()
    r = run("diagram", str(tiny), "-o", str(path))
    assert r.exit_code == 1, r.output
    assert f"{path} exists and is not an unedited output of netspec diagram" in r.output
    assert "does not overwrite it" in r.output and "choose another -o, or remove the file first" in r.output
    assert path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(["tiny.net", "model.pt", name])


@pytest.mark.parametrize("suffix", [".svg", ".png", ".dot"])
def test_diagram_replaces_its_own_output_but_not_an_edited_one(tmp_path: Path, tiny: Path, suffix: str):
    out = tmp_path / f"m{suffix}"
    assert run("diagram", str(tiny), "-o", str(out)).exit_code == 0
    first = out.read_bytes()
    r = run("diagram", str(tiny), "-o", str(out), "--depth", "0")
    assert r.exit_code == 0, r.output  # an earlier output, unedited: replaced
    assert out.read_bytes() == first  # (the same picture again)
    if suffix == ".png":
        from PIL import Image

        with Image.open(out) as img:
            img.load()
            assert img.info["Software"].startswith("written by netspec diagram; sha256 ")
        edited = _repaint_png(out)
    else:
        text = first.decode()
        mark = "<!-- written by netspec diagram; sha256 " if suffix == ".svg" else "// written by netspec diagram"
        assert text.splitlines()[-1].startswith(mark)
        if suffix == ".svg":
            import xml.etree.ElementTree as ET

            ET.fromstring(text)  # still well-formed XML with the mark after the root
        edited = first.replace(b"tiny", b"mine", 1)
    out.write_bytes(edited)
    r = run("diagram", str(tiny), "-o", str(out))
    assert r.exit_code == 1 and "it was edited, or is another file" in r.output, r.output
    assert out.read_bytes() == edited


def _repaint_png(path: Path) -> bytes:
    """The PNG with a pixel changed and its text chunks kept (an editor that keeps them)."""
    from PIL import Image, PngImagePlugin

    with Image.open(path) as img:
        img.load()
        info = PngImagePlugin.PngInfo()
        for k, v in img.info.items():
            if isinstance(v, str):
                info.add_text(k, v)
        img = img.copy()
    img.putpixel((0, 0), (1, 2, 3))
    img.save(path, pnginfo=info)
    return path.read_bytes()


def test_diagram_replaces_an_empty_file(tmp_path: Path, tiny: Path):
    out = tmp_path / "m.svg"
    out.write_bytes(b"")
    assert run("diagram", str(tiny), "-o", str(out)).exit_code == 0
    assert out.read_bytes().startswith(b"<?xml")


def test_signature_checks_reject_garbage(tmp_path: Path):
    from netspec.tools.diagram import is_own_output

    cases = {".png": [b"\x89PNG\r\n\x1a\n", b"\x89PNG\r\n\x1a\n\x00\x00\xff\xffIHDR", b""],
             ".svg": [b"<!-- written by netspec diagram; sha256 00 -->\n", b"x\n<!-- written by netspec diagram; "
                      b"sha256 " + b"0" * 64 + b" -->\n"],
             ".dot": [b"// written by netspec diagram; sha256 \n"]}
    for suffix, contents in cases.items():
        for content in contents:
            path = tmp_path / f"x{suffix}"
            path.write_bytes(content)
            assert not is_own_output(str(path), suffix)


# ---------------------------------------------------------------- 4: diff tolerates any run.json


RUN_JSONS = [
    '"x"', "[1, 2]", "null", "42", "{bad", "",
    '{"result": "x"}', '{"result": [1, 2]}', '{"result": null}', '{"result": 5}',
    '{"spec_hash": 5, "finished": "yes", "result": {"loss": 1.5}}',
    '{"spec_hash": ["a"], "finished": [1], "format": {}, "result": {"loss": NaN, "acc": Infinity, "e": -Infinity}}',
    '{"spec_hash": null, "result": {"loss": 1e308, "big": ' + "9" * 400 + ', "flag": true, "none": null}}',
    '{"result": {"nested": {"a": [1, {"b": NaN}]}, "text": "two\\nlines", "list": [1, 2, 3]}}',
    '{"result": {"loss": "0.5"}, "started": "yesterday", "epochs_done": "many"}',
]


def _run_dir(path: Path, run_json: str) -> Path:
    path.mkdir(parents=True)
    (path / "spec.net").write_text(TINY)
    (path / "run.json").write_text(run_json)
    return path


@pytest.mark.parametrize("run_json", RUN_JSONS)
def test_diff_tolerates_any_run_json(tmp_path: Path, run_json: str):
    good = _run_dir(tmp_path / "good", json.dumps({"format": "netspec-run-1", "finished": 2.0, "spec_hash": "ab" * 32,
                                                    "result": {"loss": 0.5, "big": 3, "acc": 0.9}}))
    odd = _run_dir(tmp_path / "odd", run_json)
    before = snapshot(tmp_path)
    for a, b in ((good, odd), (odd, good), (odd, odd)):
        r = run("diff", str(a), str(b))
        assert r.exit_code == 0, r.output
        assert "runs" in r.output and "internal error" not in r.output
        r = run("diff", str(a), str(b), "--json")
        assert r.exit_code == 0, r.output

        def strict(name: str) -> None:
            raise AssertionError(f"not strict JSON: {name}")

        data = json.loads(r.output, parse_constant=strict)
        assert data["a"]["spec_hash"] is None or isinstance(data["a"]["spec_hash"], str)
        assert isinstance(data["b"]["finished"], bool)
        assert isinstance(data["metrics"], dict)
    assert snapshot(tmp_path) == before


def test_diff_shows_metrics_of_a_damaged_run_as_text(tmp_path: Path):
    a = _run_dir(tmp_path / "a", '{"result": {"loss": NaN, "n": ' + "9" * 400 + ', "s": "x\\ny"}}')
    b = _run_dir(tmp_path / "b", '{"result": {"loss": 0.5, "n": 1, "s": 2}}')
    r = run("diff", str(a), str(b))
    assert r.exit_code == 0, r.output
    table = r.output.split("\nruns\n", 1)[1].splitlines()
    lines = {line.split()[0]: line for line in table if line.strip()}
    assert "nan" in lines["loss"] and "0.5" in lines["loss"]
    assert "…" in lines["n"]  # a huge number is clipped, and no delta is attempted
    assert "x y" in lines["s"]


# ---------------------------------------------------------------- 5: weights that do not fit


def test_export_names_the_tensors_that_do_not_fit(tmp_path: Path, tiny: Path):
    import torch

    state = torch.load(tmp_path / "model.pt", weights_only=True)
    state["fc1.weight"] = torch.zeros(3, 5)
    state["output.bias"] = torch.zeros(7)
    del state["fc1.bias"]
    state["extra.weight"] = torch.zeros(1)
    wrong = tmp_path / "wrong.pt"
    torch.save(state, wrong)
    before = wrong.read_bytes()
    out = tmp_path / "m.onnx"
    r = run("export", str(tiny), "--weights", str(wrong), "-o", str(out))
    assert r.exit_code == 1, r.output
    assert "weights do not fit model `tiny`" in r.output
    assert "fc1.weight: [3, 5] in the file, [3, 4] in the model" in r.output
    assert "output.bias: [7] in the file, [2] in the model" in r.output
    assert "fc1.bias: missing from the file" in r.output and "and 1 more" in r.output
    assert "Error(s) in loading state_dict" not in r.output
    assert not out.exists() and wrong.read_bytes() == before


def test_state_problems_lists_at_most_the_limit():
    import torch

    from netspec.train.checkpoint import state_problems

    model = torch.nn.Sequential(torch.nn.Linear(4, 3))
    assert state_problems(model, model.state_dict()) == []
    bad = {"0.weight": torch.zeros(1), "0.bias": torch.zeros(9), "x": torch.zeros(1), "y": torch.zeros(1)}
    got = state_problems(model, bad, limit=2)
    assert got == ["0.weight: [1] in the file, [3, 4] in the model", "0.bias: [9] in the file, [3] in the model",
                   "and 2 more"]


def test_existing_examples_still_draw(tmp_path: Path):
    r = run("diagram", str(EXAMPLES / "mnist_mlp.net"), "-o", str(tmp_path / "m.svg"))
    assert r.exit_code == 0, r.output


def test_export_replaces_only_a_model_netspec_exported(tmp_path: Path, tiny: Path):
    """A valid ONNX model from another tool at -o is the user's: it was replaced."""
    import torch

    theirs = tmp_path / "theirs.onnx"
    torch.onnx.export(torch.nn.Linear(4, 2), (torch.zeros(1, 4),), str(theirs), dynamo=False)
    before = theirs.read_bytes()
    args = ("export", str(tiny), "--weights", str(tmp_path / "model.pt"), "--tolerance", "1e-3", "-o")
    r = run(*args, str(theirs))
    assert r.exit_code == 1 and "not an ONNX model that netspec exported" in r.output, r.output
    assert theirs.read_bytes() == before
    ours = tmp_path / "ours.onnx"
    assert run(*args, str(ours)).exit_code == 0
    assert run(*args, str(ours)).exit_code == 0  # its own earlier export is replaced
