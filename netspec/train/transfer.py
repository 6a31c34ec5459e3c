"""Starting from trained weights, and training only part of a model: what `netspec train` does
with `weights { }`, `freeze`, `unfreeze` and `param_groups`, and what `netspec eject` copies.

In: the built model, the weights file's tensors, the spec's key map, renames and skips, and a
``Plan`` (frozen paths, unfreeze epochs, parameter groups). Out: the model holding the loaded
tensors (``load_pretrained``), `requires_grad` and the frozen normalisation layers as of an
epoch (``set_trainable``), the optimizer's parameter groups (``trainable_groups``), and the
groups a staged unfreeze adds at the start of its epoch under the scheduler's current factor
(``start_epoch``).

Like train/loop.py, the functions below ``Plan`` use torch, the standard library and
weights/stages.py and weights/matching.py (copied with them): the ejected program runs the
same statements. A frozen tensor gets no gradient and is in no optimizer group, so nothing
(weight decay, momentum) moves it; BatchNorm layers under a frozen path stay in eval mode, so
their running statistics stay as loaded.

    plan = Plan(["conv1", "conv2"], {"conv2": 3}, ["conv2"], [{"lr": 1e-4}], lr=1e-3)
    loop.frozen_norms = set_trainable(model, plan, 1)
    optimizer = torch.optim.Adam(trainable_groups(model, plan, 1), lr=1e-3)
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from netspec.weights.matching import COUNTER, renamed_key
from netspec.weights.stages import optimizer_groups, trains_from, under

ABSOLUTE_SCHEDULERS = ("OneCycleLR", "CyclicLR")  # they set each group's lr from their own arguments
SCHEDULE_KEYS = ("lr", "initial_lr", "max_lr", "min_lr", "max_momentum", "base_momentum")  # per group (OneCycleLR)
# torch schedulers' per-group lists (LRScheduler, ReduceLROnPlateau, CyclicLR)
SCHEDULE_LISTS = ("base_lrs", "_last_lr", "min_lrs", "max_lrs", "base_momentums", "max_momentums")


@dataclass
class Plan:
    """What trains when: frozen paths, the epoch each unfrozen path trains from, the
    `param_groups` paths with their optimizer settings, and the optimizer's own lr."""

    freeze: list[str] = field(default_factory=list)
    unfreeze: dict[str, int] = field(default_factory=dict)
    paths: list[str] = field(default_factory=list)
    options: list[dict[str, Any]] = field(default_factory=list)
    lr: float = 0.0

    def base_lr(self, group: int | None) -> float:
        """The learning rate a group has before any scheduler acts: its own, else the optimizer's."""
        return float(self.options[group].get("lr", self.lr)) if group is not None else self.lr


def load_pretrained(model: nn.Module, tensors: dict[str, torch.Tensor], rules: list, rename: list,
                    skip: list[str], allow_unused: bool = False) -> list[str]:
    """Copy the file's `tensors` into `model` under their renamed keys: every tensor of the model
    outside `skip` must come from the file with its shape, and every tensor of the file must be
    used unless `allow_unused` (else ValueError naming each one); step counters that old files
    lack are set to 0. Returns the keys left at initialisation."""
    own = model.state_dict()
    names = {renamed_key(key, rules, rename): key for key in tensors}
    state: dict[str, torch.Tensor] = {}
    kept: list[str] = []
    problems: list[str] = []
    if len(names) != len(tensors):
        problems.append("the renames map two tensors of the file onto one name")
    if not allow_unused:
        problems += [f"{key}: not used by the model" for name, key in names.items()
                     if name not in own and not any(under(name, path) for path in skip)]
    for name, value in own.items():
        if any(under(name, path) for path in skip):
            state[name] = value
            kept.append(name)
            continue
        key = names.get(name)
        if key is None and name.endswith("." + COUNTER) and name[: -len(COUNTER)] + "running_mean" in names:
            state[name] = torch.zeros_like(value)  # files saved before torch 0.4.1 have no step counter
        elif key is None:
            problems.append(f"{name}: missing from the file")
        elif tensors[key].shape != value.shape:
            problems.append(f"{name}: {list(tensors[key].shape)} in the file, {list(value.shape)} in the model")
        else:
            state[name] = tensors[key]
    if problems:
        raise ValueError("the weights do not fit the model: " + "; ".join(problems))
    model.load_state_dict(state, strict=True)
    return kept


