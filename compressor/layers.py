"""Which layers a technique may touch: eligibility by type, selection by name or glob, per-layer overrides."""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from fnmatch import fnmatchcase
from typing import Any

from torch import nn

WEIGHTED = (nn.Linear, nn.Conv1d, nn.Conv2d)  # layers whose weight pruning and quantization act on


def eligible_layers(model: nn.Module, kinds: tuple[type, ...] = WEIGHTED) -> dict[str, nn.Module]:
    """All submodules of the given types, by qualified name, in definition order."""
    return {name: m for name, m in model.named_modules() if name and isinstance(m, kinds)}


def select_layers(
    model: nn.Module,
    patterns: Sequence[str] | None,
    kinds: tuple[type, ...] = WEIGHTED,
    eligible: Mapping[str, nn.Module] | None = None,
) -> dict[str, nn.Module]:
    """Eligible layers whose names match any of `patterns` (exact names or globs); None means all.

    A pattern that matches no eligible layer is an error: a typo must not silently select nothing.
    """
    layers = dict(eligible) if eligible is not None else eligible_layers(model, kinds)
    if patterns is None:
        return layers
    if isinstance(patterns, str):
        patterns = [patterns]
    for pattern in patterns:
        if not any(fnmatchcase(name, pattern) for name in layers):
            raise ValueError(
                f"layer {pattern!r} matches no eligible layer; eligible layers are: {', '.join(layers) or '(none)'}"
            )
    return {name: m for name, m in layers.items() if any(fnmatchcase(name, p) for p in patterns)}


def per_layer_settings(
    names: Sequence[str],
    defaults: Mapping[str, Any],
    overrides: Mapping[str, Mapping[str, Any]] | None,
    allowed_keys: Sequence[str],
) -> dict[str, dict[str, Any]]:
    """Settings for each layer: `defaults`, updated by every override glob that matches (later globs win).

    Override keys outside `allowed_keys` and globs that match none of `names` raise ValueError.
    """
    settings = {name: dict(defaults) for name in names}
    for pattern, values in (overrides or {}).items():
        unknown = sorted(set(values) - set(allowed_keys))
        if unknown:
            raise ValueError(
                f"override {pattern!r} has unknown key(s) {', '.join(unknown)}; allowed: {', '.join(allowed_keys)}"
            )
        matched = [n for n in names if fnmatchcase(n, pattern)]
        if not matched:
            raise ValueError(
                f"override {pattern!r} matches no selected layer; selected layers are: {', '.join(names) or '(none)'}"
            )
        for name in matched:
            settings[name].update(values)
    return settings


ROOT_NAME = "(model)"  # how tables name parameters held by the model object itself (its qualified name is "")
