"""`netspec train` and `netspec eval`: the training loop and its run folder.

In: a spec path (+ `--set` overrides). Out: a run folder (``runs/<model>/`` unless --out):
run.json, spec.net (resolved, self-contained), model.pt (state_dict of the best or last
epoch), checkpoint.pt (model, optimizer, scheduler, epoch, RNG states, history, spec
view, preprocessing), metrics.csv, curves.png, summary.txt, and for classifiers
confusion.csv / confusion.png; tensorboard/ with `log: [tensorboard]`. Every write is
atomic; model.pt, checkpoint.pt and metrics.csv always describe the same epoch.

One step: raw batch (uint8 images or numbers, on the device) -> model units -> training
augmentation (seeded by seed, epoch, step) -> InputTransform (normalise, reshape: the
same module the ONNX graph starts with) -> model -> loss. Nothing reads a value back to
the host inside an epoch on an accelerator (the loss, metrics and a non-finite check are
running tensors), except the progress bar's few refreshes a second. The sample order of
an epoch is a function of (seed, epoch), so `--resume` repeats it; under DDP every
process walks the same global batches and takes its share (distributed.shard).

    netspec train examples/mnist_mlp.net --epochs 1
    netspec train examples/mnist_mlp.net --resume --set train.epochs=3
    netspec train examples/mnist_mlp.net --nproc 2        # DDP, gloo on CPU
"""

from __future__ import annotations

import copy
import csv
import io
import json
import math
import os
import sys
import time
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from netspec import __version__, ir, load
from netspec import catalogue as cat
from netspec.builder import build_loss, build_model, build_optimizer, build_scheduler
from netspec.data.loader import Loader, to_units
from netspec.data.prepare import Prepared, Preprocessing, evaluation_split, prepare
from netspec.errors import Diagnostic, NetspecError, error
from netspec.layers import InputTransform
from netspec.syntax.format import unparse
from netspec.train.distributed import Dist, contiguous_shard, from_environment, shard, sync_batchnorm
from netspec.train.metrics import MetricState, lower_is_better, metric_key
from netspec.train.resources import ensure_fits
from netspec.train.runs import RunDir, read_run_json, resolved_spec_text
from netspec.util import atomic_write, atomic_write_many, atomic_write_text, sha256_text

RESUMABLE_CHANGES = ("train.epochs", "train.optimizer.lr", "train.scheduler", "train.checkpoint_every",
                     "train.device", "train.early_stopping", "train.log", "train.log_every", "train.precision")
EVAL_BATCH = 2048
NONFINITE_CHECK_EVERY = 50  # steps between host reads of the non-finite flag on accelerators
NONFINITE_CHECK_CPU = 1  # on the CPU reading it costs nothing


class TrainingError(NetspecError):
    pass


# ---------------------------------------------------------------- small helpers


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


def epoch_order(n: int, seed: int, epoch: int, shuffle: bool) -> np.ndarray:
    """The sample order of one epoch: a function of (seed, epoch) only, so resume repeats it."""
    if not shuffle:
        return np.arange(n)
    g = torch.Generator().manual_seed(seed * 1_000_003 + epoch)
    return torch.randperm(n, generator=g).numpy()


def weight_params(model: nn.Module) -> list[torch.Tensor]:
    return [p for name, p in model.named_parameters() if name.rsplit(".", 1)[-1].startswith("weight")]


def spec_view(spec: ir.Spec) -> dict[str, str]:
    """Flat `key -> source` view of a spec, for resume diffs."""
    from netspec.syntax.expr import source

    view: dict[str, str] = {}
    for item in spec.items:
        if isinstance(item, ir.Let):
            view[f"let {item.name}"] = source(item.value)
        elif isinstance(item, (ir.Model, ir.Block)):
            view[f"{type(item).__name__.lower()} {item.name}"] = unparse(ir.Spec(spec.file, (item,)))
        elif isinstance(item, ir.Section):
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
        with open(tmp, "w", encoding="utf-8") as f:
            f.write(text)

    return write


def torch_writer(obj: object):
    """A writer for util.atomic_write(_many): torch.save to the temp path. torch reports a
    failed write (a full disk) as RuntimeError; it becomes the OSError it is."""

    def write(tmp: str) -> None:
        try:
            torch.save(obj, tmp)
        except RuntimeError as e:
            import errno
            import shutil

            free = shutil.disk_usage(os.path.dirname(tmp) or ".").free
            if "write" in str(e).lower() and free < 64 << 20:
                raise OSError(errno.ENOSPC, "No space left on device", tmp) from None
            raise OSError(errno.EIO, f"torch.save failed: {str(e).splitlines()[0]}", tmp) from None

    return write


def save_torch(obj: object, path: Path) -> None:
    atomic_write(path, torch_writer(obj))


