"""NumPy array files as data sources and predict inputs (numpy only; no torch).

In: ``.npy`` files and ``.npz`` archives. Out: ``load_npy`` / ``load_npz`` -> validated
(x, y); ``read_npy_file`` -> one array. Arrays are memory-mapped where the file allows it
(.npy files, uncompressed .npz members), never unpickled (numbers only: bool, int, float),
and a header is checked against the bytes the file holds before anything is mapped (an
empty file, or a header claiming 10^11 rows, is an error naming the file, not an
allocation); NaN/inf are looked for a few MiB at a time and reported with the first bad
sample's index. Every problem is a ``DataError`` naming the file (and member).
"""

from __future__ import annotations

import math
import os
import zipfile
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np

from netspec.errors import DataError, data_error
from netspec.util import open_regular

CHECK_CHUNK_BYTES = 64 * 2**20  # NaN/inf checks read arrays in pieces of this size


def load_npy(x_path: str | Path, y_path: str | Path | None = None) -> tuple[np.ndarray, np.ndarray | None]:
    """x (and y) from .npy files, memory-mapped read-only; validated like load_npz."""
    x = read_npy_file(Path(x_path))
    y = read_npy_file(Path(y_path)) if y_path is not None else None
    return _validated(x, Path(x_path), y, Path(y_path) if y_path is not None else None)


def load_npz(path: str | Path, x_key: str = "x", y_key: str | None = "y") -> tuple[np.ndarray, np.ndarray | None]:
    """x and y from an .npz archive. Members stored uncompressed (np.savez) are memory-mapped;
    compressed ones (np.savez_compressed) are read whole. y is None when y_key is None, or when it
    is the default "y" and the archive has no such member (inputs only, as for predict); any other
    missing key is an error listing the archive's keys."""
    path = Path(path)
    with open_regular(path, None, "npz", DataError) as f:
        try:
            archive = zipfile.ZipFile(f)
        except (zipfile.BadZipFile, OSError, ValueError) as e:
            raise data_error(f"{path}: not an .npz file ({e})", "write it with np.savez or np.savez_compressed") from None
        with archive:
            keys = {n[:-4]: n for n in archive.namelist() if n.endswith(".npy")}
            x = _npz_member(path, f, archive, keys, x_key)
            y = _npz_member(path, f, archive, keys, y_key) if y_key is not None and y_key in keys else None
    if y_key is not None and y_key != "y" and y is None:
        _missing_key(path, y_key, keys)
    return _validated(x, path, y, path, (f"{path}[{x_key}]", f"{path}[{y_key}]"))


def _missing_key(path: Path, key: str, keys: dict[str, str]) -> None:
    held = ", ".join(sorted(keys)) or "no arrays"
    raise data_error(f"{path}: no array named `{key}`; the file holds: {held}")


def _npz_member(path: Path, f: BinaryIO, archive: zipfile.ZipFile, keys: dict[str, str], key: str) -> np.ndarray:
    if key not in keys:
        _missing_key(path, key, keys)
    info = archive.getinfo(keys[key])
    where = f"{path}[{key}]"
    if info.flag_bits & 0x1:
        raise data_error(f"{where}: the member is encrypted")
    if info.compress_type == zipfile.ZIP_STORED:
        return _read_npy(f, where, _member_offset(f, info, where), info.file_size)
    try:
        with archive.open(info) as member:
            version = np.lib.format.read_magic(member)
            shape, fortran, dtype = _read_header(member, version, where)
            _check_dtype(where, dtype)
            need = math.prod(shape) * dtype.itemsize
            data = member.read(need)
    except DataError:
        raise
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as e:
        raise data_error(f"{where}: cannot read ({e})") from None
    if len(data) < need:
        raise data_error(f"{where}: truncated: the header says shape {list(shape)} ({need:,} bytes), "
                         f"the member holds {len(data):,}")
    return np.frombuffer(data, dtype=dtype).reshape(shape, order="F" if fortran else "C")


def _member_offset(f: BinaryIO, info: zipfile.ZipInfo, where: str) -> int:
    """Where a stored member's bytes start: after its local header (30 bytes + name + extra)."""
    f.seek(info.header_offset)
    local = f.read(30)
    if len(local) != 30 or local[:4] != b"PK\x03\x04":
        raise data_error(f"{where}: damaged zip archive (bad local header)")
    name_len = int.from_bytes(local[26:28], "little")
    extra_len = int.from_bytes(local[28:30], "little")
    return info.header_offset + 30 + name_len + extra_len


