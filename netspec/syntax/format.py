"""`netspec fmt`: canonical layout of a spec, comments kept.

In: spec text. Out: the same tokens with canonical spacing and indentation (4 spaces
per brace level, `key: value`, `a, b`, spaced binary operators, `k=v` in calls, at
most one blank line, one trailing newline). Only whitespace changes, so the IR of the
result equals the IR of the input, and formatting is idempotent.
"""

from __future__ import annotations

from netspec.errors import remember_source
from netspec.syntax.parser import lexer_tokens, parse

OPEN, CLOSE = "([", ")]"
BINARY = {"+", "-", "*", "/", "//", "%", "**"}
KEYWORDS = {"let", "import", "block", "model", "repeat", "residual", "with"}


def format_text(text: str, file: str = "<fmt>") -> str:
    parse(text, file)  # refuse to format what does not parse
    remember_source(file, text)
    tokens = lexer_tokens(text)
    lines: list[str] = []
    cur: list[str] = []
    braces = brackets = 0
    line_indent = 0
    prev: str | None = None  # previous significant token value on this line
    let_line = False

    def flush(blank: bool) -> None:
        nonlocal cur, prev, let_line
        line = "".join(cur).rstrip()
        if line:
            lines.append("    " * line_indent + line)
        elif cur:
            lines.append("")
        if blank and lines and lines[-1] != "":
            lines.append("")
        cur, prev, let_line = [], None, False

    for i, tok in enumerate(tokens):
        v, t = str(tok), tok.type
        if t == "_NL":
            if brackets:
                # a line break inside ( ) or [ ]: continuation, indented one level deeper
                flush(False)
                line_indent = braces + 1
                continue
            flush(v.count("\n") > 1)
            line_indent = braces
            continue
        if t == "COMMENT":
            sep = "  " if cur else ""
            cur.append(sep + v.rstrip())
            prev = "#"
            continue
        if v == "}":
            braces = max(braces - 1, 0)
            if not cur:
                line_indent = braces
        if not cur:
            line_indent = braces + (1 if brackets else 0)
            if v in (")", "]") and brackets:
                line_indent = braces
        cur.append(_space(prev, v, brackets, let_line, tokens, i) + v)
        if not cur[0].strip():
            cur[0] = cur[0].lstrip()
        if v == "let" and len(cur) == 1:
            let_line = True
        if v in OPEN:
            brackets += 1
        elif v in CLOSE:
            brackets = max(brackets - 1, 0)
        elif v == "{":
            braces += 1
        prev = v
    flush(False)
    while lines and lines[-1] == "":
        lines.pop()
    return "\n".join(lines) + "\n"


def _space(prev: str | None, v: str, brackets: int, let_line: bool, tokens, i: int) -> str:
    if prev is None:
        return ""
    if prev == "#":
        return " "
    if v in (",", ";", ":") or v in CLOSE:
        return ""
    if prev in OPEN:
        return ""
    if v == "=" or prev == "=":
        return " " if let_line and brackets == 0 else ""
    if v in OPEN:
        # call or grouping: `f(x)` vs `a * (b + c)`
        return "" if (prev[0].isalnum() or prev[0] == "_") and prev not in KEYWORDS | {"true", "false", "none"} \
            or prev in CLOSE else " "
    if v in BINARY and _is_binary(prev):
        return " "
    if prev in BINARY:
        # after a binary operator a space; after a unary sign none
        before = _prev_value(tokens, i, 2)
        return " " if before is not None and _is_binary(before) else ""
    return " "


def _is_binary(prev: str) -> bool:
    """Whether an operator after `prev` is binary (prev ends an operand)."""
    return prev not in BINARY | {",", ":", ";", "=", "{", "(", "["} | KEYWORDS


def _prev_value(tokens, i: int, back: int) -> str | None:
    j, seen = i - 1, 0
    while j >= 0:
        if tokens[j].type not in ("_NL", "COMMENT"):
            seen += 1
            if seen == back:
                return str(tokens[j])
        j -= 1
    return None


def unparse(spec) -> str:
    """IR -> canonical source text (the resolved spec written into a run directory)."""
    from netspec import ir
    from netspec.syntax.expr import source

    def entry(e, depth: int) -> list[str]:
        pad = "    " * depth
        if isinstance(e, ir.Setting):
            return [f"{pad}{e.key}: {source(e.value)}"]
        if isinstance(e, ir.Layer):
            head = f"{e.name}: " if e.name else ""
            inits = (" with " + ", ".join(f"{k.name}={source(k.value)}" for k in e.inits)) if e.inits else ""
            return [f"{pad}{head}{source(e.expr)}{inits}"]
        head = f"{e.name}: " if e.name else ""
        if isinstance(e, ir.Repeat):
            kw = f"repeat {source(e.count)} "
        elif isinstance(e, ir.Residual):
            kw = "residual "
        elif isinstance(e, ir.Branches):
            kw = source(e.head) + " "
        else:  # ir.Seq
            kw = ""
        return [f"{pad}{head}{kw}{{", *(x for b in e.body for x in entry(b, depth + 1)), f"{pad}}}"]

    out: list[str] = []
    for item in spec.items:
        if isinstance(item, ir.Let):
            out.append(f"let {item.name} = {source(item.value)}")
        elif isinstance(item, ir.Import):
            out.append(f'import "{item.path}"')
        elif isinstance(item, ir.Block):
            params = ", ".join(p.name + (f"={source(p.default)}" if p.default is not None else "") for p in item.params)
            out += [f"block {item.name}({params}) {{", *(x for e in item.body for x in entry(e, 1)), "}"]
        elif isinstance(item, ir.Model):
            out += [f"model {item.name} {{", *(x for e in (*item.settings, *item.layers) for x in entry(e, 1)), "}"]
        elif isinstance(item, ir.Section):
            out += [f"{item.kind} {{", *(x for e in item.entries for x in entry(e, 1)), "}"]
    return "\n".join(out) + "\n"
