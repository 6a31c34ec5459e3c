"""Checker: the constants the data define, and a model over padded texts.

In: the ``CheckContext`` after the sections pass (data constants) and after the model pass
(the model against its text data). Out: ``ctx.consts`` with `vocab_size` and `num_classes`
where the model uses them (or check reads the data); ``ctx.text`` (the tokenizer's facts);
the checked model marked `padded`; diagnostics at spec positions.

Data constants (docs/language.md, "Text"): `vocab_size` is the size of the tokenizer learned
from the training split's texts (padding and unknown tokens included), `num_classes` the
number of classes in the training split. They are computed when the model or a block names
them, or when check reads the data: the training file is read in full once, and the trained
tokenizer is cached by its texts (data/text.py), so later checks only read and hash the file.
A `let` of the same name wins (with a warning where the data define it too).

A text model takes the token ids alone (`input: [_]`, an Embedding first, large enough for the
vocabulary); a PositionalEmbedding holds max_len positions; a batch of the longest texts fits
in memory; layers that would mix padding into a result are warned about (checker/padding.py).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields, is_dataclass, replace
from typing import Any

from netspec import catalogue as cat
from netspec import ir
from netspec.checker.context import CheckContext
from netspec.checker.padding import padding_plan
from netspec.errors import Diagnostic, NetspecError
from netspec.syntax.expr import FAILED

DATA_CONSTANTS = tuple(cat.DATA_CONSTANTS)


@dataclass(frozen=True)
class TextFacts:
    """What check knows of the training texts."""

    vocab_size: int
    max_len: int  # tokens kept per text: `max_len:`, or the longest training text
    longest: int  # tokens of the longest training text
    longest_line: int  # its line in the file
    file: str
    classes: int | None  # distinct targets in the training split (class tasks)


def referenced(ctx: CheckContext) -> set[str]:
    """The data constants the model and the blocks name."""
    found: set[str] = set()

    def visit(node: Any) -> None:
        if isinstance(node, ir.Ref):
            if node.name in DATA_CONSTANTS:
                found.add(node.name)
            return
        if isinstance(node, tuple):
            for item in node:
                visit(item)
        elif is_dataclass(node) and not isinstance(node, type):
            for f in fields(node):
                if not f.name.endswith("span"):
                    visit(getattr(node, f.name))

    visit(ctx.model_syntax)
    for block in ctx.blocks.values():
        visit(block)
    return found


def data_constants_pass(ctx: CheckContext) -> None:
    """`vocab_size` and `num_classes` into ctx.consts (and the text facts into ctx.text)."""
    wanted = referenced(ctx) if ctx.model_syntax is not None else set()
    needed = wanted - set(ctx.consts)  # not given by a `let`
    data = ctx.data
    text = data is not None and data.train is not None and data.train.kind == "csv" and bool(data.train.get("text"))
    if ctx.diags:  # the data section may be wrong: the constants wait for it (no second error)
        for name in needed:
            ctx.consts[name] = FAILED
        return
    if not (needed or (ctx.read_data and (text or wanted))):
        return
    if data is None or data.train is None:
        for name in sorted(needed):
            _missing(ctx, name, "the spec has no data section with a `train:` source")
        return
    seed = ctx.train.seed if ctx.train is not None else 0
    try:
        if text:
            ctx.text = text_facts(data, seed, "num_classes" in wanted)
            found = {"vocab_size": ctx.text.vocab_size, "num_classes": ctx.text.classes}
        else:
            found = {"num_classes": count_classes(data, seed) if "num_classes" in wanted else None}
    except NetspecError as e:
        if not needed and not (ctx.read_data and text):
            return  # the data pass (or training) says what is wrong with the data
        saved = run_constants(ctx.spec.file)
        if not ctx.read_data and needed <= set(saved):  # a run folder's spec: the values it trained with
            for name in needed:
                ctx.consts[name] = saved[name]
            return
        ctx.diags += [d if d.span else replace(d, span=data.train.span) for d in e.diagnostics]
        for name in needed:
            ctx.consts[name] = FAILED  # reported once, here
        return
    for name in sorted(wanted | ({"vocab_size"} if text else set())):
        value = found.get(name)
        if name in ctx.consts:
            if value is not None and ctx.consts[name] != value and name in wanted:
                ctx.warn(data.train.span, f"`let {name} = {ctx.consts[name]}` hides the data's {name}, {value:,}",
                         "remove the let to use the data's value, or rename it")
            continue
        if value is None:
            if name in wanted:
                _missing(ctx, name, "vocab_size comes from text columns: csv(..., text=\"column\")"
                         if name == "vocab_size" else "the targets are not class labels")
            continue
        ctx.consts[name] = value


def run_constants(spec_file: str) -> dict[str, Any]:
    """The data constants a run folder recorded (its run.json), for its spec.net: summary,
    diagram and export of a run need no data."""
    import json
    import os

    if os.path.basename(spec_file) != "spec.net":
        return {}
    try:
        with open(os.path.join(os.path.dirname(spec_file), "run.json"), encoding="utf-8") as f:
            saved = json.load(f).get("data_constants") or {}
    except (OSError, ValueError, AttributeError):
        return {}
    return {k: v for k, v in saved.items() if k in DATA_CONSTANTS and isinstance(v, int) and not isinstance(v, bool)}


def _missing(ctx: CheckContext, name: str, why: str) -> None:
    ctx.err(ctx.data.train.span if ctx.data is not None and ctx.data.train is not None else
            (ctx.model_syntax.span if ctx.model_syntax is not None else ir.NO_SPAN),
            f"`{name}` is not defined by this data: {why}", f"{cat.DATA_CONSTANTS[name]}")
    ctx.consts[name] = FAILED


def text_facts(data: ir.DataConfig, seed: int, classes: bool) -> TextFacts:
    """The training split's texts, tokenized as training will tokenize them (data/text.py)."""
    import numpy as np

    from netspec.data.encode import class_codes, empty_vocabulary, text_problems
    from netspec.data.prepare import csv_training_rows
    from netspec.data.sources import read_csv
    from netspec.data.text import TokenizerSettings, learn_vocabulary, special_tokens, text_cells
    from netspec.errors import data_error

    src = data.train
    assert src is not None and data.tokenizer is not None
    table = read_csv(src.get("path"), src.get("delimiter") or ",")
    names = list(src.get("text"))
    for name in names:
        if name not in table.columns:
            from netspec.errors import did_you_mean

            raise data_error(f"{table.path}: no column {name!r}",
                             did_you_mean(name, table.header) or "columns: " + ", ".join(table.header),
                             span=src.span_of("text"))
    rows = csv_training_rows(table, data, seed)
    text_problems(table, names, rows, "training data", src.span_of("text"))
    settings = TokenizerSettings.from_call(data.tokenizer.name, dict(data.tokenizer.kwargs))
    vocab = learn_vocabulary(text_cells(table, names, rows), settings)
    if vocab.vocab_size <= len(special_tokens(len(names))):
        raise empty_vocabulary(settings, len(rows), data.tokenizer.span)
    count = None
    target = (src.get("target") or ("",))[0]
    if classes and target in table.columns:
        count = len(data.labels) if data.labels else len(np.unique(class_codes(
            [table.columns[target][i] for i in rows], None)))
    line = table.lines[int(rows[vocab.longest_index])] if len(rows) else 0
    return TextFacts(vocab.vocab_size, data.max_len or max(1, vocab.longest), vocab.longest, line, str(table.path),
                     count)


