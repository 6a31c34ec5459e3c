"""Image folders as data sources (numpy + Pillow; no torch); .npy/.npz files are arrays.py's.

In: an ImageFolder tree (``root/<class>/**/<image>``, PNG, JPEG, BMP, WebP).
Out: ``scan_folder`` -> ``FolderIndex`` (files, labels, classes); ``decode_image`` -> one
image as uint8 [C, H, W]; ``load_image_folder`` -> ``ImageArray`` whose ``x`` is a read-only
np.memmap of a decoded uint8 [N, C, H, W] cache file, so a data set larger than memory is
decoded once and then read from disk. Every problem is a ``DataError`` naming the file.

Image cache, one folder per key under ``cache_root`` (default ``cache_dir()/"images"``)::

    <key>/x.uint8     raw uint8 [N, C, H, W], C order (shape in meta.json)
    <key>/y.npy       int64 [N]
    <key>/meta.json   version, N, shape, classes, files and skipped files (relative to root),
                      the sha256 of x.uint8 then y.npy as written (`digest`)

``<key>`` is a sha256 over the cache format version, the Pillow version, the resolved root,
every file's relative path, size and mtime_ns, the class list, size, channels and skip_bad:
a changed, added or removed file gives a new key, so a stale cache is never read. A cache
is built in a temporary folder and renamed into place (a concurrent builder that loses the
race uses the winner's folder); caches of the same source superseded by a new build are
removed. Opening a cache reads it once to check its digest (sha256, about 0.75 GB/s on
this machine: see README's images benchmark): a cache whose pixels or labels changed since
it was built, or one built before digests were recorded, is said and rebuilt, never used.
Folders are mode 0700. Building decodes in a process pool (fork on Linux) of `workers`
processes, in chunks that the parent appends to x.uint8 in file order, so peak memory is a
few chunks whatever N is; sets under POOL_MIN_IMAGES decode in-process.
stderr gets a tqdm bar when it is a terminal (a progress display: the one thing drawn here); the
`decoded N images ...` line of a build and every warning are returned to the caller, who says them.

Folder scanning: hidden entries (names starting with ".") are ignored; files with other
extensions are ignored (and counted in the error when no image is found); symbolic links
to files are read; symbolic links to folders are followed only when they stay inside root
(and never in a cycle). A class folder without images keeps its class index and gets a
warning (the class list is the folder list, so indices stay stable). Entries that
are neither files nor folders (FIFOs, devices, sockets, broken links) are never opened, and
said once.

Decoding: Pillow, formats restricted to PNG, JPEG, BMP and WebP; converted to
"L" or "RGB" (alpha dropped, palettes expanded; 16-bit grayscale scaled to 8 bits rather
than clipped); resized with bilinear filtering (antialiased, as torchvision's PIL Resize)
when the size differs. EXIF orientation is not applied (as torchvision). Images over
MAX_PIXELS are refused as decompression bombs.
"""

from __future__ import annotations

import hashlib
import json
import math
import multiprocessing as mp
import os
import shutil
import socket
import stat
import sys
import tempfile
import time
import warnings
from collections import Counter, deque
from collections.abc import Iterator
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from netspec.data.datasets import cache_dir
from netspec.errors import NO_SPAN, DataError, Diagnostic, NetspecError, data_error
from netspec.util import count, open_regular, read_regular, write_error

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".webp")
OTHER_IMAGE_EXTENSIONS = (".gif", ".tif", ".tiff", ".jfif", ".jpe", ".heic", ".heif", ".avif", ".ppm", ".pgm",
                          ".pbm", ".pnm", ".ico", ".jp2", ".tga", ".svg", ".dng", ".cr2", ".nef", ".raw")  # skipped, said
PIL_FORMATS = ("PNG", "JPEG", "BMP", "WEBP")  # JPEG includes multi-picture (MPO) files
MAX_PIXELS = 64 * 2**20  # larger images are refused as decompression bombs
MAX_IMAGE_BYTES = 256 * 2**20  # one encoded image file
MAX_META_BYTES = 1 << 30
CACHE_VERSION = 1
POOL_MIN_IMAGES = 256  # below this, decoding in-process beats starting worker processes
CHUNK_BYTES = 8 * 2**20  # decoded bytes per worker task (bounds the parent's memory)
CHUNK_MAX_IMAGES = 512
DIGEST_CHUNK = 16 * 2**20  # bytes read at a time to check a cache's digest
WARN_LIST = 10
SPLIT_NAMES = ("train", "training", "test", "testing", "val", "valid", "validation", "dev", "eval")
SKIP_HELP = "`skip_bad: true` in `data` skips unreadable images (each is reported)"


