"""torchvision's published ImageNet weights for the zoo specs: where they are, what they hold,
and how their key names map onto the zoo specs' (`from: torchvision("resnet18")`).

In: a zoo name (and `file=`, a local copy). Out: ``ZOO`` rows (URL, full SHA-256, size,
whether the file holds BatchNorm's `num_batches_tracked`, the key map as ordered regex
rules), ``cached_file`` (the verified copy in the cache, downloaded when the network is
allowed; NETSPEC_OFFLINE=1 forbids it and the error says which file to put where),
``map_key`` and ``zoo_spec`` (the spec whose state_dict the mapped keys name). No torch.

The key maps were verified against torchvision 0.29's module structure (tests/tv_models.py,
a hand-written equivalent): a state_dict with torchvision's names and layout, loaded through
the map, gives the zoo spec the outputs of torchvision's model (tests/test_finetune_zoo.py).
torchvision publishes only an 8-hex prefix of each digest (in the file name); the full
SHA-256 values below agree with it and with several independent projects that pin them.
"""

from __future__ import annotations

import hashlib
import os
import re
from dataclasses import dataclass
from pathlib import Path

from netspec.errors import NetspecError, error

URL = "https://download.pytorch.org/models/"

# (regex on the whole key, replacement, final): the first matching final rule ends the mapping;
# a non-final rule (DenseNet's legacy names) rewrites and lets the structural rules follow.
Rule = tuple[str, str, bool]


def _resnet18() -> tuple[Rule, ...]:
    return (
        (r"^layer1\.0\.", "layer1.basic1.residual1.", True),
        (r"^layer1\.1\.", "layer1.basic2.residual1.", True),
        # stages 2-4: block 0 has a projection shortcut (add { main; downsample }), block 1 does not
        (r"^layer([234])\.0\.downsample\.0\.", r"layer\1.basic_down1.add1.downsample.conv2d1.", True),
        (r"^layer([234])\.0\.downsample\.1\.", r"layer\1.basic_down1.add1.downsample.batchnorm2d1.", True),
        (r"^layer([234])\.0\.", r"layer\1.basic_down1.add1.main.", True),
        (r"^layer([234])\.1\.", r"layer\1.basic1.residual1.", True),
    )


def _resnet50() -> tuple[Rule, ...]:
    return (
        (r"^layer(\d)\.0\.downsample\.0\.", r"layer\1.bottleneck_down1.add1.downsample.conv2d1.", True),
        (r"^layer(\d)\.0\.downsample\.1\.", r"layer\1.bottleneck_down1.add1.downsample.batchnorm2d1.", True),
        (r"^layer(\d)\.0\.", r"layer\1.bottleneck_down1.add1.main.", True),
        (r"^layer(\d)\.([1-9]\d*)\.", r"layer\1.bottleneck\2.residual1.", True),  # block i >= 1: bottleneck<i>
    )


def _densenet121() -> tuple[Rule, ...]:
    return (
        # the 2017 files name a dense layer's modules `norm.1`, `conv.2`...; torchvision renames them on load
        (r"^(.*denselayer\d+\.(?:norm|relu|conv))\.((?:[12])\.(?:weight|bias|running_mean|running_var))$", r"\1\2",
         False),
        (r"^features\.denseblock(\d+)\.denselayer(\d+)\.", r"features.denseblock\1.dense_layer\2.concat1.layer.", True),
    )


# MobileNetV2: torchvision's features.<k> (k = 1..17) -> the zoo spec's block path
_MOBILENET_BLOCKS = {
    1: "inverted_first1", 2: "inverted1", 3: "residual1.inverted1", 4: "inverted2", 5: "residual2.inverted1",
    6: "residual3.inverted1", 7: "inverted3", 8: "residual4.inverted1", 9: "residual5.inverted1",
    10: "residual6.inverted1", 11: "inverted4", 12: "residual7.inverted1", 13: "residual8.inverted1",
    14: "inverted5", 15: "residual9.inverted1", 16: "residual10.inverted1", 17: "inverted6",
}


