"""Hostile and careless input: nothing crashes netspec (exit 3), hangs it, runs code or
destroys a file. One test (or more) per finding of the hardening issue, and their siblings."""

from __future__ import annotations

import errno
import json
import os
import pickle
import stat
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner

import netspec
from netspec.cli import main
from netspec.errors import NetspecError
from tests.conftest import EXAMPLES, ROOT, netspec_cmd

runner = CliRunner()


def cli(*args: str, cwd: Path | None = None, timeout: int = 120, **kw) -> subprocess.CompletedProcess:
    return subprocess.run([*netspec_cmd(), *args], capture_output=True, text=True, cwd=cwd or ROOT,
                          timeout=timeout, **kw)


def check_text(tmp_path: Path, text: str, name: str = "h.net") -> NetspecError | None:
    p = tmp_path / name
    p.write_text(text)
    try:
        netspec.load(str(p))
    except NetspecError as e:
        return e
    return None


REGRESSION = """
model reg {
    input: [1]
    Linear(1)
}
data { train: table(x=linspace(0, 1, 64), y=2 * x + 1)
       validation: 0.25
       batch_size: 16 }
train { loss: MSELoss; optimizer: SGD(lr=0.1); epochs: 3; metrics: [mse] }
"""


# ---------------------------------------------------------------- crashes in the front end


@pytest.mark.parametrize("body", ["res: residual { fc: Linear(4) }", "repeat 2 { fc: Linear(4) }",
                                  "stage: repeat 2 { fc: Linear(4) }", "add { a: Linear(4); b: Linear(4) }",
                                  "s: { fc: Linear(4); r: ReLU }"])
def test_named_entries_in_every_body(tmp_path, body):
    c = netspec.load(str(_write(tmp_path, f"model m {{\n    input: [4]\n    {body}\n}}\n")))
    net = netspec.build(c)
    assert net(torch.randn(2, 4)).shape == (2, 4)
    names = [n for n, _ in net.named_parameters()]
    assert any("fc" in n or ".a." in n or "a.weight" in n for n in names), names


def _write(tmp_path: Path, text: str, name: str = "h.net") -> Path:
    p = tmp_path / name
    p.write_text(text)
    return p


@pytest.mark.parametrize("construct", ["residual { ReLU(inplace=true) }",
                                       "add { ReLU(inplace=true); Identity }",
                                       "add { Identity; { Identity; ReLU(inplace=true) } }",
                                       "concat(dim=1) { ReLU(inplace=true); Identity }"])
def test_inplace_layers_never_change_a_shared_input(tmp_path, construct):
    c = netspec.load(str(_write(tmp_path, f"model m {{\n    input: [6]\n    {construct}\n}}\n")))
    assert any("inplace=true) would overwrite its input" in w.message for w in c.warnings)
    net = netspec.build(c)
    x = torch.randn(3, 6)
    keep = x.clone()
    y = net(x)
    assert torch.equal(x, keep)  # the caller's tensor is untouched
    relu = torch.relu(keep)
    want = {"residual": keep + relu, "add { ReLU": relu + keep, "add { Identity": keep + relu,
            "concat": torch.cat([relu, keep], 1)}
    key = next(k for k in want if construct.startswith(k))
    assert torch.equal(y, want[key])


@pytest.mark.parametrize("depth", [200, 3000])
def test_deep_nesting_is_a_positioned_error(tmp_path, depth):
    text = "model m { input: [4]\n" + "repeat 1 { " * depth + "ReLU" + " }" * depth + "\n}\n"
    e = check_text(tmp_path, text)
    assert e is not None and "nested too deeply" in e.render()
    assert e.diagnostics[0].span.line == 2


# ---------------------------------------------------------------- code execution, destroyed files


def test_no_parser_cache_is_unpickled(tmp_path):
    """lark's cache=True unpickled $TMPDIR/.lark_cache_<user>_<hash>.tmp; plant one everywhere."""
    marker = tmp_path / "pwned"

    class Evil:
        def __reduce__(self):
            return (os.system, (f"touch {marker}",))

    planted = tmp_path / "tmp"
    planted.mkdir()
    import getpass

    for name in (f".lark_cache_{getpass.getuser()}_{'0' * 64}_3_11.tmp", ".lark_cache.tmp"):
        (planted / name).write_bytes(pickle.dumps(Evil()))
    r = cli("check", str(EXAMPLES / "mnist_mlp.net"), env={**os.environ, "TMPDIR": str(planted)})
    assert r.returncode == 0, r.stderr
    assert not marker.exists()
    code = ("import pickle, sys\n"
            "def refuse(*a, **k):\n    raise SystemExit('something unpickled')\n"
            "pickle.load = pickle.loads = refuse\n"
            "from netspec.cli import main\n"
            f"sys.argv = ['netspec', 'check', {str(EXAMPLES / 'mnist.net')!r}]\nmain()\n")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT)
    assert r.returncode == 0 and "something unpickled" not in r.stderr, r.stderr


