"""Source positions and diagnostics.

In: positions from the parser and messages from every phase.
Out: ``Span`` (file, line, column, end) and ``NetspecError``, which renders as

    mnist.net:14:5: error: Linear expects [features], got [64, 7, 7]
       14 |     fc1: Linear(128)
          |          ^^^^^^^^^^^
    help: insert Flatten before this layer

A phase collects ``Diagnostic``s and raises one ``NetspecError`` holding all of them.
"""

from __future__ import annotations

import difflib
import re
import shlex
import unicodedata
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field


@dataclass(frozen=True, slots=True)
class Span:
    """A region of a source file; lines and columns count from 1, end is exclusive."""

    file: str = "<spec>"
    line: int = 0
    column: int = 0
    end_line: int = 0
    end_column: int = 0

    def __bool__(self) -> bool:
        return self.line > 0


NO_SPAN = Span()

# Where a library function hands a note for the user (one line of text, said while it works)
# to its caller; the CLI prints it on stderr. Library code never prints.
Tell = Callable[[str], None]
MAX_SHOWN = 120  # source characters shown of a longer line

# Source text of every file seen, so a diagnostic can show its line without re-reading.
SOURCES: dict[str, str] = {}


def remember_source(file: str, text: str) -> None:
    SOURCES[file] = text


@dataclass(frozen=True, slots=True)
class Diagnostic:
    message: str
    span: Span = NO_SPAN
    severity: str = "error"  # error | warning | note
    help: str | None = None
    notes: tuple[Diagnostic, ...] = field(default=())

    def render(self) -> str:
        return render(self)

    def to_json(self) -> dict[str, object]:
        s = self.span
        return {
            "file": s.file,
            "line": s.line,
            "column": s.column,
            "end": {"line": s.end_line, "column": s.end_column},
            "severity": self.severity,
            "message": self.message,
            "help": self.help,
            "notes": [n.to_json() for n in self.notes],
        }


class NetspecError(Exception):
    """Every user-facing failure. Holds one or more diagnostics."""

    def __init__(self, diagnostics: Diagnostic | Iterable[Diagnostic]):
        if isinstance(diagnostics, Diagnostic):
            diagnostics = [diagnostics]
        self.diagnostics: list[Diagnostic] = list(diagnostics)
        super().__init__(self.render())

    @classmethod
    def at(cls, span: Span, message: str, help: str | None = None) -> NetspecError:
        return cls(Diagnostic(message, span, "error", help))

    def render(self) -> str:
        return "\n".join(render(d) for d in self.diagnostics)


class DataError(NetspecError):
    """A problem with a data file (names the file and what is wrong)."""


class ExportError(NetspecError):
    """An export that failed or did not match onnxruntime."""


class TrainingInterrupted(KeyboardInterrupt):
    """Ctrl-C while training: where the run stands, for the CLI to say how to carry on."""

    def __init__(self, run: str, epoch: int, checkpointed: bool):
        super().__init__(run)
        self.run, self.epoch, self.checkpointed = run, epoch, checkpointed


def data_error(message: str, help: str | None = None, *, span: Span = NO_SPAN) -> DataError:
    """The one way to report a problem with data (a file, a row, a column, a value): the
    message starts with what it is about (`FILE: `, `FILE:LINE: `, a column); `span` is the
    spec position that can fix it, where there is one (a `target=` argument, the loss)."""
    return DataError(Diagnostic(message, span, "error", help))


def error(message: str, help: str | None = None) -> NetspecError:
    """An error with no source position (files, CLI arguments)."""
    return NetspecError(Diagnostic(message, NO_SPAN, "error", help))


def source_lines(text: str) -> list[str]:
    """The lines of a spec as the lexer counts them: split at "\\n" only (a CR before it
    dropped). A lone CR, U+2028, U+2029, a form feed... are characters inside a line, for the
    grammar and so for every position shown (str.splitlines would split there too)."""
    lines = text.split("\n")
    if lines[-1] == "":
        lines.pop()  # a final newline ends the last line
    return [line[:-1] if line.endswith("\r") else line for line in lines]


def _source_line(span: Span) -> str | None:
    text = SOURCES.get(span.file)
    if text is None:
        return None
    lines = source_lines(text)
    if 1 <= span.line <= len(lines):
        return lines[span.line - 1]
    return None


# ---------------------------------------------------------------- what reaches a terminal

_SUSPECT = re.compile(r"[^\t\n\x20-\x7e]")  # the characters looked at closely (newlines kept)
_SUSPECT_IN_LINE = re.compile(r"[^\x20-\x7e]")  # (a name inside a line: newlines and tabs too)
_HIDDEN = frozenset(("Cc", "Cf", "Cs", "Co", "Zl", "Zp"))  # controls, format (bidi), surrogates, private use
_JOINERS = frozenset("\u200c\u200d")  # zero-width (non-)joiners: needed by some scripts and emoji
_SHORT = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}


