"""Data encoding: the one vocabulary, column types and target coding, learned from the
training rows and applied to every split.

In: ``ir.CheckedSpec`` (its DataConfig, the model's input/output shapes and the loss) and
``RawSet``s from sources.py; optionally the ``Preprocessing`` a trained run saved. Out: the
``Preprocessing`` record (vocabularies, feature names, shapes; prepare.py adds the
statistics) and encoded arrays. Both data preparation (prepare.py) and check's cheap data
pass (checker/data.py) use the ``Encoder``, so the two say the same things about the same data.

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
from netspec.data.sources import CsvTable, RawSet
from netspec.errors import DataError, Diagnostic, data_error

MAX_SHOWN = 5


# ---------------------------------------------------------------- the preprocessing record


@dataclass
class Preprocessing:
    """Everything needed to turn raw samples into model inputs and targets, saved with the
    weights (checkpoint, ONNX metadata) so evaluation and prediction repeat training."""

    kind: str = "table"  # image | table | text
    raw_dtype: str = "float32"  # uint8 | float32 | int64 | int32 (token ids of texts)
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
    text: list | None = None  # CSV text columns, tokenized (kind "text"): the model takes padded token ids
    tokenizer: str | None = None  # the trained Hugging Face tokenizer, as its JSON
    tokenizer_name: str | None = None  # the `tokenizer:` setting it was trained with, e.g. words(...)
    vocab_size: int | None = None  # tokens the tokenizer knows, padding and unknown included
    max_len: int | None = None  # tokens kept per text (`max_len:`, or the longest training text)

    def to_json(self) -> dict:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict) -> Preprocessing:
        known = {f for f in cls.__dataclass_fields__}
        return cls(**{k: v for k, v in data.items() if k in known})


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
        self.text_lengths: dict[str, np.ndarray] = {}  # tokens per text (before max_len), by split name
        self._tokenizer: Any = None

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
                raise data_error(
                    f"{loss.name} needs two classes (0/1 targets), but {where} has {k}: {shown}",
                    "use CrossEntropyLoss with one output per class; for several yes/no labels per sample "
                    "set `one_hot: true`", span=loss.span)
            return
        if out and out[-1] is not None and out[-1] != k and (pre.task == "class" or pre.one_hot):
            what = "one_hot targets have" if pre.one_hot and pre.task != "class" else "the training data has"
            raise data_error(f"the model outputs {fmt_shape(out)} but {what} {k} classes ({shown})",
                             f"make the last layer produce {k} values, e.g. Linear({k})", span=last_span)
        weight = loss.get("weight")
        if loss.name == "CrossEntropyLoss" and weight is not None and len(weight) != k:
            raise data_error(f"CrossEntropyLoss weight= has {len(weight)} values but there are {k} classes ({shown})",
                             f"give one weight per class ({k})", span=loss.span)

    def learn_csv(self, table: CsvTable, rows: np.ndarray) -> None:
        pre = self.pre
        src = self.data.train
        assert src is not None
        targets = list(src.get("target") or ())
        categorical = list(src.get("categorical") or ())
        features = list(src.get("features") or ()) or [h for h in table.header if h not in targets]
        text = list(src.get("text") or ())
        if text:  # the columns besides the target and the text are not read
            features, categorical = [], []
            for name in text:
                if name not in table.columns:
                    raise self.column_error(table, name, "text", src)
        for name, where in ((n, "target") for n in targets):
            if name not in table.columns:
                raise self.column_error(table, name, where, src)
        for name in [*features, *categorical]:
            if name not in table.columns:
                raise self.column_error(table, name, "features" if name in features else "categorical", src)
        both = [t for t in targets if t in features]
        if both:
            raise data_error(f"{table.path}: the target column {both[0]!r} is also listed in `features`",
                             f"remove {both[0]!r} from features", span=src.span_of("features"))
        stray = [c for c in categorical if c not in features]
        if stray:
            raise data_error(f"`categorical` lists {stray[0]!r}, which is not a feature column",
                             "categorical names feature columns to one-hot encode", span=src.span_of("categorical"))
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
        if text:
            pre.kind, pre.raw_dtype, pre.tokens, pre.text = "text", "int32", True, text
            pre.columns, pre.features, pre.source_shape = None, None, [None]
            self.check_texts(table, text, rows, "training data")
        if pre.task == "input":
            return
        if len(targets) > 1:
            if pre.task != "value":
                raise data_error(f"{self.checked.train.loss.name} takes one class label per sample, "
                                 f"but `target` names {len(targets)} columns",
                                 "several targets are for regression (MSELoss and the like)", span=src.span_of("target"))
            for t in targets:
                self.numeric_cells(table, t, rows, feature=False)
            return
        cells = [table.columns[targets[0]][i] for i in rows]
        numeric = self.classify_target(table, targets[0], rows, cells)
        y = np.asarray(numeric if numeric is not None else cells, dtype=object if numeric is None else np.float64)
        self.learn_targets(y, np.arange(len(rows)), None, f"{table.path} column {targets[0]!r}", table,
                           column=targets[0], lines=[table.lines[i] for i in rows])

    # -- text columns

    def check_texts(self, table: CsvTable, names: list[str], rows: np.ndarray | None, what: str) -> None:
        src = self.data.train
        self.warnings += text_problems(table, names, rows, what, src.span_of("text") if src is not None else ir.NO_SPAN)

    def learn_text(self, table: CsvTable, train_rows: np.ndarray) -> None:
        """The tokenizer, from the training split's texts only (cached by their contents)."""
        from netspec.data.text import TokenizerSettings, learn_vocabulary, special_tokens, text_cells

        pre = self.pre
        tok = self.data.tokenizer
        assert tok is not None and pre.text is not None  # the checker defaults it to words()
        settings = TokenizerSettings.from_call(tok.name, dict(tok.kwargs))
        vocab = learn_vocabulary(text_cells(table, pre.text, np.sort(train_rows)), settings)
        if vocab.vocab_size <= len(special_tokens(len(pre.text))):
            raise empty_vocabulary(settings, len(train_rows), tok.span)
        pre.tokenizer, pre.tokenizer_name, pre.vocab_size = vocab.tokenizer_json, settings.describe(), vocab.vocab_size
        pre.max_len = self.data.max_len or max(1, vocab.longest)
        pre.source_shape = [pre.max_len]
        self._tokenizer = None

    def encode_text(self, table: CsvTable, what: str) -> np.ndarray:
        """Token ids int32 [texts, steps], right-padded with 0 and cut at max_len."""
        from netspec.data.text import encode_texts, text_cells

        pre = self.pre
        assert pre.text is not None and pre.tokenizer is not None
        self.check_texts(table, pre.text, None, what)
        if self._tokenizer is None:
            from tokenizers import Tokenizer

            self._tokenizer = Tokenizer.from_str(pre.tokenizer)
        ids, lengths = encode_texts(self._tokenizer, text_cells(table, pre.text), pre.max_len)
        self.text_lengths[what] = lengths
        return ids

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
            raise data_error(
                f"{table.path}: target column {name!r} is numeric except {len(bad)} cell{'s' if len(bad) > 1 else ''}: "
                f"{shown}{more}",
                "fix or drop those rows (empty cells are missing values); or set `target_type: class` to treat "
                "the column as labels")
        if wants_classes:
            return None
        raise data_error(
            f"{table.path}: target column {name!r} holds text (e.g. {cells[bad[0]]!r}), but "
            f"{self.checked.train.loss.name} needs numbers",
            "for class labels use CrossEntropyLoss (and a last layer with one output per class), "
            "or set `one_hot: true`", span=self.data.train.span_of("target") if self.data.train else ir.NO_SPAN)

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
        return data_error(f"{table.path}: no column {name!r}", hint, span=src.span_of(key))

    # -- encoding (any split, with the learned vocabularies)

    def encode(self, raw: RawSet, what: str, src: ir.Source) -> tuple[Any, np.ndarray | None]:
        pre = self.pre
        if raw.kind == "csv":
            assert raw.table is not None
            x = self.encode_text(raw.table, what) if pre.kind == "text" else self.encode_csv_features(raw.table, what)
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

    # -- shapes

    def conform(self) -> None:
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


