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

A model of texts takes raw text (`--text "..."`, a .txt file of one text per line, or a CSV
with the training text columns), tokenized with the tokenizer in its own metadata (Hugging
Face `tokenizers`, no torch) and padded as training padded them (data/text.py).
"""

from __future__ import annotations

import csv
import io
import math
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from netspec.catalogue import fmt_shape
from netspec.data.images import IMAGE_EXTENSIONS, special_entries
from netspec.deploy.runtime import checked_outputs, load_session, run_session
from netspec.errors import DataError, Tell, data_error, printable
from netspec.util import open_regular

IMAGE_EXT = frozenset(IMAGE_EXTENSIONS)  # what image folders read, predict reads


def expand_folder(path: Path, tell: Tell | None = None) -> list[Path]:
    """A folder stands for the images in it and its subfolders (sorted); anything else for
    itself. Image names that are not files (a FIFO, a device, a broken link) are skipped, said
    to `tell`."""
    if not path.is_dir():
        return [path]
    named = sorted(p for p in path.rglob("*") if p.suffix.lower() in IMAGE_EXT
                   and not any(part.startswith(".") for part in p.relative_to(path).parts))
    found = [p for p in named if p.is_file()]
    special = [p for p in named if not p.is_file() and not p.is_dir()]
    if special and tell is not None:
        tell(special_entries(path, special))
    if not found:
        raise data_error(f"{path}: a folder without images", f"predict reads {' '.join(sorted(IMAGE_EXT))} images in a "
                         "folder; pass other inputs by name (e.g. samples.npy)")
    return found


def read_inputs(path: Path, meta: dict) -> np.ndarray:
    """One input file -> raw samples [N, *input_shape] in model units (images in [0, 1])."""
    pre = meta.get("preprocessing") or {}
    shape = tuple(meta["input_shape"])
    suffix = path.suffix.lower()
    if not path.exists():
        raise data_error(f"{path}: no such file")
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
    raise data_error(f"{path}: unsupported input type `{suffix or path.name}`",
                     "inputs: images (.png, .jpg, .bmp, .webp), .npy, .csv, IDX")


def _fit(path: Path, x: np.ndarray, shape: tuple, what: str) -> np.ndarray:
    """Samples [N, ...] reshaped to the graph input (same number of values per sample)."""
    if None in shape:
        if x.ndim == len(shape) + 1 and all(d is None or d == n for d, n in zip(shape, x.shape[1:])):
            return x
        if x.ndim == len(shape) and all(d is None or d == n for d, n in zip(shape, x.shape)):
            return x[None]
        raise data_error(f"{path}: {what} of shape {list(x.shape[1:])} do not fit the model's input "
                         f"{fmt_shape(shape)}")
    n_values = math.prod(shape)
    if x.size == n_values and (x.ndim == len(shape) or x.ndim == 1):
        return x.reshape(1, *shape)
    if x.ndim >= 1 and len(x) and x[0].size == n_values:
        return x.reshape(len(x), *shape)
    raise data_error(f"{path}: {what} of shape {list(x.shape)} do not hold samples of the model's input "
                     f"{fmt_shape(shape)} ({n_values} values each)")


def read_image(path: Path, shape: tuple, pre: dict) -> np.ndarray:
    if pre.get("kind") == "table" or len(shape) != 3 or shape[0] not in (1, 3):
        trained = "CSV rows" if pre.get("columns") else "rows of numbers"
        raise data_error(f"{path}: this model was trained on {trained} ({fmt_shape(shape)} values per sample), "
                         "not on images",
                         "give it the same kind of data: a CSV with the training columns, or a .npy of such rows")
    from netspec.data.images import decode_image

    c, h, w = shape
    return decode_image(path, (int(h), int(w)), int(c)).astype(np.float32) / 255.0


def read_npy(path: Path, shape: tuple, pre: dict) -> np.ndarray:
    """A .npy file, memory-mapped as training reads one (its header is checked against the
    file's size first: an empty file, or a header claiming more than the file holds, is
    said, never allocated)."""
    from netspec.data.arrays import read_npy_file

    arr = read_npy_file(path, "predict needs numbers")
    if arr.size == 0:
        raise data_error(f"{path}: is empty")
    x = arr.astype(np.float32) / (255.0 if arr.dtype == np.uint8 and pre.get("kind") == "image" else 1.0)
    if not np.all(np.isfinite(x)):
        raise data_error(f"{path}: holds NaN or infinite values")
    return _fit(path, x, shape, "arrays")


def read_csv_rows(path: Path, shape: tuple, pre: dict) -> np.ndarray:
    """CSV rows: with a header, columns are matched to the training columns by name (and
    categorical cells encoded with the training vocabulary); without one, by position."""
    with open_regular(path, 1 << 30, "CSV", DataError) as f:
        try:
            rows = [r for r in csv.reader(io.TextIOWrapper(f, encoding="utf-8-sig", newline=""))
                    if any(c.strip() for c in r)]
        except (UnicodeDecodeError, csv.Error) as e:
            raise data_error(f"{path}: cannot read CSV ({e})") from None
    if not rows:
        raise data_error(f"{path}: no data rows")
    columns = pre.get("columns")
    first = [c.strip() for c in rows[0]]
    has_header = not all(_number(c) for c in first) or (columns and set(first) & {c[0] for c in columns})
    if columns:
        names = [c[0] for c in columns]
        if has_header:
            missing = [n for n in names if n not in first]
            if missing:
                raise data_error(f"{path}: no column {missing[0]!r}; the model needs {', '.join(names)}")
            order = [first.index(n) for n in names]
            body = rows[1:]
        else:
            order = list(range(len(names)))
            body = rows
        out = []
        for line, row in enumerate(body, start=2 if has_header else 1):
            if len(row) < max(order) + 1:
                raise data_error(f"{path}: row {line} has {len(row)} cells; the model needs {len(names)} columns")
            out.append(_encode_row(path, line, [row[i].strip() for i in order], columns))
        x = np.asarray(out, dtype=np.float32)
    else:
        body = rows[1:] if has_header else rows
        out = []
        for line, row in enumerate(body, start=2 if has_header else 1):
            try:
                out.append([float(c) for c in row])
            except ValueError:
                raise data_error(f"{path}: row {line}: not all cells are numbers") from None
        x = np.asarray(out, dtype=np.float32)
    if not len(x):
        raise data_error(f"{path}: no data rows")
    if not np.all(np.isfinite(x)):
        raise data_error(f"{path}: holds NaN or infinite values")
    return _fit(path, x, shape, "CSV rows")


def _encode_row(path: Path, line: int, cells: list[str], columns: list) -> list[float]:
    values: list[float] = []
    for cell, col in zip(cells, columns):
        if col[1] == "categorical":
            vocab = col[2]
            if cell not in vocab:
                raise data_error(f"{path}: row {line}, column {col[0]!r}: value {cell!r} never occurred in training",
                                 f"known values: {', '.join(map(repr, vocab[:10]))}")
            values += [1.0 if cell == v else 0.0 for v in vocab]
        else:
            try:
                values.append(float(cell))
            except ValueError:
                raise data_error(f"{path}: row {line}, column {col[0]!r}: {cell!r} is not a number") from None
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
                  texts: tuple[str, ...] = ()) -> list[dict]:
    """Every input's result (see `predictions`), as a list."""
    session, meta = load_session(model)
    return list(predictions(session, meta, inputs, top_k, batch_size, texts))


