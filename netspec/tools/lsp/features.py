"""What the editor shows, read off an ``Analysis`` (document.py): diagnostics, hover, go to
definition, document symbols, inlay hints and formatting, as lsprotocol types.

In: an analysed document and a position converter (``Coords``: the checker's 1-based code
point columns <-> the client's 0-based UTF-16, UTF-8 or UTF-32 units). Out: lsprotocol
values for server.py to send. Completion lives in completion.py.
"""

from __future__ import annotations

import os
from collections.abc import Sequence

from lsprotocol import types
from pygls.workspace.position_codec import PositionCodec, ServerTextPosition

from netspec import catalogue as cat
from netspec import ir
from netspec.catalogue import REQUIRED, fmt_shape
from netspec.checker.context import CheckContext, head
from netspec.errors import Diagnostic, NetspecError, Span
from netspec.syntax.expr import show, source
from netspec.syntax.format import format_text
from netspec.tools.lsp.document import Analysis, entry_shapes, iter_entries, layer_type, relative

SEVERITY = {"error": types.DiagnosticSeverity.Error, "warning": types.DiagnosticSeverity.Warning,
            "note": types.DiagnosticSeverity.Information}
MODEL_KEYS = {
    "input": "the per-sample input shape; the batch dimension is implicit, `_` marks a variable dimension "
             "(a dynamic axis on ONNX export). e.g. `input: [1, 28, 28]`",
    "init": "the model-wide initialiser of every weight (a layer's `with weight=...` wins). Initialisers: "
            + ", ".join(cat.INITIALISERS),
}
MAX_USES_SHOWN = 6


class Coords:
    """Positions of one file: 1-based code-point line/column (spans) <-> the client's units."""

    def __init__(self, lines: Sequence[str], codec: PositionCodec, bom: bool = False):
        self.lines = [ln[:-1] if ln.endswith("\r") else ln for ln in lines]
        self.codec = codec
        self.bom = bom

    @classmethod
    def of_file(cls, path: str, codec: PositionCodec) -> Coords:
        from netspec.syntax.parser import BOM, read_spec_text

        try:
            text = read_spec_text(path)
        except (NetspecError, OSError):
            text = ""
        return cls(text.split("\n"), codec, text.startswith(BOM))

    def position(self, line: int, column: int) -> types.Position:
        line0 = min(max(line - 1, 0), max(len(self.lines) - 1, 0))
        col0 = max(column - 1, 0) + (1 if self.bom and line0 == 0 else 0)
        if not self.lines:
            return types.Position(line=0, character=0)
        text = self.lines[line0]
        if text.isascii():  # one unit per character in every encoding
            return types.Position(line=line0, character=col0)
        beyond = max(col0 - len(text), 0)  # the end of file, one past the last column: as check says it
        p = self.codec.position_to_client_units(self.lines, ServerTextPosition(line0, min(col0, len(text))))
        return types.Position(line=p.line, character=p.character + beyond) if beyond else p

    def range(self, span: Span) -> types.Range:
        if not span:
            return types.Range(start=self.position(1, 1), end=self.position(1, 1 << 30))
        start = self.position(span.line, span.column)
        if span.end_line:
            end = self.position(span.end_line, span.end_column)
        else:
            end = self.position(span.line, 1 << 30)
        return types.Range(start=start, end=end)

    def from_client(self, pos: types.Position) -> tuple[int, int]:
        """The client's position as a 1-based line and code-point column."""
        if not self.lines:
            return 1, 1
        p = self.codec.position_from_client_units(self.lines, types.Position(line=pos.line, character=pos.character))
        col = p.character + 1 - (1 if self.bom and p.line == 0 and p.character > 0 else 0)
        return p.line + 1, col


def uri_of(path: str) -> str:
    from pygls.uris import from_fs_path

    return from_fs_path(path) or path


# ---------------------------------------------------------------- diagnostics


