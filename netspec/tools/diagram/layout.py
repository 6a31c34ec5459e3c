"""Diagram, part 2: the picture placed on a canvas, in SVG pixels.

In: ``Picture`` (picture.py). Out: ``Canvas``: primitives (rectangles, lines, circles,
text, the joins' signs), grouped per box or join with a tooltip, in three layers (frames,
edges, boxes and labels). Text widths come from Helvetica's metrics, so no font is read.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Union

from netspec.tools.diagram.picture import SYMBOLS, Box, Column, Fork, Frame, Part, Picture, boxes

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
FROZEN = ("#d1d5db", "#374151")  # a frozen layer (`freeze`): grey, whatever its category
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
    return "  ·  ".join(t for t in (b.marks, _params(b.params)) if t)


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
    fill, stroke = FROZEN if b.frozen else CATEGORY_COLOURS.get(b.category, CATEGORY_COLOURS["other"])
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
    if b.params or b.marks:
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
    categories = sorted({b.category for b in layer_boxes if not b.frozen} - {"collapsed"}) + \
        (["collapsed"] if any(b.variant == "collapsed" for b in layer_boxes) else []) + \
        (["frozen"] if any(b.frozen for b in layer_boxes) else [])
    legend_w = sum(legend_item_width(k) for k in categories)
    head_w = max(text_width(title, TITLE, True) + 12 + text_width(subtitle, LABEL), legend_w)
    width = max(col_w, head_w) + 2 * MARGIN
    top = MARGIN + 48
    c = Canvas(width, top + col_h + MARGIN, title)
    c.front.append(Text(MARGIN, MARGIN + 14, title, TITLE, True))
    c.front.append(Text(MARGIN + text_width(title, TITLE, True) + 12, MARGIN + 14, subtitle, LABEL, False, MUTED))
    x = float(MARGIN)
    for k in categories:
        fill, stroke = FROZEN if k == "frozen" else CATEGORY_COLOURS[k]
        c.front.append(Rect(x, MARGIN + 26, 12, 12, fill, stroke, radius=3))
        c.front.append(Text(x + 16, MARGIN + 36, "block" if k == "collapsed" else k, SMALL, False, MUTED))
        x += legend_item_width(k)
    lay.draw_column(column, (width - col_w) / 2, top, col_w, c, "#ffffff")
    return c


def legend_item_width(category: str) -> float:
    return 16 + text_width("block" if category == "collapsed" else category, SMALL) + 14
