"""Whether a torch file netspec reads is the one netspec wrote, and whether a checkpoint's
fields are what netspec writes (torch.load checks neither: it does not read the zip's CRCs,
and it returns whatever the pickle holds).

In: a torch file's path (``check_zip``: every member against the CRC-32 the zip records; a
flipped bit anywhere in the data is found, in any torch file, old runs included), a
checkpoint being written (``seal``: the sha256 of its content, ``digest``, and of the weights
written beside it in model.pt, ``model_digest``), a checkpoint read back (``verify_digest``,
``field_problems``: each field's type, shape and range), and, at `--resume`, the optimizer,
scheduler and GradScaler built for the run (``fit_problems``). Out: nothing, or the problems
in words; checkpoint.py turns them into errors naming the file (exit 1).

    state = seal(state, weights)            # before torch.save
    verify_digest(loaded, path)             # after torch.load
"""

from __future__ import annotations

import hashlib
import json
import math
import zipfile
from pathlib import Path
from typing import Any, TypeGuard

import torch
from torch import nn

from netspec.errors import error

DIGEST, MODEL_DIGEST = "digest", "model_digest"
DAMAGED_HELP = ("the file changed since netspec wrote it (a flipped bit, a partial copy, an edit); use an intact "
                "copy, or train again")


def check_zip(path: Path, f: Any) -> None:
    """Every member of the zip torch wrote against the CRC-32 it recorded (a CRC of 0 is
    "not recorded": torch can be told not to compute them). `f` is the open file; a file
    that is not a zip (torch's legacy format) is not checked here."""
    f.seek(0)
    if not zipfile.is_zipfile(f):
        f.seek(0)
        return
    try:
        with zipfile.ZipFile(f) as archive:
            for info in archive.infolist():
                if info.CRC == 0:
                    continue
                with archive.open(info) as member:  # zipfile compares the CRC at the end
                    while member.read(1 << 22):
                        pass
    except (zipfile.BadZipFile, OSError, EOFError, ValueError, NotImplementedError) as e:
        raise error(f"{path}: damaged: {str(e).splitlines()[0][:160]}", DAMAGED_HELP) from None
    finally:
        f.seek(0)


# ---------------------------------------------------------------- content digests


def content_digest(obj: Any) -> str:
    """sha256 over a value's structure and content: dict keys in order, tensors by dtype,
    shape and bytes, other values by type and repr. What torch.save writes and torch.load
    reads back has the same digest."""
    h = hashlib.sha256()
    _feed(h, obj)
    return h.hexdigest()


def _feed(h: Any, obj: Any) -> None:
    if isinstance(obj, torch.Tensor):
        t = obj.detach().cpu().contiguous()
        h.update(f"T{t.dtype}{tuple(t.shape)};".encode())
        if t.numel():
            h.update(t.reshape(-1).view(torch.uint8).numpy())
    elif isinstance(obj, dict):
        h.update(f"d{len(obj)};".encode())
        for k, v in obj.items():
            _feed(h, k)
            _feed(h, v)
    elif isinstance(obj, (list, tuple)):
        h.update(f"{'l' if isinstance(obj, list) else 't'}{len(obj)};".encode())
        for v in obj:
            _feed(h, v)
    elif isinstance(obj, str):
        data = obj.encode("utf-8", "surrogatepass")
        h.update(f"s{len(data)};".encode() + data)
    else:
        h.update(f"v{type(obj).__name__}:{obj!r};".encode())


def _digests(state: dict) -> dict[str, str]:
    return {str(k): content_digest(v) for k, v in state.items() if k not in (DIGEST, MODEL_DIGEST)}


def _combined(parts: dict[str, str]) -> str:
    return hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()


def seal(state: dict, weights_key: str) -> dict:
    """`state` (a checkpoint about to be saved) with its `digest`, and the `model_digest` of
    the weights written beside it in model.pt, which are `state[weights_key]` (the model's
    or the best epoch's): each entry is hashed once."""
    parts = _digests(state)
    return {**state, MODEL_DIGEST: parts[weights_key], DIGEST: _combined(parts)}


def verify_digest(state: dict, path: Path) -> None:
    """A checkpoint read back has the digest it was sealed with (none recorded: written
    before netspec recorded digests, accepted)."""
    recorded = state.get(DIGEST)
    if recorded is None:
        return
    if not isinstance(recorded, str) or _combined(_digests(state)) != recorded:
        raise error(f"{path}: damaged: its content does not match the digest netspec recorded when writing it",
                    DAMAGED_HELP)


