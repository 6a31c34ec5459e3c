"""netspec/augment.py: torchvision semantics, per-sample draws, seeding, DDP slicing, settings problems."""

from __future__ import annotations

import math
import subprocess
import sys

import pytest
import torch
import torch.nn.functional as F

from netspec.catalogue import AUGMENTS
from netspec.data.augment import OPS, Augmenter, SettingError, augment_problems, fill_defaults, op_seed


def aug(name: str, shape: tuple[int, int, int] = (1, 8, 8), **given) -> Augmenter:
    return Augmenter([(name, fill_defaults(name, given))], shape)


def images(n: int = 12, shape: tuple[int, int, int] = (1, 8, 8), seed: int = 0) -> torch.Tensor:
    return torch.rand(n, *shape, generator=torch.Generator().manual_seed(seed))


# one busy setting per op, for the tests that run every op
BUSY = {
    "RandomCrop": {"size": [6, 7], "padding": [1, 2, 0, 3], "fill": 0.25},
    "RandomHorizontalFlip": {},
    "RandomVerticalFlip": {},
    "RandomRotation": {"degrees": 30, "interpolation": "bilinear", "fill": 0.5},
    "RandomAffine": {"degrees": 20, "translate": (0.2, 0.1), "scale": (0.8, 1.2), "shear": (-5, 5, -3, 3)},
    "RandomResizedCrop": {"size": [5, 6], "scale": (0.3, 1.0)},
    "ColorJitter": {"brightness": 0.4, "contrast": 0.4, "saturation": 0.4, "hue": 0.2},
    "RandomErasing": {"p": 0.7, "value": 0.5},
}


def test_every_catalogue_row_has_an_op_that_takes_its_defaults():
    assert set(OPS) == set(AUGMENTS) == set(BUSY)
    required = {"size": 4, "degrees": 10}  # the parameters without a default
    for name, row in AUGMENTS.items():
        kwargs = fill_defaults(name, {p.name: required[p.name] for p in row.params if p.name in required})
        assert augment_problems([(name, kwargs)], (3, 8, 8)) == []
        assert Augmenter([(name, kwargs)], (3, 8, 8))(images(2, (3, 8, 8)), 0, 0, 0).shape[0] == 2
    with pytest.raises(SettingError, match="needs `size`"):
        fill_defaults("RandomCrop", {})


def test_augment_imports_no_torch():
    code = "import sys, netspec.data.augment; assert 'torch' not in sys.modules"
    assert subprocess.run([sys.executable, "-c", code], capture_output=True).returncode == 0


@pytest.mark.parametrize("name,given", [
    ("RandomHorizontalFlip", {"p": 0}), ("RandomVerticalFlip", {"p": 0}), ("RandomErasing", {"p": 0}),
    ("RandomRotation", {"degrees": 0}), ("RandomRotation", {"degrees": [0, 0], "interpolation": "bilinear"}),
    ("RandomAffine", {"degrees": 0, "translate": (0, 0), "scale": (1, 1), "shear": 0}),
    ("ColorJitter", {}), ("ColorJitter", {"brightness": [1, 1], "contrast": [1, 1], "saturation": 0, "hue": 0}),
    ("RandomCrop", {"size": 8}),
    ("RandomResizedCrop", {"size": 8, "scale": (1, 1), "ratio": (1, 1)}),
    ("RandomResizedCrop", {"size": 8, "scale": (1, 1), "ratio": (1, 1), "interpolation": "nearest"}),
])
@pytest.mark.parametrize("channels", [1, 3])
def test_identity_settings(name, given, channels):
    x = images(6, (channels, 8, 8))
    assert torch.equal(aug(name, (channels, 8, 8), **given)(x, 1, 2, 3), x)


@pytest.mark.parametrize("name", sorted(BUSY))
@pytest.mark.parametrize("channels", [1, 3])
def test_shape_dtype_device_range(name, channels):
    a = aug(name, (channels, 8, 8), **BUSY[name])
    x = images(10, (channels, 8, 8))
    y = a(x, 0, 1, 2)
    assert y.shape == (10, *a.output_shape) and y.dtype == torch.float32 and y.device == x.device
    assert 0 <= y.min() and y.max() <= 1


