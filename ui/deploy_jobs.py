"""Deployed latency measured off the script thread: one background job per configuration, shared by every session.

Deploying a configuration on ONNX Runtime (export both graphs, score them, time them) takes seconds of CPU; the
rest of a report (accuracy, file size, eager latency) a few tenths. In a room of thirty, a slider move that waited
for the deployment made every other session wait too (measured: benchmarks/bench_room.py). So a page shows the
core report at once and asks for the deployment here; one worker thread per server process takes the jobs, the
most recently asked first (what someone is looking at now), and runs each in a child process of its own (`Child`,
at a lower scheduling priority): exporting a graph is pure Python, and in the server process it held the GIL that
every session's script run needs (py-spy, a room of thirty: a fifth of the server's samples). The page polls with a fragment (`ui.deployed_view`) until the job is done, then shows the deployed
numbers; every session asking for the same configuration shares the one job and its result.

Bounded: at most `MAX_PENDING` jobs wait (the oldest is dropped; whoever still wants it asks again), at most
`MAX_RESULTS` results stay in memory (least recently used go first; with `CLAB_SHARED_CACHE` they are also on disk
for the other processes, ui/disk_cache.py). A job that raises is kept as a one-line failure, shown on the page,
never raised into it.
"""
from __future__ import annotations

import functools
import multiprocessing
import os
import pickle
import threading
from collections import OrderedDict
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import asdict, dataclass

import torch
from torch import nn

from compressor import fidelity
from compressor.data import DataSplits, Sample
from compressor.deploy import deploy
from compressor.latency import LatencyConfig
from compressor.models import load_sample
from compressor.report import Deployment, SparseTiming
from ui import disk_cache
from ui.owned import Gone, on_forget

MAX_PENDING = 32  # jobs waiting at once (a slider has ~20 stops per page and model; more are stale by then)
MAX_RESULTS = 512  # deployments kept in memory (a few KB each)
WORKER_NICENESS = 10  # added to the deploying process's nice value: script runs come first
CHILD_JOBS = 64  # jobs one child process runs before a fresh one takes over (bounds what a long room leaves behind)
CHILD_IDLE_S = 60.0  # a child with no job for this long exits: an idle server holds no deployment memory
Key = tuple[str, str]  # (model name, canonical recipe JSON)
Job = Callable[[], Deployment]


@dataclass(frozen=True)
class Deploy:
    """The job of deploying one compressed model (`compressor.deploy.deploy` with the pages' latency settings): plain
    data and modules, so it can travel to the child process pickled.

    With `sample` named, `data` and `baseline` are that shipped sample's, and they travel as its name: the child
    loads the sample from the repository's files once and keeps it. minilm-l6's baseline is 87 MB, and pickling it
    held the server's GIL for about 0.13 s per configuration."""
    model: nn.Module
    data: DataSplits
    baseline: nn.Module
    simulated_accuracy: float | None
    reference: fidelity.Reference | None
    sample: str | None = None

    def __call__(self) -> Deployment:
        return deploy(self.model, self.data, self.baseline, LatencyConfig(), simulated_accuracy=self.simulated_accuracy,
                      reference=self.reference)[0]

    def __reduce__(self) -> tuple:
        if self.sample is None:
            return Deploy, (self.model, self.data, self.baseline, self.simulated_accuracy, self.reference)
        return _with_shipped_sample, (self.sample, self.model, self.simulated_accuracy, self.reference)


def _with_shipped_sample(sample: str, model: nn.Module, simulated_accuracy: float | None,
                         reference: fidelity.Reference | None) -> Deploy:
    """A job unpickled in the child: the sample's data and baseline from the child's own copy of the sample."""
    shipped = _shipped(sample)
    return Deploy(model, shipped.data, shipped.model, simulated_accuracy, reference, sample)


@functools.lru_cache(maxsize=2)
def _shipped(name: str) -> Sample:
    return load_sample(name)  # a name from our own server's job, among the samples shipped in the repository


class CannotTravel(Exception):
    """A job the child process could not unpickle (e.g. a model class only the server process has loaded)."""


class Child:
    """One child process that runs jobs: started on first use, replaced after `CHILD_JOBS` jobs or when it died
    (killed, out of memory), stopped by `close` (the queue closes it after `CHILD_IDLE_S` without a job).

    A job goes there pickled and runs at a lower priority (`WORKER_NICENESS`, one torch thread); what it returns
    comes back pickled. A job that cannot be pickled, or unpickled there, runs in the calling thread instead (its
    result is the same; only the GIL is shared then). The child starts from Python's forkserver: a fresh
    interpreter, no copy of the server's threads or memory.
    """

    def __init__(self) -> None:
        self._pool: ProcessPoolExecutor | None = None

    def __call__(self, job: Job) -> Deployment:
        try:
            payload = pickle.dumps(job, protocol=pickle.HIGHEST_PROTOCOL)
        except (pickle.PicklingError, AttributeError, TypeError):  # a closure, a lock, a class defined in a function
            return job()
        if self._pool is None:
            self._pool = ProcessPoolExecutor(max_workers=1, mp_context=multiprocessing.get_context("forkserver"),
                                             initializer=_lower_priority, max_tasks_per_child=CHILD_JOBS)
        try:
            return self._pool.submit(_run_pickled, payload).result()
        except CannotTravel:
            return job()
        except BrokenProcessPool:
            self._pool = None
            raise RuntimeError("the deployment process stopped (out of memory?); move the slider to try again") from None

    def close(self) -> None:
        """Let the child exit (after its job, if it has one); the next job starts a new one."""
        pool, self._pool = self._pool, None
        if pool is not None:
            pool.shutdown(wait=False)

    def pids(self) -> list[int]:
        """The child's process id, if it runs (tests)."""
        processes = getattr(self._pool, "_processes", None) or {}
        return [pid for pid, process in processes.items() if process.is_alive()]


def _run_pickled(payload: bytes) -> Deployment:
    try:
        job = pickle.loads(payload)  # our own server's bytes, never a user's file
    except Exception as err:  # noqa: BLE001 - the job runs in the server then
        raise CannotTravel(f"{type(err).__name__}: {err}") from None
    return job()


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

    def __init__(self, max_pending: int = MAX_PENDING, max_results: int = MAX_RESULTS,
                 runner: Callable[[Job], Deployment] | None = None) -> None:
        self.max_pending, self.max_results = max_pending, max_results
        self.runner = runner or Child()  # how the worker thread runs a job (tests: `run_here`)
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
        while True:
            with self._lock:
                while not self._pending:
                    if not self._lock.wait(timeout=CHILD_IDLE_S) and not self._pending:
                        getattr(self.runner, "close", lambda: None)()  # idle: the child process exits
                key, job = self._pending.popitem(last=True)
                self._running, self._running_gone = key, False
            try:
                status = Status("ready", self.runner(job))
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


def run_here(job: Job) -> Deployment:
    """Run `job` in the calling thread (a `DeployQueue` runner for tests that hold or patch a job)."""
    return job()


def _lower_priority() -> None:
    """The child process's setting: a lower CPU priority (ONNX Runtime's and torch's threads inherit it) and one
    torch thread, like the pages' own timings."""
    try:
        os.nice(WORKER_NICENESS)
    except OSError:
        pass
    torch.set_num_threads(1)


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
