"""Structured pruning of attention heads: remove whole heads, so every attention block really shrinks.

Multi-head self-attention computes, for each head h of size d,

    head_h = softmax(Q_h K_hᵀ / √d) V_h,   Q_h = X W_q[h]ᵀ,  K_h = X W_k[h]ᵀ,  V_h = X W_v[h]ᵀ
    out    = [head_1 … head_H] W_oᵀ

where W_q[h], W_k[h], W_v[h] are the d rows of the query, key and value projections that produce head h and
W_o[:, h] the d columns of the output projection that read it. A head is a coupled group: removing it deletes
those 3·d rows and d columns together, and the block computes the same function of the heads that are left.
Channel pruning cannot remove one row at a time here (q·kᵀ pairs query and key rows within a head, the
reshape to (heads, d) needs whole heads), which is why `structured.py` leaves attention alone and this module
does it by head. Heads are ranked like channels (`structured.py`), with the same per-weight criteria:

    score(h) = ‖ s over W_q[h], W_k[h], W_v[h], W_o[:, h] ‖_p

Attention blocks are found by shape, as Hugging Face BERT-family encoders lay them out: a module with Linear
`query`, `key`, `value` and an int `attention_head_size`, whose parent's `output.dense` is the output projection
(transformers ≥ 5 reshapes by head size, `view(..., -1, d)`, so fewer heads need no other change).
"""
from __future__ import annotations

import copy
import dataclasses
from collections.abc import Mapping, Sequence
from fnmatch import fnmatchcase
from typing import Any

import torch
from torch import nn

from compressor.data import Split
from compressor.pruning import CRITERIA, MAX_AMOUNT, layer_mask
from compressor.state import WEIGHT_QUANT, weight_quant
from compressor.structured import prune_channels
from compressor.validation import check_choice, check_fraction, check_int

NORMS = (1, 2)


@dataclasses.dataclass(frozen=True)
class AttentionBlock:
    """One multi-head attention block: the qualified names of its four projections and its head size."""

    name: str  # the module holding query/key/value
    query: str
    key: str
    value: str
    output: str  # the projection reading the concatenated heads
    head_size: int

    @property
    def projections(self) -> tuple[str, str, str, str]:
        return self.query, self.key, self.value, self.output


def attention_blocks(model: nn.Module) -> dict[str, AttentionBlock]:
    """Every multi-head attention block of `model` laid out as in BERT (see the module docstring), by name."""
    modules = dict(model.named_modules())
    found = {}
    for name, module in modules.items():
        head_size = getattr(module, "attention_head_size", None)
        parts = [getattr(module, part, None) for part in ("query", "key", "value")]
        parent = name.rpartition(".")[0]
        output = f"{parent}.output.dense" if parent else "output.dense"
        if isinstance(head_size, int) and all(isinstance(p, nn.Linear) for p in parts) and \
                isinstance(modules.get(output), nn.Linear):
            found[name] = AttentionBlock(name, f"{name}.query", f"{name}.key", f"{name}.value", output, head_size)
    return found


def head_count(model: nn.Module, block: AttentionBlock) -> int:
    """Heads the block has now: query rows / head size."""
    return model.get_submodule(block.query).out_features // block.head_size


def select_blocks(blocks: Mapping[str, AttentionBlock], patterns: Sequence[str] | None) -> dict[str, AttentionBlock]:
    """The blocks any of whose projections (or the block itself) match a pattern; None selects all."""
    if patterns is None:
        return dict(blocks)
    return {name: b for name, b in blocks.items()
            if any(fnmatchcase(n, p) for n in (name, *b.projections) for p in patterns)}


def prune_heads(
    model: nn.Module,
    amount: float,
    norm: int = 2,
    criterion: str = "magnitude",
    layers: Sequence[str] | None = None,
    overrides: Mapping[str, Mapping[str, Any]] | None = None,
    data: Split | None = None,
    seed: int = 0,
) -> nn.Module:
    """A copy of `model` whose selected attention blocks each lose min(round(amount · H), H − 1) of their H heads.

    The lowest-scoring heads go (score: p-norm of the criterion's per-weight scores over the head's rows of
    query/key/value and columns of the output projection). `layers`: names/globs of blocks or their projections
    (None: every block); `overrides`: {glob: {"amount": a}} per block, matched the same way.
    Raises ValueError if the model has no attention block laid out as BERT's, or `layers` matches none.
    """
    amount = check_fraction("amount", amount, 0, MAX_AMOUNT)
    check_choice("norm", norm, NORMS)
    check_choice("criterion", criterion, CRITERIA)
    importance = CRITERIA[criterion](data, check_int("seed", seed, 0))
    new = copy.deepcopy(model).eval()
    blocks = select_blocks(attention_blocks(new), layers)
    if not blocks:
        raise ValueError(f"no multi-head attention block (query/key/value + output.dense, as in BERT) matches "
                         f"layers={list(layers) if layers is not None else None}")
    projections = {n: new.get_submodule(n) for b in blocks.values() for n in b.projections}
    scores = importance.scores(new, projections)  # per-weight scores, shaped like each weight
    for block in blocks.values():
        block_amount = _block_amount(block, amount, overrides)
        keep = layer_mask(_head_scores(block, scores, norm), block_amount)  # (H,) True = kept
        if not keep.any():
            keep[_head_scores(block, scores, norm).argmax()] = True
        _keep_heads(new, block, keep)
    return new