@pytest.mark.parametrize("name", sorted(BUSY))
def test_same_arguments_same_batch_other_step_other_batch(name):
    a = aug(name, (3, 8, 8), **BUSY[name])
    x = images(16, (3, 8, 8))
    assert torch.equal(a(x, 5, 1, 7), a(x, 5, 1, 7))
    for other in [(5, 1, 8), (5, 2, 7), (6, 1, 7)]:
        assert not torch.equal(a(x, 5, 1, 7), a(x, *other))


@pytest.mark.parametrize("name", sorted(BUSY))
def test_a_slice_gets_the_draws_of_the_whole_batch(name):
    a = aug(name, (3, 8, 8), **BUSY[name])
    x = images(12, (3, 8, 8))
    whole = a(x, 3, 0, 4)
    for lo, hi in [(0, 5), (5, 12), (7, 8)]:
        assert torch.equal(a(x[lo:hi], 3, 0, 4, offset=lo, total=12), whole[lo:hi])


def test_a_slice_of_the_full_pipeline():
    a = Augmenter([(name, fill_defaults(name, given)) for name, given in BUSY.items()], (3, 8, 8))
    x = images(9, (3, 8, 8))
    assert torch.equal(a(x[3:7], 0, 0, 0, offset=3, total=9), a(x, 0, 0, 0)[3:7])
    assert a.output_shape == (3, 5, 6)
    with pytest.raises(ValueError):
        a(x, 0, 0, 0, offset=2, total=9)


@pytest.mark.parametrize("name,dim", [("RandomHorizontalFlip", -1), ("RandomVerticalFlip", -2)])
def test_flips_flip_the_chosen_samples_only(name, dim):
    x = images(32)
    y = aug(name)(x, 0, 0, 0)
    flipped = torch.tensor([torch.equal(y[i], x[i].flip(dim)) for i in range(32)])
    kept = torch.tensor([torch.equal(y[i], x[i]) for i in range(32)])
    assert bool((flipped ^ kept).all()) and 0 < int(flipped.sum()) < 32
    assert torch.equal(aug(name, p=1)(x, 0, 0, 0), x.flip(dim))


@pytest.mark.parametrize("padding,mode", [(0, "constant"), (2, "constant"), ([1, 3], "edge"), ([1, 0, 2, 3], "reflect")])
def test_crops_are_windows_of_the_padded_image(padding, mode):
    values = [padding] if isinstance(padding, int) else padding
    left, top, right, bottom = {1: values * 4, 2: values * 2, 4: values}[len(values)]
    x = images(16)
    y = aug("RandomCrop", size=[5, 6], padding=padding, fill=0.5, padding_mode=mode)(x, 0, 0, 1)
    torch_mode = {"constant": "constant", "edge": "replicate", "reflect": "reflect"}[mode]
    padded = F.pad(x, (left, right, top, bottom), mode=torch_mode, value=0.5 if mode == "constant" else None)
    positions = set()
    for i in range(16):
        found = [(t, c) for t in range(padded.shape[2] - 4) for c in range(padded.shape[3] - 5)
                 if torch.equal(padded[i, :, t:t + 5, c:c + 6], y[i])]
        assert found, f"sample {i} is no window of its padded image"
        positions.add(found[0])
    assert len(positions) > 3


@pytest.mark.parametrize("size", [8, 9])
@pytest.mark.parametrize("channels", [1, 3])
def test_rotation_by_90_and_180_is_rot90(size, channels):
    x = images(4, (channels, size, size))
    for k in (1, 2):
        y = aug("RandomRotation", (channels, size, size), degrees=[90 * k, 90 * k])(x, 0, 0, 0)
        assert torch.equal(y[..., 1:-1, 1:-1], torch.rot90(x, k, dims=(-2, -1))[..., 1:-1, 1:-1])
    y = aug("RandomRotation", (channels, size, size), degrees=[90, 90], interpolation="bilinear")(x, 0, 0, 0)
    assert torch.allclose(y[..., 1:-1, 1:-1], torch.rot90(x, 1, dims=(-2, -1))[..., 1:-1, 1:-1], atol=1e-5)


def test_rotation_fills_the_corners():
    x = torch.ones(2, 1, 9, 9)
    y = aug("RandomRotation", (1, 9, 9), degrees=[45, 45], fill=0.25)(x, 0, 0, 0)
    assert torch.equal(y[:, :, 0, 0], torch.full((2, 1), 0.25)) and torch.equal(y[:, :, 4, 4], torch.ones(2, 1))


