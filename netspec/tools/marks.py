"""What `summary` and `diagram` say about pretrained and frozen layers.

In: ``ir.CheckedSpec`` (its `weights` section and train's freeze / unfreeze). Out: per layer
path, whether its tensors come from the weights file ("pretrained") or stay at their
initialisation ("new", under `skip`), and from which epoch its parameters train ("yes", "no"
for frozen the whole run, "epoch 3" for a staged unfreeze, "partly" for a Sequential that
mixes them). Reads the spec only: no file is opened, no torch.
"""

from __future__ import annotations

from netspec import ir
from netspec.weights.stages import trains_from, under


class Marks:
    def __init__(self, checked: ir.CheckedSpec):
        self.weights = checked.weights
        train = checked.train
        self.freeze = [p.path for p in train.freeze]
        self.unfreeze = {u.path.path: u.epoch for u in train.unfreeze}
        self.skip = [p.path for p in self.weights.skip] if self.weights is not None else []
        self.model = checked.model

    @property
    def active(self) -> bool:
        return self.weights is not None or bool(self.freeze)

    def state(self, path: str, node: ir.Node) -> dict[str, tuple[ir.Shape, bool]]:
        return ir.state_shapes(node, path + ".")

    def pretrained(self, path: str, node: ir.Node) -> str:
        """"pretrained", "new", "partly" (a Sequential holding both), or "" (no tensors, no weights)."""
        keys = list(self.state(path, node))
        if self.weights is None or not keys:
            return ""
        new = [k for k in keys if any(under(k, s) for s in self.skip)]
        return "new" if len(new) == len(keys) else "pretrained" if not new else "partly"

    def trains(self, path: str, node: ir.Node) -> str:
        """"yes", "no" (frozen for the whole run), "from epoch N", "partly", or "" (no parameters)."""
        starts = {trains_from(k, self.freeze, self.unfreeze) for k, (_, param) in self.state(path, node).items()
                  if param}
        if not starts:
            return ""
        if len(starts) > 1:
            return "partly"
        start = starts.pop()
        return "yes" if start == 1 else "no" if start is None else f"from epoch {start}"

    def label(self, path: str, node: ir.Node) -> str:
        """A short tag for a diagram box: `pretrained · frozen`, `new`, `pretrained · from epoch 3`."""
        trains = self.trains(path, node)
        frozen = {"no": "frozen", "partly": "partly frozen"}.get(trains, "")
        if trains.startswith("from epoch"):
            frozen = "frozen until epoch " + trains.split()[-1]
        return "  ·  ".join(t for t in (self.pretrained(path, node), frozen) if t)

    def frozen(self, path: str, node: ir.Node) -> bool:
        return self.trains(path, node) not in ("yes", "")

    def parameters(self) -> tuple[int, int, int]:
        """(parameters that train from epoch 1, from a later epoch, never)."""
        import math

        first = later = never = 0
        for k, (shape, param) in ir.state_shapes(self.model.root).items():
            if not param:
                continue
            n = math.prod(int(d or 0) for d in shape)
            start = trains_from(k, self.freeze, self.unfreeze)
            if start == 1:
                first += n
            elif start is None:
                never += n
            else:
                later += n
        return first, later, never
