"""Completion: what may be written at a position, from the catalogue and the document.

In: an ``Analysis`` (document.py) and a 1-based position. Out: lsprotocol completion items:
layer names with argument snippets (`Conv2d(${1:out_channels}, ${2:kernel_size})`), the
argument names of the call being written, section keys, the values a key takes (losses,
optimizers, schedulers, sources, choices), block and `let` names, top-level keywords.

Where the cursor is comes from the text, not the syntax tree, since the line being typed
rarely parses: the brackets open before the cursor (the parser's ``open_brackets``) say
whether it is in the model, a block, a section or a call, and the line's start says the rest.
"""

from __future__ import annotations

import re

from lsprotocol import types

from netspec import catalogue as cat
from netspec.catalogue import REQUIRED
from netspec.syntax.expr import show
from netspec.syntax.parser import open_brackets
from netspec.tools.lsp.document import Analysis

K = types.CompletionItemKind
SNIPPET = types.InsertTextFormat.Snippet
VALUE_TABLES: dict[str, dict] = {"loss": cat.LOSSES, "optimizer": cat.OPTIMIZERS, "scheduler": cat.SCHEDULERS, "source": cat.SOURCES}
TOP_LEVEL = {
    "model": "model ${1:net} {\n\tinput: [${2:784}]\n\t$0\n}",
    "block": "block ${1:name}(${2:c}) {\n\t$0\n}",
    "let": "let ${1:name} = $0",
    "import": 'import "${1:blocks.net}"',
}
CONSTRUCTS = {
    "repeat": "repeat ${1:2} {\n\t$0\n}",
    "residual": "residual {\n\t$0\n}",
    "add": "add {\n\t$0\n}",
    "concat": "concat {\n\t$0\n}",
    "multiply": "multiply {\n\t$0\n}",
}
_KEY_LINE = re.compile(r"^\s*([A-Za-z_]\w*)\s*:\s*[A-Za-z_]*$")
_WORD_LINE = re.compile(r"^\s*[A-Za-z_]*$")
_CALLEE = re.compile(r"([A-Za-z_]\w*)\s*$")


def complete(a: Analysis, line: int, column: int, snippets: bool = True) -> list[types.CompletionItem]:
    lines = a.lines
    if not 1 <= line <= len(lines):
        return []
    offset = sum(len(x) + 1 for x in lines[:line - 1]) + min(column - 1, len(lines[line - 1]))
    text_before = lines[line - 1][:column - 1]
    stack = open_brackets(a.text, offset)
    where = _scope(lines, stack)
    inner = stack[-1][0] if stack else None
    if inner == "(":
        ch, ln, col = stack[-1]
        callee = _CALLEE.search(lines[ln - 1][:col - 1])
        paren = sum(len(x) + 1 for x in lines[:ln - 1]) + col - 1
        return _arguments(a, callee.group(1) if callee else "", where, a.text[paren + 1:offset])
    if inner == "[":
        ch, ln, col = stack[-1]
        key = re.search(r"([A-Za-z_]\w*)\s*:\s*$", lines[ln - 1][:col - 1])
        return _list_values(a, key.group(1) if key else "", where)
    if where is None:
        return _keywords(snippets) if _WORD_LINE.match(text_before) else []
    kind, name = where
    if kind in ("model", "block"):
        m = _KEY_LINE.match(text_before)
        if m and m.group(1) == "init":
            return _table_items(cat.INITIALISERS, "initialiser", snippets)
        if m and m.group(1) == "input":
            return []
        if m or _WORD_LINE.match(text_before):
            items = _layers(a, snippets)
            if not m and kind == "model" and len(stack) == 1:
                items += [_key_item(k, doc, "model") for k, doc in (("input", "per-sample input shape"),
                                                                     ("init", "model-wide initialiser"))]
            return items
        return _names(a, where)
    # a section
    m = _KEY_LINE.match(text_before)
    if m:
        return _setting_values(a, name, m.group(1), snippets)
    if _WORD_LINE.match(text_before):
        return [_key_item(s.key, s.doc, name) for s in cat.SECTIONS.get(name, [])]
    return _names(a, where)


