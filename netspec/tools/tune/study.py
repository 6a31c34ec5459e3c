"""One worker of a study: trials, each an ordinary training run, until the study holds
exactly the requested number of finished trials.

In: a ``Job`` (the checked spec with its search section, the tune folder, the budget) and
an Optuna study. Out: trials in the study, each with its run folder `trial-NNN/` (spec.net
with the trial's values written in, model.pt, checkpoint.pt, metrics.csv, ...).

What counts. A trial is *done* when it is COMPLETE, PRUNED, or FAIL with an error of its
own (`netspec_error`: a loss that diverged, a value that does not train): those use up the
budget. A trial whose process was interrupted (Ctrl-C) or killed is FAIL without an error
of its own: it does not count, and a WAITING copy with the same values retries it (at most
MAX_RETRY times; Optuna's RetryHeartbeatStaleTrialCallback).

The budget gate (exactly N, for any storage, no lock): a trial may run only if

    done(all others) + #{RUNNING or WAITING trials numbered below it}  <  N.

Trial numbers are given in creation order, so of trials that would overshoot the budget the
highest-numbered sees all the others and stands down (FAIL, `netspec_overbudget`, no values;
samplers ignore it). A killed worker's RUNNING trial is found by the others on the same
machine at once (its process is gone) and, on a database, on other machines by heartbeat.
"""

from __future__ import annotations

import contextlib
import io
import math
import os
import socket
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from netspec import ir
from netspec.errors import NetspecError
from netspec.tools.tune.space import suggest, texts, trial_spec, value_exprs
from netspec.tools.tune.storage import MAX_RETRY

POLL_S = 0.5  # a waiting worker looks at the study this often
ORPHAN_AFTER_S = 60  # a RUNNING trial without a worker tag older than this is a dead process's


class OverBudget(Exception):
    """The study has enough finished and running trials: this one stands down."""


class TrialFailed(Exception):
    """The trial's own error (kept in its `netspec_error` attribute); the study goes on."""


class Pruned(Exception):
    """The pruner stopped the trial after `epoch`."""

    def __init__(self, epoch: int):
        super().__init__(f"pruned after epoch {epoch}")
        self.epoch = epoch


@dataclass
class Job:
    """What a worker needs: the spec checked with its search section, where trials go."""

    checked: ir.CheckedSpec
    folder: Path
    trials: int
    parent: int = 0  # pid of the `netspec tune` that started this worker (0: runs in it)
    current: int | None = None  # the trial id this worker runs now

    @property
    def config(self) -> ir.SearchConfig:
        assert self.checked.search is not None
        return self.checked.search

    def orphaned(self) -> bool:
        return self.parent > 1 and os.getppid() != self.parent


# ---------------------------------------------------------------- who runs what


def _stat(pid: int) -> tuple[str, str]:
    """(state, start time in clock ticks since boot) of a process, from /proc; ("?", "?")
    where there is no /proc. The start time tells a reused pid from the process it was."""
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return fields[0], fields[19]
    except (OSError, IndexError):
        return "?", "?"


WORKER = f"{socket.gethostname()}:{os.getpid()}:{_stat(os.getpid())[1]}"


def worker_alive(tag: str) -> bool | None:
    """Whether the process a `host:pid:start` tag names runs (None: another machine's). A
    zombie (killed, not yet waited for by its parent) is dead."""
    host, _, rest = tag.partition(":")
    pid_text, _, start = rest.partition(":")
    if host != socket.gethostname() or not pid_text.isdigit():
        return None
    pid = int(pid_text)
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass
    state, started = _stat(pid)
    return state not in ("Z", "X") and start in ("?", started)


def outcome(t: Any) -> str:
    """complete | pruned | failed (its own error: counts) | interrupted (retried) |
    skipped (stood down for the budget) | running | waiting."""
    state = t.state.name
    if state == "FAIL":
        if t.user_attrs.get("netspec_overbudget"):
            return "skipped"
        return "failed" if t.user_attrs.get("netspec_error") else "interrupted"
    return state.lower()


DONE = ("complete", "pruned", "failed")


def counts(trials: list[Any]) -> Counter:
    return Counter(outcome(t) for t in trials)


def done_count(trials: list[Any]) -> int:
    c = counts(trials)
    return sum(c[k] for k in DONE)


# ---------------------------------------------------------------- failing and retrying


