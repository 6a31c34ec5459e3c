"""`netspec predict MODEL.onnx INPUT...`: inference with onnxruntime only (no torch).

In: an .onnx file exported by netspec (its metadata says the input shape, the
preprocessing and the class labels) and input files: PNG/JPEG images, .npy arrays,
.csv rows, IDX files. Out: top-k classes with probabilities, or regression values.
"""

from __future__ import annotations

import csv
import json
import math
import sys
from pathlib import Path
from typing import Any

import numpy as np

from .catalogue import fmt_shape
from .data import apply_preprocessing, read_idx
from .errors import DataError, Diagnostic, error

IMAGE_EXT = {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp"}


def load_session(path: str):
    import onnxruntime as ort

    if not Path(path).exists():
        raise error(f"{path}: no such file")
    try:
        session = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
    except Exception as e:  # noqa: BLE001 - onnxruntime raises its own exception types
        raise error(f"{path}: not a loadable ONNX model ({str(e).splitlines()[0][:200]})") from None
    meta = dict(session.get_modelmeta().custom_metadata_map)
    parsed = {}
    for k, v in meta.items():
        try:
            parsed[k] = json.loads(v)
        except ValueError:
            parsed[k] = v
    if "input_shape" not in parsed:
        raise error(f"{path}: has no netspec metadata (input_shape)", "export it with `netspec export`")
    return session, parsed


def _bad(path: Path, message: str, help: str | None = None) -> DataError:
    return DataError(Diagnostic(f"{path}: {message}", help=help))


def read_inputs(path: Path, meta: dict) -> np.ndarray:
    """One input file -> samples in the source layout ([N, *source_shape]), unnormalized."""
    pre = meta.get("preprocessing") or {}
    input_shape = tuple(meta["input_shape"])
    # a model with `_` dims takes inputs of any length there: match against its input shape
    dynamic = None in input_shape
    source_shape = input_shape if dynamic else tuple(pre.get("source_shape") or input_shape)
    n_values = None if dynamic else math.prod(source_shape)
    suffix = path.suffix.lower()
    if not path.exists():
        raise _bad(path, "no such file")
    if suffix in IMAGE_EXT:
        return read_image(path, source_shape)[None]
    if suffix == ".npy":
        try:
            arr = np.load(path, allow_pickle=False)
        except (ValueError, OSError) as e:
            raise _bad(path, f"not a readable .npy file ({e})") from None
        arr = np.asarray(arr, dtype=np.float32)
        if n_values is not None and arr.size == n_values:
            return arr.reshape(1, *source_shape)
        if n_values is not None and arr.ndim >= 1 and arr.size % n_values == 0 and arr[0].size == n_values:
            return arr.reshape(len(arr), *source_shape)
        if n_values is None:
            batch = arr if arr.ndim == len(source_shape) + 1 else arr[None]
            fixed_ok = batch.ndim == len(source_shape) + 1 and all(
                d is None or d == n for d, n in zip(source_shape, batch.shape[1:]))
            if fixed_ok:
                return batch
        raise _bad(path, f"array of shape {list(arr.shape)} does not hold samples of shape {fmt_shape(source_shape)}")
    if suffix == ".csv":
        return read_csv_rows(path, source_shape, n_values)
    if suffix in (".idx", ".gz") or "ubyte" in path.name:
        arr = read_idx(path)
        x = arr.astype(np.float32) / (255.0 if arr.dtype == np.uint8 else 1.0)
        if n_values is None or x[0].size != n_values:
            raise _bad(path, f"IDX samples of shape {list(x.shape[1:])} do not fit the model's {list(source_shape)}")
        return x.reshape(len(x), *source_shape)
    raise _bad(path, f"unsupported input type `{suffix or path.name}`", "inputs: images (.png, .jpg), .npy, .csv, IDX")


def read_image(path: Path, source_shape: tuple) -> np.ndarray:
    from PIL import Image, UnidentifiedImageError

    if len(source_shape) != 3 or source_shape[0] not in (1, 3):
        raise _bad(path, f"the model's input {list(source_shape)} is not an image shape [1 or 3, H, W]")
    c, h, w = source_shape
    try:
        with Image.open(path) as opened:
            img = opened.convert("L" if c == 1 else "RGB")
            if img.size != (w, h):
                img = img.resize((w, h), Image.Resampling.BILINEAR)
            arr = np.asarray(img, dtype=np.float32) / 255.0
    except (UnidentifiedImageError, OSError) as e:
        raise _bad(path, f"cannot read image ({e})") from None
    return arr[None] if c == 1 else arr.transpose(2, 0, 1)


def read_csv_rows(path: Path, source_shape: tuple, n_values: int | None) -> np.ndarray:
    try:
        with open(path, newline="", encoding="utf-8-sig") as f:
            rows = [r for r in csv.reader(f) if any(c.strip() for c in r)]
    except (OSError, UnicodeDecodeError, csv.Error) as e:
        raise _bad(path, f"cannot read CSV ({e})") from None
    out = []
    for n, row in enumerate(rows, start=1):
        try:
            values = [float(c) for c in row]
        except ValueError:
            if n == 1:
                continue  # a header
            raise _bad(path, f"row {n}: not all cells are numbers") from None
        if n_values is not None and len(values) != n_values:
            raise _bad(path, f"row {n} has {len(values)} values, the model needs {n_values}")
        out.append(values)
    if not out:
        raise _bad(path, "no data rows")
    return np.asarray(out, dtype=np.float32).reshape(len(out), *source_shape)


def prepare_batch(x: np.ndarray, meta: dict) -> np.ndarray:
    pre = meta.get("preprocessing") or {}
    x = apply_preprocessing(x, pre) if pre.get("normalize", "none") != "none" else x.astype(np.float32)
    shape = [d for d in meta["input_shape"]]
    if None not in shape:
        x = x.reshape(len(x), *shape)
    if meta.get("input_dtype") == "int64":
        return x.astype(np.int64)
    return np.ascontiguousarray(x, dtype=np.float32)


def interpret(outputs: np.ndarray, meta: dict, top_k: int) -> list[dict]:
    task = meta.get("task", "value")
    loss = meta.get("loss", "")
    labels = meta.get("labels")
    results: list[dict[str, Any]] = []
    for row in outputs.reshape(len(outputs), -1):
        if task == "class" and row.size > 1:
            if loss == "NLLLoss":
                probs = np.exp(row)
            else:
                z = np.exp(row - row.max())
                probs = z / z.sum()
            order = np.argsort(-probs)[:top_k]
            results.append({"predictions": [
                {"class": int(i), "label": labels[i] if labels and i < len(labels) else str(int(i)),
                 "probability": float(probs[i])} for i in order]})
        elif task == "binary":
            p = 1 / (1 + np.exp(-row)) if loss == "BCEWithLogitsLoss" else row
            results.append({"probabilities": [float(v) for v in p]})
        else:
            results.append({"values": [float(v) for v in row]})
    return results


def predict_files(model: str, inputs: tuple[str, ...], top_k: int = 3, batch_size: int = 256,
                  as_json: bool = False) -> list[dict]:
    session, meta = load_session(model)
    name = session.get_inputs()[0].name
    everything = []
    for raw in inputs:
        path = Path(raw)
        x = prepare_batch(read_inputs(path, meta), meta)
        outs = [session.run(None, {name: x[i : i + batch_size]})[0] for i in range(0, len(x), batch_size)]
        results = interpret(np.concatenate(outs), meta, top_k)
        for i, r in enumerate(results):
            r["input"] = str(path) if len(results) == 1 else f"{path}[{i}]"
            everything.append(r)
            if not as_json:
                print(format_result(r))
    if as_json:
        print(json.dumps(everything))
    return everything


def format_result(r: dict) -> str:
    if "predictions" in r:
        shown = ", ".join(f"{p['label']} ({p['probability']:.1%})" for p in r["predictions"])
        return f"{r['input']}: {shown}"
    if "probabilities" in r:
        return f"{r['input']}: " + ", ".join(f"{p:.4f}" for p in r["probabilities"])
    return f"{r['input']}: " + ", ".join(f"{v:.6g}" for v in r["values"])


def run_model(run: str) -> str:
    """The ONNX model of a run folder: its newest exported .onnx, else exported now."""
    folder = Path(run)
    found = sorted(folder.glob("*.onnx"), key=lambda p: p.stat().st_mtime, reverse=True)
    if found:
        return str(found[0])
    from .export import export_file

    print(f"{folder} has no exported model yet; exporting it first", file=sys.stderr)
    export_file(str(folder))
    found = sorted(folder.glob("*.onnx"), key=lambda p: p.stat().st_mtime, reverse=True)
    return str(found[0])
