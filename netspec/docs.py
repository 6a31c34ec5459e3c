"""The generated part of docs/language.md: catalogue tables, so the docs never drift.

    python -m netspec.docs          # rewrite the generated section in docs/language.md
    python -m netspec.docs --check  # exit 1 if it is stale (the test suite runs this check)
"""

from __future__ import annotations

import sys
from pathlib import Path

from . import catalogue as cat

BEGIN = "<!-- BEGIN GENERATED: run `python -m netspec.docs` to update -->"
END = "<!-- END GENERATED -->"
DOC = Path(__file__).resolve().parent.parent / "docs" / "language.md"


def _params(params, inferred_mark: bool = True) -> str:
    out = []
    for p in params:
        if p.inferred:
            continue
        out.append(p.name if p.default is cat.REQUIRED else f"{p.name}={_show(p.default)}")
    return ", ".join(out)


def _show(v: object) -> str:
    from .expr import show

    return show(v)


def generate() -> str:
    lines = [BEGIN, "", "### Layers", "",
             "Arguments are torch's, in torch's order, minus the inferred ones (last column).", "",
             "| layer | arguments | input | inferred | ONNX |", "|---|---|---|---|---|"]
    for row in cat.LAYERS_LIST:
        inferred = ", ".join(p.name for p in row.params if p.inferred) or "-"
        onnx = "yes" if row.onnx else f"no ({row.onnx_note})"
        lines.append(f"| `{row.name}` | {_params(row.params) or '-'} | {row.expects} | {inferred} | {onnx} |")
    lines += ["", "### Losses", "", "| loss | arguments | targets | notes |", "|---|---|---|---|"]
    for loss in cat.LOSSES_LIST:
        lines.append(f"| `{loss.name}` | {_params(loss.params)} | {loss.target} | {loss.doc} |")
    lines += ["", "### Optimizers", "", "| optimizer | arguments |", "|---|---|"]
    for opt in cat.OPTIMIZERS_LIST:
        lines.append(f"| `{opt.name}` | {_params(opt.params)} |")
    lines += ["", "### LR schedulers", "", "| scheduler | arguments | steps |", "|---|---|---|"]
    for sched in cat.SCHEDULERS_LIST:
        steps = sched.interval if sched.interval != 'plateau' else 'epoch, on val_loss'
        lines.append(f"| `{sched.name}` | {_params(sched.params)} | every {steps} |")
    lines += ["", "### Initialisers", "", "| initialiser | arguments | notes |", "|---|---|---|"]
    for init in cat.INITIALISERS_LIST:
        note = init.doc + (" Weights with >= 2 dims only." if init.matrix_only else "")
        lines.append(f"| `{init.name}` | {_params(init.params) or '-'} | {note} |")
    lines += ["", "### Metrics", "", "| metric | arguments | for |", "|---|---|---|"]
    for metric in cat.METRICS_LIST:
        lines.append(f"| `{metric.name}` | {_params(metric.params) or '-'} | {metric.task}: {metric.doc} |")
    lines += ["", "### Data sources", "", "| source | arguments | |", "|---|---|---|"]
    for src in cat.SOURCES_LIST:
        lines.append(f"| `{src.name}` | {_params(src.params)} | {src.doc} |")
    for section, table in cat.SECTIONS.items():
        lines += ["", f"### `{section}` keys", "", "| key | default | meaning |", "|---|---|---|"]
        for s in table:
            lines.append(f"| `{s.key}` | {_show(s.default) if not isinstance(s.default, str) else s.default} | {s.doc} |")
    lines += ["", END]
    return "\n".join(lines)


def updated(text: str) -> str:
    if BEGIN not in text or END not in text:
        return text.rstrip() + "\n\n" + generate() + "\n"
    head, rest = text.split(BEGIN, 1)
    _, tail = rest.split(END, 1)
    return head + generate() + tail


def main() -> int:
    text = DOC.read_text()
    new = updated(text)
    if "--check" in sys.argv:
        if new != text:
            print(f"{DOC} is stale: run python -m netspec.docs", file=sys.stderr)
            return 1
        return 0
    DOC.write_text(new)
    print(f"updated {DOC}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