def _mobilenet_v2() -> tuple[Rule, ...]:
    rules: list[Rule] = [
        (r"^features\.0\.0\.", "features.stem.conv.", True),
        (r"^features\.0\.1\.", "features.stem.bn.", True),
        (r"^features\.18\.0\.", "features.head.conv.", True),
        (r"^features\.18\.1\.", "features.head.bn.", True),
        (r"^classifier\.1\.", "classifier.linear1.", True),
        (r"^features\.1\.conv\.0\.0\.", "features.inverted_first1.depthwise.conv.", True),
        (r"^features\.1\.conv\.0\.1\.", "features.inverted_first1.depthwise.bn.", True),
        (r"^features\.1\.conv\.1\.", "features.inverted_first1.project.", True),
        (r"^features\.1\.conv\.2\.", "features.inverted_first1.bn.", True),
    ]
    for k in range(2, 18):  # expand ratio 6: [expand conv-bn-relu6, depthwise conv-bn-relu6, project conv, bn]
        p = "features." + _MOBILENET_BLOCKS[k]
        rules += [
            (rf"^features\.{k}\.conv\.0\.0\.", f"{p}.expand.conv.", True),
            (rf"^features\.{k}\.conv\.0\.1\.", f"{p}.expand.bn.", True),
            (rf"^features\.{k}\.conv\.1\.0\.", f"{p}.depthwise.conv.", True),
            (rf"^features\.{k}\.conv\.1\.1\.", f"{p}.depthwise.bn.", True),
            (rf"^features\.{k}\.conv\.2\.", f"{p}.project.", True),
            (rf"^features\.{k}\.conv\.3\.", f"{p}.bn.", True),
        ]
    return tuple(rules)


_SQUEEZENET_FIRES = {3: 1, 4: 2, 6: 3, 7: 4, 9: 5, 10: 6, 11: 7, 12: 8}  # features index -> fire<n>


def _squeezenet1_1() -> tuple[Rule, ...]:
    rules: list[Rule] = [(r"^features\.0\.", "features.conv2d1.", True),
                         (r"^classifier\.1\.", "classifier.final_conv.", True)]
    for k, f in _SQUEEZENET_FIRES.items():
        rules += [
            (rf"^features\.{k}\.squeeze\.", f"features.fire{f}.squeeze.", True),
            (rf"^features\.{k}\.expand1x1\.", f"features.fire{f}.concat1.expand1x1.conv2d1.", True),
            (rf"^features\.{k}\.expand3x3\.", f"features.fire{f}.concat1.expand3x3.conv2d1.", True),
        ]
    return tuple(rules)


# VGG-16 (configuration D): the features index of each convolution -> (stage, convolution in the stage)
_VGG16_CONVS = {0: (1, 1), 2: (1, 2), 5: (2, 1), 7: (2, 2), 10: (3, 1), 12: (3, 2), 14: (3, 3),
                17: (4, 1), 19: (4, 2), 21: (4, 3), 24: (5, 1), 26: (5, 2), 28: (5, 3)}


def _vgg16() -> tuple[Rule, ...]:
    rules: list[Rule] = [(rf"^features\.{k}\.", f"features.stage{s}.conv2d{j}.", True)
                         for k, (s, j) in _VGG16_CONVS.items()]
    rules += [(r"^classifier\.0\.", "classifier.linear1.", True), (r"^classifier\.3\.", "classifier.linear2.", True),
              (r"^classifier\.6\.", "classifier.linear3.", True)]
    return tuple(rules)


@dataclass(frozen=True)
class ZooWeights:
    """One published weight file (torchvision's default weights for the model)."""

    name: str  # torchvision's builder name, and the zoo spec's file name (examples/zoo/<name>.net)
    file: str  # the published file name
    sha256: str
    size: int  # bytes
    counters: bool  # the file holds BatchNorm's num_batches_tracked (files from before 2019 do not)
    rules: tuple[Rule, ...]
    weights: str = "IMAGENET1K_V1"  # torchvision's name for these weights

    @property
    def url(self) -> str:
        return URL + self.file


ZOO_LIST = [
    ZooWeights("resnet18", "resnet18-f37072fd.pth",
               "f37072fd47e89c5e827621c5baffa7500819f7896bbacec160b1a16c560e07ec", 46_830_571, False, _resnet18()),
    ZooWeights("resnet50", "resnet50-11ad3fa6.pth",
               "11ad3fa62ca79e40addfd354a8ec4b7c75143b3038b8d2a807fbc68deab379ca", 102_540_417, True, _resnet50(),
               "IMAGENET1K_V2"),
    ZooWeights("densenet121", "densenet121-a639ec97.pth",
               "a639ec97d7c33b07ae66f0b5fb7d0192f95a3b11b7576c66c0126c2a727c4395", 32_342_954, False,
               _densenet121()),
    ZooWeights("mobilenet_v2", "mobilenet_v2-7ebf99e0.pth",
               "7ebf99e03e254b273379b23edca7ec0da9f48273b23a332b93c1c99d49e86e8f", 14_258_573, True,
               _mobilenet_v2(), "IMAGENET1K_V2"),
    ZooWeights("squeezenet1_1", "squeezenet1_1-b8a52dc0.pth",
               "b8a52dc049b60e4b6ab68ad0df457362afab8b6304b2febdc1650a5dab4d7e7b", 4_958_839, False,
               _squeezenet1_1()),
    ZooWeights("vgg16", "vgg16-397923af.pth",
               "397923af8e79cdbb6a7127f12361acd7a2f83e06b05044ddf496e83de57a5bf0", 553_433_881, False, _vgg16()),
]
ZOO = {row.name: row for row in ZOO_LIST}


