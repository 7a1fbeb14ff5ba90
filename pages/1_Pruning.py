"""Pruning: zero the least important weights, or remove whole channels, and see what it costs and wins."""
import dataclasses

import streamlit as st

import compressor as cz
from compressor.figures.pruning import amount_sweep, layer_changes, layer_removal, mask_heatmap, weight_histogram
from compressor.figures.training import add_recovered, run_colour
from ui import cache, deployed_view, figure_cache, points, training
from ui.display import latency_caption, metric_row, notes, user_errors
from ui.layers import channel_prunable, weighted_layers, weight_of
from ui.session import display_name, model_picker, one_of, persistent
from ui.sweeps import run_sweep, sweep_wanted

AMOUNT = cz.Prune.spec("amount")
AMOUNTS = sorted({round(0.05 * i, 2) for i in range(int(AMOUNT.high / 0.05) + 1)} | {AMOUNT.high})  # 0%, 5%, ..., 99%
SWEEP_AMOUNTS = (0.0, 0.2, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95)  # per criterion, for the curve
CRITERIA, SCOPE = cz.Prune.spec("criterion"), cz.Prune.spec("scope")

st.set_page_config(page_title="Pruning · Compression Lab", page_icon="✂️", layout="wide")
name = model_picker()


criteria = [c for c in CRITERIA.choices if not (c == "taylor" and cache.is_embedding(name))]  # Taylor needs a class loss


def controls() -> cz.Prune:
    """The sidebar controls, read into one pruning step."""
    with st.sidebar:
        st.subheader("✂️ Pruning")
        amount = st.select_slider("Amount pruned", AMOUNTS, key=persistent("prune_amount", AMOUNT.default, one_of(AMOUNTS)),
                                  format_func=lambda a: f"{a:.0%}", help=AMOUNT.help)
        settings = {"amount": amount}
        for name, label, choices in (("criterion", "Criterion", criteria), ("scope", "Scope", SCOPE.choices)):
            spec = cz.Prune.spec(name)
            settings[name] = st.radio(label, choices, format_func=spec.label, horizontal=True, help=spec.help,
                                      key=persistent(f"prune_{name}", spec.default, one_of(choices)))
        settings["structured"] = st.toggle("Structured (remove whole channels)", key=persistent("prune_structured", False),
                                           help=cz.Prune.spec("structured").help)
        if settings["structured"]:
            spec = cz.Prune.spec("norm")
            settings["norm"] = st.radio("Channel norm", spec.choices, format_func=spec.label, horizontal=True,
                                        help=spec.help, key=persistent("prune_norm", spec.default, one_of(spec.choices)))
    return cz.Prune(**settings)


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


step = controls()
recovery = training.recovery_controls("prune", "pruning", gradual=not step.structured and not cache.is_embedding(name))
recipe_json = cache.recipe_key(build_recipe(step))
with user_errors():
    if step.structured and not channel_prunable(name):
        raise ValueError(f"{display_name(name)} has no layer whose output channels can be removed; turn 'Structured' off.")
    report, deploying = deployed_view.attach(name, recipe_json, cache.measured(name, recipe_json))
    pruned = cache.compressed(name, recipe_json)
baseline = cache.report(name, cache.recipe_key(cz.Recipe()))
points.record(name, recipe_json, report, page="Pruning", label=step.describe())

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
        lambda label: f"{step.describe()}, {label} ({recovery.describe()})",
    )
shown_label = training.GRADUAL if recovery is not None and recovery.gradual else training.FINE_TUNED
shown = recovered.get(shown_label)
with headline:
    if shown is not None:
        training.showing(shown_label, shown, recovery, "the one-shot result")
        metric_row(shown.report)
        latency_caption(shown.report)
    else:
        deployed_view.headline(name, recipe_json, report, deploying)

left, right = st.columns([3, 2])
with left:
    if sweep_wanted(name, len(criteria) * len(SWEEP_AMOUNTS), key=persistent("prune_heavy_sweep", False)):
        def sweep_figure():
            grid = {(c, a): build_recipe(dataclasses.replace(step, criterion=c, amount=a))
                    for c in criteria for a in SWEEP_AMOUNTS}
            with user_errors():
                table = run_sweep(name, {f"{c} {a:.0%}": r for (c, a), r in grid.items()}, "Sweeping amount × criterion")
            table = table.assign(criterion=[c for c, _ in grid], amount=[a for _, a in grid])
            return amount_sweep(table, step.criterion, step.amount, report.accuracy, baseline.macs)

        grid = ("prune_sweep", name, cache.recipe_key(build_recipe(dataclasses.replace(step, amount=0.0))))
        curves = figure_cache.shared(grid, sweep_figure)  # the curves depend on the step but its amount; the star does
        figure = figure_cache.shared(("prune_sweep_at", name, recipe_json),
                                     lambda: figure_cache.moved(curves, "current", step.amount, report.accuracy))
        if recovery is not None:
            figure = figure_cache.private_copy(figure)
            if st.toggle(f"Add a {step.criterion} curve with recovery ({len(SWEEP_AMOUNTS)} trainings)",
                         key=persistent("prune_ft_sweep", False),
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
        "calibration data; activation weighs each weight by the size of the input it multiplies on calibration data, "
        "no labels needed). **Unstructured** pruning sets single "
        "weights to exactly zero: the file shrinks, but dense kernels still multiply every zero, so there is "
        "**no speedup**. **Structured** pruning removes whole output channels (rows, by the norm of their scores): "
        "layers really shrink, and MACs and latency go down."
    )
    st.latex(r"\text{magnitude } |w| \qquad \text{Taylor } \frac{1}{B}\sum_{b=1}^{B}\Big(w \cdot \frac{\partial L_b}{\partial w}\Big)^2")
    st.latex(r"\text{channel } c\text{: } \lVert s(W_c) \rVert_p \quad (\text{magnitude: } \lVert W_c \rVert_p)")
    st.latex(r"\text{activation } |w_{ij}| \, \lVert x_j \rVert_2")
    st.latex(r"\text{activation, channel } c\text{: } \lVert x_c \rVert_2 \, \lVert W^{\text{next}}_{:,c} \rVert_2")


@st.fragment
def inspect_layer(name: str, recipe_json: str, pruned) -> None:
    """One layer's weights before and after: picking another layer reruns only this part of the page."""
    layers = weighted_layers(name)
    pick, _ = st.columns([1, 3])
    layer = pick.selectbox("Layer to inspect", layers, key=persistent("prune_layer", layers[0], one_of(layers)))

    def weights(figure):
        """`figure(before, after, layer)` for this layer: the weights are read only when it is first built."""
        return lambda: figure(weight_of(cache.sample(name).model, layer), weight_of(pruned, layer), layer)

    hist, mask = st.columns(2)
    hist.plotly_chart(figure_cache.shared(("prune_hist", name, recipe_json, layer), weights(weight_histogram)),
                      width="stretch", key="prune_hist_chart")
    mask.plotly_chart(figure_cache.shared(("prune_mask", name, recipe_json, layer), weights(mask_heatmap)),
                      width="stretch", key="prune_mask_chart")


inspect_layer(name, recipe_json, pruned)
bars, shapes = st.columns(2)
bars.plotly_chart(figure_cache.shared(("prune_layers", name, recipe_json),
                                      lambda: layer_removal(baseline.layers, report.layers)),
                  width="stretch", key="prune_layers_chart")
shapes.markdown("**Layers before → after**")
shapes.dataframe(layer_changes(baseline.layers, report.layers), hide_index=True, width="stretch")
