"""Checkpoints, weights files and what `--resume` may change.

In: a run folder's files. Out: ``load_checkpoint`` (checkpoint.pt, checked for netspec's
format and fields), ``load_state_dict_file`` (model.pt), ``state_problems`` (why a state
does not fit a model, in words), ``run_checkpoint`` (the preprocessing and spec hash saved
beside a weights file), ``resume_point`` and ``refuse_finished`` (the checkpoint `--resume`
continues, or why not), and the writers that `util.atomic_write_many` runs (torch.save that
reports a full disk).
Every file is read with ``torch.load(weights_only=True)``: it never unpickles code.

    ckpt, changed = resume_point(checked, Path("runs/mnist"))  # then refuse_finished(ckpt, ...)
"""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path
from typing import Any

import torch
from torch import nn

from netspec import catalogue as cat
from netspec import ir
from netspec.errors import NetspecError, error
from netspec.syntax.format import unparse
from netspec.train.integrity import MODEL_DIGEST, check_zip, field_problems, verify_digest, verify_weights
from netspec.train.preflight import patience_ran_out
from netspec.train.runs import read_run_json
from netspec.util import atomic_write, count, failed_write, sha256_text

RESUMABLE_CHANGES = ("train.epochs", "train.optimizer.lr", "train.scheduler", "train.checkpoint_every",
                     "train.device", "train.early_stopping", "train.log", "train.log_every", "train.precision")
CHECKPOINT_FORMAT = "netspec-checkpoint-1"


def spec_view(spec: ir.Spec) -> dict[str, str]:
    """Flat `key -> source` view of a spec, for resume diffs."""
    from netspec.syntax.expr import source

    view: dict[str, str] = {}
    for item in spec.items:
        if isinstance(item, ir.Let):
            view[f"let {item.name}"] = source(item.value)
        elif isinstance(item, (ir.Model, ir.Block)):
            view[f"{type(item).__name__.lower()} {item.name}"] = unparse(ir.Spec(spec.file, (item,)))
        elif isinstance(item, ir.Section) and item.kind != "search":  # what a run trains, not what tune explores
            for e in item.entries:
                if isinstance(e, ir.Setting):
                    if e.key == "optimizer" and isinstance(e.value, ir.Call):
                        for k in e.value.kwargs:
                            view[f"{item.kind}.optimizer.{k.name}"] = source(k.value)
                        rest = ir.Call(e.value.func, e.value.args, tuple(k for k in e.value.kwargs if k.name != "lr"))
                        view[f"{item.kind}.optimizer"] = source(rest)
                    else:
                        view[f"{item.kind}.{e.key}"] = source(e.value)
    return view


def spec_views(spec: ir.Spec) -> tuple[dict[str, str], dict[str, str]]:
    """(the view of the spec as a run folder keeps it: imports inlined, data paths absolute;
    the view as written). A run records the first, so `--resume` and `eval --spec` see the
    same spec whether they are given the spec file or the run folder's spec.net; runs written
    before recorded the second."""
    from netspec.train.runs import resolved_spec

    return spec_view(resolved_spec(spec)), spec_view(spec)


def view_hash(view: dict[str, str]) -> str:
    return sha256_text(json.dumps(view, sort_keys=True))


def spec_hashes(spec: ir.Spec) -> set[str]:
    """The hashes a run of `spec` may have recorded (see spec_views)."""
    return {view_hash(v) for v in spec_views(spec)}


def diff_views(old: dict[str, str], new: dict[str, str]) -> list[tuple[str, str | None, str | None]]:
    """The settings whose effective values differ: writing out a default (`seed: 0`) is no change."""
    keys = sorted(set(old) | set(new))
    defaults = _default_view()
    return [(k, old.get(k), new.get(k)) for k in keys
            if old.get(k, defaults.get(k)) != new.get(k, defaults.get(k))]


def _default_view() -> dict[str, str]:
    """`section.key -> source` of the catalogue's default for each section setting."""
    def text(v: object) -> str | None:
        if isinstance(v, bool) or v is None:
            return {True: "true", False: "false", None: "none"}[v]
        if isinstance(v, (int, float)):
            return repr(v)
        return f'"{v}"' if isinstance(v, str) else None

    out: dict[str, str] = {}
    for section, settings in cat.SECTIONS.items():
        if section == "search":
            continue
        for st in settings:
            value = str(st.default) if st.type.startswith("choice(") else text(st.default)  # choices are bare
            if value is not None:
                out[f"{section}.{st.key}"] = value
    return out


def metrics_csv(rows: list[dict]) -> str:
    if not rows:
        return ""
    keys = list(dict.fromkeys(k for r in rows for k in r))
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=keys)
    w.writeheader()
    w.writerows(rows)
    return buf.getvalue()


