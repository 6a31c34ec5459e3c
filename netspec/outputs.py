"""Output files: a path the user gave names a file that can be created, and a command
writes over an existing file only when it is its own.

In: an output path (`check_output_file`); for one that exists, the command's inputs, how
the command recognises its own files, and what it says when it refuses
(`check_replaceable`). Out: nothing, or a ``NetspecError``. export
replaces only an ONNX model netspec exported; diagram and eject only their own unedited
outputs, which carry a last line with the sha256 of everything above it (`sign_text`;
diagram's PNGs carry the same mark in a text chunk):

    text = sign_text(program, "# netspec eject: sha256 ")
    is_signed(open(path, "rb").read(), "# netspec eject: sha256 ")  # True until edited
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

from netspec.errors import Diagnostic, NetspecError, error
from netspec.util import check_path


@dataclass(frozen=True)
class Refusals:
    """What a command says when it will not write over an existing file: `is_input` may
    name {output} and {input}, the others {output}."""

    is_input: str
    is_input_help: str | None
    not_a_file: str
    not_own: str
    not_own_help: str | None


def check_output_file(output: str | os.PathLike, example: str) -> Path:
    """An output path from the user names a file that can be created: not empty, not a
    folder ('/', '.', '..', a path ending in '/', an existing folder), and no existing
    file where a folder on the way must be. `example` (a file name such as `model.onnx`)
    is suggested in the errors. The suffix is the command's to check. Returns the path."""
    text = os.fspath(output)
    check_path(text)
    if not text.strip():
        raise NetspecError(Diagnostic("the output path is empty", help=f"give a file name, e.g. -o {example}"))
    path = Path(text)
    seps = tuple(s for s in (os.sep, os.altsep) if s)
    if text.endswith(seps) or path.name in ("", ".", "..") or os.path.isdir(text):
        raise NetspecError(Diagnostic(f"{text}: is a folder, not a file name",
                                      help=f"give a file name, e.g. -o {os.path.join(text, example)}"))
    for parent in path.parents:
        if str(parent) not in ("", ".") and os.path.lexists(parent) and not parent.is_dir():
            raise NetspecError(Diagnostic(f"{text}: cannot write under {parent}: it is not a folder"))
    return path


def check_replaceable(output: str | os.PathLike, inputs: Iterable[str | os.PathLike],
                      is_own: Callable[[str], bool], says: Refusals, empty_is_free: bool = True) -> None:
    """`output` (which exists, or is a link) may be replaced: it is none of `inputs`, it is a
    regular file, and `is_own` says the command wrote it (an empty file needs no owner when
    `empty_is_free`)."""
    name = os.fspath(output)
    for i in inputs:
        try:
            if os.path.exists(i) and os.path.exists(name) and os.path.samefile(i, name):
                raise error(says.is_input.format(output=name, input=os.fspath(i)), says.is_input_help)
        except OSError:
            continue
    if not os.path.isfile(name):
        raise error(says.not_a_file.format(output=name))
    if (not empty_is_free or os.path.getsize(name)) and not is_own(name):
        raise error(says.not_own.format(output=name), says.not_own_help)


def sign_text(text: str, head: str, close: str = "") -> str:
    """`text` (ending in a newline) with a last line `{head}{sha256 of text}{close}`."""
    return f"{text}{head}{hashlib.sha256(text.encode('utf-8')).hexdigest()}{close}\n"


def is_signed(data: bytes, head: str, close: str = "") -> bool:
    """`data` ends with the line `sign_text` wrote, and its hash matches what is above it."""
    body, sep, tail = data.rstrip(b"\n").rpartition(b"\n")
    mark = head.encode()
    if not sep or not tail.startswith(mark) or not tail.endswith(close.encode()):
        return False
    digest = tail[len(mark):len(tail) - len(close.encode())].decode("ascii", "replace").strip()
    return digest == hashlib.sha256(body + b"\n").hexdigest()


def read_bounded(path: str | Path, max_bytes: int) -> bytes | None:
    """The file's bytes, or None when it cannot be read or is larger than `max_bytes`
    (a file that large is not one the command wrote)."""
    try:
        with open(path, "rb") as f:
            data = f.read(max_bytes + 1)
    except OSError:
        return None
    return data if len(data) <= max_bytes else None
