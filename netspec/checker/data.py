"""Checker, part 5: the data against the model and the loss, read cheaply.

In: a checked spec. Out: the same spec with data warnings added, or a ``NetspecError``
whose diagnostics sit at the spec position that can fix them (the source expression, an
argument such as `target=`, the model's last layer, the loss).

What is read (sources.py's readers in their `peek` mode): CSV files up to PEEK_ROWS rows
(header, types, vocabularies, class counts); IDX headers (and label files, which are
small); image folder listings (never an image); .npy/.npz headers and labels;
`table(...)` expressions. Nothing is decoded or normalised, so `netspec check` stays fast;
`--no-data` skips all of it. The Encoder (data/encode.py) says what preparing the data would.
"""

from __future__ import annotations

import math
from dataclasses import replace
from typing import Any

import numpy as np

from netspec import ir
from netspec.catalogue import fmt_shape
from netspec.data.encode import Encoder, image_geometry, loss_task, takes_tokens
from netspec.data.prepare import learn_and_encode, source_rows, source_warnings
from netspec.data.sources import PEEK_ROWS, RawSet, ReadOptions, read_source, table_env
from netspec.errors import Diagnostic, NetspecError, data_error
from netspec.util import count


def check_data_files(checked: ir.CheckedSpec) -> ir.CheckedSpec:
    data = checked.data
    if data is None or data.train is None:
        return checked
    diags: list[Diagnostic] = []
    warnings: list[Diagnostic] = []
    read: list[RawSet] = []  # what the sources said (image folders' warnings) comes first, as it was read first
    encoder = None
    try:
        raw = peek(checked, data.train)
        if raw is not None:
            read.append(raw)
            encoder = learn(checked, raw)
            check_shape(checked, encoder, data.train)
            warnings += encoder.warnings
    except NetspecError as e:
        diags += [_at(d, data.train.span) for d in e.diagnostics]
    if data.test is not None and encoder is not None and not diags:
        try:
            traw = peek(checked, data.test, encoder.pre.classes if data.test.kind == "image_folder" else None)
            if traw is not None:
                read.append(traw)
                check_test(encoder, traw, data.test)
        except NetspecError as e:
            diags += [_at(d, data.test.span) for d in e.diagnostics]
    if encoder is not None and not diags:
        diags += check_augment(checked, encoder, raw)
    if data.target == "input":
        out, inp = checked.model.output_shape, checked.model.input_shape
        if None not in out and None not in inp and math.prod(d or 0 for d in out) != math.prod(d or 0 for d in inp):
            diags.append(Diagnostic(f"`target: input` trains the model to reproduce its input {fmt_shape(inp)}, "
                                    f"but it outputs {fmt_shape(out)}", checked.model.span, "error",
                                    f"make the last layer produce {fmt_shape(inp)} ({math.prod(d or 0 for d in inp)} values)"))
    said = source_warnings(*read)
    if diags:
        raise NetspecError(said + diags + list(checked.warnings) + warnings)
    return replace(checked, warnings=tuple(said) + tuple(checked.warnings) + tuple(warnings))


def learn(checked: ir.CheckedSpec, raw: RawSet) -> Encoder:
    """The vocabularies as training will learn them: from the training rows of the split when
    the peek holds the whole source (and then every used row is encoded, so a value only
    validation or test rows hold is found now); from every peeked row otherwise."""
    data = checked.data
    assert data is not None
    n = _rows(raw)
    whole = raw.table is None or len(raw.table) < PEEK_ROWS
    if whole and (data.split is not None or data.validation or data.subset is not None) and \
            not (raw.table is None and takes_tokens(checked)):
        if raw.table is None and raw.x is not None and len(raw.x) != n:  # a peek: labels without samples
            raw = replace(raw, x=np.broadcast_to(np.zeros((), raw.x.dtype), (n, *raw.x.shape[1:])))
        return learn_and_encode(checked, None, raw, source_rows(data, n, checked.train.seed))[0]
    encoder = Encoder(checked, None)
    encoder.learn(raw, np.arange(n))
    return encoder


