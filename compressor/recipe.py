"""A recipe: an ordered list of compression steps, plain data that round-trips through JSON.

    {"steps": [
      {"type": "prune", "amount": 0.9, "criterion": "magnitude", "scope": "global"},
      {"type": "quantize", "bits": 4, "scheme": "symmetric", "granularity": "channel"},
      {"type": "low_rank", "rank_ratio": 0.25, "layers": ["fc*"], "overrides": {"fc1": {"rank_ratio": 0.5}}},
      {"type": "finetune", "epochs": 3, "lr": 0.001}
    ]}

Every step is a frozen dataclass validated on construction; an unknown key or step type is an error.
Each setting is declared once, with `setting(...)`: its default, its documented range or choices and a line of
help (a `FieldSpec`, read with `Prune.spec("amount")`). The pages and the Pipeline editor draw their widgets
from these specs, and `describe()` gives each step's short label: one vocabulary for the whole product.

Identity. A step stores every value in one canonical form (floats as floats, layers sorted, overrides as an
immutable mapping whose per-layer settings are sorted; defaults that apply filled in), so `==`, `hash` and
`Recipe.canonical_json()` (the key of every cache) agree: `{"type": "prune", "amount": 0.5}` read from JSON
equals `Prune(amount=0.5)` built in code. Only `to_dict` remembers how a file spelled a step, so a hand-written
recipe writes back unchanged; a step built in code writes every setting, so a saved recipe documents itself.

Limits (a pasted recipe must not tie up a shared server): at most MAX_RECIPE_CHARS characters of JSON nested at
most MAX_DEPTH deep, MAX_STEPS steps, MAX_PATTERNS layer names or overrides per step; every number has a range.
"""
from __future__ import annotations

import copy
import dataclasses
import json
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

from compressor.low_rank import RULE_KEYS
from compressor.pruning import CRITERIA, MAX_AMOUNT, SCOPES
from compressor.quantization import GRANULARITIES, METHODS, SCHEMES
from compressor.structured import NORMS
from compressor.validation import check_bool, check_choice, check_int, check_number, short_repr

MAX_RECIPE_CHARS = 1_000_000  # characters of recipe JSON read at most (a large per-layer recipe is ~50 kB)
MAX_DEPTH = 16  # nesting of JSON objects and lists; a valid recipe needs 5 (recipe, steps, step, overrides, values)
MAX_STEPS = 64  # steps in one recipe; real pipelines have 2 to 6
MAX_PATTERNS = 4096  # entries of a step's `layers` or `overrides` (one per layer of a large transformer)
MAX_PATTERN_CHARS = 256  # one layer name or glob (a glob becomes a regular expression: keep it small)
MAX_AGP_EPOCHS = 200  # steps × epochs_per_step of a gradual schedule: as many epochs as one finetune step allows
SEED_MAX = 2**32 - 1  # seeds: what numpy's and torch's generators accept everywhere
SIZE_MAX = 65536  # batch sizes and ranks


# ---------------------------------------------------------------- one setting, declared once


@dataclass(frozen=True)
class FieldSpec:
    """What one setting of a step may hold: default, range or choices, and help. `check` gives its canonical value."""

    default: Any  # the value a recipe gets when it leaves the key out
    help: str  # one line, shown next to the widget
    kind: type | None = None  # int | float | bool for numbers and switches; None for a choice
    low: float | None = None  # numbers: smallest allowed (excluded when low_open)
    high: float | None = None  # numbers: largest allowed
    low_open: bool = False  # e.g. a learning rate: above 0, not 0
    choices: tuple[Any, ...] | None = None  # the allowed values of a choice
    labels: tuple[tuple[Any, str], ...] = ()  # (value, how pages show it); a value without one shows as itself
    optional: bool = False  # None is allowed and means "does not apply" (AGP keys, the rank selectors)

    def check(self, name: str, value: Any) -> Any:
        """The canonical value of `value`, or ValueError naming it and what is allowed."""
        if value is None and self.optional:
            return None
        if self.choices is not None:
            return check_choice(name, value, self.choices)
        if self.kind is bool:
            return check_bool(name, value)
        if self.kind is int:
            return check_int(name, value, int(self.low), int(self.high))
        return check_number(name, value, self.low, self.high, self.low_open)

    def label(self, value: Any) -> str:
        """How the pages show one value of this setting."""
        return dict(self.labels).get(value, str(value))

    def allowed(self) -> str:
        """The range or choices in words, as the README's recipe table states them."""
        if self.choices is not None:
            return " | ".join(str(c) for c in self.choices) + (" | left out" if self.optional else "")
        if self.kind is bool:
            return "true | false"
        if self.kind is int:
            return f"{int(self.low)} to {int(self.high)}"
        return f"{'above ' if self.low_open else ''}{self.low:g}{' up' if self.low_open else ''} to {self.high:g}"


