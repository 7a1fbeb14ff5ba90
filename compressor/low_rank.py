"""Low-rank factorization: replace a weight matrix by the product of two thin ones (truncated SVD).

A Linear layer computes y = W x + b with W of shape (m, n). Its singular value decomposition
W = U Σ Vᵀ, cut after the r largest singular values, gives the best rank-r approximation
(Eckart–Young): ‖W − U_r Σ_r V_rᵀ‖_F = sqrt(Σ_{i>r} σ_i²), and no rank-r matrix does better.
Writing it as two layers, x → A x → B (A x) + b with A = √Σ_r V_rᵀ (r, n) and B = U_r √Σ_r (m, r),
stores (m + n)·r weights instead of m·n: a saving whenever r < m·n / (m + n).

A convolution is the same idea on its weight seen as a matrix (out, in·k·k): a k×k convolution with r
filters (A) followed by a 1×1 convolution from r to out channels (B) that carries the bias.

The factorized layer is a plain `nn.Sequential(first, second)` of standard layers, so pruning and
quantization later see `name.0` and `name.1` as ordinary eligible layers. The Sequential is marked
with a `Factorization` under the attribute `factorization` so that reports can tell it apart.
"""
from __future__ import annotations

import copy
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Callable, Protocol

import numpy as np
import torch
from torch import nn

from compressor.layers import WEIGHTED, eligible_layers, per_layer_settings, select_layers
from compressor.state import input_quant, set_input_quant
from compressor.validation import check_fraction, check_int

FACTORIZATION = "factorization"  # attribute marking an nn.Sequential made by this module
RULE_KEYS = ("rank", "rank_ratio", "energy")  # the ways to choose a rank (exactly one per call or override)


@dataclass(frozen=True)
class Factorization:
    """What a low-rank pair replaced. The current rank is read from the pair itself (see `pair_rank`)."""

    layer_type: str  # "Linear" | "Conv1d" | "Conv2d"
    shape: tuple[int, ...]  # weight shape of the replaced layer


# ---------------------------------------------------------------- choosing the rank


class RankRule(Protocol):
    """Picks a rank from a layer's singular values (descending)."""

    def __call__(self, sigmas: np.ndarray) -> int: ...


@dataclass(frozen=True)
class FixedRank:
    """The same rank r for every layer (checked against each layer's min(m, n) when applied)."""

    rank: int

    def __post_init__(self) -> None:
        check_int("rank", self.rank, 1)

    def __call__(self, sigmas: np.ndarray) -> int:
        return self.rank


@dataclass(frozen=True)
class RankRatio:
    """r = max(1, round(ratio · min(m, n))): the same fraction of each layer's full rank (halves round to even)."""

    ratio: float

    def __post_init__(self) -> None:
        _check_open_fraction("rank_ratio", self.ratio)

    def __call__(self, sigmas: np.ndarray) -> int:
        return max(1, round(self.ratio * len(sigmas)))


@dataclass(frozen=True)
class EnergyRank:
    """The smallest r whose kept energy Σ_{i≤r} σ_i² reaches the fraction `energy` of Σ σ_i²."""

    energy: float

    def __post_init__(self) -> None:
        _check_open_fraction("energy", self.energy)

    def __call__(self, sigmas: np.ndarray) -> int:
        kept = _energy_curve(sigmas)  # kept[r - 1] = energy kept at rank r, non-decreasing, ends at 1
        return min(len(sigmas), int(np.searchsorted(kept, self.energy, side="left")) + 1)


_RULES: dict[str, Callable[[Any], RankRule]] = {"rank": FixedRank, "rank_ratio": RankRatio, "energy": EnergyRank}


def _check_open_fraction(name: str, value: Any) -> float:
    """A number in (0, 1]: zero would keep nothing."""
    value = check_fraction(name, value, 0.0, 1.0)
    if value == 0.0:
        raise ValueError(f"{name}=0 is out of range; allowed: greater than 0, up to 1")
    return value


