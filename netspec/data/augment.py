"""Seeded, batched image augmentation for training batches: the `augment: [...]` data setting.

In: the augmentation list of a checked spec, as (name, keyword arguments with every catalogue
parameter filled in) pairs, and the (C, H, W) shape of the incoming images; then float32 batches
[n, C, H, W] with values in [0, 1], on any device. Out: the augmented batch, float32 in [0, 1]
(RandomErasing writes its `value` as given, even outside [0, 1]), on the input's device, with
shape [n, *Augmenter.output_shape]. `augment_problems` lists the settings that cannot work on
images of a given shape, for the checker; it imports no torch (`netspec check` stays fast).

    aug = Augmenter([("RandomCrop", fill_defaults("RandomCrop", {"size": 28, "padding": 2}))], (1, 28, 28))
    x = aug(x, seed, epoch, step)                                       # one process
    x = aug(x_local, seed, epoch, step, offset=start, total=global_n)   # a DDP slice of the batch

Random draws: every op draws its parameters for all `total` samples of the global batch on the
CPU, from its own torch.Generator seeded by a hash of (seed, epoch, step, the op's position);
rows [offset, offset + n) of those draws are applied. A DDP slice thus sees exactly the draws
of the one-process run, `--resume` repeats them, and equal arguments give equal outputs.
Every sample gets its own parameters (flip decision, crop position, angle, factors, box); no
Python loop runs over samples.

Semantics are torchvision's (transforms v1, tensor path), with these differences:
- ColorJitter applies its four adjustments in one random order per batch (torchvision: per call,
  so per image when used in a Dataset); the factors are still drawn per sample.
- RandomResizedCrop resizes without antialiasing (torchvision >= 0.17 antialiases bilinear
  downscaling); it otherwise equals crop + `F.interpolate(antialias=False)` (nearest: exactly,
  one gather; bilinear: to float rounding, two separable gathers), and keeps torchvision's 10
  attempts of rejection sampling and its central-crop fallback, batched.
- Bilinear results are clamped to [0, 1], which only removes rounding overshoot.
- Ops whose settings make them the identity (p=0, degrees=0, zero jitter, ...) are skipped, so
  they return the input bit for bit.
- The draws have torchvision's distributions but come from other random streams, so a given
  torch seed does not reproduce torchvision's numbers.

Run the tests with `pytest tests/test_augment.py`, the cost benchmark with
`python benchmarks/augment_cost.py`.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from netspec.catalogue import AUGMENTS, REQUIRED

if TYPE_CHECKING:
    import torch

Shape = tuple[int, int, int]
Draws = dict[str, "torch.Tensor"]
ATTEMPTS = 10  # torchvision's rejection-sampling attempts (RandomResizedCrop, RandomErasing)
GRAY = (0.2989, 0.587, 0.114)  # torchvision's rgb_to_grayscale weights


class SettingError(ValueError):
    """A setting that cannot work (on images of the given shape)."""


# ------------------------------------------------------------------ settings (no torch)


def fill_defaults(name: str, given: Mapping[str, Any]) -> dict[str, Any]:
    """`given` completed with the catalogue defaults of augmentation `name` (for tests and tools)."""
    if name not in AUGMENTS:
        raise SettingError(f"unknown augmentation {name!r}")
    out = {}
    for p in AUGMENTS[name].params:
        if p.name in given:
            out[p.name] = given[p.name]
        elif p.default is REQUIRED:
            raise SettingError(f"{name} needs `{p.name}`")
        else:
            out[p.name] = p.default
    return out


def _is_number(v: object) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def _numbers(v: object, name: str) -> tuple[float, ...]:
    if _is_number(v):
        return (float(v),)  # type: ignore[arg-type]
    if isinstance(v, (tuple, list)) and v and all(_is_number(e) for e in v):
        return tuple(float(e) for e in v)
    raise SettingError(f"`{name}` must be a number or a list of numbers, got {v!r}")


def _ints(v: object, name: str) -> tuple[int, ...]:
    values = _numbers(v, name)
    if any(e != int(e) for e in values):
        raise SettingError(f"`{name}` must be whole numbers, got {v!r}")
    return tuple(int(e) for e in values)


def _pair(v: object, name: str) -> tuple[float, float]:
    """Exactly two numbers, min <= max."""
    values = _numbers(v, name)
    if _is_number(v) or len(values) != 2:
        raise SettingError(f"`{name}` must be 2 values [min, max], got {v!r}")
    if values[0] > values[1]:
        raise SettingError(f"`{name}` must be [min, max] with min <= max, got {v!r}")
    return values[0], values[1]


def _symmetric(v: object, name: str) -> tuple[float, float]:
    """torchvision's degrees/shear: one number d -> [-d, d] (d >= 0), or a [min, max] pair."""
    if _is_number(v):
        if v < 0:  # type: ignore[operator]
            raise SettingError(f"`{name}` given as one number must be >= 0, got {v!r}")
        return -float(v), float(v)  # type: ignore[arg-type]
    return _pair(v, name)


