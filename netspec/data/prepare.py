"""Data preparation: types, one vocabulary, splits, encoding, normalisation statistics.

In: ``ir.CheckedSpec`` (its DataConfig, the model's input/output shapes and the loss) and
the raw sources from sources.py; optionally the ``Preprocessing`` a trained run saved (so
evaluation and prediction encode and normalise exactly as training did).
Out: ``Prepared``: train / validation / test ``Split``s holding raw samples (uint8 images,
numbers; memory-mapped where the source is) and encoded targets, plus the
``Preprocessing`` record (vocabularies, feature names, statistics, shapes) that the
checkpoint and the ONNX metadata carry. Scaling (images to [0, 1]), normalisation and the
reshape to the model input happen per batch in torch (layers.InputTransform), the same
module the ONNX graph contains.

The rules (docs/language.md, "Data rules"):
- Vocabularies (class labels, categorical feature values) come from the training split
  and are reused for validation, test, `eval` and `predict`; a value never seen in
  training is an error naming the file, row, column and value.
- A CSV column is numeric when every cell is a number; a column more than half numeric
  with some bad cells is an error naming the first bad rows (`target_type: class` makes a
  target categorical); empty cells are errors; NaN, inf and numbers beyond float32 are errors.
- Class losses (CrossEntropyLoss, NLLLoss, MultiMarginLoss) take labels: text, or whole
  numbers. Whole numbers in [0, classes) are class indices; other label sets are coded in
  sorted order. Binary losses (BCE*) need exactly two classes (or one_hot for multi-label).
  `one_hot` rows are as wide as the class count. A value loss needs numbers.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from netspec import catalogue as cat
from netspec import ir
from netspec.catalogue import fmt_shape
from netspec.data.sources import CsvTable, RawSet, data_error, load_source, read_idx  # noqa: F401 - read_idx re-exported
from netspec.errors import DataError, Diagnostic, NetspecError

MAX_SHOWN = 5
CLASS_LOSSES = ("class",)


# ---------------------------------------------------------------- the preprocessing record


@dataclass
class Preprocessing:
    """Everything needed to turn raw samples into model inputs and targets, saved with the
    weights (checkpoint, ONNX metadata) so evaluation and prediction repeat training."""

    kind: str = "table"  # image | table
    raw_dtype: str = "float32"  # uint8 | float32 | int64
    scale: float = 1.0  # raw values are divided by this before normalising (uint8 images: 255)
    source_shape: list = field(default_factory=list)  # one raw sample (after one-hot encoding)
    input_shape: list = field(default_factory=list)  # the model's input
    normalize: str = "none"
    shift: list | None = None  # per channel (images) or per column (tables)
    div: list | None = None
    axis: int = -1  # the sample axis that `shift`/`div` run along
    features: list | None = None  # encoded feature names, in input order (CSV: "color=red" for one-hot)
    columns: list | None = None  # CSV feature columns: [name, "numeric"] or [name, "categorical", [values]]
    targets: list | None = None  # CSV target column names
    task: str = "value"  # class | binary | value | input
    classes: list | None = None  # class names in index order
    class_values: list | None = None  # numeric labels coded by position (e.g. wine's 1, 2, 3)
    one_hot: bool = False
    tokens: bool = False  # the model takes integer token ids (Embedding first)

    def to_json(self) -> dict:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict) -> Preprocessing:
        known = {f for f in cls.__dataclass_fields__}
        return cls(**{k: v for k, v in data.items() if k in known})


@dataclass
class Split:
    """Samples of one split: raw `x` (maybe memory-mapped; `index` selects its rows) and
    encoded `y` (None when the targets are the inputs)."""

    name: str  # training data | validation data | test data
    x: Any
    y: np.ndarray | None
    index: np.ndarray | None = None

    def __len__(self) -> int:
        return len(self.index) if self.index is not None else len(self.x)

    @property
    def in_memory(self) -> bool:
        return self.index is None and not isinstance(self.x, np.memmap)

    def rows(self, i: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
        """Raw x and y of the samples at positions `i` of this split (in that order). Rows of
        a memory-mapped file are read with pread, in file order, so streaming a file larger
        than memory never maps it into the process (its pages would count as our memory)."""
        yb = None if self.y is None else self.y[i]
        if self.in_memory:
            return self.x[i], yb
        src = self.index[i] if self.index is not None else i
        order = np.argsort(src, kind="stable")
        xs = read_rows(self.x, src[order])
        inv = np.empty_like(order)
        inv[order] = np.arange(len(order))
        return xs[inv], yb


def read_rows(x: Any, rows: np.ndarray) -> np.ndarray:
    """x[rows] for sorted rows; a C-ordered np.memmap is read with os.pread (runs of
    consecutive rows in one call) instead of through the mapping."""
    import os

    if not (isinstance(x, np.memmap) and x.flags.c_contiguous and getattr(x, "filename", None)):
        return np.asarray(x[rows])
    per = int(np.prod(x.shape[1:])) * x.dtype.itemsize
    base = int(getattr(x, "offset", 0))
    filename = str(x.filename)
    try:  # only a mapping of the whole file's rows (a sliced view keeps its parent's offset)
        whole = os.path.getsize(filename) == base + per * len(x)
    except OSError:
        whole = False
    if not whole:
        return np.asarray(x[rows])
    out = np.empty((len(rows), *x.shape[1:]), dtype=x.dtype)
    flat = out.reshape(len(rows), -1).view(np.uint8)
    fd = os.open(filename, os.O_RDONLY)
    try:
        start = 0
        while start < len(rows):
            end = start + 1
            while end < len(rows) and rows[end] == rows[end - 1] + 1:
                end += 1
            want = per * (end - start)
            data = os.pread(fd, want, base + int(rows[start]) * per)
            if len(data) != want:
                raise OSError(f"{filename}: short read (the file changed while training?)")
            flat[start:end] = np.frombuffer(data, np.uint8).reshape(end - start, per)
            start = end
    finally:
        os.close(fd)
    return out


@dataclass
class Prepared:
    train: Split
    val: Split | None
    test: Split | None
    pre: Preprocessing
    notes: list[str] = field(default_factory=list)  # for the run output (e.g. where an image cache is)
    warnings: list[Diagnostic] = field(default_factory=list)

    @property
    def task(self) -> str:
        return self.pre.task

    @property
    def classes(self) -> int | None:
        return len(self.pre.classes) if self.pre.classes else None

    @property
    def labels(self) -> tuple[str, ...] | None:
        return tuple(self.pre.classes) if self.pre.classes else None


# ---------------------------------------------------------------- task and shapes


def loss_task(checked: ir.CheckedSpec) -> str:
    """class | binary | value | input: what the targets must be."""
    data = checked.data
    if data is not None and data.target == "input":
        return "input"
    spec = cat.LOSSES[checked.train.loss.name]
    if data is not None and data.target_type == "value" and spec.target == "class":
        return "value"
    return spec.target


loss_target = loss_task  # the name export/predict used


def class_width(checked: ir.CheckedSpec) -> int | None:
    """Classes the model's output can hold (its last dim), for class and one-hot targets."""
    out = checked.model.output_shape
    if out and out[-1] is not None:
        task = loss_task(checked)
        if task == "binary" and out == (1,):
            return 2
        return int(out[-1])
    return None


