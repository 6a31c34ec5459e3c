"""`netspec eject`: a checked spec -> one standalone, readable PyTorch training program.

In: ``ir.CheckedSpec`` and the data it names (read once, as `train` reads it, to bake the
training-split facts into the program: normalisation statistics, class vocabularies, CSV
columns). Out: the text of a Python program that imports torch and numpy (Pillow for image
folders), never netspec, and does what `netspec train` does: the same `nn.Sequential(
OrderedDict)` built under the same seed, the same data, split and sample order, the same
preprocessing, augmentation, loss, optimizer (fused where netspec fuses), scheduler, metrics,
early stopping and checkpoint. With the same seed it ends with weights `torch.equal` to the
run's (tests/test_eject.py checks it for every example).

netspec's own modules (LSTM returning the sequence, Add/Concat/Multiply, the input
transform, the augmentation ops) are copied into the program from their source, so it is
exactly the code netspec runs. What a one-file program leaves out: DDP, image caches on disk
(it decodes image folders into memory), TensorBoard, curves and the confusion picture.

    netspec eject examples/mnist.net -o train_mnist.py && python train_mnist.py --epochs 1
"""

from __future__ import annotations

import inspect
import re
from pathlib import Path
from typing import Any

import numpy as np

from netspec import __version__, ir
from netspec import catalogue as cat
from netspec.errors import NetspecError, error


class EjectError(NetspecError):
    pass


# ---------------------------------------------------------------- values as Python source


def py(value: Any) -> str:
    """A spec value as Python source (repr round-trips floats exactly)."""
    if isinstance(value, float) and value != value:
        return 'float("nan")'
    if isinstance(value, float) and value in (float("inf"), float("-inf")):
        return f'float("{value}")'
    if isinstance(value, _Raw):
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


def _call(name: str, args: list[str]) -> str:
    return f"{name}({', '.join(args)})"


def _nondefault(params: tuple[cat.P, ...], kwargs: dict[str, Any], keep: tuple[str, ...] = ()) -> list[str]:
    """keyword=value for the arguments that differ from the catalogue defaults (and required ones)."""
    out = []
    for p in params:
        if p.name not in kwargs:
            continue
        v = kwargs[p.name]
        if p.name in keep or p.default is cat.REQUIRED or p.inferred or not _same(v, p.default):
            out.append(f"{p.name}={py(v)}")
    known = {p.name for p in params}
    out += [f"{k}={py(v)}" for k, v in kwargs.items() if k not in known]
    return out


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b))
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
    # the program imports torch and F at the top; netspec's lazy imports would shadow them
    text = "\n\n\n".join(chunks)
    text = re.sub(r"^[ ]+import torch(?:\.nn\.functional as F)?\n", "", text, flags=re.M)
    return re.sub(r"(:\n|\"\"\"\n)\n+(?=[ ]+\S)", r"\1", text)  # no blank line left where they stood


# ---------------------------------------------------------------- the model


def _signature_defaults(dotted: str) -> dict[str, Any]:
    """The constructor defaults of a torch (or netspec) class, by parameter name."""
    import importlib

    module, _, name = dotted.rpartition(".")
    try:
        cls = getattr(importlib.import_module(module), name)
        params = inspect.signature(cls.__init__).parameters.values()
    except (ImportError, AttributeError, TypeError, ValueError):
        return {}
    return {p.name: p.default for p in params if p.default is not inspect.Parameter.empty}


