"""The data tables: where samples come from (`data: train: ...` sources), how training
batches are augmented, and what the `table(...)` expression language may call.

In: the row types (types.py). Out: `SOURCES_LIST`/`SOURCES`, `TOKENIZERS_LIST`/`TOKENIZERS`, `AUGMENTS_LIST`/`AUGMENTS`,
`TABLE_FUNCTIONS` and `CONSTANTS`, read by the checker, netspec/data/, the expression
evaluator (syntax/expr.py), eject and the docs. Imports no torch.
"""

from __future__ import annotations

import math

from netspec.catalogue.types import IT, AugmentSpec, P, SourceSpec, TokenizerSpec

# ------------------------------------------------------------------ data sources

SOURCES_LIST = [
    SourceSpec("mnist", (P("split", "choice(train,test)", "train"), P("root", "str?", None)), "MNIST digits (IDX files).",
               paths=("root",)),
    SourceSpec("fashion_mnist", (P("split", "choice(train,test)", "train"), P("root", "str?", None)),
               "Fashion-MNIST (IDX files).", paths=("root",)),
    SourceSpec("idx", (P("images", "str"), P("labels", "str")), "any IDX image/label pair (raw or .gz).",
               paths=("images", "labels")),
    SourceSpec("csv", (P("path", "str"), P("target", "str|strs"), P("features", "strs?", None),
                       P("categorical", "strs", ()), P("delimiter", "str", ","), P("text", "str|strs?", None)),
               "CSV with a header row: numeric columns, `categorical` ones one-hot encoded; `text` columns "
               "tokenized (the model takes their token ids).", paths=("path",)),
    SourceSpec("image_folder", (P("path", "str"),),
               "one subfolder per class of PNG/JPEG/BMP/WebP images (class = folder name, sorted).", paths=("path",)),
    SourceSpec("npy", (P("x", "str"), P("y", "str?", None)), "NumPy .npy arrays (memory-mapped).", paths=("x", "y")),
    SourceSpec("npz", (P("path", "str"), P("x", "str", "x"), P("y", "str?", "y")),
               "a NumPy .npz archive: arrays named `x` and `y` (memory-mapped when stored uncompressed).",
               paths=("path",)),
    SourceSpec("table", (P("x", "any"), P("y", "any")), "data written in the spec, with netspec expressions.",
               raw=("x", "y")),
]
SOURCES = {row.name: row for row in SOURCES_LIST}

# ------------------------------------------------------------------ tokenizers (text columns)

_LOWER = P("lowercase", "bool", True)
_MIN_FREQ = P("min_freq", "int", 1, domain="[1,inf)")
TOKENIZERS_LIST = [
    TokenizerSpec("words", (_LOWER, _MIN_FREQ, P("max_size", "int?", None, domain="[3,inf)")),
                  "one token per word (split at whitespace and punctuation); words seen fewer than `min_freq` "
                  "times in training, or beyond the `max_size` most frequent, are unknown."),
    TokenizerSpec("chars", (_LOWER, _MIN_FREQ, P("max_size", "int?", None, domain="[3,inf)")),
                  "one token per character, spaces included."),
    TokenizerSpec("bpe", (P("vocab_size", "int", 8000, domain="[3,inf)"), _LOWER, P("min_freq", "int", 2, domain="[1,inf)")),
                  "byte-pair encoding: characters merged into frequent pieces within words, up to `vocab_size` "
                  "tokens (a rare word is several pieces, not unknown)."),
]
TOKENIZERS = {row.name: row for row in TOKENIZERS_LIST}

# ------------------------------------------------------------------ augmentation

_PAIR = "float|floats"
_FILL = P("fill", "float", 0.0, domain="[0,1]")
_INTERP = "choice(nearest,bilinear)"
AUGMENTS_LIST = [
    AugmentSpec("RandomCrop", (P("size", IT, domain="[1,inf)"), P("padding", IT, 0, domain="[0,inf)"), _FILL,
                               P("padding_mode", "choice(constant,edge,reflect)", "constant")),
                "pad (optional), then crop `size` at a random position."),
    AugmentSpec("RandomHorizontalFlip", (P("p", "float", 0.5, domain="[0,1]"),), "mirror left-right with probability p."),
    AugmentSpec("RandomVerticalFlip", (P("p", "float", 0.5, domain="[0,1]"),), "mirror top-bottom with probability p."),
    AugmentSpec("RandomRotation", (P("degrees", _PAIR, domain="(-inf,inf)"), P("interpolation", _INTERP, "nearest"), _FILL),
                "rotate by an angle drawn from [-degrees, degrees] (or [a, b]) about the centre."),
    AugmentSpec("RandomAffine", (P("degrees", _PAIR, domain="(-inf,inf)"), P("translate", "floats?", None, domain="[0,1]"),
                                 P("scale", "floats?", None, domain="(0,inf)"), P("shear", "float|floats?", None),
                                 P("interpolation", _INTERP, "nearest"), _FILL),
                "random rotation, translation (fractions of width, height), scale and shear."),
    AugmentSpec("RandomResizedCrop", (P("size", IT, domain="[1,inf)"), P("scale", "floats", (0.08, 1.0), domain="(0,1]"),
                                      P("ratio", "floats", (0.75, 1.3333), domain="(0,inf)"),
                                      P("interpolation", _INTERP, "bilinear")),
                "crop a random area (fraction `scale`, aspect `ratio`) and resize it to `size`."),
    AugmentSpec("ColorJitter", (P("brightness", _PAIR, 0.0, domain="[0,inf)"), P("contrast", _PAIR, 0.0, domain="[0,inf)"),
                                P("saturation", _PAIR, 0.0, domain="[0,inf)"), P("hue", _PAIR, 0.0, domain="[-0.5,0.5]")),
                "random brightness, contrast, saturation and hue factors."),
    AugmentSpec("RandomErasing", (P("p", "float", 0.5, domain="[0,1]"), P("scale", "floats", (0.02, 0.33), domain="(0,1]"),
                                  P("ratio", "floats", (0.3, 3.3), domain="(0,inf)"), P("value", "float", 0.0)),
                "erase a random rectangle (area fraction `scale`, aspect `ratio`) with `value`."),
]
AUGMENTS = {row.name: row for row in AUGMENTS_LIST}

# ------------------------------------------------------------------ table(...) expressions

# names that can be `call`ed in the `table(...)` expression language
TABLE_FUNCTIONS = ("linspace", "arange", "normal", "uniform", "sin", "cos", "tan", "exp", "log", "sqrt", "abs",
                   "tanh", "sigmoid", "range", "zeros", "ones", "stack", "concat", "reshape", "round", "floor",
                   "randint", "sum", "mean", "cumsum", "flip", "min", "max")
CONSTANTS = {"pi": math.pi, "e": math.e}
# names the data define, known at check time wherever the model needs a value
DATA_CONSTANTS = {
    "vocab_size": "the tokenizer's vocabulary size, padding and unknown tokens included (text columns)",
    "num_classes": "the number of classes in the training split",
}
