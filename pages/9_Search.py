"""Search: NSGA-II (Optuna) over per-layer policies; the Pareto front, generation by generation, and "apply"."""
import optuna
import streamlit as st

from compressor.figures.search import search_front
from compressor.policy import BIT_WORDS, DEPLOYED_INT8, FP32, bits_word, int8_deployable, policy_layers
from compressor.search import (
    OBJECTIVE_HELP, GenerationLog, SearchConfig, SearchSpace, continue_search, create_study, deploys, front, trials_frame,
)
from compressor.units import format_bytes
from compressor.workers import complete_count
from ui import cache, policy_cache
from ui.display import user_errors
from ui.session import model_picker, widget_label

PAGE = "Search"
BITS = (FP32, DEPLOYED_INT8, 8, 6, 5, 4, 3, 2, 1)  # DEPLOYED_INT8 only where the model deploys (int8_deployable)
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

model = cache.sample(name).model
deployable = int8_deployable(model)
attention = any(".attention." in layer for layer in policy_layers(model))  # Transformer blocks (minilm-l6)
c1, c2, c3, c4 = st.columns(4)
trials = c1.number_input("Budget (trials)", 10, 2000, 200, 10, key="search_trials",
                         help="Complete evaluations; a policy seen before comes from the cache.")
population = c2.number_input("Population", 4, 200, 20, 2, key="search_population", help="Policies per generation.")
seed = c3.number_input("Seed", 0, 10_000, 0, key="search_seed", help="Same seed and settings, same search.")
costs = ["none", "effective_macs"] + (["latency_ms"] if deployable else [])
cost = c4.selectbox("Third objective", costs, key="search_cost",
                    help="Besides quality up and bytes down. " + "; ".join(f"{o}: {OBJECTIVE_HELP[o]}" for o in costs[1:]))
c1, c2, c3, c4 = st.columns(4)
use_prune = c1.toggle("Pruning genes", True, key="search_use_prune", help="Pruned fraction per layer.")
amounts = c1.slider("Pruning amount range", 0.0, 0.95, (0.0, 0.95), 0.05, key="search_amounts", disabled=not use_prune)
bits = c2.multiselect("Bit widths", [b for b in BITS if deployable or b != DEPLOYED_INT8],
                      default=(FP32, 8, 6, 5, 4, 3, 2), key="search_bits",
                      format_func=lambda b: bits_word(b) if b in BIT_WORDS.values() else f"{b}-bit",
                      help="Per layer. fp32 keeps the layer as is; int8-deployed runs it as dynamic int8 on ONNX Runtime "
                           "(mixed precision: the other layers stay fp32 there), measured deployed.")
use_rank = c3.toggle("Low-rank genes", False, key="search_use_rank", help="Rank ratio per layer; 1.0 keeps it whole.")
ranks = c3.slider("Rank ratio range", 0.05, 1.0, (0.25, 1.0), 0.05, key="search_ranks", disabled=not use_rank)
share = c3.toggle("One gene per attention block", attention, key=f"search_share_{widget_label(name)}", disabled=not attention,
                  help="A block's query, key, value and output projections share one gene (CLI: --share attention): "
                       "half the genes for a small budget." if attention else "The model has no attention blocks.")
max_drop = c4.number_input("Max quality drop (points, 0 = none)", 0.0, 50.0, 2.0, 0.5, key="search_max_drop",
                           help="Accuracy points; for minilm-l6, points of mean cosine (0.5 = cosine ≥ 0.995).")
max_kb = c4.number_input("Max size (kB, 0 = none)", 0.0, 10_000.0, 0.0, 1.0, key="search_max_kb")
greedy_seeds = c2.number_input(
    "Greedy seeds", 0, 200, 0, 1, key="search_greedy_seeds",
    help="0 to the population: first-generation policies from greedy selection on a sensitivity run over these genes "
         "(AIMET's recipe), so the front starts at least as good as greedy's. The sensitivity run is measured first "
         "(each layer alone at a few settings of each gene); with a max drop, the most compressing greedy policy "
         "that holds it and its neighbours.")

with user_errors():
    space = SearchSpace(amounts=tuple(amounts) if use_prune else None, bits=tuple(bits) or None,
                        rank_ratios=tuple(ranks) if use_rank else None, share=("attention",) if share else ())
    config = SearchConfig(trials=int(trials), population=int(population), seed=int(seed),
                          objectives=("quality", "bytes") + ((cost,) if cost != "none" else ()),
                          max_drop=max_drop / 100 or None, max_bytes=int(max_kb * 1000) or None,
                          greedy_seeds=int(greedy_seeds))