def _warn(said: list[str], message: str) -> None:
    """A warning for the caller (each once per call): this module never prints."""
    if message not in said:
        said.append(message)


def _with_warnings(e: NetspecError, said: list[str]) -> NetspecError:
    """`e` with the warnings said before it (first, as the user would have read them)."""
    if not said:
        return e
    return type(e)([Diagnostic(w, NO_SPAN, "warning") for w in said] + e.diagnostics)


# ---------------------------------------------------------------- scanning


@dataclass(frozen=True)
class FolderIndex:
    root: Path
    files: tuple[Path, ...]  # sorted: by class, then by relative path
    labels: np.ndarray  # int64 [N], index into classes
    classes: tuple[str, ...]  # subfolder names, sorted
    warnings: tuple[str, ...] = ()  # for the caller to say (`warning: ...`): links not followed, empty classes, ...


@dataclass
class _Walk:
    """What a walk through one class folder found."""

    images: list[Path]
    ignored: Counter[str]
    links_skipped: list[Path]
    special: list[Path]  # FIFOs, devices, sockets, broken links: never opened


def _inside(path: str, root: str) -> bool:
    return path == root or path.startswith(root.rstrip(os.sep) + os.sep)


def _list_folder(folder: Path) -> list[os.DirEntry[str]]:
    try:
        with os.scandir(folder) as it:
            return [e for e in it if not e.name.startswith(".")]
    except OSError as e:
        raise data_error(f"{folder}: cannot list this folder ({e.strerror})") from None


def _is_dir(entry: os.DirEntry[str]) -> bool:
    try:
        return entry.is_dir(follow_symlinks=True)
    except OSError:
        return False


def _is_file(entry: os.DirEntry[str]) -> bool:
    try:
        return entry.is_file(follow_symlinks=True)
    except OSError:
        return False


def _walk_class(folder: Path, root_real: str) -> _Walk:
    """Images under one class folder, recursively (see the module docstring for links)."""
    found = _Walk([], Counter(), [], [])
    stack = [(folder, frozenset({root_real, os.path.realpath(folder)}))]
    while stack:
        current, ancestors = stack.pop()
        for entry in _list_folder(current):
            path = Path(entry.path)
            if _is_dir(entry):
                real = os.path.realpath(entry.path)
                if entry.is_symlink() and (not _inside(real, root_real) or real in ancestors):
                    found.links_skipped.append(path)
                    continue
                stack.append((path, ancestors | {real}))
            elif not _is_file(entry):
                found.special.append(path)
            elif path.suffix.lower() in IMAGE_EXTENSIONS:
                found.images.append(path)
            else:
                found.ignored[path.suffix.lower() or "(no extension)"] += 1
    found.images.sort(key=lambda p: p.relative_to(folder).parts)
    return found


def _class_folders(root: Path, root_real: str) -> tuple[dict[str, Path], Counter[str], list[Path], list[Path]]:
    """root's class subfolders by name, the other entries in root (by extension), skipped links,
    entries that are neither files nor folders."""
    folders: dict[str, Path] = {}
    others: Counter[str] = Counter()
    links: list[Path] = []
    special: list[Path] = []
    for entry in _list_folder(root):
        path = Path(entry.path)
        if not _is_dir(entry) and not _is_file(entry):
            special.append(path)
        elif not _is_dir(entry):
            others[path.suffix.lower() or "(no extension)"] += 1
        elif entry.is_symlink() and not _inside(os.path.realpath(entry.path), root_real):
            links.append(path)
        else:
            folders[entry.name] = path
    return folders, others, links, special


def _check_root(root: Path) -> None:
    if not root.exists():
        raise data_error(f"{root}: no such folder", "image_folder(...) takes a folder holding one subfolder per class")
    if not root.is_dir():
        raise data_error(f"{root}: not a folder", "image_folder(...) takes a folder holding one subfolder per class")


