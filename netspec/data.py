"""Data sources and preprocessing, in numpy (no torch: onnxruntime evaluation reuses it).

In: ``ir.CheckedSpec`` (its DataConfig, model input shape and loss).
Out: ``Prepared`` with train / validation / test arrays shaped for the model and the
loss, plus the preprocessing (normalisation statistics, image layout) that the ONNX
metadata carries so `predict` can repeat it.

Sources: IDX (raw or .gz, validated), `mnist`/`fashion_mnist` (see datasets.py),
`csv(...)`, `table(...)` evaluated by expr.py. Image sources give floats in [0, 1],
shape [1, H, W]. Statistics come from the training split only; splits are seeded.
"""

from __future__ import annotations

import csv as csvlib
import gzip
import math
import struct
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from . import catalogue as cat
from . import ir
from .datasets import DATASETS, file_in, locate
from .errors import DataError, Diagnostic, NetspecError, did_you_mean
from .expr import evaluate_table

IDX_TYPES: dict[int, Any] = {0x08: np.uint8, 0x09: np.int8, 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}


def data_error(message: str, help: str | None = None) -> DataError:
    return DataError(Diagnostic(message, help=help))


# ---------------------------------------------------------------- IDX


def read_idx(path: str | Path) -> np.ndarray:
    """An IDX file (raw or gzip) as an array; every header field is validated."""
    path = Path(path)
    try:
        opener = gzip.open if path.suffix == ".gz" else open
        with opener(path, "rb") as f:
            raw = f.read()
    except FileNotFoundError:
        raise data_error(f"{path}: no such file") from None
    except (OSError, EOFError, gzip.BadGzipFile) as e:
        raise data_error(f"{path}: cannot read ({e})") from None
    if len(raw) < 4:
        raise data_error(f"{path}: not an IDX file (only {len(raw)} bytes)")
    zero, dtype_code, ndim = struct.unpack(">HBB", raw[:4])
    if zero != 0 or dtype_code not in IDX_TYPES or ndim == 0:
        raise data_error(f"{path}: not an IDX file (bad magic number 0x{raw[:4].hex()})",
                         "IDX files start with 00 00, a type byte (08 = ubyte) and the number of dimensions")
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise data_error(f"{path}: truncated header")
    dims = struct.unpack(f">{ndim}I", raw[4:header])
    dtype = np.dtype(IDX_TYPES[dtype_code])
    expected = math.prod(dims) * dtype.itemsize
    have = len(raw) - header
    if have < expected:
        raise data_error(f"{path}: truncated: header says {list(dims)} ({expected} bytes of data), "
                         f"the file has {have}")
    if have > expected:
        raise data_error(f"{path}: {have - expected} unexpected bytes after the data of shape {list(dims)}")
    return np.frombuffer(raw, dtype=dtype, offset=header, count=math.prod(dims)).reshape(dims)


def load_idx_pair(images: Path, labels: Path) -> tuple[np.ndarray, np.ndarray]:
    x = read_idx(images)
    y = read_idx(labels)
    if y.ndim != 1:
        raise data_error(f"{labels}: labels must be 1-dimensional, got shape {list(y.shape)}",
                         "is this an images file? labels files are *-labels-idx1-ubyte")
    if x.ndim < 2:
        raise data_error(f"{images}: images need at least 2 dimensions, got shape {list(x.shape)}",
                         "is this a labels file? images files are *-images-idx3-ubyte")
    if len(x) != len(y):
        raise data_error(f"{images} has {len(x)} images but {labels} has {len(y)} labels")
    if x.ndim == 3:
        x = x[:, None]  # [N, 1, H, W]
    scale = 255.0 if x.dtype == np.uint8 else 1.0
    return (x.astype(np.float32) / scale), y.astype(np.int64)


# ---------------------------------------------------------------- sources


@dataclass
class Loaded:
    x: np.ndarray
    y: np.ndarray
    image: bool = False
    labels: tuple[str, ...] | None = None