def setting(default: Any, help: str, *, optional: bool = False, **spec: Any) -> Any:
    """A dataclass field carrying its FieldSpec. optional=True: the field defaults to None ("does not apply")."""
    kind = None if "choices" in spec else spec.pop("kind", type(default))
    info = FieldSpec(default=default, help=help, kind=kind, optional=optional, **spec)
    return field(default=None if optional else default, metadata={"spec": info})


class FrozenMapping(Mapping):
    """An immutable mapping that keeps its order, compares in order and hashes: how a step holds `overrides`.

    Order matters for overrides (later globs win), so two mappings are equal only with the same items in the
    same order; the per-layer settings inside are stored sorted by key, their canonical order.
    """

    def __init__(self, items: Mapping | Iterator | tuple = ()) -> None:
        self._items = tuple(items.items() if isinstance(items, Mapping) else items)
        self._dict = dict(self._items)
        self._hash: int | None = None

    def __getitem__(self, key: Any) -> Any:
        return self._dict[key]

    def __iter__(self) -> Iterator:
        return iter(self._dict)

    def __len__(self) -> int:
        return len(self._dict)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Mapping) and list(self.items()) == list(other.items())

    def __hash__(self) -> int:
        if self._hash is None:
            self._hash = hash(self._items)
        return self._hash

    def __repr__(self) -> str:
        return repr(self._dict)

    def __reduce__(self) -> tuple:
        """Pickle the items only: a cached hash of strings is valid in this process alone."""
        return FrozenMapping, (self._items,)


def _plain(value: Any) -> Any:
    """JSON-ready copy: FrozenMapping -> dict, tuple -> list."""
    if isinstance(value, Mapping):
        return {key: _plain(v) for key, v in value.items()}
    if isinstance(value, (tuple, list)):
        return [_plain(v) for v in value]
    return value


def _check_nesting(data: Any, limit: int = MAX_DEPTH) -> None:
    """Refuse data nested deeper than `limit` (checked without recursion, so any depth gives a clean error)."""
    stack = [(data, 1)]
    while stack:
        value, depth = stack.pop()
        if isinstance(value, (Mapping, list, tuple)):
            if depth > limit:
                raise ValueError(f"recipe nests more than {limit} levels deep; a recipe needs at most 5")
            children = value.values() if isinstance(value, Mapping) else value
            stack.extend((child, depth + 1) for child in children)


def _names(keys: Any) -> str:
    text = ", ".join(short_repr(k, 40) if not isinstance(k, str) else k[:40] for k in keys)
    return text if len(text) <= 200 else text[:197] + "..."


def _check_pattern(pattern: str) -> None:
    if len(pattern) > MAX_PATTERN_CHARS:
        raise ValueError(f"layer name or glob {short_repr(pattern)} is {len(pattern):,} characters long; "
                         f"at most {MAX_PATTERN_CHARS} are allowed")


def _scalar(value: Any) -> bool:
    return isinstance(value, (str, int, float, bool)) or value is None


def _percent(fraction: float) -> str:
    return f"{100 * fraction:.4g}%"


# ---------------------------------------------------------------- steps


