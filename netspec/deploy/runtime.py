"""The onnxruntime side of deployment (no torch import): open an exported model, read the
metadata netspec wrote into it, run it.

In: an .onnx file (written by `netspec export`). Out: an onnxruntime session on the CPU,
the metadata_props as JSON values (input shape, preprocessing, labels, task, ...), and the
model's outputs for an array of inputs. export.py (torch side: writing and verifying) and
predict.py (reading user inputs) both use it; neither imports the other.

    session, meta = load_session("mnist.onnx")
    logits = run_session(session, x)
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from netspec.errors import error

INPUT, OUTPUT = "input", "output"  # the graph's input and output names
MASK = "mask"  # models of texts: the second input, 1 at a text's tokens and 0 at padding


def open_session(path: str) -> Any:
    """An onnxruntime InferenceSession of `path` on the CPU (onnxruntime's own errors pass through)."""
    import onnxruntime as ort

    try:
        path.encode("utf-8")
    except UnicodeEncodeError:  # a name with bytes that are not UTF-8: onnxruntime's C++ takes UTF-8 only
        with open(path, "rb") as f:
            return ort.InferenceSession(f.read(), providers=["CPUExecutionProvider"])
    return ort.InferenceSession(path, providers=["CPUExecutionProvider"])


def read_metadata(session: Any) -> dict:
    """The model's metadata_props, each value decoded as JSON where it is JSON."""
    parsed: dict = {}
    for k, v in dict(session.get_modelmeta().custom_metadata_map).items():
        try:
            parsed[k] = json.loads(v)
        except ValueError:
            parsed[k] = v
    return parsed


def load_session(path: str) -> tuple[Any, dict]:
    """(session, metadata) of a netspec export, the metadata with "onnx_file" (`path`) added;
    a missing or foreign file, or metadata that netspec did not write (validate_metadata), is
    a user-facing error naming the model."""
    from netspec.util import check_path

    check_path(path)
    p = Path(path)
    if not p.exists():
        raise error(f"{path}: no such file")
    if not p.is_file():
        raise error(f"{path}: not a regular file")
    try:
        session = open_session(path)
    except Exception as e:  # noqa: BLE001 - onnxruntime raises its own exception types
        raise error(f"{path}: not a loadable ONNX model ({str(e).splitlines()[0][:200]})") from None
    # "onnx_file": the file itself, for messages (whatever the file's own metadata says)
    return session, {**validate_metadata(path, read_metadata(session), session), "onnx_file": path}


# ---------------------------------------------------------------- the metadata, checked once

MAX_RANK = 8  # dims of one sample
MAX_SAMPLE_VALUES = 1 << 28  # values in one sample (1 GiB of float32)
MAX_LABELS = 1 << 20
TASKS = ("class", "binary", "value", "input")
DTYPES = ("float32", "int64")


class _Bad(Exception):
    """One metadata field that is not what netspec writes: (key, what is wrong)."""


def _shape(key: str, v: Any, dynamic: bool = True) -> list:
    if not isinstance(v, list) or not 1 <= len(v) <= MAX_RANK:
        raise _Bad(key, f"is {_shown(v)}; it must be a list of 1 to {MAX_RANK} dimensions")
    size = 1
    for d in v:
        if d is None and dynamic:
            continue
        if not isinstance(d, int) or isinstance(d, bool) or d < 1:
            raise _Bad(key, f"holds {_shown(d)}; every dimension is a positive integer"
                       + (" (or null: variable)" if dynamic else ""))
        size *= d
        if size > MAX_SAMPLE_VALUES:
            raise _Bad(key, f"is {_shown(v)}: more than {MAX_SAMPLE_VALUES:,} values in one sample")
    return v


def _strings(key: str, v: Any, limit: int = MAX_LABELS) -> list:
    if not isinstance(v, list) or not all(isinstance(x, str) for x in v) or len(v) > limit:
        raise _Bad(key, f"is {_shown(v)}; it must be a list of strings")
    return v


def _numbers(key: str, v: Any) -> list:
    flat = v if isinstance(v, list) else [v]
    while any(isinstance(x, list) for x in flat):
        flat = [y for x in flat for y in (x if isinstance(x, list) else [x])]
    if not all(isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x) for x in flat):
        raise _Bad(key, f"is {_shown(v)}; it must hold finite numbers")
    return v


def _labels(key: str, v: Any) -> list:
    """The labels as the data wrote them: numbers (wine's 1, 2, 3) or strings."""
    if not isinstance(v, list) or len(v) > MAX_LABELS or not all(
            isinstance(x, str) or (isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x))
            for x in v):
        raise _Bad(key, f"is {_shown(v)}; it must be a list of numbers or strings")
    return v


