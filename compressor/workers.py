"""Several workers, on one machine or many, on one Optuna study: the storages and the exact-N worker loop.

- One machine: Optuna's journal file, `JournalStorage(JournalFileBackend(path))`, safe for several processes
  (appends under a file lock). SQLite is refused: Optuna's FAQ advises against it for parallel optimization.
- Many machines: PostgreSQL through `RDBStorage` with heartbeats. A worker records a heartbeat every
  `heartbeat_interval` seconds while a trial runs; a trial whose heartbeat is older than `grace_period` belongs
  to a dead worker: the next worker to ask for a trial fails it, and `RetryHeartbeatStaleTrialCallback` queues
  the same parameters again. (Optuna 5.1 names them so; `failed_trial_callback`/`RetryFailedTrialCallback`
  are their deprecated aliases since 4.9.)

A journal file has no heartbeat in Optuna 5.1 (`JournalStorage` is not a `BaseHeartbeat`), but its workers
share a machine, where a dead process is known for certain: each trial records host:pid:start-time, and
`recover_dead_workers` fails and re-queues the running trials of processes that no longer exist.
"""
from __future__ import annotations

import os
import socket
import time
import warnings
from collections.abc import Callable, Sequence

import optuna
from optuna.storages import JournalStorage, RDBStorage, RetryHeartbeatStaleTrialCallback
from optuna.storages.journal import JournalFileBackend
from optuna.trial import FrozenTrial, TrialState

from compressor.validation import check_int

WORKER_KEY = "worker"  # user attr: host:pid:start-time of the process that ran the trial
SURPLUS_KEY = "surplus"  # user attr of a trial pruned because the study already had its N trials
MAX_RETRY = 3  # a trial whose workers die this many times is not queued again
HEARTBEAT_S = 10  # PostgreSQL: heartbeat interval, seconds
GRACE_S = 30  # PostgreSQL: a running trial without a heartbeat for this long is failed and retried


def _retry() -> RetryHeartbeatStaleTrialCallback:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        return RetryHeartbeatStaleTrialCallback(max_retry=MAX_RETRY)


def open_storage(url: str, heartbeat_interval: int = HEARTBEAT_S, grace_period: int = GRACE_S) -> optuna.storages.BaseStorage:
    """A storage from a URL: `postgresql://user:pass@host/db` (RDB with heartbeats), or a journal file path.

    `journal:PATH` and a plain path both mean the journal file PATH.
    """
    check_int("heartbeat_interval", heartbeat_interval, 1, 3600)
    check_int("grace_period", grace_period, heartbeat_interval, 86_400)
    scheme = url.partition("://")[0].lower() if "://" in url else ""
    if scheme.startswith("postgresql"):
        url = "postgresql+psycopg://" + url.partition("://")[2]  # psycopg 3 (requirements.txt), not psycopg2
        return _rdb(url, heartbeat_interval, grace_period)
    if scheme or url.lower().startswith("sqlite:"):
        raise ValueError(f"storage {url!r} is not supported; use a journal file path (one machine) or "
                         "postgresql://user:password@host:port/database (several machines). SQLite is not safe "
                         "for parallel workers (Optuna's FAQ)")
    path = url.removeprefix("journal:")
    if not path:
        raise ValueError("storage 'journal:' needs a file path, e.g. journal:search.log")
    parent = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(parent):
        raise ValueError(f"storage {path!r}: directory {parent!r} does not exist")
    return JournalStorage(JournalFileBackend(path))


def _rdb(url: str, heartbeat_interval: int, grace_period: int) -> RDBStorage:
    """RDBStorage with heartbeats. Workers started together on an empty database race to create its tables;
    the loser finds the winner's tables on a second try."""
    from sqlalchemy.exc import IntegrityError, ProgrammingError

    try:
        return _rdb_once(url, heartbeat_interval, grace_period)
    except (IntegrityError, ProgrammingError):
        time.sleep(1.0)
        return _rdb_once(url, heartbeat_interval, grace_period)


def _rdb_once(url: str, heartbeat_interval: int, grace_period: int) -> RDBStorage:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        return RDBStorage(url, heartbeat_interval=heartbeat_interval, grace_period=grace_period,
                          heartbeat_stale_trial_callback=_retry())


