"""A workshop room, simulated with Streamlit's own protocol: `python benchmarks/bench_room.py [--sessions 30]`.

Each simulated attendee is what a browser tab is to the server: one websocket on `/_stcore/stream` speaking the
protobuf messages of `streamlit.proto` (BackMsg up, ForwardMsg down). It asks for a page the way the frontend
does (a `rerun_script` BackMsg whose ClientState names the page and carries the widget states), waits for the
`script_finished` ForwardMsg, reads the widget it will move from the rendered delta (its id, its options, and the
fragment it belongs to), then moves it every `--think` seconds (± 50 %, so sessions do not march in step) to a
random other stop. A move's latency runs from sending the BackMsg to its `script_finished`. Between moves it also
does what the browser does for a fragment that asked to rerun itself (`st.fragment(run_every=…)`: a page waiting
for its deployed latency, ui/deployed_view.py): it reruns that fragment on its timer. No browser renders anything,
so the figures are the server's share of what a room waits for.

Prints per scenario and overall: first-render and move latency percentiles (all moves, and the first moves to a
stop nobody had asked for), the time until the deployed latency shows, script runs per second, error boxes and
exceptions shown, failed sessions, and the server's resident memory (from /proc, when the server runs on this
machine) before, at its peak during, and after the sessions disconnect (definitions in the JSON's "how").
`--record room|memory|scaling` keeps the run in benchmarks/results/bench_room.json (the README's tables come from
it). Starts its own server (`--workers N` > 1 uses scripts/serve.sh: nginx in front of N
processes) unless `--url` points at a running one (then `--pid` for its memory).
"""
from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import statistics
import subprocess
import sys
import time
import urllib.parse
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import websockets
from streamlit.proto.BackMsg_pb2 import BackMsg
from streamlit.proto.ForwardMsg_pb2 import ForwardMsg

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
from benchmarks.results_io import results_path, save  # noqa: E402
from scripts.local_server import free_port, healthy, streamlit_server  # noqa: E402

RESULTS = results_path("bench_room")
DONE = {ForwardMsg.FINISHED_SUCCESSFULLY, ForwardMsg.FINISHED_FRAGMENT_RUN_SUCCESSFULLY,
        ForwardMsg.FINISHED_WITH_COMPILE_ERROR}
RUN_TIMEOUT_S = 120.0  # one script run, first render of a cold page included
MAX_MESSAGE_BYTES = 64 * 2**20
SIZE = "Size (exported file)"  # the metric every scenario's slider changes: proof that a move took effect


@dataclass(frozen=True)
class Scenario:
    """A page, the model picked on it, and the label of the slider an attendee moves there."""
    page: str  # URL path name, as in http://HOST/Pruning
    model: str
    widget: str

    @classmethod
    def parse(cls, text: str) -> Scenario:
        """'Pruning:digits-mlp:Amount pruned' -> Scenario."""
        parts = text.split(":")
        if len(parts) != 3 or not all(parts):
            raise ValueError(f"scenario {text!r}: expected PAGE:MODEL:SLIDER LABEL, e.g. 'Pruning:digits-mlp:Amount pruned'")
        return cls(*parts)

    def __str__(self) -> str:
        return f"{self.page}:{self.model}:{self.widget}"


DEFAULT_SCENARIOS = ("Pruning:digits-mlp:Amount pruned", "Quantization:digits-mlp:Bits per weight",
                     "Pipeline:digits-mlp:Amount removed")
MINILM_SCENARIO = "Pruning:minilm-l6:Amount pruned"


@dataclass
class Run:
    """What one script run showed: the widgets (label -> (proto, fragment id)), errors, exceptions."""
    seconds: float
    widgets: dict[str, tuple[object, str]] = field(default_factory=dict)
    errors: list[str] = field(default_factory=list)
    exceptions: list[str] = field(default_factory=list)
    metrics: dict[str, str] = field(default_factory=dict)  # label -> value shown
    charts: list[str] = field(default_factory=list)  # Plotly specs (JSON), in page order
    fragments: set[str] = field(default_factory=set)  # fragment ids of the deltas ("" = outside any fragment)
    status: int = -1  # ForwardMsg.script_finished


