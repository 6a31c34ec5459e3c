"""`netspec diagram`: the architecture as a picture (SVG, PNG, or Graphviz .dot source).

In: ``ir.CheckedSpec`` (a spec, a run folder's spec.net, or a packaged example) and an
output path ending in .svg, .png or .dot. Out: that file, written atomically; torch is
never imported. SVG is plain XML written here; PNG paints the same layout with Pillow;
.dot is Graphviz source for those who have Graphviz (`dot -Tpdf model.dot -o model.pdf`).

    netspec diagram examples/mnist.net -o mnist.svg
    netspec diagram resnet50 -o resnet50.png --depth 1

The picture reads top to bottom: the input, every layer as a box (name, type with the
arguments that matter, output shape, parameters; coloured by the catalogue's category),
branch constructs as a fork into side-by-side columns and a join labelled with the
operation (+, concat, ×) and its output shape, nested Sequentials (block uses, `{ ... }`,
named repeats) as labelled frames, and the output.

Depth counts frames: a Sequential nested inside N frames is drawn at depth N + 1 (the
model's own entries are at depth 1). `--depth N` draws Sequentials deeper than N as one
box (name, the block use as written or "Sequential", output shape, parameters). Branch
constructs add no depth: when one is visible its fork and join are drawn. Without
`--depth`, the deepest depth whose picture has at most ``AUTO_MAX_BOXES`` boxes is used.
"""

from __future__ import annotations

import hashlib
import math
import os
import re
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Union
from xml.sax.saxutils import escape

from netspec import catalogue as cat
from netspec import ir
from netspec.catalogue import fmt_shape
from netspec.errors import SOURCES, Span, error
from netspec.ir import parameter_count
from netspec.syntax.expr import show

FORMATS = (".svg", ".png", ".dot")
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
    lines = source.splitlines()
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
                       f"{params:,} parameters")


def _collapsed_box(node: ir.SeqNode) -> Box:
    params = parameter_count(node)
    layers = len(ir.layers(node))
    kind = written_as(node)
    return Box(node.name, kind, fmt_shape(node.out_shape), params, "collapsed", "collapsed", layers,
               f"{node.name}: {kind}, {layers} layers\n{fmt_shape(node.in_shape)} -> {fmt_shape(node.out_shape)}, "
               f"{params:,} parameters")


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


# ---------------------------------------------------------------- text metrics

# Helvetica's advance widths (1/1000 em) for ' ' .. '~'; Arial, Liberation Sans and Pillow's
# default font (Aileron) are within a few percent. Bold is Helvetica-Bold's.
_REGULAR = (
    "278 278 355 556 556 889 667 191 333 333 389 584 278 333 278 278 556 556 556 556 556 556 556 556 556 556 278 278 "
    "584 584 584 556 1015 667 667 722 722 667 611 778 722 278 500 667 556 833 722 778 667 778 722 667 611 722 667 944 "
    "667 667 611 278 278 278 469 556 333 556 556 500 556 556 278 556 556 222 222 500 222 833 556 556 556 556 333 500 "
    "278 556 500 722 500 500 500 334 260 334 584")
_BOLD = (
    "278 333 474 556 556 889 722 238 333 333 389 584 278 333 278 278 556 556 556 556 556 556 556 556 556 556 333 333 "
    "584 584 584 611 975 722 722 722 722 667 611 778 722 278 556 722 611 833 722 778 667 778 722 667 611 722 667 944 "
    "667 667 611 333 278 333 584 556 333 556 611 556 611 556 333 611 611 278 278 556 278 889 611 611 611 611 389 556 "
    "333 611 556 778 556 556 500 389 280 389 584")
WIDTHS = {False: [int(w) for w in _REGULAR.split()], True: [int(w) for w in _BOLD.split()]}
SLACK = 1.06  # fonts a viewer substitutes run a little wider


def text_width(text: str, size: float, bold: bool = False) -> float:
    table = WIDTHS[bold]
    units = sum(table[ord(c) - 32] if 32 <= ord(c) < 127 else 700 for c in text)
    return units * size / 1000 * SLACK


# ---------------------------------------------------------------- layout: primitives in SVG pixels

FONT = "Helvetica, Arial, 'Liberation Sans', 'Nimbus Sans', 'DejaVu Sans Condensed', sans-serif"
TEXT, MUTED, EDGE = "#1f2937", "#4b5563", "#6b7280"
NAME, TYPE, SMALL, LABEL, TITLE = 12.0, 11.5, 10.0, 11.0, 16.0
BOX_H, TALL_H, TERM_H, PAD_X = 40, 54, 28, 10
MIN_BOX_W, MAX_BOX_W, MAX_NAME_BOX_W = 180.0, 330.0, 480.0
STACK = 4  # offset of the card behind a collapsed box
V_GAP, H_GAP = 22, 24
FRAME_HEAD, FRAME_PAD = 22, 10
FORK_TOP, FORK_DROP = 10, 14  # entry -> fork bar, fork bar -> branch tops
JOIN_RISE, JOIN_H = 14, 22  # branch bottoms -> join bar, join node height
SKIP_W = 64
MARGIN = 20