def lsp_diagnostics(a: Analysis, coords: Coords) -> list[types.Diagnostic]:
    """`netspec check`'s diagnostics: message (with its `help:` line), severity and range as it
    prints them. One about another file (an import, a block defined there) sits where this
    file leads to it (the `imported here` or `used here` note, else the first import)."""
    out = []
    for d in a.diagnostics:
        span, message = d.span, d.message
        if span and span.file != a.file:
            here = next((n.span for n in _all_notes(d) if n.span and n.span.file == a.file), None)
            message = f"{relative(span.file, a.file)}:{span.line}:{span.column}: {message}"
            span = here or _first_import(a) or Span(a.file, 1, 1, 1, 2)
        if d.help:
            message += f"\nhelp: {d.help}"
        related = []
        for n in ([d] if span is not d.span else []) + list(d.notes):
            if not n.span:
                continue
            where = coords if n.span.file == a.file else Coords.of_file(n.span.file, coords.codec)
            related.append(types.DiagnosticRelatedInformation(
                location=types.Location(uri=uri_of(n.span.file), range=where.range(n.span)), message=n.message))
        out.append(types.Diagnostic(range=coords.range(span), message=message,
                                    severity=SEVERITY.get(d.severity, types.DiagnosticSeverity.Error),
                                    source="netspec", related_information=related or None))
    return out


def _all_notes(d: Diagnostic) -> list[Diagnostic]:
    out, stack = [], list(d.notes)
    while stack:
        n = stack.pop(0)
        out.append(n)
        stack.extend(n.notes)
    return out


def _first_import(a: Analysis) -> Span | None:
    imports = a.spec.of(ir.Import) if a.spec is not None else []
    return imports[0].span if imports else None


# ---------------------------------------------------------------- hover


def hover(a: Analysis, line: int, column: int) -> str | None:
    """Markdown for what is at the 1-based position: a layer (its output shape, parameters,
    the catalogue's description and torch class), a block use (signature, where it is
    defined), a section key (meaning, allowed values), a catalogue name, a constant."""
    word = a.word_at(line, column)
    for e, owner in a.entries_at(line, column):
        if isinstance(e, ir.Setting):
            if contains_col(e.key_span, line, column):
                return key_hover(e.key, owner)
            break
        typ = layer_type(e)
        on_type = typ is not None and contains_col(typ[1], line, column)
        on_name = e.name is not None and contains_col(head(e.span, len(e.name)), line, column)
        if typ is not None and isinstance(e, ir.Layer) and (on_type or on_name):
            return layer_hover(a, e, typ[0])
        if not isinstance(e, ir.Layer) and (on_name or (line, column) < _body_start(e)):
            return construct_hover(a, e)
        if isinstance(e, ir.Layer) and typ is not None:  # in the arguments
            named = name_hover(a, word[0]) if word is not None else None
            return argument_hover(typ[0], word[0]) if word is not None and _is_kwarg(a, line, word) else \
                named or layer_hover(a, e, typ[0])
        if isinstance(e, ir.Layer):
            break
    if word is None:
        return _import_hover(a, line, column)
    return name_hover(a, word[0])


def _is_kwarg(a: Analysis, line: int, word: tuple[str, int, int]) -> bool:
    rest = a.lines[line - 1][word[2] - 1:]
    return rest.lstrip().startswith("=") and not rest.lstrip().startswith("==")


def argument_hover(callee: str, name: str) -> str | None:
    """`padding` in `Conv2d(32, 3, padding=1)`: the parameter's type, domain and default."""
    row = cat.LAYERS.get(callee)
    p = next((q for q in row.params if q.name == name), None) if row is not None else None
    if row is None or p is None:
        return None
    dom = f", {cat.describe_domain(p.domain)}" if p.domain else ""
    default = "required" if p.default is REQUIRED else f"default `{show(p.default)}`"
    return f"`{name}` of {callee}: {cat.describe_type(p.type)}{dom}; {default}"


