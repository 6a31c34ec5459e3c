"""Run folders: where `netspec train` writes, and how other commands find a run.

In: an output folder (``--out`` or ``runs/<model>``) and the checked spec.
Out: ``RunDir`` (claims the folder at the first checkpoint: an older run there is moved
to ``<dir>.1``, ``.2``, ...; a folder that is not a netspec run is never moved or
written), ``run.json`` (the marker: version, model, spec hash, started/finished, final
metrics), a self-contained ``spec.net`` (imports inlined, data paths absolute, so the
run folder alone can be evaluated, exported and resumed), and lookups used by
`export`/`eval`/`predict`/`summary`: a run folder as their argument, or the most recently
finished run under ``./runs/``.
"""

from __future__ import annotations

import json
import math
import os
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

from netspec import catalogue as cat
from netspec import ir
from netspec.errors import Diagnostic, NetspecError, error
from netspec.util import atomic_write_text, check_path, clean_stale_temps

RUN_FORMAT = "netspec-run-1"
RUN_FILE = "run.json"
# everything netspec puts in a run folder (a folder holding only these is a run)
RUN_ENTRIES = {"run.json", "spec.net", "model.pt", "checkpoint.pt", "metrics.csv", "curves.png", "summary.txt",
               "confusion.csv", "confusion.png", "tensorboard", "report.txt", "tokenizer.json"}


def is_run_folder(path: Path) -> bool:
    """A folder netspec made: it has run.json, or (runs of netspec 0.1) a checkpoint and
    spec.net and nothing netspec would not have written."""
    if not path.is_dir():
        return False
    marker = path / RUN_FILE
    if marker.is_file():
        try:
            return json.loads(marker.read_text(encoding="utf-8")).get("format") == RUN_FORMAT
        except (OSError, ValueError, AttributeError):
            return False
    names = {p.name for p in path.iterdir()}
    known = all(n in RUN_ENTRIES or n.endswith(".onnx") or (n.startswith(".") and n.endswith(".tmp")) for n in names)
    return known and {"checkpoint.pt", "spec.net"} <= names


def check_out_folder(out: Path) -> None:
    """Refuse an output folder that would cost the user something: a file, a folder that is
    not a run (never moved), the current folder or one of its parents."""
    check_path(out)
    for parent in [out, *out.parents]:
        if parent.exists() and not parent.is_dir():
            what = "is a file" if parent == out else f"is under {parent}, which is a file"
            raise error(f"--out {out}: {what}", "choose a folder path for the run")
    if not out.exists():
        return
    here = Path.cwd().resolve()
    target = out.resolve()
    if target == here or target in here.parents:
        raise error(f"--out {out}: that is the current folder (or one of its parents)",
                    "give the run its own folder, e.g. --out runs/my_run")
    if any(out.iterdir()) and not is_run_folder(out):
        shown = ", ".join(sorted(p.name for p in out.iterdir())[:5])
        raise error(f"--out {out}: the folder exists and is not a netspec run (it holds {shown}"
                    f"{', ...' if len(list(out.iterdir())) > 5 else ''})",
                    "netspec only moves aside folders it made; choose another --out")


def rotate(out: Path) -> Path | None:
    """Move an existing run aside (<name>.1, .2, ...); an empty folder is simply reused."""
    if not out.exists() or not any(out.iterdir()):
        return None
    if not is_run_folder(out):
        check_out_folder(out)  # raises
    n = 1
    while out.with_name(f"{out.name}.{n}").exists():
        n += 1
    target = out.with_name(f"{out.name}.{n}")
    os.replace(out, target)
    return target


class RunDir:
    """The run folder of one `netspec train`. Nothing is written before `claim()` (called at
    the first checkpoint), so a run that fails early leaves the previous run in place.
    `enabled=False` (DDP ranks other than 0) makes every write a no-op."""

    def __init__(self, path: Path, resume: bool = False, enabled: bool = True):
        self.path = path
        self.resume = resume
        self.enabled = enabled
        self.claimed = False
        self.meta: dict[str, Any] = {}
        if enabled and not resume:
            check_out_folder(path)

    def claim(self, spec_text: str, meta: dict[str, Any]) -> Path | None:
        """Make the folder this run's: rotate an older run away, write spec.net and run.json.
        Returns where the older run was moved (for the caller to say), or None."""
        if not self.enabled or self.claimed:
            return None
        moved = None if self.resume else rotate(self.path)
        from netspec.util import ensure_folder

        ensure_folder(self.path)
        clean_stale_temps(self.path, RUN_ENTRIES)
        self.meta = {"format": RUN_FORMAT, "started": time.time(), "finished": None, **meta}
        if self.resume and (self.path / RUN_FILE).is_file():
            old = read_run_json(self.path)
            self.meta = {**old, **{k: v for k, v in meta.items() if k not in ("started",)}, "finished": None}
        atomic_write_text(self.path / "spec.net", spec_text)
        self.write_meta()
        self.claimed = True
        return moved

    def claim_resumed(self, spec_text: str) -> None:
        """A resumed run keeps its folder; run.json is rewritten as unfinished."""
        if not self.enabled:
            return
        clean_stale_temps(self.path, RUN_ENTRIES)
        self.meta = {**read_run_json(self.path), "format": RUN_FORMAT, "finished": None}
        self.write_meta()
        self.claimed = True

    def write_meta(self, **updates: Any) -> None:
        if not self.enabled:
            return
        self.meta.update(updates)
        atomic_write_text(self.path / RUN_FILE, json.dumps(self.meta, indent=2, default=str) + "\n")

    def finish(self, result: dict[str, Any]) -> None:
        self.write_meta(finished=time.time(), result=result)


