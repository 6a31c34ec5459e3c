"""Image folders, decoding, the decoded-image cache, and .npy/.npz sources (netspec/images.py).

Pillow is the oracle for decoded values; image folders are written into tmp_path; the
committed files in tests/fixtures/images are one image per format plus two broken ones.
"""

from __future__ import annotations

import json
import os
import stat
import struct
import threading
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from netspec.data import images
from netspec.data.datasets import cache_dir, find_dataset
from netspec.data.images import decode_image, load_image_folder, load_npy, load_npz, scan_folder
from netspec.errors import DataError
from tests.conftest import FIXTURES, SAID, say

IMAGES = FIXTURES / "images"
FORMATS = ["rgb.png", "rgb.jpg", "rgb.bmp", "rgb.webp"]


def pillow(path: Path, size: tuple[int, int], channels: int) -> np.ndarray:
    """The oracle: what Pillow itself gives, as [C, H, W]."""
    with Image.open(path) as im:
        im = im.convert("L" if channels == 1 else "RGB")
        if im.size != (size[1], size[0]):
            im = im.resize((size[1], size[0]), Image.Resampling.BILINEAR)
        arr = np.asarray(im)
    return arr[None] if channels == 1 else arr.transpose(2, 0, 1)


def write_image(path: Path, seed: int, size: tuple[int, int] = (6, 5), mode: str = "RGB") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    shape = (size[0], size[1], 3) if mode == "RGB" else size
    Image.fromarray(rng.integers(0, 256, shape, dtype=np.uint8), mode).save(path)
    return path


def make_folder(root: Path, layout: dict[str, int], ext: str = ".png") -> Path:
    seed = 0
    for cls, count in layout.items():
        (root / cls).mkdir(parents=True, exist_ok=True)
        for i in range(count):
            write_image(root / cls / f"{i:03d}{ext}", seed)
            seed += 1
    return root


def touch_later(path: Path) -> None:
    st = path.stat()
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 5_000_000_000))


@pytest.fixture
def cache(tmp_path) -> Path:
    return tmp_path / "cache"


# ---------------------------------------------------------------- decoding


@pytest.mark.parametrize("name", FORMATS)
@pytest.mark.parametrize("channels", [1, 3])
@pytest.mark.parametrize("size", [(6, 8), (3, 4), (10, 7)])
def test_decode_matches_pillow(name, channels, size):
    got = decode_image(IMAGES / name, size, channels)
    assert got.dtype == np.uint8 and got.shape == (channels, *size) and got.flags.c_contiguous
    assert np.array_equal(got, pillow(IMAGES / name, size, channels))


def test_lossless_formats_keep_exact_pixels():
    png = decode_image(IMAGES / "rgb.png", (6, 8), 3)
    for name in ("rgb.bmp", "rgb.webp"):
        assert np.array_equal(decode_image(IMAGES / name, (6, 8), 3), png)


@pytest.mark.parametrize("mode", ["RGBA", "LA", "P", "1", "L"])
def test_modes_convert_like_pillow(tmp_path, mode):
    rgb = Image.open(IMAGES / "rgb.png").convert("RGB")
    path = tmp_path / f"{mode}.png"
    rgb.convert(mode).save(path)
    for channels in (1, 3):
        assert np.array_equal(decode_image(path, (6, 8), channels), pillow(path, (6, 8), channels))


def test_sixteen_bit_grayscale_is_scaled_not_clipped(tmp_path):
    wide = np.array([[0, 257, 32896], [65535, 1000, 65280]], dtype=np.uint16)
    path = tmp_path / "deep.png"
    Image.fromarray(wide).save(path)
    assert np.array_equal(decode_image(path, (2, 3), 1)[0], [[0, 1, 128], [255, 4, 254]])
    assert np.array_equal(decode_image(path, (2, 3), 3), np.repeat(decode_image(path, (2, 3), 1), 3, axis=0))


