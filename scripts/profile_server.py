"""Profile a Streamlit server's script runs: `python scripts/profile_server.py OUT.pstats [streamlit run args…]`.

py-spy is not installed here, and cProfile only sees the thread it is enabled in, while Streamlit runs every
rerun in a thread of its own. So this launcher wraps the function the script runner calls to execute a run
(`exec_func_with_error_handling`) with a `cProfile.Profile` of that thread, adds each run's statistics to one
total, and writes the total to OUT.pstats every few seconds (and the wall time of every run, with its page, to
OUT.runs.json). Nothing in the app changes: without this launcher there is no hook at all. Read the result with
`python -m pstats OUT.pstats` (`sort cumulative`, `stats 40`).

Example, against a room:  python scripts/profile_server.py /tmp/room.pstats --server.port 8765
                          python benchmarks/bench_room.py --url http://localhost:8765 --pid <pid>
"""
from __future__ import annotations

import cProfile
import json
import pstats
import sys
import threading
import time
from pathlib import Path

import streamlit.runtime.scriptrunner.script_runner as script_runner
from streamlit.web import cli

REPO = Path(__file__).resolve().parents[1]
DUMP_EVERY_S = 5.0

_lock = threading.Lock()
_total: pstats.Stats | None = None
_runs: list[dict] = []
_last_dump = 0.0


def _dump(out: Path) -> None:
    global _last_dump
    if _total is not None:
        _total.dump_stats(out)
    out.with_suffix(".runs.json").write_text(json.dumps(_runs))
    _last_dump = time.monotonic()


def install(out: Path) -> None:
    """Profile every run the script runner executes (full runs and fragment runs alike)."""
    original = script_runner.exec_func_with_error_handling

    def profiled(func, ctx):
        global _total
        profile = cProfile.Profile()
        start = time.perf_counter()
        profile.enable()
        try:
            return original(func, ctx)
        finally:
            profile.disable()
            seconds = time.perf_counter() - start
            with _lock:
                stats = pstats.Stats(profile)
                if _total is None:
                    _total = stats
                else:
                    _total.add(stats)
                _runs.append({"page": getattr(ctx, "page_script_hash", ""), "fragment": bool(ctx.fragment_ids_this_run),
                              "seconds": round(seconds, 4), "at": time.time()})
                if time.monotonic() - _last_dump > DUMP_EVERY_S:
                    _dump(out)

    script_runner.exec_func_with_error_handling = profiled


if __name__ == "__main__":
    target = Path(sys.argv[1])
    install(target)
    sys.argv = ["streamlit", "run", str(REPO / "app.py"), "--server.headless", "true", "--server.fileWatcherType",
                "none", "--browser.gatherUsageStats", "false", *sys.argv[2:]]
    sys.exit(cli.main())
