"""Unstructured pruning, checked against torch.nn.utils.prune as the oracle."""
from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F
import torch.nn.utils.prune as torch_prune
from torch import nn

from compressor.data import Split
from compressor.layers import eligible_layers
from compressor.pruning import masks, prune, sparsity, taylor_scores
from compressor.state import WeightQuant


def mlp() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(16, 40), nn.ReLU(), nn.Linear(40, 30), nn.ReLU(), nn.Linear(30, 4)).eval()


def weights(model: nn.Module) -> dict[str, torch.Tensor]:
    return {name: layer.weight.detach().clone() for name, layer in eligible_layers(model).items()}


def torch_global(model: nn.Module, amount: float, names: list[str] | None = None) -> nn.Module:
    """torch's global L1 pruning over the given layers, made permanent."""
    reference = copy.deepcopy(model)
    layers = eligible_layers(reference)
    chosen = [(layers[n], "weight") for n in (names or layers)]
    torch_prune.global_unstructured(chosen, pruning_method=torch_prune.L1Unstructured, amount=amount)
    for layer, _ in chosen:
        torch_prune.remove(layer, "weight")
    return reference


@pytest.mark.parametrize("amount", [0.0, 0.3, 0.37, 0.5, 0.9, 0.99])
@pytest.mark.parametrize("build", [mlp, "residual_cnn", "tiny_transformer"])
def test_layer_scope_equals_torch_l1_unstructured(amount, build, request):
    model = build() if callable(build) else request.getfixturevalue(build)
    pruned = prune(model, amount)
    for name, layer in eligible_layers(copy.deepcopy(model)).items():
        torch_prune.l1_unstructured(layer, "weight", amount=amount)
        assert torch.equal(eligible_layers(pruned)[name].weight, layer.weight), name


@pytest.mark.parametrize("amount", [0.2, 0.5, 0.9])
@pytest.mark.parametrize("build", [mlp, "residual_cnn"])
def test_global_scope_equals_torch_global_unstructured(amount, build, request):
    model = build() if callable(build) else request.getfixturevalue(build)
    reference = torch_global(model, amount)
    got, want = weights(prune(model, amount, scope="global")), weights(reference)
    assert all(torch.equal(got[n], want[n]) for n in want)
    per_layer = set(sparsity(reference).values())
    assert len(per_layer) > 1  # global ranking really spreads sparsity unevenly


def test_biases_and_unselected_layers_untouched_and_input_pure():
    model = mlp().train()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    pruned = prune(model, 0.6, layers=["0", "4"])
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())  # input bitwise unchanged
    assert model.training and not pruned.training
    assert torch.equal(pruned[2].weight, model[2].weight)
    for i in (0, 2, 4):
        assert torch.equal(pruned[i].bias, model[i].bias)
    assert sparsity(pruned) == {"0": pytest.approx(0.6), "2": 0.0, "4": pytest.approx(round(0.6 * 120) / 120)}


@pytest.mark.parametrize("criterion", ["magnitude", "random"])
@pytest.mark.parametrize("scope", ["layer", "global"])
def test_already_zero_weights_count_as_pruned(criterion, scope):
    first = prune(mlp(), 0.5, criterion=criterion, scope=scope)
    again = prune(first, 0.5, criterion=criterion, scope=scope, seed=1)
    more = prune(first, 0.7, criterion=criterion, scope=scope, seed=2)
    total = lambda m: torch.cat([w.reshape(-1) for w in weights(m).values()]).eq(0).float().mean().item()
    assert total(again) == pytest.approx(total(first)) == pytest.approx(0.5, abs=0.01)
    assert total(more) == pytest.approx(0.7, abs=0.01)
    for name, kept_before in masks(first).items():
        assert not (masks(more)[name] & ~kept_before).any()  # pruned weights never come back
        assert torch.equal(masks(again)[name], kept_before)


