"""Checker, part 5: the data against the model and the loss, read cheaply.

In: a checked spec. Out: the same spec with data warnings added, or a ``NetspecError``
whose diagnostics sit at the spec position that can fix them (the source expression, an
argument such as `target=`, the model's last layer, the loss).

What is read: CSV files up to MAX_ROWS rows (header, types, vocabularies, class counts);
IDX headers (and label files, which are small); image folder listings (never an image);
.npy/.npz headers and labels; `table(...)` expressions. Nothing is decoded or normalised,
so `netspec check` stays fast; `--no-data` skips all of it.
"""

from __future__ import annotations

import math
from dataclasses import replace
from pathlib import Path

import numpy as np

from netspec import ir
from netspec.catalogue import fmt_shape
from netspec.data.datasets import DATASETS, file_in, find_dataset
from netspec.data.prepare import Encoder, image_geometry, loss_task
from netspec.data.sources import RawSet, idx_header, load_table, read_csv, read_idx
from netspec.errors import DataError, Diagnostic, NetspecError

MAX_ROWS = 200_000


def check_data_files(checked: ir.CheckedSpec) -> ir.CheckedSpec:
    data = checked.data
    if data is None or data.train is None:
        return checked
    diags: list[Diagnostic] = []
    warnings: list[Diagnostic] = []
    encoder = None
    try:
        raw = peek(checked, data.train)
        if raw is not None:
            encoder = Encoder(checked, None)
            encoder.learn(raw, np.arange(_rows(raw)))
            check_shape(checked, encoder, data.train)
            warnings += encoder.warnings
    except NetspecError as e:
        diags += [_at(d, data.train.span) for d in e.diagnostics]
    if data.test is not None and encoder is not None and not diags:
        try:
            traw = peek(checked, data.test, encoder.pre.classes if data.test.kind == "image_folder" else None)
            if traw is not None:
                check_test(encoder, traw, data.test)
        except NetspecError as e:
            diags += [_at(d, data.test.span) for d in e.diagnostics]
    if encoder is not None and not diags:
        diags += check_augment(checked, encoder)
    if data.target == "input":
        out, inp = checked.model.output_shape, checked.model.input_shape
        if None not in out and None not in inp and math.prod(d or 0 for d in out) != math.prod(d or 0 for d in inp):
            diags.append(Diagnostic(f"`target: input` trains the model to reproduce its input {fmt_shape(inp)}, "
                                    f"but it outputs {fmt_shape(out)}", checked.model.span, "error",
                                    f"make the last layer produce {fmt_shape(inp)} ({math.prod(d or 0 for d in inp)} values)"))
    if diags:
        raise NetspecError(diags + list(checked.warnings) + warnings)
    return replace(checked, warnings=tuple(checked.warnings) + tuple(warnings))


def _at(d: Diagnostic, span: ir.Span) -> Diagnostic:
    """A data problem without a position of its own sits at the source expression."""
    return d if d.span else replace(d, span=span)


def _rows(raw: RawSet) -> int:
    if raw.table is not None:
        return len(raw.table)
    return len(raw.y) if raw.y is not None else len(raw.x)


def peek(checked: ir.CheckedSpec, src: ir.Source, classes: list | None = None) -> RawSet | None:
    """The source's shapes, types and labels, without reading its samples."""
    args = dict(src.kwargs)
    kind = src.kind
    if kind in DATASETS:
        split = args.get("split") or "train"
        roles = (f"{split}_images", f"{split}_labels")
        folder, _ = find_dataset(kind, args.get("root"), roles)
        if folder is None:
            return None  # found (or downloaded, with a clear message) when training
        ds = DATASETS[kind]
        images, labels = file_in(folder, ds.files[roles[0]]), file_in(folder, ds.files[roles[1]])
        assert images is not None and labels is not None
        raw = _idx_peek(images, labels)
        raw.classes = ds.labels
        return raw
    if kind == "idx":
        return _idx_peek(Path(args["images"]), Path(args["labels"]))
    if kind == "csv":
        return RawSet("csv", str(args["path"]), table=read_csv(args["path"], args.get("delimiter") or ",", MAX_ROWS))
    if kind == "table":
        env = {k: v for k, v in checked.constants if isinstance(v, (int, float)) and not isinstance(v, bool)}
        x, y = load_table(args, checked.train.seed, env)
        return RawSet("table", "table(...)", x, y)
    if kind == "image_folder":
        from netspec.data.images import scan_folder

        index = scan_folder(args["path"], tuple(classes) if classes else None)
        size, channels = image_geometry(checked)
        if size is None or channels is None:
            raise DataError(Diagnostic(
                f"{args['path']}: the image size is unknown", src.span,
                help="set `image_size: [height, width]` in the data section, or give the model an input "
                     "[channels, height, width] (channels 1 or 3)"))
        return RawSet("image", str(args["path"]), np.zeros((0, channels, *size), np.uint8), index.labels,
                      index.classes)
    if kind in ("npy", "npz"):
        return _array_peek(args, kind)
    return None


