"""The shipped sample models: weights, accuracy, data splits, reproducible training, prunable structure."""
from __future__ import annotations

import time

import numpy as np
import pytest
import torch
import torch_pruning as tp
from sklearn.datasets import load_digits

import sample_models
from sample_models import train as training
from sample_models.architectures import DigitsCNN

NAMES = ["digits-mlp", "digits-cnn"]
MIN_TEST_ACCURACY = {"digits-mlp": 0.97, "digits-cnn": 0.98}


def test_catalog_lists_the_samples_with_descriptions():
    catalog = sample_models.catalog()
    assert list(catalog) == [*NAMES, "minilm-l6"]  # minilm-l6: tests/test_minilm.py
    assert all(isinstance(text, str) and text and "\n" not in text for text in catalog.values())


@pytest.mark.parametrize("name", NAMES)
def test_shipped_weights_meet_accuracy_threshold(name):
    sample = sample_models.load(name)
    assert sample.name == name and sample.description == sample_models.catalog()[name]
    assert not sample.model.training
    assert training.accuracy(sample.model, sample.data.test) >= MIN_TEST_ACCURACY[name]


@pytest.mark.parametrize("name", NAMES)
def test_weight_file_is_a_small_state_dict(name):
    path = sample_models.weights_path(name)
    assert path.stat().st_size < 1_000_000
    state = torch.load(path, weights_only=True)
    assert state.keys() == sample_models.build(name).state_dict().keys()


@pytest.mark.parametrize("name", list(sample_models.catalog()))  # every shipped sample, present and future
def test_shipped_weights_hold_no_subnormal_floats(name):
    """Subnormals slow dense CPU kernels tenfold and fake the speedup of any technique that zeroes them."""
    state = sample_models.load(name).model.state_dict()
    subnormal = {key: int(((v != 0) & (v.abs() < torch.finfo(v.dtype).tiny)).sum())
                 for key, v in state.items() if v.is_floating_point()}
    assert sum(subnormal.values()) == 0, subnormal


def test_training_writes_subnormals_as_exact_zeros():
    model = torch.nn.Linear(3, 2)
    with torch.no_grad():
        model.weight.copy_(torch.tensor([[1e-39, -1e-40, 0.5], [1.2e-38, -2.0, 1e-45]]))
    flushed = training.flush_subnormals(model)
    assert flushed is model
    assert torch.equal(model.weight, torch.tensor([[0.0, 0.0, 0.5], [1.2e-38, -2.0, 0.0]]))
    assert all(not v.signbit() for v in model.weight.reshape(-1)[[0, 1, 5]])  # +0.0, the zero pruning writes


def test_layer_names_are_readable():
    mlp = sample_models.load("digits-mlp").model
    assert [name for name, _ in mlp.named_children()] == ["fc1", "fc2", "fc3"]
    assert [(m.in_features, m.out_features) for m in mlp.children()] == [(64, 300), (300, 100), (100, 10)]
    cnn = sample_models.load("digits-cnn").model
    assert {"conv1", "conv2", "fc1", "fc2", "fc3"} <= dict(cnn.named_children()).keys()
    assert (cnn.conv1.out_channels, cnn.conv2.out_channels, cnn.fc1.in_features) == (6, 16, 64)


def test_loading_twice_gives_equal_but_independent_models():
    first, second = sample_models.load("digits-cnn"), sample_models.load("digits-cnn")
    assert first.model is not second.model
    for (key, a), b in zip(first.model.state_dict().items(), second.model.state_dict().values()):
        assert torch.equal(a, b), key
    with torch.no_grad():
        first.model.fc3.weight.zero_()
    assert second.model.fc3.weight.abs().sum() > 0


def test_load_is_fast_once_the_data_is_cached():
    sample_models.load("digits-mlp")
    times = []
    for _ in range(3):
        start = time.perf_counter()
        sample_models.load("digits-mlp")
        times.append(time.perf_counter() - start)
    assert min(times) < 0.05


@pytest.mark.parametrize("name, shape", [("digits-mlp", (64,)), ("digits-cnn", (1, 8, 8))])
def test_splits_have_promised_types_shapes_and_range(name, shape):
    data = sample_models.load_data(name)
    for split in (data.train, data.calibration, data.test):
        assert split.X.dtype == torch.float32 and split.y.dtype == torch.int64
        assert split.X.shape[1:] == shape
        assert 0.0 <= split.X.min() and split.X.max() <= 1.0
    assert data.example_input.shape == (1, *shape)


def test_splits_partition_the_digits_with_30_percent_stratified_test():
    digits = load_digits()
    data = sample_models.load_data("digits-mlp")
    assert len(data.train) + len(data.test) == len(digits.target)
    assert len(data.test) >= 0.3 * len(digits.target)
    # train and test together are exactly the original images (as a multiset), so they are disjoint
    rows = np.concatenate([data.train.X.numpy(), data.test.X.numpy()]) * 16  # back to pixel values 0..16, exact
    ours = np.unique(rows, axis=0, return_counts=True)
    theirs = np.unique(digits.data, axis=0, return_counts=True)
    assert np.array_equal(ours[0], theirs[0]) and np.array_equal(ours[1], theirs[1])
    expected = np.bincount(digits.target) * len(data.test) / len(digits.target)
    assert np.all(np.abs(np.bincount(data.test.y.numpy()) - expected) <= 1)


def test_calibration_is_the_start_of_train_and_images_match_vectors():
    vectors, images = sample_models.load_data("digits-mlp"), sample_models.load_data("digits-cnn")
    assert len(vectors.calibration) == 256
    assert torch.equal(vectors.calibration.X, vectors.train.X[:256])
    assert torch.equal(vectors.calibration.y, vectors.train.y[:256])
    assert torch.equal(images.test.X.flatten(1), vectors.test.X)
    assert torch.equal(images.test.y, vectors.test.y)


@pytest.mark.parametrize("name", NAMES)
def test_short_training_is_deterministic(name):
    threads = torch.get_num_threads()
    first, second = training.train_model(name, epochs=1), training.train_model(name, epochs=1)
    assert torch.get_num_threads() == threads
    torch.manual_seed(training.CONFIGS[name].seed)
    untrained = sample_models.build(name).state_dict()
    for key, value in first.state_dict().items():
        assert torch.equal(value, second.state_dict()[key]), key
    assert not torch.equal(first.state_dict()["fc1.weight"], untrained["fc1.weight"])


def test_cnn_with_fewer_channels_still_runs():
    images = sample_models.load_data("digits-cnn").test.X[:5]
    assert DigitsCNN(channels=(4, 10), hidden=(30, 20))(images).shape == (5, 10)


def test_torch_pruning_can_remove_conv2_channels_from_the_cnn():
    sample = sample_models.load("digits-cnn")
    model = sample.model
    graph = tp.DependencyGraph().build_dependency(model, example_inputs=sample.data.example_input)
    graph.get_pruning_group(model.conv2, tp.prune_conv_out_channels, idxs=[0, 3, 7]).prune()
    assert (model.conv2.out_channels, model.fc1.in_features) == (13, 52)
    assert model(sample.data.test.X[:5]).shape == (5, 10)


@pytest.mark.parametrize("call", [sample_models.load, sample_models.load_data, sample_models.build, training.train_model])
def test_unknown_sample_name_is_rejected(call):
    with pytest.raises(ValueError, match="digits-vit"):
        call("digits-vit")


def test_bad_epoch_count_is_rejected():
    with pytest.raises(ValueError, match="epochs=0"):
        training.train_model("digits-mlp", epochs=0)