def test_overrides_per_layer_and_with_global_scope():
    model = mlp()
    pruned = prune(model, 0.5, overrides={"2": {"amount": 0.9}, "4": {"amount": 0.0}})
    assert sparsity(pruned) == {"0": pytest.approx(0.5), "2": pytest.approx(0.9), "4": 0.0}
    mixed = prune(model, 0.8, scope="global", overrides={"2": {"amount": 0.1}})
    assert sparsity(mixed)["2"] == pytest.approx(0.1)  # overridden: layer-wise at its own amount
    reference = torch_global(model, 0.8, names=["0", "4"])  # the others share one global ranking
    assert torch.equal(mixed[0].weight, reference[0].weight) and torch.equal(mixed[4].weight, reference[4].weight)
    random_fc2 = prune(model, 0.5, overrides={"2": {"criterion": "random"}})
    assert torch.equal(random_fc2[0].weight, pruned[0].weight)
    assert not torch.equal(random_fc2[2].weight != 0, prune(model, 0.5)[2].weight != 0)


def test_taylor_equals_a_per_batch_squared_reference_with_and_without_labels():
    """Molchanov et al. (2019): score = mean over mini-batches b of (w · ∂L_b/∂w)², L_b the batch's mean CE."""
    model = mlp()
    X = torch.randn(20, 16, generator=torch.Generator().manual_seed(5))  # 20 = 8 + 8 + 4: three batches
    y = torch.randint(0, 4, (20,), generator=torch.Generator().manual_seed(6))
    for labels in (y, None):
        reference = copy.deepcopy(model)
        layers = eligible_layers(reference)
        scores = {name: torch.zeros_like(layer.weight) for name, layer in layers.items()}
        for start in (0, 8, 16):
            reference.zero_grad()
            logits = reference(X[start : start + 8])
            F.cross_entropy(logits, logits.argmax(dim=1) if labels is None else labels[start : start + 8]).backward()
            for name, layer in layers.items():
                scores[name] += (layer.weight * layer.weight.grad).detach() ** 2 / 3
        for name, layer in layers.items():
            torch_prune.l1_unstructured(layer, "weight", amount=0.6, importance_scores=scores[name])
        pruned = prune(model, 0.6, criterion="taylor", data=Split(X, labels))
        got, want = weights(pruned), weights(reference)
        assert all(torch.equal(got[n] != 0, want[n] != 0) for n in want)
        assert not all(torch.equal(got[n] != 0, weights(prune(model, 0.6))[n] != 0) for n in want)


def test_taylor_scores_by_hand_on_one_weight():
    """A 2-class linear model without bias, one example per batch: ∂CE/∂w_c = (softmax(w·x)_c − [c = t]) · x,
    written out by hand; each batch's (w·g)² is averaged, which differs from squaring the mean gradient's term."""
    layer = nn.Linear(1, 2, bias=False)
    with torch.no_grad():
        layer.weight.copy_(torch.tensor([[2.0], [-1.0]]))
    X, y = torch.tensor([[1.0], [-1.0]]), torch.tensor([0, 0])
    scores = taylor_scores(layer, {"w": layer.weight}, Split(X, y), batch_size=1)["w"]
    w = torch.tensor([2.0, -1.0])
    expected = torch.zeros(2)
    for x, t in zip(X[:, 0], y):
        p = torch.softmax(w * x, dim=0)  # class probabilities for this one example
        g = (p - F.one_hot(t, 2)) * x  # ∂CE/∂w_c = (p_c − [c = t]) · x
        expected += (w * g) ** 2 / 2
    assert torch.allclose(scores[:, 0], expected)
    mean_grad_score = (w * sum((torch.softmax(w * x, 0) - F.one_hot(t, 2)) * x for x, t in zip(X[:, 0], y)) / 2) ** 2
    assert not torch.allclose(scores[:, 0], mean_grad_score)  # squaring per batch is not squaring the mean


def test_random_is_seeded_and_exact_in_count():
    model = mlp()
    a, b, c = (prune(model, 0.4, criterion="random", seed=s) for s in (3, 3, 4))
    assert all(torch.equal(a[i].weight, b[i].weight) for i in (0, 2, 4))
    assert not torch.equal(a[0].weight, c[0].weight)
    assert sparsity(a)["0"] == pytest.approx(round(0.4 * 640) / 640)