def text_writer(text: str):
    def write(tmp: str) -> None:
        with open(tmp, "w", encoding="utf-8", errors="surrogateescape") as f:  # names' bytes, as they are
            f.write(text)

    return write


def torch_writer(obj: object):
    """A writer for util.atomic_write(_many): torch.save into the temp file, written through
    a Python file object so that a full disk or a file-size limit arrives as the OSError it
    is (torch's own writer says `[enforce fail at inline_container.cc:672] ...`)."""

    def write(tmp: str) -> None:
        try:
            with open(tmp, "wb") as f:
                torch.save(obj, f)
        except OSError:
            raise
        except Exception as e:  # noqa: BLE001 - torch's C++ errors: what the disk says, else its text
            raise failed_write(e, tmp) from None

    return write


def save_torch(obj: object, path: Path) -> None:
    atomic_write(path, torch_writer(obj))


def load_torch(path: Path, what: str = "weights/checkpoint") -> Any:
    """torch.load with weights_only=True (never unpickles code), errors as user errors; the
    zip's CRCs are checked first (integrity.check_zip: torch.load does not)."""
    from netspec.util import open_regular

    try:
        with open_regular(path, what=what) as f:
            check_zip(path, f)
            return torch.load(f, map_location="cpu", weights_only=True)
    except NetspecError:
        raise
    except Exception as e:  # noqa: BLE001 - any unreadable/foreign file is a user error
        detail = str(e).splitlines()[0] if str(e) else ""
        if "weights_only" in detail or detail.startswith("Weights only load failed"):
            # torch suggests weights_only=False, which would run code from the file: never repeat that
            detail = "not a torch file of tensors; netspec loads nothing else"
        raise error(f"{path}: not a readable netspec {what} file ({type(e).__name__}: {detail})") from None


CHECKPOINT_KEYS = ("format", "model", "optimizer", "epoch", "rng", "history", "best_value", "best_epoch",
                   "bad_epochs", "spec_view")


def load_checkpoint(path: Path) -> dict:
    """checkpoint.pt: netspec's format, its digest (when recorded) and every field's type,
    shape and range checked; anything else is an error naming the file and the field."""
    ckpt = load_torch(path, "checkpoint")
    if not isinstance(ckpt, dict) or ckpt.get("format") != CHECKPOINT_FORMAT:
        raise error(f"{path}: not a netspec checkpoint", "it must be the checkpoint.pt that netspec train wrote")
    missing = [k for k in CHECKPOINT_KEYS if k not in ckpt]
    if missing:
        raise error(f"{path}: damaged netspec checkpoint (missing {', '.join(missing)})",
                    "train again without --resume")
    verify_digest(ckpt, path)
    problems = field_problems(ckpt)
    if problems:
        raise error(f"{path}: damaged netspec checkpoint: {'; '.join(problems[:3])}",
                    "resume from an intact copy, or train again without --resume")
    return ckpt


def state_problems(model: nn.Module, state: dict, limit: int = 3) -> list[str]:
    """What keeps `state` from loading into `model`: the first `limit` misshapen, missing
    and unexpected tensors (`fc1.weight: [16, 784] in the file, [32, 784] in the model`),
    then how many more."""
    own = model.state_dict()
    shaped = [f"{k}: {list(getattr(v, 'shape', []))} in the file, {list(own[k].shape)} in the model"
              for k, v in state.items() if k in own and getattr(v, "shape", None) != own[k].shape]
    missing = [f"{k}: missing from the file" for k in own if k not in state]
    unexpected = [f"{k}: in the file, not in the model" for k in state if k not in own]
    every = shaped + missing + unexpected
    out = every[:limit]
    if len(every) > limit:
        out.append(f"and {len(every) - limit} more")
    return out


def load_state_dict_file(path: Path) -> dict:
    """model.pt: a state_dict (names -> tensors), checked against the digest that the
    checkpoint.pt beside it recorded (when there is one that did)."""
    state = load_torch(path, "weights")
    if isinstance(state, dict) and state.get("format") == CHECKPOINT_FORMAT and isinstance(state.get("model"), dict):
        verify_digest(state, path)
        state = state["model"]  # a checkpoint given as weights: use its model
    elif isinstance(state, dict):
        beside = _sibling_checkpoint(path)
        if beside is not None:
            verify_weights(state, path, beside.get(MODEL_DIGEST), path.parent / "checkpoint.pt")
    if not isinstance(state, dict) or not all(isinstance(k, str) and isinstance(v, torch.Tensor)
                                               for k, v in state.items()):
        kind = type(state).__name__
        raise error(f"{path}: not a weights file (a state_dict mapping names to tensors); it holds a {kind}",
                    "use the model.pt that netspec train wrote")
    return state


