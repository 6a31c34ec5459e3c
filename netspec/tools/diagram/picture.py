"""Diagram, part 1: the checked model as a tree of boxes, frames and forks at a depth.

In: ``ir.CheckedModel`` and a depth (None: the deepest within ``AUTO_MAX_BOXES`` boxes).
Out: ``Picture``: the parts top to bottom (``Box`` for a layer or a collapsed Sequential,
``Frame`` for an expanded one, ``Fork`` for a branch construct with its ``Column``s), with
the text each box shows. No geometry here: layout.py places it, render.py draws it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Union

from netspec import catalogue as cat
from netspec import ir
from netspec.catalogue import fmt_shape
from netspec.errors import SOURCES, Span, source_lines
from netspec.ir import parameter_count
from netspec.syntax.expr import show

AUTO_MAX_BOXES = 150  # the automatic depth keeps the picture at most this many boxes (joins included)

# ---------------------------------------------------------------- the picture as a tree


@dataclass
class Box:
    """A layer, a collapsed Sequential (`collapsed`), or the input/output (`terminal`)."""

    name: str
    type: str
    shape: str
    params: int
    category: str = "other"
    variant: str = "layer"  # layer | collapsed | terminal
    layers: int = 1
    tooltip: str = ""
    marks: str = ""  # `pretrained  ·  frozen` (tools/marks.py)
    frozen: bool = False  # drawn grey: it does not train (yet)
    node: Any = None  # the checked node it draws


@dataclass
class Column:
    """One branch: parts top to bottom, or a skip line (`skip` holds its label lines)."""

    parts: list[Part]
    skip: tuple[str, ...] = ()


@dataclass
class Frame:
    """An expanded nested Sequential: a labelled frame around its parts."""

    name: str
    type: str
    params: int
    shape: str
    parts: list[Part]
    level: int = 1


@dataclass
class Fork:
    """add / concat / multiply / residual: a fork, the branch columns, a join node."""

    name: str
    op: str
    shape: str
    params: int
    columns: list[Column]


Part = Union[Box, Frame, Fork]
SYMBOLS = {"add": "+", "multiply": "×", "concat": "concat"}


@dataclass
class Picture:
    model: str
    input_shape: str
    output_shape: str
    params: int
    parts: list[Part]
    depth: int
    max_depth: int


# ---------------------------------------------------------------- what a layer box says

# constructor arguments a box never shows: the shapes and the output already tell them
QUIET_ARGS = frozenset("padding padding_mode bias inplace eps momentum affine track_running_stats ceil_mode "
                       "count_include_pad elementwise_affine layer_norm_eps batch_first divisor_override "
                       "scale_grad_by_freq sparse".split())
NAMED_ARGS = frozenset({"p", "dim"})  # always shown, with their names
MAX_ARGS_TEXT = 40


def layer_args(node: ir.LayerNode) -> str:
    """The arguments that matter, briefly: `64, 3x3, /2` for Conv2d(64, 3, stride=2, padding=1)."""
    row = cat.LAYERS.get(node.type)
    if row is None:
        return ""
    kwargs = dict(node.kwargs)
    out = []
    for p in row.params:
        if p.inferred or p.name in QUIET_ARGS or p.name not in kwargs:
            continue
        text = _arg_text(p, kwargs[p.name], node, kwargs)
        if text:
            out.append(text)
    return _clip(", ".join(out), MAX_ARGS_TEXT)


def _arg_text(p: cat.P, v: Any, node: ir.LayerNode, kwargs: dict) -> str:
    if p.name == "kernel_size":
        return _size(v, len(node.in_shape) - 1)
    if p.name == "stride":
        if v is None or all(s == 1 for s in (v if isinstance(v, tuple) else (v,))):
            return ""
        grows = any(o is not None and i is not None and o > i for i, o in zip(node.in_shape[1:], node.out_shape[1:]))
        return ("×" if grows else "/") + _size(v, 1)
    if p.name == "groups" and v != 1 and node.in_shape and v == node.in_shape[0] == kwargs.get("out_channels"):
        return "depthwise"
    if p.name in NAMED_ARGS:
        return f"{p.name}={_brief(v)}"
    if p.default is cat.REQUIRED:
        return _brief(v)
    return "" if v == p.default else f"{p.name}={_brief(v)}"


def _brief(v: Any) -> str:
    """A value for a box: floats to four significant digits (`Scale(1 / pi)` -> 0.3183)."""
    if isinstance(v, float):
        return f"{v:.4g}"
    if isinstance(v, tuple):
        return "[" + ", ".join(_brief(x) for x in v) + "]"
    return show(v)


def _size(v: Any, dims: int) -> str:
    if isinstance(v, tuple):
        return "x".join(str(x) for x in v)
    return "x".join([str(v)] * max(dims, 1)) if dims >= 2 else str(v)


def _clip(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def written_as(node: ir.SeqNode) -> str:
    """How a nested Sequential was written: the block use (`basic_down(128)`), `repeat 2`,
    or "Sequential" for `{ ... }` (read from the source the span points at)."""
    text = _span_text(node.span)
    text = re.sub(r"^[A-Za-z_]\w*\s*:\s*", "", text)  # the `name:` in front
    if re.match(r"repeat\b", text):
        return _clip(text.split("{", 1)[0].strip(), MAX_ARGS_TEXT)
    m = re.match(r"[A-Za-z_]\w*(\s*\([^{}]*)?", text)
    if not text or text.startswith("{") or m is None:
        return "Sequential"
    use = re.sub(r"\s+", " ", m.group(0)).strip().rstrip(";")
    name, _, args = use.partition("(")
    literal = not re.search(r"[A-Za-z_]", re.sub(r"\b[A-Za-z_]\w*\s*=|\b(true|false|none)\b", "", args))
    if not args or not literal or use.count("(") != use.count(")") or len(use) > MAX_ARGS_TEXT:
        return name.strip() + ("(…)" if args.strip(" )") else "")  # arguments that name values: just the block
    return use


def _span_text(span: Span) -> str:
    source = SOURCES.get(span.file)
    if not span or source is None:
        return ""
    lines = source_lines(source)
    if span.line > len(lines):
        return ""
    line = lines[span.line - 1]
    end = span.end_column - 1 if span.end_line == span.line else len(line)
    return line[span.column - 1:end].strip()


# ---------------------------------------------------------------- building the tree at a depth


def nesting(node: ir.Node) -> int:
    """How many Sequential frames deep the model goes (0: no nested Sequentials)."""
    below = max((nesting(k) for k in ir.children(node)), default=0)
    return below + (1 if isinstance(node, ir.SeqNode) and node.kind == "sequential" else 0)


def model_depth(model: ir.CheckedModel) -> int:
    return max((nesting(c) for c in model.root.children), default=0)


def picture(model: ir.CheckedModel, depth: int | None = None) -> Picture:
    """The model as a tree of boxes, frames and forks; `depth` None picks it automatically."""
    deepest = model_depth(model)
    if depth is None:
        depth = auto_depth(model, deepest)
    depth = min(depth, deepest)
    parts = [_part(c, 0, depth) for c in model.root.children]
    return Picture(model.name, fmt_shape(model.input_shape), fmt_shape(model.output_shape),
                   parameter_count(model.root), parts, depth, deepest)


def auto_depth(model: ir.CheckedModel, deepest: int) -> int:
    """The deepest depth whose picture has at most AUTO_MAX_BOXES boxes (at least 1)."""
    for depth in range(deepest, 0, -1):
        if count_boxes([_part(c, 0, depth) for c in model.root.children]) <= AUTO_MAX_BOXES:
            return depth
    return min(1, deepest)


def _part(node: ir.Node, frames: int, depth: int) -> Part:
    if isinstance(node, ir.LayerNode):
        return _layer_box(node)
    if isinstance(node, ir.BranchNode):
        return Fork(node.name, node.op, fmt_shape(node.out_shape), parameter_count(node),
                    [_branch(b, frames, depth) for b in node.branches])
    if node.kind == "residual":
        body = Column([_part(c, frames, depth) for c in node.children])
        return Fork(node.name, "add", fmt_shape(node.out_shape), parameter_count(node), [body, Column([], ("identity",))])
    if frames + 1 > depth:
        return _collapsed_box(node)
    kind = written_as(node)
    return Frame(node.name, "" if kind == node.name else kind, parameter_count(node), fmt_shape(node.out_shape),
                 [_part(c, frames + 1, depth) for c in node.children], frames + 1)


def _branch(node: ir.Node, frames: int, depth: int) -> Column:
    # an Identity branch is the shortcut of `add { f; Identity }` (what residual means): a line
    if isinstance(node, ir.LayerNode) and node.type == "Identity":
        return Column([], (node.name, "identity"))
    return Column([_part(node, frames, depth)])


def _layer_box(node: ir.LayerNode) -> Box:
    row = cat.LAYERS.get(node.type)
    args = layer_args(node)
    params = parameter_count(node)
    full = ", ".join(f"{k}={show(v)}" for k, v in node.kwargs)
    return Box(node.name, f"{node.type} {args}".strip(), fmt_shape(node.out_shape), params,
               row.category if row else "other",
               tooltip=f"{node.name}: {node.type}({full})\n{fmt_shape(node.in_shape)} -> {fmt_shape(node.out_shape)}, "
                       f"{params:,} parameters", node=node)


def _collapsed_box(node: ir.SeqNode) -> Box:
    params = parameter_count(node)
    layers = len(ir.layers(node))
    kind = written_as(node)
    return Box(node.name, kind, fmt_shape(node.out_shape), params, "collapsed", "collapsed", layers,
               f"{node.name}: {kind}, {layers} layers\n{fmt_shape(node.in_shape)} -> {fmt_shape(node.out_shape)}, "
               f"{params:,} parameters", node=node)


def count_boxes(parts: list[Part]) -> int:
    """Boxes (layers and collapsed Sequentials) and join nodes in the picture."""
    n = 0
    for p in parts:
        if isinstance(p, Box):
            n += 1
        elif isinstance(p, Frame):
            n += count_boxes(p.parts)
        else:
            n += 1 + sum(count_boxes(c.parts) for c in p.columns)
    return n


def boxes(parts: list[Part]) -> list[Box]:
    out: list[Box] = []
    for p in parts:
        if isinstance(p, Box):
            out.append(p)
        elif isinstance(p, Frame):
            out.extend(boxes(p.parts))
        else:
            for c in p.columns:
                out.extend(boxes(c.parts))
    return out
