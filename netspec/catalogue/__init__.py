"""The one registry: layers, branch constructs, losses, optimizers, LR schedulers,
initialisers, metrics, data sources, augmentations and section keys, as rows by kind.

In: nothing (pure data plus small shape functions; imports no torch).
Out: tables read by the checker (argument schemas, shape rules), the builder (factories),
the exporter (ONNX support), `netspec layers`, docs/language.md and the parametrized tests;
callers write `from netspec import catalogue as cat; cat.LAYERS[name]`.

    types.py     what a row is: P, LayerSpec and the other row types, the type language, fmt_shape
    shapes.py    shape rules and the inference of constructor arguments from the input shape
    layers.py    LAYERS (one row per layer), BRANCHES, parameter_shapes
    onnx.py      needs_lowering, onnx_problem: what ONNX export makes of a layer
    training.py  LOSSES, OPTIMIZERS, SCHEDULERS, INITIALISERS, METRICS, EARLY_STOPPING
    data.py      SOURCES, TOKENIZERS, AUGMENTS, TABLE_FUNCTIONS, CONSTANTS, DATA_CONSTANTS
    sections.py  the keys of the data:, train:, export: and search: sections, search distributions

Adding a layer is one row in layers.py's LAYERS_LIST. Each table's lookup (`LAYERS`,
`LOSSES`, ...) is derived from its rows; no row is changed after it is written.
"""

from __future__ import annotations

from typing import Any

from netspec.catalogue.data import (
    AUGMENTS,
    AUGMENTS_LIST,
    CONSTANTS,
    DATA_CONSTANTS,
    SOURCES,
    SOURCES_LIST,
    TABLE_FUNCTIONS,
    TOKENIZERS,
    TOKENIZERS_LIST,
)
from netspec.catalogue.layers import BRANCHES, BRANCHES_LIST, LAYERS, LAYERS_LIST, NAME_DOMAINS, parameter_shapes
from netspec.catalogue.onnx import ONNX_LOWERINGS, needs_lowering, onnx_problem
from netspec.catalogue.sections import (
    DATA_SETTINGS,
    EXPORT_SETTINGS,
    LOGS,
    SEARCH_DISTRIBUTIONS,
    SEARCH_SETTINGS,
    SECTIONS,
    TRAIN_SETTINGS,
)
from netspec.catalogue.training import (
    ARG_DOMAINS,
    EARLY_STOPPING,
    INITIALISERS,
    INITIALISERS_LIST,
    LOSSES,
    LOSSES_LIST,
    METRICS,
    METRICS_LIST,
    OPTIMIZERS,
    OPTIMIZERS_LIST,
    OUTPUT_WORDS,
    SCHEDULERS,
    SCHEDULERS_LIST,
    TargetFacts,
    loss_outputs,
    lower_is_better,
    metric_problem,
)
from netspec.catalogue.types import (
    REQUIRED,
    AugmentSpec,
    BranchSpec,
    InitSpec,
    LayerSpec,
    LossSpec,
    MetricSpec,
    OptimizerSpec,
    P,
    SchedulerSpec,
    SettingSpec,
    Shape,
    ShapeError,
    SourceSpec,
    TokenizerSpec,
    describe_domain,
    describe_type,
    fmt_shape,
    in_domain,
    type_ok,
)

# every table by the word messages use for its kind ("unknown loss 'MSE'")
ALL_KINDS: dict[str, dict[str, Any]] = {
    "layer": LAYERS,
    "loss": LOSSES,
    "optimizer": OPTIMIZERS,
    "scheduler": SCHEDULERS,
    "initialiser": INITIALISERS,
    "metric": METRICS,
    "source": SOURCES,
    "branch construct": BRANCHES,
    "augmentation": AUGMENTS,
    "tokenizer": TOKENIZERS,
}

__all__ = [
    "ALL_KINDS", "ARG_DOMAINS", "AUGMENTS", "AUGMENTS_LIST", "BRANCHES", "BRANCHES_LIST", "CONSTANTS",
    "DATA_CONSTANTS", "TOKENIZERS", "TOKENIZERS_LIST", "TokenizerSpec",
    "DATA_SETTINGS", "EARLY_STOPPING", "EXPORT_SETTINGS", "INITIALISERS", "INITIALISERS_LIST", "LAYERS",
    "LAYERS_LIST", "LOGS", "LOSSES", "LOSSES_LIST", "METRICS", "METRICS_LIST", "NAME_DOMAINS", "ONNX_LOWERINGS",
    "OPTIMIZERS", "OPTIMIZERS_LIST", "REQUIRED", "SCHEDULERS", "SCHEDULERS_LIST", "SEARCH_DISTRIBUTIONS",
    "SEARCH_SETTINGS", "SECTIONS", "SOURCES",
    "SOURCES_LIST", "TABLE_FUNCTIONS", "TRAIN_SETTINGS", "AugmentSpec", "BranchSpec", "InitSpec", "LayerSpec",
    "LossSpec", "MetricSpec", "OptimizerSpec", "P", "SchedulerSpec", "SettingSpec", "Shape", "ShapeError",
    "SourceSpec", "describe_domain", "describe_type", "fmt_shape", "in_domain", "lower_is_better",
    "OUTPUT_WORDS", "TargetFacts", "loss_outputs", "metric_problem",
    "needs_lowering", "onnx_problem", "parameter_shapes", "type_ok",
]
