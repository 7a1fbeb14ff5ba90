"""A recipe: an ordered list of compression steps, plain data that round-trips through JSON.

    {"steps": [
      {"type": "prune", "amount": 0.9, "criterion": "magnitude", "scope": "global"},
      {"type": "quantize", "bits": 4, "scheme": "symmetric", "granularity": "channel"},
      {"type": "low_rank", "rank_ratio": 0.25, "layers": ["fc*"], "overrides": {"fc1": {"rank_ratio": 0.5}}},
      {"type": "finetune", "epochs": 3, "lr": 0.001}
    ]}

Every step is a frozen dataclass validated on construction; an unknown key or step type is an error.
A step read from JSON writes back exactly the keys it was given, so a hand-written file round-trips unchanged;
a step built in code writes every setting, so a saved recipe documents itself.
"""
from __future__ import annotations

import dataclasses
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

from compressor.validation import check_bool, check_choice, check_fraction, check_int, check_positive

MAX_AMOUNT = 0.99


@dataclass(frozen=True)
class Step:
    """Fields shared by every step: which layers it touches and per-layer values."""

    type: ClassVar[str]
    override_keys: ClassVar[tuple[str, ...]]

    layers: tuple[str, ...] | None = None  # names or globs; None: every eligible layer
    overrides: Mapping[str, Mapping[str, Any]] | None = None  # glob -> {key: value}
    _given: frozenset[str] | None = field(default=None, compare=False, repr=False)  # keys read from JSON

    def __post_init__(self) -> None:
        if self.layers is not None:
            if not isinstance(self.layers, (str, list, tuple)):
                raise ValueError(f"layers={self.layers!r} must be a list of layer names or globs")
            layers = (self.layers,) if isinstance(self.layers, str) else tuple(self.layers)
            if not layers or not all(isinstance(name, str) and name for name in layers):
                raise ValueError(f"layers={self.layers!r} must be a non-empty list of layer names or globs")
            object.__setattr__(self, "layers", layers)
        if self.overrides is not None:
            object.__setattr__(self, "overrides", self._checked_overrides(self.overrides))
        self.validate()

    def validate(self) -> None:
        """Check this step's own fields; subclasses raise ValueError naming the bad value."""

    def _checked_overrides(self, overrides: Any) -> dict[str, dict[str, Any]]:
        if not isinstance(overrides, Mapping):
            raise ValueError(f"overrides={overrides!r} must map layer names or globs to settings")
        checked = {}
        for pattern, values in overrides.items():
            if not isinstance(values, Mapping):
                raise ValueError(f"override {pattern!r} must be an object of settings, got {values!r}")
            unknown = sorted(set(values) - set(self.override_keys))
            if unknown:
                raise ValueError(
                    f"override {pattern!r} has unknown key(s) {', '.join(unknown)}; "
                    f"allowed for {self.type}: {', '.join(self.override_keys)}"
                )
            self._validate_override(dict(values))
            checked[str(pattern)] = dict(values)
        return checked

    def _validate_override(self, values: dict[str, Any]) -> None:
        """An override is valid when the step with those values would be."""
        dataclasses.replace(self, layers=None, overrides=None, **values)

    def settings(self) -> dict[str, Any]:
        """The technique's own arguments (no type, layers, overrides)."""
        skip = {"layers", "overrides", "_given"}
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.name not in skip}

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"type": self.type}
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if f.name == "_given":
                continue
            if self._given is not None and f.name not in self._given and value == f.default:
                continue
            if value is None:
                continue
            out[f.name] = list(value) if f.name == "layers" else value
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "Step":
        if not isinstance(data, Mapping):
            raise ValueError(f"a step must be an object with a 'type', got {data!r}")
        kind = data.get("type")
        step_cls = STEP_TYPES.get(kind)
        if step_cls is None:
            raise ValueError(f"step type {kind!r} is not allowed; choose one of {', '.join(map(repr, STEP_TYPES))}")
        names = {f.name for f in dataclasses.fields(step_cls)} - {"_given"}
        unknown = sorted(set(data) - names - {"type"})
        if unknown:
            raise ValueError(f"{kind} step has unknown key(s) {', '.join(unknown)}; allowed: {', '.join(sorted(names))}")
        values = {k: v for k, v in data.items() if k != "type"}
        return step_cls(**values, _given=frozenset(values))

    def __hash__(self) -> int:
        return hash(json.dumps(self.to_dict(), sort_keys=True))


