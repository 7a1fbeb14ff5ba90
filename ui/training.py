"""The one live-training path of the app: training shown live with a Stop button, a store of finished runs, the
recovery controls and panel of the technique pages. The Pruning, Quantization and Distillation pages all train
through `train_live`.

A run is a `Job`: a model name, a key (JSON saying what is trained: a recipe, or a student and how it learns),
the planned epochs and a function that trains with a progress callback and a stop check. The technique pages
hand over recipes that end with their one training step (a `Finetune`, or a `Prune` with schedule="agp"):
`recipe_job` takes the steps before it from the shared compressed-model cache and runs the training step through
the core (`compressor.training.finetune`, `compressor.schedules.gradual_prune`), so the model equals what
`compressor.compress` makes of the same recipe. The Distillation page's jobs train students
(ui/distillation_cache.py). Same key, same weights (training is seeded): a finished run is kept in a store
shared by every session (`finished_runs`), keyed on model name + key, so a run seen before is instant.

Stopping. Streamlit interrupts a running script when the user touches any widget: the next `st` call (reading
or writing st.session_state too) raises Streamlit's own control exception (a `BaseException`), and (fast reruns,
the default) the next run starts at once in another thread. During training the only `st` calls are in the
progress callback, once per epoch; it catches the interrupt, the trainer's `should_stop` then ends the run at the
next batch and returns the model trained so far. That model goes into the run's `Handover`, a plain object the
run put in st.session_state before training (so handing over needs no `st` call), whose event is then set and
the interrupt raised again. If the interrupt was the Stop button (its on_click runs first in the next run), the
next run waits for that event (at most an epoch) and shows the partial result, "stopped after N epochs"; any
other widget simply reruns with the new settings.
"""
from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field

import pandas as pd
import plotly.graph_objects as go
import streamlit as st
from streamlit.runtime.scriptrunner_utils.exceptions import ScriptControlException  # the app's only internal import
from torch import nn

import compressor as cz
from compressor.figures.training import recovery_comparison, training_curves
from compressor.recipe import Step
from compressor.schedules import agp_targets, gradual_prune
from compressor.embedding_training import finetune_embeddings
from compressor.training import History, Progress, StopCheck, finetune
from compressor.units import format_bytes
from ui import cache, points
from ui.display import user_errors
from ui.owned import forgettable, on_forget
from ui.session import MODEL, one_of, persistent

EPOCH_CHOICES = (1, 2, 3, 4, 5, 6, 8, 10, 15, 20)
DEFAULT_EPOCHS = 5
LR_CHOICES = (1e-4, 3e-4, 1e-3, 3e-3, 1e-2)
DEFAULT_LR = 3e-3  # recovers faster than the core's 1e-3 on the samples (benchmarks/bench_recovery.py uses it too)
EMBEDDING_LR_CHOICES = (1e-5, 3e-5, 1e-4, 3e-4)  # minilm-l6: larger steps undo the pretraining
EMBEDDING_LR = 1e-4  # FFN 50% pruned: 3 epochs lift mean cosine 0.73 → 0.86 (1e-4) or 0.86 (3e-4)
REDRAW_S = 0.1  # redraw the live chart at most this often (a tiny model trains many epochs in that time)
STOP_WAIT_S = 10.0  # after Stop, wait at most this long for the interrupted run to hand over its model
FINE_TUNED, GRADUAL, QAT = "fine-tuned", "gradual (AGP)", "QAT"  # run labels


def keys(prefix: str) -> dict[str, str]:
    """Widget and state keys of one page's training (e.g. prefix "prune": "prune_finetune", ...)."""
    return {name: f"{prefix}_{name}" for name in (
        "finetune", "ft_epochs", "ft_lr", "ft_schedule", "ft_stop", "ft_again", "ft_sweep",
        "ft_handover", "ft_stop_clicked", "ft_stopped",
    )}


# ---------------------------------------------------------------- controls


