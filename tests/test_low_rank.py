"""Low-rank factorization: checked against numpy's SVD (Eckart–Young), functional convs and hand-computed ranks."""
from __future__ import annotations

import time
from collections import OrderedDict

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from compressor.low_rank import (
    dense_params,
    energy_kept,
    factorization_saves,
    factorized_params,
    factorized_pairs,
    is_factorized,
    low_rank,
    pair_rank,
    rank_for,
    singular_values,
    svd_factorize,
)
from compressor.state import InputQuant, WeightQuant, input_quant, set_input_quant, weight_quant


def mlp() -> nn.Module:
    """64-300-100-10 MLP with named layers fc1, fc2, fc3."""
    torch.manual_seed(0)
    layers = OrderedDict(
        fc1=nn.Linear(64, 300), act1=nn.ReLU(), fc2=nn.Linear(300, 100), act2=nn.ReLU(), fc3=nn.Linear(100, 10)
    )
    return nn.Sequential(layers).eval()


def product(pair: nn.Sequential) -> torch.Tensor:
    """B A reshaped back to the replaced layer's weight shape."""
    r = pair_rank(pair)
    W = pair[1].weight.reshape(-1, r) @ pair[0].weight.reshape(r, -1)  # (m, n)
    return W.reshape(pair.factorization.shape)


def optimal_error(W: torch.Tensor, r: int) -> float:
    """Eckart–Young: the Frobenius error of the best rank-r approximation, from numpy (float64)."""
    sigmas = np.linalg.svd(W.detach().double().reshape(W.shape[0], -1).numpy(), compute_uv=False)
    return float(np.sqrt(np.sum(sigmas[r:] ** 2)))


def snapshot(model: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.clone() for k, v in model.state_dict().items()}


def assert_unchanged(model: nn.Module, before: dict[str, torch.Tensor]) -> None:
    after = model.state_dict()
    assert after.keys() == before.keys()
    assert all(torch.equal(after[k], before[k]) for k in before)
    assert not factorized_pairs(model)


# ---------------------------------------------------------------- the factorization is the optimal one


@pytest.mark.parametrize("r", [1, 10, 50, 100])
def test_linear_error_is_eckart_young_optimum(r: int) -> None:
    model = mlp()
    W = model.fc2.weight  # (100, 300)
    pair = low_rank(model, rank=r, layers=["fc2"]).fc2
    assert pair_rank(pair) == r
    error = torch.linalg.norm(W - product(pair)).item()
    assert error == pytest.approx(optimal_error(W, r), rel=1e-4, abs=1e-4)


@pytest.mark.parametrize("r", [1, 5, 12])
def test_conv_error_is_eckart_young_optimum_and_pair_computes_the_product(r: int) -> None:
    torch.manual_seed(1)
    model = nn.Sequential(OrderedDict(conv=nn.Conv2d(4, 12, 3, stride=2, padding=1, dilation=1))).eval()
    conv = model.conv
    pair = low_rank(model, rank=r).conv
    W_r = product(pair)  # (12, 4, 3, 3)
    assert torch.linalg.norm(conv.weight - W_r).item() == pytest.approx(optimal_error(conv.weight, r), rel=1e-4, abs=1e-4)
    x = torch.randn(2, 4, 9, 9)
    expected = F.conv2d(x, W_r, conv.bias, stride=2, padding=1)  # (2, 12, 5, 5)
    assert pair(x).shape == expected.shape == conv(x).shape
    torch.testing.assert_close(pair(x), expected, atol=1e-5, rtol=1e-4)


def test_singular_values_match_numpy_for_linear_and_reshaped_conv(residual_cnn: nn.Module) -> None:
    sigmas = singular_values(residual_cnn)
    assert set(sigmas) == {"stem.0", "block.conv1", "block.conv2", "pointwise", "head"}  # no depthwise/grouped
    for name, s in sigmas.items():
        W = residual_cnn.get_submodule(name).weight.detach().double()
        reference = np.linalg.svd(W.reshape(W.shape[0], -1).numpy(), compute_uv=False)
        np.testing.assert_allclose(s, reference, rtol=1e-4, atol=1e-5)
        assert np.all(np.diff(s) <= 0)


