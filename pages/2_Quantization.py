"""Quantization: store every weight in fewer bits and see what each bit costs in accuracy and wins in size."""
import dataclasses

import streamlit as st

import compressor as cz
from compressor.figures.quantization import bits_sweep, layer_error, levels_histogram
from compressor.figures.training import add_recovered, run_colour
from compressor.quantization import quantization_error, quantization_levels
from ui import cache, points, training
from ui.display import latency_caption, metric_row, notes, user_errors
from ui.layers import weighted_layers, weight_of
from ui.session import model_picker
from ui.sweeps import run_sweep, sweep_wanted

SWEEP_BITS = tuple(range(1, 9))
SCHEMES = {"affine": "affine (min–max)", "symmetric": "symmetric (±max)"}
GRANULARITIES = {"tensor": "per tensor", "channel": "per channel"}
METHODS = {"uniform": "uniform grid", "kmeans": "k-means"}

st.set_page_config(page_title="Quantization · Compression Lab", page_icon="🔢", layout="wide")
name = model_picker()


def controls() -> cz.Quantize:
    """The sidebar controls, read into one quantization step (k-means ignores scheme and granularity)."""
    with st.sidebar:
        st.subheader("🔢 Quantization")
        bits = st.slider("Bits per weight", 1, 8, 4, key="quant_bits", help="Each weight becomes one of 2^bits values.")
        method = st.radio("Method", list(METHODS), format_func=METHODS.get, key="quant_method", horizontal=True,
                          help="An evenly spaced grid, or 2^bits shared values found by k-means (Deep Compression).")
        kmeans = method == "kmeans"
        scheme = st.radio("Scheme", list(SCHEMES), format_func=SCHEMES.get, key="quant_scheme", horizontal=True,
                          disabled=kmeans, help="Grid over [min, max] with a zero point, or symmetric about 0.")
        granularity = st.radio("Granularity", list(GRANULARITIES), format_func=GRANULARITIES.get, key="quant_granularity",
                               horizontal=True, disabled=kmeans, help="One scale per layer, or one per output channel.")
        activations = st.toggle("Also quantize activations (8 bits)", key="quant_activations",
                                help="Quantize each layer's input too, calibrated on held-out calibration data.")
    if kmeans:  # one codebook per layer: scheme and granularity do not apply, so they stay at their defaults
        return cz.Quantize(bits=bits, method="kmeans", activations=activations)
    return cz.Quantize(bits=bits, scheme=scheme, granularity=granularity, activations=activations)


def build_recipe(step: cz.Quantize, recovery: training.Recovery | None = None) -> cz.Recipe:
    """The recipe evaluated for a quantization step: post-training (one shot), or then fine-tuned by QAT."""
    return cz.Recipe((step,) if recovery is None else (step, recovery.finetune))


def describe(step: cz.Quantize) -> str:
    kind = "k-means" if step.method == "kmeans" else f"{step.scheme}, per {step.granularity}"
    return f"quantize {step.bits}-bit {kind}" + (", activations 8-bit" if step.activations else "")


step = controls()
recovery = training.recovery_controls("quant", "quantizing (QAT)")
recipe_json = cache.recipe_key(build_recipe(step))
with user_errors():
    report = cache.report(name, recipe_json)
    quantized = cache.compressed(name, recipe_json)
baseline = cache.report(name, cache.recipe_key(cz.Recipe()))
points.record(name, recipe_json, report, page="Quantization", label=describe(step))
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
        recovery.finetune.epochs, lambda label: f"{describe(step)}, QAT ({recovery.describe()})", "post-training",
    )
shown = recovered.get(training.QAT)
with headline:
    if shown is not None:
        training.showing("QAT", shown, recovery, "post-training quantization")
    metric_row(shown.report if shown is not None else report)
    latency_caption(shown.report if shown is not None else report)

left, right = st.columns([3, 2])
with left:
    if sweep_wanted(name, len(SWEEP_BITS), key="quant_heavy_sweep"):
        grid = {bits: build_recipe(dataclasses.replace(step, bits=bits)) for bits in SWEEP_BITS}
        with user_errors():
            table = run_sweep(name, {f"{bits} bits": r for bits, r in grid.items()}, "Sweeping bits")
        table = table.assign(bits=list(grid))
        figure = bits_sweep(table, step.bits, report.accuracy, report.compressed_bytes, baseline.accuracy,
                            baseline.compressed_bytes)
        if recovery is not None:
            if st.toggle(f"Add a QAT curve ({len(SWEEP_BITS)} trainings)", key="quant_ft_sweep",
                         help=f"Trains one model per bit width ({recovery.describe()}); cached, so once per setting."):
                qat = {bits: build_recipe(dataclasses.replace(step, bits=bits), recovery) for bits in SWEEP_BITS}
                with user_errors():
                    curve = training.recovered_sweep(name, qat, "Training one model per bit width")
                add_recovered(figure, list(curve), list(curve.values()), "QAT curve", run_colour(0))
            for i, (label, result) in enumerate(recovered.items()):
                add_recovered(figure, [step.bits], [result.report.accuracy], label, run_colour(i), current=True)
        st.plotly_chart(figure, width="stretch", key="quant_sweep_chart")
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

layers = weighted_layers(name)
pick, channel_pick, _ = st.columns([1, 1, 2])
layer = pick.selectbox("Layer to inspect", layers, key="quant_layer")
weights = weight_of(original, layer)
channel = 0
if step.method == "uniform" and step.granularity == "channel":
    channel = channel_pick.number_input("Output channel", 0, weights.shape[0] - 1, 0, key="quant_channel",
                                        help="Per-channel grids differ: pick which channel's grid to draw.")
    weights, where = weights[channel], f"{layer}, output channel {channel}"
else:
    where = layer
levels = quantization_levels(quantized.get_submodule(layer), channel).numpy()
hist, errors = st.columns(2)
hist.plotly_chart(levels_histogram(weights, levels, f"Weights of {where} and the {len(levels)} values they snap to"),
                  width="stretch", key="quant_hist_chart")
errors.plotly_chart(layer_error(quantization_error(original, quantized)), width="stretch", key="quant_error_chart")
