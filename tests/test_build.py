"""The compiled model is exactly what a careful engineer would hand-write."""

from __future__ import annotations

from collections import OrderedDict

import pytest
import torch
from torch import nn

import netspec
from netspec import layers
from tests.conftest import EXAMPLES


def assert_same(a: nn.Module, b: nn.Module) -> None:
    sa, sb = a.state_dict(), b.state_dict()
    assert list(sa) == list(sb)
    for k in sa:
        assert sa[k].shape == sb[k].shape, k
        assert torch.equal(sa[k], sb[k]), k
    assert [type(m) for m in a.modules()] == [type(m) for m in b.modules()]


def test_mnist_mlp_equals_hand_written():
    built = netspec.compile_file(str(EXAMPLES / "mnist_mlp.net"), seed=0)
    torch.manual_seed(0)
    hand = nn.Sequential(OrderedDict([
        ("fc1", nn.Linear(784, 128)),
        ("relu1", nn.ReLU()),
        ("fc2", nn.Linear(128, 64)),
        ("relu2", nn.ReLU()),
        ("output", nn.Linear(64, 10)),
    ]))
    assert isinstance(built, nn.Sequential)
    assert list(built._modules) == ["fc1", "relu1", "fc2", "relu2", "output"]
    assert_same(built, hand)
    x = torch.randn(5, 784)
    assert torch.equal(built(x), hand(x))


def test_mnist_cnn_equals_hand_written():
    built = netspec.compile_file(str(EXAMPLES / "mnist.net"), seed=3)
    torch.manual_seed(3)

    def block(cin, cout):
        return nn.Sequential(OrderedDict([("conv2d1", nn.Conv2d(cin, cout, 3, padding=1)), ("relu1", nn.ReLU()),
                                          ("maxpool2d1", nn.MaxPool2d(2))]))

    hand = nn.Sequential(OrderedDict([
        ("conv1", block(1, 32)), ("conv2", block(32, 64)), ("flatten1", nn.Flatten()),
        ("fc1", nn.Linear(64 * 7 * 7, 128)), ("relu1", nn.ReLU()), ("dropout1", nn.Dropout(0.25)),
        ("output", nn.Linear(128, 10)),
    ]))
    assert_same(built, hand)


def test_residual_and_lstm(spec_file):
    path = spec_file("""
model seq {
    input: [_, 4]
    rnn: LSTM(8, num_layers=2)
    res: residual { Linear(8); Tanh }
    Last
    Linear(1)
}
""")
    built = netspec.compile_file(path, seed=1)
    torch.manual_seed(1)
    rnn = layers.LSTM(4, 8, num_layers=2, batch_first=True)
    res = layers.Residual(OrderedDict([("linear1", nn.Linear(8, 8)), ("tanh1", nn.Tanh())]))
    hand = nn.Sequential(OrderedDict([("rnn", rnn), ("res", res), ("last1", layers.Last()),
                                      ("linear1", nn.Linear(8, 1))]))
    assert_same(built, hand)
    x = torch.randn(3, 7, 4)
    assert torch.equal(built(x), hand(x))
    body = nn.Sequential(nn.Linear(8, 8), nn.Tanh())
    body.load_state_dict({k.replace("linear1", "0"): v for k, v in res.state_dict().items()})
    h = torch.randn(2, 8)
    assert torch.allclose(res(h), h + body(h))


def test_initialisers_are_deterministic_and_applied(spec_file):
    path = spec_file("""
model m {
    input: [6]
    init: constant(0.5)
    a: Linear(4) with bias=constant(2)
    b: Linear(3) with weight=zeros
    norm: BatchNorm1d
}
""")
    net = netspec.compile_file(path, seed=0)
    assert torch.all(net.a.weight == 0.5)
    assert torch.all(net.a.bias == 2)
    assert torch.all(net.b.weight == 0)
    assert torch.all(net.norm.weight == 1)  # 1-D weights are not touched by the model-wide init
    again = netspec.compile_file(path, seed=0)
    assert_same(net, again)


def test_random_init_order_is_documented(spec_file):
    """Model-wide init runs in named_parameters order after construction."""
    path = spec_file("model m {\n input: [6]\n init: normal(std=0.1)\n a: Linear(4)\n b: Linear(2)\n}\n")
    net = netspec.compile_file(path, seed=7)
    torch.manual_seed(7)
    hand = nn.Sequential(OrderedDict([("a", nn.Linear(6, 4)), ("b", nn.Linear(4, 2))]))
    with torch.no_grad():
        for name, p in hand.named_parameters():
            if name.endswith("weight"):
                nn.init.normal_(p, std=0.1)
    assert_same(net, hand)


@pytest.mark.parametrize("path", sorted(EXAMPLES.glob("*.net")), ids=lambda p: p.stem)
def test_examples_build_and_run(path):
    checked = netspec.load(str(path))
    net = netspec.build(checked)
    from netspec.builder import example_input

    out = net.eval()(example_input(checked.model))
    assert tuple(out.shape[1:]) == tuple(d if d is not None else out.shape[i + 1]
                                         for i, d in enumerate(checked.model.output_shape))


@pytest.mark.parametrize("opt", ["SGD(lr=0.05, momentum=0.9, weight_decay=1e-3)", "Adam(lr=1e-2)",
                                 "AdamW(lr=1e-2)", "Adagrad(lr=0.1)"])
def test_fused_optimizer_matches_reference(opt):
    """netspec picks torch's fused kernels; they must agree with the per-tensor reference."""
    from netspec import ir
    from netspec.builder import build_optimizer

    text = f"model m {{\n input: [1]\n Linear(1)\n}}\ntrain {{ optimizer: {opt} }}\n"
    value = netspec.check(netspec.parse(text, "opt.net")).train.optimizer
    torch.manual_seed(0)
    a = nn.Sequential(nn.Linear(6, 16), nn.Tanh(), nn.Linear(16, 1))
    b = nn.Sequential(nn.Linear(6, 16), nn.Tanh(), nn.Linear(16, 1))
    b.load_state_dict(a.state_dict())
    fused = build_optimizer(value, a.parameters())
    assert fused.defaults.get("fused") is True
    reference = build_optimizer(ir.CallValue(value.name, value.kwargs + (("foreach", False),)), b.parameters())
    assert not reference.defaults.get("fused")
    x, y = torch.randn(64, 6), torch.randn(64, 1)
    for _ in range(50):
        for net, o in ((a, fused), (b, reference)):
            o.zero_grad()
            nn.functional.mse_loss(net(x), y).backward()
            o.step()
    for (ka, va), (_kb, vb) in zip(a.state_dict().items(), b.state_dict().items()):
        assert torch.allclose(va, vb, atol=1e-5, rtol=1e-4), ka
