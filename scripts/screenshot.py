"""Screenshot dashboard pages as a user sees them: `python scripts/screenshot.py URL OUT.png [--height 1000]`.

Drives Debian's Chromium with Playwright and waits until Streamlit has finished running the page. Emoji in titles
need a colour emoji font on the machine (Debian's fonts-noto-color-emoji, installed by `scripts/install.sh --test`);
without one they render as empty boxes, so the script refuses to run until it is there.
"""
from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

from playwright.sync_api import sync_playwright

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from scripts.local_server import CHROMIUM, CHROMIUM_ARGS  # noqa: E402


def has_emoji_font() -> bool:
    """Whether fontconfig knows a colour emoji font (what Chromium falls back to for emoji)."""
    try:
        fonts = subprocess.run(["fc-list"], capture_output=True, text=True, check=False).stdout
    except OSError:
        return False
    return "color emoji" in fonts.lower()


def wait_until_idle(page, quiet_ms: int = 2500, timeout_ms: int = 90000) -> None:
    """Wait until Streamlit's "running" status widget has been absent for `quiet_ms` in a row."""
    quiet = 0
    for _ in range(timeout_ms // 250):
        running = page.query_selector('[data-testid="stStatusWidget"]') is not None
        quiet = 0 if running else quiet + 250
        if quiet >= quiet_ms:
            return
        page.wait_for_timeout(250)
    raise TimeoutError(f"the page was still running after {timeout_ms} ms")


def screenshot(url: str, out: str, width: int = 1400, height: int = 1000, full_page: bool = False) -> None:
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": width, "height": height})
        page.goto(url)
        page.wait_for_selector('[data-testid="stMain"] [data-testid="stMarkdownContainer"]', timeout=60000)
        wait_until_idle(page)
        page.wait_for_timeout(1500)  # let Plotly finish drawing
        page.screenshot(path=out, full_page=full_page)
        browser.close()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("url")
    parser.add_argument("out")
    parser.add_argument("--width", type=int, default=1400)
    parser.add_argument("--height", type=int, default=1000)
    parser.add_argument("--full-page", action="store_true")
    args = parser.parse_args()
    if not has_emoji_font():
        sys.exit("no colour emoji font: run `bash scripts/install.sh --test` (installs Debian's fonts-noto-color-emoji)")
    screenshot(args.url, args.out, args.width, args.height, args.full_page)