def _size(v: object) -> tuple[int, int]:
    values = _ints(v, "size")
    if len(values) not in (1, 2) or min(values) < 1:
        raise SettingError(f"`size` must be one positive integer or [height, width], got {v!r}")
    return (values[0], values[0]) if len(values) == 1 else (values[0], values[1])


def _padding(v: object) -> tuple[int, int, int, int]:
    """torchvision's padding: p, [left/right, top/bottom] or [left, top, right, bottom]."""
    values = _ints(v, "padding")
    if len(values) not in (1, 2, 4) or min(values) < 0:
        raise SettingError(f"`padding` must be 1, 2 or 4 non-negative integers, got {v!r}")
    if len(values) == 1:
        return values * 4  # type: ignore[return-value]
    if len(values) == 2:
        return values[0], values[1], values[0], values[1]
    return values  # type: ignore[return-value]


def _choice(v: object, name: str, options: tuple[str, ...]) -> str:
    if v not in options:
        raise SettingError(f"`{name}` must be one of {', '.join(options)}, got {v!r}")
    return str(v)


def _probability(v: object) -> float:
    if not _is_number(v) or not 0 <= v <= 1:  # type: ignore[operator]
        raise SettingError(f"`p` must be a probability in [0, 1], got {v!r}")
    return float(v)  # type: ignore[arg-type]


def _unit_pair(v: object, name: str) -> tuple[float, float]:
    lo, hi = _pair(v, name)
    if lo <= 0 or hi > 1:
        raise SettingError(f"`{name}` fractions must lie in (0, 1], got {v!r}")
    return lo, hi


def _ratio_pair(v: object) -> tuple[float, float]:
    lo, hi = _pair(v, "ratio")
    if lo <= 0:
        raise SettingError(f"`ratio` must be positive, got {v!r}")
    return lo, hi


def _jitter(v: object, name: str, center: float, bound: tuple[float, float]) -> tuple[float, float] | None:
    """torchvision ColorJitter._check_input: the factor range, or None when it is always `center`."""
    if _is_number(v):
        if v < 0:  # type: ignore[operator]
            raise SettingError(f"`{name}` given as one number must be >= 0, got {v!r}")
        lo, hi = center - float(v), center + float(v)  # type: ignore[arg-type]
        if center == 1:  # brightness, contrast, saturation: clip the low end at 0
            lo = max(lo, 0.0)
    else:
        lo, hi = _pair(v, name)
    if not bound[0] <= lo <= hi <= bound[1]:
        raise SettingError(f"`{name}` factors must lie in [{bound[0]}, {bound[1]}], got [{lo}, {hi}]")
    return None if lo == hi == center else (lo, hi)


# ------------------------------------------------------------------ ops


class _Op:
    """One augmentation: parses its settings for `shape` images (raising SettingError), then
    `draw`s per-sample parameters on the CPU and `apply`s a slice of them to a batch."""

    identity = False
    shared: tuple[str, ...] = ()  # draws that hold for the whole batch (not sliced)

    def __init__(self, kw: Mapping[str, Any], shape: Shape) -> None:
        self.in_shape = shape

    @property
    def output_shape(self) -> Shape:
        return self.in_shape

    def draw(self, gen: torch.Generator, total: int) -> Draws:
        return {}

    def apply(self, x: torch.Tensor, d: Draws) -> torch.Tensor:
        return x