@dataclass(frozen=True)
class Recovery:
    """What the sidebar asks for: fine-tune after compressing, and on the pruning page maybe gradual pruning."""

    finetune: cz.Finetune
    gradual: bool = False  # prune by AGP instead: one pruning step per epoch, the same epochs in all

    def describe(self) -> str:
        return f"{self.finetune.epochs} epoch{'s' if self.finetune.epochs > 1 else ''}, lr {self.finetune.lr:g}"


def recovery_controls(prefix: str, technique: str, gradual: bool | None = None) -> Recovery | None:
    """The sidebar's fine-tune toggle with epochs and learning rate; None when it is off.

    gradual: None offers no schedule choice; True offers "gradual (AGP)"; False shows it disabled (structured).
    """
    k = keys(prefix)
    with st.sidebar:
        st.subheader("🏋️ Recovery")
        on = st.toggle(f"Fine-tune after {technique}", key=persistent(k["finetune"], False),
                       help="Train the compressed model for a few epochs on the training split, compression held: "
                            "pruned weights stay zero, quantized layers train through fake quantization (QAT).")
        if not on:
            return None
        heavy = cache.is_embedding(st.session_state[MODEL])  # a pretrained transformer: few epochs, small steps
        epochs = st.select_slider("Epochs", EPOCH_CHOICES, help="Passes over the training split.",
                                  key=persistent(k["ft_epochs"], 2 if heavy else DEFAULT_EPOCHS, one_of(EPOCH_CHOICES)))
        lr_choices = EMBEDDING_LR_CHOICES if heavy else LR_CHOICES
        lr = st.select_slider("Learning rate", lr_choices,
                              key=persistent(k["ft_lr"] + ("_embedding" if heavy else ""),
                                             EMBEDDING_LR if heavy else DEFAULT_LR, one_of(lr_choices)),
                              format_func=lambda v: f"{v:g}", help="Adam step size.")
        schedule = "one-shot"
        if gradual is not None:
            schedule = st.radio(
                "Pruning schedule", ("one-shot", "gradual"),
                key=persistent(k["ft_schedule"], "one-shot", one_of(("one-shot", "gradual"))), horizontal=True,
                format_func={"one-shot": "one shot, then fine-tune", "gradual": "gradual (AGP)"}.get,
                disabled=not gradual,
                help="Gradual (Zhu & Gupta's AGP): raise the sparsity in one step per epoch along a cubic schedule, "
                     "fine-tuning in between; the same epochs in all. Unstructured pruning only.",
            )
    return Recovery(cz.Finetune(epochs=epochs, lr=lr), gradual=bool(gradual) and schedule == "gradual")


def gradual_step(step: cz.Prune, recovery: Recovery) -> cz.Prune:
    """The pruning step made gradual: one AGP pruning event per epoch, so the epochs equal the fine-tune's."""
    tune = recovery.finetune
    return cz.Prune(amount=step.amount, criterion=step.criterion, scope=step.scope, layers=step.layers,
                    overrides=step.overrides, schedule="agp", steps=tune.epochs, epochs_per_step=1, lr=tune.lr,
                    batch_size=tune.batch_size, seed=tune.seed)


# ---------------------------------------------------------------- running one training step


def is_training(step: Step) -> bool:
    return isinstance(step, cz.Finetune) or (isinstance(step, cz.Prune) and step.schedule == "agp")


def split_recipe(recipe: cz.Recipe) -> tuple[cz.Recipe, Step]:
    """(the steps before, the training step): the recipe must end with its only training step."""
    if not recipe.steps or not is_training(recipe.steps[-1]) or any(map(is_training, recipe.steps[:-1])):
        raise ValueError("a live training run needs a recipe that ends with its only training step "
                         "(finetune, or prune with schedule='agp')")
    return cz.Recipe(recipe.steps[:-1]), recipe.steps[-1]