def contains_col(span: Span, line: int, column: int) -> bool:
    return bool(span) and span.line == line and span.column <= column < max(span.end_column, span.column + 1)


def _body_start(e: ir.Entry) -> tuple[int, int]:
    body = getattr(e, "body", ())
    return (body[0].span.line, body[0].span.column) if body and body[0].span else (e.span.line, 1 << 30)


def _shapes_text(a: Analysis, e: ir.Entry) -> list[str]:
    shapes = entry_shapes(a, e)
    if not shapes:
        return []
    made = a.nodes_of(e)
    if len(shapes) == 1:
        i, o = shapes[0]
        return [f"`{fmt_shape(i)}` → `{fmt_shape(o)}`"]
    lines = [f"{len(shapes)} uses:"]
    for (path, _n), (i, o) in list(zip(made, shapes))[:MAX_USES_SHOWN]:
        lines.append(f"- `{path}`: `{fmt_shape(i)}` → `{fmt_shape(o)}`")
    if len(shapes) > MAX_USES_SHOWN:
        lines.append(f"- ... and {len(shapes) - MAX_USES_SHOWN} more")
    return lines


def _params_text(a: Analysis, e: ir.Entry) -> str | None:
    made = a.nodes_of(e)
    if not made:
        return None
    counts = {ir.parameter_count(n) for _, n in made}
    if len(counts) == 1:
        n = counts.pop()
        return f"{n:,} parameter{'s' if n != 1 else ''}"
    return f"{min(counts):,} to {max(counts):,} parameters"


def layer_hover(a: Analysis, e: ir.Layer, type_name: str) -> str:
    ctx = a.ctx
    if ctx is not None and type_name in ctx.blocks:
        return block_use_hover(a, e, ctx.blocks[type_name])
    made = a.nodes_of(e)
    name = e.name or (made[0][1].name if made and len(made) == 1 else None)
    out = [f"**{name}**: `{type_name}`" if name else f"`{type_name}`"]
    shapes = _shapes_text(a, e)
    if shapes:
        out[0] += " → " + shapes[0].split(" → ")[-1] if len(shapes) == 1 else ""
        out.append("input " + shapes[0] if len(shapes) == 1 else "\n".join(shapes))
    else:
        out.append("shape unknown: this layer or one before it has an error" if type_name in cat.LAYERS
                   else "not a catalogue layer")
    count = _params_text(a, e)
    if count:
        out.append(count)
    spec = cat.LAYERS.get(type_name)
    if spec is not None:
        out.append(_row_text(spec.name, spec, "layer"))
        if made and isinstance(made[0][1], ir.LayerNode):
            args = ", ".join(f"{k}={_python(v)}" for k, v in made[0][1].kwargs)
            first = f"the first of {len(made)} uses builds" if len(made) > 1 else "builds"
            out.append(f"{first}\n```python\n{spec.factory}({args})\n```")
    return "\n\n".join(out)


def _python(v: object) -> str:
    """A constructor argument as Python writes it (`True`, `'zeros'`, `(3, 3)`)."""
    if isinstance(v, tuple):
        inner = ", ".join(_python(x) for x in v)
        return f"({inner},)" if len(v) == 1 else f"({inner})"
    return repr(v) if isinstance(v, (bool, int, float, str)) or v is None else show(v)


def block_use_hover(a: Analysis, e: ir.Layer, block: ir.Block) -> str:
    out = [f"**{e.name}**: block `{block.name}`" if e.name else f"block `{block.name}`"]
    out.append(f"```netspec\n{signature(block)}\n```")
    out.append(f"defined at {relative(block.span.file, a.file)}:{block.span.line}")
    shapes = _shapes_text(a, e)
    if shapes:
        out.append("\n".join(shapes))
    count = _params_text(a, e)
    if count:
        out.append(count)
    return "\n\n".join(out)