def verify_weights(state: dict, path: Path, recorded: Any, beside: Path) -> None:
    """model.pt's tensors are those whose digest the checkpoint beside it recorded."""
    if recorded is None:
        return
    if not isinstance(recorded, str) or content_digest(state) != recorded:
        raise error(f"{path}: damaged, or not the weights written with {beside}: its tensors do not match the "
                    "digest recorded there", DAMAGED_HELP)


# ---------------------------------------------------------------- fields


def _int(v: Any) -> TypeGuard[int]:
    return isinstance(v, int) and not isinstance(v, bool)


def _number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def _tensors(v: Any) -> bool:
    return isinstance(v, dict) and all(isinstance(k, str) and isinstance(t, torch.Tensor) for k, t in v.items())


def _rng_problem(v: Any, where: str) -> str | None:
    size = torch.get_rng_state().numel()
    if not isinstance(v, torch.Tensor) or v.dtype != torch.uint8 or tuple(v.shape) != (size,):
        shown = f"{v.dtype} {list(v.shape)}" if isinstance(v, torch.Tensor) else type(v).__name__
        return f"{where} is {shown}, not torch's random state (uint8 [{size}])"
    return None


def field_problems(ckpt: dict) -> list[str]:
    """What in a netspec checkpoint is not of the type, shape or range netspec writes."""
    problems: list[str] = []
    epoch = ckpt.get("epoch")
    if not _int(epoch) or epoch < 0:
        return [f"epoch is {epoch!r}, not a count of epochs"]
    if not _tensors(ckpt.get("model")):
        problems.append("model is not a mapping of names to tensors")
    best = ckpt.get("best_weights")
    if best is not None and _tensors(ckpt.get("model")):
        model = ckpt["model"]
        if not _tensors(best) or list(best) != list(model) or any(best[k].shape != model[k].shape for k in model):
            problems.append("best_weights do not have the model's tensors and shapes")
    problems += _optimizer_problems(ckpt.get("optimizer"))
    rng = _rng_problem(ckpt.get("rng"), "rng")
    if rng:
        problems.append(rng)
    ranks = ckpt.get("rng_ranks")
    if ranks is not None:
        if not isinstance(ranks, list) or not all(isinstance(r, dict) and "cpu" in r for r in ranks):
            problems.append("rng_ranks is not one random state per process")
        else:
            problems += [p for i, r in enumerate(ranks) for p in [_rng_problem(r["cpu"], f"rng_ranks[{i}]")] if p]
            cuda = [r.get("cuda") for r in ranks]
            if any(c is not None and (not isinstance(c, torch.Tensor) or c.dtype != torch.uint8) for c in cuda):
                problems.append("rng_ranks holds a CUDA random state that is not a uint8 tensor")
    problems += _history_problems(ckpt.get("history"), epoch)
    best_epoch, bad = ckpt.get("best_epoch"), ckpt.get("bad_epochs")
    if not _int(best_epoch) or not 0 <= best_epoch <= epoch:
        problems.append(f"best_epoch is {best_epoch!r}, not an epoch from 0 to {epoch}")
    if not _int(bad) or not 0 <= bad <= epoch:
        problems.append(f"bad_epochs is {bad!r}, not a count from 0 to {epoch}")
    value = ckpt.get("best_value")
    if value is not None and not _number(value):
        problems.append(f"best_value is {type(value).__name__}, not a number")
    view = ckpt.get("spec_view")
    if not isinstance(view, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in view.items()):
        problems.append("spec_view is not a mapping of settings to their source")
    for key in ("scheduler", "scaler"):
        if ckpt.get(key) is not None and not isinstance(ckpt[key], dict):
            problems.append(f"{key} is {type(ckpt[key]).__name__}, not a state")
    pre = ckpt.get("preprocessing")
    if pre is not None and not isinstance(pre, str):
        problems.append("preprocessing is not a JSON text")
    return problems


def _optimizer_problems(opt: Any) -> list[str]:
    if not isinstance(opt, dict) or not isinstance(opt.get("state"), dict):
        return ["optimizer is not an optimizer's state"]
    groups = opt.get("param_groups")
    if not isinstance(groups, list) or not groups:
        return ["optimizer has no parameter groups"]
    seen: list[Any] = []
    for i, g in enumerate(groups):
        if not isinstance(g, dict) or not isinstance(g.get("params"), list) or not all(_int(p) for p in g["params"]):
            return [f"optimizer parameter group {i} does not list its parameters"]
        seen += g["params"]
    if len(set(seen)) != len(seen):
        return ["optimizer lists a parameter in two groups"]
    if any(not _int(k) or k not in seen or not isinstance(v, dict) for k, v in opt["state"].items()):
        return ["optimizer state is kept for parameters it does not have"]
    return []


