"""The training tables: losses, optimizers, LR schedulers, initialisers, metrics and early
stopping, each row complete where it is written.

In: the row types (types.py). Out: `LOSSES_LIST`/`LOSSES`, `OPTIMIZERS_LIST`/`OPTIMIZERS`,
`SCHEDULERS_LIST`/`SCHEDULERS`, `INITIALISERS_LIST`/`INITIALISERS`, `METRICS_LIST`/`METRICS`,
`EARLY_STOPPING` (its parameters), `ARG_DOMAINS` and `lower_is_better`, read by the checker,
the trainer, eject and the docs. Imports no torch: factories are dotted names.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from netspec.catalogue.types import (
    InitSpec,
    LossSpec,
    MetricSpec,
    OptimizerSpec,
    P,
    SchedulerSpec,
    with_domains,
)

NONNEG = "[0,inf)"
POS = "(0,inf)"

# Domains by convention for the training objects (as NAME_DOMAINS for layers): a parameter
# with one of these names takes values in this interval unless its row says otherwise.
ARG_DOMAINS = {
    "lr": NONNEG, "momentum": NONNEG, "weight_decay": NONNEG, "eps": NONNEG, "lr_decay": NONNEG,
    "initial_accumulator_value": NONNEG, "rho": "[0,1]", "step_sizes": NONNEG, "lambd": NONNEG, "t0": NONNEG,
    "max_iter": "[1,inf)", "max_eval": "[1,inf)", "tolerance_grad": NONNEG, "tolerance_change": NONNEG,
    "history_size": "[1,inf)", "momentum_decay": NONNEG,
    "step_size": "[1,inf)", "gamma": POS, "milestones": NONNEG, "total_iters": "[1,inf)",
    "start_factor": "(0,1]", "end_factor": "[0,1]", "T_max": "[1,inf)", "T_0": "[1,inf)", "T_mult": "[1,inf)",
    "eta_min": NONNEG, "base_lr": NONNEG, "max_lr": NONNEG, "step_size_up": "[1,inf)", "step_size_down": "[1,inf)",
    "pct_start": "[0,1]", "div_factor": POS, "final_div_factor": POS, "patience": NONNEG, "threshold": NONNEG,
    "cooldown": NONNEG, "min_lr": NONNEG, "total_steps": "[1,inf)",
    "label_smoothing": "[0,1]", "beta": NONNEG, "delta": POS, "pos_weight": NONNEG,
    "std": NONNEG, "min_delta": NONNEG, "k": "[1,inf)",
}


def _args(params: tuple[P, ...]) -> tuple[P, ...]:
    """`params` with ARG_DOMAINS' interval on each one written without a domain of its own."""
    return with_domains(params, ARG_DOMAINS)


# One row helper per kind: the row as written, its parameters through `_args`.
def _loss(name: str, params: tuple[P, ...], *rest: Any, **kw: Any) -> LossSpec:
    return LossSpec(name, _args(params), *rest, **kw)


def _optimizer(name: str, params: tuple[P, ...], *rest: Any, **kw: Any) -> OptimizerSpec:
    return OptimizerSpec(name, _args(params), *rest, **kw)


def _scheduler(name: str, params: tuple[P, ...], *rest: Any, **kw: Any) -> SchedulerSpec:
    return SchedulerSpec(name, _args(params), *rest, **kw)


def _init(name: str, function: str, params: tuple[P, ...], *rest: Any, **kw: Any) -> InitSpec:
    return InitSpec(name, function, _args(params), *rest, **kw)


def _metric(name: str, params: tuple[P, ...], *rest: Any, **kw: Any) -> MetricSpec:
    return MetricSpec(name, _args(params), *rest, **kw)


# ------------------------------------------------------------------ losses

RED = P("reduction", "choice(mean,sum,none)", "mean")
WEIGHT = P("weight", "floats?", None, domain="[0,inf)")

