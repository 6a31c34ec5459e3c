"""Image folders and NumPy array files as data sources (numpy + Pillow; no torch).

In: an ImageFolder tree (``root/<class>/**/<image>``, PNG, JPEG, BMP, WebP), or ``.npy`` /
``.npz`` files.
Out: ``scan_folder`` -> ``FolderIndex`` (files, labels, classes); ``decode_image`` -> one
image as uint8 [C, H, W]; ``load_image_folder`` -> ``ImageArray`` whose ``x`` is a read-only
np.memmap of a decoded uint8 [N, C, H, W] cache file, so a data set larger than memory is
decoded once and then read from disk; ``load_npy`` / ``load_npz`` -> validated (x, y),
memory-mapped where the file allows it. Every problem is a ``DataError`` naming the file.

Image cache, one folder per key under ``cache_root`` (default ``cache_dir()/"images"``)::

    <key>/x.uint8     raw uint8 [N, C, H, W], C order (shape in meta.json)
    <key>/y.npy       int64 [N]
    <key>/meta.json   version, N, shape, classes, files and skipped files (relative to root)

``<key>`` is a sha256 over the cache format version, the Pillow version, the resolved root,
every file's relative path, size and mtime_ns, the class list, size, channels and skip_bad:
a changed, added or removed file gives a new key, so a stale cache is never read. A cache
is built in a temporary folder and renamed into place (a concurrent builder that loses the
race uses the winner's folder); caches of the same source superseded by a new build are
removed. Folders are mode 0700. Building decodes in a process pool (fork on Linux) of
`workers` processes, in chunks that the parent appends to x.uint8 in file order, so peak
memory is a few chunks whatever N is; sets under POOL_MIN_IMAGES decode in-process.
stderr gets a tqdm bar when it is a terminal and one `decoded N images ...` line per build.

Folder scanning: hidden entries (names starting with ".") are ignored; files with other
extensions are ignored (and counted in the error when no image is found); symbolic links
to files are read; symbolic links to folders are followed only when they stay inside root
(and never in a cycle). A class folder without images keeps its class index and gets a
warning on stderr (the class list is the folder list, so indices stay stable).

Decoding: Pillow, formats restricted to PNG, JPEG, BMP and WebP; converted to
"L" or "RGB" (alpha dropped, palettes expanded; 16-bit grayscale scaled to 8 bits rather
than clipped); resized with bilinear filtering (antialiased, as torchvision's PIL Resize)
when the size differs. EXIF orientation is not applied (as torchvision). Images over
MAX_PIXELS are refused as decompression bombs.

Arrays: .npy files and uncompressed .npz members are memory-mapped (never unpickled);
numbers only (bool, int, float); NaN/inf are looked for a few MiB at a time and reported
with the first bad sample's index.
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
import zipfile
from collections import Counter, deque
from collections.abc import Iterator
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np

from netspec.data.datasets import cache_dir
from netspec.errors import DataError, data_error
from netspec.util import open_regular, read_regular, write_error

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
CHECK_CHUNK_BYTES = 64 * 2**20  # NaN/inf checks read arrays in pieces of this size
WARN_LIST = 10
SPLIT_NAMES = ("train", "training", "test", "testing", "val", "valid", "validation", "dev", "eval")
SKIP_HELP = "`skip_bad: true` in `data` skips unreadable images (each is reported)"


_WARNED: set[str] = set()


def _warn(message: str) -> None:
    """Once per process: check's data pass and the data preparation scan the same folders."""
    if message not in _WARNED:
        _WARNED.add(message)
        print(f"warning: {message}", file=sys.stderr)


# ---------------------------------------------------------------- scanning


@dataclass(frozen=True)
class FolderIndex:
    root: Path
    files: tuple[Path, ...]  # sorted: by class, then by relative path
    labels: np.ndarray  # int64 [N], index into classes
    classes: tuple[str, ...]  # subfolder names, sorted


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
    root = Path(root)
    _check_root(root)
    root_real = os.path.realpath(root)
    folders, others, links, special = _class_folders(root, root_real)
    _warn_links(root, links)
    if not folders:
        raise data_error(f"{root}: no class subfolders ({_describe_ignored(others)})",
                         f"put the images in one subfolder per class: {root}/<class>/<image>")
    if classes is None:
        classes = tuple(sorted(folders))
        splits = sorted((c for c in classes if c.lower() in SPLIT_NAMES), key=lambda c: not c.lower().startswith("tr"))
        if splits and len(splits) >= len(classes) - 1:
            _warn(f"{root}: the class folders are named {', '.join(classes)}: is this the folder that holds the "
                  f"splits? Point `train:` at {root / splits[0]} (and `test:` at its sibling); each class is one "
                  "subfolder of it")
    else:
        _check_known_classes(root, folders, classes)
    return _index(root, root_real, folders, tuple(classes), special)


