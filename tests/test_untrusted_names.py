"""Names and text from outside (file and folder names that are not UTF-8, control and bidi
characters, line separators in strings, links where an output goes, paths that climb out of
the examples): stored losslessly, printed safely, never an internal error. Issue 19,
"hostile inputs", first part; the files themselves are test_untrusted_files.py's."""

from __future__ import annotations

import os
import py_compile
import subprocess
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from netspec.cli import main
from netspec.errors import printable
from tests.conftest import netspec_cmd

runner = CliRunner()
LATIN1 = os.fsdecode(b"caf\xe9")  # a Latin-1 name from an old archive, as Python holds it: 'caf\udce9'


def cli(*args: str, cwd: Path, timeout: int = 180) -> subprocess.CompletedProcess:
    env = {**os.environ, "XDG_CACHE_HOME": str(cwd / "cache")}
    return subprocess.run([*netspec_cmd(), *args], capture_output=True, text=True, cwd=cwd, timeout=timeout, env=env,
                          errors="surrogateescape")


def image_folder(root: Path, classes: tuple[str, ...], per_class: int = 6) -> None:
    from PIL import Image

    for k, name in enumerate(classes):
        (root / name).mkdir(parents=True)
        for i in range(per_class):
            pixels = np.random.default_rng(10 * k + i).integers(0, 255, (8, 8), dtype=np.uint8) // (k + 1)
            Image.fromarray(pixels).save(root / name / f"{i}.png")


FOLDER_SPEC = """model tiny {
    input: [1, 8, 8]
    Flatten
    Linear(2)
}
data { train: image_folder("imgs"); validation: 0.25; batch_size: 4 }
train { loss: CrossEntropyLoss; optimizer: SGD(lr=0.1); epochs: 1; metrics: [accuracy] }
"""


@pytest.mark.slow
def test_names_that_are_not_utf8_train_resume_and_eject(tmp_path):
    """A Latin-1 class folder, spec file, folder and run folder: every text output keeps the
    bytes, the terminal shows them escaped, --resume and eject work, the program runs."""
    home = tmp_path / os.fsdecode(b"d\xe9p\xf4t")
    image_folder(home / "imgs", (LATIN1, "plain"))
    spec = home / os.fsdecode(b"mod\xe8le.net")
    spec.write_text(FOLDER_SPEC)
    run = os.fsdecode(b"r\xe9sultat")
    r = cli("train", spec.name, "--out", run, cwd=home)
    assert r.returncode == 0, r.stderr
    assert "r\\xe9sultat/" in r.stdout and "\udce9" not in r.stdout + r.stderr
    out = home / run
    assert b"caf\xe9" in (out / "confusion.csv").read_bytes() and b"caf\xe9" in (out / "summary.txt").read_bytes()
    assert b"d\xe9p\xf4t" in (out / "spec.net").read_bytes()  # the resolved data path, byte for byte
    r = cli("train", spec.name, "--out", run, "--resume", "--set", "train.epochs=2", cwd=home)
    assert r.returncode == 0 and "epoch 2/2" in r.stdout, r.stderr
    r = cli("summary", run, cwd=home)  # the run folder's spec.net, with its Latin-1 path, reads back
    assert r.returncode == 0, r.stderr
    model = os.fsdecode(b"mod\xe8le.onnx")
    r = cli("export", run, "-o", model, cwd=home)  # torch's and onnxruntime's C++ take UTF-8 paths only
    assert r.returncode == 0 and "exported mod\\xe8le.onnx" in r.stdout, r.stderr
    r = cli("predict", model, "imgs", cwd=home)
    assert r.returncode == 0 and "imgs/caf\\xe9/0.png: " in r.stdout and "caf\\xe9 (" in r.stdout, r.stderr
    r = cli("eject", spec.name, "-o", "t.py", cwd=home)
    assert r.returncode == 0, r.stderr
    py_compile.compile(str(home / "t.py"), doraise=True)  # UTF-8 source: the names are escapes in it


def test_a_byte_that_is_not_utf8_outside_strings_is_positioned(tmp_path):
    (tmp_path / "m.net").write_bytes(b"# caf\xe9 is fine in a comment\nmodel m\xe9 {\n input: [4]\n Linear(2)\n}\n")
    r = runner.invoke(main, ["check", str(tmp_path / "m.net")])
    assert r.exit_code == 1 and ":2:8: error: syntax error: byte 0xE9 is not UTF-8 text" in r.output, r.output
    assert "model m\\xe9 {" in r.output


@pytest.mark.parametrize("separator", ["\u2028", "\u2029", "\r", "\x0b", "\x0c", "\x85", "\x1c"])
def test_a_line_separator_inside_a_string_does_not_shift_the_quoted_line(tmp_path, separator):
    text = f'let a = "x{separator}y"  # {separator}\nmodel m {{\n    input: [4]\n    Linaer(2)\n}}\n'
    (tmp_path / "m.net").write_text(text, encoding="utf-8", newline="")
    r = runner.invoke(main, ["check", str(tmp_path / "m.net")])
    assert r.exit_code == 1
    lines = r.output.splitlines()
    head = next(i for i, line in enumerate(lines) if ":4:5: error: unknown layer `Linaer`" in line)
    assert lines[head + 1] == " 4 |     Linaer(2)" and lines[head + 2] == "   |     ^^^^^^", r.output


