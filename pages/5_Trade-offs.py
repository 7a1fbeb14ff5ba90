"""Trade-offs: every configuration evaluated this session as a point, the Pareto front, pinned comparisons."""
import streamlit as st

from compressor import Recipe
from compressor.figures.tradeoffs import VIEWS, describe_recipe, front_3d, tradeoff_3d, tradeoff_scatter
from ui import cache, points
from ui.session import display_name, file_label, model_picker, widget_label
from ui.latency_view import SOURCES, latency_view
from ui.tradeoffs_cache import add_quick_grid, grid_recorded, quick_grid

FEW_POINTS = 6  # below this many, offer the quick grid up front

st.set_page_config(page_title="Trade-offs · Compression Lab", page_icon="📈", layout="wide")
name = model_picker()
shown = display_name(name)  # never the raw name: an own model's holds the session id
baseline_json = cache.recipe_key(Recipe())
points.record(name, baseline_json, cache.report(name, baseline_json), "Trade-offs", "baseline")
points.add_finished_deployments(name)

st.title("📈 Trade-offs")
st.markdown(
    "Every configuration evaluated in this session — on any page — is a point here. A point is on the "
    "**Pareto front** when no other point is at least as accurate, as small and as fast while beating it on one "
    "of those: the front is the menu of sensible choices, everything else is beaten by something you already "
    "tried. In eager PyTorch latency only improves when the dense computation itself shrinks — **structured "
    "pruning** and **low-rank** factorization. **Deployed** on ONNX Runtime, 8-bit weights also run on int8 "
    "kernels and 4-bit Linear weights on 4-bit kernels; other bit widths and k-means are *simulated* (fp32 "
    "latency), and unstructured zeros run through dense kernels either way."
)

if cache.is_embedding(name):
    st.info(f"{shown} outputs sentence embeddings: its **accuracy** axis and columns show the **mean cosine similarity** "
            "to the uncompressed model's embeddings of the held-out sentences (fidelity, 100% = unchanged); the "
            "other fidelity measures are in each page's headline. Each new point takes seconds on this server.",
            icon="🧭")

count = len(points.table(name))
if count < FEW_POINTS:
    st.info(
        f"{count} configuration{'s' if count != 1 else ''} of {shown} so far. Try the other pages, or add a quick "
        f"grid: {len(quick_grid())} configurations (zeros × bits, and structured pruning), each with its latency "
        "timed.", icon="🧭",
    )
if st.button("Add a quick grid", key="trade_grid", disabled=grid_recorded(name), icon=":material/add_chart:",
             help="Prune 50/80/90% (one global threshold) then quantize to 8/4/2 bits, plus 25/50/75% of "
                  "channels removed; latency timed for each (a few seconds the first time, cached afterwards)."):
    add_quick_grid(name)
    st.rerun()  # redraw the count and the button with the new points (the grid is cached now)

latency_source = st.radio(
    "Latency shown", SOURCES, horizontal=True, key="trade_latency_source",
    help="Deployed: each configuration exported to ONNX and run by ONNX Runtime on this CPU, on int8 / int4 integer "
         "kernels where its weights allow ('simulated' points have no native kernel and run in fp32). Eager: PyTorch "
         "running every model in fp32, where quantization never speeds anything up.",
)
table = latency_view(points.table(name), latency_source)
table["front"] = front_3d(table)
table["summary"] = table["recipe"].map(describe_recipe)
untimed = int(table["latency_ms"].isna().sum())
if untimed:
    st.caption(f"{untimed} point(s) were evaluated without latency timing: they appear only in the accuracy vs "
               "size view.")
st.caption(f"Latency shown: **{latency_source}**, relative to the uncompressed model's on the same runtime, timed "
           "alongside it (so the ratio holds while the server's load changes). Hover a point to see its recipe.")

tabs = st.tabs([*VIEWS, "3-D view"], key="trade_view", on_change="rerun")  # only the open tab is drawn
for tab, (title, (x, y)) in zip(tabs, VIEWS.items()):
    if tab.open:
        tab.plotly_chart(tradeoff_scatter(table, x, y, title=f"{title} — {shown}"), width="stretch")
if tabs[-1].open:
    tabs[-1].plotly_chart(tradeoff_3d(table, title=f"Accuracy, size and latency — {shown}"), width="stretch")
    tabs[-1].caption("Drag to rotate. Teal: on the front of all three objectives at once. Latency varies by a "
                     "few per cent from run to run, so with latency as an objective near-ties can reach the front "
                     "by chance.")

st.header("Compare")
st.caption("Tick **pin** to move a point into the comparison table below, and download it as CSV.")
columns = {  # shown column -> how it looks
    "pinned": st.column_config.CheckboxColumn("pin"),
    "label": "label",
    "accuracy_pct": st.column_config.NumberColumn("accuracy", format="%.1f%%"),
    "drop_pts": st.column_config.NumberColumn("Δ accuracy", format="%+.1f pts"),
    "compressed_bytes": st.column_config.NumberColumn("file bytes", format="localized"),
    "compression_ratio": st.column_config.NumberColumn("× smaller", format="%.1f×"),
    "latency_ms": st.column_config.NumberColumn("latency ms", format="%.3f"),
    "speedup": st.column_config.NumberColumn("speedup", format="%.2f×"),
    "kernel": st.column_config.TextColumn("kernel", help="How ONNX Runtime ran it: fp32, int8, int4, or simulated "
                                          "(no native kernel here: the file is real, the latency is fp32's)"),
    "nonzero_params": st.column_config.NumberColumn("non-zero params", format="localized"),
    "macs": st.column_config.NumberColumn("MACs / example", format="localized"),
    "front": st.column_config.CheckboxColumn("on front"),
    "page": "page",
    "summary": "recipe",
}
view = table.assign(accuracy_pct=table["accuracy"] * 100, drop_pts=-table["accuracy_drop"] * 100)
overview = ["pinned", "label", "accuracy_pct", "compressed_bytes", "compression_ratio", "latency_ms", "speedup",
            "kernel", "front", "page", "summary"]
edited = st.data_editor(view[overview], key=f"trade_pins_{widget_label(name)}", hide_index=True, width="stretch",
                        disabled=overview[1:], column_config={c: columns[c] for c in overview})
for recipe_json, was, now in zip(table["recipe"], table["pinned"], edited["pinned"]):
    if bool(was) != bool(now):
        points.set_pinned(name, recipe_json, bool(now))

pinned = edited["pinned"].astype(bool).to_numpy()
if not pinned.any():
    st.caption("Nothing pinned yet: the download holds every point.")
else:
    st.subheader(f"Pinned: {pinned.sum()}")
    compared = ["label", "accuracy_pct", "drop_pts", "compressed_bytes", "compression_ratio", "latency_ms", "speedup",
                "kernel", "nonzero_params", "macs", "summary"]
    st.dataframe(view[pinned][compared], hide_index=True, width="stretch",
                 column_config={c: columns[c] for c in compared})
exported = ["label", "page", "accuracy", "accuracy_drop", "compressed_bytes", "compression_ratio", "latency_ms",
            "speedup", "latency_shown", "kernel", "deployed_accuracy", "deployed_latency_ms", "deployed_speedup",
            "eager_latency_ms", "eager_speedup", "nonzero_params", "macs", "summary", "recipe"]
rows = table[pinned] if pinned.any() else table
st.download_button(
    f"Download {'the comparison' if pinned.any() else 'all points'} (CSV)", rows[exported].to_csv(index=False),
    file_name=f"{file_label(name)}-tradeoffs.csv", mime="text/csv", key="trade_csv", icon=":material/download:",
)