POLL_S = 0.5  # a worker whose remaining trials are all running elsewhere checks again after this long


def work(study: optuna.Study, objective: Callable[[optuna.Trial], list[float]], trials: int,
         callbacks: Sequence[Callable[[optuna.Study, FrozenTrial], None]] = ()) -> None:
    """Run trials until the study holds exactly `trials` complete ones, with any number of workers.

    Each trial claims a slot before it evaluates: the complete trials plus the unfinished ones numbered before
    it must leave room, else it is pruned as surplus. The storage numbers trials, so two workers never take the
    same slot. When the remaining trials are all running in other workers, this worker waits for them: if one
    of those workers dies, its trial is failed and queued again (the storage's heartbeat, or
    `recover_dead_workers`), and this worker runs the queued copy.
    """
    full = []  # set when this worker stopped because the remaining trials are taken (not a caller's stop)

    def claimed(trial: optuna.Trial) -> list[float]:
        trial.set_user_attr(WORKER_KEY, worker_id())
        if not has_slot(study, trial.number, trials):
            trial.set_user_attr(SURPLUS_KEY, True)
            full.append(True)
            study.stop()
            raise optuna.TrialPruned("the study already has its trials")
        return objective(trial)

    def after(study: optuna.Study, trial: FrozenTrial) -> None:
        if sum(_counts(study)) >= trials:
            full.append(True)
            study.stop()

    while True:
        recover_dead_workers(study)
        done, running = _counts(study)
        if done >= trials:
            return
        if done + running >= trials:
            time.sleep(POLL_S)
            continue
        full.clear()
        study.optimize(claimed, callbacks=[after, *callbacks], gc_after_trial=False)
        if not full:
            return  # a caller's callback stopped the search


def _counts(study: optuna.Study) -> tuple[int, int]:
    """Complete trials, and trials running now (queued ones are not counted: the next ask takes them)."""
    trials = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE, TrialState.RUNNING))
    done = sum(t.state == TrialState.COMPLETE for t in trials)
    return done, len(trials) - done


def complete_count(study: optuna.Study) -> int:
    return len(study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)))


def has_slot(study: optuna.Study, number: int, trials: int) -> bool:
    """True when the complete trials plus the unfinished trials numbered before `number` leave room for it."""
    done = complete_count(study)
    ahead = [t for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING, TrialState.WAITING))
             if t.number < number]
    return done + len(ahead) < trials


def _start_time(pid: int) -> str | None:
    """The process's start time in clock ticks since boot (Linux), so a reused pid is not mistaken for it."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rpartition(")")[2].split()[19]
    except OSError:
        return None


def worker_id() -> str:
    """host:pid:start-time of this process."""
    return f"{socket.gethostname()}:{os.getpid()}:{_start_time(os.getpid())}"


def _alive(worker: str) -> bool:
    host, pid, start = worker.rsplit(":", 2)
    if host != socket.gethostname():
        return True  # another machine's worker: only a storage heartbeat can tell
    return start != "None" and _start_time(int(pid)) == start


def recover_dead_workers(study: optuna.Study) -> list[int]:
    """Fail the running trials of dead workers on this machine and queue each again; returns the failed numbers.

    For RDB storages Optuna's heartbeat does it (`fail_stale_trials`). Uses the study's storage directly, as Optuna's own
    `fail_stale_trials` does; the retry is Optuna's `RetryHeartbeatStaleTrialCallback`, so both storages record
    "failed_trial" and "retry_history" alike.
    """
    storage = study._storage
    if isinstance(storage, RDBStorage):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            optuna.storages.fail_stale_trials(study)  # heartbeat-stale trials failed, retried by the callback
        return []
    failed = []
    for trial in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        worker = trial.user_attrs.get(WORKER_KEY)
        if worker is None or _alive(worker):
            continue
        try:
            if not storage.set_trial_state_values(trial._trial_id, state=TrialState.FAIL):
                continue
        except optuna.exceptions.UpdateFinishedTrialError:
            continue  # another worker got there first
        failed.append(trial.number)
        _retry()(study, storage.get_trial(trial._trial_id))
    return failed