class Attendee:
    """One session on the server: a websocket and the client state a browser tab would keep."""

    def __init__(self, url: str, scenario: Scenario, seed: int, tour: bool = False) -> None:
        self.url, self.scenario, self.random = url, scenario, random.Random(seed)
        self.tour = tour  # move to every stop in turn before moving at random (a warm-up that computes them all)
        self.visited: set = set()
        self.page_hash = ""
        self.widget_states: dict[str, object] = {}  # widget id -> WidgetState the browser would resend
        self.cached_hashes: set[str] = set()  # the browser's message cache: the server sends references
        self.auto_reruns: dict[str, float] = {}  # fragment id -> seconds: fragments that rerun themselves (run_every)
        self.ws = None

    async def connect(self) -> None:
        """Load the page's HTML first, as a browser does (a proxy's sticky-session cookie comes with it), then
        open the websocket with the cookies it got."""
        cookies = await asyncio.to_thread(page_cookies, f"{self.url.rstrip('/')}/{self.scenario.page}")
        parts = urllib.parse.urlsplit(self.url)
        scheme = "wss" if parts.scheme == "https" else "ws"
        self.ws = await websockets.connect(f"{scheme}://{parts.netloc}{parts.path.rstrip('/')}/_stcore/stream",
                                           subprotocols=["streamlit"], max_size=MAX_MESSAGE_BYTES,
                                           open_timeout=RUN_TIMEOUT_S, ping_interval=None,
                                           additional_headers={"Cookie": cookies} if cookies else None)

    async def close(self) -> None:
        if self.ws is not None:
            await self.ws.close()

    async def run(self, fragment_id: str = "", auto: bool = False) -> Run:
        """Send one rerun_script (as the frontend does after a widget change, or when a fragment's run_every timer
        fires: `auto`) and read until the script_finished of the run it started (a run a fragment turns into a full
        rerun with st.rerun ends with the full run)."""
        msg = BackMsg()
        state = msg.rerun_script
        state.query_string = ""
        state.page_script_hash = self.page_hash
        state.page_name = "" if self.page_hash else self.scenario.page
        state.fragment_id = fragment_id
        state.is_auto_rerun = auto
        state.widget_states.widgets.extend(self.widget_states.values())
        state.cached_message_hashes.extend(sorted(self.cached_hashes))
        start = time.perf_counter()
        await self.ws.send(msg.SerializeToString())
        run, started = Run(0.0), False
        while True:
            data = await asyncio.wait_for(self.ws.recv(), RUN_TIMEOUT_S)
            fwd = ForwardMsg()
            fwd.ParseFromString(data)
            kind = fwd.WhichOneof("type")
            if fwd.hash and fwd.metadata.cacheable:
                self.cached_hashes.add(fwd.hash)
            if kind == "new_session":  # every run, full or fragment, starts with one
                started = True
                if not fwd.metadata.run.fragment_ids:  # a full run (also one a fragment asked for): as the frontend
                    self.auto_reruns.clear()  # does, forget the timers; the run registers its fragments' again
            elif kind == "auto_rerun":
                self.auto_reruns[fwd.auto_rerun.fragment_id] = fwd.auto_rerun.interval
            elif kind == "stop_auto_rerun":
                for stopped in fwd.stop_auto_rerun.fragment_ids:
                    self.auto_reruns.pop(stopped, None)
            elif kind == "navigation":  # the page that runs (new_session's hash is the main script's)
                self.page_hash = fwd.navigation.page_script_hash
            elif kind == "delta":
                run.fragments.add(fwd.delta.fragment_id)
                if fwd.delta.WhichOneof("type") == "new_element":
                    self._read_element(fwd.delta.new_element, fwd.delta.fragment_id, run)
            elif kind == "script_finished" and fwd.script_finished in DONE and started:
                run.seconds, run.status = time.perf_counter() - start, fwd.script_finished
                return run

    async def think(self, seconds: float, polls: list[float], log: list[float]) -> list[Run]:
        """Wait `seconds` as a user reading the page does, while the browser reruns the fragments that asked for it
        (run_every) on their timers; returns those runs (their latencies also go to `polls`)."""
        runs: list[Run] = []
        end, due = time.perf_counter() + seconds, {}
        while True:
            due = {f: due.get(f, time.perf_counter() + every) for f, every in self.auto_reruns.items()}  # live timers
            fragment = min(due, key=due.get, default=None)
            if fragment is None or due[fragment] >= end:
                await asyncio.sleep(max(0.0, end - time.perf_counter()))
                return runs
            await asyncio.sleep(max(0.0, due[fragment] - time.perf_counter()))
            run = await self.run(fragment, auto=True)
            log.append(time.perf_counter())
            polls.append(run.seconds)
            runs.append(run)
            due[fragment] = time.perf_counter() + self.auto_reruns.get(fragment, 0.0)

    @staticmethod
    def _read_element(element, fragment_id: str, run: Run) -> None:
        kind = element.WhichOneof("type")
        if kind == "exception":
            run.exceptions.append(f"{element.exception.type}: {element.exception.message}"[:300])
        elif kind == "alert" and element.alert.format == element.alert.ERROR:
            run.errors.append(element.alert.body[:300])
        elif kind == "plotly_chart":
            run.charts.append(element.plotly_chart.spec)
        elif kind == "metric":
            run.metrics[element.metric.label] = element.metric.body
        elif kind in ("slider", "selectbox"):
            widget = getattr(element, kind)
            run.widgets[widget.label] = (widget, fragment_id)

    def set_widget(self, widget, value) -> None:
        """Remember a widget's new value in the form its proto expects (the browser's widget state)."""
        state = BackMsg().rerun_script.widget_states.widgets.add()
        state.id = widget.id
        if hasattr(widget, "placeholder"):  # selectbox: the formatted option
            state.string_value = value
        elif widget.options:  # select_slider: the formatted option, in a one-element list
            state.string_array_value.data.append(value)
        else:  # slider: the number, in a one-element list
            state.double_array_value.data.append(value)
        self.widget_states[widget.id] = state

    def other_stop(self, slider) -> object:
        """A stop of the slider other than where it is now: at random, or on a tour the next one not visited yet."""
        current = self.widget_states.get(slider.id)
        if slider.options:
            now = current.string_array_value.data[0] if current else slider.options[int(slider.default[0])]
            others = [o for o in slider.options if o != now]
        else:
            stops = int(round((slider.max - slider.min) / slider.step)) + 1
            now = current.double_array_value.data[0] if current else slider.default[0]
            values = [round(slider.min + i * slider.step, 6) for i in range(stops)]
            others = [v for v in values if abs(v - now) > slider.step / 2]
        self.visited.add(now)
        left = [o for o in others if o not in self.visited] if self.tour else []
        stop = left[0] if left else self.random.choice(others)
        self.visited.add(stop)
        return stop


