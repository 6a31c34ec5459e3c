"""The training loop: what `netspec train` runs, and what `netspec eject` copies into its program.

In: a ``Loop`` (the model and the module that runs it forward, the loss, optimizer, scheduler,
GradScaler, input transform and augmenter, and the settings that decide how a step computes)
and batches of raw samples on the device. Out: trained weights, one row of metrics per epoch,
and the run's best epoch (``RunState``).

This module imports torch and the standard library only, because `netspec eject` copies its
source into the ejected program (tools/eject, ``copied_source``): netspec and the program run
these statements in this order, so they end with `torch.equal` weights. What only netspec
does comes in as arguments: the batches (DDP shards them), ``after_step`` (progress bar,
TensorBoard, orphan check), ``end_of_epoch`` (checkpoint, report). Failures are raised as
``NonFiniteLoss``, ``StepFailed`` and ``NotReported`` for the caller to word. The copy must
stay ruff-clean under the program's rules (tests/test_eject.py: E, F, W, I, B, UP; no
lambda assignments, no closures over loop variables).

    loop = Loop(model, loss_fn, transform, device, optimizer=optimizer, seed=0)
    fit(loop, RunState(), epochs, train=lambda epoch: train_epoch(loop, batches(epoch), epoch, metrics()),
        validate=None, monitor=Monitor("loss"), end_of_epoch=report)
"""

from __future__ import annotations

import contextlib
import math
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, NamedTuple

import torch
from torch import nn


class NonFiniteLoss(ArithmeticError):
    """The loss became NaN or infinite at (epoch, step); `value` is nan where a running flag saw it."""

    def __init__(self, epoch: int, step: int, value: float) -> None:
        super().__init__(f"loss became {value} at epoch {epoch}, step {step}; training stopped")
        self.epoch, self.step, self.value = epoch, step, value


class StepFailed(RuntimeError):
    """torch refused a training step (a shape or dtype it cannot take): where, and the tensors."""

    def __init__(self, epoch: int, step: int, x: torch.Tensor, y: torch.Tensor, reason: str) -> None:
        super().__init__(f"training step failed at epoch {epoch}, step {step}: {reason}")
        self.epoch, self.step, self.reason = epoch, step, reason
        self.inputs, self.targets = f"{list(x.shape)} {x.dtype}", f"{list(y.shape)} {y.dtype}"


class NotReported(LookupError):
    """The monitored value is missing from an epoch's row (a metric with nothing to measure)."""

    def __init__(self, key: str, row: dict[str, Any]) -> None:
        super().__init__(f"`{key}` is not reported")
        self.key, self.row = key, row


@dataclass
class Loop:
    """What a training step uses. `net` runs forward (the model itself, or the model wrapped by
    torch.compile or DDP); `model` holds the parameters that are clipped, penalised and saved."""

    model: nn.Module
    loss_fn: nn.Module
    transform: nn.Module  # raw model units -> the model's input (layers.InputTransform)
    device: torch.device
    optimizer: Any = None  # a torch.optim optimizer; None: evaluation only
    scheduler: Any = None
    scaler: Any = None  # torch.amp.GradScaler under fp16
    augment: Any = None  # (x, seed, epoch, step, offset, total) -> x: data.augment.Augmenter
    net: nn.Module | None = None  # default: model
    seed: int = 0
    scale: float = 1.0  # raw uint8 images are divided by this
    tokens: bool = False  # inputs are token ids
    autocast_dtype: torch.dtype | None = None  # bf16/fp16 autocast; None: fp32
    channels_last: bool = False
    l1: float | None = None
    clip_grad_norm: float | None = None
    closure: bool = False  # the optimizer re-evaluates the loss (LBFGS)
    reduction: str = "mean"  # the loss's: a mean loss counts len(batch) samples
    interval: str | None = None  # when the scheduler steps: "batch", "epoch", "plateau"
    target: Any = None  # normalize_target (layers.TargetScale): .normalize(y) for the loss; (out) -> target units
    check_every: int = 1  # steps between host reads of the non-finite flag
    weights: list[torch.Tensor] = field(init=False)  # the L1 penalty's

    def __post_init__(self) -> None:
        self.weights = weight_params(self.model)

    @property
    def forward_module(self) -> nn.Module:
        return self.net if self.net is not None else self.model