def _describe_ignored(ignored: Counter[str]) -> str:
    if not ignored:
        return "no other files"
    kinds = ", ".join(f"{n:,} {ext}" for ext, n in ignored.most_common(6))
    more = ", ..." if len(ignored) > 6 else ""
    return f"{sum(ignored.values()):,} other files ignored: {kinds}{more}"


def scan_folder(root: str | Path, classes: tuple[str, ...] | None = None) -> FolderIndex:
    """The images of an ImageFolder tree and their labels.

    classes=None: the sorted subfolders of root are the classes (training). Given (validation,
    test, predict reuse the training list): a subfolder not in it is an error; a class without
    a folder is fine."""
    said: list[str] = []
    try:
        return _scan(Path(root), classes, said)
    except NetspecError as e:
        raise _with_warnings(e, said) from None


def _scan(root: Path, classes: tuple[str, ...] | None, said: list[str]) -> FolderIndex:
    _check_root(root)
    root_real = os.path.realpath(root)
    folders, others, links, special = _class_folders(root, root_real)
    _warn_links(said, root, links)
    if not folders:
        raise data_error(f"{root}: no class subfolders ({_describe_ignored(others)})",
                         f"put the images in one subfolder per class: {root}/<class>/<image>")
    if classes is None:
        classes = tuple(sorted(folders))
        splits = sorted((c for c in classes if c.lower() in SPLIT_NAMES), key=lambda c: not c.lower().startswith("tr"))
        if splits and len(splits) >= len(classes) - 1:
            _warn(said, f"{root}: the class folders are named {', '.join(classes)}: is this the folder that holds the "
                  f"splits? Point `train:` at {root / splits[0]} (and `test:` at its sibling); each class is one "
                  "subfolder of it")
    else:
        _check_known_classes(root, folders, classes)
    return _index(root, root_real, folders, tuple(classes), special, said)


def _check_known_classes(root: Path, folders: dict[str, Path], classes: tuple[str, ...]) -> None:
    unknown = sorted(set(folders) - set(classes))
    if unknown:
        known = ", ".join(classes) if len(classes) <= 30 else ", ".join(classes[:30]) + ", ..."
        raise data_error(f"{folders[unknown[0]]}: class `{unknown[0]}` is not one of the training classes ({known})",
                         "the class list comes from the training folder; rename the folder or add the class there")


def _index(root: Path, root_real: str, folders: dict[str, Path], classes: tuple[str, ...],
           special: list[Path], said: list[str]) -> FolderIndex:
    files: list[Path] = []
    labels: list[int] = []
    ignored: Counter[str] = Counter()
    empty: list[str] = []
    for label, name in enumerate(classes):
        if name not in folders:
            continue
        walk = _walk_class(folders[name], root_real)
        _warn_links(said, root, walk.links_skipped)
        ignored.update(walk.ignored)
        special += walk.special
        if not walk.images:
            empty.append(name)
        files += walk.images
        labels += [label] * len(walk.images)
    if not files:
        raise data_error(f"{root}: no images found in {len(folders)} class folders ({_describe_ignored(ignored)})",
                         f"netspec reads {' '.join(IMAGE_EXTENSIONS)} files in {root}/<class>/")
    unread = Counter({ext: n for ext, n in ignored.items() if ext in OTHER_IMAGE_EXTENSIONS})
    if unread:
        _warn(said, f"{root}: {_describe_ignored(unread).replace('other files', 'images in other formats')} "
              f"(netspec reads {' '.join(IMAGE_EXTENSIONS)}; convert them, e.g. to PNG, to train on them)")
    if special:  # never opened: a FIFO would block, a device would never end
        _warn(said, special_entries(root, special))
    if empty:
        holds = "holds no images and keeps its" if len(empty) == 1 else "hold no images and keep their"
        _warn(said, f"{root}: {count(len(empty), 'class folder')} {holds} class index: "
              f"{', '.join(empty[:WARN_LIST])}{', ...' if len(empty) > WARN_LIST else ''}")
    return FolderIndex(root, tuple(files), np.asarray(labels, dtype=np.int64), classes, tuple(said))