def test_a_file_with_carriage_returns_alone_for_line_ends_is_told_why_it_is_one_line(tmp_path):
    (tmp_path / "m.net").write_bytes(b"model m {\r    input: [4]\r    Linear(2)\r}\r")
    r = runner.invoke(main, ["check", str(tmp_path / "m.net")])
    assert r.exit_code == 1 and ":1:" in r.output and "\\r    input" in r.output, r.output  # one line, as lexed
    assert "help: this line holds a carriage return that ends no line" in r.output, r.output
    (tmp_path / "m.net").write_bytes(b"model m {\r\n    input: [4]\r\n    Linear(2)\r\n}\r\n")  # CRLF: fine
    assert runner.invoke(main, ["check", str(tmp_path / "m.net")]).exit_code == 0


def test_control_and_bidi_characters_are_escaped_and_the_caret_follows(tmp_path):
    (tmp_path / "m.net").write_text('model m {\n    input: [4]\n    Linear("\x1b[2K\u202eok", 2)\n}\n')
    r = runner.invoke(main, ["check", str(tmp_path / "m.net")])
    assert r.exit_code == 1 and "\x1b" not in r.output and "\u202e" not in r.output
    quoted = next(line for line in r.output.splitlines() if line.startswith(" 3 |"))
    caret = r.output.splitlines()[r.output.splitlines().index(quoted) + 1]
    assert quoted == ' 3 |     Linear("\\x1b[2K\\u202eok", 2)'
    assert caret.index("^") == quoted.index('"'), r.output  # under the string, escapes counted


def test_printable():
    assert printable("a\x1b[2K\rb\u202ec\u2066d\x9b\x7f") == "a\\x1b[2K\\rb\\u202ec\\u2066d\\x9b\\x7f"
    assert printable(f"{LATIN1}\tx\ny") == "caf\\xe9\tx\ny"
    assert printable("a\nb\tc", newlines=False) == "a\\nb\\tc"
    assert printable("résumé 模型 👩\u200d💻") == "résumé 模型 👩\u200d💻"  # what is only unusual stays