def page_cookies(url: str) -> str:
    """GET the page; its Set-Cookie values as one Cookie header ("" if none)."""
    with urllib.request.urlopen(url, timeout=RUN_TIMEOUT_S) as response:
        response.read()
        jar = [header.split(";", 1)[0] for header in response.headers.get_all("Set-Cookie") or []]
    return "; ".join(jar)


DEPLOYED = "Latency (deployed)"  # the metric a page shows once the configuration is deployed on ONNX Runtime


def deployed_shown(metrics: dict[str, str]) -> bool:
    """True when the page shows the deployed latency ("Latency (deployed)", or "…, simulated" without a native kernel)."""
    return any(label.startswith(DEPLOYED) for label in metrics)


async def attend(url: str, scenario: Scenario, seed: int, moves: int, think_s: float, arrive_s: float,
                 log: list[float], asked: set, tour: bool = False) -> dict:
    """One attendee: arrive, render the page, pick the model, then `moves` times: read the page for a while (the
    browser reruns polling fragments meanwhile), move the slider; and read the last result too.

    `asked` holds every (scenario, stop) any session asked for so far: a move to a stop nobody asked for before is
    a configuration the server computes then (a "first" move), the others find it cached."""
    await asyncio.sleep(arrive_s)
    me = Attendee(url, scenario, seed, tour)
    out = {"scenario": str(scenario), "render_s": None, "moves_s": [], "first_moves_s": [], "polls_s": [],
           "deployed_after_s": [], "errors": [], "exceptions": [], "failure": None, "size_changed": 0,
           "moves": []}  # (sent at, seconds, first) per move: when the slow ones happened
    try:
        await me.connect()
        run = await me.run()
        first = run.seconds
        picker = run.widgets.get("Model")
        if picker is None or scenario.model not in picker[0].options:
            out["failure"] = f"model {scenario.model!r} is not in the picker"
            return out
        if picker[0].options[picker[0].default] != scenario.model:
            me.set_widget(picker[0], scenario.model)
            run = await me.run()
            first += run.seconds
        out["render_s"] = first
        log.append(time.perf_counter())
        _collect(out, run)
        moved_at = None  # when the last move was sent, until its deployed latency shows
        for move in range(moves + 1):
            for polled in await me.think(think_s * me.random.uniform(0.5, 1.5), out["polls_s"], log):
                _collect(out, polled)
                if moved_at is not None and deployed_shown(polled.metrics):
                    out["deployed_after_s"].append(time.perf_counter() - moved_at)
                    moved_at = None
            if move == moves:
                break
            if scenario.widget not in run.widgets:
                out["failure"] = f"no slider {scenario.widget!r} on {scenario.page}"
                break
            slider, fragment = run.widgets[scenario.widget]
            value = me.other_stop(slider)
            fresh = (str(scenario), value) not in asked
            asked.add((str(scenario), value))
            me.set_widget(slider, value)
            sent = time.perf_counter()
            moved = await me.run(fragment)
            log.append(time.perf_counter())
            out["moves_s"].append(moved.seconds)
            if fresh:
                out["first_moves_s"].append(moved.seconds)
            out["moves"].append((sent, moved.seconds, fresh))
            moved_at = None if deployed_shown(moved.metrics) else sent
            if moved_at is None:
                out["deployed_after_s"].append(moved.seconds)
            out["size_changed"] += None is not moved.metrics.get(SIZE) != run.metrics.get(SIZE)
            _collect(out, moved)
            run.widgets.update(moved.widgets)  # a fragment run re-sends only the fragment's elements
            run.metrics = moved.metrics or run.metrics
    except (OSError, asyncio.TimeoutError, websockets.WebSocketException) as err:  # URLError is an OSError
        out["failure"] = f"{type(err).__name__}: {err}"[:300]
    finally:
        await me.close()
    return out