def _kind(path: Path) -> str:
    try:
        mode = os.stat(path).st_mode
    except OSError:
        return "broken link" if os.path.islink(path) else "unreadable entry"
    return ("FIFO" if stat.S_ISFIFO(mode) else "socket" if stat.S_ISSOCK(mode)
            else "device" if stat.S_ISCHR(mode) or stat.S_ISBLK(mode) else "special file")


def special_entries(root: Path, special: list[Path]) -> str:
    """`ROOT: skipped 2 entries that are neither files nor folders (1 FIFO, 1 device): a/p.png, ...`"""
    kinds = Counter(_kind(p) for p in special)
    said = ", ".join(f"{n} {k}{'s' if n > 1 else ''}" for k, n in kinds.most_common())
    names = ", ".join(p.relative_to(root).as_posix() for p in sorted(special)[:WARN_LIST])
    what = "entries that are neither files nor folders" if len(special) > 1 else \
        "entry that is neither a file nor a folder"
    return f"{root}: skipped {len(special)} {what} ({said}): {names}" + (", ..." if len(special) > WARN_LIST else "")


def _warn_links(said: list[str], root: Path, links: list[Path]) -> None:
    for link in links[:WARN_LIST]:
        _warn(said, f"{link}: symbolic link to a folder outside {root} (or to its own ancestor); not followed")
    if len(links) > WARN_LIST:
        _warn(said, f"... and {len(links) - WARN_LIST} more such links")


# ---------------------------------------------------------------- decoding


def decode_image(path: str | Path, size: tuple[int, int], channels: int) -> np.ndarray:
    """One image file as uint8 [channels, H, W] (size is (H, W); channels 1 or 3)."""
    h, w = int(size[0]), int(size[1])
    if channels not in (1, 3) or h < 1 or w < 1:
        raise ValueError(f"decode_image needs channels 1 or 3 and a positive size, got {channels}, {size}")
    from PIL import Image

    with open_regular(path, MAX_IMAGE_BYTES, "PNG/JPEG/BMP/WebP", DataError) as f, warnings.catch_warnings():
        warnings.simplefilter("ignore")  # Pillow's notes on EXIF or palettes are not the user's problem
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        try:
            with Image.open(f, formats=PIL_FORMATS) as im:
                _check_pixels(path, im.size)
                im.load()
                out = _to_mode(im, "L" if channels == 1 else "RGB")
                if out.size != (w, h):
                    out = out.resize((w, h), Image.Resampling.BILINEAR)
                arr = np.asarray(out, dtype=np.uint8)
        except DataError:
            raise
        except (Image.DecompressionBombError, Image.DecompressionBombWarning) as e:
            raise _bomb(path, str(e)) from None
        except Exception as e:  # Pillow raises OSError, SyntaxError, ValueError, EOFError, zlib.error, ...
            raise _decode_error(path, e) from None
    return np.ascontiguousarray(arr[None] if channels == 1 else arr.transpose(2, 0, 1))


def _check_pixels(path: str | Path, size: tuple[int, int]) -> None:
    if size[0] * size[1] > MAX_PIXELS:
        raise _bomb(path, f"{size[0]} x {size[1]} pixels")


def _bomb(path: str | Path, detail: str) -> DataError:
    return data_error(f"{path}: image too large ({detail}; the limit is {MAX_PIXELS / 2**20:.0f} megapixels): "
                      "possibly a decompression bomb", "resize the image, or remove it from the folder")


def _decode_error(path: str | Path, e: Exception) -> DataError:
    from PIL import UnidentifiedImageError

    if isinstance(e, UnidentifiedImageError):
        return data_error(f"{path}: not a PNG, JPEG, BMP or WebP image")
    reason = str(e) or type(e).__name__
    return data_error(f"{path}: cannot decode image ({reason}); the file is truncated or corrupt")


