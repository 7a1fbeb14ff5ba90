"""Shared fixtures: the models beyond the samples, with example inputs."""
from __future__ import annotations

import pytest
import torch

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
