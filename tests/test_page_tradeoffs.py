"""The Trade-offs page: every evaluated configuration is a point; the quick grid, the front, pins and the CSV."""
from __future__ import annotations

import io
import json
from functools import cache
from pathlib import Path

import pandas as pd
import pytest
import streamlit as st
from streamlit.delta_generator import DeltaGenerator
from streamlit.testing.v1 import AppTest

import compressor as cz
from compressor.figures.tradeoffs import VIEWS
from compressor.sweeps import pareto_front, summary
from ui.latency_view import EAGER
from ui.session import POINTS
from ui.tradeoffs_cache import quick_grid

ROOT = Path(__file__).resolve().parents[1]
PAGE = "pages/5_Trade-offs.py"
EDITOR = "trade_pins_{}"


@cache
def expected(name: str, recipe_json: str) -> cz.Report:
    """The core's report for a recipe (latency not timed: the page's timing is its own measurement)."""
    s = cz.load_sample(name)
    recipe = cz.Recipe.from_json(recipe_json)
    return cz.evaluate(cz.compress(s.model, recipe, s.data), s.data, baseline=s.model, latency=None,
                       recipe=recipe.to_dict())


def editor(at: AppTest) -> pd.DataFrame:
    return at.data_editor[0].value


def recorded(at: AppTest, name: str) -> pd.DataFrame:
    """The session's points of one model, as the page stored them."""
    frame = pd.DataFrame(list(at.session_state[POINTS].values()))
    return frame[frame["model"] == name].reset_index(drop=True)


def figure(at: AppTest, index: int) -> dict:
    return json.loads(at.get("plotly_chart")[index].proto.spec)


@pytest.fixture
def page() -> AppTest:
    at = AppTest.from_file(str(ROOT / PAGE), default_timeout=60)
    return at.run()


@pytest.fixture
def downloads(monkeypatch) -> list[dict]:
    """Every st.download_button call's label, data and file name (AppTest does not keep the served bytes)."""
    calls: list[dict] = []
    original = DeltaGenerator.download_button

    def spy(self, label, data, *args, **kwargs):
        calls.append({"label": label, "data": data, "file_name": kwargs.get("file_name")})
        return original(self, label, data, *args, **kwargs)

    monkeypatch.setattr(DeltaGenerator, "download_button", spy)
    monkeypatch.setattr(st, "download_button", lambda *args, **kwargs: spy(st._main, *args, **kwargs))
    return calls


def test_deep_link_shows_the_baseline_and_offers_the_quick_grid(page):
    assert not page.exception
    assert editor(page)["label"].tolist() == ["baseline"]
    assert recorded(page, "digits-mlp")["accuracy"].tolist() == [expected("digits-mlp", cz.Recipe().to_json()).accuracy]
    assert "add a quick grid" in page.info[0].value
    assert not page.button(key="trade_grid").disabled
    assert [tab.label for tab in page.tabs] == [*VIEWS, "3-D view"]
    (chart,) = page.get("plotly_chart")  # only the open tab is drawn
    assert json.loads(chart.proto.spec)["layout"]["title"]["text"] == "Accuracy vs size — digits-mlp"


@pytest.mark.parametrize(("tab", "traces"), [
    ("Accuracy vs latency", {"Pareto front", "baseline"}),
    ("Size vs latency", {"Pareto front", "baseline"}),
    ("3-D view", {"dominated", "Pareto front", "baseline"}),
])
def test_each_tab_draws_its_view(page, tab, traces):
    page.session_state["trade_view"] = tab
    page.run()
    assert not page.exception
    (chart,) = page.get("plotly_chart")
    spec = json.loads(chart.proto.spec)
    assert spec["layout"]["title"]["text"].startswith(tab.replace("3-D view", "Accuracy, size and latency"))
    assert {trace["name"] for trace in spec["data"]} == traces  # only the baseline so far: no page groups