def _scope(lines: list[str], stack: list[tuple[str, int, int]]) -> tuple[str, str] | None:
    """The innermost brace whose header says what it is: ("model", name), ("block", name) or
    ("section", kind); None at the top level."""
    for ch, ln, col in reversed(stack):
        if ch != "{":
            continue
        header = lines[ln - 1][:col - 1].strip()
        m = re.match(r"^(model|block)\s+([A-Za-z_]\w*)", header)
        if m:
            return m.group(1), m.group(2)
        if re.fullmatch(r"[A-Za-z_]\w*", header) and header not in ("residual", "add", "concat", "multiply"):
            return "section", header
    return None


def _snippet(name: str, params: tuple[cat.P, ...]) -> str:
    required = [p for p in params if p.default is REQUIRED and not p.inferred]
    if not required:
        return name
    return f"{name}(" + ", ".join(f"${{{i}:{p.name}}}" for i, p in enumerate(required, 1)) + ")$0"


def _call_item(name: str, params: tuple[cat.P, ...], kind: K, detail: str, doc: str, snippets: bool,
               sort: str = "1") -> types.CompletionItem:
    text = _snippet(name, params)
    return types.CompletionItem(
        label=name, kind=kind, detail=detail, documentation=doc or None, sort_text=f"{sort}{name}",
        insert_text=text if snippets else name,
        insert_text_format=SNIPPET if snippets and text != name else types.InsertTextFormat.PlainText)


def _layers(a: Analysis, snippets: bool) -> list[types.CompletionItem]:
    items = [_call_item(row.name, row.params, K.Class, f"{row.factory} · {row.category}", row.doc, snippets)
             for row in cat.LAYERS_LIST]
    ctx = a.ctx
    if ctx is not None:
        for b in ctx.blocks.values():
            params = tuple(cat.P(p.name, "any", REQUIRED if p.default is None else p.default) for p in b.params)
            items.append(_call_item(b.name, params, K.Module, "block", "", snippets, "0"))
    for word, body in CONSTRUCTS.items():
        row = cat.BRANCHES.get(word)
        items.append(types.CompletionItem(
            label=word, kind=K.Keyword, detail=row.doc if row is not None else word, sort_text=f"2{word}",
            insert_text=body if snippets else word,
            insert_text_format=SNIPPET if snippets else types.InsertTextFormat.PlainText))
    return items


def _key_item(key: str, doc: str, where: str) -> types.CompletionItem:
    return types.CompletionItem(label=key, kind=K.Property, detail=f"{where} key", documentation=doc,
                                insert_text=f"{key}: ", sort_text=f"0{key}")


def _keywords(snippets: bool) -> list[types.CompletionItem]:
    items = [types.CompletionItem(label=k, kind=K.Keyword, insert_text=body if snippets else k,
                                  insert_text_format=SNIPPET if snippets else types.InsertTextFormat.PlainText)
             for k, body in TOP_LEVEL.items()]
    for kind in cat.SECTIONS:
        items.append(types.CompletionItem(label=kind, kind=K.Module, detail="section",
                                          insert_text=f"{kind} {{\n\t$0\n}}" if snippets else kind,
                                          insert_text_format=SNIPPET if snippets else types.InsertTextFormat.PlainText))
    return items


def _table_items(table: dict, kind: str, snippets: bool) -> list[types.CompletionItem]:
    items = []
    for name, row in table.items():
        factory = getattr(row, "factory", None) or getattr(row, "function", None) or kind
        items.append(_call_item(name, getattr(row, "params", ()), K.Class, factory, getattr(row, "doc", ""),
                                snippets))
    return items


def _setting_values(a: Analysis, section: str, key: str, snippets: bool) -> list[types.CompletionItem]:
    spec = next((s for s in cat.SECTIONS.get(section, []) if s.key == key), None)
    if spec is None:
        return []
    t = spec.type.rstrip("?")
    items: list[types.CompletionItem] = []
    if t in VALUE_TABLES:
        items = _table_items(VALUE_TABLES[t], t, snippets)
    elif t == "early_stopping":
        items = [_call_item("EarlyStopping", cat.EARLY_STOPPING, K.Class, "early stopping", "", snippets)]
    else:
        for part in t.split("|"):
            if part.startswith("choice("):
                items += [types.CompletionItem(label=c, kind=K.EnumMember, detail=f"{key}")
                          for c in part[7:-1].split(",")]
            elif part == "bool":
                items += [types.CompletionItem(label=v, kind=K.EnumMember) for v in ("true", "false")]
    if spec.type.endswith("?"):
        items.append(types.CompletionItem(label="none", kind=K.EnumMember))
    return items + _lets(a)