def load_torch(path: Path, what: str = "weights/checkpoint") -> Any:
    """torch.load with weights_only=True (never unpickles code), errors as user errors."""
    from netspec.util import open_regular

    try:
        with open_regular(path, what=what) as f:
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
    ckpt = load_torch(path, "checkpoint")
    if not isinstance(ckpt, dict) or ckpt.get("format") != "netspec-checkpoint-1":
        raise error(f"{path}: not a netspec checkpoint", "it must be the checkpoint.pt that netspec train wrote")
    missing = [k for k in CHECKPOINT_KEYS if k not in ckpt]
    if missing:
        raise error(f"{path}: damaged netspec checkpoint (missing {', '.join(missing)})",
                    "train again without --resume")
    if not isinstance(ckpt["history"], list) or not isinstance(ckpt["epoch"], int) or \
            not isinstance(ckpt["model"], dict) or not isinstance(ckpt["spec_view"], dict):
        raise error(f"{path}: damaged netspec checkpoint (fields of the wrong type)", "train again without --resume")
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
    """model.pt: a state_dict (names -> tensors)."""
    state = load_torch(path, "weights")
    if isinstance(state, dict) and state.get("format") == "netspec-checkpoint-1" and isinstance(state.get("model"), dict):
        state = state["model"]  # a checkpoint given as weights: use its model
    if not isinstance(state, dict) or not all(isinstance(k, str) and isinstance(v, torch.Tensor)
                                               for k, v in state.items()):
        kind = type(state).__name__
        raise error(f"{path}: not a weights file (a state_dict mapping names to tensors); it holds a {kind}",
                    "use the model.pt that netspec train wrote")
    return state


def default_run_dir(checked: ir.CheckedSpec) -> Path:
    return Path("runs") / checked.model.name


def build_transform(pre: Preprocessing) -> InputTransform:
    return InputTransform(pre.shift, pre.div, pre.axis, pre.source_shape, pre.input_shape, pre.tokens)


# ---------------------------------------------------------------- progress


class Progress:
    """A tqdm bar on stderr when it is a terminal (ETA, rate, current loss); nothing
    otherwise (the per-epoch lines say enough in logs)."""

    def __init__(self, enabled: bool):
        self.enabled = enabled and sys.stderr.isatty()
        self.bar: Any = None
        self.last = 0.0

    def start(self, epoch: int, epochs: int, total: int) -> None:
        if not self.enabled:
            return
        from tqdm import tqdm

        self.bar = tqdm(total=total, desc=f"epoch {epoch}/{epochs}", unit="sample", unit_scale=True, leave=False,
                        dynamic_ncols=True, file=sys.stderr)
        self.last = 0.0

    def update(self, n: int, loss: torch.Tensor | None) -> None:
        if self.bar is None:
            return
        self.bar.update(n)
        now = time.perf_counter()
        if loss is not None and now - self.last > 0.5:  # reading the loss is a device sync: a few per second
            self.last = now
            self.bar.set_postfix_str(f"loss {float(loss):.4f}", refresh=False)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None


# ---------------------------------------------------------------- the run


@dataclass
class RunState:
    epoch: int = 0  # epochs completed
    history: list[dict] = field(default_factory=list)
    best_value: float | None = None
    best_epoch: int = 0
    bad_epochs: int = 0


