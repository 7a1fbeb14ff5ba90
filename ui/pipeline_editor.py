"""The Pipeline page's recipe editor: one small form per step type, presets, and the recipe held in session state.

Data-driven: a step type is one `StepKind` (a label, the step "Add" inserts, a form that draws the step's
widgets and returns the edited step, a one-line description). Adding a step type to the editor is one
form function and one entry in `STEP_KINDS`; nothing else on the page changes.

The recipe lives in `st.session_state[STEPS]` as a list of {"id": int, "step": Step}. The id is fixed for a
step's life and prefixes its widget keys, so a step keeps its widgets (and their values) when it moves.
"""
from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass

import streamlit as st

from compressor import Finetune, LowRank, Prune, Quantize, Recipe
from compressor.pruning import CRITERIA, MAX_AMOUNT, SCOPES
from compressor.quantization import GRANULARITIES, METHODS, SCHEMES
from compressor.recipe import AGP_DEFAULTS, Step

PREFIX = "pipeline"  # every key of the Pipeline page starts with it
STEPS = f"{PREFIX}_steps"  # the recipe being edited: list of {"id": int, "step": Step}
NEXT_ID = f"{PREFIX}_next_id"
LOAD_ERROR = f"{PREFIX}_load_error"  # the core's message for a recipe file or text that did not load


# ---------------------------------------------------------------- one form per step type


def _index(options: tuple, value: object) -> int:
    return options.index(value) if value in options else 0


LR_CHOICES = (1e-4, 3e-4, 1e-3, 3e-3, 1e-2)  # fine-tuning step sizes offered (a loaded recipe's own value is added)
BATCH_SIZES = (16, 32, 64, 128, 256)
SCHEDULES = {"one-shot": "one shot", "agp": "gradual (AGP)"}


def _with(options: tuple, value: object) -> tuple:
    """The options, plus a loaded recipe's value if it is not one of them (so it shows, and stays, as loaded)."""
    return options if value in options else tuple(sorted((*options, value)))


def lr_select(container, key: str, value: float, help: str = "Adam step size.") -> float:
    return container.select_slider("Learning rate", _with(LR_CHOICES, value), value=value, key=key,
                                   format_func=lambda v: f"{v:g}", help=help)


def prune_form(step: Prune, key: str) -> Prune:
    """Amount, criterion, scope, structured; the schedule (one shot, or gradual AGP with its steps and training)."""
    cols = st.columns([3, 2, 2, 2])
    amount = cols[0].slider("Amount removed", 0.0, MAX_AMOUNT, float(step.amount), 0.01, format="%.2f",
                            key=f"{key}_amount", help="Fraction of the weights (or channels, when structured) set to zero.")
    criteria = tuple(CRITERIA)
    criterion = cols[1].selectbox("Criterion", criteria, _index(criteria, step.criterion), key=f"{key}_criterion")
    scope = cols[2].radio("Scope", SCOPES, _index(SCOPES, step.scope), key=f"{key}_scope", horizontal=True,
                          help="layer: every layer loses the amount; global: one threshold across layers.")
    structured = cols[3].toggle("Structured", step.structured, key=f"{key}_structured",
                                help="Remove whole neurons / channels: the layers really shrink.")
    cols = st.columns([3, 2, 2, 2])
    schedules = tuple(SCHEDULES)
    schedule = cols[0].radio(
        "Schedule", schedules, _index(schedules, step.schedule or "one-shot"), format_func=SCHEDULES.get,
        key=f"{key}_schedule", horizontal=True, disabled=structured,
        help="Gradual (AGP, Zhu & Gupta): prune to s_k = s_f(1 − (1 − k/n)³) at step k = 1…n, fine-tuning after each "
             "step (needs training data; unstructured only).",
    )
    agp = dict.fromkeys(AGP_DEFAULTS)  # one shot: every schedule key left out
    if schedule == "agp" and not structured:
        shown = step.agp_settings() if step.schedule == "agp" else {**AGP_DEFAULTS, "lr": 3e-3}
        shown["steps"] = cols[1].number_input("Pruning steps n", 1, 50, int(shown["steps"]), key=f"{key}_agp_steps")
        shown["epochs_per_step"] = cols[2].number_input("Epochs per step", 1, 20, int(shown["epochs_per_step"]),
                                                        key=f"{key}_agp_epochs")
        shown["lr"] = lr_select(cols[3], f"{key}_agp_lr", float(shown["lr"]), "Adam step size of the fine-tuning.")
        # a key the step left out stays out while it holds the default, so a loaded recipe saves back as written
        agp = {name: None if getattr(step, name) is None and value == AGP_DEFAULTS[name] else value
               for name, value in shown.items()}
    return dataclasses.replace(step, amount=amount, criterion=criterion, scope=scope, structured=structured,
                               norm=step.norm if structured else 2,
                               schedule="agp" if schedule == "agp" and not structured else None, **agp)


