"""Fixture files: invalid specs state their expected errors in their first lines
(`# error: LINE:COL message`, optional `# help: text`); valid specs and the examples have
golden IR dumps (regenerate with `python tests/test_fixtures.py --update`)."""

from __future__ import annotations

import os
import re
import sys
from pathlib import Path

import pytest

import netspec
from netspec import ir
from netspec.errors import NetspecError
from netspec.syntax.format import format_text

HERE = Path(__file__).resolve().parent
INVALID = sorted((HERE / "fixtures" / "invalid").glob("*.net"))
VALID = sorted((HERE / "fixtures" / "valid").glob("*.net")) + sorted((HERE.parent / "examples").glob("*.net"))
GOLDEN = HERE / "fixtures" / "golden"
EXPECT = re.compile(r"#\s*error:\s*(?:(\S+\.net):)?(\d+):(\d+)\s+(.*)")


def expectations(path: Path) -> tuple[list[tuple[str | None, int, int, str]], list[str]]:
    errors, helps = [], []
    for line in path.read_text().splitlines():
        m = EXPECT.match(line)
        if m:
            errors.append((m.group(1), int(m.group(2)), int(m.group(3)), m.group(4).strip()))
        elif line.startswith("# help:"):
            helps.append(line.removeprefix("# help:").strip())
        elif not line.startswith("#"):
            break
    return errors, helps


@pytest.mark.parametrize("path", INVALID, ids=[p.stem for p in INVALID])
def test_invalid_fixture_reports_expected_errors(path: Path):
    errors, helps = expectations(path)
    assert errors, f"{path.name} states no expected error"
    with pytest.raises(NetspecError) as info:
        netspec.load(str(path))
    got = [d for d in info.value.diagnostics if d.severity == "error"]
    assert len(got) == len(errors), info.value.render()
    for (file, line, col, message), d in zip(errors, got):
        expected_file = file or path.name
        assert os.path.basename(d.span.file) == expected_file
        assert (d.span.line, d.span.column) == (line, col), info.value.render()
        assert message in d.message
    for h in helps:
        assert any(d.help and h in d.help for d in got), info.value.render()
    rendered = info.value.render()
    assert "Traceback" not in rendered
    first = got[0]
    assert f":{first.span.line}:{first.span.column}: error:" in rendered
    assert "^" in rendered


def golden_text(path: Path) -> str:
    spec = netspec.parse_file(str(path))
    checked = netspec.check(spec)
    return ir.dump(spec).replace(str(path), path.name) + "\n---\n" + ir.dump(checked.model) + "\n"


@pytest.mark.parametrize("path", VALID, ids=[p.stem for p in VALID])
def test_valid_fixture_matches_golden_ir(path: Path):
    golden = GOLDEN / (path.stem + ".ir")
    assert golden.exists(), f"missing {golden}; run python tests/test_fixtures.py --update"
    assert golden_text(path) == golden.read_text()


@pytest.mark.parametrize("path", VALID + INVALID, ids=[p.stem for p in VALID + INVALID])
def test_fmt_is_idempotent_and_keeps_ir(path: Path):
    text = path.read_text()
    try:
        original = netspec.parse(text, "x.net")
    except NetspecError:
        return  # syntax-error fixtures cannot be formatted
    once = format_text(text, "x.net")
    assert format_text(once, "x.net") == once
    assert netspec.parse(once, "x.net") == original
    comments = [line.split("#", 1)[1].strip() for line in text.splitlines() if "#" in line and '"' not in line]
    for c in comments:
        assert c in once


def test_examples_are_formatted():
    for path in sorted((HERE.parent / "examples").glob("*.net")):
        assert format_text(path.read_text(), str(path)) == path.read_text(), f"netspec fmt {path}"


if __name__ == "__main__" and "--update" in sys.argv:
    GOLDEN.mkdir(parents=True, exist_ok=True)
    for p in VALID:
        (GOLDEN / (p.stem + ".ir")).write_text(golden_text(p))
        print("wrote", p.stem)
