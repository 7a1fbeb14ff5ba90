"""Measured results shared by the server processes of one room, through a directory on disk.

`scripts/serve.sh --workers N` runs N Streamlit processes; each has its own in-memory caches, so without this
every process would prune, quantize and evaluate the same configuration again. Here a result that is plain
data (a report, a sweep row, a table of rows) is stored once as JSON, at a path named by the SHA-256 of what
identifies it: the kind of result, the model, the canonical recipe JSON and a fingerprint of the code and
weights that computed it. Content addressed, so two processes that compute the same entry write the same
bytes; each write goes to a temporary file in the same directory and is renamed over the entry
(`os.replace` is atomic on POSIX), so a reader sees the whole entry or none. A reader checks the entry's own
key (a hash collision or a foreign file is a miss) and bounds the file's size before reading it.

Off unless the environment names a directory (`CLAB_SHARED_CACHE`, set by serve.sh): a single
`streamlit run` keeps its in-memory caches only. A session's own models ("upload:<session id>:<hash>") never come
here: only their session asks for them, on its one process, and nothing of them may outlive the session
(ui/owned.py clears the memory).
"""
from __future__ import annotations

import functools
import hashlib
import json
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ui.session import OWN_PREFIX


ENV = "CLAB_SHARED_CACHE"
MAX_ENTRY_BYTES = 4 * 2**20  # a report with a per-layer table is a few KB; anything bigger is not ours
REPO = Path(__file__).resolve().parents[1]
PACKAGES = ("compressor", "sample_models", "ui")  # the code and weights a result depends on


@functools.cache
def fingerprint() -> str:
    """SHA-256 over the source and weight files of the packages that compute results: new code, new entries."""
    digest = hashlib.sha256()
    for package in PACKAGES:
        root = REPO / package
        for path in sorted(p for p in root.rglob("*") if p.suffix in (".py", ".pt") and p.is_file()):
            digest.update(str(path.relative_to(root)).encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()[:16]


def directory(model: str = "") -> Path | None:
    """The shared directory, or None when sharing is off or `model` is a session's own model (kept in memory only)."""
    value = os.environ.get(ENV, "").strip()
    return Path(value) if value and not model.startswith(OWN_PREFIX) else None


def entry_key(kind: str, *parts: str) -> str:
    return json.dumps([kind, fingerprint(), *parts], separators=(",", ":"))


def entry_path(root: Path, key: str) -> Path:
    digest = hashlib.sha256(key.encode()).hexdigest()
    return root / digest[:2] / f"{digest}.json"


def read(root: Path, key: str) -> Any | None:
    """The stored value for `key`, or None (missing, too big, unreadable, or another key's file)."""
    path = entry_path(root, key)
    try:
        if path.stat().st_size > MAX_ENTRY_BYTES:
            return None
        entry = json.loads(path.read_bytes())
    except (OSError, ValueError):
        return None
    if not isinstance(entry, dict) or entry.get("key") != key:
        return None
    return entry.get("value")


def write(root: Path, key: str, value: Any) -> None:
    """Store `value` (plain JSON data) atomically: a temporary file in the entry's directory, then a rename."""
    path = entry_path(root, key)
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=".tmp-", suffix=".json")
    try:
        with os.fdopen(handle, "w") as file:
            json.dump({"key": key, "value": value}, file, separators=(",", ":"))
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def fetch(kind: str, parts: tuple[str, ...], compute: Callable[[], Any]) -> Any:
    """`compute()` (plain JSON data), or the value another process already stored for the same key."""
    root = directory(parts[0] if parts else "")
    if root is None:
        return compute()
    key = entry_key(kind, *parts)
    value = read(root, key)
    if value is None:
        value = compute()
        write(root, key, value)
    return value