def set_trainable(model: nn.Module, plan: Plan, epoch: int) -> list[nn.Module]:
    """`requires_grad` of every parameter as of `epoch`; returns the normalisation layers with
    running statistics that are frozen then (training keeps them in eval mode)."""
    for name, p in model.named_parameters():
        start = trains_from(name, plan.freeze, plan.unfreeze)
        p.requires_grad_(start is not None and start <= epoch)
    frozen: list[nn.Module] = []
    for name, module in model.named_modules():
        if isinstance(module, nn.modules.batchnorm._NormBase) and module.track_running_stats:
            start = trains_from(name, plan.freeze, plan.unfreeze)
            if start is None or start > epoch:
                frozen.append(module)
    return frozen


def trainable_groups(model: nn.Module, plan: Plan, epoch: int, first: int = 1) -> list[dict[str, Any]]:
    """The optimizer's parameter groups that join in epochs `first`..`epoch`, in the order the
    optimizer holds them, each with its `param_groups` settings."""
    params = dict(model.named_parameters())
    out = []
    for start, group, names in optimizer_groups(list(params), plan.freeze, plan.unfreeze, plan.paths):
        if first <= start <= epoch:
            out.append({"params": [params[n] for n in names], **(plan.options[group] if group is not None else {}),
                        "lr": plan.base_lr(group), "netspec_group": -1 if group is None else group})
    return out


def start_epoch(model: nn.Module, optimizer: Any, scheduler: Any, plan: Plan, epoch: int,
                scheduler_name: str | None) -> list[nn.Module] | None:
    """At the start of `epoch`: the paths unfrozen from this epoch on get gradients, leave eval
    mode and join the optimizer. A joining group takes the schedule where it stands: its own
    base lr times the factor the scheduler has reached (the first group's lr over its base
    lr); under OneCycleLR/CyclicLR, which set every group's lr themselves, the first group's
    settings. Returns the frozen normalisation layers from now on, or None when nothing
    changes at this epoch."""
    if epoch not in plan.unfreeze.values():
        return None
    frozen = set_trainable(model, plan, epoch)
    first = optimizer.param_groups[0]
    factor = float(first["lr"]) / plan.base_lr(_group_index(first)) if plan.base_lr(_group_index(first)) else 1.0
    for group in trainable_groups(model, plan, epoch, first=epoch):
        old = len(optimizer.param_groups)
        base = group["lr"]
        if scheduler_name in ABSOLUTE_SCHEDULERS:  # the schedule's own per-group settings, as the first group's
            cycles = "max_momentum" in first or getattr(scheduler, "cycle_momentum", False)
            group.update({k: v for k, v in first.items() if k in SCHEDULE_KEYS
                          or (cycles and k in ("momentum", "betas"))})
        else:
            group["lr"] = base * factor
            if "initial_lr" in first:
                group["initial_lr"] = base
        optimizer.add_param_group(group)
        if scheduler is not None:
            _extend_schedule(scheduler, old, base, group["lr"], scheduler_name in ABSOLUTE_SCHEDULERS)
    return frozen


def catch_up(model: nn.Module, optimizer: Any, scheduler: Any, plan: Plan, epochs_done: int,
             scheduler_name: str | None) -> list[nn.Module]:
    """The state after `epochs_done` epochs (for resuming): every stage up to then applied, so
    the optimizer has the groups the checkpoint saved. Returns the frozen normalisation layers."""
    frozen = set_trainable(model, plan, max(epochs_done, 1))
    for epoch in range(2, epochs_done + 1):
        now = start_epoch(model, optimizer, scheduler, plan, epoch, scheduler_name)
        frozen = now if now is not None else frozen
    return frozen


