"""Two sessions asking for the same new configuration at once compute it once (Streamlit's per-key cache lock)."""
from __future__ import annotations

import threading
import time

import compressor as cz
from ui import cache


def test_concurrent_requests_for_one_configuration_evaluate_once(monkeypatch):
    calls = []
    real = cz.evaluate

    def slow_evaluate(*args, **kwargs):
        calls.append(threading.get_ident())
        time.sleep(0.5)  # long enough for the second request to arrive while the first computes
        return real(*args, **kwargs)

    monkeypatch.setattr(cz, "evaluate", slow_evaluate)
    key = cache.recipe_key(cz.Recipe((cz.Prune(amount=0.37),)))
    results = []
    threads = [threading.Thread(target=lambda: results.append(cache.report("digits-mlp", key, False))) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(calls) == 1
    assert len(results) == 2 and results[0].accuracy == results[1].accuracy
