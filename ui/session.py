"""What a session keeps: the picked model, every control's value, the Trade-offs points and pins, the Pipeline recipe.

Across pages. Streamlit forgets a widget's value when its page is left (widget keys are dropped at the end of a
run that did not draw them). `persistent(key, default)` keeps the value under a plain key as well, in
`st.session_state[SETTINGS]`, and puts it back before the widget is drawn again: one mechanism for every control
of every page (the model picker keeps its plain key `MODEL`).

Across reloads. A reload starts a new Streamlit session with the same URL, so the session's id travels in the
URL (`?s=<id>`, 128 random bits: unguessable) and what the session keeps is written, as JSON, to one file per id
in a server directory (`CLAB_SESSION_DIR`, default a folder in the system's temp dir; processes behind one proxy
share it). The first run of a new session with a known id reads it back, but only in the browser that wrote it:
a URL is not a secret (an instructor's address bar is on the projector), so the file also names its browser
(`browser_key`: a digest of the token in Streamlit's XSRF cookie, which a browser keeps across reloads and
another browser does not have). Another browser with the same URL gets a new id and sees nothing of the first
session (its uploads included). An id with no file is not adopted either. With XSRF protection off there is no
such cookie, and the id alone decides, as it would anyway.
The server holds nothing per session in memory beyond Streamlit's own session state (and, for 2 minutes after a
tab closes, ui/janitor.py's note of it); files untouched for `SESSION_MAX_AGE_S` are deleted when a new session
starts. A session's own models (uploads) go much sooner: when no tab has carried its id for 2 minutes (ui/janitor.py).
"""
from __future__ import annotations

import functools
import hashlib
import json
import math
import os
import re
import secrets
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import streamlit as st
import torch
from streamlit.runtime.pages_manager import PagesManager

from compressor import list_samples
from ui import janitor, server_tuning

MODEL = "model_name"  # the picked sample, shared by every page
POINTS = "tradeoff_points"  # every configuration evaluated this session: (model, recipe JSON) -> row
SETTINGS = "_settings"  # widget key -> its last value, kept while the widget's page is not shown
PIPELINE_STEPS = "pipeline_steps"  # the Pipeline page's recipe: list of {"id": int, "step": Step}
PIPELINE_RESTORED = "_pipeline_restored"  # a reloaded session's Pipeline recipe (JSON text) until the page reads it
SESSION_ID = "_session_id"
SAVED = "_session_saved"  # the text last written, so an unchanged session is not written again
QUERY_KEY = "s"  # ?s=<id>
ID_PATTERN = re.compile(r"[A-Za-z0-9_-]{22}")  # secrets.token_urlsafe(16)
SESSION_MAX_AGE_S = 7 * 24 * 3600
MAX_FILE_BYTES = 5_000_000  # a session file larger than this is not read back (it is ours, but bound it anyway)
XSRF_COOKIE = "_streamlit_xsrf"  # Streamlit sets it on every page load (server.enableXsrfProtection, on by default)
BROWSER = "_browser_key"  # this session's browser_key(), read once

_MISSING = object()
server_tuning.apply()  # switch interval, malloc arenas and trimming for a server of many short script threads
# app.py lists the pages with st.navigation; the pages/ folder only holds their files. Streamlit decides between that
# and its older folder-based menu when a server starts, by whether pages/ exists, and switches only once app.py has
# run: a fresh server whose first visitor follows a deep link (/Pruning) would otherwise never run app.py and show
# the folder's menu ("app", no icons) to everyone. Every page imports this module, so from its first run on app.py
# routes every session; that first run itself reruns once, through app.py (`model_picker`).
_rerun_through_app = PagesManager.uses_pages_directory is True
PagesManager.uses_pages_directory = False


# ---------------------------------------------------------------- the session file


def session_dir() -> Path:
    """Where session files live: $CLAB_SESSION_DIR, or compression-lab-sessions in the system temp dir."""
    return _made(Path(os.environ.get("CLAB_SESSION_DIR") or Path(tempfile.gettempdir()) / "compression-lab-sessions"))


@functools.lru_cache(maxsize=8)
def _made(path: Path) -> Path:
    """`path`, created once per process (not on every save: each system call hands the GIL to another thread)."""
    path.mkdir(parents=True, exist_ok=True, mode=0o700)
    return path


