"""Profile a Streamlit server's script runs: `python scripts/profile_server.py OUT.pstats [streamlit run args…]`.

With `--memory` instead of OUT.pstats it reports memory instead: SIGUSR1 writes /tmp/clab-memory-<pid>.txt with
resident memory, the sessions the runtime still holds, what the shared caches hold, and resident memory again after
glibc's malloc_trim(0) (the difference is freed memory the allocator had not returned to the system); SIGUSR2
empties every shared cache first and writes resident memory before and after (what stays is not the caches). tracemalloc
was tried first: its snapshot of a heap with torch loaded took minutes and stalled the server.

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
import os
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


def _rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def _malloc_summary(libc) -> str:
    """glibc's own account (malloc_info): heap bytes it holds from the system, of which free, and bytes in mmaps."""
    import ctypes
    import re
    import tempfile

    libc.fopen.restype = ctypes.c_void_p  # a FILE*, not an int
    with tempfile.NamedTemporaryFile(suffix=".xml") as out:
        stream = ctypes.c_void_p(libc.fopen(out.name.encode(), b"w"))
        libc.malloc_info(0, stream)
        libc.fclose(stream)
        xml = Path(out.name).read_text()
    whole = xml[xml.rindex("</heap>") :]  # the totals over every arena follow the last arena
    size = {f"{kind} {what}": int(value) for what, kind, value in
            re.findall(r'<(total|system|aspace) type="(\w+)"(?: count="\d+")? size="(\d+)"', whole)}
    free = size.get("fast total", 0) + size.get("rest total", 0)
    return (f"malloc_mb heap {size.get('current system', 0) / 2**20:.1f} (free in it {free / 2**20:.1f}), "
            f"mmapped {size.get('mmap total', 0) / 2**20:.1f}")


def install_memory() -> None:
    """A report on every SIGUSR1, the caches emptied on SIGUSR2 (see the module docstring)."""
    import ctypes
    import gc
    import signal
    from collections import Counter

    from streamlit.runtime import Runtime

    libc = ctypes.CDLL("libc.so.6")

    def append(text: str) -> None:
        with open(f"/tmp/clab-memory-{os.getpid()}.txt", "a") as file:
            file.write(text + "\n\n")

    def report(*_) -> None:
        lines = [f"rss_mb {_rss_mb():.1f}"]
        gc.collect()
        lines.append(f"rss_mb after gc.collect {_rss_mb():.1f}")
        try:
            manager = Runtime.instance()._session_mgr
            lines.append(f"sessions {len(manager.list_sessions())} active {len(manager.list_active_sessions())}")
        except Exception as err:  # noqa: BLE001 - diagnostics only
            lines.append(f"sessions ? ({err})")
        modules = sys.modules
        if "ui.figure_cache" in modules and "ui.deploy_jobs" in modules:
            lines.append(f"figures {len(modules['ui.figure_cache']._figures)} "
                         f"deployments {len(modules['ui.deploy_jobs'].jobs._results)}")
        lines.append(f"threads {threading.active_count()}")
        try:  # what Streamlit's caches hold, by cached function (its own byte counts)
            held = Counter()
            for family, stats in Runtime.instance().stats_mgr.get_stats().items():
                for stat in stats:
                    if hasattr(stat, "byte_length"):
                        held[f"{family} {getattr(stat, 'cache_name', '')}"] += stat.byte_length
            lines += [f"cache_mb {size / 2**20:.1f} {name}" for name, size in held.most_common(12)]
        except Exception as err:  # noqa: BLE001 - diagnostics only
            lines.append(f"caches ? ({err})")
        kinds = Counter(type(o).__name__ for o in gc.get_objects())
        lines.append("tracked objects " + ", ".join(f"{k} {n}" for k, n in kinds.most_common(12)))
        libc.malloc_trim(0)
        lines.append(f"rss_mb after malloc_trim {_rss_mb():.1f}")
        lines.append(_malloc_summary(libc))
        append("\n".join(lines))

    def emptied(*_) -> None:
        """Empty every shared cache, then report: what is left above the start is not the caches."""
        import streamlit as st

        before = _rss_mb()
        st.cache_data.clear()
        st.cache_resource.clear()
        if "ui.figure_cache" in sys.modules:
            sys.modules["ui.figure_cache"].clear()
        if "ui.deploy_jobs" in sys.modules:
            sys.modules["ui.deploy_jobs"].jobs.clear()
        gc.collect()
        libc.malloc_trim(0)
        append(f"caches emptied: rss_mb {before:.1f} -> {_rss_mb():.1f}")

    signal.signal(signal.SIGUSR1, report)
    signal.signal(signal.SIGUSR2, emptied)


if __name__ == "__main__":
    if sys.argv[1] == "--memory":
        install_memory()
    else:
        install(Path(sys.argv[1]))
    sys.argv = ["streamlit", "run", str(REPO / "app.py"), "--server.headless", "true", "--browser.gatherUsageStats", "false", *sys.argv[2:]]
    sys.exit(cli.main())
