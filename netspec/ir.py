"""The intermediate representation: frozen dataclasses, every node with a source span, and
the walk over the checked tree (``children``, ``walk``, ``layers``, ``first_layer``,
``last_layer``, ``parameter_count``) that every back end uses instead of its own traversal.

In: built by ``parse.py`` (syntax tree: ``Spec`` and friends) and ``check.py``
(checked tree: ``CheckedSpec`` with resolved layers, shapes and configs).
Out: read by ``build.py``, ``data.py``, ``train.py``, ``export.py`` and the CLI.

Spans are excluded from equality, so IR built by hand in tests compares equal to parsed
IR. ``dump`` gives a stable text form (``netspec ir FILE``) for golden tests.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass, field, fields, is_dataclass
from typing import Any, Union

from netspec.errors import NO_SPAN, Span

# ---------------------------------------------------------------- expressions


@dataclass(frozen=True, slots=True)
class Num:
    value: int | float
    span: Span = field(default=NO_SPAN, compare=False, repr=False)


@dataclass(frozen=True, slots=True)
class Str:
    value: str
    span: Span = field(default=NO_SPAN, compare=False, repr=False)


@dataclass(frozen=True, slots=True)
class Bool:
    value: bool
    span: Span = field(default=NO_SPAN, compare=False, repr=False)


@dataclass(frozen=True, slots=True)
class NoneLit:
    span: Span = field(default=NO_SPAN, compare=False, repr=False)


@dataclass(frozen=True, slots=True)
class Ref:
    """A bare name: a constant, a block parameter, a layer type or a symbol (`full`)."""

    name: str
    span: Span = field(default=NO_SPAN, compare=False, repr=False)


@dataclass(frozen=True, slots=True)
class Kwarg:
    name: str
    value: Expr
    span: Span = field(default=NO_SPAN, compare=False, repr=False)


@dataclass(frozen=True, slots=True)
class Call:
    func: str
    args: tuple[Expr, ...] = ()
    kwargs: tuple[Kwarg, ...] = ()
    span: Span = field(default=NO_SPAN, compare=False, repr=False)
    name_span: Span = field(default=NO_SPAN, compare=False, repr=False)


@dataclass(frozen=True, slots=True)
class ListLit:
    items: tuple[Expr, ...]
    span: Span = field(default=NO_SPAN, compare=False, repr=False)


@dataclass(frozen=True, slots=True)
class TupleLit:
    items: tuple[Expr, ...]
    span: Span = field(default=NO_SPAN, compare=False, repr=False)


@dataclass(frozen=True, slots=True)
class BinOp:
    op: str  # + - * / // % **
    left: Expr
    right: Expr
    span: Span = field(default=NO_SPAN, compare=False, repr=False)


@dataclass(frozen=True, slots=True)
class UnaryOp:
    op: str  # - +
    operand: Expr
    span: Span = field(default=NO_SPAN, compare=False, repr=False)


@dataclass(frozen=True, slots=True)
class Index:
    """`value[index]`: an element of a list or shape (`in_shape[0]`, `sizes[-1]`)."""

    value: Expr
    index: Expr
    span: Span = field(default=NO_SPAN, compare=False, repr=False)


Expr = Union[Num, Str, Bool, NoneLit, Ref, Call, ListLit, TupleLit, BinOp, UnaryOp, Index]

# ---------------------------------------------------------------- spec structure


@dataclass(frozen=True, slots=True)
class Layer:
    """A layer or block use: `fc1: Linear(128) with weight=zeros`, or bare `ReLU`."""

    name: str | None
    expr: Expr
    inits: tuple[Kwarg, ...] = ()
    span: Span = field(default=NO_SPAN, compare=False, repr=False)


@dataclass(frozen=True, slots=True)
class Repeat:
    name: str | None
    count: Expr
    body: tuple[Entry, ...]
    span: Span = field(default=NO_SPAN, compare=False, repr=False)


@dataclass(frozen=True, slots=True)
class Residual:
    name: str | None
    body: tuple[Entry, ...]
    span: Span = field(default=NO_SPAN, compare=False, repr=False)


@dataclass(frozen=True, slots=True)
class Seq:
    """`{ ... }`: an inline sequence (a nested Sequential), alone or as a branch."""

    name: str | None
    body: tuple[Entry, ...]
    span: Span = field(default=NO_SPAN, compare=False, repr=False)


@dataclass(frozen=True, slots=True)
class Branches:
    """`add { ... }`, `concat(dim=2) { ... }`, `multiply { ... }`: each body entry is a branch
    fed the same input. `head` is the construct as written (a Ref or a Call), resolved
    against the catalogue's BRANCHES by the checker."""

    name: str | None
    head: Expr
    body: tuple[Entry, ...]
    span: Span = field(default=NO_SPAN, compare=False, repr=False)


