"""What is checked before training starts (`netspec train` and `netspec eject`).

In: a checked spec (and its prepared data). Out: nothing, or a NetspecError at a spec
position: the device exists (and a GPU per process under `--nproc`), a last batch of one
sample under BatchNorm, an early-stopping monitor the run never reports, and torch's own
refusal of the loss, optimizer and scheduler arguments together (torch is the oracle). Also
the run's facts derived from the spec: ``batch_size_of``, ``monitor_of``, ``select_device``.

    check_before_training(checked, prepare(checked))
"""

from __future__ import annotations

import math

import torch
from torch import nn

from netspec import catalogue as cat
from netspec import ir
from netspec.builder import build_loss, build_optimizer, build_scheduler
from netspec.data.prepare import Prepared
from netspec.errors import NetspecError, error
from netspec.train.distributed import Dist
from netspec.train.metrics import lower_is_better, metric_key
from netspec.util import count


def select_device(name: str, dist: Dist | None = None) -> torch.device:
    local = dist.local_rank if dist is not None and dist.enabled else None
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda", local or 0) if local is not None else torch.device("cuda")
        if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available() and local is None:
            return torch.device("mps")
        return torch.device("cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise error(f"device `{name}` requested but CUDA is not available", "use device: auto or cpu")
    if name == "mps" and not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
        raise error("device `mps` requested but MPS is not available", "use device: auto or cpu")
    if name == "cuda" and local is not None:
        return torch.device("cuda", local)
    return torch.device(name)


def check_launch(checked: ir.CheckedSpec, nproc: int) -> None:
    """`--nproc N` on this machine: the device exists, and a GPU for each process."""
    device = select_device(checked.train.device)
    gpus = torch.cuda.device_count() if device.type == "cuda" else 0
    if device.type == "cuda" and nproc > gpus:
        raise error(f"--nproc {nproc}: this machine has {gpus} GPU(s); one process per GPU",
                    f"use --nproc {gpus}, or device: cpu for processes on the CPU")
    if device.type == "mps" and nproc > 1:
        raise error("--nproc: PyTorch's distributed training does not run on MPS", "use device: cpu with --nproc")


def batch_size_of(checked: ir.CheckedSpec, data: Prepared) -> int:
    n = len(data.train)
    if checked.data is not None and checked.data.batch_size is None:
        return n
    return min(checked.data.batch_size if checked.data and checked.data.batch_size else 32, n)


def monitor_of(checked: ir.CheckedSpec, has_val: bool) -> tuple[str, bool]:
    """(the value that picks the best epoch and drives early stopping, whether lower is better)."""
    es = checked.train.early_stopping
    monitor = str(es.get("monitor", "val_loss")) if es else ("val_loss" if has_val else "loss")
    mode = str(es.get("mode", "auto")) if es else "auto"
    return monitor, lower_is_better(monitor) if mode == "auto" else mode == "min"


def check_before_training(checked: ir.CheckedSpec, data: Prepared) -> None:
    """What would stop a run after its first epoch, found before it starts (train and eject):
    a last batch of one sample under BatchNorm, and an early-stopping monitor that the run
    never reports."""
    n, b = len(data.train), batch_size_of(checked, data)
    if (b == 1 or n % b == 1) and any(layer.type.startswith("BatchNorm") for layer in ir.layers(checked.model.root)):
        # BatchNorm cannot train on one sample (under DDP only a global batch of one matters)
        spec_data = checked.data
        where = spec_data.span if spec_data is not None else ir.NO_SPAN
        if b == 1:
            raise NetspecError.at(where, f"every batch would hold 1 sample ({n:,} training samples), and BatchNorm "
                                  "cannot train on one sample", "set batch_size to 2 or more" if n > 1 else
                                  "train on more than one sample")
        raise NetspecError.at(where, f"the last batch of each epoch would hold 1 sample ({n:,} training samples in "
                              f"batches of {b}), and BatchNorm cannot train on one sample",
                              f"choose a batch_size that leaves a larger last batch (e.g. {b + 1}), or change "
                              "`subset`/`validation` by a sample")
    check_torch_accepts(checked, math.ceil(n / b))
    es = checked.train.early_stopping
    if es is None:
        return
    has_val = data.val is not None
    monitor = monitor_of(checked, has_val)[0]
    if monitor.startswith("val_") and not has_val:
        raise NetspecError.at(es.span, f"early stopping monitors `{monitor}` but there is no validation data",
                              "add `validation: 0.1` to the data section, or monitor `loss`")
    keys = ["loss", *(metric_key(m) for m in checked.train.metrics)]
    reported = keys + ([f"val_{k}" for k in keys] if has_val else [])
    if monitor not in reported:
        from netspec.errors import did_you_mean

        raise NetspecError.at(es.span, f"early stopping monitors `{monitor}`, which this run does not report",
                              did_you_mean(monitor, reported) or "reported: " + ", ".join(reported))


def check_torch_accepts(checked: ir.CheckedSpec, steps_per_epoch: int) -> None:
    """torch as the oracle for what the catalogue checks one argument at a time: the loss,
    the optimizer (built and stepped once on a stand-in parameter) and the scheduler (built,
    and OneCycleLR's fixed length against the run's steps) accept these arguments together."""
    cfg = checked.train
    loss_kwargs = dict(cfg.loss.kwargs)
    if loss_kwargs.get("reduction") == "none":
        raise NetspecError.at(cfg.loss.span or cfg.span, f'{cfg.loss.name}(reduction="none") gives one loss per '
                              "value; training needs one number", 'use reduction="mean" (the default) or "sum"')
    what = cfg.loss
    try:
        build_loss(cfg.loss)
        what = cfg.optimizer
        stand_in = nn.Parameter(torch.ones(3))
        optimizer = build_optimizer(cfg.optimizer, [stand_in])

        def closure() -> torch.Tensor:
            optimizer.zero_grad()
            loss = (stand_in ** 2).sum()
            loss.backward()
            return loss

        closure()
        if cat.OPTIMIZERS[cfg.optimizer.name].closure:
            optimizer.step(closure)  # type: ignore[arg-type]
        else:
            optimizer.step()
        if cfg.scheduler is not None:
            what = cfg.scheduler
            build_scheduler(cfg.scheduler, optimizer, cfg.epochs, steps_per_epoch)
    except (ValueError, TypeError, RuntimeError, KeyError, IndexError, ZeroDivisionError) as e:
        first = str(e).splitlines()[0][:200] if str(e) else type(e).__name__
        raise NetspecError.at(what.span or cfg.span, f"{what.name}: torch refuses these arguments ({first})",
                              f"see torch's documentation of {what.name} for the arguments it takes") from None
    total = dict(cfg.scheduler.kwargs).get("total_steps") if cfg.scheduler is not None else None
    if cfg.scheduler is not None and cfg.scheduler.name == "OneCycleLR" and total is not None \
            and int(total) < cfg.epochs * steps_per_epoch:
        raise NetspecError.at(cfg.scheduler.span, f"OneCycleLR(total_steps={total}) ends before the run: "
                              f"{count(cfg.epochs, 'epoch')} of {count(steps_per_epoch, 'step')} are "
                              f"{count(cfg.epochs * steps_per_epoch, 'step')}",
                              "leave total_steps out (netspec fills in epochs x steps per epoch), or raise it")


def patience_of(es: ir.CallValue | None) -> int | None:
    """EarlyStopping's patience (default 3); None without early stopping."""
    return int(es.get("patience", 3)) if es is not None else None


def patience_ran_out(bad_epochs: int, es: ir.CallValue) -> bool:
    """Stop at an epoch that did not improve, once `patience` such epochs ran in a row
    (Keras' and Lightning's rule: patience 0 and 1 both stop at the first one)."""
    from netspec.train.loop import out_of_patience

    return out_of_patience(bad_epochs, patience_of(es))