class Trainer:
    def __init__(self, checked: ir.CheckedSpec, run: RunDir, quiet: bool = False, as_json: bool = False,
                 dist: Dist | None = None):
        self.checked = checked
        self.cfg = checked.train
        self.run = run
        self.out = run.path
        self.quiet = quiet
        self.as_json = as_json
        self.dist = dist or Dist()
        self.device = select_device(self.cfg.device, self.dist)
        ensure_fits(checked, str(self.device))
        self.data: Prepared = prepare(checked)
        if self.dist.main:
            shown = {w.message for w in checked.warnings}  # check's data pass may have said it already
            for w in self.data.warnings:
                if w.message not in shown:
                    print(w.render(), file=sys.stderr)
        pre = self.data.pre
        self.train_loader = Loader(self.data.train, pre, self.device)
        self.val_loader = Loader(self.data.val, pre, self.device) if self.data.val is not None else None
        self.model: nn.Module = build_model(checked.model, self.cfg.seed).to(self.device)
        if self.dist.enabled:
            torch.manual_seed(self.cfg.seed * 1000 + self.dist.rank + 1)  # dropout differs per process
        self.transform = build_transform(pre).to(self.device)
        self.augment = self.make_augmenter()
        self.loss_fn = build_loss(self.cfg.loss).to(self.device)
        self.reduction = str(self.cfg.loss.get("reduction", "mean"))
        self.batch_size = batch_size_of(checked, self.data)
        self.steps_per_epoch = math.ceil(len(self.data.train) / self.batch_size)
        check_before_training(checked, self.data)  # what would stop the run later, found now
        self.shuffle = checked.data.shuffle if checked.data else True
        self.autocast_dtype, self.scaler = self.precision()
        self.channels_last = self.device.type == "cuda" and self.autocast_dtype is not None and \
            any(layer.type.startswith("Conv") for layer in ir.layers(checked.model.root))
        if self.channels_last:
            self.model = self.model.to(memory_format=torch.channels_last)  # type: ignore[call-overload]
        if self.dist.enabled and checked.train.sync_batchnorm:
            self.model = sync_batchnorm(self.model, self.device)
        self.optimizer = build_optimizer(self.cfg.optimizer, self.model.parameters())
        self.scheduler = build_scheduler(self.cfg.scheduler, self.optimizer, self.cfg.epochs, self.steps_per_epoch)
        self.interval = cat.SCHEDULERS[self.cfg.scheduler.name].interval if self.cfg.scheduler else None
        self.net: nn.Module = self.model
        if self.cfg.compile:
            self.net = self.compiled()
        if self.dist.enabled:
            from torch.nn.parallel import DistributedDataParallel

            ids = [self.device.index] if self.device.type == "cuda" else None
            self.net = DistributedDataParallel(self.net, device_ids=ids)
        self.weights = weight_params(self.model)
        self.closure_opt = cat.OPTIMIZERS[self.cfg.optimizer.name].closure
        self.state = RunState()
        self.best_weights: dict | None = None
        self.monitor, self.minimize = monitor_of(checked, self.val_loader is not None)
        self.view = spec_view(checked.spec)
        self.spec_hash = sha256_text(json.dumps(self.view, sort_keys=True))
        self.tb = self.tensorboard()
        self.global_step = 0

    # -- set-up helpers

    def make_augmenter(self) -> Any:
        data = self.checked.data
        if data is None or not data.augment:
            return None
        from netspec.data.augment import Augmenter

        ops = [(a.name, dict(a.kwargs)) for a in data.augment]
        shape = tuple(self.data.pre.source_shape)
        if self.data.pre.kind != "image" or len(shape) != 3:
            raise NetspecError.at(data.augment[0].span, "augment works on images ([channels, height, width])",
                                  f"this data's samples are {list(shape)}")
        return Augmenter(ops, shape)  # type: ignore[arg-type]

    def precision(self) -> tuple[torch.dtype | None, Any]:
        p = self.cfg.precision
        if p == "fp32":
            return None, None
        dtype = torch.bfloat16 if p == "bf16" else torch.float16
        dev = self.device.type
        if dev not in ("cpu", "cuda"):
            raise error(f"precision: {p} is supported on cpu and cuda, not {dev}")
        if dev == "cuda" and p == "bf16" and not torch.cuda.is_bf16_supported():
            raise error("precision: bf16 is not supported by this GPU", "use precision: fp16")
        scaler = torch.amp.GradScaler(dev) if p == "fp16" else None
        return dtype, scaler

    def autocast(self) -> Any:
        if self.autocast_dtype is None:
            return nullcontext()
        return torch.autocast(self.device.type, dtype=self.autocast_dtype)

    def tensorboard(self) -> Any:
        if "tensorboard" not in self.cfg.log or not self.run.enabled:
            return None
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError:
            raise error("log: tensorboard needs the tensorboard package",
                        "pip install 'netspec[tensorboard]' (or pip install tensorboard)") from None
        return SummaryWriter  # opened when the run folder is claimed

    def compiled(self) -> nn.Module:
        """torch.compile, accepted only if its gradients on the first batch equal eager's
        (inductor on some CPUs has returned all-zero convolution gradients)."""
        idx = epoch_order(len(self.data.train), self.cfg.seed, 1, self.shuffle)[: self.batch_size]
        xb, yb = self.train_loader.fetch(idx)
        x = self.transform(to_units(xb, self.data.pre))
        y = x.detach() if yb is None else yb
        eager = copy.deepcopy(self.model)
        try:
            compiled: nn.Module = torch.compile(copy.deepcopy(self.model))  # type: ignore[assignment]
            grads = []
            for m in (eager, compiled):
                m.zero_grad(set_to_none=True)
                self.loss_fn(m(x).float(), y).backward()
                grads.append([p.grad.detach().clone() if p.grad is not None else torch.zeros_like(p)
                              for p in (eager if m is eager else compiled).parameters()])
        except Exception as e:  # noqa: BLE001 - the compiler can fail in many ways
            raise error(f"compile: true: torch.compile failed on this model ({type(e).__name__}: "
                        f"{str(e).splitlines()[0][:200]})", "remove `compile: true`; eager training is exact") from None
        names = [n for n, _ in self.model.named_parameters()]
        # tolerance relative to the largest gradient anywhere: a gradient that is zero in exact
        # arithmetic (a bias before BatchNorm) is rounding noise in both
        scale = max((float(a.abs().max()) for a in grads[0] if a.numel()), default=0.0) or 1.0
        for name, a, b in zip(names, grads[0], grads[1]):
            if not torch.allclose(a, b, rtol=1e-3, atol=1e-4 * scale):
                diff = float((a - b).abs().max())
                raise error(f"compile: true: torch.compile's gradient of `{name}` differs from eager's on the first "
                            f"batch (max difference {diff:.3g}, gradient scale {scale:.3g}); refusing to train "
                            "with it", "remove `compile: true` (eager training is exact)")
        return torch.compile(self.model)  # type: ignore[return-value]

    # -- one step / one epoch

    def forward_loss(self, x: torch.Tensor, y: torch.Tensor, scale: float) -> tuple[torch.Tensor, torch.Tensor,
                                                                                   torch.Tensor]:
        """(loss to backpropagate, output, data loss for reporting)."""
        with self.autocast():
            out = self.net(x)
        out = out.float()
        data_loss = self.loss_fn(out, y)
        loss = data_loss * scale if scale != 1.0 else data_loss
        if self.cfg.l1:
            loss = loss + self.cfg.l1 * sum(w.abs().sum() for w in self.weights)
        return loss, out, data_loss.detach()

    def step(self, x: torch.Tensor, y: torch.Tensor, scale: float) -> tuple[torch.Tensor, torch.Tensor]:
        if self.closure_opt:
            holder: dict[str, torch.Tensor] = {}

            def closure() -> torch.Tensor:
                self.optimizer.zero_grad(set_to_none=True)
                loss, out, data_loss = self.forward_loss(x, y, scale)
                loss.backward()
                holder["out"], holder["loss"] = out.detach(), data_loss
                return loss

            self.optimizer.step(closure)  # type: ignore[arg-type]
            return holder["out"], holder["loss"]
        self.optimizer.zero_grad(set_to_none=True)
        loss, out, data_loss = self.forward_loss(x, y, scale)
        if self.scaler is not None:
            self.scaler.scale(loss).backward()
            if self.cfg.clip_grad_norm:
                self.scaler.unscale_(self.optimizer)
                nn.utils.clip_grad_norm_(self.model.parameters(), self.cfg.clip_grad_norm)
            self.scaler.step(self.optimizer)
            self.scaler.update()
        else:
            loss.backward()
            if self.cfg.clip_grad_norm:
                nn.utils.clip_grad_norm_(self.model.parameters(), self.cfg.clip_grad_norm)
            self.optimizer.step()
        return out.detach(), data_loss

    def batch_plan(self, epoch: int) -> list[tuple[np.ndarray, int, float, int]]:
        """Per step: (this process's indices, offset in the global batch, loss scale, global size)."""
        n = len(self.data.train)
        order = epoch_order(n, self.cfg.seed, epoch, self.shuffle)
        plan = []
        for i in range(0, n, self.batch_size):
            idx = order[i:i + self.batch_size]
            part, offset, scale = shard(idx, self.dist, self.reduction)
            plan.append((part, offset, scale, len(idx)))
        return plan

    def train_epoch(self, epoch: int, progress: Progress) -> dict[str, float]:
        self.net.train()
        pre = self.data.pre
        plan = self.batch_plan(epoch)
        metrics = MetricState(self.cfg.metrics, pre.task, self.cfg.loss.name, self.data.classes, self.device)
        bad_step = torch.full((), -1, dtype=torch.long, device=self.device)
        check_every = NONFINITE_CHECK_CPU if self.device.type == "cpu" else NONFINITE_CHECK_EVERY
        progress.start(epoch, self.cfg.epochs, len(self.data.train))
        batches = self.train_loader.batches(p[0] for p in plan)
        for step, ((xb, yb), (part, offset, scale, total)) in enumerate(zip(batches, plan), start=1):
            x = to_units(xb, pre)
            if self.augment is not None:
                x = self.augment(x, self.cfg.seed, epoch, step, offset=offset, total=total)
            x = self.transform(x)
            if self.channels_last and x.dim() == 4:
                x = x.contiguous(memory_format=torch.channels_last)
            y = x.detach() if yb is None else yb
            try:
                out, data_loss = self.step(x, y, scale)
            except (RuntimeError, ValueError) as e:  # torch's shape/dtype complaints, made readable
                raise TrainingError(Diagnostic(
                    f"training step failed at epoch {epoch}, step {step}: {str(e).splitlines()[0]}",
                    help=f"inputs {list(x.shape)} {x.dtype}, targets {list(y.shape)} {y.dtype}, "
                         f"loss {self.cfg.loss.name}")) from None
            n = len(part)
            per_sample = data_loss * n if self.reduction == "mean" else data_loss
            metrics.update(out, y, per_sample)
            finite = torch.isfinite(data_loss)
            if check_every == 1:
                if not bool(finite):
                    self.nonfinite(epoch, step, float(data_loss))
            else:
                bad_step = torch.where((bad_step < 0) & ~finite, torch.tensor(step, device=self.device), bad_step)
                if step % check_every == 0 and int(bad_step) >= 0:
                    self.nonfinite(epoch, int(bad_step), float("nan"))
            if self.interval == "batch":
                self.scheduler.step()
            self.global_step += 1
            if step % 20 == 0 and self.dist.orphaned():
                os._exit(1)  # the launcher was killed: stop quietly, as its other workers do
            if self.tb is not None and self.global_step % self.cfg.log_every == 0:
                self.scalar("step/loss", float(data_loss), self.global_step)
                self.scalar("step/lr", self.optimizer.param_groups[0]["lr"], self.global_step)
            progress.update(n * (self.dist.world if self.dist.enabled and total >= self.dist.world else 1),
                            data_loss)
        progress.close()
        if int(bad_step) >= 0:
            self.nonfinite(epoch, int(bad_step), float("nan"))
        metrics.reduce()
        return metrics.result()

    tb_writer: Any = None
    tb_pending: list | None = None

    def scalar(self, tag: str, value: float, step: int) -> None:
        """A TensorBoard scalar; kept until the run folder exists (the first checkpoint)."""
        if self.tb_writer is not None:
            self.tb_writer.add_scalar(tag, value, step)
        elif self.tb is not None and self.run.enabled:
            if self.tb_pending is None:
                self.tb_pending = []
            self.tb_pending.append((tag, value, step))

    def nonfinite(self, epoch: int, step: int, value: float) -> None:
        raise TrainingError(Diagnostic(
            f"loss became {value} at epoch {epoch}, step {step} of {self.steps_per_epoch}; training stopped",
            help="lower the learning rate, set clip_grad_norm, or normalize the inputs; "
            + (f"the checkpoint of epoch {self.state.epoch} in {self.out} is intact" if self.state.epoch
               else "no checkpoint was written yet")))

    # -- evaluation

    @torch.inference_mode()
    def evaluate(self, loader: Loader, confusion: bool = False, model: nn.Module | None = None
                 ) -> tuple[dict[str, float], MetricState]:
        net = model or self.model
        was = net.training
        net.eval()
        pre = self.data.pre
        state = MetricState(self.cfg.metrics, pre.task, self.cfg.loss.name, self.data.classes, self.device,
                            confusion=confusion)
        part = contiguous_shard(len(loader), self.dist)
        for xb, yb in loader.sequential(EVAL_BATCH, part):
            x = self.transform(to_units(xb, pre))
            y = x if yb is None else yb
            with self.autocast():
                out = net(x)
            out = out.float()
            loss = self.loss_fn(out, y)
            state.update(out, y, loss * len(x) if self.reduction == "mean" else loss)
        net.train(was)
        state.reduce()
        return state.result(), state

    # -- bookkeeping

    def improved(self, value: float) -> bool:
        best = self.state.best_value
        delta = float(self.cfg.early_stopping.get("min_delta", 0.0)) if self.cfg.early_stopping else 0.0
        if best is None or not math.isfinite(best):
            return math.isfinite(value)
        return value < best - delta if self.minimize else value > best + delta

    def rng_states(self) -> list:
        mine = {"cpu": torch.get_rng_state(),
                "cuda": torch.cuda.get_rng_state(self.device) if self.device.type == "cuda" else None}
        return self.dist.all_same(mine)

    def checkpoint(self) -> None:
        """model.pt (the best epoch's weights, or the latest), checkpoint.pt and metrics.csv,
        written together: all three describe the same epoch whatever happens while writing."""
        rngs = self.rng_states()  # a collective: every process takes part
        if not self.run.enabled:
            return
        if not self.run.claimed:
            moved = self.run.claim(resolved_spec_text(self.checked.spec), {
                "netspec_version": __version__, "model": self.checked.model.name, "spec_hash": self.spec_hash,
                "spec": os.path.abspath(self.checked.spec.file), "processes": self.dist.world})
            if moved is not None:
                print(f"previous run kept in {moved}/", file=sys.stderr)
            self.open_tensorboard()
        best = self.best_weights if self.cfg.save == "best" and self.best_weights is not None else None
        state = {
            "format": "netspec-checkpoint-1",
            "netspec_version": __version__,
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict() if self.scheduler is not None else None,
            "scaler": self.scaler.state_dict() if self.scaler is not None else None,
            "epoch": self.state.epoch,
            "rng": rngs[0]["cpu"],
            "rng_ranks": rngs,
            "history": self.state.history,
            "best_value": self.state.best_value,
            "best_epoch": self.state.best_epoch,
            "bad_epochs": self.state.bad_epochs,
            "best_weights": self.best_weights,
            "spec_view": self.view,
            "spec_hash": self.spec_hash,
            "data_order": {"seed": self.cfg.seed, "scheme": "randperm(seed*1000003+epoch)"},
            "preprocessing": json.dumps(self.data.pre.to_json()),
        }
        atomic_write_many([
            (self.out / "model.pt", torch_writer(best if best is not None else self.model.state_dict())),
            (self.out / "checkpoint.pt", torch_writer(state)),
            (self.out / "metrics.csv", text_writer(metrics_csv(self.state.history))),
        ])
        self.run.write_meta(epochs_done=self.state.epoch)

    def open_tensorboard(self) -> None:
        if self.tb is not None and self.tb_writer is None:
            self.tb_writer = self.tb(log_dir=str(self.out / "tensorboard"))
            for tag, value, step in self.tb_pending or ():
                self.tb_writer.add_scalar(tag, value, step)
            self.tb_pending = None

    def restore(self, ckpt: dict) -> None:
        self.model.load_state_dict(ckpt["model"])
        self.optimizer.load_state_dict(ckpt["optimizer"])
        new_lr = dict(self.cfg.optimizer.kwargs).get("lr")
        if new_lr is not None and ckpt["spec_view"].get("train.optimizer.lr") != self.view.get("train.optimizer.lr"):
            for group in self.optimizer.param_groups:
                group["lr"] = new_lr
                if "initial_lr" in group:
                    group["initial_lr"] = new_lr
        if self.scheduler is not None and ckpt.get("scheduler") is not None and \
                ckpt["spec_view"].get("train.scheduler") == self.view.get("train.scheduler"):
            self.scheduler.load_state_dict(ckpt["scheduler"])
        if self.scaler is not None and ckpt.get("scaler"):
            self.scaler.load_state_dict(ckpt["scaler"])
        ranks = ckpt.get("rng_ranks") or []
        mine = ranks[self.dist.rank] if len(ranks) == self.dist.world and self.dist.rank < len(ranks) else None
        torch.set_rng_state(mine["cpu"] if mine else ckpt["rng"])
        if mine and mine.get("cuda") is not None and self.device.type == "cuda":
            torch.cuda.set_rng_state(mine["cuda"], self.device)
        self.state = RunState(ckpt["epoch"], list(ckpt["history"]), ckpt["best_value"], ckpt["best_epoch"],
                              ckpt["bad_epochs"])
        self.best_weights = ckpt.get("best_weights")
        self.global_step = self.state.epoch * self.steps_per_epoch
        self.open_tensorboard()

    def emit(self, row: dict, final: bool = False) -> None:
        if not self.dist.main:
            return
        if self.as_json:
            print(json.dumps(row), flush=True)
            return
        epochs = self.cfg.epochs
        epoch = row.get("epoch", 0)
        if self.quiet and not final and epoch % max(1, epochs // 10) and epoch != epochs:
            return
        if not final and epoch % max(1, epochs // 100) and epoch not in (1, epochs):
            return
        parts = []
        for k, v in row.items():
            if k == "epoch":
                parts.append(f"epoch {v}/{epochs}")
            elif k == "seconds":
                parts.append(f"{v:.1f}s")
            elif k == "samples_per_s":
                parts.append(f"{v:,.0f} samples/s")
            elif isinstance(v, float):
                parts.append(f"{k} {v:.4g}")
            else:
                parts.append(f"{k} {v}")
        print("  ".join(parts), flush=True)

    # -- main loop

    def fit(self) -> dict:
        progress = Progress(self.dist.main and not (self.quiet or self.as_json))
        train_n = len(self.data.train)
        stopped_early = False
        while self.state.epoch < self.cfg.epochs:
            epoch = self.state.epoch + 1
            start = time.perf_counter()
            lr = self.optimizer.param_groups[0]["lr"]
            train = self.train_epoch(epoch, progress)
            seconds = time.perf_counter() - start
            row: dict = {"epoch": epoch, **train}
            if self.val_loader is not None:
                val, _ = self.evaluate(self.val_loader)
                row.update({f"val_{k}": v for k, v in val.items()})
            row.update({"lr": lr, "seconds": seconds, "samples_per_s": train_n / max(seconds, 1e-9)})
            if self.interval == "epoch":
                self.scheduler.step()
            elif self.interval == "plateau":
                self.scheduler.step(row.get("val_loss", row["loss"]))
            if self.monitor not in row:
                raise error(f"early stopping monitors `{self.monitor}`, which is not reported",
                            "reported: " + ", ".join(k for k in row if k not in ("epoch", "lr", "seconds")))
            value = row[self.monitor]
            self.state.epoch = epoch
            self.state.history.append(row)
            if self.improved(value):
                self.state.best_value, self.state.best_epoch, self.state.bad_epochs = value, epoch, 0
                self.best_weights = {k: v.detach().clone() for k, v in self.model.state_dict().items()}
            else:
                self.state.bad_epochs += 1
            es = self.cfg.early_stopping
            stop = es is not None and patience_ran_out(self.state.bad_epochs, es)
            if epoch % self.cfg.checkpoint_every == 0 or epoch == self.cfg.epochs or stop:
                self.checkpoint()
            self.log_epoch(row)
            self.emit(row)
            if stop:
                stopped_early = True
                if self.dist.main and not self.as_json:
                    print(f"early stopping: `{self.monitor}` has not improved for {self.state.bad_epochs} epochs "
                          f"(best {self.state.best_value:.4g} at epoch {self.state.best_epoch})", flush=True)
                break
        return self.finish(stopped_early)

    def log_epoch(self, row: dict) -> None:
        if self.tb_writer is None:
            return
        for k, v in row.items():
            if k != "epoch" and isinstance(v, (int, float)):
                self.tb_writer.add_scalar(f"epoch/{k}", v, row["epoch"])
        self.tb_writer.flush()

    def finish(self, stopped_early: bool) -> dict:
        result: dict = {"epochs": self.state.epoch, "stopped_early": stopped_early,
                        "best_epoch": self.state.best_epoch, self.monitor: self.state.best_value}
        model = self.model
        if self.cfg.save == "best" and self.best_weights is not None:
            model = copy.deepcopy(self.model)  # the weights model.pt holds
            model.load_state_dict(self.best_weights)
        confusion_state = None
        report_split = None
        if self.data.test is not None:
            res, confusion_state = self.evaluate(Loader(self.data.test, self.data.pre, self.device),
                                                 confusion=self.data.pre.task == "class", model=model)
            result.update({f"test_{k}": v for k, v in res.items()})
            report_split = "test"
        elif self.val_loader is not None and self.data.pre.task == "class":
            _, confusion_state = self.evaluate(self.val_loader, confusion=True, model=model)
            report_split = "validation"
        if not self.run.enabled:
            return result
        if not self.run.claimed:
            self.checkpoint()
        from netspec.train.report import class_report, write_confusion, write_curves

        confusion = confusion_state.confusion() if confusion_state is not None else None
        write_curves(self.out, self.state.history, self.checked.model.name, self.state.best_epoch, self.monitor)
        report = ""
        if confusion is not None and self.data.labels:
            write_confusion(self.out, confusion, list(self.data.labels), report_split or "")
            report = class_report(confusion, list(self.data.labels), report_split or "")
        self.write_summary(result, report)
        if self.tb_writer is not None:
            hparams = {k: (v if isinstance(v, (int, float, str, bool)) else str(v)) for k, v in self.view.items()}
            final = {f"final/{k}": float(v) for k, v in result.items()
                     if isinstance(v, (int, float)) and not isinstance(v, bool) and v is not None}
            self.tb_writer.add_hparams(hparams, final, run_name=".")
            self.tb_writer.close()
        self.run.finish(result)
        if self.as_json:
            print(json.dumps({"final": result}), flush=True)
        else:
            shown = "  ".join(f"{k} {v:.4g}" for k, v in result.items() if k.startswith("test_"))
            if shown:
                print(f"test: {shown}")
            files = "model.pt, checkpoint.pt, metrics.csv, curves.png, summary.txt" + \
                (", confusion.csv/png" if confusion is not None else "") + (", tensorboard/" if self.tb_writer else "")
            print(f"run saved in {self.out}/ ({files})")
        return result

    def write_summary(self, result: dict, report: str) -> None:
        from netspec.tools.summary import summary_text

        lines = [summary_text(self.checked), "", f"device: {self.device}" +
                 (f" x {self.dist.world} processes" if self.dist.enabled else ""),
                 f"precision: {self.cfg.precision}", f"train samples: {len(self.data.train)}",
                 f"batch size: {self.batch_size}", f"spec hash: {self.spec_hash[:16]}", *self.data.notes, ""]
        lines += [f"{k}: {v}" for k, v in result.items()]
        if report:
            lines += ["", report]
        atomic_write_text(self.out / "summary.txt", "\n".join(lines) + "\n")


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
                              f"{cfg.epochs} epoch(s) of {steps_per_epoch} steps are {cfg.epochs * steps_per_epoch} steps",
                              "leave total_steps out (netspec fills in epochs x steps per epoch), or raise it")


# ---------------------------------------------------------------- entry points


def train_file(path: str, overrides: tuple[str, ...] = (), out_dir: str | None = None, resume: bool = False,
               quiet: bool = False, as_json: bool = False) -> dict:
    checked = load(path, overrides, read_data=True)  # check's data pass: its errors sit at spec positions
    dist = from_environment(checked.train.device)
    try:
        return _train(checked, out_dir, resume, quiet, as_json, dist)
    finally:
        dist.close()


def _train(checked: ir.CheckedSpec, out_dir: str | None, resume: bool, quiet: bool, as_json: bool, dist: Dist) -> dict:
    if dist.main:
        for w in checked.warnings:
            print(w.render(), file=sys.stderr)
    out = Path(out_dir) if out_dir else default_run_dir(checked)
    ckpt = None
    if resume:
        ckpt_path = out / "checkpoint.pt"
        if out.exists() and not out.is_dir():
            raise error(f"--resume: {out} is a file, not a run folder", "give --out the run folder to resume")
        if not ckpt_path.exists():
            raise error(f"--resume: {ckpt_path} does not exist", "train without --resume to start a run")
        ckpt = load_checkpoint(ckpt_path)
        view = spec_view(checked.spec)
        changes = diff_views(ckpt["spec_view"], view)
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
        if changes:
            text = "\n".join(f"  {k}: {a if a is not None else '(absent)'} -> {b if b is not None else '(absent)'}"
                             for k, a, b in changes)
            if blocked:
                raise error(f"--resume: the spec changed since {ckpt_path} was written:\n{text}",
                            "only epochs, the learning rate, the scheduler, early_stopping, device, precision, log "
                            "and checkpoint_every may change on resume; start a new run instead")
            if dist.main:
                print(f"resuming with changed settings:\n{text}", file=sys.stderr)
        done = ckpt["epoch"] >= checked.train.epochs or _stopped_early(ckpt, checked)
        if done and read_run_json(out).get("finished"):
            raise error(f"--resume: the run already finished {ckpt['epoch']} of {checked.train.epochs} epochs",
                        f"raise the epoch count, e.g. --set train.epochs={ckpt['epoch'] + 5}")
    run = RunDir(out, resume=resume, enabled=dist.main)
    trainer = Trainer(checked, run, quiet=quiet, as_json=as_json, dist=dist)
    if ckpt is not None:
        wrong = state_problems(trainer.model, ckpt["model"])
        if wrong:
            raise error(f"--resume: the weights in {out / 'checkpoint.pt'} do not fit this model: {'; '.join(wrong)}",
                        "resume with the spec that wrote the checkpoint, or start a new run (another --out)")
        run.claim_resumed(resolved_spec_text(checked.spec))
        trainer.restore(ckpt)
        if dist.main and not as_json:
            print(f"resumed from {out / 'checkpoint.pt'} at epoch {trainer.state.epoch}", file=sys.stderr)
        if trainer.state.epoch >= checked.train.epochs or _stopped_early(ckpt, checked):
            if dist.main and not as_json:  # killed after its last checkpoint, before its outputs
                print("the run had finished training; writing its final outputs", file=sys.stderr)
            return trainer.finish(stopped_early=trainer.state.epoch < checked.train.epochs)
    if dist.main and not as_json and not quiet:
        where = f"{trainer.device}" + (f" x {dist.world} processes" if dist.enabled else "")
        print(f"training {checked.model.name} on {where}: {len(trainer.data.train):,} samples, "
              f"batch {trainer.batch_size}, {checked.train.epochs} epochs"
              + (f", {checked.train.precision}" if checked.train.precision != "fp32" else ""), flush=True)
        for note in trainer.data.notes:
            print(note, flush=True)
    return trainer.fit()


def _stopped_early(ckpt: dict, checked: ir.CheckedSpec) -> bool:
    es = checked.train.early_stopping
    return es is not None and patience_ran_out(int(ckpt.get("bad_epochs", 0)), es)


def patience_ran_out(bad_epochs: int, es: ir.CallValue) -> bool:
    """Stop at an epoch that did not improve, once `patience` such epochs ran in a row
    (Keras' and Lightning's rule: patience 0 and 1 both stop at the first one)."""
    return bad_epochs > 0 and bad_epochs >= int(es.get("patience", 3))


def trained_model(checked: ir.CheckedSpec, weights: str | None, spec_path: str) -> tuple[nn.Module, Path]:
    """The checked model with trained weights (default: runs/<model>/model.pt)."""
    weights_path = Path(weights) if weights else default_run_dir(checked) / "model.pt"
    if not weights_path.exists():
        raise error(f"{weights_path}: no such file", f"train first (netspec train {spec_path}) or pass --weights PATH")
    ensure_fits(checked, "cpu", training=False)
    model = build_model(checked.model, checked.train.seed)
    state = load_state_dict_file(weights_path)
    problems = state_problems(model, state)
    if problems:
        raise error(f"{weights_path}: weights do not fit model `{checked.model.name}`: {'; '.join(problems)}",
                    "these weights were trained for another model: use the run folder they came from, "
                    "or pass the matching --weights")
    model.load_state_dict(state)
    return model, weights_path


def run_checkpoint(weights: Path) -> tuple[dict | None, str]:
    """(preprocessing, spec hash) saved in the checkpoint beside `weights`, if any."""
    ckpt = weights.parent / "checkpoint.pt"
    if not ckpt.exists():
        return None, ""
    state = load_torch(ckpt, "checkpoint")
    if not isinstance(state, dict):
        return None, ""
    try:
        pre = json.loads(state["preprocessing"]) if state.get("preprocessing") else None
    except (TypeError, ValueError):
        pre = None
    if isinstance(pre, dict) and "source_shape" not in pre:
        pre = None  # a netspec 0.1 checkpoint: its statistics are recomputed from the data
    return pre, str(state.get("spec_hash", ""))


def evaluate_file(path: str, weights: str | None = None, overrides: tuple[str, ...] = ()) -> dict:
    checked = load(path, overrides, read_data=True)
    model, weights_path = trained_model(checked, weights, path)
    data = prepare(checked, saved=run_checkpoint(weights_path)[0])
    prefix, split = evaluation_split(data, path)
    device = torch.device("cpu")
    transform = build_transform(data.pre)
    loss_fn = build_loss(checked.train.loss)
    reduction = str(checked.train.loss.get("reduction", "mean"))
    state = MetricState(checked.train.metrics, data.pre.task, checked.train.loss.name, data.classes, device)
    model.eval()
    with torch.inference_mode():
        for xb, yb in Loader(split, data.pre, device).sequential(EVAL_BATCH):
            x = transform(to_units(xb, data.pre))
            y = x if yb is None else yb
            out = model(x).float()
            loss = loss_fn(out, y)
            state.update(out, y, loss * len(x) if reduction == "mean" else loss)
    res = state.result()
    return {f"{prefix}{k}": v for k, v in res.items()} | {"samples": len(split)}


__all__ = ["train_file", "evaluate_file", "trained_model", "Trainer", "metric_key"]
