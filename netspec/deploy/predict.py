"""`netspec predict MODEL.onnx INPUT...`: inference with onnxruntime only (no torch).

In: an .onnx file exported by netspec (its metadata holds the raw input shape, the
preprocessing record with vocabularies and feature names, and the class labels) and input
files: images (PNG, JPEG, BMP, WebP), .npy arrays, CSV rows, IDX files. Out: top-k classes
with probabilities, label names for binary classifiers, or regression values.

Inputs are given raw, as the training data was: images are decoded, converted to the
model's channels, resized and scaled to [0, 1] exactly as training decoded them; CSV rows
are matched to the training columns by header name (any order; a missing column is an
error) and categorical cells are encoded with the training vocabulary. The graph itself
normalises, so these raw rows through plain onnxruntime give the same answers.
"""

from __future__ import annotations

import csv
import io
import json
import math
import sys
from pathlib import Path
from typing import Any

import numpy as np

from netspec.catalogue import fmt_shape
from netspec.data.images import IMAGE_EXTENSIONS
from netspec.errors import DataError, Diagnostic, error
from netspec.util import open_regular

IMAGE_EXT = frozenset(IMAGE_EXTENSIONS)  # what image folders read, predict reads


def load_session(path: str):
    import onnxruntime as ort

    from netspec.util import check_path

    check_path(path)
    p = Path(path)
    if not p.exists():
        raise error(f"{path}: no such file")
    if not p.is_file():
        raise error(f"{path}: not a regular file")
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


def expand_folder(path: Path) -> list[Path]:
    """A folder stands for the images in it and its subfolders (sorted); anything else for itself."""
    if not path.is_dir():
        return [path]
    found = sorted(p for p in path.rglob("*") if p.suffix.lower() in IMAGE_EXT and p.is_file()
                   and not any(part.startswith(".") for part in p.relative_to(path).parts))
    if not found:
        raise _bad(path, "a folder without images", f"predict reads {' '.join(sorted(IMAGE_EXT))} images in a "
                   "folder; pass other inputs by name (e.g. samples.npy)")
    return found


def read_inputs(path: Path, meta: dict) -> np.ndarray:
    """One input file -> raw samples [N, *input_shape] in model units (images in [0, 1])."""
    pre = meta.get("preprocessing") or {}
    shape = tuple(meta["input_shape"])
    suffix = path.suffix.lower()
    if not path.exists():
        raise _bad(path, "no such file")
    if suffix in IMAGE_EXT:
        return read_image(path, shape, pre)[None]
    if suffix == ".npy":
        return read_npy(path, shape, pre)
    if suffix == ".csv":
        return read_csv_rows(path, shape, pre)
    if suffix in (".idx", ".gz") or "ubyte" in path.name:
        from netspec.data.sources import read_idx

        arr = np.asarray(read_idx(path))
        x = arr.astype(np.float32) / (255.0 if arr.dtype == np.uint8 else 1.0)
        return _fit(path, x if x.ndim > 1 else x[:, None], shape, "IDX samples")
    raise _bad(path, f"unsupported input type `{suffix or path.name}`",
               "inputs: images (.png, .jpg, .bmp, .webp), .npy, .csv, IDX")


def _fit(path: Path, x: np.ndarray, shape: tuple, what: str) -> np.ndarray:
    """Samples [N, ...] reshaped to the graph input (same number of values per sample)."""
    if None in shape:
        if x.ndim == len(shape) + 1 and all(d is None or d == n for d, n in zip(shape, x.shape[1:])):
            return x
        if x.ndim == len(shape) and all(d is None or d == n for d, n in zip(shape, x.shape)):
            return x[None]
        raise _bad(path, f"{what} of shape {list(x.shape[1:])} do not fit the model's input {fmt_shape(shape)}")
    n_values = math.prod(shape)
    if x.size == n_values and (x.ndim == len(shape) or x.ndim == 1):
        return x.reshape(1, *shape)
    if x.ndim >= 1 and len(x) and x[0].size == n_values:
        return x.reshape(len(x), *shape)
    raise _bad(path, f"{what} of shape {list(x.shape)} do not hold samples of the model's input {fmt_shape(shape)} "
                     f"({n_values} values each)")


def read_image(path: Path, shape: tuple, pre: dict) -> np.ndarray:
    if pre.get("kind") == "table" or len(shape) != 3 or shape[0] not in (1, 3):
        trained = "CSV rows" if pre.get("columns") else "rows of numbers"
        raise _bad(path, f"this model was trained on {trained} ({fmt_shape(shape)} values per sample), not on images",
                   "give it the same kind of data: a CSV with the training columns, or a .npy of such rows")
    from netspec.data.images import decode_image

    c, h, w = shape
    return decode_image(path, (int(h), int(w)), int(c)).astype(np.float32) / 255.0


def read_npy(path: Path, shape: tuple, pre: dict) -> np.ndarray:
    with open_regular(path, what=".npy", error_cls=DataError) as f:
        try:
            arr = np.load(f, allow_pickle=False)
        except (ValueError, OSError) as e:
            raise _bad(path, f"not a readable .npy file ({str(e).splitlines()[0][:150]})") from None
    if arr.dtype.kind not in "biuf":
        raise _bad(path, f"holds {arr.dtype} values; predict needs numbers")
    if arr.size == 0:
        raise _bad(path, "is empty")
    x = arr.astype(np.float32) / (255.0 if arr.dtype == np.uint8 and pre.get("kind") == "image" else 1.0)
    if not np.all(np.isfinite(x)):
        raise _bad(path, "holds NaN or infinite values")
    return _fit(path, x, shape, "arrays")