deployed = deploys(space, config)
axis = "latency_ms" if "latency_ms" in config.objectives else "bytes"  # the front figure's x axis
settings = (name, space, config)


def run() -> None:
    """Run (or continue) the search of these settings, redrawing the front each generation."""
    saved = st.session_state.get(STUDY)
    study = saved[1] if saved and saved[0] == settings else create_study(config)
    st.session_state[STUDY] = (settings, study)  # kept before running: Stop leaves the trials done so far
    session_cache = st.session_state.setdefault(f"search_cache_{name}{'_deployed' if deployed else ''}", {})
    evaluator = policy_cache.evaluator(name, session_cache, deployed=deployed)
    bar, chart = st.progress(0.0, text="Searching…"), st.empty()

    def seeding(fraction: float, label: str) -> None:
        bar.progress(fraction, text=f"Greedy seeds: sensitivity run, {label}")

    def moved(study: optuna.Study, trial) -> None:
        done = complete_count(study)
        bar.progress(min(done / config.trials, 1.0), text=f"{done} of {config.trials} trials "
                                                            f"({evaluator.misses} measured, the rest from the cache)")

    def redraw(generation: int) -> None:
        chart.plotly_chart(search_front(trials_frame(study), generation, axis), width="stretch",
                           key=f"search_live_{generation}")

    continue_search(study, evaluator, space, config, callbacks=[moved, GenerationLog(config.population, redraw)],
                    progress=seeding)
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
    st.info("Press **Run search**: 200 trials of digits-mlp take well under a minute on an idle 2-core server."
            + (" Deployed, every policy is exported, quantized and timed on ONNX Runtime: seconds each on digits-mlp, "
               "about ten on minilm-l6." if deployed else ""))
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
st.plotly_chart(search_front(frame, generation, axis), width="stretch", key="search_front")

best = front(frame, config.objectives)
metric = frame["metric"].iloc[0]
st.subheader(f"Pareto front: {len(best)} policies ({len(frame)} trials)")
table = best.assign(**{metric: best["quality"].map("{:.2%}".format),
                       "drop (points)": ((best["baseline_quality"] - best["quality"]) * 100).map("{:+.2f}".format),
                       "size": best["bytes"].map(format_bytes)})
latency = ["latency_ms", "speedup"] if deployed else []
if deployed:
    table = table.assign(speedup=(best["baseline_latency_ms"] / best["latency_ms"]).map("{:.2f}×".format))
st.dataframe(table[["number", "generation", metric, "drop (points)", "size", "effective_macs", *latency, "policy"]],
             hide_index=True, width="stretch")
if deployed:
    st.caption("Deployed on ONNX Runtime (int8-deployed layers as dynamic int8, the rest fp32): size is the .onnx file; "
               "latency is the median at batch 32 on one thread, speedup against the fp32 graph timed in the same run. "
               "Times are this server's, at its load at the time.")
seeded = study.user_attrs.get("greedy_seed_evaluations")
if seeded:
    st.caption(f"The greedy seeds' sensitivity run measured {seeded} policies before the first trial.")
if not deployed:  # Trade-offs compares simulated measures; a deployed search's are ONNX Runtime's
    for row in best.itertuples():
        policy_cache.record_point(name, row.recipe, PAGE, f"search #{row.number}: {row.policy}")
choice = st.selectbox("Policy to apply", list(best.index), key="search_choice",
                      format_func=lambda i: f"#{best.number[i]} · {best.quality[i]:.2%} · {format_bytes(best.bytes[i])}")
mixed = DEPLOYED_INT8 in best.policy[choice]
if st.button("Apply", key="search_apply", disabled=mixed,
             help="A policy with int8-deployed layers is a deployment, not a recipe: its layers are in the table."
             if mixed else "Makes it the Pipeline page's recipe (the front is already on Trade-offs)."):
    policy_cache.apply_recipe(best.recipe[choice])
    st.success(f"Applied trial #{best.number[choice]}: the Pipeline and Export pages now use it.")
st.caption(f"Recipe of trial #{best.number[choice]}: `{best.recipe[choice]}`")

with st.expander("Which genes matter (Optuna's parameter importances)"):
    if st.toggle("Compute", False, key="search_importance", help="fANOVA over the finished trials; a few seconds."):
        with user_errors():
            st.plotly_chart(optuna.visualization.plot_param_importances(
                study, target=lambda t: t.values[0], target_name=metric,
                evaluator=optuna.importance.FanovaImportanceEvaluator(seed=0)), width="stretch", key="search_importances")
