"""Weight files read for their keys, shapes and dtypes alone: no tensor data, no torch.

In: a path from `weights { from: ... }`: a run folder (its model.pt), a netspec model.pt or
checkpoint.pt (its model), any PyTorch state_dict file (.pt, .pth: the zip format of
torch >= 1.6 and the legacy format before it) or a .safetensors file. Out: ``WeightsFile``
(name -> ``TensorInfo``), or a ``NetspecError`` saying what the file is instead.

How, without reading the tensors (so that `netspec check` answers at once on a 500 MB file):
- safetensors: the 8-byte length and the JSON header; every entry's offsets are checked
  against its shape and dtype, the entries must tile the data exactly to the end of the
  file (a header that lies about the file is refused here, as the safetensors library would).
- torch zip: the zip directory and `data.pkl` only, unpickled with a closed allow-list
  (dicts, lists, numbers, strings, tensors' rebuild records); every other global, such as a
  function a hostile pickle would call, is refused before anything runs. Each storage the
  pickle names must exist in the archive with at least the bytes its tensors reach.
- torch legacy: its leading pickles (magic number, protocol, system info, the object, the
  storage keys) with the same allow-list; the file must be as long as the storages it names.
Training then reads the tensors with torch.load(weights_only=True) or safetensors.
"""

from __future__ import annotations

import io
import json
import math
import pickle
import struct
import zipfile
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from netspec.errors import error

MAX_PICKLE = 64 << 20  # data.pkl of a state_dict is kilobytes; a larger one is not weights
MAX_SAFETENSORS_HEADER = 100 << 20  # the safetensors library's own limit
LEGACY_MAGIC = 0x1950A86A20F9469CFC6C
LEGACY_PROTOCOL = 1001
CHECKPOINT_FORMAT = "netspec-checkpoint-1"  # train/checkpoint.py's (imported there with torch)

# element sizes by dtype name (torch's names; safetensors' are mapped below)
ELEMENT_SIZE = {"float64": 8, "float32": 4, "float16": 2, "bfloat16": 2, "complex64": 8, "complex128": 16,
                "int64": 8, "int32": 4, "int16": 2, "int8": 1, "uint8": 1, "uint16": 2, "uint32": 4, "uint64": 8,
                "bool": 1, "float8_e4m3fn": 1, "float8_e5m2": 1}
STORAGES = {"DoubleStorage": "float64", "FloatStorage": "float32", "HalfStorage": "float16",
            "BFloat16Storage": "bfloat16", "ComplexFloatStorage": "complex64", "ComplexDoubleStorage": "complex128",
            "LongStorage": "int64", "IntStorage": "int32", "ShortStorage": "int16", "CharStorage": "int8",
            "ByteStorage": "uint8", "BoolStorage": "bool"}
SAFETENSORS_DTYPES = {"F64": "float64", "F32": "float32", "F16": "float16", "BF16": "bfloat16", "I64": "int64",
                      "I32": "int32", "I16": "int16", "I8": "int8", "U8": "uint8", "U16": "uint16", "U32": "uint32",
                      "U64": "uint64", "BOOL": "bool", "F8_E4M3": "float8_e4m3fn", "F8_E5M2": "float8_e5m2",
                      "C64": "complex64"}


@dataclass(frozen=True)
class TensorInfo:
    shape: tuple[int, ...]
    dtype: str  # torch's name: float32, int64, ...

    @property
    def floating(self) -> bool:
        return self.dtype.startswith(("float", "bfloat", "complex"))


@dataclass(frozen=True)
class WeightsFile:
    path: Path  # the file read (a run folder's model.pt)
    format: str  # safetensors | torch (zip) | torch (legacy)
    tensors: dict[str, TensorInfo]
    note: str = ""  # "the model of a netspec checkpoint"


# ---------------------------------------------------------------- where the weights are


def locate(path: str | Path) -> Path:
    """The weights file `path` names: itself, or a run folder's model.pt."""
    p = Path(path)
    if p.is_dir():
        for name in ("model.pt", "checkpoint.pt"):
            if (p / name).is_file():
                return p / name
        raise error(f"{p}: a folder without model.pt or checkpoint.pt (not a finished netspec run)",
                    "train it first (netspec train writes model.pt there), or name a weights file")
    if not p.exists():
        raise error(f"{p}: no such file or folder", "a run folder (netspec train writes runs/<model>), model.pt, "
                    "checkpoint.pt, a .pt/.pth state_dict or a .safetensors file; relative to the spec's folder")
    if not p.is_file():
        raise error(f"{p}: not a regular file")
    return p