def construct_hover(a: Analysis, e: ir.Entry) -> str | None:
    if isinstance(e, ir.Repeat):
        what = f"repeat {source(e.count)}"
    elif isinstance(e, ir.Residual):
        what = "residual: x + f(x)"
    elif isinstance(e, ir.Branches):
        name = e.head.name if isinstance(e.head, ir.Ref) else e.head.func if isinstance(e.head, ir.Call) else "?"
        row = cat.BRANCHES.get(name)
        what = f"{name}: {row.doc}" if row is not None and row.doc else name
    else:
        what = "a nested sequence"
    label = getattr(e, "name", None)
    out = [f"**{label}**: {what}" if label else what]
    shapes = _shapes_text(a, e)
    if shapes:
        out.append("\n".join(shapes))
    count = _params_text(a, e)
    if count:
        out.append(count)
    return "\n\n".join(out)


def signature(block: ir.Block) -> str:
    params = ", ".join(p.name if p.default is None else f"{p.name}={source(p.default)}" for p in block.params)
    return f"block {block.name}({params})"


def key_hover(key: str, owner: str) -> str | None:
    if owner == "model":
        doc = MODEL_KEYS.get(key)
        return f"**{key}** (model)\n\n{doc}" if doc else None
    kind = owner.split(":", 1)[1] if owner.startswith("section:") else ""
    spec = next((s for s in cat.SECTIONS.get(kind, []) if s.key == key), None)
    if spec is None:
        return None
    return f"**{key}** ({kind})\n\n{spec.doc}\n\n" + allowed_values(spec)


def allowed_values(spec: cat.SettingSpec) -> str:
    kinds: dict[str, dict] = {"loss": cat.LOSSES, "optimizer": cat.OPTIMIZERS, "scheduler": cat.SCHEDULERS, "metrics": cat.METRICS,
             "augments": cat.AUGMENTS, "source": cat.SOURCES}
    t = spec.type.rstrip("?")
    if t in kinds:
        values = "one of " + ", ".join(f"`{n}`" for n in kinds[t])
        if t in ("metrics", "augments"):
            values = "a list of " + values[len("one of "):]
    elif t == "early_stopping":
        values = "`EarlyStopping(" + ", ".join(p.name for p in cat.EARLY_STOPPING) + ")`"
    elif t == "logs":
        values = "a list of " + ", ".join(f"`{n}`" for n in cat.LOGS)
    elif t in ("floats", "any"):
        values = "a list of numbers" if t == "floats" else "a value"
    else:
        values = cat.describe_type(t)
    if spec.type.endswith("?"):
        values += ", or `none`"
    if spec.domain:
        values += f"; {cat.describe_domain(spec.domain)}"
    default = "" if spec.default in (None, ()) else f"\n\ndefault: `{show(spec.default)}`"
    return f"allowed: {values}{default}"


def _row_text(name: str, row: object, kind: str) -> str:
    factory = getattr(row, "factory", None) or getattr(row, "function", None)
    doc = getattr(row, "doc", "")
    where = f" (`{factory}`)" if factory else ""
    return f"{kind} `{name}`{where}: {doc}" if doc else f"{kind} `{name}`{where}"


def _signature_of(name: str, params: Sequence[cat.P]) -> str:
    parts = []
    for p in params:
        if p.inferred:
            continue
        parts.append(p.name if p.default is REQUIRED else f"{p.name}={show(p.default)}")
    return f"{name}({', '.join(parts)})"


