"""The Distillation page's students as jobs of the app's one live-training path (ui/training.py).

Two jobs per setting: the KD student (soft targets of the teacher at T, weight α) and the same initial student
trained on the labels alone. They train through `ui.training.train_live` like the Pruning and Quantization pages'
runs: live curves, the shared Stop button that keeps the partial model, and the store of finished runs shared by
every session, keyed on model name + the job's key, the student's point JSON (training is seeded, so the same
key always gives the same student).
"""
from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import asdict, dataclass

import numpy as np
import streamlit as st
from torch import nn

import compressor as cz
from compressor.distillation import parameter_count, student_of, teacher_logits
from compressor.figures.distillation import training_json
from compressor.training import History, Progress, StopCheck
from ui import training
from ui.cache import sample
from ui.owned import forgettable, on_forget

PREFIX = "distill"  # its keys in ui.training: distill_ft_stop, distill_ft_again, ...
KD, SCRATCH = "KD student", "scratch student"  # run labels


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
        """Canonical JSON naming the teacher and the settings."""
        return json.dumps({"teacher": name, **asdict(self)}, sort_keys=True)


def point_json(name: str, settings: Settings, training_kind: str) -> str:
    """What a student is, as JSON, for its Trade-offs point and its run: its source and how it was trained. The
    source is the student's architecture ("digits-mlp@width=0.4"), never the teacher's name: an own model's holds
    the session id, and this JSON is shown (Trade-offs, its CSV).

    training_kind: "distill" (soft targets at T, weight α) or "scratch" (hard labels only, no T and α).
    """
    how = {"epochs": settings.epochs, "lr": settings.lr, "batch_size": settings.batch_size, "seed": settings.seed}
    if training_kind == "distill":
        how = {"temperature": settings.temperature, "alpha": settings.alpha, **how}
    return training_json(student_of(sample(name).model, settings.width), training_kind, how)


def jobs(name: str, settings: Settings) -> dict[str, training.Job]:
    """The KD student's job and the scratch student's, in the order they train. The student is made (and the core
    checks the settings) when a job trains; `check` raises the core's ValueError before that."""

    def common(progress: Progress | None, should_stop: StopCheck | None) -> dict:
        return dict(epochs=settings.epochs, lr=settings.lr, batch_size=settings.batch_size, seed=settings.seed,
                    test=sample(name).data.test, progress=progress, should_stop=should_stop)

    def student() -> nn.Module:
        return cz.make_student(sample(name).model, settings.width, seed=settings.seed)

    def kd(progress: Progress | None, should_stop: StopCheck | None) -> tuple[nn.Module, History]:
        s = sample(name)
        return cz.distill(s.model, student(), s.data.train, temperature=settings.temperature, alpha=settings.alpha,
                          **common(progress, should_stop))

    def scratch(progress: Progress | None, should_stop: StopCheck | None) -> tuple[nn.Module, History]:
        return cz.train_scratch(student(), sample(name).data.train, **common(progress, should_stop))

    return {KD: training.Job(name, point_json(name, settings, "distill"), settings.epochs, kd),
            SCRATCH: training.Job(name, point_json(name, settings, "scratch"), settings.epochs, scratch)}


def check(name: str, settings: Settings) -> None:
    """Raise the core's ValueError for settings it refuses, before anything trains (one epoch of nothing)."""
    s = sample(name)
    cz.distill(s.model, cz.make_student(s.model, settings.width, seed=settings.seed), s.data.train,
               temperature=settings.temperature, alpha=settings.alpha, epochs=settings.epochs, lr=settings.lr,
               batch_size=settings.batch_size, seed=settings.seed, should_stop=lambda: True)


@st.cache_resource(show_spinner=False)
def speeds() -> dict[tuple[str, float], float]:
    """Seconds per epoch of both students, by (model, width): the fastest finished run on this server."""
    return {}


def _forget_speeds(gone) -> None:
    """A departed session's own models leave the speed table too (ui/owned.py)."""
    measured = speeds()
    for key in [key for key in list(measured) if gone(key[0])]:
        measured.pop(key, None)


on_forget(_forget_speeds)


def record_speed(name: str, settings: Settings, outcomes: Mapping[str, training.Trained]) -> None:
    """Remember how fast a pair that trained here went (not a pair recalled from the store)."""
    if len(outcomes) == 2 and not any(o.stopped for o in outcomes.values()):
        per_epoch = sum(o.seconds for o in outcomes.values()) / settings.epochs
        key = (name, settings.width)
        speeds()[key] = min(per_epoch, speeds().get(key, float("inf")))


def estimated_seconds(name: str, settings: Settings) -> float | None:
    """Both trainings at these epochs, from the fastest finished run of this student on this server (the first run
    of a process pays one-off costs), else from the slowest student of this model measured; None: none yet."""
    measured = speeds()
    per_epoch = measured.get((name, settings.width))
    if per_epoch is None:
        per_epoch = max((s for (model, _), s in measured.items() if model == name), default=None)
    return None if per_epoch is None else per_epoch * settings.epochs


@forgettable(st.cache_data(max_entries=64, show_spinner=False))
def student_params(name: str, width: float) -> int:
    """Parameters of the sample's student at this width (ValueError for a width the core refuses)."""
    return parameter_count(cz.make_student(sample(name).model, width))


@forgettable(st.cache_data(max_entries=8, show_spinner=False))
def test_logits(name: str) -> np.ndarray:
    """The teacher's logits on the test split, (N, C)."""
    s = sample(name)
    return teacher_logits(s.model, s.data.test.X).numpy()