def count_classes(data: ir.DataConfig, seed: int) -> int | None:
    """Classes in the training split of a non-text source: its own class list (MNIST's digits,
    an image folder's subfolders) or the distinct labels of its training rows."""
    import numpy as np

    from netspec.data.encode import class_codes
    from netspec.data.prepare import csv_training_rows, source_rows, split_rows
    from netspec.data.sources import ReadOptions, read_csv, read_source
    from netspec.errors import data_error

    src = data.train
    assert src is not None
    if data.labels:
        return len(data.labels)
    if src.kind == "csv":
        table = read_csv(src.get("path"), src.get("delimiter") or ",")
        target = (src.get("target") or ("",))[0]
        if target not in table.columns:
            raise data_error(f"{table.path}: no column {target!r}", span=src.span_of("target"))
        rows = csv_training_rows(table, data, seed)
        return len(np.unique(class_codes([table.columns[target][i] for i in rows], None)))
    if src.kind == "table":
        return None
    raw = read_source(src, ReadOptions(peek=True, seed=seed, allow_download=False, image_size=(1, 1), channels=1))
    if raw is None:
        raise data_error(f"{src.kind}(...): the data set is not here to count its classes",
                         "get it first (make data), or write the number")
    if raw.classes is not None:
        return len(raw.classes)
    if raw.y is None or np.asarray(raw.y).ndim != 1:
        return None
    y = np.asarray(raw.y)
    rows = split_rows(source_rows(data, len(y), seed), data, seed, y.astype(np.int64) if data.stratify else None)[0]
    return len(np.unique(y[rows]))


