"""The model as source: `build_model()` of the ejected program, `nn.Sequential(OrderedDict)`
written as people write it (positional leading arguments, torch's defaults left out, a
`# -> [shape]` note per row), and the spec's initialisers.

In: ``ir.CheckedModel``. Out: the function's text and the netspec.layers classes it uses.
"""

from __future__ import annotations

import inspect
from typing import Any

from netspec import catalogue as cat
from netspec import ir
from netspec.errors import error
from netspec.tools.eject.source import LINE, call, fit_line, nondefault, py, same, shape_text


def _signature_defaults(dotted: str) -> dict[str, Any]:
    """The constructor defaults of a torch (or netspec) class, by parameter name."""
    import importlib

    module, _, name = dotted.rpartition(".")
    try:
        cls = getattr(importlib.import_module(module), name)
        params = inspect.signature(cls.__init__).parameters.values()
    except (ImportError, AttributeError, TypeError, ValueError):
        return {}
    return {p.name: p.default for p in params if p.default is not inspect.Parameter.empty}


def _positional(spec: cat.LayerSpec, kwargs: dict[str, Any]) -> list[str]:
    """The leading required (or inferred) arguments, written positionally as people write
    them (`nn.Conv2d(1, 32, 3, padding=1)`), where the torch signature has them in that order."""
    import importlib

    module, _, name = spec.factory.rpartition(".")
    try:
        cls = getattr(importlib.import_module(module), name)
        names = [p.name for p in list(inspect.signature(cls.__init__).parameters.values())[1:]
                 if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    except (ImportError, AttributeError, TypeError, ValueError):
        return []
    out = []
    for i, p in enumerate(spec.params):
        if not (p.inferred or p.default is cat.REQUIRED) or p.name not in kwargs or i >= len(names) \
                or names[i] != p.name:
            break
        out.append(p.name)
    return out


class ModelWriter:
    def __init__(self, plan: Any = None) -> None:
        self.own: list[str] = []  # netspec.layers classes used
        self.plan = plan  # checker/padding.py's PaddingPlan of a model over padded texts, else None

    def factory(self, dotted: str) -> str:
        module, _, name = dotted.rpartition(".")
        if module == "torch.nn":
            return f"nn.{name}"
        if module == "netspec.layers":
            if name not in self.own:
                self.own.append(name)
            return name
        raise error(f"eject: cannot write the factory {dotted}")

    def masked(self, path: str, nodes: tuple[ir.Node, ...]) -> list[str]:
        """`masked=[...]` of a container over padded texts: its children that take the mask."""
        if self.plan is None:
            return []
        return [f"masked={py(self.plan.children(path, [c.name for c in nodes]))}"]

    def node(self, node: ir.Node, indent: int, path: str = "") -> str:
        if isinstance(node, ir.LayerNode):
            spec = cat.LAYERS[node.type]
            kwargs = dict(node.kwargs)
            positional = _positional(spec, kwargs)
            rest = {k: v for k, v in kwargs.items() if k not in positional}
            torch_defaults = _signature_defaults(spec.factory)
            # an argument is left out only where torch's own default is the same value
            # (netspec's `Softmax` means dim=-1; torch's bare Softmax() means an implicit dim)
            keep = tuple(k for k, _ in spec.fixed) + tuple(
                k for k, v in rest.items()
                if torch_defaults and (k not in torch_defaults or not same(v, torch_defaults[k])))
            args = [py(kwargs[k]) for k in positional] + nondefault(spec.params, rest, keep)
            return call(self.factory(spec.factory), args)
        if isinstance(node, ir.BranchNode):
            bspec = cat.BRANCHES[node.op]
            extra = nondefault(bspec.params, dict(node.kwargs))
            inner = self.ordered(node.branches, indent, path)
            return call(self.factory(bspec.factory), [inner, *extra, *self.masked(path, node.branches)])
        inner = self.ordered(node.children, indent, path)
        if self.plan is not None:
            kind = "MaskedResidual" if node.kind == "residual" else "MaskedSequential"
            return call(self.factory(f"netspec.layers.{kind}"), [inner, *self.masked(path, node.children)])
        if node.kind == "residual":
            return call(self.factory("netspec.layers.Residual"), [inner])
        return f"nn.Sequential({inner})"

    def ordered(self, nodes: tuple[ir.Node, ...], indent: int, path: str = "") -> str:
        pad = " " * (indent + 4)
        rows = []
        for c in nodes:
            row = f"{pad}({py(c.name)}, {self.node(c, indent + 4, f'{path}.{c.name}' if path else c.name)}),"
            note = f"  # -> {shape_text(c.out_shape)}"
            first = row.split("\n", 1)[0]
            if len(first) + len(note) <= LINE:
                row = row.replace(first, first + note, 1) if "\n" in row else row + note
            else:
                rows.append(f"{pad}{note.strip()}")
            rows.append(fit_line(row, indent + 8))
        return "OrderedDict([\n" + "\n".join(rows) + "\n" + " " * indent + "])"


def _init_call(init: ir.InitSpec, target: str) -> str:
    spec = cat.INITIALISERS[init.name]
    args = nondefault(spec.params, dict(init.kwargs))
    return f"nn.init.{spec.function}({', '.join([target, *args])})"


def model_code(model: ir.CheckedModel, seed_name: str = "SEED") -> tuple[str, list[str]]:
    from netspec.checker.padding import padding_plan

    plan = padding_plan(model) if model.padded else None
    w = ModelWriter(plan)
    body = w.ordered(model.root.children, 4)
    top = f"MaskedSequential({body}, {w.masked('', model.root.children)[0]})" if plan is not None else \
        f"nn.Sequential({body})"
    if plan is not None:
        w.factory("netspec.layers.MaskedSequential")
    lines = [
        "def build_model() -> nn.Sequential:",
        f'    """{model.name}: input {shape_text(model.input_shape)} -> output {shape_text(model.output_shape)}.',
        "    Every module is constructed in this order under the seed, as netspec does." +
        (" The texts are padded: the\n    layers named in `masked` get the padding mask (netspec.layers.MaskedSequential)."
         if plan is not None else "") + "\"\"\"",
        f"    torch.manual_seed({seed_name})",
        f"    model = {top}",
    ]
    if model.init is not None:
        matrix = "p.dim() >= 2"
        lines += [f"    # init: {model.init.name} for every weight with >= 2 dimensions, in named_parameters order",
                  "    with torch.no_grad():",
                  "        for name, p in model.named_parameters():",
                  f'            if name.rsplit(".", 1)[-1].startswith("weight") and {matrix}:',
                  f"                {_init_call(model.init, 'p')}"]
    for path, node in ir.walk(model.root):
        for key, init in node.inits if isinstance(node, ir.LayerNode) else ():
            skip = " and p.dim() >= 2" if cat.INITIALISERS[init.name].matrix_only else ""
            lines += [f"    # {path}: {key}={init.name}",
                      "    with torch.no_grad():",
                      f"        for name, p in model.get_submodule({py(path)}).named_parameters(recurse=False):",
                      f'            if (name == {py(key)} or name.startswith({py(key + "_")})){skip}:',
                      f"                {_init_call(init, 'p')}"]
    lines.append("    return model")
    return "\n".join(lines), w.own