# light fills (and their borders) per catalogue category
CATEGORY_COLOURS = {
    "convolution": ("#dbeafe", "#60a5fa"),
    "linear": ("#ede9fe", "#a78bfa"),
    "normalization": ("#dcfce7", "#4ade80"),
    "activation": ("#fef9c3", "#facc15"),
    "pooling": ("#ccfbf1", "#2dd4bf"),
    "dropout": ("#f1f5f9", "#94a3b8"),
    "reshape": ("#ffedd5", "#fb923c"),
    "recurrent": ("#fce7f3", "#f472b6"),
    "attention": ("#ffe4e6", "#fb7185"),
    "embedding": ("#e0e7ff", "#818cf8"),
    "upsampling": ("#cffafe", "#22d3ee"),
    "padding": ("#f5f5f4", "#a8a29e"),
    "utility": ("#f8fafc", "#94a3b8"),
    "other": ("#ffffff", "#9ca3af"),
    "collapsed": ("#f3f4f6", "#6b7280"),
}
FRAME_FILLS = ["#f8fafc", "#f1f5f9", "#e9eef5", "#e2e8f0"]
FRAME_STROKE = "#cbd5e1"


@dataclass
class Rect:
    x: float
    y: float
    w: float
    h: float
    fill: str
    stroke: str
    radius: float = 6
    width: float = 1.0
    dash: bool = False


@dataclass
class Line:
    points: list[tuple[float, float]]
    arrow: bool = False
    colour: str = EDGE
    width: float = 1.3


@dataclass
class Circle:
    cx: float
    cy: float
    r: float
    fill: str
    stroke: str


@dataclass
class Text:
    x: float
    y: float  # baseline
    text: str
    size: float
    bold: bool = False
    colour: str = TEXT
    anchor: str = "start"  # start | middle | end
    halo: str | None = None  # drawn over lines: a background-coloured outline keeps it readable


@dataclass
class Glyph:
    """A join's operation sign (+, ×), centred at (cx, cy): text in SVG, strokes in PNG
    (Pillow's default font has no ×)."""

    cx: float
    cy: float
    sign: str


@dataclass
class Group:
    """Primitives that belong to one element (a box, a join), with its tooltip."""

    title: str
    cls: str  # SVG class: `box layer convolution`, `box collapsed`, `terminal`, `join add`
    items: list[Prim] = field(default_factory=list)


Prim = Union[Rect, Line, Circle, Text, Glyph, Group]


@dataclass
class Canvas:
    width: float
    height: float
    title: str
    back: list[Prim] = field(default_factory=list)  # frames
    edges: list[Prim] = field(default_factory=list)
    front: list[Prim] = field(default_factory=list)  # boxes, joins, labels


