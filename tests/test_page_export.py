"""The Export page: the downloaded file is the measured model, its size is the report's, bad recipes are errors."""
from __future__ import annotations

import contextlib
import io
import json
import re
from functools import cache
from pathlib import Path

import pandas as pd
import pytest
from streamlit.delta_generator import DeltaGenerator
from streamlit.testing.v1 import AppTest

import compressor as cz
from compressor import cli
from compressor.figures.tradeoffs import describe_recipe
from ui.display import format_bytes
from ui.tradeoffs_cache import quick_grid

ROOT = Path(__file__).resolve().parents[1]
PAGE = "pages/6_Export.py"
EXAMPLE = cz.Recipe((  # the page's default recipe
    cz.Prune(amount=0.8, scope="global"), cz.Quantize(bits=4, scheme="symmetric", granularity="channel"),
))
Q4 = cz.Recipe((cz.Quantize(bits=4, granularity="channel"),))
LOW_RANK = cz.Recipe((cz.LowRank(rank_ratio=0.5), cz.Quantize(bits=8)))


@cache
def expected(name: str, recipe: cz.Recipe) -> tuple[cz.Report, int]:
    """The core's report for the recipe and the size of the artifact encoded from the same model."""
    s = cz.load_sample(name)
    small = cz.compress(s.model, recipe, s.data)
    report = cz.evaluate(small, s.data, baseline=s.model, latency=None, recipe=recipe.to_dict())
    return report, cz.encode(small, recipe.to_dict()).size


def metrics(at: AppTest) -> dict[str, str]:
    return {metric.label: metric.value for metric in at.metric}


def assert_shows(at: AppTest, name: str, recipe: cz.Recipe) -> None:
    assert not at.exception
    report, size = expected(name, recipe)
    shown = metrics(at)
    assert shown["Accuracy"] == f"{report.accuracy:.1%}"
    assert shown["Size (exported file)"] == format_bytes(report.compressed_bytes)
    assert size == report.compressed_bytes
    assert f"is {size:,} bytes" in at.success[0].value


@pytest.fixture
def downloads(monkeypatch) -> dict[str, dict]:
    """The latest st.download_button call per key: label, data, file name (AppTest does not keep served bytes)."""
    calls: dict[str, dict] = {}
    original = DeltaGenerator.download_button

    def spy(self, label, data, *args, **kwargs):
        calls[kwargs["key"]] = {"label": label, "data": data, "file_name": kwargs.get("file_name")}
        return original(self, label, data, *args, **kwargs)

    monkeypatch.setattr(DeltaGenerator, "download_button", spy)  # the page calls it on columns
    return calls


@pytest.fixture
def page(downloads) -> AppTest:
    return AppTest.from_file(str(ROOT / PAGE), default_timeout=60).run()


def paste(at: AppTest, text: str) -> AppTest:
    return at.text_area(key="export_recipe_text").set_value(text).run()


def test_deep_link_exports_the_example_recipe(page, downloads):
    assert page.radio(key="export_source").value == "A recipe (JSON)"  # nothing recorded yet in this session
    assert_shows(page, "digits-mlp", EXAMPLE)
    stems = {key: re.fullmatch(r"(digits-mlp-[0-9a-f]{8})(\..+)", call["file_name"]).groups()
             for key, call in downloads.items()}
    assert {suffix for _, suffix in stems.values()} == {".clab", ".recipe.json", ".report.csv", ".report.json"}
    assert len({stem for stem, _ in stems.values()}) == 1  # one name for the four files


def test_downloaded_files_load_back_to_the_measured_model(page, downloads, tmp_path):
    report, size = expected("digits-mlp", EXAMPLE)
    data = downloads["export_artifact"]["data"]
    assert len(data) == size
    loaded = cz.load(data)  # what the page's Python snippet does with the file
    sample = cz.load_sample("digits-mlp")
    again = cz.evaluate(loaded, sample.data, baseline=sample.model, latency=None)
    assert again.accuracy == report.accuracy and again.compressed_bytes == size
    assert cz.Recipe.from_json(downloads["export_recipe"]["data"]) == EXAMPLE
    layers = pd.read_csv(io.StringIO(downloads["export_report_csv"]["data"]))
    assert layers["name"].tolist() == [row["name"] for row in report.layers]
    assert layers["bytes"].tolist() == [row["bytes"] for row in report.layers]
    full = json.loads(downloads["export_report_json"]["data"])
    assert full["accuracy"] == report.accuracy and full["compressed_bytes"] == size
    assert full["recipe"] == EXAMPLE.to_dict()

    # the command line shown on the page reads the same file
    path = tmp_path / downloads["export_artifact"]["file_name"]
    path.write_bytes(data)
    assert f"--model {path.name}" in page.code[1].value and f'cz.load("{path.name}")' in page.code[0].value
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        assert cli.main(["evaluate", "--model", str(path), "--json", "--runs", "20"]) == 0
    measured = json.loads(out.getvalue())
    assert measured["accuracy"] == report.accuracy and measured["compressed_bytes"] == size


