"""Checked IR -> torch objects: the model, loss, optimizer, scheduler.

In: ``ir.CheckedModel`` / ``ir.TrainConfig``. Out: ``nn.Sequential(OrderedDict)`` keyed by
the spec's layer names (blocks, named repeats and `{ ... }` nested Sequentials, residuals
``layers.Residual``, branch constructs ``layers.Add`` / ``Concat`` / ``Multiply`` whose
children are the branches by name), and the training objects.

Initialisation order (documented in docs/language.md): under ``torch.manual_seed(seed)``
every module is constructed in source order (exactly as a hand-written Sequential would
be), then the model-wide ``init:`` is applied to every weight with >= 2 dimensions in
``named_parameters`` order, then each layer's own ``with`` initialisers in source order.
"""

from __future__ import annotations

import importlib
from collections import OrderedDict
from typing import Any

import torch
from torch import nn

from netspec import catalogue as cat
from netspec import ir
from netspec.checker.padding import PaddingPlan, padding_plan
from netspec.errors import NetspecError


def _factory(dotted: str) -> Any:
    module, _, name = dotted.rpartition(".")
    return getattr(importlib.import_module(module), name)


def build_layer(node: ir.LayerNode) -> nn.Module:
    spec = cat.LAYERS[node.type]
    try:
        return _factory(spec.factory)(**dict(node.kwargs))
    except (ValueError, TypeError, RuntimeError) as e:  # the checker's domains should make this unreachable
        raise NetspecError.at(node.span, f"torch refused {node.type}: {str(e).splitlines()[0]}") from None


def build_node(node: ir.Node, plan: PaddingPlan | None = None, path: str = "") -> nn.Module:
    """The module of `node`; `plan`: over padded texts, which children take the padding mask."""
    if isinstance(node, ir.LayerNode):
        return build_layer(node)
    prefix = f"{path}." if path else ""
    if isinstance(node, ir.BranchNode):
        branches = OrderedDict((c.name, build_node(c, plan, prefix + c.name)) for c in node.branches)
        masked = {"masked": plan.children(path, list(branches))} if plan is not None else {}
        return _factory(cat.BRANCHES[node.op].factory)(branches, **dict(node.kwargs), **masked)
    children = OrderedDict((c.name, build_node(c, plan, prefix + c.name)) for c in node.children)
    if plan is not None:
        from netspec.layers import MaskedResidual, MaskedSequential

        kind = MaskedResidual if node.kind == "residual" else MaskedSequential
        return kind(children, masked=plan.children(path, list(children)))
    if node.kind == "residual":
        from netspec.layers import Residual

        return Residual(children)
    return nn.Sequential(children)


def _apply_init(tensor: torch.Tensor, init: ir.InitSpec) -> None:
    spec = cat.INITIALISERS[init.name]
    fn = getattr(nn.init, spec.function)
    with torch.no_grad():
        fn(tensor, **dict(init.kwargs))


def build_model(model: ir.CheckedModel, seed: int = 0) -> nn.Sequential:
    """The model as an nn.Sequential (over padded texts, a layers.MaskedSequential: the same
    modules and state_dict, and the layers that must skip padding get its mask)."""
    torch.manual_seed(seed)
    net = build_node(model.root, padding_plan(model) if model.padded else None)
    assert isinstance(net, nn.Sequential)
    if model.init is not None:
        for name, p in net.named_parameters():
            leaf = name.rsplit(".", 1)[-1]
            if leaf.startswith("weight") and p.dim() >= 2:
                _apply_init(p, model.init)
    for path, node in ir.walk(model.root):
        if not isinstance(node, ir.LayerNode):
            continue
        module = net.get_submodule(path)
        for key, init in node.inits:
            for name, p in module.named_parameters(recurse=False):
                if name == key or name.startswith(key + "_"):
                    if cat.INITIALISERS[init.name].matrix_only and p.dim() < 2:
                        continue
                    _apply_init(p, init)
    return net


def example_input(model: ir.CheckedModel, batch: int = 2, dynamic: int = 5, seed: int = 0) -> torch.Tensor:
    """A random batch of the model's input shape (`_` dims set to `dynamic`)."""
    g = torch.Generator().manual_seed(seed)
    shape = (batch, *(dynamic if d is None else d for d in model.input_shape))
    first = ir.first_layer(model)
    if first is not None and cat.LAYERS[first.type].int_input:
        return torch.randint(0, int(dict(first.kwargs)["num_embeddings"]), shape, generator=g)
    return torch.randn(shape, generator=g)


def build_loss(cfg: ir.CallValue) -> nn.Module:
    spec = cat.LOSSES[cfg.name]
    kwargs = {k: (torch.tensor(v, dtype=torch.float32) if k in ("weight", "pos_weight") and v is not None else v)
              for k, v in cfg.kwargs}
    return _factory(spec.factory)(**kwargs)


def build_optimizer(cfg: ir.CallValue, params) -> torch.optim.Optimizer:
    """The optimizer with the spec's arguments. SGD, Adam, AdamW and Adagrad use torch's fused
    kernels unless `fused=` or `foreach=` is given: same algorithm, ~30% faster steps on CPU
    (torch itself defaults to the per-tensor loop there); tests/test_build.py checks the fused
    path against the reference implementation."""
    spec = cat.OPTIMIZERS[cfg.name]
    params = list(params)
    kwargs = dict(cfg.kwargs)
    devices = {p.device.type for p in params}
    if takes_fused(cfg) and devices <= {"cpu", "cuda"} and all(p.is_floating_point() for p in params):
        kwargs["fused"] = True
    return _factory(spec.factory)(params, **kwargs)


def takes_fused(cfg: ir.CallValue) -> bool:
    """netspec runs this optimizer with torch's fused kernels (on CPU and CUDA parameters)."""
    kwargs = dict(cfg.kwargs)
    return cat.OPTIMIZERS[cfg.name].fused and "fused" not in kwargs and "foreach" not in kwargs


def build_scheduler(cfg: ir.CallValue | None, optimizer: torch.optim.Optimizer, epochs: int, steps_per_epoch: int):
    if cfg is None:
        return None
    spec = cat.SCHEDULERS[cfg.name]
    kwargs = {k: (list(v) if isinstance(v, tuple) else v) for k, v in cfg.kwargs}
    if cfg.name == "OneCycleLR" and kwargs.get("total_steps") is None:
        kwargs.pop("total_steps", None)
        kwargs.update(epochs=epochs, steps_per_epoch=steps_per_epoch)
    return _factory(spec.factory)(optimizer, **kwargs)
