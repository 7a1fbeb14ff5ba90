"""A recipe: an ordered list of compression steps, plain data that round-trips through JSON.

    {"steps": [
      {"type": "prune", "amount": 0.9, "criterion": "magnitude", "scope": "global"},
      {"type": "quantize", "bits": 4, "scheme": "symmetric", "granularity": "channel"},
      {"type": "low_rank", "rank_ratio": 0.25, "layers": ["fc*"], "overrides": {"fc1": {"rank_ratio": 0.5}}}
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

from compressor.validation import check_bool, check_choice, check_fraction, check_int

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
    """Zero the least important weights (unstructured) or remove whole channels (structured)."""

    type: ClassVar[str] = "prune"
    override_keys: ClassVar[tuple[str, ...]] = ("amount",)

    amount: float = 0.5  # fraction of weights (or channels) removed, 0 to 0.99
    criterion: str = "magnitude"  # magnitude | taylor | random
    scope: str = "layer"  # layer: each layer loses `amount`; global: one threshold across layers
    structured: bool = False  # remove whole output neurons / channels
    norm: int = 2  # channel ranking norm (structured only)

    def validate(self) -> None:
        check_fraction("amount", self.amount, 0.0, MAX_AMOUNT)
        check_choice("criterion", self.criterion, ("magnitude", "taylor", "random"))
        check_choice("scope", self.scope, ("layer", "global"))
        check_bool("structured", self.structured)
        check_choice("norm", self.norm, (1, 2))
        if self.norm != 2 and not self.structured:
            raise ValueError(f"norm={self.norm!r} applies to structured pruning only; set structured=true or drop norm")


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


STEP_TYPES: dict[str, type[Step]] = {cls.type: cls for cls in (Prune, Quantize, LowRank)}


@dataclass(frozen=True)
class Recipe:
    """An ordered pipeline of steps."""

    steps: tuple[Step, ...] = ()

    def __post_init__(self) -> None:
        steps = tuple(self.steps)
        for step in steps:
            if not isinstance(step, Step):
                raise ValueError(f"recipe steps must be Prune, Quantize or LowRank steps, got {step!r}")
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
