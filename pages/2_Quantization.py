"""Quantization: store every weight in fewer bits and see what each bit costs in accuracy and wins in size."""
import dataclasses

import streamlit as st

import compressor as cz
from compressor.figures.quantization import (
    BYTE_ALIGNED_NOTE, bits_sweep, bits_sweep_info, layer_error, levels_histogram,
)
from compressor.figures.training import add_recovered, run_colour
from compressor.quantization import quantization_error, quantization_levels
from ui import cache, deployed_view, figure_cache, points, training
from ui.display import latency_caption, metric_row, notes, user_errors
from ui.layers import weighted_layers, weight_of
from ui.session import in_range, model_picker, one_of, persistent
from ui.sweeps import run_sweep, sweep_wanted

BITS = cz.Quantize.spec("bits")
SWEEP_BITS = tuple(range(int(BITS.low), int(BITS.high) + 1))
START_BITS = 4  # the page opens at 4 bits, where the trade-off shows (the step's default, 8, changes almost nothing)

st.set_page_config(page_title="Quantization · Compression Lab", page_icon="🔢", layout="wide")
name = model_picker()


def choice(name: str, label: str, disabled: bool = False) -> str:
    """A sidebar radio over one of the step's choices, labelled and explained as the step class does."""
    spec = cz.Quantize.spec(name)
    return st.radio(label, spec.choices, format_func=spec.label, horizontal=True, disabled=disabled, help=spec.help,
                    key=persistent(f"quant_{name}", spec.default, one_of(spec.choices)))


def controls() -> cz.Quantize:
    """The sidebar controls, read into one quantization step (k-means ignores scheme and granularity)."""
    with st.sidebar:
        st.subheader("🔢 Quantization")
        bits = st.slider("Bits per weight", int(BITS.low), int(BITS.high), help=BITS.help,
                         key=persistent("quant_bits", START_BITS, in_range(BITS.low, BITS.high)))
        method = choice("method", "Method")
        kmeans = method == "kmeans"
        scheme = choice("scheme", "Scheme", disabled=kmeans)
        granularity = choice("granularity", "Granularity", disabled=kmeans)
        activations = st.toggle("Also quantize activations (8 bits)", key=persistent("quant_activations", False),
                                help=cz.Quantize.spec("activations").help)
    if kmeans:  # one codebook per layer: scheme and granularity do not apply, so they stay at their defaults
        return cz.Quantize(bits=bits, method="kmeans", activations=activations)
    return cz.Quantize(bits=bits, scheme=scheme, granularity=granularity, activations=activations)


def build_recipe(step: cz.Quantize, recovery: training.Recovery | None = None) -> cz.Recipe:
    """The recipe evaluated for a quantization step: post-training (one shot), or then fine-tuned by QAT."""
    return cz.Recipe((step,) if recovery is None else (step, recovery.finetune))


step = controls()
recovery = training.recovery_controls("quant", "quantizing (QAT)")
recipe_json = cache.recipe_key(build_recipe(step))
with user_errors():
    report, deploying = deployed_view.attach(name, recipe_json, cache.measured(name, recipe_json))
    quantized = cache.compressed(name, recipe_json)
baseline = cache.report(name, cache.recipe_key(cz.Recipe()))
points.record(name, recipe_json, report, page="Quantization", label=step.describe())
original = cache.sample(name).model

st.title("🔢 Quantization")
headline = st.container()
recovered: dict[str, training.Result] = {}
if recovery is not None:
    st.subheader("🏋️ Post-training vs quantization-aware training")
    st.markdown(
        f"**QAT** fine-tunes the quantized model for {recovery.describe()}: the forward pass uses the quantized "
        "weights $Q(v)$ of fp32 latent weights $v$, the backward pass treats $Q$ as the identity (straight-through "
        "estimator, $\\partial L/\\partial v = \\partial L/\\partial Q$), and the result is re-quantized on the grid "
        "it is exported with. k-means layers keep each weight's cluster and train the shared values."
    )
    recovered = training.recovery_section(
        name, "quant", "Quantization", {training.QAT: build_recipe(step, recovery)}, report, baseline,
        recovery.finetune.epochs, lambda label: f"{step.describe()}, QAT ({recovery.describe()})", "post-training",
    )
shown = recovered.get(training.QAT)
with headline:
    if shown is not None:
        training.showing("QAT", shown, recovery, "post-training quantization")
        metric_row(shown.report)
        latency_caption(shown.report)
    else:
        deployed_view.headline(name, recipe_json, report, deploying)