def _history_problems(history: Any, epoch: int) -> list[str]:
    if not isinstance(history, list) or len(history) != epoch:
        n = len(history) if isinstance(history, list) else type(history).__name__
        return [f"history holds {n} rows for {epoch} epochs"]
    for i, row in enumerate(history):
        if not isinstance(row, dict) or row.get("epoch") != i + 1 or \
                not all(isinstance(k, str) and _number(v) for k, v in row.items()):
            return [f"history row {i + 1} is not epoch {i + 1}'s figures"]
    return []


# ---------------------------------------------------------------- against the run's own parts


def fit_problems(ckpt: dict, model: nn.Module, optimizer: torch.optim.Optimizer, scheduler: Any,
                 scaler: Any) -> list[str]:
    """What in a checkpoint does not fit the optimizer, scheduler and GradScaler of the run
    resuming it (their types, group sizes, per-parameter state shapes): torch would accept it
    and fail, or compute nonsense, some steps later."""
    problems: list[str] = []
    saved, fresh = ckpt["optimizer"], optimizer.state_dict()
    if len(saved["param_groups"]) != len(fresh["param_groups"]) or any(
            len(a["params"]) != len(b["params"]) for a, b in zip(saved["param_groups"], fresh["param_groups"])):
        return ["the optimizer's parameter groups do not match the model's parameters"]
    for i, (a, b) in enumerate(zip(saved["param_groups"], fresh["param_groups"])):
        problems += like(a, b, f"optimizer parameter group {i}", skip=("params",))
    params = [p for g in optimizer.param_groups for p in g["params"]]
    position = {pid: k for k, pid in enumerate(pid for g in saved["param_groups"] for pid in g["params"])}
    total = sum(p.numel() for p in params)
    for key, state in saved["state"].items():
        shape = params[position[key]].shape
        for name, v in _tensor_items(state):
            if v.numel() > 1 and v.shape != shape and tuple(v.shape) != (total,):
                problems.append(f"optimizer state `{name}` of parameter {key} is {list(v.shape)}, the parameter "
                                f"{list(shape)}")
    for name, part in (("scheduler", scheduler), ("scaler", scaler)):
        if part is not None and ckpt.get(name) is not None:
            problems += like(ckpt[name], part.state_dict(), name)
    return problems[:5]


def _tensor_items(state: dict) -> list[tuple[str, torch.Tensor]]:
    out = []
    for name, v in state.items():
        for t in v if isinstance(v, (list, tuple)) else [v]:
            if isinstance(t, torch.Tensor):
                out.append((str(name), t))
    return out


def like(saved: Any, fresh: Any, where: str, skip: tuple[str, ...] = ()) -> list[str]:
    """Where `saved` (read from a file) is not of the kind `fresh` (built now) is: numbers
    stay finite numbers, flags flags, text text, lists of the same length, tensors of the
    same shape. A None in `fresh` allows anything."""
    if fresh is None:
        return []
    if isinstance(fresh, bool):
        ok = isinstance(saved, bool)
    elif _number(fresh):
        ok = _number(saved) and (math.isfinite(saved) or not math.isfinite(fresh))
    elif isinstance(fresh, str):
        ok = isinstance(saved, str)
    elif isinstance(fresh, torch.Tensor):
        ok = isinstance(saved, torch.Tensor) and saved.shape == fresh.shape
    elif isinstance(fresh, (list, tuple)):
        if not isinstance(saved, (list, tuple)) or len(saved) != len(fresh):
            return [f"{where} is {_kind(saved)}, not a list of {len(fresh)}"]
        return [p for i, (a, b) in enumerate(zip(saved, fresh)) for p in like(a, b, f"{where}[{i}]")]
    elif isinstance(fresh, dict):
        if not isinstance(saved, dict):
            return [f"{where} is {_kind(saved)}, not a mapping"]
        return [p for k in fresh if k in saved and k not in skip for p in like(saved[k], fresh[k], f"{where}.{k}")]
    else:
        return []
    return [] if ok else [f"{where} is {_kind(saved)}, not {_kind(fresh)}"]


def _kind(v: Any) -> str:
    if isinstance(v, torch.Tensor):
        return f"a tensor {list(v.shape)}"
    if _number(v):
        return f"the number {v!r}" if not math.isfinite(v) else "a number"
    return {bool: "a flag", str: "text", type(None): "none", list: "a list", tuple: "a list",
            dict: "a mapping"}.get(type(v), type(v).__name__)