class Layout:
    """Sizes bottom-up (`size`), then positions top-down (`draw`); everything is centred on
    its column, so every edge of a sequence is one vertical line."""

    def __init__(self, box_width: float):
        self.box_w = box_width
        self.sizes: dict[int, tuple[float, float]] = {}

    # -- sizes

    def size(self, part: Part) -> tuple[float, float]:
        key = id(part)  # parts live as long as the layout: their ids are stable
        if key not in self.sizes:
            self.sizes[key] = self._size(part)
        return self.sizes[key]

    def column_size(self, col: Column) -> tuple[float, float]:
        if col.skip:
            return max(SKIP_W, *(text_width(t, SMALL) + 12 for t in col.skip)), 0
        sizes = [self.size(p) for p in col.parts]
        frames = [(p, h) for p, (_, h) in zip(col.parts, sizes) if isinstance(p, Frame)]
        widest = max((self.size(p)[0] for p, _ in frames), default=0)
        for p, h in frames:  # sibling frames share one width: their edges line up
            self.sizes[id(p)] = (widest, h)
        return max((w for w, _ in sizes), default=0), sum(h for _, h in sizes) + V_GAP * max(len(sizes) - 1, 0)

    def _size(self, part: Part) -> tuple[float, float]:
        if isinstance(part, Box):
            if part.variant == "terminal":
                return terminal_width(part), TERM_H
            box_h = TALL_H if is_tall(part, self.box_w) else BOX_H
            return (self.box_w + 2 * STACK, box_h + STACK) if part.variant == "collapsed" else (self.box_w, box_h)
        if isinstance(part, Frame):
            inner_w, inner_h = self.column_size(Column(part.parts))
            return max(inner_w + 2 * FRAME_PAD, 2 * frame_label_half(part)), FRAME_HEAD + inner_h + FRAME_PAD
        cols = [self.column_size(c) for c in part.columns]
        left, right = self.fork_extent(part, cols)
        half = max(left, right, join_width(part) / 2 + 10 + join_label_width(part))
        tallest = max(h for _, h in cols)
        return 2 * half, FORK_TOP + FORK_DROP + tallest + JOIN_RISE + 10 + JOIN_H

    @staticmethod
    def fork_extent(f: Fork, cols: list[tuple[float, float]]) -> tuple[float, float]:
        """How far the columns reach left and right of the fork's centre line: the centre of
        the one branch that is not a skip (a residual's body, DenseNet's layer), else the
        middle of all of them."""
        content = sum(w for w, _ in cols) + H_GAP * (len(cols) - 1)
        real = [i for i, c in enumerate(f.columns) if not c.skip]
        if len(real) != 1:
            return content / 2, content / 2
        i = real[0]
        centre = sum(w for w, _ in cols[:i]) + H_GAP * i + cols[i][0] / 2
        return centre, content - centre

    # -- positions

    def draw(self, part: Part, x: float, y: float, c: Canvas, bg: str) -> None:
        if isinstance(part, Box):
            c.front.append(draw_box(part, x, y, *self.size(part)))
        elif isinstance(part, Frame):
            self.draw_frame(part, x, y, c)
        else:
            self.draw_fork(part, x, y, c, bg)

    def draw_column(self, parts: list[Part], x: float, y: float, w: float, c: Canvas, bg: str) -> None:
        cx = x + w / 2
        for i, p in enumerate(parts):
            pw, ph = self.size(p)
            if i:
                c.edges.append(Line([(cx, y - V_GAP), (cx, y)], arrow=isinstance(p, Box)))
            self.draw(p, cx - pw / 2, y, c, bg)
            y += ph + V_GAP

    def draw_frame(self, f: Frame, x: float, y: float, c: Canvas) -> None:
        w, h = self.size(f)
        fill = FRAME_FILLS[min(f.level - 1, len(FRAME_FILLS) - 1)]
        c.back.append(Rect(x, y, w, h, fill, FRAME_STROKE, radius=8))
        cx = x + w / 2
        if f.parts:
            iw, ih = self.column_size(Column(f.parts))
            top = y + FRAME_HEAD
            c.edges.append(Line([(cx, y), (cx, top)], arrow=isinstance(f.parts[0], Box)))
            c.edges.append(Line([(cx, top + ih), (cx, y + h)]))
            self.draw_column(f.parts, cx - iw / 2, top, iw, c, fill)
        else:
            c.edges.append(Line([(cx, y), (cx, y + h)]))
        name_w = text_width(f.name, LABEL, True)
        c.front.append(Text(x + FRAME_PAD, y + 15, f.name, LABEL, True, TEXT, halo=fill))
        c.front.append(Text(x + FRAME_PAD + name_w + 6, y + 15, f.type, LABEL, False, MUTED, halo=fill))
        if f.params:
            c.front.append(Text(x + w - FRAME_PAD, y + 15, _params(f.params), SMALL, False, MUTED, "end", halo=fill))

    def draw_fork(self, f: Fork, x: float, y: float, c: Canvas, bg: str) -> None:
        w, h = self.size(f)
        cx = x + w / 2
        sizes = [self.column_size(col) for col in f.columns]
        bar1, top = y + FORK_TOP, y + FORK_TOP + FORK_DROP
        bar2 = top + max(ch for _, ch in sizes) + JOIN_RISE
        join_top = bar2 + 10
        c.edges.append(Line([(cx, y), (cx, bar1)]))
        centres = []
        left = cx - self.fork_extent(f, sizes)[0]
        for col, (cw, ch) in zip(f.columns, sizes):
            ccx = left + cw / 2
            centres.append(ccx)
            if col.skip:
                c.edges.append(Line([(ccx, bar1), (ccx, bar2)]))
                for i, t in enumerate(col.skip):
                    c.front.append(Text(ccx, top + 12 + i * 12, t, SMALL, i == 0 and len(col.skip) > 1, MUTED,
                                        "middle", halo=bg))
            else:
                c.edges.append(Line([(ccx, bar1), (ccx, top)], arrow=isinstance(col.parts[0], Box)))
                c.edges.append(Line([(ccx, top + ch), (ccx, bar2)]))
                self.draw_column(col.parts, left, top, cw, c, bg)
            left += cw + H_GAP
        c.edges.append(Line([(min(centres), bar1), (max(centres), bar1)]))
        c.edges.append(Line([(min(centres), bar2), (max(centres), bar2)]))
        c.edges.append(Line([(cx, bar2), (cx, join_top)], arrow=True))
        c.front.append(Circle(cx, bar1, 3, EDGE, EDGE))
        c.front.append(draw_join(f, cx, join_top, bg))


def terminal_width(b: Box) -> float:
    return text_width(b.name, NAME, True) + 8 + text_width(b.shape, TYPE) + 2 * 14


def frame_label_half(f: Frame) -> float:
    """Half the width a frame needs so that its labels stay clear of the line down its middle."""
    name_type = text_width(f.name, LABEL, True) + 6 + text_width(f.type, LABEL)
    return FRAME_PAD + 10 + max(name_type, text_width(_params(f.params), SMALL))


def _params(n: int) -> str:
    return f"{n:,} params" if n else ""


def join_width(f: Fork) -> float:
    symbol = SYMBOLS.get(f.op, f.op)
    return JOIN_H if len(symbol) == 1 else text_width(symbol, SMALL, True) + 18


def join_label_width(f: Fork) -> float:
    return text_width(f.name, SMALL, True) + 6 + text_width(f.shape, SMALL)


def box_width(b: Box) -> float:
    """What a layer box needs (the picture uses the widest, up to MAX_BOX_W, so the columns
    line up); a name and type too long for one line go on two (a tall box)."""
    line2 = text_width(_box_detail(b), SMALL) + 12 + text_width(_box_params(b), SMALL)
    one_line = text_width(b.name, NAME, True) + 8 + text_width(b.type, TYPE)
    if one_line + 2 * PAD_X <= MAX_BOX_W:
        return max(one_line, line2) + 2 * PAD_X
    name = text_width(b.name, NAME, True) + 2 * PAD_X  # a name widens the box further than a type does
    return max(min(max(text_width(b.type, TYPE), line2) + 2 * PAD_X, MAX_BOX_W), min(name, MAX_NAME_BOX_W))


