"""The Pipeline page's recipe editor: one small form per step type, presets, and the recipe held in session state.

Data-driven: a step type is one `StepKind` (a label, the step "Add" inserts, a form that draws the step's
widgets and returns the edited step). Ranges, choices, labels and help come from the step classes' specs
(`Prune.spec("amount")`), a step's one-line description from `step.describe()`: the editor holds no vocabulary
of its own. Adding a step type to the editor is one form function and one entry in `STEP_KINDS`.

The recipe lives in `st.session_state[STEPS]` as a list of {"id": int, "step": Step}. The id is fixed for a
step's life and prefixes its widget keys, so a step keeps its widgets (and their values) when it moves.
"""
from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass

import streamlit as st

from compressor import Finetune, LowRank, Prune, Quantize, Recipe
from compressor.recipe import FieldSpec, Step
from ui import session

PREFIX = "pipeline"  # every key of the Pipeline page starts with it
STEPS = session.PIPELINE_STEPS  # the recipe being edited: list of {"id": int, "step": Step}
NEXT_ID = f"{PREFIX}_next_id"
LOAD_ERROR = f"{PREFIX}_load_error"  # the core's message for a recipe file or text that did not load


# ---------------------------------------------------------------- widgets from the steps' own specs


LR_CHOICES = (1e-4, 3e-4, 1e-3, 3e-3, 1e-2)  # fine-tuning step sizes offered (a loaded recipe's own value is added)
BATCH_SIZES = (16, 32, 64, 128, 256)
ONE_SHOT = "one-shot"  # the schedule radio's value for Prune.schedule=None


def _with(options: tuple, value: object) -> tuple:
    """The options, plus a loaded recipe's value if it is not one of them (so it shows, and stays, as loaded)."""
    return options if value in options else tuple(sorted((*options, value)))


def choice(container, spec: FieldSpec, label: str, value: object, key: str, widget: str = "radio", **kw) -> object:
    """A radio (or selectbox) over a setting's choices, labelled as the step class labels them."""
    options = spec.choices
    make = container.radio if widget == "radio" else container.selectbox
    extra = {"horizontal": True} if widget == "radio" else {}
    return make(label, options, options.index(value) if value in options else options.index(spec.default),
                format_func=spec.label, key=key, help=spec.help, **extra, **kw)


def whole_number(container, spec: FieldSpec, label: str, value: int, key: str) -> int:
    """A number input over a whole-number setting's full documented range."""
    return container.number_input(label, int(spec.low), int(spec.high), int(value), key=key, help=spec.help)


def fraction(container, spec: FieldSpec, label: str, value: float, key: str, step: float = 0.01) -> float:
    """A slider over a fraction's documented range; an open lower end (above 0) starts at one slider step,
    or lower when a loaded recipe holds a smaller value, so every valid value shows."""
    low = min(step, value) if spec.low_open else spec.low
    return container.slider(label, float(low), float(spec.high), float(value), step, format="%.2f", key=key,
                            help=spec.help)


AMOUNT_STOPS = tuple(round(0.05 * i, 2) for i in range(20)) + (Prune.spec("amount").high,)  # 0%, 5%, …, 95%, 99%


def amount_select(container, value: float, key: str) -> float:
    """The pruned fraction on stops of 5% (0% to 95%, then the top of the range, 99%), plus a loaded recipe's own
    value if it is between stops (kept as loaded). Each stop is a configuration measured the first time anyone
    picks it; a hundred stops of 1% made a room wait for a hundred of them."""
    spec = Prune.spec("amount")
    return container.select_slider("Amount removed", _with(AMOUNT_STOPS, value), value=value, key=key,
                                   format_func=lambda a: f"{a:.0%}" if round(a, 2) == a else f"{a:.1%}",
                                   help=f"{spec.help} Stops of 5% from 0% to 95%, and 99%.")


def lr_select(container, key: str, value: float, help: str = "Adam step size.") -> float:
    return container.select_slider("Learning rate", _with(LR_CHOICES, value), value=value, key=key,
                                   format_func=lambda v: f"{v:g}", help=help)