def test_singular_values_are_split_evenly_between_factors() -> None:
    model = mlp()
    pair = low_rank(model, rank=20, layers="fc2").fc2
    row_norms_A = torch.linalg.norm(pair[0].weight, dim=1)  # ‖√σ_i v_i‖ = √σ_i
    col_norms_B = torch.linalg.norm(pair[1].weight, dim=0)  # ‖u_i √σ_i‖ = √σ_i
    root_sigma = torch.from_numpy(np.sqrt(singular_values(model)["fc2"][:20])).float()
    torch.testing.assert_close(row_norms_A, root_sigma, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(col_norms_B, root_sigma, rtol=1e-4, atol=1e-5)


# ---------------------------------------------------------------- behaviour of the factorized model


def test_full_rank_reproduces_the_model_and_params_follow_the_formula() -> None:
    model = mlp()
    x = torch.randn(8, 64)
    full = low_rank(model, rank_ratio=1.0)
    torch.testing.assert_close(full(x), model(x), atol=1e-4, rtol=1e-4)
    small = low_rank(model, rank=7)
    shapes = {"fc1": (300, 64), "fc2": (100, 300), "fc3": (10, 100)}  # (m, n)
    for name, (m, n) in shapes.items():
        pair = small.get_submodule(name)
        assert is_factorized(pair) and pair[0].bias is None
        assert sum(p.numel() for p in pair.parameters()) == (m + n) * 7 + m
    assert sum(p.numel() for p in small.parameters()) == sum((m + n) * 7 + m for m, n in shapes.values())


@pytest.mark.parametrize(
    "conv, shape",
    [
        (nn.Conv2d(3, 8, 5, stride=2, padding=2, dilation=1), (2, 3, 11, 11)),
        (nn.Conv2d(3, 8, 3, stride=1, padding=2, dilation=2, padding_mode="reflect"), (2, 3, 10, 10)),
        (nn.Conv1d(6, 10, 3, stride=3, padding=1, bias=False), (2, 6, 20)),
    ],
)
def test_conv_pair_keeps_output_shape_and_full_rank_output(conv: nn.Module, shape: tuple[int, ...]) -> None:
    torch.manual_seed(2)
    model = nn.Sequential(OrderedDict(conv=conv)).eval()
    x = torch.randn(shape)
    full = low_rank(model, rank_ratio=1.0)
    first, second = full.conv
    assert (first.stride, first.padding, first.dilation, first.padding_mode) == (
        conv.stride, conv.padding, conv.dilation, conv.padding_mode)
    assert second.kernel_size == (1,) * len(conv.kernel_size) and (second.bias is None) == (conv.bias is None)
    torch.testing.assert_close(full(x), model(x), atol=1e-4, rtol=1e-4)
    assert low_rank(model, rank=2)(x).shape == model(x).shape


def test_rank_that_does_not_save_is_applied_and_reported() -> None:
    fc = nn.Linear(300, 100)  # dense 30_000 weights; (m + n)·r = 400·r saves while r < 75
    assert (dense_params(fc), factorized_params(fc, 74)) == (30_100, 400 * 74 + 100)
    assert dense_params(low_rank(nn.Sequential(OrderedDict(fc=fc)), rank=5).fc) == 30_100  # a pair: what it replaced
    assert factorization_saves(fc, 74) and not factorization_saves(fc, 75)
    model = mlp()
    bigger = low_rank(model, rank=90, layers=["fc2"])
    assert pair_rank(bigger.fc2) == 90
    assert sum(p.numel() for p in bigger.fc2.parameters()) > sum(p.numel() for p in model.fc2.parameters())


def test_pruned_and_quantized_weights_are_factorized_as_they_are() -> None:
    model = mlp()
    with torch.no_grad():
        model.fc2.weight[:, ::2] = 0  # pruned: half the weights are exact zeros
    model.fc2.weight_quant = WeightQuant(bits=4, method="uniform", scheme="affine", granularity="tensor",
                                         scale=torch.ones(1), zero_point=torch.zeros(1))
    set_input_quant(model.fc2, InputQuant(bits=8, scale=0.05, zero_point=128))
    pair = low_rank(model, rank=10, layers="fc2").fc2
    error = torch.linalg.norm(model.fc2.weight - product(pair)).item()
    assert error == pytest.approx(optimal_error(model.fc2.weight, 10), rel=1e-4)
    assert weight_quant(pair[0]) is None and weight_quant(pair[1]) is None  # the factors are new weights
    assert input_quant(pair[0]) == input_quant(model.fc2)  # the first factor sees the layer's input
    x = 10 * torch.randn(3, 300)  # beyond the 8-bit range [-6.4, 6.35]: quantizing the input visibly clips it
    torch.testing.assert_close(pair(x), pair[1](F.linear(input_quant(model.fc2)(x), pair[0].weight)))


def test_factorized_pairs_are_skipped_by_default_and_refactorized_when_named() -> None:
    model = mlp()
    once = low_rank(model, rank=40, layers=["fc1", "fc2"])
    again = low_rank(once, rank=5)  # only fc3 is new
    assert pair_rank(again.fc1) == 40 and pair_rank(again.fc2) == 40 and pair_rank(again.fc3) == 5
    assert torch.equal(again.fc2[0].weight, once.fc2[0].weight)
    smaller = low_rank(once, rank=10, layers=["fc2"])  # the rank-40 product, cut to rank 10 ...
    direct = low_rank(model, rank=10, layers=["fc2"])  # ... is the best rank-10 approximation of the original
    assert pair_rank(smaller.fc2) == 10
    torch.testing.assert_close(product(smaller.fc2), product(direct.fc2), atol=1e-4, rtol=1e-3)
    assert set(singular_values(once, layers=["fc2"])) == {"fc2"}


def test_overrides_replace_the_rank_rule_per_layer() -> None:
    model = mlp()
    small = low_rank(model, rank_ratio=0.5, overrides={"fc1": {"rank": 3}, "fc3": {"energy": 1.0}})
    assert pair_rank(small.fc1) == 3
    assert pair_rank(small.fc2) == 50  # round(0.5 · 100)
    assert pair_rank(small.fc3) == 10  # all the energy needs all the singular values


def test_input_model_is_not_mutated() -> None:
    model = mlp()
    before = snapshot(model)
    low_rank(model, rank=4)
    low_rank(low_rank(model, rank=8), rank=2, layers=["fc1"])
    assert_unchanged(model, before)
    assert isinstance(model.fc1, nn.Linear)
    assert not low_rank(model.train(), rank=4).training


def test_speed_on_the_dashboard_mlp() -> None:
    """Budget: 10 ms on the 64-300-100-10 MLP (about 4 ms measured, almost all of it SVD).

    Timed as CPU time on one thread, the work this code does: on a busy 2-core machine, wall-clock time
    and MKL's threads contending for cores measure the machine's load rather than this code.
    """
    model = mlp()
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        low_rank(model, rank_ratio=0.25)  # warm-up
        best = min(_timed(lambda: low_rank(model, rank_ratio=0.25)) for _ in range(10))
    finally:
        torch.set_num_threads(threads)
    assert best < 0.010, f"low_rank took {best * 1e3:.1f} ms"


def _timed(fn) -> float:
    start = time.process_time()
    fn()
    return time.process_time() - start


# ---------------------------------------------------------------- choosing the rank


@pytest.mark.parametrize(
    "energy, rank",
    [(0.5, 1), (9 / 14, 1), (0.65, 2), (13 / 14, 2), (0.93, 3), (1.0, 3)],
)
def test_energy_picks_smallest_rank_reaching_the_fraction(energy: float, rank: int) -> None:
    sigmas = np.array([3.0, 2.0, 1.0])  # σ² = 9, 4, 1 of 14: kept 9/14, 13/14, 14/14
    assert [energy_kept(sigmas, r) for r in range(4)] == pytest.approx([0, 9 / 14, 13 / 14, 1])
    assert rank_for(sigmas, energy=energy) == rank


def test_rank_ratio_and_fixed_rank() -> None:
    sigmas = np.linspace(10, 1, 100)
    assert rank_for(sigmas, rank_ratio=0.25) == 25
    assert rank_for(sigmas, rank_ratio=0.001) == 1  # never below 1
    assert rank_for(sigmas, rank_ratio=1.0) == 100
    assert rank_for(sigmas, rank=7) == 7
    assert rank_for(np.zeros(4), energy=0.5) == 1  # an all-zero (fully pruned) layer loses nothing at rank 1


def test_energy_selection_in_the_model_matches_rank_for() -> None:
    model = mlp()
    small = low_rank(model, energy=0.8)
    for name, sigmas in singular_values(model).items():
        r = pair_rank(small.get_submodule(name))
        assert r == rank_for(sigmas, energy=0.8)
        assert energy_kept(sigmas, r) >= 0.8 > energy_kept(sigmas, r - 1)


# ---------------------------------------------------------------- bad inputs


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"rank": 0}, "rank=0 is out of range"),
        ({"rank": 2.5}, "rank=2.5 must be a whole number"),
        ({"rank": 101, "layers": ["fc2"]}, "rank=101 is out of range for layer 'fc2' (100x300): allowed 1 to 100"),
        ({"rank": 20}, "rank=20 is out of range for layer 'fc3' (10x100): allowed 1 to 10"),
        ({"rank": 4, "energy": 0.9}, "exactly one of rank, rank_ratio, energy; got rank=4, energy=0.9"),
        ({}, "exactly one of rank, rank_ratio, energy; got none"),
        ({"rank_ratio": 0}, "rank_ratio=0 is out of range"),
        ({"rank_ratio": 1.5}, "rank_ratio=1.5 is out of range"),
        ({"energy": -0.1}, "energy=-0.1 is out of range"),
        ({"rank": 4, "layers": ["fc9"]}, "'fc9' matches no eligible layer"),
        ({"rank": 4, "overrides": {"fc1": {"bits": 4}}}, "unknown key(s) bits"),
        ({"rank": 4, "overrides": {"fc1": {"rank": 2, "energy": 0.5}}}, "override 'fc1': give exactly one"),
        ({"rank": 4, "overrides": {"fc9": {"rank": 2}}}, "'fc9' matches no selected layer"),
    ],
)
def test_bad_arguments_raise_naming_the_value(kwargs: dict, message: str) -> None:
    model = mlp()
    before = snapshot(model)
    with pytest.raises(ValueError, match=_literal(message)):
        low_rank(model, **kwargs)
    assert_unchanged(model, before)


