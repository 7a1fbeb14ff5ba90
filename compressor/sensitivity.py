"""Per-layer sensitivity analysis and the greedy per-layer recipe it suggests.

Sensitivity (Distiller's `sensitivity_analysis`, AIMET's per-layer analysis): compress ONE layer with ONE
technique at one setting, leave everything else untouched, and measure the quality. A layer whose curve stays
flat can take much more compression than one whose curve falls at the first step.

Greedy selection (AIMET's greedy compression-ratio selection, per layer): for a target drop Δ, give each layer
the most compressing setting of each technique whose *own* measured drop is at most Δ. Layers' errors add up,
so the combined recipe's drop is measured, not assumed; `matched_uniform` finds the uniform recipe of the
same exported size so the two can be compared on equal terms.
"""
from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import pandas as pd

from compressor.policy import (
    FP32, Evaluator, LayerChoice, Measures, bit_rank, gene_units, policy_recipe, uniform_policy,
)
from compressor.recipe import MAX_AMOUNT
from compressor.validation import check_fraction

KINDS = ("prune", "quantize", "low_rank")  # the techniques varied, one at a time
SETTING_NAME = {"prune": "amount", "quantize": "bits", "low_rank": "rank_ratio"}


@dataclass(frozen=True)
class SensitivityGrid:
    """The settings tried per layer; an empty tuple leaves that technique out."""

    amounts: tuple[float, ...] = (0.5, 0.7, 0.8, 0.9, 0.95, 0.98)  # pruned fraction, 0 to 0.99
    bits: tuple[int | str, ...] = (8, 6, 4, 3, 2, 1)  # per-channel uniform; FP32 is the reference point
    rank_ratios: tuple[float, ...] = (0.5, 0.25, 0.1)  # kept singular values, fraction of min(m, n)

    def __post_init__(self) -> None:
        for amount in self.amounts:
            check_fraction("amount", amount, 0.0, MAX_AMOUNT)
        for bits in self.bits:
            LayerChoice(bits=bits)
        for ratio in self.rank_ratios:
            LayerChoice(rank_ratio=ratio)

    def settings(self, kind: str) -> tuple:
        return {"prune": self.amounts, "quantize": self.bits, "low_rank": self.rank_ratios}[kind]


def single_choice(kind: str, setting: float | int | str) -> LayerChoice:
    return LayerChoice(**{SETTING_NAME[kind]: setting})


def probe_units(evaluator: Evaluator, layers: Sequence[str] | None = None,
                share: Sequence[str] = ()) -> list[tuple[str, list[str]]]:
    """The units probed, (name, layers): each layer alone, or the layers of a `share`d module together."""
    layers = list(layers) if layers is not None else evaluator.layers
    unknown = sorted(set(layers) - set(evaluator.layers))
    if unknown:
        raise ValueError(f"layer(s) {', '.join(unknown)} not in the model; layers are: {', '.join(evaluator.layers)}")
    return gene_units(layers, share)


def probes(evaluator: Evaluator, grid: SensitivityGrid, layers: Sequence[str] | None = None,
           share: Sequence[str] = ()) -> list[tuple[str, str, object]]:
    """Every (unit, technique, setting) to measure, unit by unit (a unit is a layer unless `share` groups some)."""
    factorizable = set(evaluator.factorizable)
    return [(unit, kind, setting) for unit, members in probe_units(evaluator, layers, share) for kind in KINDS
            for setting in grid.settings(kind) if kind != "low_rank" or factorizable.issuperset(members)]


def sensitivity(
    evaluator: Evaluator,
    grid: SensitivityGrid = SensitivityGrid(),
    layers: Sequence[str] | None = None,
    progress: Callable[[float, str], None] | None = None,
    should_stop: Callable[[], bool] | None = None,
    share: Sequence[str] = (),
) -> pd.DataFrame:
    """One row per probe: layer, kind, setting, quality, drop, bytes (of the whole model's exported file).

    `progress(fraction, label)` after each probe; `should_stop()` before each: the rows measured so far are kept.
    `share`: module names whose layers are probed together, as one unit named by the module (the "layer" column),
    as the search's shared genes are (`SearchSpace.share`).
    """
    todo = probes(evaluator, grid, layers, share)
    members = dict(probe_units(evaluator, layers, share))
    rows = []
    for i, (layer, kind, setting) in enumerate(todo):
        if should_stop is not None and should_stop():
            break
        m = evaluator({name: single_choice(kind, setting) for name in members[layer]})
        rows.append({"layer": layer, "kind": kind, "setting": setting, "quality": m.quality, "drop": m.drop,
                     "bytes": m.bytes, "metric": m.metric})
        if progress is not None:
            progress((i + 1) / len(todo), f"{layer} {kind} {setting}")
    table = pd.DataFrame(rows, columns=["layer", "kind", "setting", "quality", "drop", "bytes", "metric"])
    table["setting"] = pd.Series([r["setting"] for r in rows], dtype=object)  # 4 bits stay 4, not 4.0
    return table