def _collect(out: dict, run: Run) -> None:
    out["errors"] += run.errors
    out["exceptions"] += run.exceptions


def slowest(results: list[dict], start: float, n: int = 8) -> list[dict]:
    """The `n` slowest moves: when they were sent (seconds after the room began), how long they took, on which
    page, and whether the stop was new. Slow moves that bunch in time point at a stall of the whole server."""
    moves = [(seconds, sent, r["scenario"], fresh) for r in results for sent, seconds, fresh in r["moves"]]
    return [{"at_s": round(sent - start, 1), "s": round(seconds, 3), "scenario": scenario, "first": fresh}
            for seconds, sent, scenario, fresh in sorted(moves, reverse=True)[:n]]


def spread(values: list[float]) -> dict | None:
    """p50, p95 and max in seconds (p95 by nearest rank)."""
    if not values:
        return None
    ordered = sorted(values)
    p95 = ordered[min(len(ordered) - 1, int(round(0.95 * len(ordered) + 0.5)) - 1)]
    return {"n": len(ordered), "p50": round(statistics.median(ordered), 3), "p95": round(p95, 3),
            "max": round(ordered[-1], 3)}


def with_descendants(pids: list[int]) -> list[int]:
    """`pids` and every process below them: a server's deployment child and the forkserver it comes from
    (ui/deploy_jobs.py). A child is listed under the thread that started it, so every thread is read."""
    found, todo = [], list(pids)
    while todo:
        pid = todo.pop()
        found.append(pid)
        for children in Path(f"/proc/{pid}/task").glob("*/children"):
            try:
                todo.extend(int(child) for child in children.read_text().split())
            except OSError:  # the thread or process ended meanwhile
                pass
    return found


def rss_mb(pids: list[int], children: bool = True) -> float | None:
    """Resident memory of the server processes and (`children`) theirs (MB), or None when they are not on this machine."""
    total = 0
    if not all(Path(f"/proc/{pid}").exists() for pid in pids):
        return None
    for pid in (with_descendants(pids) if children else pids):
        try:
            for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1])
        except OSError:  # a child that ended meanwhile
            continue
    return round(total / 1024, 1)


async def watch_memory(pids: list[int], peak: list[float], stop: asyncio.Event) -> None:
    while not stop.is_set():
        value = rss_mb(pids)
        if value is not None:
            peak.append(value)
        try:
            await asyncio.wait_for(stop.wait(), 0.5)
        except asyncio.TimeoutError:
            pass