# ---------------------------------------------------------------- texts


def is_text_model(meta: dict) -> bool:
    pre = meta.get("preprocessing") or {}
    return isinstance(pre, dict) and pre.get("kind") == "text"


def text_inputs(meta: dict, inputs: tuple[str, ...], texts: tuple[str, ...], tell: Tell | None = None
                ) -> Iterator[tuple[list[str], list[list[str]]]]:
    """(names, one list of cells per text column) for each source of texts: the --text
    strings, then each file (.txt: a text per line; .csv: the training text columns), their
    texts checked as training checks them (length: an error; empty: said to `tell`)."""
    for names, cells in _text_sources(meta, inputs, texts):
        _check_texts(names, cells, tell)
        yield names, cells


def _check_texts(names: list[str], cells: list[list[str]], tell: Tell | None) -> None:
    from netspec.data.text import MAX_TEXT_CHARS

    for column in cells:
        long = next((i for i, c in enumerate(column) if len(c) > MAX_TEXT_CHARS), None)
        if long is not None:
            raise data_error(f"{names[long]}: a text of {len(column[long]):,} characters; netspec reads texts of up "
                             f"to {MAX_TEXT_CHARS:,}", "cut long documents into pieces (or keep their beginnings)")
    empty = [n for i, n in enumerate(names) if not any(column[i].strip() for column in cells)]
    if empty and tell is not None:
        more = f" (and {len(empty) - 1:,} more)" if len(empty) > 1 else ""
        tell(f"warning: {empty[0]}{more}: empty text; the model sees a single padding token for it, so its "
             "prediction says nothing about a text")


