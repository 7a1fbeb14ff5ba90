"""Export: one configuration as files — the compressed artifact, its recipe and its report."""
import streamlit as st

import compressor as cz
from compressor.artifact import read_header
from compressor.figures.distillation import training_of
from compressor.figures.tradeoffs import describe_recipe
from ui import cache, points
from ui.display import deployed_quality, format_bytes, latency_caption, metric_row, user_errors
from ui.export_files import contents_table, file_stem, load_back, report_csv, report_json
from ui.session import display_name, model_picker, one_of, persistent

EXAMPLE = cz.Recipe((  # Deep Compression's order: prune, then quantize what is left
    cz.Prune(amount=0.8, scope="global"), cz.Quantize(bits=4, scheme="symmetric", granularity="channel"),
)).to_json()
RECORDED, PASTED = "A configuration from this session", "A recipe (JSON)"

st.set_page_config(page_title="Export · Compression Lab", page_icon="📦", layout="wide")
name = model_picker()

st.title("📦 Export")
st.markdown(
    "Take one configuration home: the **compressed file** (`.clab`: the weights in their smallest exact "
    "encoding — bit-packed codes, positions of the non-zeros — plus how to rebuild the model), the **recipe** "
    "that made it, and the **report** that measured it. The file's length *is* the size every page reports."
)

recorded = points.table(name)
if not recorded.empty:  # students of the Distillation page come from training, not from a recipe of this model
    recorded = recorded[recorded["recipe"].map(lambda text: training_of(text) is None)]
source = st.radio("What to export", [RECORDED, PASTED],
                  key=persistent("export_source", RECORDED if len(recorded) else PASTED, one_of([RECORDED, PASTED])),
                  horizontal=True)
if source == RECORDED and recorded.empty:
    st.info(f"No configuration of {display_name(name)} evaluated yet in this session: paste a recipe instead, or move a "
            "slider on one of the technique pages first.", icon="🧭")
    source = PASTED

if source == RECORDED:
    newest_first = recorded.iloc[::-1]
    labels = {row.recipe: f"{row.label} · {row.page} · {row.accuracy:.1%} · {format_bytes(row.compressed_bytes)}"
              for row in newest_first.itertuples()}
    recipe_text = st.selectbox("Configuration (most recent first)", list(labels), format_func=labels.get,
                               key=persistent("export_point", next(iter(labels)), one_of(labels)))
else:
    left, right = st.columns([3, 2])
    recipe_text = left.text_area("Recipe JSON", height=230, key=persistent("export_recipe_text", EXAMPLE),
                                 help='An object with one key, "steps": the format the Pipeline page saves.')
    upload = right.file_uploader("…or upload a recipe file", type=["json"], key="export_recipe_upload")
    if upload is not None:
        recipe_text = upload.getvalue().decode("utf-8", errors="replace")
        right.caption(f"Using {upload.name}.")

with user_errors():
    recipe_json = cache.recipe_key(cz.Recipe.from_json(recipe_text))
    report = cache.report(name, recipe_json)
    model = cache.compressed(name, recipe_json)
if source == PASTED:
    points.record(name, recipe_json, report, "Export", describe_recipe(recipe_json))

recipe = cz.Recipe.from_json(recipe_json)
artifact = cz.encode(model, recipe.to_dict())  # exactly what the report measured: same model, same recipe
stem = file_stem(name, artifact)

st.subheader(describe_recipe(recipe_json))
metric_row(report)
latency_caption(report)

if artifact.size == report.compressed_bytes:
    st.success(f"**{stem}.clab** is {artifact.size:,} bytes ({format_bytes(artifact.size)}) — exactly the report's "
               f"compressed size, {report.compression_ratio:.1f}× smaller than the fp32 model "
               f"({format_bytes(report.baseline_dense_bytes)}).", icon="✅")
else:
    st.warning(f"The file is {artifact.size:,} bytes but the report measured {report.compressed_bytes:,}.")

cols = st.columns(4)
cols[0].download_button("Compressed model (.clab)", artifact.data, file_name=f"{stem}.clab",
                        mime="application/octet-stream", key="export_artifact", icon=":material/download:",
                        type="primary")
cols[1].download_button("Recipe (JSON)", recipe.to_json() + "\n", file_name=f"{stem}.recipe.json",
                        mime="application/json", key="export_recipe", icon=":material/download:")
cols[2].download_button("Per-layer report (CSV)", report_csv(report), file_name=f"{stem}.report.csv",
                        mime="text/csv", key="export_report_csv", icon=":material/download:")
cols[3].download_button("Full report (JSON)", report_json(report), file_name=f"{stem}.report.json",
                        mime="application/json", key="export_report_json", icon=":material/download:")

st.subheader("For deployment: ONNX")
deployed = report.deployment
onnx_bytes = cache.onnx_file(name, recipe_json)
if deployed is not None:
    kind = ("**simulated**: no native kernel for these weights on this CPU, so it holds fp32 weights and runs at "
            "fp32 speed" if deployed.simulated else f"{deployed.kernel} kernels: {deployed.kernel_detail}")
    st.markdown(f"**{stem}.onnx** ({len(onnx_bytes):,} bytes) is the graph ONNX Runtime ran for this report — "
                f"{kind}. Deployed: {deployed_quality(deployed)}, "
                f"{deployed.deployed_latency_ms:.3f} ms per batch of {deployed.batch_size} "
                f"({deployed.deployed_speedup:.2f}× the fp32 model on the same runtime).")
st.download_button("Deployable model (.onnx)", onnx_bytes, file_name=f"{stem}.onnx", mime="application/octet-stream",
                   key="export_onnx", icon=":material/download:")

st.header("Load it back")
python_tab, cli_tab = st.tabs(["Python", "Command line"])
python_code, shell_code = load_back(name, stem)
python_tab.code(python_code, language="python")
cli_tab.code(shell_code, language="bash")

with st.expander("What is inside the file"):
    st.caption(f"{artifact.layer_bytes['(header)']:,} bytes of header (architecture, recipe, quantizer settings, "
               "as JSON), then one blob per tensor:")
    st.dataframe(contents_table(read_header(artifact.data)), hide_index=True, width="stretch",
                 column_config={"bytes": st.column_config.NumberColumn("bytes", format="localized")})