def is_tall(b: Box, width: float) -> bool:
    return text_width(b.name, NAME, True) + 8 + text_width(b.type, TYPE) + 2 * PAD_X > width


def fit(text: str, size: float, width: float, bold: bool = False) -> str:
    """`text`, shortened with … to fit `width`."""
    if text_width(text, size, bold) <= width:
        return text
    while text and text_width(text + "…", size, bold) > width:
        text = text[:-1]
    return text + "…"


def _box_detail(b: Box) -> str:
    return b.shape + (f"  ·  {b.layers} layers" if b.variant == "collapsed" else "")


def _box_params(b: Box) -> str:
    return _params(b.params)


def draw_box(b: Box, x: float, y: float, w: float, h: float) -> Group:
    g = Group(b.tooltip or f"{b.name}: {b.type} {b.shape}",
              "terminal" if b.variant == "terminal" else f"box {b.variant} {b.category}")
    if b.variant == "terminal":
        g.items.append(Rect(x, y, w, h, "#ffffff", "#374151", radius=h / 2, width=1.4))
        name_w = text_width(b.name, NAME, True)
        left = x + (w - name_w - 8 - text_width(b.shape, TYPE)) / 2
        g.items.append(Text(left, y + 18.5, b.name, NAME, True))
        g.items.append(Text(left + name_w + 8, y + 18.5, b.shape, TYPE, False, MUTED))
        return g
    fill, stroke = CATEGORY_COLOURS.get(b.category, CATEGORY_COLOURS["other"])
    if b.variant == "collapsed":  # a stack of cards: there is more inside
        x, w, h = x + STACK, w - 2 * STACK, h - STACK
        g.items.append(Rect(x + STACK, y + STACK, w, h, fill, stroke))
    g.items.append(Rect(x, y, w, h, fill, stroke))
    inner = w - 2 * PAD_X
    name = fit(b.name, NAME, inner, True)
    g.items.append(Text(x + PAD_X, y + 16, name, NAME, True))
    if h > BOX_H:  # tall: the type on a line of its own
        g.items.append(Text(x + PAD_X, y + 31, fit(b.type, TYPE, inner), TYPE, False, "#374151"))
    else:
        left = text_width(name, NAME, True) + 8
        g.items.append(Text(x + PAD_X + left, y + 16, fit(b.type, TYPE, inner - left), TYPE, False, "#374151"))
    g.items.append(Text(x + PAD_X, y + h - 8, _box_detail(b), SMALL, False, MUTED))
    if b.params:
        g.items.append(Text(x + w - PAD_X, y + h - 8, _box_params(b), SMALL, False, MUTED, "end"))
    return g


def draw_join(f: Fork, cx: float, top: float, bg: str) -> Group:
    symbol = SYMBOLS.get(f.op, f.op)
    w = join_width(f)
    g = Group(f"{f.name}: {f.op} of {len(f.columns)} branches -> {f.shape}, {f.params:,} parameters", f"join {f.op}")
    if len(symbol) == 1:
        g.items.append(Circle(cx, top + JOIN_H / 2, JOIN_H / 2, "#ffffff", "#374151"))
        g.items.append(Glyph(cx, top + JOIN_H / 2, symbol))
    else:
        g.items.append(Rect(cx - w / 2, top, w, JOIN_H, "#ffffff", "#374151", radius=JOIN_H / 2))
        g.items.append(Text(cx, top + 15, symbol, SMALL, True, TEXT, "middle"))
    lx = cx + w / 2 + 8
    g.items.append(Text(lx, top + 15, f.name, SMALL, True, TEXT, halo=bg))
    g.items.append(Text(lx + text_width(f.name, SMALL, True) + 6, top + 15, f.shape, SMALL, False, MUTED, halo=bg))
    return g


def layout(p: Picture) -> Canvas:
    """Place everything: title and legend, then input, the parts, output in one column."""
    layer_boxes = [b for b in boxes(p.parts) if b.variant != "terminal"]
    box_w = max([MIN_BOX_W, *(box_width(b) for b in layer_boxes)])
    lay = Layout(box_w)
    column = [Box("input", "", p.input_shape, 0, variant="terminal", tooltip=f"input {p.input_shape}"),
              *p.parts,
              Box("output", "", p.output_shape, 0, variant="terminal", tooltip=f"output {p.output_shape}")]
    col_w, col_h = lay.column_size(Column(column))
    title = p.model
    subtitle = f"{p.params:,} parameters" + (f"  ·  depth {p.depth} of {p.max_depth}" if p.max_depth else "")
    categories = sorted({b.category for b in layer_boxes} - {"collapsed"}) + \
        (["collapsed"] if any(b.variant == "collapsed" for b in layer_boxes) else [])
    legend_w = sum(legend_item_width(k) for k in categories)
    head_w = max(text_width(title, TITLE, True) + 12 + text_width(subtitle, LABEL), legend_w)
    width = max(col_w, head_w) + 2 * MARGIN
    top = MARGIN + 48
    c = Canvas(width, top + col_h + MARGIN, title)
    c.front.append(Text(MARGIN, MARGIN + 14, title, TITLE, True))
    c.front.append(Text(MARGIN + text_width(title, TITLE, True) + 12, MARGIN + 14, subtitle, LABEL, False, MUTED))
    x = float(MARGIN)
    for k in categories:
        fill, stroke = CATEGORY_COLOURS[k]
        c.front.append(Rect(x, MARGIN + 26, 12, 12, fill, stroke, radius=3))
        c.front.append(Text(x + 16, MARGIN + 36, "block" if k == "collapsed" else k, SMALL, False, MUTED))
        x += legend_item_width(k)
    lay.draw_column(column, (width - col_w) / 2, top, col_w, c, "#ffffff")
    return c