@dataclass(frozen=True)
class Step:
    """Fields shared by every step: which layers it touches and per-layer values."""

    type: ClassVar[str]
    override_keys: ClassVar[tuple[str, ...]]

    layers: tuple[str, ...] | None = None  # names or globs, at most MAX_PATTERNS; None: every eligible layer
    overrides: Mapping[str, Mapping[str, Any]] | None = None  # glob -> {key: value}, later globs win
    _written: Mapping[str, Any] | None = field(default=None, compare=False, repr=False)  # the JSON it was read from

    def __post_init__(self) -> None:
        object.__setattr__(self, "layers", self._checked_layers(self.layers))
        for name, spec in self.specs().items():
            object.__setattr__(self, name, spec.check(name, getattr(self, name)))
        self.validate()
        object.__setattr__(self, "overrides", self._checked_overrides(self.overrides))

    # ---- the vocabulary

    @classmethod
    def specs(cls) -> dict[str, FieldSpec]:
        """Every setting of this step type and its spec, in declaration order."""
        return {f.name: f.metadata["spec"] for f in dataclasses.fields(cls) if "spec" in f.metadata}

    @classmethod
    def spec(cls, name: str) -> FieldSpec:
        """The spec of one setting: `Prune.spec("amount").high == 0.99`."""
        specs = cls.specs()
        if name not in specs:
            raise ValueError(f"{cls.type} has no setting {short_repr(name)}; settings: {', '.join(specs)}")
        return specs[name]

    def describe(self) -> str:
        """A short label for tables, legends and headers."""
        values = ", ".join(f"{k} {v}" for k, v in self.settings().items() if v is not None)
        return f"{self.type} ({values}){self._where()}"

    def _where(self) -> str:
        """' on fc1, fc2 (+1 override)' when a step targets some layers or overrides values."""
        text = f" on {', '.join(self.layers)}" if self.layers else ""
        if self.overrides:
            count = len(self.overrides)
            text += f" (+{count} override{'s' if count > 1 else ''})"
        return text

    # ---- validation

    def validate(self) -> None:
        """Rules between fields (each field's own range is checked from its spec before this runs)."""

    def _checked_layers(self, layers: Any) -> tuple[str, ...] | None:
        if layers is None:
            return None
        if isinstance(layers, str):
            layers = (layers,)
        if not isinstance(layers, (list, tuple)):
            raise ValueError(f"layers={short_repr(layers)} must be a list of layer names or globs")
        if not layers or not all(isinstance(name, str) and name for name in layers):
            raise ValueError(f"layers={short_repr(layers)} must be a non-empty list of layer names or globs")
        if len(layers) > MAX_PATTERNS:
            raise ValueError(f"layers has {len(layers)} entries; at most {MAX_PATTERNS} are allowed")
        for name in layers:
            _check_pattern(name)
        return tuple(sorted(set(layers)))  # which layers a list selects does not depend on its order

    def _checked_overrides(self, overrides: Any) -> FrozenMapping | None:
        if overrides is None or (isinstance(overrides, Mapping) and not overrides):
            return None
        if not isinstance(overrides, Mapping):
            raise ValueError(f"overrides={short_repr(overrides)} must map layer names or globs to settings")
        if len(overrides) > MAX_PATTERNS:
            raise ValueError(f"overrides has {len(overrides)} entries; at most {MAX_PATTERNS} are allowed")
        checked, seen = [], {}  # seen: settings already validated (a per-layer recipe repeats a few values)
        for pattern, values in overrides.items():
            if not isinstance(pattern, str) or not pattern:
                raise ValueError(f"override {short_repr(pattern)} must be a layer name or glob")
            _check_pattern(pattern)
            if not isinstance(values, Mapping):
                raise ValueError(f"override {short_repr(pattern)} must be an object of settings, got {short_repr(values)}")
            unknown = [key for key in values if key not in self.override_keys]
            if unknown:
                raise ValueError(
                    f"override {short_repr(pattern)} has unknown key(s) {_names(unknown)}; "
                    f"allowed for {self.type}: {', '.join(self.override_keys)}"
                )
            key = tuple((k, type(v), v) for k, v in values.items()) if all(map(_scalar, values.values())) else None
            if key is None or key not in seen:
                canonical = FrozenMapping(sorted(self._override_values(dict(values)).items()))
                if key is None:
                    checked.append((pattern, canonical))
                    continue
                seen[key] = canonical
            checked.append((pattern, seen[key]))
        return FrozenMapping(checked)

    def _override_values(self, values: dict[str, Any]) -> dict[str, Any]:
        """An override is valid when the step with those values would be; returns them canonical."""
        step = dataclasses.replace(self, layers=None, overrides=None, _written=None, **values)
        return {key: getattr(step, key) for key in values}

    # ---- data

    def settings(self) -> dict[str, Any]:
        """The technique's own arguments (no type, layers, overrides)."""
        return {name: getattr(self, name) for name in self.specs()}

    def canonical_dict(self) -> dict[str, Any]:
        """Every setting that applies, in declaration order, values canonical: the step's identity as data."""
        out: dict[str, Any] = {"type": self.type}
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if f.name != "_written" and value is not None:
                out[f.name] = _plain(value)
        return out

    def to_dict(self) -> dict[str, Any]:
        """The step as JSON data: as written when it was read from JSON and not changed since, else canonical.

        A step read from JSON and then edited writes the keys it was given plus those that differ from their default.
        """
        if self._written is None:
            return self.canonical_dict()
        if type(self).from_dict(self._written) == self:
            return copy.deepcopy(dict(self._written))
        specs = self.specs()
        return {key: value for key, value in self.canonical_dict().items()
                if key in self._written or key not in specs or value != specs[key].default}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "Step":
        if not isinstance(data, Mapping):
            raise ValueError(f"a step must be an object with a 'type', got {short_repr(data)}")
        _check_nesting(data, MAX_DEPTH - 2)
        kind = data.get("type")
        step_cls = STEP_TYPES.get(kind) if isinstance(kind, str) else None
        if step_cls is None:
            raise ValueError(f"step type {short_repr(kind)} is not allowed; choose one of {', '.join(map(repr, STEP_TYPES))}")
        names = [f.name for f in dataclasses.fields(step_cls) if f.name != "_written"]
        unknown = [key for key in data if key not in names and key != "type"]
        if unknown:
            raise ValueError(f"{kind} step has unknown key(s) {_names(unknown)}; allowed: {', '.join(sorted(names))}")
        values = {k: v for k, v in data.items() if k != "type"}
        return step_cls(**values, _written=copy.deepcopy(dict(data)))