def _string(key: str, v: Any) -> str:
    if not isinstance(v, str):
        raise _Bad(key, f"is {_shown(v)}; it must be a string")
    return v


def _count(key: str, v: Any) -> int:
    if not isinstance(v, int) or isinstance(v, bool) or not 1 <= v <= MAX_SAMPLE_VALUES:
        raise _Bad(key, f"is {_shown(v)}; it must be a positive integer")
    return v


def _choice(key: str, v: Any, choices: tuple[str, ...]) -> str:
    if v not in choices:
        raise _Bad(key, f"is {_shown(v)}; it must be one of {', '.join(choices)}")
    return v


def _shown(v: Any) -> str:
    text = json.dumps(v)
    return text if len(text) <= 60 else text[:57] + "..."


PREPROCESSING_CHECKS: dict[str, Callable[[Any], Any]] = {  # one per field of data/encode.py's Preprocessing
    "kind": lambda x: _choice("preprocessing.kind", x, ("image", "table", "text")),
    "raw_dtype": lambda x: _choice("preprocessing.raw_dtype", x, ("uint8", "float32", "int64", "int32")),
    "target_normalize": lambda x: _choice("preprocessing.target_normalize", x, ("none", "standard", "minmax")),
    "target_shift": lambda x: x is None or _numbers("preprocessing.target_shift", x),
    "target_div": lambda x: x is None or _numbers("preprocessing.target_div", x),
    "text": lambda x: x is None or _strings("preprocessing.text", x),
    "tokenizer": lambda x: x is None or _string("preprocessing.tokenizer", x),
    "tokenizer_name": lambda x: x is None or _string("preprocessing.tokenizer_name", x),
    "vocab_size": lambda x: x is None or _count("preprocessing.vocab_size", x),
    "max_len": lambda x: x is None or _count("preprocessing.max_len", x),
    "task": lambda x: _choice("preprocessing.task", x, TASKS),
    "source_shape": lambda x: x == [] or _shape("preprocessing.source_shape", x),
    "input_shape": lambda x: x == [] or _shape("preprocessing.input_shape", x),
    "classes": lambda x: x is None or _strings("preprocessing.classes", x),
    "features": lambda x: x is None or _strings("preprocessing.features", x),
    "targets": lambda x: x is None or _strings("preprocessing.targets", x),
    "shift": lambda x: x is None or _numbers("preprocessing.shift", x),
    "div": lambda x: x is None or _numbers("preprocessing.div", x),
    "class_values": lambda x: x is None or _labels("preprocessing.class_values", x),
    "columns": lambda x: x is None or _columns(x),
    "normalize": lambda x: _choice("preprocessing.normalize", x, ("none", "standard", "minmax")),
    "scale": lambda x: _scale(x),
    "axis": lambda x: _integer("axis", x),
    "one_hot": lambda x: _flag("one_hot", x),
    "tokens": lambda x: _flag("tokens", x),
    "probabilities": lambda x: _flag("probabilities", x),
}


def _preprocessing(v: Any) -> dict:
    """The preprocessing record (data/encode.py's Preprocessing.to_json()): each field typed."""
    if not isinstance(v, dict):
        raise _Bad("preprocessing", f"is {_shown(v)}; it must be an object")
    for key, check in PREPROCESSING_CHECKS.items():
        if key in v:
            check(v[key])
    return v


def _scale(v: Any) -> None:
    if not isinstance(v, (int, float)) or isinstance(v, bool) or not math.isfinite(v) or v <= 0:
        raise _Bad("preprocessing.scale", f"is {_shown(v)}; it must be a number above 0")


def _flag(key: str, v: Any) -> None:
    if not isinstance(v, bool):
        raise _Bad(f"preprocessing.{key}", f"is {_shown(v)}; it must be true or false")


def _integer(key: str, v: Any) -> None:
    if not isinstance(v, int) or isinstance(v, bool):
        raise _Bad(f"preprocessing.{key}", f"is {_shown(v)}; it must be an integer")


def _columns(v: Any) -> list:
    """CSV feature columns: [name, "numeric"] or [name, "categorical", [values]]."""
    for col in v if isinstance(v, list) else [None]:
        ok = isinstance(col, list) and len(col) >= 2 and isinstance(col[0], str) and (
            col[1:] == ["numeric"] or (len(col) == 3 and col[1] == "categorical" and isinstance(col[2], list)
                                       and all(isinstance(x, str) for x in col[2])))
        if not ok:
            raise _Bad("preprocessing.columns", f"holds {_shown(col)}; each column is [name, \"numeric\"] or "
                       "[name, \"categorical\", [values]]")
    return v