def _check_known_classes(root: Path, folders: dict[str, Path], classes: tuple[str, ...]) -> None:
    unknown = sorted(set(folders) - set(classes))
    if unknown:
        known = ", ".join(classes) if len(classes) <= 30 else ", ".join(classes[:30]) + ", ..."
        raise data_error(f"{folders[unknown[0]]}: class `{unknown[0]}` is not one of the training classes ({known})",
                         "the class list comes from the training folder; rename the folder or add the class there")


def _index(root: Path, root_real: str, folders: dict[str, Path], classes: tuple[str, ...],
           special: list[Path]) -> FolderIndex:
    files: list[Path] = []
    labels: list[int] = []
    ignored: Counter[str] = Counter()
    empty: list[str] = []
    for label, name in enumerate(classes):
        if name not in folders:
            continue
        walk = _walk_class(folders[name], root_real)
        _warn_links(root, walk.links_skipped)
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
        _warn(f"{root}: {_describe_ignored(unread).replace('other files', 'images in other formats')} "
              f"(netspec reads {' '.join(IMAGE_EXTENSIONS)}; convert them, e.g. to PNG, to train on them)")
    _warn_special(root, special)
    if empty:
        _warn(f"{root}: {len(empty)} class folder(s) hold no images and keep their class index: "
              f"{', '.join(empty[:WARN_LIST])}{', ...' if len(empty) > WARN_LIST else ''}")
    return FolderIndex(root, tuple(files), np.asarray(labels, dtype=np.int64), classes)


def _kind(path: Path) -> str:
    try:
        mode = os.stat(path).st_mode
    except OSError:
        return "broken link" if os.path.islink(path) else "unreadable entry"
    return ("FIFO" if stat.S_ISFIFO(mode) else "socket" if stat.S_ISSOCK(mode)
            else "device" if stat.S_ISCHR(mode) or stat.S_ISBLK(mode) else "special file")


def _warn_special(root: Path, special: list[Path]) -> None:
    """One warning for the entries that are neither files nor folders (never opened: a FIFO
    would block, a device would never end)."""
    if not special:
        return
    kinds = Counter(_kind(p) for p in special)
    said = ", ".join(f"{n} {k}{'s' if n > 1 else ''}" for k, n in kinds.most_common())
    names = ", ".join(p.relative_to(root).as_posix() for p in sorted(special)[:WARN_LIST])
    _warn(f"{root}: skipped {len(special)} entries that are neither files nor folders ({said}): {names}"
          + (", ..." if len(special) > WARN_LIST else ""))