@dataclass(frozen=True)
class Prune(Step):
    """Zero the least important weights (unstructured) or remove whole channels (structured).

    schedule="agp" prunes gradually, fine-tuning in between (Zhu & Gupta; see `schedules.py`); it needs
    training data. Its keys (AGP_KEYS) are None for one-shot pruning and take their spec defaults for AGP.
    """

    type: ClassVar[str] = "prune"
    override_keys: ClassVar[tuple[str, ...]] = ("amount",)
    AGP_KEYS: ClassVar[tuple[str, ...]] = ("steps", "epochs_per_step", "initial_amount", "lr", "batch_size", "seed")

    amount: float = setting(0.5, "Fraction of the weights (or, structured, of the output channels) removed.",
                            low=0.0, high=MAX_AMOUNT)  # 0 to 0.99: an all-zero layer outputs a constant
    criterion: str = setting("magnitude", "How a weight's importance is scored; the lowest scores are pruned.",
                             choices=tuple(CRITERIA), labels=(("magnitude", "magnitude |w|"),
                                                              ("taylor", "Taylor (w·∂L/∂w)²"),
                                                              ("activation", "activation |w|·‖x‖ (Wanda)")))
    scope: str = setting("layer", "Per layer: every layer loses the amount. Global: one ranking over all layers.",
                         choices=SCOPES, labels=(("layer", "per layer"), ("global", "global")))
    structured: bool = setting(False, "Remove whole output neurons / channels: the layers really shrink.")
    norm: int = setting(2, "A channel's score is the p-norm of its weights' scores (structured only).",
                        choices=NORMS, labels=((1, "L1"), (2, "L2")))
    schedule: str | None = setting(None, "Gradual (AGP, Zhu & Gupta): prune in n steps along a cubic schedule, "
                                         "fine-tuning after each (needs training data; unstructured only).",
                                   optional=True, choices=("agp",), labels=((None, "one shot"), ("agp", "gradual (AGP)")))
    steps: int | None = setting(5, "AGP: pruning steps n.", optional=True, low=1, high=100)  # 1 to 100
    epochs_per_step: int | None = setting(1, "AGP: fine-tuning epochs after each pruning step "
                                          "(steps × epochs_per_step ≤ 200).",
                                          optional=True, low=1, high=50)  # 1 to 50; steps × this ≤ MAX_AGP_EPOCHS
    initial_amount: float | None = setting(0.0, "AGP: sparsity the schedule starts from (0 to amount).",
                                           optional=True, low=0.0, high=MAX_AMOUNT)
    lr: float | None = setting(1e-3, "AGP: Adam step size of the fine-tuning.", optional=True,
                               low=0.0, high=1.0, low_open=True)  # above 0 up to 1
    batch_size: int | None = setting(64, "AGP: fine-tuning minibatch size.", optional=True, low=1, high=SIZE_MAX)
    seed: int | None = setting(0, "AGP: seeds the fine-tuning batch order (and the random criterion).",
                               optional=True, low=0, high=SEED_MAX)

    def validate(self) -> None:
        if self.norm != 2 and not self.structured:
            raise ValueError(f"norm={self.norm!r} applies to structured pruning only; set structured=true or drop norm")
        if self.schedule is None:
            for key in self.AGP_KEYS:
                if getattr(self, key) is not None:
                    raise ValueError(f"{key}={short_repr(getattr(self, key))} applies to schedule='agp' only; "
                                     "set schedule='agp' or drop it")
            return
        if self.structured:
            raise ValueError("schedule='agp' applies to unstructured pruning only; drop structured=true or the schedule")
        for key, value in self.agp_settings().items():  # the keys left out take their defaults
            object.__setattr__(self, key, value)
        if self.initial_amount > self.amount:
            raise ValueError(f"initial_amount={self.initial_amount!r} is out of range; allowed: 0.0 to amount={self.amount!r}")
        if self.steps * self.epochs_per_step > MAX_AGP_EPOCHS:
            raise ValueError(f"steps={self.steps} × epochs_per_step={self.epochs_per_step} = "
                             f"{self.steps * self.epochs_per_step} epochs; at most {MAX_AGP_EPOCHS} are allowed")

    def agp_settings(self) -> dict[str, Any]:
        """The schedule's keys, defaults filled in (for `schedules.gradual_prune` and the editor's widgets)."""
        return {key: self.spec(key).default if getattr(self, key) is None else getattr(self, key) for key in self.AGP_KEYS}

    def describe(self) -> str:
        """'prune 90% magnitude, global'; then ', structured L2' or ', gradual (AGP 8 steps × 3 epochs, lr 0.003)'."""
        text = f"prune {_percent(self.amount)} {self.criterion}, {self.spec('scope').label(self.scope)}"
        if self.structured:
            text += f", structured L{self.norm}"
        if self.schedule == "agp":
            epochs = f"{self.epochs_per_step} epoch{'s' if self.epochs_per_step > 1 else ''}"
            text += f", gradual (AGP {self.steps} steps × {epochs}, lr {self.lr:g})"
        return text + self._where()


