"""Which layers of a model over padded texts get the padding mask, and which mix the steps
in a way padding would change.

In: ``ir.CheckedModel`` whose input is padded token ids (`input: [_]`). Out: ``PaddingPlan``:
the paths (``ir.walk``'s) of the layers and containers that take the mask, read by the builder
(``MaskedSequential(..., masked=[...])``) and eject; and the layers that would let padding
change a result, which check reports as warnings. Pure Python (catalogue rows' `steps`).

The steps axis of a text is the sample's first dimension from the input on, as long as every
layer keeps it: layers that compute each step alone ("each": Embedding, Linear, LayerNorm,
activations, Dropout, PositionalEmbedding) keep it; layers that take the mask ("masked":
attention, RNN/LSTM/GRU, Mean/Max over the steps, Last) skip padding; any other layer that sees
it (Flatten, a convolution, Softmax over the steps) mixes padding in, and from there on no
layer gets the mask.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from netspec import catalogue as cat
from netspec import ir
from netspec.catalogue import fmt_shape


@dataclass
class PaddingPlan:
    masked: set[str] = field(default_factory=set)  # paths of layers and containers that take the mask
    mixing: list[tuple[ir.LayerNode, str]] = field(default_factory=list)  # (layer, why padding changes it)

    def children(self, path: str, names: list[str]) -> list[str]:
        """The children (by name) of the container at `path` ('' = the model) that take the mask."""
        prefix = f"{path}." if path else ""
        return [n for n in names if prefix + n in self.masked]


def padding_plan(model: ir.CheckedModel) -> PaddingPlan:
    plan = PaddingPlan()
    _visit(model.root, "", True, plan)
    return plan


def _visit(node: ir.Node, path: str, steps: bool, plan: PaddingPlan) -> bool:
    """Whether the steps axis is still there after `node`, given it was before (`steps`)."""
    if isinstance(node, ir.LayerNode):
        return _layer(node, path, steps, plan)
    child_path = f"{path}." if path else ""
    if isinstance(node, ir.BranchNode):
        alive = [_visit(b, child_path + b.name, steps, plan) for b in node.branches]
        after = all(alive)
    else:
        after = steps
        for c in node.children:
            after = _visit(c, child_path + c.name, after, plan)
        after = after and steps if node.kind == "residual" else after
    if path and any(p.startswith(child_path) for p in plan.masked):
        plan.masked.add(path)
    return after and bool(node.out_shape) and node.out_shape[0] is None


def _layer(node: ir.LayerNode, path: str, steps: bool, plan: PaddingPlan) -> bool:
    if not steps or not node.in_shape or node.in_shape[0] is not None:
        return False
    kind = cat.LAYERS[node.type].steps
    keeps = bool(node.out_shape) and node.out_shape[0] is None
    if kind == "masked":
        plan.masked.add(path)
        return keeps
    if kind == "each":
        return keeps
    kwargs = dict(node.kwargs)
    if kind == "dim" and int(kwargs.get("dim", -1)) % (len(node.in_shape) + 1) != 1:
        return keeps
    what = f"{node.type}(dim={kwargs['dim']}) reduces over the steps" if kind == "dim" else \
        f"{node.type} mixes the steps"
    plan.mixing.append((node, f"{what} of the padded texts ({fmt_shape(node.in_shape)}), padding included: "
                              "a text's result would depend on the longer texts batched with it"))
    return False
