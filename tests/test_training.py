"""Fine-tuning with compression held: exact masks, straight-through and per-cluster gradients against hand
computations, QAT/k-means results that export exactly, determinism, purity, callbacks and bad inputs."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from compressor import encode, load, load_sample, low_rank, prune, quantize
from compressor.data import Split
from compressor.layers import eligible_layers
from compressor.low_rank import factorized_pairs, pair_rank
from compressor.quantization import QuantSetting, quantize_weight
from compressor.state import input_quant, recipe_of, weight_quant
from compressor.training import Adam, FakeQuantized, HeldZeros, SharedValues, accuracy, finetune
from tests import models


@pytest.fixture(scope="module")
def mlp():
    return load_sample("digits-mlp")


@pytest.fixture(scope="module")
def pruned_mlp(mlp):
    return prune(mlp.model, 0.9, scope="global")


def _snapshot(model: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.clone() for k, v in model.state_dict().items()}


def _unchanged(model: nn.Module, before: dict[str, torch.Tensor]) -> bool:
    after = model.state_dict()
    return before.keys() == after.keys() and all(torch.equal(before[k], after[k]) for k in before)


def _zeros(model: nn.Module) -> dict[str, torch.Tensor]:
    return {name: layer.weight.detach() == 0 for name, layer in eligible_layers(model).items()}


def _on_grid(layer: nn.Module) -> bool:
    """The weight is exactly what its WeightQuant decodes from its own codes (zeros aside: the mask stores them)."""
    spec, w = weight_quant(layer), layer.weight.detach()
    decoded = spec.dequantize(spec.codes(w))
    return torch.equal(decoded[w != 0], w[w != 0])


def _labelled(model: nn.Module, X: torch.Tensor) -> Split:
    """Inputs labelled by a model's own (centred) predictions, so every class occurs."""
    with torch.no_grad():
        logits = model(X)
    return Split(X, (logits - logits.mean(dim=0)).argmax(dim=1))


# ---------------------------------------------------------------- the rules, against hand computations


def test_held_zeros_zero_the_forward_and_the_gradient_exactly():
    latent = torch.randn(5, 7, generator=torch.Generator().manual_seed(0)).requires_grad_()
    mask = torch.rand(5, 7, generator=torch.Generator().manual_seed(1)) > 0.5
    upstream = torch.randn(5, 7, generator=torch.Generator().manual_seed(2))
    w = HeldZeros(mask)(latent)
    (w * upstream).sum().backward()
    assert torch.equal(w.detach(), latent.detach() * mask) and not torch.signbit(w[~mask]).any()  # +0.0
    assert torch.equal(latent.grad, upstream * mask)


@pytest.mark.parametrize("setting", [QuantSetting(2, "symmetric", "channel"), QuantSetting(4, "affine", "tensor"),
                                     QuantSetting(1, "symmetric", "tensor")])
def test_fake_quantization_is_the_quantizer_forward_and_the_identity_backward(setting):
    w0 = torch.randn(6, 10, generator=torch.Generator().manual_seed(3))
    mask = w0.abs() > 0.4
    latent = w0.clone().requires_grad_()
    upstream = torch.randn(6, 10, generator=torch.Generator().manual_seed(4))
    rule = FakeQuantized(mask, quantize_weight(w0, setting)[1])
    w = rule(latent)
    (w * upstream).sum().backward()
    expected, _ = quantize_weight(torch.where(mask, w0, 0.0), setting)
    assert torch.equal(w.detach(), expected)  # exactly the grid the Quantize step would give
    assert torch.equal(latent.grad, upstream * mask)  # straight through, masked


