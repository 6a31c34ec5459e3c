"""One document as the editor holds it, analysed once per version by the parser and the
checker (never a parser of its own): the diagnostics `netspec check` gives, and indexes
that hover, completion, definitions, symbols and inlay hints read.

In: the text of a `.net` document and its path (imports resolve from its folder). Out:
``Analysis``: the syntax IR (after recovery, for a document in a broken state), the checker's
context (``checker.check_context``: its diagnostics, its constants and blocks, and every node
that resolved, with shapes), and lookups by line and by span. No pygls import: the server
(server.py) and the benchmark both use it.

A document that does not parse still gets the parser's error, exactly as `check` gives it,
and the checker's diagnostics for the rest: the line at fault is blanked (or the brackets
left open at the end are closed) and the text parsed again, a few times at most; what the
checker says about a blanked line is not reported.

    python -c "from netspec.tools.lsp.document import analyse; print(analyse(open('m.net').read(), 'm.net').diagnostics)"
"""

from __future__ import annotations

import os
import re
import time
from collections.abc import Iterator
from dataclasses import dataclass, field

from netspec import ir
from netspec.checker import CheckContext, check_context, checked_spec
from netspec.errors import Diagnostic, NetspecError, Span
from netspec.syntax.parser import BOM, BRACKETS, MAX_SPEC_BYTES, open_brackets, parse

MAX_RECOVERY = 8  # re-parses of a broken document (each blanks one line or closes brackets)
WORD = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


@dataclass
class Analysis:
    """A document's text and what the parser and checker made of it."""

    text: str
    file: str
    lines: list[str]
    spec: ir.Spec | None = None
    ctx: CheckContext | None = None
    diagnostics: list[Diagnostic] = field(default_factory=list)  # as `netspec check` reports them
    blanked: frozenset[int] = frozenset()  # 1-based lines that recovery left out
    data_checked: bool = False  # the data pass ran (its findings are in `diagnostics`)
    data_due: bool = False  # the data pass would run (no error before it) but was not asked for
    data_seconds: float = 0.0
    # syntax entries of this file by first line (model, blocks and sections, nested ones too)
    entries: dict[int, list[tuple[ir.Entry, str]]] = field(default_factory=dict)
    # checked nodes by the span of the entry that made them (several for a block's lines)
    nodes: dict[Span, list[tuple[str, ir.Node]]] = field(default_factory=dict)

    @property
    def bom(self) -> bool:
        return self.text.startswith(BOM)

    @property
    def model(self) -> ir.CheckedModel | None:
        return self.ctx.model if self.ctx is not None else None

    def entries_at(self, line: int, column: int) -> list[tuple[ir.Entry, str]]:
        """Entries whose span holds the 1-based position, innermost first."""
        found = []
        for entries in self.entries.values():
            for e, owner in entries:
                if contains(e.span, line, column):
                    found.append((e, owner))
        found.sort(key=lambda x: span_size(x[0].span))
        return found

    def nodes_of(self, e: ir.Entry) -> list[tuple[str, ir.Node]]:
        return self.nodes.get(e.span, [])

    def word_at(self, line: int, column: int) -> tuple[str, int, int] | None:
        """The identifier at a 1-based position (or just before it), with its columns."""
        if not 1 <= line <= len(self.lines):
            return None
        text = self.lines[line - 1]
        for m in WORD.finditer(text):
            if m.start() + 1 <= column <= m.end() + 1:
                return m.group(), m.start() + 1, m.end() + 1
        return None


def contains(span: Span, line: int, column: int) -> bool:
    if not span:
        return False
    after_start = (line, column) >= (span.line, span.column)
    end = (span.end_line, span.end_column) if span.end_line else (span.line, 1 << 30)
    return after_start and (line, column) < end


def span_size(span: Span) -> tuple[int, int]:
    return (span.end_line - span.line, span.end_column - span.column)


# ---------------------------------------------------------------- analysis


def analyse(text: str, file: str, *, read_data: bool = False) -> Analysis:
    """Parse (recovering from syntax errors) and check `text` as the file `file`. Never
    raises for any input: a NetspecError is what it reports."""
    a = Analysis(text, file, text.split("\n"))
    problem = _unreadable(text, file)
    if problem is not None:
        a.diagnostics = [problem]
        return a
    spec, syntax, blanked = parse_recovering(text, file)
    a.spec, a.blanked = spec, frozenset(blanked)
    if spec is None:
        a.diagnostics = syntax
        return a
    ctx = check_context(spec)
    a.ctx = ctx
    found = ctx.diags + ctx.warnings
    if not syntax and not ctx.diags and ctx.data is not None:
        if read_data:
            found = _data_pass(a, ctx)
        else:
            a.data_due = True
    if syntax:  # the parser's error as `check` gives it, then what the checker says of the rest
        last = len(a.lines)
        found = syntax + [d for d in found if d.span.line not in blanked and d.span.line <= last
                          and not d.message.startswith("no `model`")]
    a.diagnostics = found
    _index(a)
    return a


def _unreadable(text: str, file: str) -> Diagnostic | None:
    """What `check` refuses before parsing a file (util.read_regular, parser.read_spec_text)."""
    if len(text) > MAX_SPEC_BYTES or len(text.encode("utf-8", "surrogatepass")) > MAX_SPEC_BYTES:
        return Diagnostic(f"{file}: the spec is larger than {MAX_SPEC_BYTES >> 20} MiB", Span(file, 1, 1, 1, 2),
                          "error", "split it into files joined by `import`")
    if "\0" in text:
        return Diagnostic(f"{file}: not a text file (it contains NUL bytes)", Span(file, 1, 1, 1, 2))
    return None


