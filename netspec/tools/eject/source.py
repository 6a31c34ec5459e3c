"""Python source for the ejected program: spec values as literals, long lines wrapped to
LINE, and netspec's own code copied from its modules (``copied_source``).

In: values, code lines, modules. Out: text that ruff accepts at LINE characters a line.

    copied_source(netspec.layers, ["InputTransform"])  # the class and what it names, as source
"""

from __future__ import annotations

import inspect
import re
from typing import Any

import numpy as np

from netspec import catalogue as cat
from netspec import ir

LINE = 120  # the ejected program is ruff-clean at this line length


class Raw(list):
    """A list of Python expressions, written as they are."""


def py(value: Any) -> str:
    """A spec value as Python source (repr round-trips floats exactly)."""
    if isinstance(value, float) and value != value:
        return 'float("nan")'
    if isinstance(value, float) and value in (float("inf"), float("-inf")):
        return f'float("{value}")'
    if isinstance(value, Raw):
        return "[" + ", ".join(value) + "]"
    if isinstance(value, tuple):
        return "(" + ", ".join(py(v) for v in value) + ("," if len(value) == 1 else "") + ")"
    if isinstance(value, list):
        return "[" + ", ".join(py(v) for v in value) + "]"
    if isinstance(value, np.generic):
        return py(value.item())
    if isinstance(value, dict):
        return "{" + ", ".join(f"{py(k)}: {py(v)}" for k, v in value.items()) + "}"
    if isinstance(value, str) and '"' not in value and "\\" not in value and value.isprintable():
        return f'"{value}"'
    return repr(value)


def call(name: str, args: list[str]) -> str:
    return f"{name}({', '.join(args)})"


def nondefault(params: tuple[cat.P, ...], kwargs: dict[str, Any], keep: tuple[str, ...] = ()) -> list[str]:
    """keyword=value for the arguments that differ from the catalogue defaults (and required ones)."""
    out = []
    for p in params:
        if p.name not in kwargs:
            continue
        v = kwargs[p.name]
        if p.name in keep or p.default is cat.REQUIRED or p.inferred or not same(v, p.default):
            out.append(f"{p.name}={py(v)}")
    known = {p.name for p in params}
    out += [f"{k}={py(v)}" for k, v in kwargs.items() if k not in known]
    return out


def same(a: Any, b: Any) -> bool:
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b))
    return type(a) is type(b) and a == b or (isinstance(a, (int, float)) and isinstance(b, (int, float))
                                              and not isinstance(a, bool) and not isinstance(b, bool) and a == b)



# ---------------------------------------------------------------- copied netspec code


def _module_names(module: Any) -> dict[str, Any]:
    return {n: o for n, o in vars(module).items()
            if (inspect.isclass(o) or inspect.isfunction(o)) and getattr(o, "__module__", None) == module.__name__}


def _module_constants(module: Any) -> dict[str, tuple[int, str]]:
    """Module-level UPPER_CASE assignments of `module`: name -> (line, their source text)."""
    import ast

    text = inspect.getsource(module)
    out = {}
    for node in ast.parse(text).body:
        targets = node.targets if isinstance(node, ast.Assign) else [node.target] if isinstance(node, ast.AnnAssign) \
            else []
        for t in targets:
            if isinstance(t, ast.Name) and t.id.isupper():
                out[t.id] = (node.lineno, ast.get_source_segment(text, node) or "")
    return out


def copied_source(module: Any, roots: list[str], exclude: tuple[str, ...] = ()) -> str:
    """The source of `roots` in `module` and of every module-level class, function and
    UPPER_CASE constant they name (but `exclude`), in the module's own order."""
    names = _module_names(module)
    constants = {k: v for k, v in _module_constants(module).items() if k not in exclude}
    want: set[str] = set()
    todo = list(roots)
    while todo:
        name = todo.pop()
        if name in want or (name not in names and name not in constants):
            continue
        want.add(name)
        text = constants[name][1] if name in constants else inspect.getsource(names[name])
        todo += [n for n in re.findall(r"\b[A-Za-z_][A-Za-z0-9_]*\b", text)
                 if (n in names or n in constants) and n not in want]

    def line(n: str) -> int:
        return constants[n][0] if n in constants else inspect.getsourcelines(names[n])[1]

    order = sorted(want, key=line)  # the module's own order
    chunks = [(constants[n][1] if n in constants else inspect.getsource(names[n])).rstrip() for n in order]
    # the program imports torch and F at the top; netspec's lazy imports would shadow them (they
    # go with the blank line after them, so none is left where they stood)
    text = "\n\n\n".join(chunks)
    return re.sub(r"^[ ]+import torch(?:\.nn\.functional as F)?\n(?:\n(?=[ ]+\S))?", "", text, flags=re.M)