def test_export_never_overwrites_a_spec_or_an_input(tmp_path):
    spec = _write(tmp_path, REGRESSION, "reg.net")
    before = spec.read_bytes()
    assert cli("train", str(spec), "--quiet", "--out", str(tmp_path / "run"), cwd=tmp_path).returncode == 0
    for target in (spec, tmp_path / "notes.txt"):
        target.write_bytes(before) if target == spec else target.write_text("my notes")
        r = cli("export", str(spec), "--weights", str(tmp_path / "run" / "model.pt"), "-o", str(target),
                cwd=tmp_path)
        assert r.returncode == 1 and "Traceback" not in r.stderr
    assert spec.read_bytes() == before and (tmp_path / "notes.txt").read_text() == "my notes"
    (tmp_path / "old.onnx").write_text("not onnx")
    r = cli("export", str(tmp_path / "run"), "-o", str(tmp_path / "old.onnx"), cwd=tmp_path)
    assert r.returncode == 1 and "is not an ONNX model" in r.stderr
    os.symlink(tmp_path / "run" / "model.pt", tmp_path / "link.onnx")
    r = cli("export", str(tmp_path / "run"), "-o", str(tmp_path / "link.onnx"), cwd=tmp_path)
    assert r.returncode == 1 and "one of this export's inputs" in r.stderr
    r = cli("export", str(tmp_path / "run"), "-o", str(tmp_path / "fresh.onnx"), cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    r = cli("export", str(tmp_path / "run"), "-o", str(tmp_path / "fresh.onnx"), cwd=tmp_path)
    assert r.returncode == 0, r.stderr  # an ONNX file may be replaced


def test_out_only_rotates_netspec_runs(tmp_path):
    spec = _write(tmp_path, REGRESSION, "reg.net")
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "thesis.tex").write_text("precious")
    for out in (str(mine), ".", str(tmp_path)):
        r = cli("train", str(spec), "--quiet", "--out", out, cwd=tmp_path)
        assert r.returncode == 1 and "Traceback" not in r.stderr, r.stderr
    assert (mine / "thesis.tex").read_text() == "precious" and not (tmp_path / "mine.1").exists()
    assert cli("train", str(spec), "--quiet", "--out", "runs/a", cwd=tmp_path).returncode == 0
    assert cli("train", str(spec), "--quiet", "--out", "runs/a", cwd=tmp_path).returncode == 0
    assert (tmp_path / "runs" / "a.1" / "model.pt").exists() and (tmp_path / "runs" / "a" / "model.pt").exists()


def test_a_run_failing_before_its_first_checkpoint_leaves_the_previous_run(tmp_path):
    spec = _write(tmp_path, REGRESSION, "reg.net")
    assert cli("train", str(spec), "--quiet", "--out", "run", cwd=tmp_path).returncode == 0
    before = (tmp_path / "run" / "model.pt").read_bytes()
    r = cli("train", str(spec), "--quiet", "--out", "run", "--set", "train.optimizer=SGD(lr=1e30)", cwd=tmp_path)
    assert r.returncode == 1 and "loss became" in r.stderr
    assert (tmp_path / "run" / "model.pt").read_bytes() == before and not (tmp_path / "run.1").exists()


def test_fmt_follows_symlinks_and_keeps_the_mode(tmp_path):
    real = _write(tmp_path, "model m{\ninput:[4]\n Linear(2)\n}\n", "real.net")
    real.chmod(0o640)
    link = tmp_path / "link.net"
    link.symlink_to(real)
    assert runner.invoke(main, ["fmt", str(link)]).exit_code == 0
    assert link.is_symlink() and real.read_text() == "model m {\n    input: [4]\n    Linear(2)\n}\n"
    assert stat.S_IMODE(real.stat().st_mode) == 0o640


def test_written_files_honour_the_umask(tmp_path):
    spec = _write(tmp_path, REGRESSION, "reg.net")
    r = cli("train", str(spec), "--quiet", "--out", "run", cwd=tmp_path, preexec_fn=lambda: os.umask(0o022))
    assert r.returncode == 0
    for f in ("model.pt", "checkpoint.pt", "metrics.csv", "spec.net", "run.json", "curves.png", "summary.txt"):
        assert stat.S_IMODE((tmp_path / "run" / f).stat().st_mode) == 0o644, f


def test_imports_and_specs_that_are_not_specs_are_not_quoted(tmp_path):
    secret = tmp_path / "secret"
    secret.write_text("root:$6$SECRETHASH:19000:0:99999:7:::\n")
    e = check_text(tmp_path, f'import "{secret}"\nmodel m {{ input: [1]\n Linear(1) }}\n')
    assert e is not None and "imports must name a .net spec file" in e.render() and "SECRETHASH" not in e.render()
    disguised = tmp_path / "secret.net"
    disguised.write_text(secret.read_text())
    e = check_text(tmp_path, 'import "secret.net"\nmodel m { input: [1]\n Linear(1) }\n')
    assert e is not None and "not a netspec spec" in e.render() and "SECRETHASH" not in e.render()
    r = cli("check", str(disguised))
    assert r.returncode == 1 and "SECRETHASH" not in r.stderr + r.stdout


def test_devices_and_fifos_are_refused_quickly(tmp_path):
    fifo = tmp_path / "f.net"
    os.mkfifo(fifo)
    for path in ("/dev/zero", str(fifo)):
        r = cli("check", path, timeout=30)
        assert r.returncode == 1 and "not a regular file" in r.stderr
    e = check_text(tmp_path, 'import "f.net"\nmodel m { input: [1]\n Linear(1) }\n', "imp.net")
    assert e is not None and "not a regular file" in e.render()
    spec = _write(tmp_path, 'model m { input: [1, 28, 28]\n Flatten; Linear(10) }\n'
                            'data { train: idx(images="/dev/zero", labels="/dev/zero") }\n'
                            'train { loss: CrossEntropyLoss }\n', "idx.net")
    r = cli("train", str(spec), "--out", str(tmp_path / "r"), timeout=60)
    assert r.returncode == 1 and "not a regular file" in r.stderr


