"""ui/server_tuning.py: its settings are bounded numbers, and freed memory is given back on a timer."""
import threading

import pytest

from ui import server_tuning


@pytest.mark.parametrize("raw", ["abc", "-1", "nan", "1e9", ""])
def test_a_setting_out_of_its_range_is_one_clear_line(monkeypatch, raw):
    monkeypatch.setenv("CLAB_TRIM_S", raw)
    with pytest.raises(ValueError, match=r"CLAB_TRIM_S=.*: expected a number from 0 to 3600"):
        server_tuning._setting("CLAB_TRIM_S", 30.0, 0, 3600)


def test_a_setting_in_range_or_unset(monkeypatch):
    monkeypatch.setenv("CLAB_TRIM_S", "0")
    assert server_tuning._setting("CLAB_TRIM_S", 30.0, 0, 3600) == 0
    monkeypatch.delenv("CLAB_TRIM_S")
    assert server_tuning._setting("CLAB_TRIM_S", 30.0, 0, 3600) == 30.0


def test_freed_memory_is_given_back_every_trim_period(monkeypatch):
    calls, enough = [], threading.Event()

    def malloc_trim(pad: int) -> int:
        calls.append(pad)
        if len(calls) >= 3:
            enough.set()
        return 1

    monkeypatch.setattr(server_tuning, "_trimmer", None)
    monkeypatch.setattr(server_tuning, "TRIM_S", 0.01)
    server_tuning._start_trimming(malloc_trim)
    assert enough.wait(10) and set(calls) == {0}


def test_objects_alive_at_start_up_are_left_out_of_later_collections(monkeypatch):
    import gc

    monkeypatch.setattr(server_tuning, "_imports_frozen", False)
    alive = [[] for _ in range(1000)]  # tracked containers alive "at start-up"
    gc.unfreeze()
    try:
        server_tuning._freeze_imports()
        assert gc.get_freeze_count() >= len(alive)
        frozen = gc.get_freeze_count()
        server_tuning._freeze_imports()  # once per process
        assert gc.get_freeze_count() == frozen
    finally:
        gc.unfreeze()  # this test process collects everything again


def test_the_server_watches_no_files():
    """Streamlit's file watcher walks every loaded module per session: a room of 30 waited p95 4.3 s per slider move
    with it and 0.28 s without (benchmarks/bench_room.py). The README's `streamlit run app.py` reads this file."""
    import tomllib
    from pathlib import Path

    config = tomllib.loads((Path(__file__).resolve().parents[1] / ".streamlit" / "config.toml").read_text())
    assert config["server"]["fileWatcherType"] == "none" and config["runner"]["postScriptGC"] is False
