"""Per-layer compression policies and their measurement: the genome the search evolves and sensitivity varies.

A policy gives each layer up to three choices, any of them left out:

    {"fc1": LayerChoice(amount=0.8, bits=4), "fc2": LayerChoice(bits=FP32), "fc3": LayerChoice(rank_ratio=0.5)}

- `amount`: fraction of the layer's weights pruned (magnitude, per layer), 0 to 0.99;
- `bits`: 1–8 bits per weight (uniform affine, per output channel), `FP32` (32: keep fp32), or `DEPLOYED_INT8`
  (int8 in a deployed runtime; only an evaluator that deploys can measure it, see `Evaluator.deploys_int8` and
  `Int8Deployment`: ONNX Runtime's dynamic int8 on exactly those layers, the rest fp32: mixed precision);
- `rank_ratio`: truncated SVD keeping this fraction of min(m, n) singular values (1.0: not factorized).

A policy is not a new kind of pipeline: `policy_recipe` turns it into an ordinary `Recipe` (low-rank, then
pruning, then quantization, each one step with per-layer `overrides`), so what the search finds is exported,
evaluated and edited like any hand-written recipe. `Evaluator` measures recipes (quality, exported bytes,
effective MACs) and remembers every recipe it has measured, so a policy seen before costs nothing.
"""
from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from torch import nn

from compressor import fidelity
from compressor.costs import layer_costs, totals
from compressor.data import DataSplits
from compressor.deploy import MixedInt8
from compressor.latency import LatencyConfig
from compressor.layers import eligible_layers
from compressor.low_rank import factorizable_layers
from compressor.pipeline import compress
from compressor.recipe import MAX_AMOUNT, LowRank, Prune, Quantize, Recipe, Step
from compressor.report import evaluate
from compressor.validation import check_fraction, check_int

FP32 = 32  # "keep this layer in fp32": a bit-width choice, not quantized
DEPLOYED_INT8 = "int8-deployed"  # int8 executed by a deployed runtime; measured by a deploying evaluator only
QUANT_SETTINGS = {"granularity": "channel"}  # how every policy quantizes (uniform affine, one scale per channel)


BIT_WORDS = {"fp32": FP32, DEPLOYED_INT8: DEPLOYED_INT8}  # the bit-width words of the CLI and the pages


def bits_word(bits: int | str) -> str:
    """How the CLI and the pages name a bit-width choice: "fp32", "int8-deployed", or the number of bits ("4")."""
    return next((word for word, value in BIT_WORDS.items() if value == bits), str(bits))


def check_bits(name: str, value: Any) -> int | str:
    """A bit-width choice: 1–8, FP32 (32) or DEPLOYED_INT8."""
    if value == DEPLOYED_INT8 or value == FP32:
        return value
    if isinstance(value, str):
        raise ValueError(f"{name}={value!r} is not allowed; choose 1 to 8, {FP32} (keep fp32) or {DEPLOYED_INT8!r}")
    return check_int(name, value, 1, 8)


@dataclass(frozen=True)
class LayerChoice:
    """One layer's genes; None leaves that technique off for the layer."""

    amount: float | None = None  # pruned fraction, 0 to 0.99
    bits: int | str | None = None  # 1–8, FP32 or DEPLOYED_INT8
    rank_ratio: float | None = None  # kept fraction of min(m, n) singular values, (0, 1]; 1.0: not factorized

    def __post_init__(self) -> None:
        if self.amount is not None:
            object.__setattr__(self, "amount", round(check_fraction("amount", self.amount, 0.0, MAX_AMOUNT), 6))
        if self.bits is not None:
            check_bits("bits", self.bits)
        if self.rank_ratio is not None:
            ratio = check_fraction("rank_ratio", self.rank_ratio, 0.0, 1.0)
            if ratio == 0:
                raise ValueError("rank_ratio=0 is out of range; allowed: above 0 up to 1")
            object.__setattr__(self, "rank_ratio", round(ratio, 6))


Policy = Mapping[str, LayerChoice]  # layer name -> its choices


def policy_layers(model: nn.Module) -> list[str]:
    """The layers a policy may set: every Linear/Conv layer, in definition order."""
    return list(eligible_layers(model))


def gene_units(layers: Sequence[str], share: Sequence[str] = ()) -> list[tuple[str, list[str]]]:
    """(unit name, layers) pairs: one per layer, except that the layers inside a module whose name is in `share`
    form one unit, named by that module ("encoder.layer.0.attention" for its query, key, value and output). A unit
    gets one choice: one gene of the search, one probe of a sensitivity run."""
    units: dict[str, list[str]] = {}
    for name in layers:
        parts = name.split(".")
        cut = next((i + 1 for i, part in enumerate(parts) if part in share), len(parts))
        units.setdefault(".".join(parts[:cut]), []).append(name)
    return list(units.items())