def _list_values(a: Analysis, key: str, where: tuple[str, str] | None) -> list[types.CompletionItem]:
    if key == "metrics":
        return _table_items(cat.METRICS, "metric", True)
    if key == "augment":
        return _table_items(cat.AUGMENTS, "augmentation", True)
    if key == "log":
        return [types.CompletionItem(label=n, kind=K.EnumMember) for n in cat.LOGS]
    return _names(a, where)


def _arguments(a: Analysis, callee: str, where: tuple[str, str] | None, before: str) -> list[types.CompletionItem]:
    """Inside `callee(...)`: its argument names (`name=`) but those given already (by keyword, or
    by position), then the names a value may use. `before`: the call's text up to the cursor."""
    params: tuple[cat.P, ...] = ()
    ctx = a.ctx
    if ctx is not None and callee in ctx.blocks:
        params = tuple(cat.P(p.name, "any", REQUIRED if p.default is None else p.default)
                       for p in ctx.blocks[callee].params)
    else:
        for table in cat.ALL_KINDS.values():
            row = table.get(callee)
            if row is not None:
                params = tuple(p for p in getattr(row, "params", ()) if not p.inferred)
                break
        else:
            if callee == "EarlyStopping":
                params = cat.EARLY_STOPPING
    args = _top_level_args(before)
    given = {m.group(1) for x in args if (m := re.match(r"\s*([A-Za-z_]\w*)\s*=(?!=)", x))}
    positional = sum(1 for x in args[:-1] if x.strip() and not re.match(r"\s*[A-Za-z_]\w*\s*=(?!=)", x))
    given |= {p.name for p in params[:positional]}
    items = []
    if not re.search(r"=\s*[A-Za-z_]*$", args[-1]):  # not a value being typed: argument names first
        for i, p in enumerate(params):
            if p.name in given:
                continue
            default = "required" if p.default is REQUIRED else f"default {show(p.default)}"
            items.append(types.CompletionItem(
                label=f"{p.name}=", kind=K.Field, detail=f"{cat.describe_type(p.type)}, {default}",
                insert_text=f"{p.name}=", sort_text=f"0{i:03d}", filter_text=p.name))
    return items + _names(a, where)


def _lets(a: Analysis) -> list[types.CompletionItem]:
    ctx = a.ctx
    if ctx is None:
        return []
    return [types.CompletionItem(label=n, kind=K.Constant, detail=f"let {n} = {show(v)}", sort_text=f"3{n}")
            for n, v in ctx.consts.items()]


def _names(a: Analysis, where: tuple[str, str] | None) -> list[types.CompletionItem]:
    """Names a value may use here: the lets, a block's parameters inside it, `in_shape`."""
    items = _lets(a)
    ctx = a.ctx
    if where is not None and where[0] == "block" and ctx is not None and where[1] in ctx.blocks:
        items += [types.CompletionItem(label=p.name, kind=K.Variable, detail=f"parameter of {where[1]}",
                                       sort_text=f"2{p.name}") for p in ctx.blocks[where[1]].params]
    if where is not None and where[0] in ("model", "block"):
        items.append(types.CompletionItem(label="in_shape", kind=K.Variable, detail="the shape arriving here"))
    return items


def _top_level_args(text: str) -> list[str]:
    """A call's arguments so far, split at its own commas (not those of nested brackets or
    strings); the last one is being written."""
    parts: list[str] = []
    cur: list[str] = []
    depth, quoted = 0, False
    for c in text:
        if quoted:
            quoted = c != '"'
        elif c == '"':
            quoted = True
        elif c in "([{":
            depth += 1
        elif c in ")]}":
            depth -= 1
        elif c == "," and depth == 0:
            parts.append("".join(cur))
            cur = []
            continue
        cur.append(c)
    parts.append("".join(cur))
    return parts