# ---------------------------------------------------------------- resource exhaustion


def test_nested_repeats_are_bounded_before_expanding(tmp_path):
    spec = _write(tmp_path, "model m { input: [4]\nrepeat 1000 { repeat 1000 { repeat 1000 { ReLU } } }\n}\n")
    r = cli("check", str(spec), timeout=60)  # a hang guard, not a speed assertion
    assert r.returncode == 1 and "more than 20,000 layers" in r.stderr


def test_many_layers_are_named_linearly():
    from netspec.checker.model import _Namer

    namer = _Namer({"relu2": None, "relu5": None})
    names = [namer.next("relu") for _ in range(20_000)]
    assert names[:4] == ["relu1", "relu3", "relu4", "relu6"] and len(set(names)) == 20_000
    assert namer.counters["relu"] == 20_003  # one counter per stem: no search from 1 each time


@pytest.mark.parametrize("text,message", [
    ("let a0 = \"xx\"\n" + "".join(f"let a{i + 1} = a{i} + a{i}\n" for i in range(40)), "string too long"),
    ("let a0 = 3\n" + "".join(f"let a{i + 1} = a{i} * a{i}\n" for i in range(40)), "integer too large"),
    ("let x = " + "9" * 5001 + "\n", "number too large"),
    ("let x = 1e999\n", "number too large"),
    ("let x = 10 ** 10 ** 10\n", "number too large"),
])
def test_the_evaluator_bounds_every_value(tmp_path, text, message):
    e = check_text(tmp_path, text + "model m { input: [1]\n Linear(1) }\n")
    assert e is not None and message in e.render()
    assert len(e.diagnostics) == 1  # one mistake, one error: no cascade through later lets


def test_huge_models_stop_before_allocating(tmp_path, monkeypatch):
    import netspec.train.resources as res

    monkeypatch.setattr(res, "available_bytes", lambda device="cpu": 8 << 30)
    spec = _write(tmp_path, "model big {\n    input: [100000]\n    Linear(100000)\n}\n"
                            "data { train: table(x=zeros([2, 100000]), y=zeros([2, 100000])) }\n"
                            "train { loss: MSELoss; optimizer: Adam }\n")
    from netspec.train.trainer import train_file

    with pytest.raises(NetspecError, match=r"has 10,000,100,000 parameters: weights, gradients and 2 optimizer "
                                           r"states \(Adam\) need about 149\.0 GiB, but only 8\.0 GiB"):
        train_file(str(spec), (), out_dir=str(tmp_path / "r"))


# ---------------------------------------------------------------- user errors, never "a bug in netspec"


def test_disk_full_is_a_user_error_and_leaves_a_consistent_run(tmp_path, monkeypatch):
    spec = _write(tmp_path, REGRESSION, "reg.net")
    from netspec import util
    from netspec.train.trainer import train_file

    calls = {"n": 0}
    real = os.replace

    def flaky_replace(src, dst):
        calls["n"] += 1
        if calls["n"] > 6:  # the first checkpoint lands, a later one hits a full disk
            raise OSError(errno.ENOSPC, "No space left on device", str(dst))
        return real(src, dst)

    monkeypatch.setattr(util.os, "replace", flaky_replace)
    with pytest.raises(NetspecError, match="no space left on device"):
        train_file(str(spec), (), out_dir=str(tmp_path / "run"), quiet=True)
    monkeypatch.setattr(util.os, "replace", real)
    run = tmp_path / "run"
    ckpt = torch.load(run / "checkpoint.pt", weights_only=True)
    rows = (run / "metrics.csv").read_text().strip().splitlines()[1:]
    assert ckpt["epoch"] == len(rows) == len(ckpt["history"])
    assert not [p for p in run.iterdir() if p.name.endswith(".tmp")]


def test_disk_full_on_a_real_small_filesystem(tmp_path):
    mount = tmp_path / "small"
    mount.mkdir()
    if os.geteuid() != 0 or subprocess.run(["mount", "-t", "tmpfs", "-o", "size=400k", "tmpfs", str(mount)],
                                           capture_output=True).returncode != 0:
        pytest.skip("cannot mount a small tmpfs here (needs root); the monkeypatched tests cover the logic")
    try:
        spec = _write(mount, REGRESSION.replace("epochs: 3", "epochs: 4000"), "reg.net")
        r = cli("train", str(spec), "--quiet", "--out", str(mount / "run"), timeout=300)
        assert r.returncode == 1 and "no space left on device" in r.stderr and "Traceback" not in r.stderr
        ckpt = torch.load(mount / "run" / "checkpoint.pt", weights_only=True)
        assert ckpt["epoch"] == len((mount / "run" / "metrics.csv").read_text().strip().splitlines()) - 1
    finally:
        subprocess.run(["umount", str(mount)], capture_output=True)


def test_fmt_on_a_full_disk_keeps_the_file(tmp_path, monkeypatch):
    from netspec import util

    spec = _write(tmp_path, "model m{\ninput:[4]\nLinear(2)\n}\n")
    before = spec.read_text()

    def full(src, dst):
        raise OSError(errno.ENOSPC, "No space left on device", str(dst))

    monkeypatch.setattr(util.os, "replace", full)
    r = runner.invoke(main, ["fmt", str(spec)])
    assert r.exit_code == 1 and "no space left on device" in r.output
    assert spec.read_text() == before and not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]


