"""`netspec tune`: studies on iris (tiny trials: a few epochs on 150 rows), through the
command line as users run them. The oracles: the study in its journal (Optuna reads it
back), the trial run folders, and netspec itself (retraining best.net, diff, --resume)."""

from __future__ import annotations

import csv
import json
import os
import signal
import socket
import subprocess
import time
from pathlib import Path

import pytest

from tests.conftest import FIXTURES, netspec_cmd

IRIS = FIXTURES / "data" / "iris.csv"
pytestmark = pytest.mark.slow


def iris_spec(epochs: int = 3, search: str = "", trials: int = 6, extra_train: str = "") -> str:
    return f"""let hidden = 8
model iris {{
    input: [4]
    fc1: Linear(hidden)
    ReLU
    Linear(3)
}}
data {{
    train: csv("{IRIS}", target="species")
    validation: 0.3
    stratify: true
    normalize: standard
    batch_size: 16
}}
train {{
    loss: CrossEntropyLoss
    optimizer: SGD(lr=1e-3)
    epochs: {epochs}
    metrics: [accuracy]
    seed: 3
{extra_train}}}
search {{
    trials: {trials}
    metric: val_accuracy
{search or '''    hidden: choice(4, 8, 32)
    train.optimizer.lr: loguniform(1e-3, 1.0)
    data.batch_size: choice(16, 64)'''}
}}
"""


