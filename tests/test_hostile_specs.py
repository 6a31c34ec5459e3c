"""Hostile spec text: repeated and diamond imports, shadowed definitions, a byte-order
mark, non-ASCII and invisible characters, unclosed brackets, long flat expressions.
Each error is positioned (file:line:col, the line, a caret) and none is a traceback."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

import netspec
from netspec.errors import NetspecError, with_article
from netspec.syntax.parser import MAX_CHAIN, MAX_EXPR_NESTING, describe_char, open_brackets, parse, parse_value

MODEL = "model m {\n    input: [4]\n    Linear(2)\n}\n"


def write(tmp_path: Path, files: dict[str, str]) -> None:
    for name, text in files.items():
        p = tmp_path / name
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(text, encoding="utf-8")


def load_error(path: Path) -> NetspecError:
    with pytest.raises(NetspecError) as info:
        netspec.load(str(path))
    return info.value


def syntax_error(text: str, file: str = "h.net") -> NetspecError:
    with pytest.raises(NetspecError) as info:
        parse(text, file)
    return info.value


def cli(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    r = subprocess.run([sys.executable, "-m", "netspec", *args], capture_output=True, text=True, cwd=cwd,
                       timeout=120)
    assert r.returncode in (0, 1), r.stderr
    assert "Traceback" not in r.stderr + r.stdout
    return r


# ---------------------------------------------------------------- imports


LIB = "block shared { ReLU }\nlet k = 3\n"


def test_diamond_import_counts_once(tmp_path):
    write(tmp_path, {"lib.net": LIB, "d2/lib2.net": 'import "../lib.net"\nblock other { ReLU }\n',
                     "main.net": 'import "lib.net"\nimport "d2/lib2.net"\n'
                                 "model m { input: [4]; Linear(k); shared; other }\n"})
    checked = netspec.load(str(tmp_path / "main.net"))
    assert list(checked.model.output_shape) == [3]


def test_same_import_twice_counts_once(tmp_path):
    write(tmp_path, {"lib.net": LIB,
                     "main.net": 'import "lib.net"\nimport "./lib.net"\nmodel m { input: [4]; Linear(k); shared }\n'})
    netspec.load(str(tmp_path / "main.net"))
    r = cli("check", "main.net", cwd=tmp_path)
    assert r.returncode == 0, r.stderr


def test_import_through_symlink_counts_once(tmp_path):
    write(tmp_path, {"lib.net": LIB,
                     "main.net": 'import "lib.net"\nimport "alias.net"\nmodel m { input: [4]; Linear(k); shared }\n'})
    (tmp_path / "alias.net").symlink_to(tmp_path / "lib.net")
    netspec.load(str(tmp_path / "main.net"))


def test_two_files_defining_one_block_is_an_error(tmp_path):
    write(tmp_path, {"a.net": "block shared { ReLU }\n", "b.net": "\nblock shared { Tanh }\n",
                     "main.net": 'import "a.net"\nimport "b.net"\nmodel m { input: [4]; Linear(2); shared }\n'})
    e = load_error(tmp_path / "main.net")
    d = e.diagnostics[0]
    assert d.message == "block `shared` is defined twice"
    assert (Path(d.span.file).name, d.span.line, d.span.column) == ("b.net", 2, 1)
    assert [(Path(n.span.file).name, n.span.line, n.span.column, n.message) for n in d.notes] == [
        ("a.net", 1, 1, "first defined here")]


def test_local_block_shadowing_an_import_is_an_error_like_let(tmp_path):
    write(tmp_path, {"lib.net": LIB,
                     "main.net": 'import "lib.net"\nblock shared { Tanh }\nmodel m { input: [4]; Linear(2); shared }\n'})
    e = load_error(tmp_path / "main.net")
    d = e.diagnostics[0]
    assert d.message == "block `shared` is defined twice"
    assert (Path(d.span.file).name, d.span.line, d.span.column) == ("main.net", 2, 1)
    assert (Path(d.notes[0].span.file).name, d.notes[0].span.line) == ("lib.net", 1)
    r = cli("check", "main.net", cwd=tmp_path)
    assert r.returncode == 1
    assert "main.net:2:1: error: block `shared` is defined twice" in r.stderr
    assert "lib.net:1:1: note: first defined here" in r.stderr


def test_local_let_shadowing_an_import_points_at_both(tmp_path):
    write(tmp_path, {"lib.net": LIB, "main.net": 'import "lib.net"\nlet k = 5\nmodel m { input: [4]; Linear(k) }\n'})
    d = load_error(tmp_path / "main.net").diagnostics[0]
    assert d.message == "`k` is defined twice"
    assert (d.span.line, d.span.column) == (2, 1)
    assert (Path(d.notes[0].span.file).name, d.notes[0].span.line, d.notes[0].message) == (
        "lib.net", 2, "first defined here")


def test_import_cycle_still_reported(tmp_path):
    write(tmp_path, {"a.net": 'import "b.net"\n', "b.net": 'import "a.net"\nblock x { ReLU }\n',
                     "main.net": 'import "a.net"\nimport "a.net"\nmodel m { input: [4]; Linear(2) }\n'})
    e = load_error(tmp_path / "main.net")
    assert [d.message for d in e.diagnostics] == ["import cycle: a.net -> b.net -> a.net"]


# ---------------------------------------------------------------- byte-order mark


def test_bom_is_accepted(tmp_path):
    (tmp_path / "bom.net").write_bytes(b"\xef\xbb\xbf" + MODEL.encode())
    netspec.load(str(tmp_path / "bom.net"))
    assert netspec.parse("\ufeff" + MODEL).items


def test_bom_keeps_columns(tmp_path):
    (tmp_path / "bom.net").write_bytes(b"\xef\xbb\xbfmodel m {\n    input: [4]\n    Linear(2 3)\n}\n")
    r = cli("check", "bom.net", cwd=tmp_path)
    assert r.returncode == 1
    assert "bom.net:3:14: error: syntax error: unexpected `3`" in r.stderr
    e = syntax_error("\ufeffmodel m {\n    input: [4]\n    Linear(2 3)\n}\n")
    assert (e.diagnostics[0].span.line, e.diagnostics[0].span.column) == (3, 14)
    # an error on the first line: the column counts from the first visible character
    e = syntax_error("\ufeffmodel m { ) }\n")
    assert (e.diagnostics[0].span.line, e.diagnostics[0].span.column) == (1, 11)


def test_bom_file_formats(tmp_path):
    (tmp_path / "bom.net").write_bytes(b"\xef\xbb\xbf" + MODEL.encode())
    r = cli("fmt", "--check", "bom.net", cwd=tmp_path)
    assert r.returncode == 0, r.stderr


# ---------------------------------------------------------------- non-ASCII characters


@pytest.mark.parametrize(("text", "line", "col", "shown"), [
    ("model 模型 {\n    input: [4]\n    Linear(2)\n}\n", 1, 7, "`模` (U+6A21 CJK UNIFIED IDEOGRAPH-6A21)"),
    ("model m {\n    input: [4]\n    fc_é: Linear(2)\n}\n", 3, 8, "`é` (U+00E9 LATIN SMALL LETTER E WITH ACUTE)"),
    ("let größe = 4\n" + MODEL, 1, 7, "`ö` (U+00F6 LATIN SMALL LETTER O WITH DIAERESIS)"),
])
def test_non_ascii_name_is_positioned(tmp_path, text, line, col, shown):
    (tmp_path / "u.net").write_text(text, encoding="utf-8")
    d = load_error(tmp_path / "u.net").diagnostics[0]
    assert (d.span.line, d.span.column) == (line, col)
    assert d.message == f"syntax error: unexpected character {shown} in a name: " \
                        "identifiers are ASCII letters, digits and `_`"
    r = cli("check", "u.net", cwd=tmp_path)
    assert r.returncode == 1
    lines = r.stderr.splitlines()
    assert lines[0].startswith(f"u.net:{line}:{col}: error: syntax error: unexpected character")
    assert "not a netspec spec" not in r.stderr
    caret = lines[2]
    assert caret.endswith("^") and caret.index("^") - caret.index("|") - 2 == col - 1


def test_invisible_character_is_named_not_printed(tmp_path):
    (tmp_path / "z.net").write_text("model m {\n    input: [4]\n    Linear(2)  # 😀 comment\n    ReLU\u200b\n}\n",
                                    encoding="utf-8")
    d = load_error(tmp_path / "z.net").diagnostics[0]
    assert (d.span.line, d.span.column) == (4, 9)
    assert d.message == "syntax error: unexpected character U+200B ZERO WIDTH SPACE"
    assert "\u200b" not in d.message
    assert "delete it" in (d.help or "")


def test_invisible_character_at_the_start(tmp_path):
    (tmp_path / "z.net").write_text("\u200b" + MODEL, encoding="utf-8")
    d = load_error(tmp_path / "z.net").diagnostics[0]
    assert (d.span.line, d.span.column) == (1, 1)
    assert "U+200B ZERO WIDTH SPACE" in d.message


@pytest.mark.parametrize(("ch", "ascii_"), [("\uff1a", ":"), ("\u2212", "-"), ("\u201c", '"')])
def test_lookalike_character_suggests_ascii(ch, ascii_):
    d = syntax_error(f"model m {{\n    input: [4]\n    fc{ch} Linear(2)\n}}\n").diagnostics[0]
    assert (d.span.line, d.span.column) == (3, 7)
    assert f"U+{ord(ch):04X}" in d.message
    assert d.help == f"type the ASCII `{ascii_}` instead"


def test_describe_char():
    assert describe_char("x") == "`x`"
    assert describe_char("\u200b") == "U+200B ZERO WIDTH SPACE"
    assert describe_char("\u00a0") == "U+00A0 NO-BREAK SPACE"
    assert describe_char("\x07") == "U+0007 (a control character)"
    assert describe_char("\u202e") == "U+202E RIGHT-TO-LEFT OVERRIDE"
    assert describe_char("😀") == "`😀` (U+1F600 GRINNING FACE)"


def test_other_files_still_not_quoted(tmp_path):
    (tmp_path / "passwd.net").write_text("root:x:0:0:root:/root:/bin/bash\n")
    e = load_error(tmp_path / "passwd.net")
    assert "not a netspec spec" in e.diagnostics[0].message
    assert "root" not in str(e).replace(str(tmp_path), "")


# ---------------------------------------------------------------- unclosed brackets


@pytest.mark.parametrize(("value", "opener", "col"), [
    ("Adam(lr=0.1", "(", 5), ("[1, 2", "[", 1), ("Adam(betas=[0.9, 0.99", "[", 12), ("[(1, 2), (3", "(", 10),
])
def test_set_value_names_the_open_bracket(value, opener, col):
    closer = {"(": ")", "[": "]"}[opener]
    with pytest.raises(NetspecError) as info:
        parse_value(value, "--set #1")
    d = info.value.diagnostics[0]
    assert d.message == "syntax error: unexpected end of file"
    assert d.help == f"a `{opener}` is not closed; add `{closer}`"
    assert [(n.message, n.span.line, n.span.column) for n in d.notes] == [(f"the `{opener}` opened here", 1, col)]


def test_set_on_the_command_line(tmp_path):
    write(tmp_path, {"base.net": MODEL + "train { loss: MSELoss; optimizer: SGD(lr=0.1); epochs: 1 }\n"})
    r = cli("check", "--no-data", "base.net", "--set", "train.optimizer=Adam(lr=0.1", cwd=tmp_path)
    assert r.returncode == 1
    assert "help: a `(` is not closed; add `)`" in r.stderr
    assert "--set #1:1:5: note: the `(` opened here" in r.stderr
    assert "`{`" not in r.stderr


@pytest.mark.parametrize(("text", "opener", "line", "col"), [
    ("model m {\n    input: [4]\n    Linear(2\n", "(", 3, 11),
    ("model m {\n    input: [4\n", "[", 2, 12),
    ("model m {\n    input: [4]\n    Linear(2)\n", "{", 1, 9),
])
def test_file_at_end_names_the_open_bracket(text, opener, line, col):
    d = syntax_error(text).diagnostics[0]
    closer = {"(": ")", "[": "]", "{": "}"}[opener]
    assert d.message == "syntax error: unexpected end of file"
    assert d.help == f"a `{opener}` is not closed; add `{closer}`"
    assert (d.notes[0].span.line, d.notes[0].span.column) == (line, col)


def test_file_bracket_closed_by_brace():
    d = syntax_error("model m {\n input: [4]\n Linear(2\n}\n").diagnostics[0]
    assert (d.span.line, d.span.column) == (4, 1)
    assert d.help == "a `(` is not closed; add `)`"
    assert (d.notes[0].span.line, d.notes[0].span.column) == (3, 8)
    d = syntax_error("model m {\n input: [4\n Linear(2)\n}\n").diagnostics[0]
    assert d.help == "a `[` is not closed; add `]`"
    assert (d.notes[0].span.line, d.notes[0].span.column) == (2, 9)


def test_open_brackets_skips_strings_and_comments():
    assert open_brackets('f("(", x  # ( [\n') == [("(", 1, 2)]
    # `]` closes its `[` and whatever was opened inside it
    assert open_brackets('a [ ( ] "\\"(" {') == [("{", 1, 15)]


# ---------------------------------------------------------------- long expressions


def test_long_flat_sum_is_said_to_be_long(tmp_path):
    terms = 5000
    (tmp_path / "long.net").write_text("model m {\n    input: [4]\n    Linear(" + "+".join(["1"] * terms) + ")\n}\n")
    d = load_error(tmp_path / "long.net").diagnostics[0]
    assert d.message == f"expression too long: {terms - 1} operators in a row; at most {MAX_CHAIN}"
    assert (d.span.line, d.span.column) == (3, 12)
    assert "nested" not in d.message
    r = cli("check", "long.net", cwd=tmp_path)
    assert r.returncode == 1
    assert f"long.net:3:12: error: expression too long: {terms - 1} operators" in r.stderr


def test_flat_chain_within_the_limit_evaluates(tmp_path):
    # MAX_CHAIN operators: MAX_CHAIN - 2 `+` between the ones, then `-` and `+`
    (tmp_path / "ok.net").write_text("model m {\n    input: [4]\n    Linear(" + "+".join(["1"] * (MAX_CHAIN - 1))
                                     + " - 1*2*3*4 + 24)\n}\n")
    checked = netspec.load(str(tmp_path / "ok.net"))
    assert list(checked.model.output_shape) == [MAX_CHAIN - 1]


def test_long_product_and_power_chains():
    n = MAX_CHAIN + 50
    d = syntax_error("let x = " + "*".join(["1"] * (n + 1)) + "\n" + MODEL).diagnostics[0]
    assert d.message.startswith(f"expression too long: {n} operators")
    d = syntax_error("let x = " + "**".join(["1"] * (n + 1)) + "\n" + MODEL).diagnostics[0]
    assert d.message.startswith(f"expression too long: {n} operators")
    assert (d.span.line, d.span.column) == (1, 9)


def test_real_nesting_is_still_nesting():
    depth = MAX_EXPR_NESTING + 10
    d = syntax_error("let x = " + "(1 + " * depth + "1" + ")" * depth + "\n" + MODEL).diagnostics[0]
    assert "nested too deeply" in d.message


# ---------------------------------------------------------------- articles


@pytest.mark.parametrize(("noun", "expected"), [
    ("early-stopping rule", "an early-stopping rule"), ("optimizer", "an optimizer"), ("layer", "a layer"),
    ("loss", "a loss"), ("initialiser", "an initialiser"), ("unit", "a unit"), ("one-hot label", "a one-hot label"),
    ("upsampling layer", "an upsampling layer"), ("hour", "an hour"), ("scheduler", "a scheduler"),
])
def test_with_article(noun, expected):
    assert with_article(noun) == expected


@pytest.mark.parametrize("first", ["let x\U0001F600 = 3", "let \U0001F600x = 3", "model m\U0001F600 {"])
def test_a_typo_on_the_first_line_of_a_spec_keeps_its_position(tmp_path, first):
    """`let x😀 = 3` on line 1 was "not a netspec spec (syntax error at line 1)", no column:
    the guess that protects files that are not specs fired for a spec with a typo."""
    (tmp_path / "t.net").write_text(first + "\n" + MODEL, encoding="utf-8")
    d = load_error(tmp_path / "t.net").diagnostics[0]
    assert "not a netspec spec" not in d.message and d.span.line == 1 and d.span.column > 1, d.render()


def test_a_spec_of_more_than_50000_statement_lines_is_refused_before_parsing(tmp_path):
    """300,000 `ReLU` lines (2.7 MB) took 20 s to parse, in check and in the editor, before
    "the model expands to more than 20,000 layers"; comments and blank lines do not count."""
    from netspec.syntax.parser import MAX_SPEC_LINES

    body = "model m {\n    input: [4]\n" + "    ReLU\n" * (MAX_SPEC_LINES + 10) + "}\n"
    (tmp_path / "big.net").write_text(body)
    d = load_error(tmp_path / "big.net").diagnostics[0]  # refused before lark sees the file
    assert "more than 50,000 lines of statements" in d.message and d.span.line == MAX_SPEC_LINES + 1  # the first line too many
    comments = "# a note\n\n" * (MAX_SPEC_LINES + 10) + "model m {\n    input: [4]\n    Linear(2)\n}\n"
    (tmp_path / "notes.net").write_text(comments)
    assert netspec.load(str(tmp_path / "notes.net")).model.output_shape == (2,)