def _at(d: Diagnostic, span: ir.Span) -> Diagnostic:
    """A data problem without a position of its own sits at the source expression (a warning
    said while reading, e.g. of an image folder's links, stays as said)."""
    return d if d.span or d.severity != "error" else replace(d, span=span)


def _rows(raw: RawSet) -> int:
    if raw.table is not None:
        return len(raw.table)
    return len(raw.y) if raw.y is not None else len(raw.x)


def peek(checked: ir.CheckedSpec, src: ir.Source, classes: list | None = None) -> RawSet | None:
    """The source's shapes, types and labels, without reading its samples."""
    size, channels = image_geometry(checked)
    return read_source(src, ReadOptions(peek=True, seed=checked.train.seed, env=table_env(checked), image_size=size,
                                        channels=channels, classes=tuple(classes) if classes else None))


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
        help_ = f"the data has {count(have[0], 'channel')}; set `input: {fmt_shape(have)}`"
    elif src.kind == "image_folder" and len(want) == 3 and len(have) == 3 and want[0] == have[0]:
        help_ += f", or decode the images to the model's size with `image_size: {list(want[1:])}` in `data`"
    raise data_error(f"the {what} of {src.kind}(...) are {fmt_shape(have)} ({math.prod(have)} values) but "
                     f"the model input is {fmt_shape(want)}", help_, span=checked.model.span)


def check_test(encoder: Encoder, raw: RawSet, src: ir.Source) -> None:
    """Test data must fit the training vocabulary, columns and shapes (encode it)."""
    if raw.table is not None and encoder.pre.kind == "text":  # the tokenizer is learnt when training
        encoder.check_texts(raw.table, encoder.pre.text or [], None, "test data")
        if encoder.pre.task != "input":
            encoder.encode_csv_targets(raw.table, "test data")
        return
    if raw.table is not None:
        encoder.encode(raw, "test data", src)
        return
    if raw.x is not None and list(raw.x.shape[1:]) != list(encoder.pre.source_shape):
        raise data_error(f"{raw.file}: test samples have shape {fmt_shape(raw.x.shape[1:])}, the training "
                         f"samples {fmt_shape(tuple(encoder.pre.source_shape))}")
    if raw.x is not None and encoder.pre.tokens:
        encoder.token_ids(raw.extra.get("peek_x", raw.x), raw.file)
    if raw.y is not None and loss_task(encoder.checked) != "input":
        encoder.encode_targets(raw.y, raw.classes, raw.file, "test data", None)


def augment_shape_problem(data: ir.DataConfig, shape: tuple) -> Diagnostic | None:
    """augment needs samples shaped [channels, height, width] (uint8 or float, any source)."""
    if len(shape) == 3 or not data.augment or data.train is None:
        return None
    return Diagnostic(f"augment works on samples shaped [channels, height, width]; the samples of "
                      f"{data.train.kind}(...) are {fmt_shape(shape)}", data.augment[0].span, "error",
                      "store the samples as [channels, height, width] (e.g. arrays of shape [N, 1, 28, 28]), "
                      "or remove `augment:`")


def value_range(x: Any, rows: int = 4096) -> tuple[float, float] | None:
    """(min, max) of float samples, from a bounded slice; None for uint8 images (always [0, 1])."""
    if x is None or getattr(x, "dtype", None) is None or np.asarray(x[:0]).dtype.kind != "f" or not len(x):
        return None
    part = np.asarray(x[:rows], dtype=np.float64)
    return float(part.min()), float(part.max())


def check_augment(checked: ir.CheckedSpec, encoder: Encoder, raw: RawSet | None = None) -> list[Diagnostic]:
    data = checked.data
    if data is None or not data.augment:
        return []
    pre = encoder.pre
    shape = tuple(pre.source_shape)
    wrong = augment_shape_problem(data, shape)
    if wrong is not None:
        return [wrong]
    from netspec.data.augment import Augmenter, augment_problems, range_problems

    ops = [(a.name, dict(a.kwargs)) for a in data.augment]
    problems = augment_problems(ops, shape)  # type: ignore[arg-type]
    span = value_range(raw.extra.get("peek_x", raw.x)) if raw is not None and pre.kind != "image" else None
    if span is not None:
        problems += range_problems(ops, *span)
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