def test_naming_an_ineligible_layer_says_why(residual_cnn: nn.Module) -> None:
    with pytest.raises(ValueError, match=_literal("'depthwise' is a grouped convolution (groups=16)")):
        low_rank(residual_cnn, rank=2, layers=["depthwise"])
    factorized = low_rank(mlp(), rank=4)
    with pytest.raises(ValueError, match=_literal("'fc1.0' is one factor of the low-rank pair 'fc1'")):
        low_rank(factorized, rank=2, layers=["fc1.0"])
    with pytest.raises(ValueError, match="out of range; allowed: 1 to 3"):
        rank_for(np.ones(3), rank=4)


def test_svd_factorize_checks_the_rank_of_one_layer() -> None:
    with pytest.raises(ValueError, match=_literal("rank=65 is out of range for layer 'layer' (300x64): allowed 1 to 64")):
        svd_factorize(nn.Linear(64, 300), 65)
    assert pair_rank(svd_factorize(nn.Linear(64, 300), 64)) == 64


def _literal(text: str) -> str:
    import re

    return re.escape(text)


# ---------------------------------------------------------------- other architectures


def test_residual_cnn_skips_grouped_convs(residual_cnn: nn.Module, cnn_input: torch.Tensor) -> None:
    before = snapshot(residual_cnn)
    full = low_rank(residual_cnn, rank_ratio=1.0)
    assert set(factorized_pairs(full)) == {"stem.0", "block.conv1", "block.conv2", "pointwise", "head"}
    assert isinstance(full.depthwise, nn.Conv2d) and full.depthwise.groups == 16
    assert isinstance(full.grouped, nn.Conv2d) and full.grouped.groups == 4
    torch.testing.assert_close(full(cnn_input), residual_cnn(cnn_input), atol=1e-4, rtol=1e-4)
    small = low_rank(residual_cnn, rank_ratio=0.25)
    assert small(cnn_input).shape == residual_cnn(cnn_input).shape
    assert sum(p.numel() for p in small.parameters()) < sum(p.numel() for p in residual_cnn.parameters())
    assert_unchanged(residual_cnn, before)