def read_run_json(run: Path) -> dict[str, Any]:
    try:
        data = json.loads((run / RUN_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def finished_runs(root: Path = Path("runs")) -> list[Path]:
    """Finished runs under `root` (and `root` itself), the most recently finished first."""
    if not root.is_dir():
        return []
    found = []
    for run in [root, *sorted(p for p in root.iterdir() if p.is_dir())]:
        info = read_run_json(run)
        finished = info.get("finished")
        if not isinstance(finished, (int, float)) or isinstance(finished, bool) or not math.isfinite(finished):
            continue  # unfinished, or a run.json edited into something else
        if info.get("format") == RUN_FORMAT and finished and (run / "model.pt").is_file():
            found.append((float(finished), run))
    return [run for _, run in sorted(found, key=lambda x: -x[0])]


def latest_finished_run(root: Path = Path("runs")) -> tuple[Path, list[Path]]:
    runs = finished_runs(root)
    if not runs:
        raise error(f"no finished training run under ./{root}/ (looked for {root}/*/{RUN_FILE})",
                    "train first, e.g. `netspec train mnist.net`, then `netspec export model.onnx`")
    return runs[0], runs[1:]


def run_spec(run: Path) -> Path:
    spec = run / "spec.net"
    if not spec.is_file():
        raise error(f"{run}: not a netspec run folder (no spec.net)", "give a spec file or a folder made by netspec train")
    return spec


# ---------------------------------------------------------------- the resolved spec


def resolved_spec(spec: ir.Spec) -> ir.Spec:
    """The spec as a run folder keeps it: imported lets and blocks inlined (a later
    definition wins, as in the checker), and file paths in data sources and the export
    section made absolute, so the file works wherever it is read from."""
    from netspec.syntax.parser import parse_file

    definitions: dict[tuple[str, str], ir.Let | ir.Block] = {}

    def gather(s: ir.Spec, seen: set[str]) -> None:
        for imp in s.of(ir.Import):
            path = os.path.normpath(os.path.join(os.path.dirname(s.file), os.path.expanduser(imp.path)))
            key = os.path.abspath(path)
            if key in seen:
                continue
            try:
                gather(parse_file(path), seen | {key})
            except NetspecError:
                continue
        for item in s.items:
            if isinstance(item, (ir.Let, ir.Block)):
                kind = "let" if isinstance(item, ir.Let) else "block"
                definitions.pop((kind, item.name), None)
                definitions[(kind, item.name)] = item

    gather(spec, {os.path.abspath(spec.file)})
    rest = [_absolute_paths(i, spec.file) for i in spec.items if isinstance(i, (ir.Model, ir.Section))]
    return replace(spec, items=(*definitions.values(), *rest))


def _absolute_paths(item: ir.Model | ir.Section, spec_file: str) -> ir.Model | ir.Section:
    if not isinstance(item, ir.Section):
        return item
    base = os.path.dirname(os.path.abspath(spec_file))

    def absolute(e: ir.Expr) -> ir.Expr:
        if isinstance(e, ir.Str) and e.value:
            return replace(e, value=os.path.normpath(os.path.join(base, os.path.expanduser(e.value))))
        return e

    entries = []
    for e in item.entries:
        if isinstance(e, ir.Setting) and item.kind == "data" and isinstance(e.value, ir.Call) \
                and e.value.func in cat.SOURCES:
            src = cat.SOURCES[e.value.func]
            names = [p.name for p in src.params]
            args = tuple(absolute(a) if i < len(names) and names[i] in src.paths else a
                         for i, a in enumerate(e.value.args))
            kwargs = tuple(replace(k, value=absolute(k.value)) if k.name in src.paths else k for k in e.value.kwargs)
            e = replace(e, value=replace(e.value, args=args, kwargs=kwargs))
        elif isinstance(e, ir.Setting) and item.kind == "export" and e.key == "onnx":
            e = replace(e, value=absolute(e.value))
        entries.append(e)
    return replace(item, entries=tuple(entries))


def resolved_spec_text(spec: ir.Spec) -> str:
    from netspec.syntax.format import unparse

    header = f"# resolved by netspec from {os.path.abspath(spec.file)}\n"
    return header + unparse(resolved_spec(spec))


def note(message: str) -> Diagnostic:
    return Diagnostic(message, severity="note")


def default_run_dir(checked: ir.CheckedSpec) -> Path:
    """Where `netspec train` writes without --out, and where eval/export look: runs/<model>."""
    return Path("runs") / checked.model.name
