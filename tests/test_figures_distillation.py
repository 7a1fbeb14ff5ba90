"""Distillation figures: the data behind each figure is checked exactly (softmax against torch), then the figure
is checked to draw it."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from compressor.figures.distillation import (
    accuracy_curves, curves_info, describe_training, loss_curves, soft_targets, soft_targets_info, softmax,
    telling_example, training_json, training_of,
)

LOGITS = np.array([1.0, 9.0, 2.5, -1.0, 6.0])  # class 1 clearly, class 4 a distant runner-up


def entropy(p: list[float]) -> float:
    p = np.asarray(p)
    return float(-(p * np.log(p)).sum())


@pytest.mark.parametrize("T", [1.0, 4.0, 20.0])
def test_soft_targets_are_the_teachers_softmax_at_T_and_at_one(T):
    info = soft_targets_info(LOGITS, T, label=1)
    expected = torch.softmax(torch.tensor(LOGITS) / T, dim=0).numpy()
    np.testing.assert_allclose(info.soft, expected, rtol=1e-12)
    np.testing.assert_allclose(info.sharp, torch.softmax(torch.tensor(LOGITS), dim=0).numpy(), rtol=1e-12)
    assert info.classes == [0, 1, 2, 3, 4] and info.label == 1 and info.temperature == T
    assert sum(info.soft) == pytest.approx(1.0)


def test_a_higher_temperature_flattens_the_targets_and_keeps_their_order():
    sharp, soft = soft_targets_info(LOGITS, 1.0), soft_targets_info(LOGITS, 4.0)
    assert entropy(soft.soft) > entropy(sharp.soft)
    assert np.argsort(soft.soft).tolist() == np.argsort(sharp.soft).tolist()
    assert soft.soft[3] > 100 * sharp.sharp[3]  # the least likely class becomes visible


def test_softmax_is_stable_for_huge_logits():
    np.testing.assert_allclose(softmax(np.array([1000.0, 1000.0, -1000.0])), [0.5, 0.5, 0.0])


def test_soft_targets_figure_draws_both_temperatures_marks_the_label_and_shows_the_image():
    image = np.arange(64.0)
    fig = soft_targets(LOGITS, 4.0, label=1, image=image)
    heatmap, sharp, soft = fig.data
    assert heatmap.type == "heatmap" and np.asarray(heatmap.z).shape == (8, 8)
    assert np.asarray(heatmap.z)[1, 0] == 8.0  # row-major 8×8 pixels
    assert list(sharp.x) == ["0", "1 ✓", "2", "3", "4"]
    assert (sharp.name, soft.name) == ("T = 1", "T = 4")
    np.testing.assert_allclose(soft.y, soft_targets_info(LOGITS, 4.0).soft)
    assert "T = 4" in fig.layout.title.text
    without = soft_targets(LOGITS, 2.0)
    assert [t.type for t in without.data] == ["bar", "bar"]


def test_soft_targets_refuse_a_temperature_of_zero():
    with pytest.raises(ValueError, match="temperature=0"):
        soft_targets_info(LOGITS, 0)


def test_telling_example_is_right_with_a_visible_runner_up():
    logits = np.log(np.array([
        [0.10, 0.90, 0.00, 0.00],  # wrong (label 0 below): never chosen
        [0.999, 0.001, 0.0, 0.0],  # right, runner-up 0.1%
        [0.04, 0.95, 0.01, 0.0],  # right, runner-up 4%: closest to 5%
        [0.60, 0.40, 0.0, 0.0],  # right, runner-up 40%
    ]) + 1e-12)
    assert telling_example(logits, np.array([0, 0, 1, 0])) == 2
    assert telling_example(logits[:1], np.array([0])) == 0  # nothing right: the first example


def history(accuracies: list[float], losses: list[float]) -> list[dict]:
    return [{"epoch": float(i + 1), "loss": l, "train_accuracy": a, "test_accuracy": a}
            for i, (a, l) in enumerate(zip(accuracies, losses))]


def test_curves_info_reads_each_measure_per_epoch_and_allows_a_shorter_stopped_run():
    kd, scratch = history([0.8, 0.9, 0.95], [2.0, 1.0, 0.5]), history([0.7], [1.5])
    info = curves_info(kd, scratch, "test_accuracy", teacher=0.99, epochs=20)
    assert info.kd_epochs == [1.0, 2.0, 3.0] and info.kd == [0.8, 0.9, 0.95]
    assert info.scratch_epochs == [1.0] and info.scratch == [0.7]
    assert (info.teacher, info.epochs) == (0.99, 20)
    assert curves_info(kd, [], "loss").kd == [2.0, 1.0, 0.5]


def test_accuracy_curves_draw_kd_scratch_and_the_teacher_line():
    kd, scratch = history([0.8, 0.9], [2.0, 1.0]), history([0.7, 0.85], [1.5, 0.7])
    fig = accuracy_curves(kd, scratch, 0.99, epochs=20)
    curves = {t.name: t for t in fig.data}
    assert list(curves["KD student"].y) == [0.8, 0.9] and list(curves["scratch student"].x) == [1.0, 2.0]
    assert [s.y0 for s in fig.layout.shapes] == [0.99]
    assert fig.layout.xaxis.range == (0, 20.5)  # fixed while a run fills it in
    assert accuracy_curves(kd, scratch).layout.shapes == ()


def test_loss_curves_use_a_log_axis_and_name_each_objective():
    fig = loss_curves(history([0.8], [2.0]), history([0.7], [1.5]))
    assert fig.layout.yaxis.type == "log"
    assert [list(t.y) for t in fig.data] == [[2.0], [1.5]]
    assert "KL" in fig.data[0].name and "CE" in fig.data[1].name


def test_a_students_record_round_trips_and_reads_in_words():
    settings = {"temperature": 4.0, "alpha": 0.9, "epochs": 20, "lr": 0.003}
    text = training_json("digits-mlp@width=0.4", "distill", settings)
    assert training_of(text) == {"student": "digits-mlp@width=0.4", "training": "distill", **settings}
    assert describe_training(text) == "KD student digits-mlp@width=0.4 (T=4, α=0.9, 20 epochs)"
    scratch = training_json("digits-cnn@width=0.5", "scratch", {"epochs": 1})
    assert describe_training(scratch) == "scratch student digits-cnn@width=0.5 (1 epoch)"
    for recipe in ('{"steps": []}', json.dumps({"steps": [{"type": "prune", "amount": 0.5}]}), "not json"):
        assert training_of(recipe) is None and describe_training(recipe) is None
    with pytest.raises(ValueError, match="training='finetune'"):
        training_json("digits-mlp@width=0.4", "finetune", {})