def test_quick_grid_records_timed_points_equal_to_the_core(page):
    page.button(key="trade_grid").click().run()
    assert not page.exception
    assert not page.info  # no longer "few points"
    assert page.button(key="trade_grid").disabled  # the grid is already there
    table = editor(page)
    grid = quick_grid()
    assert table["label"].tolist() == ["baseline", *grid]
    points = recorded(page, "digits-mlp")
    assert points["latency_ms"].notna().all()  # the grid is timed: it feeds the latency views
    for label, recipe in grid.items():
        row = points.set_index("label").loc[label]
        core = expected("digits-mlp", recipe.to_json(indent=None))
        assert row["accuracy"] == core.accuracy and row["compressed_bytes"] == core.compressed_bytes
        assert row["page"] == "Trade-offs"
    structured = points[points["label"].str.contains("channels removed")]
    assert (structured["macs"] < points.loc[0, "macs"]).all()  # the ones that really shrink the computation

    # "on front": the 3-objective Pareto front of what the table shows (deployed latency by default)
    assert points["deployed_latency_ms"].notna().all() and table["kernel"].notna().all()
    assert set(points.set_index("label")["kernel"]) == {"fp32", "int8", "int4", "simulated"}  # 2-bit: simulated
    points["ratio"] = points["deployed_latency_ms"] / points["deployed_baseline_latency_ms"]  # relative to baseline
    front = pareto_front(points, {"accuracy": "max", "compressed_bytes": "min", "ratio": "min"})
    assert table["front"].tolist() == front.tolist()
    page.radio(key="trade_latency_source").set_value(EAGER).run()  # eager PyTorch's latency instead
    points["ratio"] = points["latency_ms"] / points["baseline_latency_ms"]
    front = pareto_front(points, {"accuracy": "max", "compressed_bytes": "min", "ratio": "min"})
    assert editor(page)["front"].tolist() == front.tolist()

    # the accuracy-vs-size chart draws that view's own front, as a step line sorted by size
    size_front = points[pareto_front(points, {"accuracy": "max", "compressed_bytes": "min"})]
    traces = {trace["name"]: trace for trace in figure(page, 0)["data"]}
    assert traces["Pareto front"]["x"] == sorted(size_front["compressed_bytes"].tolist())
    assert traces["Pareto front"]["line"]["shape"] == "hv"
    assert traces["baseline"]["y"] == [points.loc[0, "accuracy"]]
    assert "prune 80% magnitude, global → quantize 4-bit affine, per channel" in " ".join(traces["Trade-offs"]["hovertext"])


def test_pinned_points_form_the_comparison_table_and_the_csv(page, downloads):
    page.button(key="trade_grid").click().run()
    downloads.clear()
    page.session_state[EDITOR.format("digits-mlp")] = {
        "edited_rows": {1: {"pinned": True}, 11: {"pinned": True}}, "added_rows": [], "deleted_rows": [],
    }
    page.run()
    assert not page.exception
    labels = ["50% zeros + 8-bit", "50% channels removed"]
    assert page.dataframe[-1].value["label"].tolist() == labels  # the comparison table
    assert page.subheader[0].value == "Pinned: 2"
    assert recorded(page, "digits-mlp").query("pinned")["label"].tolist() == labels  # kept in the session's points
    (csv,) = [call for call in downloads if call["file_name"] == "digits-mlp-tradeoffs.csv"]
    assert csv["label"] == "Download the comparison (CSV)"
    frame = pd.read_csv(io.StringIO(csv["data"]))
    assert frame["label"].tolist() == labels
    assert cz.Recipe.from_json(frame["recipe"].iloc[1]) == quick_grid()["50% channels removed"]
    assert frame["accuracy"].iloc[0] == expected("digits-mlp", frame["recipe"].iloc[0]).accuracy


def test_nothing_pinned_downloads_every_point(page, downloads):
    page.run()
    assert not page.exception
    (csv,) = [call for call in downloads if call["file_name"] == "digits-mlp-tradeoffs.csv"]
    assert csv["label"] == "Download all points (CSV)"
    assert pd.read_csv(io.StringIO(csv["data"]))["label"].tolist() == ["baseline"]