def finetune_form(step: Finetune, key: str) -> Finetune:
    """Epochs, learning rate, batch size (seed and layers kept as loaded)."""
    cols = st.columns([3, 3, 2])
    epochs = cols[0].slider("Epochs", 1, 30, int(step.epochs), key=f"{key}_epochs", help="Passes over the training split.")
    lr = lr_select(cols[1], f"{key}_lr", float(step.lr))
    batch_size = cols[2].selectbox("Batch size", _with(BATCH_SIZES, step.batch_size),
                                   _with(BATCH_SIZES, step.batch_size).index(step.batch_size), key=f"{key}_batch_size")
    st.caption("Trains on the training split with the compression so far held: pruned weights stay zero, uniform "
               "layers train by QAT (straight-through estimator), k-means layers train their shared values.")
    return dataclasses.replace(step, epochs=epochs, lr=lr, batch_size=batch_size)


def quantize_form(step: Quantize, key: str) -> Quantize:
    """Bits, uniform or k-means, and for uniform grids the scheme and granularity."""
    cols = st.columns([3, 2, 2, 2, 3])
    bits = cols[0].slider("Bits", 1, 8, int(step.bits), key=f"{key}_bits")
    method = cols[1].radio("Method", METHODS, _index(METHODS, step.method), key=f"{key}_method", horizontal=True,
                           help="uniform: an evenly spaced grid; kmeans: 2^b shared values (Deep Compression).")
    uniform = method == "uniform"
    scheme = cols[2].selectbox("Scheme", SCHEMES, _index(SCHEMES, step.scheme), key=f"{key}_scheme",
                               disabled=not uniform, help="Uniform grids only.")
    granularity = cols[3].selectbox("Granularity", GRANULARITIES, _index(GRANULARITIES, step.granularity),
                                    key=f"{key}_granularity", disabled=not uniform, help="Uniform grids only.")
    activations = cols[4].toggle("8-bit activations", step.activations, key=f"{key}_activations",
                                 help="Also quantize each layer's input, calibrated on data.")
    return dataclasses.replace(step, bits=bits, method=method, scheme=scheme, granularity=granularity,
                               activations=activations)


RANK_RULES = {"rank_ratio": "rank ratio", "energy": "energy kept", "rank": "fixed rank"}


def low_rank_form(step: LowRank, key: str) -> LowRank:
    """How the rank is chosen (ratio of min(m, n), energy kept, or a fixed rank) and its value."""
    cols = st.columns([2, 3])
    rules = tuple(RANK_RULES)
    given = next(rule for rule in rules if getattr(step, rule) is not None)
    rule = cols[0].radio("Choose the rank by", rules, rules.index(given), format_func=RANK_RULES.get,
                         key=f"{key}_rule", horizontal=True)
    current = getattr(step, rule)
    if rule == "rank_ratio":
        value = cols[1].slider("Rank ratio r / min(m, n)", 0.05, 1.0, float(current or 0.5), 0.05, key=f"{key}_rank_ratio")
    elif rule == "energy":
        value = cols[1].slider("Energy kept Σᵢ≤ᵣσᵢ² / Σσᵢ²", 0.5, 1.0, float(current or 0.9), 0.01, key=f"{key}_energy")
    else:
        value = cols[1].number_input("Rank r (every layer)", 1, 4096, int(current or 8), key=f"{key}_rank")
    return dataclasses.replace(step, **{r: value if r == rule else None for r in rules})


