"""How a compressed layer records what was done to it, so export and reports can read it back.

Techniques keep standard PyTorch layers. Pruned weights are exact zeros in `weight` (the mask is
`weight != 0`). Quantized weights hold their dequantized values in `weight` (simulated quantization:
the model runs in fp32) and the layer carries a `WeightQuant` under the attribute `weight_quant`.
Quantized inputs carry an `InputQuant` under `input_quant` plus a forward pre-hook that applies it.
A low-rank layer is an `nn.Sequential` of two standard layers (see `low_rank.py`).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

WEIGHT_QUANT = "weight_quant"
INPUT_QUANT = "input_quant"


@dataclass(frozen=True)
class WeightQuant:
    """Weight w is stored as b-bit codes c in [0, 2^b − 1].

    uniform: w = (c − zero_point) · scale, scale and zero_point of shape (C,) per channel or (1,) per tensor,
             broadcast along `axis` (0: output channels).
    kmeans:  w = codebook[c], one shared codebook per layer (Deep Compression weight sharing).
    Exact zeros (pruned weights) stay zero and are stored by the sparse mask, not as codes.
    """

    bits: int
    method: str  # "uniform" | "kmeans"
    scheme: str  # "affine" | "symmetric" (uniform only; "kmeans" for kmeans)
    granularity: str  # "tensor" | "channel"
    scale: torch.Tensor | None = None  # (C,) or (1,), float32
    zero_point: torch.Tensor | None = None  # (C,) or (1,), float32 (integers except 1-bit symmetric)
    codebook: torch.Tensor | None = None  # (2**bits,), float32

    def dequantize(self, codes: torch.Tensor) -> torch.Tensor:
        """Weights from integer codes shaped like the weight."""
        if self.method == "kmeans":
            return self.codebook[codes.long()]
        shape = (-1,) + (1,) * (codes.dim() - 1)
        return (codes.float() - self.zero_point.view(shape)) * self.scale.view(shape)

    def codes(self, weight: torch.Tensor) -> torch.Tensor:
        """Integer codes (int64, shaped like weight) of weights that are already on this grid."""
        if self.method == "kmeans":
            return (weight.reshape(-1, 1) - self.codebook.view(1, -1)).abs().argmin(dim=1).view(weight.shape)
        shape = (-1,) + (1,) * (weight.dim() - 1)
        q = torch.round(weight / self.scale.view(shape) + self.zero_point.view(shape))
        return q.clamp(0, 2**self.bits - 1).long()


@dataclass(frozen=True)
class InputQuant:
    """Per-tensor affine fake quantization of a layer's input, calibrated on data."""

    bits: int
    scale: float
    zero_point: int

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        return torch.fake_quantize_per_tensor_affine(x, self.scale, self.zero_point, 0, 2**self.bits - 1)


def _quantize_input_hook(module: nn.Module, args: tuple) -> tuple:
    """Forward pre-hook: fake-quantize the first input with the layer's InputQuant."""
    spec: InputQuant = getattr(module, INPUT_QUANT)
    return (spec(args[0]),) + tuple(args[1:])


def set_input_quant(module: nn.Module, spec: InputQuant) -> None:
    """Attach input quantization to a layer (replacing any earlier one)."""
    had_spec = hasattr(module, INPUT_QUANT)
    setattr(module, INPUT_QUANT, spec)
    if not had_spec:
        module.register_forward_pre_hook(_quantize_input_hook)


def clear_input_quant(module: nn.Module) -> None:
    """Remove a layer's input quantization and its hook (a deployed int8 kernel quantizes its input itself)."""
    if hasattr(module, INPUT_QUANT):
        delattr(module, INPUT_QUANT)
        for key, hook in list(module._forward_pre_hooks.items()):
            if hook is _quantize_input_hook:
                del module._forward_pre_hooks[key]


def weight_quant(module: nn.Module) -> WeightQuant | None:
    return getattr(module, WEIGHT_QUANT, None)


def input_quant(module: nn.Module) -> InputQuant | None:
    return getattr(module, INPUT_QUANT, None)


SOURCE = "compressor_source"  # where the uncompressed architecture comes from: a sample name or an entry point


def tag_source(model: nn.Module, source: str) -> nn.Module:
    """Record the model's origin (kept through deepcopy, so compressed copies remember it)."""
    setattr(model, SOURCE, source)
    return model


def source_of(model: nn.Module) -> str | None:
    return getattr(model, SOURCE, None)


RECIPE = "compressor_recipe"  # the recipe (as a dict) that produced the model from its source


def tag_recipe(model: nn.Module, recipe: dict | None) -> nn.Module:
    """Record how the model was made, so its exported file and its report describe the same thing."""
    setattr(model, RECIPE, recipe)
    return model


def recipe_of(model: nn.Module) -> dict | None:
    return getattr(model, RECIPE, None)