def bounded(widget: Callable, label: str, low: float, high: float, value: float, key: str, **kwargs) -> float:
    """`widget(label, low, high, value, key=key, ...)`; a loaded value outside [low, high] (valid in a recipe, beyond
    what the control offers) is shown read-only instead, with a note, and kept as it is."""
    if low <= value <= high:
        return widget(label, low, high, value, key=key, **kwargs)
    st.markdown(f"{label}: **{value:g}**")
    st.caption(f"Beyond this control's {low:g}–{high:g}: runs as loaded. Edit the recipe JSON below to change it.")
    return value


def prune_form(step: Prune, key: str) -> Prune:
    """Amount, criterion, scope, structured; the schedule (one shot, or gradual AGP with its steps and training)."""
    cols = st.columns([3, 2, 2, 2])
    amount = amount_select(cols[0], step.amount, f"{key}_amount")
    criterion = choice(cols[1], Prune.spec("criterion"), "Criterion", step.criterion, f"{key}_criterion", "selectbox")
    scope = choice(cols[2], Prune.spec("scope"), "Scope", step.scope, f"{key}_scope")
    structured = cols[3].toggle("Structured", step.structured, key=f"{key}_structured",
                                help=Prune.spec("structured").help)
    cols = st.columns([3, 2, 2, 2])
    spec = Prune.spec("schedule")
    schedule = cols[0].radio(
        "Schedule", (ONE_SHOT, "agp"), 1 if step.schedule == "agp" else 0,
        format_func=lambda v: spec.label(None if v == ONE_SHOT else v), key=f"{key}_schedule", horizontal=True,
        disabled=structured, help=spec.help,
    )
    agp = dict.fromkeys(Prune.AGP_KEYS)  # one shot: every schedule key left out
    if schedule == "agp" and not structured:
        agp = step.agp_settings() if step.schedule == "agp" else {**step.agp_settings(), "lr": 3e-3}
        agp["steps"] = whole_number(cols[1], Prune.spec("steps"), "Pruning steps n", agp["steps"], f"{key}_agp_steps")
        agp["epochs_per_step"] = whole_number(cols[2], Prune.spec("epochs_per_step"), "Epochs per step",
                                              agp["epochs_per_step"], f"{key}_agp_epochs")
        agp["lr"] = lr_select(cols[3], f"{key}_agp_lr", float(agp["lr"]), Prune.spec("lr").help)
    return dataclasses.replace(step, amount=amount, criterion=criterion, scope=scope, structured=structured,
                               norm=step.norm if structured else 2,
                               schedule="agp" if schedule == "agp" and not structured else None, **agp)


def finetune_form(step: Finetune, key: str) -> Finetune:
    """Epochs, learning rate, batch size (seed and layers kept as loaded)."""
    cols = st.columns([3, 3, 2])
    spec = Finetune.spec("epochs")
    epochs = cols[0].slider("Epochs", int(spec.low), int(spec.high), int(step.epochs), key=f"{key}_epochs", help=spec.help)
    lr = lr_select(cols[1], f"{key}_lr", float(step.lr))
    sizes = _with(BATCH_SIZES, step.batch_size)
    batch_size = cols[2].selectbox("Batch size", sizes, sizes.index(step.batch_size), key=f"{key}_batch_size",
                                   help=Finetune.spec("batch_size").help)
    st.caption("Trains on the training split with the compression so far held: pruned weights stay zero, uniform "
               "layers train by QAT (straight-through estimator), k-means layers train their shared values.")
    return dataclasses.replace(step, epochs=epochs, lr=lr, batch_size=batch_size)


