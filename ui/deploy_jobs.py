"""Deployed latency measured off the script thread: one background job per configuration, shared by every session.

Deploying a configuration on ONNX Runtime (export both graphs, score them, time them) takes seconds of CPU; the
rest of a report (accuracy, file size, eager latency) a few tenths. In a room of thirty, a slider move that waited
for the deployment made every other session wait too (measured: benchmarks/bench_room.py). So a page shows the
core report at once and asks for the deployment here; one worker thread per server process runs the jobs, the
most recently asked first (what someone is looking at now), at a lower scheduling priority than the threads that
run scripts. The page polls with a fragment (`ui.deployed_view`) until the job is done, then shows the deployed
numbers; every session asking for the same configuration shares the one job and its result.

Bounded: at most `MAX_PENDING` jobs wait (the oldest is dropped; whoever still wants it asks again), at most
`MAX_RESULTS` results stay in memory (least recently used go first; with `CLAB_SHARED_CACHE` they are also on disk
for the other processes, ui/disk_cache.py). A job that raises is kept as a one-line failure, shown on the page,
never raised into it.
"""
from __future__ import annotations

import os
import threading
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import asdict, dataclass

import torch

from compressor.report import Deployment, SparseTiming
from ui import disk_cache
from ui.owned import Gone, on_forget

MAX_PENDING = 32  # jobs waiting at once (a slider has ~20 stops per page and model; more are stale by then)
MAX_RESULTS = 512  # deployments kept in memory (a few KB each)
WORKER_NICENESS = 10  # added to the worker thread's nice value: script runs come first
Key = tuple[str, str]  # (model name, canonical recipe JSON)
Job = Callable[[], Deployment]


@dataclass(frozen=True)
class Status:
    """Where a configuration's deployment is: "queued", "running", "ready" (with `deployment`) or "failed" (with
    `error`, one line)."""
    state: str
    deployment: Deployment | None = None
    error: str | None = None
    waiting: int = 0  # jobs ahead of this one (queued only)

    @property
    def pending(self) -> bool:
        return self.state in ("queued", "running")


class DeployQueue:
    """One worker thread, a bounded last-in-first-out queue of jobs, and a bounded store of their results."""

    def __init__(self, max_pending: int = MAX_PENDING, max_results: int = MAX_RESULTS) -> None:
        self.max_pending, self.max_results = max_pending, max_results
        self._pending: OrderedDict[Key, Job] = OrderedDict()  # most recently asked last
        self._results: OrderedDict[Key, Status] = OrderedDict()  # ready or failed, least recently used first
        self._running: Key | None = None
        self._running_gone = False  # the running job's model left with its session: its result is not kept
        self._lock = threading.Condition()
        self._worker: threading.Thread | None = None

    def status(self, key: Key) -> Status | None:
        """The job's status, without asking for it (None: nobody asked, or it was dropped)."""
        with self._lock:
            return self._known(key)

    def request(self, key: Key, make_job: Callable[[], Job]) -> Status:
        """The deployment of `key` if measured, failed or running; else queue the job `make_job()` builds (built
        here, in the caller's thread, only when it must be queued; queued once) and say where it is."""
        with self._lock:
            known = self._known(key)
            if known is not None and known.state != "queued":
                return known
            stored = _read_disk(key)
            if stored is not None:
                return self._finish(key, Status("ready", stored))
        job = make_job()  # outside the lock: it may resolve models (the app's caches)
        with self._lock:
            known = self._known(key)
            if known is not None and known.state != "queued":  # finished while the job was being built
                return known
            self._pending.pop(key, None)
            self._pending[key] = job  # to the front of the line (last in, first out)
            while len(self._pending) > self.max_pending:
                self._pending.popitem(last=False)  # the longest-waiting job nobody has asked for since
            self._start()
            self._lock.notify()
            return Status("queued", waiting=len(self._pending) - 1)

    def measure(self, key: Key, job: Job) -> Deployment:
        """The deployment of `key`, measured now in the caller's thread if nobody has (for pages that need it)."""
        known = self.status(key)
        if known is not None and known.state == "ready":
            return known.deployment
        deployment = _read_disk(key) or job()
        with self._lock:
            self._pending.pop(key, None)
            self._finish(key, Status("ready", deployment))
        _write_disk(key, deployment)
        return deployment

    def clear(self) -> None:
        """Forget every result and waiting job (tests); a running job finishes and is stored."""
        with self._lock:
            self._pending.clear()
            self._results.clear()

    def forget(self, gone: Gone) -> None:
        """Drop the results and waiting jobs of the models `gone` names (ui/owned.py); a running one finishes unkept."""
        with self._lock:
            for store in (self._pending, self._results):
                for key in [key for key in store if gone(key[0])]:
                    del store[key]
            if self._running is not None and gone(self._running[0]):
                self._running_gone = True

    def _known(self, key: Key) -> Status | None:
        if key in self._results:
            self._results.move_to_end(key)
            return self._results[key]
        if key == self._running:
            return Status("running")
        if key in self._pending:
            return Status("queued", waiting=len(self._pending) - 1 - list(self._pending).index(key))
        return None

    def _finish(self, key: Key, status: Status) -> Status:
        self._results[key] = status
        self._results.move_to_end(key)
        while len(self._results) > self.max_results:
            self._results.popitem(last=False)
        return status

    def _start(self) -> None:
        if self._worker is None or not self._worker.is_alive():
            self._worker = threading.Thread(target=self._work, name="deploy-jobs", daemon=True)
            self._worker.start()

    def _work(self) -> None:
        _lower_priority()
        while True:
            with self._lock:
                while not self._pending:
                    self._lock.wait()
                key, job = self._pending.popitem(last=True)
                self._running, self._running_gone = key, False
            try:
                status = Status("ready", job())
            except Exception as err:  # noqa: BLE001 - any failure is the job's result, shown as one line
                status = Status("failed", error=f"{type(err).__name__}: {err}".splitlines()[0][:300])
            if status.deployment is not None:
                try:
                    _write_disk(key, status.deployment)
                except OSError:
                    pass  # sharing with other processes is best effort; this process keeps the result
            with self._lock:
                if not self._running_gone:
                    self._finish(key, status)
                self._running = None


def _lower_priority() -> None:
    """Lower this thread's CPU priority (Linux: threads have their own nice value); ONNX Runtime's and torch's
    threads started from it inherit it."""
    try:
        os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), os.getpriority(os.PRIO_PROCESS, 0) + WORKER_NICENESS)
    except (OSError, AttributeError):
        pass
    torch.set_num_threads(1)  # per thread, like the pages' own timings


def deployment_from_dict(data: dict) -> Deployment:
    """A Deployment back from `dataclasses.asdict` (the shared disk cache stores plain data)."""
    sparse = data.get("sparse")
    return Deployment(**{**data, "sparse": SparseTiming(**sparse) if isinstance(sparse, dict) else sparse})


def _read_disk(key: Key) -> Deployment | None:
    root = disk_cache.directory(key[0])
    if root is None:
        return None
    value = disk_cache.read(root, disk_cache.entry_key("deployment", *key))
    try:
        return deployment_from_dict(value) if isinstance(value, dict) else None
    except TypeError:  # written by other code: a miss
        return None


def _write_disk(key: Key, deployment: Deployment) -> None:
    root = disk_cache.directory(key[0])
    if root is not None:
        disk_cache.write(root, disk_cache.entry_key("deployment", *key), asdict(deployment))


jobs = DeployQueue()  # the process's one queue, shared by every session
on_forget(jobs.forget)
