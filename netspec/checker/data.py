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

import numpy as np

from netspec import ir
from netspec.catalogue import fmt_shape
from netspec.data.encode import Encoder, image_geometry, loss_task
from netspec.data.sources import RawSet, ReadOptions, read_source, table_env
from netspec.errors import Diagnostic, NetspecError, data_error


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
        help_ = f"the data has {have[0]} channel(s); set `input: {fmt_shape(have)}`"
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
