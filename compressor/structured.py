"""Structured (channel) pruning: remove whole output channels, so layers really shrink and run faster.

Removing output channel c of a layer deletes row c of its weight, entry c of its bias and of the
BatchNorm after it, and column c of every layer that reads it. Layers joined by a residual add or
a depthwise conv must lose the same channels. Torch-Pruning's dependency graph finds these coupled
groups and does the surgery (`tp.DependencyGraph`); which channels go is decided here, with the same
criteria and ranking as unstructured pruning (`pruning.py`):

    score(c) = ‖ s[c] ‖_p   over the rows that produce channel c in every coupled layer,

where s are per-weight scores (|w| for magnitude, (w · ∂L/∂w)² averaged over mini-batches for Taylor, random
for the baseline), so magnitude ranks channels by the L1 or L2 norm of their filters. The activation criterion
(|w_ij| · ‖x_j‖, Wanda) scores what a channel feeds forward instead: the columns that read it,

    score(c) = ‖ s[:, c] ‖_p  over every (ungrouped) layer reading channel c  = ‖x_c‖ · ‖W_next[:, c]‖_p.
"""
from __future__ import annotations

import copy
import dataclasses
from collections.abc import Mapping, Sequence
from fnmatch import fnmatchcase
from typing import Any

import torch
import torch_pruning as tp
from torch import nn

from compressor.data import Split
from compressor.layers import WEIGHTED, eligible_layers, per_layer_settings, select_layers
from compressor.pruning import CRITERIA, MAX_AMOUNT, SCOPES, global_masks, layer_mask
from compressor.state import WEIGHT_QUANT, weight_quant
from compressor.validation import check_choice, check_fraction, check_int

NORMS = (1, 2)
ATTENTION_OPS = ("BmmBackward0", "SoftmaxBackward0", "ScaledDotProduct")  # grad_fn names of q·kᵀ, softmax, SDPA


@dataclasses.dataclass(frozen=True)
class ChannelGroup:
    """Layers whose output channels must shrink together: one Torch-Pruning dependency group."""

    group: tp.dependency.Group  # rooted at one layer's output channels, all channels (C of them)
    producers: tuple[str, ...]  # eligible layers that lose output rows
    consumers: tuple[str, ...]  # layers that lose input columns (eligible names, else tp node names)
    attention: bool  # the channels pass through q·kᵀ or softmax
    blocks: int  # grouped convs: channels form `blocks` equal blocks that lose the same positions

    @property
    def positions(self) -> int:
        return len(self.group[0].idxs) // self.blocks


def prune_channels(
    model: nn.Module,
    amount: float,
    example_input: torch.Tensor,
    norm: int = 2,
    criterion: str = "magnitude",
    scope: str = "layer",
    layers: Sequence[str] | None = None,
    overrides: Mapping[str, Mapping[str, Any]] | None = None,
    data: Split | None = None,
    seed: int = 0,
) -> nn.Module:
    """A copy of `model` whose selected Linear/Conv layers have fewer output channels, their readers fewer inputs.

    scope="layer": each selected layer loses min(round(amount · C), C − 1) of its C output channels, the
    lowest-scoring ones (grouped convs: that many positions, removed from every block).
    scope="global": scores are divided by their layer's mean, then round(amount · total) channels go in all,
    at least one staying per layer; layers with an override are pruned layer-wise at their own amount.
    Coupled layers (residual add, depthwise conv) shrink together, at the amount of the first one.

    By default every Linear/Conv layer is selected except those tp cannot shrink consistently: the
    output layer (its outputs are the model's outputs) and attention projections with everything that
    shares their channels (the head reshapes would break). Naming such a layer in `layers` raises ValueError.
    """
    amount = check_fraction("amount", amount, 0, MAX_AMOUNT)
    check_choice("norm", norm, NORMS)
    check_choice("criterion", criterion, CRITERIA)
    check_choice("scope", scope, SCOPES)
    importance = CRITERIA[criterion](data, check_int("seed", seed, 0))
    if not isinstance(example_input, torch.Tensor):
        raise ValueError(f"example_input must be a tensor with a batch dimension, got {type(example_input).__name__}")
    new = copy.deepcopy(model).eval()
    eligible = eligible_layers(new)
    selected = select_layers(new, layers, eligible=eligible)
    settings = per_layer_settings(list(selected), {"amount": amount}, overrides, ("amount",))
    for name, values in settings.items():
        check_fraction(f"amount for layer {name!r}", values["amount"], 0, MAX_AMOUNT)
    output_shape = _output_shape(new, example_input)

    trainable = {name: p.requires_grad for name, p in new.named_parameters()}
    new.requires_grad_(True)  # tp follows the autograd graph of one forward pass
    graph = tp.DependencyGraph().build_dependency(new, example_inputs=example_input)
    groups = _choose(coupled_groups(graph, eligible), selected, explicit=layers is not None)
    readers = getattr(importance, "reads_channels", False)  # score channels by the columns that read them
    scored = {n for g in groups for n in (*g.producers, *(g.consumers if readers else ())) if n in eligible}
    scores = importance.scores(new, {n: eligible[n] for n in scored})  # shaped like each weight
    names = {module: name for name, module in eligible.items()}
    position_scores = [_position_scores(g, scores, names, norm, graph if readers else None) for g in groups]
    first = [next(n for n in selected if n in g.producers) for g in groups]  # a group follows its first layer
    overridden = {n for n in selected if any(fnmatchcase(n, p) for p in overrides or {})}
    relative = {  # global scope: each score relative to its layer's mean, so layers of any scale compare
        g.producers[0]: s / s.mean().clamp_min(1e-12)
        for g, s in zip(groups, position_scores)
        if scope == "global" and overridden.isdisjoint(g.producers)
    }
    keep = global_masks(relative, amount)  # one ranking over all shared groups; the others rank on their own
    for g, s, name in zip(groups, position_scores, first):
        kept = keep[g.producers[0]] if g.producers[0] in keep else layer_mask(s, settings[name]["amount"])
        if not kept.any():  # at least one channel stays
            kept[s.argmax()] = True
        _remove_channels(graph, g, (~kept).nonzero().view(-1), names)

    for name, p in new.named_parameters():
        p.requires_grad_(trainable.get(name, True))
    _check_runs(new, example_input, output_shape)
    return new