def _group_index(group: dict[str, Any]) -> int | None:
    index = group.get("netspec_group", -1)
    return None if index < 0 else index


def _extend_schedule(scheduler: Any, old: int, base: float, lr: float, absolute: bool) -> None:
    """A scheduler keeps some settings as one list entry per group: give the new group its own
    (its base lr, its current lr; the first group's for the rest)."""
    for name, value in vars(scheduler).items():
        if name not in SCHEDULE_LISTS or not isinstance(value, list) or len(value) != old:
            continue
        if name == "base_lrs" and not absolute:
            value.append(base)
        elif name == "_last_lr":
            value.append(lr)
        else:
            value.append(value[0])


# ---------------------------------------------------------------- netspec's side (not copied)


def read_tensors(path: Path) -> dict[str, torch.Tensor]:
    """The tensors of a weights file on the CPU: safetensors through its own reader, torch files
    through checkpoint.py (weights_only=True; a netspec checkpoint gives its model)."""
    from netspec.errors import error
    from netspec.train.checkpoint import load_state_dict_file

    if path.suffix == ".safetensors" or _is_safetensors(path):
        from safetensors import SafetensorError
        from safetensors.torch import load_file

        try:
            return load_file(str(path), device="cpu")
        except (SafetensorError, OSError, ValueError) as e:
            raise error(f"{path}: not a readable safetensors file ({str(e).splitlines()[0]})") from None
    return load_state_dict_file(path)


def _is_safetensors(path: Path) -> bool:
    with open(path, "rb") as f:
        head = f.read(9)
    return len(head) == 9 and head[8:9] == b"{"


def plan_of(train: Any) -> Plan | None:
    """The Plan of a checked train config (ir.TrainConfig); None when every parameter trains
    in the optimizer's one group (the plain run)."""
    from netspec.builder import optimizer_lr

    if not train.freeze and not train.param_groups:
        return None
    return Plan([p.path for p in train.freeze], {u.path.path: u.epoch for u in train.unfreeze},
                [g.path.path for g in train.param_groups], [dict(g.options) for g in train.param_groups],
                optimizer_lr(train.optimizer))


def weights_path(weights: Any, tell: Any = None) -> tuple[Path, tuple, str]:
    """(the file to read, the key map's rules, how to name it) for a checked `weights` config:
    a run folder's model.pt; torchvision's file from `file=` or the verified cache (downloaded
    unless NETSPEC_OFFLINE=1)."""
    from netspec.weights import files, zoo

    source = weights.source
    if source.kind == "file":
        path = files.locate(source.path)
        return path, (), str(path)
    row = zoo.ZOO[source.zoo]
    if source.path is not None:
        path = files.locate(source.path)
        published = path.stat().st_size == row.size and zoo.sha256_file(path) == row.sha256
        return path, row.rules, f'{path} (torchvision("{row.name}") ' + \
            ("published weights, SHA-256 verified)" if published else "layout; not the published file)")
    path = zoo.cached_file(row, tell)
    return path, row.rules, f'{path} (torchvision("{row.name}") {row.weights}, SHA-256 verified)'


def pretrained(model: nn.Module, weights: Any, span: Any, tell: Any = None) -> list[str]:
    """Load `weights` (a checked weights config) into `model`, after matching the file's tensors
    against the model's by name, shape and kind (a NetspecError at `span` listing every
    mismatch); the load report's lines."""
    from netspec.errors import Diagnostic, NetspecError
    from netspec.weights import matching
    from netspec.weights.files import TensorInfo

    path, rules, shown = weights_path(weights, tell)
    tensors = read_tensors(path)

    def info(t: torch.Tensor) -> TensorInfo:
        return TensorInfo(tuple(t.shape), str(t.dtype).removeprefix("torch."))

    file_info = {k: info(v) for k, v in tensors.items()}
    model_info = {k: info(v) for k, v in model.state_dict().items()}
    skip = [p.path for p in weights.skip]
    m = matching.match(file_info, model_info, rules, weights.rename, skip)
    if not m.fits(weights.allow_unused):
        lines = matching.describe(m, file_info, model_info, weights.allow_unused)
        raise NetspecError(Diagnostic(f"the weights in {shown} do not fit the model:\n"
                                      + "\n".join(f"    {line}" for line in lines), span, "error",
                                      matching.advice(m, weights.allow_unused)))
    load_pretrained(model, tensors, list(rules), list(weights.rename), skip, weights.allow_unused)
    return load_report(m, shown, len(model_info))