def rank_rule(rank: int | None = None, rank_ratio: float | None = None, energy: float | None = None) -> RankRule:
    """The rule for whichever one of rank, rank_ratio, energy is given; two or none is an error."""
    given = {key: value for key, value in zip(RULE_KEYS, (rank, rank_ratio, energy)) if value is not None}
    if len(given) != 1:
        got = ", ".join(f"{k}={v!r}" for k, v in given.items()) or "none"
        raise ValueError(f"give exactly one of rank, rank_ratio, energy; got {got}")
    (key, value), = given.items()
    return _RULES[key](value)


def _energy_curve(sigmas: np.ndarray) -> np.ndarray:
    """Fraction of Σσ² kept at ranks 1..k; all ones for an all-zero weight (nothing to lose)."""
    squares = np.cumsum(np.asarray(sigmas, dtype=np.float64) ** 2)
    if len(squares) == 0 or squares[-1] == 0:
        return np.ones(len(squares))
    return squares / squares[-1]


def energy_kept(sigmas: np.ndarray, rank: int) -> float:
    """Σ_{i≤r} σ_i² / Σ σ_i²: the fraction of the squared Frobenius norm a rank-r factorization keeps."""
    check_int("rank", rank, 0, len(sigmas))
    return 0.0 if rank == 0 else float(_energy_curve(sigmas)[rank - 1])


def rank_for(
    sigmas: np.ndarray, rank: int | None = None, rank_ratio: float | None = None, energy: float | None = None
) -> int:
    """The rank `low_rank` would pick for a layer with these singular values (for sliders and tables)."""
    chosen = rank_rule(rank, rank_ratio, energy)(np.asarray(sigmas))
    check_int("rank", chosen, 1, len(sigmas))
    return chosen


# ---------------------------------------------------------------- which layers


def is_factorized(module: nn.Module) -> bool:
    """True for an nn.Sequential produced by `low_rank`."""
    return isinstance(module, nn.Sequential) and hasattr(module, FACTORIZATION)


def factorized_pairs(model: nn.Module) -> dict[str, nn.Sequential]:
    """Every low-rank pair in the model, by qualified name."""
    return {name: m for name, m in model.named_modules() if name and is_factorized(m)}


def pair_rank(pair: nn.Sequential) -> int:
    """Inner rank r of a low-rank pair: the outputs of its first layer."""
    return pair[0].weight.shape[0]


def _ineligible_reason(name: str, layer: nn.Module, modules: Mapping[str, nn.Module]) -> str | None:
    """Why a Linear/Conv layer cannot be factorized in place, or None if it can."""
    parent_name = name.rpartition(".")[0]
    parent = modules[parent_name]
    if is_factorized(parent):
        return f"is one factor of the low-rank pair {parent_name!r}; name {parent_name!r} to re-factorize the pair"
    if isinstance(parent, nn.MultiheadAttention):
        return "belongs to nn.MultiheadAttention, whose forward reads its weight directly"
    if getattr(layer, "groups", 1) != 1:
        return f"is a grouped convolution (groups={layer.groups}); low-rank factorization needs groups=1"
    return None


def factorizable_layers(model: nn.Module, include_pairs: bool = False) -> dict[str, nn.Module]:
    """Linear and groups=1 Conv layers outside low-rank pairs; with include_pairs, also the pairs (as one unit).

    Parts of a pair are never eligible on their own: re-factorizing one factor would make a chain of three
    thin layers. Naming the pair itself multiplies it back (W = B A) and factorizes that product afresh.
    """
    modules = dict(model.named_modules())
    layers = {
        name: m for name, m in eligible_layers(model, WEIGHTED).items() if _ineligible_reason(name, m, modules) is None
    }
    if not include_pairs:
        return layers
    pairs = factorized_pairs(model)
    return {name: modules[name] for name in modules if name in layers or name in pairs}  # definition order


