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

The package reads as the pipeline: picture.py (the model as a tree at a depth), layout.py
(placed on a canvas), render.py (SVG, PNG, .dot), output.py (the file, and whose it is).
"""

from __future__ import annotations

from netspec.tools.diagram.layout import Canvas, layout
from netspec.tools.diagram.output import (
    FORMATS,
    Written,
    check_output,
    is_own_output,
    sign_png,
    sign_text,
    write_diagram,
)
from netspec.tools.diagram.picture import AUTO_MAX_BOXES, Picture, boxes, count_boxes, picture
from netspec.tools.diagram.render import png_scale, to_dot, to_png, to_svg

__all__ = ["AUTO_MAX_BOXES", "FORMATS", "Canvas", "Picture", "Written", "boxes", "check_output", "count_boxes",
           "is_own_output", "layout", "picture", "png_scale", "sign_png", "sign_text", "to_dot", "to_png", "to_svg",
           "write_diagram"]