def map_key(key: str, rules: tuple[Rule, ...] | list) -> str:
    """A key of the file -> the zoo spec's key: rules in order; the first final rule that
    matches ends it (keys no rule matches keep their name: conv1.weight, fc.bias...)."""
    for pattern, replacement, final in rules:
        new, n = re.subn(pattern, replacement, key)
        if n:
            key = new
            if final:
                return key
    return key


def zoo_spec(name: str) -> Path:
    """The zoo spec whose state_dict the mapped keys of `name`'s file name."""
    from netspec.tools.packaged import examples_dir

    root = examples_dir()
    if root is None:
        raise error("the packaged examples are missing; this netspec installation is incomplete")
    return root / "zoo" / f"{name}.net"


def cache_folder() -> Path:
    from netspec.data.datasets import cache_dir

    return cache_dir() / "weights"


def candidates(row: ZooWeights) -> list[Path]:
    """Where a copy of the published file may already be: netspec's cache, then torch hub's
    (torchvision downloads there: $TORCH_HOME/hub/checkpoints)."""
    torch_home = os.environ.get("TORCH_HOME") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache"), "torch")
    return [cache_folder() / row.file, Path(torch_home) / "hub" / "checkpoints" / row.file]


def find_cached(row: ZooWeights) -> Path | None:
    """A cached copy of the right size (its digest is verified before training reads it)."""
    for path in candidates(row):
        try:
            if path.is_file() and path.stat().st_size == row.size:
                return path
        except OSError:
            continue
    return None


def offline() -> bool:
    return os.environ.get("NETSPEC_OFFLINE") == "1"


def missing_error(row: ZooWeights, reason: str) -> NetspecError:
    target = cache_folder() / row.file
    return error(f'torchvision("{row.name}"): the weight file {row.file} is not in the cache ({reason})',
                 f"download {row.url} and put it at {target} (or give its path: "
                 f'torchvision("{row.name}", file="...")); its SHA-256 is {row.sha256}')


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 22), b""):
            h.update(chunk)
    return h.hexdigest()


def cached_file(row: ZooWeights, tell=None) -> Path:
    """The published file, verified: from a cache, else downloaded into netspec's cache
    (atomically, checked against the SHA-256) unless NETSPEC_OFFLINE=1."""
    found = find_cached(row)
    if found is not None:
        got = sha256_file(found)
        if got == row.sha256:
            return found
        raise error(f"{found}: not the published {row.file} (sha256 {got}, expected {row.sha256})",
                    f"delete it; netspec downloads it again from {row.url}")
    if offline():
        raise missing_error(row, "downloads are off: NETSPEC_OFFLINE=1")
    target = cache_folder() / row.file
    if tell is not None:
        tell(f"downloading {row.url} ({row.size / 1e6:.1f} MB) to {target}")
    try:
        download(row.url, target, row.sha256)
    except NetspecError:
        raise
    except OSError as e:
        raise missing_error(row, f"the download failed: {e}") from None
    return target


def download(url: str, target: Path, sha256: str) -> None:
    """`url` -> `target`, written to a temporary file beside it, checked against `sha256`,
    then renamed into place: a failed or interrupted download leaves nothing behind."""
    import tempfile
    import urllib.request

    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    try:
        h = hashlib.sha256()
        with os.fdopen(fd, "wb") as out, urllib.request.urlopen(url, timeout=60) as resp:
            for chunk in iter(lambda: resp.read(1 << 20), b""):
                h.update(chunk)
                out.write(chunk)
        if h.hexdigest() != sha256:
            raise error(f"{url}: the download's SHA-256 is {h.hexdigest()}, not the published {sha256}",
                        "try again later; if it persists, the file on the server changed")
        os.replace(tmp, target)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