def takes_tokens(checked: ir.CheckedSpec) -> bool:
    first = ir.first_layer(checked.model)
    return first is not None and cat.LAYERS[first.type].int_input


def image_geometry(checked: ir.CheckedSpec) -> tuple[tuple[int, int] | None, int | None]:
    """(image_size, channels) for image folders: `image_size:`, else the model input's [C, H, W]."""
    shape = checked.model.input_shape
    data = checked.data
    channels = shape[0] if len(shape) == 3 and shape[0] in (1, 3) else None
    size = data.image_size if data is not None else None
    if size is None and len(shape) == 3 and None not in shape:
        size = (int(shape[1] or 0), int(shape[2] or 0))
    if channels is None and size is not None and len(shape) == 1 and shape[0] is not None:
        # a flat model input: grayscale if H*W fits, RGB if 3*H*W does
        hw = size[0] * size[1]
        channels = 1 if shape[0] == hw else 3 if shape[0] == 3 * hw else None
    return size, channels


# ---------------------------------------------------------------- prepare


def prepare(checked: ir.CheckedSpec, *, allow_download: bool = True, saved: Preprocessing | dict | None = None,
            quiet: bool = False) -> Prepared:
    """Load, type, encode and split the data. `saved`: a trained run's preprocessing, so
    vocabularies and statistics are the run's, not recomputed."""
    data = checked.data
    if data is None or data.train is None:
        raise data_error(f"{checked.spec.file}: no data section with a `train:` source",
                         'add e.g. data { train: mnist(split="train") }')
    if isinstance(saved, dict):
        saved = Preprocessing.from_json(saved)
    seed = checked.train.seed
    env = {k: v for k, v in checked.constants if isinstance(v, (int, float)) and not isinstance(v, bool)}
    size, channels = image_geometry(checked)
    classes_hint = tuple(saved.classes) if saved is not None and saved.classes and data.train.kind == "image_folder" \
        else None
    base = load_source(data.train, seed, env, allow_download, size, channels, classes_hint, data.skip_bad)
    notes = _source_notes(base)
    n = len(base)
    rows = np.arange(n)
    if data.subset is not None and data.subset < n:
        # a seeded random sample, never the first N: image folders (and many files) are
        # sorted by class, and their first N samples would be a few classes only
        rows = np.sort(np.random.default_rng(seed + 7).choice(n, data.subset, replace=False))
    enc = Encoder(checked, saved)
    if data.subset is not None and data.subset > n:
        enc.warnings.append(Diagnostic(f"subset: {data.subset:,} asks for more samples than the training source "
                                       f"holds ({n:,}); all {n:,} are used", data.train.span, "warning"))
    enc.learn(base, rows)
    x_all, y_all = enc.encode(base, "training data", data.train)
    pieces = split_rows(rows, data, seed, y_all if enc.pre.task in ("class", "binary") else None)
    train = _split("training data", x_all, y_all, pieces[0])
    val = _split("validation data", x_all, y_all, pieces[1]) if pieces[1] is not None and len(pieces[1]) else None
    test = _split("test data", x_all, y_all, pieces[2]) if pieces[2] is not None and len(pieces[2]) else None
    if data.test is not None:
        tclasses = base.classes if data.test.kind == "image_folder" else None
        traw = load_source(data.test, seed + 1, env, allow_download, size, channels, tclasses, data.skip_bad)
        notes += _source_notes(traw)
        tx, ty = enc.encode(traw, "test data", data.test)
        test = Split("test data", tx, ty)
    if len(train) == 0:
        raise data_error(f"{checked.spec.file}: the training split is empty",
                         "lower `validation`/`split`, or raise `subset`")
    if saved is None:
        enc.statistics(train)
    enc.conform(train)
    return Prepared(train, val, test, enc.pre, notes, enc.warnings)


