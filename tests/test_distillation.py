"""Knowledge distillation: the loss against a hand computation in numpy, students of the samples that export
and load back, KD against scratch training, purity and bad inputs."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from compressor import encode, load, load_sample, prune
from compressor.data import Split
from compressor.distillation import (
    build_student,
    distill,
    distillation_loss,
    make_student,
    parameter_count,
    student_source,
    train_scratch,
)
from compressor.models import build_model
from compressor.state import source_of
from compressor.training import accuracy
from tests import models


@pytest.fixture(scope="module")
def mlp():
    return load_sample("digits-mlp")


def _snapshot(model: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.clone() for k, v in model.state_dict().items()}


def _equal_states(a: nn.Module, b: nn.Module) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


def _numpy_kd_loss(zs: np.ndarray, zt: np.ndarray, y: np.ndarray, T: float, alpha: float) -> float:
    """The formula written out: α·T²·mean_b Σ_c p_t (log p_t − log p_s) + (1 − α)·mean_b (−log softmax(z_s)[y])."""
    def log_softmax(z):
        z = z - z.max(axis=1, keepdims=True)
        return z - np.log(np.exp(z).sum(axis=1, keepdims=True))

    log_ps, log_pt = log_softmax(zs / T), log_softmax(zt / T)
    kl = (np.exp(log_pt) * (log_pt - log_ps)).sum(axis=1).mean()
    ce = -log_softmax(zs)[np.arange(len(y)), y].mean()
    return alpha * T**2 * kl + (1 - alpha) * ce


@pytest.mark.parametrize("T, alpha", [(1.0, 0.5), (4.0, 0.9), (2.5, 0.0), (3.0, 1.0)])
def test_distillation_loss_matches_the_formula_computed_by_hand(T, alpha):
    g = torch.Generator().manual_seed(0)
    zs, zt = torch.randn(7, 5, generator=g, dtype=torch.float64) * 3, torch.randn(7, 5, generator=g, dtype=torch.float64) * 3
    y = torch.randint(0, 5, (7,), generator=g)
    ours = distillation_loss(zs, zt, y, T, alpha).item()
    assert ours == pytest.approx(_numpy_kd_loss(zs.numpy(), zt.numpy(), y.numpy(), T, alpha), rel=1e-12)


def test_a_student_that_equals_its_teacher_pays_only_the_hard_term():
    z = torch.randn(4, 3, generator=torch.Generator().manual_seed(1))
    y = torch.tensor([0, 2, 1, 1])
    assert distillation_loss(z, z, y, 4.0, 0.7).item() == pytest.approx(0.3 * nn.functional.cross_entropy(z, y).item())


# ---------------------------------------------------------------- students of the samples


def test_sample_students_scale_every_hidden_size_and_keep_inputs_and_classes(mlp):
    student = make_student(mlp.model, width=0.4)
    assert (student.fc1.out_features, student.fc2.out_features, student.fc3.out_features) == (120, 40, 10)
    assert student.fc1.in_features == 64 and source_of(student) == "digits-mlp@width=0.4"
    assert parameter_count(student) == 64 * 120 + 120 + 120 * 40 + 40 + 40 * 10 + 10  # about 1/4 of 50 610
    cnn = load_sample("digits-cnn")
    small = make_student(cnn.model, width=0.5)
    assert (small.conv1.out_channels, small.conv2.out_channels, small.fc1.out_features, small.fc2.out_features) == (3, 8, 60, 42)
    assert small(cnn.data.test.X[:2]).shape == (2, 10)


def test_students_are_seeded_without_touching_the_global_generator(mlp):
    state = torch.random.get_rng_state()
    a, b, c = make_student(mlp.model, 0.25), make_student(mlp.model, 0.25), make_student(mlp.model, 0.25, seed=1)
    assert torch.equal(torch.random.get_rng_state(), state)
    assert _equal_states(a, b) and not torch.equal(a.fc1.weight, c.fc1.weight)


def test_an_exported_student_loads_back_from_its_source(mlp):
    student, _ = distill(mlp.model, make_student(mlp.model, 0.3), mlp.data.train, epochs=1)
    student = prune(student, 0.5)
    restored = load(encode(student).data)  # rebuilt with build_model("digits-mlp@width=0.3"), no base given
    assert source_of(restored) == "digits-mlp@width=0.3"
    assert _equal_states(restored, student)
    assert torch.equal(restored(mlp.data.test.X), student(mlp.data.test.X))


@pytest.mark.parametrize("source, message", [
    ("digits-mlp@width=abc", "width 'abc' is not a number"),
    ("digits-mlp@width=0", "width=0 is out of range"),
    ("digits-mlp@width=1.5", "width=1.5 is out of range"),
])
def test_bad_student_sources_are_named(source, message):
    with pytest.raises(ValueError, match=message):
        build_model(source)


def test_build_model_and_build_student_agree(mlp):
    assert _equal_states(build_model(student_source("digits-cnn", 0.5)), build_student("digits-cnn@width=0.5"))


# ---------------------------------------------------------------- training


def test_distillation_beats_scratch_training_at_equal_epochs_and_leaves_inputs_alone(mlp):
    teacher_before, student = _snapshot(mlp.model), make_student(mlp.model, 0.4)
    student_before = _snapshot(student)
    kd, kd_history = distill(mlp.model, student, mlp.data.train, temperature=4.0, alpha=0.9, epochs=4, lr=3e-3,
                             test=mlp.data.test)
    scratch, scratch_history = train_scratch(student, mlp.data.train, epochs=4, lr=3e-3, test=mlp.data.test)
    assert all(torch.equal(v, mlp.model.state_dict()[k]) for k, v in teacher_before.items())
    assert all(torch.equal(v, student.state_dict()[k]) for k, v in student_before.items())
    assert not mlp.model.training and not kd.training
    assert accuracy(kd, mlp.data.test) > accuracy(scratch, mlp.data.test)
    assert kd_history[-1]["test_accuracy"] == accuracy(kd, mlp.data.test)
    assert [r["epoch"] for r in kd_history] == [r["epoch"] for r in scratch_history] == [1.0, 2.0, 3.0, 4.0]


def test_distillation_is_deterministic(mlp):
    student = make_student(mlp.model, 0.25)
    a, history_a = distill(mlp.model, student, mlp.data.train, epochs=1, seed=3)
    b, history_b = distill(mlp.model, student, mlp.data.train, epochs=1, seed=3)
    assert _equal_states(a, b) and history_a == history_b


def test_any_model_can_teach_a_student_from_an_entry_point():
    teacher = models.residual_cnn()
    X, y = models.residual_cnn_data()
    with pytest.raises(ValueError, match="no built-in student"):
        make_student(teacher)
    student = make_student(teacher, source="tests.models:residual_cnn", seed=2)
    assert source_of(student) == "tests.models:residual_cnn"
    trained, history = distill(teacher, student, Split(X, y), epochs=2, batch_size=16)
    assert len(history) == 2 and not _equal_states(trained, student)


def test_bad_arguments_raise_value_error_naming_the_value(mlp):
    student = make_student(mlp.model, 0.25)
    for kwargs, message in [
        (dict(temperature=0), "temperature=0 is out of range"),
        (dict(alpha=1.5), r"alpha=1.5 is out of range"),
        (dict(epochs=0), "epochs=0 is out of range"),
    ]:
        with pytest.raises(ValueError, match=message):
            distill(mlp.model, student, mlp.data.train, **kwargs)
    with pytest.raises(ValueError, match="width=0 is out of range"):
        make_student(mlp.model, width=0)
    with pytest.raises(ValueError, match="needs labels"):
        distill(mlp.model, student, Split(mlp.data.train.X))
    wrong = nn.Sequential(nn.Flatten(), nn.Linear(64, 3))
    with pytest.raises(ValueError, match="must predict the same classes"):
        distill(mlp.model, wrong, mlp.data.train)