def _graph_dims(arg: Any) -> list | None:
    """A graph input's or output's dims (int or None) without the batch axis; None: unknown rank."""
    shape = getattr(arg, "shape", None)
    if not isinstance(shape, (list, tuple)) or not shape:
        return None
    return [d if isinstance(d, int) and not isinstance(d, bool) and d > 0 else None for d in shape[1:]]


def _fits(declared: list | None, shape: list) -> bool:
    return declared is None or (len(declared) == len(shape) and
                                all(a is None or b is None or a == b for a, b in zip(declared, shape)))


def _check_fields(meta: dict, session: Any) -> None:
    _shape("input_shape", meta.get("input_shape"))
    for key in ("model_input_shape", "output_shape"):
        if key in meta:
            _shape(key, meta[key])
    if "preprocessing" in meta:
        _preprocessing(meta["preprocessing"])
    if "labels" in meta:
        _strings("labels", meta["labels"])
    if "task" in meta:
        _choice("task", meta["task"], TASKS)
    if "input_dtype" in meta:
        _choice("input_dtype", meta["input_dtype"], DTYPES)
    for key in ("loss", "spec_hash", "model_name", "netspec_version"):
        if key in meta and not isinstance(meta[key], str):
            raise _Bad(key, f"is {_shown(meta[key])}; it must be a string")
    if session is None:
        return
    inputs, outputs = session.get_inputs(), session.get_outputs()
    if not inputs or not outputs:
        raise _Bad("graph", "has no input or no output")
    if not _fits(_graph_dims(inputs[0]), meta["input_shape"]):
        raise _Bad("input_shape", f"is {meta['input_shape']}, but the graph's input is {list(inputs[0].shape)}")
    out = meta.get("output_shape")
    if out is not None and not _fits(_graph_dims(outputs[0]), out):
        raise _Bad("output_shape", f"is {out}, but the graph's output is {list(outputs[0].shape)}")
    labels, width = meta.get("labels"), (out or [None])[-1]
    if labels is not None and meta.get("task") == "class" and width is not None and len(labels) != width:
        raise _Bad("labels", f"names {len(labels)} classes, but the model's output has {width}")


def validate_metadata(path: str, meta: dict, session: Any = None) -> dict:
    """`meta` (read_metadata's) when every field is what netspec export writes, checked once
    here for predict and eval: shapes are lists of positive dims (null: variable) of bounded
    size, preprocessing an object of typed fields, labels strings, task and dtype known names,
    and, given the session, the graph's first input and output agree with them. Anything else
    is an error naming the model and the field (never blamed on an input file)."""
    if "input_shape" not in meta:
        raise error(f"{path}: has no netspec metadata (input_shape)", "export it with `netspec export`")
    try:
        _check_fields(meta, session)
    except _Bad as e:
        key, what = e.args
        raise error(f"{path}: not a usable netspec model: its metadata `{key}` {what}",
                    "this file was not written by `netspec export`, or was changed since; export it again") from None
    return meta


def feeds(session: Any, x: np.ndarray, mask: np.ndarray | None = None) -> dict[str, np.ndarray]:
    """The graph's inputs for the batch of raw samples `x`, by the names the file declares
    (int8 calibration feeds the fp32 graph through this too); a model of texts also takes
    `mask`, by default 1 wherever an id is not padding."""
    inputs = session.get_inputs()
    feed = {inputs[0].name: x}
    if len(inputs) > 1:
        feed[inputs[1].name] = (x != 0).astype(np.int64) if mask is None else mask
    return feed


def run_session(session: Any, x: np.ndarray, mask: np.ndarray | None = None) -> np.ndarray:
    """The model's (first) output for the batch `x` (a model of texts: token ids and `mask`);
    onnxruntime's errors pass through."""
    return session.run(None, feeds(session, x, mask))[0]


def checked_outputs(path: str, out: Any, meta: dict, n: int, what: str) -> np.ndarray:
    """The outputs of a batch of `n` samples (`what`: where they came from), refused when they
    are not what the metadata promises ([n, *output_shape]) or hold NaN or infinity."""
    out = np.asarray(out)
    want = meta.get("output_shape")
    if out.ndim < 1 or len(out) != n or (want is not None and not _fits(list(out.shape[1:]), want)):
        raise error(f"{path}: the model answered {what} with outputs of shape {list(out.shape)}, not "
                    f"[{n}, {', '.join('_' if d is None else str(d) for d in (want or ['...']))}]",
                    "the graph does not compute what its metadata says; export it again")
    if out.dtype.kind == "f" and not np.all(np.isfinite(out)):
        bad = int(np.argmin(np.isfinite(out).reshape(n, -1).all(axis=1)))
        raise error(f"{path}: the model's output for {what} (sample {bad}) holds NaN or infinity",
                    "the model is broken for these inputs; its scores mean nothing")
    return out