def test_pasted_recipes_show_what_the_core_reports(page):
    assert_shows(paste(page, Q4.to_json()), "digits-mlp", Q4)
    assert_shows(paste(page, LOW_RANK.to_json()), "digits-mlp", LOW_RANK)
    page.sidebar.selectbox(key="_model_picker").set_value("digits-cnn").run()
    assert_shows(page, "digits-cnn", LOW_RANK)


@pytest.mark.parametrize(("text", "message"), [
    ('{"steps": [{"type": "prune", "amount": 0.5, "speed": "fast"}]}', "unknown key(s) speed"),
    ('{"steps": [{"type": "prune", "amount": 0.5}', "not valid JSON"),
    ('{"steps": [{"type": "quantize", "bits": 0}]}', "bits=0"),
    ('{"steps": [{"type": "low_rank", "rank": 1000}]}', "rank=1000 is out of range"),  # found while compressing
    ('{"steps": [{"type": "prune", "layers": ["conv*"]}]}', "matches no eligible layer"),
])
def test_bad_recipes_are_errors_not_tracebacks(page, text, message):
    paste(page, text)
    assert not page.exception
    assert message in page.error[0].value
    assert not page.get("download_button")  # nothing to download from a broken recipe


def test_uploaded_recipe_file_is_used(page):
    page.file_uploader(key="export_recipe_upload").upload("mine.json", Q4.to_json().encode(), "application/json")
    page.run()
    assert_shows(page, "digits-mlp", Q4)


def test_recorded_configurations_newest_first(page):
    paste(page, Q4.to_json())
    paste(page, LOW_RANK.to_json())
    page.radio(key="export_source").set_value("A configuration from this session").run()
    assert not page.exception
    options = page.selectbox(key="export_point").options
    assert [option.split(" · ")[:2] for option in options] == [  # each labelled by its recipe, newest first
        [describe_recipe(recipe.to_json()), "Export"] for recipe in (LOW_RANK, Q4, EXAMPLE)
    ]
    assert_shows(page, "digits-mlp", LOW_RANK)  # default: the most recent
    page.selectbox(key="export_point").set_value(cz.Recipe.from_json(EXAMPLE.to_json()).to_json(indent=None)).run()
    assert_shows(page, "digits-mlp", EXAMPLE)


def test_from_the_app_the_most_recent_point_is_the_default(downloads):
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=60).run()
    at.switch_page("pages/5_Trade-offs.py").run()
    at.button(key="trade_grid").click().run()
    at.switch_page(PAGE).run()
    assert not at.exception
    assert at.radio(key="export_source").value == "A configuration from this session"
    recipe = quick_grid()["75% channels removed"]  # the grid's last configuration
    assert at.selectbox(key="export_point").options[0].startswith("75% channels removed · Trade-offs")
    assert at.selectbox(key="export_point").value == recipe.to_json(indent=None)
    assert_shows(at, "digits-mlp", recipe)
    assert cz.Recipe.from_json(downloads["export_recipe"]["data"]) == recipe


def test_the_longest_recipe_exports_and_a_longer_one_is_one_clear_error():
    at = AppTest.from_file(str(ROOT / PAGE), default_timeout=120).run()
    at.radio(key="export_source").set_value("A recipe (JSON)").run()
    at.text_area(key="export_recipe_text").input(json.dumps({"steps": [{"type": "quantize", "bits": 8}] * 400})).run()
    assert not at.exception and len(at.error) == 1 and "64" in at.error[0].value
    text = json.dumps({"steps": [{"type": "quantize", "bits": 8}] * 64})
    at.text_area(key="export_recipe_text").input(text).run()
    assert not at.exception and not at.error
    report, size = expected("digits-mlp", cz.Recipe.from_json(text))
    assert metrics(at)["Accuracy"] == f"{report.accuracy:.1%}"