def quantize_form(step: Quantize, key: str) -> Quantize:
    """Bits, uniform or k-means, and for uniform grids the scheme and granularity."""
    cols = st.columns([3, 3, 3, 3, 3])
    bits_spec = Quantize.spec("bits")
    bits = cols[0].slider("Bits", int(bits_spec.low), int(bits_spec.high), int(step.bits), key=f"{key}_bits",
                          help=bits_spec.help)
    method = choice(cols[1], Quantize.spec("method"), "Method", step.method, f"{key}_method")
    uniform = method == "uniform"
    scheme = choice(cols[2], Quantize.spec("scheme"), "Scheme", step.scheme, f"{key}_scheme", "selectbox",
                    disabled=not uniform)
    granularity = choice(cols[3], Quantize.spec("granularity"), "Granularity", step.granularity,
                         f"{key}_granularity", "selectbox", disabled=not uniform)
    activations = cols[4].toggle("8-bit activations", step.activations, key=f"{key}_activations",
                                 help=Quantize.spec("activations").help)
    return dataclasses.replace(step, bits=bits, method=method, scheme=scheme, granularity=granularity,
                               activations=activations)


RANK_RULES = {"rank_ratio": "rank ratio", "energy": "energy kept", "rank": "fixed rank"}


def low_rank_form(step: LowRank, key: str) -> LowRank:
    """How the rank is chosen (ratio of min(m, n), energy kept, or a fixed rank) and its value."""
    cols = st.columns([2, 3])
    rules = tuple(RANK_RULES)
    rule = cols[0].radio("Choose the rank by", rules, rules.index(step.rule()), format_func=RANK_RULES.get,
                         key=f"{key}_rule", horizontal=True)
    spec = LowRank.spec(rule)
    current = spec.default if getattr(step, rule) is None else getattr(step, rule)
    if rule == "rank_ratio":
        value = fraction(cols[1], spec, "Rank ratio r / min(m, n)", current, f"{key}_rank_ratio", 0.05)
    elif rule == "energy":
        value = fraction(cols[1], spec, "Energy kept Σᵢ≤ᵣσᵢ² / Σσᵢ²", current, f"{key}_energy")
    else:
        value = whole_number(cols[1], spec, "Rank r (every layer)", current, f"{key}_rank")
    return dataclasses.replace(step, **{r: value if r == rule else None for r in rules})


# ---------------------------------------------------------------- the registry


@dataclass(frozen=True)
class StepKind:
    """Everything the editor needs to know about one step type."""

    label: str  # in the "add a step" menu and each step's header
    new: Callable[[], Step]  # the step "Add" inserts
    form: Callable[[Step, str], Step]  # draws the widgets (keys start with the given prefix), returns the edited step


STEP_KINDS: dict[str, StepKind] = {
    "prune": StepKind("✂️ Prune", lambda: Prune(amount=0.5), prune_form),
    "quantize": StepKind("🔢 Quantize", lambda: Quantize(bits=8), quantize_form),
    "low_rank": StepKind("🧮 Low-rank", lambda: LowRank(rank_ratio=0.5), low_rank_form),
    "finetune": StepKind("🏋️ Fine-tune", lambda: Finetune(epochs=5, lr=3e-3), finetune_form),
}


def _settings_text(step: Step) -> str:
    return ", ".join(f"{key}={value!r}" for key, value in step.to_dict().items() if key != "type")


def read_only_form(step: Step, key: str) -> Step:
    """A step type the core knows but the editor has no form for (yet): shown, kept, not edited."""
    st.caption(f"No editor for {step.type!r} steps yet; it runs as loaded: {_settings_text(step) or 'defaults'}.")
    return step


def kind_of(step: Step) -> StepKind:
    """The editor's entry for the step's type, or a read-only one for a type without a form."""
    return STEP_KINDS.get(step.type) or StepKind(f"⚙️ {step.type}", type(step), read_only_form)


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
    """The steps being edited, [{"id", "step"}]; a new session starts from the first preset, a reloaded one from
    the recipe it had."""
    if STEPS not in st.session_state:
        restored = st.session_state.pop(session.PIPELINE_RESTORED, None)
        try:
            set_recipe(Recipe.from_json(restored) if restored is not None else next(iter(PRESETS.values())))
        except ValueError:  # a recipe the core no longer accepts: start from the preset
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
