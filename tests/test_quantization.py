"""Quantization against independent references: torch's fake-quantize ops and observers, scikit-learn's KMeans."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from sklearn.cluster import KMeans
from torch import nn
from torch.ao.quantization import MinMaxObserver, PerChannelMinMaxObserver

from compressor.data import Split
from compressor.layers import eligible_layers
from compressor.quantization import quantization_error, quantization_levels, quantize
from compressor.state import input_quant, weight_quant

UNIFORM = [(scheme, granularity) for scheme in ("affine", "symmetric") for granularity in ("tensor", "channel")]
ALL_SETTINGS = [dict(method="uniform", scheme=s, granularity=g, bits=b) for s, g in UNIFORM for b in (1, 2, 4, 8)] + [
    dict(method="kmeans", bits=b) for b in (1, 2, 4, 8)
]


def mixed_model() -> nn.Module:
    """Conv1d and Linear layers; input (B, 3, 8)."""
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv1d(3, 8, 3), nn.ReLU(), nn.Flatten(), nn.Linear(8 * 6, 32), nn.ReLU(), nn.Linear(32, 5)
    ).eval()


def mixed_input(n: int = 64) -> torch.Tensor:
    return torch.randn(n, 3, 8, generator=torch.Generator().manual_seed(1))


def pruned(model: nn.Module, amount: float = 0.5) -> nn.Module:
    """Zero the smallest-magnitude half of every weight, in place (as pruning leaves it: exact zeros)."""
    with torch.no_grad():
        for layer in eligible_layers(model).values():
            w = layer.weight
            threshold = w.abs().flatten().kthvalue(int(amount * w.numel())).values
            w[w.abs() <= threshold] = 0.0
    return model


def observer_qparams(w: torch.Tensor, scheme: str, granularity: str, bits: int):
    """Scale, zero point and code range from PyTorch's own min/max observers."""
    if scheme == "affine":
        dtype, low, high = torch.quint8, 0, 2**bits - 1
        qscheme = torch.per_tensor_affine if granularity == "tensor" else torch.per_channel_affine
    else:
        dtype, low, high = torch.qint8, -(2 ** (bits - 1) - 1), 2 ** (bits - 1) - 1
        qscheme = torch.per_tensor_symmetric if granularity == "tensor" else torch.per_channel_symmetric
    kwargs = dict(dtype=dtype, qscheme=qscheme, quant_min=low, quant_max=high)
    observer = MinMaxObserver(**kwargs) if granularity == "tensor" else PerChannelMinMaxObserver(ch_axis=0, **kwargs)
    observer(w)
    scale, zero_point = observer.calculate_qparams()
    return scale, zero_point, low, high


def torch_fake_quantize(w, scale, zero_point, low, high, granularity):
    if granularity == "tensor":
        return torch.fake_quantize_per_tensor_affine(w, float(scale), int(zero_point), low, high)
    return torch.fake_quantize_per_channel_affine(w, scale, zero_point.int(), 0, low, high)


# ---------------------------------------------------------------- uniform grids against torch


@pytest.mark.parametrize(  # 1-bit symmetric is binary ±α, not torch's grid: see test_one_bit_symmetric_is_binary
    "scheme,granularity,bits", [(s, g, b) for s, g in UNIFORM for b in (1, 2, 3, 4, 8) if (s, b) != ("symmetric", 1)]
)
@pytest.mark.parametrize("make_model", [mixed_model, lambda: pruned(mixed_model())], ids=["dense", "pruned"])
def test_uniform_matches_torch_fake_quantize(scheme, granularity, bits, make_model):
    model = make_model()
    new = quantize(model, bits=bits, scheme=scheme, granularity=granularity)
    for name, layer in eligible_layers(model).items():
        w = layer.weight.detach()
        scale, zero_point, low, high = observer_qparams(w, scheme, granularity, bits)
        quantized = dict(new.named_modules())[name]
        spec = weight_quant(quantized)
        assert torch.equal(quantized.weight, torch_fake_quantize(w, scale, zero_point, low, high, granularity))
        assert torch.equal(spec.scale, scale)
        offset = 0 if scheme == "affine" else 2 ** (bits - 1)  # symmetric codes are stored unsigned
        assert torch.equal(spec.zero_point, zero_point.float() + offset)
        assert spec.scale.shape == ((1,) if granularity == "tensor" else (w.shape[0],))
        assert (spec.bits, spec.method, spec.scheme, spec.granularity) == (bits, "uniform", scheme, granularity)


