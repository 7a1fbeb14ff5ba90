"""Sensitivity: compress one layer at a time to see which layers can take compression, then a greedy per-layer recipe."""
import streamlit as st

from compressor.figures.sensitivity import sensitivity_curves, sensitivity_heatmap
from compressor.policy import FP32
from compressor.sensitivity import SensitivityGrid, greedy_vs_uniform, probes, sensitivity
from compressor.units import format_bytes
from ui import policy_cache
from ui.display import user_errors
from ui.session import display_name, model_picker

AMOUNTS = (0.3, 0.5, 0.7, 0.8, 0.9, 0.95, 0.98)
BITS = (8, 6, 5, 4, 3, 2, 1)
RANKS = (0.75, 0.5, 0.25, 0.1, 0.05)
PAGE = "Sensitivity"

st.set_page_config(page_title="Sensitivity · Compression Lab", page_icon="🩺", layout="wide")
name = model_picker()

st.title("🩺 Sensitivity")
st.markdown(
    "Compress **one layer** with **one technique** at one setting, leave everything else as it is, and measure: "
    "a layer whose curve stays flat can take far more compression than one that falls at the first step "
    "(Distiller's sensitivity analysis, AIMET's per-layer analysis). From the curves, a *greedy* recipe gives each "
    "layer the most compression whose own drop stays within a target (AIMET's greedy selection). Layers' errors "
    "add up, so the combined recipe is measured, next to the uniform recipe of the same exported size."
)

c1, c2, c3 = st.columns(3)
amounts = c1.multiselect("Pruning amounts", AMOUNTS, default=(0.5, 0.7, 0.8, 0.9, 0.95, 0.98), key="sens_amounts",
                         format_func="{:.0%}".format, help="Fraction of the layer's weights set to zero (magnitude).")
bits = c2.multiselect("Bit widths", BITS, default=(8, 6, 4, 3, 2, 1), key="sens_bits",
                      help=f"Uniform affine, one scale per output channel; the baseline is fp32 ({FP32} bits).")
ranks = c3.multiselect("Rank ratios", RANKS, default=(0.5, 0.25, 0.1), key="sens_ranks",
                       help="Truncated SVD keeping this fraction of min(m, n) singular values.")
with user_errors():
    grid = SensitivityGrid(tuple(sorted(amounts)), tuple(sorted(bits, reverse=True)), tuple(sorted(ranks, reverse=True)))

settings_key = (name, grid)
session_cache = st.session_state.setdefault(f"sens_cache_{name}", {})  # this session's measured recipes
if st.session_state.get("sens_stopped_for") != settings_key:
    st.session_state.pop("sens_stopped_for", None)


def stop() -> None:
    st.session_state["sens_stopped_for"] = settings_key


stopped = st.session_state.get("sens_stopped_for") == settings_key
evaluator = policy_cache.evaluator(name, session_cache)
total = len(probes(evaluator, grid))
bar = st.empty()
stop_slot = st.empty()
if not stopped:
    stop_slot.button("Stop", key="sens_stop", on_click=stop, help="Keep the probes measured so far.")


def progress(fraction: float, label: str) -> None:
    if evaluator.misses:  # only while something is computed: a cached run does not flash a bar
        bar.progress(fraction, text=f"Measuring {total} probes of {display_name(name)}: {label}")


with user_errors():
    # after Stop, replay what this session measured and halt at the first probe it has not
    table = sensitivity(evaluator, grid, progress=progress, should_stop=(lambda: evaluator.misses > 0) if stopped else None)
bar.empty()
stop_slot.empty()
if table.empty:
    st.info("Stopped before any probe was measured." if stopped else "Choose at least one setting.")
    st.stop()
if len(table) < total:
    st.warning(f"Stopped: {len(table)} of {total} probes measured.")
    st.button("Resume", key="sens_resume", on_click=lambda: st.session_state.pop("sens_stopped_for", None))

first = evaluator({})
metric = first.metric
st.plotly_chart(sensitivity_curves(table, first.baseline_quality, metric), width="stretch", key="sens_curves")
st.plotly_chart(sensitivity_heatmap(table, metric), width="stretch", key="sens_heatmap")

st.subheader("Greedy per-layer recipe")
max_drop = st.slider("Largest drop each layer may cause on its own (points)", 0.0, 10.0, 1.0, 0.1, key="sens_max_drop",
                     help="Each layer gets, per technique, the most compressing setting within this drop.") / 100
with user_errors(), st.spinner("Measuring the greedy recipe and the uniform one of the same size…"):
    compared = greedy_vs_uniform(evaluator, table, max_drop)
shown = compared.assign(**{metric: compared["quality"].map("{:.2%}".format),
                           "drop (points)": (compared["drop"] * 100).map("{:+.2f}".format),
                           "size": compared["bytes"].map(format_bytes)})
st.dataframe(shown[["recipe", metric, "drop (points)", "size", "effective_macs"]], hide_index=True, width="stretch")
greedy = compared.iloc[0]
st.caption(f"Both measured on the held-out data. Greedy recipe: `{greedy.recipe_json}`")
for row in compared.itertuples():
    policy_cache.record_point(name, row.recipe_json, PAGE, f"{row.recipe} (≤ {max_drop:.1%} per layer)")
if st.button("Apply the greedy recipe", key="sens_apply",
             help="Makes it the Pipeline page's recipe (and a Trade-offs point)."):
    policy_cache.apply_recipe(greedy.recipe_json)
    st.success("Applied: the Pipeline and Export pages now use the greedy recipe.")