_SIBLINGS: dict[tuple, dict | None] = {}  # the last checkpoint read beside a weights file


def _sibling_checkpoint(weights: Path) -> dict | None:
    """The netspec checkpoint beside `weights` (its digest verified), or None when there is
    none (or another tool's). Read once per command: eval and export ask twice."""
    path = weights.parent / "checkpoint.pt"
    try:
        st = path.stat()
    except OSError:
        return None
    key = (str(path.resolve()), st.st_ino, st.st_size, st.st_mtime_ns)
    if key not in _SIBLINGS:
        state = load_torch(path, "checkpoint")
        netspec = isinstance(state, dict) and state.get("format") == CHECKPOINT_FORMAT
        if netspec:
            verify_digest(state, path)
        _SIBLINGS.clear()
        _SIBLINGS[key] = state if netspec else None
    return _SIBLINGS[key]


def run_checkpoint(weights: Path) -> tuple[dict | None, str]:
    """(preprocessing, spec hash) saved in the checkpoint beside `weights`, if any."""
    state = _sibling_checkpoint(weights)
    if state is None:
        return None, ""
    try:
        pre = json.loads(state["preprocessing"]) if state.get("preprocessing") else None
    except (TypeError, ValueError):
        pre = None
    if isinstance(pre, dict) and "source_shape" not in pre:
        pre = None  # a netspec 0.1 checkpoint: its statistics are recomputed from the data
    return pre, str(state.get("spec_hash", ""))


def resume_point(checked: ir.CheckedSpec, out: Path) -> tuple[dict, str]:
    """The checkpoint in run folder `out` that `--resume` continues, and the settings that
    changed since it was written (`  key: old -> new` lines; "" when none); an error where
    the folder cannot be resumed with this spec."""
    ckpt_path = out / "checkpoint.pt"
    if out.exists() and not out.is_dir():
        raise error(f"--resume: {out} is a file, not a run folder", "give --out the run folder to resume")
    if not ckpt_path.exists():
        raise error(f"--resume: {ckpt_path} does not exist", "train without --resume to start a run")
    ckpt = load_checkpoint(ckpt_path)
    candidates = [diff_views(ckpt["spec_view"], view) for view in spec_views(checked.spec)]
    changes = min(candidates, key=lambda c: (len([k for k in c if not k[0].startswith(RESUMABLE_CHANGES)]), len(c)))
    blocked = [c for c in changes if not c[0].startswith(RESUMABLE_CHANGES)]
    sched = checked.train.scheduler
    old_epochs = ckpt["spec_view"].get("train.epochs", _default_view()["train.epochs"])
    if sched is not None and sched.name == "OneCycleLR" and sched.get("total_steps") is None and \
            any(k == "train.epochs" for k, _, _ in changes) and not any(k == "train.scheduler" for k, _, _ in changes):
        raise error(f"--resume: OneCycleLR's one cycle spans the run's epochs ({old_epochs}); it cannot "
                    f"continue over {checked.train.epochs}",
                    "start a new run (another --out) with the new epoch count"
                    + (f", or resume with --set train.epochs={old_epochs}"
                       if old_epochs.isdigit() and ckpt["epoch"] < int(old_epochs) else ""))
    text = "\n".join(f"  {k}: {a if a is not None else '(absent)'} -> {b if b is not None else '(absent)'}"
                     for k, a, b in changes)
    if blocked:
        raise error(f"--resume: the spec changed since {ckpt_path} was written:\n{text}",
                    "only epochs, the learning rate, the scheduler, early_stopping, device, precision, log "
                    "and checkpoint_every may change on resume; start a new run instead")
    return ckpt, text


def refuse_finished(ckpt: dict, checked: ir.CheckedSpec, out: Path) -> None:
    """`--resume` of a run that finished (all its epochs, or stopped early) and wrote its outputs."""
    done = ckpt["epoch"] >= checked.train.epochs or stopped_early(ckpt, checked)
    if done and read_run_json(out).get("finished"):
        raise error(f"--resume: the run already finished {ckpt['epoch']} of {count(checked.train.epochs, 'epoch')}",
                    f"raise the epoch count, e.g. --set train.epochs={ckpt['epoch'] + 5}")


def stopped_early(ckpt: dict, checked: ir.CheckedSpec) -> bool:
    """Whether early stopping had ended the run that wrote `ckpt`, by this spec's rule."""
    es = checked.train.early_stopping
    return es is not None and patience_ran_out(int(ckpt.get("bad_epochs", 0)), es)
