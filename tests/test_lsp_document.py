"""The language server's analysis of a document, without a client: the checker's context
says what `check` says; a document in any broken state is analysed without an exception and
every feature answers at any position. (tests/test_lsp.py drives the real server.)"""

from __future__ import annotations

import random

import pytest

pytest.importorskip("pygls")

from pygls.workspace.position_codec import PositionCodec  # noqa: E402

import netspec  # noqa: E402
from netspec.checker import check_context  # noqa: E402
from netspec.errors import NetspecError  # noqa: E402
from netspec.syntax.parser import MAX_SPEC_BYTES  # noqa: E402
from netspec.tools.lsp import features  # noqa: E402
from netspec.tools.lsp.completion import complete  # noqa: E402
from netspec.tools.lsp.document import analyse  # noqa: E402
from tests.conftest import EXAMPLES, FIXTURES  # noqa: E402


def _parses(path) -> bool:
    try:
        netspec.parse(path.read_text(), str(path))
    except NetspecError:
        return False
    return True


# the invalid fixtures that get as far as the checker (a third of them: they are many)
CHECKED_INVALID = [p for p in sorted((FIXTURES / "invalid").glob("*.net")) if _parses(p)][::3]


@pytest.mark.parametrize("path", CHECKED_INVALID, ids=lambda p: p.name)
def test_check_context_says_what_check_says(path):
    """`check_context` hands back the diagnostics `check` raises, in the same order."""
    spec = netspec.parse(path.read_text(), str(path))
    try:
        netspec.check(spec)
        expected = []
    except NetspecError as e:
        expected = e.diagnostics
    ctx = check_context(spec)
    assert ctx.diags + (ctx.warnings if ctx.diags else []) == expected


def test_partial_model_keeps_layers_before_an_error():
    text = "model m {\n    input: [1, 28, 28]\n    c: Conv2d(8, 3)\n    Flatten\n    fc: Lineer(10)\n    ReLU\n}\n"
    a = analyse(text, "m.net")
    assert [d.message for d in a.diagnostics] == ["unknown layer `Lineer`"]
    assert "`[1, 28, 28]` → `[8, 26, 26]`" in features.hover(a, 3, 9)
    assert "`[8, 26, 26]` → `[5408]`" in features.hover(a, 4, 6)
    assert "shape unknown" in features.hover(a, 6, 6)


def _every_feature(a, positions):
    coords = features.Coords(a.lines, PositionCodec())
    features.lsp_diagnostics(a, coords)
    features.symbols(a, coords)
    features.inlay_hints(a, coords, 1, len(a.lines))
    features.formatting(a, coords)
    for line, col in positions:
        features.hover(a, line, col)
        features.definition(a, line, col)
        complete(a, line, col)


@pytest.mark.parametrize("name", ["mnist.net", "fashion_resnet.net", "sequence_sum.net", "zoo/unet.net"])
def test_truncated_and_mangled_documents_never_raise(name, tmp_path):
    """Every feature on prefixes and line-dropped versions of real specs: no exception, and the
    first diagnostic is the one `check` gives."""
    text = (EXAMPLES / name).read_text()
    rng = random.Random(name)
    variants = [text[:k] for k in sorted(rng.sample(range(1, len(text)), 6))]
    lines = text.split("\n")
    for _ in range(3):
        drop = rng.randrange(len(lines))
        variants.append("\n".join(lines[:drop] + lines[drop + 1:]))
    for i, v in enumerate(variants):
        path = tmp_path / f"v{i}.net"
        path.write_text(v)
        a = analyse(v, str(path))
        try:
            netspec.check(netspec.parse(v, str(path)))
            expected = []
        except NetspecError as e:
            expected = e.diagnostics
        if expected:
            assert a.diagnostics[0] == expected[0]
        n = len(a.lines)
        _every_feature(a, [(rng.randint(1, n), rng.randint(1, 40)) for _ in range(25)])


def test_recovery_reports_the_rest_of_the_file():
    text = "model m {\n    input: [4]\n    fc: Linear(\n    bad: Nope(3)\n    Linear(2)\n}\n"
    a = analyse(text, "r.net")
    assert a.diagnostics[0].message.startswith("syntax error")
    assert a.blanked == {3}
    assert any(d.message == "unknown layer `Nope`" for d in a.diagnostics[1:])
    # an unclosed model at the end of the file: the brackets are closed, the layers checked
    a = analyse("model m {\n    input: [4]\n    Linear(2)\n    Conv2d(3, 3)\n", "r.net")
    assert a.diagnostics[0].message == "syntax error: unexpected end of file"
    assert any("Conv2d expects" in d.message for d in a.diagnostics[1:])


def test_crlf_documents_read_as_lf_ones():
    text = (EXAMPLES / "mnist.net").read_text().replace("Flatten", "Flaten").replace("Linear(128)", "Linear(1, x=2)")
    lf, crlf = analyse(text, "m.net"), analyse(text.replace("\n", "\r\n"), "m.net")
    assert len(lf.diagnostics) == 2 and lf.diagnostics == crlf.diagnostics
    coords = features.Coords(crlf.lines, PositionCodec())
    assert [h.label for h in features.inlay_hints(crlf, coords, 1, 40)] == \
        [h.label for h in features.inlay_hints(lf, features.Coords(lf.lines, PositionCodec()), 1, 40)]
    assert "`[1, 28, 28]` → `[32, 14, 14]`" in features.hover(crlf, 12, 13)


def test_hostile_documents_are_bounded():
    huge = "# " + "x" * (MAX_SPEC_BYTES + 10) + "\n"
    a = analyse(huge, "huge.net")
    assert len(a.diagnostics) == 1 and "larger than 16 MiB" in a.diagnostics[0].message
    a = analyse("model m {\0}", "nul.net")
    assert "NUL" in a.diagnostics[0].message
    a = analyse("model m {\n    input: [4]\n    repeat 1000000000 { repeat 1000000000 { Linear(4) } }\n}\n", "r.net")
    assert "more than 20,000 layers" in a.diagnostics[0].message
