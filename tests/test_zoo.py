"""The model zoo (examples/zoo/*.net): the published parameter counts, output shapes checked
by a real forward pass, and outputs equal to hand-written reference modules (transcribed
from torchvision, milesial/Pytorch-UNet or the papers) carrying the same weights; `netspec
check` fast enough for editors; ONNX exports verified against onnxruntime.

    PYTHONPATH=$PWD python -m pytest -q tests/test_zoo.py
"""

from __future__ import annotations

import csv
import os
import subprocess
from collections import OrderedDict

import numpy as np
import onnxruntime as ort
import pytest
import torch
import torch.nn.functional as F
from torch import nn

import netspec
from netspec.builder import build_model, example_input
from netspec.deploy.export import export_model
from netspec.errors import ExportError
from netspec.ir import parameter_count
from netspec.tools.summary import summary_text
from tests.conftest import EXAMPLES, ROOT, netspec_cmd

ZOO = EXAMPLES / "zoo"

# torchvision's `num_params` (VGG-16, ResNet-18/50, MobileNetV2, DenseNet-121, SqueezeNet 1.1),
# the papers' counts (LeNet-5; U-Net: 1 input channel, 2 classes, no BatchNorm); the last two
# are this zoo's own models, counted by hand and equal to their reference modules' counts.
PUBLISHED = {
    "lenet5": 61_706,
    "vgg16": 138_357_544,
    "resnet18": 11_689_512,
    "resnet50": 25_557_032,
    "mobilenet_v2": 3_504_872,
    "densenet121": 7_978_856,
    "squeezenet1_1": 1_235_496,
    "unet": 31_030_658,
    "se_cnn": 487_326,
    "transformer_text": 19_842,
    "resnet20": 269_722,  # He et al. 2015, table 6: 0.27M (CIFAR-10, option A shortcuts)
}


def load(name: str, *overrides: str):
    return netspec.load(str(ZOO / f"{name}.net"), overrides)


def test_zoo_is_complete_and_formatted():
    from netspec.syntax.format import format_text

    assert sorted(p.stem for p in ZOO.glob("*.net")) == sorted(PUBLISHED)
    for path in sorted(ZOO.glob("*.net")):
        assert format_text(path.read_text(), str(path)) == path.read_text(), f"netspec fmt {path}"


@pytest.mark.parametrize("name", sorted(PUBLISHED))
def test_parameter_count_is_published(name):
    checked = load(name)
    n = PUBLISHED[name]
    assert parameter_count(checked.model.root) == n
    assert f"Total params: {n:,}\n" in summary_text(checked)
    assert f"# {n:,} parameters" in (ZOO / f"{name}.net").read_text()  # the header says it too


@pytest.mark.parametrize("name", sorted(PUBLISHED))
def test_forward_gives_the_checked_shape(name):
    checked = load(name)
    net = build_model(checked.model, seed=0).eval()
    assert sum(p.numel() for p in net.parameters()) == PUBLISHED[name]
    x = example_input(checked.model, batch=2)
    with torch.no_grad():
        y = net(x)
    assert tuple(y.shape) == (2, *checked.model.output_shape)


# ---------------------------------------------------------------- same weights, same outputs


def randomize_norms(net: nn.Module) -> None:
    """BatchNorm affine parameters and running statistics away from their identity defaults,
    so that eval-mode normalisation is part of the comparison."""
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for m in net.modules():
            if isinstance(m, nn.modules.batchnorm._BatchNorm):
                m.weight.uniform_(0.5, 1.5, generator=g)
                m.bias.normal_(0.0, 0.1, generator=g)
                m.running_mean.normal_(0.0, 0.1, generator=g)
                m.running_var.uniform_(0.5, 1.5, generator=g)


def copy_weights(src: nn.Module, dst: nn.Module) -> None:
    """Load `src`'s state into `dst` by position: the same number of tensors, with the same
    shapes and the same kind (weight, bias, running_mean, ...), in the same order."""
    a, b = src.state_dict(), dst.state_dict()
    assert len(a) == len(b)
    for (ka, va), (kb, vb) in zip(a.items(), b.items()):
        assert va.shape == vb.shape, (ka, kb)
        assert ka.rsplit(".", 1)[-1] == kb.rsplit(".", 1)[-1], (ka, kb)
    dst.load_state_dict(OrderedDict(zip(b, a.values())))