@pytest.mark.parametrize("granularity", ["tensor", "channel"])
def test_one_signed_weights_extend_the_range_to_zero(granularity):
    model = nn.Sequential(nn.Linear(16, 8))
    with torch.no_grad():
        model[0].weight.abs_().add_(0.5)  # all in [0.5, ...]: 0 must still be a level
    new = quantize(model, bits=3, granularity=granularity)
    w = model[0].weight.detach()
    scale, zero_point, low, high = observer_qparams(w, "affine", granularity, 3)
    assert torch.equal(new[0].weight, torch_fake_quantize(w, scale, zero_point, low, high, granularity))
    assert torch.all(weight_quant(new[0]).zero_point == 0) and 0.0 in quantization_levels(new[0])


@pytest.mark.parametrize("bits", [2, 4, 8])
def test_grouped_and_depthwise_convs_per_channel_match_torch(residual_cnn, bits):
    new = quantize(residual_cnn, bits=bits, scheme="symmetric", granularity="channel")
    quantized = dict(new.named_modules())
    for name in ("depthwise", "grouped", "pointwise", "head"):
        w = dict(residual_cnn.named_modules())[name].weight.detach()
        scale, zero_point, low, high = observer_qparams(w, "symmetric", "channel", bits)
        assert torch.equal(quantized[name].weight, torch_fake_quantize(w, scale, zero_point, low, high, "channel"))


@pytest.mark.parametrize("granularity", ["tensor", "channel"])
def test_one_bit_symmetric_is_binary(granularity):
    model = pruned(mixed_model())
    new = quantize(model, bits=1, scheme="symmetric", granularity=granularity)
    for name, layer in eligible_layers(model).items():
        w = layer.weight.detach()
        rows = w.reshape(1 if granularity == "tensor" else w.shape[0], -1)
        alpha = torch.stack([row[row != 0].abs().mean() for row in rows])  # mean |w| over non-zeros
        expected = (torch.sign(rows) * alpha[:, None]).view_as(w)
        quantized = dict(new.named_modules())[name]
        assert torch.allclose(quantized.weight, expected, rtol=1e-6, atol=0)
        spec = weight_quant(quantized)
        assert torch.all(spec.zero_point == 0.5)
        assert set(spec.codes(quantized.weight)[w != 0].unique().tolist()) == {0, 1}


@pytest.mark.parametrize("setting", ALL_SETTINGS, ids=str)
def test_pruned_zeros_stay_exactly_zero(setting):
    model = pruned(mixed_model())
    new = quantize(model, **setting)
    binary = setting.get("scheme") == "symmetric" and setting["bits"] == 1
    for name, layer in eligible_layers(model).items():
        before, after = layer.weight, dict(new.named_modules())[name].weight
        assert torch.all(after[before == 0] == 0)
        if binary or setting["method"] == "kmeans":  # no zero level: the zeros are exactly the pruned ones
            assert torch.equal(after == 0, before == 0)
        # uniform grids have 0 as a level, so small surviving weights may round to it too


@pytest.mark.parametrize("setting", ALL_SETTINGS, ids=str)
def test_codes_round_trip(setting):
    new = quantize(pruned(mixed_model()), **setting)
    for layer in eligible_layers(new).values():
        spec, w = weight_quant(layer), layer.weight.detach()
        codes = spec.codes(w)
        assert codes.dtype == torch.int64 and codes.shape == w.shape
        assert 0 <= int(codes.min()) and int(codes.max()) <= 2 ** setting["bits"] - 1
        nonzero = w != 0  # exact zeros are kept by the sparse mask, not by codes
        assert torch.equal(torch.where(nonzero, spec.dequantize(codes), 0.0), w)
        if setting["method"] == "uniform" and setting["bits"] > 1:  # 0 is on the grid: codes alone suffice
            assert torch.equal(spec.dequantize(codes), w)


def test_quantization_levels_per_scheme():
    model = pruned(mixed_model())
    affine = dict(quantize(model, bits=3).named_modules())["3"]
    spec = weight_quant(affine)
    assert torch.equal(quantization_levels(affine), (torch.arange(8.0) - spec.zero_point) * spec.scale)

    symmetric = dict(quantize(model, bits=3, scheme="symmetric", granularity="channel").named_modules())["3"]
    levels = quantization_levels(symmetric, channel=2)
    spec = weight_quant(symmetric)
    assert len(levels) == 7 and torch.equal(levels, -levels.flip(0)) and 0.0 in levels
    assert torch.equal(levels[-1], 3 * spec.scale[2])

    binary = dict(quantize(model, bits=1, scheme="symmetric").named_modules())["3"]
    alpha = weight_quant(binary).scale[0] / 2
    assert torch.equal(quantization_levels(binary), torch.stack([-alpha, torch.tensor(0.0), alpha]))  # 0: pruned

    kmeans = dict(quantize(model, bits=2, method="kmeans").named_modules())["3"]
    assert torch.equal(quantization_levels(kmeans), torch.cat([weight_quant(kmeans).codebook, torch.zeros(1)]).unique())

    for values, layer in ((affine.weight, affine), (symmetric.weight[2], symmetric), (binary.weight, binary),
                          (kmeans.weight, kmeans)):
        assert torch.isin(values.unique(), quantization_levels(layer, channel=2)).all()


