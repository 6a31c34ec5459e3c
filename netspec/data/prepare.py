"""Data preparation: the sources read, encoded, split, with normalisation statistics.

In: ``ir.CheckedSpec`` (its DataConfig, the model's input/output shapes and the loss) and
the raw sources from sources.py; optionally the ``Preprocessing`` a trained run saved (so
evaluation and prediction encode and normalise exactly as training did).
Out: ``Prepared``: train / validation / test ``Split``s holding raw samples (uint8 images,
numbers; memory-mapped where the source is) and encoded targets (encode.py), plus the
``Preprocessing`` record (vocabularies, feature names, statistics, shapes) that the
checkpoint and the ONNX metadata carry. Scaling (images to [0, 1]), normalisation and the
reshape to the model input happen per batch in torch (layers.InputTransform), the same
module the ONNX graph contains. The rules are encode.py's (docs/language.md, "Data rules").
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from netspec import ir
from netspec.data.encode import (  # noqa: F401 - image_geometry, loss_task, takes_tokens re-exported
    Encoder,
    Preprocessing,
    image_geometry,
    loss_task,
    takes_tokens,
)
from netspec.data.sources import RawSet, ReadOptions, read_idx, read_source, table_env  # noqa: F401 - read_idx re-exported
from netspec.errors import NO_SPAN, Diagnostic, NetspecError, data_error


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
    # what reading the sources said, for stderr (see `reading_lines`): image folders' warnings
    # (links not followed, skipped files, a rebuilt cache; span-less) and `decoded N images ...` lines
    source_warnings: list[Diagnostic] = field(default_factory=list)
    decoded: list[str] = field(default_factory=list)
    text_lengths: dict[str, np.ndarray] = field(default_factory=dict)  # texts: tokens per text by split, uncut

    @property
    def task(self) -> str:
        return self.pre.task

    @property
    def classes(self) -> int | None:
        return len(self.pre.classes) if self.pre.classes else None

    @property
    def labels(self) -> tuple[str, ...] | None:
        return tuple(self.pre.classes) if self.pre.classes else None


# ---------------------------------------------------------------- prepare


def prepare(checked: ir.CheckedSpec, *, allow_download: bool = True, saved: Preprocessing | dict | None = None,
            quiet: bool = False) -> Prepared:
    """Load, type, encode and split the data. `saved`: a trained run's preprocessing, so
    vocabularies and statistics are the run's, not recomputed."""
    data = checked.data
    if data is None or data.train is None:
        raise data_error(f"{checked.spec.file}: no data section with a `train:` source",
                         'add e.g. data { train: mnist(split="train") }')
    said: list[RawSet] = []  # the sources read so far: an error carries their warnings
    try:
        return _prepare(checked, allow_download, saved, said)
    except NetspecError as e:
        warned = source_warnings(*said)
        if not warned:
            raise
        raise type(e)(warned + e.diagnostics) from None