class Batch(NamedTuple):
    """Raw samples of one step on the device: rows [offset, offset + len(x)) of a batch of
    `total` (a DDP process's share; the augmentation draws for the whole batch), and the loss
    scale that makes DDP's averaged gradient the single-process one."""

    x: torch.Tensor
    y: torch.Tensor | None
    offset: int = 0
    total: int | None = None
    scale: float = 1.0


@dataclass
class RunState:
    """Where a run stands: epochs completed, their rows, the best epoch and its weights."""

    epoch: int = 0
    history: list[dict] = field(default_factory=list)
    best_value: float | None = None
    best_epoch: int = 0
    bad_epochs: int = 0  # epochs in a row that did not improve
    best_weights: dict[str, torch.Tensor] | None = None


@dataclass(frozen=True)
class Monitor:
    """The value that picks the best epoch, and early stopping's rule (patience None: none)."""

    key: str = "loss"
    minimize: bool = True
    min_delta: float = 0.0
    patience: int | None = None


def weight_params(model: nn.Module) -> list[torch.Tensor]:
    return [p for name, p in model.named_parameters() if name.rsplit(".", 1)[-1].startswith("weight")]


def epoch_order(n: int, seed: int, epoch: int, shuffle: bool) -> torch.Tensor:
    """The sample order of one epoch: a function of (seed, epoch) only, so a resumed run repeats it."""
    if not shuffle:
        return torch.arange(n)
    return torch.randperm(n, generator=torch.Generator().manual_seed(seed * 1_000_003 + epoch))


def trim_padding(ids: torch.Tensor) -> torch.Tensor:
    """A batch of right-padded token ids (0 = padding) cut to its longest text (at least one step)."""
    width = int((ids != 0).sum(dim=1).max()) if ids.numel() else 0
    return ids[:, : max(width, 1)]


def length_buckets(order: torch.Tensor, lengths: torch.Tensor, batch_size: int, seed: int, epoch: int,
                   pool: int = 50) -> list[torch.Tensor]:
    """One epoch's batches of texts of similar length: the epoch's order cut into pools of
    `pool` batches, each pool sorted by length (stable) and cut into batches, then the batches
    shuffled. A function of (order, seed, epoch) only, so a resumed run repeats it."""
    batches = []
    for start in range(0, len(order), pool * batch_size):
        chunk = order[start:start + pool * batch_size]
        chunk = chunk[torch.argsort(lengths[chunk], stable=True)]
        batches += list(chunk.split(batch_size))
    generator = torch.Generator().manual_seed(seed * 1_000_003 + epoch + 500_009)
    return [batches[i] for i in torch.randperm(len(batches), generator=generator).tolist()]


def to_units(x: torch.Tensor, scale: float, tokens: bool) -> torch.Tensor:
    """Raw samples -> model units: uint8 images / scale, token ids int64, numbers float32."""
    if tokens:
        return x.long()
    if x.dtype == torch.uint8:
        return x.to(torch.float32) / scale
    return x.to(torch.float32)


def mixed_precision(precision: str, device: torch.device) -> tuple[torch.dtype | None, Any]:
    """(autocast dtype, GradScaler) of `precision: fp32 | bf16 | fp16`."""
    if precision == "fp32":
        return None, None
    dtype = torch.bfloat16 if precision == "bf16" else torch.float16
    return dtype, torch.amp.GradScaler(device.type) if precision == "fp16" else None


def autocast(loop: Loop) -> Any:
    if loop.autocast_dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(loop.device.type, dtype=loop.autocast_dtype)