async def warm(url: str, scenarios: list[Scenario], asked: set | None = None, moves: int = 1) -> list[dict]:
    """One session per scenario, one after the other, each moving its slider `moves` times back to back (the
    instructor's tour: once; a throughput run: to every stop in turn, so the stops are computed)."""
    return [await attend(url, s, -1 - i, moves, 0.0, 0.0, [], asked if asked is not None else set(), tour=moves > 1)
            for i, s in enumerate(scenarios)]


async def room(url: str, scenarios: list[Scenario], sessions: int, moves: int, think_s: float, arrival_s: float,
               pids: list[int], warm_moves: int = 1) -> tuple[list[dict], dict]:
    """Warm each scenario with one session (the instructor), then run the sessions, spread over the scenarios."""
    asked: set = set()
    warmed = await warm(url, scenarios, asked, warm_moves)
    memory = {"before_mb": rss_mb(pids), "before_main_mb": rss_mb(pids, children=False)}
    peak: list[float] = []
    stop = asyncio.Event()
    watcher = asyncio.create_task(watch_memory(pids, peak, stop))
    log: list[float] = []
    start = time.perf_counter()
    results = await asyncio.gather(*(
        attend(url, scenarios[i % len(scenarios)], i, moves, think_s, arrival_s * i / max(sessions, 1), log, asked)
        for i in range(sessions)))
    wall = time.perf_counter() - start
    stop.set()
    await watcher
    memory["during_peak_mb"] = max(peak) if peak else None
    return results, {"memory": memory, "wall_s": round(wall, 1), "run_times": log, "warm": warmed, "start": start}


def summarize(results: list[dict], extra: dict, scenarios: list[Scenario], args: argparse.Namespace) -> dict:
    runs = extra["run_times"]
    busy = (max(runs) - min(runs)) if len(runs) > 1 else None
    moves = [m for r in results for m in r["moves_s"]]
    per_scenario = {}
    for s in scenarios:
        mine = [r for r in results if r["scenario"] == str(s)]
        per_scenario[str(s)] = {
            "sessions": len(mine),
            "first_render_s": spread([r["render_s"] for r in mine if r["render_s"] is not None]),
            "move_s": spread([m for r in mine for m in r["moves_s"]]),
            "first_move_s": spread([m for r in mine for m in r["first_moves_s"]]),
            "deployed_shown_after_s": spread([m for r in mine for m in r["deployed_after_s"]]),
            "failures": sorted({r["failure"] for r in mine if r["failure"]}),
        }
    return {
        "sessions": len(results), "moves_per_session": args.moves, "think_s": args.think,
        "arrival_spread_s": args.arrival, "workers": args.workers,
        "first_render_s": spread([r["render_s"] for r in results if r["render_s"] is not None]),
        "move_s": spread(moves),
        "first_move_s": spread([m for r in results for m in r["first_moves_s"]]),  # to a stop nobody asked before
        "deployed_shown_after_s": spread([m for r in results for m in r["deployed_after_s"]]),
        "poll_s": spread([m for r in results for m in r["polls_s"]]),  # fragment reruns on run_every timers
        "moves_that_changed_size": sum(r["size_changed"] for r in results),
        "script_runs": len(runs),  # renders, moves and polls
        "poll_runs": sum(len(r["polls_s"]) for r in results),
        "script_runs_per_s": round((len(runs) - 1) / busy, 2) if busy else None,
        "errors_shown": sum(len(r["errors"]) for r in results),
        "exceptions_shown": sum(len(r["exceptions"]) for r in results),
        "examples": sorted({e for r in results for e in r["errors"] + r["exceptions"]})[:5],
        "failed_sessions": sum(r["failure"] is not None for r in results),
        "slowest_moves": slowest(results, extra["start"]),
        "scenarios": per_scenario,
        "wall_s": extra["wall_s"],
        "server_rss_mb": extra["memory"],
        "load_average_1m_5m": [round(x, 2) for x in os.getloadavg()],
        "cpus": os.cpu_count(),
    }