def test_points_belong_to_the_picked_model(page):
    page.button(key="trade_grid").click().run()
    page.sidebar.selectbox(key="_model_picker").set_value("digits-cnn").run()
    assert not page.exception
    assert editor(page)["label"].tolist() == ["baseline"]  # the MLP's grid is not the CNN's
    assert not page.button(key="trade_grid").disabled
    page.button(key="trade_grid").click().run()
    assert not page.exception
    points = recorded(page, "digits-cnn")
    assert len(points) == 1 + len(quick_grid())
    row = points.set_index("label").loc["75% channels removed"]
    assert row["accuracy"] == expected("digits-cnn", row["recipe"]).accuracy


def test_from_the_app_points_from_other_pages_appear_and_pins_survive_a_page_switch():
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=60).run()
    at.switch_page("pages/1_Pruning.py").run()  # evaluates (and records) its default configuration
    assert not at.exception
    at.switch_page(PAGE).run()
    assert not at.exception
    table = editor(at)
    assert "Pruning" in table["page"].tolist()
    row = recorded(at, "digits-mlp").query("page == 'Pruning'").iloc[0]
    assert row["accuracy"] == expected("digits-mlp", row["recipe"]).accuracy
    position = table["page"].tolist().index("Pruning")
    at.session_state[EDITOR.format("digits-mlp")] = {
        "edited_rows": {position: {"pinned": True}}, "added_rows": [], "deleted_rows": [],
    }
    at.run()
    at.switch_page("pages/6_Export.py").run()
    at.switch_page(PAGE).run()
    assert not at.exception
    assert editor(at)["pinned"].tolist() == [i == position for i in range(len(table))]
    assert at.dataframe[-1].value["label"].tolist() == [row["label"]]


def test_points_without_latency_are_kept_out_of_the_latency_views():
    at = AppTest.from_file(str(ROOT / PAGE), default_timeout=60)
    recipe = cz.Recipe((cz.Quantize(bits=4),)).to_json(indent=None)
    report = expected("digits-mlp", recipe)  # evaluated with latency=None, as a page might
    at.session_state[POINTS] = {("digits-mlp", recipe): {"model": "digits-mlp", "page": "Quantization", "label": "q4",
                                                         **summary(report), "recipe": recipe, "pinned": False}}
    at.run()
    assert not at.exception
    assert "1 point(s) were evaluated without latency timing" in at.caption[0].value
    size_view = {trace["name"]: trace for trace in figure(at, 0)["data"]}
    assert size_view["Quantization"]["x"] == [report.compressed_bytes]
    at.session_state["trade_view"] = "Accuracy vs latency"
    at.run()
    assert "Quantization" not in {trace["name"] for trace in figure(at, 0)["data"]}


def test_students_of_the_distillation_page_are_points_described_in_words():
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=60).run()
    at.switch_page("pages/7_Distillation.py").run()
    if "distill_train" in [b.key for b in at.button]:  # not in the run store, and this loaded machine is slow
        at.button(key="distill_train").click().run()
    at.switch_page(PAGE).run()
    assert not at.exception
    shown = editor(at)
    kd = shown[shown["label"].str.startswith("KD student w=0.4")]
    assert kd["summary"].tolist() == ["KD student digits-mlp@width=0.4 (T=4, α=0.9, 20 epochs)"]
    assert not kd["front"].isna().any()
    hover = " ".join(" ".join(trace.get("hovertext") or trace.get("text") or []) for trace in figure(at, 0)["data"]
                     if isinstance(trace.get("hovertext") or trace.get("text"), list))
    assert "scratch student digits-mlp@width=0.4 (20 epochs)" in hover
    at.switch_page("pages/6_Export.py").run()  # students are not recipes of the model: not offered for export
    assert not at.exception and not at.error
