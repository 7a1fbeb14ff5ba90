"""Search: NSGA-II (Optuna) over per-layer policies; the Pareto front, generation by generation, and "apply"."""
import optuna
import streamlit as st

from compressor.figures.search import search_front
from compressor.policy import FP32
from compressor.search import (
    GenerationLog, SearchConfig, SearchSpace, create_study, front, make_objective, trials_frame, warm_start,
)
from compressor.units import format_bytes
from compressor.workers import complete_count, work
from ui import policy_cache
from ui.display import user_errors
from ui.session import model_picker

PAGE = "Search"
BITS = (FP32, 8, 6, 5, 4, 3, 2, 1)
STUDY, FRAME = "search_study", "search_frame"  # session keys: (settings, optuna.Study) and (settings, trials table)

optuna.logging.set_verbosity(optuna.logging.WARNING)
st.set_page_config(page_title="Search · Compression Lab", page_icon="🧬", layout="wide")
name = model_picker()

st.title("🧬 Search")
st.markdown(
    "Instead of guessing per-layer settings, let a genetic algorithm find them. Each candidate (a *policy*) gives "
    "every layer a pruning amount, a bit width (fp32 among them) and, optionally, a rank ratio; it becomes an "
    "ordinary recipe, is measured, and NSGA-II (Deb et al., 2002, through Optuna) keeps the non-dominated ones — "
    "no other candidate is better in every objective — to breed the next generation by crossover and mutation. "
    "The answer is not one model but a **Pareto front**: pick the point that fits your constraint."
)

c1, c2, c3, c4 = st.columns(4)
trials = c1.number_input("Budget (trials)", 10, 2000, 200, 10, key="search_trials",
                         help="Complete evaluations; a policy seen before comes from the cache.")
population = c2.number_input("Population", 4, 200, 20, 2, key="search_population", help="Policies per generation.")
seed = c3.number_input("Seed", 0, 10_000, 0, key="search_seed", help="Same seed and settings, same search.")
cost = c4.selectbox("Third objective", ["none", "effective_macs"], key="search_cost",
                    help="Effective MACs (zeros skipped) down, besides accuracy up and bytes down.")
c1, c2, c3, c4 = st.columns(4)
amounts = c1.slider("Pruning amount range", 0.0, 0.95, (0.0, 0.95), 0.05, key="search_amounts")
bits = c2.multiselect("Bit widths", BITS, default=(FP32, 8, 6, 5, 4, 3, 2), key="search_bits",
                      format_func=lambda b: "fp32" if b == FP32 else f"{b}-bit")
use_rank = c3.toggle("Low-rank genes", False, key="search_use_rank", help="Rank ratio per layer; 1.0 keeps it whole.")
ranks = c3.slider("Rank ratio range", 0.05, 1.0, (0.25, 1.0), 0.05, key="search_ranks", disabled=not use_rank)
max_drop = c4.number_input("Max accuracy drop (points, 0 = none)", 0.0, 50.0, 2.0, 0.5, key="search_max_drop")
max_kb = c4.number_input("Max size (kB, 0 = none)", 0.0, 10_000.0, 0.0, 1.0, key="search_max_kb")

with user_errors():
    space = SearchSpace(amounts=tuple(amounts), bits=tuple(bits) or None, rank_ratios=tuple(ranks) if use_rank else None)
    config = SearchConfig(trials=int(trials), population=int(population), seed=int(seed),
                          objectives=("quality", "bytes") + (("effective_macs",) if cost != "none" else ()),
                          max_drop=max_drop / 100 or None, max_bytes=int(max_kb * 1000) or None)
settings = (name, space, config)


def run() -> None:
    """Run (or continue) the search of these settings, redrawing the front each generation."""
    saved = st.session_state.get(STUDY)
    study = saved[1] if saved and saved[0] == settings else create_study(config)
    st.session_state[STUDY] = (settings, study)  # kept before running: Stop leaves the trials done so far
    evaluator = policy_cache.evaluator(name, st.session_state.setdefault(f"search_cache_{name}", {}))
    warm_start(study, evaluator, space, config)
    bar, chart = st.progress(0.0, text="Searching…"), st.empty()

    def moved(study: optuna.Study, trial) -> None:
        done = complete_count(study)
        bar.progress(min(done / config.trials, 1.0), text=f"{done} of {config.trials} trials "
                                                            f"({evaluator.misses} measured, the rest from the cache)")

    def redraw(generation: int) -> None:
        chart.plotly_chart(search_front(trials_frame(study), generation), width="stretch", key=f"search_live_{generation}")

    work(study, make_objective(evaluator, space, config), config.trials,
         callbacks=[moved, GenerationLog(config.population, redraw)])
    bar.empty()
    chart.empty()


left, right = st.columns([1, 5])
clicked = left.button("Run search", key="search_run", type="primary")
right.button("Stop", key="search_stop", help="Keeps the trials done so far; Run continues from them.")
if clicked:
    with user_errors():
        run()
saved = st.session_state.get(STUDY)
if not saved or saved[0] != settings:
    st.info("Press **Run search**: 200 trials of digits-mlp take well under a minute on an idle 2-core server.")
    st.stop()
study = saved[1]
frame = trials_frame(study)
if frame.empty:
    st.info("No trial finished yet: press Run search to continue.")
    st.stop()
if len(frame) < config.trials:
    st.warning(f"Stopped after {len(frame)} of {config.trials} trials: Run search continues.")

last = int(frame["generation"].max())
generation = st.slider("Replay generations", 0, last, last, key="search_generation") if last else 0
st.plotly_chart(search_front(frame, generation), width="stretch", key="search_front")

best = front(frame, config.objectives)
metric = frame["metric"].iloc[0]
st.subheader(f"Pareto front: {len(best)} policies ({len(frame)} trials)")
table = best.assign(**{metric: best["quality"].map("{:.2%}".format),
                       "drop (points)": ((best["baseline_quality"] - best["quality"]) * 100).map("{:+.2f}".format),
                       "size": best["bytes"].map(format_bytes)})
st.dataframe(table[["number", "generation", metric, "drop (points)", "size", "effective_macs", "policy"]],
             hide_index=True, width="stretch")
for row in best.itertuples():
    policy_cache.record_point(name, row.recipe, PAGE, f"search #{row.number}: {row.policy}")
choice = st.selectbox("Policy to apply", list(best.index), key="search_choice",
                      format_func=lambda i: f"#{best.number[i]} · {best.quality[i]:.2%} · {format_bytes(best.bytes[i])}")
if st.button("Apply", key="search_apply", help="Makes it the Pipeline page's recipe (the front is already on Trade-offs)."):
    policy_cache.apply_recipe(best.recipe[choice])
    st.success(f"Applied trial #{best.number[choice]}: the Pipeline and Export pages now use it.")
st.caption(f"Recipe of trial #{best.number[choice]}: `{best.recipe[choice]}`")

with st.expander("Which genes matter (Optuna's parameter importances)"):
    if st.toggle("Compute", False, key="search_importance", help="fANOVA over the finished trials; a few seconds."):
        with user_errors():
            st.plotly_chart(optuna.visualization.plot_param_importances(
                study, target=lambda t: t.values[0], target_name=metric,
                evaluator=optuna.importance.FanovaImportanceEvaluator(seed=0)), width="stretch", key="search_importances")
