"""`netspec data FILE`: what the data section produces, and what the model will see.

In: a spec. Out: a summary (splits and their sizes, sample shapes, classes and their
counts, normalisation statistics, the image cache, the augmentation), and with
`--preview -o grid.png` a grid of the first training batch's samples after augmentation
(exactly the draws of epoch 1, step 1), captioned with their labels.

    netspec data examples/mnist_folder.net
    netspec data examples/fashion_resnet.net --preview -o grid.png
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from netspec import ir
from netspec.data.prepare import Prepared, Split, prepare, reading_lines
from netspec.errors import Tell, error, printable
from netspec.outputs import Refusals, check_output_file, check_replaceable, is_signed_png, read_bounded, sign_png
from netspec.util import atomic_write


def describe(checked: ir.CheckedSpec, data: Prepared) -> str:
    pre = data.pre
    from netspec.catalogue import fmt_shape

    lines = [f"data of {checked.spec.file} (model `{checked.model.name}`, input {fmt_shape(checked.model.input_shape)})"]
    for name, split in (("train", data.train), ("validation", data.val), ("test", data.test)):
        if split is not None:
            lines.append(f"  {name + ':':<12}{len(split):>9,} sample{'s' if len(split) != 1 else ''}")
    if pre.kind == "text":
        lines.append(f"  samples:    texts as token ids ({pre.raw_dtype}), each batch padded to its longest text")
    else:
        lines.append(f"  samples:    {pre.kind}, {pre.raw_dtype} {pre.source_shape}"
                     + (" (scaled to [0, 1])" if pre.scale != 1 else ""))
    if pre.features and pre.kind == "table" and len(pre.features) <= 20:
        lines.append(f"  features:   {', '.join(printable(f, newlines=False) for f in pre.features)}")
    if pre.kind == "text":
        lines += _text_lines(data)
    lines.append(f"  targets:    {pre.task}" + (f" ({', '.join(pre.targets)})" if pre.targets else ""))
    if pre.classes:
        counts = _class_counts(data.train, len(pre.classes))
        shown = ", ".join(f"{printable(c, newlines=False)} {n:,}" for c, n in zip(pre.classes[:12], counts[:12]))
        more = f", ... ({len(pre.classes)} classes)" if len(pre.classes) > 12 else ""
        lines.append(f"  classes:    {shown}{more}")
    if pre.normalize != "none" and pre.shift is not None:
        what = "per channel" if pre.kind == "image" else "per column"
        lines.append(f"  normalize:  {pre.normalize} {what}, from the training split: shift "
                     f"{_short(pre.shift)}, divide by {_short(pre.div or [])}")
    if pre.target_shift is not None:
        lines.append(f"  targets normalized: {pre.target_normalize}, from the training split: shift "
                     f"{_short(pre.target_shift)}, divide by {_short(pre.target_div or [])} (for the loss; metrics "
                     "and predictions in the target's units)")
    dc = checked.data
    if dc is not None and dc.augment:
        from netspec.syntax.expr import show

        lines.append("  augment:    " + ", ".join(show(a) for a in dc.augment) + " (training batches only)")
    lines += [f"  {note}" for note in data.notes]
    return "\n".join(lines)


def _text_lines(data: Prepared) -> list[str]:
    """The text columns: tokenizer, vocabulary, unknown-token rates, lengths."""
    from netspec.data.text import length_histogram, special_tokens, unknown_rate

    pre = data.pre
    columns = pre.text or []
    lines = [f"  text:       column{'s' if len(columns) > 1 else ''} {', '.join(map(repr, columns))}, "
             f"tokenizer {pre.tokenizer_name}",
             f"  vocabulary: {pre.vocab_size or 0:,} tokens, {', '.join(special_tokens(len(columns)))} included "
             "(learnt from the training split)"]
    train_lengths = data.text_lengths.get("train")
    cut = int((train_lengths > (pre.max_len or 0)).sum()) if train_lengths is not None else 0
    lines.append(f"  max_len:    {pre.max_len:,} tokens ({cut:,} of {len(data.train):,} training texts are cut)")
    rates = [f"{name} {unknown_rate(np.asarray(split.x)):.1%}" for name, split in
             (("training", data.train), ("validation", data.val), ("test", data.test)) if split is not None]
    lines.append("  unknown:    " + ", ".join(rates) + " of the tokens are [UNK]")
    if train_lengths is not None and len(train_lengths):
        lines.append(f"  lengths:    tokens per training text (before max_len): median {int(np.median(train_lengths))}, "
                     f"95% up to {int(np.percentile(train_lengths, 95))}, longest {int(train_lengths.max())}")
        lines += ["  " + line for line in length_histogram(train_lengths.tolist(), pre.max_len)]
    return lines


def _short(values: list) -> str:
    shown = ", ".join(f"{v:.4g}" for v in values[:4])
    return f"[{shown}{', ...' if len(values) > 4 else ''}]"


def _class_counts(split: Split, k: int) -> list[int]:
    y = split.y
    if y is None:
        return [0] * k
    y = np.asarray(y)
    idx = y.argmax(axis=1) if y.ndim == 2 and y.shape[1] > 1 else y.reshape(len(y), -1)[:, 0].astype(np.int64)
    return np.bincount(idx.astype(np.int64), minlength=k).tolist()


def preview(checked: ir.CheckedSpec, data: Prepared, out: Path, count: int = 32) -> int:
    """The first training batch of epoch 1 as the model sees it (augmented, not yet
    normalised), in a grid; returns the number of samples shown."""
    import torch

    from netspec.data.loader import Loader, to_units
    from netspec.train.loop import epoch_order

    pre = data.pre
    if len(pre.source_shape) != 3 or pre.source_shape[0] not in (1, 3):
        raise error(f"--preview shows images ([1 or 3 channels, height, width]); this data set's samples are "
                    f"{list(pre.source_shape)}", "`netspec data FILE` without --preview summarises it")
    check_output_file(out, "preview.png")
    if out.suffix.lower() != ".png":
        raise error(f"-o {out}: the preview is a .png file")
    if out.exists():
        check_replaceable(out, [checked.spec.file], _is_own_preview, PREVIEW_REFUSALS)
    dc = checked.data
    batch = min(dc.batch_size or len(data.train), len(data.train)) if dc else len(data.train)
    order = epoch_order(len(data.train), checked.train.seed, 1, dc.shuffle if dc else True).numpy()[:batch]
    idx = order[: min(count, batch)]
    xb, yb = Loader(data.train, pre, torch.device("cpu"), resident=False).fetch(idx)
    x = to_units(xb, pre)
    if dc is not None and dc.augment:
        from netspec.data.augment import Augmenter

        aug = Augmenter([(a.name, dict(a.kwargs)) for a in dc.augment], tuple(pre.source_shape))  # type: ignore[arg-type]
        x = aug(x, checked.train.seed, 1, 1, offset=0, total=len(order))
    if pre.kind != "image" and (float(x.min()) < 0 or float(x.max()) > 1):  # float samples: their own range
        x = (x - x.min()) / (x.max() - x.min()).clamp(min=1e-12)
    images = (x.clamp(0, 1) * 255).round().to(torch.uint8).numpy()
    captions = _captions(yb, pre)
    title = f"{checked.model.name}: first training batch, epoch 1" + (" (augmented)" if dc and dc.augment else "")
    from netspec.train.plot import image_grid

    grid = image_grid(list(images), captions, min(8, len(images)), title)
    def write(tmp: str) -> None:
        grid.save(tmp, format="PNG")
        sign_png(tmp, PREVIEW_MARK)

    atomic_write(out, write)
    return len(images)


PREVIEW_MARK = "written by netspec data --preview; sha256 "  # the previews it may replace
PREVIEW_REFUSALS = Refusals(
    is_input="-o {output}: that is the input; netspec data never overwrites it", is_input_help="choose another -o",
    not_a_file="-o {output}: not a regular file; netspec data writes only files",
    not_own="-o {output}: exists and is not an unedited preview of netspec data; netspec will not overwrite it",
    not_own_help="choose another -o, or remove the file first")


def _is_own_preview(path: str) -> bool:
    data = read_bounded(path, 256 << 20)
    return data is not None and is_signed_png(data, PREVIEW_MARK)


def _captions(y, pre) -> list[str]:
    if y is None:
        return [""] * 0
    arr = y.numpy() if hasattr(y, "numpy") else np.asarray(y)
    out = []
    for row in arr:
        row = np.asarray(row).reshape(-1)
        i = int(row.argmax()) if row.size > 1 else int(round(float(row[0])))
        out.append(pre.classes[i] if pre.classes and 0 <= i < len(pre.classes) else f"{float(row[0]):.3g}")
    return out


def inspect(path: str, overrides: tuple[str, ...] = (), tell: Tell | None = None) -> tuple[ir.CheckedSpec, Prepared]:
    """The spec (checked with its data) and its prepared data, for `describe` and `preview`;
    what reading the data said (image folders' warnings, a cache built) goes to `tell`."""
    from netspec import load

    checked = load(path, overrides, read_data=True)
    data = prepare(checked)
    if tell is not None:
        for line in reading_lines(data):
            tell(line)
    return checked, data