def load_source(src: ir.Source, seed: int, allow_download: bool = True, env: dict | None = None) -> Loaded:
    kind = src.kind
    args = dict(src.kwargs)
    if kind in DATASETS:
        split = args.get("split") or "train"
        roles = (f"{split}_images", f"{split}_labels")
        folder = locate(kind, args.get("root"), roles, allow_download)
        ds = DATASETS[kind]
        images = file_in(folder, ds.files[roles[0]])
        labels = file_in(folder, ds.files[roles[1]])
        assert images is not None and labels is not None
        x, y = load_idx_pair(images, labels)
        return Loaded(x, y, True, ds.labels)
    if kind == "idx":
        x, y = load_idx_pair(Path(args["images"]), Path(args["labels"]))
        return Loaded(x, y, True)
    if kind == "csv":
        return load_csv(args)
    if kind == "table":
        return load_table(args, seed, env or {})
    raise data_error(f"unknown data source {kind}")


def load_table(args: dict, seed: int, env: dict) -> Loaded:
    """Columns are evaluated in order with the spec's constants in scope; y sees x."""
    rng = np.random.default_rng(seed)
    x = np.asarray(evaluate_table(args["x"], env, rng), dtype=np.float64)
    y = np.asarray(evaluate_table(args["y"], {**env, "x": x}, rng), dtype=np.float64)
    if x.ndim == 0 or y.ndim == 0:
        raise NetspecError.at(args["x"].span if x.ndim == 0 else args["y"].span,
                              "a table column needs one value per sample, got a single number")
    if len(x) != len(y):
        raise NetspecError.at(args["y"].span, f"table columns differ in length: x has {len(x)} rows, y has {len(y)}")
    if not np.all(np.isfinite(x)) or not np.all(np.isfinite(y)):
        bad = "x" if not np.all(np.isfinite(x)) else "y"
        raise NetspecError.at(args[bad].span, f"table column {bad} contains NaN or infinite values")
    x = x[:, None] if x.ndim == 1 else x
    y = y[:, None] if y.ndim == 1 else y
    return Loaded(x.astype(np.float32), y)


def load_csv(args: dict) -> Loaded:
    path = Path(args["path"])
    try:
        with open(path, newline="", encoding="utf-8-sig") as f:
            rows = list(csvlib.reader(f, delimiter=args.get("delimiter") or ","))
    except FileNotFoundError:
        raise data_error(f"{path}: no such file") from None
    except (OSError, UnicodeDecodeError, csvlib.Error) as e:
        raise data_error(f"{path}: cannot read as CSV ({e})") from None
    if not rows:
        raise data_error(f"{path}: empty file")
    header = [h.strip() for h in rows[0]]
    body = [r for r in rows[1:] if any(c.strip() for c in r)]
    if not body:
        raise data_error(f"{path}: no data rows after the header")
    target = args["target"][0] if isinstance(args["target"], tuple) else args["target"]
    categorical = list(args.get("categorical") or ())
    features = list(args["features"]) if args.get("features") else [h for h in header if h != target]
    for col in [target, *features, *categorical]:
        if col not in header:
            raise data_error(f"{path}: no column `{col}`",
                             did_you_mean(col, header) or "columns: " + ", ".join(header))
    index = {h: i for i, h in enumerate(header)}
    for n, r in enumerate(body, start=2):
        if len(r) != len(header):
            raise data_error(f"{path}:{n}: {len(r)} cells, the header has {len(header)}")

    def column(name: str) -> list[str]:
        return [r[index[name]].strip() for r in body]

    blocks = []
    for name in features:
        cells = column(name)
        if name in categorical:
            cats = sorted(set(cells))
            for n, c in enumerate(cells, start=2):
                if c == "":
                    raise data_error(f"{path}:{n}: column `{name}` is empty", "fill in or drop missing values")
            blocks.append(np.array([[c == k for k in cats] for c in cells], dtype=np.float32))
        else:
            blocks.append(_numeric(cells, path, name)[:, None])
    x = np.concatenate(blocks, axis=1) if blocks else np.zeros((len(body), 0), np.float32)
    tcells = column(target)
    labels = None
    try:
        y = _numeric(tcells, path, target).astype(np.float64)
    except DataError:
        cats = sorted(set(tcells))
        labels = tuple(cats)
        y = np.array([cats.index(c) for c in tcells], dtype=np.float64)
    return Loaded(x.astype(np.float32), y[:, None], False, labels)