def legend_item_width(category: str) -> float:
    return 16 + text_width("block" if category == "collapsed" else category, SMALL) + 14


# ---------------------------------------------------------------- SVG


def to_svg(c: Canvas) -> str:
    w, h = math.ceil(c.width), math.ceil(c.height)
    out = ['<?xml version="1.0" encoding="UTF-8"?>',
           f'<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" viewBox="0 0 {w} {h}" '
           f'font-family="{escape(FONT, {chr(34): "&quot;"})}">',
           f"<title>{escape(c.title)}</title>",
           "<defs><marker id=\"arrow\" viewBox=\"0 0 10 10\" refX=\"10\" refY=\"5\" markerWidth=\"7\" "
           "markerHeight=\"7\" orient=\"auto\"><path d=\"M0,0 L10,5 L0,10 z\" fill=\"" + EDGE + "\"/></marker></defs>",
           f'<rect width="{w}" height="{h}" fill="#ffffff"/>']
    for layer in (c.back, c.edges, c.front):
        out.extend(_svg(p) for p in layer)
    out.append("</svg>")
    return "\n".join(out) + "\n"


def _n(v: float) -> str:
    return f"{v:.1f}".rstrip("0").rstrip(".")


def _svg(p: Prim) -> str:
    if isinstance(p, Group):
        inner = "".join(_svg(i) for i in p.items)
        return f'<g class="{p.cls}"><title>{escape(p.title)}</title>{inner}</g>'
    if isinstance(p, Rect):
        dash = ' stroke-dasharray="4 3"' if p.dash else ""
        return (f'<rect x="{_n(p.x)}" y="{_n(p.y)}" width="{_n(p.w)}" height="{_n(p.h)}" rx="{_n(p.radius)}" '
                f'fill="{p.fill}" stroke="{p.stroke}" stroke-width="{_n(p.width)}"{dash}/>')
    if isinstance(p, Line):
        pts = " ".join(f"{_n(x)},{_n(y)}" for x, y in p.points)
        marker = ' marker-end="url(#arrow)"' if p.arrow else ""
        return (f'<polyline points="{pts}" fill="none" stroke="{p.colour}" stroke-width="{_n(p.width)}"'
                f'{marker}/>')
    if isinstance(p, Circle):
        return f'<circle cx="{_n(p.cx)}" cy="{_n(p.cy)}" r="{_n(p.r)}" fill="{p.fill}" stroke="{p.stroke}"/>'
    if isinstance(p, Glyph):
        return (f'<text x="{_n(p.cx)}" y="{_n(p.cy + 5.5)}" font-size="16" font-weight="bold" fill="{TEXT}" '
                f'text-anchor="middle">{escape(p.sign)}</text>')
    weight = ' font-weight="bold"' if p.bold else ""
    anchor = f' text-anchor="{p.anchor}"' if p.anchor != "start" else ""
    halo = (f' stroke="{p.halo}" stroke-width="4" stroke-linejoin="round" paint-order="stroke"'
            if p.halo else "")
    return (f'<text x="{_n(p.x)}" y="{_n(p.y)}" font-size="{_n(p.size)}" fill="{p.colour}"{weight}{anchor}'
            f'{halo}>{escape(p.text)}</text>')


# ---------------------------------------------------------------- PNG (Pillow)

PNG_MAX_PIXELS = 16_000_000  # the final image; larger pictures get a smaller scale (never below 1)
PNG_MAX_ROWS = 32_767
BAND = 1024  # rows of the final image painted at a time: supersampled memory stays bounded


def to_png(c: Canvas, path: str) -> None:
    """Paint at twice the final scale and shrink (smooth lines, circles and arrowheads),
    one horizontal band at a time."""
    from PIL import Image

    scale = png_scale(c)
    width, height = math.ceil(c.width * scale), math.ceil(c.height * scale)
    img = Image.new("RGB", (width, height), "white")
    overlap = 8  # final pixels painted beyond each band's edges, so the shrinking has no seams
    for top in range(0, height, BAND):
        y0, y1 = max(top - overlap, 0), min(top + BAND + overlap, height)
        band = _paint_band(c, scale, y0, y1, width)
        img.paste(band.crop((0, top - y0, width, top - y0 + min(BAND, height - top))), (0, top))
    img.save(path, format="PNG", optimize=True)


def png_scale(c: Canvas) -> float:
    """Twice the SVG's size, less for big pictures (never below 1:1); a picture taller than
    PNG_MAX_ROWS at 1:1 is refused (image viewers give up on such files)."""
    if c.height > PNG_MAX_ROWS:
        raise error(f"the picture is {math.ceil(c.height):,} pixels tall, too tall for a PNG "
                    f"(at most {PNG_MAX_ROWS:,} rows)", "write an .svg instead, or draw fewer boxes with --depth N")
    return min(2.0, PNG_MAX_ROWS / c.height, max(1.0, math.sqrt(PNG_MAX_PIXELS / (c.width * c.height))))