def _tv_inverse_affine(angle, translate, scale, shear):
    """torchvision.transforms.functional._get_inverse_affine_matrix with centre (0, 0), in Python floats."""
    rot, sx, sy = math.radians(angle), math.radians(shear[0]), math.radians(shear[1])
    a = math.cos(rot - sy) / math.cos(sy)
    b = -math.cos(rot - sy) * math.tan(sx) / math.cos(sy) - math.sin(rot)
    c = math.sin(rot - sy) / math.cos(sy)
    d = -math.sin(rot - sy) * math.tan(sx) / math.cos(sy) + math.cos(rot)
    m = [v / scale for v in [d, -b, 0.0, -c, a, 0.0]]
    m[2] += m[0] * -translate[0] + m[1] * -translate[1]
    m[5] += m[3] * -translate[0] + m[4] * -translate[1]
    return m


def _tv_affine(img, matrix, mode, fill):
    """torchvision's tensor affine on one [C, H, W] image: _gen_affine_grid + _apply_grid_transform."""
    c, h, w = img.shape
    theta = torch.tensor(matrix, dtype=torch.float32).reshape(1, 2, 3)
    base = torch.empty(1, h, w, 3)
    base[..., 0].copy_(torch.linspace(-w * 0.5 + 0.5, w * 0.5 - 0.5, steps=w))
    base[..., 1].copy_(torch.linspace(-h * 0.5 + 0.5, h * 0.5 - 0.5, steps=h).unsqueeze_(-1))
    base[..., 2].fill_(1)
    grid = base.view(1, h * w, 3).bmm(theta.transpose(1, 2) / torch.tensor([0.5 * w, 0.5 * h])).view(1, h, w, 2)
    out = F.grid_sample(torch.cat([img[None], torch.ones(1, 1, h, w)], 1), grid, mode=mode, align_corners=False)
    out, mask = out[:, :-1], out[:, -1:].expand(1, c, h, w)
    if mode == "nearest":
        out[mask < 0.5] = fill
        return out[0]
    return (out * mask + (1 - mask) * fill)[0]


@pytest.mark.parametrize("mode", ["nearest", "bilinear"])
@pytest.mark.parametrize("fill", [0.0, 0.3])
def test_affine_and_rotation_match_torchvision_per_image(mode, fill):
    x = images(6, (3, 9, 10))
    for name, given in [("RandomAffine", BUSY["RandomAffine"]), ("RandomRotation", {"degrees": 40})]:
        a = aug(name, (3, 9, 10), **given, interpolation=mode, fill=fill)
        d = a.ops[0].draw(torch.Generator().manual_seed(op_seed(1, 2, 3, 0)), 6)
        y = a(x, 1, 2, 3)
        for i in range(6):
            if name == "RandomRotation":
                m = _tv_inverse_affine(-float(d["angle"][i]), (0.0, 0.0), 1.0, (0.0, 0.0))
            else:
                m = _tv_inverse_affine(float(d["angle"][i]), (float(d["tx"][i]), float(d["ty"][i])),
                                       float(d["scale"][i]), (float(d["shear_x"][i]), float(d["shear_y"][i])))
            assert torch.allclose(y[i], _tv_affine(x[i], m, mode, fill), atol=1e-5), (name, i)


def test_affine_draws_lie_in_their_ranges():
    a = aug("RandomAffine", (1, 10, 20), **BUSY["RandomAffine"])
    d = a.ops[0].draw(torch.Generator().manual_seed(0), 500)
    assert d["angle"].abs().max() <= 20 and d["tx"].abs().max() <= 4 and d["ty"].abs().max() <= 1
    assert torch.equal(d["tx"], d["tx"].round()) and 0.8 <= d["scale"].min() and d["scale"].max() <= 1.2
    assert d["shear_x"].abs().max() <= 5 and d["shear_y"].abs().max() <= 3 and d["shear_y"].abs().max() > 0


