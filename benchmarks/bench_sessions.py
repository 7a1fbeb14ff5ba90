"""A workshop room on one server, printed as JSON: `python benchmarks/bench_sessions.py [--sessions 30]`.

Starts `streamlit run app.py`, lets the instructor open the Pruning page first, then opens N browser sessions at
within seconds (separate Chromium contexts: separate Streamlit sessions) on the same deep link. Each session waits for the
accuracy metric, moves the amount slider by its own number of steps (so sessions ask for different
configurations) and waits for the metric to change. Reports time to first render and to update per session,
sessions that saw an error, and the server's memory. Browser and server share this machine's two cores, so
the times include Chromium loading and rendering N pages at once: an upper bound for a room whose browsers run
on the attendees' own laptops. What the run proves is that every session renders, updates and sees no error.
"""
from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import time
from pathlib import Path

from playwright.async_api import async_playwright

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from scripts.local_server import CHROMIUM, CHROMIUM_ARGS, streamlit_server  # noqa: E402

TIMEOUT_MS = 300_000
ARRIVAL_GAP_S = 0.5  # attendees open the link within ~15 s of each other, not in the same millisecond


async def attendee(browser, url: str, steps: int, delay_s: float = 0.0) -> dict:
    """One session: open the deep link, wait for the metric, move the slider, wait for the new metric."""
    await asyncio.sleep(delay_s)
    context = await browser.new_context(viewport={"width": 1400, "height": 1000})
    context.set_default_timeout(TIMEOUT_MS)  # thirty tabs share two cores with the server
    page = await context.new_page()
    start = time.perf_counter()
    await page.goto(f"{url}/Pruning", wait_until="commit", timeout=TIMEOUT_MS)
    accuracy = page.get_by_test_id("stMetric").filter(has_text="Accuracy").get_by_test_id("stMetricValue")
    await accuracy.wait_for(timeout=TIMEOUT_MS)
    rendered = time.perf_counter()
    before = await accuracy.inner_text()
    slider = page.get_by_test_id("stSidebar").get_by_role("slider", name="Amount pruned")
    await slider.focus()
    for _ in range(steps):
        await slider.press("ArrowRight")
    moved = time.perf_counter()
    deadline = moved + TIMEOUT_MS / 1000
    while await accuracy.inner_text() == before and time.perf_counter() < deadline:
        await page.wait_for_timeout(100)
    updated = time.perf_counter()
    errors = await page.get_by_test_id("stException").count() + await page.get_by_test_id("stAlertContentError").count()
    changed = await accuracy.inner_text() != before
    await context.close()
    return {"render_s": rendered - start, "update_s": updated - moved, "changed": changed, "errors": errors}


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def spread(values: list[float]) -> dict:
    ordered = sorted(values)
    return {"p50": round(statistics.median(ordered), 2), "p90": round(ordered[int(0.9 * (len(ordered) - 1))], 2),
            "max": round(ordered[-1], 2)}


async def room(url: str, sessions: int) -> list[dict]:
    async with async_playwright() as p:
        browser = await p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        await attendee(browser, url, steps=1)  # the instructor opens the page first (fills the shared caches)
        results = await asyncio.gather(
            *(attendee(browser, url, steps=1 + i % 9, delay_s=ARRIVAL_GAP_S * i) for i in range(sessions))
        )
        await browser.close()
    return list(results)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--sessions", type=int, default=30)
    args = parser.parse_args()
    with streamlit_server() as (url, process):
        start = time.perf_counter()
        results = asyncio.run(room(url, args.sessions))
        wall = time.perf_counter() - start
        memory = rss_mb(process.pid)
    print(json.dumps({
        "sessions": args.sessions,
        "all_rendered_and_updated": all(r["changed"] for r in results),
        "sessions_with_errors": sum(r["errors"] > 0 for r in results),
        "first_render_s": spread([r["render_s"] for r in results]),
        "update_after_slider_s": spread([r["update_s"] for r in results]),
        "wall_s": round(wall, 1),
        "server_rss_mb": round(memory, 1),
        "note": "browser and server share 2 cores: times include rendering every session's page",
    }, indent=2))


if __name__ == "__main__":
    main()