def _paint_band(c: Canvas, scale: float, y0: int, y1: int, width: int) -> Any:
    from PIL import Image, ImageDraw

    from netspec.train import plot

    k = scale * plot.SS
    big = Image.new("RGB", (width * plot.SS, (y1 - y0) * plot.SS), "white")
    painter = _Painter(ImageDraw.Draw(big), k, -y0 * plot.SS, plot.font, plot.SS)
    lo, hi = y0 / scale - 40, y1 / scale + 40  # canvas rows that can reach this band
    for layer in (c.back, c.edges, c.front):
        for p in layer:
            if _overlaps(p, lo, hi):
                painter.paint(p)
    return big.resize((width, y1 - y0), Image.Resampling.LANCZOS)


def _overlaps(p: Prim, lo: float, hi: float) -> bool:
    if isinstance(p, Group):
        return any(_overlaps(i, lo, hi) for i in p.items)
    if isinstance(p, Rect):
        return p.y <= hi and p.y + p.h >= lo
    if isinstance(p, Line):
        ys = [y for _, y in p.points]
        return min(ys) <= hi and max(ys) >= lo
    if isinstance(p, Circle):
        return p.cy - p.r <= hi and p.cy + p.r >= lo
    return lo <= (p.cy if isinstance(p, Glyph) else p.y) <= hi


def _rgb(colour: str) -> tuple[int, int, int]:
    return int(colour[1:3], 16), int(colour[3:5], 16), int(colour[5:7], 16)


class _Painter:
    def __init__(self, draw: Any, k: float, dy: float, font: Callable[[float], Any], font_ss: int):
        self.d, self.k, self.dy = draw, k, dy
        self._font, self._font_ss = font, font_ss
        self.fonts: dict[float, Any] = {}

    def font(self, size: float) -> Any:
        px = round(size * self.k, 1)
        if px not in self.fonts:  # plot.font takes the size before its own supersampling
            self.fonts[px] = self._font(px / self._font_ss)
        return self.fonts[px]

    def at(self, x: float, y: float) -> tuple[float, float]:
        return x * self.k, y * self.k + self.dy

    def paint(self, p: Prim) -> None:
        k = self.k
        if isinstance(p, Group):
            for i in p.items:
                self.paint(i)
        elif isinstance(p, Rect):
            self.d.rounded_rectangle([self.at(p.x, p.y), self.at(p.x + p.w, p.y + p.h)], radius=p.radius * k,
                                     fill=_rgb(p.fill), outline=_rgb(p.stroke), width=max(1, round(p.width * k)))
        elif isinstance(p, Line):
            pts = [self.at(x, y) for x, y in p.points]
            if p.arrow:  # stop short of the tip: the head covers the rest
                pts[-1] = (pts[-1][0], pts[-1][1] - 5 * k)
            self.d.line(pts, fill=_rgb(p.colour), width=max(1, round(p.width * k)))
            if p.arrow:
                self.arrow_head(p.points[-2], p.points[-1], _rgb(p.colour))
        elif isinstance(p, Circle):
            self.d.ellipse([self.at(p.cx - p.r, p.cy - p.r), self.at(p.cx + p.r, p.cy + p.r)],
                           fill=_rgb(p.fill), outline=_rgb(p.stroke), width=max(1, round(1.3 * k)))
        elif isinstance(p, Glyph):
            self.glyph(p)
        else:
            self.text(p)

    def arrow_head(self, a: tuple[float, float], b: tuple[float, float], colour: tuple[int, int, int]) -> None:
        k = self.k
        angle = math.atan2(b[1] - a[1], b[0] - a[0])
        length, half = 7 * k, 3.5 * k
        tip = self.at(*b)
        base = (tip[0] - length * math.cos(angle), tip[1] - length * math.sin(angle))
        nx, ny = -math.sin(angle) * half, math.cos(angle) * half
        self.d.polygon([tip, (base[0] + nx, base[1] + ny), (base[0] - nx, base[1] - ny)], fill=colour)

    def glyph(self, g: Glyph) -> None:
        r = 4.5 if g.sign == "×" else 5.5
        ends = [((-r, -r), (r, r)), ((-r, r), (r, -r))] if g.sign == "×" else [((-r, 0), (r, 0)), ((0, -r), (0, r))]
        for (x0, y0), (x1, y1) in ends:
            self.d.line([self.at(g.cx + x0, g.cy + y0), self.at(g.cx + x1, g.cy + y1)], fill=_rgb(TEXT),
                        width=max(1, round(1.8 * self.k)))

    def text(self, t: Text) -> None:
        k = self.k
        f = self.font(t.size)
        anchor = {"start": "ls", "middle": "ms", "end": "rs"}[t.anchor]
        xy = self.at(t.x, t.y)
        text = t.text.replace("×", "x")  # not in Pillow's default font
        if t.halo:
            self.d.text(xy, text, font=f, anchor=anchor, fill=_rgb(t.halo), stroke_width=max(1, round(2 * k)),
                        stroke_fill=_rgb(t.halo))
        bold = max(1, round(0.3 * k)) if t.bold else 0  # the default font has no bold face: a thin outline
        self.d.text(xy, text, font=f, anchor=anchor, fill=_rgb(t.colour), stroke_width=bold,
                    stroke_fill=_rgb(t.colour))