def test_shared_values_gradient_is_the_sum_over_each_cluster():
    codes = torch.randint(0, 4, (8, 9), generator=torch.Generator().manual_seed(5))
    mask = torch.rand(8, 9, generator=torch.Generator().manual_seed(6)) > 0.3
    codebook = torch.tensor([-0.5, -0.1, 0.2, 0.7], requires_grad=True)
    upstream = torch.randn(8, 9, generator=torch.Generator().manual_seed(7))
    w = SharedValues(mask, codes, codebook.detach())(codebook)
    (w * upstream).sum().backward()
    c, m, g = codes.numpy().ravel(), mask.numpy().ravel(), upstream.numpy().ravel()
    per_cluster = np.bincount(c[m], weights=g[m], minlength=4)  # Σ_{i: c_i = k, kept} ∂L/∂w_i
    np.testing.assert_allclose(codebook.grad.numpy(), per_cluster, rtol=1e-5, atol=1e-6)
    assert torch.equal(w.detach(), torch.where(mask, codebook.detach()[codes], 0.0))


def test_adam_is_torch_adam_bit_for_bit():
    torch.manual_seed(0)
    ours, theirs = nn.Linear(6, 3), nn.Linear(6, 3)
    theirs.load_state_dict(ours.state_dict())
    mine, reference = Adam(list(ours.parameters()), lr=3e-3), torch.optim.Adam(theirs.parameters(), lr=3e-3)
    X = torch.randn(20, 6, generator=torch.Generator().manual_seed(1))
    for step in range(5):
        for model, optimizer in ((ours, mine), (theirs, reference)):
            optimizer.zero_grad()
            model(X[4 * step : 4 * step + 4]).square().sum().backward()
            optimizer.step()
    assert torch.equal(ours.weight, theirs.weight) and torch.equal(ours.bias, theirs.bias)


# ---------------------------------------------------------------- pruning held


def test_finetuning_recovers_accuracy_with_pruned_weights_exactly_zero(mlp, pruned_mlp):
    before = _snapshot(pruned_mlp)
    tuned, history = finetune(pruned_mlp, mlp.data.train, epochs=3, lr=3e-3, test=mlp.data.test)
    assert _unchanged(pruned_mlp, before)
    zeros_before, zeros_after = _zeros(pruned_mlp), _zeros(tuned)
    assert all(torch.equal(zeros_before[n], zeros_after[n]) for n in zeros_before)  # the same zeros, no more, no fewer
    assert not any(torch.signbit(layer.weight[layer.weight == 0]).any() for layer in eligible_layers(tuned).values())
    assert accuracy(tuned, mlp.data.test) > accuracy(pruned_mlp, mlp.data.test) + 0.1
    assert [r["epoch"] for r in history] == [1.0, 2.0, 3.0]
    assert set(history[0]) == {"epoch", "loss", "train_accuracy", "test_accuracy"}
    assert history[-1]["loss"] < history[0]["loss"]
    assert history[-1]["test_accuracy"] == accuracy(tuned, mlp.data.test)  # the forward trained is the one returned
    assert not tuned.training and type(tuned.fc1) is nn.Linear and not hasattr(tuned.fc1, "parametrizations")


def test_same_seed_gives_bitwise_the_same_weights_and_another_seed_does_not(mlp, pruned_mlp):
    quantized = quantize(pruned_mlp, 4, scheme="symmetric", granularity="channel")
    a, history_a = finetune(quantized, mlp.data.train, epochs=1, seed=7)
    b, history_b = finetune(quantized, mlp.data.train, epochs=1, seed=7)
    c, _ = finetune(quantized, mlp.data.train, epochs=1, seed=8)
    assert _unchanged(a, _snapshot(b)) and history_a == history_b
    assert torch.equal(weight_quant(a.fc1).scale, weight_quant(b.fc1).scale)
    assert not torch.equal(a.fc1.weight, c.fc1.weight)


# ---------------------------------------------------------------- quantization-aware training


@pytest.mark.parametrize("kwargs", [dict(bits=2, scheme="symmetric", granularity="channel"),
                                    dict(bits=3, scheme="affine", granularity="tensor"),
                                    dict(bits=1, scheme="symmetric", granularity="channel")])
