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


def _source_line(span: Span) -> str | None:
    text = SOURCES.get(span.file)
    if text is None:
        return None
    lines = text.splitlines()
    if 1 <= span.line <= len(lines):
        return lines[span.line - 1]
    return None


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
        if len(src) > MAX_SHOWN:  # a long line: a window around the caret
            lo = max(start - 40, 0)
            hi = min(lo + MAX_SHOWN, len(src))
            shown = ("..." if lo else "") + src[lo:hi] + ("..." if hi < len(src) else "")
            start = start - lo + (3 if lo else 0)
            width = max(min(width, hi - (s.column - 1)), 1)
            src = shown
        out.append(f" {gutter} | {src}")
        prefix = "".join(c if c == "\t" else " " for c in src[:start])
        out.append(f" {pad} | {prefix}{'^' * width}")
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
