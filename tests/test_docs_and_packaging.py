"""Docs generated from the catalogue are fresh; the wheel ships the grammar and works
outside the source tree."""

from __future__ import annotations

import os
import subprocess
import sys
import sysconfig

from netspec import catalogue as cat
from netspec.tools.docs import DOC, updated
from tests.conftest import EXAMPLES, ROOT


def test_generated_docs_are_fresh():
    text = DOC.read_text()
    assert updated(text) == text, "docs/language.md is stale: run python -m netspec.tools.docs"
    for name in cat.LAYERS:
        assert f"`{name}`" in text


def test_readme_names_the_two_commands():
    readme = (ROOT / "README.md").read_text()
    assert "make demo" in readme and "make test" in readme
    ci = (ROOT / ".ci" / "run").read_text()
    assert "make test" in ci


def test_wheel_ships_grammar_and_checks_outside_tree(tmp_path):
    dist = tmp_path / "dist"
    r = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-w", str(dist),
                        str(ROOT)], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr[-2000:]
    wheel = next(dist.glob("netspec-*.whl"))
    import zipfile

    names = zipfile.ZipFile(wheel).namelist()
    assert "netspec/grammar/netspec.lark" in names and "netspec/syntax/parse_tables.py" in names
    for example in ("mnist.net", "mnist_mlp.net", "fashion_mnist.net", "linear_regression.net", "sine_poly.net",
                    "zoo/resnet18.net", "digits/7.png"):
        assert f"netspec/examples/{example}" in names, example
    target = tmp_path / "site"
    r = subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps", "--target", str(target), str(wheel)],
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr[-2000:]
    work = tmp_path / "elsewhere"
    work.mkdir()
    spec = work / "mlp.net"
    spec.write_text((EXAMPLES / "mnist_mlp.net").read_text())
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(target), sysconfig.get_paths()["purelib"]])}
    code = ("import netspec, sys; from netspec.cli import main; "
            f"assert netspec.__file__.startswith({str(target)!r}), netspec.__file__; "
            "sys.argv = ['netspec', 'check', 'mlp.net']; main()")
    r = subprocess.run([sys.executable, "-S", "-c", code], cwd=work, env=env, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert "ok: model `mnist_mlp`" in r.stdout
    empty = tmp_path / "empty"
    empty.mkdir()
    code = "import sys; from netspec.cli import main; sys.argv = ['netspec', 'check', '--no-data', 'mnist.net']; main()"
    r = subprocess.run([sys.executable, "-S", "-c", code], cwd=empty, env=env, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert f"using the packaged example {target}" in r.stderr and "ok: model `mnist_cnn`" in r.stdout