@contextmanager
def server(workers: int, extra_args: list[str] | None = None) -> Iterator[tuple[str, list[int]]]:
    """A fresh server: one `streamlit run`, or scripts/serve.sh with nginx in front of `workers` processes."""
    if workers <= 1:
        with streamlit_server() as (url, process):
            yield url, [process.pid]
        return
    port = free_port()
    process = subprocess.Popen(["bash", "scripts/serve.sh", "--workers", str(workers), "--port", str(port),
                                "--address", "127.0.0.1", *(extra_args or [])],
                               cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    url = f"http://localhost:{port}"
    try:
        deadline = time.monotonic() + 600  # serve.sh answers once every worker is warm
        while not healthy(url):
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"serve.sh did not come up on {url}: {process.stdout.read()[-2000:]}")
            time.sleep(0.3)
        yield url, worker_pids(process.pid)
    finally:
        process.terminate()  # serve.sh stops nginx and its workers (by pid) on TERM
        process.wait(timeout=300)


def worker_pids(parent: int) -> list[int]:
    """The streamlit processes started by serve.sh (children of its shell)."""
    pids = []
    for child in Path(f"/proc/{parent}/task/{parent}/children").read_text().split():
        cmdline = Path(f"/proc/{child}/cmdline").read_bytes().replace(b"\0", b" ")
        if b"streamlit" in cmdline:
            pids.append(int(child))
    return pids


async def settle(url: str, pids: list[int], seconds: float) -> tuple[float | None, float | None]:
    """Memory after everyone left, with and without the children: wait, then one short visit (the server drops
    expired sessions on access)."""
    await asyncio.sleep(seconds)
    me = Attendee(url, Scenario("Pruning", "digits-mlp", ""), 0)
    await me.connect()
    await me.run()
    await me.close()
    await asyncio.sleep(2)
    return rss_mb(pids), rss_mb(pids, children=False)


RECORDS = ("room", "memory", "scaling", "throughput")
HOW = {
    "cold_caches": "every run starts a fresh server: new processes, so the in-memory caches (models, reports, figures, "
                   "deployments) are empty; with --workers > 1 serve.sh shares results through a new temporary "
                   "directory, removed when it stops. The warm-up session of each scenario (the instructor's tour: "
                   "first render and one move) is the only thing computed before the room arrives.",
    "moves": "each move goes to a random other stop of the slider; first_move_s covers the moves to a stop no session "
             "had asked for before in that run (computed then), move_s all of them",
    "memory": "before_mb: the server's resident memory (sum over its processes and their children, /proc) after the warm-up render and "
              "move of each scenario; during_peak_mb: the highest sample (every 0.5 s) while the sessions work; "
              "after_mb: settle_s seconds after the last session disconnected, then one short visit (Streamlit drops "
              "expired sessions when a session starts); *_main_mb: the same without the children (the deployment "
              "child of ui/deploy_jobs.py exits after a minute without a job, so after_mb may lack it)",
    "polls": "a page waiting for its deployed latency reruns one fragment every 1.5 s (run_every); the clients follow "
             "those timers as the browser does, between moves; poll_s are those runs, deployed_shown_after_s the "
             "time from a move to the deployed latency on screen",
}