def assert_same_as(name: str, reference: nn.Module, *overrides: str) -> None:
    checked = load(name, *overrides)
    net = build_model(checked.model, seed=0)
    randomize_norms(net)
    copy_weights(net, reference)
    assert sum(p.numel() for p in reference.parameters()) == PUBLISHED[name]
    net.eval()
    reference.eval()
    x = example_input(checked.model, batch=2)
    with torch.no_grad():
        got, want = net(x), reference(x)
    assert tuple(got.shape) == tuple(want.shape) == (2, *checked.model.output_shape)
    scale = want.abs().max().item()
    assert scale > 0
    assert (got - want).abs().max().item() <= 1e-5 * scale


# LeNet-5 (LeCun et al. 1998), on MNIST padded to 32x32


class LeNet5(nn.Module):
    def __init__(self):
        super().__init__()
        self.c1 = nn.Conv2d(1, 6, 5)
        self.c3 = nn.Conv2d(6, 16, 5)
        self.c5 = nn.Conv2d(16, 120, 5)
        self.f6 = nn.Linear(120, 84)
        self.output = nn.Linear(84, 10)

    def forward(self, x):
        x = F.pad(x, (2, 2, 2, 2))
        x = F.avg_pool2d(torch.tanh(self.c1(x)), 2)
        x = F.avg_pool2d(torch.tanh(self.c3(x)), 2)
        x = torch.tanh(self.c5(x)).flatten(1)
        return self.output(torch.tanh(self.f6(x)))


# torchvision.models.vgg: make_layers(cfgs["D"]) and VGG


