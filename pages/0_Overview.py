"""Overview: the picked model, measured, and a tour of what the other pages do (the default page of app.py)."""
import streamlit as st

from compressor import Recipe
from compressor.figures.overview import layer_share
from ui import cache, figure_cache, uploads
from ui.display import format_bytes, latency_caption
from ui.session import PAGES, display_name, model_picker

st.set_page_config(page_title="Compression Lab", page_icon="🗜️", layout="wide")
name = model_picker()
sample = cache.sample(name)
baseline = cache.report(name, cache.recipe_key(Recipe()))

st.title("🗜️ Compression Lab")
with st.expander("Your own model"):
    uploads.form()
st.markdown(
    f"**{display_name(name)}** — {sample.description}. Every number below is measured: {'topic accuracy' if baseline.fidelity else 'accuracy'} on "
    f"{baseline.test_examples} held-out examples, size as the bytes of the exported file, latency timed on this server."
)

cols = st.columns(5)
if baseline.fidelity is not None:  # an embedding model: what its embeddings are good for, on held-out sentences
    cols[0].metric("Topic accuracy", f"{baseline.fidelity['topic_accuracy']:.1%}",
                   help="Nearest-centroid classifier on the embeddings: centroids of the training sentences' "
                        "topics, scored on the held-out sentences. Compressed models are scored by fidelity.")
else:
    cols[0].metric("Test accuracy", f"{baseline.accuracy:.1%}")
cols[1].metric("Parameters", f"{baseline.params:,}")
cols[2].metric("fp32 size", format_bytes(baseline.dense_bytes), help="4 bytes per parameter.")
cols[3].metric("Exported file", format_bytes(baseline.compressed_bytes), help="Uncompressed model, losslessly packed.")
if baseline.deployment is not None:  # the number the caption below says is shown
    cols[4].metric("Latency (deployed)", f"{baseline.deployed_latency_ms:.3f} ms",
                   help=f"fp32 on ONNX Runtime; eager PyTorch: {baseline.latency_ms:.3f} ms.")
else:
    cols[4].metric("Latency", f"{baseline.latency_ms:.3f} ms")
latency_caption(baseline)

left, right = st.columns([3, 2])
with left:
    st.plotly_chart(figure_cache.shared(("overview_layers", name), lambda: layer_share(baseline.layers)), width="stretch")
with right:
    st.markdown("**Architecture**")
    st.code(str(sample.model), language="text", wrap_lines=True)

st.markdown("**Per-layer table**")
table = baseline.to_frame()[["name", "type", "shape", "params", "macs", "bytes"]]
st.dataframe(
    table.rename(columns={"macs": "MACs / example", "bytes": "bytes in file"}),
    hide_index=True, width="stretch",
    column_config={c: st.column_config.NumberColumn(format="localized") for c in ("params", "MACs / example", "bytes in file")},
)

st.header("A tour of the techniques")
TOUR = {  # what each page teaches; its label and icon come from the page menu (ui.session.PAGES)
    "pages/1_Pruning.py": (
        "Set the least important weights to zero (unstructured), or remove whole neurons and channels "
        "(structured). Zeros shrink the file; only removed channels make the model faster."),
    "pages/2_Quantization.py": (
        "Store each weight in fewer bits: 32 → 8 → 4 → 2. Uniform grids or k-means shared values (Deep "
        "Compression)."),
    "pages/3_Low-rank.py": (
        "Replace a weight matrix by the product of two thin ones (truncated SVD). Fewer parameters and "
        "fewer MACs, at the price of the discarded singular values."),
    "pages/4_Pipeline.py": "Stack steps into a recipe — prune, then quantize — and see the size after each stage.",
    "pages/5_Trade-offs.py": (
        "Every configuration you tried, as points: accuracy vs size vs latency, with the Pareto front."),
    "pages/6_Export.py": "Download the compressed file, its recipe and its report.",
    "pages/7_Distillation.py": (
        "Train a small student to imitate the model (knowledge distillation) and compare it with the same"
        " student trained on the labels alone."),
    "pages/8_Sensitivity.py": (
        "Compress one layer at a time to see which layers can take it, then let a greedy rule give each "
        "layer the most its sensitivity allows."),
    "pages/9_Search.py": (
        "An evolutionary search (NSGA-II) over per-layer policies finds the best trade-offs between "
        "accuracy, size and computation for you."),
}
cols = st.columns(3)
for i, (page, label, icon) in enumerate(p for p in PAGES if p[0] in TOUR):
    with cols[i % 3].container(border=True):
        st.page_link(page, label=f"{icon} {label}")
        st.caption(TOUR[page])