def _text_sources(meta: dict, inputs: tuple[str, ...], texts: tuple[str, ...]
                  ) -> Iterator[tuple[list[str], list[list[str]]]]:
    pre = meta["preprocessing"]
    columns = list(pre.get("text") or [])
    if texts:
        if len(columns) > 1:
            raise data_error(f"this model reads {len(columns)} text columns ({', '.join(columns)}); --text gives one",
                             f"give a CSV with the columns {', '.join(columns)}")
        yield [_short(t) for t in texts], [list(texts)]
    for raw in inputs:
        path = Path(raw)
        if not path.exists():
            raise data_error(f"{path}: no such file")
        suffix = path.suffix.lower()
        if suffix == ".txt":
            if len(columns) > 1:
                raise data_error(f"{path}: this model reads {len(columns)} text columns ({', '.join(columns)}); a .txt "
                                 "file gives one text per line", f"give a CSV with the columns {', '.join(columns)}")
            lines = _text_lines(path)
            yield [f"{path}:{n}" for n, _ in lines], [[t for _, t in lines]]
        elif suffix == ".csv":
            from netspec.data.sources import read_csv

            table = read_csv(path)
            missing = [c for c in columns if c not in table.columns]
            if missing:
                raise data_error(f"{path}: no column {missing[0]!r}; the model reads the text column(s) "
                                 f"{', '.join(columns)}", "columns: " + ", ".join(table.header))
            yield [f"{path}:{line}" for line in table.lines], [table.columns[c] for c in columns]
        else:
            raise data_error(f"{path}: this model reads texts, not `{suffix or path.name}` files",
                             'give --text "...", a .txt file (one text per line) or a .csv with the column(s) '
                             + ", ".join(columns))


def _short(text: str, width: int = 60) -> str:
    flat = " ".join(text.split())
    return repr(flat if len(flat) <= width else flat[: width - 3] + "...")


def _text_lines(path: Path) -> list[tuple[int, str]]:
    """(line number, text) of the non-blank lines of a UTF-8 text file."""
    from netspec.data.sources import MAX_CSV_BYTES

    with open_regular(path, MAX_CSV_BYTES, "text file", DataError) as f:
        data = f.read()
    out = []
    for n, raw in enumerate(data.split(b"\n"), start=1):
        try:
            line = raw.decode("utf-8-sig" if n == 1 else "utf-8").rstrip("\r")
        except UnicodeDecodeError as e:
            raise data_error(f"{path}:{n}: not UTF-8 (byte 0x{raw[e.start]:02x} at byte {e.start + 1} of the line)",
                             "save the file as UTF-8") from None
        if line.strip():
            out.append((n, line))
    if not out:
        raise data_error(f"{path}: no texts (every line is blank)")
    return out


def text_predictions(session: Any, meta: dict, inputs: tuple[str, ...], texts: tuple[str, ...], top_k: int,
                     batch_size: int, tell: Tell | None = None) -> Iterator[dict]:
    """Texts tokenized with the model's own tokenizer, padded per batch, through onnxruntime."""
    from tokenizers import Tokenizer

    from netspec.data.text import encode_texts

    pre = meta["preprocessing"]
    tokenizer = Tokenizer.from_str(pre["tokenizer"])
    for names, cells in text_inputs(meta, inputs, texts, tell):
        for start in range(0, len(names), batch_size):
            ids, lengths = encode_texts(tokenizer, [c[start:start + batch_size] for c in cells], pre.get("max_len"))
            kept = np.minimum(lengths, ids.shape[1])
            mask = (np.arange(ids.shape[1])[None, :] < kept[:, None]).astype(np.int64)
            try:
                out = run_session(session, ids.astype(np.int64), mask)
            except Exception as e:  # noqa: BLE001 - onnxruntime's own error types
                raise data_error(f"{names[start]}: the model could not run on it ({str(e).splitlines()[0][:200]})") \
                    from None
            for name, r in zip(names[start:start + batch_size], interpret(out, meta, top_k)):
                r["input"] = name
                yield r


