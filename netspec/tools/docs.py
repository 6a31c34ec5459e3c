"""The generated part of docs/language.md: catalogue tables, so the docs never drift.

    python -m netspec.tools.docs          # rewrite the generated section in docs/language.md
    python -m netspec.tools.docs --check  # exit 1 if it is stale (the test suite runs this check)
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path

from netspec import catalogue as cat

BEGIN = "<!-- BEGIN GENERATED: run `python -m netspec.tools.docs` to update -->"
END = "<!-- END GENERATED -->"
DOC = Path(__file__).resolve().parents[2] / "docs" / "language.md"


def _params(params) -> str:
    out = []
    for p in params:
        if p.inferred:
            continue
        text = p.name if p.default is cat.REQUIRED else f"{p.name}={_show(p.default)}"
        if p.domain and p.domain not in ("(-inf,inf)",):
            text += f" ({cat.describe_domain(p.domain)})"
        out.append(text)
    return ", ".join(out)


def _show(v: object) -> str:
    from netspec.syntax.expr import show

    return show(v)


def _table(title: str, header: tuple[str, ...], rows: Sequence[tuple[str, ...]], intro: str = "") -> list[str]:
    lines = ["", f"### {title}", ""] + ([intro, ""] if intro else [])
    lines.append("| " + " | ".join(header) + " |")
    lines.append("|" + "---|" * len(header))
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return lines


def generate() -> str:
    layers = [(f"`{r.name}`", _params(r.params) or "-", r.expects,
               ", ".join(p.name for p in r.params if p.inferred) or "-",
               "yes" if r.onnx else f"no ({r.onnx_note})") for r in cat.LAYERS_LIST]
    steps = {"epoch": "every epoch", "batch": "every batch", "plateau": "every epoch, on val_loss"}
    lines = [BEGIN]
    lines += _table("Layers", ("layer", "arguments", "input", "inferred", "ONNX"), layers,
                    "Arguments are torch's, in torch's order, minus the inferred ones (fourth column).")
    lines += _table("Branch constructs", ("construct", "arguments", "combines"),
                    [(f"`{r.name}`", _params(r.params) or "-", r.doc) for r in cat.BRANCHES_LIST],
                    "`NAME { branch; branch; ... }`: every branch gets the same input.")
    lines += _table("Augmentations", ("augmentation", "arguments", "does"),
                    [(f"`{r.name}`", _params(r.params), r.doc) for r in cat.AUGMENTS_LIST],
                    "`augment: [...]` in the data section: training batches only, batched on the training device.")
    lines += _table("Losses", ("loss", "arguments", "targets", "notes"),
                    [(f"`{r.name}`", _params(r.params), r.target, r.doc) for r in cat.LOSSES_LIST])
    lines += _table("Optimizers", ("optimizer", "arguments"),
                    [(f"`{r.name}`", _params(r.params)) for r in cat.OPTIMIZERS_LIST])
    lines += _table("LR schedulers", ("scheduler", "arguments", "steps"),
                    [(f"`{r.name}`", _params(r.params), steps[r.interval]) for r in cat.SCHEDULERS_LIST])
    lines += _table("Initialisers", ("initialiser", "arguments", "notes"),
                    [(f"`{r.name}`", _params(r.params) or "-",
                      r.doc + (" Weights with >= 2 dims only." if r.matrix_only else ""))
                     for r in cat.INITIALISERS_LIST])
    lines += _table("Metrics", ("metric", "arguments", "for"),
                    [(f"`{r.name}`", _params(r.params) or "-", f"{r.task}: {r.doc}") for r in cat.METRICS_LIST])
    lines += _table("Data sources", ("source", "arguments", ""),
                    [(f"`{r.name}`", _params(r.params), r.doc) for r in cat.SOURCES_LIST])
    lines += _table("Tokenizers", ("tokenizer", "arguments", "does"),
                    [(f"`{r.name}`", _params(r.params), r.doc) for r in cat.TOKENIZERS_LIST],
                    "`tokenizer:` in the data section, for `csv(..., text=...)` columns (Hugging Face `tokenizers`).")
    for section, table in cat.SECTIONS.items():
        lines += _table(f"`{section}` keys", ("key", "default", "meaning"),
                        [(f"`{s.key}`", s.default if isinstance(s.default, str) else _show(s.default), s.doc)
                         for s in table])
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
            print(f"{DOC} is stale: run python -m netspec.tools.docs", file=sys.stderr)
            return 1
        return 0
    DOC.write_text(new)
    print(f"updated {DOC}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