def test_weights_and_checkpoints_of_the_wrong_kind(tmp_path):
    spec = _write(tmp_path, REGRESSION, "reg.net")
    assert cli("train", str(spec), "--quiet", "--out", "run", cwd=tmp_path).returncode == 0
    torch.save([1, 2, 3], tmp_path / "list.pt")
    torch.save(torch.zeros(3), tmp_path / "tensor.pt")
    for bad in ("list.pt", "tensor.pt"):
        r = cli("export", str(spec), "--weights", str(tmp_path / bad), "-o", str(tmp_path / "x.onnx"), cwd=tmp_path)
        assert r.returncode == 1 and "not a weights file" in r.stderr, r.stderr
    ckpt = torch.load(tmp_path / "run" / "checkpoint.pt", weights_only=True)
    torch.save([ckpt], tmp_path / "run" / "checkpoint.pt")
    r = cli("train", str(spec), "--resume", "--out", "run", "--set", "train.epochs=5", cwd=tmp_path)
    assert r.returncode == 1 and "not a netspec checkpoint" in r.stderr
    del ckpt["optimizer"]
    torch.save(ckpt, tmp_path / "run" / "checkpoint.pt")
    r = cli("train", str(spec), "--resume", "--out", "run", "--set", "train.epochs=5", cwd=tmp_path)
    assert r.returncode == 1 and "missing optimizer" in r.stderr


def test_eval_with_another_models_onnx(tmp_path):
    spec = _write(tmp_path, REGRESSION, "reg.net")
    assert cli("train", str(spec), "--quiet", "--out", "run", cwd=tmp_path).returncode == 0
    assert cli("export", "run", "-o", "reg.onnx", cwd=tmp_path).returncode == 0
    r = cli("eval", "reg.onnx", "--spec", str(EXAMPLES / "mnist_mlp.net"), cwd=tmp_path)
    assert r.returncode == 1 and "was not exported from that spec" in r.stderr


def test_predict_bad_arrays_and_images(tmp_path):
    spec = _write(tmp_path, REGRESSION, "reg.net")
    assert cli("train", str(spec), "--quiet", "--out", "run", cwd=tmp_path).returncode == 0
    assert cli("export", "run", "-o", "reg.onnx", cwd=tmp_path).returncode == 0
    np.save(tmp_path / "strings.npy", np.array(["a", "b"]))
    np.save(tmp_path / "empty.npy", np.zeros((0, 1), np.float32))
    from PIL import Image

    Image.new("L", (16, 16)).save(tmp_path / "bomb.png")
    data = bytearray((tmp_path / "bomb.png").read_bytes())
    data[16:24] = (60000).to_bytes(4, "big") + (60000).to_bytes(4, "big")  # IHDR: 60000 x 60000
    (tmp_path / "bomb.png").write_bytes(bytes(data))
    for name, text in (("strings.npy", "predict needs numbers"), ("empty.npy", "is empty"),
                       ("bomb.png", "not on images")):
        r = cli("predict", "reg.onnx", name, cwd=tmp_path)
        assert r.returncode == 1 and text in r.stderr and "Traceback" not in r.stderr, (name, r.stderr)


def test_decompression_bomb_refused_by_the_image_decoder(tmp_path):
    from PIL import Image

    from netspec.data.images import decode_image

    Image.new("L", (16, 16)).save(tmp_path / "bomb.png")
    data = bytearray((tmp_path / "bomb.png").read_bytes())
    data[16:24] = (60000).to_bytes(4, "big") + (60000).to_bytes(4, "big")
    (tmp_path / "bomb.png").write_bytes(bytes(data))
    with pytest.raises(NetspecError, match="bomb"):
        decode_image(tmp_path / "bomb.png", (28, 28), 1)


@pytest.mark.parametrize("text,message", [
    ("train { optimizer: Adam(lr=-1) }", "`lr` of Adam must be at least 0, got -1"),
    ("train { seed: -1 }", "`seed` must be at least 0, got -1"),
    ("train { scheduler: StepLR(step_size=0) }", "`step_size` of StepLR must be at least 1, got 0"),
    ("train { clip_grad_norm: -1 }", "`clip_grad_norm` must be greater than 0, got -1"),
    ("train { optimizer: Adam(lr=1e999) }", "number too large"),
    ("train { optimizer: Adam(lr=\"0.001\") }", "drop the quotes"),
    ("train { optimizer: SGD(lr=0.1, momentum=-0.5) }", "`momentum` of SGD must be at least 0"),
    ("train { optimizer: Adam(betas=[0.9, 1.5]) }", "`betas` of Adam must be in [0, 1)"),
    ("data { train: table(x=[1], y=[1]); subset: -1 }", "`subset` must be at least 1, got -1"),
    ("data { train: table(x=[1], y=[1]); validation: 1.5 }", "`validation` must be in [0, 1)"),
    ("data { train: table(x=[1], y=[1]); batch_size: 0 }", "`batch_size` must be at least 1"),
    ("export { opset: 99 }", "`opset` must be in [9, 23]"),
])
def test_argument_domains_are_checked(tmp_path, text, message):
    e = check_text(tmp_path, "model m {\n    input: [1]\n    Linear(1)\n}\n" + text + "\n")
    assert e is not None and message in e.render(), e.render() if e else None
    assert e.diagnostics[0].span.line == 5


@pytest.mark.parametrize("layer,message", [("Dropout(1.5)", "`p` of Dropout must be in [0, 1]"),
                                           ("Linear(0)", "`out_features` of Linear must be at least 1"),
                                           ("Conv1d(4, 0)", "`kernel_size` of Conv1d must be at least 1")])
