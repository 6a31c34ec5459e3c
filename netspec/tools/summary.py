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


def rows(node: ir.Node, depth: int = 0, prefix: str = "") -> list[tuple[str, str, str, int, str]]:
    out = []
    for c in children(node):
        label = "  " * depth + c.name
        out.append((label, node_type(c), fmt_shape(c.out_shape), parameter_count(c), prefix + c.name))
        if not isinstance(c, ir.LayerNode):
            out.extend(rows(c, depth + 1, prefix + c.name + "."))
    return out


def summary_text(checked: ir.CheckedSpec) -> str:
    from netspec.tools.marks import Marks

    m = checked.model
    marks = Marks(checked)  # pretrained (weights) and frozen (freeze/unfreeze) layers
    nodes = dict(ir.walk(m.root))
    table = [("(input)", "", fmt_shape(m.input_shape), 0, "")] + rows(m.root)
    head = ("Layer", "Type", "Output shape", "Params", "Trainable") + (("Weights",) if marks.weights else ())
    body = [(n, t, s, f"{p:,}" if p else "0" if t else "",
             (marks.trains(path, nodes[path]) if path else "") if marks.active else "yes" if p else "")
            + ((marks.pretrained(path, nodes[path]) if path else "",) if marks.weights else ())
            for n, t, s, p, path in table]
    widths = [max(len(r[i]) for r in [head, *body]) for i in range(len(head))]

    def line(r: tuple) -> str:
        return "  ".join(
            (c.rjust(w) if i == 3 else c.ljust(w)) for i, (c, w) in enumerate(zip(r, widths))
        ).rstrip()

    rule = "-" * len(line(head))
    total = parameter_count(m.root)
    first, later, never = marks.parameters()
    frozen = f" (frozen; {later:,} of them train from a later epoch)" if later else " (frozen)" if never else ""
    out = [f"model {m.name}", rule, line(head), rule, *(line(r) for r in body), rule,
           f"Total params: {total:,}", f"Trainable params: {first:,}", f"Non-trainable params: {later + never:,}{frozen}",
           f"Parameter memory: {total * 4 / 1024:,.1f} KiB (float32)"]
    if checked.weights is not None:
        source = checked.weights.source
        out.append("Weights from: " + (source.path or "" if source.kind == "file" else f'torchvision("{source.zoo}")'))
    return "\n".join(out)
