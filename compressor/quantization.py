"""Quantization: every weight of a layer is replaced by one of 2^b values, so it can be stored in b bits.

Simulated ("fake") quantization, as in quantization-aware frameworks: the model keeps running in fp32,
`weight` holds the dequantized values, and `module.weight_quant` (a `compressor.state.WeightQuant`) records
the grid so an exporter can write the b-bit codes. Two ways to choose the 2^b values:

- uniform: an evenly spaced grid w = (c − z)·s, c ∈ [0, 2^b − 1], with one scale s (and zero point z)
  per tensor or per output channel; "affine" fits the grid to [min, max], "symmetric" to [−max|w|, max|w|].
- kmeans: weight sharing (Deep Compression, Han et al. 2016): the 2^b values are the k-means centroids
  of the layer's weights, so the grid follows the weight distribution.

Every scheme keeps exact zeros (pruned weights) exactly zero, so pruning then quantizing composes.
Optionally the input of each layer is quantized too (activations=True), calibrated on data.
Biases stay in fp32 (deployed integer kernels keep them in 32 bits as well).
"""
from __future__ import annotations

import copy
import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

from compressor.data import Split
from compressor.layers import per_layer_settings, select_layers
from compressor.state import WEIGHT_QUANT, InputQuant, WeightQuant, set_input_quant, weight_quant
from compressor.validation import check_bool, check_choice, check_int

SCHEMES = ("affine", "symmetric")
GRANULARITIES = ("tensor", "channel")
METHODS = ("uniform", "kmeans")
SETTING_KEYS = ("bits", "scheme", "granularity", "method")  # what `overrides` may set per layer
EPS = torch.finfo(torch.float32).eps  # smallest scale, as in PyTorch's observers (all-zero tensors)
KMEANS_MAX_ITER = 300  # Lloyd iterations at most (scikit-learn's default)
CALIBRATION_BATCH = 256  # inputs per forward pass while calibrating activations


@dataclass(frozen=True)
class QuantSetting:
    """How one layer's weights are quantized; validated on construction."""

    bits: int = 8  # 1 to 8: 2^bits representable values
    scheme: str = "affine"  # "affine" | "symmetric" (uniform only)
    granularity: str = "tensor"  # "tensor" | "channel": one scale per layer or per output channel (uniform only)
    method: str = "uniform"  # "uniform" grid | "kmeans" shared values (one codebook per layer)

    def __post_init__(self) -> None:
        check_int("bits", self.bits, 1, 8)
        check_choice("scheme", self.scheme, SCHEMES)
        check_choice("granularity", self.granularity, GRANULARITIES)
        check_choice("method", self.method, METHODS)


# ---------------------------------------------------------------- uniform grids


def _rows(w: torch.Tensor, granularity: str) -> torch.Tensor:
    """The weight as one row per scale: (1, N) per tensor, (C_out, N) per output channel (axis 0)."""
    return w.reshape(1, -1) if granularity == "tensor" else w.reshape(w.shape[0], -1)


def _code_range(scheme: str, bits: int) -> tuple[int, int]:
    """Codes a scheme uses: symmetric (b ≥ 2) leaves code 0 unused so the grid is symmetric about zero."""
    return (1 if scheme == "symmetric" and bits > 1 else 0), 2**bits - 1


