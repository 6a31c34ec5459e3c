"""Diagram, part 3: the formats. SVG (plain XML written here) and PNG (Pillow, painted in
bands) draw a ``Canvas`` (layout.py); Graphviz .dot source describes the ``Picture``
(picture.py) and leaves the placing to Graphviz.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any
from xml.sax.saxutils import escape

from netspec.errors import error
from netspec.tools.diagram.layout import (
    CATEGORY_COLOURS,
    EDGE,
    FONT,
    FRAME_FILLS,
    FRAME_STROKE,
    FROZEN,
    TEXT,
    Canvas,
    Circle,
    Glyph,
    Group,
    Line,
    Prim,
    Rect,
    Text,
    _box_detail,
    _params,
)
from netspec.tools.diagram.picture import SYMBOLS, Box, Frame, Part, Picture

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
            fill, stroke = FROZEN if p.frozen else CATEGORY_COLOURS.get(p.category, CATEGORY_COLOURS["other"])
            if p.variant == "terminal":
                n = self.node(f'label={_q(p.name + chr(10) + p.shape)}, shape=oval, fillcolor="#ffffff"', indent)
                return n, n
            detail = "  ·  ".join(t for t in (_box_detail(p), p.marks, _params(p.params)) if t)
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