# ---------------------------------------------------------------- one line per step


def _where(step: Step) -> str:
    parts = []
    if step.layers:
        parts.append(f"on {', '.join(step.layers)}")
    if step.overrides:
        parts.append(f"{len(step.overrides)} override{'s' if len(step.overrides) > 1 else ''}")
    return f" ({'; '.join(parts)})" if parts else ""


def describe_prune(step: Prune) -> str:
    what = "channels" if step.structured else "weights"
    gradual = ""
    if step.schedule == "agp":
        agp = step.agp_settings()
        gradual = f", gradual (AGP {agp['steps']} steps × {agp['epochs_per_step']} epochs, lr {agp['lr']:g})"
    return f"prune {step.amount:.0%} of {what}, {step.criterion}, {step.scope}{gradual}{_where(step)}"


def describe_quantize(step: Quantize) -> str:
    grid = "k-means" if step.method == "kmeans" else f"{step.scheme} per-{step.granularity}"
    extra = " + 8-bit activations" if step.activations else ""
    return f"quantize {step.bits}-bit {grid}{extra}{_where(step)}"


def describe_finetune(step: Finetune) -> str:
    seed = f", seed {step.seed}" if step.seed else ""
    return (f"fine-tune {step.epochs} epoch{'s' if step.epochs > 1 else ''}, lr {step.lr:g}, "
            f"batch {step.batch_size}{seed}{_where(step)}")


def describe_low_rank(step: LowRank) -> str:
    if step.rank_ratio is not None:
        how = f"rank ratio {step.rank_ratio:g}"
    elif step.energy is not None:
        how = f"energy {step.energy:.0%}"
    else:
        how = f"rank {step.rank}"
    return f"low-rank, {how}{_where(step)}"


# ---------------------------------------------------------------- the registry


@dataclass(frozen=True)
class StepKind:
    """Everything the editor needs to know about one step type."""

    label: str  # in the "add a step" menu and each step's header
    new: Callable[[], Step]  # the step "Add" inserts
    form: Callable[[Step, str], Step]  # draws the widgets (keys start with the given prefix), returns the edited step
    describe: Callable[[Step], str]  # one line, for stage labels and headers


STEP_KINDS: dict[str, StepKind] = {
    "prune": StepKind("✂️ Prune", lambda: Prune(amount=0.5), prune_form, describe_prune),
    "quantize": StepKind("🔢 Quantize", lambda: Quantize(bits=8), quantize_form, describe_quantize),
    "low_rank": StepKind("🧮 Low-rank", lambda: LowRank(rank_ratio=0.5), low_rank_form, describe_low_rank),
    "finetune": StepKind("🏋️ Fine-tune", lambda: Finetune(epochs=5, lr=3e-3), finetune_form, describe_finetune),
}


def _settings_text(step: Step) -> str:
    return ", ".join(f"{key}={value!r}" for key, value in step.to_dict().items() if key != "type")


def read_only_form(step: Step, key: str) -> Step:
    """A step type the core knows but the editor has no form for (yet): shown, kept, not edited."""
    st.caption(f"No editor for {step.type!r} steps yet; it runs as loaded: {_settings_text(step) or 'defaults'}.")
    return step


def kind_of(step: Step) -> StepKind:
    """The editor's entry for the step's type, or a read-only one for a type without a form."""
    return STEP_KINDS.get(step.type) or StepKind(
        f"⚙️ {step.type}", type(step), read_only_form, lambda s: f"{s.type} ({_settings_text(s) or 'defaults'})",
    )


def describe(step: Step) -> str:
    return kind_of(step).describe(step)