LOSSES_LIST = [
    _loss("L1Loss", (RED,), "value", "mean absolute error."),
    _loss("MSELoss", (RED,), "value", "mean squared error."),
    _loss("SmoothL1Loss", (RED, P("beta", "float", 1.0)), "value", "smooth L1."),
    _loss("HuberLoss", (RED, P("delta", "float", 1.0)), "value", "Huber loss."),
    _loss("CrossEntropyLoss", (WEIGHT, P("ignore_index", "int", -100), RED, P("label_smoothing", "float", 0.0)),
          "class", "softmax cross-entropy on logits; targets are class indices.", "logits"),
    _loss("NLLLoss", (WEIGHT, P("ignore_index", "int", -100), RED), "class",
          "negative log-likelihood on log-probabilities (after LogSoftmax).", "log_probs"),
    _loss("BCELoss", (WEIGHT, RED), "binary", "binary cross-entropy on probabilities (after Sigmoid).", "probs"),
    _loss("BCEWithLogitsLoss", (WEIGHT, RED, P("pos_weight", "floats?", None)), "binary",
          "binary cross-entropy on logits.", "logits"),
    _loss("KLDivLoss", (RED, P("log_target", "bool", False)), "value",
          "KL divergence; input log-probabilities, target probabilities (use one_hot).", "log_probs"),
    _loss("PoissonNLLLoss", (P("log_input", "bool", True), P("full", "bool", False), P("eps", "float", 1e-8), RED),
          "value", "Poisson negative log-likelihood.", "log_rates"),
    _loss("HingeEmbeddingLoss", (P("margin", "float", 1.0), RED), "value", "hinge loss for targets of 1/-1.",
          "distances"),
    _loss("SoftMarginLoss", (RED,), "value", "logistic loss for targets of 1/-1.", "logits"),
    _loss("MultiMarginLoss", (P("p", "int", 1), P("margin", "float", 1.0), WEIGHT, RED), "class",
          "multi-class hinge loss on class indices.", "scores"),
    _loss("MultiLabelSoftMarginLoss", (WEIGHT, RED), "binary", "multi-label one-vs-all loss.", "logits"),
    _loss("GaussianNLLLoss", (P("full", "bool", False), P("eps", "float", 1e-6), RED), "unsupported",
          "needs a variance input beside the prediction."),
    _loss("CosineEmbeddingLoss", (P("margin", "float", 0.0), RED), "unsupported", "needs two inputs and a target."),
    _loss("MarginRankingLoss", (P("margin", "float", 0.0), RED), "unsupported", "needs two inputs and a target."),
    _loss("TripletMarginLoss", (P("margin", "float", 1.0), P("p", "float", 2.0), RED), "unsupported",
          "needs anchor, positive and negative inputs."),
    _loss("CTCLoss", (P("blank", "int", 0), RED, P("zero_infinity", "bool", False)), "unsupported",
          "needs input and target lengths."),
]
LOSSES = {row.name: row for row in LOSSES_LIST}

# ------------------------------------------------------------------ optimizers

LR = P("lr", "float", 1e-3, domain=NONNEG)
WD = P("weight_decay", "float", 0.0, domain=NONNEG)
MAX = P("maximize", "bool", False)
BETAS = P("betas", "floats", (0.9, 0.999), domain="[0,1)")
FOREACH = P("foreach", "bool?", None)
FUSED = P("fused", "bool?", None)