def _file(session_id: str) -> Path:
    return session_dir() / f"{session_id}.json"


def expire_old_files(max_age_s: float = SESSION_MAX_AGE_S) -> int:
    """Delete session files not written for max_age_s seconds; returns how many went. (Uploads go much sooner, when
    no tab carries their session: ui/janitor.py.)"""
    cutoff, removed = time.time() - max_age_s, 0
    for path in session_dir().glob("*.json"):
        try:
            if path.stat().st_mtime < cutoff:
                path.unlink()
                removed += 1
        except OSError:  # another process removed it first
            pass
    return removed


# ---------------------------------------------------------------- a session's own models (ui/uploads.py stores them)

OWN_PREFIX = "upload:"  # own model names: "upload:<session id>:<content hash>", only ever offered to that session
MAX_SHOWN_CHARS = 40  # an own model's display name shows at most this much of its file or folder name


def uploads_dir(session_id: str) -> Path:
    """The folder of one session's uploaded models: <session dir>/uploads/<session id>/<content hash>/."""
    return session_dir() / "uploads" / session_id


def own_model_owner(name: str) -> str | None:
    """The session id inside an own model's name; None for a sample name."""
    if not name.startswith(OWN_PREFIX):
        return None
    return name[len(OWN_PREFIX):].partition(":")[0]


def own_model_folder(name: str) -> Path:
    """Where an own model's files are: <session dir>/uploads/<session id>/<content hash>/."""
    session_id, _, digest = name[len(OWN_PREFIX):].partition(":")
    return uploads_dir(session_id) / digest


def display_name(name: str) -> str:
    """How every page, figure, CSV, file name and snippet names a model: a sample by its name, an own model as
    "your model (<what was brought>)", e.g. "your model (weights.safetensors)".

    An own model's name holds the session id, which is the key to the session (whoever has it sees the session's
    models and points): it must never reach a screen, a shared file or a widget key. Use this, `file_label` and
    `widget_label` wherever a model is named.
    """
    if not name.startswith(OWN_PREFIX):
        return name
    try:
        meta = json.loads((own_model_folder(name) / "meta.json").read_text(encoding="utf-8"))
        shown = str(meta.get("shown") or "")[:MAX_SHOWN_CHARS]
    except (OSError, ValueError):
        shown = ""
    return f"your model ({shown or name.rpartition(':')[2][:8]})"


def file_label(name: str) -> str:
    """The display name as a file-name part: "your-model-weights-safetensors" (letters, digits, _ and - only)."""
    return re.sub(r"[^A-Za-z0-9_-]+", "-", display_name(name)).strip("-") or "model"


def widget_label(name: str) -> str:
    """A model's part of a widget key (keys reach the browser): the name of a sample, "yours-<content hash>" for an
    own model (distinct per model, without the session id)."""
    return f"yours-{name.rpartition(':')[2]}" if name.startswith(OWN_PREFIX) else name


def own_models(session_id: str) -> dict[str, str]:
    """This session's own models: name -> one-line description (read from each upload's meta.json)."""
    models = {}
    for meta in sorted(uploads_dir(session_id).glob("*/meta.json"), key=lambda p: p.stat().st_mtime):
        try:
            description = json.loads(meta.read_text(encoding="utf-8"))["description"]
        except (OSError, ValueError, KeyError):
            continue
        models[f"{OWN_PREFIX}{session_id}:{meta.parent.name}"] = description
    return models


def _plain(value: Any) -> Any:
    """JSON for numpy scalars and tuples inside a point row or a widget value."""
    if hasattr(value, "item"):
        return value.item()
    raise TypeError(f"cannot store {type(value).__name__} in a session file")


def snapshot() -> dict[str, Any]:
    """What a reload restores, as plain data."""
    state = st.session_state
    steps = state.get(PIPELINE_STEPS)
    return {
        "browser": state.get(BROWSER),
        "model": state.get(MODEL),
        "settings": state.get(SETTINGS, {}),
        "points": list(state.get(POINTS, {}).values()),
        "pipeline": None if steps is None else {"steps": [entry["step"].to_dict() for entry in steps]},
    }