@dataclass(frozen=True)
class Quantize(Step):
    """Store weights at `bits` bits: uniform (affine or symmetric) or k-means weight sharing."""

    type: ClassVar[str] = "quantize"
    override_keys: ClassVar[tuple[str, ...]] = ("bits", "scheme", "granularity", "method")

    bits: int = setting(8, "Each weight becomes one of 2^bits values.", low=1, high=8)  # 1 to 8
    scheme: str = setting("affine", "Grid over [min, max] with a zero point, or symmetric about 0 (uniform only).",
                          choices=SCHEMES, labels=(("affine", "affine (min–max)"), ("symmetric", "symmetric (±max)")))
    granularity: str = setting("tensor", "One scale per layer, or one per output channel (uniform only).",
                               choices=GRANULARITIES, labels=(("tensor", "per tensor"), ("channel", "per channel")))
    method: str = setting("uniform", "An evenly spaced grid, or 2^bits shared values found by k-means (Deep Compression).",
                          choices=METHODS, labels=(("uniform", "uniform grid"), ("kmeans", "k-means")))
    activations: bool = setting(False, "Also quantize each layer's input to 8 bits, calibrated on held-out data.")

    def describe(self) -> str:
        """'quantize 4-bit symmetric, per channel' or 'quantize 5-bit k-means, 8-bit activations'."""
        grid = "k-means" if self.method == "kmeans" else f"{self.scheme}, per {self.granularity}"
        extra = ", 8-bit activations" if self.activations else ""
        return f"quantize {self.bits}-bit {grid}{extra}{self._where()}"


