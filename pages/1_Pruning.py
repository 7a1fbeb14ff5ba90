"""Pruning: zero the least important weights, or remove whole channels, and see what it costs and wins."""
import dataclasses

import streamlit as st

import compressor as cz
from compressor.figures.pruning import amount_sweep, layer_changes, layer_removal, mask_heatmap, weight_histogram
from compressor.figures.training import add_recovered, run_colour
from ui import cache, points, training
from ui.display import latency_caption, metric_row, notes, user_errors
from ui.layers import channel_prunable, weighted_layers, weight_of
from ui.session import model_picker
from ui.sweeps import run_sweep, sweep_wanted

AMOUNTS = [round(0.05 * i, 2) for i in range(20)] + [0.99]  # slider stops: 0%, 5%, ..., 95%, 99%
SWEEP_AMOUNTS = (0.0, 0.2, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95)  # per criterion, for the curve
CRITERIA = {"magnitude": "magnitude |w|", "taylor": "Taylor |w·∂L/∂w|", "random": "random"}
SCOPES = {"layer": "per layer", "global": "global"}

st.set_page_config(page_title="Pruning · Compression Lab", page_icon="✂️", layout="wide")
name = model_picker()


criteria = [c for c in CRITERIA if not (c == "taylor" and cache.is_embedding(name))]  # Taylor needs a class loss


def controls() -> cz.Prune:
    """The sidebar controls, read into one pruning step."""
    with st.sidebar:
        st.subheader("✂️ Pruning")
        amount = st.select_slider(
            "Amount pruned", AMOUNTS, value=0.5, key="prune_amount", format_func=lambda a: f"{a:.0%}",
            help="Fraction of the weights set to zero (unstructured) or of the output channels removed (structured).",
        )
        criterion = st.radio("Criterion", criteria, format_func=CRITERIA.get, key="prune_criterion", horizontal=True,
                             help="How a weight's importance is scored; the lowest scores are pruned.")
        scope = st.radio("Scope", list(SCOPES), format_func=SCOPES.get, key="prune_scope", horizontal=True,
                         help="Per layer: every layer loses the same fraction. Global: one ranking over all layers.")
        structured = st.toggle("Structured (remove whole channels)", key="prune_structured",
                               help="Remove output neurons / conv channels instead of single weights.")
        norm = 2
        if structured:
            norm = st.radio("Channel norm", [1, 2], index=1, format_func=lambda p: f"L{p}", key="prune_norm",
                            horizontal=True, help="A channel's score is the p-norm of its weights' scores.")
    return cz.Prune(amount=amount, criterion=criterion, scope=scope, structured=structured, norm=norm)


def build_recipe(step: cz.Prune, recovery: training.Recovery | None = None) -> cz.Recipe:
    """The recipe evaluated for a pruning step: one shot; or then fine-tuned; or gradual (AGP) with the same epochs."""
    if recovery is None:
        return cz.Recipe((step,))
    if recovery.gradual:
        return cz.Recipe((training.gradual_step(step, recovery),))
    return cz.Recipe((step, recovery.finetune))


def recovery_runs(step: cz.Prune, recovery: training.Recovery) -> dict[str, cz.Recipe]:
    """What the recovery section trains: fine-tuned, and with AGP chosen the gradual run too (one-shot vs both)."""
    runs = {training.FINE_TUNED: build_recipe(step, dataclasses.replace(recovery, gradual=False))}
    if recovery.gradual:
        runs[training.GRADUAL] = build_recipe(step, recovery)
    return runs


def describe(step: cz.Prune) -> str:
    kind = f"structured L{step.norm}" if step.structured else "unstructured"
    return f"prune {step.amount:.0%} {step.criterion}, {step.scope}, {kind}"


step = controls()
recovery = training.recovery_controls("prune", "pruning", gradual=not step.structured and not cache.is_embedding(name))
recipe_json = cache.recipe_key(build_recipe(step))
with user_errors():
    if step.structured and not channel_prunable(name):
        raise ValueError(f"{name} has no layer whose output channels can be removed; turn 'Structured' off.")
    report = cache.report(name, recipe_json)
    pruned = cache.compressed(name, recipe_json)
baseline = cache.report(name, cache.recipe_key(cz.Recipe()))
points.record(name, recipe_json, report, page="Pruning", label=describe(step))