def test_uppercase_extension_and_format_not_matching_extension(tmp_path):
    (tmp_path / "a").mkdir()
    jpeg_named_png = tmp_path / "a" / "x.PNG"
    jpeg_named_png.write_bytes((IMAGES / "rgb.jpg").read_bytes())
    assert scan_folder(tmp_path).files == (jpeg_named_png,)
    assert np.array_equal(decode_image(jpeg_named_png, (6, 8), 3), pillow(IMAGES / "rgb.jpg", (6, 8), 3))


@pytest.mark.parametrize("name, message", [
    ("truncated.png", r"truncated\.png: cannot decode image .*truncated or corrupt"),
    ("text.png", r"text\.png: not a PNG, JPEG, BMP or WebP image"),
])
def test_broken_files_name_the_file(name, message):
    with pytest.raises(DataError, match=message):
        decode_image(IMAGES / name, (6, 8), 3)


def test_unsupported_format_refused(tmp_path):
    path = tmp_path / "x.png"
    Image.open(IMAGES / "rgb.png").save(path, format="GIF")
    with pytest.raises(DataError, match="not a PNG, JPEG, BMP or WebP"):
        decode_image(path, (6, 8), 3)


def png_declaring(width: int, height: int) -> bytes:
    """A PNG whose header claims width x height, with (almost) no pixel data."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 64)) + chunk(b"IEND", b"")


@pytest.mark.parametrize("width, height", [(10_000, 7_000), (10_000, 10_000), (30_000, 30_000)])
def test_decompression_bomb_refused(tmp_path, width, height):
    # 70 MP: over netspec's limit only; 100 MP: Pillow warns; 900 MP: Pillow raises
    path = tmp_path / "bomb.png"
    path.write_bytes(png_declaring(width, height))
    with pytest.raises(DataError, match=r"bomb\.png: image too large .*decompression bomb"):
        decode_image(path, (28, 28), 1)


def test_fifo_and_device_refused_without_hanging(tmp_path):
    fifo = tmp_path / "pipe.png"
    os.mkfifo(fifo)
    result: list[BaseException] = []

    def decode(p: Path) -> object:
        return decode_image(p, (2, 2), 1)

    def attempt() -> None:
        zero = Path("/dev/zero")
        for target, call in [(fifo, decode), (zero, decode), (fifo, load_npy), (zero, load_npy), (fifo, load_npz)]:
            try:
                call(target)
            except DataError as e:
                result.append(e)

    thread = threading.Thread(target=attempt, daemon=True)
    thread.start()
    thread.join(10)
    assert not thread.is_alive(), "reading a FIFO or device hung"
    assert len(result) == 5
    assert all("not a regular file" in str(e) for e in result)
    assert str(fifo) in str(result[0]) and "/dev/zero" in str(result[1])


def test_missing_oversized_and_folder_image_files(tmp_path, monkeypatch):
    with pytest.raises(DataError, match=r"nope\.png: no such file"):
        decode_image(tmp_path / "nope.png", (2, 2), 1)
    (tmp_path / "dir.png").mkdir()
    with pytest.raises(DataError, match=r"dir\.png: is a folder, not a PNG/JPEG/BMP/WebP file"):
        decode_image(tmp_path / "dir.png", (2, 2), 1)
    monkeypatch.setattr(images, "MAX_IMAGE_BYTES", 100)
    with pytest.raises(DataError, match=r"rgb\.jpg: too large for a PNG/JPEG/BMP/WebP file"):
        decode_image(IMAGES / "rgb.jpg", (2, 2), 1)


# ---------------------------------------------------------------- scanning


def test_classes_sorted_and_labels(tmp_path):
    root = make_folder(tmp_path / "train", {"dog": 2, "cat": 3, "bird": 1})
    write_image(root / "cat" / "nested" / "deep" / "z.png", 99)
    write_image(root / "cat" / "0.jpg", 98)
    (root / "cat" / "notes.txt").write_text("ignored")
    (root / "cat" / ".hidden.png").write_bytes(b"ignored: hidden")
    (root / ".cache").mkdir()
    (root / "README").write_text("a file in root is not a class")
    index = scan_folder(root)
    assert index.classes == ("bird", "cat", "dog")
    assert index.labels.dtype == np.int64
    assert index.labels.tolist() == [0, 1, 1, 1, 1, 1, 2, 2]
    rel = [f.relative_to(root).as_posix() for f in index.files]
    assert rel == ["bird/000.png", "cat/0.jpg", "cat/000.png", "cat/001.png", "cat/002.png", "cat/nested/deep/z.png",
                   "dog/000.png", "dog/001.png"]


def test_class_list_reused_for_test_folder(tmp_path):
    make_folder(tmp_path / "test", {"dog": 1, "bird": 2})
    index = scan_folder(tmp_path / "test", classes=("bird", "cat", "dog"))
    assert index.classes == ("bird", "cat", "dog")
    assert index.labels.tolist() == [0, 0, 2]


def test_unknown_class_names_folder_and_known_classes(tmp_path):
    make_folder(tmp_path / "test", {"dog": 1, "wolf": 1})
    with pytest.raises(DataError, match=r"test/wolf: class `wolf` is not one of the training classes \(cat, dog\)"):
        scan_folder(tmp_path / "test", classes=("cat", "dog"))


def test_scan_errors(tmp_path):
    with pytest.raises(DataError, match="missing: no such folder"):
        scan_folder(tmp_path / "missing")
    (tmp_path / "file").write_text("x")
    with pytest.raises(DataError, match="file: not a folder"):
        scan_folder(tmp_path / "file")
    flat = tmp_path / "flat"
    write_image(flat / "a.png", 0)
    with pytest.raises(DataError, match=r"flat: no class subfolders \(1 other files ignored: 1 \.png\)") as e:
        scan_folder(flat)
    assert "one subfolder per class" in str(e.value)
    other = tmp_path / "other"
    (other / "a").mkdir(parents=True)
    (other / "b").mkdir()
    for i in range(3):
        (other / "a" / f"{i}.gif").write_bytes(b"GIF89a")
    (other / "b" / "x.tiff").write_bytes(b"II*")
    with pytest.raises(DataError, match=r"no images found in 2 class folders \(4 other files ignored: 3 \.gif, 1 \."):
        scan_folder(other)


def test_empty_class_folder_warns_and_keeps_index(tmp_path, capsys):
    root = make_folder(tmp_path / "train", {"a": 1, "c": 1})
    (root / "b").mkdir()
    index = say(scan_folder(root))
    assert index.classes == ("a", "b", "c") and index.labels.tolist() == [0, 2]
    assert "1 class folder holds no images and keeps its class index: b" in capsys.readouterr().err


def test_symlinked_folders(tmp_path, capsys):
    outside = make_folder(tmp_path / "elsewhere", {"x": 2})
    root = make_folder(tmp_path / "train", {"a": 1, "b": 1})
    (root / "a" / "out").symlink_to(outside / "x", target_is_directory=True)
    (root / "a" / "loop").symlink_to(root / "a", target_is_directory=True)
    (root / "a" / "up").symlink_to(root, target_is_directory=True)
    (root / "a" / "inside").symlink_to(root / "b", target_is_directory=True)
    (root / "c").symlink_to(outside / "x", target_is_directory=True)
    (root / "b" / "link.png").symlink_to(outside / "x" / "000.png")
    index = say(scan_folder(root))
    rel = [f.relative_to(root).as_posix() for f in index.files]
    assert index.classes == ("a", "b")
    assert rel == ["a/000.png", "a/inside/000.png", "a/inside/link.png", "b/000.png", "b/link.png"]
    err = capsys.readouterr().err
    for name in ("a/out", "a/loop", "a/up", "train/c"):
        assert f"{name}: symbolic link to a folder outside" in err


# ---------------------------------------------------------------- the cache


def test_cache_matches_direct_decoding(tmp_path, cache, capsys):
    root = make_folder(tmp_path / "train", {"b": 3, "a": 2})
    write_image(root / "a" / "wide.png", 50, size=(9, 13))
    got = say(load_image_folder(root, (4, 5), 3, cache_root=cache))
    assert got.built and got.classes == ("a", "b")
    assert isinstance(got.x, np.memmap) and not got.x.flags.writeable
    assert got.x.dtype == np.uint8 and got.x.shape == (6, 3, 4, 5)
    assert got.y.dtype == np.int64 and got.y.tolist() == [0, 0, 0, 1, 1, 1]
    assert got.files == scan_folder(root).files and got.skipped == ()
    for i, f in enumerate(got.files):
        assert np.array_equal(got.x[i], pillow(f, (4, 5), 3))
    assert got.cache.parent == cache and len(got.cache.name) == 64
    assert f"decoded 6 images from {root} into {got.cache} (" in capsys.readouterr().err


def test_cache_layout_and_permissions(tmp_path, cache):
    root = make_folder(tmp_path / "train", {"a": 2, "b": 1})
    got = load_image_folder(root, (3, 3), 1, cache_root=cache / "deeper")
    assert sorted(p.name for p in got.cache.iterdir()) == ["meta.json", "x.uint8", "y.npy"]
    for folder in (cache, cache / "deeper", got.cache):
        assert stat.S_IMODE(folder.stat().st_mode) == 0o700
    meta = json.loads((got.cache / "meta.json").read_text())
    assert meta["n"] == 3 and meta["shape"] == [3, 1, 3, 3] and meta["classes"] == ["a", "b"]
    assert meta["files"] == ["a/000.png", "a/001.png", "b/000.png"] and meta["skipped"] == []
    assert (got.cache / "x.uint8").stat().st_size == 27
    assert np.array_equal(np.load(got.cache / "y.npy"), [0, 0, 1])
    assert [p.name for p in cache.iterdir()] == ["deeper"]  # no temporary folder left behind


def test_default_cache_location(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    got = load_image_folder(make_folder(tmp_path / "train", {"a": 1}), (2, 2), 1, progress=False)
    assert got.cache.parent == tmp_path / "xdg" / "netspec" / "images"


def no_decoding(*args, **kwargs):
    raise AssertionError("decoded although a valid cache exists")


def test_cache_reused_without_decoding(tmp_path, cache, monkeypatch, capsys):
    root = make_folder(tmp_path / "train", {"a": 2, "b": 2})
    first = say(load_image_folder(root, (4, 4), 1, cache_root=cache))
    capsys.readouterr()
    monkeypatch.setattr(images, "decode_image", no_decoding)
    again = say(load_image_folder(root, (4, 4), 1, cache_root=cache))
    assert not again.built and again.cache == first.cache
    assert np.array_equal(again.x, first.x) and np.array_equal(again.y, first.y) and again.files == first.files
    assert capsys.readouterr().err == ""


@pytest.mark.parametrize("change", ["touch", "add", "remove", "size", "channels", "classes"])
def test_cache_invalidated(tmp_path, cache, monkeypatch, change):
    root = make_folder(tmp_path / "train", {"a": 2, "b": 2})
    first = load_image_folder(root, (4, 4), 1, cache_root=cache, progress=False)
    size, channels, classes = (4, 4), 1, None
    if change == "touch":
        write_image(root / "a" / "000.png", 77)
        touch_later(root / "a" / "000.png")
    elif change == "add":
        write_image(root / "b" / "new.png", 78)
    elif change == "remove":
        (root / "b" / "001.png").unlink()
    elif change == "size":
        size = (5, 4)
    elif change == "channels":
        channels = 3
    else:
        classes = ("a", "b", "c")
    again = load_image_folder(root, size, channels, classes, cache_root=cache, progress=False)
    assert again.built and again.cache != first.cache
    assert again.x.shape == (len(scan_folder(root).files), channels, *size)
    for i, f in enumerate(again.files):
        assert np.array_equal(again.x[i], pillow(f, size, channels))
    superseded = change in ("touch", "add", "remove")  # same source, older file list: removed
    assert first.cache.exists() != superseded


def test_invalid_cache_rebuilt(tmp_path, cache):
    root = make_folder(tmp_path / "train", {"a": 2})
    first = load_image_folder(root, (4, 4), 1, cache_root=cache, progress=False)
    with open(first.cache / "x.uint8", "r+b") as f:
        f.truncate(10)
    again = load_image_folder(root, (4, 4), 1, cache_root=cache, progress=False)
    assert again.built and again.cache == first.cache and again.x.shape == (2, 1, 4, 4)
    (again.cache / "meta.json").write_text("{not json")
    assert load_image_folder(root, (4, 4), 1, cache_root=cache, progress=False).built


def test_losing_builder_uses_the_winners_folder(tmp_path, cache):
    root = make_folder(tmp_path / "train", {"a": 2})
    first = load_image_folder(root, (4, 4), 1, cache_root=cache, progress=False)
    inode = (first.cache / "x.uint8").stat().st_ino
    job = images._Job(scan_folder(root), (4, 4), 1, False)
    key, source = images._cache_key(job)
    late = images._build(job, cache, cache / key, source, 1, False, [])  # its rename finds the folder taken
    assert late.cache == first.cache and (late.cache / "x.uint8").stat().st_ino == inode
    assert [p.name for p in cache.iterdir()] == [key]


def test_dead_builders_temp_folders_removed(tmp_path, cache):
    cache.mkdir(mode=0o700)
    dead = cache / f"{images._temp_prefix().rsplit('-', 2)[0]}-999999999-abc"
    dead.mkdir()
    load_image_folder(make_folder(tmp_path / "train", {"a": 1}), (2, 2), 1, cache_root=cache, progress=False)
    assert not dead.exists()


def test_bad_image_is_an_error_naming_it(tmp_path, cache):
    root = make_folder(tmp_path / "train", {"a": 2, "b": 2})
    (root / "b" / "0005.png").write_bytes((IMAGES / "truncated.png").read_bytes())
    with pytest.raises(DataError, match=r"b/0005\.png: cannot decode image") as e:
        load_image_folder(root, (4, 4), 1, cache_root=cache, progress=False)
    assert "skip_bad: true" in str(e.value)
    assert list(cache.iterdir()) == []  # the temporary folder is gone


def test_skip_bad_skips_and_reports(tmp_path, cache, capsys):
    root = make_folder(tmp_path / "train", {"a": 2, "b": 2})
    (root / "a" / "0001x.png").write_bytes((IMAGES / "text.png").read_bytes())
    (root / "b" / "0005.png").write_bytes((IMAGES / "truncated.png").read_bytes())
    got = say(load_image_folder(root, (4, 4), 1, skip_bad=True, cache_root=cache))
    assert [f.name for f, _ in got.skipped] == ["0001x.png", "0005.png"]
    assert "not a PNG" in got.skipped[0][1] and "truncated" in got.skipped[1][1]
    assert [f.name for f in got.files] == ["000.png", "001.png", "000.png", "001.png"]
    assert got.y.tolist() == [0, 0, 1, 1] and got.x.shape == (4, 1, 4, 4)
    for i, f in enumerate(got.files):
        assert np.array_equal(got.x[i], pillow(f, (4, 4), 1))
    err = capsys.readouterr().err
    assert "warning: skipped:" in err and "0001x.png" in err and "0005.png" in err
    again = say(load_image_folder(root, (4, 4), 1, skip_bad=True, cache_root=cache))
    assert not again.built and again.skipped == got.skipped and again.files == got.files
    assert capsys.readouterr().err.count("warning: skipped:") == 0  # said once per process (check, then training)
    SAID.clear()  # a later run: a new process
    say(load_image_folder(root, (4, 4), 1, skip_bad=True, cache_root=cache))
    assert capsys.readouterr().err.count("warning: skipped:") == 2  # reported again when the cache is reused


def test_skip_bad_with_nothing_readable(tmp_path, cache):
    (tmp_path / "train" / "a").mkdir(parents=True)
    (tmp_path / "train" / "a" / "x.png").write_bytes(b"junk")
    with pytest.raises(DataError, match="none of the 1 images could be read"):
        load_image_folder(tmp_path / "train", (4, 4), 1, skip_bad=True, cache_root=cache, progress=False)


def test_skipped_warnings_are_capped(tmp_path, cache, capsys):
    (tmp_path / "train" / "a").mkdir(parents=True)
    write_image(tmp_path / "train" / "a" / "good.png", 1)
    for i in range(13):
        (tmp_path / "train" / "a" / f"bad{i:02d}.png").write_bytes(b"junk")
    got = say(load_image_folder(tmp_path / "train", (4, 4), 1, skip_bad=True, cache_root=cache, progress=False))
    assert len(got.skipped) == 13 and len(got.files) == 1
    err = capsys.readouterr().err
    assert err.count("warning: skipped:") == 10 and "skipped 3 more unreadable images" in err


def test_process_pool_matches_in_process(tmp_path, cache, monkeypatch):
    root = make_folder(tmp_path / "train", {"a": 7, "b": 6})
    (root / "a" / "003x.png").write_bytes(b"junk")
    (root / "b" / "000x.png").write_bytes((IMAGES / "truncated.png").read_bytes())
    serial = load_image_folder(root, (5, 3), 3, skip_bad=True, cache_root=cache / "serial", workers=1, progress=False)
    monkeypatch.setattr(images, "POOL_MIN_IMAGES", 0)
    monkeypatch.setattr(images, "CHUNK_MAX_IMAGES", 2)
    pooled = load_image_folder(root, (5, 3), 3, skip_bad=True, cache_root=cache / "pool", workers=2, progress=False)
    assert np.array_equal(np.asarray(pooled.x), np.asarray(serial.x))
    assert np.array_equal(pooled.y, serial.y) and pooled.files == serial.files and pooled.skipped == serial.skipped
    assert len(pooled.files) == 13
    with pytest.raises(DataError, match=r"a/003x\.png: not a PNG"):
        load_image_folder(root, (5, 3), 3, cache_root=cache / "strict", workers=2, progress=False)


def test_progress_false_is_quiet(tmp_path, cache, capsys):
    say(load_image_folder(make_folder(tmp_path / "train", {"a": 1}), (2, 2), 1, cache_root=cache, progress=False))
    assert capsys.readouterr().err == ""


# ---------------------------------------------------------------- .npy and .npz


def test_npy_round_trip_memory_mapped(tmp_path):
    x = np.arange(24, dtype=np.float32).reshape(6, 2, 2)
    y = np.array([0, 1, 2, 0, 1, 2])
    np.save(tmp_path / "x.npy", x)
    np.save(tmp_path / "y.npy", y)
    gx, gy = load_npy(tmp_path / "x.npy", tmp_path / "y.npy")
    assert isinstance(gx, np.memmap) and isinstance(gy, np.memmap) and not gx.flags.writeable
    assert np.array_equal(gx, x) and np.array_equal(gy, y)
    assert load_npy(str(tmp_path / "x.npy"))[1] is None


def test_npy_fortran_order_bool_and_float_targets(tmp_path):
    x = np.asfortranarray(np.arange(12, dtype=np.int16).reshape(3, 4))
    np.save(tmp_path / "x.npy", x)
    np.save(tmp_path / "b.npy", np.array([True, False, True]))
    np.save(tmp_path / "y.npy", np.array([[0.5, 1.0], [1.5, 2.0], [2.5, 3.0]]))
    gx, gy = load_npy(tmp_path / "x.npy", tmp_path / "y.npy")
    assert np.array_equal(gx, x) and gy.shape == (3, 2)
    assert load_npy(tmp_path / "b.npy")[0].dtype == np.bool_


@pytest.mark.parametrize("x, message", [
    (np.array([{"a": 1}, None], dtype=object), "arrays of dtype object are not supported"),
    (np.array(["a", "b"]), "arrays of dtype <U1 are not supported"),
    (np.array([1 + 2j]), "arrays of dtype complex128 are not supported"),
    (np.zeros((2,), dtype=[("a", "f4"), ("b", "i4")]), r"arrays of dtype \[\('a', '<f4'\), .* are not supported"),
    (np.zeros((0, 3)), r"empty array \(shape \[0, 3\]\)"),
    (np.array(3.0), "a single number, not an array"),
])
def test_npy_bad_arrays(tmp_path, x, message):
    np.save(tmp_path / "x.npy", x, allow_pickle=True)
    with pytest.raises(DataError, match=f"x.npy: {message}"):
        load_npy(tmp_path / "x.npy")


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_npy_non_finite_names_the_sample_checked_in_chunks(tmp_path, monkeypatch, bad):
    from netspec.data import arrays

    monkeypatch.setattr(arrays, "CHECK_CHUNK_BYTES", 64)  # 8 samples of 2 float32 per chunk (.npy is arrays.py's)
    x = np.zeros((40, 2), dtype=np.float32)
    x[29, 1] = bad
    np.save(tmp_path / "x.npy", x)
    with pytest.raises(DataError, match=r"x\.npy: sample 29 holds NaN or infinity"):
        load_npy(tmp_path / "x.npy")
    np.save(tmp_path / "y.npy", x[:, 0])
    np.save(tmp_path / "y_bad.npy", x[:, 1])
    with pytest.raises(DataError, match=r"y_bad\.npy: sample 29"):
        load_npy(tmp_path / "y.npy", tmp_path / "y_bad.npy")


def test_npy_target_errors(tmp_path):
    np.save(tmp_path / "x.npy", np.zeros((4, 3)))
    np.save(tmp_path / "y5.npy", np.zeros(5, dtype=np.int64))
    np.save(tmp_path / "y2d.npy", np.zeros((4, 2), dtype=np.int64))
    with pytest.raises(DataError, match=r"x\.npy has 4 samples but .*y5\.npy has 5 targets"):
        load_npy(tmp_path / "x.npy", tmp_path / "y5.npy")
    with pytest.raises(DataError, match=r"y2d\.npy: integer targets must be 1-D class indices, got shape \[4, 2\]"):
        load_npy(tmp_path / "x.npy", tmp_path / "y2d.npy")


def test_npy_file_errors(tmp_path):
    with pytest.raises(DataError, match=r"nope\.npy: no such file"):
        load_npy(tmp_path / "nope.npy")
    (tmp_path / "text.npy").write_text("hello")
    with pytest.raises(DataError, match=r"text\.npy: not a \.npy file"):
        load_npy(tmp_path / "text.npy")
    np.save(tmp_path / "cut.npy", np.zeros((100, 10)))
    data = (tmp_path / "cut.npy").read_bytes()
    (tmp_path / "cut.npy").write_bytes(data[:-80])
    with pytest.raises(DataError, match=r"cut\.npy: truncated: the header says shape \[100, 10\] \(8,000 bytes\)"):
        load_npy(tmp_path / "cut.npy")
    (tmp_path / "dir.npy").mkdir()
    with pytest.raises(DataError, match=r"dir\.npy: is a folder"):
        load_npy(tmp_path / "dir.npy")


def test_npz_uncompressed_is_memory_mapped(tmp_path):
    x = np.arange(60, dtype=np.float64).reshape(5, 3, 4)
    y = np.arange(5)
    np.savez(tmp_path / "d.npz", images=x, labels=y, other=np.ones(3))
    gx, gy = load_npz(tmp_path / "d.npz", "images", "labels")
    assert isinstance(gx, np.memmap) and isinstance(gy, np.memmap)
    assert np.array_equal(gx, x) and np.array_equal(gy, y)
    np.savez(tmp_path / "plain.npz", x=np.asfortranarray(x[:, :, 0]), y=y)
    gx, gy = load_npz(tmp_path / "plain.npz")
    assert np.array_equal(gx, x[:, :, 0]) and np.array_equal(gy, y)


def test_npz_compressed_is_read(tmp_path):
    x = np.arange(60, dtype=np.uint8).reshape(5, 12)
    np.savez_compressed(tmp_path / "c.npz", x=x, y=np.arange(5.0))
    gx, gy = load_npz(tmp_path / "c.npz")
    assert not isinstance(gx, np.memmap)
    assert np.array_equal(gx, x) and gy.dtype == np.float64


def test_npz_keys(tmp_path):
    np.savez(tmp_path / "d.npz", images=np.zeros((2, 2)), labels=np.zeros(2, dtype=np.int64))
    with pytest.raises(DataError, match=r"d\.npz: no array named `x`; the file holds: images, labels"):
        load_npz(tmp_path / "d.npz")
    with pytest.raises(DataError, match=r"d\.npz: no array named `targets`; the file holds: images, labels"):
        load_npz(tmp_path / "d.npz", "images", "targets")
    x, y = load_npz(tmp_path / "d.npz", "images")  # default y absent: inputs only
    assert y is None and x.shape == (2, 2)
    assert load_npz(tmp_path / "d.npz", "images", None)[1] is None


@pytest.mark.parametrize("save", [np.savez, np.savez_compressed])
def test_npz_bad_contents(tmp_path, save):
    x = np.zeros((4, 2))
    x[2, 0] = np.nan
    save(tmp_path / "nan.npz", x=x)
    with pytest.raises(DataError, match=r"nan\.npz\[x\]: sample 2 holds NaN"):
        load_npz(tmp_path / "nan.npz")
    save(tmp_path / "obj.npz", x=np.array([None, 1], dtype=object))
    with pytest.raises(DataError, match=r"obj\.npz\[x\]: arrays of dtype object"):
        load_npz(tmp_path / "obj.npz")
    save(tmp_path / "len.npz", x=np.zeros((4, 2)), y=np.zeros(3, dtype=np.int64))
    with pytest.raises(DataError, match=r"len\.npz\[x\] has 4 samples but .*len\.npz\[y\] has 3 targets"):
        load_npz(tmp_path / "len.npz")


def test_npz_not_a_zip(tmp_path):
    (tmp_path / "d.npz").write_bytes(b"not a zip file")
    with pytest.raises(DataError, match=r"d\.npz: not an \.npz file"):
        load_npz(tmp_path / "d.npz")


# ---------------------------------------------------------------- MNIST as a real image folder

MNIST_PNG = cache_dir() / "mnist_png"


@pytest.mark.skipif(not (MNIST_PNG / ".complete").is_file(), reason="no MNIST PNG folder (scripts/get_data.py)")
def test_real_mnist_png_folder(tmp_path):
    from netspec.data.datasets import FILES, file_in
    from netspec.data.prepare import read_idx

    folder = find_dataset("mnist", None)[0]
    assert folder is not None
    train = scan_folder(MNIST_PNG / "train")
    assert train.classes == tuple(str(d) for d in range(10)) and len(train.files) == 10_000
    train_labels = read_idx(file_in(folder, FILES["train_labels"]))
    for f, label in list(zip(train.files, train.labels))[::997]:
        assert train_labels[int(f.stem)] == label == int(f.parent.name)
    test = load_image_folder(MNIST_PNG / "test", (28, 28), 1, classes=train.classes, cache_root=tmp_path,
                             progress=False)
    assert test.x.shape == (2000, 1, 28, 28)
    order = np.array([int(f.stem) for f in test.files])
    assert np.array_equal(test.y, read_idx(file_in(folder, FILES["test_labels"]))[order])
    assert np.array_equal(test.x[:, 0], read_idx(file_in(folder, FILES["test_images"]))[order])  # PNG is lossless