def test_quantization_levels_bad_inputs():
    with pytest.raises(ValueError, match="no weight_quant"):
        quantization_levels(nn.Linear(3, 2))
    layer = dict(quantize(mixed_model(), bits=4, granularity="channel").named_modules())["5"]
    with pytest.raises(ValueError, match="channel=5 is out of range"):
        quantization_levels(layer, channel=5)


# ---------------------------------------------------------------- k-means weight sharing against scikit-learn


@pytest.mark.parametrize("bits", [1, 3, 5])
@pytest.mark.parametrize("prune_first", [False, True])
def test_kmeans_matches_sklearn(bits, prune_first):
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(64, 48))
    if prune_first:
        pruned(model)
    new = quantize(model, bits=bits, method="kmeans")
    w, shared = model[0].weight.detach(), new[0].weight.detach()
    spec = weight_quant(new[0])
    values = w[w != 0].double().numpy().reshape(-1, 1)  # pruned zeros take no part
    init = np.linspace(values.min(), values.max(), 2**bits).reshape(-1, 1)  # linear initialisation
    reference = KMeans(2**bits, init=init, n_init=1, algorithm="lloyd", tol=0.0, max_iter=300).fit(values)
    assert spec.codebook.shape == (2**bits,)
    np.testing.assert_allclose(spec.codebook.numpy(), np.sort(reference.cluster_centers_.ravel()), rtol=1e-5, atol=1e-7)
    inertia = float(((w - shared)[w != 0].double() ** 2).sum())
    assert inertia == pytest.approx(reference.inertia_, rel=1e-5)
    assert torch.isin(shared[w != 0], spec.codebook).all()
    assert torch.equal(quantize(model, bits=bits, method="kmeans")[0].weight, shared)  # deterministic


def test_kmeans_records_one_codebook_per_layer():
    new = quantize(mixed_model(), bits=2, method="kmeans", scheme="symmetric", granularity="channel")
    for layer in eligible_layers(new).values():
        spec = weight_quant(layer)
        assert (spec.method, spec.scheme, spec.granularity, spec.bits) == ("kmeans", "kmeans", "tensor", 2)
        assert len(layer.weight.unique()) <= 4


# ---------------------------------------------------------------- activations


def test_activation_quantization_matches_torch_on_layer_inputs():
    model, X = mixed_model(), mixed_input()
    bits = 6
    new = quantize(model, bits=4, activations=True, data=Split(X), activation_bits=bits)
    weights_only = quantize(model, bits=4)
    layers, plain_layers = eligible_layers(new), eligible_layers(weights_only)

    seen: dict[str, torch.Tensor] = {}  # each layer's input on the calibration data, before any quantization
    for name, layer in plain_layers.items():
        layer.register_forward_pre_hook(lambda m, args, name=name: seen.__setitem__(name, args[0]))
    weights_only(X)
    for name, layer in layers.items():
        spec = input_quant(layer)
        observer = MinMaxObserver(dtype=torch.quint8, quant_min=0, quant_max=2**bits - 1)
        observer(seen[name])
        scale, zero_point = observer.calculate_qparams()
        assert (spec.bits, spec.scale, spec.zero_point) == (bits, float(scale), int(zero_point))

    raw, out = {}, {}  # on new inputs, the layer computes on torch's fake-quantized input
    for name, layer in layers.items():
        layer.register_forward_pre_hook(lambda m, args, name=name: raw.__setitem__(name, args[0]), prepend=True)
        layer.register_forward_hook(lambda m, args, y, name=name: out.__setitem__(name, y))
    new(torch.randn(5, 3, 8) * 2)
    for name, layer in layers.items():
        spec = input_quant(layer)
        x = torch.fake_quantize_per_tensor_affine(raw[name], spec.scale, spec.zero_point, 0, 2**bits - 1)
        assert torch.equal(out[name], layer.forward(x))  # forward() itself runs no hooks


def test_requantizing_replaces_metadata_and_keeps_one_input_hook():
    X = Split(mixed_input())
    once = quantize(mixed_model(), bits=8, activations=True, data=X)
    twice = quantize(once, bits=3, scheme="symmetric", activations=True, data=X, activation_bits=4)
    for name, layer in eligible_layers(twice).items():
        w = dict(once.named_modules())[name].weight.detach()
        scale, zero_point, low, high = observer_qparams(w, "symmetric", "tensor", 3)
        assert torch.equal(layer.weight, torch_fake_quantize(w, scale, zero_point, low, high, "tensor"))
        assert weight_quant(layer).bits == 3 and input_quant(layer).bits == 4
        assert len(layer._forward_pre_hooks) == 1