def test_pruning_after_quantization_stays_on_the_grid():
    model = mlp()
    layer = model[0]
    g = torch.Generator().manual_seed(7)
    scale, zero_point = torch.rand(40, generator=g) * 0.1 + 0.01, torch.randint(0, 16, (40,), generator=g).float()
    uniform = WeightQuant(4, "uniform", "affine", "channel", scale=scale, zero_point=zero_point)
    with torch.no_grad():
        layer.weight.copy_(uniform.dequantize(torch.randint(0, 16, layer.weight.shape, generator=g)))
    layer.weight_quant = uniform
    codebook = torch.tensor([-0.3, -0.1, 0.05, 0.2])
    kmeans = WeightQuant(bits=2, method="kmeans", scheme="kmeans", granularity="tensor", codebook=codebook)
    with torch.no_grad():
        model[2].weight.copy_(codebook[torch.randint(0, 4, model[2].weight.shape, generator=g)])
    model[2].weight_quant = kmeans

    pruned = prune(model, 0.5)
    w = pruned[0].weight.detach()
    assert torch.equal(pruned[0].weight_quant.scale, scale) and torch.equal(pruned[2].weight_quant.codebook, codebook)
    assert torch.equal(uniform.dequantize(uniform.codes(w)), w)  # zeros included: still on the grid
    kept = pruned[2].weight.detach()[pruned[2].weight != 0]
    assert torch.isin(kept, codebook).all() and sparsity(pruned)["2"] >= 0.5


def test_sparsity_and_masks_helpers():
    model = mlp()
    with torch.no_grad():
        model[0].weight[:4] = 0
    assert sparsity(model) == {"0": pytest.approx(0.1), "2": 0.0, "4": 0.0}
    assert masks(model)["0"].dtype == torch.bool and masks(model)["0"].sum().item() == 576


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"amount": 1.5}, "amount=1.5 is out of range; allowed: 0 to 0.99"),
        ({"amount": -0.1}, "amount=-0.1"),
        ({"amount": "0.5"}, "amount='0.5'"),
        ({"amount": 0.5, "criterion": "l3"}, "criterion='l3'"),
        ({"amount": 0.5, "scope": "local"}, "scope='local'"),
        ({"amount": 0.5, "layers": ["fc9"]}, "'fc9' matches no eligible layer"),
        ({"amount": 0.5, "overrides": {"0": {"bits": 4}}}, "unknown key"),
        ({"amount": 0.5, "overrides": {"0": {"amount": 2.0}}}, "amount for layer '0'=2.0"),
        ({"amount": 0.5, "overrides": {"0": {"criterion": "l0"}}}, "criterion for layer '0'='l0'"),
        ({"amount": 0.5, "seed": -1}, "seed=-1"),
        ({"amount": 0.5, "criterion": "taylor"}, "criterion='taylor' needs data"),
        ({"amount": 0.5, "criterion": "taylor", "data": torch.randn(4, 16)}, "data must be a compressor.data.Split"),
        ({"amount": 0.5, "criterion": "taylor", "data": Split(torch.zeros(0, 16))}, "at least one example"),
        ({"amount": 0.5, "criterion": "activation"}, "criterion='activation' needs data"),
        ({"amount": 0.5, "criterion": "activation", "data": Split(torch.zeros(0, 16))}, "non-empty"),
    ],
)
def test_bad_arguments_raise(kwargs, message):
    with pytest.raises(ValueError) as error:
        prune(mlp(), **kwargs)
    assert message in str(error.value)


@pytest.mark.parametrize("amount", [0.3, 0.7])
def test_activation_criterion_equals_torch_l1_on_wanda_scores(amount):
    """|w_ij| · ‖x_j‖ with x each layer's input over the data (Wanda), masked as torch masks importance scores."""
    model, X = mlp(), torch.randn(50, 16, generator=torch.Generator().manual_seed(3))
    pruned = prune(model, amount, criterion="activation", data=Split(X))
    inputs = {"0": X, "2": torch.relu(model[0](X)), "4": torch.relu(model[2](torch.relu(model[0](X))))}
    for name, layer in eligible_layers(copy.deepcopy(model)).items():
        wanda = layer.weight.detach().abs() * inputs[name].detach().norm(dim=0)
        torch_prune.l1_unstructured(layer, "weight", amount=amount, importance_scores=wanda)
        assert torch.equal(eligible_layers(pruned)[name].weight, layer.weight), name


def test_pruned_models_still_run(residual_cnn, cnn_input, tiny_transformer, seq_input):
    for model, x in ((residual_cnn, cnn_input), (tiny_transformer, seq_input)):
        pruned = prune(model, 0.5, scope="global")
        assert pruned(x).shape == model(x).shape
        assert not torch.equal(pruned(x), model(x))