@dataclass(frozen=True, slots=True)
class Setting:
    """`key: value` in a section, and `input:` / `init:` in a model."""

    key: str
    value: Expr
    span: Span = field(default=NO_SPAN, compare=False, repr=False)
    key_span: Span = field(default=NO_SPAN, compare=False, repr=False)


Entry = Union[Layer, Repeat, Residual, Seq, Branches, Setting]


@dataclass(frozen=True, slots=True)
class Param:
    name: str
    default: Expr | None = None
    span: Span = field(default=NO_SPAN, compare=False, repr=False)


@dataclass(frozen=True, slots=True)
class Block:
    name: str
    params: tuple[Param, ...]
    body: tuple[Entry, ...]
    span: Span = field(default=NO_SPAN, compare=False, repr=False)


@dataclass(frozen=True, slots=True)
class Model:
    name: str
    settings: tuple[Setting, ...]
    layers: tuple[Entry, ...]
    span: Span = field(default=NO_SPAN, compare=False, repr=False)


@dataclass(frozen=True, slots=True)
class Section:
    """`data { }`, `train { }`, `export { }` (or a misspelt name, reported by the checker)."""

    kind: str
    entries: tuple[Entry, ...]
    span: Span = field(default=NO_SPAN, compare=False, repr=False)


@dataclass(frozen=True, slots=True)
class Let:
    name: str
    value: Expr
    span: Span = field(default=NO_SPAN, compare=False, repr=False)


@dataclass(frozen=True, slots=True)
class Import:
    path: str
    span: Span = field(default=NO_SPAN, compare=False, repr=False)


@dataclass(frozen=True, slots=True)
class Spec:
    """One parsed file, items in source order; imports are resolved by the checker."""

    file: str
    items: tuple[Let | Import | Block | Model | Section, ...]
    span: Span = field(default=NO_SPAN, compare=False, repr=False)

    def of(self, kind: type) -> list:
        return [i for i in self.items if isinstance(i, kind)]


# ---------------------------------------------------------------- checked IR

Shape = tuple[Union[int, None], ...]  # per-sample shape; None is a dynamic `_` dimension
Value = Any  # int | float | str | bool | None | tuple | CallValue | Symbol (checked at run time)


@dataclass(frozen=True, slots=True)
class Symbol:
    """A bare word used as a value (`full`, `standard`, `auto`)."""

    name: str


@dataclass(frozen=True, slots=True)
class CallValue:
    """An evaluated call: `SGD(lr=0.01)`, `mnist(split="train")`, `top_k(5)`."""

    name: str
    kwargs: tuple[tuple[str, Value], ...] = ()
    span: Span = field(default=NO_SPAN, compare=False, repr=False)

    def get(self, key: str, default: Value = None) -> Value:
        return dict(self.kwargs).get(key, default)


@dataclass(frozen=True, slots=True)
class InitSpec:
    name: str
    kwargs: tuple[tuple[str, Value], ...] = ()
    span: Span = field(default=NO_SPAN, compare=False, repr=False)


@dataclass(frozen=True, slots=True)
class LayerNode:
    """A resolved catalogue layer with every constructor argument, inferred ones included."""

    name: str
    type: str
    kwargs: tuple[tuple[str, Value], ...]
    in_shape: Shape
    out_shape: Shape
    inits: tuple[tuple[str, InitSpec], ...] = ()
    span: Span = field(default=NO_SPAN, compare=False, repr=False)


@dataclass(frozen=True, slots=True)
class SeqNode:
    """A nested Sequential (block use, named repeat, `{ ... }`) or a residual `x + f(x)`."""

    name: str
    kind: str  # sequential | residual
    children: tuple[Node, ...]
    in_shape: Shape
    out_shape: Shape
    span: Span = field(default=NO_SPAN, compare=False, repr=False)


@dataclass(frozen=True, slots=True)
class BranchNode:
    """`add`/`concat`/`multiply`: every branch gets the input; outputs are combined.
    Each branch is a node named by the spec (or `branch1`, `branch2`, ...)."""

    name: str
    op: str  # a key of catalogue.BRANCHES
    kwargs: tuple[tuple[str, Value], ...]
    branches: tuple[Node, ...]
    in_shape: Shape
    out_shape: Shape
    span: Span = field(default=NO_SPAN, compare=False, repr=False)


Node = Union[LayerNode, SeqNode, BranchNode]


@dataclass(frozen=True, slots=True)
class CheckedModel:
    name: str
    input_shape: Shape
    root: SeqNode
    init: InitSpec | None = None
    span: Span = field(default=NO_SPAN, compare=False, repr=False)
    # the input is padded texts (token ids, 0 = padding): built as layers.MaskedSequential
    padded: bool = field(default=False, metadata={"dump": "unless default"})

    @property
    def output_shape(self) -> Shape:
        return self.root.out_shape