def _select(model: nn.Module, layers: Sequence[str] | str | None) -> dict[str, nn.Module]:
    """Default: all factorizable layers (pairs are left alone). Named: layers or pairs; ineligible names raise."""
    if layers is None:
        return factorizable_layers(model)
    candidates = factorizable_layers(model, include_pairs=True)
    modules = dict(model.named_modules())
    for pattern in [layers] if isinstance(layers, str) else layers:
        if pattern not in candidates and isinstance(modules.get(pattern), WEIGHTED):
            raise ValueError(f"layer {pattern!r} {_ineligible_reason(pattern, modules[pattern], modules)}")
    return select_layers(model, layers, eligible=candidates)


# ---------------------------------------------------------------- the factorization


@torch.no_grad()
def _merged(pair: nn.Sequential) -> nn.Module:
    """The single layer a pair computes: weight B A reshaped like the first factor's kernel, bias of B."""
    first, second = pair[0], pair[1]
    r = pair_rank(pair)
    weight = second.weight.reshape(-1, r) @ first.weight.reshape(r, -1)  # (m, r) @ (r, n) -> (m, n)
    if isinstance(first, nn.Linear):
        layer = nn.Linear(first.in_features, second.out_features, bias=second.bias is not None)
    else:
        layer = type(first)(
            first.in_channels, second.out_channels, first.kernel_size, first.stride, first.padding,
            first.dilation, bias=second.bias is not None, padding_mode=first.padding_mode,
        )
    layer = layer.to(first.weight.device, first.weight.dtype)
    layer.weight.copy_(weight.reshape(layer.weight.shape))
    if layer.bias is not None:
        layer.bias.copy_(second.bias)
    if input_quant(first) is not None:
        set_input_quant(layer, input_quant(first))
    return layer


def _linear_pair(layer: nn.Linear, A: torch.Tensor, B: torch.Tensor) -> nn.Sequential:
    """x -> A x -> B (A x) + b."""
    r = A.shape[0]
    first = nn.Linear(layer.in_features, r, bias=False)
    second = nn.Linear(r, layer.out_features, bias=layer.bias is not None)
    return _fill(first, second, layer, A, B)


def _conv_pair(layer: nn.Conv1d | nn.Conv2d, A: torch.Tensor, B: torch.Tensor) -> nn.Sequential:
    """k×k conv with r filters (same stride/padding/dilation) -> 1×1 conv from r to out channels, with the bias."""
    r, conv = A.shape[0], type(layer)
    first = conv(
        layer.in_channels, r, layer.kernel_size, layer.stride, layer.padding, layer.dilation,
        bias=False, padding_mode=layer.padding_mode,
    )
    second = conv(r, layer.out_channels, 1, bias=layer.bias is not None)
    return _fill(first, second, layer, A, B)


def _fill(first: nn.Module, second: nn.Module, layer: nn.Module, A: torch.Tensor, B: torch.Tensor) -> nn.Sequential:
    """Load the factors into fresh layers; keep the bias and any input quantization of the replaced layer."""
    weight = layer.weight
    first, second = first.to(weight.device, weight.dtype), second.to(weight.device, weight.dtype)
    first.weight.copy_(A.reshape(first.weight.shape))  # (r, n) -> (r, in, *k)
    second.weight.copy_(B.reshape(second.weight.shape))  # (m, r) -> (m, r, *1)
    if layer.bias is not None:
        second.bias.copy_(layer.bias)
    if input_quant(layer) is not None:  # the first factor now sees the layer's input
        set_input_quant(first, input_quant(layer))
    pair = nn.Sequential(first, second)
    setattr(pair, FACTORIZATION, Factorization(type(layer).__name__, tuple(weight.shape)))
    return pair


def _pair_builder(layer: nn.Module) -> Callable[[nn.Module, torch.Tensor, torch.Tensor], nn.Sequential]:
    return _linear_pair if isinstance(layer, nn.Linear) else _conv_pair


def _matrix(layer: nn.Module) -> torch.Tensor:
    """The weight as a matrix (m, n): Linear (out, in); Conv (out, in·k·k). A pair is multiplied back first."""
    if is_factorized(layer):
        layer = _merged(layer)
    return layer.weight.detach().reshape(layer.weight.shape[0], -1)