def test_tiny_transformer(tiny_transformer: nn.Module, seq_input: torch.Tensor) -> None:
    before = snapshot(tiny_transformer)
    full = low_rank(tiny_transformer, rank_ratio=1.0)
    assert "layers.0.attn.qkv" in factorized_pairs(full) and "layers.1.mlp.2" in factorized_pairs(full)
    torch.testing.assert_close(full(seq_input), tiny_transformer(seq_input), atol=1e-4, rtol=1e-4)
    small = low_rank(tiny_transformer, energy=0.5, layers=["layers.*.mlp.*"])
    assert set(factorized_pairs(small)) == {f"layers.{i}.mlp.{j}" for i in (0, 1) for j in (0, 2)}
    assert small(seq_input).shape == (4, 3)
    assert_unchanged(tiny_transformer, before)


def test_multihead_attention_projection_is_left_alone() -> None:
    class Block(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.attn = nn.MultiheadAttention(16, 2, batch_first=True)
            self.fc = nn.Linear(16, 4)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.fc(self.attn(x, x, x)[0])

    model = Block().eval()
    small = low_rank(model, rank=2)
    assert set(factorized_pairs(small)) == {"fc"}
    assert small(torch.randn(2, 5, 16)).shape == (2, 5, 4)


# ---------------------------------------------------------------- the plan table


@pytest.mark.parametrize("setting", [{"energy": 0.9}, {"rank_ratio": 0.3}, {"rank": 5}])
def test_rank_plan_matches_numpy_svd_and_the_factorized_model(setting: dict) -> None:
    from compressor.low_rank import rank_plan

    model = mlp()
    rows = rank_plan(model, **setting, overrides={"fc3": {"rank": 2}})
    assert [row.layer for row in rows] == ["fc1", "fc2", "fc3"]
    small = low_rank(model, **setting, overrides={"fc3": {"rank": 2}})
    for row in rows:
        layer = model.get_submodule(row.layer)
        W = layer.weight.detach().double().numpy()  # (m, n)
        U, S, Vt = np.linalg.svd(W, full_matrices=False)
        r = row.rank
        W_r = (U[:, :r] * S[:r]) @ Vt[:r]
        m, n = W.shape
        assert row.shape == (m, n) and row.full_rank == min(m, n)
        assert r == pair_rank(small.get_submodule(row.layer))  # the rank low_rank really picks
        assert row.energy == pytest.approx((S[:r] ** 2).sum() / (S ** 2).sum(), rel=1e-6)  # σ from float32 weights
        assert row.error == pytest.approx(np.linalg.norm(W - W_r) / np.linalg.norm(W), rel=1e-6)
        assert row.params_before == m * n + m and row.params_after == (m + n) * r + m  # with the m biases
        assert row.saves == ((m + n) * r < m * n)
    assert rows[2].rank == 2  # the override
    if "rank_ratio" in setting:
        assert [row.rank for row in rows] == [19, 30, 2]  # round(0.3 · 64), round(0.3 · 100)
