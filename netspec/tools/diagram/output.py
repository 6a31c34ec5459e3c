"""Diagram, part 4: the file. Checks the output path, draws in the format its suffix
names, and marks the file as diagram's own (a sha256 of its content) so that a later run
replaces its own unedited output and nothing else.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from netspec import ir, outputs
from netspec.errors import error
from netspec.outputs import Refusals, check_output_file, check_replaceable
from netspec.tools.diagram.layout import layout
from netspec.tools.diagram.picture import Picture, boxes, count_boxes, picture
from netspec.tools.diagram.render import png_scale, to_dot, to_png, to_svg

FORMATS = (".svg", ".png", ".dot")

# ---------------------------------------------------------------- the command


def check_output(output: str, inputs: list[str]) -> str:
    """The output's format (its suffix); refuse empty paths, folders ('/', '.', 'dir/'),
    other suffixes, the inputs, and existing files that are not an unedited earlier output
    of netspec diagram (an empty file may be replaced)."""
    check_output_file(output, "model.svg")
    path = Path(output)
    suffix = path.suffix.lower()
    if suffix not in FORMATS:
        raise error(f"{output}: a diagram is written as .svg, .png or .dot, not {suffix or 'a file without a suffix'}",
                    f"e.g. -o {path.with_name((path.stem.lstrip('.') or 'model') + '.svg')}")
    if os.path.exists(output):
        check_replaceable(output, inputs, lambda p: is_own_output(p, suffix), DIAGRAM_REFUSALS)
    return suffix


DIAGRAM_REFUSALS = Refusals(
    is_input="{output}: that is the input; netspec diagram never overwrites it",
    is_input_help="choose another -o",
    not_a_file="{output}: not a regular file; netspec diagram writes only files",
    not_own="{output} exists and is not an unedited output of netspec diagram (it was edited, or is another file); "
            "netspec diagram does not overwrite it",
    not_own_help="choose another -o, or remove the file first")


# What diagram writes carries a mark with the sha256 of the rest of the file (eject's
# trailer, in each format's comment syntax), so a later run replaces its own unedited
# output and nothing else: not a hand-made SVG, not a .dot file the user tuned.
MARK = "written by netspec diagram; sha256 "
TEXT_MARKS = {".svg": ("<!-- ", " -->"), ".dot": ("// ", "")}
MAX_OWN_BYTES = 256 << 20  # larger files are not ours (a 150-box SVG is well under 1 MiB)


def sign_text(text: str, suffix: str) -> str:
    """`text` (ending in a newline) with the mark as its last line."""
    open_, close = TEXT_MARKS[suffix]
    return outputs.sign_text(text, open_ + MARK, close)


def sign_png(path: str) -> None:
    """Add a tEXt chunk `Software: written by netspec diagram; sha256 ...` before IEND."""
    outputs.sign_png(path, MARK)


def is_own_output(path: str, suffix: str) -> bool:
    """`path` is what netspec diagram wrote, unedited (its mark matches its content)."""
    data = outputs.read_bounded(path, MAX_OWN_BYTES)
    if data is None:
        return False
    if suffix == ".png":
        return outputs.is_signed_png(data, MARK)
    open_, close = TEXT_MARKS[suffix]
    return outputs.is_signed(data, open_ + MARK, close)


@dataclass
class Written:
    path: str
    depth: int
    max_depth: int
    boxes: int


def mark_boxes(pic: Picture, checked: ir.CheckedSpec) -> None:
    """Pretrained and frozen layers (a `weights` section, `freeze`): a tag on the box, frozen ones grey."""
    from netspec.tools.marks import Marks

    marks = Marks(checked)
    if not marks.active:
        return
    paths = {id(node): path for path, node in ir.walk(checked.model.root)}
    for box in boxes(pic.parts):
        path = paths.get(id(box.node))
        if path is not None:
            box.marks = marks.label(path, box.node)
            box.frozen = marks.frozen(path, box.node)


def write_diagram(checked: ir.CheckedSpec, output: str, depth: int | None = None,
                  inputs: tuple[str, ...] = ()) -> Written:
    """Draw `checked`'s model to `output` (.svg, .png or .dot), atomically."""
    from netspec.util import atomic_write, atomic_write_text

    suffix = check_output(output, [checked.spec.file, *inputs])
    pic = picture(checked.model, depth)
    mark_boxes(pic, checked)
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