def text_problems(table: CsvTable, names: list[str], rows: np.ndarray | None, what: str,
                  span: ir.Span) -> list[Diagnostic]:
    """Every text column is there and no cell is too long to tokenize (errors); empty texts
    are warnings (the model sees one padding token for them)."""
    from netspec.data.text import MAX_TEXT_CHARS

    warnings = []
    for name in names:
        if name not in table.columns:
            raise data_error(f"{table.path}: no text column {name!r} ({what} needs the training columns)",
                             "columns: " + ", ".join(table.header))
        cells = table.columns[name]
        picked = range(len(cells)) if rows is None else rows
        long = next((i for i in picked if len(cells[i]) > MAX_TEXT_CHARS), None)
        if long is not None:
            raise data_error(f"{table.path}:{table.lines[long]}: the text in column {name!r} is "
                             f"{len(cells[long]):,} characters long; netspec reads texts of up to "
                             f"{MAX_TEXT_CHARS:,}", "cut long documents into pieces (or keep their beginnings)")
        empty = [i for i in picked if not cells[i]]
        if empty:
            more = f" (and {len(empty) - 1:,} more rows)" if len(empty) > 1 else ""
            warnings.append(Diagnostic(
                f"{table.path}:{table.lines[empty[0]]}: the text in column {name!r} is empty{more}; the model "
                "sees a single padding token for it", span, "warning", "fill in or drop rows without text"))
    return warnings


def empty_vocabulary(settings: Any, texts: int, span: ir.Span) -> DataError:
    """The tokenizer learnt nothing but its special tokens."""
    if texts == 0 or settings.min_freq <= 1:
        return data_error(f"the tokenizer's vocabulary is empty: the {texts:,} training texts hold no token",
                          "the text columns are empty; name the columns that hold the texts", span=span)
    return data_error(f"the tokenizer's vocabulary is empty: no token occurs min_freq={settings.min_freq} times in "
                      f"the {texts:,} training texts", "lower `min_freq`", span=span)


def class_codes(cells: list[str], labels: tuple[str, ...] | None) -> np.ndarray:
    """Class indices of a CSV target column in the order the Encoder codes them (numbers as
    themselves, text in sorted order or `labels:`'s), for splitting before encoding."""
    values, bad = _parse_numbers(cells)
    if not bad and all(float(v).is_integer() for v in values):
        return np.asarray(values, dtype=np.float64).astype(np.int64)
    vocab = list(labels) if labels else sorted(set(cells))
    index = {v: i for i, v in enumerate(vocab)}
    return np.asarray([index.get(c, -1) for c in cells], dtype=np.int64)


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
