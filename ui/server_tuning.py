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
"""
from __future__ import annotations

import ctypes
import os
import sys

SWITCH_INTERVAL_S = float(os.environ.get("CLAB_SWITCH_INTERVAL_S", "0.001"))
MALLOC_ARENAS = int(os.environ.get("CLAB_MALLOC_ARENAS", "2"))
M_ARENA_MAX = -8  # glibc's mallopt parameter number (malloc.h)


def apply() -> None:
    """Set the switch interval and, on glibc, the arena limit (unless MALLOC_ARENA_MAX already set it)."""
    sys.setswitchinterval(SWITCH_INTERVAL_S)
    if "MALLOC_ARENA_MAX" in os.environ or MALLOC_ARENAS <= 0:
        return
    try:
        ctypes.CDLL("libc.so.6").mallopt(M_ARENA_MAX, MALLOC_ARENAS)
    except (OSError, AttributeError):  # not glibc
        pass