def bit_rank(bits: int | str) -> float:
    """Where a bit-width choice sits from most to least compressing: 1–8 bits, then deployed int8, then fp32."""
    return 8.5 if bits == DEPLOYED_INT8 else float(bits)


def policy_recipe(policy: Policy) -> Recipe:
    """The ordinary recipe that applies `policy`: low-rank, then pruning, then quantization.

    A factorized layer `fc1` becomes the pair `fc1.0`, `fc1.1`; the later steps address it as `fc1.*`.
    DEPLOYED_INT8 layers get no simulated quantization here: the deploying evaluator quantizes them.
    """
    factorized = {name: c.rank_ratio for name, c in policy.items() if c.rank_ratio is not None and c.rank_ratio < 1}
    target = {name: f"{name}.*" if name in factorized else name for name in policy}
    pruned = {target[name]: c.amount for name, c in policy.items() if c.amount}
    quantized = {target[name]: c.bits for name, c in policy.items() if isinstance(c.bits, int) and c.bits < FP32}
    steps: list[Step] = []
    if factorized:
        steps.append(LowRank(rank_ratio=1.0, layers=tuple(factorized),
                             overrides={name: {"rank_ratio": r} for name, r in factorized.items()}))
    if pruned:
        steps.append(Prune(amount=0.5, layers=tuple(pruned), overrides={p: {"amount": a} for p, a in pruned.items()}))
    if quantized:
        steps.append(Quantize(bits=8, **QUANT_SETTINGS, layers=tuple(quantized),
                              overrides={p: {"bits": b} for p, b in quantized.items()}))
    return Recipe(tuple(steps))


def int8_deployable(model: nn.Module) -> bool:
    """Whether `Int8Deployment` can run any of the model's policy layers as int8: all of them are Linear layers
    (ONNX Runtime's dynamic int8 MatMul; convolutions would need static calibration)."""
    layers = eligible_layers(model)
    return bool(layers) and all(isinstance(m, nn.Linear) for m in layers.values())


def deployed_int8_layers(policy: Policy) -> list[str]:
    """Layers the policy wants executed as int8 by a deployed runtime."""
    return [name for name, c in policy.items() if c.bits == DEPLOYED_INT8]


def uniform_policy(layers: list[str], amount: float | None = None, bits: int | str | None = None) -> dict[str, LayerChoice]:
    """Every layer the same: the hand-tuned baseline a search must beat."""
    return {name: LayerChoice(amount=amount, bits=bits) for name in layers}


def describe_policy(policy: Policy) -> str:
    """One line: "fc1 90% 4b · fc2 70% fp32 · fc3 r0.5"."""
    parts = []
    for name, c in policy.items():
        genes = []
        if c.amount:
            genes.append(f"{c.amount:.0%}")
        if c.bits is not None:
            genes.append("fp32" if c.bits == FP32 else c.bits if isinstance(c.bits, str) else f"{c.bits}b")
        if c.rank_ratio is not None and c.rank_ratio < 1:
            genes.append(f"r{c.rank_ratio:g}")
        parts.append(f"{name} {' '.join(genes) or 'as is'}")
    return " · ".join(parts)


def policy_to_dict(policy: Policy) -> dict[str, dict[str, Any]]:
    return {name: {k: v for k, v in vars(c).items() if v is not None} for name, c in policy.items()}


# ---------------------------------------------------------------- measuring


@dataclass(frozen=True)
class Measures:
    """What a search or sensitivity analysis knows about one recipe. Every value is measured."""

    quality: float  # accuracy on held-out data (or the evaluator's fidelity metric), a fraction
    baseline_quality: float
    bytes: int  # size of the exported file
    effective_macs: int  # MACs per example with zero weights skipped
    metric: str = "accuracy"  # what `quality` is ("accuracy", "agreement", or a fidelity such as mean cosine)
    latency_ms: float | None = None  # deployed latency, filled in by an evaluator that deploys
    baseline_latency_ms: float | None = None  # the fp32 deployment, timed in the same interleaved run

    @property
    def drop(self) -> float:
        return self.baseline_quality - self.quality


Measure = Callable[[Recipe], Measures]


def report_measures(model: nn.Module, data: DataSplits, recipe: Recipe) -> Measures:
    """Compress and evaluate (latency not timed): the default way to measure a recipe."""
    report = evaluate(compress(model, recipe, data), data, baseline=model, latency=None, recipe=recipe.to_dict())
    return Measures(report.accuracy, report.baseline_accuracy, report.compressed_bytes, report.effective_macs,
                    report.metric)


DeployedMeasure = Callable[[Recipe, list[str]], Measures]  # (recipe, layers to run as int8) -> measures


