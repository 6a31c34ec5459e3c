"""Text -> syntax IR (``ir.Spec``). No validation beyond syntax; that is check.py's job.

In: the text of a `.net` file. Out: ``ir.Spec`` with spans, or ``NetspecError`` for a
syntax error (file:line:col, the line, a caret, what was expected).

    python -c "import netspec; print(netspec.parse(open('examples/mnist.net').read(), 'mnist.net'))"
"""

from __future__ import annotations

import functools
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from lark import Lark, Token, Transformer, v_args
from lark.exceptions import UnexpectedCharacters, UnexpectedEOF, UnexpectedInput, UnexpectedToken

from . import ir
from .errors import Diagnostic, NetspecError, Span, remember_source

MODEL_SETTINGS = ("input", "init")  # keys of a model body that are settings, not layers


def grammar_path() -> Path:
    """The grammar ships inside the package (wheel); in a source tree it sits at top level."""
    here = Path(__file__).resolve().parent
    for candidate in (here / "grammar" / "netspec.lark", here.parent / "grammar" / "netspec.lark"):
        if candidate.exists():
            return candidate
    raise FileNotFoundError("netspec.lark not found; the installation is incomplete")


class _BracketNewlines:
    """Post-lexer: newlines inside ( ) and [ ] are layout, not entry separators."""

    always_accept = ("_NL",)

    def process(self, stream: Iterator[Token]) -> Iterator[Token]:
        depth = 0
        for tok in stream:
            if tok.type in ("LPAR", "LSQB"):
                depth += 1
            elif tok.type in ("RPAR", "RSQB"):
                depth = max(depth - 1, 0)
            elif tok.type == "_NL" and depth:
                continue
            yield tok


@functools.cache
def _lark() -> Lark:
    # cache=True keeps the LALR tables in a temp file keyed by the grammar's hash, which
    # saves ~0.3 s of every `netspec check`; lark rebuilds them when the file is missing.
    return Lark(
        grammar_path().read_text(),
        parser="lalr",
        start=["start", "value"],
        propagate_positions=True,
        maybe_placeholders=False,
        postlex=_BracketNewlines(),
        cache=True,
    )


class _Start:
    """The parser for one start symbol (`start`: a file, `value`: a --set value)."""

    def __init__(self, start: str):
        self.start = start

    def parse(self, text: str):
        return _lark().parse(text, start=self.start)

    @property
    def terminals(self):
        return _lark().terminals


def _parser(start: str) -> _Start:
    return _Start(start)


def lexer_tokens(text: str) -> list[Token]:
    """All tokens including comments and newlines (for `netspec fmt`)."""
    comments: list[Token] = []
    lk = Lark(grammar_path().read_text(), parser="lalr", lexer="basic",
              lexer_callbacks={"COMMENT": comments.append})
    try:
        toks = list(lk.lex(text, dont_ignore=False))
    except UnexpectedInput as e:
        raise _syntax_error(e, "<fmt>", text) from None
    return sorted(toks + comments, key=lambda t: (t.start_pos or 0))


def _span(file: str, meta: Any) -> Span:
    if getattr(meta, "empty", True):
        return Span(file)
    return Span(file, meta.line, meta.column, meta.end_line, meta.end_column)


def _tok_span(file: str, tok: Token) -> Span:
    return Span(file, tok.line or 0, tok.column or 0, tok.end_line or 0, tok.end_column or 0)


def _number(text: str) -> int | float:
    if any(c in text for c in ".eE"):
        return float(text)
    return int(text)


def _unescape(s: str) -> str:
    out, i = [], 0
    body = s[1:-1]
    table = {"n": "\n", "t": "\t", '"': '"', "\\": "\\"}
    while i < len(body):
        c = body[i]
        if c == "\\" and i + 1 < len(body):
            out.append(table.get(body[i + 1], body[i + 1]))
            i += 2
            continue
        out.append(c)
        i += 1
    return "".join(out)


def _binary(op: str):
    """A transformer method building a BinOp for operator `op`."""

    def method(self, meta, c):
        return ir.BinOp(op, c[0], c[1], self.s(meta))

    return method