def _to_mode(im: Any, mode: str) -> Any:
    """im in mode "L" or "RGB". Pillow's convert clips 16-bit values at 255; scale them instead."""
    from PIL import Image

    if im.mode.startswith("I;16") or im.mode == "I":
        wide = np.asarray(im).astype(np.int64).clip(0, 65535)
        im = Image.fromarray(((wide * 255 + 32767) // 65535).astype(np.uint8), "L")
    return im if im.mode == mode else im.convert(mode)


# ---------------------------------------------------------------- the decoded cache


@dataclass
class ImageArray:
    x: np.ndarray  # uint8 [N, C, H, W], an np.memmap of the cache file (read-only)
    y: np.ndarray  # int64 [N]
    classes: tuple[str, ...]
    files: tuple[Path, ...]  # the images in x's order (bad ones skipped)
    cache: Path  # the cache folder used
    skipped: tuple[tuple[Path, str], ...]  # (file, reason) skipped under skip_bad
    built: bool  # True when this call decoded (False: reused a valid cache)
    warnings: tuple[str, ...] = ()  # for the caller to say (`warning: ...`): the scan's, a rebuilt cache, skipped files
    decoded: str | None = None  # `decoded N images from ROOT into FOLDER (X s)` when built with progress, for stderr


@dataclass(frozen=True)
class _Job:
    index: FolderIndex
    size: tuple[int, int]
    channels: int
    skip_bad: bool

    @property
    def sample_shape(self) -> tuple[int, int, int]:
        return (self.channels, *self.size)

    @property
    def sample_bytes(self) -> int:
        return math.prod(self.sample_shape)


def load_image_folder(root: str | Path, size: tuple[int, int], channels: int, classes: tuple[str, ...] | None = None,
                      skip_bad: bool = False, cache_root: Path | None = None, workers: int | None = None,
                      progress: bool = True) -> ImageArray:
    """The images under root, decoded once into a memory-mapped uint8 cache (see the module docstring).

    Nothing is printed but the progress bar (progress=True and stderr a terminal): the warnings
    (the scan's, a cache rebuilt, skipped files: for the caller to say once) are the result's
    `warnings`, and the summary line of a build its `decoded` (None with progress=False)."""
    index = scan_folder(root, classes)
    said = list(index.warnings)
    try:
        return _load(index, size, channels, skip_bad, cache_root, workers, progress, said)
    except NetspecError as e:
        raise _with_warnings(e, said) from None


def _load(index: FolderIndex, size: tuple[int, int], channels: int, skip_bad: bool, cache_root: Path | None,
          workers: int | None, progress: bool, said: list[str]) -> ImageArray:
    job = _Job(index, (int(size[0]), int(size[1])), int(channels), bool(skip_bad))
    base = Path(cache_root) if cache_root is not None else cache_dir() / "images"
    key, source = _cache_key(job)
    folder = base / key
    try:
        cached = _open_cache(folder, job)
    except _Stale as e:
        _warn(said, f"the image cache {folder} {e.args[0]}; rebuilding it")
        cached = None
    if cached is not None:
        _report_skipped(said, job.index.root, [why for _, why in cached.skipped])
        cached.warnings = tuple(said)
        return cached
    _make_private_folder(base)
    _remove_dead_temps(base)
    started = time.perf_counter()
    built = _build(job, base, folder, source, workers, progress, said)
    built.warnings = tuple(said)
    if progress:
        seconds = time.perf_counter() - started
        built.decoded = f"decoded {count(len(built.files), 'image')} from {job.index.root} into {folder} ({seconds:.1f} s)"
    _prune_superseded(base, key, source)
    return built


def _cache_key(job: _Job) -> tuple[str, str]:
    """(key over the source and every file's identity, id of the source alone)."""
    import PIL

    root = job.index.root
    head = json.dumps([CACHE_VERSION, PIL.__version__, os.path.realpath(root), list(job.index.classes),
                       list(job.size), job.channels, job.skip_bad])
    h = hashlib.sha256(head.encode())
    for path in job.index.files:
        try:
            st = os.stat(path)
        except OSError as e:
            raise data_error(f"{path}: cannot read ({e.strerror})") from None
        h.update(json.dumps([path.relative_to(root).as_posix(), st.st_size, st.st_mtime_ns]).encode() + b"\n")
    return h.hexdigest(), hashlib.sha256(head.encode()).hexdigest()


def _make_private_folder(folder: Path) -> None:
    """mkdir -p, new levels mode 0700 (the cache holds the user's data)."""
    missing = [p for p in [folder, *folder.parents] if not p.exists()]
    for p in reversed(missing):
        try:
            p.mkdir(mode=0o700)
        except FileExistsError:
            pass
        except OSError as e:
            raise data_error(f"{p}: cannot create the image cache folder ({e.strerror})",
                             "set XDG_CACHE_HOME to a writable folder") from None


def _read_meta(folder: Path) -> dict | None:
    try:
        meta = json.loads(read_regular(folder / "meta.json", MAX_META_BYTES, "cache metadata", DataError))
    except (DataError, ValueError):
        return None
    return meta if isinstance(meta, dict) and meta.get("version") == CACHE_VERSION else None


class _Stale(Exception):
    """A complete cache whose content is not what was built (args[0]: how, in words)."""


def _digest_problem(folder: Path, meta: dict) -> str | None:
    """Why x.uint8 and y.npy are not the bytes whose sha256 meta.json recorded, or None."""
    recorded = meta.get("digest")
    if not isinstance(recorded, str):
        return "was built before caches recorded a digest"
    h = hashlib.sha256()
    for name in ("x.uint8", "y.npy"):
        with open(folder / name, "rb") as f:
            while chunk := f.read(DIGEST_CHUNK):
                h.update(chunk)
    if h.hexdigest() != recorded:
        return "changed since it was built (its pixels or labels do not match the digest recorded then)"
    return None


def _open_cache(folder: Path, job: _Job, verify: bool = True) -> ImageArray | None:
    """The cache in folder when it is complete and matches job, else None (then it is rebuilt);
    with `verify`, _Stale when its content is not what was built."""
    meta = _read_meta(folder)
    if meta is None:
        return None
    try:
        n = int(meta["n"])
        shape = (n, *job.sample_shape)
        if meta["shape"] != list(shape) or len(meta["files"]) != n or n < 1:
            return None
        if os.stat(folder / "x.uint8").st_size != math.prod(shape):
            return None
        x = np.memmap(folder / "x.uint8", dtype=np.uint8, mode="r", shape=shape)
        y = np.load(folder / "y.npy", allow_pickle=False)  # 8 bytes an image: kept in memory
        if y.shape != (n,) or y.dtype != np.int64:
            return None
        root = job.index.root
        files = tuple(root / f for f in meta["files"])
        skipped = tuple((root / f, str(why)) for f, why in meta["skipped"])
        stale = _digest_problem(folder, meta) if verify else None
    except (OSError, ValueError, KeyError, TypeError):
        return None
    if stale:
        raise _Stale(stale)
    return ImageArray(x, y, job.index.classes, files, folder, skipped, built=False)


def _temp_prefix() -> str:
    return f".tmp-{socket.gethostname()}-{os.getpid()}-"


def _remove_dead_temps(base: Path) -> None:
    """Temporary build folders of builders on this host that were killed."""
    host = f".tmp-{socket.gethostname()}-"
    try:
        entries = list(base.iterdir())
    except OSError:
        return
    for entry in entries:
        rest = entry.name[len(host):] if entry.name.startswith(host) else ""
        pid = rest.split("-", 1)[0]
        if pid.isdigit() and not _alive(int(pid)):
            shutil.rmtree(entry, ignore_errors=True)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:
        return True
    return True


def _build(job: _Job, base: Path, folder: Path, source: str, workers: int | None, progress: bool,
           said: list[str]) -> ImageArray:
    try:
        tmp = Path(tempfile.mkdtemp(prefix=_temp_prefix(), dir=base))  # mode 0700
    except OSError as e:
        raise write_error(base, e) from None
    try:
        digest = hashlib.sha256()
        written, skipped = _decode_into(job, tmp / "x.uint8", workers, progress, digest)
        _report_skipped(said, job.index.root, [why for _, why in skipped])
        if not written:
            raise data_error(f"{job.index.root}: none of the {len(job.index.files):,} images could be read")
        _write_labels_and_meta(job, tmp, written, skipped, source, digest)
        result = _publish(tmp, folder, job)
    except OSError as e:  # writing the cache: disk full, permissions
        raise write_error(base, e) from None
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    result.built = True
    return result


def _publish(tmp: Path, folder: Path, job: _Job) -> ImageArray:
    """Rename tmp to folder and open it. When another builder got there first, its folder is used
    (it holds the same images); an invalid folder in the way is replaced."""
    try:
        os.rename(tmp, folder)
    except OSError:
        try:
            winner = _open_cache(folder, job)
        except _Stale:
            winner = None  # a damaged cache in the way: replaced
        if winner is not None:
            return winner
        _replace_folder(tmp, folder)
    result = _open_cache(folder, job, verify=False)  # its digest was computed while writing it
    if result is None:
        raise data_error(f"{folder}: the image cache just written cannot be read back",
                         "check the disk, or remove the folder and try again")
    return result


def _replace_folder(tmp: Path, folder: Path) -> None:
    stale = folder.with_name(f"{_temp_prefix()}old-{folder.name}")
    try:
        os.rename(folder, stale)
        os.rename(tmp, folder)
    except OSError as e:
        raise data_error(f"{folder}: cannot write the image cache ({e.strerror})") from None
    finally:
        shutil.rmtree(stale, ignore_errors=True)


def _write_labels_and_meta(job: _Job, tmp: Path, written: list[int], skipped: list[tuple[int, str]],
                           source: str, digest: Any) -> None:
    """y.npy and meta.json; `digest` has seen x.uint8's bytes and gets y.npy's."""
    root, files = job.index.root, job.index.files
    np.save(tmp / "y.npy", job.index.labels[written])
    digest.update((tmp / "y.npy").read_bytes())
    meta = {
        "version": CACHE_VERSION,
        "source": source,
        "root": os.path.realpath(root),
        "n": len(written),
        "shape": [len(written), *job.sample_shape],
        "dtype": "uint8",
        "classes": list(job.index.classes),
        "files": [files[i].relative_to(root).as_posix() for i in written],
        "skipped": [[files[i].relative_to(root).as_posix(), why] for i, why in skipped],
        "digest": digest.hexdigest(),
    }
    with open(tmp / "meta.json", "w", encoding="utf-8") as f:
        json.dump(meta, f)
        f.flush()
        os.fsync(f.fileno())


def _report_skipped(said: list[str], root: Path, reasons: list[str]) -> None:
    """One warning per skipped image (the first few), on every load, whether built or reused."""
    for why in reasons[:WARN_LIST]:
        _warn(said, f"skipped: {why}")
    if len(reasons) > WARN_LIST:
        _warn(said, f"skipped {len(reasons) - WARN_LIST:,} more unreadable images under {root}")


# ---------------------------------------------------------------- parallel decoding

ChunkResult = tuple[np.ndarray, list[tuple[int, str]]]


def _decode_chunk(paths: list[Path], size: tuple[int, int], channels: int, stop_at_bad: bool) -> ChunkResult:
    """Decoded images of one chunk (bad ones left out) and (position in chunk, reason) for the bad ones.
    Reasons are strings: a DataError does not survive pickling between processes."""
    out = np.empty((len(paths), channels, *size), dtype=np.uint8)
    bad: list[tuple[int, str]] = []
    k = 0
    for i, path in enumerate(paths):
        try:
            out[k] = decode_image(path, size, channels)
            k += 1
        except DataError as e:
            bad.append((i, e.diagnostics[0].message))
            if stop_at_bad:
                break
    return out[:k], bad


def _chunk_size(job: _Job, workers: int) -> int:
    n = len(job.index.files)
    by_bytes = max(1, CHUNK_BYTES // job.sample_bytes)
    balanced = max(1, math.ceil(n / (workers * 4)))
    return min(by_bytes, balanced, CHUNK_MAX_IMAGES)


def _worker_count(workers: int | None) -> int:
    if workers is not None:
        return max(1, int(workers))
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:
        return max(1, os.cpu_count() or 1)


def _decode_into(job: _Job, out_path: Path, workers: int | None, progress: bool,
                 digest: Any) -> tuple[list[int], list[tuple[int, str]]]:
    """Decode every image into out_path (raw uint8, in file order, bad ones left out) with peak memory
    O(chunk x workers): chunks arrive in order and are appended with plain writes (a memmap being
    written would count its dirty pages as this process's memory). Returns (indices written, skipped)."""
    files = job.index.files
    count = min(_worker_count(workers), len(files))
    chunk = _chunk_size(job, count)
    starts = range(0, len(files), chunk)
    written: list[int] = []
    skipped: list[tuple[int, str]] = []
    with open(out_path, "wb") as out, _progress_bar(len(files), progress) as bar:
        for start, (arr, bad) in zip(starts, _chunk_results(job, starts, chunk, count)):
            _take_chunk(job, start, len(arr), bad, written, skipped)
            data = np.ascontiguousarray(arr).data
            out.write(data)
            digest.update(data)
            bar.update(len(arr) + len(bad))
        out.flush()
        os.fsync(out.fileno())
    return written, skipped


def _take_chunk(job: _Job, start: int, good: int, bad: list[tuple[int, str]], written: list[int],
                skipped: list[tuple[int, str]]) -> None:
    if bad and not job.skip_bad:
        raise data_error(bad[0][1], SKIP_HELP)
    bad_at = {start + i for i, _ in bad}
    end = start + good + len(bad)
    written += [i for i in range(start, end) if i not in bad_at]
    skipped += [(start + i, why) for i, why in bad]


def _chunk_results(job: _Job, starts: range, chunk: int, workers: int) -> Iterator[ChunkResult]:
    """Decoded chunks in order: in this process for small sets, else from a process pool with at
    most 2 x workers chunks in flight."""
    files = job.index.files
    args = [(list(files[s:s + chunk]), job.size, job.channels, not job.skip_bad) for s in starts]
    if workers <= 1 or len(files) < POOL_MIN_IMAGES:
        for a in args:
            yield _decode_chunk(*a)
        return
    pool = ProcessPoolExecutor(workers, mp_context=_mp_context())
    try:
        pending: deque[Future[ChunkResult]] = deque()
        todo = iter(args)
        for a in todo:
            pending.append(pool.submit(_decode_chunk, *a))
            if len(pending) >= 2 * workers:
                break
        while pending:
            try:
                result = pending.popleft().result()
            except BrokenProcessPool as e:
                raise data_error(f"{job.index.root}: an image-decoding process died ({e})",
                                 "out of memory? pass fewer workers") from None
            nxt = next(todo, None)
            if nxt is not None:
                pending.append(pool.submit(_decode_chunk, *nxt))
            yield result
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


def _mp_context() -> Any:
    """fork on Linux, as torch's DataLoader: the children only run Pillow and numpy (never the
    parent's torch threads), and nothing is re-imported: spawn and forkserver re-run the caller's
    main module, which needs an `if __name__ == "__main__"` guard. Elsewhere the platform default."""
    if sys.platform.startswith("linux"):
        return mp.get_context("fork")
    return mp.get_context()


class _NoBar:
    def update(self, n: int) -> None:
        pass

    def __enter__(self) -> _NoBar:
        return self

    def __exit__(self, *exc: object) -> None:
        pass


def _progress_bar(total: int, progress: bool) -> Any:
    if not (progress and sys.stderr.isatty()):
        return _NoBar()
    from tqdm import tqdm

    return tqdm(total=total, unit="img", desc="decoding images", leave=False,
                file=getattr(sys.stderr, "raw", sys.stderr))  # the CLI's stream escapes \r


def _prune_superseded(base: Path, key: str, source: str) -> None:
    """Remove caches of the same source (root, classes, size, channels) built from older file lists.
    A process still reading one keeps its mapping: the files go away when it closes them."""
    try:
        entries = list(base.iterdir())
    except OSError:
        return
    for entry in entries:
        if entry.name == key or len(entry.name) != 64 or not entry.is_dir() or entry.is_symlink():
            continue
        meta = _read_meta(entry)
        if meta is not None and meta.get("source") == source:
            shutil.rmtree(entry, ignore_errors=True)


# .npy and .npz files: arrays.py (named here too, where they were read before)
from netspec.data.arrays import load_npy, load_npz, read_npy_file  # noqa: E402

__all__ = ["IMAGE_EXTENSIONS", "FolderIndex", "ImageArray", "decode_image", "load_image_folder", "load_npy",
           "load_npz", "read_npy_file", "scan_folder"]