class VGG(nn.Module):
    def __init__(self, cfg=(64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M"),
                 num_classes=1000):
        super().__init__()
        layers: list[nn.Module] = []
        in_channels = 3
        for v in cfg:
            if v == "M":
                layers += [nn.MaxPool2d(kernel_size=2, stride=2)]
            else:
                layers += [nn.Conv2d(in_channels, v, kernel_size=3, padding=1), nn.ReLU(inplace=True)]
                in_channels = v
        self.features = nn.Sequential(*layers)
        self.avgpool = nn.AdaptiveAvgPool2d((7, 7))
        self.classifier = nn.Sequential(
            nn.Linear(512 * 7 * 7, 4096), nn.ReLU(True), nn.Dropout(p=0.5),
            nn.Linear(4096, 4096), nn.ReLU(True), nn.Dropout(p=0.5),
            nn.Linear(4096, num_classes),
        )

    def forward(self, x):
        x = self.avgpool(self.features(x))
        return self.classifier(torch.flatten(x, 1))


# torchvision.models.resnet: BasicBlock, Bottleneck, ResNet


def conv3x3(in_planes, out_planes, stride=1):
    return nn.Conv2d(in_planes, out_planes, kernel_size=3, stride=stride, padding=1, bias=False)


def conv1x1(in_planes, out_planes, stride=1):
    return nn.Conv2d(in_planes, out_planes, kernel_size=1, stride=stride, bias=False)


class BasicBlock(nn.Module):
    expansion = 1

    def __init__(self, inplanes, planes, stride=1, downsample=None):
        super().__init__()
        self.conv1 = conv3x3(inplanes, planes, stride)
        self.bn1 = nn.BatchNorm2d(planes)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = conv3x3(planes, planes)
        self.bn2 = nn.BatchNorm2d(planes)
        self.downsample = downsample

    def forward(self, x):
        identity = x
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        if self.downsample is not None:
            identity = self.downsample(x)
        out += identity
        return self.relu(out)


class Bottleneck(nn.Module):
    expansion = 4

    def __init__(self, inplanes, planes, stride=1, downsample=None):
        super().__init__()
        self.conv1 = conv1x1(inplanes, planes)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = conv3x3(planes, planes, stride)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv3 = conv1x1(planes, planes * self.expansion)
        self.bn3 = nn.BatchNorm2d(planes * self.expansion)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample

    def forward(self, x):
        identity = x
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        if self.downsample is not None:
            identity = self.downsample(x)
        out += identity
        return self.relu(out)


class ResNet(nn.Module):
    def __init__(self, block, layers, num_classes=1000):
        super().__init__()
        self.inplanes = 64
        self.conv1 = nn.Conv2d(3, self.inplanes, kernel_size=7, stride=2, padding=3, bias=False)
        self.bn1 = nn.BatchNorm2d(self.inplanes)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(kernel_size=3, stride=2, padding=1)
        self.layer1 = self._make_layer(block, 64, layers[0])
        self.layer2 = self._make_layer(block, 128, layers[1], stride=2)
        self.layer3 = self._make_layer(block, 256, layers[2], stride=2)
        self.layer4 = self._make_layer(block, 512, layers[3], stride=2)
        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
        self.fc = nn.Linear(512 * block.expansion, num_classes)

    def _make_layer(self, block, planes, blocks, stride=1):
        downsample = None
        if stride != 1 or self.inplanes != planes * block.expansion:
            downsample = nn.Sequential(conv1x1(self.inplanes, planes * block.expansion, stride),
                                       nn.BatchNorm2d(planes * block.expansion))
        layers = [block(self.inplanes, planes, stride, downsample)]
        self.inplanes = planes * block.expansion
        layers += [block(self.inplanes, planes) for _ in range(1, blocks)]
        return nn.Sequential(*layers)

    def forward(self, x):
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return self.fc(torch.flatten(self.avgpool(x), 1))


# torchvision.models.mobilenetv2: ConvNormActivation (Conv2dNormActivation), InvertedResidual


def conv_norm_relu6(inp, oup, kernel_size=3, stride=1, groups=1):
    return nn.Sequential(nn.Conv2d(inp, oup, kernel_size, stride, (kernel_size - 1) // 2, groups=groups, bias=False),
                         nn.BatchNorm2d(oup), nn.ReLU6(inplace=True))


class InvertedResidual(nn.Module):
    def __init__(self, inp, oup, stride, expand_ratio):
        super().__init__()
        hidden_dim = int(round(inp * expand_ratio))
        self.use_res_connect = stride == 1 and inp == oup
        layers: list[nn.Module] = []
        if expand_ratio != 1:
            layers.append(conv_norm_relu6(inp, hidden_dim, kernel_size=1))
        layers += [conv_norm_relu6(hidden_dim, hidden_dim, stride=stride, groups=hidden_dim),
                   nn.Conv2d(hidden_dim, oup, 1, 1, 0, bias=False), nn.BatchNorm2d(oup)]
        self.conv = nn.Sequential(*layers)

    def forward(self, x):
        return x + self.conv(x) if self.use_res_connect else self.conv(x)


class MobileNetV2(nn.Module):
    def __init__(self, num_classes=1000):
        super().__init__()
        input_channel, last_channel = 32, 1280
        setting = [[1, 16, 1, 1], [6, 24, 2, 2], [6, 32, 3, 2], [6, 64, 4, 2], [6, 96, 3, 1], [6, 160, 3, 2],
                   [6, 320, 1, 1]]
        features: list[nn.Module] = [conv_norm_relu6(3, input_channel, stride=2)]
        for t, c, n, s in setting:
            for i in range(n):
                features.append(InvertedResidual(input_channel, c, s if i == 0 else 1, expand_ratio=t))
                input_channel = c
        features.append(conv_norm_relu6(input_channel, last_channel, kernel_size=1))
        self.features = nn.Sequential(*features)
        self.classifier = nn.Sequential(nn.Dropout(0.2), nn.Linear(last_channel, num_classes))

    def forward(self, x):
        x = F.adaptive_avg_pool2d(self.features(x), (1, 1))
        return self.classifier(torch.flatten(x, 1))


# torchvision.models.densenet: _DenseLayer, _DenseBlock, _Transition, DenseNet


class _DenseLayer(nn.Module):
    def __init__(self, num_input_features, growth_rate, bn_size):
        super().__init__()
        self.norm1 = nn.BatchNorm2d(num_input_features)
        self.relu1 = nn.ReLU(inplace=True)
        self.conv1 = nn.Conv2d(num_input_features, bn_size * growth_rate, kernel_size=1, stride=1, bias=False)
        self.norm2 = nn.BatchNorm2d(bn_size * growth_rate)
        self.relu2 = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(bn_size * growth_rate, growth_rate, kernel_size=3, stride=1, padding=1, bias=False)

    def forward(self, prev_features):
        bottleneck_output = self.conv1(self.relu1(self.norm1(torch.cat(prev_features, 1))))
        return self.conv2(self.relu2(self.norm2(bottleneck_output)))


class _DenseBlock(nn.ModuleDict):
    def __init__(self, num_layers, num_input_features, bn_size, growth_rate):
        super().__init__()
        for i in range(num_layers):
            self.add_module(f"denselayer{i + 1}", _DenseLayer(num_input_features + i * growth_rate, growth_rate, bn_size))

    def forward(self, init_features):
        features = [init_features]
        for layer in self.values():
            features.append(layer(features))
        return torch.cat(features, 1)


class _Transition(nn.Sequential):
    def __init__(self, num_input_features, num_output_features):
        super().__init__()
        self.norm = nn.BatchNorm2d(num_input_features)
        self.relu = nn.ReLU(inplace=True)
        self.conv = nn.Conv2d(num_input_features, num_output_features, kernel_size=1, stride=1, bias=False)
        self.pool = nn.AvgPool2d(kernel_size=2, stride=2)


class DenseNet(nn.Module):
    def __init__(self, growth_rate=32, block_config=(6, 12, 24, 16), num_init_features=64, bn_size=4,
                 num_classes=1000):
        super().__init__()
        self.features = nn.Sequential(OrderedDict([
            ("conv0", nn.Conv2d(3, num_init_features, kernel_size=7, stride=2, padding=3, bias=False)),
            ("norm0", nn.BatchNorm2d(num_init_features)),
            ("relu0", nn.ReLU(inplace=True)),
            ("pool0", nn.MaxPool2d(kernel_size=3, stride=2, padding=1)),
        ]))
        num_features = num_init_features
        for i, num_layers in enumerate(block_config):
            self.features.add_module(f"denseblock{i + 1}", _DenseBlock(num_layers, num_features, bn_size, growth_rate))
            num_features = num_features + num_layers * growth_rate
            if i != len(block_config) - 1:
                self.features.add_module(f"transition{i + 1}", _Transition(num_features, num_features // 2))
                num_features = num_features // 2
        self.features.add_module("norm5", nn.BatchNorm2d(num_features))
        self.classifier = nn.Linear(num_features, num_classes)

    def forward(self, x):
        out = F.adaptive_avg_pool2d(F.relu(self.features(x), inplace=True), (1, 1))
        return self.classifier(torch.flatten(out, 1))


# torchvision.models.squeezenet: Fire, SqueezeNet(version="1_1")


class Fire(nn.Module):
    def __init__(self, inplanes, squeeze_planes, expand1x1_planes, expand3x3_planes):
        super().__init__()
        self.squeeze = nn.Conv2d(inplanes, squeeze_planes, kernel_size=1)
        self.squeeze_activation = nn.ReLU(inplace=True)
        self.expand1x1 = nn.Conv2d(squeeze_planes, expand1x1_planes, kernel_size=1)
        self.expand1x1_activation = nn.ReLU(inplace=True)
        self.expand3x3 = nn.Conv2d(squeeze_planes, expand3x3_planes, kernel_size=3, padding=1)
        self.expand3x3_activation = nn.ReLU(inplace=True)

    def forward(self, x):
        x = self.squeeze_activation(self.squeeze(x))
        return torch.cat([self.expand1x1_activation(self.expand1x1(x)),
                          self.expand3x3_activation(self.expand3x3(x))], 1)


class SqueezeNet11(nn.Module):
    def __init__(self, num_classes=1000, dropout=0.5):
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(3, 64, kernel_size=3, stride=2), nn.ReLU(inplace=True),
            nn.MaxPool2d(kernel_size=3, stride=2, ceil_mode=True),
            Fire(64, 16, 64, 64), Fire(128, 16, 64, 64),
            nn.MaxPool2d(kernel_size=3, stride=2, ceil_mode=True),
            Fire(128, 32, 128, 128), Fire(256, 32, 128, 128),
            nn.MaxPool2d(kernel_size=3, stride=2, ceil_mode=True),
            Fire(256, 48, 192, 192), Fire(384, 48, 192, 192), Fire(384, 64, 256, 256), Fire(512, 64, 256, 256),
        )
        final_conv = nn.Conv2d(512, num_classes, kernel_size=1)
        self.classifier = nn.Sequential(nn.Dropout(p=dropout), final_conv, nn.ReLU(inplace=True),
                                        nn.AdaptiveAvgPool2d((1, 1)))

    def forward(self, x):
        return torch.flatten(self.classifier(self.features(x)), 1)


# milesial/Pytorch-UNet: DoubleConv, Down, Up (bilinear=False), OutConv, UNet; the convolutions
# as in the U-Net paper (with bias, no BatchNorm)


class DoubleConv(nn.Module):
    def __init__(self, in_channels, out_channels):
        super().__init__()
        self.double_conv = nn.Sequential(
            nn.Conv2d(in_channels, out_channels, kernel_size=3, padding=1), nn.ReLU(inplace=True),
            nn.Conv2d(out_channels, out_channels, kernel_size=3, padding=1), nn.ReLU(inplace=True),
        )

    def forward(self, x):
        return self.double_conv(x)


class Down(nn.Module):
    def __init__(self, in_channels, out_channels):
        super().__init__()
        self.maxpool_conv = nn.Sequential(nn.MaxPool2d(2), DoubleConv(in_channels, out_channels))

    def forward(self, x):
        return self.maxpool_conv(x)


class Up(nn.Module):
    def __init__(self, in_channels, out_channels):
        super().__init__()
        self.up = nn.ConvTranspose2d(in_channels, in_channels // 2, kernel_size=2, stride=2)
        self.conv = DoubleConv(in_channels, out_channels)

    def forward(self, x1, x2):
        return self.conv(torch.cat([x2, self.up(x1)], dim=1))  # sizes agree: no padding needed


class UNet(nn.Module):
    def __init__(self, n_channels=1, n_classes=2):
        super().__init__()
        self.inc = DoubleConv(n_channels, 64)
        self.down1 = Down(64, 128)
        self.down2 = Down(128, 256)
        self.down3 = Down(256, 512)
        self.down4 = Down(512, 1024)
        self.up1 = Up(1024, 512)
        self.up2 = Up(512, 256)
        self.up3 = Up(256, 128)
        self.up4 = Up(128, 64)
        self.outc = nn.Conv2d(64, n_classes, kernel_size=1)

    def forward(self, x):
        x1 = self.inc(x)
        x2 = self.down1(x1)
        x3 = self.down2(x2)
        x4 = self.down3(x3)
        x5 = self.down4(x4)
        x = self.up1(x5, x4)
        x = self.up2(x, x3)
        x = self.up3(x, x2)
        x = self.up4(x, x1)
        return self.outc(x)


# SE-ResNet basic blocks (Hu et al., "Squeeze-and-Excitation Networks"); the gate laid out as
# torchvision.ops.SqueezeExcitation (avgpool, fc1, fc2 as 1x1 convolutions)


class SqueezeExcitation(nn.Module):
    def __init__(self, input_channels, squeeze_channels):
        super().__init__()
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc1 = nn.Conv2d(input_channels, squeeze_channels, 1)
        self.fc2 = nn.Conv2d(squeeze_channels, input_channels, 1)
        self.activation = nn.ReLU()
        self.scale_activation = nn.Sigmoid()

    def forward(self, x):
        scale = self.scale_activation(self.fc2(self.activation(self.fc1(self.avgpool(x)))))
        return scale * x


class SEBasicBlock(nn.Module):
    def __init__(self, planes, reduction=8):
        super().__init__()
        self.conv1 = conv3x3(planes, planes)
        self.bn1 = nn.BatchNorm2d(planes)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = conv3x3(planes, planes)
        self.bn2 = nn.BatchNorm2d(planes)
        self.se = SqueezeExcitation(planes, planes // reduction)

    def forward(self, x):
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.se(self.bn2(self.conv2(out)))
        return self.relu(out + x)


def conv_bn_relu(inp, oup, stride=1):
    return nn.Sequential(conv3x3(inp, oup, stride), nn.BatchNorm2d(oup), nn.ReLU(inplace=True))


class SECNN(nn.Module):
    def __init__(self, num_classes=2):
        super().__init__()
        self.body = nn.Sequential(conv_bn_relu(3, 32), SEBasicBlock(32), conv_bn_relu(32, 64, 2), SEBasicBlock(64),
                                  conv_bn_relu(64, 128, 2), SEBasicBlock(128))
        self.fc = nn.Linear(128, num_classes)

    def forward(self, x):
        return self.fc(torch.flatten(F.adaptive_avg_pool2d(self.body(x), 1), 1))


# an encoder-only transformer classifier: learned positions (as GPT-2's wpe), torch's encoder layers


class TransformerText(nn.Module):
    def __init__(self, vocab=20, d=32, max_len=64, nhead=4, dim_feedforward=64, layers=2, classes=2):
        super().__init__()
        self.embed = nn.Embedding(vocab, d)
        self.pos = nn.Embedding(max_len, d)
        self.encoder = nn.ModuleList(
            nn.TransformerEncoderLayer(d, nhead, dim_feedforward, dropout=0.0, batch_first=True) for _ in range(layers))
        self.head = nn.Linear(d, classes)

    def forward(self, tokens):
        x = self.embed(tokens) + self.pos.weight[: tokens.shape[1]]
        for layer in self.encoder:
            x = layer(x)
        return self.head(x.mean(1))


# CIFAR ResNet-20 with the paper's option A shortcut (section 4.2), as the common PyTorch
# reproductions write it (a lambda shortcut: subsample, then F.pad the channels)


class CifarBasicBlock(nn.Module):
    def __init__(self, in_planes, planes, stride=1):
        super().__init__()
        self.conv1 = nn.Conv2d(in_planes, planes, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.pad = planes // 4 if stride != 1 or in_planes != planes else None

    def forward(self, x):
        out = self.bn2(self.conv2(F.relu(self.bn1(self.conv1(x)))))
        shortcut = x if self.pad is None else F.pad(x[:, :, ::2, ::2], (0, 0, 0, 0, self.pad, self.pad))
        return F.relu(out + shortcut)


class CifarResNet(nn.Module):
    def __init__(self, n=3, classes=10):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 16, 3, 1, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(16)
        blocks, planes = [], 16
        for width, stride in ((16, 1), (32, 2), (64, 2)):
            for i in range(n):
                blocks.append(CifarBasicBlock(planes, width, stride if i == 0 else 1))
                planes = width
        self.blocks = nn.Sequential(*blocks)
        self.fc = nn.Linear(64, classes)

    def forward(self, x):
        x = self.blocks(F.relu(self.bn1(self.conv1(x))))
        return self.fc(F.adaptive_avg_pool2d(x, 1).flatten(1))


REFERENCES = {
    "lenet5": LeNet5,
    "vgg16": VGG,
    "resnet18": lambda: ResNet(BasicBlock, [2, 2, 2, 2]),
    "resnet50": lambda: ResNet(Bottleneck, [3, 4, 6, 3]),
    "mobilenet_v2": MobileNetV2,
    "densenet121": DenseNet,
    "squeezenet1_1": SqueezeNet11,
    "unet": UNet,
    "se_cnn": SECNN,
    "transformer_text": TransformerText,
    "resnet20": CifarResNet,
}


SMALLER_INPUT = {"unet": ("model.input=[1, 64, 64]",)}  # any multiple of 16; the spec's 256 is tested above


@pytest.mark.parametrize("name", sorted(REFERENCES))
def test_same_outputs_as_reference(name):
    assert_same_as(name, REFERENCES[name](), *SMALLER_INPUT.get(name, ()))


def test_transformer_any_length_matches_reference():
    """`input: [_]`: the same weights give the same outputs for 1 to 64 tokens."""
    checked = load("transformer_text")
    net = build_model(checked.model, seed=0).eval()
    reference = TransformerText()
    copy_weights(net, reference)
    reference.eval()
    for steps in (1, 12, 64):
        x = torch.randint(0, 20, (3, steps))
        with torch.no_grad():
            assert torch.allclose(net(x), reference(x), atol=1e-6, rtol=1e-5)


# ---------------------------------------------------------------- the checker's answers


def test_unet_refuses_sizes_that_do_not_halve_four_times():
    with pytest.raises(netspec.NetspecError, match=r"concat.*\[512, 71, 71\].*\[512, 70, 70\]"):
        load("unet", "model.input=[1, 572, 572]")


@pytest.mark.parametrize("name", ["resnet50", "densenet121"])
def test_check_of_the_big_zoo_models_as_a_whole_process(name):
    """`netspec check` as a whole process. Its speed (the 0.5 s goal) is measured by
    benchmarks/check_speed.py, never asserted here: wall time depends on the machine's load."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    r = subprocess.run([*netspec_cmd(), "check", str(ZOO / f"{name}.net")], capture_output=True, text=True,
                       cwd=ROOT, env=env)
    assert r.returncode == 0, r.stdout + r.stderr
    assert f"{PUBLISHED[name]:,} parameters" in r.stdout


# ---------------------------------------------------------------- training and export


@pytest.mark.parametrize("name,least", [("transformer_text", 0.95), ("se_cnn", 0.9)])
def test_synthetic_task_is_learned(name, least, tmp_path):
    """Two epochs of the spec's own data and training (a few CPU seconds) are well above
    chance (the majority class is about 55% of either validation split)."""
    from netspec.train.trainer import train_file

    train_file(str(ZOO / f"{name}.net"), ("train.epochs=2",), out_dir=str(tmp_path / "run"), quiet=True)
    with open(tmp_path / "run" / "metrics.csv") as f:
        rows = list(csv.DictReader(f))
    assert float(rows[-1]["val_accuracy"]) >= least


@pytest.mark.parametrize("name,overrides", [
    ("squeezenet1_1", ()),
    ("se_cnn", ()),
    ("transformer_text", ()),
    ("resnet18", ("model.input=[3, 64, 64]",)),
    ("resnet20", ()),  # ZeroPad3d on [C, H, W]: channels padded in the graph
])
def test_export_matches_onnxruntime(name, overrides, tmp_path):
    checked = netspec.load(str(ZOO / f"{name}.net"), overrides, target="onnx")
    net = build_model(checked.model, seed=0)
    randomize_norms(net)
    path = tmp_path / f"{name}.onnx"
    report = export_model(checked, net, path)
    assert report["max_abs_diff"] <= 1e-4
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    x = example_input(checked.model, batch=4, dynamic=12, seed=5)
    got = session.run(None, {"input": x.numpy()})[0]
    with torch.no_grad():
        want = net.eval()(x).numpy()
    assert got.shape == (4, *checked.model.output_shape)
    assert np.abs(got - want).max() <= 1e-4 * max(1.0, float(np.abs(want).max()))


# ---------------------------------------------------------------- netspec fixes the zoo led to


def test_onnxruntime_failure_is_an_export_error(tmp_path, monkeypatch):
    """A graph onnxruntime cannot run is an ExportError naming the input shape (a message, not
    a traceback), and nothing is written."""
    checked = netspec.check(netspec.parse("model m {\n    input: [4]\n    Linear(2)\n}\n", "m.net"))

    def fail(self, *args, **kwargs):
        raise RuntimeError("[ONNXRuntimeError] : 1 : FAIL : Reshape cannot reshape\nsecond line")

    monkeypatch.setattr(ort.InferenceSession, "run", fail)
    out = tmp_path / "m.onnx"
    with pytest.raises(ExportError, match=r"onnxruntime failed on an input of shape \[3, 4\]: .*Reshape cannot reshape") as e:
        export_model(checked, build_model(checked.model, 0), out)
    assert "second line" not in str(e.value)
    assert not out.exists()


def test_repeat_count_error_in_a_block_notes_the_use(spec_file):
    """`repeat n - 1` (a stage whose first block differs) with n = 0: the error is at the
    repeat in the block, with a note at the use that gave n; likewise in a named repeat.
    (n = 1 gives `repeat 0`, which is allowed: no layers.)"""
    path = spec_file("""
block stage(c, n) {
    Conv2d(c, 3, padding=1)
    repeat n - 1 { residual { Conv2d(c, 3, padding=1) } }
}
block named(c, n) {
    body: repeat 2 { repeat n - 1 { Conv2d(c, 1) } }
}
model m {
    input: [3, 8, 8]
    stage(4, 2)
    stage(4, 1)
    stage(4, 0)
    named(4, 0)
}
""")
    with pytest.raises(netspec.NetspecError) as e:
        netspec.load(path)
    found = [(d.span.line, d.message, [(n.message, n.span.line) for n in d.notes]) for d in e.value.diagnostics]
    assert found == [
        (4, "repeat count must be a whole number >= 0, got -1", [("in block `stage` used here", 13)]),
        (7, "repeat count must be a whole number >= 0, got -1", [("in block `named` used here", 14)]),
    ]
