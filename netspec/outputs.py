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

One rule for an output path that is a symbolic link, in every command that writes one
(export, diagram, eject, data --preview; fmt rewrites its input the same way): the link is
followed; the file it points to is what is checked (the command's own output, or refused)
and what is replaced, and the link stays. A link that points nowhere (or in a loop) is
refused: netspec does not create a file wherever a link happens to point.
"""

from __future__ import annotations

import hashlib
import os
import zlib
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
    if os.path.islink(text) and not os.path.exists(text):
        try:
            target = os.readlink(text)
        except OSError:
            target = "?"
        raise NetspecError(Diagnostic(
            f"{text}: a symbolic link to {target}, which does not exist",
            help="netspec writes through a link only onto an existing file it may replace; "
                 "remove the link or choose another output path"))
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


# ---------------------------------------------------------------- PNG files: the mark in a text chunk

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
PNG_TEXT_CHUNKS = (b"tEXt", b"zTXt", b"iTXt")
PNG_KEYWORD = b"Software"


def _png_chunks(data: bytes) -> list[tuple[bytes, bytes]] | None:
    """(type, data) of each chunk, or None when `data` is not a well-formed PNG."""
    if not data.startswith(PNG_SIGNATURE):
        return None
    chunks, at = [], len(PNG_SIGNATURE)
    while at + 12 <= len(data):
        size = int.from_bytes(data[at:at + 4], "big")
        kind, body = data[at + 4:at + 8], data[at + 8:at + 8 + size]
        if len(body) != size or at + 12 + size > len(data):
            return None
        chunks.append((kind, body))
        at += 12 + size
        if kind == b"IEND":
            return chunks
    return None


def _png_digest(chunks: list[tuple[bytes, bytes]]) -> str:
    """sha256 of every chunk but the text ones (the image, not its notes)."""
    h = hashlib.sha256()
    for kind, body in chunks:
        if kind not in PNG_TEXT_CHUNKS:
            h.update(kind + len(body).to_bytes(4, "big") + body)
    return h.hexdigest()


def _png_chunk(kind: bytes, body: bytes) -> bytes:
    return len(body).to_bytes(4, "big") + kind + body + zlib.crc32(kind + body).to_bytes(4, "big")


def sign_png(path: str, mark: str) -> None:
    """Add a tEXt chunk `Software: {mark}{sha256 of the image}` before IEND (diagram's PNGs,
    data --preview's): the PNG counterpart of sign_text."""
    with open(path, "rb") as f:
        data = f.read()
    chunks = _png_chunks(data)
    if chunks is None:
        raise error(f"{path}: Pillow wrote a PNG that netspec cannot read back")
    text = _png_chunk(b"tEXt", PNG_KEYWORD + b"\0" + (mark + _png_digest(chunks)).encode("latin-1"))
    end = data.rindex(b"IEND") - 4
    with open(path, "wb") as f:
        f.write(data[:end] + text + data[end:])


def is_signed_png(data: bytes, mark: str) -> bool:
    """`data` is a PNG that sign_png marked with `mark`, and its image is unchanged since."""
    chunks = _png_chunks(data)
    if chunks is None:
        return False
    want = (mark + _png_digest(chunks)).encode("latin-1")
    return any(kind == b"tEXt" and body == PNG_KEYWORD + b"\0" + want for kind, body in chunks)