def _warn_links(root: Path, links: list[Path]) -> None:
    for link in links[:WARN_LIST]:
        _warn(f"{link}: symbolic link to a folder outside {root} (or to its own ancestor); not followed")
    if len(links) > WARN_LIST:
        _warn(f"... and {len(links) - WARN_LIST} more such links")


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

    progress=False: no progress bar and no summary line (warnings about skipped files still print)."""
    job = _Job(scan_folder(root, classes), (int(size[0]), int(size[1])), int(channels), bool(skip_bad))
    base = Path(cache_root) if cache_root is not None else cache_dir() / "images"
    key, source = _cache_key(job)
    folder = base / key
    cached = _open_cache(folder, job)
    if cached is not None:
        _report_skipped(job.index.root, [why for _, why in cached.skipped])
        return cached
    _make_private_folder(base)
    _remove_dead_temps(base)
    started = time.perf_counter()
    built = _build(job, base, folder, source, workers, progress)
    if progress:
        seconds = time.perf_counter() - started
        print(f"decoded {len(built.files):,} images from {job.index.root} into {folder} ({seconds:.1f} s)",
              file=sys.stderr)
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


def _open_cache(folder: Path, job: _Job) -> ImageArray | None:
    """The cache in folder when it is complete and matches job, else None (then it is rebuilt)."""
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
    except (OSError, ValueError, KeyError, TypeError):
        return None
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


def _build(job: _Job, base: Path, folder: Path, source: str, workers: int | None, progress: bool) -> ImageArray:
    try:
        tmp = Path(tempfile.mkdtemp(prefix=_temp_prefix(), dir=base))  # mode 0700
    except OSError as e:
        raise write_error(base, e) from None
    try:
        written, skipped = _decode_into(job, tmp / "x.uint8", workers, progress)
        _report_skipped(job.index.root, [why for _, why in skipped])
        if not written:
            raise data_error(f"{job.index.root}: none of the {len(job.index.files):,} images could be read")
        _write_labels_and_meta(job, tmp, written, skipped, source)
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
        winner = _open_cache(folder, job)
        if winner is not None:
            return winner
        _replace_folder(tmp, folder)
    result = _open_cache(folder, job)
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
                           source: str) -> None:
    root, files = job.index.root, job.index.files
    np.save(tmp / "y.npy", job.index.labels[written])
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
    }
    with open(tmp / "meta.json", "w", encoding="utf-8") as f:
        json.dump(meta, f)
        f.flush()
        os.fsync(f.fileno())


def _report_skipped(root: Path, reasons: list[str]) -> None:
    """One warning per skipped image (the first few), on every load, whether built or reused."""
    for why in reasons[:WARN_LIST]:
        _warn(f"skipped: {why}")
    if len(reasons) > WARN_LIST:
        _warn(f"skipped {len(reasons) - WARN_LIST:,} more unreadable images under {root}")


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


def _decode_into(job: _Job, out_path: Path, workers: int | None,
                 progress: bool) -> tuple[list[int], list[tuple[int, str]]]:
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
            out.write(np.ascontiguousarray(arr).data)
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


# ---------------------------------------------------------------- .npy and .npz


def load_npy(x_path: str | Path, y_path: str | Path | None = None) -> tuple[np.ndarray, np.ndarray | None]:
    """x (and y) from .npy files, memory-mapped read-only; validated like load_npz."""
    x = read_npy_file(Path(x_path))
    y = read_npy_file(Path(y_path)) if y_path is not None else None
    return _validated(x, Path(x_path), y, Path(y_path) if y_path is not None else None)


def load_npz(path: str | Path, x_key: str = "x", y_key: str | None = "y") -> tuple[np.ndarray, np.ndarray | None]:
    """x and y from an .npz archive. Members stored uncompressed (np.savez) are memory-mapped;
    compressed ones (np.savez_compressed) are read whole. y is None when y_key is None, or when it
    is the default "y" and the archive has no such member (inputs only, as for predict); any other
    missing key is an error listing the archive's keys."""
    path = Path(path)
    with open_regular(path, None, "npz", DataError) as f:
        try:
            archive = zipfile.ZipFile(f)
        except (zipfile.BadZipFile, OSError, ValueError) as e:
            raise data_error(f"{path}: not an .npz file ({e})", "write it with np.savez or np.savez_compressed") from None
        with archive:
            keys = {n[:-4]: n for n in archive.namelist() if n.endswith(".npy")}
            x = _npz_member(path, f, archive, keys, x_key)
            y = _npz_member(path, f, archive, keys, y_key) if y_key is not None and y_key in keys else None
    if y_key is not None and y_key != "y" and y is None:
        _missing_key(path, y_key, keys)
    return _validated(x, path, y, path, (f"{path}[{x_key}]", f"{path}[{y_key}]"))


def _missing_key(path: Path, key: str, keys: dict[str, str]) -> None:
    held = ", ".join(sorted(keys)) or "no arrays"
    raise data_error(f"{path}: no array named `{key}`; the file holds: {held}")


def _npz_member(path: Path, f: BinaryIO, archive: zipfile.ZipFile, keys: dict[str, str], key: str) -> np.ndarray:
    if key not in keys:
        _missing_key(path, key, keys)
    info = archive.getinfo(keys[key])
    where = f"{path}[{key}]"
    if info.flag_bits & 0x1:
        raise data_error(f"{where}: the member is encrypted")
    if info.compress_type == zipfile.ZIP_STORED:
        return _read_npy(f, where, _member_offset(f, info, where), info.file_size)
    try:
        with archive.open(info) as member:
            version = np.lib.format.read_magic(member)
            shape, fortran, dtype = _read_header(member, version, where)
            _check_dtype(where, dtype)
            need = math.prod(shape) * dtype.itemsize
            data = member.read(need)
    except DataError:
        raise
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as e:
        raise data_error(f"{where}: cannot read ({e})") from None
    if len(data) < need:
        raise data_error(f"{where}: truncated: the header says shape {list(shape)} ({need:,} bytes), "
                         f"the member holds {len(data):,}")
    return np.frombuffer(data, dtype=dtype).reshape(shape, order="F" if fortran else "C")


