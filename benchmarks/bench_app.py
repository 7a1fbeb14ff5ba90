"""Server time of the dashboard, printed as JSON: `python benchmarks/bench_app.py`.

Driven by `streamlit.testing.v1.AppTest`, which runs a page's script in this process exactly as the server
does (without the browser): the time of `at.run()` is the server time of one rerun.

For each sample model and each page with a main slider (Pruning: amount, Quantization: bits):
- the first render with cold data caches (`st.cache_data` and the cached compressed models cleared; the loaded
  samples stay, as on a server that has been up for a while), and in it the time of the sweep curve;
- the same sweep again (cached);
- MOVES slider moves, values cycling so that the first pass over the values computes new configurations
  (fresh: a new user's first look) and the later passes read them from the cache (cached);
  p50 and p90 over all moves, and the median of the fresh and of the cached ones.
Budgets (issue 3): a slider move ≤ 300 ms p50 on digits-mlp and ≤ 1 s on digits-cnn; a sweep ≤ 3 s the first time.
"""
from __future__ import annotations

import json
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
os.chdir(REPO)  # pages and the .streamlit/ config are found relative to the repo root

import streamlit as st  # noqa: E402
from streamlit.testing.v1 import AppTest  # noqa: E402
from streamlit.logger import set_log_level  # noqa: E402

set_log_level("error")  # cached functions used outside a script run (imports, cache clears) warn: noise here

import ui.cache  # noqa: E402
import ui.sweeps  # noqa: E402

MODELS = ("digits-mlp", "digits-cnn")
MOVE_BUDGET_MS = {"digits-mlp": 300.0, "digits-cnn": 1000.0}  # p50 of a slider move
SWEEP_BUDGET_MS = 3000.0  # first time
MOVES = 15
RUN_TIMEOUT_S = 300


@dataclass(frozen=True)
class SliderPage:
    """A page and the slider a user moves on it, with the values the benchmark cycles through."""

    script: str
    move: Callable[[AppTest, object], None]  # sets the widget's value (the run is timed separately)
    values: tuple  # cycled: distinct from the page's default, so the first pass computes, the next ones read caches


PAGES = {
    "Pruning": SliderPage(
        "pages/1_Pruning.py", lambda at, v: at.select_slider(key="prune_amount").set_value(v),
        (0.6, 0.7, 0.8, 0.9, 0.95),
    ),
    "Quantization": SliderPage(
        "pages/2_Quantization.py", lambda at, v: at.slider(key="quant_bits").set_value(v),
        (5, 6, 3, 8, 2),
    ),
    "Low-rank": SliderPage(
        "pages/3_Low-rank.py", lambda at, v: at.slider(key="lowrank_ratio").set_value(v),
        (0.3, 0.7, 0.2, 0.4, 0.6),
    ),
    "Pipeline": SliderPage(
        "pages/4_Pipeline.py", lambda at, v: at.select_slider(key="pipeline_0_amount").set_value(v),
        (0.5, 0.7, 0.8, 0.95, 0.6),
    ),
}


class SweepTimer:
    """Wraps the sweep helpers pages call (`ui.sweeps.run_sweep`, `ui.cache.run_sweep`) to time each sweep.

    Pages import them on every run (`from ui.sweeps import run_sweep`), so they pick up the wrappers.
    """

    TARGETS = ((ui.sweeps, "run_sweep"), (ui.cache, "run_sweep"))

    def __init__(self) -> None:
        self.times_ms: list[float] = []
        self._originals = {(module, attr): getattr(module, attr) for module, attr in self.TARGETS if hasattr(module, attr)}

    def _timed(self, original: Callable) -> Callable:
        def timed(*args, **kwargs):
            start = time.perf_counter()
            try:
                return original(*args, **kwargs)
            finally:
                self.times_ms.append((time.perf_counter() - start) * 1000)

        return timed

    def __enter__(self) -> "SweepTimer":
        for (module, attr), original in self._originals.items():
            setattr(module, attr, self._timed(original))
        return self

    def __exit__(self, *exc) -> None:
        for (module, attr), original in self._originals.items():
            setattr(module, attr, original)

    def take(self) -> float | None:
        """Total sweep time since the last take (a page may draw more than one sweep), None if none ran."""
        total = sum(self.times_ms) if self.times_ms else None
        self.times_ms.clear()
        return total


