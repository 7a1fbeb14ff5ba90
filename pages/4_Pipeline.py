"""Pipeline: stack steps into a recipe, see the size and the accuracy after each stage, load and save it as JSON."""
import streamlit as st

from compressor.figures.pipeline import size_waterfall, stage_accuracy
from ui import cache, deployed_view, figure_cache, pipeline_cache, points
from ui import pipeline_editor as editor
from ui.display import format_bytes, notes, short, show_error
from ui.session import model_picker, one_of, persistent, save

st.set_page_config(page_title="Pipeline · Compression Lab", page_icon="🧪", layout="wide")
name = model_picker()

st.title("🧪 Pipeline")
st.markdown(
    "A recipe is a list of steps applied in order, each to the model the step before left. Deep Compression "
    "(Han et al., 2016) prunes first, then shares the surviving weights' values through k-means: with *n* weights "
    "of *b* bits clustered into *k* shared values, each weight stores a log₂k-bit index, plus a codebook of *k* "
    "values. Pick a preset, change any step, add, remove or reorder steps, and watch the size after each stage."
)
st.latex(
    r"f_{\text{compressed}} = s_n \circ \cdots \circ s_1(f) \qquad"
    r"\text{ratio}_{\text{weight sharing}} = \frac{n\,b}{n \log_2 k + k\,b}"
)

left, right = st.columns(2)
with left:
    st.selectbox("Preset", list(editor.PRESETS),
                 key=persistent("pipeline_preset", next(iter(editor.PRESETS)), one_of(editor.PRESETS)))
    st.button("Load preset", key="pipeline_load_preset", help="Replaces the steps below.",
              on_click=lambda: editor.set_recipe(editor.PRESETS[st.session_state["pipeline_preset"]]))
with right:
    st.selectbox("Step type", list(editor.STEP_KINDS), format_func=lambda k: editor.STEP_KINDS[k].label,
                 key=persistent("pipeline_add_kind", "prune", one_of(editor.STEP_KINDS)))
    st.button("Add step", key="pipeline_add", help="Appends it to the recipe.",
              on_click=lambda: editor.add(st.session_state["pipeline_add_kind"]))

MAX_FORMS = 30  # steps drawn as forms; a longer recipe is listed read-only (hundreds of forms would not be usable)


def recipe_editor() -> None:
    """One bordered form per step, with move and remove buttons; a step's bad setting shows an error in its form."""
    steps = editor.entries()
    if not steps:
        st.info("No steps: the model is exported as it is. Load a preset or add a step.")
    if len(steps) > MAX_FORMS:
        st.warning(f"This recipe has {len(steps):,} steps, too many to edit one by one here (up to {MAX_FORMS}): they "
                   "are listed below and run as loaded. Edit the JSON, or load a preset, to change them.", icon="📋")
        st.dataframe({"step": list(range(1, len(steps) + 1)), "what": [e["step"].describe() for e in steps]},
                     hide_index=True, width="stretch", height=250)
        return
    for number, entry in enumerate(steps, start=1):
        step_id = entry["id"]
        with st.container(border=True):
            head = st.columns([8, 1, 1, 1], vertical_alignment="center")
            title = head[0].empty()
            title.markdown(f"**{number} · {editor.kind_of(entry['step']).label}** — {entry['step'].describe()}")
            head[1].button("↑", key=f"pipeline_up_{step_id}", on_click=editor.move, args=(step_id, -1),
                           disabled=number == 1, help="Move up")
            head[2].button("↓", key=f"pipeline_down_{step_id}", on_click=editor.move, args=(step_id, 1),
                           disabled=number == len(steps), help="Move down")
            head[3].button("✕", key=f"pipeline_remove_{step_id}", on_click=editor.remove, args=(step_id,), help="Remove")
            try:
                editor.edit(entry)
            except ValueError as err:  # the core refuses the edited step: say so, keep the step as it was
                show_error(err)
            title.markdown(f"**{number} · {editor.kind_of(entry['step']).label}** — {entry['step'].describe()}")


def results(recipe_json: str) -> None:
    """The measured recipe: metrics, the size waterfall and accuracy per stage, and the stage table."""
    with st.spinner("Running the recipe (steps that train take a few seconds the first time)…"):
        report, deploying = deployed_view.attach(name, recipe_json, cache.measured(name, recipe_json))
        stages = pipeline_cache.stages(name, recipe_json)
    if recipe.steps:
        points.record(name, recipe_json, report, page="Pipeline", label=recipe.describe())
    deployed_view.headline(name, recipe_json, report, deploying)
    notes(report)
    left, right = st.columns(2)
    left.plotly_chart(figure_cache.shared(("pipeline_waterfall", name, recipe_json), lambda: size_waterfall(stages)),
                      width="stretch", key="pipeline_waterfall")
    right.plotly_chart(figure_cache.shared(("pipeline_accuracy", name, recipe_json),
                                           lambda: stage_accuracy(stages, report.metric)),
                       width="stretch", key="pipeline_accuracy")
    table = stages.assign(size=stages["bytes"].map(format_bytes), accuracy=stages["accuracy"].map("{:.1%}".format))
    st.dataframe(
        table[["stage", "step", "size", "accuracy", "params", "nonzero_params", "macs"]].rename(
            columns={"nonzero_params": "non-zero params", "macs": "MACs / example", "accuracy": report.metric}),
        hide_index=True, width="stretch",
        column_config={column: st.column_config.NumberColumn(format="localized")
                       for column in ("params", "non-zero params", "MACs / example")},
    )


st.subheader("Recipe")
recipe_editor()
recipe = editor.recipe()
save()  # the recipe as edited survives a reload

st.subheader("What each stage does")
try:
    results(cache.recipe_key(recipe))
except ValueError as err:  # e.g. a step that does not fit this model: the controls below still load another recipe
    show_error(err)

st.subheader("Save or load the recipe (JSON)")
save_column, load = st.columns(2)
with save_column:
    st.code(recipe.to_json(), language="json")
    st.download_button("Download recipe.json", recipe.to_json(), file_name="recipe.json", mime="application/json",
                       key="pipeline_download", on_click="ignore")
with load:
    st.file_uploader("Load a recipe file", type=["json"], key="pipeline_upload",
                     on_change=editor.load_upload, args=("pipeline_upload",))
    st.text_area("…or paste a recipe", key=persistent("pipeline_json", ""), height=140,
                 placeholder='{"steps": [{"type": "prune", "amount": 0.8}, {"type": "quantize", "bits": 4}]}')
    st.button("Load pasted recipe", key="pipeline_load_json",
              on_click=lambda: editor.load_json(st.session_state["pipeline_json"]))
    if editor.LOAD_ERROR in st.session_state:
        st.error(short(st.session_state.pop(editor.LOAD_ERROR)), icon="⚠️")
