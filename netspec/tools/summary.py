"""`netspec summary`: a Keras-style layer table computed from the checked IR (no torch).

In: ``ir.CheckedSpec``. Out: text with name, type, output shape, parameters, trainable.
"""

from __future__ import annotations

from netspec import ir
from netspec.catalogue import fmt_shape
from netspec.ir import children, parameter_count


def node_type(node: ir.Node) -> str:
    """What a node is, as the summary and diagram name it."""
    if isinstance(node, ir.LayerNode):
        return node.type
    if isinstance(node, ir.BranchNode):
        dim = dict(node.kwargs).get("dim")
        return node.op.capitalize() + (f"(dim={dim})" if node.op == "concat" and dim != 1 else "")
    return "Residual" if node.kind == "residual" else "Sequential"


def rows(node: ir.Node, frozen: frozenset[str], depth: int = 0, prefix: str = "") -> list[tuple[str, str, str, int, str]]:
    """(name, type, output shape, parameters, trainable: yes | no | partly | "") per entry."""
    out = []
    for c in children(node):
        path = prefix + c.name
        total = parameter_count(c)
        trainable = ir.trainable_parameter_count(c, frozen, path)
        mark = "" if not total else "yes" if trainable == total else "no" if not trainable else "partly"
        out.append(("  " * depth + c.name, node_type(c), fmt_shape(c.out_shape), total, mark))
        if not isinstance(c, ir.LayerNode):
            out.extend(rows(c, frozen, depth + 1, path + "."))
    return out


def summary_text(checked: ir.CheckedSpec) -> str:
    m = checked.model
    frozen = ir.frozen_paths(checked)
    table = [("(input)", "", fmt_shape(m.input_shape), 0, "")] + rows(m.root, frozen)
    head = ("Layer", "Type", "Output shape", "Params", "Trainable")
    body = [(n, t, s, f"{p:,}" if p else "0" if t else "", mark) for n, t, s, p, mark in table]
    widths = [max(len(r[i]) for r in [head, *body]) for i in range(5)]

    def line(r: tuple) -> str:
        return "  ".join(
            (c.rjust(w) if i == 3 else c.ljust(w)) for i, (c, w) in enumerate(zip(r, widths))
        ).rstrip()

    rule = "-" * len(line(head))
    total = parameter_count(m.root)
    trainable = ir.trainable_parameter_count(m.root, frozen)
    out = [f"model {m.name}", rule, line(head), rule, *(line(r) for r in body), rule,
           f"Total params: {total:,}", f"Trainable params: {trainable:,}", f"Non-trainable params: {total - trainable:,}",
           f"Parameter memory: {total * 4 / 1024:,.1f} KiB (float32)"]
    return "\n".join(out)