def tune(*args: str, cwd: Path, timeout: int = 300, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([*netspec_cmd(), "tune", *args], capture_output=True, text=True, cwd=cwd, timeout=timeout,
                          env={**os.environ, **(env or {})})


def rows(folder: Path) -> list[dict]:
    with open(folder / "trials.csv", newline="") as f:
        return list(csv.DictReader(f))


def journal_trials(folder: Path, name: str = "iris") -> list:
    import optuna

    from netspec.tools.tune.storage import open_storage

    optuna.logging.set_verbosity(optuna.logging.ERROR)
    return optuna.load_study(study_name=name, storage=open_storage(folder, None)).get_trials()


def wait_mid_trial(folder: Path, number: int, proc: subprocess.Popen, timeout: float = 120) -> None:
    """Until trial `number` has written its first checkpoint and is not finished."""
    run = folder / f"trial-{number:03d}"
    deadline = time.time() + timeout
    while time.time() < deadline:
        assert proc.poll() is None, proc.communicate()
        if (run / "checkpoint.pt").exists() and not json.loads((run / "run.json").read_text()).get("finished"):
            return
        time.sleep(0.05)
    raise AssertionError(f"trial {number} never started")


def test_study_beats_the_specs_own_values_and_writes_its_files(tmp_path):
    (tmp_path / "iris.net").write_text(iris_spec())
    r = tune("iris.net", "--json", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    lines = [json.loads(line) for line in r.stdout.splitlines()]
    trials, summary = lines[:-1], lines[-1]
    assert [t["trial"] for t in trials] == list(range(6)) and all(t["state"] == "complete" for t in trials)
    folder = tmp_path / "runs" / "iris-tune"
    # trial 0 runs the spec's own values; the search finds better ones
    assert summary["baseline"]["trial"] == 0
    assert summary["baseline"]["values"] == {"hidden": "8", "train.optimizer.lr": "0.001", "data.batch_size": "16"}
    assert summary["best"]["value"] > summary["baseline"]["value"]
    assert summary["done"] == 6 and summary["trials"]["complete"] == 6
    assert set(summary["importances"]) <= {"hidden", "train.optimizer.lr", "data.batch_size"}
    # trials.csv, and each trial an ordinary run folder whose spec.net has its values written in
    table = rows(folder)
    assert [int(x["trial"]) for x in table] == list(range(6))
    import netspec

    for x in table:
        run = Path(tmp_path / x["run"])
        assert json.loads((run / "run.json").read_text())["finished"]
        c = netspec.load(str(run / "spec.net"))
        assert c.search is None and dict(c.constants)["hidden"] == int(x["hidden"])
        assert dict(c.train.optimizer.kwargs)["lr"] == float(x["train.optimizer.lr"])
        assert c.data.batch_size == int(x["data.batch_size"])
    # each epoch's metric went to Optuna (what the pruner reads)
    assert all(sorted(t.intermediate_values) == [1, 2, 3] for t in journal_trials(folder))
    # tune.png: a picture of the right size
    from PIL import Image

    with Image.open(folder / "tune.png") as img:
        assert img.format == "PNG" and img.size == (640, 400)
    # best.net: diff shows what the search changed; retraining it (same seed) reproduces the trial
    best = summary["best"]
    d = subprocess.run([*netspec_cmd(), "diff", str(folder / "best.net"), "iris.net", "--json"], capture_output=True,
                       text=True, cwd=tmp_path)
    changed = {s["key"] for s in json.loads(d.stdout)["settings"]}
    assert changed and changed <= {"let hidden", "train.optimizer.lr", "data.batch_size"}
    t = subprocess.run([*netspec_cmd(), "train", str(folder / "best.net"), "--out", "again", "--json"],
                       capture_output=True, text=True, cwd=tmp_path)
    assert t.returncode == 0, t.stderr
    final = json.loads(t.stdout.splitlines()[-1])["final"]
    with open(tmp_path / "again" / "metrics.csv", newline="") as f:
        history = list(csv.DictReader(f))
    kept = next(h for h in history if int(h["epoch"]) == final["best_epoch"])
    assert float(kept["val_accuracy"]) == best["value"]
    # the same command again: nothing to run; more trials: exactly that many
    r = tune("iris.net", cwd=tmp_path)
    assert r.returncode == 0 and "6 of 6 trials done" in r.stdout and "trial " not in r.stdout.split("\n")[1]
    r = tune("iris.net", "--trials", "8", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert [x["state"] for x in rows(folder)] == ["complete"] * 8
    # a changed spec is refused, and nothing of the study is touched
    journal = (folder / "study.journal").read_bytes()
    (tmp_path / "iris.net").write_text(iris_spec(epochs=4))
    r = tune("iris.net", cwd=tmp_path)
    assert r.returncode == 1 and "made from another spec" in r.stderr and "train.epochs: 3 -> 4" in r.stderr
    assert "Traceback" not in r.stderr and (folder / "study.journal").read_bytes() == journal


def test_a_trial_killed_midway_is_retried_and_the_study_ends_with_exactly_n(tmp_path):
    (tmp_path / "iris.net").write_text(iris_spec(epochs=20, trials=2))
    folder = tmp_path / "runs" / "iris-tune"
    proc = subprocess.Popen([*netspec_cmd(), "tune", "iris.net"], cwd=tmp_path, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    wait_mid_trial(folder, 1, proc)
    proc.kill()  # SIGKILL: nothing is saved by the process itself
    proc.wait()
    killed = json.loads((folder / "trial-001" / "run.json").read_text())
    assert killed["finished"] is None
    r = tune("iris.net", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert "trial   1       [-]  stopped before it finished; it will be retried" in r.stdout
    table = rows(folder)
    states = [x["state"] for x in table]
    assert states.count("complete") == 2 and states.count("interrupted") == 1, table
    numbers = [int(x["trial"]) for x in table]
    assert len(numbers) == len(set(numbers))
    retry = next(x for x in table if x["retry_of"] == "1")
    original = next(x for x in table if x["trial"] == "1")
    assert (retry["hidden"], retry["train.optimizer.lr"], retry["state"]) == \
        (original["hidden"], original["train.optimizer.lr"], "complete")
    # the killed trial's folder is an ordinary run: --resume continues it from its checkpoint
    run = folder / "trial-001"
    t = subprocess.run([*netspec_cmd(), "train", str(run / "spec.net"), "--out", str(run), "--resume", "--quiet"],
                       capture_output=True, text=True, cwd=tmp_path)
    assert t.returncode == 0 and "resumed from" in t.stderr, t.stderr
    assert json.loads((run / "run.json").read_text())["finished"]


def test_ctrl_c_saves_the_study_and_the_same_command_continues_it(tmp_path):
    (tmp_path / "iris.net").write_text(iris_spec(epochs=20, trials=1))
    folder = tmp_path / "runs" / "iris-tune"
    proc = subprocess.Popen([*netspec_cmd(), "tune", "iris.net"], cwd=tmp_path, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    wait_mid_trial(folder, 0, proc)
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err
    assert "interrupted: the study is saved in runs/iris-tune/ (0 of 1 trials done; trial 0 will be retried)" in err
    assert "run the same command to continue it" in err and "Traceback" not in err
    assert rows(folder)[0]["state"] == "interrupted"
    r = tune("iris.net", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    table = rows(folder)
    assert [(x["state"], x["retry_of"]) for x in table] == [("interrupted", ""), ("complete", "0")]
    assert table[0]["hidden"] == table[1]["hidden"] and table[0]["train.optimizer.lr"] == table[1]["train.optimizer.lr"]


def test_two_workers_share_the_journal_without_duplicates_or_losses(tmp_path):
    (tmp_path / "iris.net").write_text(iris_spec(trials=6))
    r = tune("iris.net", "--workers", "2", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    folder = tmp_path / "runs" / "iris-tune"
    table = rows(folder)
    done = [x for x in table if x["state"] == "complete"]
    assert len(done) == 6 and len(table) == 6
    assert len({x["trial"] for x in table}) == 6
    assert len({x["worker"] for x in done}) == 2  # both processes ran trials
    folders = sorted(p.name for p in folder.glob("trial-*"))
    assert folders == sorted(f"trial-{int(x['trial']):03d}" for x in done)
    assert r.stdout.count("] ") >= 6  # a progress line per trial, from the coordinator
    assert {int(t.number) for t in journal_trials(folder) if t.state.name == "COMPLETE"} == {int(x["trial"]) for x in done}


def test_the_pruner_stops_weak_trials_and_failed_trials_count(tmp_path):
    search = """    sampler: grid
    pruner: median
    train.optimizer.lr: choice(0.5, 0.3, 1e-5, 1e9)"""
    (tmp_path / "iris.net").write_text(iris_spec(epochs=6, search=search, trials=4).replace("    trials: 4\n", ""))
    r = tune("iris.net", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    folder = tmp_path / "runs" / "iris-tune"
    table = rows(folder)
    assert [(x["train.optimizer.lr"], x["state"]) for x in table] == [
        ("0.5", "complete"), ("0.3", "complete"), ("1e-05", "pruned"), ("1000000000.0", "failed")]
    pruned, failed = table[2], table[3]
    assert "pruned after epoch" in r.stdout and int(pruned["epochs"]) < 6
    run = tmp_path / pruned["run"]  # stopped by the pruner, still an ordinary finished run
    assert json.loads((run / "run.json").read_text())["finished"]
    assert len((run / "metrics.csv").read_text().splitlines()) == int(pruned["epochs"]) + 1
    assert "loss became" in failed["error"]
    assert "4 of 4 trials done (2 complete, 1 pruned, 1 failed)" in r.stdout


def test_storages_that_cannot_be_opened_are_refused_clearly(tmp_path):
    (tmp_path / "iris.net").write_text(iris_spec())
    r = tune("iris.net", "--storage", "postgresql://me:s3cret@127.0.0.1:1/studies", cwd=tmp_path)
    assert r.returncode == 1 and "cannot connect to the study's database" in r.stderr
    assert "postgresql://me:***@127.0.0.1:1/studies" in r.stderr and "s3cret" not in r.stderr
    assert "Traceback" not in r.stderr
    r = tune("iris.net", "--storage", "postgress://me@127.0.0.1/x", "--out", "other", cwd=tmp_path)
    assert r.returncode == 1 and "not a database URL that SQLAlchemy knows" in r.stderr
    with socket.socket() as silent:  # accepts connections, never answers
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)
        url = f"postgresql://me@127.0.0.1:{silent.getsockname()[1]}/x"
        started = time.time()
        r = tune("iris.net", "--storage", url, "--out", "third", cwd=tmp_path,
                 env={"NETSPEC_TUNE_CONNECT_TIMEOUT": "2"})
        assert r.returncode == 1 and "cannot connect" in r.stderr and "waits 2 s" in r.stderr
        assert time.time() - started < 60
    # a folder that is not a tune folder is never written into
    (tmp_path / "notes").mkdir()
    (tmp_path / "notes" / "mine.txt").write_text("keep")
    r = tune("iris.net", "--out", "notes", cwd=tmp_path)
    assert r.returncode == 1 and "is not a netspec tune folder" in r.stderr
    assert sorted(p.name for p in (tmp_path / "notes").iterdir()) == ["mine.txt"]


def test_a_grid_runs_each_point_once_across_reruns(tmp_path):
    search = """    sampler: grid
    hidden: choice(4, 8)
    data.batch_size: choice(16, 64)"""
    (tmp_path / "iris.net").write_text(iris_spec(epochs=2, search=search, trials=4).replace("    trials: 4\n", ""))
    r = tune("iris.net", "--trials", "2", cwd=tmp_path)  # a sample of the grid first
    assert r.returncode == 0, r.stderr
    r = tune("iris.net", cwd=tmp_path)  # then the rest of it
    assert r.returncode == 0 and "4 of 4 trials done" in r.stdout, r.stderr
    points = [(x["hidden"], x["data.batch_size"]) for x in rows(tmp_path / "runs" / "iris-tune")]
    assert sorted(points) == [("4", "16"), ("4", "64"), ("8", "16"), ("8", "64")]
    r = tune("iris.net", "--trials", "5", cwd=tmp_path)
    assert r.returncode == 1 and "the grid has 4 points" in r.stderr
