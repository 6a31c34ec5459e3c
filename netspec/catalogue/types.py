"""What a catalogue row is: the row dataclasses, the parameter type language and the
conventions every table is written in.

In: nothing (imports no torch, nor any other catalogue module).
Out: `P` (one constructor parameter), the row types (`LayerSpec`, `LossSpec`, `OptimizerSpec`,
`SchedulerSpec`, `InitSpec`, `MetricSpec`, `BranchSpec`, `AugmentSpec`, `TokenizerSpec`, `SourceSpec`,
`SettingSpec`), `REQUIRED`, `ShapeError`, `fmt_shape`, the type language (`type_ok`,
`describe_type`) and value domains (`in_domain`, `describe_domain`, `with_domains`).

Shapes are per sample: the batch axis is implicit; ``None`` is a dynamic `_` dimension.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, replace

Shape = tuple  # tuple[int | None, ...]
IT = "int|ints"  # a size given as one int or a tuple per spatial dim


class _Required:
    def __repr__(self) -> str:
        return "REQUIRED"


REQUIRED = _Required()


class ShapeError(Exception):
    """Raised by shape rules; the checker turns it into a positioned diagnostic."""

    def __init__(self, message: str, help: str | None = None):
        super().__init__(message)
        self.message = message
        self.help = help


# ------------------------------------------------------------------ rows


@dataclass(frozen=True)
class P:
    """One constructor parameter. `type` is a small type language, see `type_ok`;
    `domain` an interval every number in the value must lie in, see `in_domain`
    (`"[0,inf)"`, `"(0,1]"`): torch raises at construction time, netspec at check time."""

    name: str
    type: str
    default: object = REQUIRED
    inferred: bool = False  # supplied by shape inference; user may give it by keyword only
    domain: str = ""


@dataclass(frozen=True)
class LayerSpec:
    name: str
    factory: str  # dotted path of the torch (or netspec.layers) class
    params: tuple[P, ...]
    shape: Callable[[Shape, dict], Shape]
    expects: str = "any shape"  # the input it needs, in words, for messages
    ranks: tuple[int, ...] | None = None  # allowed per-sample ranks; None: any
    infer: Callable[[Shape, dict], dict] | None = None  # inferred params from input
    onnx: bool = True
    onnx_note: str = ""
    category: str = "other"
    fixed: tuple[tuple[str, object], ...] = ()  # constructor args netspec always passes
    int_input: bool = False  # consumes integer indices (Embedding)
    weights: Callable[[dict], list] | None = None  # [(parameter name, shape)] in torch's order
    examples: tuple[tuple[str, str], ...] = ()  # (input shape, layer text) for tests/docs
    doc: str = ""
    aliases: bool = False  # may return its input (or a view of it): a later in-place layer would change it
    onnx_lowering: str = ""  # netspec.layers factory of an exact exportable equivalent, swapped in at export
    advice: Callable[[Shape], tuple[str, str] | None] | None = None  # a warning (message, help) for an input
    # torch takes, but that is more often a mistake (Linear on [C, H, W]); errors are for what torch refuses
    # on padded texts ([steps, ...]): "each" computes every step on its own, "masked" takes the
    # padding mask (attention, RNNs, Mean/Max/Last), "dim" is per step unless its `dim` is the
    # steps; "" mixes steps in ways padding would change (check warns)
    steps: str = ""

    @property
    def user_params(self) -> tuple[P, ...]:
        return tuple(p for p in self.params if not p.inferred)


@dataclass(frozen=True)
class LossSpec:
    name: str
    params: tuple[P, ...]
    target: str  # class | value | binary | unsupported
    doc: str = ""
    wants: str = ""  # the activation it expects before it ("logits", "log_probs", "probs")

    @property
    def factory(self) -> str:
        return f"torch.nn.{self.name}"


@dataclass(frozen=True)
class OptimizerSpec:
    name: str
    params: tuple[P, ...]
    closure: bool = False  # step() needs a closure (LBFGS)
    doc: str = ""
    fused: bool = False  # has fused CPU/CUDA kernels: netspec uses them unless fused/foreach is given

    @property
    def factory(self) -> str:
        return f"torch.optim.{self.name}"


@dataclass(frozen=True)
class SchedulerSpec:
    name: str
    params: tuple[P, ...]
    interval: str = "epoch"  # epoch | batch | plateau
    doc: str = ""

    @property
    def factory(self) -> str:
        return f"torch.optim.lr_scheduler.{self.name}"


@dataclass(frozen=True)
class InitSpec:
    name: str
    function: str  # torch.nn.init function
    params: tuple[P, ...]
    matrix_only: bool = False  # needs a tensor with >= 2 dims (fan in/out)
    doc: str = ""


@dataclass(frozen=True)
class MetricSpec:
    name: str
    params: tuple[P, ...]
    task: str  # class | value
    higher_is_better: bool
    doc: str = ""


@dataclass(frozen=True)
class BranchSpec:
    """`add { ... }`, `concat(dim=N) { ... }`, `multiply { ... }`: every branch gets the same
    input; `combine` gives the output shape from the branches' shapes (raising ShapeError)."""

    name: str
    factory: str
    params: tuple[P, ...]
    combine: Callable[[list, dict], Shape]
    doc: str = ""