def train_step(model: nn.Module, step: Step, data: cz.DataSplits, **live) -> tuple[nn.Module, History]:
    """The core's trainer for `step`, with the arguments `compressor.compress` gives it, scored on data.test after
    every epoch; `live` holds progress and should_stop."""
    if isinstance(step, cz.Finetune) and data.kind == "embedding":  # distil the uncompressed embeddings
        return finetune_embeddings(model, data.train, **step.settings(), layers=step.layers, **live)
    if isinstance(step, cz.Finetune):
        return finetune(model, data.train, **step.settings(), layers=step.layers, test=data.test, **live)
    return gradual_prune(model, step.amount, data.train, **step.agp_settings(), calibration=data.calibration,
                         criterion=step.criterion, scope=step.scope, layers=step.layers, overrides=step.overrides,
                         test=data.test, **live)


def planned_epochs(step: Step) -> int:
    if isinstance(step, cz.Finetune):
        return step.epochs
    agp = step.agp_settings()
    return len(agp_targets(step.amount, agp["steps"], agp["initial_amount"])) * agp["epochs_per_step"]


Train = Callable[[Progress | None, StopCheck | None], tuple[nn.Module, History]]  # (progress, should_stop) -> ...


@dataclass(frozen=True)
class Job:
    """One training run the live path can run (its key names it in the store)."""

    name: str  # sample
    key: str  # JSON: what is trained, and how
    epochs: int  # planned
    train: Train = field(compare=False)
    recipe: dict | None = None  # a recipe run's recipe (its report names it; its report is cached by recipe)


def recipe_job(name: str, recipe_json: str) -> Job:
    """The job of a recipe that ends with its only training step: that step, on the cached model of the others."""
    before, step = split_recipe(cz.Recipe.from_json(recipe_json))

    def train(progress: Progress | None, should_stop: StopCheck | None) -> tuple[nn.Module, History]:
        start_model = cache.compressed(name, cache.recipe_key(before))
        return train_step(start_model, step, cache.sample(name).data, progress=progress, should_stop=should_stop)

    return Job(name, recipe_json, planned_epochs(step), train, cz.Recipe.from_json(recipe_json).to_dict())


@dataclass
class Trained:
    """One training run's outcome: the model, its per-epoch history, and whether it was stopped early."""

    name: str  # sample
    key: str  # the job's
    model: nn.Module  # shared when finished (read it, never change it)
    history: History
    seconds: float
    epochs: int  # planned
    stopped: bool = False
    recipe: dict | None = None
    report: cz.Report | None = field(default=None, repr=False)  # measured once (a stopped run's without latency)

    @property
    def epochs_done(self) -> float:
        return self.history[-1]["epoch"] if self.history else 0.0


class FinishedRuns:
    """Finished training runs shared by every session, keyed on (model name, job key); oldest dropped first."""

    def __init__(self, size: int = 64) -> None:
        self.size = size
        self._runs: OrderedDict[tuple[str, str], Trained] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, name: str, key: str) -> Trained | None:
        with self._lock:
            run = self._runs.get((name, key))
            if run is not None:
                self._runs.move_to_end((name, key))
            return run

    def put(self, run: Trained) -> None:
        with self._lock:
            self._runs[(run.name, run.key)] = run
            while len(self._runs) > self.size:
                self._runs.popitem(last=False)

    def clear(self) -> None:
        with self._lock:
            self._runs.clear()

    def forget(self, gone: Callable[[str], bool]) -> None:
        """Drop the runs of the models `gone` names (a departed session's own models, ui/owned.py)."""
        with self._lock:
            for key in [key for key in self._runs if gone(key[0])]:
                del self._runs[key]


@st.cache_resource(show_spinner=False)
def finished_runs() -> FinishedRuns:
    return FinishedRuns()


on_forget(lambda gone: finished_runs().forget(gone))


def run(job: Job, progress: Progress | None = None, should_stop: StopCheck | None = None) -> Trained:
    """Train the job; a run that finished (was not stopped) is stored."""
    start = time.perf_counter()
    model, history = job.train(progress, should_stop)
    outcome = Trained(job.name, job.key, model, history, time.perf_counter() - start, job.epochs, recipe=job.recipe)
    outcome.stopped = outcome.epochs_done < outcome.epochs - 1e-9
    if not outcome.stopped:
        finished_runs().put(outcome)
    return outcome


