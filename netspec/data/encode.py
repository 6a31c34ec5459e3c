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
LARGE_TARGETS = 10.0  # root mean square of regression targets above which normalize_target is suggested
VALUE_UNIT_LOSSES = ("MSELoss", "L1Loss", "SmoothL1Loss", "HuberLoss")


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
    probabilities: bool = False  # binary losses on targets in [0, 1] that are not all 0/1 (soft labels)
    target_normalize: str = "none"  # normalize_target: the loss sees (y - target_shift) / target_div
    target_shift: list | None = None  # per output column ([k] outputs), else one value
    target_div: list | None = None

    @property
    def coded(self) -> bool:
        """Whether targets are class codes (indices, 0/1 labels, one-hot rows) rather than values."""
        return (self.task in ("class", "binary") or self.one_hot) and not self.probabilities
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
        self.target_values: np.ndarray | None = None  # value targets of the training rows (for the metrics)
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
            if pre.tokens:
                self.token_ids(raw.extra.get("peek_x", raw.x), raw.file)
        if pre.task == "input":
            return
        if raw.kind != "csv":  # learn_csv did its targets
            self.learn_targets(raw.y, rows, raw.classes, raw.file, None)
        self.check_classes(raw.file)
        self.check_metrics()

    def check_metrics(self) -> None:
        """Each metric against what the training targets turned out to be (catalogue's
        metric_problem; the parts that need no data were checked with the spec)."""
        pre = self.pre
        train = self.checked.train
        if not train.metrics or cat.LOSSES[train.loss.name].target == "unsupported":
            return
        values = described = None
        if self.target_values is not None and pre.task == "value" and not pre.one_hot:
            values, described = describe_values(self.target_values)
        facts = cat.TargetFacts(pre.task, pre.one_hot, tuple(self.checked.model.output_shape),
                                len(pre.classes) if pre.classes else None, values, described)
        for m in train.metrics:
            problem = cat.metric_problem(m.name, int(m.get("k", 5)), train.loss.name, dict(train.loss.kwargs), facts)
            if problem is not None:
                raise data_error(*problem, span=m.span)

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
        width = out[-1] if out and out[-1] is not None else None
        if width is not None and width != k and (pre.task == "class" or pre.one_hot):
            what = "one_hot targets have" if pre.one_hot and pre.task != "class" else "the training data has"
            message = f"the model outputs {fmt_shape(out)} but {what} {k} classes ({shown})"
            if width > k and pre.task == "class" and not pre.one_hot:
                # class indices below the width: torch trains it; the extra outputs are never a target
                self.warnings.append(Diagnostic(
                    f"{message}; outputs {k} to {width - 1} are never a target", last_span, "warning",
                    f"make the last layer produce {k} values, e.g. Linear({k})"))
            else:  # fewer outputs: torch fails on the larger labels; one-hot rows: the widths differ
                raise data_error(message, f"make the last layer produce {k} values, e.g. Linear({k})", span=last_span)
        check_class_weight(loss, out)

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
        if categorical and self.pre.tokens:
            layer = ir.first_layer(self.checked.model)
            raise data_error(f"Embedding takes integer token ids, but categorical={categorical} one-hot encodes "
                             "those columns into 0/1 indicators", "drop the Embedding (one-hot columns go to Linear), "
                             "or give each category's id as a number and leave `categorical` out",
                             span=layer.span if layer is not None else ir.NO_SPAN)
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
        elif pre.tokens:
            pre.raw_dtype = "int64"
            self.token_ids(self.encode_csv_features(table, "training data", rows), str(table.path), table, rows)
        if pre.task == "input":
            return
        if len(targets) > 1:
            if pre.task == "binary" and not pre.one_hot:  # several yes/no labels per sample (multi-label)
                for t in targets:
                    self.numeric_cells(table, t, rows, feature=False)
                y = np.asarray([_parse_numbers([table.columns[t][i] for i in rows])[0] for t in targets]).T
                self.probability_targets(y, f"{table.path}", [table.lines[i] for i in rows])
                return
            if self.checked.train.loss.name == "CrossEntropyLoss" and not pre.one_hot and \
                    class_width(self.checked) == len(targets):  # one probability per class and sample
                for t in targets:
                    self.numeric_cells(table, t, rows, feature=False)
                y = np.asarray([_parse_numbers([table.columns[t][i] for i in rows])[0] for t in targets]).T
                self.probability_targets(y, f"{table.path}", [table.lines[i] for i in rows])
                return
            if pre.task != "value":
                raise data_error(f"{self.checked.train.loss.name} takes one class label per sample, "
                                 f"but `target` names {len(targets)} columns",
                                 "several targets are for regression (MSELoss and the like)", span=src.span_of("target"))
            for t in targets:
                self.numeric_cells(table, t, rows, feature=False)
            self.target_values = np.asarray([_parse_numbers([table.columns[t][i] for i in rows])[0] for t in targets]).T
            self.maybe_suggest_normalize_target(self.target_values, f"{table.path}")
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
        raise data_error(f"{table.path}: column {name!r} is numeric except {len(bad)} cell{'s' if len(bad) != 1 else ''}: {shown}",
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
            self.target_values = y
            self.maybe_suggest_normalize_target(y, where)
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
        if pre.task == "binary" and not pre.one_hot and not labels and \
                (flat.shape[1] != 1 or not np.all(np.equal(np.mod(flat, 1), 0))):
            self.probability_targets(flat, where, lines)  # soft labels, or several yes/no labels per sample
            return
        if flat.shape[1] != 1 and self.checked.train.loss.name == "CrossEntropyLoss" and not pre.one_hot and \
                flat.shape[1] == width:
            self.probability_targets(flat, where, lines)  # class probabilities, as wide as the output
            return
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
        if not labels and not indices and len(ints) > 50 and len(ints) > 0.1 * len(values) and width != len(ints):
            raise data_error(f"{where}: the target looks continuous ({len(ints)} distinct values from {ints.min()} to "
                             f"{ints.max()}), but {self.checked.train.loss.name} needs class labels",
                             "for regression use MSELoss (or L1Loss) with a last layer of Linear(1)")
        if not labels and self.data.target_type != "class" and len(ints) > 50 and len(ints) > 0.1 * len(values):
            # fits the output (as class indices, or coded as as many classes), but reads like a measurement
            what = f"class indices of the model's {width} outputs" if indices else \
                f"{len(ints)} classes (one per distinct value)"
            self.warnings.append(Diagnostic(
                f"{where}: the target looks continuous ({len(ints)} distinct whole values from {ints.min()} to "
                f"{ints.max()} in {len(values):,} rows); {self.checked.train.loss.name} treats them as "
                f"{what}", self.checked.train.loss.span, "warning",
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

    def probability_targets(self, y: np.ndarray, where: str, lines: list[int] | None = None) -> None:
        """Targets of a binary loss that are not all 0/1: probabilities (soft labels,
        distillation) or several labels per sample, which torch's BCE losses take as they are.
        Only values outside [0, 1] are wrong (the loss would be meaningless, even negative)."""
        check_probabilities(np.asarray(y, np.float64), where, self.checked.train.loss, lines)
        self.pre.probabilities = True
        self.target_values = np.asarray(y)

    def maybe_suggest_normalize_target(self, y: np.ndarray, where: str) -> None:
        """Regression targets far from the unit scale a fresh model starts at: an untrained model
        (outputs near 0) begins at a loss of about their mean square and spends many epochs
        growing its last layer. "Large": a root mean square above LARGE_TARGETS."""
        loss = self.checked.train.loss
        src = self.data.train
        if self.data.normalize_target is not None or loss.name not in VALUE_UNIT_LOSSES or src is None or not len(y):
            return
        flat = np.asarray(y, np.float64).reshape(len(y), -1)[:200_000]
        rms = float(np.sqrt(np.mean(flat**2)))
        if rms <= LARGE_TARGETS:
            return
        self.warnings.append(Diagnostic(
            f"{where}: the targets are large (root mean square {rms:.3g}; mean {flat.mean():.3g}, standard deviation "
            f"{flat.std():.3g}): an untrained model starts near a loss of {rms**2:.3g} and needs many epochs to "
            "reach their scale", src.span, "warning",
            "add `normalize_target: standard` to the data section: the loss then sees standardised targets, while "
            "metrics, predictions and exports stay in the target's units"))

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

    def encode(self, raw: RawSet, what: str, src: ir.Source, rows: np.ndarray | None = None
               ) -> tuple[Any, np.ndarray | None]:
        """(x, y) of `raw` in model terms. `rows`: only these rows are encoded (and checked
        against the vocabularies); the arrays keep the source's row numbering, the other rows
        left at zero (a subset's unused rows are never looked at)."""
        pre = self.pre
        n = len(raw) if raw.kind == "csv" or raw.x is not None else 0
        if raw.kind == "csv":
            assert raw.table is not None
            table = raw.table if rows is None else _subtable(raw.table, rows)
            if pre.kind == "text":
                x = self.encode_text(table, what)
                if rows is not None:
                    self.text_lengths[what] = _scatter(self.text_lengths[what], rows, n)
            else:
                x = self.encode_csv_features(table, what)
                if pre.tokens:
                    x = self.token_ids(x, str(table.path), table)
            y = None if pre.task == "input" else self.encode_csv_targets(table, what)
            return (x, y) if rows is None else (_scatter(x, rows, n), None if y is None else _scatter(y, rows, n))
        x = raw.x
        if pre.kind == "image" and raw.kind != "image" or pre.kind == "table" and raw.kind == "image":
            raise data_error(f"{raw.file}: {what} are {'images' if raw.kind == 'image' else 'numbers'} but the "
                             f"training data are {'images' if pre.kind == 'image' else 'numbers'}")
        if list(raw.x.shape[1:]) != list(pre.source_shape):
            raise data_error(f"{raw.file}: {what} samples have shape {fmt_shape(raw.x.shape[1:])}, the training "
                             f"samples {fmt_shape(tuple(pre.source_shape))}")
        if pre.tokens:
            self.token_ids(raw.x if rows is None else np.asarray(raw.x)[rows], raw.file)
            x = np.asarray(raw.x).astype(np.int64)
        if pre.task == "input":
            return x, None
        if rows is None:
            return x, self.encode_targets(raw.y, raw.classes, raw.file, what, None)
        y = self.encode_targets(np.asarray(raw.y)[rows], raw.classes, raw.file, what, None)
        return x, _scatter(y, rows, len(raw.y))

    def row_targets(self, table: CsvTable, what: str, rows: np.ndarray) -> np.ndarray:
        """The coded targets of the CSV rows `rows`, numbered as the table's rows."""
        return _scatter(self.encode_csv_targets(_subtable(table, rows), what), rows, len(table))

    def token_ids(self, x: Any, file: str, table: CsvTable | None = None, rows: np.ndarray | None = None) -> Any:
        """x as the ids an Embedding (the model's first layer) looks up: whole numbers (stored
        as integers, or as floats such as 3.0) in [0, num_embeddings). Anything else is an
        error at the Embedding naming the file, row (CSV: line and column) and value: torch
        would truncate 5.1 to id 5 without a word, and fail on an id out of range."""
        layer = ir.first_layer(self.checked.model)
        assert layer is not None
        n = int(dict(layer.kwargs)["num_embeddings"])
        a = np.asarray(x)
        if a.size == 0:
            return a.astype(np.int64)
        flat = a.reshape(len(a), -1)

        def place(bad: np.ndarray) -> tuple[int, int]:
            r = int(np.argmax(bad.any(axis=1)))
            return r, int(np.argmax(bad[r]))

        def where(r: int, j: int) -> str:
            if table is not None:
                line = table.lines[int(rows[r]) if rows is not None else r]
                names = self.pre.features or []
                return f"{table.path.name}:{line}: column {names[j] if j < len(names) else j!r}"
            return f"{file} sample {r}"

        help_ = ("an Embedding looks up rows by id: for measurements leave it out (start with Linear), "
                 "for words or categories give their ids 0, 1, 2, ...")
        if a.dtype.kind == "f":
            fractional = ~np.equal(np.mod(flat, 1), 0)
            if fractional.any():
                r, j = place(fractional)
                raise data_error(f"Embedding takes integer token ids, but {where(r, j)} holds {flat[r, j]:g}",
                                 help_, span=layer.span)
        elif a.dtype.kind not in "iub":
            raise data_error(f"Embedding takes integer token ids, but {file} holds {a.dtype} values", help_,
                             span=layer.span)
        outside = (flat < 0) | (flat >= n)
        if outside.any():
            r, j = place(outside)
            v = int(flat[r, j])
            at = f"{where(r, j)}: token id {v}" if table is not None else f"{file}: token id {v} (sample {r})"
            fix = "ids start at 0" if v < 0 else \
                f"raise num_embeddings to {int(flat.max()) + 1} (the largest id + 1)"
            raise data_error(f"{at} is outside Embedding's {n} ids (0 to {n - 1})", fix, span=layer.span)
        return a.astype(np.int64)

    def encode_csv_features(self, table: CsvTable, what: str, rows: np.ndarray | None = None) -> np.ndarray:
        """The feature matrix of `table` (of its `rows`, default all) with the training columns."""
        pre = self.pre
        n = len(table) if rows is None else len(rows)
        blocks = []
        for col in pre.columns or ():
            name = col[0]
            if name not in table.columns:
                raise data_error(f"{table.path}: no column {name!r} ({what} needs the training columns)")
            cells = table.columns[name] if rows is None else [table.columns[name][i] for i in rows]
            lines = table.lines if rows is None else [table.lines[i] for i in rows]
            if col[1] == "categorical":
                vocab = {v: i for i, v in enumerate(col[2])}
                block = np.zeros((n, len(vocab)), np.float32)
                for r, c in enumerate(cells):
                    j = vocab.get(c)
                    if j is None:
                        raise data_error(f"{table.path}:{lines[r]}: column {name!r}: value {c!r} never occurs "
                                         "in the training data",
                                         f"known values: {', '.join(map(repr, col[2][:10]))}")
                    block[r, j] = 1.0
                blocks.append(block)
            else:
                values, bad = _parse_numbers(cells)
                if bad:
                    r = bad[0]
                    raise data_error(f"{table.path}:{lines[r]}: column {name!r}: {cells[r]!r} is not a "
                                     "finite number" if cells[r] else
                                     f"{table.path}:{lines[r]}: column {name!r} is empty (a missing value)")
                blocks.append(np.asarray(values, np.float32)[:, None])
        return np.concatenate(blocks, axis=1) if blocks else np.zeros((n, 0), np.float32)

    def encode_csv_targets(self, table: CsvTable, what: str) -> np.ndarray:
        pre = self.pre
        targets = pre.targets or []
        for t in targets:
            if t not in table.columns:
                raise data_error(f"{table.path}: no target column {t!r} ({what} needs the training columns)")
        if len(targets) > 1 or not pre.coded:
            out = np.zeros((len(table), len(targets)), np.float32)
            for j, t in enumerate(targets):
                values, bad = _parse_numbers(table.columns[t])
                if bad:
                    r = bad[0]
                    cell = table.columns[t][r]
                    raise data_error(f"{table.path}:{table.lines[r]}: target column {t!r}: "
                                     + (f"{cell!r} is not a finite number" if cell else "empty (a missing value)"))
                out[:, j] = values
            if pre.probabilities:
                check_probabilities(out, str(table.path), self.checked.train.loss, table.lines)
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
        if not pre.coded:
            if pre.probabilities:
                check_probabilities(np.asarray(y, np.float64), f"{file}: {what}", self.checked.train.loss)
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


def check_class_weight(loss: ir.CallValue, out: tuple) -> None:
    """CrossEntropyLoss's weight= needs one value per output (torch checks it against the
    output's width, not the class count)."""
    weight = loss.get("weight")
    width = out[-1] if out and out[-1] is not None else None
    if loss.name == "CrossEntropyLoss" and weight is not None and width is not None and len(weight) != width:
        raise data_error(f"CrossEntropyLoss weight= has {len(weight)} values but the model outputs [{width}] class "
                         "scores", f"give one weight per output ({width})", span=loss.span)


def check_probabilities(y: np.ndarray, where: str, loss: ir.CallValue, lines: list[int] | None = None) -> None:
    """Binary-loss targets must lie in [0, 1]; the first one outside is named with its row."""
    flat = np.asarray(y, np.float64).reshape(len(y), -1)
    outside = (flat < 0) | (flat > 1)
    if outside.any():
        r = int(np.argmax(outside.any(axis=1)))
        v = flat[r][outside[r]][0]
        at = f"row {lines[r]}" if lines is not None else f"sample {r}"
        raise data_error(f"{loss.name} takes targets in [0, 1] (labels or probabilities), but {where} holds "
                         f"{v:g} ({at})", "for values outside [0, 1] use a value loss (MSELoss), or rescale the "
                         "targets into [0, 1]", span=loss.span)


def _subtable(table: CsvTable, rows: np.ndarray) -> CsvTable:
    """The rows `rows` of a CSV table, with their file lines (for messages)."""
    return CsvTable(table.path, table.header, {k: [v[i] for i in rows] for k, v in table.columns.items()},
                    [table.lines[i] for i in rows])


def _scatter(a: np.ndarray, rows: np.ndarray, n: int) -> np.ndarray:
    """`a` (one entry per row of `rows`) placed at those rows of an n-row array of zeros."""
    out = np.zeros((n, *a.shape[1:]), a.dtype)
    out[rows] = a
    return out


def describe_values(y: np.ndarray) -> tuple[tuple | None, str]:
    """(the distinct values when there are at most two, else None; words for the values),
    from a bounded sample of value targets."""
    flat = np.asarray(y, dtype=np.float64).reshape(len(y), -1)
    distinct = np.unique(flat[:200_000])
    columns = f" in {flat.shape[1]} columns" if flat.shape[1] > 1 else ""
    n = len(distinct)
    if n == 0:
        return (), "empty"
    if n <= 20 and np.all(np.equal(np.mod(distinct, 1), 0)):
        shown = ", ".join(f"{v:g}" for v in distinct[:6]) + (", ..." if n > 6 else "")
        return (tuple(float(v) for v in distinct) if n <= 2 else None,
                f"{n} distinct whole value{'s' if n > 1 else ''} ({shown}){columns}")
    return None, f"continuous ({n} distinct values from {distinct[0]:g} to {distinct[-1]:g}){columns}"


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