OPTIMIZERS_LIST = [
    _optimizer("SGD", (LR, P("momentum", "float", 0.0), P("dampening", "float", 0.0), WD,
                       P("nesterov", "bool", False), MAX, FOREACH, FUSED), doc="stochastic gradient descent.", fused=True),
    _optimizer("Adam", (LR, BETAS, P("eps", "float", 1e-8), WD, P("amsgrad", "bool", False), MAX, FOREACH, FUSED),
               doc="Adam.", fused=True),
    _optimizer("AdamW", (LR, BETAS, P("eps", "float", 1e-8), P("weight_decay", "float", 1e-2),
                         P("amsgrad", "bool", False), MAX, FOREACH, FUSED), doc="Adam with decoupled weight decay.",
               fused=True),
    _optimizer("Adadelta", (P("lr", "float", 1.0), P("rho", "float", 0.9), P("eps", "float", 1e-6), WD, MAX), doc="Adadelta."),
    _optimizer("Adagrad", (P("lr", "float", 1e-2), P("lr_decay", "float", 0.0), WD,
                           P("initial_accumulator_value", "float", 0.0), P("eps", "float", 1e-10), MAX, FOREACH, FUSED),
               doc="Adagrad.", fused=True),
    _optimizer("Adamax", (P("lr", "float", 2e-3), BETAS, P("eps", "float", 1e-8), WD, MAX), doc="Adamax."),
    _optimizer("NAdam", (P("lr", "float", 2e-3), BETAS, P("eps", "float", 1e-8), WD,
                         P("momentum_decay", "float", 4e-3), P("decoupled_weight_decay", "bool", False), MAX), doc="Nesterov Adam."),
    _optimizer("RAdam", (LR, BETAS, P("eps", "float", 1e-8), WD, P("decoupled_weight_decay", "bool", False), MAX),
               doc="rectified Adam."),
    _optimizer("RMSprop", (P("lr", "float", 1e-2), P("alpha", "float", 0.99), P("eps", "float", 1e-8), WD,
                           P("momentum", "float", 0.0), P("centered", "bool", False), MAX), doc="RMSprop."),
    _optimizer("Rprop", (P("lr", "float", 1e-2), P("etas", "floats", (0.5, 1.2)), P("step_sizes", "floats", (1e-6, 50.0)), MAX),
               doc="resilient backpropagation (full-batch)."),
    _optimizer("ASGD", (P("lr", "float", 1e-2), P("lambd", "float", 1e-4), P("alpha", "float", 0.75),
                        P("t0", "float", 1e6), WD, MAX), doc="averaged SGD."),
    _optimizer("LBFGS", (P("lr", "float", 1.0), P("max_iter", "int", 20), P("max_eval", "int?", None),
                         P("tolerance_grad", "float", 1e-7), P("tolerance_change", "float", 1e-9),
                         P("history_size", "int", 100), P("line_search_fn", "choice(strong_wolfe)?", None)),
               closure=True, doc="L-BFGS (step with a closure; best full-batch)."),
]
OPTIMIZERS = {row.name: row for row in OPTIMIZERS_LIST}

# ------------------------------------------------------------------ LR schedulers

SCHEDULERS_LIST = [
    _scheduler("StepLR", (P("step_size", "int"), P("gamma", "float", 0.1)), doc="decay by gamma every step_size epochs."),
    _scheduler("MultiStepLR", (P("milestones", "ints"), P("gamma", "float", 0.1)), doc="decay at milestone epochs."),
    _scheduler("ConstantLR", (P("factor", "float", 1 / 3, domain="(0,1]"), P("total_iters", "int", 5)), doc="constant factor for a while."),
    _scheduler("LinearLR", (P("start_factor", "float", 1 / 3), P("end_factor", "float", 1.0), P("total_iters", "int", 5)),
               doc="linear warm-up/decay."),
    _scheduler("ExponentialLR", (P("gamma", "float"),), doc="decay by gamma every epoch."),
    _scheduler("PolynomialLR", (P("total_iters", "int", 5), P("power", "float", 1.0)), doc="polynomial decay."),
    _scheduler("CosineAnnealingLR", (P("T_max", "int"), P("eta_min", "float", 0.0)), doc="cosine annealing."),
    _scheduler("CosineAnnealingWarmRestarts", (P("T_0", "int"), P("T_mult", "int", 1), P("eta_min", "float", 0.0)),
               doc="cosine annealing with restarts."),
    _scheduler("CyclicLR", (P("base_lr", "float"), P("max_lr", "float"), P("step_size_up", "int", 2000),
                            P("step_size_down", "int?", None), P("mode", "choice(triangular,triangular2,exp_range)", "triangular"),
                            P("gamma", "float", 1.0), P("cycle_momentum", "bool", True)),
               "batch", doc="cyclical learning rate (steps every batch)."),
    _scheduler("OneCycleLR", (P("max_lr", "float"), P("total_steps", "int?", None), P("pct_start", "float", 0.3),
                              P("anneal_strategy", "choice(cos,linear)", "cos"), P("div_factor", "float", 25.0),
                              P("final_div_factor", "float", 1e4), P("three_phase", "bool", False)),
               "batch", doc="one-cycle policy (steps every batch; epochs and steps filled in)."),
    _scheduler("ReduceLROnPlateau", (P("mode", "choice(min,max)", "min"), P("factor", "float", 0.1, domain="[0,1)"),
                                     P("patience", "int", 10), P("threshold", "float", 1e-4),
                                     P("threshold_mode", "choice(rel,abs)", "rel"), P("cooldown", "int", 0),
                                     P("min_lr", "float", 0.0), P("eps", "float", 1e-8)),
               "plateau", doc="reduce when the validation loss stops improving."),
]
SCHEDULERS = {row.name: row for row in SCHEDULERS_LIST}