@dataclass
class Int8Deployment:
    """A `DeployedMeasure` on ONNX Runtime: the recipe's model with the DEPLOYED_INT8 layers as dynamic int8 (per
    channel) and every other layer fp32, scored on the held-out split and timed against the fp32 graph.

    `Evaluator(model, data, measure_deployed=Int8Deployment(model, data))`. The fp32 graph of a recipe's model is
    exported once (`compressor.deploy.MixedInt8`) and only re-quantized per policy; the empty recipe (pure mixed
    precision, the usual case) starts from the model's deployed fp32 baseline, the one `deploy` compares with. Quality is accuracy, or for embedding data the
    mean cosine to the uncompressed model's embeddings (baseline 1.0).
    """

    model: nn.Module
    data: DataSplits
    latency: LatencyConfig = field(default_factory=lambda: LatencyConfig(warmup=3, runs=20))
    _deployments: dict[str, tuple[MixedInt8, int]] = field(default_factory=dict, repr=False)  # recipe -> (graph, MACs)
    _baseline_quality: float | None = field(default=None, repr=False)
    _reference: fidelity.Reference | None = field(default=None, repr=False)

    def reference(self) -> fidelity.Reference | None:
        """Embedding data: the UNcompressed model's embeddings, which every deployment is scored against."""
        if self.data.kind == "embedding" and self._reference is None:
            self._reference = fidelity.reference(self.model, self.data)
        return self._reference

    def deployment(self, recipe: Recipe) -> tuple[MixedInt8, int]:
        """The exported graph (and effective MACs) of the recipe's model; only the latest recipe's is kept."""
        key = recipe.to_json(indent=None)
        if key not in self._deployments:
            model = compress(self.model, recipe, self.data) if recipe.steps else self.model
            mixed = MixedInt8(model, self.data, latency=self.latency, reference=self.reference(),
                              shared=not recipe.steps)  # the model itself: its deployed baseline, shared with `deploy`
            self._deployments = {key: (mixed, totals(layer_costs(model, self.data.example_input))["effective_macs"])}
        return self._deployments[key]

    def __call__(self, recipe: Recipe, int8_layers: list[str]) -> Measures:
        mixed, macs = self.deployment(recipe)
        point = mixed.measure(int8_layers)
        embedding = self.data.kind == "embedding"
        return Measures(point.quality, 1.0 if embedding else self.baseline_quality(), point.onnx_bytes, macs,
                        "mean cosine" if embedding else "accuracy", point.latency_ms, point.baseline_latency_ms)

    def baseline_quality(self) -> float:
        """The uncompressed model's accuracy on the held-out split (classifiers)."""
        if self._baseline_quality is None:
            self._baseline_quality = evaluate(self.model, self.data, latency=None).accuracy
        return self._baseline_quality


@dataclass
class Evaluator:
    """Measures policies of one model, remembering each one's measures: a policy seen before costs nothing.

    `measure` defaults to compress + evaluate; the app passes one backed by its server-wide cache, and a model
    scored by fidelity (minilm-l6: mean cosine to the fp32 embeddings) passes one whose `Measures.quality` is that
    fidelity and `metric` says so. `measure_deployed` is how "int8 deployed" plugs in: given the policy's recipe
    (DEPLOYED_INT8 layers left unquantized in it) and those layers, it exports, quantizes them to int8 in the
    deployed runtime, and fills `Measures.latency_ms` (the "latency_ms" objective of the search). With one given,
    EVERY policy is measured deployed (no int8 layer: the fp32 graph), so all trials share one kind of number;
    `Int8Deployment` is the ONNX Runtime one.
    """

    model: nn.Module
    data: DataSplits | None = None
    measure: Measure | None = None
    measure_deployed: DeployedMeasure | None = None
    cache: dict[str, Measures] = field(default_factory=dict, repr=False)
    misses: int = 0  # policies measured (the rest came from the cache)

    @property
    def deploys_int8(self) -> bool:
        return self.measure_deployed is not None

    def __call__(self, policy: Policy) -> Measures:
        int8 = deployed_int8_layers(policy)
        if int8 and not self.deploys_int8:
            raise ValueError(f"bits={DEPLOYED_INT8!r} needs an evaluator that deploys int8 (ONNX Runtime); "
                             f"this one simulates quantization: choose 1 to 8 or {FP32}")
        recipe = policy_recipe(policy)
        if not self.deploys_int8:  # a deploying evaluator measures every policy deployed, with or without int8 layers
            return self.recipe(recipe)
        key = recipe.to_json(indent=None) + " int8:" + ",".join(int8)
        if key not in self.cache:
            self.misses += 1
            self.cache[key] = self.measure_deployed(recipe, int8)
        return self.cache[key]

    def recipe(self, recipe: Recipe) -> Measures:
        key = recipe.to_json(indent=None)
        if key not in self.cache:
            self.misses += 1
            self.cache[key] = (self.measure or self._default)(recipe)
        return self.cache[key]

    def _default(self, recipe: Recipe) -> Measures:
        if self.data is None:
            raise ValueError("Evaluator needs data (DataSplits) to measure quality")
        return report_measures(self.model, self.data, recipe)

    @property
    def layers(self) -> list[str]:
        return policy_layers(self.model)

    @property
    def factorizable(self) -> list[str]:
        return list(factorizable_layers(self.model))