# ---------------------------------------------------------------- reading headers


def read_header(path: str | Path) -> WeightsFile:
    """Keys, shapes and dtypes of the weights in `path` (a file or run folder), from its
    header; a NetspecError naming the file and what is wrong with it otherwise."""
    p = locate(path)
    try:
        with open(p, "rb") as f:
            head = f.read(16)
    except OSError as e:
        raise error(f"{p}: cannot be read ({e.strerror or e})") from None
    try:
        if head.startswith(b"PK\x03\x04") or head.startswith(b"PK\x05\x06"):
            obj, fmt = _torch_zip(p), "torch (zip)"
        elif len(head) >= 9 and head[8:9] == b"{":
            # safetensors: an 8-byte little-endian header length, then the JSON header. Tested
            # before the pickle's 0x80: a header length ending in 0x80 starts with that byte too
            # (a legacy torch file's ninth byte is inside its magic number, never "{")
            return WeightsFile(p, "safetensors", _safetensors(p))
        elif head[:1] == b"\x80":
            obj, fmt = _torch_legacy(p), "torch (legacy)"
        elif not head:
            raise _Bad("the file is empty")
        else:
            raise _Bad("not a PyTorch or safetensors file")
    except _Bad as e:
        raise error(f"{p}: {e}", e.help) from None
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, KeyError, IndexError, AttributeError,
            struct.error, zipfile.BadZipFile, OverflowError, MemoryError, RecursionError) as e:
        detail = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise error(f"{p}: not a readable weights file ({detail})",
                    "the file may be truncated or damaged; write it again (torch.save(model.state_dict(), path))") \
            from None
    return _state_dict(p, obj, fmt)


class _Bad(Exception):
    def __init__(self, message: str, help: str | None = None):
        super().__init__(message)
        self.help = help


def _state_dict(p: Path, obj: Any, fmt: str) -> WeightsFile:
    note = ""
    if isinstance(obj, dict) and obj.get("format") == CHECKPOINT_FORMAT and isinstance(obj.get("model"), dict):
        obj, note = obj["model"], "the model of a netspec checkpoint"
    if not isinstance(obj, dict) or not obj:
        what = "an empty dict" if isinstance(obj, dict) else f"a {_kind(obj)}"
        raise error(f"{p}: not a state_dict (names -> tensors); it holds {what}",
                    "save the weights with torch.save(model.state_dict(), path)")
    bad = [k for k, v in obj.items() if not (isinstance(k, str) and isinstance(v, TensorInfo))]
    if bad:
        nested = [k for k, v in obj.items() if isinstance(v, dict) and v and
                  all(isinstance(x, TensorInfo) for x in v.values())]
        help_ = (f"its weights seem to be under `{nested[0]}`: save them alone with "
                 f"torch.save(checkpoint[{nested[0]!r}], path)") if nested else \
            "save the weights with torch.save(model.state_dict(), path)"
        shown = ", ".join(f"{k!r} ({_kind(obj[k])})" for k in bad[:3])
        raise error(f"{p}: not a state_dict (names -> tensors): {shown}{' ...' if len(bad) > 3 else ''}", help_)
    return WeightsFile(p, fmt, dict(obj), note)


def _kind(v: Any) -> str:
    if isinstance(v, TensorInfo):
        return "tensor"
    if isinstance(v, _Object):
        return v.name
    return type(v).__name__


# ---------------------------------------------------------------- safetensors


def _no_duplicates(pairs: list) -> dict:
    out = dict(pairs)
    if len(out) != len(pairs):
        raise _Bad("its safetensors header names a tensor twice")
    return out