def coupled_groups(graph: tp.DependencyGraph, eligible: Mapping[str, nn.Module]) -> list[ChannelGroup]:
    """Every group of coupled output channels rooted at an eligible layer, in the graph's order."""
    names = {module: name for name, module in eligible.items()}
    found = []
    for group in graph.get_all_groups(root_module_types=WEIGHTED):
        nodes = [dep.target for dep, _ in group]  # every module or op the group touches
        outs = [dep.target.module for dep, _ in group if graph.is_out_channel_pruning_fn(dep.handler)]
        ins = [dep.target for dep, _ in group if graph.is_in_channel_pruning_fn(dep.handler)]
        found.append(ChannelGroup(
            group=group,
            producers=tuple(names[m] for m in outs if m in names),
            consumers=tuple(names.get(node.module, node.name) for node in ins),
            attention=any(op in _op_name(node) for node in nodes for op in ATTENTION_OPS),
            blocks=max([node.module.groups for node in nodes if _is_grouped_conv(node.module)] or [1]),
        ))
    return [g for g in found if g.producers]


def channel_prunable_layers(model: nn.Module, example_input: torch.Tensor) -> list[str]:
    """Names of the layers `prune_channels` selects by default (for pickers and error messages)."""
    model = copy.deepcopy(model).eval().requires_grad_(True)
    eligible = eligible_layers(model)
    graph = tp.DependencyGraph().build_dependency(model, example_inputs=example_input)
    groups = _choose(coupled_groups(graph, eligible), eligible, explicit=False)
    return [name for name in eligible if any(name in g.producers for g in groups)]


def _choose(groups: list[ChannelGroup], selected: Mapping[str, nn.Module], explicit: bool) -> list[ChannelGroup]:
    """The groups to prune: those with a selected layer that tp can shrink; explicit requests it can't raise."""
    attention_layers = {n for g in groups if g.attention for n in g.producers + g.consumers}
    chosen = []
    for g in groups:
        wanted = [n for n in g.producers if n in selected]
        if not wanted:
            continue
        reason = _why_not(g, selected, attention_layers)
        if reason is None:
            chosen.append(g)
        elif explicit:
            raise ValueError(f"layer {wanted[0]!r} can't lose output channels: {reason}")
    return chosen


def _why_not(g: ChannelGroup, selected: Mapping[str, nn.Module], attention_layers: set[str]) -> str | None:
    """Why a group can't be pruned, or None if it can."""
    if not g.consumers:
        return "its outputs are the model's outputs"
    if attention_layers.intersection(g.producers + g.consumers):
        return "its channels pass through attention (head reshapes, q·kᵀ), which channel pruning would break"
    others = [n for n in g.producers if n not in selected]
    if others:
        return f"it shares its channels with {', '.join(others)} (residual add or depthwise conv); select them too"
    return None


