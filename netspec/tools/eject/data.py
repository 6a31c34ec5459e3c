"""The data as source: `load_data()` of the ejected program and what it calls (IDX, CSV,
NumPy and image-folder readers, `table(...)` expressions in NumPy, target encoding with the
training split's vocabulary, the seeded split), with the training-split facts written in.

In: ``ir.CheckedSpec``, its ``Preprocessing`` and numeric `let` values. Out: function texts
(``DataWriter.functions``, ``readers``, ``targets_code``, ``split_code``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from netspec import catalogue as cat
from netspec import ir
from netspec.errors import NetspecError, error
from netspec.tools.eject.source import const, copied_source, float64, py, wrap_code

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


class TableWriter:
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


class DataWriter:
    def __init__(self, checked: ir.CheckedSpec, pre: Any, env: dict[str, Any]):
        self.checked = checked
        self.data: ir.DataConfig = checked.data  # type: ignore[assignment]
        self.pre = pre
        self.env = env
        self.readers: list[str] = []
        self.tables = TableWriter(env)
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
            texts = self.pre.kind == "text"
            self.reader(CSV_READER.split("\n\n\ndef csv_features")[0] + "\n" if texts else CSV_READER)
            targets = self.pre.targets or []
            body = [f"    columns = read_csv(Path({py(str(Path(args['path']).resolve()))}), {py(args.get('delimiter') or ',')})",
                    "    x = [columns[name] for name in TEXT_COLUMNS]  # the text columns' cells" if texts else
                    "    x = csv_features(columns)"]
            if self.pre.task == "input":
                body.append("    return x, None")
            elif len(targets) > 1 or not self.pre.coded:
                body.append(f"    y = np.asarray([[float(columns[t][r]) for t in {py(targets)}] "
                            f"for r in range(len(x{'[0]' if texts else ''}))], np.float32)")
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
            body += [float64("    x = ", xs),
                     float64("    y = ", ys),
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
        body = [wrap_code(b) if "\n" not in b else b for b in body]
        returns = "list[list[str]]" if self.pre.kind == "text" else "np.ndarray"
        self.functions.append("\n".join([f"def load_{name}() -> tuple[{returns}, np.ndarray | None]:", doc, *body]))
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
        if not pre.coded:
            if None in out:
                lines.append("    return np.asarray(y, np.float32)")
            else:
                lines.append(f"    return np.asarray(y, np.float32).reshape(len(y), {', '.join(map(str, out))})")
            return "\n".join(lines)
        if pre.class_values is not None:
            lines = [const("CLASS_VALUES", list(pre.class_values), "the training split's labels, in class-index order"),
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