def save() -> None:
    """Have the session's file written if what it keeps changed since the last write (`writer`: in the background)."""
    session_id = st.session_state.get(SESSION_ID)
    if session_id is None:
        return
    text = json.dumps(snapshot(), default=_plain, allow_nan=True)
    if text == st.session_state.get(SAVED):
        return
    writer.put(session_id, text)
    st.session_state[SAVED] = text


class FileWriter:
    """Session files written by one background thread, so a slider move's run never waits for the disk (a rename
    took 10–30 ms on a busy server). The newest text of a session wins; the first run of a reloaded session
    flushes before it reads (a reload reaches the same process: sticky sessions behind the proxy)."""

    def __init__(self) -> None:
        self._pending: dict[str, str] = {}  # session id -> text not written yet
        self._writing = False
        self._changed = threading.Condition()
        self._thread: threading.Thread | None = None

    def put(self, session_id: str, text: str) -> None:
        with self._changed:
            self._pending[session_id] = text
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._run, name="session-files", daemon=True)
                self._thread.start()
            self._changed.notify_all()

    def flush(self, timeout_s: float = 10.0) -> bool:
        """Wait until every text put so far is on disk; False if that took longer than `timeout_s`."""
        with self._changed:
            return self._changed.wait_for(lambda: not self._pending and not self._writing, timeout_s)

    def _run(self) -> None:
        while True:
            with self._changed:
                self._changed.wait_for(lambda: self._pending)
                session_id, text = self._pending.popitem()
                self._writing = True
            try:
                _write(session_id, text)
            except OSError:
                pass  # a full or vanished disk: the session goes on in memory, as it would without the file
            with self._changed:
                self._writing = False
                self._changed.notify_all()


def _write(session_id: str, text: str) -> None:
    """Write one session's file atomically: a scratch file, then a rename."""
    path = _file(session_id)
    scratch = path.with_suffix(f".{secrets.token_hex(4)}.tmp")
    try:
        scratch.write_text(text, encoding="utf-8")
    except FileNotFoundError:  # the folder was removed while the server ran: make it again
        _made.cache_clear()
        _file(session_id)
        scratch.write_text(text, encoding="utf-8")
    os.replace(scratch, path)


writer = FileWriter()  # the process's one writer, shared by every session


def browser_key(cookie: str | None) -> str | None:
    """A digest of the token in Streamlit's XSRF cookie ("2|mask|masked token|time", token = masked XOR mask; the
    mask changes with every page load, the token stays for the browser's life), or None without one."""
    parts = (cookie or "").split("|")
    if len(parts) != 4 or parts[0] != "2":
        return None
    try:
        mask, masked = bytes.fromhex(parts[1]), bytes.fromhex(parts[2])
    except ValueError:
        return None
    if len(mask) != 4 or not masked:
        return None
    token = bytes(b ^ mask[i % 4] for i, b in enumerate(masked))
    return hashlib.sha256(token).hexdigest()[:32]


def _saved(session_id: str) -> dict | None:
    """The session's file, read (None: no file, too large, or unreadable)."""
    writer.flush()
    path = _file(session_id)
    try:
        if path.stat().st_size > MAX_FILE_BYTES:
            return None
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def _restore(data: dict) -> None:
    """Put a reloaded session's file back into session state (explicitly set keys win)."""
    state = st.session_state
    if data.get("model") is not None:
        state.setdefault(MODEL, data["model"])
    state.setdefault(SETTINGS, dict(data.get("settings") or {}))
    points = {(row["model"], row["recipe"]): row for row in data.get("points") or []}
    state.setdefault(POINTS, points)
    if data.get("pipeline") is not None:
        state.setdefault(PIPELINE_RESTORED, json.dumps(data["pipeline"]))