def retry(study: Any, trial_id: int) -> None:
    """A WAITING copy of a stopped trial, with its values (at most MAX_RETRY copies)."""
    import warnings

    from optuna.exceptions import ExperimentalWarning
    from optuna.storages import RetryHeartbeatStaleTrialCallback

    frozen = study._storage.get_trial(trial_id)
    if not frozen.params:
        return  # stopped before it had values: nothing to retry
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ExperimentalWarning)
        RetryHeartbeatStaleTrialCallback(max_retry=MAX_RETRY)(study, frozen)


def reap(study: Any) -> list[int]:
    """Fail and retry the RUNNING trials of workers that died on this machine (and, on a
    database, those whose heartbeat stopped). Returns the numbers failed here. When two
    workers reap one trial, the storage lets one of them fail it; that one retries it."""
    import warnings

    from optuna.exceptions import ExperimentalWarning, UpdateFinishedTrialError
    from optuna.storages import fail_stale_trials
    from optuna.trial import TrialState

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ExperimentalWarning)
        fail_stale_trials(study)  # heartbeats (databases); a no-op on the journal
    failed = []
    now = time.time()
    for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        tag = t.user_attrs.get("netspec_worker")
        if tag is None:
            started = t.datetime_start.timestamp() if t.datetime_start else now
            if now - started < ORPHAN_AFTER_S:
                continue
        elif worker_alive(tag) is not False:
            continue
        try:
            study._storage.set_trial_state_values(t._trial_id, state=TrialState.FAIL)
        except UpdateFinishedTrialError:
            continue  # another worker failed it first (and retries it)
        failed.append(t.number)
        retry(study, t._trial_id)
    return failed


# ---------------------------------------------------------------- the worker loop


def run_worker(job: Job, study: Any, after_trial: Any = None) -> None:
    """Run trials until the study holds `job.trials` done ones. KeyboardInterrupt (Ctrl-C,
    SIGTERM) stops the trial in hand, which is marked interrupted and queued for a retry."""
    while True:
        reap(study)
        trials = study.get_trials(deepcopy=False)
        c = counts(trials)
        done = sum(c[k] for k in DONE)
        if done >= job.trials or job.orphaned():
            return
        if done + c["running"] >= job.trials and c["waiting"] == 0:
            time.sleep(POLL_S)  # the others are finishing the budget; one of them may yet fail
            continue
        job.current = None
        try:
            study.optimize(lambda trial: objective(job, trial), n_trials=1, catch=(OverBudget, TrialFailed),
                           gc_after_trial=False)
        except KeyboardInterrupt:
            _stop_current(job, study)
            raise
        if after_trial is not None:
            after_trial()


def _stop_current(job: Job, study: Any) -> None:
    """After an interrupt: retry the trial this worker was running (Optuna marked it FAIL)."""
    import signal

    with contextlib.suppress(ValueError):  # not the main thread
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # a second Ctrl-C must not cut this short
    if job.current is None:
        return
    from optuna.trial import TrialState

    t = study._storage.get_trial(job.current)
    if t.state == TrialState.RUNNING:  # the interrupt came between the objective and tell
        with contextlib.suppress(Exception):
            study._storage.set_trial_state_values(t._trial_id, state=TrialState.FAIL)
        t = study._storage.get_trial(job.current)
    if outcome(t) == "interrupted":
        retry(study, t._trial_id)


def _ahead(study: Any, number: int) -> int:
    n = 0
    for t in study.get_trials(deepcopy=False):
        if t.number == number:
            continue
        kind = outcome(t)
        if kind in DONE or (kind in ("running", "waiting") and t.number < number):
            n += 1
    return n