def _escaped(ch: str) -> str:
    """`ch` itself when it is safe to show, else its escape."""
    if ch not in "\n\t" and (unicodedata.category(ch) not in _HIDDEN or ch in _JOINERS):
        return ch
    if ch in _SHORT:
        return _SHORT[ch]
    code = ord(ch)
    if 0xDC80 <= code <= 0xDCFF:  # an undecodable byte of a file name (surrogateescape): the byte
        return f"\\x{code - 0xDC00:02x}"
    if code < 0x100:
        return f"\\x{code:02x}"
    return f"\\u{code:04x}" if code < 0x10000 else f"\\U{code:08x}"


def printable(text: str, newlines: bool = True) -> str:
    """`text` as netspec shows it on a terminal: characters that could rewrite the screen or
    reorder what is shown (C0 and C1 controls such as ESC, CR and backspace; bidirectional
    and other invisible format characters such as U+202E and U+2066; line and paragraph
    separators) are written as escapes (`\\x1b`, `\\u202e`), and so is a byte of a file
    name that is not UTF-8 (`caf\\xe9`). Newlines and tabs stay unless `newlines=False`
    (a name shown inside a line). Everything netspec prints goes through here (cli.py)."""
    pattern = _SUSPECT if newlines else _SUSPECT_IN_LINE
    return pattern.sub(lambda m: _escaped(m[0]), text) if pattern.search(text) else text


def shell_command(*words: str) -> str:
    """A command line the user can paste: each word quoted for a POSIX shell where needed."""
    return shlex.join(words)


def render(d: Diagnostic) -> str:
    s = d.span
    where = f"{s.file}:{s.line}:{s.column}: " if s else ""
    out = [f"{where}{d.severity}: {d.message}"]
    src = _source_line(s) if s else None
    if src is not None:
        gutter = str(s.line)
        pad = " " * len(gutter)
        src = src.rstrip()
        start = max(s.column - 1, 0)
        if s.end_line == s.line and s.end_column > s.column:
            width = s.end_column - s.column
        else:
            width = max(len(src) - start, 1)
        cut = ("", "")
        if len(src) > MAX_SHOWN:  # a long line: a window around the caret
            lo = max(start - 40, 0)
            hi = min(lo + MAX_SHOWN, len(src))
            cut = ("..." if lo else "", "..." if hi < len(src) else "")
            width = max(min(width, hi - start), 1)
            start -= lo
            src = src[lo:hi]
        # each character as shown (a control or bidi character as its escape), so that the
        # caret stays under what it points at
        shown = [c if c == "\t" else _escaped(c) for c in src]
        out.append(f" {gutter} | {cut[0]}{''.join(shown)}{cut[1]}")
        prefix = " " * len(cut[0]) + "".join(c if c == "\t" else " " * len(c) for c in shown[:start])
        caret = sum(len(c) for c in shown[start:start + width]) or 1
        out.append(f" {pad} | {prefix}{'^' * caret}")
    if d.help:
        out.append(f"help: {d.help}")
    for note in d.notes:
        out.append(render(note))
    return "\n".join(out)


def did_you_mean(name: str, choices: Iterable[str]) -> str | None:
    """'did you mean `X`?' for the closest choice, case-insensitive first."""
    choices = list(choices)
    lower = {c.lower(): c for c in choices}
    if name.lower() in lower and lower[name.lower()] != name:
        return f"did you mean `{lower[name.lower()]}`?"
    close = difflib.get_close_matches(name, choices, n=1, cutoff=0.6)
    if not close:
        close_l = difflib.get_close_matches(name.lower(), list(lower), n=1, cutoff=0.6)
        close = [lower[c] for c in close_l]
    return f"did you mean `{close[0]}`?" if close else None


_AN_BUT_CONSONANT = ("uni", "use", "usu", "uti", "eu", "one", "once", "ure")  # "a unit", "a one-hot"
_AN_SILENT_H = ("hour", "honest", "honor", "honour", "heir")


def with_article(noun: str) -> str:
    """`noun` after its indefinite article, by the sound it starts with:
    "an early-stopping rule", "an optimizer", "a layer", "a unit", "an hour"."""
    lower = noun.lower()
    vowel = lower[:1] in ("a", "e", "i", "o", "u") and not lower.startswith(_AN_BUT_CONSONANT)
    return f"{'an' if vowel or lower.startswith(_AN_SILENT_H) else 'a'} {noun}"
