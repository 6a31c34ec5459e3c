"""`from: torchvision("...")`: a state_dict with torchvision's key names and layout (written
from tests/tv_models.py, a hand-written torchvision-equivalent module, in the form the
published file has: zip or legacy format, with or without num_batches_tracked, DenseNet's
2017 key names), loaded through netspec's key map into the zoo spec, gives torchvision's
outputs to 1e-5; `check` accepts it from the header alone. No network: `file=` names the copy.

    PYTHONPATH=$PWD python -m pytest -q tests/test_finetune_zoo.py
"""

from __future__ import annotations

import re

import pytest
import torch
from torch import nn

import netspec
from netspec.train.transfer import pretrained
from tests import tv_models
from tests.conftest import EXAMPLES

# name, input size (small: the key map does not depend on it), the published file's format,
# whether it holds num_batches_tracked (None: no BatchNorm)
CASES = [
    ("resnet18", 64, "zip", False),
    ("resnet50", 64, "zip", True),
    ("densenet121", 64, "legacy", False),
    ("mobilenet_v2", 64, "zip", True),
    ("squeezenet1_1", 64, "legacy", None),
    pytest.param("vgg16", 32, "legacy", None, marks=pytest.mark.slow),  # 553 MB: once
]


def randomize(model: nn.Module, seed: int) -> None:
    """BatchNorm's affine weights and statistics unlike their initialisation (the convolutions
    and linear layers keep torch's random initialisation, drawn apart from the zoo model's)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.weight.copy_(torch.rand(m.weight.shape, generator=g) + 0.5)
                m.bias.copy_(torch.randn(m.bias.shape, generator=g) * 0.1)
                m.running_mean.copy_(torch.randn(m.running_mean.shape, generator=g) * 0.1)
                m.running_var.copy_(torch.rand(m.running_var.shape, generator=g) + 0.5)
                m.num_batches_tracked.fill_(7)


def published_layout(name: str, state: dict, counters: bool | None) -> dict:
    """The state_dict as torchvision's published file holds it."""
    if counters is False:
        state = {k: v for k, v in state.items() if not k.endswith("num_batches_tracked")}
    if name == "densenet121":  # the 2017 file: denselayerN.norm.1.weight for torchvision's norm1.weight
        state = {re.sub(r"(denselayer\d+\.(?:norm|relu|conv))([12])\.(weight|bias|running_mean|running_var)$",
                        r"\1.\2.\3", k): v for k, v in state.items()}
    return state


@pytest.mark.parametrize("name,size,fmt,counters", CASES)
def test_torchvision_layout_loads_into_the_zoo_spec(name, size, fmt, counters, tmp_path):
    tv = tv_models.BUILDERS[name]()
    randomize(tv, seed=1)
    tv.eval()
    state = published_layout(name, tv.state_dict(), counters)
    if name == "densenet121":
        assert any(".norm.1." in k for k in state)
    path = tmp_path / f"{name}.pth"
    torch.save(state, path, _use_new_zipfile_serialization=(fmt == "zip"))
    spec = tmp_path / f"{name}.net"
    spec.write_text((EXAMPLES / "zoo" / f"{name}.net").read_text()
                    + f'\nweights {{\n    from: torchvision("{name}", file="{path.name}")\n}}\n')
    checked = netspec.load(str(spec), (f"model.input=[3, {size}, {size}]",), read_data=True)  # header-only check
    model = netspec.build(checked)
    report = pretrained(model, checked.weights, checked.weights.span)
    model.eval()
    total = len(model.state_dict())
    assert report[0].startswith(f"weights: {len(state) if counters is not False else total - _counters(model)} of "
                                f"{total} tensors loaded from {path} (torchvision(\"{name}\") layout")
    if counters is False:
        assert any("num_batches_tracked" in line and "set to 0" in line for line in report)
    x = torch.randn(2, 3, size, size, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        want, got = tv(x), model(x)
    scale = float(want.abs().max())
    assert got.shape == want.shape
    assert float((got - want).abs().max()) <= 1e-5 * max(1.0, scale)


def _counters(model: nn.Module) -> int:
    return sum(k.endswith("num_batches_tracked") for k in model.state_dict())


def test_a_wrong_layout_is_listed_not_loaded(tmp_path):
    """resnet18's file for the resnet50 spec: every mismatch by name, at the weights section."""
    tv = tv_models.resnet18()
    path = tmp_path / "r18.pth"
    torch.save(tv.state_dict(), path)
    spec = tmp_path / "r50.net"
    spec.write_text((EXAMPLES / "zoo" / "resnet50.net").read_text()
                    + f'\nweights {{\n    from: torchvision("resnet50", file="{path.name}")\n}}\n')
    with pytest.raises(netspec.NetspecError) as e:
        netspec.load(str(spec), read_data=True)
    text = e.value.render()
    assert "do not fit model `resnet50`" in text
    assert "missing from the file: layer1.bottleneck_down1.add1.main.conv3.weight [256, 64, 1, 1]" in text
    assert "different shape: fc.weight: [1000, 512] in the file, [1000, 2048] in the model" in text
