"""`netspec tune SPEC`: the study around the workers.

In: a spec with a `search` section (+ `--set` overrides), the budget (`--trials`), the
workers on this machine, an optional storage URL and folder. Out: the study (journal in the
tune folder, or the database), one run folder per trial, trials.csv, best.net, tune.png, and
the summary as a dict (the CLI prints it).

The coordinator checks the spec and its search space once (every value compiled), opens or
creates the study (refusing one of another spec), queues the first trials (the spec's own
values; every grid point), fails and retries trials whose process died, then runs the
worker loop here (`--workers 1`) or in N worker processes, saying each finished trial.
Ctrl-C (or SIGTERM) stops every worker's trial in hand, which is queued for a retry; the
study is saved, and the same command continues it.

    netspec tune iris_search.net
    netspec tune iris_search.net --trials 30 --workers 2
    netspec tune iris_search.net --storage postgresql://me@db-host/studies
"""

from __future__ import annotations

import contextlib
import itertools
import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from netspec import ir
from netspec.errors import NetspecError, Tell, error
from netspec.tools.tune.report import Progress, queued_retries, summary, write_files
from netspec.tools.tune.space import own_params, space_text
from netspec.tools.tune.storage import journal_writes, open_storage, open_study, prepare_folder
from netspec.tools.tune.study import Job, done_count, make_pruner, make_sampler, outcome, reap, run_worker

WORKER_STOP_S = 120  # after Ctrl-C, how long the workers get to save their trial before they are killed


class TuneInterrupted(Exception):
    """Ctrl-C or SIGTERM: the study is saved; `summary` says where it stands."""

    def __init__(self, summary: dict[str, Any], stopped: list[str]):
        super().__init__("interrupted")
        self.summary, self.stopped = summary, stopped


def quiet_optuna() -> None:
    import optuna

    optuna.logging.set_verbosity(optuna.logging.ERROR)
    optuna.logging.disable_propagation()