def read_csv_rows(path: Path, shape: tuple, pre: dict) -> np.ndarray:
    """CSV rows: with a header, columns are matched to the training columns by name (and
    categorical cells encoded with the training vocabulary); without one, by position."""
    with open_regular(path, 1 << 30, "CSV", DataError) as f:
        try:
            rows = [r for r in csv.reader(io.TextIOWrapper(f, encoding="utf-8-sig", newline=""))
                    if any(c.strip() for c in r)]
        except (UnicodeDecodeError, csv.Error) as e:
            raise _bad(path, f"cannot read CSV ({e})") from None
    if not rows:
        raise _bad(path, "no data rows")
    columns = pre.get("columns")
    first = [c.strip() for c in rows[0]]
    has_header = not all(_number(c) for c in first) or (columns and set(first) & {c[0] for c in columns})
    if columns:
        names = [c[0] for c in columns]
        if has_header:
            missing = [n for n in names if n not in first]
            if missing:
                raise _bad(path, f"no column {missing[0]!r}; the model needs {', '.join(names)}")
            order = [first.index(n) for n in names]
            body = rows[1:]
        else:
            order = list(range(len(names)))
            body = rows
        out = []
        for line, row in enumerate(body, start=2 if has_header else 1):
            if len(row) < max(order) + 1:
                raise _bad(path, f"row {line} has {len(row)} cells; the model needs {len(names)} columns")
            out.append(_encode_row(path, line, [row[i].strip() for i in order], columns))
        x = np.asarray(out, dtype=np.float32)
    else:
        body = rows[1:] if has_header else rows
        out = []
        for line, row in enumerate(body, start=2 if has_header else 1):
            try:
                out.append([float(c) for c in row])
            except ValueError:
                raise _bad(path, f"row {line}: not all cells are numbers") from None
        x = np.asarray(out, dtype=np.float32)
    if not len(x):
        raise _bad(path, "no data rows")
    if not np.all(np.isfinite(x)):
        raise _bad(path, "holds NaN or infinite values")
    return _fit(path, x, shape, "CSV rows")


def _encode_row(path: Path, line: int, cells: list[str], columns: list) -> list[float]:
    values: list[float] = []
    for cell, col in zip(cells, columns):
        if col[1] == "categorical":
            vocab = col[2]
            if cell not in vocab:
                raise _bad(path, f"row {line}, column {col[0]!r}: value {cell!r} never occurred in training",
                           f"known values: {', '.join(map(repr, vocab[:10]))}")
            values += [1.0 if cell == v else 0.0 for v in vocab]
        else:
            try:
                values.append(float(cell))
            except ValueError:
                raise _bad(path, f"row {line}, column {col[0]!r}: {cell!r} is not a number") from None
    return values


def _number(cell: str) -> bool:
    try:
        float(cell)
        return True
    except ValueError:
        return False


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
            entry: dict[str, Any] = {"probabilities": [float(v) for v in p]}
            if labels and len(labels) == 2 and row.size == 1:
                chosen = int(p[0] > 0.5)
                entry["label"] = labels[chosen]
                entry["probability"] = float(p[0] if chosen else 1 - p[0])
            results.append(entry)
        else:
            results.append({"values": [float(v) for v in row]})
    return results


def predict_files(model: str, inputs: tuple[str, ...], top_k: int = 3, batch_size: int = 256,
                  as_json: bool = False) -> list[dict]:
    session, meta = load_session(model)
    name = session.get_inputs()[0].name
    dtype = np.int64 if meta.get("input_dtype") == "int64" else np.float32
    everything = []
    for path in (p for raw in inputs for p in expand_folder(Path(raw))):
        x = read_inputs(path, meta).astype(dtype)
        try:
            outs = [session.run(None, {name: x[i : i + batch_size]})[0] for i in range(0, len(x), batch_size)]
        except Exception as e:  # noqa: BLE001 - onnxruntime's own error types
            raise _bad(path, f"the model could not run on it ({str(e).splitlines()[0][:200]})") from None
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
    if "label" in r:
        return f"{r['input']}: {r['label']} ({r['probability']:.1%})"
    if "probabilities" in r:
        return f"{r['input']}: " + ", ".join(f"{p:.4f}" for p in r["probabilities"])
    return f"{r['input']}: " + ", ".join(f"{v:.6g}" for v in r["values"])


def run_model(run: str) -> str:
    """The ONNX model of a run folder: its newest exported .onnx, else exported now."""
    folder = Path(run)
    found = sorted(folder.glob("*.onnx"), key=lambda p: p.stat().st_mtime, reverse=True)
    if found:
        return str(found[0])
    from netspec.deploy.export import export_file

    print(f"{folder} has no exported model yet; exporting it first", file=sys.stderr)
    export_file(str(folder))
    found = sorted(folder.glob("*.onnx"), key=lambda p: p.stat().st_mtime, reverse=True)
    return str(found[0])
