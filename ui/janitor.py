"""Uploads go with their session: the uploads of a session whose browser tab is gone are deleted.

A session outlives its websocket. A reload opens a new Streamlit session carrying the same `?s=` id
(ui/session.py), so an upload must not go when a tab closes; it goes when no tab has carried its session's id for
`GRACE_S` seconds (2 minutes: a reload, or a laptop waking up, reconnects well within it; Streamlit itself keeps a
disconnected session for the same 2 minutes, `MemorySessionStorage`).

Liveness lives in the file system, because several server processes (`scripts/serve.sh --workers N`) share the
session folder while each session lives on one of them (sticky sessions). Each process runs one daemon thread that
every `BEAT_S` seconds
1. refreshes `<session dir>/heartbeats/<session id>` (its modification time) for every session one of its connected
   tabs carries (Streamlit's `Runtime.is_active_session`, documented as safe from any thread), and
2. sweeps: deletes `<session dir>/uploads/<session id>/` of every session, whichever process served it, whose
   heartbeat is older than `GRACE_S` (without a heartbeat: whose uploads folder is), and stale heartbeats.
A process never deletes an upload of a session alive on another process: that one refreshes the heartbeat every
`BEAT_S`, well inside `GRACE_S`. What the thread keeps per tab (two strings and a time) is dropped once the tab has
been gone for `GRACE_S`.

Everything the process computed from a session's own models goes with the files (`on_gone`, registered by
ui/owned.py: models, reports, deployments, figures, runs).

`Janitor` itself is plain Python with an injectable clock and liveness test (tests drive it); `watch` attaches the
running Streamlit session to the process's janitor and starts its thread on a real server only.
"""
from __future__ import annotations

import logging
import os
import shutil
import threading
import time
from collections.abc import Callable
from pathlib import Path

BEAT_S = 20.0  # how often a process refreshes its live sessions' heartbeats and sweeps
GRACE_S = 120.0  # a session whose heartbeat is older than this has no tab left: its uploads are deleted

_LOG = logging.getLogger(__name__)


class Janitor:
    """Heartbeats for the sessions this process's tabs carry, and the sweep that deletes the uploads of the others."""

    def __init__(self, root: Path, is_active: Callable[[str], bool], clock: Callable[[], float] = time.time,
                 grace_s: float | None = None, on_gone: Callable[[str], None] | None = None) -> None:
        self.root = root  # the session folder: uploads/<id>/ and heartbeats/<id> inside it
        self.is_active = is_active  # Streamlit session id -> is its tab connected now?
        self.clock = clock
        self.grace_s = GRACE_S if grace_s is None else grace_s
        self.on_gone = on_gone  # called with a session id just before its uploads are deleted
        self._tabs: dict[str, tuple[str, float]] = {}  # Streamlit session id -> (our session id, last seen connected)
        self._lock = threading.Lock()

    def heartbeat(self, session_id: str) -> Path:
        return self.root / "heartbeats" / session_id

    def attach(self, tab: str, session_id: str) -> None:
        """The Streamlit session `tab` (a browser tab) carries `session_id`: its heartbeat is fresh from now on."""
        with self._lock:
            self._tabs[tab] = (session_id, self.clock())
        self._touch(session_id)

    def beat(self) -> None:
        """Refresh the heartbeat of every session a connected tab carries; forget tabs gone for the grace period."""
        now = self.clock()
        with self._lock:
            tabs = list(self._tabs.items())
        for tab, (session_id, seen) in tabs:
            if self.is_active(tab):
                with self._lock:
                    self._tabs[tab] = (session_id, now)
                self._touch(session_id)
            elif now - seen > self.grace_s:
                with self._lock:
                    if self._tabs.get(tab, (None, now))[1] == seen:  # not re-attached meanwhile
                        del self._tabs[tab]

    def sweep(self) -> list[str]:
        """Delete the uploads (and heartbeat) of every session whose heartbeat is older than the grace period, on
        whichever process it lived; returns the session ids whose uploads went."""
        cutoff = self.clock() - self.grace_s
        gone = []
        for folder in _children(self.root / "uploads"):
            beat = self.heartbeat(folder.name)
            if max(_mtime(beat), _mtime(folder)) < cutoff:
                if self.on_gone is not None:
                    self.on_gone(folder.name)
                shutil.rmtree(folder, ignore_errors=True)
                gone.append(folder.name)
        for beat in _children(self.root / "heartbeats"):
            if _mtime(beat) < cutoff and not (self.root / "uploads" / beat.name).exists():
                beat.unlink(missing_ok=True)
        return gone

    def run_once(self) -> list[str]:
        """One tick of the thread: heartbeats first (this process's sessions are never swept), then the sweep."""
        self.beat()
        return self.sweep()

    def tabs(self) -> dict[str, str]:
        """Tab -> session id, for the tabs this janitor still remembers."""
        with self._lock:
            return {tab: session_id for tab, (session_id, _) in self._tabs.items()}

    def _touch(self, session_id: str) -> None:
        path = self.heartbeat(session_id)
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        path.touch()
        now = self.clock()
        os.utime(path, (now, now))


def _children(folder: Path) -> list[Path]:
    try:
        return list(folder.iterdir())
    except OSError:  # not made yet
        return []


def _mtime(path: Path) -> float:
    try:
        return path.stat().st_mtime
    except OSError:  # missing, or removed by another process meanwhile
        return float("-inf")


# ---------------------------------------------------------------- the process's janitor, on a real server

_janitor: Janitor | None = None
_start_lock = threading.Lock()
_hooks: list[Callable[[str], None]] = []


def on_gone(hook: Callable[[str], None]) -> None:
    """Call hook(session id) just before the process's janitor deletes that session's uploads, e.g. to drop what was
    computed from its models (ui/owned.py)."""
    if hook not in _hooks:
        _hooks.append(hook)


def _run_hooks(session_id: str) -> None:
    for hook in _hooks:
        hook(session_id)


def watch(session_id: str, root: Path) -> None:
    """Once per run (ui.session.start): the running Streamlit session carries `session_id`. On a real server this
    starts the process's janitor thread the first time."""
    from streamlit.runtime import Runtime
    from streamlit.runtime.scriptrunner import get_script_run_ctx

    ctx = get_script_run_ctx()
    # AppTest puts a MagicMock(spec=Runtime) in Runtime's place: no sessions to watch, so no thread
    if ctx is None or not Runtime.exists() or type(Runtime.instance()) is not Runtime:
        return
    _process_janitor(root, Runtime.instance().is_active_session).attach(ctx.session_id, session_id)


def _process_janitor(root: Path, is_active: Callable[[str], bool]) -> Janitor:
    global _janitor
    with _start_lock:
        if _janitor is None:
            _janitor = Janitor(root, is_active, on_gone=_run_hooks)
            threading.Thread(target=_loop, args=(_janitor,), name="clab-upload-janitor", daemon=True).start()
        return _janitor


def _loop(janitor: Janitor) -> None:
    while True:
        try:
            gone = janitor.run_once()
            if gone:
                _LOG.info("deleted the uploads of %d session(s) with no tab left", len(gone))
        except Exception:  # noqa: BLE001 - the thread must outlive one bad sweep (a full disk, a permission)
            _LOG.exception("upload janitor: sweep failed; retrying in %s s", BEAT_S)
        time.sleep(BEAT_S)