# ---------------------------------------------------------------- the technique on real architectures


@pytest.mark.parametrize("setting", [dict(scheme="symmetric", granularity="channel"), dict(method="kmeans")], ids=str)
def test_residual_cnn_and_transformer_run_after_4_bit(residual_cnn, tiny_transformer, cnn_input, seq_input, setting):
    for model, x in ((residual_cnn, cnn_input), (tiny_transformer, seq_input)):
        new = quantize(model, bits=4, activations=True, data=Split(x), **setting)
        assert all(weight_quant(layer) is not None for layer in eligible_layers(new).values())
        with torch.no_grad():
            before, after = model(x), new(x)
        assert after.shape == before.shape and not new.training
        assert float((after - before).norm() / before.norm()) < 0.2


def test_low_rank_sequential_parts_are_quantized():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Sequential(nn.Linear(20, 4, bias=False), nn.Linear(4, 30)), nn.ReLU(), nn.Linear(30, 3))
    new = quantize(model, bits=4, layers=["0.*"])
    modules = dict(new.named_modules())
    assert weight_quant(modules["0.0"]).bits == 4 and weight_quant(modules["0.1"]).bits == 4
    assert weight_quant(modules["2"]) is None and torch.equal(modules["2"].weight, model[2].weight)


def test_overrides_set_per_layer_values():
    new = quantize(mixed_model(), bits=8, overrides={"3": {"bits": 2, "method": "kmeans"}, "5": {"scheme": "symmetric"}})
    specs = {name: weight_quant(layer) for name, layer in eligible_layers(new).items()}
    assert (specs["0"].bits, specs["0"].scheme) == (8, "affine")
    assert (specs["3"].bits, specs["3"].method) == (2, "kmeans")
    assert (specs["5"].bits, specs["5"].scheme) == (8, "symmetric")


def test_quantize_is_pure():
    model = pruned(mixed_model())
    before = {k: v.clone() for k, v in model.state_dict().items()}
    quantize(model, bits=3, granularity="channel", activations=True, data=Split(mixed_input()))
    quantize(model, bits=2, method="kmeans")
    after = model.state_dict()
    assert before.keys() == after.keys() and all(torch.equal(before[k], after[k]) for k in before)
    assert all(weight_quant(m) is None and input_quant(m) is None and not m._forward_pre_hooks for m in model.modules())


@pytest.mark.parametrize(
    "kwargs,message",
    [
        (dict(bits=0), "bits=0 is out of range; allowed: 1 to 8"),
        (dict(bits=9), "bits=9 is out of range; allowed: 1 to 8"),
        (dict(bits=4.0), "bits=4.0 must be a whole number"),
        (dict(scheme="asymmetric"), "scheme='asymmetric' is not allowed"),
        (dict(granularity="row"), "granularity='row' is not allowed"),
        (dict(method="gptq"), "method='gptq' is not allowed"),
        (dict(activations="yes"), "activations='yes' must be true or false"),
        (dict(activations=True), "activations=True needs calibration data"),
        (dict(activations=True, data=Split(torch.empty(0, 3, 8))), "data has no inputs"),
        (dict(activation_bits=16), "activation_bits=16 is out of range"),
        (dict(layers=["fc9"]), "'fc9' matches no eligible layer"),
        (dict(overrides={"3": {"rank": 2}}), "unknown key"),
        (dict(overrides={"3": {"bits": 0}}), "layer '3': bits=0 is out of range"),
        (dict(overrides={"3": {"granularity": "row"}}), "layer '3': granularity='row' is not allowed"),
    ],
)
def test_bad_inputs(kwargs, message):
    with pytest.raises(ValueError, match=message.replace("(", r"\(")):
        quantize(mixed_model(), **kwargs)


# ---------------------------------------------------------------- error per layer


def test_sqnr_follows_six_db_per_bit():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(256, 256))
    with torch.no_grad():
        model[0].weight.uniform_(-1, 1)
    for bits in (3, 4, 8):
        sqnr = quantization_error(model, quantize(model, bits=bits, scheme="symmetric"))["0"]
        # uniform weights, step s = max|w|/(2^(b−1) − 1): signal a²/3 over noise s²/12
        assert sqnr == pytest.approx(20 * math.log10(2 * (2 ** (bits - 1) - 1)), abs=0.3)


def test_quantization_error_per_layer():
    model = mixed_model()
    new = quantize(model, bits=4, layers=["3", "5"])
    errors = quantization_error(model, new)
    assert set(errors) == {"3", "5"} and all(10 < e < 40 for e in errors.values())
    assert all(math.isinf(e) for e in quantization_error(new, new).values())
    with pytest.raises(ValueError, match="no counterpart"):
        quantization_error(nn.Sequential(nn.Linear(3, 3)), new)
