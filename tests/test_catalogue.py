"""The catalogue against torch as the oracle: for every layer and each of its example
argument sets, the inferred output shape equals the real module's output shape, and the
parameter names and shapes netspec predicts equal torch's named_parameters."""

from __future__ import annotations

import pytest
import torch

import netspec
from netspec import catalogue as cat
from netspec.builder import build_model, example_input
from netspec.ir import layers

CASES = [(row.name, shape, text) for row in cat.LAYERS_LIST for shape, text in row.examples]


def compile_one(shape: str, text: str):
    src = f"model m {{\n    input: {shape}\n    {text}\n}}\n"
    return netspec.check(netspec.parse(src, "case.net"))


def test_every_layer_has_examples():
    missing = [row.name for row in cat.LAYERS_LIST if not row.examples]
    assert missing == []


@pytest.mark.parametrize("layer,shape,text", CASES, ids=[f"{t}@{s}" for _, s, t in CASES])
def test_inferred_shape_matches_torch(layer, shape, text):
    checked = compile_one(shape, text)
    node = layers(checked.model.root)[0]
    assert node.type == layer
    net = build_model(checked.model, seed=0).eval()
    x = example_input(checked.model, batch=2, dynamic=6)
    with torch.no_grad():
        y = net(x)
    want = tuple(6 if d is None else d for d in checked.model.output_shape)  # `_` dims are 6 here
    assert tuple(y.shape[1:]) == want
    predicted = cat.parameter_shapes(node.type, dict(node.kwargs))
    actual = [(n.split(".", 1)[1], tuple(p.shape)) for n, p in net.named_parameters()]
    assert predicted == actual


@pytest.mark.parametrize("shape", ["[_, 5]", "[3, _]"])
def test_dynamic_dims_propagate(shape):
    checked = compile_one(shape, "Linear(4)") if shape == "[_, 5]" else compile_one(shape, "Conv1d(2, 3)")
    out = checked.model.output_shape
    assert None in out


def test_tables_are_consistent():
    for table in cat.ALL_KINDS.values():
        for name, row in table.items():
            assert row.name == name
            names = [p.name for p in row.params]
            assert len(names) == len(set(names)), name


def test_layer_factories_exist():
    from netspec.builder import _factory

    for row in cat.LAYERS_LIST:
        assert callable(_factory(row.factory)), row.name
    for row in cat.LOSSES_LIST:
        assert callable(_factory(row.factory))
    for row in cat.OPTIMIZERS_LIST:
        assert callable(_factory(row.factory))
    for row in cat.SCHEDULERS_LIST:
        assert callable(_factory(row.factory))
    for row in cat.INITIALISERS_LIST:
        assert callable(getattr(torch.nn.init, row.function))


def test_loss_optimizer_scheduler_defaults_match_torch():
    """Defaults in the catalogue are torch's own (inspect the signatures)."""
    import inspect

    from netspec.builder import _factory

    for table in (cat.LOSSES_LIST, cat.OPTIMIZERS_LIST, cat.SCHEDULERS_LIST):
        for row in table:
            sig = inspect.signature(_factory(row.factory))
            for p in row.params:
                assert p.name in sig.parameters, (row.name, p.name)
                d = sig.parameters[p.name].default
                if p.default is not cat.REQUIRED and d is not inspect.Parameter.empty and not isinstance(d, torch.Tensor):
                    want = tuple(d) if isinstance(d, (list, tuple)) else d
                    assert p.default == want or (p.name == "lr" and row.name == "SGD"), (row.name, p.name, p.default, d)
