"""Data sources: each format read strictly into raw arrays (no encoding, no statistics).

In: an ``ir.Source`` (mnist, fashion_mnist, idx, csv, image_folder, npy, npz, table).
Out: ``RawSet``: inputs as stored (uint8 images [N, C, H, W] for IDX and image folders,
numbers otherwise; memory-mapped where the file allows), targets as stored (numbers, or
CSV cells as strings), the names needed for messages, and an intrinsic class list where
the format has one (MNIST's digits, an image folder's subfolders). encode.py then types
and encodes them, prepare.py splits them. Each kind has one reader (``READERS``), which
reads in full for prepare.py or, with ``ReadOptions(peek=True)``, cheaply for check's data
pass (headers and labels, no samples). Every problem is a ``DataError`` naming the file
(and for CSV the row and column); only regular files are read, with sizes checked
against headers.

Rules stated in docs/language.md ("Data rules"):
- IDX: the magic number, a type byte, 1 to 8 dimensions, a size that matches the header
  exactly; float data may not hold NaN or infinities.
- CSV: a header row of distinct names; every row as many cells as the header; the
  delimiter `,` unless `delimiter=` says otherwise (a header that only splits on `;` or a
  tab gets that suggestion).
"""

from __future__ import annotations

import csv as csvlib
import gzip
import io
import math
import struct
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from netspec import ir
from netspec.data.datasets import DATASETS, file_in, find_dataset, locate
from netspec.errors import DataError, data_error
from netspec.util import open_regular

IDX_TYPES: dict[int, Any] = {0x08: np.uint8, 0x09: np.int8, 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}
MAX_IDX_DIMS = 8
MAX_CSV_BYTES = 2 << 30
MAX_CSV_CELL = 1 << 20  # characters; a longer cell (a whole book in one text) is refused with its line
MAX_GZ_BYTES = 8 << 30


@dataclass
class CsvTable:
    """A CSV file as cells: `columns[name]` is a list of stripped strings, `lines[i]` the
    file line of data row i (for messages)."""

    path: Path
    header: list[str]
    columns: dict[str, list[str]]
    lines: list[int]

    def __len__(self) -> int:
        return len(self.lines)


@dataclass
class RawSet:
    """One source's samples, as stored."""

    kind: str  # image | table | csv
    file: str  # what messages name
    x: Any = None  # np.ndarray [N, ...] (image: uint8 [N, C, H, W]); None for csv (see `table`)
    y: Any = None  # np.ndarray [N] or [N, k], or None (npy without y)
    classes: tuple[str, ...] | None = None  # an intrinsic class list (MNIST digits, folders)
    table: CsvTable | None = None
    extra: dict = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.table) if self.table is not None else len(self.x)


# ---------------------------------------------------------------- IDX


def idx_header(path: Path) -> tuple[np.dtype, tuple[int, ...], int, bool]:
    """(dtype, dims, header bytes, gzipped) of an IDX file, validated, without reading its data."""
    gz = path.suffix == ".gz"
    with open_regular(path, what="IDX", error_cls=DataError) as raw:
        f: Any = gzip.GzipFile(fileobj=raw) if gz else raw
        try:
            head = f.read(4)
            if len(head) < 4:
                raise data_error(f"{path}: not an IDX file (only {len(head)} bytes)")
            zero, code, ndim = struct.unpack(">HBB", head)
            if zero != 0 or code not in IDX_TYPES or not 1 <= ndim <= MAX_IDX_DIMS:
                raise data_error(f"{path}: not an IDX file (header 0x{head.hex()}: expected 00 00, a type byte "
                                 f"and 1 to {MAX_IDX_DIMS} dimensions)",
                                 "IDX files start with 00 00, a type byte (08 = ubyte) and the number of dimensions")
            dims_raw = f.read(4 * ndim)
        except (OSError, EOFError, gzip.BadGzipFile) as e:
            raise data_error(f"{path}: cannot read ({e})") from None
        finally:
            if gz:
                f.close()
    if len(dims_raw) < 4 * ndim:
        raise data_error(f"{path}: truncated header")
    dims = struct.unpack(f">{ndim}I", dims_raw)
    return np.dtype(IDX_TYPES[code]), tuple(dims), 4 + 4 * ndim, gz