@dataclass(frozen=True)
class Prune(Step):
    """Zero the least important weights (unstructured) or remove whole channels (structured).

    schedule="agp" prunes gradually, fine-tuning in between (Zhu & Gupta; see `schedules.py`); it needs
    training data. Its keys are left out (None) for one-shot pruning and default as AGP_DEFAULTS says.
    """

    type: ClassVar[str] = "prune"
    override_keys: ClassVar[tuple[str, ...]] = ("amount",)

    amount: float = 0.5  # fraction of weights (or channels) removed, 0 to 0.99
    criterion: str = "magnitude"  # magnitude | taylor | random
    scope: str = "layer"  # layer: each layer loses `amount`; global: one threshold across layers
    structured: bool = False  # remove whole output neurons / channels
    norm: int = 2  # channel ranking norm (structured only)
    schedule: str | None = None  # None: all at once; "agp": gradual, pruning and fine-tuning in alternation
    steps: int | None = None  # agp: pruning steps n
    epochs_per_step: int | None = None  # agp: fine-tuning epochs after each pruning step
    initial_amount: float | None = None  # agp: sparsity s_i the schedule starts from, 0 to amount
    lr: float | None = None  # agp: fine-tuning learning rate
    batch_size: int | None = None  # agp: fine-tuning minibatch size
    seed: int | None = None  # agp: seeds the fine-tuning batch order (and the random criterion)

    def validate(self) -> None:
        check_fraction("amount", self.amount, 0.0, MAX_AMOUNT)
        check_choice("criterion", self.criterion, ("magnitude", "taylor", "random"))
        check_choice("scope", self.scope, ("layer", "global"))
        check_bool("structured", self.structured)
        check_choice("norm", self.norm, (1, 2))
        if self.norm != 2 and not self.structured:
            raise ValueError(f"norm={self.norm!r} applies to structured pruning only; set structured=true or drop norm")
        if self.schedule is None:
            for key in AGP_DEFAULTS:
                if getattr(self, key) is not None:
                    raise ValueError(f"{key}={getattr(self, key)!r} applies to schedule='agp' only; "
                                     "set schedule='agp' or drop it")
            return
        if self.schedule != "agp":
            raise ValueError(f"schedule={self.schedule!r} is not allowed; choose 'agp' (gradual) or leave it out (one shot)")
        if self.structured:
            raise ValueError("schedule='agp' applies to unstructured pruning only; drop structured=true or the schedule")
        agp = self.agp_settings()
        check_int("steps", agp["steps"], 1)
        check_int("epochs_per_step", agp["epochs_per_step"], 1)
        check_fraction("initial_amount", agp["initial_amount"], 0.0, self.amount)
        check_positive("lr", agp["lr"])
        check_int("batch_size", agp["batch_size"], 1)
        check_int("seed", agp["seed"], 0)

    def agp_settings(self) -> dict[str, Any]:
        """The schedule's keys with their defaults filled in (for `schedules.gradual_prune`)."""
        return {key: default if getattr(self, key) is None else getattr(self, key) for key, default in AGP_DEFAULTS.items()}


AGP_DEFAULTS: dict[str, Any] = {
    "steps": 5, "epochs_per_step": 1, "initial_amount": 0.0, "lr": 1e-3, "batch_size": 64, "seed": 0,
}


@dataclass(frozen=True)
class Quantize(Step):
    """Store weights at `bits` bits: uniform (affine or symmetric) or k-means weight sharing."""

    type: ClassVar[str] = "quantize"
    override_keys: ClassVar[tuple[str, ...]] = ("bits", "scheme", "granularity", "method")

    bits: int = 8  # 1 to 8
    scheme: str = "affine"  # affine | symmetric (uniform only)
    granularity: str = "tensor"  # tensor | channel
    method: str = "uniform"  # uniform | kmeans
    activations: bool = False  # also quantize layer inputs to 8 bits, calibrated on data

    def validate(self) -> None:
        check_int("bits", self.bits, 1, 8)
        check_choice("scheme", self.scheme, ("affine", "symmetric"))
        check_choice("granularity", self.granularity, ("tensor", "channel"))
        check_choice("method", self.method, ("uniform", "kmeans"))
        check_bool("activations", self.activations)


