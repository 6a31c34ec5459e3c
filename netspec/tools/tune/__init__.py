"""`netspec tune`: hyperparameter search on Optuna over a spec's `search` section.

    command.py   the study around the workers: check, open, seed, run, report (tune_file)
    study.py     one worker: the budget gate, trials as run folders, pruning, kill/retry
    space.py     a trial's values, written into the spec; the spec's own values
    storage.py   the tune folder, the journal (flock) or a database URL, study identity
    report.py    progress lines, trials.csv, best.net, tune.png, importances, summary
    worker.py    the entry point of a worker process

Optuna is imported only by `netspec tune` (never by check or --help).
"""

from __future__ import annotations

from netspec.tools.tune.command import TuneInterrupted, tune_file

__all__ = ["tune_file", "TuneInterrupted"]