def run_quietly(name: str, recipe_json: str) -> Trained:
    """The finished run of a recipe: from the store, or trained now without display (sweeps, evicted runs)."""
    return finished_runs().get(name, recipe_json) or run(recipe_job(name, recipe_json))


@forgettable(st.cache_data(max_entries=512, show_spinner=False))
def report(name: str, recipe_json: str, timed: bool = True) -> cz.Report:
    """The measured report of a finished training run, like `ui.cache.report` (latency timed once, then reused)."""
    s = cache.sample(name)
    model = run_quietly(name, recipe_json).model
    return cz.evaluate(model, s.data, baseline=s.model, latency=cz.LatencyConfig() if timed else None,
                       reference=cache.reference(name),
                       recipe=cz.Recipe.from_json(recipe_json).to_dict())


def outcome_report(outcome: Trained) -> cz.Report:
    """A run's report against the sample's model, measured once and kept with the run: a finished recipe run's is
    the cached `report`; other finished runs are timed; a stopped run is not (its model is not kept)."""
    if outcome.report is None:
        if not outcome.stopped and outcome.recipe is not None:
            outcome.report = report(outcome.name, outcome.key)
        else:
            s = cache.sample(outcome.name)
            latency = None if outcome.stopped else cz.LatencyConfig()
            outcome.report = cz.evaluate(outcome.model, s.data, baseline=s.model, latency=latency,
                                         recipe=None if outcome.stopped else outcome.recipe,
                                         reference=cache.reference(outcome.name))
    return outcome.report


# ---------------------------------------------------------------- live display and stopping


@dataclass
class Handover:
    """How a training run that Streamlit interrupts hands its model to the next run (see the module docstring)."""

    done: threading.Event = field(default_factory=threading.Event)  # set when the run has ended, however it ended
    stopped: Trained | None = None  # the model trained so far, if the run was interrupted mid-training


def _stop_clicked(prefix: str) -> None:
    st.session_state[keys(prefix)["ft_stop_clicked"]] = True


def train_again(prefix: str) -> None:
    """Forget the stopped run, so the next run trains it again."""
    st.session_state.pop(keys(prefix)["ft_stopped"], None)


def has_stopped(prefix: str, name: str, jobs: Mapping[str, Job]) -> bool:
    """Whether one of these jobs was stopped by the user (and waits for "Train again")."""
    stopped = st.session_state.get(keys(prefix)["ft_stopped"])
    return (st.session_state.get(keys(prefix)["ft_stop_clicked"], False)
            or (stopped is not None and stopped.name == name and stopped.key in {job.key for job in jobs.values()}))


def _stopped_run(prefix: str, name: str, job_keys: set[str]) -> Trained | None:
    """The run the Stop button cut short, if it belongs to what is on screen now (else it is forgotten)."""
    k = keys(prefix)
    handover: Handover | None = st.session_state.get(k["ft_handover"])
    if st.session_state.pop(k["ft_stop_clicked"], False) and handover is not None:
        handover.done.wait(STOP_WAIT_S)  # the interrupted run may still be finishing its epoch, in its own thread
        if handover.stopped is not None:
            st.session_state[k["ft_stopped"]] = handover.stopped
    stopped = st.session_state.get(k["ft_stopped"])
    if stopped is not None and (stopped.name != name or stopped.key not in job_keys):
        del st.session_state[k["ft_stopped"]]
        return None
    return stopped


