"""`netspec train`: the run around the training loop.

In: a spec path (+ `--set` overrides). Out: a run folder (``runs/<model>/`` unless --out):
run.json, spec.net (resolved, self-contained), model.pt (state_dict of the best or last
epoch), checkpoint.pt (model, optimizer, scheduler, epoch, RNG states, history, spec
view, preprocessing), metrics.csv, curves.png, summary.txt, and for classifiers
confusion.csv / confusion.png; tensorboard/ with `log: [tensorboard]`. Every write is
atomic; model.pt, checkpoint.pt and metrics.csv always describe the same epoch.

The steps, epochs and evaluation are train/loop.py's (the module `netspec eject` copies into
its program); the Trainer builds its parts from the spec and adds what a run folder needs:
DDP (every process walks the same global batches and takes its share, distributed.shard),
the progress bar, TensorBoard, checkpoints, resume and the final report. The sample order of
an epoch is a function of (seed, epoch), so `--resume` repeats it. Nothing reads a value back
to the host inside an epoch on an accelerator, except the progress bar's few refreshes a second.

    netspec train examples/mnist_mlp.net --epochs 1
    netspec train examples/mnist_mlp.net --resume --set train.epochs=3
    netspec train examples/mnist_mlp.net --nproc 2        # DDP, gloo on CPU
"""

from __future__ import annotations

import copy
import json
import math
import os
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from netspec import __version__, ir, load
from netspec import catalogue as cat
from netspec.builder import build_loss, build_model, build_optimizer, build_scheduler
from netspec.data.loader import Loader
from netspec.data.prepare import Prepared, prepare, reading_lines
from netspec.errors import Diagnostic, NetspecError, TrainingInterrupted, error, printable
from netspec.train import loop, transfer
from netspec.train.checkpoint import (
    CHECKPOINT_FORMAT,
    metrics_csv,
    refuse_finished,
    resume_point,
    spec_views,
    state_problems,
    stopped_early,
    text_writer,
    torch_writer,
    view_hash,
)
from netspec.train.distributed import Dist, contiguous_shard, from_environment, shard, sync_batchnorm
from netspec.train.evaluate import EVAL_BATCH, build_target_scale, build_transform
from netspec.train.integrity import fit_problems, seal
from netspec.train.metrics import MetricState
from netspec.train.preflight import batch_size_of, check_before_training, monitor_of, patience_of, select_device
from netspec.train.resources import ensure_fits
from netspec.train.runs import RunDir, default_run_dir, resolved_spec_text
from netspec.util import atomic_write_many, atomic_write_text, count

NONFINITE_CHECK_EVERY = 50  # steps between host reads of the non-finite flag on accelerators
NONFINITE_CHECK_CPU = 1  # on the CPU reading it costs nothing


class TrainingError(NetspecError):
    pass


def _tell(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def prepare_run(checked: ir.CheckedSpec, dist: Dist) -> tuple[Prepared, list[str]]:
    """The run's data (once the model is known to fit the device), and what preparing it said
    that `check` did not already say (lines for stderr: what reading the sources said, then
    the data warnings): the caller reports them. An error leaves out the warnings check gave."""
    ensure_fits(checked, str(select_device(checked.train.device, dist)))
    shown = {w.message for w in checked.warnings}  # check's data pass may have said it already
    try:
        data = prepare(checked)
    except NetspecError as e:
        left = [d for d in e.diagnostics if d.severity == "error" or d.message not in shown]
        if len(left) == len(e.diagnostics):
            raise
        raise type(e)(left) from None
    return data, reading_lines(data, shown) + [w.render() for w in data.warnings if w.message not in shown]


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
                        dynamic_ncols=True, file=getattr(sys.stderr, "raw", sys.stderr))  # its own \r
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