def test_folder_names_with_escapes_are_shown_escaped(tmp_path):
    image_folder(tmp_path / "imgs", ("plain",))
    (tmp_path / "imgs" / "\x1b[2Kempty").mkdir()
    (tmp_path / "m.net").write_text(FOLDER_SPEC)
    r = cli("data", "m.net", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert "\x1b" not in r.stdout + r.stderr and "\\x1b[2Kempty" in r.stdout + r.stderr


def test_eject_and_new_print_commands_that_can_be_pasted(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "m.net").write_text("model m {\n input: [1]\n Linear(1)\n}\n"
                                    "data { train: table(x=linspace(0, 1, 8), y=x) }\ntrain { loss: MSELoss }\n")
    r = runner.invoke(main, ["eject", "m.net", "-o", "my run; rm -rf x.py"])
    assert r.exit_code == 0 and "run it with: python 'my run; rm -rf x.py'" in r.output, r.output
    assert "    python 'my run; rm -rf x.py' --epochs 1" in (tmp_path / "my run; rm -rf x.py").read_text()
    r = runner.invoke(main, ["new", "mnist", "-o", "a b.net"])
    assert r.exit_code == 0 and "next: netspec check 'a b.net'" in r.output
    r = runner.invoke(main, ["new", "mine", "-o", "two\nmodel x {.net"])  # the template names its file in a comment
    assert r.exit_code == 0 and "`netspec check 'two\\nmodel x {.net'`" in (tmp_path / "two\nmodel x {.net").read_text()
    r = runner.invoke(main, ["check", "two\nmodel x {.net"])  # the template's one error: its data.csv is to write
    assert r.output.count("error:") == 1 and "error: data.csv: no such file" in r.output, r.output


def test_fifos_devices_and_broken_links_in_class_folders_are_said_once(tmp_path, capsys):
    from netspec.data.images import scan_folder
    from tests.conftest import say

    image_folder(tmp_path / "imgs", ("a", "b"))
    os.mkfifo(tmp_path / "imgs" / "a" / "fifo.png")
    os.symlink("/dev/null", tmp_path / "imgs" / "b" / "null.png")
    os.symlink(tmp_path / "nowhere.png", tmp_path / "imgs" / "b" / "gone.png")
    os.mkfifo(tmp_path / "imgs" / "pipe")  # beside the class folders
    for _ in range(2):
        index = say(scan_folder(tmp_path / "imgs"))
    assert len(index.files) == 12
    err = capsys.readouterr().err
    assert err.count("neither files nor folders") == 1, err
    assert "skipped 4 entries that are neither files nor folders (" in err
    assert "2 FIFOs" in err and "1 device" in err and "1 broken link" in err and "a/fifo.png" in err


def test_predict_says_the_fifo_in_its_folder_by_kind_and_never_opens_it(tmp_path):
    from netspec.deploy.predict import expand_folder

    image_folder(tmp_path / "imgs", ("a",), per_class=2)
    os.mkfifo(tmp_path / "imgs" / "a" / "p.png")  # opening it would block for ever
    said: list[str] = []
    found = expand_folder(tmp_path / "imgs", said.append)
    assert [p.name for p in found] == ["0.png", "1.png"]
    assert said == [f"{tmp_path / 'imgs'}: skipped 1 entry that is neither a file nor a folder (1 FIFO): a/p.png"]


# ---------------------------------------------------------------- -o onto a symbolic link: one rule


LINK_SPEC = ("model m {\n input: [1]\n Linear(1)\n}\n"
             "data { train: table(x=linspace(0, 1, 16), y=2 * x); batch_size: 8 }\n"
             "train { loss: MSELoss; optimizer: SGD(lr=0.1); epochs: 1 }\n")


@pytest.mark.slow
@pytest.mark.parametrize("command,suffix", [("diagram", ".svg"), ("eject", ".py"), ("export", ".onnx"),
                                            ("preview", ".png")])
def test_every_output_follows_a_link_to_its_own_file_and_refuses_a_dangling_one(tmp_path, monkeypatch, command,
                                                                                 suffix):
    """The rule (outputs.py): a link is followed; what it points to must be a file the command
    may replace (its own output); the link stays. A link pointing nowhere is refused."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    spec = "m.net"
    if command == "preview":
        image_folder(tmp_path / "imgs", ("a", "b"))
        Path(spec).write_text(FOLDER_SPEC)
    else:
        Path(spec).write_text(LINK_SPEC)
    if command == "export":
        assert runner.invoke(main, ["train", spec, "--out", "run", "--quiet"]).exit_code == 0
        spec = "run"

    def write(output: str):
        args = {"preview": ["data", spec, "--preview", "-o", output]}.get(command, [command, spec, "-o", output])
        return runner.invoke(main, args)

    r = write(f"real{suffix}")
    assert r.exit_code == 0, r.output
    os.symlink(f"real{suffix}", f"link{suffix}")
    before = Path(f"real{suffix}").stat().st_mtime_ns
    os.utime(f"real{suffix}", ns=(before - 10**9, before - 10**9))
    r = write(f"link{suffix}")
    assert r.exit_code == 0, r.output
    assert os.path.islink(f"link{suffix}") and Path(f"real{suffix}").stat().st_mtime_ns != before - 10**9
    os.symlink(f"elsewhere{suffix}", f"dangling{suffix}")
    r = write(f"dangling{suffix}")
    assert r.exit_code == 1 and f"dangling{suffix}: a symbolic link to elsewhere{suffix}, which does not exist" \
        in r.output, r.output
    assert not os.path.lexists(f"elsewhere{suffix}")
    Path(f"mine{suffix}").write_bytes(b"the user's own file\n")
    os.symlink(f"mine{suffix}", f"to_mine{suffix}")
    r = write(f"to_mine{suffix}")
    assert r.exit_code == 1 and Path(f"mine{suffix}").read_bytes() == b"the user's own file\n", r.output


def test_new_writes_through_no_link(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    os.symlink("elsewhere.net", "dangling.net")
    r = runner.invoke(main, ["new", "mine", "-o", "dangling.net"])
    assert r.exit_code == 1 and "dangling.net already exists" in r.output and not os.path.lexists("elsewhere.net")


# ---------------------------------------------------------------- packaged examples by name only


@pytest.mark.parametrize("path", ["examples/../../x/mnist.net", "zoo/../../mnist.net", "elsewhere/zoo/mnist.net",
                                  "examples/zoo/mnist.net", "examples/x/../mnist.net", "zoo/../mnist.net"])
def test_a_path_that_does_not_exist_is_never_a_packaged_example(tmp_path, path):
    r = subprocess.run([*netspec_cmd(), "check", path], capture_output=True, text=True, cwd=tmp_path, timeout=60)
    assert r.returncode == 1 and f"{path}: no such file" in r.stderr and "packaged" not in r.stderr, r.stderr


@pytest.mark.parametrize("path", ["mnist.net", "mnist", "examples/mnist.net", "zoo/resnet18.net",
                                  "examples/zoo/resnet18.net", "./examples/mnist.net"])
def test_a_name_in_the_examples_tree_is_the_packaged_example(tmp_path, path):
    from netspec.tools.packaged import examples_dir, resolve_spec

    found = resolve_spec(path)
    assert Path(found).is_file() and Path(found).resolve().is_relative_to(examples_dir()), found
    assert Path(found).name == Path(path).name.removesuffix(".net") + ".net"