def _positional(spec: cat.LayerSpec, kwargs: dict[str, Any]) -> list[str]:
    """The leading required (or inferred) arguments, written positionally as people write
    them (`nn.Conv2d(1, 32, 3, padding=1)`), where the torch signature has them in that order."""
    import importlib

    module, _, name = spec.factory.rpartition(".")
    try:
        cls = getattr(importlib.import_module(module), name)
        names = [p.name for p in list(inspect.signature(cls.__init__).parameters.values())[1:]
                 if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    except (ImportError, AttributeError, TypeError, ValueError):
        return []
    out = []
    for i, p in enumerate(spec.params):
        if not (p.inferred or p.default is cat.REQUIRED) or p.name not in kwargs or i >= len(names) \
                or names[i] != p.name:
            break
        out.append(p.name)
    return out


class _ModelWriter:
    def __init__(self) -> None:
        self.own: list[str] = []  # netspec.layers classes used

    def factory(self, dotted: str) -> str:
        module, _, name = dotted.rpartition(".")
        if module == "torch.nn":
            return f"nn.{name}"
        if module == "netspec.layers":
            if name not in self.own:
                self.own.append(name)
            return name
        raise error(f"eject: cannot write the factory {dotted}")

    def node(self, node: ir.Node, indent: int) -> str:
        if isinstance(node, ir.LayerNode):
            spec = cat.LAYERS[node.type]
            kwargs = dict(node.kwargs)
            positional = _positional(spec, kwargs)
            rest = {k: v for k, v in kwargs.items() if k not in positional}
            torch_defaults = _signature_defaults(spec.factory)
            # an argument is left out only where torch's own default is the same value
            # (netspec's `Softmax` means dim=-1; torch's bare Softmax() means an implicit dim)
            keep = tuple(k for k, _ in spec.fixed) + tuple(
                k for k, v in rest.items()
                if torch_defaults and (k not in torch_defaults or not _same(v, torch_defaults[k])))
            args = [py(kwargs[k]) for k in positional] + _nondefault(spec.params, rest, keep)
            return _call(self.factory(spec.factory), args)
        if isinstance(node, ir.BranchNode):
            bspec = cat.BRANCHES[node.op]
            extra = _nondefault(bspec.params, dict(node.kwargs))
            inner = self.ordered(node.branches, indent)
            return _call(self.factory(bspec.factory), [inner, *extra])
        inner = self.ordered(node.children, indent)
        if node.kind == "residual":
            return _call(self.factory("netspec.layers.Residual"), [inner])
        return f"nn.Sequential({inner})"

    def ordered(self, nodes: tuple[ir.Node, ...], indent: int) -> str:
        pad = " " * (indent + 4)
        rows = []
        for c in nodes:
            row = f"{pad}({py(c.name)}, {self.node(c, indent + 4)}),"
            note = f"  # -> {_shape(c.out_shape)}"
            first = row.split("\n", 1)[0]
            if len(first) + len(note) <= LINE:
                row = row.replace(first, first + note, 1) if "\n" in row else row + note
            else:
                rows.append(f"{pad}{note.strip()}")
            rows.append(_fit(row, indent + 8))
        return "OrderedDict([\n" + "\n".join(rows) + "\n" + " " * indent + "])"


LINE = 120  # the ejected program is ruff-clean at this line length


def _fit(line: str, indent: int, nth: int = 2) -> str:
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


def _shape(shape: ir.Shape) -> str:
    return "[" + ", ".join("_" if d is None else str(d) for d in shape) + "]"


def _init_call(init: ir.InitSpec, target: str) -> str:
    spec = cat.INITIALISERS[init.name]
    args = _nondefault(spec.params, dict(init.kwargs))
    return f"nn.init.{spec.function}({', '.join([target, *args])})"


def model_code(model: ir.CheckedModel, seed_name: str = "SEED") -> tuple[str, list[str]]:
    w = _ModelWriter()
    body = w.ordered(model.root.children, 4)
    lines = [
        "def build_model() -> nn.Sequential:",
        f'    """{model.name}: input {_shape(model.input_shape)} -> output {_shape(model.output_shape)}.',
        "    Every module is constructed in this order under the seed, as netspec does.\"\"\"",
        f"    torch.manual_seed({seed_name})",
        f"    model = nn.Sequential({body})",
    ]
    if model.init is not None:
        matrix = "p.dim() >= 2"
        lines += [f"    # init: {model.init.name} for every weight with >= 2 dimensions, in named_parameters order",
                  "    with torch.no_grad():",
                  "        for name, p in model.named_parameters():",
                  f'            if name.rsplit(".", 1)[-1].startswith("weight") and {matrix}:',
                  f"                {_init_call(model.init, 'p')}"]
    for path, node in ir.walk(model.root):
        for key, init in node.inits if isinstance(node, ir.LayerNode) else ():
            skip = " and p.dim() >= 2" if cat.INITIALISERS[init.name].matrix_only else ""
            lines += [f"    # {path}: {key}={init.name}",
                      "    with torch.no_grad():",
                      f"        for name, p in model.get_submodule({py(path)}).named_parameters(recurse=False):",
                      f'            if (name == {py(key)} or name.startswith({py(key + "_")})){skip}:',
                      f"                {_init_call(init, 'p')}"]
    lines.append("    return model")
    return "\n".join(lines), w.own


# ---------------------------------------------------------------- table expressions

TABLE_HELPERS = {
    "linspace": "def t_linspace(a, b, n):\n    return np.linspace(float(a), float(b), int(n))",
    "arange": "def t_arange(*args):\n    return np.arange(*[float(v) for v in args])",
    "range": "def t_range(*args):\n    return np.arange(*[float(v) for v in args])",
    "normal": "def t_normal(rng, mean, std, size):\n    return rng.normal(float(mean), float(std), t_size(size))",
    "uniform": "def t_uniform(rng, a, b, size):\n    return rng.uniform(float(a), float(b), t_size(size))",
    "randint": "def t_randint(rng, a, b, size):\n    return rng.integers(int(a), int(b), t_size(size)).astype(np.float64)",
    "zeros": "def t_zeros(size):\n    return np.zeros(t_size(size))",
    "ones": "def t_ones(size):\n    return np.ones(t_size(size))",
    "stack": "def t_stack(*cols):\n    return np.stack([np.asarray(c, dtype=np.float64) for c in cols], axis=-1)",
    "concat": "def t_concat(*parts):\n"
              "    return np.concatenate([np.atleast_1d(np.asarray(p, dtype=np.float64)) for p in parts])",
    "reshape": "def t_reshape(a, shape):\n"
               "    return np.reshape(np.asarray(a, dtype=np.float64), [int(v) for v in np.atleast_1d(shape)])",
    "cumsum": "def t_cumsum(a, axis=-1):\n    return np.cumsum(np.asarray(a, dtype=np.float64), axis=int(axis))",
    "flip": "def t_flip(a, axis=-1):\n    return np.flip(np.asarray(a, dtype=np.float64), axis=int(axis))",
    "sum": "def t_sum(a, axis=None):\n"
           "    return np.sum(np.asarray(a, dtype=np.float64), axis=None if axis is None else int(axis))",
    "mean": "def t_mean(a, axis=None):\n"
            "    return np.mean(np.asarray(a, dtype=np.float64), axis=None if axis is None else int(axis))",
    "sigmoid": "def t_sigmoid(a):\n    return 1.0 / (1.0 + np.exp(-np.asarray(a, dtype=np.float64)))",
    "min": "def t_min(a, b=None):\n    return np.min(a) if b is None else np.minimum(a, b)",
    "max": "def t_max(a, b=None):\n    return np.max(a) if b is None else np.maximum(a, b)",
}
SIMPLE = {"sin", "cos", "tan", "exp", "log", "sqrt", "abs", "tanh", "round", "floor"}
RANDOM = ("normal", "uniform", "randint")


class _TableWriter:
    def __init__(self, env: dict[str, Any]):
        self.env = env
        self.used: set[str] = set()
        self.x_is_column = False  # in the y column `x` is the x column; in x itself, a `let x` if any

    def expr(self, e: ir.Expr, need: int = 0, arg: bool = False) -> str:
        """Python for a table expression, with only the parentheses Python needs (its
        precedence is the spec's); a number list is an np.array, or a plain list as a
        function's argument (the helpers convert it as netspec does)."""
        from netspec.syntax.expr import _level

        text = self._expr(e, arg)
        return f"({text})" if _level(e) < need else text

    def _expr(self, e: ir.Expr, arg: bool) -> str:
        from netspec.syntax.expr import _OP_LEVEL, _POSTFIX, _UNARY

        if isinstance(e, ir.Num):
            return py(e.value)
        if isinstance(e, ir.Ref):
            if e.name == "x" and self.x_is_column:
                return "x"
            if e.name in self.env:
                v = self.env[e.name]
                return f"({py(v)})" if v < 0 else py(v)  # a pasted -2 must stay one operand: (-2) ** 2
            if e.name in cat.CONSTANTS:
                return {"pi": "np.pi", "e": "np.e"}.get(e.name, py(cat.CONSTANTS[e.name]))
            raise NetspecError.at(e.span, f"eject: unknown name `{e.name}` in a table expression")
        if isinstance(e, (ir.ListLit, ir.TupleLit)):
            items = [self.item(i) for i in e.items]
            inner = ", ".join(items)
            if len(inner) > 80:  # one row of numbers per line
                rows, line = [], ""
                for it in items:
                    if line and len(line) + len(it) > 90:
                        rows.append(line.rstrip())
                        line = ""
                    line += it + ", "
                rows.append(line.rstrip())
                inner = "\n        " + "\n        ".join(rows) + "\n    "
            return f"[{inner}]" if arg else f"np.array([{inner}], dtype=np.float64)"
        if isinstance(e, ir.UnaryOp):
            inner = self.expr(e.operand, _UNARY)
            return f"-{inner}" if e.op == "-" else inner
        if isinstance(e, ir.BinOp):
            level = _OP_LEVEL[e.op]
            if e.op == "**":  # netspec raises in float64 (np.power): never Python's exact integers
                base = self.expr(e.left, _POSTFIX)
                number = e.left.value if isinstance(e.left, ir.Num) else \
                    self.env[e.left.name] if isinstance(e.left, ir.Ref) and e.left.name in self.env \
                    and not (e.left.name == "x" and self.x_is_column) else None
                if number is not None:
                    base = f"({py(float(number))})" if number < 0 else py(float(number))
                return f"{base} ** {self.expr(e.right, _UNARY)}"
            return f"{self.expr(e.left, level)} {e.op} {self.expr(e.right, level + 1)}"
        if isinstance(e, ir.Call):
            args = [self.expr(a, arg=True) for a in e.args]
            if e.func in SIMPLE:
                return f"np.{e.func}(np.asarray({args[0]}, dtype=np.float64))" if isinstance(e.args[0], ir.Num) \
                    else f"np.{e.func}({args[0]})"
            if e.func not in TABLE_HELPERS:
                raise NetspecError.at(e.span, f"eject: cannot write the table function `{e.func}`")
            self.used.add(e.func)
            if e.func in RANDOM:
                args = ["rng", *args]
            return f"t_{e.func}({', '.join(args)})"
        raise NetspecError.at(getattr(e, "span", ir.NO_SPAN), "eject: this is not allowed in a table expression")

    def item(self, e: ir.Expr) -> str:
        """A list element: nested lists stay Python lists (np.array makes the rows)."""
        if isinstance(e, (ir.ListLit, ir.TupleLit)):
            return "[" + ", ".join(self.item(i) for i in e.items) + "]"
        return self.expr(e)

    def helpers(self) -> str:
        out = []
        if self.used & {"normal", "uniform", "randint", "zeros", "ones"}:
            out.append("def t_size(v):\n    return tuple(int(s) for s in np.atleast_1d(np.asarray(v)).ravel())")
        out += [TABLE_HELPERS[f] for f in sorted(self.used)]
        return "\n\n\n".join(out)


# ---------------------------------------------------------------- data


def _const(name: str, value: Any, note: str = "") -> str:
    """`NAME = value  # note`; a long list is written a few elements per line."""
    note = f"  # {note}" if note else ""
    line = f"{name} = {py(value)}{note}"
    if len(line) <= LINE or not isinstance(value, (list, tuple)) or not value:
        return line
    items = list(value) if isinstance(value, _Raw) else [py(v) for v in value]
    rows, row = [], ""
    for it in items:
        if row and 4 + len(row) + len(it) + 2 > LINE:
            rows.append(row.rstrip())
            row = ""
        row += it + ", "
    rows.append(row.rstrip())
    open_, close = ("[", "]") if isinstance(value, list) else ("(", ")")
    if any(4 + len(r) > LINE for r in rows) and not isinstance(value, _Raw):  # long items: pprint's layout
        import pprint

        rows = pprint.pformat(list(value), width=LINE - 4, compact=True)[1:-1].split("\n")
        rows = [r.strip() for r in rows]
    text = f"{name} = {open_}{note}\n" + "\n".join("    " + r for r in rows) + f"\n{close}"
    return "\n".join(x if len(x) <= LINE else x + "  # noqa: E501" for x in text.split("\n"))


def _float64(prefix: str, code: str) -> str:
    """`prefix` + the column as a float64 array, wrapped at commas to fit LINE."""
    if code.startswith("np.array(") and code.endswith("dtype=np.float64)") and code.count("np.array(") == 1:
        return prefix + code
    return _wrap(prefix + "np.asarray(", code, ", dtype=np.float64)")


def _wrap_code(line: str, indent: int = 8) -> str:
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


def _wrap(head: str, body: str, tail: str, indent: int = 8) -> str:
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


IDX_READER = '''
def read_idx(path: Path) -> np.ndarray:
    """An IDX file (raw or .gz): magic 0 0 <type> <dims>, big-endian sizes, then the data."""
    with (gzip.open(path, "rb") if path.suffix == ".gz" else open(path, "rb")) as f:
        data = f.read()
    kind, ndim = data[2], data[3]
    dtype = {0x08: ">u1", 0x09: ">i1", 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}[kind]
    dims = [int.from_bytes(data[4 + 4 * i:8 + 4 * i], "big") for i in range(ndim)]
    return np.frombuffer(data, dtype=dtype, offset=4 + 4 * ndim).reshape(dims).astype(np.dtype(dtype).newbyteorder("="))
'''

CSV_READER = '''
def read_csv(path: Path, delimiter: str) -> dict[str, list[str]]:
    """Columns by header name, cells stripped; blank lines skipped."""
    with open(path, encoding="utf-8-sig", newline="") as f:
        rows = [r for r in csv.reader(f, delimiter=delimiter) if any(c.strip() for c in r)]
    header = [h.strip() for h in rows[0]]
    return {h: [r[i].strip() for r in rows[1:]] for i, h in enumerate(header)}


def csv_features(columns: dict[str, list[str]]) -> np.ndarray:
    """The training columns in order: numbers as float32, categories one-hot (training's values)."""
    blocks = []
    for name, kind, values in FEATURE_COLUMNS:
        cells = columns[name]
        if kind == "categorical":
            block = np.zeros((len(cells), len(values)), np.float32)
            block[np.arange(len(cells)), [values.index(c) for c in cells]] = 1.0
        else:
            block = np.asarray([float(c) for c in cells], np.float32)[:, None]
        blocks.append(block)
    n = len(next(iter(columns.values())))
    return np.concatenate(blocks, axis=1) if blocks else np.zeros((n, 0), np.float32)
'''

IMAGE_READER = '''
IMAGE_EXTENSIONS = {IMAGE_EXTENSIONS}
PIL_FORMATS = {PIL_FORMATS}


def class_images(folder: Path, root_real: str) -> list[Path]:
    """The images under one class folder, recursively: hidden entries skipped, links to
    folders followed unless they leave the root or loop; sorted by relative path."""
    found = []
    stack = [(folder, frozenset({root_real, os.path.realpath(folder)}))]
    while stack:
        current, ancestors = stack.pop()
        with os.scandir(current) as entries:
            for entry in [e for e in entries if not e.name.startswith(".")]:
                path = Path(entry.path)
                if entry.is_dir(follow_symlinks=True):
                    real = os.path.realpath(entry.path)
                    inside = real == root_real or real.startswith(root_real.rstrip(os.sep) + os.sep)
                    if not (entry.is_symlink() and (not inside or real in ancestors)):
                        stack.append((path, ancestors | {real}))
                elif entry.is_file(follow_symlinks=True) and path.suffix.lower() in IMAGE_EXTENSIONS:
                    found.append(path)
    found.sort(key=lambda p: p.relative_to(folder).parts)
    return found


def decode(path: Path) -> np.ndarray:
    """One image as uint8 [CHANNELS, H, W] at IMAGE_SIZE (Pillow, bilinear resize)."""
    from PIL import Image

    h, w = IMAGE_SIZE
    with open(path, "rb") as f, Image.open(f, formats=PIL_FORMATS) as im:
        im.load()
        im = _to_mode(im, "L" if CHANNELS == 1 else "RGB")
        if im.size != (w, h):
            im = im.resize((w, h), Image.Resampling.BILINEAR)
        a = np.asarray(im, dtype=np.uint8)
    return a[None] if CHANNELS == 1 else a.transpose(2, 0, 1)


def read_image_folder(root: Path, classes: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """root/<class>/**/<image> for the training classes, decoded into memory."""
    root_real = os.path.realpath(root)
    x, labels = [], []
    for label, name in enumerate(classes):
        folder = root / name
        if not folder.is_dir():
            continue
        for path in class_images(folder, root_real):
            try:
                x.append(decode(path))
            except Exception as e:  # Pillow raises OSError, SyntaxError, ValueError, ...
                if not SKIP_BAD:
                    sys.exit(f"{path}: cannot decode this image ({type(e).__name__}: {e})")
                print(f"warning: {path}: skipped, cannot decode it ({type(e).__name__})", file=sys.stderr)
                continue
            labels.append(label)
    h, w = IMAGE_SIZE
    return np.stack(x) if x else np.zeros((0, CHANNELS, h, w), np.uint8), np.asarray(labels, dtype=np.int64)
'''


class _DataWriter:
    def __init__(self, checked: ir.CheckedSpec, pre: Any, env: dict[str, Any]):
        self.checked = checked
        self.data: ir.DataConfig = checked.data  # type: ignore[assignment]
        self.pre = pre
        self.env = env
        self.readers: list[str] = []
        self.tables = _TableWriter(env)
        self.functions: list[str] = []

    def reader(self, text: str) -> None:
        if text not in self.readers:
            self.readers.append(text)

    def source(self, src: ir.Source, name: str, seed: str) -> str:
        """A function `load_<name>() -> (x raw, y raw or None)`."""
        kind = src.kind
        args = dict(src.kwargs)
        doc = f'    """The {name} source: {kind}(...)."""'
        if kind in ("mnist", "fashion_mnist"):
            from netspec.data.datasets import DATASETS, file_in, locate

            split = args.get("split") or "train"
            roles = (f"{split}_images", f"{split}_labels")
            folder = locate(kind, args.get("root"), roles, allow_download=False)
            images = file_in(folder, DATASETS[kind].files[roles[0]])
            labels = file_in(folder, DATASETS[kind].files[roles[1]])
            self.reader(IDX_READER)
            body = [f"    images = read_idx(Path({py(str(images))}))",
                    f"    labels = read_idx(Path({py(str(labels))}))",
                    "    return images.reshape(len(images), *SOURCE_SHAPE), labels"]
        elif kind == "idx":
            self.reader(IDX_READER)
            body = [f"    images = read_idx(Path({py(str(Path(args['images']).resolve()))}))",
                    f"    labels = read_idx(Path({py(str(Path(args['labels']).resolve()))}))",
                    "    if images.ndim == 3:",
                    "        images = images[:, None]",
                    "    return images, labels"]
        elif kind == "csv":
            self.reader(CSV_READER)
            targets = self.pre.targets or []
            body = [f"    columns = read_csv(Path({py(str(Path(args['path']).resolve()))}), {py(args.get('delimiter') or ',')})",
                    "    x = csv_features(columns)"]
            if self.pre.task == "input":
                body.append("    return x, None")
            elif len(targets) > 1 or not (self.pre.task in ("class", "binary") or self.pre.one_hot):
                body.append(f"    y = np.asarray([[float(columns[t][r]) for t in {py(targets)}] "
                            "for r in range(len(x))], np.float32)")
                body.append("    return x, y")
            elif self.pre.class_values is not None and isinstance(self.pre.class_values[0], str):
                body.append(f"    return x, np.asarray(columns[{py(targets[0])}], dtype=object)")
            else:
                body.append(f"    return x, np.asarray([float(c) for c in columns[{py(targets[0])}]], np.float64)")
        elif kind == "table":
            before = set(self.tables.used)
            self.tables.used = set()
            self.tables.x_is_column = False
            xs = self.tables.expr(args["x"])
            self.tables.x_is_column = True
            ys = self.tables.expr(args["y"])
            random = bool(self.tables.used & set(RANDOM))
            self.tables.used |= before
            body = [f"    rng = np.random.default_rng({seed})  # table(...) draws: seeded by train.seed"] if random else []
            body += [_float64("    x = ", xs),
                     _float64("    y = ", ys),
                    "    x = x[:, None] if x.ndim == 1 else x",
                    "    y = y[:, None] if y.ndim == 1 else y",
                    "    return x.astype(np.float32), y"]
        elif kind in ("npy", "npz"):
            if kind == "npy":
                load = [f"    x = np.load({py(str(Path(args['x']).resolve()))})"]
                load.append(f"    y = np.load({py(str(Path(args['y']).resolve()))})" if args.get("y") else "    y = None")
            else:
                load = [f"    with np.load({py(str(Path(args['path']).resolve()))}) as arrays:",
                        f"        x = arrays[{py(args.get('x') or 'x')}]",
                        f"        y = arrays[{py(args['y'])}]" if args.get("y") else "        y = None"]
            body = load + ["    if x.dtype == np.uint8 and x.ndim == 3:",
                           "        x = x[:, None]",
                           "    return x, y"]
        elif kind == "image_folder":
            from netspec.data import images as image_module
            from netspec.data.images import IMAGE_EXTENSIONS

            self.reader(copied_source(image_module, ["_to_mode"]) + "\n\n" + IMAGE_READER
                        .replace("{IMAGE_EXTENSIONS}", "{" + py(sorted(IMAGE_EXTENSIONS))[1:-1] + "}")
                        .replace("{PIL_FORMATS}", py(list(image_module.PIL_FORMATS))))
            root = Path(str(args["path"])).expanduser().resolve()
            body = [f"    return read_image_folder(Path({py(str(root))}), CLASSES)"]
        else:
            raise error(f"eject: cannot write the data source {kind}(...)")
        body = [_wrap_code(b) if "\n" not in b else b for b in body]
        self.functions.append("\n".join([f"def load_{name}() -> tuple[np.ndarray, np.ndarray | None]:", doc, *body]))
        return f"load_{name}"

    def targets_code(self) -> str:
        """encode_targets(y): raw labels/values -> what the loss takes (training's vocabulary)."""
        pre = self.pre
        out = self.checked.model.output_shape
        lines = ["def encode_targets(y: np.ndarray | None) -> np.ndarray | None:",
                 f'    """Targets as {cat.LOSSES[self.checked.train.loss.name].name} takes them ({pre.task})."""',
                 "    if y is None:",
                 "        return None"]
        if pre.task == "input":
            lines = lines[:2] + ["    return None  # the targets are the preprocessed inputs"]
            return "\n".join(lines)
        if not (pre.task in ("class", "binary") or pre.one_hot):
            if None in out:
                lines.append("    return np.asarray(y, np.float32)")
            else:
                lines.append(f"    return np.asarray(y, np.float32).reshape(len(y), {', '.join(map(str, out))})")
            return "\n".join(lines)
        if pre.class_values is not None:
            lines = [_const("CLASS_VALUES", list(pre.class_values), "the training split's labels, in class-index order"),
                     "", "", *lines]
            lines += ["    index = {v: i for i, v in enumerate(CLASS_VALUES)}",
                      "    keys = y.tolist() if y.dtype == object else "
                      "np.asarray(y, np.float64).reshape(-1).astype(np.int64).tolist()",
                      "    idx = np.asarray([index[k] for k in keys], dtype=np.int64)"]
        else:
            lines.append("    idx = np.asarray(y, np.float64).reshape(len(y)).astype(np.int64)")
        k = len(pre.classes or ())
        if pre.one_hot:
            lines += [f"    onehot = np.zeros((len(idx), {k}), np.float32)",
                      "    onehot[np.arange(len(idx)), idx] = 1.0",
                      "    return onehot"]
        elif pre.task == "binary":
            shape = [d for d in out] if None not in out else [1]
            lines.append(f"    return idx.astype(np.float32).reshape(len(idx), {', '.join(map(str, shape))})")
        else:
            lines.append("    return idx")
        return "\n".join(lines)

    def split_code(self) -> str:
        data = self.data
        lines = ["def split_rows(n: int, labels: np.ndarray | None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:",
                 '    """(train, validation, test) rows of the training source: seeded, as netspec splits."""',
                 "    rows = np.arange(n)"]
        if data.subset is not None:
            lines += [f"    if {data.subset} < n:  # subset: a seeded random sample",
                      f"        rows = np.sort(np.random.default_rng(SEED + 7).choice(n, {data.subset}, replace=False))"]
        if data.split is None and not data.validation:
            lines.append("    return rows, rows[:0], rows[:0]")
            return "\n".join(lines)
        fractions = data.split if data.split is not None else (1 - data.validation, data.validation, 0.0)
        lines += [f"    fractions = {py(tuple(fractions))}",
                  "    rng = np.random.default_rng(SEED)",
                  "",
                  "    def cut(perm):",
                  "        a, b = int(round(len(perm) * fractions[0])), int(round(len(perm) * fractions[1]))",
                  "        return perm[:a], perm[a:a + b], perm[a + b:]",
                  ""]
        if data.stratify:
            lines += ["    flat = labels.reshape(len(labels), -1)",
                      "    keys = flat[rows, 0] if flat.shape[1] == 1 else flat[rows].argmax(1)",
                      "    parts = [[], [], []]",
                      "    for k in np.unique(keys):  # stratified: each class split on its own",
                      "        for i, p in enumerate(cut(rng.permutation(rows[keys == k]))):",
                      "            parts[i].append(p)",
                      "    out = [np.sort(np.concatenate(p)) if p else np.zeros(0, np.int64) for p in parts]",
                      "    return out[0], out[1], out[2]"]
        elif data.split is None:
            lines += ["    perm = rng.permutation(rows)",
                      f"    k = int(round(len(rows) * {py(data.validation)}))  # validation: the first part of the permutation",
                      "    return perm[k:], perm[:k], perm[:0]"]
        else:
            lines += ["    return cut(rng.permutation(rows))"]
        return "\n".join(lines)


# ---------------------------------------------------------------- the loop


def _device_line(device: str) -> str:
    if device == "auto":
        return ('DEVICE = torch.device(  # as netspec picks `device: auto`\n'
                '    "cuda" if torch.cuda.is_available() else "mps" if torch.backends.mps.is_available() else "cpu")')
    return f"DEVICE = torch.device({py(device)})"


def _loss_code(cfg: ir.CallValue) -> str:
    spec = cat.LOSSES[cfg.name]
    kwargs = dict(cfg.kwargs)
    args = []
    for p in spec.params:
        if p.name in kwargs and not _same(kwargs[p.name], p.default):
            v = kwargs[p.name]
            args.append(f"{p.name}=torch.tensor({py(list(v))}, dtype=torch.float32)" if p.name in ("weight", "pos_weight")
                        and v is not None else f"{p.name}={py(v)}")
    return f"nn.{cfg.name}({', '.join(args)})"


def _optimizer_code(cfg: ir.CallValue) -> str:
    spec = cat.OPTIMIZERS[cfg.name]
    kwargs = dict(cfg.kwargs)
    args = ["model.parameters()", *_nondefault(spec.params, kwargs, ("lr",))]
    from netspec.builder import takes_fused  # torch: eject reads torch signatures anyway

    if takes_fused(cfg):
        # netspec steps these optimizers with torch's fused kernels (same algorithm, faster on CPU)
        args.append("fused=FUSED")
    return f"torch.optim.{cfg.name}({', '.join(args)})"


def _scheduler_code(cfg: ir.CallValue | None) -> str:
    if cfg is None:
        return "None"
    spec = cat.SCHEDULERS[cfg.name]
    kwargs = {k: (list(v) if isinstance(v, tuple) else v) for k, v in cfg.kwargs}
    args = ["optimizer", *_nondefault(spec.params, kwargs)]
    if cfg.name == "OneCycleLR" and kwargs.get("total_steps") is None:
        args = [a for a in args if not a.startswith("total_steps=")]
        args += ["epochs=EPOCHS", "steps_per_epoch=steps_per_epoch"]
    return f"torch.optim.lr_scheduler.{cfg.name}({', '.join(args)})"


def _metrics_code(cfg: ir.TrainConfig) -> str:
    """netspec's MetricState (copied source) and the spec's metrics."""
    from netspec.train import metrics

    source = copied_source(metrics, ["MetricState", "metric_key"]).replace("ir.CallValue", "Metric")
    items = [f"Metric({', '.join([py(m.name), *[f'{k}={py(v)}' for k, v in m.kwargs]])})" for m in cfg.metrics]
    return "\n".join([
        "# ---------------------------------------------------------------- metrics (netspec's)",
        "",
        "",
        "class Metric:",
        '    """One entry of `metrics: [...]`: a name and its arguments."""',
        "",
        "    def __init__(self, name: str, **kwargs: Any) -> None:",
        "        self.name, self.kwargs = name, kwargs",
        "",
        "    def get(self, key: str, default: Any = None) -> Any:",
        "        return self.kwargs.get(key, default)",
        "",
        "",
        _const("METRICS", _Raw(items)),
        "",
        "",
        source,
        "",
        "",
        "def new_metrics() -> MetricState:",
        "    return MetricState(METRICS, TASK, LOSS_NAME, len(CLASSES) or None, DEVICE)",
    ])


class _Raw(list):
    """A list of Python expressions, written as they are."""


LOOP = '''
# ---------------------------------------------------------------- training


def epoch_order(n: int, epoch: int) -> torch.Tensor:
    """The sample order of one epoch: a function of (seed, epoch) only, so a resumed run repeats it."""
    if not SHUFFLE:
        return torch.arange(n)
    return torch.randperm(n, generator=torch.Generator().manual_seed(SEED * 1_000_003 + epoch))


def to_model_units(xb: torch.Tensor) -> torch.Tensor:
    """Raw samples -> model units: uint8 images / 255, token ids int64, numbers float32."""
    if TOKENS:
        return xb.long()
    return xb.to(torch.float32) / SCALE if xb.dtype == torch.uint8 else xb.to(torch.float32)


def autocast():
    if PRECISION == "fp32":
        return contextlib.nullcontext()
    return torch.autocast(DEVICE.type, dtype=torch.bfloat16 if PRECISION == "bf16" else torch.float16)


def weight_params(model: nn.Module) -> list[torch.Tensor]:
    return [p for name, p in model.named_parameters() if name.rsplit(".", 1)[-1].startswith("weight")]


def compute_loss(model, loss_fn, x, y, scale):
    with autocast():
        out = model(x)
    out = out.float()
    data_loss = loss_fn(out, y)
    loss = data_loss * scale if scale != 1.0 else data_loss
    if L1:
        loss = loss + L1 * sum(w.abs().sum() for w in weight_params(model))
    return loss, out, data_loss.detach()


def train_step(model, loss_fn, optimizer, scaler, x, y):
    if CLOSURE:  # LBFGS re-evaluates the loss
        holder = {}

        def closure():
            optimizer.zero_grad(set_to_none=True)
            loss, out, data_loss = compute_loss(model, loss_fn, x, y, 1.0)
            loss.backward()
            holder["out"], holder["loss"] = out.detach(), data_loss
            return loss

        optimizer.step(closure)
        return holder["out"], holder["loss"]
    optimizer.zero_grad(set_to_none=True)
    loss, out, data_loss = compute_loss(model, loss_fn, x, y, 1.0)
    if scaler is not None:
        scaler.scale(loss).backward()
        if CLIP_GRAD_NORM:
            scaler.unscale_(optimizer)
            nn.utils.clip_grad_norm_(model.parameters(), CLIP_GRAD_NORM)
        scaler.step(optimizer)
        scaler.update()
    else:
        loss.backward()
        if CLIP_GRAD_NORM:
            nn.utils.clip_grad_norm_(model.parameters(), CLIP_GRAD_NORM)
        optimizer.step()
    return out.detach(), data_loss


def train_epoch(model, transform, augment, loss_fn, optimizer, scheduler, scaler, x_all, y_all, epoch):
    model.train()
    metrics = new_metrics()
    n = len(x_all)
    order = epoch_order(n, epoch).to(DEVICE)
    for step, start in enumerate(range(0, n, batch_size_for(n)), start=1):
        idx = order[start:start + batch_size_for(n)]
        x = to_model_units(x_all.index_select(0, idx))
        if augment is not None:
            x = augment(x, SEED, epoch, step)
        x = transform(x)
        if CHANNELS_LAST and x.dim() == 4:
            x = x.contiguous(memory_format=torch.channels_last)
        y = x.detach() if y_all is None else y_all.index_select(0, idx)
        out, data_loss = train_step(model, loss_fn, optimizer, scaler, x, y)
        metrics.update(out, y, data_loss * len(idx) if REDUCTION == "mean" else data_loss)
        if not bool(torch.isfinite(data_loss)):
            sys.exit(f"loss became {float(data_loss)} at epoch {epoch}, step {step}; training stopped")
        if SCHEDULER_INTERVAL == "batch":
            scheduler.step()
    return metrics.result()


@torch.inference_mode()
def evaluate(model, transform, loss_fn, x_all, y_all):
    was = model.training
    model.eval()
    metrics = new_metrics()
    for start in range(0, len(x_all), EVAL_BATCH):
        x = transform(to_model_units(x_all[start:start + EVAL_BATCH]))
        y = x if y_all is None else y_all[start:start + EVAL_BATCH]
        with autocast():
            out = model(x)
        out = out.float()
        loss = loss_fn(out, y)
        metrics.update(out, y, loss * len(x) if REDUCTION == "mean" else loss)
    model.train(was)
    return metrics.result()


def batch_size_for(n: int) -> int:
    return n if BATCH_SIZE is None else min(BATCH_SIZE, n)


def save_together(objects: dict[Path, object]) -> None:
    """torch.save each to a temp file beside it, then rename them all: a kill or a full disk
    while saving never leaves half a file, and the files describe the same epoch."""
    temps = []
    try:
        for path, obj in objects.items():
            path.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
            os.close(fd)
            temps.append(tmp)
            torch.save(obj, tmp)
        for tmp, path in zip(temps, objects, strict=True):
            os.replace(tmp, path)
    finally:
        for tmp in temps:
            if os.path.exists(tmp):
                os.unlink(tmp)


def positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError("must be at least 1")
    return value


def improved(value: float, best: float | None) -> bool:
    if best is None or not math.isfinite(best):
        return math.isfinite(value)
    return value < best - MIN_DELTA if MINIMIZE else value > best + MIN_DELTA


def main() -> None:
    global EPOCHS, CHANNELS_LAST
    parser = argparse.ArgumentParser(description=__doc__.split("\\n\\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--epochs", type=positive, default=EPOCHS, help=f"epochs to train (default {EPOCHS})")
    parser.add_argument("--out", type=Path, default=Path(OUT), help=f"output folder (default {OUT})")
    parser.add_argument("--resume", action="store_true", help="continue from OUT/checkpoint.pt")
    args = parser.parse_args()
    EPOCHS = args.epochs
    CHANNELS_LAST = DEVICE.type == "cuda" and PRECISION != "fp32" and HAS_CONV

    data = load_data()
    x_train = torch.from_numpy(np.ascontiguousarray(data["train"][0])).to(DEVICE)
    y_train = None if data["train"][1] is None else torch.from_numpy(np.ascontiguousarray(data["train"][1])).to(DEVICE)
    model = build_model().to(DEVICE)
    if CHANNELS_LAST:
        model = model.to(memory_format=torch.channels_last)
    transform = InputTransform(SHIFT, DIV, AXIS, SOURCE_SHAPE, INPUT_SHAPE, TOKENS).to(DEVICE)
    augment = make_augmenter()
    loss_fn = LOSS.to(DEVICE)
    steps_per_epoch = math.ceil(len(x_train) / batch_size_for(len(x_train)))
    optimizer = make_optimizer(model)
    scheduler = make_scheduler(optimizer, steps_per_epoch)
    scaler = torch.amp.GradScaler(DEVICE.type) if PRECISION == "fp16" else None
    print(f"{MODEL_NAME}: {sum(p.numel() for p in model.parameters()):,} parameters, "
          f"{len(x_train):,} training samples, device {DEVICE}")

    history, best_value, best_epoch, bad_epochs, best_weights, first, saved = [], None, 0, 0, None, 1, 0
    if args.resume:
        if not (args.out / "checkpoint.pt").is_file():
            sys.exit(f"{args.out / 'checkpoint.pt'}: no checkpoint to resume from; train without --resume first")
        ckpt = torch.load(args.out / "checkpoint.pt", map_location="cpu", weights_only=True)
        model.load_state_dict(ckpt["model"])
        optimizer.load_state_dict(ckpt["optimizer"])
        if scheduler is not None and ckpt.get("scheduler") is not None:
            scheduler.load_state_dict(ckpt["scheduler"])
        if scaler is not None and ckpt.get("scaler"):
            scaler.load_state_dict(ckpt["scaler"])
        torch.set_rng_state(ckpt["rng"])
        history, best_value, best_epoch = ckpt["history"], ckpt["best_value"], ckpt["best_epoch"]
        bad_epochs, best_weights, first = ckpt["bad_epochs"], ckpt.get("best_weights"), ckpt["epoch"] + 1
    for epoch in range(first, EPOCHS + 1):
        start = time.perf_counter()
        lr = optimizer.param_groups[0]["lr"]
        row = {"epoch": epoch, **train_epoch(model, transform, augment, loss_fn, optimizer, scheduler, scaler,
                                             x_train, y_train, epoch)}
        if "val" in data:
            x_val, y_val = (None if a is None else torch.from_numpy(np.ascontiguousarray(a)).to(DEVICE)
                            for a in data["val"])
            row.update({f"val_{k}": v for k, v in evaluate(model, transform, loss_fn, x_val, y_val).items()})
        row.update({"lr": lr, "seconds": time.perf_counter() - start})
        if SCHEDULER_INTERVAL == "epoch":
            scheduler.step()
        elif SCHEDULER_INTERVAL == "plateau":
            scheduler.step(row.get("val_loss", row["loss"]))
        value = row[MONITOR]
        history.append(row)
        if improved(value, best_value):
            best_value, best_epoch, bad_epochs = value, epoch, 0
            best_weights = {k: v.detach().clone() for k, v in model.state_dict().items()}
        else:
            bad_epochs += 1
        stop = PATIENCE is not None and bad_epochs > 0 and bad_epochs >= PATIENCE
        print("  ".join(f"{k} {v:.4g}" if isinstance(v, float) else f"{k} {v}" for k, v in row.items()), flush=True)
        if epoch % CHECKPOINT_EVERY == 0 or epoch == EPOCHS or stop:
            keep = best_weights if SAVE == "best" and best_weights is not None else model.state_dict()
            save_together({args.out / "model.pt": keep, args.out / "checkpoint.pt": {
                "model": model.state_dict(), "optimizer": optimizer.state_dict(),
                "scheduler": scheduler.state_dict() if scheduler is not None else None,
                "scaler": scaler.state_dict() if scaler is not None else None,
                "epoch": epoch, "rng": torch.get_rng_state(), "history": history,
                "best_value": best_value, "best_epoch": best_epoch, "bad_epochs": bad_epochs,
                "best_weights": best_weights}})
            saved = epoch
        if stop:
            print(f"early stopping: `{MONITOR}` has not improved for {bad_epochs} epochs "
                  f"(best {best_value:.4g} at epoch {best_epoch})")
            break
    if SAVE == "best" and best_weights is not None:
        model.load_state_dict(best_weights)
    if "test" in data:
        x_test, y_test = (None if a is None else torch.from_numpy(np.ascontiguousarray(a)).to(DEVICE)
                          for a in data["test"])
        result = evaluate(model, transform, loss_fn, x_test, y_test)
        print("test: " + "  ".join(f"test_{k} {v:.4g}" for k, v in result.items()))
    if saved:
        print(f"weights saved in {args.out / 'model.pt'} (epoch {best_epoch if SAVE == 'best' else saved})")


if __name__ == "__main__":
    main()
'''


def _doc_text(text: str) -> str:
    """Text safe inside a \"\"\"docstring\"\"\" (file names may hold backslashes and quotes)."""
    return text.replace("\\", "\\\\").replace('"""', '\\"\\"\\"')


def _header(checked: ir.CheckedSpec, out_name: str, source: str, overrides: tuple[str, ...]) -> str:
    import shlex

    spec_name = _doc_text(Path(source).name)
    out = _doc_text(out_name)
    words = ["netspec eject", shlex.quote(source if len(source) < 90 else Path(source).name),
             *[f"--set {shlex.quote(o)}" for o in overrides], "-o", shlex.quote(out_name)]
    lines, line = [], ""
    for w in words:  # shell continuation lines, each short enough for the line-length rule
        if line and len(line) + len(w) > 100:
            lines.append(line + " \\")
            line = "        "
        line = f"{line} {w}" if line.strip() else line + w
    lines.append(line)
    command = _doc_text("\n    ".join(lines))
    return f'''"""{out}: the {checked.model.name} model of {spec_name}, as a standalone PyTorch program.

Written by netspec {__version__} with

    {command}

It imports torch and numpy, never netspec. It builds the same model under the same seed,
reads and splits the same data, preprocesses, augments, trains, evaluates and checkpoints as
`netspec train` does on one device, and ends with the same weights on the CPU. The training
split's statistics and vocabularies are written in below (netspec computed them when it
wrote this file).

    python {out}                  # train; writes {_doc_text(Path(out_name).stem)}_out/model.pt and checkpoint.pt
    python {out} --epochs 1       # a quick run
    python {out} --resume         # continue from the checkpoint
"""
'''


def eject(checked: ir.CheckedSpec, out_name: str = "train.py", source: str | None = None,
          overrides: tuple[str, ...] = ()) -> str:
    """The program text for `checked` (its data are read, as `netspec train` would); `source`
    and `overrides` are the spec and --set values as the user gave them (for the docstring)."""
    from netspec import layers
    from netspec.data.prepare import prepare

    if checked.data is None or checked.data.train is None:
        raise error(f"{checked.spec.file}: eject needs a data section with a `train:` source",
                    'add e.g. data { train: mnist(split="train") }')
    cfg = checked.train
    if cfg.compile:
        raise error("eject: `compile: true` is not written into the program", "remove it; eager training is exact")
    prepared = prepare(checked, allow_download=False)
    from netspec.train.trainer import check_before_training, monitor_of

    check_before_training(checked, prepared)  # what `netspec train` would refuse, the program must not start
    pre = prepared.pre
    env = {k: v for k, v in checked.constants if isinstance(v, (int, float)) and not isinstance(v, bool)}
    model_text, own = model_code(checked.model)
    own_classes = copied_source(layers, [*own, "InputTransform"])
    dw = _DataWriter(checked, pre, env)
    data = checked.data
    train_src = data.train
    assert train_src is not None  # checked above
    train_fn = dw.source(train_src, "train", "SEED")
    test_fn = dw.source(data.test, "test", "SEED + 1") if data.test is not None else None
    es = cfg.early_stopping
    monitor, minimize = monitor_of(checked, prepared.val is not None)
    sched = cfg.scheduler
    interval = cat.SCHEDULERS[sched.name].interval if sched else None
    classes = list(pre.classes) if pre.classes else []
    constants = [
        f"MODEL_NAME = {py(checked.model.name)}",
        f"SEED = {py(cfg.seed)}",
        f"EPOCHS = {py(cfg.epochs)}",
        f"BATCH_SIZE = {py(data.batch_size)}  # None: the whole training split in one batch",
        f"SHUFFLE = {py(data.shuffle)}",
        "EVAL_BATCH = 2048",
        _device_line(cfg.device),
        f"PRECISION = {py(cfg.precision)}",
        'CHANNELS_LAST = False  # set in main(): conv models under autocast on CUDA',
        *(['FUSED = DEVICE.type in ("cpu", "cuda")  # netspec steps SGD/Adam/AdamW/Adagrad with the fused kernels']
          if "fused=FUSED" in _optimizer_code(cfg.optimizer) else []),
        f"HAS_CONV = {py(any(n.type.startswith('Conv') for n in ir.layers(checked.model.root)))}"
        "  # channels_last under autocast on CUDA, as netspec",
        f"OUT = {py(Path(out_name).stem + '_out')}",
        "",
        "# preprocessing learnt from the training split (netspec computed these from the same data)",
        f"TASK = {py(pre.task)}",
        _const("CLASSES", classes),
        f"SOURCE_SHAPE = {py(list(pre.source_shape))}  # one raw sample",
        f"INPUT_SHAPE = {py([d for d in checked.model.input_shape])}  # the model's input (None: variable)",
        f"SCALE = {py(pre.scale)}  # raw uint8 images are divided by this",
        f"TOKENS = {py(pre.tokens)}",
        _const("SHIFT", pre.shift, f"normalize: {pre.normalize}"),
        _const("DIV", pre.div),
        f"AXIS = {py(pre.axis)}",
    ]
    if pre.columns:
        constants.append(_const("FEATURE_COLUMNS", [list(c) + ([] if len(c) > 2 else [None]) for c in pre.columns],
                                "CSV feature columns in input order: name, kind, the training split's categories"))
    if train_src.kind == "image_folder":
        from netspec.data.prepare import image_geometry

        size, channels = image_geometry(checked)
        constants += [f"IMAGE_SIZE = {py(list(size or ()))}", f"CHANNELS = {py(channels)}",
                      f"SKIP_BAD = {py(data.skip_bad)}  # skip_bad: unreadable images are skipped with a warning"]
    constants += [
        "",
        "# training",
        f"LOSS = {_loss_code(cfg.loss)}",
        f"REDUCTION = {py(str(dict(cfg.loss.kwargs).get('reduction', 'mean')))}",
        f"CLOSURE = {py(cat.OPTIMIZERS[cfg.optimizer.name].closure)}",
        f"L1 = {py(cfg.l1)}",
        f"CLIP_GRAD_NORM = {py(cfg.clip_grad_norm)}",
        f"SCHEDULER_INTERVAL = {py(interval)}",
        f"LOSS_NAME = {py(cfg.loss.name)}",
        f"MONITOR = {py(monitor)}  # early stopping and the best epoch",
        f"MINIMIZE = {py(minimize)}",
        f"MIN_DELTA = {py(float(es.get('min_delta', 0.0)) if es else 0.0)}",
        f"PATIENCE = {py(int(es.get('patience', 3)) if es else None)}",
        f"SAVE = {py(cfg.save)}  # model.pt holds the best epoch's weights, or the last",
        f"CHECKPOINT_EVERY = {py(cfg.checkpoint_every)}",
    ]
    data_fns = dw.functions
    load = ["def load_data() -> dict[str, tuple[np.ndarray, np.ndarray | None]]:",
            '    """train / val / test: raw samples (uint8 images or numbers) and encoded targets."""',
            f"    x, y = {train_fn}()",
            "    y = encode_targets(y)",
            "    train, val, test = split_rows(len(x), y)",
            "    out = {\"train\": (x[train], None if y is None else y[train])}",
            "    if len(val):",
            "        out[\"val\"] = (x[val], None if y is None else y[val])",
            "    if len(test):",
            "        out[\"test\"] = (x[test], None if y is None else y[test])"]
    if test_fn:
        load += [f"    tx, ty = {test_fn}()", "    out[\"test\"] = (tx, encode_targets(ty))"]
    load.append("    return out")
    augment = _augment_code(checked, pre)
    imports = IMPORTS
    parts = [
        _header(checked, out_name, source or checked.spec.file, overrides),
        "\n".join(imports) + "\n\n" + "\n".join(constants),
        "# ---------------------------------------------------------------- netspec's own modules (its source)",
        own_classes,
        "# ---------------------------------------------------------------- the model",
        model_text,
        "def make_optimizer(model: nn.Module) -> torch.optim.Optimizer:\n"
        + _wrap_code(f"    return {_optimizer_code(cfg.optimizer)}"),
        "def make_scheduler(optimizer: torch.optim.Optimizer, steps_per_epoch: int):\n"
        + _wrap_code(f"    return {_scheduler_code(sched)}"),
        "# ---------------------------------------------------------------- data",
        *dw.readers,
        *([dw.tables.helpers()] if dw.tables.used else []),
        *data_fns,
        dw.targets_code(),
        dw.split_code(),
        "\n".join(load),
        augment,
        _metrics_code(cfg),
        LOOP.strip(),
    ]
    text = "\n\n\n".join(p.strip("\n") for p in parts if p.strip()) + "\n"
    return _prune_imports(text)


IMPORTS = [
    "from __future__ import annotations", "",
    "import argparse", "import contextlib", "import csv", "import gzip", "import hashlib", "import math", "import os",
    "import sys", "import tempfile", "import time", "from collections import OrderedDict",
    "from collections.abc import Callable, Mapping, Sequence", "from pathlib import Path", "from typing import Any", "",
    "import numpy as np", "import torch", "import torch.nn.functional as F", "from torch import nn",
]


def _prune_imports(text: str) -> str:
    """Drop the names of IMPORTS that the program never uses (read from its syntax tree)."""
    import ast

    tree = ast.parse(text)
    used = {n.id for n in ast.walk(tree) if isinstance(n, ast.Name)}
    kept = []
    for line in IMPORTS:
        if not line or line.startswith("from __future__"):
            kept.append(line)
            continue
        if line.startswith("from "):
            head, _, names = line.partition(" import ")
            alive = [n for n in names.split(", ") if n in used]
            if alive:
                kept.append(f"{head} import {', '.join(alive)}")
            continue
        name = line.rsplit(" ", 1)[-1].split(".")[0]
        if name in used:
            kept.append(line)
    block = "\n".join(kept).replace("\n\n\n", "\n\n")
    return text.replace("\n".join(IMPORTS), block, 1)


def _augment_code(checked: ir.CheckedSpec, pre: Any) -> str:
    data = checked.data
    if data is None or not data.augment:
        return "def make_augmenter():\n    return None  # no augment: in the spec"
    from netspec.data import augment

    names = sorted({a.name for a in data.augment})
    ops = [(a.name, dict(a.kwargs)) for a in data.augment]
    roots = ["Augmenter", *[f"_{n}" for n in names]]
    source = copied_source(augment, roots + ["SettingError", "_image_shape"],
                           exclude=("OPS", "AUGMENTS", "REQUIRED", "ATTEMPTS", "GRAY"))
    params = {n: [(p.name, p.default if p.default is not cat.REQUIRED else None) for p in cat.AUGMENTS[n].params]
              for n in names}
    shim = [
        "# ---------------------------------------------------------------- augmentation (netspec's, batched)",
        f"ATTEMPTS = {py(augment.ATTEMPTS)}",
        f"GRAY = {py(augment.GRAY)}",
        "AUG_PARAMS = {  # each op's parameters and defaults, as netspec's catalogue has them",
        *[_wrap(f"    {py(n)}: ", py(v), ",") for n, v in params.items()],
        "}",
        "Shape = tuple",
        "Draws = dict",
        "",
        "",
        "class _Row:  # the parameter list of one op, as netspec's catalogue holds it",
        "    def __init__(self, names):",
        "        self.params = [type('P', (), {'name': n, 'default': d})() for n, d in names]",
        "",
        "",
        "AUGMENTS = {name: _Row(names) for name, names in AUG_PARAMS.items()}",
        "",
        "",
        source,
        "",
        "",
        "OPS = {" + ", ".join(f"{py(n)}: _{n}" for n in names) + "}",
        "",
        "",
        "def make_augmenter():",
        "    return Augmenter([",
        *[_wrap(f"        ({py(n)}, ", py(kw), "),", 12) for n, kw in ops],
        "    ], tuple(SOURCE_SHAPE))",
    ]
    text = "\n".join(shim)
    if "_make_op" not in source:
        raise error("eject: the augmentation code has changed shape; cannot copy it")
    return text


TRAILER = "# netspec eject: sha256 "  # + the hash of every line above it: the file is eject's, unedited
MAX_PROGRAM_BYTES = 16 << 20


def _sign(text: str) -> str:
    from netspec.outputs import sign_text

    return sign_text(text, TRAILER)


def _is_unedited_output(path: str) -> bool:
    """The file ends with eject's trailer and its hash matches what is above it."""
    from netspec.outputs import is_signed, read_bounded

    data = read_bounded(path, MAX_PROGRAM_BYTES)
    return data is not None and is_signed(data, TRAILER)


def check_output(output: str, inputs: list[str]) -> None:
    """Only a NAME.py file; never a folder, an input, or an existing file other than an
    unedited earlier output of netspec eject (an empty file may be replaced)."""
    import os

    name = Path(output).name
    if Path(output).suffix != ".py" or name.startswith("."):
        raise error(f"{output or repr(output)}: an ejected program is a file NAME.py",
                    f"e.g. -o {Path(output).stem.lstrip('.') or 'train'}.py")
    if os.path.isdir(output):
        raise error(f"{output}: is a folder; give a file name ending in .py")
    if not os.path.lexists(output):
        parent = Path(output).parent
        for p in [parent, *parent.parents]:
            if str(p) not in ("", ".") and p.exists() and not p.is_dir():
                raise error(f"{output}: cannot write under {p}: it is a file")
        return
    from netspec.outputs import Refusals, check_replaceable

    check_replaceable(output, inputs, _is_unedited_output, Refusals(
        "{output}: that is the input; netspec eject never overwrites it", "choose another -o",
        "{output}: not a regular file; netspec eject writes only files",
        "{output} exists and is not an unedited program of netspec eject (it was edited, or is another file); "
        "it is not overwritten", "choose another -o, or remove the file first"))


def write_program(checked: ir.CheckedSpec, output: str, inputs: list[str], source: str | None = None,
                  overrides: tuple[str, ...] = ()) -> str:
    from netspec.util import atomic_write_text, ensure_folder

    check_output(output, inputs)
    text = _sign(eject(checked, Path(output).name, source, overrides))
    parent = Path(output).parent
    if str(parent) not in ("", "."):
        ensure_folder(parent)
    atomic_write_text(output, text)
    return text