def name_hover(a: Analysis, word: str) -> str | None:
    """A catalogue name (layer, loss, optimizer, ...), a block or a `let` constant."""
    ctx = a.ctx
    if ctx is not None and word in ctx.blocks:
        b = ctx.blocks[word]
        return f"```netspec\n{signature(b)}\n```\n\ndefined at {relative(b.span.file, a.file)}:{b.span.line}"
    if ctx is not None and word in ctx.consts:
        where = ctx.let_spans.get(word)
        at = f"\n\ndefined at {relative(where.file, a.file)}:{where.line}" if where else ""
        return f"```netspec\nlet {word} = {show(ctx.consts[word])}\n```{at}"
    for kind, table in cat.ALL_KINDS.items():
        row = table.get(word)
        if row is not None:
            params = getattr(row, "params", ())
            text = f"```netspec\n{_signature_of(word, params)}\n```\n\n{_row_text(word, row, kind)}"
            if isinstance(row, cat.LayerSpec):
                text += f"\n\ninput: {row.expects}"
            return text
    if word in cat.SECTIONS:
        return f"**{word}** section; keys: " + ", ".join(f"`{s.key}`" for s in cat.SECTIONS[word])
    return None


def _import_hover(a: Analysis, line: int, column: int) -> str | None:
    target = import_at(a, line, column)
    return f"imports `{target}`" if target else None


def import_at(a: Analysis, line: int, column: int) -> str | None:
    """The file an `import "..."` at the position names (resolved as the checker does)."""
    if a.spec is None:
        return None
    from netspec.checker.definitions import import_path

    for imp in a.spec.of(ir.Import):
        if imp.span.line == line:
            return import_path(CheckContext(a.spec), a.spec, imp)
    return None


# ---------------------------------------------------------------- definition


def definition(a: Analysis, line: int, column: int) -> Span | None:
    """Where the name at the position is defined: a block, a `let`, an imported file (its
    first line)."""
    target = import_at(a, line, column)
    if target is not None:
        return Span(target, 1, 1, 1, 1)
    word = a.word_at(line, column)
    ctx = a.ctx
    if word is None or ctx is None:
        return None
    name = word[0]
    if name in ctx.blocks:
        b = ctx.blocks[name]
        return head(b.span, len("block ") + len(name))
    if name in ctx.let_spans:
        return ctx.let_spans[name]
    return None


# ---------------------------------------------------------------- symbols


def symbols(a: Analysis, coords: Coords) -> list[types.DocumentSymbol]:
    """The outline: the model and its layers (nested as written, each with its output
    shape), blocks, lets, imports and sections with their keys."""
    if a.spec is None:
        return []
    out = []
    for item in a.spec.items:
        if not item.span or item.span.file != a.file:
            continue
        if isinstance(item, ir.Model):
            m = a.model
            detail = f"{fmt_shape(m.input_shape)} → {fmt_shape(m.output_shape)}" if m is not None and \
                m.root.children else None
            kids = [_symbol(coords, s, s.key, types.SymbolKind.Property, None, len(s.key)) for s in item.settings]
            kids += [_entry_symbol(a, coords, e) for e in item.layers]
            out.append(_symbol(coords, item, item.name, types.SymbolKind.Class, detail, 6 + len(item.name), kids))
        elif isinstance(item, ir.Block):
            kids = [_entry_symbol(a, coords, e) for e in item.body]
            out.append(_symbol(coords, item, item.name, types.SymbolKind.Function, signature(item),
                               6 + len(item.name), kids))
        elif isinstance(item, ir.Let):
            out.append(_symbol(coords, item, item.name, types.SymbolKind.Constant, source(item.value),
                               4 + len(item.name)))
        elif isinstance(item, ir.Import):
            out.append(_symbol(coords, item, item.path, types.SymbolKind.File, None, 6))
        elif isinstance(item, ir.Section):
            kids = [_symbol(coords, s, s.key, types.SymbolKind.Property, source(s.value), len(s.key))
                    for s in item.entries if isinstance(s, ir.Setting)]
            out.append(_symbol(coords, item, item.kind, types.SymbolKind.Namespace, None, len(item.kind), kids))
    return out