def read_idx(path: str | Path) -> np.ndarray:
    """An IDX file (raw or gzip) as an array: raw files are memory-mapped, gzip ones
    decompressed (never beyond the size the header declares)."""
    path = Path(path)
    dtype, dims, header, gz = idx_header(path)
    count = math.prod(dims)
    expected = count * dtype.itemsize
    if expected > MAX_GZ_BYTES and gz:
        raise data_error(f"{path}: declares {expected / 2**30:.1f} GiB of data; decompress it first (raw IDX files "
                         "are memory-mapped)")
    if not gz:
        size = path.stat().st_size - header
        if size != expected:
            what = "truncated" if size < expected else f"{size - expected} unexpected bytes after the data"
            raise data_error(f"{path}: {what}: the header says {list(dims)} ({expected} bytes of data), "
                             f"the file has {size}")
        arr = np.memmap(path, dtype=dtype, mode="r", offset=header, shape=dims) if count else \
            np.zeros(dims, dtype=dtype)
    else:
        with open_regular(path, what="IDX", error_cls=DataError) as raw, gzip.GzipFile(fileobj=raw) as f:
            try:
                f.read(header)
                data = f.read(expected + 1)
            except (OSError, EOFError, gzip.BadGzipFile) as e:
                raise data_error(f"{path}: cannot read ({e})") from None
        if len(data) != expected:
            what = "truncated" if len(data) < expected else "unexpected bytes after the data"
            raise data_error(f"{path}: {what}: the header says {list(dims)} ({expected} bytes of data)")
        arr = np.frombuffer(data, dtype=dtype, count=count).reshape(dims)
    if arr.dtype.kind == "f":
        bad = first_non_finite(arr)
        if bad is not None:
            raise data_error(f"{path}: sample {bad} holds NaN or an infinite value",
                             "IDX data must be finite numbers")
    return arr