class _Live:
    """The progress callback of one run: moves the bar, redraws the chart, and turns an interrupt into a stop."""

    def __init__(self, bar, chart, draw: Callable[[History], go.Figure], message: str, epochs: int) -> None:
        self.bar, self.chart, self.draw, self.message, self.epochs = bar, chart, draw, message, epochs
        self.interrupt: BaseException | None = None
        self.last_draw = time.perf_counter()

    def __call__(self, fraction: float, history: History) -> None:
        if self.interrupt is not None:
            return
        try:
            epoch = f"epoch {history[-1]['epoch']:.0f} of {self.epochs}"
            self.bar.progress(min(fraction, 1.0), text=f"{self.message}: {epoch}")
            if time.perf_counter() - self.last_draw >= REDRAW_S:
                self.chart.plotly_chart(self.draw(history), width="stretch")
                self.last_draw = time.perf_counter()
        except ScriptControlException as interrupt:  # the user touched a widget: end the run at the next batch
            self.interrupt = interrupt

    def should_stop(self) -> bool:
        return self.interrupt is not None


def stored(jobs: Mapping[str, Job]) -> dict[str, Trained]:
    """The jobs' runs already in the store (finished by any session)."""
    found = {label: finished_runs().get(job.name, job.key) for label, job in jobs.items()}
    return {label: outcome for label, outcome in found.items() if outcome is not None}


def train_live(name: str, jobs: Mapping[str, Job], prefix: str, status, chart,
               figure: Callable[[dict[str, History]], go.Figure]) -> dict[str, Trained]:
    """Each labelled job's run: from the store, or trained now with a progress bar and a Stop button in `status`
    (an st.empty) and `figure(histories so far)` redrawn in `chart` (an st.empty) as epochs finish.

    After a Stop, the stopped run is returned (stopped=True, the model trained so far) and the runs after it are
    not trained (missing from the result) until `train_again`. The final chart is drawn with the key
    f"{prefix}_ft_curves".
    """
    k = keys(prefix)
    stopped = _stopped_run(prefix, name, {job.key for job in jobs.values()})
    outcomes: dict[str, Trained] = {}
    bar = None
    try:
        for i, (label, job) in enumerate(jobs.items()):
            done = finished_runs().get(name, job.key)
            if done is not None:
                outcomes[label] = done
                continue
            if stopped is not None:  # after a Stop nothing new trains until "Train again"
                if stopped.key == job.key:
                    outcomes[label] = stopped
                continue
            if bar is None:  # the first run that trains: the bar and the Stop button, once
                handover = st.session_state[k["ft_handover"]] = Handover()
                controls = status.container()
                bar = controls.progress(0.0, text="Training…")
                controls.button("⏹ Stop training", key=k["ft_stop"], on_click=_stop_clicked, args=(prefix,),
                                help="Stops at the end of the current epoch and keeps the model trained so far.")
            histories = {lab: out.history for lab, out in outcomes.items()}
            live = _Live(bar, chart, lambda h, label=label: figure({**histories, label: h}),
                         f"Training {label} ({i + 1} of {len(jobs)})", job.epochs)
            outcome = run(job, live, live.should_stop)
            if live.interrupt is not None:
                handover.stopped = outcome if outcome.stopped else None  # no st call here: it would raise again
                raise live.interrupt
            outcomes[label] = outcome
    finally:
        if bar is not None:
            handover.done.set()
            try:
                status.empty()
            except ScriptControlException:  # a second interrupt while one is already on its way: that one wins
                pass
    chart.plotly_chart(figure({label: out.history for label, out in outcomes.items()}), width="stretch",
                       key=f"{prefix}_ft_curves")
    return outcomes


def stopped_notice(prefix: str, outcomes: Mapping[str, Trained], runs: Iterable[str]) -> None:
    """After a Stop: which run stopped where, which did not start, and a button to train again."""
    for label, outcome in outcomes.items():
        if outcome.stopped:
            st.warning(f"**{label}**: training stopped after {outcome.epochs_done:.2g} of {outcome.epochs} epochs. "
                       "The numbers shown are that partial model's (not cached, not a Trade-offs point).", icon="⏹")
    skipped = [label for label in runs if label not in outcomes]
    if skipped:
        st.caption(f"Not trained after the stop: {', '.join(skipped)}.")
    if any(o.stopped for o in outcomes.values()) or skipped:
        st.button("▶ Train again", key=keys(prefix)["ft_again"], on_click=train_again, args=(prefix,))