def load_report(m: Any, shown: str, total: int) -> list[str]:
    def names(keys: list[str], limit: int = 6) -> str:
        return ", ".join(keys[:limit]) + (f" and {len(keys) - limit} more" if len(keys) > limit else "")

    out = [f"weights: {len(m.loaded)} of {total} tensors loaded from {shown}"]
    if m.kept:
        layers = list(dict.fromkeys(k.rsplit(".", 1)[0] for k in m.kept))
        out.append(f"  left at their initialisation (skip): {names(layers)} ({len(m.kept)} tensors)"
                   + (f"; the file's {len(m.skipped)} tensors for them not loaded" if m.skipped else ""))
    if m.counters:
        out.append(f"  not in the file, set to 0: num_batches_tracked of {len(m.counters)} BatchNorm layers "
                   "(older files lack it; it only counts steps)")
    if m.unused:
        out.append(f"  in the file, not used (allow_unused): {names(m.unused)}")
    if m.converted:
        kinds = sorted({d for _, d in m.converted})
        out.append(f"  converted to the model's float32: {len(m.converted)} tensors of {', '.join(kinds)}")
    return out


def plan_report(model: nn.Module, plan: Plan, optimizer: str, epochs: int) -> list[str]:
    """Which layers are frozen (until when) and the optimizer's groups with their parameter counts."""
    params = dict(model.named_parameters())
    out = []
    if plan.freeze:
        parts = []
        for path in plan.freeze:
            starts: dict[int | None, int] = {}
            for n, p in params.items():
                if under(n, path):
                    start = trains_from(n, plan.freeze, plan.unfreeze)
                    starts[start] = starts.get(start, 0) + p.numel()
            total = sum(starts.values())
            if set(starts) == {None}:
                parts.append(f"{path} ({total:,} parameters, for the whole run)")
                continue
            if None not in starts and len(starts) == 1:
                parts.append(f"{path} ({total:,} parameters, until epoch {next(iter(starts))})")
                continue
            stages = [f"{u} trains from epoch {e}" for u, e in plan.unfreeze.items() if under(u, path)
                      or under(path, u)]
            rest = f", {starts[None]:,} parameters stay frozen" if None in starts else ""
            parts.append(f"{path} ({total:,} parameters; {', '.join(stages)}{rest})")
        out.append("frozen: " + "; ".join(parts))
    out.append("optimizer groups:")
    for i, (start, group, names) in enumerate(optimizer_groups(list(params), plan.freeze, plan.unfreeze,
                                                                 plan.paths), 1):
        count = sum(params[n].numel() for n in names)
        settings = ", ".join(f"{k}={v}" for k, v in plan.options[group].items()) if group is not None else ""
        label = f"{plan.paths[group]} ({settings or 'the optimizer’s settings'})" if group is not None \
            else f"the rest ({optimizer}, lr={plan.lr:g})"
        out.append(f"  {i}. {label}: {count:,} parameters" + (f", from epoch {start}" if start > 1 else ""))
    frozen_for_good = sum(p.numel() for n, p in params.items() if trains_from(n, plan.freeze, plan.unfreeze) is None)
    if frozen_for_good:
        out.append(f"  not trained: {frozen_for_good:,} parameters (frozen for all {epochs} epochs)")
    return out