st.title("✂️ Pruning")
headline = st.container()
recovered: dict[str, training.Result] = {}
if recovery is not None:
    st.subheader("🏋️ One-shot vs recovered")
    st.markdown(
        f"**Fine-tuning** trains the pruned model for {recovery.describe()} with its masks held, $w = m \\odot v$: "
        "pruned weights stay exactly zero and get no gradient. **Gradual** pruning (AGP, Zhu & Gupta) instead "
        "raises the sparsity one step per epoch, $s_t = s_f\\,(1 - (1 - t/n)^3)$, training in between."
    )
    recovered = training.recovery_section(
        name, "prune", "Pruning", recovery_runs(step, recovery), report, baseline, recovery.finetune.epochs,
        lambda label: f"{describe(step)}, {label} ({recovery.describe()})",
    )
shown_label = training.GRADUAL if recovery is not None and recovery.gradual else training.FINE_TUNED
shown = recovered.get(shown_label)
with headline:
    if shown is not None:
        training.showing(shown_label, shown, recovery, "the one-shot result")
    metric_row(shown.report if shown is not None else report)
    latency_caption(shown.report if shown is not None else report)

left, right = st.columns([3, 2])
with left:
    if sweep_wanted(name, len(criteria) * len(SWEEP_AMOUNTS), key="prune_heavy_sweep"):
        grid = {(c, a): build_recipe(dataclasses.replace(step, criterion=c, amount=a)) for c in criteria for a in SWEEP_AMOUNTS}
        with user_errors():
            table = run_sweep(name, {f"{c} {a:.0%}": r for (c, a), r in grid.items()}, "Sweeping amount × criterion")
        table = table.assign(criterion=[c for c, _ in grid], amount=[a for _, a in grid])
        figure = amount_sweep(table, step.criterion, step.amount, report.accuracy, baseline.macs)
        if recovery is not None:
            if st.toggle(f"Add a {step.criterion} curve with recovery ({len(SWEEP_AMOUNTS)} trainings)",
                         key="prune_ft_sweep",
                         help=f"Trains one model per amount ({recovery.describe()}); cached, so once per setting."):
                ft = {a: build_recipe(dataclasses.replace(step, amount=a), recovery) for a in SWEEP_AMOUNTS}
                with user_errors():
                    curve = training.recovered_sweep(name, ft, "Training one model per amount")
                label = training.GRADUAL if recovery.gradual else training.FINE_TUNED
                add_recovered(figure, list(curve), list(curve.values()), f"{step.criterion}, {label}",
                              run_colour(list(recovery_runs(step, recovery)).index(label)))  # its colour in the curves
            for i, (label, result) in enumerate(recovered.items()):
                add_recovered(figure, [step.amount], [result.report.accuracy], label, run_colour(i), current=True)
        st.plotly_chart(figure, width="stretch", key="prune_sweep_chart")
    notes(report)
with right:
    st.markdown(
        "Each weight gets an importance score and the lowest-scoring ones go (Taylor uses gradients of the loss on "
        "calibration data). **Unstructured** pruning sets single "
        "weights to exactly zero: the file shrinks, but dense kernels still multiply every zero, so there is "
        "**no speedup**. **Structured** pruning removes whole output channels (rows, by the norm of their scores): "
        "layers really shrink, and MACs and latency go down."
    )
    st.latex(r"\text{magnitude } |w| \qquad \text{Taylor } \Big|\,w \cdot \frac{\partial L}{\partial w}\Big|")
    st.latex(r"\text{channel } c\text{: } \lVert s(W_c) \rVert_p \quad (\text{magnitude: } \lVert W_c \rVert_p)")

layers = weighted_layers(name)
pick, _ = st.columns([1, 3])
layer = pick.selectbox("Layer to inspect", layers, key="prune_layer")
before, after = weight_of(cache.sample(name).model, layer), weight_of(pruned, layer)
hist, mask = st.columns(2)
hist.plotly_chart(weight_histogram(before, after, layer), width="stretch", key="prune_hist_chart")
mask.plotly_chart(mask_heatmap(before, after, layer), width="stretch", key="prune_mask_chart")
bars, shapes = st.columns(2)
bars.plotly_chart(layer_removal(baseline.layers, report.layers), width="stretch", key="prune_layers_chart")
shapes.markdown("**Layers before → after**")
shapes.dataframe(layer_changes(baseline.layers, report.layers), hide_index=True, width="stretch")