def predictions(session: Any, meta: dict, inputs: tuple[str, ...], top_k: int = 3,
                batch_size: int = 256, texts: tuple[str, ...] = (), tell: Tell | None = None) -> Iterator[dict]:
    """One result per sample, file by file (a folder: its images), as soon as each file is
    done: {"input": name, and "predictions" (top-k classes), "label"/"probabilities" or "values"}.
    `texts`: raw texts for a model of texts (--text)."""
    if is_text_model(meta):
        yield from text_predictions(session, meta, inputs, texts, top_k, batch_size, tell)
        return
    if texts:
        raise data_error("--text is for models trained on text columns; this one takes "
                         f"{fmt_shape(tuple(meta['input_shape']))} samples")
    dtype = np.int64 if meta.get("input_dtype") == "int64" else np.float32
    for path in (p for raw in inputs for p in expand_folder(Path(raw), tell)):
        x = read_inputs(path, meta)
        if dtype == np.int64:
            x = token_ids(path, x, meta.get("num_embeddings"))
        x = x.astype(dtype)
        outs = []
        for i in range(0, len(x), batch_size):
            try:
                out = run_session(session, x[i : i + batch_size])
            except Exception as e:  # noqa: BLE001 - onnxruntime's own error types
                raise data_error(f"{path}: the model could not run on it ({str(e).splitlines()[0][:200]})") from None
            model = meta.get("onnx_file", "the model")
            outs.append(checked_outputs(model, out, meta, len(x[i : i + batch_size]), str(path)))
        results = interpret(np.concatenate(outs), meta, top_k)
        for i, r in enumerate(results):
            r["input"] = str(path) if len(results) == 1 else f"{path}[{i}]"
            yield r


def token_ids(path: Path, x: np.ndarray, vocabulary: Any) -> np.ndarray:
    """Inputs of a model that starts with an Embedding: whole numbers within its table
    (5.1 is not silently id 5), as training demands."""
    flat = np.asarray(x).reshape(len(x), -1)
    if flat.dtype.kind == "f":
        bad = ~np.equal(np.mod(flat, 1), 0)
        if bad.any():
            r = int(np.argmax(bad.any(axis=1)))
            raise data_error(f"{path}: sample {r} holds {flat[r][bad[r]][0]:g}, but the model takes integer token ids")
    n = vocabulary if isinstance(vocabulary, int) and not isinstance(vocabulary, bool) and vocabulary > 0 else None
    outside = (flat < 0) | (flat >= n) if n is not None else flat < 0
    if outside.any():
        r = int(np.argmax(outside.any(axis=1)))
        v = flat[r][outside[r]][0]
        raise data_error(f"{path}: token id {v:g} (sample {r}) is outside the model's "
                         + (f"{n} ids (0 to {n - 1})" if n is not None else "ids (they start at 0)"))
    return x


def format_result(r: dict) -> str:
    """One line per sample. Labels come from the model file and names from the file system:
    each is shown with its control, bidi and newline characters escaped, so a model cannot
    draw its own results on the screen (`\\x1b[2K\\r... SAFE (99.9%)`)."""
    name = printable(r["input"], newlines=False)
    if "predictions" in r:
        shown = ", ".join(f"{printable(p['label'], newlines=False)} ({p['probability']:.1%})"
                          for p in r["predictions"])
        return f"{name}: {shown}"
    if "label" in r:
        return f"{name}: {printable(r['label'], newlines=False)} ({r['probability']:.1%})"
    if "probabilities" in r:
        return f"{name}: " + ", ".join(f"{p:.4f}" for p in r["probabilities"])
    return f"{name}: " + ", ".join(f"{v:.6g}" for v in r["values"])


def run_model(run: str) -> str | None:
    """The ONNX model of a run folder: its newest exported .onnx (None: not exported yet)."""
    found = sorted(Path(run).glob("*.onnx"), key=lambda p: p.stat().st_mtime, reverse=True)
    return str(found[0]) if found else None