@v_args(meta=True)
class _ToIR(Transformer):
    """Lark tree -> IR. Raises nothing: odd but parseable input is left for the checker."""

    def __init__(self, file: str):
        super().__init__()
        self.file = file

    def s(self, meta: Any) -> Span:
        return _span(self.file, meta)

    # expressions
    def number(self, meta, c):
        return ir.Num(_number(str(c[0])), self.s(meta))

    def string(self, meta, c):
        return ir.Str(_unescape(str(c[0])), self.s(meta))

    def true(self, meta, c):
        return ir.Bool(True, self.s(meta))

    def false(self, meta, c):
        return ir.Bool(False, self.s(meta))

    def none(self, meta, c):
        return ir.NoneLit(self.s(meta))

    def ref(self, meta, c):
        return ir.Ref(str(c[0]), self.s(meta))

    def kwarg(self, meta, c):
        return ir.Kwarg(str(c[0]), c[1], self.s(meta))

    def call(self, meta, c):
        name = c[0]
        args = tuple(a for a in c[1:] if a is not None and not isinstance(a, ir.Kwarg))
        kwargs = tuple(a for a in c[1:] if isinstance(a, ir.Kwarg))
        # Positional-after-keyword is kept in order for the checker to report; store it
        # by tagging positional args that follow a kwarg.
        order = [a for a in c[1:] if a is not None]
        late = [
            a for i, a in enumerate(order)
            if not isinstance(a, ir.Kwarg) and any(isinstance(b, ir.Kwarg) for b in order[:i])
        ]
        if late:
            args = tuple(a for a in args if a not in late) + tuple(
                ir.Kwarg("<positional>", a, a.span) for a in late
            )
        return ir.Call(str(name), args, kwargs, self.s(meta), _tok_span(self.file, name))

    def list(self, meta, c):
        return ir.ListLit(tuple(x for x in c if x is not None), self.s(meta))

    def tuple(self, meta, c):
        return ir.TupleLit(tuple(x for x in c if x is not None), self.s(meta))

    add, sub, mul, div, floordiv, mod, pow = (
        _binary("+"), _binary("-"), _binary("*"), _binary("/"), _binary("//"), _binary("%"), _binary("**")
    )

    def neg(self, meta, c):
        return ir.UnaryOp("-", c[0], self.s(meta))

    def pos(self, meta, c):
        return ir.UnaryOp("+", c[0], self.s(meta))

    def value(self, meta, c):
        return c[0]

    # entries
    def inits(self, meta, c):
        return tuple(c)

    def use(self, meta, c):
        inits = c[1] if len(c) > 1 else ()
        return ir.Layer(None, c[0], inits, self.s(meta))

    def repeat(self, meta, c):
        return ir.Repeat(None, c[0], c[1], self.s(meta))

    def residual(self, meta, c):
        return ir.Residual(None, c[0], self.s(meta))

    def keyed(self, meta, c):
        key, item = c
        span = self.s(meta)
        key_span = _tok_span(self.file, key)
        if isinstance(item, ir.Layer):
            return ("keyed", str(key), key_span, ir.Layer(str(key), item.expr, item.inits, span))
        if isinstance(item, ir.Repeat):
            return ("keyed", str(key), key_span, ir.Repeat(str(key), item.count, item.body, span))
        return ("keyed", str(key), key_span, ir.Residual(str(key), item.body, span))

    def bare(self, meta, c):
        return c[0]

    def body(self, meta, c):
        return tuple(c)

    # top level
    def let_stmt(self, meta, c):
        return ir.Let(str(c[0]), c[1], self.s(meta))

    def import_stmt(self, meta, c):
        return ir.Import(_unescape(str(c[0])), self.s(meta))

    def param(self, meta, c):
        return ir.Param(str(c[0]), c[1] if len(c) > 1 else None, self.s(meta))

    def params(self, meta, c):
        return tuple(p for p in c if p is not None)

    def block_def(self, meta, c):
        name = str(c[0])
        params = c[1] if len(c) == 3 else ()
        return ir.Block(name, params, _layer_entries(c[-1]), self.s(meta))

    def model_def(self, meta, c):
        entries = _layer_entries(c[1])
        settings = tuple(e for e in entries if isinstance(e, ir.Setting))
        layers = tuple(e for e in entries if not isinstance(e, ir.Setting))
        return ir.Model(str(c[0]), settings, layers, self.s(meta))

    def section(self, meta, c):
        entries = []
        for e in c[1]:
            if isinstance(e, tuple) and e[0] == "keyed":
                _, key, key_span, item = e
                if isinstance(item, ir.Layer) and not item.inits:
                    entries.append(ir.Setting(key, item.expr, item.span, key_span))
                    continue
                entries.append(item)
            else:
                entries.append(e)
        return ir.Section(str(c[0]), tuple(entries), self.s(meta))

    def start(self, meta, c):
        return ir.Spec(self.file, tuple(c), self.s(meta))