def _numeric(cells: list[str], path: Path, name: str) -> np.ndarray:
    out = np.empty(len(cells), dtype=np.float32)
    for n, c in enumerate(cells):
        if c == "":
            raise data_error(f"{path}:{n + 2}: column `{name}` is empty (missing value)",
                             "fill in or drop missing values, or list the column in categorical")
        try:
            out[n] = float(c)
        except ValueError:
            raise data_error(f"{path}:{n + 2}: column `{name}`: {c!r} is not a number",
                             f"list `{name}` in categorical=[...] to one-hot encode it") from None
    return out


# ---------------------------------------------------------------- preparation


@dataclass
class Prepared:
    train: tuple[np.ndarray, np.ndarray]
    val: tuple[np.ndarray, np.ndarray] | None
    test: tuple[np.ndarray, np.ndarray] | None
    task: str  # class | value | binary
    classes: int | None
    labels: tuple[str, ...] | None
    preprocessing: dict = field(default_factory=dict)


def loss_target(checked: ir.CheckedSpec) -> str:
    spec = cat.LOSSES[checked.train.loss.name]
    data = checked.data
    if data is not None and data.target_type == "value" and spec.target == "class":
        return "value"
    return spec.target


def prepare(checked: ir.CheckedSpec, *, allow_download: bool = True,
            stats: dict | None = None) -> Prepared:
    """Load, split and shape the data. `stats`: preprocessing saved with trained weights
    (evaluation must normalise exactly as training did)."""
    data = checked.data
    if data is None or data.train is None:
        raise data_error(f"{checked.spec.file}: no data section with a `train:` source",
                         'add e.g. data { train: mnist(split="train") }')
    seed = checked.train.seed
    env = {k: v for k, v in checked.constants if isinstance(v, (int, float)) and not isinstance(v, bool)}
    base = load_source(data.train, seed, allow_download, env)
    x, y = base.x, base.y
    if data.subset is not None:
        x, y = x[: data.subset], y[: data.subset]
    rng = np.random.default_rng(seed)
    test: tuple[np.ndarray, np.ndarray] | None = None
    val: tuple[np.ndarray, np.ndarray] | None = None
    n = len(x)
    if data.split is not None:
        perm = rng.permutation(n)
        a, b = int(round(n * data.split[0])), int(round(n * data.split[1]))
        tr, va, te = perm[:a], perm[a : a + b], perm[a + b :]
        val = (x[va], y[va]) if len(va) else None
        test = (x[te], y[te]) if len(te) else None
        x, y = x[tr], y[tr]
    elif data.validation:
        perm = rng.permutation(n)
        k = int(round(n * data.validation))
        val = (x[perm[:k]], y[perm[:k]]) if k else None
        x, y = x[perm[k:]], y[perm[k:]]
    if data.test is not None:
        t = load_source(data.test, seed + 1, allow_download, env)
        test = (t.x, t.y)
    if len(x) == 0:
        raise data_error(f"{checked.spec.file}: the training split is empty")
    pre = stats if stats else preprocessing(x, data.normalize, base.image)
    task = loss_target(checked)
    out_shape = checked.model.output_shape
    classes = out_shape[-1] if task == "class" or data.one_hot else None
    labels = data.labels or base.labels

    def conform(split: tuple[np.ndarray, np.ndarray], what: str) -> tuple[np.ndarray, np.ndarray]:
        sx, sy = split
        sx = apply_preprocessing(sx, pre)
        return conform_inputs(sx, checked, what), conform_targets(sy, checked, task, classes, what)

    prepared = Prepared(
        train=conform((x, y), "training data"),
        val=conform(val, "validation data") if val is not None else None,
        test=conform(test, "test data") if test is not None else None,
        task=task,
        classes=classes,
        labels=tuple(labels) if labels else None,
        preprocessing=pre,
    )
    return prepared


def evaluation_split(data: Prepared, file: str) -> tuple[str, tuple[np.ndarray, np.ndarray]]:
    """The split `eval` reports on, with its metric prefix: test, else validation."""
    if data.test is not None:
        return "test_", data.test
    if data.val is not None:
        return "val_", data.val
    raise data_error(f"{file}: no test or validation data to evaluate on",
                     "add `test:`, `validation:` or `split:` to the data section")


