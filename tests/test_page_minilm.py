"""The app on minilm-l6: pages show fidelity instead of accuracy, without errors (one heavy model, cached per process)."""
from __future__ import annotations

from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

ROOT = Path(__file__).resolve().parents[1]


def open_page(page: str) -> AppTest:
    at = AppTest.from_file(str(ROOT / page), default_timeout=900)
    at.session_state["model_name"] = "minilm-l6"
    return at.run()


@pytest.fixture(scope="module")
def pruning() -> AppTest:
    return open_page("pages/1_Pruning.py")  # computes the baseline's and the default configuration's reports


def test_pruning_page_shows_fidelity_and_no_taylor(pruning):
    assert not pruning.exception and not pruning.error
    metrics = {m.label: m.value for m in pruning.metric}
    assert 0.0 < float(metrics["Mean cosine to uncompressed"]) < 1.0  # 50% of the weights zeroed
    assert "Accuracy" not in metrics
    assert not any("taylor" in option.lower() for option in pruning.radio(key="prune_criterion").options)
    assert pruning.toggle(key="prune_heavy_sweep").value is False  # the sweep waits to be asked for


def test_overview_shows_topic_accuracy(pruning):
    at = open_page("app.py")  # the baseline report is cached by now
    assert not at.exception
    metrics = {m.label: m.value for m in at.metric}
    assert metrics["Parameters"] == "22,565,376"
    assert metrics["Topic accuracy"].endswith("%")
