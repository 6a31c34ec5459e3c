"""Checker, part 4: checks across sections (model x loss x metrics x data).

In: the checked model and the typed data/train configs. Out: errors and lints such as
CrossEntropyLoss after Softmax, a class loss on a model that does not output [classes],
value metrics on a classifier, a data set whose samples or classes do not fit the model.
"""

from __future__ import annotations

import math

from netspec import catalogue as cat
from netspec import ir
from netspec.catalogue import fmt_shape
from netspec.checker.context import CheckContext, head
from netspec.data.datasets import DATASETS

VALUE_LOSSES = ("MSELoss", "L1Loss", "SmoothL1Loss", "HuberLoss")


class CrossChecker:
    """A pass over one ``CheckContext``: it reports through the context and reads its
    constants and blocks; it holds only its own bookkeeping."""

    def __init__(self, ctx: CheckContext):
        self.ctx = ctx

    def cross_checks(self, model: ir.CheckedModel, data: ir.DataConfig | None, train: ir.TrainConfig) -> None:
        layers = ir.layers(model.root)
        last = ir.last_layer(model.root)
        out = model.output_shape
        loss = train.loss.name
        loss_span = train.loss.span or train.span
        last_type = last.type if last else None
        where = last.span if last else model.span
        if loss == "CrossEntropyLoss" and last_type in ("Softmax", "LogSoftmax"):
            self.ctx.warn(where, f"CrossEntropyLoss after {last_type}: CrossEntropyLoss applies log-softmax itself",
                      f"remove the {last_type} layer and train on logits")
        if loss == "NLLLoss" and last_type != "LogSoftmax":
            self.ctx.warn(loss_span, "NLLLoss expects log-probabilities, but the model does not end in LogSoftmax",
                      "add LogSoftmax as the last layer, or use CrossEntropyLoss on logits")
        if loss == "BCELoss" and last_type != "Sigmoid":
            self.ctx.warn(loss_span, "BCELoss expects probabilities, but the model does not end in Sigmoid",
                      "add Sigmoid as the last layer, or use BCEWithLogitsLoss")
        if loss == "BCEWithLogitsLoss" and last_type == "Sigmoid":
            self.ctx.warn(where, "BCEWithLogitsLoss after Sigmoid applies the sigmoid twice", "remove the Sigmoid layer")
        spec_loss = cat.LOSSES.get(loss)
        autoencoder = data is not None and data.target == "input"
        if spec_loss is not None and spec_loss.target == "class" and train.span and len(out) != 1 and not autoencoder:
            self.ctx.err(where, f"{loss} needs the model to output [classes], but it outputs {fmt_shape(out)}",
                     self.class_output_help(model, layers))
        one_hot = data is not None and data.one_hot
        value_targets = data is not None and data.target_type == "value"
        if data is not None and data.normalize_target not in (None, "none") and spec_loss is not None and \
                (autoencoder or one_hot or (spec_loss.target != "value" and not value_targets)):
            what = "the targets are the inputs (`target: input`)" if autoencoder else \
                "`one_hot` makes the targets class rows" if one_hot else f"{loss} trains on class labels"
            self.ctx.err(data.normalize_target_span or data.span, f"normalize_target scales regression targets, "
                         f"but {what}", "remove `normalize_target:`")
        if data is not None and data.target_type == "value" and spec_loss is not None and spec_loss.target == "class":
            self.ctx.err(loss_span, f"{loss} trains on class labels, but `target_type: value` makes the targets numbers",
                     "use MSELoss (or another value loss) for regression, or drop `target_type: value`")
        facts = cat.TargetFacts(
            "input" if autoencoder else "value" if value_targets and spec_loss is not None else
            spec_loss.target if spec_loss is not None else "value", one_hot, tuple(out),
            classes=len(DATASETS[data.train.kind].labels) if data is not None and data.train is not None
            and data.train.kind in DATASETS and not autoencoder else None,
            described="values (`target_type: value`)" if value_targets else None)
        for m in train.metrics:
            problem = cat.metric_problem(m.name, int(m.get("k", 5)), loss, dict(train.loss.kwargs), facts) \
                if spec_loss is not None and spec_loss.target != "unsupported" else None
            if problem is not None:
                self.ctx.err(m.span, *problem)
            elif m.name == "top_k" and out and out[-1] is not None and int(m.get("k", 5)) > out[-1]:
                self.ctx.err(m.span, f"top_k({m.get('k')}) needs at least {m.get('k')} classes; the model outputs "
                         f"{fmt_shape(out)}")
        if data is None or data.train is None:
            return
        kind = data.train.kind
        if kind in DATASETS and model.input_shape and None not in model.input_shape:
            want = DATASETS[kind].sample_shape
            if _elements(model.input_shape) != _elements(want):
                self.ctx.err(head(model.span, 5),
                         f"{kind} samples are {fmt_shape(want)} ({math.prod(want)} values) but the model input is "
                         f"{fmt_shape(model.input_shape)}", f"set `input: {fmt_shape(want)}` or `input: [{math.prod(want)}]`")
        classes = len(DATASETS[kind].labels) if kind in DATASETS else None
        if classes and spec_loss is not None and spec_loss.target == "class" and out and out[-1] is not None \
                and not autoencoder and out != (classes,):
            message = f"the model outputs {fmt_shape(out)} but {kind} has {classes} classes"
            fix = f"make the last layer produce {classes} values, e.g. Linear({classes})"
            width = out[0] if len(out) == 1 else None
            if width is not None and width > classes and not one_hot:  # unused outputs: torch trains it
                self.ctx.warn(where, f"{message}; outputs {classes} to {width - 1} are never a target", fix)
            else:
                self.ctx.err(where, message, fix)

    @staticmethod
    def class_output_help(model: ir.CheckedModel, layers: list[ir.LayerNode]) -> str:
        out = model.output_shape
        if any(cat.LAYERS[x.type].category == "recurrent" for x in layers):
            return "add Last after the recurrent layer (or Mean(1)) so each sample gives one row of class scores"
        if len(out) > 1 and not any(x.type == "Flatten" for x in layers):
            return "insert Flatten before the last Linear, so each sample gives one row of class scores"
        return "make each sample produce one row of class scores, e.g. end with Flatten and Linear(classes)"


def _elements(shape: ir.Shape) -> int:
    return math.prod(int(d or 0) for d in shape)
