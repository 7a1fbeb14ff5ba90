"""A workshop room against a real server, over Streamlit's own websocket protocol (benchmarks/bench_room.py).

The fragment test is here and not in AppTest: AppTest reruns the whole script after every widget change, so
only a real server shows what a fragment-scoped rerun sends (and what it leaves alone).
"""
from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from streamlit.proto.ForwardMsg_pb2 import ForwardMsg

from benchmarks.bench_room import Attendee, Scenario, deployed_shown
from scripts.local_server import REPO, streamlit_server


@pytest.fixture(scope="module")
def server() -> Iterator[str]:
    with streamlit_server() as (url, _):
        yield url


def test_picking_a_layer_reruns_only_the_layer_fragment(server: str) -> None:
    async def visit() -> tuple:
        me = Attendee(server, Scenario("Pruning", "digits-mlp", "Amount pruned"), seed=0)
        await me.connect()
        try:
            full = await me.run()
            picker, fragment = full.widgets["Layer to inspect"]
            assert fragment, "the layer picker is not inside a fragment"
            other = picker.options[1]
            me.set_widget(picker, other)
            return full, await me.run(fragment), fragment, other
        finally:
            await me.close()

    full, part, fragment, layer = asyncio.run(visit())
    assert full.status == ForwardMsg.FINISHED_SUCCESSFULLY and not full.exceptions
    assert "" in full.fragments and "Accuracy" in full.metrics
    assert part.status == ForwardMsg.FINISHED_FRAGMENT_RUN_SUCCESSFULLY
    assert part.fragments == {fragment}, "a fragment rerun sent elements from outside the fragment"
    assert not part.metrics and "Amount pruned" not in part.widgets, "the rest of the page ran again"
    assert not part.exceptions and not part.errors
    titles = [json.loads(spec)["layout"]["title"]["text"] for spec in part.charts]
    assert len(titles) == 2 and all(layer in title for title in titles), titles


def test_a_new_configuration_polls_in_a_fragment_until_its_deployed_latency_shows(server: str) -> None:
    """A move to a stop nobody asked for shows the eager latency at once and registers a run_every fragment; the
    browser's timer reruns it (only it, while the job runs), and once deployed the page shows the deployed latency
    and the timer stops."""
    async def visit() -> tuple:
        me = Attendee(server, Scenario("Quantization", "digits-mlp", "Bits per weight"), seed=0)
        await me.connect()
        try:
            run = await me.run()
            slider, fragment = run.widgets["Bits per weight"]
            me.set_widget(slider, 3.0)  # no other test asks for 3 bits
            moved = await me.run(fragment)
            timers = dict(me.auto_reruns)
            polls: list[float] = []
            runs = []
            for _ in range(20):
                runs += await me.think(2.0, polls, [])
                if runs and deployed_shown(runs[-1].metrics):
                    break
            return moved, timers, runs, dict(me.auto_reruns)
        finally:
            await me.close()

    moved, timers, polls, after = asyncio.run(visit())
    assert not moved.exceptions and not moved.errors
    assert "Latency" in moved.metrics and not deployed_shown(moved.metrics)
    assert len(timers) == 1, "no polling fragment after a move to a new configuration"
    (poller,) = timers
    for poll in polls[:-1]:  # still measuring: only the polling fragment ran
        assert poll.status == ForwardMsg.FINISHED_FRAGMENT_RUN_SUCCESSFULLY and poll.fragments == {poller}
    assert polls and polls[-1].status == ForwardMsg.FINISHED_SUCCESSFULLY  # done: the whole page, deployed numbers
    assert polls[-1].metrics["Latency (deployed), simulated"].endswith(" ms") and not polls[-1].exceptions  # 3 bits
    assert not after, "the page kept polling after the deployed latency was shown"


def test_bench_room_smoke(tmp_path: Path) -> None:
    """Two sessions render, move the slider twice each, see every move take effect and no error."""
    out = tmp_path / "room.json"
    subprocess.run(
        [sys.executable, "benchmarks/bench_room.py", "--sessions", "2", "--moves", "2", "--think", "0.3",
         "--arrival", "0.5", "--settle", "1", "--scenario", "Pruning:digits-mlp:Amount pruned", "--out", str(out)],
        cwd=REPO, check=True, timeout=240, capture_output=True,
    )
    result = json.loads(out.read_text())
    assert result["failed_sessions"] == 0 and result["exceptions_shown"] == 0 and result["errors_shown"] == 0
    assert result["first_render_s"]["n"] == 2 and result["move_s"]["n"] == 4
    assert result["moves_that_changed_size"] == 4
    assert result["script_runs"] == 6 + result["poll_runs"] and result["script_runs_per_s"] > 0
    memory = result["server_rss_mb"]
    assert 50 < memory["before_mb"] <= memory["during_peak_mb"] and memory["after_mb"] > 50


def test_serve_sh_two_workers_sticky_and_sharing_results(tmp_path: Path) -> None:
    """nginx in front of two processes: every session renders and moves through the proxy (websocket upgrade,
    sticky cookie), all see the same result for the same setting, and the results land in the shared disk cache."""
    from benchmarks.bench_room import server

    cache_dir = tmp_path / "shared"

    async def room(url: str) -> list:
        visits = []
        for seed in range(6):  # six browsers: each gets its own sticky cookie from nginx
            me = Attendee(url, Scenario("Pruning", "digits-mlp", "Amount pruned"), seed)
            await me.connect()
            try:
                run = await me.run()
                slider, fragment = run.widgets["Amount pruned"]
                me.set_widget(slider, "70%")
                visits.append((run, await me.run(fragment)))
            finally:
                await me.close()
        return visits

    with server(2, extra_args=["--cache-dir", str(cache_dir)]) as (url, pids):
        assert len(pids) == 2
        visits = asyncio.run(room(url))
    for first, moved in visits:
        assert not first.exceptions and not moved.exceptions and not moved.errors
        assert moved.metrics["Size (exported file)"] != first.metrics["Size (exported file)"]
    assert len({moved.metrics["Size (exported file)"] for _, moved in visits}) == 1  # one 70% result for all
    assert list(cache_dir.rglob("*.json")), "no result was shared on disk"
