"""compress(): steps in order, on copies; the input model never changes."""
from __future__ import annotations

import pytest
import torch

from compressor import LowRank, Prune, Quantize, Recipe, compress, compress_stages, load_sample
from compressor.layers import eligible_layers


@pytest.fixture(scope="module")
def mlp():
    return load_sample("digits-mlp")


def _snapshot(model):
    return {k: v.clone() for k, v in model.state_dict().items()}


def test_compress_leaves_the_input_model_unchanged(mlp):
    before = _snapshot(mlp.model)
    recipe = Recipe((Prune(amount=0.7, criterion="taylor"), LowRank(rank_ratio=0.5), Quantize(bits=3, activations=True)))
    small = compress(mlp.model, recipe, mlp.data)
    after = mlp.model.state_dict()
    assert before.keys() == after.keys() and all(torch.equal(before[k], after[k]) for k in before)
    assert small is not mlp.model
    assert not hasattr(mlp.model.fc1, "weight_quant") and not hasattr(mlp.model.fc1, "input_quant")


def test_empty_recipe_gives_an_equal_copy(mlp):
    copy = compress(mlp.model, Recipe(), mlp.data)
    X = mlp.data.test.X
    assert copy is not mlp.model
    assert torch.equal(copy(X), mlp.model(X))


def test_stages_follow_the_recipe_and_quantization_keeps_pruned_zeros(mlp):
    recipe = Recipe((Prune(amount=0.8, scope="global"), Quantize(bits=4, scheme="symmetric", granularity="channel")))
    pruned, quantized = list(compress_stages(mlp.model, recipe, mlp.data))
    for name, layer in eligible_layers(pruned).items():
        q_layer = eligible_layers(quantized)[name]
        assert torch.equal(layer.weight == 0, q_layer.weight == 0)
        assert q_layer.weight_quant.bits == 4
    total = sum(m.weight.numel() for m in eligible_layers(pruned).values())
    zeros = sum((m.weight == 0).sum().item() for m in eligible_layers(pruned).values())
    assert zeros == pytest.approx(0.8 * total, abs=2)


def test_a_single_step_or_a_list_is_accepted(mlp):
    one = compress(mlp.model, Prune(amount=0.5), mlp.data)
    listed = compress(mlp.model, [Prune(amount=0.5)], mlp.data)
    assert torch.equal(one.fc1.weight, listed.fc1.weight)


def test_steps_that_need_data_say_so_without_it(mlp):
    with pytest.raises(ValueError, match="taylor"):
        compress(mlp.model, Prune(amount=0.5, criterion="taylor"))
    with pytest.raises(ValueError, match="example input"):
        compress(mlp.model, Prune(amount=0.5, structured=True))


def test_structured_pruning_through_the_recipe_really_shrinks_the_cnn():
    cnn = load_sample("digits-cnn")
    small = compress(cnn.model, Prune(amount=0.5, structured=True, layers=("conv*",)), cnn.data)
    assert small.conv1.out_channels < cnn.model.conv1.out_channels
    assert small(cnn.data.test.X[:4]).shape == (4, 10)


def test_unknown_layer_in_a_recipe_is_named(mlp):
    with pytest.raises(ValueError, match="'fc9'"):
        compress(mlp.model, Quantize(bits=4, layers=("fc9",)), mlp.data)