@dataclass(frozen=True)
class LowRank(Step):
    """Factorize layers by truncated SVD, choosing the rank by count, ratio or retained energy."""

    type: ClassVar[str] = "low_rank"
    override_keys: ClassVar[tuple[str, ...]] = ("rank", "rank_ratio", "energy")

    rank: int | None = None  # kept singular values
    rank_ratio: float | None = None  # rank as a fraction of min(m, n)
    energy: float | None = None  # smallest rank keeping this fraction of sum(sigma^2)

    def validate(self) -> None:
        chosen = [name for name in ("rank", "rank_ratio", "energy") if getattr(self, name) is not None]
        if len(chosen) != 1:
            raise ValueError(
                f"low_rank needs exactly one of rank, rank_ratio, energy; got {', '.join(chosen) or 'none'}"
            )
        if self.rank is not None:
            check_int("rank", self.rank, 1)
        if self.rank_ratio is not None:
            _check_open_fraction("rank_ratio", self.rank_ratio)
        if self.energy is not None:
            _check_open_fraction("energy", self.energy)

    def _validate_override(self, values: dict[str, Any]) -> None:
        """A per-layer value replaces the step's rank selector."""
        LowRank(**values)


def _check_open_fraction(name: str, value: Any) -> None:
    check_fraction(name, value, 0.0, 1.0)
    if value == 0:
        raise ValueError(f"{name}={value!r} is out of range; allowed: above 0 up to 1")


@dataclass(frozen=True)
class Finetune(Step):
    """Train the compressed model on the training split, compression held (masks, QAT; see `training.py`).

    Minibatch Adam on the cross-entropy; the same settings and seed give bitwise the same weights.
    `layers` (names/globs) trains only those layers; the other parameters stay frozen.
    """

    type: ClassVar[str] = "finetune"
    override_keys: ClassVar[tuple[str, ...]] = ()

    epochs: int = 3  # passes over the training split
    lr: float = 1e-3  # Adam step size
    batch_size: int = 64  # examples per step
    seed: int = 0  # batch order

    def validate(self) -> None:
        check_int("epochs", self.epochs, 1)
        check_positive("lr", self.lr)
        check_int("batch_size", self.batch_size, 1)
        check_int("seed", self.seed, 0)

    def _checked_overrides(self, overrides: Any) -> dict[str, dict[str, Any]]:
        raise ValueError(f"overrides={overrides!r}: finetune has no per-layer settings; use layers to choose what trains")


STEP_TYPES: dict[str, type[Step]] = {cls.type: cls for cls in (Prune, Quantize, LowRank, Finetune)}


@dataclass(frozen=True)
class Recipe:
    """An ordered pipeline of steps."""

    steps: tuple[Step, ...] = ()

    def __post_init__(self) -> None:
        steps = tuple(self.steps)
        for step in steps:
            if not isinstance(step, Step):
                raise ValueError(f"recipe steps must be Prune, Quantize, LowRank or Finetune steps, got {step!r}")
        object.__setattr__(self, "steps", steps)

    def to_dict(self) -> dict[str, Any]:
        return {"steps": [step.to_dict() for step in self.steps]}

    @classmethod
    def from_dict(cls, data: Any) -> "Recipe":
        if not isinstance(data, Mapping) or set(data) != {"steps"} or not isinstance(data["steps"], list):
            raise ValueError('a recipe must be an object with one key, "steps", holding a list of steps')
        return cls(tuple(Step.from_dict(step) for step in data["steps"]))

    def to_json(self, indent: int | None = 2) -> str:
        return json.dumps(self.to_dict(), indent=indent)

    @classmethod
    def from_json(cls, text: str) -> "Recipe":
        try:
            data = json.loads(text)
        except json.JSONDecodeError as err:
            raise ValueError(f"recipe is not valid JSON: {err}") from None
        return cls.from_dict(data)

    def save(self, path: str | Path) -> None:
        Path(path).write_text(self.to_json() + "\n")

    @classmethod
    def load(cls, path: str | Path) -> "Recipe":
        path = Path(path)
        if not path.is_file():
            raise ValueError(f"recipe file {str(path)!r} does not exist")
        return cls.from_json(path.read_text())

    def __hash__(self) -> int:
        return hash(self.to_json(indent=None))

    def __len__(self) -> int:
        return len(self.steps)