def _safetensors(p: Path) -> dict[str, TensorInfo]:
    size = p.stat().st_size
    with open(p, "rb") as f:
        (n,) = struct.unpack("<Q", f.read(8))
        if n > MAX_SAFETENSORS_HEADER or 8 + n > size:
            raise _Bad(f"its safetensors header claims {n:,} bytes; the file has {size:,} (truncated or not "
                       "safetensors)")
        raw = f.read(n)
    try:
        header = json.loads(raw.decode("utf-8"), object_pairs_hook=_no_duplicates)
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise _Bad(f"its safetensors header is not valid JSON ({e})") from None
    if not isinstance(header, dict):
        raise _Bad("its safetensors header is not a JSON object")
    header.pop("__metadata__", None)
    out: dict[str, TensorInfo] = {}
    spans = []
    for name, entry in header.items():
        if not isinstance(entry, dict) or set(entry) - {"dtype", "shape", "data_offsets"}:
            raise _Bad(f"its safetensors header entry {name!r} is malformed")
        dtype, shape, offsets = entry.get("dtype"), entry.get("shape"), entry.get("data_offsets")
        if dtype not in SAFETENSORS_DTYPES:
            raise _Bad(f"tensor {name!r}: unknown safetensors dtype {dtype!r}")
        if not isinstance(shape, list) or not all(isinstance(d, int) and not isinstance(d, bool) and d >= 0
                                                  for d in shape):
            raise _Bad(f"tensor {name!r}: bad shape {shape!r}")
        if not (isinstance(offsets, list) and len(offsets) == 2 and
                all(isinstance(o, int) and not isinstance(o, bool) and o >= 0 for o in offsets)):
            raise _Bad(f"tensor {name!r}: bad data_offsets {offsets!r}")
        torch_dtype = SAFETENSORS_DTYPES[dtype]
        need = math.prod(shape) * ELEMENT_SIZE[torch_dtype]
        begin, end = offsets
        if end - begin != need:
            raise _Bad(f"its safetensors header lies: tensor {name!r} {shape} {dtype} needs {need:,} bytes, its "
                       f"offsets give {end - begin:,}")
        spans.append((begin, end, name))
        out[name] = TensorInfo(tuple(shape), torch_dtype)
    pos = 0
    for begin, end, name in sorted(spans):
        if begin != pos:
            raise _Bad(f"its safetensors header lies: tensor {name!r} starts at byte {begin:,} of the data, "
                       f"expected {pos:,} ({'overlap' if begin < pos else 'a gap'})")
        pos = end
    if 8 + n + pos != size:
        raise _Bad(f"its safetensors header lies: the tensors end at byte {8 + n + pos:,}, the file has {size:,}"
                   + (" (truncated)" if 8 + n + pos > size else ""))
    return out


# ---------------------------------------------------------------- torch files: the allow-list unpickler


@dataclass(frozen=True)
class _Storage:
    dtype: str
    key: str
    numel: int


class _Object:
    """Stand-in for an allowed object of no interest (a torch.device, a dtype)."""

    def __init__(self, name: str, *args: Any) -> None:
        self.name = name


def _rebuild_tensor(storage: Any, offset: Any, size: Any, stride: Any, *rest: Any) -> TensorInfo:
    if not isinstance(storage, _Storage):
        raise pickle.UnpicklingError("a tensor without a storage")
    shape = tuple(int(d) for d in size)
    if shape and min(shape) > 0:
        reach = int(offset) + sum((d - 1) * int(s) for d, s in zip(shape, stride)) + 1
        if int(offset) < 0 or reach > storage.numel:
            raise pickle.UnpicklingError(f"a tensor reaches element {reach:,} of a storage of {storage.numel:,}")
    return TensorInfo(shape, storage.dtype)


def _rebuild_tensor_v3(storage: Any, offset: Any, size: Any, stride: Any, requires_grad: Any, hooks: Any,
                       dtype: Any, *rest: Any) -> TensorInfo:
    info = _rebuild_tensor(storage, offset, size, stride)
    return TensorInfo(info.shape, dtype.name if isinstance(dtype, _Object) else info.dtype)


def _rebuild_parameter(data: Any, *rest: Any) -> Any:
    return data


def _dtype(name: str) -> _Object:
    return _Object(name)


def _encode(text: str, encoding: str = "latin1") -> bytes:  # protocol 2 writes bytes as _codecs.encode(str)
    return str(text).encode(encoding)


_ALLOWED: dict[tuple[str, str], Any] = {
    ("collections", "OrderedDict"): OrderedDict,
    ("torch._utils", "_rebuild_tensor"): _rebuild_tensor,  # files written by torch < 0.4
    ("torch._utils", "_rebuild_tensor_v2"): _rebuild_tensor,
    ("torch._utils", "_rebuild_tensor_v3"): _rebuild_tensor_v3,
    ("torch._utils", "_rebuild_parameter"): _rebuild_parameter,
    ("torch._utils", "_rebuild_parameter_with_state"): _rebuild_parameter,
    ("torch", "Size"): tuple,
    ("torch", "device"): lambda *a: _Object("device"),
    ("_codecs", "encode"): _encode,
    ("builtins", "set"): set,
    ("builtins", "frozenset"): frozenset,
    ("builtins", "bytearray"): bytearray,
}