def _data_pass(a: Analysis, ctx: CheckContext) -> list[Diagnostic]:
    """`netspec check`'s data pass (bounded reads of the data files), timed."""
    from netspec.checker.data import check_data_files

    started = time.perf_counter()
    a.data_checked = True
    try:
        checked = check_data_files(checked_spec(ctx))
        found = list(checked.warnings)
    except NetspecError as e:
        found = list(e.diagnostics)
    except (OSError, ValueError, MemoryError) as e:  # a file that vanished or cannot be read
        found = [*ctx.warnings, Diagnostic(f"the data could not be read: {e}", ctx.data.span if ctx.data else
                                           Span(a.file, 1, 1, 1, 2), "warning")]
    a.data_seconds = time.perf_counter() - started
    return found


def parse_recovering(text: str, file: str) -> tuple[ir.Spec | None, list[Diagnostic], set[int]]:
    """(spec, the first syntax error as `check` reports it, lines blanked). A spec that parses
    comes back as it is. Otherwise the parser's error is kept, and the text is repaired and
    parsed again: an unexpected end of file closes the brackets left open; any other error
    blanks its line (the line that opened a `(` or `[` left open, where the error says so)."""
    try:
        return parse(text, file), [], set()
    except NetspecError as e:
        first = list(e.diagnostics)
    work, blanked, d = text, set(), first[0]
    lines = text.split("\n")
    for _ in range(MAX_RECOVERY):
        if not d.span:
            break  # not a spec at all: nothing to recover
        if d.message.startswith("syntax error: unexpected end of file"):
            stack = open_brackets(work)
            if not stack:
                break
            work = work + "\n" + "".join(BRACKETS[c] for c, _, _ in reversed(stack))
        else:
            line = _line_at_fault(work, d.span)
            if line in blanked or not 1 <= line <= len(lines):
                break
            blanked.add(line)
            lines[line - 1] = " " * len(lines[line - 1])
            work = "\n".join(lines) + work[len(text):]
        try:
            return parse(work, file), first, blanked
        except NetspecError as e:
            d = e.diagnostics[0]
    return None, first, blanked


def _line_at_fault(text: str, span: Span) -> int:
    """The error's line, or the earlier line that opened a `(` or `[` still open there (a
    half-typed call swallows the lines after it)."""
    lines = text.split("\n")
    offset = sum(len(x) + 1 for x in lines[:span.line - 1]) + max(span.column - 1, 0)
    stack = open_brackets(text, offset)
    if stack and stack[-1][0] in "([" and stack[-1][1] < span.line:
        return stack[-1][1]
    return span.line


def _index(a: Analysis) -> None:
    """Entries of this file by line; checked nodes by their entry's span."""
    spec = a.spec
    if spec is None:
        return
    for item in spec.items:
        if isinstance(item, ir.Model):
            for s in item.settings:
                _add_entry(a, s, "model")
            _add_entries(a, item.layers, "model")
        elif isinstance(item, ir.Block):
            _add_entries(a, item.body, f"block:{item.name}")
        elif isinstance(item, ir.Section):
            for e in item.entries:
                _add_entry(a, e, f"section:{item.kind}")
    model = a.model
    if model is not None:
        for path, node in ir.walk(model.root):
            a.nodes.setdefault(node.span, []).append((path, node))


def _add_entry(a: Analysis, e: ir.Entry, owner: str) -> None:
    if e.span and e.span.file == a.file:
        a.entries.setdefault(e.span.line, []).append((e, owner))


def _add_entries(a: Analysis, entries: tuple[ir.Entry, ...], owner: str) -> None:
    stack = list(entries)
    while stack:
        e = stack.pop()
        _add_entry(a, e, owner)
        if isinstance(e, (ir.Repeat, ir.Residual, ir.Seq, ir.Branches)):
            stack.extend(e.body)


def iter_entries(entries: tuple[ir.Entry, ...]) -> Iterator[ir.Entry]:
    """Every entry below `entries`, in source order."""
    for e in entries:
        yield e
        if isinstance(e, (ir.Repeat, ir.Residual, ir.Seq, ir.Branches)):
            yield from iter_entries(e.body)


def layer_type(e: ir.Entry) -> tuple[str, Span] | None:
    """The type (or block) name a layer entry uses, with the span of that name."""
    if not isinstance(e, ir.Layer):
        return None
    x = e.expr
    if isinstance(x, ir.Ref):
        return x.name, x.span
    if isinstance(x, ir.Call):
        return x.func, x.name_span
    return None


def entry_shapes(a: Analysis, e: ir.Entry) -> list[tuple[ir.Shape, ir.Shape]]:
    """(input, output) shape of each node an entry made: one per use for a block's lines and
    per repetition for a repeat's body. An unnamed repeat makes no node of its own: its
    shapes are those of its first and last body entries."""
    made = a.nodes_of(e)
    if made:
        return [(n.in_shape, n.out_shape) for _, n in made]
    if isinstance(e, ir.Repeat) and e.body:
        first, last = a.nodes_of(e.body[0]), a.nodes_of(e.body[-1])
        if first and last:
            return [(first[0][1].in_shape, last[-1][1].out_shape)]
    return []


def relative(path: str, base: str) -> str:
    """`path` as it reads from the folder of `base` (a file in another folder keeps its path)."""
    try:
        rel = os.path.relpath(path, os.path.dirname(base) or ".")
    except ValueError:
        return path
    return path if rel.startswith("..") else rel
