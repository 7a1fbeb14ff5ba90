"""Low-rank: replace weight matrices by truncated SVDs; see the spectra, the cut, and what it costs in accuracy."""
import pandas as pd
import streamlit as st

from compressor import LowRank, Recipe
from compressor.figures.low_rank import SweepPoint, accuracy_vs_params, singular_value_spectra
from compressor.low_rank import factorizable_layers, rank_plan, singular_values
from ui import cache, deployed_view, points
from ui.display import notes, user_errors
from ui.session import in_range, model_picker, one_of, persistent, widget_label
from ui.sweeps import run_sweep, sweep_wanted

RULES = {"rank ratio": "rank_ratio", "energy": "energy"}  # radio label -> LowRank field
RATIO, ENERGY = LowRank.spec("rank_ratio"), LowRank.spec("energy")
SWEEP = {"rank ratio": (0.05, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5, 0.7, 1.0),
         "energy": (0.5, 0.7, 0.8, 0.9, 0.95, 0.98, 0.99, 0.999)}

st.set_page_config(page_title="Low-rank · Compression Lab", page_icon="🧮", layout="wide")
name = model_picker()
sample = cache.sample(name)

st.title("🧮 Low-rank factorization")
st.markdown(
    "A weight matrix W (m × n; a convolution's kernel seen as out × in·k·k) is replaced by the product of two thin "
    "ones from its singular value decomposition, kept up to rank r: one layer becomes two, `x → A x → B (A x)`. "
    "By the Eckart–Young theorem no rank-r matrix is closer to W, and the error is exactly what the dropped "
    "singular values hold. It **saves parameters only when r < m·n / (m + n)**: a rank too close to full stores more."
)
st.latex(
    r"W \approx U_r \Sigma_r V_r^\top = \underbrace{U_r \Sigma_r^{1/2}}_{B\,(m\times r)}\,"
    r"\underbrace{\Sigma_r^{1/2} V_r^\top}_{A\,(r\times n)} \qquad m\,n \;\to\; r\,(m+n) \qquad"
    r"\lVert W - W_r \rVert_F = \sqrt{\textstyle\sum_{i>r} \sigma_i^2}"
)

layers = factorizable_layers(sample.model)
shapes = {layer: f"{module.weight.shape[0]}×{module.weight[0].numel()}" for layer, module in layers.items()}  # m×n
c1, c2, c3 = st.columns([2, 3, 4])
rule = c1.radio("Choose the rank by", list(RULES), key=persistent("lowrank_rule", "rank ratio", one_of(RULES)), horizontal=True,
                help="rank ratio: r = round(ratio · min(m, n)) in every layer; "
                     "energy: the smallest r keeping that share of Σσ² in each layer.")
if rule == "rank ratio":
    value = c2.slider("Rank ratio r / min(m, n)", 0.05, RATIO.high, step=0.05, help=RATIO.help,
                      key=persistent("lowrank_ratio", RATIO.default, in_range(0.05, RATIO.high)))
else:
    value = c2.slider("Energy kept Σᵢ≤ᵣ σᵢ² / Σ σᵢ²", 0.5, ENERGY.high, step=0.01, help=ENERGY.help,
                      key=persistent("lowrank_energy", ENERGY.default, in_range(0.5, ENERGY.high)))
chosen = c3.multiselect("Layers to factorize", list(layers),
                        key=persistent(f"lowrank_layers_{widget_label(name)}", list(layers), one_of(layers)),
                        format_func=lambda layer: f"{layer} ({shapes[layer]})",
                        help="Linear layers and convolutions with groups = 1.")
if not chosen:
    st.warning("Pick at least one layer to factorize.")
    st.stop()

setting = {RULES[rule]: value}
selection = None if len(chosen) == len(layers) else tuple(chosen)
with user_errors():
    recipe = Recipe((LowRank(**setting, layers=selection),))
    recipe_json = cache.recipe_key(recipe)
    report, deploying = deployed_view.attach(name, recipe_json, cache.measured(name, recipe_json))
points.record(name, recipe_json, report, page="Low-rank", label=recipe.steps[0].describe())
deployed_view.headline(name, recipe_json, report, deploying)
notes(report)

spectra = singular_values(sample.model, chosen)
rows = rank_plan(sample.model, **setting, layers=chosen)  # the core's table: rank, energy, error, parameters
ranks = {row.layer: row.rank for row in rows}
plan = pd.DataFrame([
    {"layer": row.layer, "m×n": shapes[row.layer], "r": f"{row.rank} / {row.full_rank}", "energy": row.energy,
     "error": row.error, "params before": row.params_before, "params after": row.params_after,
     "saves": "✓" if row.saves else "✗"}
    for row in rows
])
for row in plan[plan["saves"] == "✗"].to_dict("records"):
    st.warning(
        f"**{row['layer']}** ({row['m×n']}) at rank {ranks[row['layer']]} stores {row['params after']:,} "
        f"parameters instead of {row['params before']:,}: (m + n)·r ≥ m·n, so this factorization saves nothing. "
        "Choose a lower rank (below m·n / (m + n)) or leave this layer out.", icon="📏",
    )

left, right = st.columns([4, 3])
left.plotly_chart(singular_value_spectra(spectra, ranks), width="stretch", key="lowrank_spectra")
with right:
    st.markdown("**What each layer keeps**")
    st.dataframe(plan.drop(columns="m×n"), hide_index=True, width="stretch", column_config={
        "r": st.column_config.TextColumn("r / k", help="Kept rank of k = min(m, n)."),
        "energy": st.column_config.NumberColumn("energy", format="percent", help="Σ_{i≤r} σᵢ² / Σ σᵢ² kept."),
        "error": st.column_config.NumberColumn("error", format="percent",
                                               help="‖W − W_r‖_F / ‖W‖_F = √(1 − energy kept) (Eckart–Young)."),
        "params before": st.column_config.NumberColumn("before", format="localized", help="m·n + bias"),
        "params after": st.column_config.NumberColumn("after", format="localized", help="(m + n)·r + bias"),
        "saves": st.column_config.TextColumn("saves", help="(m + n)·r < m·n"),
    })
    st.caption("A spectrum that falls steeply holds its energy in a few directions: that layer can be cut early. "
               "A flat one loses accuracy at every cut.")

if sweep_wanted(name, sum(len(v) for v in SWEEP.values()), key="lowrank_heavy_sweep"):
    sweep_recipes = {f"{series} {v:g}": Recipe((LowRank(**{RULES[series]: v}, layers=selection),))
                     for series, values in SWEEP.items() for v in values}
    table = run_sweep(name, sweep_recipes, "Sweeping rank ratio and energy")
    table["series"] = [label.rsplit(" ", 1)[0] for label in table["label"]]
    table["label"] = [label.rsplit(" ", 1)[1] for label in table["label"]]
    st.plotly_chart(
        accuracy_vs_params(
            table,
            current=SweepPoint(report.params, report.accuracy, f"this setting ({rule} {value:g})"),
            baseline=SweepPoint(report.baseline_params, report.baseline_accuracy, "uncompressed"),
            metric=report.metric,
        ),
        width="stretch", key="lowrank_sweep",
    )
st.caption("Each point factorizes the chosen layers at one setting (accuracy measured on held-out data). Points right "
           "of the dashed line store more parameters than the uncompressed model.")
