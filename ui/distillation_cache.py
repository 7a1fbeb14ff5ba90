"""The Distillation page's training: KD and scratch students trained live, stoppable, and cached when finished.

Training is not wrapped in an `st.cache_resource` function directly: its progress callback draws a bar and live
curves, and elements drawn inside a cached function are replayed on a cache hit onto blocks that no longer exist
(see ui/sweeps.py). So the page trains in its own script run, and a finished pair of students goes into a store
that `st.cache_resource` shares between sessions, keyed on model name + settings (training is seeded, so the same
key always gives the same students). A run cut short by the Stop button (Streamlit interrupts the script at its
next element update and reruns it) is not cached; its per-epoch records stay in `st.session_state` so the page can
show the partial curves.
"""
from __future__ import annotations

import json
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import asdict, dataclass, field

import numpy as np
import streamlit as st
from torch import nn

import compressor as cz
from compressor.distillation import parameter_count, student_source, teacher_logits
from compressor.figures.distillation import training_json
from compressor.training import History
from ui.cache import sample

PARTIAL = "distill_partial"  # {"key": settings key, "kd": History, "scratch": History} of the latest run
STOPPED = "distill_stopped"  # the settings key whose run the user stopped (not restarted automatically)
STORE_SIZE = 32  # finished pairs of students kept per server


@dataclass(frozen=True)
class Settings:
    """Everything that decides the two students (the same seed and epochs for both)."""

    width: float = 0.4  # every hidden size times this
    temperature: float = 4.0  # T of the soft targets
    alpha: float = 0.9  # weight of the soft term; 1 − α goes to the hard labels
    epochs: int = 20
    lr: float = 3e-3  # Adam step size
    batch_size: int = 64
    seed: int = 0  # initialisation of the student and batch order

    def key(self, name: str) -> str:
        """Canonical JSON naming the teacher and the settings: the cache key of a pair of students."""
        return json.dumps({"teacher": name, **asdict(self)}, sort_keys=True)


def point_json(name: str, settings: Settings, training: str) -> str:
    """What a student is, as JSON, for its Trade-offs point: its source and how it was trained.

    training: "distill" (soft targets at T, weight α) or "scratch" (hard labels only, no T and α).
    """
    how = {"epochs": settings.epochs, "lr": settings.lr, "batch_size": settings.batch_size, "seed": settings.seed}
    if training == "distill":
        how = {"temperature": settings.temperature, "alpha": settings.alpha, **how}
    return training_json(student_source(name, settings.width), training, how)


@dataclass(frozen=True)
class Trained:
    """A finished pair: both students (shared between sessions: never mutate), their histories and reports."""

    kd: nn.Module
    scratch: nn.Module
    kd_history: History
    scratch_history: History
    kd_report: cz.Report  # measured against the teacher, latency timed
    scratch_report: cz.Report
    seconds: float  # wall time of both trainings


@dataclass
class Store:
    """Finished pairs by settings key (least recently used dropped first) and the measured training speed."""

    items: OrderedDict = field(default_factory=OrderedDict)
    seconds_per_epoch: dict[tuple[str, float], float] = field(default_factory=dict)  # (model, width) -> fastest run
    lock: threading.Lock = field(default_factory=threading.Lock)

    def get(self, key: str) -> Trained | None:
        with self.lock:
            if key in self.items:
                self.items.move_to_end(key)
            return self.items.get(key)

    def put(self, key: str, trained: Trained, name: str, width: float, epochs: int) -> None:
        with self.lock:
            self.items[key] = trained
            self.items.move_to_end(key)
            while len(self.items) > STORE_SIZE:
                self.items.popitem(last=False)
            speed = (name, width)
            self.seconds_per_epoch[speed] = min(trained.seconds / epochs, self.seconds_per_epoch.get(speed, float("inf")))


@st.cache_resource(show_spinner=False)
def store() -> Store:
    return Store()


def trained(name: str, settings: Settings) -> Trained | None:
    """The finished students for these settings, if some session trained them already."""
    return store().get(settings.key(name))


def estimated_seconds(name: str, settings: Settings) -> float | None:
    """Both trainings at these epochs, from the fastest finished run of this student on this server (the first run
    of a process pays one-off costs), else from the slowest student of this model measured; None: none yet."""
    measured = store().seconds_per_epoch
    per_epoch = measured.get((name, settings.width))
    if per_epoch is None:
        per_epoch = max((s for (model, _), s in measured.items() if model == name), default=None)
    return None if per_epoch is None else per_epoch * settings.epochs


@st.cache_data(max_entries=64, show_spinner=False)
def student_params(name: str, width: float) -> int:
    """Parameters of the sample's student at this width (ValueError for a width the core refuses)."""
    return parameter_count(cz.make_student(sample(name).model, width))


@st.cache_data(max_entries=8, show_spinner=False)
def test_logits(name: str) -> np.ndarray:
    """The teacher's logits on the test split, (N, C)."""
    s = sample(name)
    return teacher_logits(s.model, s.data.test.X).numpy()


# ---------------------------------------------------------------- a run, live


def partial(key: str) -> dict[str, History]:
    """The per-epoch records of the latest run of these settings in this session ({} if another run came since)."""
    run = st.session_state.get(PARTIAL)
    return {"kd": run["kd"], "scratch": run["scratch"]} if run and run["key"] == key else {}


def stop(key: str) -> None:
    """on_click of the Stop button: the rerun it triggers interrupts training; remember not to restart it."""
    st.session_state[STOPPED] = key


def train(name: str, settings: Settings, show: Callable[[History, History, float], None]) -> Trained:
    """Train the KD student, then the scratch student (same initial student, seed and epochs), and cache them.

    After every epoch the records so far go to st.session_state (so a stop keeps them) and to
    `show(kd_history, scratch_history, fraction_done)`, which draws them. Raises the core's ValueError for bad
    settings before anything trains.
    """
    s = sample(name)
    key = settings.key(name)
    student = cz.make_student(s.model, settings.width, seed=settings.seed)
    run = {"key": key, "kd": [], "scratch": []}
    st.session_state[PARTIAL] = run
    st.session_state.pop(STOPPED, None)
    common = dict(epochs=settings.epochs, lr=settings.lr, batch_size=settings.batch_size, seed=settings.seed,
                  test=s.data.test)

    def progress(which: str, offset: float) -> Callable[[float, History], None]:
        def update(fraction: float, history: History) -> None:
            run[which] = list(history)
            show(run["kd"], run["scratch"], offset + fraction / 2)
        return update

    start = time.perf_counter()
    kd, kd_history = cz.distill(s.model, student, s.data.train, settings.temperature, settings.alpha,
                                progress=progress("kd", 0.0), **common)
    scratch, scratch_history = cz.train_scratch(student, s.data.train, progress=progress("scratch", 0.5), **common)
    seconds = time.perf_counter() - start
    result = Trained(
        kd=kd, scratch=scratch, kd_history=kd_history, scratch_history=scratch_history,
        kd_report=cz.evaluate(kd, s.data, baseline=s.model), scratch_report=cz.evaluate(scratch, s.data, baseline=s.model),
        seconds=seconds,
    )
    store().put(key, result, name, settings.width, settings.epochs)
    return result