def test_layer_argument_domains(tmp_path, layer, message):
    e = check_text(tmp_path, f"model m {{\n    input: [2, 8]\n    {layer}\n}}\n")
    assert e is not None and message in e.render()


def test_set_overrides_are_checked_like_the_file():
    for setting, message in (("data.subset=-1", "`subset` must be at least 1"),
                             ("train.clip_grad_norm=-1", "`clip_grad_norm` must be greater than 0"),
                             ("train.optimizer=Adam(lr=1e999)", "number too large")):
        r = runner.invoke(main, ["check", "--no-data", str(EXAMPLES / "mnist_mlp.net"), "--set", setting])
        assert r.exit_code == 1 and message in r.output, (setting, r.output)


def test_nul_bytes_in_paths(tmp_path):
    for args in (["check", "a\0b.net"], ["train", "x\0.net"], ["export", "r", "-o", "x\0.onnx"],
                 ["predict", "m.onnx", "a\0.png"], ["train", str(EXAMPLES / "mnist_mlp.net"), "--out", "r\0"]):
        r = runner.invoke(main, args)
        assert r.exit_code == 2 and "NUL" in r.output, (args, r.output)
    e = check_text(tmp_path, 'model m { input: [1]\n Linear(1) }\ndata { train: csv("a\\u0000.csv", target="y") }\n'
                   .replace("\\u0000", "\0"))
    assert e is not None and "NUL" in e.render()


def test_output_paths_under_a_file_and_export_section_naming_a_folder(tmp_path):
    spec = _write(tmp_path, REGRESSION, "reg.net")
    r = cli("train", str(spec), "--quiet", "--out", str(spec / "run"), cwd=tmp_path)
    assert r.returncode == 1 and "is a file" in r.stderr and "Traceback" not in r.stderr
    assert cli("train", str(spec), "--quiet", "--out", "run", cwd=tmp_path).returncode == 0
    r = cli("export", "run", "-o", str(spec / "m.onnx"), cwd=tmp_path)
    assert r.returncode == 1 and "Traceback" not in r.stderr
    e = check_text(tmp_path, REGRESSION + 'export { onnx: "models/" }\n')
    assert e is not None and "names a folder" in e.render()


def test_broken_pipes_end_quietly_and_training_carries_on(tmp_path):
    r = subprocess.run(f"{sys.executable} -m netspec layers | head -1", shell=True, capture_output=True, text=True,
                       cwd=ROOT)
    assert r.returncode == 0 and "Traceback" not in r.stderr and "BrokenPipe" not in r.stderr
    spec = _write(tmp_path, REGRESSION.replace("epochs: 3", "epochs: 40"), "reg.net")
    r = subprocess.run(f"{sys.executable} -m netspec train {spec} --out run | head -1; echo ${{PIPESTATUS[0]}} > rc",
                       shell=True, executable="/bin/bash", capture_output=True, text=True, cwd=tmp_path)
    assert (tmp_path / "rc").read_text().strip() == "0", r.stderr
    assert json.loads((tmp_path / "run" / "run.json").read_text())["finished"]  # the run finished its 40 epochs


def test_duplicate_csv_header(tmp_path):
    (tmp_path / "d.csv").write_text("a,a,y\n1,2,3\n")
    e = check_text(tmp_path, 'model m { input: [2]\n Linear(1) }\ndata { train: csv("d.csv", target="y") }\n'
                             "train { loss: MSELoss }\n")
    assert e is None  # check without data reading passes; reading the data says it
    with pytest.raises(NetspecError, match="more than once"):
        netspec.load(str(tmp_path / "h.net"), read_data=True)


# ---------------------------------------------------------------- runs that stay consistent


def test_resolved_spec_keeps_parentheses(tmp_path):
    from netspec.syntax.expr import source
    from netspec.syntax.parser import parse_value

    for text in ("(2 + 2) * 4", "2 - (3 - 4)", "(2 ** 3) ** 2", "-(a - b)", "(-2) ** 2", "[1, 2][0] ** 2"):
        assert parse_value(source(parse_value(text))) == parse_value(text), text
    spec = _write(tmp_path, "let h = (2 + 2) * 4\n" + REGRESSION.replace("Linear(1)", "Linear(h)\n    Linear(1)"),
                  "reg.net")
    assert cli("train", str(spec), "--quiet", "--out", "run", cwd=tmp_path).returncode == 0
    resolved = (tmp_path / "run" / "spec.net").read_text()
    assert "let h = (2 + 2) * 4" in resolved
    assert netspec.load(str(tmp_path / "run" / "spec.net")).constants[0] == ("h", 16)
    spec.write_text(spec.read_text().replace("(2 + 2) * 4", "2 + 2 * 4"))
    r = cli("train", str(spec), "--resume", "--out", "run", "--set", "train.epochs=5", cwd=tmp_path)
    assert r.returncode == 1 and "let h: (2 + 2) * 4 -> 2 + 2 * 4" in r.stderr


