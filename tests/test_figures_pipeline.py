"""Pipeline figures: the waterfall's steps are the differences between stage sizes; accuracy per stage."""
from __future__ import annotations

import pandas as pd
import pytest

from compressor.figures.pipeline import Stage, size_waterfall, stage_accuracy, stage_info

STAGES = pd.DataFrame({
    "stage": ["fp32", "packed", "1 · prune", "2 · quantize"],
    "bytes": [200_000, 176_000, 22_000, 8_000],
    "accuracy": [0.98, 0.98, 0.77, 0.76],
})


def test_stage_info_reads_rows_in_order():
    assert stage_info(STAGES)[2] == Stage("1 · prune", 22_000, 0.77)


@pytest.mark.parametrize("bad, match", [
    (STAGES.drop(columns="bytes"), "bytes"),
    (STAGES.iloc[:0], "at least one"),
    (STAGES.assign(stage=["a", "a", "b", "c"]), "unique"),
])
def test_stage_info_rejects_bad_tables(bad, match):
    with pytest.raises(ValueError, match=match):
        stage_info(bad)


def test_waterfall_steps_are_size_differences_and_end_on_the_final_size():
    bars = size_waterfall(STAGES).data[0]
    assert list(bars.measure) == ["absolute", "relative", "relative", "relative", "total"]
    assert list(bars.x) == ["fp32", "packed", "1 · prune", "2 · quantize", "final file"]
    assert list(bars.y[:4]) == [200_000, -24_000, -154_000, -14_000]
    assert sum(bars.y[:4]) == 8_000  # the running sum the total bar shows
    assert bars.text[3] == "−14.0 kB (÷2.8)" and bars.text[-1] == "8.0 kB"


def test_waterfall_shows_growth_with_a_plus_sign():
    grown = pd.DataFrame({"stage": ["fp32", "1 · low_rank"], "bytes": [1000, 1500], "accuracy": [1.0, 1.0]})
    bars = size_waterfall(grown).data[0]
    assert list(bars.y[:2]) == [1000, 500] and bars.text[1].startswith("+500 B")


def test_waterfall_of_the_uncompressed_model_alone_has_no_total():
    bars = size_waterfall(STAGES.iloc[:1]).data[0]
    assert list(bars.measure) == ["absolute"]


def test_stage_accuracy_plots_every_stage_with_the_baseline_line():
    fig = stage_accuracy(STAGES, metric="accuracy")
    line = fig.data[0]
    assert list(line.x) == list(STAGES["stage"]) and list(line.y) == list(STAGES["accuracy"])
    assert list(line.text) == ["98.0%", "98.0%", "77.0%", "76.0%"]
    assert fig.layout.shapes[0].y0 == 0.98