class _RandomCrop(_Op):
    def __init__(self, kw: Mapping[str, Any], shape: Shape) -> None:
        super().__init__(kw, shape)
        self.size = _size(kw["size"])
        self.pad = _padding(kw["padding"])
        self.fill = float(_numbers(kw["fill"], "fill")[0])
        self.mode = _choice(kw["padding_mode"], "padding_mode", ("constant", "edge", "reflect"))
        left, top, right, bottom = self.pad
        self.padded = (shape[1] + top + bottom, shape[2] + left + right)
        if self.size[0] > self.padded[0] or self.size[1] > self.padded[1]:
            what = "padded image" if any(self.pad) else "image"
            raise SettingError(f"crop size {self.size[0]}x{self.size[1]} is larger than the {what} "
                               f"({self.padded[0]}x{self.padded[1]})")
        if self.mode == "reflect" and (max(left, right) >= shape[2] or max(top, bottom) >= shape[1]):
            raise SettingError(f"reflect padding {self.pad} must be smaller than the image ({shape[1]}x{shape[2]})")
        self.identity = not any(self.pad) and self.size == shape[1:]

    @property
    def output_shape(self) -> Shape:
        return self.in_shape[0], self.size[0], self.size[1]

    def draw(self, gen: torch.Generator, total: int) -> Draws:
        import torch

        top = torch.randint(0, self.padded[0] - self.size[0] + 1, (total,), generator=gen)
        left = torch.randint(0, self.padded[1] - self.size[1] + 1, (total,), generator=gen)
        return {"top": top, "left": left}

    def apply(self, x: torch.Tensor, d: Draws) -> torch.Tensor:
        import torch
        import torch.nn.functional as F

        if any(self.pad):
            left, top, right, bottom = self.pad
            mode = {"constant": "constant", "edge": "replicate", "reflect": "reflect"}[self.mode]
            x = F.pad(x, (left, right, top, bottom), mode=mode, value=self.fill if mode == "constant" else None)
        h, w = self.size
        rows = d["top"].to(x.device)[:, None] + torch.arange(h, device=x.device)
        cols = d["left"].to(x.device)[:, None] + torch.arange(w, device=x.device)
        return _gather(x, rows, cols)


class _Flip(_Op):
    dim = -1

    def __init__(self, kw: Mapping[str, Any], shape: Shape) -> None:
        super().__init__(kw, shape)
        self.p = _probability(kw["p"])
        self.identity = self.p == 0

    def draw(self, gen: torch.Generator, total: int) -> Draws:
        import torch

        return {"flip": torch.rand(total, generator=gen) < self.p}

    def apply(self, x: torch.Tensor, d: Draws) -> torch.Tensor:
        import torch

        flip = d["flip"]
        if not bool(flip.any()):  # decided on the CPU: no device sync
            return x
        return torch.where(flip.to(x.device).view(-1, 1, 1, 1), x.flip(self.dim), x)


class _RandomHorizontalFlip(_Flip):
    dim = -1


class _RandomVerticalFlip(_Flip):
    dim = -2


class _RandomAffine(_Op):
    """torchvision RandomAffine; RandomRotation is the rotation-only case below."""

    def __init__(self, kw: Mapping[str, Any], shape: Shape) -> None:
        super().__init__(kw, shape)
        self.degrees = _symmetric(kw["degrees"], "degrees")
        self.interpolation = _choice(kw["interpolation"], "interpolation", ("nearest", "bilinear"))
        self.fill = float(_numbers(kw["fill"], "fill")[0])
        self.translate = self._translate(kw.get("translate"))
        self.scale = None if kw.get("scale") is None else _pair(kw["scale"], "scale")
        if self.scale is not None and self.scale[0] <= 0:
            raise SettingError(f"`scale` must be positive, got {kw['scale']!r}")
        self.shear = self._shear(kw.get("shear"))
        self.identity = (self.degrees == (0, 0) and self.translate == (0, 0) and self.scale in (None, (1, 1))
                         and self.shear == (0, 0, 0, 0))

    @staticmethod
    def _translate(v: object) -> tuple[float, float]:
        if v is None:
            return 0.0, 0.0
        values = _numbers(v, "translate")
        if _is_number(v) or len(values) != 2 or not all(0 <= t <= 1 for t in values):
            raise SettingError(f"`translate` must be 2 fractions [of width, of height] in [0, 1], got {v!r}")
        return values[0], values[1]

    @staticmethod
    def _shear(v: object) -> tuple[float, float, float, float]:
        if v is None:
            return 0.0, 0.0, 0.0, 0.0
        if _is_number(v) or len(_numbers(v, "shear")) == 2:
            return (*_symmetric(v, "shear"), 0.0, 0.0)
        values = _numbers(v, "shear")
        if len(values) != 4:
            raise SettingError(f"`shear` must be 1, 2 or 4 values, got {v!r}")
        return (*_pair(values[:2], "shear"), *_pair(values[2:], "shear"))

    def draw(self, gen: torch.Generator, total: int) -> Draws:
        import torch

        def uniform(lo: float, hi: float) -> torch.Tensor:
            return lo + (hi - lo) * torch.rand(total, generator=gen, dtype=torch.float64)

        max_dx = self.translate[0] * self.in_shape[2]
        max_dy = self.translate[1] * self.in_shape[1]
        scale = self.scale or (1.0, 1.0)
        return {"angle": uniform(*self.degrees), "tx": uniform(-max_dx, max_dx).round(),
                "ty": uniform(-max_dy, max_dy).round(), "scale": uniform(*scale),
                "shear_x": uniform(*self.shear[:2]), "shear_y": uniform(*self.shear[2:])}

    def apply(self, x: torch.Tensor, d: Draws) -> torch.Tensor:
        matrix = _inverse_affine(d["angle"], d["tx"], d["ty"], d["scale"], d["shear_x"], d["shear_y"])
        return _warp(x, matrix, self.interpolation, self.fill)


