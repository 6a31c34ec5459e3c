"""Small shared helpers: atomic writes (temp file + rename, umask honoured, disk-full
reported), reading only regular files of bounded size, hashing. Output paths and whose an
existing output file is are outputs.py's."""

from __future__ import annotations

import errno
import hashlib
import os
import stat
import tempfile
from collections.abc import Callable, Iterable
from pathlib import Path

from netspec.errors import Diagnostic, NetspecError, shell_command

_UMASK: int | None = None


def count(n: int, word: str, plural: str | None = None) -> str:
    """`1 epoch`, `3 epochs`, `1,024 samples`: a number and its noun, agreeing."""
    return f"{n:,} {word if n == 1 else plural or word + 's'}"


def umask() -> int:
    """The process umask (read once; os.umask can only be read by setting it)."""
    global _UMASK
    if _UMASK is None:
        _UMASK = os.umask(0o022)
        os.umask(_UMASK)
    return _UMASK


FULL = (errno.ENOSPC, errno.EFBIG, errno.EDQUOT)  # no room: the disk, the file-size limit, the quota


def write_error(path: str | os.PathLike, e: OSError):
    """An OSError while writing `path`, as the user-facing error (disk full included)."""
    reason = e.strerror or str(e)
    hint = None
    if e.errno in FULL:
        reason = {errno.ENOSPC: "no space left on device", errno.EFBIG: "file too large",
                  errno.EDQUOT: "disk quota exceeded"}[e.errno]
        hint = ("free some space" if e.errno != errno.EFBIG else
                "the file-size limit (ulimit -f) or the file system's largest file was reached") + \
            "; nothing already written was replaced"
    elif e.errno == errno.EACCES:
        hint = "check the folder's permissions, or choose another output path"
    return NetspecError(Diagnostic(f"{os.fspath(path)}: cannot write: {reason}", help=hint))


def failed_write(e: BaseException, path: str) -> OSError:
    """What a library that failed while writing `path` most likely met, as an OSError:
    its own OSError where it kept one; a full disk or file-size limit where the file system
    says so (torch.save says only `[enforce fail at inline_container.cc:672] ...`); else
    EIO with the library's first line."""
    for cause in (e, e.__cause__, e.__context__):
        if isinstance(cause, OSError) and cause.errno:
            return OSError(cause.errno, cause.strerror or str(cause), path)
    try:
        st = os.statvfs(os.path.dirname(path) or ".")
        if min(st.f_bavail, st.f_bfree) * st.f_frsize < 1 << 20:
            return OSError(errno.ENOSPC, "No space left on device", path)
    except OSError:
        pass
    try:
        import resource

        limit = resource.getrlimit(resource.RLIMIT_FSIZE)[0]
        if limit != resource.RLIM_INFINITY and os.path.getsize(path) >= limit:
            return OSError(errno.EFBIG, "File too large", path)
    except (OSError, ImportError, ValueError):
        pass
    first = str(e).splitlines()[0] if str(e) else type(e).__name__
    return OSError(errno.EIO, f"{type(e).__name__}: {first[:200]}", path)


def ensure_folder(folder: str | os.PathLike) -> None:
    """mkdir -p with user-facing errors (a path component that is a file, no permission)."""
    folder = Path(folder)
    check_path(folder)
    for parent in [folder, *folder.parents]:
        if parent.exists() and not parent.is_dir():
            raise NetspecError(Diagnostic(f"{folder}: cannot create this folder: {parent} is a file"))
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise write_error(folder, e) from None


def atomic_write(path: str | os.PathLike, write: Callable[[str], None], mode: int | None = None) -> None:
    """Call write(tmp_path), then rename over `path`; on failure the temp file goes away
    and whatever was at `path` is untouched. The new file gets `mode`, else the mode of the
    file it replaces, else what the umask allows (0644 under the usual 022). A symbolic link
    at `path` is followed: its target is replaced, the link stays."""
    atomic_write_many([(path, write)], mode)