def _block_amount(block: AttentionBlock, amount: float, overrides: Mapping[str, Mapping[str, Any]] | None) -> float:
    """The amount for one block: the last override whose glob matches the block or one of its projections."""
    for pattern, values in (overrides or {}).items():
        if any(fnmatchcase(n, pattern) for n in (block.name, *block.projections)) and "amount" in values:
            amount = check_fraction(f"amount for {block.name!r}", values["amount"], 0, MAX_AMOUNT)
    return amount


def _head_scores(block: AttentionBlock, scores: Mapping[str, torch.Tensor], norm: int) -> torch.Tensor:
    """(H,) p-norm over each head's q/k/v rows and output columns."""
    d = block.head_size
    rows = sum(scores[n].pow(norm).reshape(-1, d, scores[n].shape[1]).sum(dim=(1, 2))
               for n in (block.query, block.key, block.value))  # (H,)
    out = scores[block.output]  # (D_out, H·d)
    cols = out.pow(norm).reshape(out.shape[0], -1, d).sum(dim=(0, 2))  # (H,)
    return (rows + cols).pow(1 / norm)


def _keep_heads(model: nn.Module, block: AttentionBlock, keep: torch.Tensor) -> None:
    """Shrink the four projections to the kept heads' rows (query, key, value) and columns (output)."""
    d = block.head_size
    channels = (keep.nonzero().view(-1, 1) * d + torch.arange(d)).view(-1)  # kept rows of q/k/v, in order
    for name in (block.query, block.key, block.value):
        _shrink(model.get_submodule(name), rows=channels)
    _shrink(model.get_submodule(block.output), columns=channels)
    attention = model.get_submodule(block.name)
    heads = int(keep.sum())
    for attribute, value in (("num_attention_heads", heads), ("all_head_size", heads * d)):
        if hasattr(attention, attribute):  # bookkeeping only: the forward reshapes by head size
            setattr(attention, attribute, value)


@torch.no_grad()
def _shrink(layer: nn.Linear, rows: torch.Tensor | None = None, columns: torch.Tensor | None = None) -> None:
    """Keep only the given output rows (and bias entries) or input columns of `layer`, in place (on our copy).

    The layer object stays, so hooks and tags on it (input quantization) stay too; a per-channel weight
    quantizer loses the removed rows' scales.
    """
    weight = layer.weight[rows] if rows is not None else layer.weight[:, columns]
    layer.weight = nn.Parameter(weight.clone(), requires_grad=layer.weight.requires_grad)
    if layer.bias is not None and rows is not None:
        layer.bias = nn.Parameter(layer.bias[rows].clone(), requires_grad=layer.bias.requires_grad)
    layer.out_features, layer.in_features = weight.shape
    quant = weight_quant(layer)
    if quant is not None and rows is not None:
        setattr(layer, WEIGHT_QUANT, _rows_of(quant, rows))


def _rows_of(quant, rows: torch.Tensor):
    """A per-output-channel quantizer restricted to the kept rows (per tensor: unchanged)."""
    if quant.scale is None or quant.scale.numel() == 1:
        return quant
    return dataclasses.replace(quant, scale=quant.scale[rows], zero_point=quant.zero_point[rows])


def prune_transformer(
    model: nn.Module,
    amount: float,
    example_input: torch.Tensor,
    layers: Sequence[str] | None = None,
    overrides: Mapping[str, Mapping[str, Any]] | None = None,
    **settings: Any,
) -> nn.Module:
    """Structured pruning of a transformer: heads of the attention blocks, channels (FFN width) elsewhere.

    `layers` names/globs are split: those matching an attention block or its projections select heads to prune
    (`prune_heads`), the rest select layers for `structured.prune_channels` (for BERT: the FFN's intermediate
    dense layers, whose output dense layers lose the same columns); layers=None prunes both at `amount`.
    `settings`: norm, criterion, scope, data, seed as for `prune_channels`; heads are always ranked within their
    block (scope applies to the channel groups).
    """
    blocks = attention_blocks(model)
    projections = {n for b in blocks.values() for n in (b.name, *b.projections)}
    if layers is None:
        head_layers, channel_layers = None, None
    else:
        head_layers = [p for p in layers if any(fnmatchcase(n, p) for n in projections)] or []
        channel_layers = [p for p in layers if p not in head_layers] or []
    head_overrides = {p: v for p, v in (overrides or {}).items() if any(fnmatchcase(n, p) for n in projections)}
    channel_overrides = {p: v for p, v in (overrides or {}).items() if p not in head_overrides}
    pruned = model
    if head_layers is None or head_layers:
        pruned = prune_heads(pruned, amount, norm=settings.get("norm", 2), criterion=settings.get("criterion", "magnitude"),
                             layers=head_layers, overrides=head_overrides, data=settings.get("data"),
                             seed=settings.get("seed", 0))
    if channel_layers is None or channel_layers:
        pruned = prune_channels(pruned, amount, example_input, layers=channel_layers,
                                overrides=channel_overrides or None, **settings)
    return pruned
