"""`netspec train` and `netspec eval`: the training loop and the run directory.

In: a spec path (+ `--set` overrides). Out: ``runs/<model>/`` holding spec.net (the
resolved spec), model.pt (state_dict of the best or last epoch), checkpoint.pt (model,
optimizer, scheduler, epoch, RNG state, history, spec view), metrics.csv, curves.png and
summary.txt. Every write is atomic. The whole data set lives in tensors; batches are
index slices of a seeded per-epoch permutation, so a resumed run sees the same order.

    netspec train examples/mnist_mlp.net --epochs 1
    netspec train examples/mnist_mlp.net --resume --set train.epochs=3
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
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from . import __version__, ir, load
from . import catalogue as cat
from .build import build_loss, build_model, build_optimizer, build_scheduler
from .data import Prepared, evaluation_split, prepare
from .errors import Diagnostic, NetspecError, error
from .format import unparse
from .metrics import compute, lower_is_better
from .resources import ensure_fits
from .runs import RunDir, read_run_json, resolved_spec_text
from .util import atomic_write, atomic_write_many, atomic_write_text, sha256_text

RESUMABLE_CHANGES = ("train.epochs", "train.optimizer.lr", "train.scheduler", "train.checkpoint_every",
                     "train.device", "train.early_stopping")
EVAL_BATCH = 2048


class TrainingError(NetspecError):
    pass


# ---------------------------------------------------------------- small helpers


def select_device(name: str) -> torch.device:
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise error(f"device `{name}` requested but CUDA is not available", "use device: auto or cpu")
    if name == "mps" and not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
        raise error("device `mps` requested but MPS is not available", "use device: auto or cpu")
    return torch.device(name)


def epoch_order(n: int, seed: int, epoch: int, shuffle: bool) -> torch.Tensor:
    """The sample order of one epoch: a function of (seed, epoch) only, so resume repeats it."""
    if not shuffle:
        return torch.arange(n)
    g = torch.Generator().manual_seed(seed * 1_000_003 + epoch)
    return torch.randperm(n, generator=g)


def weight_params(model: nn.Module) -> list[torch.Tensor]:
    return [p for name, p in model.named_parameters() if name.rsplit(".", 1)[-1].startswith("weight")]


def spec_view(spec: ir.Spec) -> dict[str, str]:
    """Flat `key -> source` view of a spec, for resume diffs."""
    from .expr import source

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


def diff_views(old: dict[str, str], new: dict[str, str]) -> list[tuple[str, str | None, str | None]]:
    keys = sorted(set(old) | set(new))
    return [(k, old.get(k), new.get(k)) for k in keys if old.get(k) != new.get(k)]


# ---------------------------------------------------------------- progress


class Progress:
    """A one-line progress bar on stderr when it is a terminal; silent otherwise."""

    def __init__(self, enabled: bool):
        self.enabled = enabled and sys.stderr.isatty()
        self.last = 0.0

    def update(self, epoch: int, epochs: int, done: int, total: int, loss: float, rate: float) -> None:
        now = time.perf_counter()
        if not self.enabled or (now - self.last < 0.1 and done < total):
            return
        self.last = now
        width = 24
        fill = int(width * done / max(total, 1))
        bar = "#" * fill + "." * (width - fill)
        sys.stderr.write(f"\repoch {epoch}/{epochs} [{bar}] {done}/{total} loss {loss:.4f} {rate:,.0f} samples/s ")
        sys.stderr.flush()

    def clear(self) -> None:
        if self.enabled:
            sys.stderr.write("\r" + " " * 100 + "\r")
            sys.stderr.flush()


# ---------------------------------------------------------------- evaluation


@torch.inference_mode()
def predict_batches(model: nn.Module, x: torch.Tensor, batch: int = EVAL_BATCH) -> torch.Tensor:
    was_training = model.training
    model.eval()
    outs = [model(x[i : i + batch]) for i in range(0, len(x), batch)]
    model.train(was_training)
    return torch.cat(outs) if outs else torch.empty(0)


def evaluate_split(model: nn.Module, loss_fn: nn.Module, x: torch.Tensor, y: torch.Tensor,
                   metrics: tuple[ir.CallValue, ...], task: str, loss_name: str) -> dict[str, float]:
    out = predict_batches(model, x)
    with torch.inference_mode():
        loss = float(loss_fn(out, y))
    result = {"loss": loss}
    result.update(compute(out.float().cpu().numpy(), y.cpu().numpy(), metrics, task, loss_name))
    return result


# ---------------------------------------------------------------- the run


@dataclass
class RunState:  # noqa: D101 - fields say it
    epoch: int = 0  # epochs completed
    history: list[dict] = field(default_factory=list)
    best_value: float | None = None
    best_epoch: int = 0
    bad_epochs: int = 0


def default_run_dir(checked: ir.CheckedSpec) -> Path:
    return Path("runs") / checked.model.name


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
    from .util import open_regular

    try:
        with open_regular(path, what=what) as f:
            return torch.load(f, map_location="cpu", weights_only=True)
    except NetspecError:
        raise
    except Exception as e:  # noqa: BLE001 - any unreadable/foreign file is a user error
        raise error(f"{path}: not a readable netspec {what} file ({type(e).__name__}: "
                    f"{str(e).splitlines()[0] if str(e) else ''})") from None


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


class Trainer:
    def __init__(self, checked: ir.CheckedSpec, run: RunDir, quiet: bool = False, as_json: bool = False):
        self.checked = checked
        self.cfg = checked.train
        self.run = run
        self.out = run.path
        self.quiet = quiet
        self.as_json = as_json
        self.device = select_device(self.cfg.device)
        ensure_fits(checked, str(self.device))
        self.data: Prepared = prepare(checked)
        self.model = build_model(checked.model, self.cfg.seed).to(self.device)
        self.loss_fn = build_loss(self.cfg.loss).to(self.device)
        self.optimizer = build_optimizer(self.cfg.optimizer, self.model.parameters())
        self.x, self.y = (torch.from_numpy(a).to(self.device) for a in self.data.train)
        bs = self.checked.data.batch_size if self.checked.data else None
        self.batch_size = len(self.x) if bs is None else min(bs, len(self.x))
        self.steps_per_epoch = math.ceil(len(self.x) / self.batch_size)
        self.shuffle = self.checked.data.shuffle if self.checked.data else True
        self.scheduler = build_scheduler(self.cfg.scheduler, self.optimizer, self.cfg.epochs, self.steps_per_epoch)
        self.interval = cat.SCHEDULERS[self.cfg.scheduler.name].interval if self.cfg.scheduler else None
        self.val = tuple(torch.from_numpy(a).to(self.device) for a in self.data.val) if self.data.val else None
        self.weights = weight_params(self.model)
        self.closure_opt = cat.OPTIMIZERS[self.cfg.optimizer.name].closure
        self.state = RunState()
        self.best_weights: dict | None = None
        es = self.cfg.early_stopping
        self.monitor = str(es.get("monitor", "val_loss")) if es else ("val_loss" if self.val else "loss")
        if self.monitor.startswith("val_") and self.val is None:
            raise NetspecError.at(es.span if es else ir.NO_SPAN,
                                  f"early stopping monitors `{self.monitor}` but there is no validation data",
                                  "add `validation: 0.1` to the data section, or monitor `loss`")
        mode = str(es.get("mode", "auto")) if es else "auto"
        self.minimize = lower_is_better(self.monitor) if mode == "auto" else mode == "min"
        self.view = spec_view(checked.spec)
        self.spec_hash = sha256_text(json.dumps(self.view, sort_keys=True))

    # -- one step / one epoch

    def loss_of(self, xb: torch.Tensor, yb: torch.Tensor) -> torch.Tensor:
        loss = self.loss_fn(self.model(xb), yb)
        if self.cfg.l1:
            loss = loss + self.cfg.l1 * sum(w.abs().sum() for w in self.weights)
        return loss

    def step(self, xb: torch.Tensor, yb: torch.Tensor) -> torch.Tensor:
        if self.closure_opt:
            def closure() -> torch.Tensor:
                self.optimizer.zero_grad(set_to_none=True)
                loss = self.loss_of(xb, yb)
                loss.backward()
                return loss

            return self.optimizer.step(closure).detach()  # type: ignore[arg-type, union-attr, attr-defined]
        self.optimizer.zero_grad(set_to_none=True)
        loss = self.loss_of(xb, yb)
        loss.backward()
        if self.cfg.clip_grad_norm:
            nn.utils.clip_grad_norm_(self.model.parameters(), self.cfg.clip_grad_norm)
        self.optimizer.step()
        return loss.detach()

    def train_epoch(self, epoch: int, progress: Progress) -> float:
        self.model.train()
        n = len(self.x)
        order = epoch_order(n, self.cfg.seed, epoch, self.shuffle)
        order = order.to(self.device)
        total = 0.0
        start = time.perf_counter()
        full = self.batch_size >= n
        for step, i in enumerate(range(0, n, self.batch_size), start=1):
            if full:
                xb, yb = (self.x[order], self.y[order]) if self.shuffle else (self.x, self.y)
            else:
                idx = order[i : i + self.batch_size]
                xb, yb = self.x.index_select(0, idx), self.y.index_select(0, idx)
            try:
                loss = float(self.step(xb, yb))
            except RuntimeError as e:  # torch's shape/dtype complaints, made readable
                raise TrainingError(Diagnostic(
                    f"training step failed at epoch {epoch}, step {step}: {str(e).splitlines()[0]}",
                    help=f"inputs {list(xb.shape)} {xb.dtype}, targets {list(yb.shape)} {yb.dtype}, "
                         f"loss {self.cfg.loss.name}")) from None
            if not math.isfinite(loss):
                raise TrainingError(Diagnostic(
                    f"loss became {loss} at epoch {epoch}, step {step} of {self.steps_per_epoch}; training stopped",
                    help="lower the learning rate, set clip_grad_norm, or normalize the inputs; "
                    + (f"the checkpoint of epoch {self.state.epoch} in {self.out} is intact" if self.state.epoch
                       else "no checkpoint was written yet")))
            total += loss * len(xb)
            if self.interval == "batch":
                self.scheduler.step()
            done = min(i + self.batch_size, n)
            progress.update(epoch, self.cfg.epochs, done, n, total / done, done / (time.perf_counter() - start + 1e-9))
        progress.clear()
        return total / n

    # -- bookkeeping

    def improved(self, value: float) -> bool:
        best = self.state.best_value
        delta = float(self.cfg.early_stopping.get("min_delta", 0.0)) if self.cfg.early_stopping else 0.0
        if best is None or not math.isfinite(best):
            return math.isfinite(value)
        return value < best - delta if self.minimize else value > best + delta

    def checkpoint(self) -> None:
        """model.pt (the best epoch's weights, or the latest), checkpoint.pt and metrics.csv,
        written together: all three describe the same epoch whatever happens while writing."""
        if not self.run.claimed:
            self.run.claim(resolved_spec_text(self.checked.spec), {
                "netspec_version": __version__, "model": self.checked.model.name, "spec_hash": self.spec_hash,
                "spec": os.path.abspath(self.checked.spec.file)})
        if not self.run.enabled:
            return
        best = self.best_weights if self.cfg.save == "best" and self.best_weights is not None else None
        state = {
            "format": "netspec-checkpoint-1",
            "netspec_version": __version__,
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict() if self.scheduler is not None else None,
            "epoch": self.state.epoch,
            "rng": torch.get_rng_state(),
            "cuda_rng": torch.cuda.get_rng_state_all() if self.device.type == "cuda" else [],
            "history": self.state.history,
            "best_value": self.state.best_value,
            "best_epoch": self.state.best_epoch,
            "bad_epochs": self.state.bad_epochs,
            "best_weights": self.best_weights,
            "spec_view": self.view,
            "spec_hash": self.spec_hash,
            "data_order": {"seed": self.cfg.seed, "scheme": "randperm(seed*1000003+epoch)"},
            "preprocessing": json.dumps(self.data.preprocessing),
        }
        atomic_write_many([
            (self.out / "model.pt", torch_writer(best if best is not None else self.model.state_dict())),
            (self.out / "checkpoint.pt", torch_writer(state)),
            (self.out / "metrics.csv", text_writer(metrics_csv(self.state.history))),
        ])
        self.run.write_meta(epochs_done=self.state.epoch)

    def restore(self, ckpt: dict) -> None:
        self.model.load_state_dict(ckpt["model"])
        self.optimizer.load_state_dict(ckpt["optimizer"])
        # a learning rate changed since the checkpoint applies from here on
        new_lr = dict(self.cfg.optimizer.kwargs).get("lr")
        if new_lr is not None and ckpt["spec_view"].get("train.optimizer.lr") != self.view.get("train.optimizer.lr"):
            for group in self.optimizer.param_groups:
                group["lr"] = new_lr
                if "initial_lr" in group:
                    group["initial_lr"] = new_lr
        if self.scheduler is not None and ckpt.get("scheduler") is not None and \
                ckpt["spec_view"].get("train.scheduler") == self.view.get("train.scheduler"):
            self.scheduler.load_state_dict(ckpt["scheduler"])
        torch.set_rng_state(ckpt["rng"])
        if ckpt.get("cuda_rng") and self.device.type == "cuda":
            torch.cuda.set_rng_state_all(ckpt["cuda_rng"])
        self.state = RunState(ckpt["epoch"], list(ckpt["history"]), ckpt["best_value"], ckpt["best_epoch"],
                              ckpt["bad_epochs"])
        self.best_weights = ckpt.get("best_weights")

    def write_curves(self) -> None:
        rows = self.state.history
        if not rows:
            return
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        keys = [k for k in rows[0] if k not in ("epoch", "lr", "seconds", "samples_per_s")]
        bases = list(dict.fromkeys(k.removeprefix("val_") for k in keys))
        fig, axes = plt.subplots(1, len(bases), figsize=(5 * len(bases), 3.6), squeeze=False)
        epochs = [r["epoch"] for r in rows]
        for ax, base in zip(axes[0], bases):
            for key, label in ((base, "train"), (f"val_{base}", "validation")):
                if key in rows[0]:
                    ax.plot(epochs, [r.get(key, float("nan")) for r in rows], label=label, marker="." if len(rows) < 50 else None)
            ax.set_title(base)
            ax.set_xlabel("epoch")
            if base == "loss" and all(r.get("loss", 1) > 0 for r in rows):
                ax.set_yscale("log")
            ax.legend()
        fig.suptitle(self.checked.model.name)
        fig.tight_layout()
        atomic_write(self.out / "curves.png", lambda tmp: fig.savefig(tmp, format="png", dpi=90))
        plt.close(fig)

    def emit(self, row: dict, final: bool = False) -> None:
        if self.as_json:
            print(json.dumps(row), flush=True)
            return
        epochs = self.cfg.epochs
        every = max(1, epochs // 100)
        if self.quiet and not final and row.get("epoch", 0) % max(1, epochs // 10) and row.get("epoch") != epochs:
            return
        if not final and row["epoch"] % every and row["epoch"] != epochs and row["epoch"] != 1:
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
        progress = Progress(not (self.quiet or self.as_json))
        train_n = len(self.x)
        stopped_early = False
        while self.state.epoch < self.cfg.epochs:
            epoch = self.state.epoch + 1
            start = time.perf_counter()
            lr = self.optimizer.param_groups[0]["lr"]
            train_loss = self.train_epoch(epoch, progress)
            seconds = time.perf_counter() - start
            row: dict = {"epoch": epoch, "loss": train_loss}
            if self.val is not None:
                vx, vy = self.val
                res = evaluate_split(self.model, self.loss_fn, vx, vy, self.cfg.metrics, self.data.task,
                                     self.cfg.loss.name)
                row.update({f"val_{k}": v for k, v in res.items()})
            elif self.cfg.metrics:
                res = evaluate_split(self.model, self.loss_fn, self.x, self.y, self.cfg.metrics, self.data.task,
                                     self.cfg.loss.name)
                row.update({k: v for k, v in res.items() if k != "loss"})
            row.update({"lr": lr, "seconds": seconds, "samples_per_s": train_n / max(seconds, 1e-9)})
            if self.interval == "epoch":
                self.scheduler.step()
            elif self.interval == "plateau":
                self.scheduler.step(row.get("val_loss", train_loss))
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
            stop = es is not None and self.state.bad_epochs >= int(es.get("patience", 3))
            if epoch % self.cfg.checkpoint_every == 0 or epoch == self.cfg.epochs or stop:
                self.checkpoint()
            self.emit(row)
            if stop:
                stopped_early = True
                if not self.as_json:
                    print(f"early stopping: `{self.monitor}` has not improved for {self.state.bad_epochs} epochs "
                          f"(best {self.state.best_value:.4g} at epoch {self.state.best_epoch})", flush=True)
                break
        return self.finish(stopped_early)

    def finish(self, stopped_early: bool) -> dict:
        result: dict = {"epochs": self.state.epoch, "stopped_early": stopped_early,
                        "best_epoch": self.state.best_epoch, self.monitor: self.state.best_value}
        if self.data.test is not None:
            # test the weights model.pt holds: the best epoch's (kept in memory) or the last
            model = self.model
            if self.cfg.save == "best" and self.best_weights is not None:
                model = copy.deepcopy(self.model)
                model.load_state_dict(self.best_weights)
            tx, ty = (torch.from_numpy(a).to(self.device) for a in self.data.test)
            res = evaluate_split(model, self.loss_fn, tx, ty, self.cfg.metrics, self.data.task, self.cfg.loss.name)
            result.update({f"test_{k}": v for k, v in res.items()})
        self.write_curves()
        self.write_summary(result)
        self.run.finish(result)
        if self.as_json:
            print(json.dumps({"final": result}), flush=True)
        else:
            shown = "  ".join(f"{k} {v:.4g}" for k, v in result.items() if k.startswith("test_"))
            if shown:
                print(f"test: {shown}")
            print(f"run saved in {self.out}/ (model.pt, checkpoint.pt, metrics.csv, curves.png, summary.txt)")
        return result

    def write_summary(self, result: dict) -> None:
        from .summary import summary_text

        lines = [summary_text(self.checked), "", f"device: {self.device}", f"train samples: {len(self.x)}",
                 f"batch size: {self.batch_size}", f"spec hash: {self.spec_hash[:16]}", ""]
        lines += [f"{k}: {v}" for k, v in result.items()]
        atomic_write_text(self.out / "summary.txt", "\n".join(lines) + "\n")


def train_file(path: str, overrides: tuple[str, ...] = (), out_dir: str | None = None, resume: bool = False,
               quiet: bool = False, as_json: bool = False) -> dict:
    checked = load(path, overrides)
    for w in checked.warnings:
        print(w.render(), file=sys.stderr)
    out = Path(out_dir) if out_dir else default_run_dir(checked)
    ckpt = None
    if resume:
        ckpt_path = out / "checkpoint.pt"
        if not ckpt_path.exists():
            raise error(f"--resume: {ckpt_path} does not exist", "train without --resume to start a run")
        ckpt = load_checkpoint(ckpt_path)
        changes = diff_views(ckpt["spec_view"], spec_view(checked.spec))
        blocked = [c for c in changes if not c[0].startswith(RESUMABLE_CHANGES)]
        if changes:
            text = "\n".join(f"  {k}: {a if a is not None else '(absent)'} -> {b if b is not None else '(absent)'}"
                             for k, a, b in changes)
            if blocked:
                raise error(f"--resume: the spec changed since {ckpt_path} was written:\n{text}",
                            "only epochs, the learning rate, the scheduler, early_stopping, device and "
                            "checkpoint_every may change on resume; start a new run instead")
            print(f"resuming with changed settings:\n{text}", file=sys.stderr)
        done = ckpt["epoch"] >= checked.train.epochs or _stopped_early(ckpt, checked)
        if done and read_run_json(out).get("finished"):
            raise error(f"--resume: the run already finished {ckpt['epoch']} of {checked.train.epochs} epochs",
                        f"raise the epoch count, e.g. --set train.epochs={ckpt['epoch'] + 5}")
    run = RunDir(out, resume=resume)
    trainer = Trainer(checked, run, quiet=quiet, as_json=as_json)
    if ckpt is not None:
        trainer.restore(ckpt)
        run.claimed = True
        run.claim_resumed(resolved_spec_text(checked.spec))
        if not as_json:
            print(f"resumed from {out / 'checkpoint.pt'} at epoch {trainer.state.epoch}", file=sys.stderr)
        if trainer.state.epoch >= checked.train.epochs or _stopped_early(ckpt, checked):
            # killed after its last checkpoint, before its outputs: finish them
            if not as_json:
                print("the run had finished training; writing its final outputs", file=sys.stderr)
            return trainer.finish(stopped_early=trainer.state.epoch < checked.train.epochs)
    if not as_json and not quiet:
        print(f"training {checked.model.name} on {trainer.device}: {len(trainer.x):,} samples, "
              f"batch {trainer.batch_size}, {checked.train.epochs} epochs", flush=True)
    return trainer.fit()


def _stopped_early(ckpt: dict, checked: ir.CheckedSpec) -> bool:
    es = checked.train.early_stopping
    return es is not None and int(ckpt.get("bad_epochs", 0)) >= int(es.get("patience", 3))


def trained_model(checked: ir.CheckedSpec, weights: str | None, spec_path: str) -> tuple[nn.Module, Path]:
    """The checked model with trained weights (default: runs/<model>/model.pt)."""
    weights_path = Path(weights) if weights else default_run_dir(checked) / "model.pt"
    if not weights_path.exists():
        raise error(f"{weights_path}: no such file", f"train first (netspec train {spec_path}) or pass --weights PATH")
    ensure_fits(checked, "cpu", training=False)
    model = build_model(checked.model, checked.train.seed)
    try:
        model.load_state_dict(load_state_dict_file(weights_path))
    except RuntimeError as e:
        raise error(f"{weights_path}: weights do not fit model `{checked.model.name}`: "
                    f"{str(e).splitlines()[0]}") from None
    return model, weights_path


def run_checkpoint(weights: Path) -> tuple[dict | None, str]:
    """(normalisation statistics, spec hash) saved in the checkpoint beside `weights`, if any."""
    ckpt = weights.parent / "checkpoint.pt"
    if not ckpt.exists():
        return None, ""
    state = load_torch(ckpt, "checkpoint")
    if not isinstance(state, dict):
        return None, ""
    stats = json.loads(state["preprocessing"]) if state.get("preprocessing") else None
    return stats, str(state.get("spec_hash", ""))


def evaluate_file(path: str, weights: str | None = None, overrides: tuple[str, ...] = ()) -> dict:
    checked = load(path, overrides)
    model, weights_path = trained_model(checked, weights, path)
    data = prepare(checked, stats=run_checkpoint(weights_path)[0])
    prefix, split = evaluation_split(data, path)
    x, y = (torch.from_numpy(a) for a in split)
    res = evaluate_split(model, build_loss(checked.train.loss), x, y, checked.train.metrics, data.task,
                         checked.train.loss.name)
    return {f"{prefix}{k}": v for k, v in res.items()} | {"samples": len(x)}