# ---------------------------------------------------------------- Graphviz .dot


class _Dot:
    def __init__(self) -> None:
        self.lines: list[str] = []
        self.count = 0

    def node(self, attrs: str, indent: str) -> str:
        self.count += 1
        name = f"n{self.count}"
        self.lines.append(f"{indent}{name} [{attrs}];")
        return name

    def edge(self, a: str, b: str, indent: str, attrs: str = "") -> None:
        self.lines.append(f"{indent}{a} -> {b}{f' [{attrs}]' if attrs else ''};")

    def column(self, parts: list[Part], indent: str) -> tuple[str, str]:
        ends = [self.part(p, indent) for p in parts]
        for (_, a), (b, _) in zip(ends, ends[1:]):
            self.edge(a, b, indent)
        return ends[0][0], ends[-1][1]

    def part(self, p: Part, indent: str) -> tuple[str, str]:
        if isinstance(p, Box):
            fill, stroke = CATEGORY_COLOURS.get(p.category, CATEGORY_COLOURS["other"])
            if p.variant == "terminal":
                n = self.node(f'label={_q(p.name + chr(10) + p.shape)}, shape=oval, fillcolor="#ffffff"', indent)
                return n, n
            detail = "  ·  ".join(t for t in (_box_detail(p), _params(p.params)) if t)
            style = ', style="rounded,filled,bold"' if p.variant == "collapsed" else ""
            label = f"{p.name}  {p.type}\n{detail}"
            n = self.node(f'label={_q(label)}, fillcolor="{fill}", color="{stroke}"{style}, '
                          f'tooltip={_q(p.tooltip)}', indent)
            return n, n
        if isinstance(p, Frame):
            self.count += 1
            fill = FRAME_FILLS[min(p.level - 1, len(FRAME_FILLS) - 1)]
            label = "  ·  ".join(t for t in (f"{p.name}  {p.type}".strip(), _params(p.params)) if t)
            self.lines.append(f"{indent}subgraph cluster_{self.count} {{")
            inner = indent + "  "
            self.lines.append(f'{inner}label={_q(label)}; labeljust=l; style="rounded,filled"; '
                              f'fillcolor="{fill}"; color="{FRAME_STROKE}";')
            ends = self.column(p.parts, inner) if p.parts else (self.node("shape=point, width=0.05", inner),) * 2
            self.lines.append(f"{indent}}}")
            return ends
        fork = self.node(f'shape=point, width=0.08, color="{EDGE}"', indent)
        symbol = SYMBOLS.get(p.op, p.op)
        join = self.node(f"label={_q(symbol)}, shape={'circle' if len(symbol) == 1 else 'box'}, "
                         f'style="rounded,filled", fillcolor="#ffffff", xlabel={_q(p.name + " " + p.shape)}', indent)
        for col in p.columns:
            if col.skip:
                self.edge(fork, join, indent, f'label={_q(" ".join(col.skip))}, style=dashed')
            else:
                a, b = self.column(col.parts, indent)
                self.edge(fork, a, indent)
                self.edge(b, join, indent)
        return fork, join