def start() -> str:
    """Once per run, first thing on every page: give the session its id (from the URL when its file was written in
    this browser, else a new one) and keep it in the URL (a page switch clears the query string); on a session's
    first run, restore its file."""
    state = st.session_state
    if SESSION_ID not in state:
        state[BROWSER] = browser_key(st.context.cookies.get(XSRF_COOKIE))
        given = st.query_params.get(QUERY_KEY, "")
        saved = _saved(given) if ID_PATTERN.fullmatch(given) else None
        if saved is not None and saved.get("browser") == state[BROWSER]:  # a reload in the browser that wrote it
            state[SESSION_ID] = given
            _restore(saved)
        else:  # a first visit, or a URL from someone else's screen: a session of its own
            state[SESSION_ID] = secrets.token_urlsafe(16)
        expire_old_files()
    if st.query_params.get(QUERY_KEY) != state[SESSION_ID]:
        st.query_params[QUERY_KEY] = state[SESSION_ID]
    janitor.watch(state[SESSION_ID], session_dir())  # this tab carries the id: its uploads stay while it is here
    return state[SESSION_ID]


# ---------------------------------------------------------------- controls that keep their value


def persistent(key: str, default: Any, valid: Callable[[Any], bool] | None = None) -> str:
    """The widget key `key`, its value restored from the session (or `default`) if its page was left; pass the
    result as the widget's `key=` and give the widget no value/index of its own.

    valid(value) -> False resets a value the widget could not show now (e.g. a channel past this layer's end).
    """
    state = st.session_state
    settings = state.setdefault(SETTINGS, {})
    value = state[key] if key in state else settings.get(key, default)
    if valid is not None and not valid(value):
        value = default
    if key not in state or state[key] is not value:
        state[key] = value
    if settings.get(key, _MISSING) != value:
        settings[key] = value
        save()
    return key


def in_range(low: float, high: float) -> Callable[[Any], bool]:
    """A `valid` test for numeric widgets: a finite number in [low, high]."""
    return lambda v: isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) and low <= v <= high


def one_of(options) -> Callable[[Any], bool]:
    """A `valid` test for choice widgets: one of the options (for a multiselect: a list of them)."""
    allowed = list(options)
    return lambda v: (all(x in allowed for x in v) if isinstance(v, (list, tuple)) else v in allowed)


# ---------------------------------------------------------------- navigation and the model picker

PAGES = (  # (file, label, icon): the sidebar's page menu; URLs are the labels (http://host/Pruning)
    ("pages/0_Overview.py", "Overview", "🗜️"), ("pages/1_Pruning.py", "Pruning", "✂️"),
    ("pages/2_Quantization.py", "Quantization", "🔢"), ("pages/3_Low-rank.py", "Low-rank", "🧮"),
    ("pages/4_Pipeline.py", "Pipeline", "🧪"), ("pages/5_Trade-offs.py", "Trade-offs", "📈"),
    ("pages/6_Export.py", "Export", "📦"), ("pages/7_Distillation.py", "Distillation", "🎓"),
    ("pages/8_Sensitivity.py", "Sensitivity", "🩺"), ("pages/9_Search.py", "Search", "🧬"),
)


def pages() -> list[st.Page]:
    """The app's pages for `st.navigation`, the Overview first and the default (at the root URL)."""
    return [st.Page(path, title=label, icon=icon, url_path="" if i == 0 else label, default=i == 0)
            for i, (path, label, icon) in enumerate(PAGES)]


def model_picker() -> str:
    """The model picker in the sidebar of every page, under the page menu; returns the chosen sample name.
    Starts the session.

    Also sets torch to one intra-op thread for this run: Streamlit runs each rerun in a fresh thread and the
    setting is per thread; the models are tiny and thirty sessions share two cores.
    """
    global _rerun_through_app
    if _rerun_through_app:  # this process's first run came through the folder's menu: once more, through app.py
        _rerun_through_app = False
        st.rerun()
    torch.set_num_threads(1)
    session_id = start()
    samples = {**list_samples(), **own_models(session_id)}  # the samples, then this session's own models only
    names = list(samples)
    current = st.session_state.get(MODEL, names[0])
    if current not in names:
        current = names[0]
    st.session_state[MODEL] = current

    def remember() -> None:
        st.session_state[MODEL] = st.session_state["_model_picker"]

    st.sidebar.selectbox(
        "Model", names, index=names.index(current), key="_model_picker", on_change=remember,
        format_func=display_name,
        help="The pretrained model every page compresses (bring your own on the Overview page).",
    )
    st.sidebar.caption(samples[current])
    save()  # once a run, after the page's own changes of the last run (e.g. a pin); unchanged: nothing written
    return st.session_state[MODEL]