@torch.no_grad()
def svd_factorize(layer: nn.Module, rank: int | RankRule, name: str = "layer") -> nn.Sequential:
    """Replace one Linear/Conv layer (or re-factorize a pair) by its rank-r truncated SVD, as two layers.

    W (m, n) = U Σ Vᵀ;  A = √Σ_r V_rᵀ (r, n),  B = U_r √Σ_r (m, r),  W ≈ B A.
    The singular values are split evenly between the factors (rather than A = V_rᵀ, B = U_r Σ_r) so both
    factors have the same scale: neither holds all the dynamic range, which makes them quantize better.
    Whatever weight is there is factorized (pruned zeros, dequantized values); the factors are new dense
    weights, so a `weight_quant` on the old layer does not carry over. Input quantization does.
    `rank` is an int or a rule applied to the singular values; r must lie in 1..min(m, n).
    """
    if is_factorized(layer):
        layer = _merged(layer)
    W = _matrix(layer).float()  # (m, n)
    m, n = W.shape
    U, S, Vh = torch.linalg.svd(W, full_matrices=False)  # (m, k), (k,), (k, n) with k = min(m, n)
    r = _checked_rank(rank if isinstance(rank, int) else rank(S.double().numpy()), name, m, n)
    root = S[:r].sqrt()  # (r,)
    A = root[:, None] * Vh[:r]  # (r, n)
    B = U[:, :r] * root  # (m, r)
    return _pair_builder(layer)(layer, A, B)


def _checked_rank(r: Any, name: str, m: int, n: int) -> int:
    if isinstance(r, bool) or not isinstance(r, int) or not 1 <= r <= min(m, n):
        raise ValueError(f"rank={r!r} is out of range for layer {name!r} ({m}x{n}): allowed 1 to {min(m, n)}")
    return r


def _rules_per_layer(
    names: Sequence[str], default: RankRule, overrides: Mapping[str, Mapping[str, Any]] | None
) -> dict[str, RankRule]:
    """Each override names exactly one of rank / rank_ratio / energy and replaces the default rule there."""
    rules = {}
    for pattern, values in (overrides or {}).items():
        unknown = sorted(set(values) - set(RULE_KEYS))
        if unknown:
            raise ValueError(
                f"override {pattern!r} has unknown key(s) {', '.join(unknown)}; allowed: {', '.join(RULE_KEYS)}"
            )
        try:
            rules[pattern] = {"rule": rank_rule(**values)}
        except ValueError as err:
            raise ValueError(f"override {pattern!r}: {err}") from None
    settings = per_layer_settings(names, {"rule": default}, rules, ("rule",))
    return {name: s["rule"] for name, s in settings.items()}


@torch.no_grad()
def low_rank(
    model: nn.Module,
    rank: int | None = None,
    rank_ratio: float | None = None,
    energy: float | None = None,
    layers: Sequence[str] | str | None = None,
    overrides: Mapping[str, Mapping[str, Any]] | None = None,
) -> nn.Module:
    """A copy of `model` with each selected layer replaced by its truncated-SVD pair (see `svd_factorize`).

    Give exactly one way to choose each layer's rank r (k = min(m, n) of its weight matrix):
      rank=r           the same r everywhere (1 ≤ r ≤ k for every selected layer),
      rank_ratio=ρ     r = max(1, round(ρ·k)), 0 < ρ ≤ 1,
      energy=e         the smallest r with Σ_{i≤r} σ_i² ≥ e·Σ σ_i², 0 < e ≤ 1.
    Eligible: Linear, Conv1d and Conv2d with groups=1 (depthwise/grouped convs are skipped; naming one is an
    error). Existing low-rank pairs are left alone unless `layers` names (or a glob matches) them: then the
    pair is multiplied back and re-factorized as one layer.
    `overrides={glob: {"rank": 8}}` sets another rule for matching layers. A rank that does not save
    parameters is still applied; use `factorization_saves` to tell the user.
    """
    default = rank_rule(rank, rank_ratio, energy)
    selected = _select(model, layers)
    rules = _rules_per_layer(list(selected), default, overrides)
    for name, layer in selected.items():  # a fixed rank can be checked before any SVD is computed
        if isinstance(rules[name], FixedRank):
            _checked_rank(rules[name].rank, name, *_matrix_shape(layer))
    new = copy.deepcopy(model)
    for name in selected:
        parent_name, _, child = name.rpartition(".")
        pair = svd_factorize(new.get_submodule(name), rules[name], name)
        setattr(new.get_submodule(parent_name), child, pair)
    return new.eval()