def test_resume_finishes_a_run_killed_before_its_outputs(tmp_path):
    spec = _write(tmp_path, REGRESSION, "reg.net")
    assert cli("train", str(spec), "--quiet", "--out", "run", cwd=tmp_path).returncode == 0
    run = tmp_path / "run"
    for f in ("curves.png", "summary.txt"):
        (run / f).unlink()
    meta = json.loads((run / "run.json").read_text())
    meta["finished"] = None
    (run / "run.json").write_text(json.dumps(meta))
    r = cli("train", str(spec), "--resume", "--out", "run", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert (run / "curves.png").exists() and (run / "summary.txt").exists()
    assert json.loads((run / "run.json").read_text())["finished"]
    r = cli("train", str(spec), "--resume", "--out", "run", cwd=tmp_path)
    assert r.returncode == 1 and "already finished" in r.stderr


def test_stale_temp_files_are_cleaned(tmp_path):
    spec = _write(tmp_path, REGRESSION, "reg.net")
    assert cli("train", str(spec), "--quiet", "--out", "run", cwd=tmp_path).returncode == 0
    stale = [tmp_path / "run" / ".checkpoint.pt.abcd1234.tmp", tmp_path / "run" / ".model.pt.zz.tmp"]
    for p in stale:
        p.write_bytes(b"half a checkpoint")
    (tmp_path / ".out.onnx.q1w2e3.tmp").write_bytes(b"half an export")
    assert cli("train", str(spec), "--resume", "--out", "run", "--set", "train.epochs=4",
               cwd=tmp_path).returncode == 0
    assert not any(p.exists() for p in stale)
    assert cli("export", "run", "-o", "out.onnx", cwd=tmp_path).returncode == 0
    assert not (tmp_path / ".out.onnx.q1w2e3.tmp").exists()


def test_no_internal_errors_from_a_spread_of_bad_commands(tmp_path):
    """Every one of these is the user's mistake: exit 1 or 2, never 3, never a traceback."""
    spec = _write(tmp_path, REGRESSION, "reg.net")
    cases = [["check", "nope.net"], ["summary", str(tmp_path)], ["export", "model.onnx"], ["eval", "nothing.onnx"],
             ["predict", "nothing.onnx", "x.png"], ["train", str(spec), "--resume", "--out", "nowhere"],
             ["fmt", str(tmp_path)], ["new", "mnist", "-o", str(spec)], ["layers", "Nope"],
             ["train", str(spec), "--set", "train.epochs=0"], ["check", "--target", "onnx", "/etc/passwd"]]
    start = time.perf_counter()
    for args in cases:
        r = cli(*args, cwd=tmp_path, timeout=120)
        assert r.returncode in (1, 2), (args, r.returncode, r.stderr)
        assert "Traceback" not in r.stderr and "internal error" not in r.stderr, (args, r.stderr)
    assert time.perf_counter() - start < 600  # a hang guard


def test_memory_cgroup_limits_what_is_available(tmp_path):
    """A container's or job's memory limit, not the machine's, decides what may be held in
    memory (a 1.5 GiB set under a 768 MiB cgroup was loaded whole and killed)."""
    from netspec.train.resources import cgroup_available

    v1 = tmp_path / "v1"
    (v1 / "memory" / "job").mkdir(parents=True)
    (v1 / "memory" / "job" / "memory.limit_in_bytes").write_text(str(768 << 20))
    (v1 / "memory" / "job" / "memory.usage_in_bytes").write_text(str(300 << 20))
    (v1 / "memory" / "job" / "memory.stat").write_text(f"cache 1\ntotal_cache {100 << 20}\n")
    proc = tmp_path / "cgroup1"
    proc.write_text("9:memory:/job\n8:pids:/\n")
    assert cgroup_available(str(proc), str(v1)) == (768 - 300 + 100) << 20
    v2 = tmp_path / "v2"
    (v2 / "slice").mkdir(parents=True)
    (v2 / "slice" / "memory.max").write_text("max\n")
    proc.write_text("0::/slice\n")
    assert cgroup_available(str(proc), str(v2)) is None  # no limit
    (v2 / "slice" / "memory.max").write_text(str(1 << 30))
    (v2 / "slice" / "memory.current").write_text(str(1 << 29))
    (v2 / "slice" / "memory.stat").write_text("anon 5\nfile 0\n")
    assert cgroup_available(str(proc), str(v2)) == 1 << 29


# ---------------------------------------------------------------- commands that read data check it as `check` does


def _shape_folder(root: Path, size: int = 12) -> Path:
    from PIL import Image

    rng = np.random.default_rng(0)
    for split, count in (("train", 6), ("test", 2)):
        for cls in ("circle", "square"):
            (root / split / cls).mkdir(parents=True, exist_ok=True)
            for i in range(count):
                Image.fromarray(rng.integers(0, 256, (size, size, 3), dtype=np.uint8)).save(
                    root / split / cls / f"{i}.png")
    return root


def _image_spec(tmp_path: Path, augment: str, test: str = "pics/test") -> Path:
    _shape_folder(tmp_path / "pics")
    return _write(tmp_path, f"""model shapes {{
    input: [3, 12, 12]
    Flatten
    Linear(2)
}}
data {{
    train: image_folder("pics/train")
    test: image_folder("{test}")
    augment: [{augment}]
    batch_size: 4
}}
train {{ loss: CrossEntropyLoss; optimizer: Adam; epochs: 1 }}
""")


@pytest.mark.parametrize("augment,message,needs_data", [
    ("RandomRotation(-10)", "`degrees` given as one number must be >= 0", False),
    ("RandomResizedCrop(12, scale=(1.0, 0.5))", "`scale` must be [min, max] with min <= max", False),
    ("RandomErasing(scale=(0.5, 0.1))", "`scale` must be [min, max] with min <= max", False),
    ("RandomCrop(8), RandomCrop(10)", "crop size 10x10 is larger than the image (8x8)", False),
    ("RandomCrop(64)", "crop size 64x64 is larger than the image (12x12)", True),
    ("RandomCrop(8)", "augmentation makes training images [3, 8, 8]", True),
    ("RandomResizedCrop(8)", "augmentation makes training images [3, 8, 8]", True),
])
@pytest.mark.parametrize("command", ["check", "check --no-data", "train", "eject"])
def test_augmentation_errors_are_positioned_in_every_command(tmp_path, augment, message, needs_data, command):
    """`train` and `eject` ran without check's data pass: a negative angle was an internal error
    (exit 3), a crop to another size a matrix-shape crash in the first step."""
    if needs_data and command == "check --no-data":
        return  # these depend on the images' size, which --no-data does not read
    spec = _image_spec(tmp_path, augment)
    r = cli(*command.split(), str(spec), *(["--out", "run"] if command == "train" else []), cwd=tmp_path)
    assert r.returncode == 1, r.stdout + r.stderr
    column = 30 if augment.startswith("RandomCrop(8), ") else 15  # the op that is wrong
    assert f"h.net:9:{column}: error: {message}" in r.stderr, r.stderr
    assert "Traceback" not in r.stderr and "internal error" not in r.stderr
    assert not (tmp_path / "run").exists() and not list(tmp_path.glob("*.py"))


def test_train_reports_an_unknown_test_class_at_the_source(tmp_path):
    spec = _image_spec(tmp_path, "RandomHorizontalFlip()")
    (tmp_path / "pics" / "test" / "hexagon").mkdir()
    r = cli("train", str(spec), "--out", "run", cwd=tmp_path)
    assert r.returncode == 1
    assert "h.net:8:11: error: " in r.stderr, r.stderr
    assert "pics/test/hexagon: class `hexagon` is not one of the training classes" in r.stderr


def test_folder_mistakes_are_said(tmp_path):
    """The parent of train/ and test/ taken for the class folder; images in formats netspec does
    not read skipped without a word; each warning once although check and training both scan."""
    _shape_folder(tmp_path / "pics")
    from PIL import Image

    Image.new("RGB", (12, 12)).save(tmp_path / "pics" / "train" / "circle" / "x.gif")
    (tmp_path / "pics" / "train" / "circle" / "notes.txt").write_text("mine")
    spec = _write(tmp_path, """model shapes {
    input: [3, 12, 12]
    Flatten
    Linear(2)
}
data { train: image_folder("pics"); validation: 0.25; batch_size: 4 }
train { loss: CrossEntropyLoss; optimizer: Adam; epochs: 1 }
""")
    r = cli("train", str(spec), "--out", "run", "--quiet", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert r.stderr.count("the class folders are named test, train: is this the folder that holds the splits? "
                          f"Point `train:` at {tmp_path / 'pics' / 'train'}") == 1, r.stderr
    spec.write_text(spec.read_text().replace('"pics"', '"pics/train"'))
    r = cli("check", str(spec), cwd=tmp_path)
    assert r.returncode == 0
    assert "pics/train: 1 images in other formats ignored: 1 .gif" in r.stderr, r.stderr
    assert "notes.txt" not in r.stderr and ".txt" not in r.stderr


def test_predict_takes_a_folder_of_images(tmp_path):
    _shape_folder(tmp_path / "pics")
    spec = _image_spec(tmp_path, "RandomHorizontalFlip()")
    assert cli("train", str(spec), "--out", "run", "--quiet", cwd=tmp_path).returncode == 0
    r = cli("predict", "run", "pics/test", "--json", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    got = [row["input"] for row in json.loads(r.stdout.strip().splitlines()[-1])]
    assert got == [f"pics/test/{c}/{i}.png" for c in ("circle", "square") for i in range(2)]
    (tmp_path / "nothing").mkdir()
    r = cli("predict", "run", "nothing", cwd=tmp_path)
    assert r.returncode == 1 and "nothing: a folder without images" in r.stderr


# ---------------------------------------------------------------- train settings torch would refuse mid-run


def _prepared(tmp_path: Path, text: str):
    from netspec.data.prepare import prepare

    checked = netspec.load(str(_write(tmp_path, text)))
    return checked, prepare(checked)


@pytest.mark.parametrize("setting,message", [
    ("optimizer: SGD(lr=0.1, nesterov=true)", "SGD: torch refuses these arguments (Nesterov momentum requires"),
    ("optimizer: SGD(lr=0.1, momentum=0.9, dampening=0.5, nesterov=true)", "Nesterov momentum requires"),
    ("optimizer: Adam(fused=true, foreach=true)", "Adam: torch refuses these arguments"),
    ("optimizer: Adam(betas=(0.9, 0.999, 0.1))", "Adam: torch refuses these arguments (too many values"),
    ("optimizer: Rprop(etas=(2, 0.5))", "Rprop: torch refuses these arguments (Invalid eta values"),
    ("optimizer: RMSprop(alpha=-1)", "RMSprop: torch refuses these arguments (Invalid alpha value"),
    ("optimizer: SGD(lr=0.1); scheduler: OneCycleLR(max_lr=0.1, total_steps=5)",
     "OneCycleLR(total_steps=5) ends before the run: 3 epochs of 3 steps are 9 steps"),
    ('optimizer: SGD(lr=0.1); loss: MSELoss(reduction="none")', 'MSELoss(reduction="none") gives one loss per value'),
])
def test_argument_combinations_torch_refuses_are_spec_errors(tmp_path, setting, message):
    """Each argument passed its own check; together torch refused them inside the first step or
    at the first scheduler step past its end (exit 3). torch itself is asked before training."""
    from netspec.train.preflight import check_before_training

    text = REGRESSION.replace("optimizer: SGD(lr=0.1)", setting)
    if "loss: MSELoss(" in setting:
        text = text.replace("loss: MSELoss; ", "")
    checked, data = _prepared(tmp_path, text)
    with pytest.raises(NetspecError) as e:
        check_before_training(checked, data)
    d = e.value.diagnostics[0]
    assert message in d.message and d.span.line == 9, e.value.render()


def test_batches_of_one_under_batchnorm_are_refused_before_training(tmp_path):
    from netspec.train.preflight import check_before_training

    text = REGRESSION.replace("Linear(1)", "Linear(4)\n    BatchNorm1d\n    Linear(1)").replace("batch_size: 16",
                                                                                      "batch_size: 1")
    checked, data = _prepared(tmp_path, text)
    with pytest.raises(NetspecError, match="every batch would hold 1 sample"):
        check_before_training(checked, data)


def test_patience_counts_epochs_that_did_not_improve():
    """patience=0 stopped after the first epoch although it improved."""
    from netspec.ir import CallValue
    from netspec.train.preflight import patience_ran_out

    for patience, bad, stop in [(0, 0, False), (0, 1, True), (1, 0, False), (1, 1, True), (3, 2, False), (3, 3, True)]:
        assert patience_ran_out(bad, CallValue("EarlyStopping", (("patience", patience),))) is stop


def test_resume_refusals_leave_the_run_as_it_was(tmp_path):
    """OneCycleLR cannot be stretched over more epochs (it stepped past its end: exit 3, and the
    finished run lost its `finished` mark); a checkpoint whose tensors do not fit the model is
    named; writing out a default value is no change; --out naming a file says so."""
    spec = _write(tmp_path, REGRESSION.replace("optimizer: SGD(lr=0.1)",
                                               "optimizer: SGD(lr=0.1); scheduler: OneCycleLR(max_lr=0.1)"))
    assert cli("train", str(spec), "--out", "run", "--quiet", cwd=tmp_path).returncode == 0
    before = {p.name: p.read_bytes() for p in (tmp_path / "run").iterdir() if p.is_file()}
    r = cli("train", str(spec), "--out", "run", "--resume", "--set", "train.epochs=5", cwd=tmp_path)
    assert r.returncode == 1 and "OneCycleLR's one cycle spans the run's epochs (3)" in r.stderr, r.stderr
    assert {p.name: p.read_bytes() for p in (tmp_path / "run").iterdir() if p.is_file()} == before
    r = cli("train", str(spec), "--out", "run", "--resume", "--set", "train.epochs=5", "--set", "train.seed=0",
            "--set", "data.shuffle=true", "--set", "train.scheduler=none", "--quiet", cwd=tmp_path)
    assert r.returncode == 0 and "train.seed" not in r.stderr and "data.shuffle" not in r.stderr, r.stderr
    ckpt = torch.load(tmp_path / "run" / "checkpoint.pt", weights_only=True)
    key = next(k for k in ckpt["model"] if k.endswith(".weight"))
    for weights in (ckpt["model"], ckpt["best_weights"] or {}):
        weights[key] = torch.zeros(3, 3)
    ckpt.pop("digest"), ckpt.pop("model_digest")  # as a checkpoint from before digests (an edit is refused: test_untrusted_files)
    torch.save(ckpt, tmp_path / "run" / "checkpoint.pt")
    r = cli("train", str(spec), "--out", "run", "--resume", "--set", "train.epochs=7", "--set",
            "train.scheduler=none", cwd=tmp_path)
    assert r.returncode == 1 and f"do not fit this model: {key}: [3, 3] in the file, [1, 1] in the model" in r.stderr
    (tmp_path / "afile").write_text("mine")
    r = cli("train", str(spec), "--out", "afile", "--resume", cwd=tmp_path)
    assert r.returncode == 1 and "afile is a file, not a run folder" in r.stderr
    assert (tmp_path / "afile").read_text() == "mine"


@pytest.mark.parametrize("args,code,message", [
    (["--nproc", "1", "--nnodes", "2", "--node-rank", "5"], 2, "5 is not below --nnodes 2"),
    (["--node-rank", "1"], 2, "give --nproc"),
    (["--device", 'c" + "pu'], 2, "is not a device"),
    (["--nproc", "2", "--device", "cuda"], 1, "CUDA is not available"),
])
def test_launcher_options_are_checked_before_launching(tmp_path, args, code, message):
    """--node-rank beyond --nnodes hung for ever; --device was pasted into an expression; --nproc
    with an absent device crashed in every process."""
    if "cuda" in args and torch.cuda.is_available():
        pytest.skip("CUDA is present")
    spec = _write(tmp_path, REGRESSION)
    r = cli("train", str(spec), "--out", "run", *args, cwd=tmp_path, timeout=60)
    assert r.returncode == code and message in r.stderr, r.stderr
    assert "Traceback" not in r.stderr and not (tmp_path / "run").exists()


def test_subset_beyond_the_data_and_a_contrary_mode_warn(tmp_path):
    text = REGRESSION.replace("batch_size: 16", "batch_size: 16\n       subset: 1000").replace(
        "metrics: [mse]", 'metrics: [mse]; early_stopping: EarlyStopping(monitor="val_loss", mode="max")')
    checked, data = _prepared(tmp_path, text)
    assert any("asks for more samples than the training source holds (64)" in w.message for w in data.warnings)
    assert any('`mode="max"` treats a higher `val_loss` as better' in w.message for w in checked.warnings)
