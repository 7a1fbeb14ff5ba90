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