PRESETS: dict[str, Recipe] = {
    "Deep Compression: prune 90% → quantize 5-bit k-means": Recipe((
        Prune(amount=0.9, scope="global"), Quantize(bits=5, method="kmeans"),
    )),
    # benchmarks/bench_recovery.py's recipe (seed 0): ≥ 30× smaller exported file, ≤ 1 point drop on digits-mlp
    "Deep Compression with fine-tuning: prune 94% (AGP) → fine-tune → 4-bit k-means → fine-tune": Recipe((
        Prune(amount=0.94, scope="global", schedule="agp", steps=8, epochs_per_step=3, lr=3e-3, seed=0),
        Finetune(epochs=10, lr=3e-3, seed=0),
        Quantize(bits=4, method="kmeans"),
        Finetune(epochs=5, lr=1e-3, seed=0),
    )),
    "Prune 70% → 4-bit symmetric per-channel": Recipe((
        Prune(amount=0.7), Quantize(bits=4, scheme="symmetric", granularity="channel"),
    )),
    "Low-rank 50% → 8-bit": Recipe((LowRank(rank_ratio=0.5), Quantize(bits=8))),
    "Structured 50% → 8-bit": Recipe((Prune(amount=0.5, structured=True), Quantize(bits=8))),
    # for minilm-l6: heads and FFN width removed, fidelity distilled back with small steps, then int8-ready weights
    "Transformer: structured 25% (heads + FFN width) → fine-tune (lr 1e-4) → 8-bit per channel": Recipe((
        Prune(amount=0.25, structured=True), Finetune(epochs=2, lr=1e-4, batch_size=32, seed=0),
        Quantize(bits=8, scheme="symmetric", granularity="channel"),
    )),
    "Empty: the uncompressed model": Recipe(),
}


# ---------------------------------------------------------------- the recipe in session state


def entries() -> list[dict]:
    """The steps being edited, [{"id", "step"}]; a new session starts from the first preset."""
    if STEPS not in st.session_state:
        set_recipe(next(iter(PRESETS.values())))
    return st.session_state[STEPS]


def recipe() -> Recipe:
    return Recipe(tuple(entry["step"] for entry in entries()))


def _new_id() -> int:
    st.session_state[NEXT_ID] = st.session_state.get(NEXT_ID, -1) + 1
    return st.session_state[NEXT_ID]


def set_recipe(new: Recipe) -> None:
    """Replace every step (new ids, so their widgets start from the new values)."""
    st.session_state[STEPS] = [{"id": _new_id(), "step": step} for step in new.steps]


def add(kind: str) -> None:
    entries().append({"id": _new_id(), "step": STEP_KINDS[kind].new()})


def remove(step_id: int) -> None:
    st.session_state[STEPS] = [entry for entry in entries() if entry["id"] != step_id]


def move(step_id: int, offset: int) -> None:
    """Move a step up (offset −1) or down (+1); at either end nothing happens."""
    steps = entries()
    i = next(i for i, entry in enumerate(steps) if entry["id"] == step_id)
    j = i + offset
    if 0 <= j < len(steps):
        steps[i], steps[j] = steps[j], steps[i]


def load_json(text: str) -> None:
    """Replace the recipe by the one in `text`; a bad recipe leaves it unchanged and keeps the core's message."""
    st.session_state.pop(LOAD_ERROR, None)
    try:
        set_recipe(Recipe.from_json(text))
    except ValueError as err:
        st.session_state[LOAD_ERROR] = str(err)


def load_upload(widget_key: str) -> None:
    """on_change of the file uploader: load the file just chosen (removing the file changes nothing)."""
    upload = st.session_state.get(widget_key)
    if upload is None:
        return
    try:
        text = upload.getvalue().decode("utf-8")
    except UnicodeDecodeError:
        st.session_state[LOAD_ERROR] = f"{upload.name!r} is not a UTF-8 text file; a recipe is JSON text"
        return
    load_json(text)


def edit(entry: dict) -> None:
    """Draw the form of one step and keep what the user set."""
    entry["step"] = kind_of(entry["step"]).form(entry["step"], f"{PREFIX}_{entry['id']}")