def record(name: str, summary: dict) -> None:
    """Keep `summary` in the results file: as its `name` entry, or for 'scaling' as the row workers × sessions."""
    results = json.loads(RESULTS.read_text()) if RESULTS.exists() else {}
    if "room" not in results and "scaling" not in results and "memory" not in results:
        results = {}  # the old shape (one summary): replaced
    results["how"] = HOW
    if name == "scaling":
        results.setdefault("scaling", {})[f"{summary['workers']} x {summary['sessions']}"] = summary
        results["scaling"] = dict(sorted(results["scaling"].items(), key=lambda kv: tuple(map(int, kv[0].split(" x ")))))
    else:
        results[name] = summary
    save(results, "bench_room")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sessions", type=int, default=30)
    parser.add_argument("--moves", type=int, default=10, help="slider moves per session")
    parser.add_argument("--think", type=float, default=3.0, help="mean seconds between moves (0: back to back)")
    parser.add_argument("--arrival", type=float, default=10.0, help="sessions arrive spread over this many seconds")
    parser.add_argument("--scenario", action="append", help="PAGE:MODEL:SLIDER LABEL (repeatable)")
    parser.add_argument("--minilm", action="store_true", help=f"add {MINILM_SCENARIO!r} (skipped if not offered)")
    parser.add_argument("--workers", type=int, default=1, help="server processes (more than 1: scripts/serve.sh)")
    parser.add_argument("--url", help="a running server instead of starting one")
    parser.add_argument("--pid", type=int, action="append", default=[], help="its server pid(s), for memory")
    parser.add_argument("--settle", type=float, default=5.0,
                        help="seconds to wait after the sessions leave before measuring memory again")
    parser.add_argument("--out", type=Path, default=Path("-"), help="also write this run's JSON here ('-': print only)")
    parser.add_argument("--record", choices=RECORDS,
                        help=f"keep this run in {RESULTS.relative_to(REPO)} as the room figure ('room'), the memory "
                             "figure ('memory') or a row of the scaling table ('scaling', keyed by workers × sessions)")
    parser.add_argument("--warm-moves", type=int, default=1,
                        help="moves of the warm-up session of each scenario before the room (1: the instructor's tour; more: "
                             "every stop in turn first, e.g. 25 for a throughput run on computed stops; first_move_s "
                             "then counts the stops left)")
    parser.add_argument("--repeat", type=int, default=1,
                        help="run the room this many times (1-20), each on a fresh server; the JSON is the last run's, "
                             "with every run's headline figures under 'repeats' (one run can be lucky)")
    parser.add_argument("--warm-only", action="store_true",
                        help="render each scenario once on --url and exit (serve.sh warms every worker with it)")
    args = parser.parse_args()
    if args.warm_moves < 1:
        parser.error(f"--warm-moves {args.warm_moves}: must be at least 1")
    if not 1 <= args.repeat <= 20 or (args.repeat > 1 and args.url):
        parser.error(f"--repeat {args.repeat}: expected 1 to 20, and a server of its own (no --url) for more than 1")
    scenarios = [Scenario.parse(s) for s in (args.scenario or DEFAULT_SCENARIOS)]
    if args.minilm:
        scenarios.append(Scenario.parse(MINILM_SCENARIO))
    if args.warm_only:
        if not args.url:
            parser.error("--warm-only needs --url")
        asyncio.run(warm(args.url, scenarios))
        return

    def measure(url: str, pids: list[int]) -> dict:
        results, extra = asyncio.run(room(url, scenarios, args.sessions, args.moves, args.think, args.arrival, pids,
                                          args.warm_moves))
        skipped = {w["scenario"]: w["failure"] for w in extra["warm"] if w["failure"] and "picker" in w["failure"]}
        results = [r for r in results if r["scenario"] not in skipped]
        summary = summarize(results, extra, [s for s in scenarios if str(s) not in skipped], args)
        summary["skipped_scenarios"] = skipped
        summary["server_rss_mb"]["after_mb"], summary["server_rss_mb"]["after_main_mb"] = asyncio.run(
            settle(url, pids, args.settle))
        summary["server_rss_mb"]["settle_s"] = args.settle
        return summary

    def emit(summary: dict) -> None:
        summary["note"] = ("protocol clients on the server's machine; 2 cores shared with other work (see load "
                           "average): times are upper bounds")
        summary["uptime"] = subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()
        summary["server"] = ("streamlit run app.py (one process, no proxy)" if args.workers <= 1 and not args.url else
                             f"scripts/serve.sh: nginx in front of {args.workers} processes" if not args.url else args.url)
        summary["command"] = "python benchmarks/bench_room.py " + " ".join(sys.argv[1:])
        text = json.dumps(summary, indent=2)
        print(text, flush=True)
        if str(args.out) != "-":
            args.out.parent.mkdir(parents=True, exist_ok=True)
            args.out.write_text(text + "\n")
        if args.record:
            record(args.record, summary)

    if args.url:
        emit(measure(args.url, args.pid))
        return
    repeats = []
    for _ in range(args.repeat):
        with server(args.workers) as (url, pids):
            summary = measure(url, pids)  # before the server stops: N busy workers can take a while
        repeats.append(headline(summary))
    if args.repeat > 1:
        summary["repeats"] = repeats
    emit(summary)


def headline(summary: dict) -> dict:
    """One run in a line: what the targets and a reader look at first."""
    return {"move_p95_s": summary["move_s"]["p95"], "move_max_s": summary["move_s"]["max"],
            "first_move_p95_s": (summary["first_move_s"] or {}).get("p95"),
            "first_render_p95_s": summary["first_render_s"]["p95"], "load_1m": summary["load_average_1m_5m"][0],
            "errors": summary["errors_shown"], "exceptions": summary["exceptions_shown"],
            "failed_sessions": summary["failed_sessions"]}


if __name__ == "__main__":
    main()