def _prepare(checked: ir.CheckedSpec, allow_download: bool, saved: Preprocessing | dict | None,
             said: list[RawSet]) -> Prepared:
    data = checked.data
    assert data is not None and data.train is not None
    if isinstance(saved, dict):
        saved = Preprocessing.from_json(saved)
    seed = checked.train.seed
    size, channels = image_geometry(checked)
    opts = ReadOptions(seed=seed, env=table_env(checked), allow_download=allow_download, image_size=size,
                       channels=channels, skip_bad=data.skip_bad)
    classes_hint = tuple(saved.classes) if saved is not None and saved.classes and data.train.kind == "image_folder" \
        else None
    base = _read(data.train, replace(opts, classes=classes_hint))
    notes = _source_notes(base)
    said.append(base)
    n = len(base)
    rows = source_rows(data, n, seed)
    enc, x_all, y_all, pieces = learn_and_encode(checked, saved, base, rows)
    if data.subset is not None and data.subset > n:
        enc.warnings.append(Diagnostic(f"subset: {data.subset:,} asks for more samples than the training source "
                                       f"holds ({n:,}); all {n:,} are used", data.train.span, "warning"))
    train = _split("training data", x_all, y_all, pieces[0])
    val = _split("validation data", x_all, y_all, pieces[1]) if pieces[1] is not None and len(pieces[1]) else None
    test = _split("test data", x_all, y_all, pieces[2]) if pieces[2] is not None and len(pieces[2]) else None
    if data.test is not None:
        tclasses = base.classes if data.test.kind == "image_folder" else None
        traw = _read(data.test, replace(opts, seed=seed + 1, classes=tclasses))
        notes += _source_notes(traw)
        said.append(traw)
        tx, ty = enc.encode(traw, "test data", data.test)
        test = Split("test data", tx, ty)
    if len(train) == 0:
        raise data_error(f"{checked.spec.file}: the training split is empty",
                         "lower `validation`/`split`, or raise `subset`")
    if saved is None:
        learn_statistics(enc.pre, train)
        learn_target_statistics(enc.pre, train, data.normalize_target, checked.model.output_shape)
    enc.conform()
    prepared = Prepared(train, val, test, enc.pre, notes, enc.warnings, source_warnings(*said),
                        [raw.extra["decoded"] for raw in said if raw.extra.get("decoded")])
    if enc.pre.kind == "text":  # tokens per text before max_len, for `netspec data`
        lengths = enc.text_lengths["training data"]
        prepared.text_lengths = {"train": lengths[pieces[0]]}
        if val is not None and pieces[1] is not None:
            prepared.text_lengths["validation"] = lengths[pieces[1]]
        if data.test is not None:
            prepared.text_lengths["test"] = enc.text_lengths["test data"]
        elif test is not None and pieces[2] is not None:
            prepared.text_lengths["test"] = lengths[pieces[2]]
    return prepared


def csv_training_rows(table: Any, data: ir.DataConfig, seed: int, enc: Encoder | None = None) -> np.ndarray:
    """The rows of a CSV that the training split holds (sorted): what the tokenizer
    learns from. The split is prepare's; stratified by the class codes the Encoder gives the
    target (`enc`), or, before there is one (check), by encode.class_codes, which codes alike."""
    from netspec.data.encode import class_codes

    rows = source_rows(data, len(table), seed)
    labels = None
    if data.stratify and data.train is not None:
        target = (data.train.get("target") or ("",))[0]
        if enc is not None and enc.pre.task in ("class", "binary"):
            labels = enc.encode_csv_targets(table, "training data")
        elif target in table.columns:
            labels = class_codes(table.columns[target], data.labels)
    return np.sort(split_rows(rows, data, seed, labels)[0])


def source_rows(data: ir.DataConfig, n: int, seed: int) -> np.ndarray:
    """The rows of an n-row training source that are used: all, or `subset`'s seeded sample."""
    if data.subset is not None and data.subset < n:
        # a seeded random sample, never the first N: image folders (and many files) are
        # sorted by class, and their first N samples would be a few classes only
        return np.sort(np.random.default_rng(seed + 7).choice(n, data.subset, replace=False))
    return np.arange(n)