@pytest.mark.parametrize("mode", ["nearest", "bilinear"])
def test_resized_crop_is_crop_then_interpolate(mode):
    x = images(20, (2, 12, 10))
    a = aug("RandomResizedCrop", (2, 12, 10), size=[7, 9], scale=(0.2, 0.9), ratio=(0.5, 2.0), interpolation=mode)
    d = a.ops[0].draw(torch.Generator().manual_seed(op_seed(0, 0, 0, 0)), 20)
    y = a(x, 0, 0, 0)
    for i in range(20):
        t, c, h, w = (int(d[k][i]) for k in ("top", "left", "h", "w"))
        assert 0 <= t and t + h <= 12 and 0 <= c and c + w <= 10
        assert 0.2 * 120 - 12 <= h * w <= 0.9 * 120 + 12 and 0.4 <= w / h <= 2.5  # the draw, up to rounding
        ref = F.interpolate(x[i:i + 1, :, t:t + h, c:c + w], size=(7, 9), mode=mode,
                            align_corners=False if mode == "bilinear" else None)
        assert torch.allclose(y[i], ref[0], atol=1e-6), i


def test_resized_crop_falls_back_to_a_central_crop():
    # aspect 4..5 with area >= 90 never fits 10x10: torchvision's fallback, w = 10, h = round(10 / 4), centred
    a = aug("RandomResizedCrop", (1, 10, 10), size=4, scale=(0.9, 1.0), ratio=(4.0, 5.0))
    d = a.ops[0].draw(torch.Generator().manual_seed(0), 8)
    assert torch.equal(d["w"], torch.full((8,), 10)) and torch.equal(d["h"], torch.full((8,), 2))
    assert torch.equal(d["top"], torch.full((8,), 4)) and torch.equal(d["left"], torch.zeros(8, dtype=torch.long))


def test_color_jitter_hand_computed():
    x = torch.tensor([[[[0.2, 0.8]], [[0.4, 0.1]], [[0.6, 0.3]]]])  # [1, 3, 1, 2]: two RGB pixels
    gray = 0.2989 * x[:, 0] + 0.587 * x[:, 1] + 0.114 * x[:, 2]  # [1, 1, 2]

    def run(**given):
        return aug("ColorJitter", (3, 1, 2), **given)(x, 0, 0, 0)

    assert torch.allclose(run(brightness=[1.5, 1.5]), (x * 1.5).clamp(0, 1))
    mean = gray.mean()
    assert torch.allclose(run(contrast=[0.5, 0.5]), (0.5 * x + 0.5 * mean).clamp(0, 1))
    assert torch.allclose(run(saturation=[2.0, 2.0]), (2.0 * x - gray[:, None]).clamp(0, 1))
    red_green = torch.tensor([[[[1.0, 0.0]], [[0.0, 1.0]], [[0.0, 0.0]]]])
    hue = aug("ColorJitter", (3, 1, 2), hue=[1 / 3, 1 / 3])(red_green, 0, 0, 0)  # red -> green, green -> blue
    assert torch.allclose(hue, torch.tensor([[[[0.0, 0.0]], [[1.0, 0.0]], [[0.0, 1.0]]]]), atol=1e-6)
    one = torch.tensor([[[[0.2, 0.6]]]])
    assert torch.allclose(aug("ColorJitter", (1, 1, 2), contrast=[0.5, 0.5])(one, 0, 0, 0),
                          0.5 * one + 0.5 * one.mean())
    assert torch.equal(aug("ColorJitter", (1, 1, 2), saturation=0.9, hue=0.5)(one, 0, 0, 0), one)


def test_color_jitter_factor_ranges_are_torchvision_s():
    x = torch.full((400, 1, 2, 2), 0.5)
    y = aug("ColorJitter", (1, 2, 2), brightness=0.4)(x, 0, 0, 0)[:, 0, 0, 0] / 0.5
    assert 0.6 <= y.min() < 0.65 and 1.35 < y.max() <= 1.4 and y.std() > 0.1
    y = aug("ColorJitter", (1, 2, 2), brightness=1.5)(x, 0, 0, 0)[:, 0, 0, 0] / 0.5  # [max(0, 1 - 1.5), 2.5]
    assert y.min() < 0.1 and torch.equal(y.max(), torch.tensor(2.0))  # clamped at 1