def setting_label(kind: str, setting: object) -> str:
    """"prune 90%", "4-bit", "fp32", "rank 0.25"."""
    if kind == "prune":
        return f"prune {setting:.0%}"
    if kind == "quantize":
        return "fp32" if setting == FP32 else setting if isinstance(setting, str) else f"{int(setting)}-bit"
    return f"rank {setting:g}"


def most_compressing(kind: str, settings: Sequence) -> object:
    """The setting that compresses most: highest amount, fewest bits (`bit_rank`), lowest rank ratio."""
    if kind == "prune":
        return max(settings)
    return min(settings, key=bit_rank if kind == "quantize" else float)


def greedy_policy(table: pd.DataFrame, max_drop: float) -> dict[str, LayerChoice]:
    """Each layer gets, per technique, the most compressing setting whose own drop is at most `max_drop`.

    Quantization and pruning combine in a layer; low-rank is chosen only for a layer that is not pruned
    (pruning a factorized pair's factors rarely pays). A layer that tolerates nothing is left uncompressed.
    """
    check_fraction("max_drop", max_drop, 0.0, 1.0)
    policy = {}
    for layer, rows in table.groupby("layer", sort=False):
        ok = rows[rows["drop"] <= max_drop + 1e-12]
        chosen = {}
        for kind in KINDS:
            settings = [_as_setting(kind, s) for s in ok.loc[ok["kind"] == kind, "setting"]]
            if settings:
                chosen[kind] = most_compressing(kind, settings)
        if "prune" in chosen:
            chosen.pop("low_rank", None)
        policy[layer] = LayerChoice(amount=chosen.get("prune"), bits=chosen.get("quantize"),
                                    rank_ratio=chosen.get("low_rank"))
    return policy


def _as_setting(kind: str, value: object) -> object:
    """A table's setting back as the choice (pandas stores 4 as 4.0 in a column that also holds 0.5)."""
    return int(value) if kind == "quantize" and not isinstance(value, str) else value


UNIFORM_AMOUNTS = tuple(round(0.05 * i, 2) for i in range(20))  # 0 to 0.95
UNIFORM_BITS = (FP32, 8, 6, 5, 4, 3, 2)


def uniform_grid(layers: list[str], amounts: Sequence[float] = UNIFORM_AMOUNTS,
                 bits: Sequence[int] = UNIFORM_BITS) -> dict[str, dict[str, LayerChoice]]:
    """Uniform policies, sparsity × bits, labelled "80% + 4-bit"."""
    return {f"{a:.0%} + {'fp32' if b == FP32 else f'{b}-bit'}": uniform_policy(layers, a or None, b)
            for b in bits for a in amounts}


SIZE_TOLERANCE = 0.05  # uniform recipes within 5% of the target size count as "the same size"


def _closest_amount(evaluator: Evaluator, bits: int, target_bytes: int) -> tuple[dict[str, LayerChoice], Measures]:
    """Binary search over amounts 0 to 0.98 (step 0.01) for the uniform size closest to the target.

    The exported size falls as the pruned fraction grows, so ~7 evaluations per bit width suffice.
    """
    amounts = [round(0.01 * i, 2) for i in range(99)]
    low, high = 0, len(amounts) - 1
    seen = []
    while low <= high:
        mid = (low + high) // 2
        policy = uniform_policy(evaluator.layers, amounts[mid] or None, bits)
        m = evaluator(policy)
        seen.append((policy, m))
        if m.bytes > target_bytes:
            low = mid + 1
        else:
            high = mid - 1
    return min(seen, key=lambda item: abs(item[1].bytes - target_bytes))


def matched_uniform(evaluator: Evaluator, target_bytes: int,
                    bits: Sequence[int] = UNIFORM_BITS) -> tuple[str, dict[str, LayerChoice], Measures]:
    """The best uniform policy (one amount, one bit width for every layer) of about `target_bytes`.

    Per bit width, the amount whose file is closest in size; of those within SIZE_TOLERANCE of the target the
    one of highest quality (none within: the closest in size).
    """
    found = [_closest_amount(evaluator, b, target_bytes) for b in bits]
    close = [f for f in found if abs(f[1].bytes - target_bytes) <= SIZE_TOLERANCE * target_bytes]
    policy, m = max(close, key=lambda f: f[1].quality) if close else min(found, key=lambda f: abs(f[1].bytes - target_bytes))
    first = next(iter(policy.values()))
    label = f"{first.amount or 0:.0%} + {'fp32' if first.bits == FP32 else f'{first.bits}-bit'}"
    return label, policy, m


def greedy_vs_uniform(evaluator: Evaluator, table: pd.DataFrame, max_drop: float) -> pd.DataFrame:
    """Two rows, both measured: the greedy per-layer recipe for `max_drop` and the uniform one of the same size."""
    greedy = greedy_policy(table, max_drop)
    g = evaluator(greedy)
    label, uniform, u = matched_uniform(evaluator, g.bytes)
    rows = []
    for name, policy, m in (("greedy per layer", greedy, g), (f"uniform {label}", uniform, u)):
        rows.append({"recipe": name, "quality": m.quality, "drop": m.drop, "bytes": m.bytes,
                     "effective_macs": m.effective_macs, "metric": m.metric,
                     "recipe_json": policy_recipe(policy).to_json(indent=None)})
    return pd.DataFrame(rows)