def _q(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'


def to_dot(p: Picture) -> str:
    d = _Dot()
    ind = "  "
    head = [f"digraph {_q(p.model)} {{",
            f'{ind}graph [rankdir=TB, fontname="Helvetica", fontsize=11, labelloc=t, '
            f'label={_q(f"{p.model}  ·  {p.params:,} parameters")}, nodesep=0.3, ranksep=0.3];',
            f'{ind}node [shape=box, style="rounded,filled", fontname="Helvetica", fontsize=10];',
            f'{ind}edge [color="{EDGE}", arrowsize=0.6, fontname="Helvetica", fontsize=9];']
    column = [Box("input", "", p.input_shape, 0, variant="terminal"), *p.parts,
              Box("output", "", p.output_shape, 0, variant="terminal")]
    d.column(column, ind)
    return "\n".join([*head, *d.lines, "}"]) + "\n"


# ---------------------------------------------------------------- the command


def check_output(output: str, inputs: list[str]) -> str:
    """The output's format (its suffix); refuse empty paths, folders ('/', '.', 'dir/'),
    other suffixes, the inputs, and existing files that are not an unedited earlier output
    of netspec diagram (an empty file may be replaced)."""
    from netspec.util import check_output_file

    check_output_file(output, "model.svg")
    path = Path(output)
    suffix = path.suffix.lower()
    if suffix not in FORMATS:
        raise error(f"{output}: a diagram is written as .svg, .png or .dot, not {suffix or 'a file without a suffix'}",
                    f"e.g. -o {path.with_name((path.stem.lstrip('.') or 'model') + '.svg')}")
    if not os.path.exists(output):
        return suffix
    for i in inputs:
        if os.path.exists(i) and os.path.samefile(i, output):
            raise error(f"{output}: that is the input; netspec diagram never overwrites it", "choose another -o")
    if not os.path.isfile(output):
        raise error(f"{output}: not a regular file; netspec diagram writes only files")
    if os.path.getsize(output) and not is_own_output(output, suffix):
        raise error(f"{output} exists and is not an unedited output of netspec diagram (it was edited, or is "
                    "another file); netspec diagram does not overwrite it",
                    "choose another -o, or remove the file first")
    return suffix


# What diagram writes carries a mark with the sha256 of the rest of the file (eject's
# trailer, in each format's comment syntax), so a later run replaces its own unedited
# output and nothing else: not a hand-made SVG, not a .dot file the user tuned.
MARK = "written by netspec diagram; sha256 "
TEXT_MARKS = {".svg": ("<!-- ", " -->"), ".dot": ("// ", "")}
PNG_KEYWORD = b"Software"
MAX_OWN_BYTES = 256 << 20  # larger files are not ours (a 150-box SVG is well under 1 MiB)


def sign_text(text: str, suffix: str) -> str:
    """`text` (ending in a newline) with the mark as its last line."""
    open_, close = TEXT_MARKS[suffix]
    return f"{text}{open_}{MARK}{hashlib.sha256(text.encode('utf-8')).hexdigest()}{close}\n"


def _signed_text(data: bytes, suffix: str) -> bool:
    open_, close = TEXT_MARKS[suffix]
    body, sep, tail = data.rstrip(b"\n").rpartition(b"\n")
    head = f"{open_}{MARK}".encode()
    if not sep or not tail.startswith(head) or not tail.endswith(close.encode()):
        return False
    digest = tail[len(head):len(tail) - len(close)].decode("ascii", "replace").strip()
    return digest == hashlib.sha256(body + b"\n").hexdigest()


PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
PNG_TEXT_CHUNKS = (b"tEXt", b"zTXt", b"iTXt")


def _png_chunks(data: bytes) -> list[tuple[bytes, bytes]] | None:
    """(type, data) of each chunk, or None when `data` is not a well-formed PNG."""
    if not data.startswith(PNG_SIGNATURE):
        return None
    chunks, at = [], len(PNG_SIGNATURE)
    while at + 12 <= len(data):
        size = int.from_bytes(data[at:at + 4], "big")
        kind, body = data[at + 4:at + 8], data[at + 8:at + 8 + size]
        if len(body) != size or at + 12 + size > len(data):
            return None
        chunks.append((kind, body))
        at += 12 + size
        if kind == b"IEND":
            return chunks
    return None


def _png_digest(chunks: list[tuple[bytes, bytes]]) -> str:
    """sha256 of every chunk but the text ones (the image, not its notes)."""
    h = hashlib.sha256()
    for kind, body in chunks:
        if kind not in PNG_TEXT_CHUNKS:
            h.update(kind + len(body).to_bytes(4, "big") + body)
    return h.hexdigest()


def _png_chunk(kind: bytes, body: bytes) -> bytes:
    return len(body).to_bytes(4, "big") + kind + body + zlib.crc32(kind + body).to_bytes(4, "big")


def sign_png(path: str) -> None:
    """Add a tEXt chunk `Software: written by netspec diagram; sha256 ...` before IEND."""
    with open(path, "rb") as f:
        data = f.read()
    chunks = _png_chunks(data)
    if chunks is None:
        raise error(f"{path}: Pillow wrote a PNG that netspec cannot read back")
    text = _png_chunk(b"tEXt", PNG_KEYWORD + b"\0" + (MARK + _png_digest(chunks)).encode("latin-1"))
    end = data.rindex(b"IEND") - 4
    with open(path, "wb") as f:
        f.write(data[:end] + text + data[end:])


def _signed_png(data: bytes) -> bool:
    chunks = _png_chunks(data)
    if chunks is None:
        return False
    want = (MARK + _png_digest(chunks)).encode("latin-1")
    return any(kind == b"tEXt" and body == PNG_KEYWORD + b"\0" + want for kind, body in chunks)


def is_own_output(path: str, suffix: str) -> bool:
    """`path` is what netspec diagram wrote, unedited (its mark matches its content)."""
    try:
        with open(path, "rb") as f:
            data = f.read(MAX_OWN_BYTES + 1)
    except OSError:
        return False
    if len(data) > MAX_OWN_BYTES:
        return False
    return _signed_png(data) if suffix == ".png" else _signed_text(data, suffix)


@dataclass
class Written:
    path: str
    depth: int
    max_depth: int
    boxes: int


def write_diagram(checked: ir.CheckedSpec, output: str, depth: int | None = None,
                  inputs: tuple[str, ...] = ()) -> Written:
    """Draw `checked`'s model to `output` (.svg, .png or .dot), atomically."""
    from netspec.util import atomic_write, atomic_write_text

    suffix = check_output(output, [checked.spec.file, *inputs])
    pic = picture(checked.model, depth)
    if suffix == ".dot":
        atomic_write_text(output, sign_text(to_dot(pic), suffix))
    else:
        canvas = layout(pic)
        if suffix == ".svg":
            atomic_write_text(output, sign_text(to_svg(canvas), suffix))
        else:
            png_scale(canvas)  # too tall: refused before anything is written

            def write_png(tmp: str) -> None:
                to_png(canvas, tmp)
                sign_png(tmp)

            atomic_write(output, write_png)
    return Written(output, pic.depth, pic.max_depth, count_boxes(pic.parts))