def recovered_sweep(name: str, recipes: Mapping[object, cz.Recipe], message: str) -> dict[object, float]:
    """Accuracy of each recipe's finished run (x -> accuracy), trained without display where not stored yet,
    with st.progress while any trains."""
    slot = st.empty()
    out = {}
    try:
        for i, (x, recipe) in enumerate(recipes.items()):
            recipe_json = cache.recipe_key(recipe)
            if finished_runs().get(name, recipe_json) is None:
                slot.progress(i / len(recipes), text=f"{message} ({i + 1} of {len(recipes)})")
            out[x] = report(name, recipe_json, timed=False).accuracy
    finally:
        slot.empty()
    return out


# ---------------------------------------------------------------- the page section


@dataclass(frozen=True)
class Result:
    outcome: Trained
    report: cz.Report


def comparison_table(one_shot: cz.Report, results: Mapping[str, Result], reference: str = "one-shot") -> pd.DataFrame:
    """One row per variant: accuracy, its change against one-shot, file size, non-zero parameters, training time."""
    rows = [{"model": reference, "accuracy": f"{one_shot.accuracy:.1%}", f"vs {reference}": "",
             "file": format_bytes(one_shot.compressed_bytes), "non-zero params": f"{one_shot.nonzero_params:,}",
             "training": ""}]
    for label, result in results.items():
        r, outcome = result.report, result.outcome
        epochs = f"{outcome.epochs_done:.2g} of {outcome.epochs}" if outcome.stopped else f"{outcome.epochs}"
        rows.append({"model": label + (" (stopped)" if outcome.stopped else ""), "accuracy": f"{r.accuracy:.1%}",
                     f"vs {reference}": f"{100 * (r.accuracy - one_shot.accuracy):+.1f} pts",
                     "file": format_bytes(r.compressed_bytes), "non-zero params": f"{r.nonzero_params:,}",
                     "training": f"{epochs} epochs, {outcome.seconds:.2f} s"})
    return pd.DataFrame(rows)


def showing(label: str, result: Result, recovery: Recovery, compared: str) -> None:
    """The caption over the headline metrics when they are a recovered model's."""
    outcome = result.outcome
    how = (f"stopped after {outcome.epochs_done:.2g} of {outcome.epochs} epochs" if outcome.stopped
           else recovery.describe())
    st.caption(f"Showing the **{label}** model ({how}); {compared} is compared below.")


def recovery_section(name: str, prefix: str, page: str, runs: Mapping[str, cz.Recipe], one_shot: cz.Report,
                     baseline: cz.Report, epochs: int, point_label: Callable[[str], str],
                     reference: str = "one-shot") -> dict[str, Result]:
    """Train (live, stoppable) or recall each run, then compare it with the one-shot model (called `reference`):
    bars, table and curves.

    Every finished run becomes a Trade-offs point labelled point_label(run label). Returns {run label: Result}.
    """
    status = st.empty()  # the progress bar and the Stop button, while a run trains
    left, right = st.columns([2, 3])
    chart = right.empty()
    references = {"baseline": baseline.accuracy, reference: one_shot.accuracy}
    with user_errors():
        jobs = {label: recipe_job(name, cache.recipe_key(recipe)) for label, recipe in runs.items()}
        outcomes = train_live(name, jobs, prefix, status, chart, lambda h: training_curves(h, epochs, references))
        results = {label: Result(outcome, outcome_report(outcome)) for label, outcome in outcomes.items()}
    for label, result in results.items():
        if not result.outcome.stopped:
            points.record(name, result.outcome.key, result.report, page=page, label=point_label(label))
    accuracies = {reference: one_shot.accuracy, **{label: r.report.accuracy for label, r in results.items()}}
    left.plotly_chart(recovery_comparison(accuracies, reference, baseline.accuracy, height=300 + 20 * len(runs)),
                      width="stretch", key=f"{prefix}_ft_comparison")
    stopped_notice(prefix, outcomes, runs)
    st.dataframe(comparison_table(one_shot, results, reference), hide_index=True, width="stretch")
    return results
