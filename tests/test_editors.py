"""editors/: the highlighting grammar against the catalogue, and the editor set-ups (VS Code
extension, Neovim, Helix) against the command that starts the server."""

from __future__ import annotations

import json
import re

import pytest

from netspec import catalogue as cat
from netspec.tools.lsp.highlight import GRAMMAR_FILE, SCOPES, grammar_text
from tests.conftest import ROOT

EDITORS = ROOT / "editors"
tomllib = pytest.importorskip("tomllib")  # Python 3.11+


def grammar() -> dict:
    return json.loads((ROOT / GRAMMAR_FILE).read_text())


def tokenize(line: str, patterns: list[dict]) -> list[tuple[str, str]]:
    """(text, scope) tokens of one line, as a TextMate engine picks them: at each point the
    pattern matching earliest wins, ties going to the first listed; a begin/end pattern covers
    up to its end. The patterns use only syntax that Python's `re` and Oniguruma read alike."""
    out: list[tuple[str, str]] = []
    compiled = [(p, re.compile(p.get("match") or p["begin"])) for p in patterns]
    i = 0
    while i < len(line):
        best = None
        for p, rx in compiled:
            m = rx.search(line, i)
            if m and (best is None or m.start() < best[1].start()):
                best = (p, m)
        if best is None:
            break
        p, m = best
        end = m.end()
        if "begin" in p:
            e = re.compile(p["end"]).search(line, m.end())
            end = e.end() if e else len(line)
            out.append((line[m.start():end], p["name"]))
        elif "captures" in p:
            for group, cap in p["captures"].items():
                if m.group(int(group)) is not None:
                    out.append((m.group(int(group)), cap["name"]))
        else:
            out.append((m.group(), p["name"]))
        i = max(end, i + 1)
    return out


def scope_of(word: str, line: str) -> str | None:
    for text, scope in tokenize(line, grammar()["patterns"]):
        if text == word:
            return scope
    return None


def test_grammar_is_generated_from_the_catalogue():
    assert (ROOT / GRAMMAR_FILE).read_text() == grammar_text(), \
        "run `python -m netspec.tools.lsp.highlight` to regenerate editors/vscode/syntaxes/netspec.tmLanguage.json"


@pytest.mark.parametrize("kind", list(cat.ALL_KINDS))
def test_every_catalogue_name_is_highlighted_with_its_kind(kind):
    table = cat.ALL_KINDS[kind]
    assert table
    for name in table:
        line = f"    x: {name}(1)" if kind != "branch construct" else f"    {name} {{ Identity; Identity }}"
        assert scope_of(name, line) == SCOPES[kind], (kind, name)


def test_highlighting_of_a_real_spec():
    lines = (ROOT / "examples" / "mnist.net").read_text().splitlines()
    pats = grammar()["patterns"]
    assert tokenize(lines[0], pats) == [(lines[0], "comment.line.number-sign.netspec")]
    assert ("conv_block", "entity.name.type.netspec") in tokenize("block conv_block(c) {", pats)
    assert ("Linear", "support.class.layer.netspec") in tokenize("    fc1: Linear(128)  # Conv2d", pats)
    assert ("Conv2d", "support.class.layer.netspec") not in tokenize("    fc1: Linear(128)  # Conv2d", pats)
    toks = tokenize('    train: mnist(split="train")', pats)
    assert ("train", "variable.other.property.netspec") in toks
    assert ("mnist", "support.function.source.netspec") in toks
    assert ('"train"', "string.quoted.double.netspec") in toks
    assert ("data", "keyword.other.section.netspec") in tokenize("data {", pats)
    assert ("1e-3", "constant.numeric.netspec") in tokenize("    optimizer: Adam(lr=1e-3)", pats)
    assert ("Linaer", "support.class.layer.netspec") not in tokenize("    Linaer(10)", pats)  # unknown: plain


def test_vscode_extension_starts_the_server():
    pkg = json.loads((EDITORS / "vscode" / "package.json").read_text())
    lang = pkg["contributes"]["languages"][0]
    assert lang["id"] == "netspec" and ".net" in lang["extensions"]
    (g,) = pkg["contributes"]["grammars"]
    assert (EDITORS / "vscode" / g["path"]).resolve() == (ROOT / GRAMMAR_FILE).resolve()
    assert g["scopeName"] == grammar()["scopeName"]
    assert (EDITORS / "vscode" / lang["configuration"]).exists()
    props = pkg["contributes"]["configuration"]["properties"]
    assert props["netspec.server.command"]["default"] == "netspec"
    assert props["netspec.server.args"]["default"] == ["lsp"]
    js = (EDITORS / "vscode" / pkg["main"]).read_text()
    assert "vscode-languageclient/node" in js and "TransportKind.stdio" in js
    assert "vscode-languageclient" in pkg["dependencies"]
    json.loads((EDITORS / "vscode" / "language-configuration.json").read_text())


def test_neovim_and_helix_start_the_server():
    lua = (EDITORS / "neovim" / "netspec.lua").read_text()
    assert 'cmd = { "netspec", "lsp" }' in lua and "vim.lsp.start" in lua and "net = \"netspec\"" in lua
    conf = tomllib.loads((EDITORS / "helix" / "languages.toml").read_text())
    assert conf["language-server"]["netspec"] == {"command": "netspec", "args": ["lsp"]}
    (lang,) = conf["language"]
    assert lang["file-types"] == ["net"] and lang["language-servers"] == ["netspec"]


def test_the_server_accepts_what_the_editors_pass():
    """`netspec lsp --stdio` (what vscode-languageclient adds) is accepted; --help says so."""
    from click.testing import CliRunner

    from netspec.cli import main

    r = CliRunner().invoke(main, ["lsp", "--help"])
    assert r.exit_code == 0 and "--stdio" in r.output and "--debounce-ms" in r.output