def read_npy_file(path: Path, dtype_help: str | None = None) -> np.ndarray:
    """A .npy file memory-mapped read-only, its header checked against the file's size
    (training's `npy(...)` sources and predict's .npy inputs)."""
    with open_regular(path, None, "npy", DataError) as f:
        size = os.fstat(f.fileno()).st_size
        return _read_npy(f, str(path), 0, size, dtype_help)


def _read_header(f: Any, version: tuple[int, int], where: str) -> tuple[tuple, bool, np.dtype]:
    try:
        if version == (1, 0):
            return np.lib.format.read_array_header_1_0(f)
        if version == (2, 0):
            return np.lib.format.read_array_header_2_0(f)
        raise ValueError(f"unsupported .npy version {version}")
    except (ValueError, EOFError, SyntaxError, OverflowError, TypeError) as e:
        raise data_error(f"{where}: bad .npy header ({e})") from None


def _read_npy(f: BinaryIO, where: str, start: int, length: int, dtype_help: str | None = None) -> np.ndarray:
    """The .npy array stored at f[start:start+length], memory-mapped read-only."""
    f.seek(start)
    try:
        version = np.lib.format.read_magic(f)
    except (ValueError, EOFError):
        raise data_error(f"{where}: {'an empty file, not' if length == 0 else 'not'} a .npy file",
                         "write it with np.save") from None
    shape, fortran, dtype = _read_header(f, version, where)
    _check_dtype(where, dtype, dtype_help)
    offset = f.tell()
    need = math.prod(shape) * dtype.itemsize
    have = start + length - offset
    if have < need:
        raise data_error(f"{where}: truncated: the header says shape {list(shape)} ({need:,} bytes), "
                         f"the file holds {max(have, 0):,}")
    if need == 0:
        return np.empty(shape, dtype)
    return np.memmap(f, dtype=dtype, mode="r", offset=offset, shape=shape, order="F" if fortran else "C")


def _check_dtype(where: str, dtype: np.dtype, help: str | None = None) -> None:
    if dtype.hasobject or dtype.kind not in "biuf":
        raise data_error(f"{where}: arrays of dtype {dtype} are not supported",
                         help or "use numbers: bool, integer or float arrays (netspec never loads pickled objects)")


def _validated(x: np.ndarray, x_file: Path, y: np.ndarray | None, y_file: Path | None,
               names: tuple[str, str] | None = None) -> tuple[np.ndarray, np.ndarray | None]:
    x_name, y_name = names or (str(x_file), str(y_file))
    _check_array(x, x_name)
    if y is not None:
        _check_array(y, y_name)
        if y.dtype.kind in "biu" and y.ndim != 1:
            raise data_error(f"{y_name}: integer targets must be 1-D class indices, got shape {list(y.shape)}",
                             "regression targets of several columns are float arrays")
        if len(y) != len(x):
            raise data_error(f"{x_name} has {len(x):,} samples but {y_name} has {len(y):,} targets")
    return x, y


def _check_array(a: np.ndarray, name: str) -> None:
    if a.ndim == 0:
        raise data_error(f"{name}: a single number, not an array of samples")
    if a.size == 0:
        raise data_error(f"{name}: empty array (shape {list(a.shape)})")
    if a.dtype.kind == "f":
        bad = _first_non_finite(a)
        if bad is not None:
            raise data_error(f"{name}: sample {bad} holds NaN or infinity", "fix or drop that sample")


def _first_non_finite(a: np.ndarray) -> int | None:
    """Index of the first sample holding NaN/inf, reading a few MiB at a time."""
    per_sample = max(1, a[0].size * a.dtype.itemsize)
    step = max(1, CHECK_CHUNK_BYTES // per_sample)
    for start in range(0, len(a), step):
        piece = np.asarray(a[start:start + step])
        finite = np.isfinite(piece).reshape(len(piece), -1).all(axis=1)
        if not finite.all():
            return start + int(np.argmin(finite))
    return None


__all__ = ["load_npy", "load_npz", "read_npy_file"]