def clear_data_caches() -> None:
    """What a configuration never seen before costs: reports, sweeps and compressed models are recomputed."""
    st.cache_data.clear()
    ui.cache.stage.clear()  # every compressed model is a cached stage


def timed_run(at: AppTest) -> float:
    start = time.perf_counter()
    at.run(timeout=RUN_TIMEOUT_S)
    elapsed = (time.perf_counter() - start) * 1000
    if at.exception:
        raise RuntimeError(f"{at.exception[0].message}")
    return elapsed


def ms(values: list[float]) -> float | None:
    return round(float(statistics.median(values)), 1) if values else None


def bench_page(model: str, page: SliderPage, timer: SweepTimer) -> dict:
    clear_data_caches()
    at = AppTest.from_file(str(REPO / page.script), default_timeout=RUN_TIMEOUT_S)
    at.session_state["model_name"] = model
    timer.take()
    first_render = timed_run(at)
    sweep_first = timer.take()
    rerun_cached = timed_run(at)  # nothing changed: every cache hits
    sweep_cached = timer.take()

    fresh, cached, seen = [], [], set()
    for i in range(MOVES):
        value = page.values[i % len(page.values)]
        page.move(at, value)
        elapsed = timed_run(at)
        (cached if value in seen else fresh).append(elapsed)
        seen.add(value)
    moves = fresh + cached
    p50 = float(np.percentile(moves, 50))
    return {
        "first_render_cold_ms": round(first_render, 1),
        "sweep_first_ms": sweep_first and round(sweep_first, 1),
        "sweep_cached_ms": sweep_cached and round(sweep_cached, 1),
        "rerun_cached_ms": round(rerun_cached, 1),
        "move_p50_ms": round(p50, 1),
        "move_p90_ms": round(float(np.percentile(moves, 90)), 1),
        "move_fresh_median_ms": ms(fresh),
        "move_cached_median_ms": ms(cached),
        "moves": {"fresh": len(fresh), "cached": len(cached)},
        "move_budget_ms": MOVE_BUDGET_MS[model],
        "move_within_budget": p50 <= MOVE_BUDGET_MS[model],
        "sweep_within_budget": sweep_first is None or sweep_first <= SWEEP_BUDGET_MS,
    }


def main() -> None:
    load_before = os.getloadavg()
    started = time.perf_counter()
    results = {}
    with SweepTimer() as timer:
        warm = AppTest.from_file(str(REPO / "app.py"), default_timeout=RUN_TIMEOUT_S)  # imports, samples loaded once
        for model in MODELS:
            warm.session_state["model_name"] = model
            warm.run(timeout=RUN_TIMEOUT_S)
        for model in MODELS:
            results[model] = {name: bench_page(model, page, timer) for name, page in PAGES.items()}
    print(json.dumps({
        "machine": {"python": platform.python_version(), "cpus": os.cpu_count(),
                    "load_average_before": [round(x, 2) for x in load_before],
                    "load_average_after": [round(x, 2) for x in os.getloadavg()]},
        "budgets_ms": {"move_p50": MOVE_BUDGET_MS, "sweep_first": SWEEP_BUDGET_MS},
        "results": results,
        "all_within_budget": all(r["move_within_budget"] and r["sweep_within_budget"]
                                 for pages in results.values() for r in pages.values()),
        "wall_s": round(time.perf_counter() - started, 1),
    }, indent=2))


if __name__ == "__main__":
    main()