@dataclass(frozen=True)
class LowRank(Step):
    """Factorize layers by truncated SVD, choosing the rank by count, ratio or retained energy (exactly one)."""

    type: ClassVar[str] = "low_rank"
    override_keys: ClassVar[tuple[str, ...]] = RULE_KEYS

    rank: int | None = setting(8, "Kept singular values r in every layer (at most min(m, n) of each).",
                               optional=True, low=1, high=SIZE_MAX)  # 1 to 65536
    rank_ratio: float | None = setting(0.5, "r = round(ratio · min(m, n)) in every layer.",
                                       optional=True, low=0.0, high=1.0, low_open=True)  # above 0 up to 1
    energy: float | None = setting(0.9, "The smallest r keeping this share of Σσ² in each layer.",
                                   optional=True, low=0.0, high=1.0, low_open=True)  # above 0 up to 1

    def validate(self) -> None:
        chosen = [name for name in RULE_KEYS if getattr(self, name) is not None]
        if len(chosen) != 1:
            raise ValueError(f"low_rank needs exactly one of rank, rank_ratio, energy; got {', '.join(chosen) or 'none'}")

    def rule(self) -> str:
        """Which of rank, rank_ratio, energy this step sets."""
        return next(name for name in RULE_KEYS if getattr(self, name) is not None)

    def _override_values(self, values: dict[str, Any]) -> dict[str, Any]:
        """A per-layer value replaces the step's rank selector."""
        step = LowRank(**values)
        return {key: getattr(step, key) for key in values}

    def describe(self) -> str:
        """'low-rank rank 4', 'low-rank rank ratio 0.25' or 'low-rank 90% energy'."""
        if self.energy is not None:
            how = f"{_percent(self.energy)} energy"
        elif self.rank_ratio is not None:
            how = f"rank ratio {self.rank_ratio:g}"
        else:
            how = f"rank {self.rank}"
        return f"low-rank {how}{self._where()}"


@dataclass(frozen=True)
class Finetune(Step):
    """Train the compressed model on the training split, compression held (masks, QAT; see `training.py`).

    Minibatch Adam on the cross-entropy; the same settings and seed give bitwise the same weights.
    `layers` (names/globs) trains only those layers; the other parameters stay frozen.
    """

    type: ClassVar[str] = "finetune"
    override_keys: ClassVar[tuple[str, ...]] = ()

    epochs: int = setting(3, "Passes over the training split.", low=1, high=200)  # 1 to 200
    lr: float = setting(1e-3, "Adam step size.", low=0.0, high=1.0, low_open=True)  # above 0 up to 1
    batch_size: int = setting(64, "Examples per step.", low=1, high=SIZE_MAX)  # 1 to 65536
    seed: int = setting(0, "Seeds the batch order.", low=0, high=SEED_MAX)  # 0 to 2^32 − 1

    def _checked_overrides(self, overrides: Any) -> None:
        if overrides is not None:
            raise ValueError(f"overrides={short_repr(overrides)}: finetune has no per-layer settings; "
                             "use layers to choose what trains")

    def describe(self) -> str:
        """'fine-tune 3 epochs, lr 0.001, batch 64' (and the seed when it is not 0)."""
        seed = f", seed {self.seed}" if self.seed else ""
        return (f"fine-tune {self.epochs} epoch{'s' if self.epochs > 1 else ''}, lr {self.lr:g}, "
                f"batch {self.batch_size}{seed}{self._where()}")