@dataclass(frozen=True)
class AugmentSpec:
    """One `augment: [...]` entry: torchvision's name and meaning, run by netspec/data/augment.py
    as batched tensor operations on training batches of images in [0, 1]."""

    name: str
    params: tuple[P, ...]
    doc: str = ""


@dataclass(frozen=True)
class TokenizerSpec:
    """One `tokenizer:` of a data section (words, chars, bpe): how text columns become token
    ids, run by netspec/data/text.py on Hugging Face `tokenizers`."""

    name: str
    params: tuple[P, ...]
    doc: str = ""


@dataclass(frozen=True)
class SourceSpec:
    name: str
    params: tuple[P, ...]
    doc: str = ""
    raw: tuple[str, ...] = ()  # params kept as expressions (evaluated by data.py)
    paths: tuple[str, ...] = ()  # params naming files or folders, relative to the spec's folder


@dataclass(frozen=True)
class SettingSpec:
    key: str
    type: str
    default: object
    doc: str
    domain: str = ""


# ------------------------------------------------------------------ type language


def type_ok(value: object, t: str) -> bool:
    """`int float bool str number ints floats any`, `a|b` unions, `choice(x,y)`, `?` = none ok."""
    if t.endswith("?"):
        return value is None or type_ok(value, t[:-1])
    if t.startswith("choice("):
        return isinstance(value, str) and value in t[7:-1].split(",")
    if "|" in t:
        return any(type_ok(value, part) for part in t.split("|"))
    if t == "any":
        return True
    if t == "int":
        return isinstance(value, int) and not isinstance(value, bool)
    if t == "float":
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if t == "bool":
        return isinstance(value, bool)
    if t == "str":
        return isinstance(value, str)
    if t == "ints":
        return isinstance(value, tuple) and all(type_ok(v, "int") for v in value)
    if t == "optints":
        return isinstance(value, tuple) and all(v is None or type_ok(v, "int") for v in value)
    if t == "floats":
        return isinstance(value, tuple) and all(type_ok(v, "float") for v in value)
    if t == "strs":
        return isinstance(value, tuple) and all(isinstance(v, str) for v in value)
    raise ValueError(f"unknown type {t}")


def describe_type(t: str) -> str:
    words = {
        "int": "an integer",
        "float": "a number",
        "bool": "true or false",
        "str": "a string",
        "ints": "a list of integers",
        "optints": "a list of integers (or none)",
        "floats": "a list of numbers",
        "strs": "a list of strings",
        "any": "a value",
    }
    if t.endswith("?"):
        return describe_type(t[:-1]) + " or none"
    if t.startswith("choice("):
        return "one of " + ", ".join(f'"{c}"' for c in t[7:-1].split(","))
    if "|" in t:
        return " or ".join(describe_type(p) for p in t.split("|"))
    return words.get(t, t)


def _interval(domain: str) -> tuple[float, float, bool, bool]:
    lo, hi = domain[1:-1].split(",")
    return float(lo), float(hi), domain[0] == "[", domain[-1] == "]"


def in_domain(value: object, domain: str) -> bool:
    """Every number in `value` (a number or a list) lies in the interval `domain`."""
    if not domain:
        return True
    lo, hi, lo_in, hi_in = _interval(domain)
    items = value if isinstance(value, tuple) else (value,)
    for v in items:
        if isinstance(v, bool) or not isinstance(v, (int, float)):
            continue
        if v != v or (v < lo or (v == lo and not lo_in)) or (v > hi or (v == hi and not hi_in)):
            return False
    return True


def describe_domain(domain: str) -> str:
    lo, hi, lo_in, hi_in = _interval(domain)

    def num(x: float) -> str:
        return str(int(x)) if x.is_integer() else repr(x)

    if math.isinf(hi):
        return f"{'at least' if lo_in else 'greater than'} {num(lo)}"
    return f"in {'[' if lo_in else '('}{num(lo)}, {num(hi)}{']' if hi_in else ')'}"


def with_domains(params: tuple[P, ...], domains: dict[str, str], keep: tuple[str, ...] = ()) -> tuple[P, ...]:
    """`params`, each one written without a domain of its own given its name's interval in
    `domains` (a table's convention), but those named in `keep`."""
    return tuple(p if p.domain or p.name not in domains or p.name in keep else replace(p, domain=domains[p.name])
                 for p in params)


# ------------------------------------------------------------------ shapes


def fmt_shape(s: Shape) -> str:
    return "[" + ", ".join("_" if d is None else str(d) for d in s) + "]"
