"""Uploads go with their session (ui/janitor.py): kept across a reload within the grace period, deleted after it,
and never deleted while another server process keeps its session alive. Driven with an injected clock."""
from __future__ import annotations

import time
from pathlib import Path

from ui.janitor import BEAT_S, GRACE_S, Janitor


class Clock:
    def __init__(self) -> None:
        self.now = time.time()

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


def upload(root: Path, session_id: str) -> Path:
    folder = root / "uploads" / session_id / "0123abcd"
    folder.mkdir(parents=True)
    (folder / "meta.json").write_text("{}")
    return folder


def test_an_upload_survives_a_reload_within_the_grace_period_and_goes_after_it(tmp_path):
    clock, connected = Clock(), {"tab-1"}
    janitor = Janitor(tmp_path, lambda tab: tab in connected, clock)
    mine = upload(tmp_path, "A" * 22)
    janitor.attach("tab-1", "A" * 22)
    for _ in range(20):  # a long-lived tab: its heartbeat is refreshed on every tick
        clock.advance(BEAT_S)
        assert janitor.run_once() == []
    connected.discard("tab-1")  # reload: the old websocket closes ...
    clock.advance(GRACE_S - 5)
    assert janitor.run_once() == [] and mine.exists()
    connected.add("tab-2")  # ... and a new Streamlit session arrives with the same ?s= id
    janitor.attach("tab-2", "A" * 22)
    clock.advance(GRACE_S)
    assert janitor.run_once() == [] and mine.exists()
    assert janitor.tabs() == {"tab-2": "A" * 22}  # the closed tab is forgotten after the grace period
    connected.discard("tab-2")  # the tab is closed for good
    clock.advance(GRACE_S - 1)
    assert janitor.run_once() == [] and mine.exists()
    clock.advance(2)
    assert janitor.run_once() == ["A" * 22]
    assert not mine.parent.exists() and not janitor.heartbeat("A" * 22).exists()


def test_another_process_never_deletes_a_session_it_does_not_serve(tmp_path):
    """Two server processes share the folder; each session lives on one (sticky sessions)."""
    clock = Clock()
    first = Janitor(tmp_path, lambda tab: tab == "tab-a", clock)
    second = Janitor(tmp_path, lambda tab: tab == "tab-b", clock)
    a, b = upload(tmp_path, "A" * 22), upload(tmp_path, "B" * 22)
    first.attach("tab-a", "A" * 22)
    second.attach("tab-b", "B" * 22)
    for _ in range(int(10 * GRACE_S / BEAT_S)):  # ten grace periods of ticks, the processes' ticks interleaved
        clock.advance(BEAT_S / 2)
        assert first.run_once() == []
        clock.advance(BEAT_S / 2)
        assert second.run_once() == []
    assert a.exists() and b.exists()
    first.is_active = lambda tab: False  # A's tab closes; B's stays on the second process
    clock.advance(GRACE_S + 1)
    assert second.run_once() == ["A" * 22]  # the second process sweeps A, whose heartbeat stopped ...
    assert first.run_once() == [] and b.exists()  # ... and the first never touches B


def test_uploads_without_a_heartbeat_go_a_grace_period_after_they_were_made(tmp_path):
    """A session no process ever marked (its server was restarted, say): its folder's own time counts."""
    clock = Clock()
    janitor = Janitor(tmp_path, lambda tab: False, clock)
    folder = upload(tmp_path, "C" * 22)
    clock.advance(GRACE_S - 10)
    assert janitor.run_once() == []
    clock.advance(20)
    assert janitor.run_once() == ["C" * 22] and not folder.exists()


def test_stale_heartbeats_of_sessions_without_uploads_are_removed(tmp_path):
    clock = Clock()
    janitor = Janitor(tmp_path, lambda tab: False, clock)
    janitor.attach("tab", "D" * 22)
    assert janitor.heartbeat("D" * 22).exists()
    clock.advance(GRACE_S + 1)
    janitor.run_once()
    assert not janitor.heartbeat("D" * 22).exists() and janitor.tabs() == {}


def test_the_hook_hears_of_a_session_before_its_uploads_go(tmp_path):
    clock, heard = Clock(), []
    janitor = Janitor(tmp_path, lambda tab: tab == "here", clock,
                      on_gone=lambda sid: heard.append((sid, (tmp_path / "uploads" / sid).exists())))
    upload(tmp_path, "E" * 22)
    upload(tmp_path, "F" * 22)
    janitor.attach("here", "F" * 22)
    clock.advance(GRACE_S + 1)
    janitor.run_once()
    assert heard == [("E" * 22, True)]  # called while the files are still there, for the gone session only