def sigterm_as_interrupt() -> None:
    """SIGTERM stops a study as Ctrl-C does (a scheduler's `kill`): the trial is saved."""

    def handler(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt

    with contextlib.suppress(ValueError):
        signal.signal(signal.SIGTERM, handler)


def load_search(spec_path: str, overrides: tuple[str, ...]) -> ir.CheckedSpec:
    """The spec checked with its data and every value of its search space compiled."""
    from netspec import load

    checked = load(spec_path, overrides, read_data=True)
    if checked.search is None:
        raise error(f"{spec_path}: no `search` section, so nothing to tune",
                    "add one, e.g.\n    search {\n        trials: 20\n        metric: val_accuracy\n"
                    "        train.optimizer.lr: loguniform(1e-4, 1e-1)\n    }")
    return checked


def identity(checked: ir.CheckedSpec) -> dict[str, Any]:
    """What makes a study this spec's: the spec without its search section (as written, so
    the same file on two machines agrees), the space and the metric."""
    from netspec.checker.search import without_search
    from netspec.syntax.format import unparse
    from netspec.util import sha256_text

    assert checked.search is not None
    text = unparse(without_search(checked.spec))
    space = space_text(checked.search)
    key = sha256_text(json.dumps([text, space, checked.search.metric]))
    return {"netspec_identity": key, "netspec_spec": text, "netspec_space": space,
            "netspec_metric": checked.search.metric, "netspec_model": checked.model.name}


def seed_study(study: Any, checked: ir.CheckedSpec, total: int, created: bool) -> None:
    """A new study's first trial runs the spec's own values, where the space holds them. A
    grid study queues its points (shuffled by the seed when the budget takes only some),
    topped up when a later `--trials` asks for more of them."""
    config = checked.search
    assert config is not None
    if config.sampler != "grid":
        own = own_params(checked, config) if created else None
        if own is not None:
            study.enqueue_trial(own, user_attrs={"netspec_baseline": True})
        return
    grid = [[(p.key, label) for label in _grid_values(p)] for p in config.params]
    points = [dict(combo) for combo in itertools.product(*grid)]
    if total < len(points):
        random.Random(checked.train.seed).shuffle(points)
    trials = [x for x in study.get_trials(deepcopy=False) if outcome(x) not in ("skipped", "interrupted")]
    taken = [x.params for x in trials]
    for params in [q for q in points if q not in taken][:max(0, total - len(trials))]:
        study.enqueue_trial(params)


def _grid_values(p: ir.SearchParam) -> list[Any]:
    if p.kind == "choice":
        return list(p.labels)
    return list(range(int(p.low), int(p.high) + 1, p.step))  # type: ignore[arg-type]


@journal_writes()  # a full disk under the journal: said with its path, not Optuna's assertion
def tune_file(spec_path: str, overrides: tuple[str, ...] = (), trials: int | None = None, workers: int = 1,
              storage: str | None = None, out: str | None = None, study_name: str | None = None,
              as_json: bool = False, say: Tell | None = None) -> dict[str, Any]:
    """Run (or continue) the study; the summary. Raises TuneInterrupted on Ctrl-C."""
    try:
        import optuna  # noqa: F401
    except ImportError:
        raise error("netspec tune needs Optuna", "pip install optuna (it comes with netspec's dependencies)") from None
    quiet_optuna()
    say = say or (lambda line: None)
    checked = load_search(spec_path, overrides)
    config = checked.search
    assert config is not None
    total = trials if trials is not None else config.trials
    if config.sampler == "grid" and trials is not None and trials > _grid_size(config):
        raise error(f"--trials {trials}: the grid has {_grid_size(config)} points", f"--trials {_grid_size(config)}")
    name = study_name or checked.model.name
    folder = Path(out) if out else Path("runs") / f"{checked.model.name}-tune"
    if storage is not None:  # connect first: a URL that fails leaves no folder behind
        store = open_storage(folder, storage)
        prepare_folder(folder, spec_path, storage)
    else:
        prepare_folder(folder, spec_path, storage)
        store = open_storage(folder, storage)
    study, created = open_study(store, name, identity(checked), config.minimize, storage)
    seed_study(study, checked, total, created)
    job = Job(checked, folder, total)
    progress = Progress(config, total, say, as_json)
    progress.skip_existing(study.get_trials(deepcopy=False))
    reap(study)  # trials left running by a process that died: failed now, retried, said below
    trials_now = study.get_trials(deepcopy=False)
    done = done_count(trials_now)
    if done and not as_json:
        say(f"continuing study `{name}` in {folder}/: {done} of {total} trials done")
        progress.update(trials_now)
    elif not as_json:
        where = f"{storage}" if storage else f"{folder}/"
        say(f"study `{name}` ({where}): {total} trials, {config.metric} "
            f"({'minimised' if config.minimize else 'maximised'}), sampler {config.sampler}, pruner {config.pruner}"
            + (f", {workers} workers" if workers > 1 else ""))
    try:
        if workers == 1:
            _run_here(job, study, store, name, len(trials_now), progress, spec_path, storage)
        else:
            _run_workers(job, study, spec_path, overrides, storage, name, workers, progress)
    except KeyboardInterrupt:
        trials_now = study.get_trials(deepcopy=False)
        progress.update(trials_now)
        files = write_files(folder, trials_now, config, checked.spec, name, checked.model.name, final=True)
        raise TuneInterrupted(summary(study, trials_now, config, name, folder, total, files, spec_path),
                              [str(n) for n in queued_retries(trials_now)]) from None
    trials_now = study.get_trials(deepcopy=False)
    progress.update(trials_now)
    files = write_files(folder, trials_now, config, checked.spec, name, checked.model.name, final=True)
    result = summary(study, trials_now, config, name, folder, total, files, spec_path)
    if result["done"] < total:
        raise error(f"the workers stopped with {result['done']} of {total} trials done (their messages are above)",
                    "run the same command to continue the study")
    return result


def _grid_size(config: ir.SearchConfig) -> int:
    size = 1
    for p in config.params:
        size *= len(_grid_values(p))
    return size


def _run_here(job: Job, study: Any, store: Any, name: str, existing: int, progress: Progress, spec_path: str,
              url: str | None) -> None:
    import optuna

    sigterm_as_interrupt()
    study = optuna.load_study(study_name=name, storage=store, sampler=make_sampler(job, 0, existing),
                              pruner=make_pruner(job))
    config = job.config

    def after_trial() -> None:
        trials = study.get_trials(deepcopy=False)
        if progress.update(trials):
            write_files(job.folder, trials, config, job.checked.spec, name, job.checked.model.name, final=False)

    run_worker(job, study, after_trial)


def _run_workers(job: Job, study: Any, spec_path: str, overrides: tuple[str, ...], url: str | None, name: str,
                 workers: int, progress: Progress) -> None:
    """N worker processes on this machine; this one says their trials as they finish, fails
    and retries the trial of a worker that dies, and on Ctrl-C waits for them to save theirs."""
    existing = len(study.get_trials(deepcopy=False))
    threads = max(1, (os.cpu_count() or 1) // workers)
    procs = []
    for i in range(workers):
        args = {"spec": spec_path, "overrides": list(overrides), "folder": str(job.folder), "storage": url,
                "study": name, "trials": job.trials, "index": i, "existing": existing, "parent": os.getpid(),
                "threads": threads}
        procs.append(subprocess.Popen([sys.executable, "-m", "netspec.tools.tune.worker", json.dumps(args)],
                                      stdout=subprocess.DEVNULL))
    config = job.config
    handled: set[int] = set()
    sigterm_as_interrupt()
    try:
        while True:
            running = [p for p in procs if p.poll() is None]
            for p in procs:
                if p.returncode is not None and p.returncode != 0 and p.pid not in handled:
                    handled.add(p.pid)
                    reap(study)  # its trial, if it was killed inside one
            trials = study.get_trials(deepcopy=False)
            if progress.update(trials):
                write_files(job.folder, trials, config, job.checked.spec, name, job.checked.model.name, final=False)
            if not running:
                break
            time.sleep(0.5)
    except KeyboardInterrupt:
        with contextlib.suppress(ValueError):
            signal.signal(signal.SIGINT, signal.SIG_IGN)
        _stop_workers(procs)
        reap(study)
        raise


def _stop_workers(procs: list[subprocess.Popen]) -> None:
    """Let the workers stop (each saves its trial for a retry): a Ctrl-C at the terminal
    reached them too; a SIGTERM or SIGINT sent to this process alone is passed on after a
    moment. The ones that do not stop in time are killed (their trials are retried)."""
    deadline = time.time() + 3
    while time.time() < deadline and any(p.poll() is None for p in procs):
        time.sleep(0.1)
    for p in procs:
        if p.poll() is None:
            with contextlib.suppress(OSError):
                p.send_signal(signal.SIGINT)
    deadline = time.time() + WORKER_STOP_S
    for p in procs:
        try:
            p.wait(timeout=max(0.1, deadline - time.time()))
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()


def worker_main(args: dict[str, Any]) -> int:
    """A worker process (`python -m netspec.tools.tune.worker ARGS`): exit 0 when the study is
    done, 130 when interrupted, 1 on an error (said on stderr)."""
    import optuna

    quiet_optuna()
    sigterm_as_interrupt()
    try:
        import torch

        torch.set_num_threads(int(args.get("threads") or 1))
        checked = load_search(args["spec"], tuple(args["overrides"]))
        folder = Path(args["folder"])
        store = open_storage(folder, args["storage"])
        job = Job(checked, folder, int(args["trials"]), parent=int(args["parent"]))
        study = optuna.load_study(study_name=args["study"], storage=store,
                                  sampler=make_sampler(job, int(args["index"]), int(args["existing"])),
                                  pruner=make_pruner(job))
        with journal_writes():
            run_worker(job, study)
        return 0
    except KeyboardInterrupt:
        with contextlib.suppress(ValueError):
            signal.signal(signal.SIGINT, signal.SIG_IGN)
        return 130
    except NetspecError as e:
        print(e.render(), file=sys.stderr)
        return 1
    except Exception as e:  # noqa: BLE001 - no traceback for users, as in the CLI
        if os.environ.get("NETSPEC_DEBUG"):
            raise
        print(f"netspec tune worker: internal error: {type(e).__name__}: {e}", file=sys.stderr)
        return 3