class Trainer:
    """One run: the loop's parts built from the spec (loop.Loop), and the run folder around
    them. `data`: prepared by the caller (prepare_run), or here."""

    def __init__(self, checked: ir.CheckedSpec, run: RunDir, quiet: bool = False, as_json: bool = False,
                 dist: Dist | None = None, data: Prepared | None = None, pretrained: bool = True):
        self.checked = checked
        self.cfg = checked.train
        self.run = run
        self.out = run.path
        self.quiet = quiet
        self.as_json = as_json
        self.dist = dist or Dist()
        self.device = select_device(self.cfg.device, self.dist)
        self.data: Prepared = data if data is not None else prepare_run(checked, self.dist)[0]
        pre = self.data.pre
        self.train_loader = Loader(self.data.train, pre, self.device)
        self.val_loader = Loader(self.data.val, pre, self.device) if self.data.val is not None else None
        self.model: nn.Module = build_model(checked.model, self.cfg.seed).to(self.device)
        self.load_report: list[str] = []
        if checked.weights is not None and pretrained:  # matched by name and shape (a resumed run: the checkpoint's)
            self.load_report = transfer.pretrained(self.model, checked.weights, checked.weights.span,
                                                   _tell if self.dist.main else None)
        self.plan = transfer.plan_of(self.cfg)  # freeze / unfreeze / param_groups; None: all train together
        if self.dist.enabled:
            torch.manual_seed(self.cfg.seed * 1000 + self.dist.rank + 1)  # dropout differs per process
        self.transform = build_transform(pre).to(self.device)
        target = build_target_scale(pre)
        self.target_scale = target.to(self.device) if target is not None else None
        self.augment = self.make_augmenter()
        self.loss_fn = build_loss(self.cfg.loss).to(self.device)
        self.reduction = str(self.cfg.loss.get("reduction", "mean"))
        self.batch_size = batch_size_of(checked, self.data)
        self.steps_per_epoch = math.ceil(len(self.data.train) / self.batch_size)
        check_before_training(checked, self.data)  # what would stop the run later, found now
        self.shuffle = checked.data.shuffle if checked.data else True
        self.text_lengths = torch.from_numpy(np.asarray((self.data.train.x != 0).sum(axis=1), dtype=np.int64)) \
            if checked.data is not None and checked.data.bucket and pre.kind == "text" else None
        self.autocast_dtype, self.scaler = self.precision()
        self.channels_last = self.device.type == "cuda" and self.autocast_dtype is not None and \
            any(layer.type.startswith("Conv") for layer in ir.layers(checked.model.root))
        if self.channels_last:
            self.model = self.model.to(memory_format=torch.channels_last)  # type: ignore[call-overload]
        if self.dist.enabled and checked.train.sync_batchnorm:
            self.model = sync_batchnorm(self.model, self.device)
        # after SyncBatchNorm's conversion (on CUDA it builds new modules): the frozen ones stay in eval mode
        frozen_norms = transfer.set_trainable(self.model, self.plan, 1) if self.plan is not None else []
        self.optimizer = build_optimizer(self.cfg.optimizer, self.model.parameters() if self.plan is None else
                                         transfer.trainable_groups(self.model, self.plan, 1))
        self.scheduler = build_scheduler(self.cfg.scheduler, self.optimizer, self.cfg.epochs, self.steps_per_epoch)
        self.interval = cat.SCHEDULERS[self.cfg.scheduler.name].interval if self.cfg.scheduler else None
        self.net: nn.Module = self.model
        if self.cfg.compile:
            self.net = self.compiled()
        self.inner_net = self.net  # what DDP wraps (again after a staged unfreeze)
        self.net = self.distributed(self.inner_net)
        self.loop = loop.Loop(
            self.model, self.loss_fn, self.transform, self.device, optimizer=self.optimizer,
            scheduler=self.scheduler, scaler=self.scaler, augment=self.augment, net=self.net, seed=self.cfg.seed,
            scale=pre.scale, tokens=pre.tokens, autocast_dtype=self.autocast_dtype, channels_last=self.channels_last,
            l1=self.cfg.l1, clip_grad_norm=self.cfg.clip_grad_norm,
            closure=cat.OPTIMIZERS[self.cfg.optimizer.name].closure, reduction=self.reduction,
            interval=self.interval, target=self.target_scale,
            check_every=NONFINITE_CHECK_CPU if self.device.type == "cpu" else NONFINITE_CHECK_EVERY,
            frozen_norms=frozen_norms)
        self.state = loop.RunState()
        monitor, minimize = monitor_of(checked, self.val_loader is not None)
        es = self.cfg.early_stopping
        self.monitor = loop.Monitor(monitor, minimize, float(es.get("min_delta", 0.0)) if es else 0.0, patience_of(es))
        self.view = spec_views(checked.spec)[0]  # as the run folder's spec.net has it
        self.spec_hash = view_hash(self.view)
        self.tb = self.tensorboard()
        self.global_step = 0

    # -- set-up helpers

    def distributed(self, net: nn.Module) -> nn.Module:
        """`net` under DDP when there are several processes (DDP registers the parameters that
        need gradients when it is built: again after a staged unfreeze)."""
        if not self.dist.enabled:
            return net
        from torch.nn.parallel import DistributedDataParallel

        ids = [self.device.index] if self.device.type == "cuda" else None
        return DistributedDataParallel(net, device_ids=ids)

    def start_epoch(self, epoch: int) -> None:
        """A staged unfreeze: the layers that train from `epoch` on join the optimizer."""
        if self.plan is None:
            return
        sched = self.cfg.scheduler.name if self.cfg.scheduler else None
        frozen = transfer.start_epoch(self.model, self.optimizer, self.scheduler, self.plan, epoch, sched)
        if frozen is None:
            return
        self.loop.frozen_norms = frozen
        self.net = self.loop.net = self.distributed(self.inner_net)
        if self.dist.main and not self.as_json:
            paths = [p for p, e in self.plan.unfreeze.items() if e == epoch]
            print(f"epoch {epoch}: unfreezing {', '.join(paths)}", flush=True)

    def make_augmenter(self) -> Any:
        data = self.checked.data
        if data is None or not data.augment:
            return None
        from netspec.checker.data import augment_shape_problem, value_range
        from netspec.data.augment import Augmenter, range_problems

        ops = [(a.name, dict(a.kwargs)) for a in data.augment]
        shape = tuple(self.data.pre.source_shape)
        wrong = augment_shape_problem(data, shape)
        if wrong is not None:
            raise NetspecError(wrong)
        if self.data.pre.kind != "image":  # float samples: the ops that need [0, 1] pixel values
            span = value_range(self.data.train.rows(np.arange(min(4096, len(self.data.train))))[0])
            problems = range_problems(ops, *span) if span is not None else []
            if problems:
                raise NetspecError.at(data.augment[problems[0][0]].span, problems[0][1])
        return Augmenter(ops, shape)  # type: ignore[arg-type]

    def precision(self) -> tuple[torch.dtype | None, Any]:
        p = self.cfg.precision
        if p == "fp32":
            return None, None
        dev = self.device.type
        if dev not in ("cpu", "cuda"):
            raise error(f"precision: {p} is supported on cpu and cuda, not {dev}")
        if dev == "cuda" and p == "bf16" and not torch.cuda.is_bf16_supported():
            raise error("precision: bf16 is not supported by this GPU", "use precision: fp16")
        return loop.mixed_precision(p, self.device)

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
        idx = loop.epoch_order(len(self.data.train), self.cfg.seed, 1, self.shuffle)[: self.batch_size].numpy()
        xb, yb = self.train_loader.fetch(idx)
        x = self.transform(loop.to_units(xb, self.data.pre.scale, self.data.pre.tokens))
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

    # -- one step / one epoch (loop.py's, with DDP shards, the progress bar and TensorBoard)

    def forward_loss(self, x: torch.Tensor, y: torch.Tensor, scale: float) -> tuple[torch.Tensor, torch.Tensor,
                                                                                   torch.Tensor]:
        """(loss to backpropagate, output, data loss for reporting)."""
        return loop.forward_loss(self.loop, x, y, scale)

    def step(self, x: torch.Tensor, y: torch.Tensor, scale: float) -> tuple[torch.Tensor, torch.Tensor]:
        return loop.optimizer_step(self.loop, x, y, scale, self.forward_loss)

    def batch_plan(self, epoch: int) -> list[tuple[np.ndarray, int, float, int]]:
        """Per step: (this process's indices, offset in the global batch, loss scale, global size)."""
        n = len(self.data.train)
        order = loop.epoch_order(n, self.cfg.seed, epoch, self.shuffle)
        if self.text_lengths is not None:  # `bucket: true`: texts of similar length together
            batches = [b.numpy() for b in loop.length_buckets(order, self.text_lengths, self.batch_size,
                                                               self.cfg.seed, epoch)]
        else:
            batches = [order[i:i + self.batch_size].numpy() for i in range(0, n, self.batch_size)]
        plan = []
        for idx in batches:
            part, offset, scale = shard(idx, self.dist, self.reduction)
            plan.append((part, offset, scale, len(idx)))
        return plan

    def train_epoch(self, epoch: int, progress: Progress) -> dict[str, float]:
        pre = self.data.pre
        plan = self.batch_plan(epoch)
        metrics = MetricState(self.cfg.metrics, pre.task, self.cfg.loss.name, self.data.classes, self.device)
        fetched = self.train_loader.batches(p[0] for p in plan)
        batches = (loop.Batch(xb, yb, offset, total, scale)
                   for (xb, yb), (_, offset, scale, total) in zip(fetched, plan))

        def after_step(step: int, batch: loop.Batch, data_loss: torch.Tensor) -> None:
            self.global_step += 1
            if step % 20 == 0 and self.dist.orphaned():
                os._exit(1)  # the launcher was killed: stop quietly, as its other workers do
            if self.tb is not None and self.global_step % self.cfg.log_every == 0:
                self.scalar("step/loss", float(data_loss), self.global_step)
                self.scalar("step/lr", self.optimizer.param_groups[0]["lr"], self.global_step)
            whole = self.dist.enabled and (batch.total or 0) >= self.dist.world
            progress.update(len(batch.x) * (self.dist.world if whole else 1), data_loss)

        progress.start(epoch, self.cfg.epochs, len(self.data.train))
        try:
            return loop.train_epoch(self.loop, batches, epoch, metrics, after_step, self.step)
        except loop.StepFailed as e:  # torch's shape/dtype complaints, made readable
            raise TrainingError(Diagnostic(
                str(e), help=f"inputs {e.inputs}, targets {e.targets}, loss {self.cfg.loss.name}")) from None
        except loop.NonFiniteLoss as e:
            raise self.nonfinite(e.epoch, e.step, e.value) from None
        finally:
            progress.close()

    tb_writer: Any = None
    tb_pending: list | None = None
    on_epoch: Any = None  # called with each epoch's row after its checkpoint (netspec tune reports to its pruner)

    def scalar(self, tag: str, value: float, step: int) -> None:
        """A TensorBoard scalar; kept until the run folder exists (the first checkpoint)."""
        if self.tb_writer is not None:
            self.tb_writer.add_scalar(tag, value, step)
        elif self.tb is not None and self.run.enabled:
            if self.tb_pending is None:
                self.tb_pending = []
            self.tb_pending.append((tag, value, step))

    def nonfinite(self, epoch: int, step: int, value: float) -> TrainingError:
        return TrainingError(Diagnostic(
            f"loss became {value} at epoch {epoch}, step {step} of {self.steps_per_epoch}; training stopped",
            help="lower the learning rate, set clip_grad_norm, or normalize the inputs; "
            + (f"the checkpoint of epoch {self.state.epoch} in {self.out} is intact" if self.state.epoch
               else "no checkpoint was written yet")))

    # -- evaluation

    def evaluate(self, loader: Loader, confusion: bool = False, model: nn.Module | None = None
                 ) -> tuple[dict[str, float], MetricState]:
        pre = self.data.pre
        state = MetricState(self.cfg.metrics, pre.task, self.cfg.loss.name, self.data.classes, self.device,
                            confusion=confusion)
        part = contiguous_shard(len(loader), self.dist)
        return loop.evaluate(self.loop, loader.sequential(EVAL_BATCH, part), state, model), state

    # -- bookkeeping

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
                "spec": os.path.abspath(self.checked.spec.file), "processes": self.dist.world,
                # what `vocab_size`/`num_classes` were: commands on this run folder need no data for them
                "data_constants": {k: v for k, v in self.checked.constants if k in cat.DATA_CONSTANTS}})
            if moved is not None:
                print(f"previous run kept in {moved}/", file=sys.stderr)
            self.open_tensorboard()
        best = self.state.best_weights if self.cfg.save == "best" else None
        state = {
            "format": CHECKPOINT_FORMAT,
            "netspec_version": __version__,
            **loop.checkpoint_state(self.loop, self.state, rngs[0]["cpu"]),
            "rng_ranks": rngs,
            "spec_view": self.view,
            "spec_hash": self.spec_hash,
            "data_order": {"seed": self.cfg.seed, "scheme": "randperm(seed*1000003+epoch)"},
            "preprocessing": json.dumps(self.data.pre.to_json()),
        }
        weights = "best_weights" if best is not None else "model"
        state = seal(state, weights)  # digests of the checkpoint and of model.pt, verified when read
        files: list[tuple[str | os.PathLike, Any]] = [
            (self.out / "model.pt", torch_writer(state[weights])),
            (self.out / "checkpoint.pt", torch_writer(state)),
            (self.out / "metrics.csv", text_writer(metrics_csv(self.state.history))),
        ]
        if self.data.pre.tokenizer is not None:  # the tokenizer the run's texts were encoded with
            files.append((self.out / "tokenizer.json", text_writer(self.data.pre.tokenizer)))
        atomic_write_many(files)
        self.run.write_meta(epochs_done=self.state.epoch)

    def open_tensorboard(self) -> None:
        if self.tb is not None and self.tb_writer is None:
            self.tb_writer = self.tb(log_dir=str(self.out / "tensorboard"))
            for tag, value, step in self.tb_pending or ():
                self.tb_writer.add_scalar(tag, value, step)
            self.tb_pending = None

    def catch_up(self, ckpt: dict) -> None:
        """The optimizer groups a staged unfreeze had added by the checkpoint's epoch, as the
        checkpoint holds them (before its optimizer state is checked against them)."""
        if self.plan is not None:
            sched = self.cfg.scheduler.name if self.cfg.scheduler else None
            self.loop.frozen_norms = transfer.catch_up(self.model, self.optimizer, self.scheduler, self.plan,
                                                       ckpt["epoch"], sched)
            self.net = self.loop.net = self.distributed(self.inner_net)

    def restore(self, ckpt: dict) -> None:
        """The checkpoint's state into this run (after catch_up and the fit checks)."""
        same_scheduler = ckpt["spec_view"].get("train.scheduler") == self.view.get("train.scheduler")
        try:
            self.state = loop.restore(self.loop, ckpt, scheduler=same_scheduler)
        except (ValueError, KeyError, TypeError, IndexError, RuntimeError) as e:  # what the checks above missed
            raise error(f"--resume: {self.out / 'checkpoint.pt'} cannot be restored: {type(e).__name__}: "
                        f"{str(e).splitlines()[0][:200] if str(e) else ''}",
                        "resume from an intact copy, or start a new run (another --out)") from None
        new_lr = dict(self.cfg.optimizer.kwargs).get("lr")
        if new_lr is not None and ckpt["spec_view"].get("train.optimizer.lr") != self.view.get("train.optimizer.lr"):
            for group in self.optimizer.param_groups:
                base = new_lr if self.plan is None else self.plan.base_lr(transfer._group_index(group))
                group["lr"] = base
                if "initial_lr" in group:
                    group["initial_lr"] = base
        ranks = ckpt.get("rng_ranks") or []
        mine = ranks[self.dist.rank] if len(ranks) == self.dist.world and self.dist.rank < len(ranks) else None
        torch.set_rng_state(mine["cpu"] if mine else ckpt["rng"])
        if mine and mine.get("cuda") is not None and self.device.type == "cuda":
            torch.cuda.set_rng_state(mine["cuda"], self.device)
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
        val_loader = self.val_loader
        validate = (lambda: self.evaluate(val_loader)[0]) if val_loader is not None else None
        try:
            stopped = loop.fit(self.loop, self.state, self.cfg.epochs, lambda epoch: self.train_epoch(epoch, progress),
                               validate, self.monitor, self.end_of_epoch, samples=len(self.data.train),
                               start_epoch=self.start_epoch if self.plan is not None else None)
        except loop.NotReported as e:
            raise error(f"early stopping monitors `{e.key}`, which is not reported",
                        "reported: " + ", ".join(k for k in e.row if k not in ("epoch", "lr", "seconds"))) from None
        return self.finish(stopped)

    def end_of_epoch(self, row: dict, stop: bool) -> None:
        """Checkpoint (every checkpoint_every epochs, the last, and where early stopping ends
        the run), TensorBoard, the epoch's line."""
        epoch = row["epoch"]
        if epoch % self.cfg.checkpoint_every == 0 or epoch == self.cfg.epochs or stop:
            self.checkpoint()
        self.log_epoch(row)
        self.emit(row)
        if self.on_epoch is not None:
            self.on_epoch(row)
        if stop and self.dist.main and not self.as_json:
            print(f"early stopping: `{self.monitor.key}` has not improved for {count(self.state.bad_epochs, 'epoch')} "
                  f"(best {self.state.best_value:.4g} at epoch {self.state.best_epoch})", flush=True)

    def log_epoch(self, row: dict) -> None:
        if self.tb_writer is None:
            return
        for k, v in row.items():
            if k != "epoch" and isinstance(v, (int, float)):
                self.tb_writer.add_scalar(f"epoch/{k}", v, row["epoch"])
        self.tb_writer.flush()

    def finish(self, stopped_early: bool) -> dict:
        result: dict = {"epochs": self.state.epoch, "stopped_early": stopped_early,
                        "best_epoch": self.state.best_epoch, self.monitor.key: self.state.best_value}
        model = self.model
        tested = f"last epoch {self.state.epoch} of {self.state.epoch}"
        if self.cfg.save == "best" and self.state.best_weights is not None:
            model = copy.deepcopy(self.model)  # the weights model.pt holds
            model.load_state_dict(self.state.best_weights)
            tested = f"best epoch {self.state.best_epoch} of {self.state.epoch} by {self.monitor.key}"
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
        write_curves(self.out, self.state.history, self.checked.model.name, self.state.best_epoch, self.monitor.key)
        report = ""
        if confusion is not None and self.data.labels:
            write_confusion(self.out, confusion, list(self.data.labels), report_split or "")
            report = class_report(confusion, list(self.data.labels), report_split or "")
        self.write_summary(result, report)
        if self.tb_writer is not None:
            # TensorBoard's protobufs take UTF-8 only: a name's undecodable bytes as escapes
            hparams = {k: (printable(v, newlines=False) if isinstance(v, str) else v if isinstance(v, (int, float, bool))
                           else str(v)) for k, v in self.view.items()}
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
                print(f"test ({tested}): {shown}")  # which weights were tested: model.pt's
            files = "model.pt, checkpoint.pt, metrics.csv, curves.png, summary.txt" + \
                (", tokenizer.json" if self.data.pre.tokenizer is not None else "") + \
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
        ckpt, changed = resume_point(checked, out)
        if changed and dist.main:
            print(f"resuming with changed settings:\n{changed}", file=sys.stderr)
        refuse_finished(ckpt, checked, out)
    run = RunDir(out, resume=resume, enabled=dist.main)
    started: list[Trainer] = []
    try:
        return _run(checked, out, run, ckpt, quiet, as_json, dist, started)
    except KeyboardInterrupt:
        if dist.enabled or not dist.main:
            raise
        done = (out / "checkpoint.pt").is_file() and (run.claimed or resume)
        raise TrainingInterrupted(str(out), started[0].state.epoch if started else 0, done) from None