def objective(job: Job, trial: Any) -> float:
    import optuna

    job.current = trial._trial_id
    trial.set_user_attr("netspec_worker", WORKER)
    if _ahead(trial.study, trial.number) >= job.trials:
        trial.set_user_attr("netspec_overbudget", True)
        raise OverBudget(f"trial {trial.number}: the budget of {job.trials} is taken")
    values = value_exprs(job.config, suggest(trial, job.config))
    out = job.folder / f"trial-{trial.number:03d}"
    trial.set_user_attr("netspec_values", texts(values))
    trial.set_user_attr("netspec_run", str(out))
    started = time.perf_counter()
    try:
        value, epochs = train_trial(job, trial, values, out)
    except Pruned as p:
        trial.set_user_attr("netspec_epochs", p.epoch)
        trial.set_user_attr("netspec_seconds", round(time.perf_counter() - started, 2))
        raise optuna.TrialPruned(str(p)) from None
    except NetspecError as e:
        trial.set_user_attr("netspec_error", _first_line(e))
        raise TrialFailed(str(e)) from None
    except (MemoryError, RuntimeError, ValueError, ArithmeticError, OSError) as e:
        trial.set_user_attr("netspec_error", f"{type(e).__name__}: {str(e).strip().splitlines()[0][:300]}"
                            if str(e).strip() else type(e).__name__)
        raise TrialFailed(str(e)) from None
    trial.set_user_attr("netspec_epochs", epochs)
    trial.set_user_attr("netspec_seconds", round(time.perf_counter() - started, 2))
    return value


def _first_line(e: NetspecError) -> str:
    d = next((d for d in e.diagnostics if d.severity == "error"), e.diagnostics[0] if e.diagnostics else None)
    if d is None:
        return "error"
    where = f"{d.span.file}:{d.span.line}:{d.span.column}: " if d.span else ""
    return (where + d.message.splitlines()[0])[:300]


def train_trial(job: Job, trial: Any, values: dict[str, ir.Expr], out: Path) -> tuple[float, int]:
    """Train the trial's spec in run folder `out`; (the metric of the epoch model.pt keeps,
    epochs run). Each epoch's metric goes to the pruner."""
    from netspec.checker import check
    from netspec.train.distributed import Dist
    from netspec.train.runs import RunDir
    from netspec.train.trainer import Trainer, prepare_run

    config = job.config
    checked = check(trial_spec(job.checked.spec, values), target=None, read_data=True)
    pruning = config.pruner != "none"

    def on_epoch(row: dict[str, Any]) -> None:
        if job.orphaned():
            raise KeyboardInterrupt  # `netspec tune` was killed: stop as at Ctrl-C
        value = row.get(config.metric)
        if isinstance(value, (int, float)) and math.isfinite(value):
            trial.report(float(value), int(row["epoch"]))
            if pruning and trial.should_prune():
                raise Pruned(int(row["epoch"]))

    quiet = io.StringIO()
    with contextlib.redirect_stdout(quiet), contextlib.redirect_stderr(quiet):
        data, _ = prepare_run(checked, Dist())
        trainer = Trainer(checked, RunDir(out), quiet=True, data=data)
        trainer.on_epoch = on_epoch
        try:
            trainer.fit()
        except Pruned:
            trainer.finish(stopped_early=True)  # an ordinary run folder, stopped by the pruner
            raise
    history = trainer.state.history
    kept = trainer.state.best_epoch if checked.train.save == "best" and trainer.state.best_epoch else \
        history[-1]["epoch"]
    row = next(r for r in history if r["epoch"] == kept)
    value = row.get(config.metric)
    if not isinstance(value, (int, float)) or not math.isfinite(value):
        raise NetspecError.at(config.span, f"the trial reported {config.metric} = {value} at epoch {kept}")
    return float(value), len(history)


def make_sampler(job: Job, index: int, existing: int) -> Any:
    """The sampler of worker `index`: seeded from the spec's seed, the worker and how many
    trials the study had (a continued study does not redraw its first values)."""
    import warnings

    import optuna
    from optuna.exceptions import ExperimentalWarning

    config = job.config
    seed = (job.checked.train.seed * 1_000_003 + existing * 7919 + index) % (2**32)
    if config.sampler == "tpe":
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ExperimentalWarning)
            return optuna.samplers.TPESampler(seed=seed, n_startup_trials=max(2, min(10, config.trials // 4)),
                                              constant_liar=True)
    return optuna.samplers.RandomSampler(seed=seed)  # random; grid points are queued, not sampled


def make_pruner(job: Job) -> Any:
    import optuna

    config = job.config
    epochs = job.checked.train.epochs
    searched = any(p.key == "train.epochs" for p in config.params)
    if config.pruner == "median":
        return optuna.pruners.MedianPruner(n_startup_trials=max(2, min(5, config.trials // 4)),
                                           n_warmup_steps=max(1, epochs // 4))
    if config.pruner == "hyperband":
        return optuna.pruners.HyperbandPruner(min_resource=1, max_resource="auto" if searched else max(epochs, 1),
                                              reduction_factor=3)
    return optuna.pruners.NopPruner()