@dataclass(frozen=True, slots=True)
class Source:
    """A data source: `mnist(...)`, `idx(...)`, `csv(...)`, `table(...)`; table args stay Expr."""

    kind: str
    kwargs: tuple[tuple[str, Any], ...]
    span: Span = field(default=NO_SPAN, compare=False, repr=False)
    arg_spans: tuple[tuple[str, Span], ...] = field(default=(), compare=False, repr=False)

    def get(self, key: str, default: Any = None) -> Any:
        return dict(self.kwargs).get(key, default)

    def span_of(self, key: str) -> Span:
        """Where argument `key` was written (the whole source if it was not)."""
        return dict(self.arg_spans).get(key, self.span)


@dataclass(frozen=True, slots=True)
class DataConfig:
    train: Source | None = None
    test: Source | None = None
    validation: float = 0.0
    split: tuple[float, ...] | None = None
    normalize: str = "none"
    normalize_target: str | None = None  # standard | minmax | none; None: not written (a lint may suggest it)
    batch_size: int | None = 32  # None: full batch
    shuffle: bool = True
    one_hot: bool = False
    target_type: str = "auto"  # auto | class | value
    target: str | None = None  # "input": the targets are the preprocessed inputs (autoencoders)
    labels: tuple[str, ...] | None = None
    subset: int | None = None  # N samples of the training source, drawn at random (seeded): quick runs
    stratify: bool = False  # validation / split keep each class's share
    image_size: tuple[int, int] | None = None  # decode images to [height, width]
    augment: tuple[CallValue, ...] = ()  # training-batch augmentation (catalogue AUGMENTS), full kwargs
    skip_bad: bool = False  # skip unreadable images with a warning
    tokenizer: CallValue | None = None  # text columns: words(...) | chars(...) | bpe(...), full kwargs
    max_len: int | None = None  # text columns: tokens kept per text (None: the longest training text)
    bucket: bool = False  # text columns: training batches of texts of similar length
    span: Span = field(default=NO_SPAN, compare=False, repr=False)
    normalize_target_span: Span = field(default=NO_SPAN, compare=False, repr=False)


@dataclass(frozen=True, slots=True)
class TrainConfig:
    loss: CallValue = CallValue("MSELoss")
    optimizer: CallValue = CallValue("SGD", (("lr", 0.01),))
    scheduler: CallValue | None = None
    epochs: int = 1
    metrics: tuple[CallValue, ...] = ()
    early_stopping: CallValue | None = None
    l1: float = 0.0
    clip_grad_norm: float | None = None
    seed: int = 0
    device: str = "auto"
    precision: str = "fp32"  # fp32 | bf16 | fp16
    compile: bool = False
    sync_batchnorm: bool = True
    checkpoint_every: int = 1
    save: str = "best"  # best | last
    log: tuple[str, ...] = ("csv",)
    log_every: int = 50
    span: Span = field(default=NO_SPAN, compare=False, repr=False)


@dataclass(frozen=True, slots=True)
class ExportConfig:
    onnx: str | None = None
    opset: int = 18
    tolerance: float = 1e-4
    quantize: str = "none"  # none | int8
    calibration: int = 512
    max_metric_drop: float = 0.01
    span: Span = field(default=NO_SPAN, compare=False, repr=False)
    quantize_span: Span = field(default=NO_SPAN, compare=False, repr=False)  # where `quantize:` was set


@dataclass(frozen=True, slots=True)
class SearchParam:
    """One key of the `search` section: `hidden: choice(64, 128)`,
    `train.optimizer.lr: loguniform(1e-4, 1e-1)`. `key` is a `let` name or a `--set` path;
    `kind` is choice | uniform | loguniform | int; `choices` the values as written (choice),
    `low`/`high`/`step` the range (others), `labels` what Optuna stores for each choice."""

    key: str
    kind: str
    choices: tuple[Expr, ...] = ()
    labels: tuple[Any, ...] = ()  # None | bool | int | float | str per choice
    low: float = 0  # int(...): ints
    high: float = 0
    step: int = 1
    span: Span = field(default=NO_SPAN, compare=False, repr=False)
    key_span: Span = field(default=NO_SPAN, compare=False, repr=False)


@dataclass(frozen=True, slots=True)
class SearchConfig:
    """The `search` section: trials, the metric and its direction, sampler, pruner, the space."""

    params: tuple[SearchParam, ...]
    metric: str
    minimize: bool
    trials: int = 20
    sampler: str = "tpe"  # tpe | random | grid
    pruner: str = "none"  # none | median | hyperband
    trials_given: bool = False
    span: Span = field(default=NO_SPAN, compare=False, repr=False)