class _HeaderUnpickler(pickle.Unpickler):
    """A torch pickle with storages as (dtype, key, size) records and tensors as TensorInfo:
    only the globals a weights file needs; anything else stops the reading before it runs."""

    def __init__(self, file: Any):
        super().__init__(file)
        self.storages: dict[str, _Storage] = {}

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) in _ALLOWED:
            return _ALLOWED[(module, name)]
        if module == "torch" and name in STORAGES:
            return _Object(name)
        if module == "torch" and name in ELEMENT_SIZE:
            return _Object(name)
        if module == "torch.storage" and name == "UntypedStorage":
            return _Object("UntypedStorage")
        raise _Bad(f"it holds a pickled `{module}.{name}`, which is not weights; netspec never loads such a file "
                   "(unpickling it could run code)",
                   "save only tensors: torch.save(model.state_dict(), path), or use .safetensors")

    def persistent_load(self, pid: Any) -> _Storage:
        # zip: ('storage', storage_type, key, location, numel); legacy: + view metadata
        if not (isinstance(pid, tuple) and len(pid) >= 5 and pid[0] == "storage"):
            raise pickle.UnpicklingError("an unknown persistent record")
        kind, key, numel = pid[1], str(pid[2]), pid[4]
        dtype = STORAGES.get(kind.name) if isinstance(kind, _Object) else None
        if isinstance(kind, _Object) and kind.name in ELEMENT_SIZE:
            dtype = kind.name
        if dtype is None:
            raise pickle.UnpicklingError(f"an unknown storage type {getattr(kind, 'name', kind)!r}")
        if not isinstance(numel, int) or numel < 0:
            raise pickle.UnpicklingError("a storage of a negative size")
        if key in self.storages and self.storages[key].dtype != dtype:
            raise pickle.UnpicklingError(f"storage {key} is named with two dtypes")
        storage = self.storages.setdefault(key, _Storage(dtype, key, numel))
        return storage


def _torch_zip(p: Path) -> Any:
    try:
        z = zipfile.ZipFile(p)
    except zipfile.BadZipFile:
        raise _Bad("a damaged or truncated PyTorch (zip) file: its directory is missing",
                   "write the file again; a copy that was cut short cannot be read") from None
    with z:
        names = z.namelist()
        pkl = [n for n in names if n.endswith("/data.pkl") or n == "data.pkl"]
        if len(pkl) != 1:
            raise _Bad("a zip file, but not a PyTorch one (no data.pkl)")
        info = z.getinfo(pkl[0])
        if info.file_size > MAX_PICKLE:
            raise _Bad(f"its data.pkl holds {info.file_size:,} bytes; a state_dict's is far smaller")
        unpickler = _HeaderUnpickler(io.BytesIO(z.read(pkl[0])))
        obj = unpickler.load()
        prefix = pkl[0][: -len("data.pkl")]
        sizes = {i.filename: i.file_size for i in z.infolist()}
        for s in unpickler.storages.values():
            have = sizes.get(f"{prefix}data/{s.key}")
            need = s.numel * ELEMENT_SIZE[s.dtype]
            if have is None or have < need:
                raise _Bad(f"a damaged PyTorch file: storage {s.key} should hold {need:,} bytes, the archive has "
                           f"{have or 0:,}", "write the file again")
    return obj


def _torch_legacy(p: Path) -> Any:
    size = p.stat().st_size
    with open(p, "rb") as f:
        def load() -> Any:
            return _HeaderUnpickler(f).load()

        if load() != LEGACY_MAGIC:
            raise _Bad("a pickle, but not a PyTorch file",
                       "netspec reads state_dicts saved by torch.save, and .safetensors files")
        if load() != LEGACY_PROTOCOL:
            raise _Bad("a PyTorch file of an unknown legacy version")
        load()  # system info
        unpickler = _HeaderUnpickler(f)
        obj = unpickler.load()
        storages = unpickler.storages
        keys = load()
        if not isinstance(keys, list) or set(map(str, keys)) != set(storages):
            raise _Bad("a damaged PyTorch (legacy) file: its storage list does not match its tensors")
        end = f.tell() + sum(8 + storages[str(k)].numel * ELEMENT_SIZE[storages[str(k)].dtype] for k in keys)
    if end > size:
        raise _Bad(f"a truncated PyTorch (legacy) file: its tensors need {end:,} bytes, the file has {size:,}",
                   "write the file again; a copy that was cut short cannot be read")
    return obj