def first_non_finite(a: np.ndarray, chunk: int = 1 << 20) -> int | None:
    """The index of the first sample holding NaN/inf, scanning a few MiB at a time."""
    flat = a.reshape(len(a), -1) if a.ndim > 1 else a.reshape(-1, 1)
    rows = max(1, chunk // max(flat.shape[1], 1))
    for start in range(0, len(flat), rows):
        block = np.asarray(flat[start:start + rows])
        ok = np.isfinite(block).all(axis=1)
        if not ok.all():
            return start + int(np.argmin(ok))
    return None


def read_idx_pair(images: Path, labels: Path, peek: bool = False) -> RawSet:
    """An images file and a labels file. `peek`: the images file's header only (the samples
    are an empty array of the right shape and type); the labels are always read."""
    if peek:
        dtype, dims, _, _ = idx_header(images)
    else:
        x = read_idx(images)
        dtype, dims = x.dtype, tuple(x.shape)
    y = np.asarray(read_idx(labels))
    check_idx_pair(images, labels, dims, y)
    if y.dtype.kind == "f":
        y = np.asarray(y, dtype=np.float64)
    sample = (1, *dims[1:]) if len(dims) == 3 else tuple(dims[1:])  # [N, H, W] images get a channel axis
    x = np.zeros((0, *sample), dtype.newbyteorder("=")) if peek else x[:, None] if len(dims) == 3 else x
    kind = "image" if dtype == np.uint8 and len(sample) == 3 else "table"
    return RawSet(kind, str(images), x, y, extra={"labels_file": str(labels)})


def check_idx_pair(images: Path, labels: Path, dims: tuple[int, ...], y: np.ndarray) -> None:
    """An images file's dims and a labels file's labels belong together."""
    if y.ndim != 1:
        raise data_error(f"{labels}: labels must be 1-dimensional, got shape {list(y.shape)}",
                         "is this an images file? labels files are *-labels-idx1-ubyte")
    if len(dims) < 2:
        raise data_error(f"{images}: images need at least 2 dimensions, got shape {list(dims)}",
                         "is this a labels file? images files are *-images-idx3-ubyte")
    if dims[0] != len(y):
        raise data_error(f"{images} has {dims[0]} images but {labels} has {len(y)} labels")



# ---------------------------------------------------------------- CSV


def read_csv(path: str | Path, delimiter: str = ",", max_rows: int | None = None) -> CsvTable:
    """A CSV with a header row; at most `max_rows` data rows (check's bounded scan)."""
    path = Path(path)
    if len(delimiter) != 1:
        raise data_error(f"{path}: delimiter must be one character, got {delimiter!r}")
    if csvlib.field_size_limit() < MAX_CSV_CELL + 1:
        csvlib.field_size_limit(MAX_CSV_CELL + 1)
    with open_regular(path, MAX_CSV_BYTES, "CSV", DataError) as f:
        reader: Any = None
        try:
            text = io.TextIOWrapper(f, encoding="utf-8-sig", newline="")
            reader = csvlib.reader(text, delimiter=delimiter)
            header = next(reader, None)
            if header is None:
                raise data_error(f"{path}: empty file", "a CSV needs a header row naming the columns")
            header = [h.strip() for h in header]
            _check_header(path, header, delimiter)
            columns: dict[str, list[str]] = {h: [] for h in header}
            lines: list[int] = []
            cols = list(columns.values())
            for row in reader:
                if not any(c.strip() for c in row):
                    continue
                if len(row) != len(header):
                    raise data_error(f"{path}:{reader.line_num}: {len(row)} cells, the header has {len(header)}",
                                     "every row needs one cell per column (quote cells that contain the delimiter)")
                for col, cell in zip(cols, row):
                    col.append(cell.strip())
                lines.append(reader.line_num)
                if max_rows is not None and len(lines) >= max_rows:
                    break
        except UnicodeDecodeError:
            raise _not_utf8(path) from None
        except csvlib.Error as e:
            line = reader.line_num if reader is not None else 0
            if "field larger than field limit" in str(e):
                raise data_error(f"{path}:{line}: a cell longer than {MAX_CSV_CELL:,} characters",
                                 "netspec reads cells (and texts) of up to that many characters; cut long documents "
                                 "into pieces, or keep their beginnings") from None
            raise data_error(f"{path}{f':{line}' if line else ''}: cannot read as CSV ({e})") from None
    if not lines and max_rows != 0:
        raise data_error(f"{path}: no data rows after the header")
    return CsvTable(path, header, columns, lines)


def _not_utf8(path: Path) -> DataError:
    """Where a file stops being UTF-8: its line, the byte and its position in the line."""
    with open_regular(path, MAX_CSV_BYTES, "CSV", DataError) as f:
        for number, raw in enumerate(f, start=1):
            try:
                raw.decode("utf-8")
            except UnicodeDecodeError as e:
                return data_error(f"{path}:{number}: not UTF-8: byte 0x{raw[e.start]:02x} at byte {e.start + 1} of the line",
                                  "save the file as UTF-8 (e.g. iconv -f latin1 -t utf-8)")
    return data_error(f"{path}: not a UTF-8 text file")


def _check_header(path: Path, header: list[str], delimiter: str) -> None:
    if len(header) == 1:
        for d, name in ((";", "semicolons"), ("\t", "tabs"), ("|", "bars")):
            if d != delimiter and d in header[0]:
                shown = "\\t" if d == "\t" else d
                raise data_error(f"{path}: the header has a single column `{header[0][:60]}`; the file seems to use "
                                 f"{name}", f'write csv("{path.name}", ..., delimiter="{shown}")')
    if any(not h for h in header):
        raise data_error(f"{path}: column {header.index('') + 1} of the header has no name")
    seen: set[str] = set()
    dups = [h for h in header if h in seen or seen.add(h)]  # type: ignore[func-returns-value]
    if dups:
        raise data_error(f"{path}: the header names {', '.join(repr(d) for d in dict.fromkeys(dups))} more than once",
                         "every column needs its own name")


# ---------------------------------------------------------------- sources


PEEK_ROWS = 200_000  # CSV rows check's data pass reads


@dataclass(frozen=True)
class ReadOptions:
    """How a source is read. `peek` is check's cheap pass: headers, labels, folder listings
    and at most PEEK_ROWS CSV rows, no image decoded and nothing downloaded (a data set not
    found reads as None). `image_size`/`channels`/`classes` apply to image folders (the
    class list of the training folder is reused by the others)."""

    peek: bool = False
    seed: int = 0
    env: dict = field(default_factory=dict)  # the spec's numeric constants, for table(...)
    allow_download: bool = True
    image_size: tuple[int, int] | None = None
    channels: int | None = None
    classes: tuple[str, ...] | None = None
    skip_bad: bool = False


def read_source(src: ir.Source, opts: ReadOptions) -> RawSet | None:
    """Read one source with the reader its kind names (None: peeking at a source that has
    nothing to peek at)."""
    reader = READERS.get(src.kind)
    if reader is None:
        if opts.peek:
            return None
        raise data_error(f"unknown data source {src.kind}")
    return reader(src, dict(src.kwargs), opts)


def table_env(checked: ir.CheckedSpec) -> dict:
    """The spec's numeric constants: the names `table(...)` expressions may use."""
    return {k: v for k, v in checked.constants if isinstance(v, (int, float)) and not isinstance(v, bool)}


def _read_dataset(src: ir.Source, args: dict, opts: ReadOptions) -> RawSet | None:
    split = args.get("split") or "train"
    roles = (f"{split}_images", f"{split}_labels")
    if opts.peek:
        folder, _ = find_dataset(src.kind, args.get("root"), roles)
        if folder is None:
            return None  # found (or downloaded, with a clear message) when training
    else:
        folder = locate(src.kind, args.get("root"), roles, opts.allow_download)
    ds = DATASETS[src.kind]
    images, labels = file_in(folder, ds.files[roles[0]]), file_in(folder, ds.files[roles[1]])
    if images is None or labels is None:
        raise data_error(f"{src.kind}: files missing in {folder}")
    raw = read_idx_pair(images, labels, opts.peek)
    raw.classes = ds.labels
    return raw


def _read_idx(src: ir.Source, args: dict, opts: ReadOptions) -> RawSet:
    return read_idx_pair(Path(args["images"]), Path(args["labels"]), opts.peek)


def _read_csv(src: ir.Source, args: dict, opts: ReadOptions) -> RawSet:
    table = read_csv(args["path"], args.get("delimiter") or ",", PEEK_ROWS if opts.peek else None)
    return RawSet("csv", str(args["path"]), table=table)


def _read_table(src: ir.Source, args: dict, opts: ReadOptions) -> RawSet:
    x, y = load_table(args, opts.seed, opts.env)
    return RawSet("table", "table(...)", x, y)


def _read_image_folder(src: ir.Source, args: dict, opts: ReadOptions) -> RawSet:
    from netspec.data.images import load_image_folder, scan_folder

    index = scan_folder(args["path"], opts.classes) if opts.peek else None
    if opts.image_size is None or opts.channels is None:
        raise data_error(f"{args['path']}: the image size is unknown",
                         "set `image_size: [height, width]` in the data section, or give the model an input "
                         "[channels, height, width] (channels 1 or 3)", span=src.span)
    if index is not None:
        return RawSet("image", str(args["path"]), np.zeros((0, opts.channels, *opts.image_size), np.uint8),
                      index.labels, index.classes, extra={"warnings": list(index.warnings)})
    arr = load_image_folder(args["path"], opts.image_size, opts.channels, opts.classes, opts.skip_bad)
    return RawSet("image", str(args["path"]), arr.x, arr.y, arr.classes,
                  extra={"cache": str(arr.cache), "built": arr.built, "files": arr.files,
                         "warnings": list(arr.warnings), "decoded": arr.decoded})


def _read_arrays(src: ir.Source, args: dict, opts: ReadOptions) -> RawSet:
    from netspec.data.arrays import load_npy, load_npz

    pair = load_npy(args["x"], args.get("y")) if src.kind == "npy" else \
        load_npz(args["path"], args.get("x") or "x", args.get("y"))
    x: Any = pair[0]
    y: Any = pair[1]
    where = str(args["x"] if src.kind == "npy" else args["path"])
    image = x.dtype == np.uint8 and x.ndim in (3, 4)
    if image and x.ndim == 3:
        x = x[:, None]
    extra = {}
    if opts.peek:  # the samples stay unread, but token ids are checked on a bounded slice
        extra["peek_x"] = x[:PEEK_ROWS]
        x = np.zeros((0, *x.shape[1:]), x.dtype)
    return RawSet("image" if image else "table", where, x, y, extra=extra)


Reader = Callable[[ir.Source, dict, ReadOptions], RawSet | None]
READERS: dict[str, Reader] = {
    **{name: _read_dataset for name in DATASETS},
    "idx": _read_idx,
    "csv": _read_csv,
    "table": _read_table,
    "image_folder": _read_image_folder,
    "npy": _read_arrays,
    "npz": _read_arrays,
}


def load_table(args: dict, seed: int, env: dict) -> tuple[np.ndarray, np.ndarray]:
    """`table(x=..., y=...)`: columns evaluated in order with the spec's constants in scope;
    y sees x. A 1-D column of N values is N samples of shape [1]."""
    from netspec.syntax.expr import evaluate_table

    rng = np.random.default_rng(seed)
    x = np.asarray(evaluate_table(args["x"], env, rng), dtype=np.float64)
    y = np.asarray(evaluate_table(args["y"], {**env, "x": x}, rng), dtype=np.float64)
    if x.ndim == 0 or y.ndim == 0:
        raise data_error("a table column needs one value per sample, got a single number",
                         span=args["x"].span if x.ndim == 0 else args["y"].span)
    if len(x) != len(y):
        raise data_error(f"table columns differ in length: x has {len(x)} rows, y has {len(y)}", span=args["y"].span)
    for name, a in (("x", x), ("y", y)):
        bad = first_non_finite(a)
        if bad is not None:
            raise data_error(f"table column {name} holds NaN or an infinite value (sample {bad})",
                             "check log/sqrt of negative numbers and divisions", span=args[name].span)
        if a.dtype.kind == "f" and np.abs(a).max(initial=0) > np.finfo(np.float32).max:
            raise data_error(f"table column {name} holds values beyond float32's range", span=args[name].span)
    x = x[:, None] if x.ndim == 1 else x
    y = y[:, None] if y.ndim == 1 else y
    return x.astype(np.float32), y