# ------------------------------------------------------------------ initialisers

INITIALISERS_LIST = [
    _init("zeros", "zeros_", (), doc="all zeros."),
    _init("ones", "ones_", (), doc="all ones."),
    _init("constant", "constant_", (P("val", "float"),), doc="a constant value."),
    _init("normal", "normal_", (P("mean", "float", 0.0), P("std", "float", 1.0)), doc="normal distribution."),
    _init("uniform", "uniform_", (P("a", "float", 0.0), P("b", "float", 1.0)), doc="uniform on [a, b)."),
    _init("trunc_normal", "trunc_normal_", (P("mean", "float", 0.0), P("std", "float", 1.0),
                                            P("a", "float", -2.0), P("b", "float", 2.0)), doc="truncated normal."),
    _init("xavier_uniform", "xavier_uniform_", (P("gain", "float", 1.0),), True, "Glorot uniform."),
    _init("xavier_normal", "xavier_normal_", (P("gain", "float", 1.0),), True, "Glorot normal."),
    _init("kaiming_uniform", "kaiming_uniform_", (P("a", "float", 0.0), P("mode", "choice(fan_in,fan_out)", "fan_in"),
                                                  P("nonlinearity", "choice(relu,leaky_relu,linear,tanh,sigmoid,selu)", "leaky_relu")),
          True, "He uniform."),
    _init("kaiming_normal", "kaiming_normal_", (P("a", "float", 0.0), P("mode", "choice(fan_in,fan_out)", "fan_in"),
                                                P("nonlinearity", "choice(relu,leaky_relu,linear,tanh,sigmoid,selu)", "leaky_relu")),
          True, "He normal."),
    _init("orthogonal", "orthogonal_", (P("gain", "float", 1.0),), True, "(semi-)orthogonal matrix."),
]
INITIALISERS = {row.name: row for row in INITIALISERS_LIST}

# ------------------------------------------------------------------ metrics

METRICS_LIST = [
    _metric("accuracy", (), "class", True, "fraction of correct top-1 predictions."),
    _metric("top_k", (P("k", "int", 5),), "class", True, "fraction with the target in the top k."),
    _metric("precision", (), "class", True, "precision, macro-averaged over classes (binary: of class 1)."),
    _metric("recall", (), "class", True, "recall, macro-averaged over classes (binary: of class 1)."),
    _metric("f1", (), "class", True, "F1 score, macro-averaged over classes (binary: of class 1)."),
    _metric("auc", (), "binary", True, "area under the ROC curve (two classes)."),
    _metric("mae", (), "value", False, "mean absolute error."),
    _metric("mse", (), "value", False, "mean squared error."),
    _metric("rmse", (), "value", False, "root mean squared error."),
    _metric("r2", (), "value", True, "coefficient of determination."),
]
METRICS = {row.name: row for row in METRICS_LIST}


# ------------------------------------------------------------------ which metric fits which loss and targets

OUTPUT_WORDS = {"logits": "logits (scores before a sigmoid or softmax)", "log_probs": "log-probabilities",
                "log_rates": "log-rates (log_input=true)", "distances": "distances", "scores": "class scores"}


def loss_outputs(loss: str, kwargs: dict) -> str:
    """What the model's outputs are under `loss`: "" when they are in the targets' own units
    (a value loss, or BCELoss's probabilities against 0/1 or soft targets), else the row's `wants`."""
    if loss == "PoissonNLLLoss" and not kwargs.get("log_input", True):
        return ""
    wants = LOSSES[loss].wants if loss in LOSSES else ""
    return "" if wants == "probs" else wants


@dataclass(frozen=True)
class TargetFacts:
    """What one metric's meaning depends on: the targets as the loss takes them (`task`: class,
    binary, value or input), `one_hot`, the model output's shape, and, once the data are read,
    the class count or a description of value targets (`values`: their distinct values when
    there are at most two; `described`: e.g. "continuous (214 distinct values from 25 to 346)")."""

    task: str
    one_hot: bool
    output: tuple
    classes: int | None = None
    values: tuple | None = None
    described: str | None = None


