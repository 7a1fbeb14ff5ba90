"""Process-wide settings for a server that runs many short script threads (one per rerun) for a room of sessions.

Applied once, when the first page imports ui.session; each can be overridden by an environment variable.

- The interpreter's switch interval. Every element a script draws is handed to the server's event loop through a
  socket write, which releases the GIL; while another thread computes in Python (a rerun, a background deployment)
  getting it back takes up to the switch interval (5 ms by default): a run of a hundred elements, up to half a
  second of waiting. 1 ms (`CLAB_SWITCH_INTERVAL_S`) shortens that wait.
- glibc's malloc arenas. glibc gives threads their own arenas (up to eight per core) and returns little of what is
  freed in them to the system, so a server whose reruns run in ever new threads keeps growing after a room has
  left (benchmarks/bench_room.py measures it). Two arenas (`CLAB_MALLOC_ARENAS`, or glibc's own MALLOC_ARENA_MAX
  when set) keep freed memory reusable; the threads mostly wait on the GIL anyway. Skipped where libc is not glibc.
- Giving freed memory back. Even so, glibc returns freed heap memory to the system only from the top of a heap, so
  what a room's reruns freed below it stays resident. One daemon thread calls glibc's `malloc_trim(0)` every
  `TRIM_S` seconds (`CLAB_TRIM_S`, 0: never), which returns every free page (a few milliseconds; ctypes releases the
  GIL meanwhile).
- The cyclic garbage collector. A full collection walks every object the process tracks: with torch, Plotly,
  Streamlit and the core imported, some 340,000 of them, 70–250 ms with the GIL held, while every session waits.
  Allocation-heavy reruns set one off every few seconds. Those objects live as long as the process, so one
  collection at start-up, then `gc.freeze()`, moves them to the permanent generation that collections skip; what
  reruns create is collected as before.
"""
from __future__ import annotations

import ctypes
import gc
import os
import sys
import threading
import time
from collections.abc import Callable


def _setting(name: str, default: float, low: float, high: float) -> float:
    """The environment variable `name` as a number in [low, high] (`default` when unset); one clear line if not."""
    raw = os.environ.get(name)
    if raw is None:
        return default
    try:
        value = float(raw)
    except ValueError:
        value = float("nan")
    if not low <= value <= high:  # also NaN
        raise ValueError(f"{name}={raw!r}: expected a number from {low:g} to {high:g}")
    return value


SWITCH_INTERVAL_S = _setting("CLAB_SWITCH_INTERVAL_S", 0.001, 1e-4, 0.1)
MALLOC_ARENAS = int(_setting("CLAB_MALLOC_ARENAS", 2, 0, 64))  # 0: glibc's own default
M_ARENA_MAX = -8  # glibc's mallopt parameter number (malloc.h)
TRIM_S = _setting("CLAB_TRIM_S", 30.0, 0, 3600)  # 0: never
_trimmer: threading.Thread | None = None
_imports_frozen = False


def apply() -> None:
    """Set the switch interval and, on glibc, the arena limit (unless MALLOC_ARENA_MAX already set it) and start
    giving freed memory back; freeze what the imports made (once per process)."""
    sys.setswitchinterval(SWITCH_INTERVAL_S)
    _freeze_imports()
    try:
        libc = ctypes.CDLL("libc.so.6")
    except OSError:  # not glibc
        return
    if "MALLOC_ARENA_MAX" not in os.environ and MALLOC_ARENAS > 0 and hasattr(libc, "mallopt"):
        libc.mallopt(M_ARENA_MAX, MALLOC_ARENAS)
    if TRIM_S > 0 and hasattr(libc, "malloc_trim"):
        _start_trimming(libc.malloc_trim)


def _freeze_imports() -> None:
    """Collect once, then leave every object alive now (the imported modules, mostly) out of later collections."""
    global _imports_frozen
    if _imports_frozen:
        return
    _imports_frozen = True
    gc.collect()
    gc.freeze()


def _start_trimming(malloc_trim: Callable[[int], int]) -> None:
    """One daemon thread per process that gives freed memory back every TRIM_S seconds."""
    global _trimmer
    if _trimmer is not None:
        return

    def trim_forever() -> None:
        while True:
            time.sleep(TRIM_S)
            malloc_trim(0)

    _trimmer = threading.Thread(target=trim_forever, name="malloc-trim", daemon=True)
    _trimmer.start()
