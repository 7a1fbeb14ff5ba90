"""The Overview (pages/0_Overview.py, app.py's default page): loads for every sample, shows the baseline the core measures, the picker persists."""
from __future__ import annotations

from functools import cache
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

import compressor as cz
from ui.display import format_bytes

ROOT = Path(__file__).resolve().parents[1]
SAMPLES = [name for name in cz.list_samples() if name != "minilm-l6"]  # the heavy one: tests/test_page_minilm.py


@cache
def baseline(name: str) -> cz.Report:
    """The core's report of the uncompressed sample (latency not timed: the page's timing is its own)."""
    s = cz.load_sample(name)
    return cz.evaluate(s.model, s.data, latency=None)


def metrics(at: AppTest) -> dict[str, str]:
    return {metric.label: metric.value for metric in at.metric}


def pick(at: AppTest, name: str) -> AppTest:
    return at.sidebar.selectbox(key="_model_picker").set_value(name).run()


@pytest.fixture
def app() -> AppTest:
    return AppTest.from_file(str(ROOT / "app.py"), default_timeout=60).run()


@pytest.mark.parametrize("name", SAMPLES)
def test_overview_shows_the_baseline_the_core_measures(app, name):
    pick(app, name)
    assert not app.exception
    assert app.session_state["model_name"] == name
    report = baseline(name)
    shown = metrics(app)
    assert shown["Test accuracy"] == f"{report.accuracy:.1%}"
    assert shown["Parameters"] == f"{report.params:,}"
    assert shown["fp32 size"] == format_bytes(report.dense_bytes)
    assert shown["Exported file"] == format_bytes(report.compressed_bytes)
    latency = shown.get("Latency (deployed)", shown.get("Latency"))  # deployed where ONNX Runtime measured it
    assert latency.endswith(" ms")
    table = app.dataframe[0].value
    assert table["name"].tolist() == [row["name"] for row in report.layers]
    assert table["params"].tolist() == [row["params"] for row in report.layers]
    assert name in app.markdown[0].value


def test_overview_links_every_page(app):
    assert not app.exception
    links = [link.proto.page for link in app.main.get("page_link")]  # the tour's links: the URL path of each page
    pages = [path.stem.split("_", 1)[1] for path in (ROOT / "pages").glob("*.py")]  # "1_Pruning.py" -> "Pruning"
    assert sorted(links) == sorted(p for p in pages if p != "Overview") and len(links) == 9


def test_picker_choice_persists_across_pages(app):
    other = SAMPLES[1]
    pick(app, other)
    for page in ("pages/5_Trade-offs.py", "pages/6_Export.py", "pages/0_Overview.py"):
        app.switch_page(page).run()
        assert not app.exception, page
        assert app.session_state["model_name"] == other
        assert app.sidebar.selectbox(key="_model_picker").value == other
    assert metrics(app)["Test accuracy"] == f"{baseline(other).accuracy:.1%}"
    pick(app, SAMPLES[0])  # and back: the new choice persists in turn
    app.switch_page("pages/5_Trade-offs.py").run()
    assert app.session_state["model_name"] == SAMPLES[0]
    assert app.sidebar.selectbox(key="_model_picker").value == SAMPLES[0]


def test_overview_states_no_speedup_of_the_baseline_against_itself(app):
    captions = " ".join(c.value for c in app.caption)
    assert "median of" in captions and "denormals flushed to zero" in captions
    assert "speedup" not in captions.lower()
    assert not any("speedup" in block.value.lower() for block in app.info)


def test_the_menu_lists_every_page_file_with_the_overview_first_and_default():
    from ui.session import PAGES

    assert [path for path, _, _ in PAGES] == sorted(f"pages/{p.name}" for p in (ROOT / "pages").glob("*.py"))
    assert [label for _, label, _ in PAGES] == [  # the names the pages/ folder gives them (and their URLs)
        Path(path).stem.split("_", 1)[1] for path, _, _ in PAGES]
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=60).run()
    assert not at.exception and at.title[0].value.endswith("Compression Lab")  # the default page: the Overview
    at.switch_page("pages/2_Quantization.py").run()
    assert not at.exception and at.title[0].value.endswith("Quantization")
    assert "showSidebarNavigation" not in (ROOT / ".streamlit" / "config.toml").read_text()  # Streamlit's menu is on