def _symbol(coords: Coords, node: object, name: str, kind: types.SymbolKind, detail: str | None, width: int,
            children: list[types.DocumentSymbol] | None = None) -> types.DocumentSymbol:
    span: Span = node.span  # type: ignore[attr-defined]
    rng = coords.range(span)
    sel = coords.range(head(span, width))
    if (sel.end.line, sel.end.character) > (rng.end.line, rng.end.character):
        sel = types.Range(start=rng.start, end=rng.end)
    return types.DocumentSymbol(name=name or "?", kind=kind, range=rng, selection_range=sel, detail=detail,
                                children=children or None)


def _entry_symbol(a: Analysis, coords: Coords, e: ir.Entry) -> types.DocumentSymbol:
    if isinstance(e, ir.Setting):
        return _symbol(coords, e, e.key, types.SymbolKind.Property, source(e.value), len(e.key))
    made = a.nodes_of(e)
    typ = layer_type(e)
    name = e.name or (made[0][0].rsplit(".", 1)[-1] if len(made) == 1 else None) or (typ[0] if typ else "")
    shapes = {fmt_shape(o) for _, o in entry_shapes(a, e)}
    kind_word = typ[0] if typ else type(e).__name__.lower()
    detail = kind_word + (f" → {' | '.join(sorted(shapes))}" if shapes else "")
    if typ is not None:
        kind = types.SymbolKind.Module if a.ctx is not None and typ[0] in a.ctx.blocks else types.SymbolKind.Field
        return _symbol(coords, e, name or typ[0], kind, detail, len(e.name) if e.name else 1)
    kids = [_entry_symbol(a, coords, x) for x in getattr(e, "body", ())]
    kind = types.SymbolKind.Array if isinstance(e, ir.Repeat) else types.SymbolKind.Struct
    return _symbol(coords, e, name or kind_word, kind, detail, len(e.name) if e.name else 1, kids)


# ---------------------------------------------------------------- inlay hints


def inlay_hints(a: Analysis, coords: Coords, first_line: int, last_line: int) -> list[types.InlayHint]:
    """`→ [32, 14, 14]` after each layer, block use and construct of the model and the blocks
    (the distinct shapes of every use for a block's lines), within the 1-based lines."""
    if a.spec is None or a.model is None:
        return []
    hints = []
    for item in a.spec.items:
        if not isinstance(item, (ir.Model, ir.Block)) or item.span.file != a.file:
            continue
        if item.span.end_line < first_line or item.span.line > last_line:
            continue
        body = item.layers if isinstance(item, ir.Model) else item.body
        for e in iter_entries(body):
            if isinstance(e, ir.Setting) or not e.span or not first_line <= e.span.end_line <= last_line:
                continue
            shapes = list(dict.fromkeys(fmt_shape(o) for _, o in entry_shapes(a, e)))
            if not shapes:
                continue
            label = " | ".join(shapes) if len(shapes) <= 3 else f"{shapes[0]} … {shapes[-1]}"
            end = e.span
            hints.append(types.InlayHint(position=coords.position(end.end_line, end.end_column),
                                         label=f"→ {label}", kind=types.InlayHintKind.Type, padding_left=True))
    return hints


# ---------------------------------------------------------------- formatting


def formatting(a: Analysis, coords: Coords) -> list[types.TextEdit] | None:
    """`netspec fmt`'s layout as one edit of the whole document (none when it is formatted;
    None when it does not parse: fmt refuses it too)."""
    from netspec.syntax.parser import BOM

    text = a.text[1:] if a.bom else a.text
    try:
        out = format_text(text, a.file)
    except NetspecError:
        return None
    if out == text:
        return []
    end_line = len(coords.lines)
    end = coords.position(end_line, len(coords.lines[-1]) + 1) if coords.lines else types.Position(line=0, character=0)
    start = types.Position(line=0, character=0)
    return [types.TextEdit(range=types.Range(start=start, end=end), new_text=(BOM if a.bom else "") + out)]


def file_of(uri_path: str | None, fallback_dir: str) -> str:
    return os.path.abspath(uri_path) if uri_path else os.path.join(fallback_dir, "untitled.net")