def affine_qparams(x_min: torch.Tensor, x_max: torch.Tensor, bits: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Scale and integer zero point of the affine b-bit grid covering [x_min, x_max] and zero.

    PyTorch's MinMaxObserver convention, elementwise over (C,) tensors:
        x_min ← min(x_min, 0),  x_max ← max(x_max, 0)
        s = (x_max − x_min) / (2^b − 1)          (at least float32 eps)
        z = round(−x_min / s)                     (an integer in [0, 2^b − 1])
    """
    low = torch.clamp(x_min, max=0.0)
    high = torch.clamp(x_max, min=0.0)
    scale = torch.clamp((high - low) / float(2**bits - 1), min=EPS)
    zero_point = torch.round(-low / scale)  # = −round(low/s) (round is odd), without producing −0.0
    return scale, zero_point.clamp(0, 2**bits - 1)


def _fake_quantize(rows: torch.Tensor, scale: torch.Tensor, zero_point: torch.Tensor, low: int, high: int) -> torch.Tensor:
    """(c − z)·s with codes c = clamp(round(x·(1/s)) + z, low, high), one (s, z) per row of (C, N).

    x·(1/s) + z rather than round(x/s + z): bit for bit what torch.fake_quantize_per_*_affine computes.
    """
    s, z = scale[:, None], zero_point[:, None]  # (C, 1)
    codes = torch.clamp(torch.round(rows * (1.0 / s)) + z, low, high)  # (C, N)
    return (codes - z) * s


def quantize_affine(w: torch.Tensor, bits: int, granularity: str = "tensor") -> tuple[torch.Tensor, WeightQuant]:
    """Asymmetric uniform quantization: Q(x) = clamp(round(x/s) + z, 0, 2^b − 1), x̂ = (Q(x) − z)·s.

    With s = (x_max − x_min)/(2^b − 1) and z = −x_min/s this is the textbook formula
        Q(x) = round((x − x_min) / (x_max − x_min) · (2^b − 1)).
    Taken literally, that z is fractional, so x = 0 lands between two grid points and decodes to
    (round(z) − z)·s ≠ 0: every pruned weight would come back as a small non-zero and the sparsity
    would be lost. PyTorch (and we) "nudge" the grid instead: the range is first extended to include 0
    (so 0 ≤ z ≤ 2^b − 1) and z is rounded to an integer, shifting the grid by less than s/2. Zero is then
    the grid point c = z and decodes to exactly 0; the price is that an end of the range may be clipped
    by up to s/2. Results equal torch.fake_quantize_per_tensor_affine(w, s, z, 0, 2^b − 1) per tensor and
    torch.fake_quantize_per_channel_affine(w, s, z, 0, 0, 2^b − 1) per output channel.
    For b = 1 the grid is {0, s} or {−s, 0}: weights are switched on or off (use symmetric for ±α).
    """
    rows = _rows(w, granularity)  # (C, N)
    x_min, x_max = torch.aminmax(rows, dim=1)  # (C,)
    scale, zero_point = affine_qparams(x_min, x_max, bits)
    dequantized = _fake_quantize(rows, scale, zero_point, *_code_range("affine", bits))
    return dequantized.view_as(w), WeightQuant(bits, "uniform", "affine", granularity, scale, zero_point)


def quantize_symmetric(w: torch.Tensor, bits: int, granularity: str = "tensor") -> tuple[torch.Tensor, WeightQuant]:
    """Symmetric uniform quantization on the restricted range q ∈ [−(2^(b−1) − 1), 2^(b−1) − 1]:

        s = max|x| / (2^(b−1) − 1),   q = clamp(round(x/s), −(2^(b−1) − 1), 2^(b−1) − 1),   x̂ = q·s.

    The grid is symmetric about an exact zero (8 bits: −127s … 127s; 2 bits: {−s, 0, s}, ternary weights).
    Codes are stored unsigned, c = q + 2^(b−1) ∈ [1, 2^b − 1] with zero point 2^(b−1), so x̂ = (c − z)·s
    like the affine case; code 0 (the lone −2^(b−1) of two's complement) is left unused. This is PyTorch's
    `per_channel_weight_observer_range_neg_127_to_127` convention: results equal
    torch.fake_quantize_per_*_affine(w, s, 0, −(2^(b−1) − 1), 2^(b−1) − 1).
    For b = 1 the restricted range would be {0} alone, so 1-bit symmetric means binary weights ±α
    (see `quantize_binary`).
    """
    if bits == 1:
        return quantize_binary(w, granularity)
    rows = _rows(w, granularity)  # (C, N)
    scale = torch.clamp(rows.abs().amax(dim=1) / float(2 ** (bits - 1) - 1), min=EPS)  # (C,)
    zero_point = torch.full_like(scale, 2.0 ** (bits - 1))
    dequantized = _fake_quantize(rows, scale, zero_point, *_code_range("symmetric", bits))
    return dequantized.view_as(w), WeightQuant(bits, "uniform", "symmetric", granularity, scale, zero_point)


def quantize_binary(w: torch.Tensor, granularity: str = "tensor") -> tuple[torch.Tensor, WeightQuant]:
    """Binary weights (BinaryConnect, XNOR-Net): x̂ = α·sign(x), α = mean |x| over the non-zero weights.

    α = mean|x| minimises Σ(x − α·sign x)², the best single magnitude (XNOR-Net, Rastegari et al. 2016).
    Codes c ∈ {0, 1} (c = 1 for x > 0) with scale 2α and zero point 0.5, so x̂ = (c − 0.5)·2α = ±α.
    Zero is not a binary level: pruned weights stay exactly 0 and are kept by the sparse mask, not by codes.
    """
    rows = _rows(w, granularity)  # (C, N)
    nonzero = (rows != 0).sum(dim=1).clamp(min=1)  # (C,)
    scale = torch.clamp(2 * rows.abs().sum(dim=1) / nonzero, min=EPS)  # 2α, (C,)
    dequantized = torch.sign(rows) * (0.5 * scale)[:, None]  # ±α, and 0 where x = 0
    zero_point = torch.full_like(scale, 0.5)
    return dequantized.view_as(w), WeightQuant(1, "uniform", "symmetric", granularity, scale, zero_point)


# ---------------------------------------------------------------- k-means weight sharing


def _relocate_empty(x: np.ndarray, centroids: np.ndarray, counts: np.ndarray, sums: np.ndarray) -> None:
    """Move the values farthest from their centroids into the empty cells, one each, as scikit-learn does.

    In place on the cell counts and sums (k,). Only values off their centroid move, so each move lowers
    the inertia and the loop still converges.
    """
    empty = np.flatnonzero(counts == 0)  # (e,)
    labels = np.repeat(np.arange(len(counts)), counts)  # (n,)
    distance = np.abs(x - centroids[labels])
    far = np.argpartition(distance, -len(empty))[-len(empty):] if len(empty) < len(x) else np.arange(len(x))
    far = far[distance[far] > 0]  # (m,), m ≤ e
    np.subtract.at(counts, labels[far], 1)
    np.subtract.at(sums, labels[far], x[far])
    counts[empty[: len(far)]] = 1
    sums[empty[: len(far)]] = x[far]


def kmeans_1d(values: torch.Tensor, k: int, max_iter: int = KMEANS_MAX_ITER) -> tuple[torch.Tensor, torch.Tensor]:
    """Lloyd's k-means on 1-D values from a linear initialisation; returns (centroids (k,) sorted, labels (n,)).

    Minimises the inertia Σ_i (x_i − c_a(i))² by alternating two steps until the centroids stop moving:
        assign  a(i) = argmin_j |x_i − c_j|      update  c_j = mean{x_i : a(i) = j}.
    Centroids start evenly spaced between min(x) and max(x) (Han et al. found linear initialisation best:
    it keeps centroids on the rare large weights). In 1-D the nearest-centroid cells are intervals split
    at the midpoints between neighbouring sorted centroids, so after sorting the values once, assigning is
    a binary search of the k − 1 midpoints and each cell's sum a difference of prefix sums: O(k log n) per
    iteration. A value on a midpoint goes to the lower centroid, as argmin does. A cell left empty (linear
    initialisation puts centroids in the gap that pruning leaves around zero) takes the value farthest
    from its centroid, as in scikit-learn, so no shared value is wasted. Deterministic (no restarts).
    The loop works on (k,) arrays in numpy: per call it costs a fraction of torch's overhead.
    """
    raw = values.double().numpy()  # (n,)
    order = np.argsort(raw)
    x = raw[order]  # (n,) sorted
    prefix = np.concatenate([[0.0], np.cumsum(x)])  # (n + 1,): prefix[i] = sum of the i smallest
    centroids = np.linspace(x[0], x[-1], k)  # (k,)
    edges = np.zeros(k + 1, dtype=np.int64)  # (k + 1,): cell j is x[edges[j]:edges[j + 1]]
    edges[-1] = len(x)
    for _ in range(max_iter):
        edges[1:-1] = np.searchsorted(x, (centroids[1:] + centroids[:-1]) / 2, side="right")  # assign
        cumulative = prefix[edges]  # (k + 1,)
        counts, sums = edges[1:] - edges[:-1], cumulative[1:] - cumulative[:-1]  # (k,), (k,)
        if not counts.all():
            _relocate_empty(x, centroids, counts, sums)
        updated = np.sort(np.where(counts > 0, sums / np.maximum(counts, 1), centroids))  # update
        if (updated == centroids).all():
            break
        centroids = updated
    edges[1:-1] = np.searchsorted(x, (centroids[1:] + centroids[:-1]) / 2, side="right")
    labels = np.empty(len(x), dtype=np.int64)
    labels[order] = np.repeat(np.arange(k), np.diff(edges))  # (n,) back in the input's order
    return torch.from_numpy(centroids).float(), torch.from_numpy(labels)


def quantize_kmeans(w: torch.Tensor, bits: int) -> tuple[torch.Tensor, WeightQuant]:
    """Weight sharing: 2^b shared values per layer, the k-means centroids of its non-zero weights.

    x̂_i = codebook[a(i)] (see `kmeans_1d`). Pruned weights (exact zeros) take no part in clustering and
    get no centroid: they stay exactly 0, kept by the sparse mask. One codebook per layer (granularity
    and scheme do not apply).
    """
    flat = w.reshape(-1)  # (N,)
    nonzero = flat != 0
    dequantized = torch.zeros_like(flat)
    if nonzero.any():
        codebook, labels = kmeans_1d(flat[nonzero], 2**bits)
        dequantized[nonzero] = codebook[labels]
    else:
        codebook = torch.zeros(2**bits)
    return dequantized.view_as(w), WeightQuant(bits, "kmeans", "kmeans", "tensor", codebook=codebook)


UNIFORM_SCHEMES = {"affine": quantize_affine, "symmetric": quantize_symmetric}


def quantize_weight(w: torch.Tensor, setting: QuantSetting) -> tuple[torch.Tensor, WeightQuant]:
    """Dequantized weight (same shape) and its grid, as `setting` says."""
    if setting.method == "kmeans":
        return quantize_kmeans(w, setting.bits)
    return UNIFORM_SCHEMES[setting.scheme](w, setting.bits, setting.granularity)


# ---------------------------------------------------------------- activations


def calibrate_inputs(model: nn.Module, layers: Mapping[str, nn.Module], X: torch.Tensor, bits: int) -> dict[str, InputQuant]:
    """Per-tensor affine input quantization for each layer, from the min/max of its input over X.

    Runs the model as it is (quantized weights, any input quantization it already has) on X in batches,
    with a min/max observer on each layer's raw input; the grid is `affine_qparams` (range extended to 0,
    integer zero point: zero inputs, e.g. after ReLU, stay exact).
    """
    lows: dict[str, torch.Tensor] = {}
    highs: dict[str, torch.Tensor] = {}

    def observer(name: str):
        def hook(module: nn.Module, args: tuple) -> None:
            low, high = torch.aminmax(args[0].detach())
            lows[name] = torch.minimum(lows.get(name, low), low)
            highs[name] = torch.maximum(highs.get(name, high), high)

        return hook

    handles = [module.register_forward_pre_hook(observer(name), prepend=True) for name, module in layers.items()]
    try:
        with torch.no_grad():
            for batch in X.split(CALIBRATION_BATCH):
                model(batch)
    finally:
        for handle in handles:
            handle.remove()
    unseen = [name for name in layers if name not in lows]
    if unseen:
        raise ValueError(f"layer(s) {', '.join(unseen)} never ran on the calibration data; cannot calibrate their inputs")
    specs = {}
    for name in layers:
        scale, zero_point = affine_qparams(lows[name], highs[name], bits)
        specs[name] = InputQuant(bits, float(scale), int(zero_point))
    return specs


# ---------------------------------------------------------------- the technique


def _layer_setting(name: str, values: Mapping[str, Any]) -> QuantSetting:
    try:
        return QuantSetting(**values)
    except ValueError as err:
        raise ValueError(f"layer {name!r}: {err}") from None


def quantize(
    model: nn.Module,
    bits: int = 8,
    scheme: str = "affine",
    granularity: str = "tensor",
    method: str = "uniform",
    activations: bool = False,
    layers: Sequence[str] | None = None,
    overrides: Mapping[str, Mapping[str, Any]] | None = None,
    data: Split | None = None,
    activation_bits: int = 8,
) -> nn.Module:
    """A copy of `model` whose Linear/Conv weights are quantized to `bits` bits (simulated, in eval mode).

    bits:        1 to 8; each weight becomes one of 2^bits values.
    method:      "uniform" grid (`quantize_affine`, `quantize_symmetric`) or "kmeans" weight sharing
                 (`quantize_kmeans`; ignores scheme and granularity).
    scheme:      "affine" grid over [min, max] ∪ {0}, or "symmetric" over ±max|w| (1 bit: binary ±α).
    granularity: "tensor" (one scale per layer) or "channel" (one per output channel, axis 0).
    activations: also quantize each selected layer's input (per-tensor affine, activation_bits bits),
                 calibrated by min/max on `data.X` (a `Split`); the model with quantized weights is
                 run once for that.
    layers, overrides: names/globs of the layers to quantize (default: all eligible) and
                 {glob: {"bits"|"scheme"|"granularity"|"method": value}} per-layer settings.
    Exact zeros (pruned weights) stay exactly zero. A layer quantized before is re-quantized from its
    current weights and its `weight_quant` replaced; input quantization on layers not recalibrated is kept.
    """
    default = QuantSetting(bits, scheme, granularity, method)
    check_bool("activations", activations)
    check_int("activation_bits", activation_bits, 1, 8)
    if activations and not isinstance(data, Split):
        raise ValueError(
            f"activations=True needs calibration data: pass data=Split(X) with example inputs "
            f"(e.g. the calibration split), got {'data=None' if data is None else type(data).__name__}"
        )
    if activations and len(data) == 0:
        raise ValueError("activations=True needs calibration data, but data has no inputs")
    new = copy.deepcopy(model).eval()
    selected = select_layers(new, layers)
    settings = per_layer_settings(list(selected), asdict(default), overrides, SETTING_KEYS)
    for name, module in selected.items():
        dequantized, spec = quantize_weight(module.weight.detach().float(), _layer_setting(name, settings[name]))
        with torch.no_grad():
            module.weight.copy_(dequantized)
        setattr(module, WEIGHT_QUANT, spec)
    if activations:
        for name, spec in calibrate_inputs(new, selected, data.X, activation_bits).items():
            set_input_quant(selected[name], spec)
    return new


# ---------------------------------------------------------------- dashboard data


def quantization_levels(module: nn.Module, channel: int = 0) -> torch.Tensor:
    """The distinct values a quantized layer's weights can take, sorted ((L,), float32).

    Uniform: the grid (c − z)·s over the codes the scheme uses (per channel: the grid of `channel`,
    ignored per tensor); kmeans: the codebook. 0 is added when the layer (channel) holds exact zeros,
    which binary and kmeans grids need not contain.
    """
    spec = weight_quant(module)
    if spec is None:
        raise ValueError(f"{type(module).__name__} has no weight_quant; quantize it first")
    weight = module.weight.detach()
    if spec.method == "kmeans":
        levels = spec.codebook
    else:
        row = 0
        if spec.granularity == "channel":
            row = check_int("channel", channel, 0, weight.shape[0] - 1)
            weight = weight[row]
        low, high = _code_range(spec.scheme, spec.bits)
        levels = (torch.arange(low, high + 1, dtype=torch.float32) - spec.zero_point[row]) * spec.scale[row]
    if (weight == 0).any():
        levels = torch.cat([levels, levels.new_zeros(1)])
    return torch.unique(levels)


def sqnr_db(original: torch.Tensor, quantized: torch.Tensor) -> float:
    """Signal-to-quantization-noise ratio 10·log10(Σw² / Σ(w − ŵ)²) in dB (inf when exact).

    Each extra bit of a uniform grid halves the step and adds 20·log10(2) ≈ 6.02 dB.
    """
    noise = float(((original.double() - quantized.double()) ** 2).sum())
    if noise == 0.0:
        return math.inf
    signal = float((original.double() ** 2).sum())
    return 10 * math.log10(signal / noise) if signal > 0 else -math.inf


def quantization_error(original: nn.Module, quantized: nn.Module) -> dict[str, float]:
    """SQNR in dB (see `sqnr_db`) of every quantized layer of `quantized` against the same layer in `original`.

    `original` is the model that was quantized (same layer names and weight shapes).
    """
    reference = dict(original.named_modules())
    errors = {}
    for name, module in quantized.named_modules():
        if weight_quant(module) is None:
            continue
        before = reference.get(name)
        if before is None or getattr(before, "weight", None) is None or before.weight.shape != module.weight.shape:
            raise ValueError(
                f"layer {name!r} of the quantized model has no counterpart of the same shape in the original; "
                "pass the model it was quantized from"
            )
        errors[name] = sqnr_db(before.weight.detach(), module.weight.detach())
    return errors
