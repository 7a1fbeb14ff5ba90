"""Several worker processes on one study, against the real storages: a journal file and PostgreSQL.

PostgreSQL: `scripts/install.sh --test` starts a local server (scripts/postgres.sh) at the default URL below;
COMPRESSOR_TEST_POSTGRES names another. `.ci/run` sets COMPRESSOR_REQUIRE_POSTGRES=1, so a missing server fails
there instead of skipping.
"""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState

from compressor.workers import open_storage

ROOT = Path(__file__).resolve().parents[1]
WORKER = ROOT / "tests" / "search_worker.py"
POSTGRES = os.environ.get("COMPRESSOR_TEST_POSTGRES", "postgresql://compressor:compressor@localhost:5432/compressor")

def _postgres_reachable() -> bool:
    try:
        import psycopg

        psycopg.connect(POSTGRES.replace("postgresql+psycopg://", "postgresql://"), connect_timeout=3).close()
        return True
    except Exception:
        return False

@pytest.fixture(params=["journal", "postgres"])
def storage_url(request, tmp_path) -> str:
    if request.param == "journal":
        return str(tmp_path / "study.journal.log")
    if not _postgres_reachable():
        if os.environ.get("COMPRESSOR_REQUIRE_POSTGRES") == "1":
            pytest.fail(f"PostgreSQL at {POSTGRES} is not reachable (CI starts it in .ci/run)")
        pytest.skip(f"no PostgreSQL at {POSTGRES}; set COMPRESSOR_TEST_POSTGRES")
    return POSTGRES

def start(url: str, study: str, trials: int, *hang: str, barrier: str | None = None) -> subprocess.Popen:
    env = {**os.environ, "WORKER_BARRIER": barrier} if barrier else None
    return subprocess.Popen([sys.executable, str(WORKER), url, study, str(trials), *hang], cwd=ROOT, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)

def finish(proc: subprocess.Popen, timeout: float = 240) -> None:
    out, err = proc.communicate(timeout=timeout)
    assert proc.returncode == 0, err

def load(url: str, study: str) -> optuna.Study:
    return optuna.load_study(study_name=study, storage=open_storage(url, heartbeat_interval=1, grace_period=2))

def test_two_workers_finish_exactly_n_trials(storage_url, tmp_path):
    study_name, n = f"two-{uuid.uuid4().hex[:8]}", 12
    (tmp_path / "barrier").mkdir()
    workers = [start(storage_url, study_name, n, barrier=f"{tmp_path / 'barrier'}:2") for _ in range(2)]
    for proc in workers:
        finish(proc)
    trials = load(storage_url, study_name).get_trials(deepcopy=False)
    complete = [t for t in trials if t.state == TrialState.COMPLETE]
    assert len(complete) == n
    assert len({t.user_attrs["worker"] for t in complete}) == 2  # both did work
    extra = [t for t in trials if t.state != TrialState.COMPLETE]
    assert all(t.state == TrialState.PRUNED and t.user_attrs.get("surplus") for t in extra)

def test_killed_worker_is_resumed_without_loss(storage_url, tmp_path):
    study_name, n, mark = f"kill-{uuid.uuid4().hex[:8]}", 8, tmp_path / "hung"
    first = start(storage_url, study_name, n, "3", str(mark))
    deadline = time.monotonic() + 120
    while not mark.exists():
        assert first.poll() is None, first.stderr.read()
        assert time.monotonic() < deadline, "the worker never reached its third trial"
        time.sleep(0.05)
    hung = int(mark.read_text())
    os.kill(first.pid, signal.SIGKILL)
    first.wait()
    before = {t.number: t.values for t in load(storage_url, study_name).get_trials(deepcopy=False)
              if t.state == TrialState.COMPLETE}
    assert len(before) == 2

    finish(start(storage_url, study_name, n))
    trials = load(storage_url, study_name).get_trials(deepcopy=False)
    complete = {t.number: t for t in trials if t.state == TrialState.COMPLETE}
    assert len(complete) == n
    assert all(complete[number].values == values for number, values in before.items())  # nothing lost
    assert trials[hung].state == TrialState.FAIL
    retried = [t for t in complete.values() if t.system_attrs.get("failed_trial") == hung]
    assert len(retried) == 1 and retried[0].params == trials[hung].params  # the killed trial ran again

def test_sqlite_and_unknown_urls_are_refused(tmp_path):
    for url in ("sqlite:///x.db", "mysql://u@h/db", "journal:"):
        with pytest.raises(ValueError, match="storage"):
            open_storage(url)
    with pytest.raises(ValueError, match="does not exist"):
        open_storage(str(tmp_path / "missing" / "x.log"))