def _position_scores(
    g: ChannelGroup, scores: Mapping[str, torch.Tensor], names: Mapping[nn.Module, str], norm: int,
    readers: tp.DependencyGraph | None = None,
) -> torch.Tensor:
    """One score per prunable position: the p-norm of the per-weight scores of every row that produces it, or
    (`readers`, the graph: criteria that score what a channel feeds forward) of every column that reads it."""
    total = torch.zeros(len(g.group[0].idxs))  # (C,) in the root layer's channel order
    if readers is not None:
        for item in g.group:
            module, name = item.dep.target.module, names.get(item.dep.target.module)
            if name in scores and readers.is_in_channel_pruning_fn(item.dep.handler) and \
                    getattr(module, "groups", 1) == 1 and None not in item.root_idxs:
                columns = scores[name].transpose(0, 1)[item.idxs].flatten(1)  # (C, fan_out · kernel)
                total.index_add_(0, torch.tensor(item.root_idxs), columns.pow(norm).sum(dim=1))
        if total.any():
            return total.view(g.blocks, g.positions).sum(dim=0).pow(1 / norm)  # (positions,)
    for item in g.group:  # producers' rows (readers: only when no plain layer reads the channels)
        name = names.get(item.dep.target.module)
        if name in g.producers and None not in item.root_idxs:
            rows = scores[name][item.idxs].flatten(1)  # (C, fan_in · kernel)
            total.index_add_(0, torch.tensor(item.root_idxs), rows.pow(norm).sum(dim=1))
    return total.view(g.blocks, g.positions).sum(dim=0).pow(1 / norm)  # (positions,)


def _remove_channels(
    graph: tp.DependencyGraph, g: ChannelGroup, positions: torch.Tensor, names: Mapping[nn.Module, str]
) -> None:
    """Physically delete the given positions (in every block) from all layers of the group."""
    if len(positions) == 0:
        return
    channels = torch.cat([positions + b * g.positions for b in range(g.blocks)]).tolist()
    root = g.group[0].dep
    group = graph.get_pruning_group(root.target.module, root.handler, channels)
    group.prune()
    for item in group:  # per-channel quantization scales lose the same rows
        if names.get(item.dep.target.module) in g.producers:
            _drop_channel_quant(item.dep.target.module, item.idxs)


def _drop_channel_quant(module: nn.Module, removed: list[int]) -> None:
    """Keep a per-output-channel WeightQuant in step with the rows tp removed."""
    quant = weight_quant(module)
    if quant is None or quant.scale is None or quant.scale.numel() == 1:
        return
    keep = torch.ones(quant.scale.numel(), dtype=torch.bool)
    keep[removed] = False
    kept = dataclasses.replace(quant, scale=quant.scale[keep], zero_point=quant.zero_point[keep])
    setattr(module, WEIGHT_QUANT, kept)


def _is_grouped_conv(module: nn.Module) -> bool:
    """A conv whose channels split into blocks (groups > 1) that is not depthwise (one channel per group)."""
    return isinstance(module, (nn.Conv1d, nn.Conv2d)) and module.groups not in (1, module.out_channels)


def _op_name(node: Any) -> str:
    """The autograd op that produced a graph node's output, e.g. 'BmmBackward0' for q @ kᵀ."""
    return node.grad_fn.name() if hasattr(node.grad_fn, "name") else ""


def _output_shape(model: nn.Module, example_input: torch.Tensor) -> torch.Size:
    try:
        with torch.no_grad():
            return model(example_input).shape
    except Exception as error:  # any failure means the input does not fit the model
        raise ValueError(
            f"example_input of shape {tuple(example_input.shape)} does not run through the model: {error}"
        ) from error


def _check_runs(model: nn.Module, example_input: torch.Tensor, expected: torch.Size) -> None:
    """The pruned model must still run and give the same output shape (a forward that hard-codes a width won't)."""
    try:
        with torch.no_grad():
            shape = model(example_input).shape
        problem = None if shape == expected else f"output shape {tuple(shape)} instead of {tuple(expected)}"
    except Exception as error:  # whatever broke, the cause is a width the forward relies on
        problem = str(error)
    if problem is not None:
        raise ValueError(
            f"channel pruning broke the model's forward ({problem}); it probably hard-codes a channel count: "
            "leave those layers out with layers=[...]"
        )