def preprocessing(x: np.ndarray, mode: str, image: bool) -> dict:
    """Statistics from training inputs: per channel for images, per column otherwise."""
    axis = 1 if image else x.ndim - 1
    reduce = tuple(i for i in range(x.ndim) if i != axis)
    pre: dict = {"normalize": mode, "image": image, "source_shape": list(x.shape[1:]), "axis": axis}
    if mode == "standard":
        mean = x.mean(axis=reduce, dtype=np.float64)
        std = x.std(axis=reduce, dtype=np.float64)
        std[std == 0] = 1.0
        pre.update(mean=mean.tolist(), std=std.tolist())
    elif mode == "minmax":
        lo = x.min(axis=reduce).astype(np.float64)
        hi = x.max(axis=reduce).astype(np.float64)
        span = hi - lo
        span[span == 0] = 1.0
        pre.update(min=lo.tolist(), range=span.tolist())
    return pre


def apply_preprocessing(x: np.ndarray, pre: dict) -> np.ndarray:
    mode = pre.get("normalize", "none")
    if mode == "none":
        return x.astype(np.float32, copy=False)
    axis = pre["axis"]
    shape = [1] * x.ndim
    shape[axis] = -1
    if mode == "standard":
        mean = np.asarray(pre["mean"], np.float32).reshape(shape)
        std = np.asarray(pre["std"], np.float32).reshape(shape)
        return ((x - mean) / std).astype(np.float32)
    lo = np.asarray(pre["min"], np.float32).reshape(shape)
    span = np.asarray(pre["range"], np.float32).reshape(shape)
    return ((x - lo) / span).astype(np.float32)


def conform_inputs(x: np.ndarray, checked: ir.CheckedSpec, what: str) -> np.ndarray:
    want = checked.model.input_shape
    have = x.shape[1:]
    if len(have) == len(want) and all(w is None or w == h for w, h in zip(want, have)):
        out = x
    elif None not in want and math.prod(have) == math.prod(int(d or 0) for d in want):
        out = x.reshape(len(x), *want)
    else:
        raise data_error(f"{checked.spec.file}: {what} samples have shape {cat.fmt_shape(have)} but the model "
                         f"input is {cat.fmt_shape(want)}", "change `input:` in the model to match the data")
    from .build_info import first_layer_takes_indices

    if first_layer_takes_indices(checked.model):
        if not np.all(np.equal(np.mod(out, 1), 0)):
            raise data_error(f"{checked.spec.file}: {what}: an Embedding input needs integer token ids")
        return out.astype(np.int64)
    return np.ascontiguousarray(out, dtype=np.float32)


def conform_targets(y: np.ndarray, checked: ir.CheckedSpec, task: str, classes: int | None, what: str) -> np.ndarray:
    out_shape = checked.model.output_shape
    data = checked.data
    file = checked.spec.file
    if task == "class" or (data is not None and data.one_hot):
        flat = y.reshape(len(y), -1)
        if flat.shape[1] != 1:
            raise data_error(f"{file}: {what}: class targets need one label per sample, got {list(y.shape[1:])}")
        flat = flat[:, 0]
        if not np.all(np.equal(np.mod(flat, 1), 0)):
            raise data_error(f"{file}: {what}: class labels must be whole numbers",
                             "for regression use a value loss (MSELoss) or set target_type: value")
        idx = flat.astype(np.int64)
        if classes is not None and len(idx) and (idx.min() < 0 or idx.max() >= classes):
            raise data_error(f"{file}: {what}: labels range from {idx.min()} to {idx.max()}, but the model "
                             f"outputs {classes} classes", f"make the last layer produce {idx.max() + 1} values")
        if task == "class":
            return idx
        onehot = np.zeros((len(idx), int(classes or 0)), dtype=np.float32)
        onehot[np.arange(len(idx)), idx] = 1.0
        return onehot.reshape(len(idx), *out_shape) if None not in out_shape else onehot
    per_sample = y.shape[1:]
    if None in out_shape:
        return y.astype(np.float32)
    if math.prod(per_sample) != math.prod(int(d or 0) for d in out_shape):
        raise data_error(f"{file}: {what}: targets have shape {cat.fmt_shape(per_sample)} per sample but the model "
                         f"outputs {cat.fmt_shape(out_shape)}", "make the last layer produce the target's shape")
    return y.reshape(len(y), *out_shape).astype(np.float32)
