"""Structural accounting per layer: parameters, non-zeros, bits per weight, rank and multiply-accumulates.

MACs (multiply-accumulates) are counted for one example while the model runs, by forward hooks on every
Linear/Conv1d/Conv2d, so each layer is counted as it is actually used (a low-rank pair as its two
layers, a layer called twice twice, a sequence model once per token):

    macs = output elements × weights per output element
         Linear (in → out):        positions · out · in           (positions: tokens, pixels, ... ; 1 for a vector)
         Conv (in → out, k×k, g):  out_elements · (in / g) · k · k

Pruning zeros weights; a sparse kernel skips them. Every weight of a layer takes part in the same
number of multiplies, so the MACs left are exactly  effective_macs = macs · nonzero(weight) / numel(weight).

Modules that hold parameters but do no weight multiplies (BatchNorm, LayerNorm, ...) get a row with
macs 0, so the rows add up to every parameter of the model.
"""
from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, fields

import pandas as pd
import torch
from torch import nn

from compressor.layers import ROOT_NAME, WEIGHTED
from compressor.low_rank import factorized_pairs, pair_rank
from compressor.state import weight_quant

ROOT = ROOT_NAME


@dataclass(frozen=True)
class LayerCost:
    """One row of the per-layer table."""

    name: str  # qualified module name
    type: str  # class name, e.g. "Linear"
    shape: tuple[int, ...]  # shape of `weight`; () if the module has none
    params: int  # parameters held by this module itself (weight, bias, ...)
    nonzero: int  # of those, how many are non-zero
    bits: int  # bits per weight: WeightQuant.bits if quantized, else the dtype width (32 for fp32)
    rank: int | None  # inner rank r for both layers of a low-rank pair; None otherwise
    macs: int  # dense multiply-accumulates per example
    effective_macs: int  # MACs left when zero weights are skipped


@contextmanager
def _counting_macs(model: nn.Module) -> Iterator[dict[nn.Module, int]]:
    """Count MACs of every weighted layer during forward passes, in eval mode; restore the model afterwards."""
    macs: dict[nn.Module, int] = defaultdict(int)

    def count(module: nn.Module, args: tuple, output: torch.Tensor) -> None:
        macs[module] += output.numel() * module.weight[0].numel()  # (outputs) x (weights per output)

    training = {m: m.training for m in model.modules()}
    handles = [m.register_forward_hook(count) for m in model.modules() if isinstance(m, WEIGHTED)]
    model.eval()  # no BatchNorm statistics update, no dropout
    try:
        yield macs
    finally:
        for handle in handles:
            handle.remove()
        for module, mode in training.items():
            module.training = mode


def _measure_macs(model: nn.Module, example_input: torch.Tensor | Sequence[torch.Tensor]) -> dict[nn.Module, int]:
    """MACs per example for each weighted layer, from one forward pass (total divided by the batch size)."""
    inputs = (example_input,) if isinstance(example_input, torch.Tensor) else tuple(example_input)
    if not inputs or inputs[0].dim() == 0 or inputs[0].shape[0] == 0:
        raise ValueError("example_input must be a tensor with a batch dimension holding at least one example")
    batch = inputs[0].shape[0]
    with torch.no_grad(), _counting_macs(model) as macs:
        model(*inputs)
    return {module: total // batch for module, total in macs.items()}


def _bits(module: nn.Module, params: list[nn.Parameter]) -> int:
    """Bits per stored weight: the quantization bit width if any, else the width of the dtype."""
    spec = weight_quant(module)
    if spec is not None:
        return spec.bits
    weight = getattr(module, "weight", None)
    tensor = weight if isinstance(weight, torch.Tensor) else params[0]
    return tensor.element_size() * 8


def _row(name: str, module: nn.Module, params: list[nn.Parameter], macs: int, rank: int | None) -> LayerCost:
    weight = getattr(module, "weight", None)
    weight = weight if isinstance(weight, torch.Tensor) else None
    effective = 0
    if weight is not None and macs:
        effective = macs * int(torch.count_nonzero(weight)) // weight.numel()  # exact: macs is a multiple of numel
    return LayerCost(
        name=name or ROOT,
        type=type(module).__name__,
        shape=tuple(weight.shape) if weight is not None else (),
        params=sum(p.numel() for p in params),
        nonzero=sum(int(torch.count_nonzero(p)) for p in params),
        bits=_bits(module, params),
        rank=rank,
        macs=macs,
        effective_macs=effective,
    )


def layer_costs(model: nn.Module, example_input: torch.Tensor | Sequence[torch.Tensor]) -> list[LayerCost]:
    """One row per Linear/Conv layer and per other module holding parameters, in definition order.

    MACs are measured on `example_input`, which has a batch dimension (any size; MACs are per example).
    A parameter shared by several modules is counted once, in the first, so the params column sums to the
    model's parameter count (a layer whose weight was counted elsewhere shows params 0 but its own MACs).
    The model is run once in eval mode and left as it was (mode, weights, buffers, hooks).
    """
    macs = _measure_macs(model, example_input)
    ranks = {f"{name}.{i}": pair_rank(pair) for name, pair in factorized_pairs(model).items() for i in (0, 1)}
    seen: set[int] = set()
    rows = []
    for name, module in model.named_modules():
        params = [p for p in module.parameters(recurse=False) if id(p) not in seen]
        seen.update(id(p) for p in params)
        if params or isinstance(module, WEIGHTED):  # a layer whose weight is shared still does its own MACs
            rows.append(_row(name, module, params, macs.get(module, 0), ranks.get(name)))
    return rows


def totals(costs: Sequence[LayerCost]) -> dict[str, int]:
    """Whole-model sums; dense_bytes is the fp32 size, 4 bytes per parameter."""
    params = sum(c.params for c in costs)
    return {
        "params": params,
        "nonzero_params": sum(c.nonzero for c in costs),
        "macs": sum(c.macs for c in costs),
        "effective_macs": sum(c.effective_macs for c in costs),
        "dense_bytes": 4 * params,
    }


def costs_frame(costs: Sequence[LayerCost]) -> pd.DataFrame:
    """The rows as a DataFrame, one column per LayerCost field (rank as nullable integers)."""
    frame = pd.DataFrame([asdict(c) for c in costs], columns=[f.name for f in fields(LayerCost)])
    return frame.astype({"rank": "Int64"})