def metric_problem(metric: str, k: int, loss: str, loss_kwargs: dict, facts: TargetFacts) -> tuple[str, str] | None:
    """(message, help) when `metric` would report a figure without meaning for this loss, its
    targets and the model's output width (docs/language.md, "Metrics"); None when it fits or
    when that depends on data not read yet (`facts.described` None)."""
    row = METRICS[metric]
    task, out = facts.task, facts.output
    width = out[-1] if out and out[-1] is not None else None
    outputs = loss_outputs(loss, loss_kwargs)
    name = f"top_k({k})" if metric == "top_k" else metric
    regression = "use mae, mse, rmse or r2 for regression"
    if row.task == "value":
        if task == "class":
            return (f"`{name}` compares values, but {loss} trains on class labels",
                    "use accuracy, top_k(k), precision, recall or f1 for classifiers")
        if outputs:
            fix = {"BCEWithLogitsLoss": "use BCELoss after a Sigmoid layer to compare probabilities, or accuracy/auc",
                   "PoissonNLLLoss": "set log_input=false (the model then outputs rates), or drop the metric"}
            return (f"`{name}` compares the outputs with the targets, but {loss}'s outputs are "
                    f"{OUTPUT_WORDS.get(outputs, outputs)}, not values in the targets' units",
                    fix.get(loss, "drop the metric, or use a loss whose outputs are the targets' values (MSELoss)"))
        return None
    if task == "input":
        return f"`{name}` counts correct classes, but the targets are values", regression
    ranked = task == "class" or facts.one_hot  # one score per class
    classes = facts.classes or (width if ranked else None)
    if metric == "top_k":
        if not ranked:
            what = "one yes/no output per label" if task == "binary" else "values"
            return (f"top_k ranks class scores, but {loss} gives {what}: top_k(k >= 2) would always be 1",
                    "use accuracy (or auc); top_k needs one output per class (CrossEntropyLoss)")
        if classes is not None and k >= classes:
            return (f"top_k({k}) of {classes} classes is always 1",
                    f"use a k below {classes}" + (f", e.g. top_k({min(5, classes - 1)})" if classes > 2 else
                                                 ", or accuracy"))
        return None
    if task == "value" and not facts.one_hot:
        if loss == "HingeEmbeddingLoss":
            return (f"`{name}` counts correct classes, but HingeEmbeddingLoss's outputs are distances",
                    "use SoftMarginLoss or BCEWithLogitsLoss for yes/no targets")
        if facts.described is None:
            return None
        binary = (-1.0, 1.0) if loss == "SoftMarginLoss" else (0.0, 1.0)
        if facts.values is None or not set(facts.values) <= set(binary):
            return (f"`{name}` counts correct classes, but the targets are {facts.described}",
                    f"{regression}; for classes use CrossEntropyLoss with one output per class")
        if tuple(out) != (1,):
            return (f"`{name}` thresholds one output per sample at {0 if loss == 'SoftMarginLoss' else 0.5}, but "
                    f"the model outputs [{', '.join(str(d) for d in out)}]",
                    "for several classes use CrossEntropyLoss (or `one_hot: true`) with one output per class")
    if metric == "auc":
        two = (task == "binary" and tuple(out) == (1,)) or (ranked and classes == 2) or             (task == "value" and not facts.one_hot and tuple(out) == (1,))
        if not two and (classes is not None or task == "binary"):
            what = f"the model outputs [{classes}] classes" if ranked else                 f"the model outputs [{', '.join(str(d) for d in out)}] yes/no labels"
            return (f"`auc` measures how well one score separates two classes, but {what}",
                    "use accuracy or f1 (macro over the classes)")
    return None


def lower_is_better(key: str) -> bool:
    """Whether a reported value (`loss`, `val_mae`, `test_accuracy`, ...) improves downwards."""
    base = key.removeprefix("val_").removeprefix("test_")
    return base in ("loss", "mae", "mse", "rmse")


# ------------------------------------------------------------------ early stopping

EARLY_STOPPING: tuple[P, ...] = _args((P("monitor", "str", "val_loss"), P("patience", "int", 3),
                                       P("min_delta", "float", 0.0), P("mode", "choice(auto,min,max)", "auto")))