def _split(name: str, x: Any, y: np.ndarray | None, index: np.ndarray) -> Split:
    if isinstance(x, np.memmap) or x.nbytes > (1 << 30):
        return Split(name, x, y[index] if y is not None else None, index)
    return Split(name, x[index], y[index] if y is not None else None)


def _source_notes(raw: RawSet) -> list[str]:
    if raw.extra.get("cache"):
        state = "built" if raw.extra.get("built") else "reused"
        return [f"image cache {state}: {raw.extra['cache']}"]
    return []


def split_rows(rows: np.ndarray, data: ir.DataConfig, seed: int,
               labels: np.ndarray | None) -> tuple[np.ndarray, np.ndarray | None, np.ndarray | None]:
    """(train, validation, test) row indices: seeded; `stratify` keeps each class's share."""
    if data.split is None and not data.validation:
        return rows, None, None
    fractions = data.split if data.split is not None else (1 - data.validation, data.validation, 0.0)
    rng = np.random.default_rng(seed)
    if data.stratify:
        if labels is None:
            raise data_error("`stratify: true` needs class targets", "drop it for regression")
        flat = labels.reshape(len(labels), -1)
        keys = flat[rows, 0] if flat.shape[1] == 1 else flat[rows].argmax(1)
        parts: list[list[np.ndarray]] = [[], [], []]
        for k in np.unique(keys):
            members = rows[keys == k]
            for i, p in enumerate(_cut(rng.permutation(members), fractions)):
                parts[i].append(p)
        out = [np.concatenate(p) if p else np.zeros(0, np.int64) for p in parts]
        return np.sort(out[0]), np.sort(out[1]), np.sort(out[2])
    perm = rng.permutation(rows)
    tr, va, te = _cut(perm, fractions)
    if data.split is None:  # `validation:` holds out the first part, as netspec 0.1 did
        k = int(round(len(rows) * data.validation))
        va, tr, te = perm[:k], perm[k:], perm[:0]
    return tr, va, te


