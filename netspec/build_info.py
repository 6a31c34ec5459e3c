"""Facts about a checked model that several phases need, without importing torch."""

from __future__ import annotations

from netspec import catalogue as cat
from netspec import ir


def first_layer(model: ir.CheckedModel) -> ir.LayerNode | None:
    """The layer that receives the model's input (none when a branch construct does)."""
    node: ir.Node = model.root
    while isinstance(node, ir.SeqNode):
        if not node.children:
            return None
        node = node.children[0]
    return node if isinstance(node, ir.LayerNode) else None


def first_layer_takes_indices(model: ir.CheckedModel) -> bool:
    first = first_layer(model)
    return first is not None and cat.LAYERS[first.type].int_input