class _RandomRotation(_RandomAffine):
    def __init__(self, kw: Mapping[str, Any], shape: Shape) -> None:
        super().__init__(dict(kw, translate=None, scale=None, shear=None), shape)

    def draw(self, gen: torch.Generator, total: int) -> Draws:
        import torch

        lo, hi = self.degrees
        return {"angle": lo + (hi - lo) * torch.rand(total, generator=gen, dtype=torch.float64)}

    def apply(self, x: torch.Tensor, d: Draws) -> torch.Tensor:
        import torch

        # F.rotate turns counter-clockwise: it hands -angle to the (clockwise) affine matrix
        zeros, ones = torch.zeros_like(d["angle"]), torch.ones_like(d["angle"])
        matrix = _inverse_affine(-d["angle"], zeros, zeros, ones, zeros, zeros)
        return _warp(x, matrix, self.interpolation, self.fill)


class _RandomResizedCrop(_Op):
    def __init__(self, kw: Mapping[str, Any], shape: Shape) -> None:
        super().__init__(kw, shape)
        self.size = _size(kw["size"])
        self.scale = _unit_pair(kw["scale"], "scale")
        self.ratio = _ratio_pair(kw["ratio"])
        self.interpolation = _choice(kw["interpolation"], "interpolation", ("nearest", "bilinear"))

    @property
    def output_shape(self) -> Shape:
        return self.in_shape[0], self.size[0], self.size[1]

    def _fallback(self) -> tuple[int, int]:
        """torchvision's central crop (h, w) after 10 failed attempts."""
        height, width = self.in_shape[1:]
        in_ratio = width / height
        if in_ratio < min(self.ratio):
            return int(round(width / min(self.ratio))), width
        if in_ratio > max(self.ratio):
            return height, int(round(height * max(self.ratio)))
        return height, width

    def draw(self, gen: torch.Generator, total: int) -> Draws:
        import torch

        height, width = self.in_shape[1:]
        area, aspect = _attempts(gen, total, height * width, self.scale, self.ratio)
        w, h = (area * aspect).sqrt().round(), (area / aspect).sqrt().round()
        ok = (w > 0) & (w <= width) & (h > 0) & (h <= height)
        h, w, found = _first(h, ok), _first(w, ok), ok.any(1)
        fh, fw = self._fallback()
        h, w = torch.where(found, h, fh).long(), torch.where(found, w, fw).long()
        top = _below(gen, height - h + 1)
        left = _below(gen, width - w + 1)
        top = torch.where(found, top, (height - h) // 2)
        left = torch.where(found, left, (width - w) // 2)
        return {"top": top, "left": left, "h": h, "w": w}

    def apply(self, x: torch.Tensor, d: Draws) -> torch.Tensor:
        out_h, out_w = self.size
        dev = x.device
        top, left, h, w = (d[k].to(dev) for k in ("top", "left", "h", "w"))
        if self.interpolation == "nearest":
            return _gather(x, top[:, None] + _nearest(h, out_h), left[:, None] + _nearest(w, out_w))
        r0, r1, wy = _linear(h, out_h)
        c0, c1, wx = _linear(w, out_w)
        return _resample_rows_cols(x, top[:, None] + r0, top[:, None] + r1, wy.to(x.dtype),
                                   left[:, None] + c0, left[:, None] + c1, wx.to(x.dtype))


class _ColorJitter(_Op):
    shared = ("order",)

    def __init__(self, kw: Mapping[str, Any], shape: Shape) -> None:
        super().__init__(kw, shape)
        inf = float("inf")
        self.ranges = {"brightness": _jitter(kw["brightness"], "brightness", 1.0, (0.0, inf)),
                       "contrast": _jitter(kw["contrast"], "contrast", 1.0, (0.0, inf)),
                       "saturation": _jitter(kw["saturation"], "saturation", 1.0, (0.0, inf)),
                       "hue": _jitter(kw["hue"], "hue", 0.0, (-0.5, 0.5))}
        channels = shape[0]
        if channels not in (1, 3) and any(self.ranges.values()):
            raise SettingError(f"ColorJitter needs images with 1 or 3 channels, these have {channels}")
        if channels == 1:  # torchvision: saturation and hue leave 1-channel images alone
            self.ranges["saturation"] = self.ranges["hue"] = None
        self.identity = not any(self.ranges.values())

    def draw(self, gen: torch.Generator, total: int) -> Draws:
        import torch

        out = {"order": torch.randperm(4, generator=gen)}
        for name, bounds in self.ranges.items():
            if bounds is not None:
                out[name] = bounds[0] + (bounds[1] - bounds[0]) * torch.rand(total, generator=gen, dtype=torch.float64)
        return out

    def apply(self, x: torch.Tensor, d: Draws) -> torch.Tensor:
        names = list(self.ranges)
        for index in d["order"].tolist():
            name = names[index]
            if name in d:
                factor = d[name].to(device=x.device, dtype=x.dtype).view(-1, 1, 1, 1)
                x = ADJUST[name](x, factor)
        return x


class _RandomErasing(_Op):
    def __init__(self, kw: Mapping[str, Any], shape: Shape) -> None:
        super().__init__(kw, shape)
        self.p = _probability(kw["p"])
        self.scale = _unit_pair(kw["scale"], "scale")
        self.ratio = _ratio_pair(kw["ratio"])
        self.value = float(_numbers(kw["value"], "value")[0])
        self.identity = self.p == 0

    def draw(self, gen: torch.Generator, total: int) -> Draws:
        import torch

        height, width = self.in_shape[1:]
        chosen = torch.rand(total, generator=gen) < self.p
        area, aspect = _attempts(gen, total, height * width, self.scale, self.ratio)
        # torchvision's RandomErasing: h from area * ratio (RandomResizedCrop has it the other way)
        h, w = (area * aspect).sqrt().round(), (area / aspect).sqrt().round()
        ok = (h < height) & (w < width)
        h, w = _first(h, ok).long(), _first(w, ok).long()
        top, left = _below(gen, height - h + 1), _below(gen, width - w + 1)
        return {"erase": chosen & ok.any(1), "top": top, "left": left, "h": h, "w": w}

    def apply(self, x: torch.Tensor, d: Draws) -> torch.Tensor:
        import torch

        if not bool(d["erase"].any()):
            return x
        erase, top, left, h, w = (d[k].to(x.device) for k in ("erase", "top", "left", "h", "w"))
        rows = torch.arange(x.shape[2], device=x.device)
        cols = torch.arange(x.shape[3], device=x.device)
        in_rows = (rows >= top[:, None]) & (rows < (top + h)[:, None]) & erase[:, None]
        in_cols = (cols >= left[:, None]) & (cols < (left + w)[:, None])
        return x.masked_fill(in_rows[:, None, :, None] & in_cols[:, None, None, :], self.value)


OPS: dict[str, type[_Op]] = {
    "RandomCrop": _RandomCrop,
    "RandomHorizontalFlip": _RandomHorizontalFlip,
    "RandomVerticalFlip": _RandomVerticalFlip,
    "RandomRotation": _RandomRotation,
    "RandomAffine": _RandomAffine,
    "RandomResizedCrop": _RandomResizedCrop,
    "ColorJitter": _ColorJitter,
    "RandomErasing": _RandomErasing,
}


def _make_op(name: str, kwargs: Mapping[str, Any], shape: Shape) -> _Op:
    if name not in OPS or name not in AUGMENTS:
        raise SettingError(f"unknown augmentation {name!r}")
    known = [p.name for p in AUGMENTS[name].params]
    unknown = sorted(set(kwargs) - set(known))
    if unknown:
        raise SettingError(f"{name} has no parameter `{unknown[0]}` (it takes {', '.join(known)})")
    missing = [k for k in known if k not in kwargs]
    if missing:
        raise SettingError(f"{name} needs `{missing[0]}`")
    return OPS[name](kwargs, shape)


def _nominal_shape(name: str, kwargs: Mapping[str, Any], shape: Shape) -> Shape:
    """The output shape an op that failed its checks was meant to have (so later ops are checked sensibly)."""
    if name in ("RandomCrop", "RandomResizedCrop"):
        try:
            h, w = _size(kwargs.get("size"))
            return shape[0], h, w
        except SettingError:
            pass
    return shape


def augment_problems(ops: Sequence[tuple[str, Mapping[str, Any]]], image_shape: Shape) -> list[tuple[int, str]]:
    """(index of the op, message) for every setting that cannot work on `image_shape` images; [] when fine."""
    problems: list[tuple[int, str]] = []
    try:
        shape = _image_shape(image_shape)
    except SettingError as e:
        return [(0, str(e))] if ops else []
    for index, (name, kwargs) in enumerate(ops):
        try:
            shape = _make_op(name, kwargs, shape).output_shape
        except SettingError as e:
            problems.append((index, str(e)))
            shape = _nominal_shape(name, kwargs, shape)
    return problems


def range_problems(ops: Sequence[tuple[str, Mapping[str, Any]]], low: float, high: float) -> list[tuple[int, str]]:
    """(index, message) for each op that needs pixel values in [0, 1] (torchvision's range for
    float images: ColorJitter clamps to it, bilinear resampling rounds into it) when the samples
    hold values from `low` to `high` outside that range; crops, flips and erasing take any values."""
    if low >= 0 and high <= 1:
        return []
    out = []
    for index, (name, kwargs) in enumerate(ops):
        if name == "ColorJitter" or kwargs.get("interpolation") == "bilinear":
            what = "ColorJitter" if name == "ColorJitter" else f"{name} with bilinear interpolation"
            out.append((index, f"{what} works on pixel values in [0, 1] (torchvision's range for float images), but "
                               f"the samples hold values from {low:.4g} to {high:.4g}"))
    return out


def _image_shape(shape: Sequence[int]) -> Shape:
    if len(shape) != 3 or min(shape) < 1:
        raise SettingError(f"augmentation needs images of shape (C, H, W), got {tuple(shape)}")
    return int(shape[0]), int(shape[1]), int(shape[2])


# ------------------------------------------------------------------ the augmenter


def op_seed(seed: int, epoch: int, step: int, index: int) -> int:
    """The generator seed of op `index` at (seed, epoch, step): a hash, so nearby steps are unrelated."""
    text = f"netspec.data.augment:{seed}:{epoch}:{step}:{index}".encode()
    return int.from_bytes(hashlib.blake2b(text, digest_size=8).digest(), "little") >> 1


class Augmenter:
    """The `augment: [...]` list for images of shape `image_shape` (C, H, W); call it on batches."""

    def __init__(self, ops: Sequence[tuple[str, Mapping[str, Any]]], image_shape: tuple[int, int, int]) -> None:
        problems = augment_problems(ops, image_shape)
        if problems:
            index, message = problems[0]
            raise SettingError(f"augmentation {index} ({ops[index][0]}): {message}")
        self.input_shape = _image_shape(image_shape)
        self.ops: list[_Op] = []
        shape = self.input_shape
        for name, kwargs in ops:
            op = _make_op(name, kwargs, shape)
            self.ops.append(op)
            shape = op.output_shape
        self._output_shape = shape

    @property
    def output_shape(self) -> tuple[int, int, int]:
        return self._output_shape

    def __call__(self, x: torch.Tensor, seed: int, epoch: int, step: int,
                 offset: int = 0, total: int | None = None) -> torch.Tensor:
        """Rows [offset, offset + n) of the batch of `total` samples (default n) at (seed, epoch, step)."""
        import torch

        n = x.shape[0]
        total = n if total is None else total
        if x.dim() != 4 or tuple(x.shape[1:]) != self.input_shape:
            raise ValueError(f"Augmenter expects [n, {', '.join(map(str, self.input_shape))}], got {list(x.shape)}")
        if offset < 0 or offset + n > total:
            raise ValueError(f"rows [{offset}, {offset + n}) are not inside a batch of {total}")
        if n == 0:
            return x.new_zeros((0, *self._output_shape))
        rows = slice(offset, offset + n)
        for index, op in enumerate(self.ops):
            if op.identity:
                continue
            gen = torch.Generator().manual_seed(op_seed(seed, epoch, step, index))
            draws = {k: v if k in op.shared else v[rows] for k, v in op.draw(gen, total).items()}
            x = op.apply(x, draws)
        return x


# ------------------------------------------------------------------ batched tensor helpers


def _gather(x: torch.Tensor, rows: torch.Tensor, cols: torch.Tensor) -> torch.Tensor:
    """out[i, c, r, k] = x[i, c, rows[i, r], cols[i, k]]: a per-sample window or resampling, one gather."""
    n, c, height, width = x.shape
    h, w = rows.shape[1], cols.shape[1]
    index = (rows[:, :, None] * width + cols[:, None, :]).reshape(n, 1, h * w).expand(n, c, h * w)
    return x.reshape(n, c, height * width).gather(2, index).reshape(n, c, h, w)


def _resample_rows_cols(x: torch.Tensor, r0: torch.Tensor, r1: torch.Tensor, wy: torch.Tensor,
                        c0: torch.Tensor, c1: torch.Tensor, wx: torch.Tensor) -> torch.Tensor:
    """Separable linear resampling: blend rows r0/r1 by wy, then columns c0/c1 by wx (all [n, out])."""
    n, c, _, width = x.shape
    oh, ow = r0.shape[1], c0.shape[1]

    def rows(r: torch.Tensor) -> torch.Tensor:
        return x.gather(2, r[:, None, :, None].expand(n, c, oh, width))

    y = rows(r0) * (1 - wy)[:, None, :, None] + rows(r1) * wy[:, None, :, None]

    def cols(k: torch.Tensor) -> torch.Tensor:
        return y.gather(3, k[:, None, None, :].expand(n, c, oh, ow))

    return (cols(c0) * (1 - wx)[:, None, None, :] + cols(c1) * wx[:, None, None, :]).clamp_(0, 1)  # rounding only


def _nearest(size: torch.Tensor, out: int) -> torch.Tensor:
    """F.interpolate(mode="nearest") source offsets [n, out] for per-sample input sizes `size` [n]."""
    import torch

    scale = size.float() / out  # float32, as ATen computes it
    src = (torch.arange(out, device=size.device).float() * scale[:, None]).floor().long()
    return torch.minimum(src, size[:, None] - 1)


def _linear(size: torch.Tensor, out: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """F.interpolate(mode="bilinear", align_corners=False) source offsets i0, i1 and weight of i1, [n, out]."""
    import torch

    scale = size.float() / out
    src = ((torch.arange(out, device=size.device).float() + 0.5) * scale[:, None] - 0.5).clamp(min=0)
    i0 = src.floor().long()
    i1 = torch.minimum(i0 + 1, size[:, None] - 1)
    return i0, i1, src - i0


def _attempts(gen: torch.Generator, total: int, area: int, scale: tuple[float, float],
              ratio: tuple[float, float]) -> tuple[torch.Tensor, torch.Tensor]:
    """torchvision's 10 attempts per sample: target areas and log-uniform aspect ratios, [total, 10]."""
    import torch

    u = torch.rand(total, ATTEMPTS, 2, generator=gen, dtype=torch.float64)
    target = area * (scale[0] + (scale[1] - scale[0]) * u[..., 0])
    lo, hi = math.log(ratio[0]), math.log(ratio[1])
    return target, (lo + (hi - lo) * u[..., 1]).exp()


def _first(values: torch.Tensor, ok: torch.Tensor) -> torch.Tensor:
    """Per row, the value at the first True of `ok` (the first attempt that fits); any value if none."""
    return values.gather(1, ok.byte().argmax(1, keepdim=True)).squeeze(1)


def _below(gen: torch.Generator, high: torch.Tensor) -> torch.Tensor:
    """Uniform integers in [0, high) per sample (torch.randint with a per-sample bound)."""
    import torch

    u = torch.rand(high.shape[0], generator=gen, dtype=torch.float64)
    return torch.minimum((u * high).floor().long(), high - 1)


def _inverse_affine(angle: torch.Tensor, tx: torch.Tensor, ty: torch.Tensor, scale: torch.Tensor,
                    shear_x: torch.Tensor, shear_y: torch.Tensor) -> torch.Tensor:
    """torchvision's _get_inverse_affine_matrix (centre (0, 0) = image centre), batched: [n, 2, 3] float64."""
    import torch

    rot, sx, sy = angle.deg2rad(), shear_x.deg2rad(), shear_y.deg2rad()
    a = torch.cos(rot - sy) / torch.cos(sy)
    b = -torch.cos(rot - sy) * torch.tan(sx) / torch.cos(sy) - torch.sin(rot)
    c = torch.sin(rot - sy) / torch.cos(sy)
    d = -torch.sin(rot - sy) * torch.tan(sx) / torch.cos(sy) + torch.cos(rot)
    m0, m1, m3, m4 = d / scale, -b / scale, -c / scale, a / scale
    m2 = m0 * -tx + m1 * -ty
    m5 = m3 * -tx + m4 * -ty
    return torch.stack([torch.stack([m0, m1, m2], 1), torch.stack([m3, m4, m5], 1)], 1)


def _warp(x: torch.Tensor, matrix: torch.Tensor, interpolation: str, fill: float) -> torch.Tensor:
    """Sample x at matrix @ (output pixel, 1), pixel coordinates about the image centre (torchvision's
    _gen_affine_grid + grid_sample); `fill` outside the image."""
    import torch
    import torch.nn.functional as F

    n, _, h, w = x.shape
    dev = x.device
    base = torch.ones(h, w, 3, device=dev)
    base[..., 0] = torch.linspace(-w * 0.5 + 0.5, w * 0.5 - 0.5, w, device=dev)
    base[..., 1] = torch.linspace(-h * 0.5 + 0.5, h * 0.5 - 0.5, h, device=dev)[:, None]
    theta = matrix.to(dtype=torch.float32).to(dev)
    rescaled = theta.transpose(1, 2) / torch.tensor([0.5 * w, 0.5 * h], device=dev)
    grid = (base.view(1, h * w, 3) @ rescaled).view(n, h, w, 2).to(x.dtype)
    if fill == 0 and interpolation == "nearest":
        return F.grid_sample(x, grid, mode="nearest", padding_mode="zeros", align_corners=False)
    # torchvision's fill: sample a channel of ones beside the image as the inside-the-image mask
    ones = torch.ones_like(x[:, :1])
    sampled = F.grid_sample(torch.cat([x, ones], 1), grid, mode=interpolation, padding_mode="zeros",
                            align_corners=False)
    out, mask = sampled[:, :-1], sampled[:, -1:]
    if interpolation == "nearest":
        return torch.where(mask < 0.5, torch.full_like(out, fill), out)
    return (out * mask + (1.0 - mask) * fill).clamp_(0, 1)  # clamp: rounding only


def _gray(x: torch.Tensor) -> torch.Tensor:
    r, g, b = x.unbind(1)
    return (GRAY[0] * r + GRAY[1] * g + GRAY[2] * b).unsqueeze(1)


def _blend(x: torch.Tensor, other: torch.Tensor, factor: torch.Tensor) -> torch.Tensor:
    return (factor * x + (1.0 - factor) * other).clamp(0, 1)


def adjust_brightness(x: torch.Tensor, factor: torch.Tensor) -> torch.Tensor:
    return (factor * x).clamp(0, 1)


def adjust_contrast(x: torch.Tensor, factor: torch.Tensor) -> torch.Tensor:
    gray = _gray(x) if x.shape[1] == 3 else x
    return _blend(x, gray.mean(dim=(1, 2, 3), keepdim=True), factor)


def adjust_saturation(x: torch.Tensor, factor: torch.Tensor) -> torch.Tensor:
    return x if x.shape[1] == 1 else _blend(x, _gray(x), factor)


def adjust_hue(x: torch.Tensor, factor: torch.Tensor) -> torch.Tensor:
    if x.shape[1] == 1:
        return x
    h, s, v = _rgb_to_hsv(x).unbind(1)
    return _hsv_to_rgb((h + factor[:, 0]) % 1.0, s, v)


ADJUST: dict[str, Callable[[torch.Tensor, torch.Tensor], torch.Tensor]] = {
    "brightness": adjust_brightness, "contrast": adjust_contrast,
    "saturation": adjust_saturation, "hue": adjust_hue,
}


def _rgb_to_hsv(x: torch.Tensor) -> torch.Tensor:
    """torchvision's _rgb2hsv on [n, 3, H, W]."""
    import torch

    r, g, b = x.unbind(1)
    maxc, minc = x.max(1).values, x.min(1).values
    eqc = maxc == minc
    cr = maxc - minc
    ones = torch.ones_like(maxc)
    s = cr / torch.where(eqc, ones, maxc)
    cr_divisor = torch.where(eqc, ones, cr)
    rc, gc, bc = (maxc - r) / cr_divisor, (maxc - g) / cr_divisor, (maxc - b) / cr_divisor
    hr = (maxc == r) * (bc - gc)
    hg = ((maxc == g) & (maxc != r)) * (2.0 + rc - bc)
    hb = ((maxc != g) & (maxc != r)) * (4.0 + gc - rc)
    h = torch.fmod((hr + hg + hb) / 6.0 + 1.0, 1.0)
    return torch.stack((h, s, maxc), 1)


def _hsv_to_rgb(h: torch.Tensor, s: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """torchvision's _hsv2rgb from [n, H, W] planes, as a select instead of its one-hot einsum."""
    import torch

    i = torch.floor(h * 6.0)
    f = h * 6.0 - i
    sector = (i.long() % 6).unsqueeze(1)  # [n, 1, H, W]
    p = (v * (1.0 - s)).clamp(0.0, 1.0)
    q = (v * (1.0 - s * f)).clamp(0.0, 1.0)
    t = (v * (1.0 - s * (1.0 - f))).clamp(0.0, 1.0)
    table = torch.stack([torch.stack(c, 1) for c in ((v, q, p, p, t, v), (t, v, v, q, p, p), (p, p, t, v, v, q))], 1)
    return table.gather(2, sector.unsqueeze(2).expand(-1, 3, 1, -1, -1)).squeeze(2)