STEP_TYPES: dict[str, type[Step]] = {cls.type: cls for cls in (Prune, Quantize, LowRank, Finetune)}


# ---------------------------------------------------------------- the recipe


@dataclass(frozen=True)
class Recipe:
    """An ordered pipeline of at most MAX_STEPS steps; equal recipes hash equal (their steps are canonical)."""

    steps: tuple[Step, ...] = ()

    def __post_init__(self) -> None:
        if not isinstance(self.steps, (list, tuple)):
            raise ValueError(f"recipe steps must be a list of steps, got {short_repr(self.steps)}")
        steps = tuple(self.steps)
        if len(steps) > MAX_STEPS:
            raise ValueError(f"recipe has {len(steps)} steps; at most {MAX_STEPS} are allowed")
        for step in steps:
            if not isinstance(step, Step):
                raise ValueError(f"recipe steps must be Prune, Quantize, LowRank or Finetune steps, got {short_repr(step)}")
        object.__setattr__(self, "steps", steps)

    def describe(self) -> str:
        """The recipe in a few words: 'prune 80% magnitude, per layer → quantize 4-bit affine, per channel'."""
        return " → ".join(step.describe() for step in self.steps) or "baseline (no compression)"

    def canonical_dict(self) -> dict[str, Any]:
        return {"steps": [step.canonical_dict() for step in self.steps]}

    def canonical_json(self) -> str:
        """One line of JSON, the same for every equal recipe: the key of caches and trade-off points."""
        return json.dumps(self.canonical_dict())

    def to_dict(self) -> dict[str, Any]:
        return {"steps": [step.to_dict() for step in self.steps]}

    @classmethod
    def from_dict(cls, data: Any) -> "Recipe":
        if not isinstance(data, Mapping) or set(data) != {"steps"} or not isinstance(data["steps"], list):
            raise ValueError('a recipe must be an object with one key, "steps", holding a list of steps')
        if len(data["steps"]) > MAX_STEPS:
            raise ValueError(f"recipe has {len(data['steps'])} steps; at most {MAX_STEPS} are allowed")
        _check_nesting(data)
        return cls(tuple(Step.from_dict(step) for step in data["steps"]))

    def to_json(self, indent: int | None = 2) -> str:
        return json.dumps(self.to_dict(), indent=indent)

    @classmethod
    def from_json(cls, text: str) -> "Recipe":
        if not isinstance(text, str):
            raise ValueError(f"a recipe must be JSON text, got {type(text).__name__}")
        if len(text) > MAX_RECIPE_CHARS:
            raise ValueError(f"recipe is {len(text):,} characters long; at most {MAX_RECIPE_CHARS:,} are allowed")
        try:
            data = json.loads(text)
        except ValueError as err:  # JSONDecodeError, or an integer of more than 4,300 digits
            raise ValueError(f"recipe is not valid JSON: {short_repr(str(err), 200)}") from None
        except RecursionError:
            raise ValueError(f"recipe nests more than {MAX_DEPTH} levels deep; a recipe needs at most 5") from None
        return cls.from_dict(data)

    def save(self, path: str | Path) -> None:
        Path(path).write_text(self.to_json() + "\n")

    @classmethod
    def load(cls, path: str | Path) -> "Recipe":
        path = Path(path)
        if not path.is_file():
            raise ValueError(f"recipe file {short_repr(str(path))} does not exist")
        if path.stat().st_size > 4 * MAX_RECIPE_CHARS:  # UTF-8 takes at most 4 bytes a character
            raise ValueError(f"recipe file {short_repr(str(path))} is {path.stat().st_size:,} bytes; "
                             f"a recipe has at most {MAX_RECIPE_CHARS:,} characters")
        try:
            text = path.read_text(encoding="utf-8")
        except UnicodeDecodeError:
            raise ValueError(f"recipe file {short_repr(str(path))} is not UTF-8 text; a recipe is JSON") from None
        return cls.from_json(text)

    def __len__(self) -> int:
        return len(self.steps)
