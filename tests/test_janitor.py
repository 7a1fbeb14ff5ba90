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


def test_what_the_server_computed_from_a_gone_sessions_model_leaves_every_cache(monkeypatch, tmp_path):
    """Compressed models, reports, deployments, figures, policy/pipeline/sweep rows and training runs made from a
    session's upload are dropped when the janitor deletes it (and none reached the shared disk cache); a sample's
    entries stay."""
    import os

    import pytest

    import compressor as cz
    from tests.test_uploads import weights_bytes
    from ui import cache, deploy_jobs, figure_cache, janitor, pipeline_cache, policy_cache, session, sweeps, training, uploads
    from ui.layers import weighted_layers

    monkeypatch.setenv("CLAB_SHARED_CACHE", str(tmp_path / "shared"))
    monkeypatch.setattr(uploads, "check_owner", lambda name: None)  # no script run here: ownership is tested elsewhere
    sid, other = "L" * 22, "M" * 22
    name = uploads.store_weights(sid, "digits-mlp", "w.safetensors", weights_bytes(8))
    kept = uploads.store_weights(other, "digits-mlp", "w.safetensors", weights_bytes(9))  # another, live session
    int8 = cache.recipe_key(cz.Recipe((cz.Quantize(bits=8),)))
    lookups = {  # every server-wide cache, asked once per model
        "stage": lambda m: cache.compressed(m, int8),
        "report": lambda m: cache.report(m, int8, timed=True),  # measured + deployed (ui/deploy_jobs.py)
        "onnx": lambda m: cache.onnx_file(m, int8),
        "policy": lambda m: policy_cache.measures(m, int8),
        "pipeline": lambda m: pipeline_cache.stages(m, int8),
        "sweep": lambda m: sweeps.sweep_row(m, int8),
        "layers": lambda m: weighted_layers(m),
    }
    for model in (name, kept, "digits-mlp"):
        for lookup in lookups.values():
            lookup(model)
        figure_cache.shared(("test_figure", (model, int8)), lambda: object())
    run = training.Trained(name, int8, cz.load_sample("digits-mlp").model, [], 1.0, 1)
    training.finished_runs().put(run)
    assert deploy_jobs.jobs.status((name, int8)).state == "ready"
    shared = {path.read_text() for path in (tmp_path / "shared").rglob("*.json")}
    assert shared and not any(session.OWN_PREFIX in text for text in shared)  # own models never reach the disk

    later = time.time() + GRACE_S + 60
    os.utime(session.uploads_dir(other), (later, later))  # the other session is alive: its folder is fresh
    swept = Janitor(session.session_dir(), lambda tab: False, lambda: later, on_gone=janitor._run_hooks).run_once()
    assert sid in swept and other not in swept

    for lookup in lookups.values():  # not served from memory: computed again, and the upload is gone
        with pytest.raises(ValueError, match="is gone"):
            lookup(name)
        lookup(kept), lookup("digits-mlp")  # still cached, or recomputed from files that are still there
    assert deploy_jobs.jobs.status((name, int8)) is None and deploy_jobs.jobs.status((kept, int8)) is not None
    assert training.finished_runs().get(name, int8) is None
    figures = [key for key in figure_cache._figures if key[0] == "test_figure"]
    assert [key[1][0] for key in figures] == [kept, "digits-mlp"]