def _member_offset(f: BinaryIO, info: zipfile.ZipInfo, where: str) -> int:
    """Where a stored member's bytes start: after its local header (30 bytes + name + extra)."""
    f.seek(info.header_offset)
    local = f.read(30)
    if len(local) != 30 or local[:4] != b"PK\x03\x04":
        raise data_error(f"{where}: damaged zip archive (bad local header)")
    name_len = int.from_bytes(local[26:28], "little")
    extra_len = int.from_bytes(local[28:30], "little")
    return info.header_offset + 30 + name_len + extra_len


def read_npy_file(path: Path, dtype_help: str | None = None) -> np.ndarray:
    """A .npy file memory-mapped read-only, its header checked against the file's size
    (training's `npy(...)` sources and predict's .npy inputs)."""
    with open_regular(path, None, "npy", DataError) as f:
        size = os.fstat(f.fileno()).st_size
        return _read_npy(f, str(path), 0, size, dtype_help)


def _read_header(f: Any, version: tuple[int, int], where: str) -> tuple[tuple, bool, np.dtype]:
    try:
        if version == (1, 0):
            return np.lib.format.read_array_header_1_0(f)
        if version == (2, 0):
            return np.lib.format.read_array_header_2_0(f)
        raise ValueError(f"unsupported .npy version {version}")
    except (ValueError, EOFError, SyntaxError, OverflowError, TypeError) as e:
        raise data_error(f"{where}: bad .npy header ({e})") from None


def _read_npy(f: BinaryIO, where: str, start: int, length: int, dtype_help: str | None = None) -> np.ndarray:
    """The .npy array stored at f[start:start+length], memory-mapped read-only."""
    f.seek(start)
    try:
        version = np.lib.format.read_magic(f)
    except (ValueError, EOFError):
        raise data_error(f"{where}: {'an empty file, not' if length == 0 else 'not'} a .npy file",
                         "write it with np.save") from None
    shape, fortran, dtype = _read_header(f, version, where)
    _check_dtype(where, dtype, dtype_help)
    offset = f.tell()
    need = math.prod(shape) * dtype.itemsize
    have = start + length - offset
    if have < need:
        raise data_error(f"{where}: truncated: the header says shape {list(shape)} ({need:,} bytes), "
                         f"the file holds {max(have, 0):,}")
    if need == 0:
        return np.empty(shape, dtype)
    return np.memmap(f, dtype=dtype, mode="r", offset=offset, shape=shape, order="F" if fortran else "C")


def _check_dtype(where: str, dtype: np.dtype, help: str | None = None) -> None:
    if dtype.hasobject or dtype.kind not in "biuf":
        raise data_error(f"{where}: arrays of dtype {dtype} are not supported",
                         help or "use numbers: bool, integer or float arrays (netspec never loads pickled objects)")


def _validated(x: np.ndarray, x_file: Path, y: np.ndarray | None, y_file: Path | None,
               names: tuple[str, str] | None = None) -> tuple[np.ndarray, np.ndarray | None]:
    x_name, y_name = names or (str(x_file), str(y_file))
    _check_array(x, x_name)
    if y is not None:
        _check_array(y, y_name)
        if y.dtype.kind in "biu" and y.ndim != 1:
            raise data_error(f"{y_name}: integer targets must be 1-D class indices, got shape {list(y.shape)}",
                             "regression targets of several columns are float arrays")
        if len(y) != len(x):
            raise data_error(f"{x_name} has {len(x):,} samples but {y_name} has {len(y):,} targets")
    return x, y


def _check_array(a: np.ndarray, name: str) -> None:
    if a.ndim == 0:
        raise data_error(f"{name}: a single number, not an array of samples")
    if a.size == 0:
        raise data_error(f"{name}: empty array (shape {list(a.shape)})")
    if a.dtype.kind == "f":
        bad = _first_non_finite(a)
        if bad is not None:
            raise data_error(f"{name}: sample {bad} holds NaN or infinity", "fix or drop that sample")


def _first_non_finite(a: np.ndarray) -> int | None:
    """Index of the first sample holding NaN/inf, reading a few MiB at a time."""
    per_sample = max(1, a[0].size * a.dtype.itemsize)
    step = max(1, CHECK_CHUNK_BYTES // per_sample)
    for start in range(0, len(a), step):
        piece = np.asarray(a[start:start + step])
        finite = np.isfinite(piece).reshape(len(piece), -1).all(axis=1)
        if not finite.all():
            return start + int(np.argmin(finite))
    return None


__all__ = ["IMAGE_EXTENSIONS", "FolderIndex", "ImageArray", "decode_image", "load_image_folder", "load_npy",
           "load_npz", "scan_folder"]