def atomic_write_many(items: list[tuple[str | os.PathLike, Callable[[str], None]]], mode: int | None = None) -> None:
    """Several files that must change together (a run's weights, checkpoint and metrics):
    every temp file is written first, and only when all succeeded are they renamed into
    place, so a full disk or a kill while writing leaves the old set intact."""
    staged: list[tuple[str, Path]] = []
    try:
        for raw, write in items:
            path = Path(raw)
            check_path(path)
            if path.is_symlink():
                path = Path(os.path.realpath(path))
            ensure_folder(path.parent)
            if path.is_dir():
                raise NetspecError(Diagnostic(f"{path}: is a folder; give a file name"))
            try:
                fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
            except OSError as e:
                raise write_error(path, e) from None
            os.close(fd)
            staged.append((tmp, path))
            try:
                write(tmp)
                final = mode
                if final is None:
                    try:
                        final = stat.S_IMODE(os.stat(path).st_mode)
                    except OSError:
                        final = 0o666 & ~umask()
                os.chmod(tmp, final)
            except OSError as e:
                raise write_error(path, e) from None
        for i, (tmp, path) in enumerate(staged):
            try:
                os.replace(tmp, path)
            except OSError as e:
                for t, _ in staged[i:]:
                    _discard(t)
                raise write_error(path, e) from None
    except BaseException:
        for tmp, _ in staged:
            _discard(tmp)
        raise


def _discard(tmp: str) -> None:
    try:
        os.unlink(tmp)
    except OSError:
        pass


def clean_stale_temps(folder: str | os.PathLike, names: Iterable[str]) -> list[Path]:
    """Remove temp files that `atomic_write` left behind when a process was killed
    (`.NAME.XXXXXXXX.tmp` for each NAME), so they do not pile up."""
    removed: list[Path] = []
    folder = Path(folder)
    if not folder.is_dir():
        return removed
    wanted = set(names)
    for entry in folder.iterdir():
        n = entry.name
        if n.startswith(".") and n.endswith(".tmp") and entry.is_file():
            base = n[1:-4].rsplit(".", 1)[0]
            if base in wanted:
                _discard(str(entry))
                removed.append(entry)
    return removed


def atomic_write_text(path: str | os.PathLike, text: str, mode: int | None = None) -> None:
    """UTF-8; a file name's bytes that are not UTF-8 (held as surrogate escapes, as Python
    decodes names) are written back as those bytes: nothing about a name is lost."""
    def write(tmp: str) -> None:
        with open(tmp, "w", encoding="utf-8", errors="surrogateescape") as f:
            f.write(text)

    atomic_write(path, write, mode)


def sha256_text(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def check_path(path: str | os.PathLike, error_cls: type | None = None) -> None:
    """Paths come from users: a NUL byte would make the OS calls raise ValueError."""
    if "\0" in os.fspath(path):
        cls = error_cls or NetspecError
        raise cls(Diagnostic(f"{os.fspath(path)!r}: a path cannot contain a NUL byte"))


def _folder_given(name: str, what: str) -> Diagnostic:
    """The Diagnostic for a folder given where a file is read (with the way on for a run folder)."""
    run = os.path.join(name, "spec.net")
    hint = (f"a run folder: its spec is {run} (`{shell_command('netspec', 'train', run)}`; add "
            f"`{shell_command('--out', name, '--resume')}` to continue it)"
            if os.path.isfile(run) else None)
    return Diagnostic(f"{name}: is a folder, not a {what} file", help=hint)


def open_regular(path: str | os.PathLike, max_bytes: int | None = None, what: str = "file",
                 error_cls: type | None = None):
    """Open a regular file for reading (binary). Devices, FIFOs, sockets and folders are
    refused before anything is read (O_NONBLOCK: opening a FIFO does not wait for a writer),
    and so is a file larger than `max_bytes`."""
    cls = error_cls or NetspecError
    check_path(path, cls)
    name = os.fspath(path)
    try:
        fd = os.open(name, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    except FileNotFoundError:
        raise cls(Diagnostic(f"{name}: no such file")) from None
    except IsADirectoryError:
        raise cls(_folder_given(name, what)) from None
    except OSError as e:
        raise cls(Diagnostic(f"{name}: cannot read ({e.strerror})")) from None
    try:
        st = os.fstat(fd)
        if stat.S_ISDIR(st.st_mode):
            raise cls(_folder_given(name, what))
        if not stat.S_ISREG(st.st_mode):
            raise cls(Diagnostic(f"{name}: not a regular file (a device, FIFO or socket); netspec reads only files"))
        if max_bytes is not None and st.st_size > max_bytes:
            raise cls(Diagnostic(f"{name}: too large for a {what} file ({st.st_size / 2**20:,.1f} MiB; "
                                 f"the limit is {max_bytes / 2**20:,.0f} MiB)"))
        return os.fdopen(fd, "rb")
    except BaseException:
        os.close(fd)
        raise


def read_regular(path: str | os.PathLike, max_bytes: int | None = None, what: str = "file",
                 error_cls: type | None = None) -> bytes:
    with open_regular(path, max_bytes, what, error_cls) as f:
        try:
            return f.read()
        except OSError as e:
            raise (error_cls or NetspecError)(Diagnostic(f"{os.fspath(path)}: cannot read ({e.strerror})")) from None