# ---------------------------------------------------------------- plain data for the dashboard


@torch.no_grad()
def singular_values(model: nn.Module, layers: Sequence[str] | str | None = None) -> dict[str, np.ndarray]:
    """σ of each factorizable layer's weight matrix, descending (float64), selected as in `low_rank`."""
    selected = _select(model, layers)
    return {name: torch.linalg.svdvals(_matrix(m).float()).double().numpy() for name, m in selected.items()}


@dataclass(frozen=True)
class PlanRow:
    """What a rank-r factorization of one layer keeps and costs, before any model is changed."""

    layer: str
    shape: tuple[int, int]  # (m, n) of the weight matrix (a conv's kernel as out × in·k·k)
    rank: int  # kept rank r
    full_rank: int  # k = min(m, n)
    energy: float  # Σ_{i≤r} σ_i² / Σ σ_i²
    error: float  # ‖W − W_r‖_F / ‖W‖_F = √(1 − energy) (Eckart–Young)
    params_before: int  # m·n + bias
    params_after: int  # (m + n)·r + bias

    @property
    def saves(self) -> bool:
        """True when the pair stores fewer parameters than the dense layer: (m + n)·r < m·n."""
        return self.params_after < self.params_before


def rank_plan(
    model: nn.Module,
    rank: int | None = None,
    rank_ratio: float | None = None,
    energy: float | None = None,
    layers: Sequence[str] | str | None = None,
    overrides: Mapping[str, Mapping[str, Any]] | None = None,
) -> list[PlanRow]:
    """One row per layer `low_rank` would factorize with these arguments: the rank it picks, the energy kept,
    the relative error and the parameters before and after. The table behind the Low-rank page, for notebooks too:

        pd.DataFrame(map(dataclasses.asdict, rank_plan(model, energy=0.9)))
    """
    default = rank_rule(rank, rank_ratio, energy)
    spectra = singular_values(model, layers)
    rules = _rules_per_layer(list(spectra), default, overrides)
    selected = _select(model, layers)
    rows = []
    for name, sigmas in spectra.items():
        m, n = _matrix_shape(selected[name])
        r = _checked_rank(rules[name](sigmas), name, m, n)
        kept = energy_kept(sigmas, r)
        rows.append(PlanRow(name, (m, n), r, min(m, n), kept, max(0.0, 1.0 - kept) ** 0.5,
                            dense_params(selected[name]), factorized_params(selected[name], r)))
    return rows


def dense_params(layer: nn.Module) -> int:
    """Parameters of the layer unfactorized: m·n + bias."""
    m, n = _matrix_shape(layer)
    return m * n + _bias_size(layer)


def factorized_params(layer: nn.Module, rank: int) -> int:
    """Parameters after a rank-r factorization: (m + n)·r + bias."""
    m, n = _matrix_shape(layer)
    check_int("rank", rank, 1, min(m, n))
    return (m + n) * rank + _bias_size(layer)


def factorization_saves(layer: nn.Module, rank: int) -> bool:
    """True if a rank-r factorization has fewer parameters than the dense layer: (m + n)·r < m·n."""
    return factorized_params(layer, rank) < dense_params(layer)


def _matrix_shape(layer: nn.Module) -> tuple[int, int]:
    """(m, n) of the weight matrix; a pair reports the matrix it approximates."""
    if is_factorized(layer):
        first, second = layer[0], layer[1]
        return second.weight.shape[0], first.weight[0].numel()
    return layer.weight.shape[0], layer.weight[0].numel()


def _bias_size(layer: nn.Module) -> int:
    bias = layer[1].bias if is_factorized(layer) else layer.bias
    return 0 if bias is None else bias.numel()