def _run(checked: ir.CheckedSpec, out: Path, run: RunDir, ckpt: dict | None, quiet: bool, as_json: bool,
         dist: Dist, started: list) -> dict:
    data, said = prepare_run(checked, dist)
    if dist.main:
        for line in said:
            print(line, file=sys.stderr)
    trainer = Trainer(checked, run, quiet=quiet, as_json=as_json, dist=dist, data=data, pretrained=ckpt is None)
    started.append(trainer)  # where it stands, should Ctrl-C come
    if ckpt is not None:
        wrong = state_problems(trainer.model, ckpt["model"])
        if wrong:
            raise error(f"--resume: the weights in {out / 'checkpoint.pt'} do not fit this model: {'; '.join(wrong)}",
                        "resume with the spec that wrote the checkpoint, or start a new run (another --out)")
        same_scheduler = ckpt["spec_view"].get("train.scheduler") == trainer.view.get("train.scheduler")
        trainer.catch_up(ckpt)
        damaged = fit_problems(ckpt, trainer.model, trainer.optimizer, trainer.scheduler if same_scheduler else None,
                               trainer.scaler)
        if damaged:
            raise error(f"--resume: {out / 'checkpoint.pt'} does not fit this run's training state: "
                        f"{'; '.join(damaged[:3])}", "resume from an intact copy, or start a new run (another --out)")
        run.claim_resumed(resolved_spec_text(checked.spec))
        trainer.restore(ckpt)
        if dist.main and not as_json:
            print(f"resumed from {out / 'checkpoint.pt'} at epoch {trainer.state.epoch}", file=sys.stderr)
        if trainer.state.epoch >= checked.train.epochs or stopped_early(ckpt, checked):
            if dist.main and not as_json:  # killed after its last checkpoint, before its outputs
                print("the run had finished training; writing its final outputs", file=sys.stderr)
            return trainer.finish(stopped_early=trainer.state.epoch < checked.train.epochs)
    if dist.main and not as_json and not quiet:
        where = f"{trainer.device}" + (f" x {dist.world} processes" if dist.enabled else "")
        print(f"training {checked.model.name} on {where}: {count(len(trainer.data.train), 'sample')}, "
              f"batch {trainer.batch_size}, {count(checked.train.epochs, 'epoch')}"
              + (f", {checked.train.precision}" if checked.train.precision != "fp32" else ""), flush=True)
        for note in trainer.data.notes:
            print(note, flush=True)
    if dist.main and not as_json:  # the load report (a resumed run's weights are the checkpoint's)
        report = trainer.load_report + (transfer.plan_report(trainer.model, trainer.plan, checked.train.optimizer.name,
                                                             checked.train.epochs) if trainer.plan else [])
        for line in report:
            print(line, flush=True)
    return trainer.fit()


__all__ = ["train_file", "Trainer", "TrainingError", "Progress", "prepare_run"]