def _idx_peek(images: Path, labels: Path) -> RawSet:
    dtype, dims, _, _ = idx_header(images)
    y = np.asarray(read_idx(labels))
    if y.ndim != 1:
        raise DataError(Diagnostic(f"{labels}: labels must be 1-dimensional, got shape {list(y.shape)}",
                                   help="is this an images file? labels files are *-labels-idx1-ubyte"))
    if len(dims) < 2:
        raise DataError(Diagnostic(f"{images}: images need at least 2 dimensions, got {list(dims)}",
                                   help="is this a labels file? images files are *-images-idx3-ubyte"))
    if dims[0] != len(y):
        raise DataError(Diagnostic(f"{images} has {dims[0]} images but {labels} has {len(y)} labels"))
    shape = (1, *dims[1:]) if len(dims) == 3 else tuple(dims[1:])
    kind = "image" if dtype == np.uint8 and len(shape) == 3 else "table"
    return RawSet(kind, str(images), np.zeros((0, *shape), dtype.newbyteorder("=")),
                  y.astype(np.float64) if y.dtype.kind == "f" else y)


def _array_peek(args: dict, kind: str) -> RawSet:
    from netspec.data.images import load_npy, load_npz

    if kind == "npy":
        x, y = load_npy(args["x"], args.get("y"))
        where = str(args["x"])
    else:
        x, y = load_npz(args["path"], args.get("x") or "x", args.get("y"))
        where = str(args["path"])
    image = x.dtype == np.uint8 and x.ndim in (3, 4)
    shape = (1, *x.shape[1:]) if image and x.ndim == 3 else x.shape[1:]
    return RawSet("image" if image else "table", where, np.zeros((0, *shape), x.dtype), y)


def check_shape(checked: ir.CheckedSpec, encoder: Encoder, src: ir.Source) -> None:
    pre = encoder.pre
    want = checked.model.input_shape
    have = tuple(pre.source_shape)
    fits = (len(have) == len(want) and all(w is None or w == h for w, h in zip(want, have))) or \
        (None not in want and math.prod(have) == math.prod(int(d or 0) for d in want))
    if fits:
        return
    what = "images" if pre.kind == "image" else "samples"
    help_ = f"set `input: {fmt_shape(have)}`" + (f" or `input: [{math.prod(have)}]`" if len(have) > 1 else "")
    if pre.kind == "image" and len(want) == 3 and len(have) == 3 and want[1:] == have[1:] and want[0] != have[0]:
        help_ = f"the data has {have[0]} channel(s); set `input: {fmt_shape(have)}`"
    elif src.kind == "image_folder" and len(want) == 3 and len(have) == 3 and want[0] == have[0]:
        help_ += f", or decode the images to the model's size with `image_size: {list(want[1:])}` in `data`"
    raise DataError(Diagnostic(f"the {what} of {src.kind}(...) are {fmt_shape(have)} ({math.prod(have)} values) but "
                               f"the model input is {fmt_shape(want)}", checked.model.span, help=help_))


def check_test(encoder: Encoder, raw: RawSet, src: ir.Source) -> None:
    """Test data must fit the training vocabulary, columns and shapes (encode it)."""
    if raw.table is not None:
        encoder.encode(raw, "test data", src)
        return
    if raw.x is not None and list(raw.x.shape[1:]) != list(encoder.pre.source_shape):
        raise DataError(Diagnostic(f"{raw.file}: test samples have shape {fmt_shape(raw.x.shape[1:])}, the training "
                                   f"samples {fmt_shape(tuple(encoder.pre.source_shape))}"))
    if raw.y is not None and loss_task(encoder.checked) != "input":
        encoder.encode_targets(raw.y, raw.classes, raw.file, "test data", None)


def check_augment(checked: ir.CheckedSpec, encoder: Encoder) -> list[Diagnostic]:
    data = checked.data
    if data is None or not data.augment:
        return []
    pre = encoder.pre
    shape = tuple(pre.source_shape)
    if pre.kind != "image" or len(shape) != 3:
        return [Diagnostic(f"augment works on images ([channels, height, width]); these samples are "
                           f"{fmt_shape(shape)}", data.augment[0].span, "error", "remove `augment:`")]
    from netspec.data.augment import Augmenter, augment_problems

    ops = [(a.name, dict(a.kwargs)) for a in data.augment]
    problems = augment_problems(ops, shape)  # type: ignore[arg-type]
    out = [Diagnostic(msg, data.augment[i].span if 0 <= i < len(data.augment) else data.span, "error")
           for i, msg in problems]
    if not out:
        result = Augmenter(ops, shape).output_shape  # type: ignore[arg-type]
        if tuple(result) != shape:
            out.append(Diagnostic(f"augmentation makes training images {fmt_shape(result)} but validation and test "
                                  f"images stay {fmt_shape(shape)}", data.augment[-1].span, "error",
                                  f"crop to the image size ({shape[1]}x{shape[2]}), or set `image_size:` to "
                                  f"{list(result[1:])}"))
    return out