left, right = st.columns([3, 2])
with left:
    if sweep_wanted(name, len(SWEEP_BITS), key=persistent("quant_heavy_sweep", False)):

        def sweep_figure():
            """The bits sweep, and which widths make a larger file than the next (both cached with the figure)."""
            grid = {bits: build_recipe(dataclasses.replace(step, bits=bits)) for bits in SWEEP_BITS}
            with user_errors():
                table = run_sweep(name, {f"{bits} bits": r for bits, r in grid.items()}, "Sweeping bits")
            table = table.assign(bits=list(grid))
            args = (table, step.bits, report.accuracy, report.compressed_bytes, baseline.accuracy, baseline.compressed_bytes)
            return bits_sweep(*args), bits_sweep_info(*args).larger_than_next

        grid = ("quant_sweep", name, cache.recipe_key(build_recipe(dataclasses.replace(step, bits=int(BITS.high)))))
        curves, larger_than_next = figure_cache.shared(grid, sweep_figure)  # the step but its bits decides the grid
        figure = figure_cache.shared(("quant_sweep_at", name, recipe_json),
                                     lambda: figure_cache.moved(curves, "current", step.bits, report.accuracy))
        if recovery is not None:
            figure = figure_cache.private_copy(figure)
            if st.toggle(f"Add a QAT curve ({len(SWEEP_BITS)} trainings)", key=persistent("quant_ft_sweep", False),
                         help=f"Trains one model per bit width ({recovery.describe()}); cached, so once per setting."):
                qat = {bits: build_recipe(dataclasses.replace(step, bits=bits), recovery) for bits in SWEEP_BITS}
                with user_errors():
                    curve = training.recovered_sweep(name, qat, "Training one model per bit width")
                add_recovered(figure, list(curve), list(curve.values()), "QAT curve", run_colour(0))
            for i, (label, result) in enumerate(recovered.items()):
                add_recovered(figure, [step.bits], [result.report.accuracy], label, run_colour(i), current=True)
        st.plotly_chart(figure, width="stretch", key="quant_sweep_chart")
        for bits in larger_than_next:
            st.caption(f"Why is the {BYTE_ALIGNED_NOTE.format(bits=bits, next=bits + 1)}.")
    notes(report)
with right:
    st.markdown(
        "Every weight is replaced by the nearest of 2^b values, so it can be stored as a b-bit code. "
        "**Uniform** grids are evenly spaced; **k-means** (weight sharing, Deep Compression) puts the values "
        "where the weights are. The model still **computes in fp32** here (simulated quantization): the size "
        "win is real (the exported file holds b-bit codes), the latency does not move."
    )
    st.latex(r"""\begin{aligned}
        \text{affine: } & Q(x) = \mathrm{round}(x/s) + z \\ & s = (x_{\max} - x_{\min}) / (2^b - 1) \\[2pt]
        \text{symmetric: } & Q(x) = \mathrm{round}(x/s) \\ & s = \max|x| \,/\, (2^{b-1} - 1) \\[2pt]
        \text{k-means: } & \hat{x}_i = c_{a(i)},\; \min_c \textstyle\sum_i (x_i - c_{a(i)})^2
    \end{aligned}""")
    st.caption("Decoding: x̂ = (Q(x) − z)·s for the uniform grids, the centroid c of each weight's cluster for k-means.")


@st.fragment
def inspect_layer(name: str, recipe_json: str, step: cz.Quantize, quantized) -> None:
    """One layer's weights and the values they snap to: picking another layer (or channel) reruns only this part."""
    original = cache.sample(name).model
    pick, channel_pick, _ = st.columns([1, 1, 2])
    layers = weighted_layers(name)
    layer = pick.selectbox("Layer to inspect", layers, key=persistent("quant_layer", layers[0], one_of(layers)))
    weights = weight_of(original, layer)
    channel = 0
    if step.method == "uniform" and step.granularity == "channel":
        channel = channel_pick.number_input("Output channel", 0, weights.shape[0] - 1,
                                            key=persistent("quant_channel", 0, in_range(0, weights.shape[0] - 1)),
                                            help="Per-channel grids differ: pick which channel's grid to draw.")
        weights, where = weights[channel], f"{layer}, output channel {channel}"
    else:
        where = layer

    def levels_figure():
        levels = quantization_levels(quantized.get_submodule(layer), channel).numpy()
        return levels_histogram(weights, levels, f"Weights of {where} and the {len(levels)} values they snap to")

    hist, errors = st.columns(2)
    hist.plotly_chart(figure_cache.shared(("quant_levels", name, recipe_json, layer, channel), levels_figure),
                      width="stretch", key="quant_hist_chart")
    errors.plotly_chart(figure_cache.shared(("quant_error", name, recipe_json),
                                            lambda: layer_error(quantization_error(original, quantized))),
                        width="stretch", key="quant_error_chart")


inspect_layer(name, recipe_json, step, quantized)