def fit_line(line: str, indent: int, nth: int = 2) -> str:
    """A one-line call longer than LINE, broken after its `nth` opening parenthesis (a model
    row `("name", nn.Conv2d(...)),` breaks inside the constructor's)."""
    if "\n" in line or len(line) <= LINE:
        return line
    at = -1
    for _ in range(nth):
        at = line.find("(", at + 1)
        if at < 0:
            return line
    return line[:at + 1] + "\n" + " " * indent + line[at + 1:].lstrip()


def shape_text(shape: ir.Shape) -> str:
    return "[" + ", ".join("_" if d is None else str(d) for d in shape) + "]"



def const(name: str, value: Any, note: str = "") -> str:
    """`NAME = value  # note`; a long list is written a few elements per line."""
    note = f"  # {note}" if note else ""
    line = f"{name} = {py(value)}{note}"
    if len(line) <= LINE or not isinstance(value, (list, tuple)) or not value:
        return line
    items = list(value) if isinstance(value, Raw) else [py(v) for v in value]
    rows, row = [], ""
    for it in items:
        if row and 4 + len(row) + len(it) + 2 > LINE:
            rows.append(row.rstrip())
            row = ""
        row += it + ", "
    rows.append(row.rstrip())
    open_, close = ("[", "]") if isinstance(value, list) else ("(", ")")
    if any(4 + len(r) > LINE for r in rows) and not isinstance(value, Raw):  # long items: pprint's layout
        import pprint

        rows = pprint.pformat(list(value), width=LINE - 4, compact=True)[1:-1].split("\n")
        rows = [r.strip() for r in rows]
    text = f"{name} = {open_}{note}\n" + "\n".join("    " + r for r in rows) + f"\n{close}"
    return "\n".join(x if len(x) <= LINE else x + "  # noqa: E501" for x in text.split("\n"))


def float64(prefix: str, code: str) -> str:
    """`prefix` + the column as a float64 array, wrapped at commas to fit LINE."""
    if code.startswith("np.array(") and code.endswith("dtype=np.float64)") and code.count("np.array(") == 1:
        return prefix + code
    return wrap(prefix + "np.asarray(", code, ", dtype=np.float64)")


def wrap_code(line: str, indent: int = 8) -> str:
    """One line of Python longer than LINE, broken after commas that sit inside brackets and
    outside strings (found with Python's tokenizer); `# noqa: E501` where that cannot help."""
    import io
    import tokenize

    if len(line) <= LINE or "\n" in line:
        return line
    cuts, depth = [], 0
    try:
        for tok in tokenize.generate_tokens(io.StringIO(line).readline):
            if tok.type == tokenize.OP and tok.string in "([{":
                depth += 1
            elif tok.type == tokenize.OP and tok.string in ")]}":
                depth -= 1
            elif tok.type == tokenize.OP and tok.string == "," and depth >= 1:
                cuts.append(tok.end[1])
    except (tokenize.TokenError, IndentationError, SyntaxError):
        return line + "  # noqa: E501"
    out: list[str] = []
    start = last = 0
    for cut in [*cuts, len(line)]:
        width = (0 if not out else indent) + len(line[start:cut].strip())
        if width > LINE and last > start:
            out.append(line[start:last].rstrip() if not out else " " * indent + line[start:last].strip())
            start = last
        last = cut
    out.append(line[start:].rstrip() if not out else " " * indent + line[start:].strip())
    return "\n".join(x if len(x) <= LINE else x + "  # noqa: E501" for x in out)


def wrap(head: str, body: str, tail: str, indent: int = 8) -> str:
    """head + body + tail on one line, or body on continuation lines broken after commas
    (table code holds no strings, so every comma is a place Python may break)."""
    if len(head) + len(body) + len(tail) <= LINE or "\n" in body:
        return head + body + tail
    lines, line = [], ""
    for piece in (body + tail).split(" "):  # inside the call's parentheses any space may break
        if line and indent + len(line) + len(piece) + 1 > LINE:
            lines.append(line)
            line = ""
        line = f"{line} {piece}" if line else piece
    lines.append(line)
    return head.rstrip() + "\n" + "\n".join(" " * indent + x for x in lines)
