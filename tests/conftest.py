"""Shared fixtures: the models beyond the samples, with example inputs."""
from __future__ import annotations

import pytest
import torch
from streamlit.runtime.scriptrunner_utils.exceptions import StopException

import compressor as cz
from compressor.data import DataSplits, Split
import ui.training
from tests import models


@pytest.fixture
def residual_cnn() -> torch.nn.Module:
    return models.residual_cnn()


@pytest.fixture
def tiny_transformer() -> torch.nn.Module:
    return models.tiny_transformer()


@pytest.fixture
def cnn_input() -> torch.Tensor:
    return torch.randn(4, 3, 16, 16, generator=torch.Generator().manual_seed(2))


@pytest.fixture
def seq_input() -> torch.Tensor:
    return torch.randn(4, 6, 8, generator=torch.Generator().manual_seed(3))


# The models under test are tiny: one intra-op thread is fastest and keeps timings steady on a 2-core machine.
torch.set_num_threads(1)


@pytest.fixture(autouse=True, scope="session")
def session_files(tmp_path_factory) -> None:
    """Pages write each session's file (ui/session.py) to a directory of this test run, not the system temp dir."""
    import os

    os.environ["CLAB_SESSION_DIR"] = str(tmp_path_factory.mktemp("sessions"))


# ---------------------------------------------------------------- minilm-l6 (loaded once per test run)


@pytest.fixture(scope="session")
def minilm() -> cz.Sample:
    return cz.load_sample("minilm-l6")


@pytest.fixture(scope="session")
def minilm_small(minilm) -> DataSplits:
    """48 training and 32 held-out sentences of the shipped split, all 8 topics in both."""
    train, test = minilm.data.train, minilm.data.test
    return DataSplits(train=Split(train.X[:48], train.y[:48]), calibration=Split(train.X[:16], train.y[:16]),
                      test=Split(test.X[:32], test.y[:32]), kind="embedding")


# ---------------------------------------------------------------- Stop during live training (ui/training.py)


class Interrupt:
    """Stands in for the progress bar once: its next update raises Streamlit's interrupt, as a click on any
    widget (e.g. Stop) makes the next st call of a running script raise."""

    def progress(self, *args, **kwargs):
        raise StopException()


def interrupt_after_two_epochs(monkeypatch) -> list[bool]:
    """Make the first live training run's progress callback meet Streamlit's interrupt after epoch 2; the
    returned list holds True once it has.

    AppTest cannot click a button while a run is going on (each run finishes before the test acts), so the
    interrupt is raised where Streamlit raises it (inside the callback's st call) and the Stop button's on_click
    is done by hand; the rest, stopping the trainer and keeping the partial model, is the page's."""
    original, fired = ui.training._Live.__call__, []

    def call(self, fraction, history):
        if len(history) == 2 and not fired:
            fired.append(True)
            self.bar = Interrupt()
        original(self, fraction, history)

    monkeypatch.setattr(ui.training._Live, "__call__", call)
    return fired


@pytest.fixture
def interrupted_after_two_epochs(monkeypatch):
    """`interrupt_after_two_epochs` with an empty run store before and after the test."""
    ui.training.finished_runs().clear()
    yield interrupt_after_two_epochs(monkeypatch)
    ui.training.finished_runs().clear()