def test_erasing_erases_one_box_with_its_area_fraction():
    x = torch.ones(30, 1, 32, 32)
    y = aug("RandomErasing", (1, 32, 32), p=1, scale=(0.05, 0.3), ratio=(0.5, 2.0), value=0.0)(x, 0, 0, 0)
    for i in range(30):
        rows, cols = (y[i, 0] == 0).nonzero(as_tuple=True)
        h, w = int(rows.max() - rows.min() + 1), int(cols.max() - cols.min() + 1)
        assert len(rows) == h * w  # a full rectangle
        assert 0.05 * 0.8 <= h * w / 1024 <= 0.3 * 1.2  # the drawn area, up to rounding h and w
    assert torch.equal(aug("RandomErasing", (1, 32, 32), p=1, value=0.75)(x, 0, 0, 0).unique(), torch.tensor([0.75, 1]))


def test_erasing_leaves_the_image_when_no_attempt_fits():
    x = torch.ones(8, 1, 16, 16)  # a 16x16 box is not strictly smaller than the image: torchvision erases nothing
    assert torch.equal(aug("RandomErasing", (1, 16, 16), p=1, scale=(1, 1), ratio=(1, 1))(x, 0, 0, 0), x)


def test_erasing_chooses_samples_with_probability_p():
    x = torch.ones(400, 1, 16, 16)
    erased = (aug("RandomErasing", (1, 16, 16), p=0.3)(x, 0, 0, 0) == 0).flatten(1).any(1).float().mean()
    assert 0.2 < erased < 0.4


def test_problems():
    def problems(*ops, shape=(1, 28, 28)):
        return augment_problems([(name, fill_defaults(name, given)) for name, given in ops], shape)

    assert problems(("RandomCrop", {"size": 32, "padding": 2}), ("RandomHorizontalFlip", {})) == []
    assert problems(("RandomCrop", {"size": 33, "padding": 2})) == [
        (0, "crop size 33x33 is larger than the padded image (32x32)")]
    assert problems(("RandomHorizontalFlip", {}), ("RandomCrop", {"size": [20, 29]}))[0][0] == 1
    assert problems(("RandomCrop", {"size": 20}), ("RandomCrop", {"size": 24}))[0][0] == 1  # after the first crop
    assert problems(("RandomResizedCrop", {"size": 10}), ("RandomCrop", {"size": 12}))[0][0] == 1
    found = problems(("RandomResizedCrop", {"size": 20, "scale": (0.9, 0.1)}), ("RandomErasing", {"ratio": (1, 2, 3)}),
                     ("RandomRotation", {"degrees": -5}), ("RandomAffine", {"degrees": 0, "shear": (1, 2, 3)}),
                     ("ColorJitter", {"hue": 0.7}), ("RandomCrop", {"size": 20, "padding": 28, "padding_mode": "reflect"}),
                     ("RandomCrop", {"size": 10, "padding": [1, 2, 3]}))
    assert [i for i, _ in found] == [0, 1, 2, 3, 4, 5, 6]
    assert "min <= max" in found[0][1] and "2 values" in found[1][1] and ">= 0" in found[2][1]
    assert problems(("ColorJitter", {"brightness": 0.2}), shape=(4, 8, 8))[0][0] == 0
    assert augment_problems([("RandomCrop", fill_defaults("RandomCrop", {"size": 4}))], (784,))  # type: ignore[arg-type]
    with pytest.raises(SettingError, match="larger than the image"):
        aug("RandomCrop", size=9)
    with pytest.raises(SettingError):
        Augmenter([("RandomFlip", {})], (1, 8, 8))


def test_an_empty_slice():
    a = aug("RandomCrop", size=5, padding=1)
    assert a(torch.rand(0, 1, 8, 8), 0, 0, 0, offset=4, total=4).shape == (0, 1, 5, 5)


def test_wrong_input_shape():
    with pytest.raises(ValueError, match=r"expects \[n, 1, 8, 8\]"):
        aug("RandomHorizontalFlip")(torch.rand(2, 1, 8, 9), 0, 0, 0)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_gives_the_cpu_batch():
    a = Augmenter([(name, fill_defaults(name, given)) for name, given in BUSY.items()], (3, 8, 8))
    x = images(9, (3, 8, 8))
    y = a(x.cuda(), 0, 0, 0)
    assert y.device.type == "cuda" and torch.allclose(y.cpu(), a(x, 0, 0, 0), atol=1e-5)
