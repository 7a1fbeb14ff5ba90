"""ui.figure_cache: figures built once for every session, their plain data made once, copies for changes."""
import json

import numpy as np
import plotly.graph_objects as go
import plotly.io
import pytest

from ui import figure_cache


@pytest.fixture(autouse=True)
def empty_cache():
    figure_cache.clear()
    yield
    figure_cache.clear()


def heatmap() -> go.Figure:
    rng = np.random.default_rng(0)
    return go.Figure([go.Heatmap(z=rng.random((16, 16)), name="weights"),
                      go.Scatter(x=[0], y=[0], name="current")], layout={"title": "mask"})


def plain_json(figure: go.Figure) -> dict:
    return json.loads(plotly.io.to_json(figure.to_dict(), validate=False))


def test_a_figure_is_built_once_for_everyone() -> None:
    builds = []
    first = figure_cache.shared(("mask", "m"), lambda: builds.append(1) or heatmap())
    again = figure_cache.shared(("mask", "m"), lambda: builds.append(1) or heatmap())
    assert again is first and builds == [1]


def test_what_streamlit_sends_is_made_once_and_equals_plotlys_own() -> None:
    shown = figure_cache.shared(("mask", "m"), heatmap)
    assert shown.to_dict() is shown.to_dict()  # st.plotly_chart calls it on every rerun
    assert plain_json(shown) == plain_json(heatmap())  # plotly's own conversion of the same figure


def test_sending_does_not_change_the_plain_data() -> None:
    shown = figure_cache.shared(("mask", "m"), heatmap)
    before = json.dumps(shown.to_dict(), default=str)
    plotly.io.to_json(shown, validate=False)  # what Streamlit does with it
    assert json.dumps(shown.to_dict(), default=str) == before


def test_a_private_copy_changes_without_touching_the_shared_figure() -> None:
    shown = figure_cache.shared(("mask", "m"), heatmap)
    sent = plain_json(shown)
    mine = figure_cache.private_copy(shown)
    mine.add_trace(go.Scatter(x=[1], y=[2], name="recovered"))
    assert type(mine) is go.Figure and len(mine.data) == 3
    assert plain_json(mine) != sent and plain_json(shown) == sent and len(shown.data) == 2


def test_moved_puts_the_marker_at_the_new_point_and_keeps_the_curve() -> None:
    curve = figure_cache.shared(("sweep", "m"), heatmap)
    at = figure_cache.moved(curve, "current", 0.7, 0.9)
    assert (list(at.data[1].x), list(at.data[1].y)) == ([0.7], [0.9])
    assert (list(curve.data[1].x), list(curve.data[1].y)) == ([0], [0])
    assert plain_json(at)["data"][0] == plain_json(curve)["data"][0]  # the curve, as the browser gets it


def test_a_figure_shared_with_its_facts_is_frozen_and_the_facts_kept_as_they_are() -> None:
    facts = figure_cache.shared(("sweep", "q"), lambda: (heatmap(), {"larger": [7]}))
    assert isinstance(facts[0], figure_cache.Frozen) and facts[1] == {"larger": [7]}  # its figure frozen too
    assert facts[0].to_dict() is facts[0].to_dict()
