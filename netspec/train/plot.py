"""Small charts drawn with Pillow: line panels (training curves), heat maps (confusion
matrices) and image grids (augmentation previews).

In: numbers and labels. Out: PIL images. Pillow imports in ~30 ms where matplotlib takes
over a second, which is most of a short training run's fixed cost; these charts need
only lines, text and rectangles. Everything is drawn at twice the size and scaled down,
for smooth lines.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

from PIL import Image, ImageDraw, ImageFont

SS = 2  # supersampling
COLORS = [(31, 119, 180), (255, 127, 14), (44, 160, 44), (214, 39, 40), (148, 103, 189)]
GRID = (228, 228, 228)
AXIS = (90, 90, 90)
TEXT = (30, 30, 30)
MUTED = (120, 120, 120)


def font(size: float) -> Any:
    return ImageFont.load_default(size=size * SS)


def text_size(draw: ImageDraw.ImageDraw, text: str, f: Any) -> tuple[int, int]:
    box = draw.textbbox((0, 0), text, font=f)
    return int(box[2] - box[0]), int(box[3] - box[1])


def nice_ticks(lo: float, hi: float, count: int = 5) -> list[float]:
    if not math.isfinite(lo) or not math.isfinite(hi):
        return []
    if hi <= lo:
        hi = lo + (abs(lo) or 1.0)
    raw = (hi - lo) / max(count - 1, 1)
    mag = 10 ** math.floor(math.log10(raw))
    step = min((m * mag for m in (1, 2, 2.5, 5, 10) if m * mag >= raw), default=10 * mag)
    start = math.ceil(lo / step) * step
    ticks = []
    v = start
    while v <= hi + step * 1e-9:
        ticks.append(round(v, 12))
        v += step
    return ticks


def fmt(v: float) -> str:
    if v == 0:
        return "0"
    if abs(v) >= 1e4 or abs(v) < 1e-3:
        return f"{v:.1e}"
    return f"{v:.4g}"


def new_canvas(width: int, height: int) -> tuple[Image.Image, ImageDraw.ImageDraw]:
    img = Image.new("RGB", (width * SS, height * SS), "white")
    return img, ImageDraw.Draw(img)


def finish(img: Image.Image) -> Image.Image:
    return img.resize((img.width // SS, img.height // SS), Image.Resampling.LANCZOS)


def line_panel(draw: ImageDraw.ImageDraw, box: tuple[int, int, int, int], series: Sequence[dict], title: str,
               xlabel: str = "epoch", ylim: tuple[float, float] | None = None, log: bool = False,
               marker_x: float | None = None, marker_text: str = "", note: str = "") -> None:
    """One chart in `box` (unscaled pixels): series are dicts with label, xs, ys,
    dashed, scatter (markers only), markers (False: a line only)."""
    x0, y0, x1, y1 = (v * SS for v in box)
    small, normal = font(9), font(11)
    draw.text(((x0 + x1) // 2, y0), title, fill=TEXT, font=normal, anchor="mt")
    left, right, top, bottom = x0 + 52 * SS, x1 - 8 * SS, y0 + 22 * SS, y1 - 34 * SS
    xs_all = [x for s in series for x in s["xs"]]
    ys_all = [y for s in series for y in s["ys"] if y is not None and math.isfinite(y) and (y > 0 or not log)]
    if not xs_all or not ys_all:
        draw.text(((left + right) // 2, (top + bottom) // 2), "no data", fill=MUTED, font=small, anchor="mm")
        return
    xmin, xmax = min(xs_all), max(xs_all)
    if xmax == xmin:
        xmin, xmax = xmin - 1, xmax + 1
    ylo, yhi = ylim if ylim is not None else (min(ys_all), max(ys_all))
    if log:
        ylo, yhi = math.log10(max(ylo, 1e-300)), math.log10(max(yhi, 1e-300))
    pad = (yhi - ylo) * 0.06 or (abs(yhi) * 0.1 or 1.0)
    ylo, yhi = ylo - pad, yhi + pad

    def px(x: float) -> float:
        return left + (x - xmin) / (xmax - xmin) * (right - left)

    def py(y: float) -> float:
        v = math.log10(y) if log else y
        return bottom - (v - ylo) / (yhi - ylo) * (bottom - top)

    ticks = nice_ticks(ylo, yhi) if not log else [float(e) for e in range(math.ceil(ylo), math.floor(yhi) + 1)]
    if log and len(ticks) < 2:
        ticks = nice_ticks(ylo, yhi)
    for t in ticks:
        yy = bottom - (t - ylo) / (yhi - ylo) * (bottom - top)
        draw.line([(left, yy), (right, yy)], fill=GRID, width=SS)
        draw.text((left - 5 * SS, yy), fmt(10**t) if log else fmt(t), fill=TEXT, font=small, anchor="rm")
    xticks = [t for t in nice_ticks(xmin, xmax, 6) if float(t).is_integer()] or [xmin, xmax]
    for t in xticks:
        xx = px(t)
        draw.line([(xx, top), (xx, bottom)], fill=GRID, width=SS)
        draw.text((xx, bottom + 5 * SS), str(int(t)), fill=TEXT, font=small, anchor="mt")
    draw.rectangle([left, top, right, bottom], outline=AXIS, width=SS)
    draw.text(((left + right) // 2, bottom + 19 * SS), xlabel, fill=TEXT, font=small, anchor="mt")
    if marker_x is not None and xmin <= marker_x <= xmax:
        mx = px(marker_x)
        for yy in range(int(top), int(bottom), 8 * SS):
            draw.line([(mx, yy), (mx, min(yy + 4 * SS, bottom))], fill=MUTED, width=SS)
        anchor = "rt" if mx > (left + right) / 2 else "lt"
        draw.text((mx + (-4 if anchor == "rt" else 4) * SS, top + 3 * SS), marker_text, fill=MUTED, font=small,
                  anchor=anchor)
    if note:
        draw.text((left + 4 * SS, top + 3 * SS), note, fill=MUTED, font=small, anchor="lt")
    for i, s in enumerate(series):
        color = COLORS[i % len(COLORS)]
        pts = [(px(x), py(min(max(y, 10**ylo if log else ylo), 10**yhi if log else yhi)))
               for x, y in zip(s["xs"], s["ys"]) if y is not None and math.isfinite(y) and (y > 0 or not log)]
        if not s.get("scatter"):  # scatter: markers only (tune.png's trials)
            _polyline(draw, pts, color, s.get("dashed", False))
        if (len(pts) <= 30 and s.get("markers", True)) or s.get("scatter"):
            for x, y in pts:
                r = 2.5 * SS
                draw.ellipse([x - r, y - r, x + r, y + r], fill=color)
        if len(pts) == 1:
            draw.text((pts[0][0] + 6 * SS, pts[0][1] - 4 * SS), fmt(s["ys"][0]), fill=color, font=small, anchor="lb")
    points = [(px(x), py(y)) for s in series for x, y in zip(s["xs"], s["ys"])
              if y is not None and math.isfinite(y) and (y > 0 or not log)]
    _legend(draw, series, (left, top, right, bottom), small, points)


def _polyline(draw: ImageDraw.ImageDraw, pts: list[tuple[float, float]], color: tuple, dashed: bool) -> None:
    if len(pts) < 2:
        return
    if not dashed:
        draw.line(pts, fill=color, width=2 * SS, joint="curve")
        return
    dash, gap = 6 * SS, 4 * SS
    for (ax, ay), (bx, by) in zip(pts, pts[1:]):
        length = math.hypot(bx - ax, by - ay)
        pos = 0.0
        while pos < length:
            end = min(pos + dash, length)
            draw.line([(ax + (bx - ax) * pos / length, ay + (by - ay) * pos / length),
                       (ax + (bx - ax) * end / length, ay + (by - ay) * end / length)], fill=color, width=2 * SS)
            pos += dash + gap


def _legend(draw: ImageDraw.ImageDraw, series: Sequence[dict], frame: tuple[float, float, float, float], f: Any,
            points: list[tuple[float, float]]) -> None:
    """The legend in the corner that covers the fewest data points."""
    if len(series) < 2:
        return
    left, top, right, bottom = frame
    width = max(text_size(draw, s["label"], f)[0] for s in series) + 30 * SS
    height = len(series) * 14 * SS + 6 * SS
    corners = [(right - width - 6 * SS, bottom - height - 6 * SS), (right - width - 6 * SS, top + 18 * SS),
               (left + 6 * SS, bottom - height - 6 * SS), (left + 6 * SS, top + 18 * SS)]

    def covered(c: tuple[float, float]) -> int:
        return sum(1 for px_, py_ in points if c[0] - 8 * SS <= px_ <= c[0] + width + 8 * SS
                   and c[1] - 8 * SS <= py_ <= c[1] + height + 8 * SS)

    x, y = min(corners, key=covered)
    draw.rectangle([x, y, x + width, y + height], fill="white", outline=GRID, width=SS)
    for i, s in enumerate(series):
        yy = y + 10 * SS + i * 14 * SS
        if s.get("scatter"):
            r = 2.5 * SS
            draw.ellipse([x + 13.5 * SS - r, yy - r, x + 13.5 * SS + r, yy + r], fill=COLORS[i % len(COLORS)])
        else:
            _polyline(draw, [(x + 5 * SS, yy), (x + 22 * SS, yy)], COLORS[i % len(COLORS)], s.get("dashed", False))
        draw.text((x + 26 * SS, yy), s["label"], fill=TEXT, font=f, anchor="lm")


def blues(v: float) -> tuple[int, int, int]:
    """A light-to-dark blue scale for v in [0, 1]."""
    lo, hi = (247, 251, 255), (8, 48, 107)
    v = min(max(v, 0.0), 1.0)
    return tuple(int(round(a + (b - a) * v)) for a, b in zip(lo, hi))  # type: ignore[return-value]


def rotated_text(text: str, f: Any, angle: int, fill: tuple = TEXT) -> Image.Image:
    probe = ImageDraw.Draw(Image.new("L", (1, 1)))
    w, h = text_size(probe, text, f)
    im = Image.new("RGBA", (w + 4 * SS, h + 6 * SS), (255, 255, 255, 0))
    ImageDraw.Draw(im).text((2 * SS, 0), text, fill=fill, font=f)
    return im.rotate(angle, expand=True, resample=Image.Resampling.BICUBIC)


def heatmap(matrix: Sequence[Sequence[float]], labels: Sequence[str], title: str, xlabel: str, ylabel: str,
            show_numbers: bool) -> Image.Image:
    k = len(matrix)
    cell = 44 if k <= 10 else 28 if k <= 20 else max(8, 600 // k)
    short = [lab if len(lab) <= 14 else lab[:13] + "…" for lab in labels]
    probe = ImageDraw.Draw(Image.new("L", (1, 1)))
    small, normal = font(9), font(11)
    label_w = max((text_size(probe, s, small)[0] for s in short), default=0) // SS + 10
    left, top = label_w + 30, 40
    width = left + k * cell + 90
    height = top + k * cell + label_w + 40
    img, draw = new_canvas(width, height)
    draw.text((width * SS // 2, 10 * SS), title, fill=TEXT, font=normal, anchor="mt")
    totals = [sum(row) for row in matrix]
    for i in range(k):
        for j in range(k):
            share = matrix[i][j] / totals[i] if totals[i] else 0.0
            x, y = (left + j * cell) * SS, (top + i * cell) * SS
            draw.rectangle([x, y, x + cell * SS, y + cell * SS], fill=blues(share), outline=(255, 255, 255))
            if show_numbers:
                draw.text((x + cell * SS // 2, y + cell * SS // 2), str(int(matrix[i][j])),
                          fill="white" if share > 0.6 else TEXT, font=small, anchor="mm")
    if k <= 40:
        for i, s in enumerate(short):
            draw.text(((left - 4) * SS, (top + i * cell + cell // 2) * SS), s, fill=TEXT, font=small, anchor="rm")
            label = rotated_text(s, small, 60)
            img.paste(label, ((left + j_center(i, cell)) * SS - label.width + 4 * SS, (top + k * cell + 4) * SS),
                      label)
    draw.text(((left + k * cell // 2) * SS, (height - 14) * SS), xlabel, fill=TEXT, font=normal, anchor="mm")
    ylab = rotated_text(ylabel, normal, 90)
    img.paste(ylab, (4 * SS, (top + k * cell // 2) * SS - ylab.height // 2), ylab)
    bar_x = (left + k * cell + 20) * SS
    for t in range(k * cell):  # the colour scale
        v = 1 - t / max(k * cell - 1, 1)
        draw.line([(bar_x, (top + t) * SS), (bar_x + 12 * SS, (top + t) * SS)], fill=blues(v), width=SS)
    for v in (0.0, 0.5, 1.0):
        draw.text((bar_x + 16 * SS, (top + (1 - v) * (k * cell)) * SS), f"{v:.1f}", fill=TEXT, font=small, anchor="lm")
    return finish(img)


def j_center(j: int, cell: int) -> int:
    return j * cell + cell // 2


def image_grid(images: Sequence[Any], captions: Sequence[str], columns: int, title: str, scale: int = 3) -> Image.Image:
    """uint8 arrays [C, H, W] (C 1 or 3) in a grid with a caption under each."""
    import numpy as np

    c, h, w = images[0].shape
    cw, ch = w * scale + 12, h * scale + 26
    rows = math.ceil(len(images) / columns)
    img = Image.new("RGB", (columns * cw + 12, rows * ch + 36), "white")
    draw = ImageDraw.Draw(img)
    draw.text((img.width // 2, 8), title, fill=TEXT, font=ImageFont.load_default(size=13), anchor="mt")
    f = ImageFont.load_default(size=10)
    for i, (a, cap) in enumerate(zip(images, captions)):
        arr = np.asarray(a)
        tile = Image.fromarray(arr[0] if arr.shape[0] == 1 else arr.transpose(1, 2, 0), "L" if arr.shape[0] == 1 else "RGB")
        tile = tile.resize((w * scale, h * scale), Image.Resampling.NEAREST)
        x, y = 12 + (i % columns) * cw, 30 + (i // columns) * ch
        img.paste(tile.convert("RGB"), (x, y))
        draw.rectangle([x - 1, y - 1, x + w * scale, y + h * scale], outline=GRID)
        draw.text((x + w * scale // 2, y + h * scale + 3), cap[:18], fill=TEXT, font=f, anchor="mt")
    return img