@dataclass(frozen=True, slots=True)
class CheckedSpec:
    spec: Spec
    model: CheckedModel
    data: DataConfig | None
    train: TrainConfig
    export: ExportConfig
    constants: tuple[tuple[str, Value], ...] = ()
    warnings: tuple = ()  # Diagnostic objects with severity "warning"
    has_train: bool = False
    search: SearchConfig | None = None  # the `search` section, checked (netspec tune)


# ---------------------------------------------------------------- walking the checked tree


def children(node: Node) -> tuple[Node, ...]:
    """A node's direct children: a sequence's entries, a branch construct's branches."""
    if isinstance(node, SeqNode):
        return node.children
    if isinstance(node, BranchNode):
        return node.branches
    return ()


def walk(node: Node, prefix: str = "") -> Iterator[tuple[str, Node]]:
    """Every node below `node`, depth first in source order, with its path of names
    (`layer1.add1.main.conv1`): the module path in the built nn.Sequential and the prefix
    of its state_dict keys."""
    for child in children(node):
        path = prefix + child.name
        yield path, child
        yield from walk(child, path + ".")


def layers(node: Node) -> list[LayerNode]:
    """Every catalogue layer at or below `node`, in source (and state_dict) order."""
    if isinstance(node, LayerNode):
        return [node]
    return [n for _, n in walk(node) if isinstance(n, LayerNode)]


def first_layer(model: CheckedModel) -> LayerNode | None:
    """The layer that receives the model's input (none when a branch construct does)."""
    node: Node = model.root
    while isinstance(node, SeqNode):
        if not node.children:
            return None
        node = node.children[0]
    return node if isinstance(node, LayerNode) else None


def last_layer(node: Node) -> LayerNode | None:
    """The layer whose output is `node`'s output (a branch construct or residual has none)."""
    while not isinstance(node, LayerNode):
        if isinstance(node, BranchNode) or not node.children or node.kind == "residual":
            return None
        node = node.children[-1]
    return node


def parameter_count(node: Node) -> int:
    """Parameters at or below `node`, from the catalogue's parameter shapes (no torch)."""
    from netspec.catalogue import parameter_shapes

    return sum(math.prod(s) for layer in layers(node) for _, s in parameter_shapes(layer.type, dict(layer.kwargs)))


def frozen_paths(checked: CheckedSpec) -> frozenset[str]:
    """The paths (as `walk` names them) of the layers and blocks whose parameters do not
    train. Nothing freezes yet: `train { freeze: [...] }` plugs in here, and the summary's
    Trainable column and totals (and whatever else asks) follow it."""
    return frozenset()


def is_frozen(path: str, frozen: frozenset[str]) -> bool:
    """Whether `path` or a block around it is frozen."""
    return any(path == f or path.startswith(f + ".") for f in frozen)


def trainable_parameter_count(node: Node, frozen: frozenset[str], path: str = "") -> int:
    """Parameters at or below `node` (at `path`, as `walk` names it; "" for the root) that
    train. Buffers (BatchNorm's running statistics) are not parameters: in neither count."""
    if path and is_frozen(path, frozen):
        return 0
    if isinstance(node, LayerNode):
        return parameter_count(node)
    return sum(trainable_parameter_count(c, frozen, f"{path}.{c.name}" if path else c.name) for c in children(node))


# ---------------------------------------------------------------- stable dump


def dump(node: object, indent: int = 0) -> str:
    """A stable, position-free text form of any IR node (golden tests, `netspec ir`)."""
    pad = "  " * indent
    if is_dataclass(node) and not isinstance(node, type):
        parts = []
        for f in fields(node):
            if f.name.endswith("span"):
                continue
            value = getattr(node, f.name)
            if f.metadata.get("dump") == "unless default" and value == f.default:
                continue  # a later field, in the dump only where it is set
            if isinstance(value, tuple) and value and any(is_dataclass(v) for v in value):
                inner = "\n".join(dump(v, indent + 2) for v in value)
                parts.append(f"{pad}  {f.name}:\n{inner}")
            elif is_dataclass(value):
                parts.append(f"{pad}  {f.name}:\n{dump(value, indent + 2)}")
            else:
                parts.append(f"{pad}  {f.name}: {value!r}")
        head = f"{pad}{type(node).__name__}"
        return head if not parts else head + "\n" + "\n".join(parts)
    if isinstance(node, tuple):
        return f"{pad}{tuple(_plain(v) for v in node)!r}"
    return f"{pad}{node!r}"


def _plain(v: object) -> object:
    return dump(v) if is_dataclass(v) else v