def test_qat_keeps_a_valid_grid_and_zeros_and_exports_exactly(mlp, pruned_mlp, kwargs):
    quantized = quantize(pruned_mlp, **kwargs)
    tuned, _ = finetune(quantized, mlp.data.train, epochs=1, lr=1e-3)
    zeros = _zeros(quantized)
    for name, layer in eligible_layers(tuned).items():
        spec, old = weight_quant(layer), weight_quant(eligible_layers(quantized)[name])
        assert (spec.bits, spec.method, spec.scheme, spec.granularity) == (old.bits, old.method, old.scheme, old.granularity)
        assert _on_grid(layer)
        assert (layer.weight[zeros[name]] == 0).all()  # every zero held
        assert len(torch.unique(layer.weight.detach()[0])) <= 2**spec.bits + 1
    assert not torch.equal(tuned.fc2.weight, quantized.fc2.weight)
    restored = load(encode(tuned).data)
    assert _unchanged(restored, _snapshot(tuned))
    assert torch.equal(restored(mlp.data.test.X), tuned(mlp.data.test.X))


def test_qat_wins_back_what_2_bit_post_training_quantization_loses(mlp):
    ptq = quantize(mlp.model, 2, scheme="symmetric", granularity="channel")
    qat, _ = finetune(ptq, mlp.data.train, epochs=5, lr=3e-3)
    assert accuracy(ptq, mlp.data.test) < 0.8  # ternary weights without training lose a lot
    assert accuracy(qat, mlp.data.test) > accuracy(mlp.model, mlp.data.test) - 0.05


def test_kmeans_layers_train_their_codebook_with_assignments_fixed(mlp, pruned_mlp):
    quantized = quantize(pruned_mlp, 3, method="kmeans")
    tuned, _ = finetune(quantized, mlp.data.train, epochs=1, lr=1e-3)
    for name, layer in eligible_layers(tuned).items():
        before = eligible_layers(quantized)[name]
        old, new = weight_quant(before), weight_quant(layer)
        assert new.method == "kmeans" and new.bits == 3 and not torch.equal(new.codebook, old.codebook)
        kept = before.weight != 0
        assert torch.equal(layer.weight != 0, kept)
        codes = old.codes(before.weight.detach())  # each weight's cluster before training ...
        assert torch.equal(layer.weight.detach()[kept], new.codebook[codes][kept])  # ... still its cluster after
    restored = load(encode(tuned).data)
    assert _unchanged(restored, _snapshot(tuned))


def test_input_quantization_hooks_and_low_rank_pairs_train_in_place(mlp):
    factorized = low_rank(mlp.model, rank_ratio=0.3, layers=["fc1", "fc2"])
    compressed = quantize(prune(factorized, 0.5), 4, activations=True, data=mlp.data.calibration)
    tuned, _ = finetune(compressed, mlp.data.train, epochs=1)
    assert set(factorized_pairs(tuned)) == {"fc1", "fc2"} and pair_rank(tuned.fc1) == pair_rank(compressed.fc1)
    assert input_quant(tuned.fc1[0]) == input_quant(compressed.fc1[0])
    assert len(tuned.fc1[0]._forward_pre_hooks) == 1  # the hook is still there (and not doubled)
    assert not torch.equal(tuned.fc1[0].weight, compressed.fc1[0].weight)
    assert all(_on_grid(layer) for layer in eligible_layers(tuned).values())
    assert torch.equal(load(encode(tuned).data)(mlp.data.test.X), tuned(mlp.data.test.X))


@pytest.mark.parametrize("make, shape", [(models.residual_cnn, (48, 3, 16, 16)), (models.tiny_transformer, (48, 6, 8))])
def test_other_architectures_finetune_with_compression_held(make, shape):
    model = make()
    data = _labelled(model, torch.randn(shape, generator=torch.Generator().manual_seed(9)))
    compressed = quantize(prune(model, 0.6), 4, scheme="symmetric", granularity="channel")
    before = _snapshot(compressed)
    tuned, history = finetune(compressed, data, epochs=2, batch_size=16, lr=3e-3)
    assert _unchanged(compressed, before)
    zeros = _zeros(compressed)
    for name, layer in eligible_layers(tuned).items():
        assert (layer.weight[zeros[name]] == 0).all() and _on_grid(layer)
    assert history[-1]["loss"] < history[0]["loss"]
    assert torch.equal(load(encode(tuned).data, base=model)(data.X[:4]), tuned(data.X[:4]))