# ---------------------------------------------------------------- the model against its texts


def text_model_pass(ctx: CheckContext) -> None:
    data = ctx.data
    model = ctx.model
    if model is None or not ctx.model_clean or data is None or data.train is None or \
            data.train.kind != "csv" or not data.train.get("text"):
        return
    text_span = data.train.span_of("text")
    if tuple(model.input_shape) != (None,):
        setting = next((s for s in ctx.model_syntax.settings if s.key == "input"), None) if ctx.model_syntax else None
        ctx.err(setting.value.span if setting is not None else model.span,
                f"the model reads text columns, token ids of any length, but its input is "
                f"{cat.fmt_shape(model.input_shape)}", "write `input: [_]`",
                notes=[Diagnostic("text columns named here", text_span, "note")])
        return
    first = ir.first_layer(model)
    if first is None or not cat.LAYERS[first.type].int_input:
        ctx.err(first.span if first is not None else model.span,
                "the model reads text columns: its first layer takes token ids, an Embedding",
                "begin with e.g. `embed: Embedding(vocab_size, 64)`")
        return
    ctx.model = model = replace(model, padded=True)
    plan = padding_plan(model)
    for layer, why in plan.mixing:
        ctx.warn(layer.span, why, "pool with Mean(1), Max(1) or Last, and mix steps with attention or "
                 "RNN/LSTM/GRU: those skip padding")
    facts = ctx.text
    if facts is None:
        return
    rows = int(dict(first.kwargs)["num_embeddings"])
    if rows < facts.vocab_size:
        ctx.err(first.span, f"{first.type}({rows}, ...) has {rows:,} rows, but the tokenizer's vocabulary has "
                f"{facts.vocab_size:,} tokens (padding and unknown included): token ids up to "
                f"{facts.vocab_size - 1:,} would not fit", "write Embedding(vocab_size, ...)")
    for _, node in ir.walk(model.root):
        if isinstance(node, ir.LayerNode) and node.type == "PositionalEmbedding":
            positions = int(dict(node.kwargs)["max_len"])
            if positions < facts.max_len:
                given = data.max_len is not None
                ctx.err(node.span, f"PositionalEmbedding({positions}) holds {positions} positions, but texts have up "
                        f"to {facts.max_len:,} tokens (" + ("`max_len`" if given else
                        f"the longest training text, {facts.file}:{facts.longest_line}") + ")",
                        f"cut the texts with `max_len: {positions}` in data, or give PositionalEmbedding "
                        f"{facts.max_len} positions")
    batch_memory(ctx, model, facts)


def batch_memory(ctx: CheckContext, model: ir.CheckedModel, facts: TextFacts) -> None:
    """A training batch of the longest texts must fit in memory (activations, kept for the
    backward pass, estimated from the layers' output shapes)."""
    from netspec.train.resources import available_bytes, gib

    data = ctx.data
    assert data is not None and data.train is not None
    steps = facts.max_len
    per_text = 0
    for _, node in ir.walk(model.root):
        if not isinstance(node, ir.LayerNode):
            continue
        per_text += math.prod(steps if d is None else d for d in node.out_shape) * 4
        if node.type in ("MultiheadAttention", "TransformerEncoderLayer"):
            heads = dict(node.kwargs).get("num_heads") or dict(node.kwargs).get("nhead") or 1
            per_text += 2 * int(heads) * steps * steps * 4  # scores and weights
    batch = data.batch_size or 1
    need = 2 * per_text * batch  # activations and their gradients
    have = available_bytes("cpu")
    if have is None or need <= have * 0.5:
        return
    ctx.err(data.train.span_of("text"), f"a training batch of {batch} texts of {steps:,} tokens needs about {gib(need)} for the model's "
            f"activations, more than the {gib(have)} available (the longest training text, {facts.file}:"
            f"{facts.longest_line}, has {facts.longest:,} tokens)",
            "cut the texts with e.g. `max_len: 512` in data, or lower batch_size")