def _cut(perm: np.ndarray, fractions: tuple[float, ...]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    n = len(perm)
    a = int(round(n * fractions[0]))
    b = int(round(n * fractions[1]))
    return perm[:a], perm[a:a + b], perm[a + b:]


# ---------------------------------------------------------------- encoding


class Encoder:
    """Learns the vocabularies and column types from the training rows (or takes a run's
    saved ones), then encodes every source with them."""

    def __init__(self, checked: ir.CheckedSpec, saved: Preprocessing | None):
        self.checked = checked
        self.data: ir.DataConfig = checked.data  # type: ignore[assignment]
        self.saved = saved
        self.pre = saved or Preprocessing(task=loss_task(checked), one_hot=self.data.one_hot,
                                          tokens=takes_tokens(checked),
                                          input_shape=[d for d in checked.model.input_shape],
                                          normalize=self.data.normalize)
        self.file = checked.spec.file
        self.value_map: dict[Any, int] | None = None
        self.warnings: list[Diagnostic] = []

    # -- learning (training rows only)

    def learn(self, raw: RawSet, rows: np.ndarray) -> None:
        if self.saved is not None:
            if self.pre.class_values is not None:
                self.value_map = {v: i for i, v in enumerate(self.pre.class_values)}
            return
        pre = self.pre
        pre.kind = "image" if raw.kind == "image" else "table"
        if raw.kind == "csv":
            assert raw.table is not None
            self.learn_csv(raw.table, rows)
        elif raw.x is not None:
            pre.raw_dtype = "uint8" if raw.x.dtype == np.uint8 and raw.kind == "image" else \
                "int64" if pre.tokens else "float32"
            pre.scale = 255.0 if pre.raw_dtype == "uint8" else 1.0
            pre.source_shape = list(raw.x.shape[1:])
            if raw.kind == "table" and raw.x.ndim == 2:
                pre.features = [f"x{i}" for i in range(raw.x.shape[1])]
        if pre.task == "input":
            return
        if raw.kind != "csv":  # learn_csv did its targets
            self.learn_targets(raw.y, rows, raw.classes, raw.file, None)
        self.check_classes(raw.file)

    def check_classes(self, where: str) -> None:
        """The class count against the loss and the model's output."""
        pre = self.pre
        if not pre.classes:
            return
        k = len(pre.classes)
        loss = self.checked.train.loss
        out = self.checked.model.output_shape
        shown = ", ".join(pre.classes[:6]) + (", ..." if k > 6 else "")
        last = ir.last_layer(self.checked.model.root)
        last_span = last.span if last is not None else self.checked.model.span
        if pre.task == "binary" and not pre.one_hot:
            if k > 2:
                raise DataError(Diagnostic(
                    f"{loss.name} needs two classes (0/1 targets), but {where} has {k}: {shown}", loss.span,
                    help="use CrossEntropyLoss with one output per class; for several yes/no labels per sample "
                         "set `one_hot: true`"))
            return
        if out and out[-1] is not None and out[-1] != k and (pre.task == "class" or pre.one_hot):
            what = "one_hot targets have" if pre.one_hot and pre.task != "class" else "the training data has"
            raise DataError(Diagnostic(
                f"the model outputs {fmt_shape(out)} but {what} {k} classes ({shown})", last_span,
                help=f"make the last layer produce {k} values, e.g. Linear({k})"))
        weight = loss.get("weight")
        if loss.name == "CrossEntropyLoss" and weight is not None and len(weight) != k:
            raise DataError(Diagnostic(f"CrossEntropyLoss weight= has {len(weight)} values but there are {k} "
                                       f"classes ({shown})", loss.span, help=f"give one weight per class ({k})"))

    def learn_csv(self, table: CsvTable, rows: np.ndarray) -> None:
        pre = self.pre
        src = self.data.train
        assert src is not None
        targets = list(src.get("target") or ())
        categorical = list(src.get("categorical") or ())
        features = list(src.get("features") or ()) or [h for h in table.header if h not in targets]
        for name, where in ((n, "target") for n in targets):
            if name not in table.columns:
                raise self.column_error(table, name, where, src)
        for name in [*features, *categorical]:
            if name not in table.columns:
                raise self.column_error(table, name, "features" if name in features else "categorical", src)
        both = [t for t in targets if t in features]
        if both:
            raise DataError(Diagnostic(f"{table.path}: the target column {both[0]!r} is also listed in `features`",
                                       src.span_of("features"), help=f"remove {both[0]!r} from features"))
        stray = [c for c in categorical if c not in features]
        if stray:
            raise DataError(Diagnostic(f"`categorical` lists {stray[0]!r}, which is not a feature column",
                                       src.span_of("categorical"),
                                       help="categorical names feature columns to one-hot encode"))
        pre.kind, pre.raw_dtype, pre.scale = "table", "float32", 1.0
        columns: list = []
        names: list[str] = []
        for name in features:
            cells = [table.columns[name][i] for i in rows]
            if name in categorical:
                vocab = sorted(set(cells))
                if "" in vocab:
                    i = cells.index("")
                    raise data_error(f"{table.path}:{table.lines[rows[i]]}: column {name!r} is empty (a missing "
                                     "value)", "fill in or drop rows with missing values")
                columns.append([name, "categorical", vocab])
                names += [f"{name}={v}" for v in vocab]
            else:
                self.numeric_cells(table, name, rows, feature=True)
                columns.append([name, "numeric"])
                names.append(name)
        pre.columns, pre.features, pre.targets = columns, names, targets
        pre.source_shape = [len(names)]
        if pre.task == "input":
            return
        if len(targets) > 1:
            if pre.task != "value":
                raise DataError(Diagnostic(f"{self.checked.train.loss.name} takes one class label per sample, "
                                           f"but `target` names {len(targets)} columns",
                                           src.span_of("target"),
                                           help="several targets are for regression (MSELoss and the like)"))
            for t in targets:
                self.numeric_cells(table, t, rows, feature=False)
            return
        cells = [table.columns[targets[0]][i] for i in rows]
        numeric = self.classify_target(table, targets[0], rows, cells)
        y = np.asarray(numeric if numeric is not None else cells, dtype=object if numeric is None else np.float64)
        self.learn_targets(y, np.arange(len(rows)), None, f"{table.path} column {targets[0]!r}", table,
                           column=targets[0], lines=[table.lines[i] for i in rows])

    def classify_target(self, table: CsvTable, name: str, rows: np.ndarray, cells: list[str]) -> list[float] | None:
        """Numbers for a numeric target column, None for a categorical one, by the rule: a
        column with only numbers is numeric; one more than half numbers with some bad cells
        is an error naming them (unless `target_type: class`); otherwise it holds labels."""
        values, bad = _parse_numbers(cells)
        if not bad:
            return values
        if self.data.target_type == "class":
            return None
        numeric_share = 1 - len(bad) / max(len(cells), 1)
        wants_classes = self.pre.task in ("class", "binary") or self.pre.one_hot
        if numeric_share > 0.5:
            shown = ", ".join(f"row {table.lines[rows[i]]} ({cells[i]!r})" for i in bad[:MAX_SHOWN])
            more = f" and {len(bad) - MAX_SHOWN} more" if len(bad) > MAX_SHOWN else ""
            raise DataError(Diagnostic(
                f"{table.path}: target column {name!r} is numeric except {len(bad)} cell{'s' if len(bad) > 1 else ''}: "
                f"{shown}{more}",
                help="fix or drop those rows (empty cells are missing values); or set `target_type: class` to treat "
                     "the column as labels"))
        if wants_classes:
            return None
        raise DataError(Diagnostic(
            f"{table.path}: target column {name!r} holds text (e.g. {cells[bad[0]]!r}), but "
            f"{self.checked.train.loss.name} needs numbers",
            self.data.train.span_of("target") if self.data.train else ir.NO_SPAN,
            help="for class labels use CrossEntropyLoss (and a last layer with one output per class), "
                 "or set `one_hot: true`"))

    def numeric_cells(self, table: CsvTable, name: str, rows: np.ndarray, feature: bool) -> None:
        cells = [table.columns[name][i] for i in rows]
        _, bad = _parse_numbers(cells)
        if not bad:
            return
        i = bad[0]
        cell = cells[i]
        line = table.lines[rows[i]]
        share = 1 - len(bad) / len(cells)
        if cell == "":
            raise data_error(f"{table.path}:{line}: column {name!r} is empty (a missing value)",
                             "fill in or drop rows with missing values")
        if _is_number(cell):
            raise data_error(f"{table.path}:{line}: column {name!r}: {cell!r} is not a finite float32 number",
                             "NaN, infinities and numbers beyond ±3.4e38 are not allowed in data")
        if feature and share <= 0.5:
            raise data_error(f"{table.path}:{line}: column {name!r} holds text ({cell!r})",
                             "list it in categorical=[...] to one-hot encode it, or leave it out of features")
        shown = ", ".join(f"row {table.lines[rows[j]]} ({cells[j]!r})" for j in bad[:MAX_SHOWN])
        raise data_error(f"{table.path}: column {name!r} is numeric except {len(bad)} cell(s): {shown}",
                         "fix or drop those rows")

    def learn_targets(self, y: Any, rows: np.ndarray, intrinsic: tuple[str, ...] | None, where: str,
                      table: CsvTable | None, column: str | None = None, lines: list[int] | None = None) -> None:
        pre = self.pre
        if y is None:
            raise data_error(f"{where}: no targets", "give y=... (or `target: input` for an autoencoder)")
        y = np.asarray(y)[rows] if len(rows) != len(y) or not np.array_equal(rows, np.arange(len(y))) else np.asarray(y)
        wants_classes = pre.task in ("class", "binary") or pre.one_hot
        labels = self.data.labels
        if not wants_classes:
            if y.dtype == object:
                raise data_error(f"{where}: holds text labels, but {self.checked.train.loss.name} needs numbers",
                                 "use CrossEntropyLoss for class labels")
            self.maybe_warn_class_like(y, where)
            return
        width = class_width(self.checked)
        if intrinsic is not None:
            pre.classes = list(intrinsic)
            return
        if y.dtype == object:
            vocab = list(labels) if labels else sorted(set(y.tolist()))
            if labels:
                unknown = [v for v in dict.fromkeys(y.tolist()) if v not in labels]
                if unknown:
                    raise data_error(f"{where}: label {unknown[0]!r} is not in `labels` {list(labels)}")
            pre.classes = [str(v) for v in vocab]
            self.value_map = {v: i for i, v in enumerate(vocab)}
            pre.class_values = vocab
            return
        flat = np.asarray(y, dtype=np.float64).reshape(len(y), -1)
        if flat.shape[1] != 1:
            raise data_error(f"{where}: class targets need one label per sample, got shape {list(y.shape[1:])}")
        values = flat[:, 0]
        distinct = np.unique(values)
        if not np.all(np.equal(np.mod(distinct, 1), 0)):
            examples = ", ".join(f"{v:g}" for v in distinct[:3])
            raise data_error(f"{where}: the target looks continuous ({len(distinct)} distinct values such as "
                             f"{examples}), but {self.checked.train.loss.name} needs class labels",
                             "for regression use MSELoss (or L1Loss) with a last layer of Linear(1)")
        ints = distinct.astype(np.int64)
        indices = width is not None and ints.min() >= 0 and ints.max() < width
        if not labels and not indices and len(ints) > 50 and len(ints) > 0.1 * len(values):
            raise data_error(f"{where}: the target looks continuous ({len(ints)} distinct values from {ints.min()} to "
                             f"{ints.max()}), but {self.checked.train.loss.name} needs class labels",
                             "for regression use MSELoss (or L1Loss) with a last layer of Linear(1)")
        if not labels and indices and self.data.target_type != "class" and len(ints) > 50 and \
                len(ints) > 0.1 * len(values):
            # fits the output as class indices, but reads like a measurement: say so
            self.warnings.append(Diagnostic(
                f"{where}: the target looks continuous ({len(ints)} distinct whole values from {ints.min()} to "
                f"{ints.max()} in {len(values):,} rows); {self.checked.train.loss.name} treats them as class "
                f"indices of the model's {width} outputs", self.checked.train.loss.span, "warning",
                "for regression use MSELoss (or L1Loss) with a last layer of Linear(1); `target_type: class` "
                "says they are classes"))
        if labels and ints.min() >= 0 and ints.max() < len(labels):
            pre.classes = list(labels)
        elif width is not None and ints.min() >= 0 and ints.max() < width and (len(ints) > 1 or width == 2):
            pre.classes = list(labels) if labels and len(labels) == width else [str(i) for i in range(width)]
        else:
            pre.classes = [f"{v:g}" for v in ints]
            pre.class_values = [int(v) for v in ints]
            self.value_map = {int(v): i for i, v in enumerate(ints)}

    def maybe_warn_class_like(self, y: np.ndarray, where: str) -> None:
        """Integer targets with few distinct values under a value loss: probably classes."""
        if self.pre.one_hot or self.data.target_type == "value" or self.pre.task != "value":
            return
        flat = np.asarray(y, dtype=np.float64).reshape(-1)
        distinct = np.unique(flat[: 200_000])
        if 2 <= len(distinct) <= 20 and np.all(np.equal(np.mod(distinct, 1), 0)) and len(flat) >= 5 * len(distinct):
            loss = self.checked.train.loss
            self.warnings.append(Diagnostic(
                f"{loss.name} on {where}, whose {len(distinct)} distinct whole values look like class labels",
                loss.span, "warning", "set `one_hot: true` (with one output per class), or use CrossEntropyLoss; "
                "`target_type: value` says the numbers are values"))

    def column_error(self, table: CsvTable, name: str, key: str, src: ir.Source) -> DataError:
        from netspec.errors import did_you_mean

        hint = did_you_mean(name, table.header) or "columns: " + ", ".join(table.header)
        return DataError(Diagnostic(f"{table.path}: no column {name!r}", src.span_of(key), help=hint))

    # -- encoding (any split, with the learned vocabularies)

    def encode(self, raw: RawSet, what: str, src: ir.Source) -> tuple[Any, np.ndarray | None]:
        pre = self.pre
        if raw.kind == "csv":
            assert raw.table is not None
            x = self.encode_csv_features(raw.table, what)
            y = None if pre.task == "input" else self.encode_csv_targets(raw.table, what)
        else:
            x = raw.x
            if pre.kind == "image" and raw.kind != "image" or pre.kind == "table" and raw.kind == "image":
                raise data_error(f"{raw.file}: {what} are {'images' if raw.kind == 'image' else 'numbers'} but the "
                                 f"training data are {'images' if pre.kind == 'image' else 'numbers'}")
            if list(raw.x.shape[1:]) != list(pre.source_shape):
                raise data_error(f"{raw.file}: {what} samples have shape {fmt_shape(raw.x.shape[1:])}, the training "
                                 f"samples {fmt_shape(tuple(pre.source_shape))}")
            if pre.tokens:
                x = self.tokens(raw, what)
            y = None if pre.task == "input" else self.encode_targets(raw.y, raw.classes, raw.file, what, None)
        return x, y

    def tokens(self, raw: RawSet, what: str) -> np.ndarray:
        x = np.asarray(raw.x)
        if x.dtype.kind == "f" and not np.all(np.equal(np.mod(x, 1), 0)):
            raise data_error(f"{raw.file}: {what}: an Embedding input needs whole-number token ids")
        return x.astype(np.int64)

    def encode_csv_features(self, table: CsvTable, what: str) -> np.ndarray:
        pre = self.pre
        n = len(table)
        blocks = []
        for col in pre.columns or ():
            name = col[0]
            if name not in table.columns:
                raise data_error(f"{table.path}: no column {name!r} ({what} needs the training columns)")
            cells = table.columns[name]
            if col[1] == "categorical":
                vocab = {v: i for i, v in enumerate(col[2])}
                block = np.zeros((n, len(vocab)), np.float32)
                for r, c in enumerate(cells):
                    j = vocab.get(c)
                    if j is None:
                        raise data_error(f"{table.path}:{table.lines[r]}: column {name!r}: value {c!r} never occurs "
                                         "in the training data",
                                         f"known values: {', '.join(map(repr, col[2][:10]))}")
                    block[r, j] = 1.0
                blocks.append(block)
            else:
                values, bad = _parse_numbers(cells)
                if bad:
                    r = bad[0]
                    raise data_error(f"{table.path}:{table.lines[r]}: column {name!r}: {cells[r]!r} is not a "
                                     "finite number" if cells[r] else
                                     f"{table.path}:{table.lines[r]}: column {name!r} is empty (a missing value)")
                blocks.append(np.asarray(values, np.float32)[:, None])
        return np.concatenate(blocks, axis=1) if blocks else np.zeros((n, 0), np.float32)

    def encode_csv_targets(self, table: CsvTable, what: str) -> np.ndarray:
        pre = self.pre
        targets = pre.targets or []
        for t in targets:
            if t not in table.columns:
                raise data_error(f"{table.path}: no target column {t!r} ({what} needs the training columns)")
        if len(targets) > 1 or not (pre.task in ("class", "binary") or pre.one_hot):
            out = np.zeros((len(table), len(targets)), np.float32)
            for j, t in enumerate(targets):
                values, bad = _parse_numbers(table.columns[t])
                if bad:
                    r = bad[0]
                    cell = table.columns[t][r]
                    raise data_error(f"{table.path}:{table.lines[r]}: target column {t!r}: "
                                     + (f"{cell!r} is not a finite number" if cell else "empty (a missing value)"))
                out[:, j] = values
            return self.shape_values(out, table.path.name)
        cells = table.columns[targets[0]]
        if pre.class_values is not None and isinstance(pre.class_values[0], str):
            y = np.asarray(cells, dtype=object)
        else:
            values, bad = _parse_numbers(cells)
            if bad:
                r = bad[0]
                raise data_error(f"{table.path}:{table.lines[r]}: target column {targets[0]!r}: {cells[r]!r} is "
                                 + ("not a label seen in training" if cells[r] else "empty (a missing value)"))
            y = np.asarray(values, np.float64)
        return self.encode_targets(y, None, str(table.path), what, table, targets[0])

    def encode_targets(self, y: Any, intrinsic: tuple[str, ...] | None, file: str, what: str,
                       table: CsvTable | None, column: str | None = None) -> np.ndarray:
        pre = self.pre
        if y is None:
            raise data_error(f"{file}: {what} has no targets")
        y = np.asarray(y)
        if not (pre.task in ("class", "binary") or pre.one_hot):
            return self.shape_values(np.asarray(y, np.float32), file)
        if intrinsic is not None and pre.classes is not None and list(intrinsic) != list(pre.classes):
            raise data_error(f"{file}: {what} has classes {list(intrinsic)}, training had {pre.classes}")
        if self.value_map is not None:
            idx = np.empty(len(y), np.int64)
            keys = y.tolist() if y.dtype == object else np.asarray(y, np.float64).reshape(-1).astype(np.int64).tolist()
            if y.dtype != object and not np.all(np.equal(np.mod(np.asarray(y, np.float64), 1), 0)):
                raise data_error(f"{file}: {what}: class labels must be whole numbers")
            for r, k in enumerate(keys):
                j = self.value_map.get(k)
                if j is None:
                    where = f"{table.path}:{table.lines[r]}: column {column!r}" if table is not None else \
                        f"{file}: {what}, sample {r}"
                    raise data_error(f"{where}: label {k!r} never occurs in the training data",
                                     f"training labels: {', '.join(map(repr, list(self.value_map)[:10]))}")
                idx[r] = j
        else:
            flat = np.asarray(y, np.float64).reshape(len(y), -1)
            if flat.shape[1] != 1:
                raise data_error(f"{file}: {what}: class targets need one label per sample")
            if not np.all(np.equal(np.mod(flat, 1), 0)):
                raise data_error(f"{file}: {what}: class labels must be whole numbers",
                                 "for regression use a value loss (MSELoss) or set target_type: value")
            idx = flat[:, 0].astype(np.int64)
            k = len(pre.classes or ())
            if len(idx) and (idx.min() < 0 or idx.max() >= k):
                bad = int(np.argmax((idx < 0) | (idx >= k)))
                raise data_error(f"{file}: {what}: label {idx[bad]} (sample {bad}) is outside the {k} classes "
                                 "of the training data")
        return self.shape_classes(idx)

    def shape_classes(self, idx: np.ndarray) -> np.ndarray:
        pre = self.pre
        k = len(pre.classes or ())
        out = self.checked.model.output_shape
        if pre.one_hot:
            onehot = np.zeros((len(idx), k), np.float32)
            onehot[np.arange(len(idx)), idx] = 1.0
            return onehot
        if pre.task == "binary":
            return idx.astype(np.float32).reshape(len(idx), *([d for d in out] if None not in out else [1]))
        return idx

    def shape_values(self, y: np.ndarray, file: str) -> np.ndarray:
        out = self.checked.model.output_shape
        if None in out:
            return y.astype(np.float32)
        per = y.shape[1:]
        if math.prod(per) != math.prod(int(d or 0) for d in out):
            raise data_error(f"{file}: targets have shape {fmt_shape(per)} per sample but the model outputs "
                             f"{fmt_shape(out)}", "make the last layer produce the target's shape")
        return y.reshape(len(y), *out).astype(np.float32)

    # -- statistics and shapes

    def statistics(self, train: Split) -> None:
        pre = self.pre
        if pre.normalize == "none" or pre.tokens:
            return
        x = train.x
        image = pre.kind == "image" or (x.ndim == 4)
        axis = 1 if image else x.ndim - 1
        pre.axis = axis - 1  # the axis within one sample
        rows = train.index if train.index is not None else None
        mean, std, lo, hi = _moments(x, rows, axis, pre.scale)
        if pre.normalize == "standard":
            std[std == 0] = 1.0
            pre.shift, pre.div = mean.tolist(), std.tolist()
        else:
            span = hi - lo
            span[span == 0] = 1.0
            pre.shift, pre.div = lo.tolist(), span.tolist()

    def conform(self, train: Split) -> None:
        """The model input must take the source's samples (directly or reshaped)."""
        pre = self.pre
        want = self.checked.model.input_shape
        have = tuple(pre.source_shape)
        if len(have) == len(want) and all(w is None or w == h for w, h in zip(want, have)):
            return
        if None not in want and math.prod(have) == math.prod(int(d or 0) for d in want):
            return
        raise data_error(f"{self.file}: the training samples have shape {fmt_shape(have)} "
                         f"({math.prod(have)} values) but the model input is {fmt_shape(want)}",
                         f"set `input: {fmt_shape(have)}` in the model")


def _moments(x: Any, rows: np.ndarray | None, axis: int, scale: float) -> tuple[np.ndarray, ...]:
    """Per-`axis` mean, std, min, max of the (scaled) samples, in float64, a chunk at a time."""
    n = len(rows) if rows is not None else len(x)
    if getattr(x, "dtype", None) == np.uint8 and x.ndim >= 2:
        return _uint8_moments(x, rows, axis, scale, n)
    reduce = tuple(i for i in range(x.ndim) if i != axis)
    count = 0
    s = ss = lo = hi = None
    step = max(1, (64 << 20) // max(int(np.prod(x.shape[1:])) * 8, 1))
    for start in range(0, n, step):
        sel = np.sort(rows[start:start + step]) if rows is not None else slice(start, start + step)
        block = np.asarray(x[sel], dtype=np.float64) / scale
        m = block.size // block.shape[axis]
        s = block.sum(axis=reduce) if s is None else s + block.sum(axis=reduce)
        ss = (block**2).sum(axis=reduce) if ss is None else ss + (block**2).sum(axis=reduce)
        bl, bh = block.min(axis=reduce), block.max(axis=reduce)
        lo = bl if lo is None else np.minimum(lo, bl)
        hi = bh if hi is None else np.maximum(hi, bh)
        count += m
    assert s is not None and ss is not None and lo is not None and hi is not None
    mean = s / count
    var = np.maximum(ss / count - mean**2, 0.0)
    return mean, np.sqrt(var), lo, hi


def _uint8_moments(x: Any, rows: np.ndarray | None, axis: int, scale: float, n: int) -> tuple[np.ndarray, ...]:
    """_moments of uint8 data from a histogram of the 256 values per `axis` entry: exact
    integer sums, and several times faster than float64 blocks (images' usual case)."""
    import warnings

    import torch  # its bincount counts uint8 directly: ~30x numpy's, which widens every value to int64 first

    width = x.shape[axis]
    counts = np.zeros((width, 256), dtype=np.int64)
    step = max(1, (64 << 20) // max(int(np.prod(x.shape[1:])), 1))
    for start in range(0, n, step):
        sel = np.sort(rows[start:start + step]) if rows is not None else slice(start, start + step)
        block = np.ascontiguousarray(np.moveaxis(np.asarray(x[sel]), axis, 0).reshape(width, -1))
        with warnings.catch_warnings():  # a read-only memory map: the tensor is only read
            warnings.simplefilter("ignore", UserWarning)
            counted = [torch.bincount(torch.from_numpy(block[c]), minlength=256).numpy() for c in range(width)]
        counts += np.stack(counted)
    values = np.arange(256, dtype=np.float64)
    total = counts.sum(axis=1).astype(np.float64)
    mean = (counts @ values) / total
    var = np.maximum((counts @ (values**2)) / total - mean**2, 0.0)
    present = counts > 0
    lo = np.argmax(present, axis=1).astype(np.float64)
    hi = (255 - np.argmax(present[:, ::-1], axis=1)).astype(np.float64)
    return mean / scale, np.sqrt(var) / scale, lo / scale, hi / scale


def _is_number(cell: str) -> bool:
    try:
        float(cell)
        return True
    except ValueError:
        return False


F32_MAX = float(np.finfo(np.float32).max)


def _parse_numbers(cells: list[str]) -> tuple[list[float], list[int]]:
    """The cells as floats, and the positions of cells that are not finite float32 numbers
    (text, empty, NaN, inf, beyond ±3.4e38)."""
    values: list[float] = []
    bad: list[int] = []
    for i, c in enumerate(cells):
        try:
            v = float(c)
        except ValueError:
            bad.append(i)
            values.append(0.0)
            continue
        if not math.isfinite(v) or abs(v) > F32_MAX:
            bad.append(i)
            v = 0.0
        values.append(v)
    return values, bad


def evaluation_split(data: Prepared, file: str) -> tuple[str, Split]:
    """The split `eval` reports on, with its metric prefix: test, else validation."""
    if data.test is not None:
        return "test_", data.test
    if data.val is not None:
        return "val_", data.val
    raise data_error(f"{file}: no test or validation data to evaluate on",
                     "add `test:`, `validation:` or `split:` to the data section")


__all__ = ["Preprocessing", "Split", "Prepared", "prepare", "evaluation_split", "loss_task", "NetspecError"]