# ---------------------------------------------------------------- options and callbacks


def test_layers_trains_only_the_named_layers_and_restores_requires_grad(mlp, pruned_mlp):
    tuned, _ = finetune(pruned_mlp, mlp.data.train, epochs=1, layers=["fc3"])
    assert torch.equal(tuned.fc1.weight, pruned_mlp.fc1.weight) and torch.equal(tuned.fc2.bias, pruned_mlp.fc2.bias)
    assert not torch.equal(tuned.fc3.weight, pruned_mlp.fc3.weight)
    assert all(p.requires_grad for p in tuned.parameters())


def test_progress_reports_every_epoch_and_should_stop_returns_the_model_so_far(mlp, pruned_mlp):
    calls = []
    tuned, history = finetune(pruned_mlp, mlp.data.train, epochs=3, progress=lambda f, h: calls.append((f, len(h))))
    assert calls == [(1 / 3, 1), (2 / 3, 2), (1.0, 3)]

    batches = iter(range(1000))
    stopped, partial = finetune(pruned_mlp, mlp.data.train, epochs=3, batch_size=64,
                                should_stop=lambda: next(batches) >= 25)  # 20 batches per epoch: stop in epoch 2
    assert len(partial) == 2 and partial[0]["epoch"] == 1.0 and partial[1]["epoch"] == pytest.approx(1 + 5 / 20)
    assert all(torch.equal(a, b) for a, b in zip(_zeros(stopped).values(), _zeros(pruned_mlp).values()))
    assert not torch.equal(stopped.fc1.weight, tuned.fc1.weight)

    untouched, none = finetune(pruned_mlp, mlp.data.train, epochs=2, should_stop=lambda: True)
    assert none == [] and _unchanged(untouched, _snapshot(pruned_mlp))


def test_the_recipe_tag_gains_the_finetune_step(mlp, pruned_mlp):
    tuned, _ = finetune(pruned_mlp, mlp.data.train, epochs=1, lr=2e-3)
    assert recipe_of(tuned)["steps"][-1] == {"type": "finetune", "epochs": 1, "lr": 2e-3, "batch_size": 64, "seed": 0}


# ---------------------------------------------------------------- bad inputs


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(epochs=0), "epochs=0 is out of range"),
        (dict(epochs=2.5), "epochs=2.5 must be a whole number"),
        (dict(lr=0), "lr=0 is out of range"),
        (dict(lr=-1e-3), "lr=-0.001 is out of range"),
        (dict(lr=float("nan")), "lr=nan is out of range"),
        (dict(lr="fast"), "lr='fast' must be a number"),
        (dict(batch_size=0), "batch_size=0 is out of range"),
        (dict(seed=-1), "seed=-1 is out of range"),
        (dict(layers=["fc9"]), "'fc9' matches no eligible layer"),
        (dict(test=Split(torch.zeros(2, 64))), "test has none"),
    ],
)
def test_bad_arguments_raise_value_error_naming_the_value(mlp, kwargs, message):
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(".", r"\.")):
        finetune(mlp.model, mlp.data.train, **kwargs)


def test_data_must_be_a_labelled_split(mlp):
    with pytest.raises(ValueError, match="needs labels"):
        finetune(mlp.model, Split(mlp.data.train.X))
    with pytest.raises(ValueError, match="must be a compressor.data.Split"):
        finetune(mlp.model, mlp.data)
    with pytest.raises(ValueError, match="no examples"):
        finetune(mlp.model, Split(torch.zeros(0, 64), torch.zeros(0, dtype=torch.long)))