def forward_loss(loop: Loop, x: torch.Tensor, y: torch.Tensor, scale: float = 1.0
                 ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(loss to backpropagate: the data loss times `scale`, plus L1; output; data loss for reporting)."""
    with autocast(loop):
        out = loop.forward_module(x)
    out = out.float()
    data_loss = loop.loss_fn(out, y if loop.target is None else loop.target.normalize(y))
    loss = data_loss * scale if scale != 1.0 else data_loss
    if loop.l1:
        loss = loss + loop.l1 * sum(w.abs().sum() for w in loop.weights)
    return loss, out, data_loss.detach()


def optimizer_step(loop: Loop, x: torch.Tensor, y: torch.Tensor, scale: float = 1.0,
                   forward: Callable[..., tuple[torch.Tensor, torch.Tensor, torch.Tensor]] | None = None
                   ) -> tuple[torch.Tensor, torch.Tensor]:
    """One optimizer step on one batch: (output, data loss), detached. `forward` replaces
    forward_loss(loop, ...) where the caller brings its own."""

    def losses() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        return forward(x, y, scale) if forward is not None else forward_loss(loop, x, y, scale)

    optimizer = loop.optimizer
    if loop.closure:  # LBFGS re-evaluates the loss
        holder: dict[str, torch.Tensor] = {}

        def closure() -> torch.Tensor:
            optimizer.zero_grad(set_to_none=True)
            loss, out, data_loss = losses()
            loss.backward()
            holder["out"], holder["loss"] = out.detach(), data_loss
            return loss

        optimizer.step(closure)
        return holder["out"], holder["loss"]
    optimizer.zero_grad(set_to_none=True)
    loss, out, data_loss = losses()
    if loop.scaler is not None:
        loop.scaler.scale(loss).backward()
        if loop.clip_grad_norm:
            loop.scaler.unscale_(optimizer)
            nn.utils.clip_grad_norm_(loop.model.parameters(), loop.clip_grad_norm)
        loop.scaler.step(optimizer)
        loop.scaler.update()
    else:
        loss.backward()
        if loop.clip_grad_norm:
            nn.utils.clip_grad_norm_(loop.model.parameters(), loop.clip_grad_norm)
        optimizer.step()
    return out.detach(), data_loss


def train_epoch(loop: Loop, batches: Iterable[Batch], epoch: int, metrics: Any,
                after_step: Callable[[int, Batch, torch.Tensor], None] | None = None,
                step: Callable[..., tuple[torch.Tensor, torch.Tensor]] | None = None) -> dict[str, float]:
    """One epoch: per batch, raw -> model units -> augmentation (seeded by seed, epoch, step)
    -> transform -> one optimizer step (`step`, default optimizer_step) -> metrics, then a
    per-batch scheduler step and `after_step(step, batch, data loss)`. Nothing is read back
    to the host except the non-finite flag every `loop.check_every` steps. Returns
    `metrics.result()` (summed over DDP processes)."""
    loop.forward_module.train()
    bad_step = torch.full((), -1, dtype=torch.long, device=loop.device)
    for i, batch in enumerate(batches, start=1):
        x = to_units(batch.x, loop.scale, loop.tokens)
        if loop.augment is not None:
            x = loop.augment(x, loop.seed, epoch, i, offset=batch.offset, total=batch.total)
        x = loop.transform(x)
        if loop.channels_last and x.dim() == 4:
            x = x.contiguous(memory_format=torch.channels_last)
        y = x.detach() if batch.y is None else batch.y
        try:
            out, data_loss = step(x, y, batch.scale) if step is not None else optimizer_step(loop, x, y, batch.scale)
        except (RuntimeError, ValueError) as e:  # torch's shape/dtype complaints, with where they happened
            raise StepFailed(epoch, i, x, y, str(e).splitlines()[0]) from e
        shown = out if loop.target is None else loop.target(out)  # metrics in the target's units
        metrics.update(shown, y, data_loss * len(batch.x) if loop.reduction == "mean" else data_loss)
        finite = torch.isfinite(data_loss)
        if loop.check_every == 1:
            if not bool(finite):
                raise NonFiniteLoss(epoch, i, float(data_loss))
        else:
            bad_step = torch.where((bad_step < 0) & ~finite, torch.tensor(i, device=loop.device), bad_step)
            if i % loop.check_every == 0 and int(bad_step) >= 0:
                raise NonFiniteLoss(epoch, int(bad_step), float("nan"))
        if loop.interval == "batch":
            loop.scheduler.step()
        if after_step is not None:
            after_step(i, batch, data_loss)
    if int(bad_step) >= 0:
        raise NonFiniteLoss(epoch, int(bad_step), float("nan"))
    metrics.reduce()
    return metrics.result()


@torch.inference_mode()
def evaluate(loop: Loop, batches: Iterable[tuple[torch.Tensor, torch.Tensor | None]], metrics: Any,
             model: nn.Module | None = None) -> dict[str, float]:
    """`metrics.result()` of `model` (default loop.model) over raw batches, in eval mode."""
    net = model if model is not None else loop.model
    was = net.training
    net.eval()
    for xb, yb in batches:
        x = loop.transform(to_units(xb, loop.scale, loop.tokens))
        y = x if yb is None else yb
        with autocast(loop):
            out = net(x)
        out = out.float()
        if loop.target is None:
            loss = loop.loss_fn(out, y)
        else:  # the loss as training sees it, the metrics in the target's units
            loss = loop.loss_fn(out, loop.target.normalize(y))
            out = loop.target(out)
        metrics.update(out, y, loss * len(x) if loop.reduction == "mean" else loss)
    net.train(was)
    metrics.reduce()
    return metrics.result()


def improved(value: float, best: float | None, monitor: Monitor) -> bool:
    if best is None or not math.isfinite(best):
        return math.isfinite(value)
    return value < best - monitor.min_delta if monitor.minimize else value > best + monitor.min_delta


def out_of_patience(bad_epochs: int, patience: int | None) -> bool:
    """Stop at an epoch that did not improve, once `patience` such epochs ran in a row
    (Keras' and Lightning's rule: patience 0 and 1 both stop at the first one)."""
    return patience is not None and bad_epochs > 0 and bad_epochs >= patience


def end_epoch(loop: Loop, state: RunState, row: dict[str, Any], monitor: Monitor) -> bool:
    """After an epoch's row is complete: step an epoch or plateau scheduler, record the row,
    keep the best epoch's weights. Whether early stopping ends the run here."""
    if loop.interval == "epoch":
        loop.scheduler.step()
    elif loop.interval == "plateau":
        loop.scheduler.step(row.get("val_loss", row["loss"]))
    if monitor.key not in row:
        raise NotReported(monitor.key, row)
    value = row[monitor.key]
    state.epoch = row["epoch"]
    state.history.append(row)
    if improved(value, state.best_value, monitor):
        state.best_value, state.best_epoch, state.bad_epochs = value, row["epoch"], 0
        state.best_weights = {k: v.detach().clone() for k, v in loop.model.state_dict().items()}
    else:
        state.bad_epochs += 1
    return out_of_patience(state.bad_epochs, monitor.patience)


def fit(loop: Loop, state: RunState, epochs: int, train: Callable[[int], dict[str, float]],
        validate: Callable[[], dict[str, float]] | None, monitor: Monitor,
        end_of_epoch: Callable[[dict[str, Any], bool], None], samples: int | None = None) -> bool:
    """Epochs state.epoch + 1 .. epochs: `train(epoch)`, `validate()`, end_epoch, then
    `end_of_epoch(row, stop)` (checkpoint, report). A row: epoch, the training metrics, val_
    metrics, lr, seconds (of training), and samples_per_s where `samples` is given. True when
    early stopping ended the run."""
    while state.epoch < epochs:
        epoch = state.epoch + 1
        start = time.perf_counter()
        lr = loop.optimizer.param_groups[0]["lr"]
        trained = train(epoch)
        seconds = time.perf_counter() - start
        row: dict[str, Any] = {"epoch": epoch, **trained}
        if validate is not None:
            row.update({f"val_{k}": v for k, v in validate().items()})
        row.update({"lr": lr, "seconds": seconds})
        if samples is not None:
            row["samples_per_s"] = samples / max(seconds, 1e-9)
        stop = end_epoch(loop, state, row, monitor)
        end_of_epoch(row, stop)
        if stop:
            return True
    return False


def checkpoint_state(loop: Loop, state: RunState, rng: torch.Tensor) -> dict[str, Any]:
    """What resuming needs (restore reads it back); `rng` is torch's CPU generator state."""
    return {
        "model": loop.model.state_dict(),
        "optimizer": loop.optimizer.state_dict(),
        "scheduler": loop.scheduler.state_dict() if loop.scheduler is not None else None,
        "scaler": loop.scaler.state_dict() if loop.scaler is not None else None,
        "epoch": state.epoch,
        "rng": rng,
        "history": state.history,
        "best_value": state.best_value,
        "best_epoch": state.best_epoch,
        "bad_epochs": state.bad_epochs,
        "best_weights": state.best_weights,
    }


def restore(loop: Loop, ckpt: dict[str, Any], scheduler: bool = True) -> RunState:
    """Load a checkpoint_state into the loop's model, optimizer, scheduler (where `scheduler`)
    and GradScaler; its RunState. The caller sets the random state."""
    loop.model.load_state_dict(ckpt["model"])
    loop.optimizer.load_state_dict(ckpt["optimizer"])
    if scheduler and loop.scheduler is not None and ckpt.get("scheduler") is not None:
        loop.scheduler.load_state_dict(ckpt["scheduler"])
    if loop.scaler is not None and ckpt.get("scaler"):
        loop.scaler.load_state_dict(ckpt["scaler"])
    return RunState(ckpt["epoch"], list(ckpt["history"]), ckpt["best_value"], ckpt["best_epoch"], ckpt["bad_epochs"],
                    ckpt.get("best_weights"))
