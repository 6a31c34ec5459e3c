"""`netspec tune --storage postgresql://...`: one study shared by two `netspec tune` commands
as two machines would run it (each its own folder, one database), against a real
PostgreSQL server the test starts itself (tests/pg_server.py). Skipped, saying why, where
PostgreSQL is not installed."""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path

import pytest

from tests.conftest import netspec_cmd
from tests.test_tune import iris_spec, rows, wait_mid_trial

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def pg_url():
    from tests.pg_server import PgServer

    try:
        server = PgServer().start()
    except RuntimeError as e:
        pytest.skip(str(e))
    except (subprocess.CalledProcessError, OSError) as e:
        pytest.skip(f"PostgreSQL did not start here: {e}")
    yield server.url
    server.stop()


def machine(tmp_path: Path, name: str, spec: str) -> Path:
    home = tmp_path / name
    home.mkdir()
    (home / "iris.net").write_text(spec)
    return home


def test_two_machines_share_one_postgres_study_and_a_killed_one_loses_nothing(tmp_path, pg_url):
    """Machine a runs two workers, machine b one; b dies in the middle of its first trial.
    The study ends with exactly 6 complete trials, each run once, b's retried by a."""
    import optuna

    spec = iris_spec(epochs=15, trials=6)
    a, b = machine(tmp_path, "a", spec), machine(tmp_path, "b", spec)
    env = {**os.environ, "NETSPEC_TUNE_HEARTBEAT": "1,4"}
    cmd = [*netspec_cmd(), "tune", "iris.net", "--storage", pg_url]
    pa = subprocess.Popen([*cmd, "--workers", "2"], cwd=a, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                          text=True, env=env)
    pb = subprocess.Popen(cmd, cwd=b, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    folder_b = b / "runs" / "iris-tune"
    deadline = time.time() + 240
    mine: list[Path] = []
    while time.time() < deadline and not mine:
        assert pb.poll() is None, pb.communicate()
        mine = sorted(folder_b.glob("trial-*")) if folder_b.exists() else []
        time.sleep(0.02)
    victim = int(mine[0].name.split("-")[1])
    wait_mid_trial(folder_b, victim, pb)
    pb.kill()
    pb.wait()
    out, err = pa.communicate(timeout=600)
    assert pa.returncode == 0, err
    assert "6 of 6 trials done" in out
    # the study in the database: exactly 6 complete, numbers unique, the killed trial retried once
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    url = pg_url.replace("postgresql://", "postgresql+psycopg2://")
    trials = optuna.load_study(study_name="iris", storage=url).get_trials()
    assert [t.state.name for t in trials].count("COMPLETE") == 6
    assert len({t.number for t in trials}) == len(trials)
    retried = [t for t in trials if t.system_attrs.get("failed_trial") == victim]
    assert len(retried) == 1 and retried[0].state.name == "COMPLETE"
    assert retried[0].params == next(t.params for t in trials if t.number == victim)
    # every complete trial ran once, in machine a's folder, and both of a's workers ran some
    complete = {t.number for t in trials if t.state.name == "COMPLETE"}
    assert {int(p.name.split("-")[1]) for p in (a / "runs" / "iris-tune").glob("trial-*")} == complete
    assert [p.name for p in folder_b.glob("trial-*")] == [f"trial-{victim:03d}"]
    table = rows(a / "runs" / "iris-tune")
    assert len({x["worker"] for x in table if x["state"] == "complete"}) == 2
    # machine b comes back: the study is done; it writes its own summary files
    r = subprocess.run(cmd, cwd=b, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0 and "6 of 6 trials done" in r.stdout, r.stderr
    assert [x["state"] for x in rows(folder_b)].count("complete") == 6
    assert (folder_b / "best.net").is_file()
