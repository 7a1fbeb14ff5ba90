"""The disk cache the server processes of a room share (ui/disk_cache.py)."""
from __future__ import annotations

import json
import multiprocessing as mp
from pathlib import Path

import pytest

from ui import disk_cache

VALUE = {"accuracy": 0.9731, "layers": [{"name": "fc1", "params": 19500}], "notes": ["é ✓"]}


def _fetch_in_process(root: str, kind: str, value: dict | None, out: mp.Queue) -> None:
    """In a fresh process: fetch an entry; `value` None means computing is forbidden (it must be on disk)."""
    import os

    os.environ[disk_cache.ENV] = root

    def compute() -> dict:
        if value is None:
            raise AssertionError("computed again: the entry written by the other process was not read")
        return value

    out.put(disk_cache.fetch(kind, ("digits-mlp", '{"steps":[]}'), compute))


def _run(target, *args) -> object:
    context = mp.get_context("spawn")  # a separate interpreter, as a separate server process is
    out = context.Queue()
    process = context.Process(target=target, args=(*args, out))
    process.start()
    result = out.get(timeout=120)
    process.join(timeout=60)
    assert process.exitcode == 0
    return result


def test_two_processes_share_an_entry(tmp_path: Path) -> None:
    assert _run(_fetch_in_process, str(tmp_path), "report", VALUE) == VALUE
    assert _run(_fetch_in_process, str(tmp_path), "report", None) == VALUE  # read, not computed
    assert len(list(tmp_path.rglob("*.json"))) == 1


def test_off_without_a_directory(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(disk_cache.ENV, raising=False)
    calls = []
    for _ in range(2):
        disk_cache.fetch("report", ("m", "r"), lambda: calls.append(1) or VALUE)
    assert len(calls) == 2


def test_keys_separate_kinds_models_and_recipes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(disk_cache.ENV, str(tmp_path))
    keys = [("report", ("a", "r1")), ("report", ("b", "r1")), ("report", ("a", "r2")), ("sweep_row", ("a", "r1"))]
    for i, (kind, parts) in enumerate(keys):
        disk_cache.fetch(kind, parts, lambda i=i: {"i": i})
    assert [disk_cache.fetch(kind, parts, lambda: None) for kind, parts in keys] == [{"i": i} for i in range(4)]


def test_foreign_oversized_or_torn_files_are_misses(tmp_path: Path) -> None:
    key = disk_cache.entry_key("report", "digits-mlp", "{}")
    path = disk_cache.entry_path(tmp_path, key)
    path.parent.mkdir(parents=True)
    path.write_text(json.dumps({"key": "another key", "value": VALUE}))
    assert disk_cache.read(tmp_path, key) is None
    path.write_text(json.dumps({"key": key, "value": VALUE})[:-5])  # a torn write
    assert disk_cache.read(tmp_path, key) is None
    path.write_bytes(b" " * (disk_cache.MAX_ENTRY_BYTES + 1))
    assert disk_cache.read(tmp_path, key) is None
    disk_cache.write(tmp_path, key, VALUE)
    assert disk_cache.read(tmp_path, key) == VALUE


def _hammer(root: str, key: str, rounds: int, out: mp.Queue) -> None:
    """Write the entry over and over (alternating two complete values) and read it in between."""
    seen = set()
    for i in range(rounds):
        disk_cache.write(Path(root), key, {"n": i % 2, "pad": "x" * 50_000})
        value = disk_cache.read(Path(root), key)
        seen.add("torn" if value is None or len(value["pad"]) != 50_000 else value["n"])
    out.put(sorted(seen, key=str))


def test_concurrent_writers_never_leave_a_torn_entry(tmp_path: Path) -> None:
    """Writes are a rename of a complete temporary file: readers see one whole value or the other."""
    key = disk_cache.entry_key("report", "m", "r")
    context = mp.get_context("spawn")
    out = context.Queue()
    workers = [context.Process(target=_hammer, args=(str(tmp_path), key, 200, out)) for _ in range(3)]
    for worker in workers:
        worker.start()
    results = [out.get(timeout=120) for _ in workers]
    for worker in workers:
        worker.join(timeout=60)
    assert all("torn" not in seen for seen in results), results
    assert disk_cache.read(tmp_path, key)["n"] in (0, 1)
    assert not list(tmp_path.rglob(".tmp-*")), "a temporary file was left behind"


def test_fingerprint_follows_the_code() -> None:
    """Entries are keyed by the code that computed them: a changed checkout never reads an old result."""
    assert disk_cache.fingerprint() in disk_cache.entry_key("report", "m", "r")