def learn_and_encode(checked: ir.CheckedSpec, saved: Preprocessing | None, base: RawSet, rows: np.ndarray
                     ) -> tuple[Encoder, Any, np.ndarray | None, tuple]:
    """Split the used `rows` of the training source, learn the vocabularies from the training
    rows alone, and encode every used row with them (a value that only validation or test
    rows hold is an error naming its row). Returns the encoder, x and y numbered as the
    source's rows, and the (train, validation, test) row numbers."""
    data = checked.data
    assert data is not None and data.train is not None
    seed = checked.train.seed
    keys = None
    if data.stratify and (data.split is not None or data.validation):
        # each class's share needs the labels before the split: coded with a vocabulary of all
        # used rows (the same codes as the training rows' whenever the splits agree on classes)
        first = Encoder(checked, saved)
        first.learn(base, rows)
        if not first.pre.coded:
            keys = None
        elif first.pre.kind == "text":  # the labels alone: the tokenizer is learnt after the split
            assert base.table is not None
            keys = first.row_targets(base.table, "training data", rows)
        else:
            keys = first.encode(base, "training data", data.train, rows)[1]
    pieces = split_rows(rows, data, seed, keys)
    enc = Encoder(checked, saved)
    enc.learn(base, pieces[0])
    if enc.pre.kind == "text" and saved is None:  # the tokenizer too learns from the training rows only
        assert base.table is not None
        enc.learn_text(base.table, pieces[0])
    x_all, y_all = enc.encode(base, "training data", data.train, None if len(rows) == len(base) else rows)
    return enc, x_all, y_all, pieces


def _read(src: ir.Source, opts: ReadOptions) -> RawSet:
    raw = read_source(src, opts)
    assert raw is not None  # only a peek reads as None
    return raw


def _split(name: str, x: Any, y: np.ndarray | None, index: np.ndarray) -> Split:
    if isinstance(x, np.memmap) or x.nbytes > (1 << 30):
        return Split(name, x, y[index] if y is not None else None, index)
    return Split(name, x[index], y[index] if y is not None else None)


def _source_notes(raw: RawSet) -> list[str]:
    if raw.extra.get("cache"):
        state = "built" if raw.extra.get("built") else "reused"
        return [f"image cache {state}: {raw.extra['cache']}"]
    return []


def source_warnings(*raws: RawSet) -> list[Diagnostic]:
    """The warnings reading the sources gave (image folders'), each once, span-less."""
    said = dict.fromkeys(w for raw in raws for w in raw.extra.get("warnings", ()))
    return [Diagnostic(w, NO_SPAN, "warning") for w in said]


def reading_lines(data: Prepared, shown: Iterable[str] = ()) -> list[str]:
    """What reading the data said, as `netspec` prints it on stderr: each source warning whose
    message is not in `shown` (check's data pass may have said it already), then the
    `decoded ...` line of each image cache built."""
    seen = set(shown)
    return [w.render() for w in data.source_warnings if w.message not in seen] + data.decoded


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


# ---------------------------------------------------------------- statistics


def learn_statistics(pre: Preprocessing, train: Split) -> None:
    """The normalisation statistics (`normalize:`) of the training split, into `pre`."""
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


def learn_target_statistics(pre: Preprocessing, train: Split, how: str | None, out: tuple) -> None:
    """`normalize_target:` statistics of the training split's targets, into `pre`: per output
    column for a model that outputs [k], one pair for any other output shape."""
    if how in (None, "none") or train.y is None or pre.task != "value" or pre.one_hot or pre.probabilities:
        return
    y = np.asarray(train.y, np.float64)
    y = y.reshape(len(y), -1) if len(out) == 1 else y.reshape(-1, 1)
    if how == "standard":
        shift, div = y.mean(axis=0), y.std(axis=0)
    else:
        shift, div = y.min(axis=0), y.max(axis=0) - y.min(axis=0)
    div[div == 0] = 1.0
    pre.target_normalize, pre.target_shift, pre.target_div = how, shift.tolist(), div.tolist()


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


def evaluation_split(data: Prepared, file: str) -> tuple[str, Split]:
    """The split `eval` reports on, with its metric prefix: test, else validation."""
    if data.test is not None:
        return "test_", data.test
    if data.val is not None:
        return "val_", data.val
    raise data_error(f"{file}: no test or validation data to evaluate on",
                     "add `test:`, `validation:` or `split:` to the data section")


__all__ = ["Preprocessing", "Split", "Prepared", "prepare", "evaluation_split", "loss_task", "NetspecError"]