def _layer_entries(raw: tuple) -> tuple:
    """Keyed entries of a layer body: `input:`/`init:` are settings, the rest named layers."""
    out = []
    for e in raw:
        if isinstance(e, tuple) and e[0] == "keyed":
            _, key, key_span, item = e
            if key in MODEL_SETTINGS and isinstance(item, ir.Layer) and not item.inits:
                out.append(ir.Setting(key, item.expr, item.span, key_span))
            else:
                out.append(item)
        else:
            out.append(e)
    return tuple(out)


TOKEN_NAMES = {
    "NAME": "a name",
    "NUMBER": "a number",
    "STRING": "a string",
    "_NL": "a newline",
    "$END": "end of file",
    "LBRACE": "`{`",
    "RBRACE": "`}`",
    "LPAR": "`(`",
    "RPAR": "`)`",
    "LSQB": "`[`",
    "RSQB": "`]`",
    "COLON": "`:`",
    "COMMA": "`,`",
    "EQUAL": "`=`",
    "SEMICOLON": "`;`",
    "PLUS": "`+`",
    "MINUS": "`-`",
    "STAR": "`*`",
    "SLASH": "`/`",
    "PERCENT": "`%`",
    "DOUBLESTAR": "`**`",
    "DOUBLESLASH": "`//`",
}


def _describe(term: str) -> str:
    if term in TOKEN_NAMES:
        return TOKEN_NAMES[term]
    if term.startswith("__ANON") or term.isupper():
        for t in _parser("start").terminals:
            if t.name == term:
                pat = t.pattern.value
                return f"`{pat}`"
    return f"`{term.lower()}`"


def _syntax_error(e: UnexpectedInput, file: str, text: str) -> NetspecError:
    line, col = getattr(e, "line", 0) or 0, getattr(e, "column", 0) or 0
    help_ = None
    if isinstance(e, UnexpectedCharacters):
        pos = e.pos_in_stream if e.pos_in_stream is not None else -1
        ch = text[pos] if 0 <= pos < len(text) else "?"
        msg = f"unexpected character `{ch}`"
        if ch == "'":
            help_ = 'strings use double quotes: "like this"'
        span = Span(file, line, col, line, col + 1)
    elif isinstance(e, UnexpectedEOF) or (
        isinstance(e, UnexpectedToken) and e.token.type == "$END"
    ):
        expected = sorted({_describe(t) for t in getattr(e, "expected", ()) or ()})
        msg = "unexpected end of file"
        if "`}`" in expected:
            help_ = "a `{` is not closed; add `}`"
        elif expected:
            help_ = "expected " + ", ".join(expected[:6])
        lines = text.splitlines() or [""]
        line = len(lines)
        col = len(lines[-1]) + 1
        span = Span(file, line, col, line, col + 1)
    else:
        assert isinstance(e, UnexpectedToken)
        tok = e.token
        shown = "a newline" if tok.type == "_NL" else f"`{tok}`"
        expected = sorted({_describe(t) for t in e.expected})
        msg = f"unexpected {shown}"
        if expected:
            msg += "; expected " + ", ".join(expected[:6]) + (" ..." if len(expected) > 6 else "")
        if tok.type == "EQUAL" and "`:`" in expected:
            help_ = "entries are written `key: value`"
        elif tok.type == "_NL" and "`)`" in expected:
            help_ = "a `(` is not closed"
        end_col = (tok.end_column or col + 1) if (tok.end_line or line) == line else col + 1
        if tok.type == "_NL":
            end_col = col + 1
        span = Span(file, line, col, line, end_col)
    return NetspecError(Diagnostic(f"syntax error: {msg}", span, "error", help_))


def _parse(start: str, text: str, file: str):
    remember_source(file, text)
    try:
        return _ToIR(file).transform(_parser(start).parse(text))
    except UnexpectedInput as e:
        raise _syntax_error(e, file, text) from None
    except RecursionError:
        raise NetspecError.at(Span(file, 1, 1, 1, 2), "nested too deeply") from None


def parse(text: str, file: str = "<spec>") -> ir.Spec:
    """Parse a whole spec file into ``ir.Spec``."""
    return _parse("start", text, file)


def parse_value(text: str, file: str = "<value>") -> ir.Expr:
    """Parse one expression (used by `--set key=value`)."""
    return _parse("value", text, file)


def parse_file(path: str | Path) -> ir.Spec:
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise NetspecError(Diagnostic(f"{p}: no such file")) from None
    except UnicodeDecodeError:
        raise NetspecError(Diagnostic(f"{p}: not a UTF-8 text file")) from None
    except OSError as e:
        raise NetspecError(Diagnostic(f"{p}: cannot read ({e.strerror})")) from None
    return parse(text, str(path))
