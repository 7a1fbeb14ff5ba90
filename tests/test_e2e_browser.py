"""End to end in a real browser: Debian's Chromium, driven by Playwright, against `streamlit run app.py`.

What a workshop attendee does: open a shared deep link (/Pruning) on a server that has just started, pick a
model in the sidebar, move the amount slider with the keyboard, and watch the accuracy metric change to what
the core computes for the same recipe. Every wait is bounded; a failure leaves a screenshot in /tmp.

Needs `bash scripts/install.sh --test` (Playwright and /usr/bin/chromium; Playwright's own browser download
does not work on these machines).
"""
from __future__ import annotations

import functools
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from playwright.sync_api import Page, expect, sync_playwright

import compressor as cz
from scripts.local_server import CHROMIUM, CHROMIUM_ARGS, streamlit_server

SERVER_START_S = 60  # until /_stcore/health answers
FIRST_RENDER_MS = 120_000  # first page of a fresh server: imports torch, loads the sample, runs the sweep
RERUN_MS = 60_000  # one rerun after a widget change (digits-cnn, on a shared 2-core machine)
KEY_PRESSES = 8  # ArrowRight presses on the amount slider (5% stops: 50% -> 90%)

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def server() -> Iterator[str]:
    """A fresh `streamlit run app.py` on a free localhost port; its URL. Stopped (by its pid) at teardown."""
    try:
        with streamlit_server(SERVER_START_S) as (url, _):
            yield url
    except RuntimeError as err:
        pytest.fail(str(err))


@pytest.fixture(scope="module")
def browser_page() -> Iterator[Page]:
    if not Path(CHROMIUM).exists():
        pytest.fail(f"{CHROMIUM} is missing: run `bash scripts/install.sh --test` (installs Debian's chromium)")
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            yield browser.new_page(viewport={"width": 1400, "height": 1000})
        finally:
            browser.close()


@contextmanager
def screenshot_on_failure(page: Page, name: str) -> Iterator[None]:
    """On any failure inside, save the page as /tmp/<name>-<time>.png and say where in the error."""
    try:
        yield
    except BaseException as err:
        path = Path(tempfile.gettempdir()) / f"{name}-{time.strftime('%Y%m%d-%H%M%S')}.png"
        try:
            page.screenshot(path=str(path), full_page=True)
            err.add_note(f"screenshot of the page: {path}")
        except Exception as shot_error:  # the browser itself may be gone
            err.add_note(f"no screenshot ({shot_error})")
        raise


@functools.cache
def sample(name: str) -> cz.Sample:
    return cz.load_sample(name)


def pruned_accuracy(model_name: str, amount: float) -> str:
    """The accuracy the Pruning page should show for its default controls at `amount`, as the metric formats it."""
    sample_ = sample(model_name)
    small = cz.compress(sample_.model, cz.Prune(amount=amount), sample_.data)
    return f"{cz.evaluate(small, sample_.data, baseline=sample_.model, latency=None).accuracy:.1%}"


def percent(text: str | None) -> float:
    """'90%' -> 0.9 (the slider's aria-valuetext)."""
    assert text and text.endswith("%"), f"unexpected slider value text {text!r}"
    return round(float(text[:-1]) / 100, 2)


def test_deep_link_pick_model_move_slider(server: str, browser_page: Page) -> None:
    page = browser_page
    with screenshot_on_failure(page, "e2e_pruning"):
        page.goto(f"{server}/Pruning")  # the fresh server's first request is the deep link
        accuracy = page.get_by_test_id("stMetric").filter(has_text="Accuracy").get_by_test_id("stMetricValue")
        expect(accuracy).to_be_visible(timeout=FIRST_RENDER_MS)
        expect(page.get_by_role("heading", name="Pruning", level=1)).to_be_visible()
        expect(page.get_by_test_id("stException")).to_have_count(0)
        menu = page.get_by_test_id("stSidebarNav")  # app.py's menu, even on a fresh server's first (deep) link
        expect(menu).to_contain_text("Overview")
        expect(menu).not_to_contain_text("app")  # not the pages/ folder's menu, which lists app.py as "app"

        sidebar = page.get_by_test_id("stSidebar")
        picker = sidebar.get_by_role("combobox", name="Model")
        picker.click()
        page.get_by_role("option", name="digits-cnn", exact=True).click()
        expect(picker).to_have_value("digits-cnn")
        expect(sidebar).to_contain_text(cz.list_samples()["digits-cnn"], timeout=RERUN_MS)

        slider = sidebar.get_by_role("slider", name="Amount pruned")
        start = percent(slider.get_attribute("aria-valuetext"))
        expect(accuracy).to_have_text(pruned_accuracy("digits-cnn", start), timeout=RERUN_MS)
        shown_before = accuracy.inner_text()

        slider.focus()
        for _ in range(KEY_PRESSES):
            slider.press("ArrowRight")
        end = percent(slider.get_attribute("aria-valuetext"))
        assert end > start, f"the slider did not move: {start} -> {end}"
        expected = pruned_accuracy("digits-cnn", end)
        assert expected != shown_before, f"the test needs amounts whose accuracies differ ({start}, {end})"
        expect(accuracy).to_have_text(expected, timeout=RERUN_MS)
        expect(page.get_by_test_id("stException")).to_have_count(0)


def session_id(page: Page) -> str:
    """The ?s= id the page keeps in its URL (ui/session.py), once the app has put it there."""
    page.wait_for_url("**s=*", timeout=RERUN_MS)
    return page.url.split("s=", 1)[1].split("&", 1)[0]


def test_a_reload_keeps_the_session_and_the_same_url_in_another_browser_does_not(server: str, browser_page: Page) -> None:
    page = browser_page
    with screenshot_on_failure(page, "e2e_session"):
        page.goto(f"{server}/Quantization")
        sidebar = page.get_by_test_id("stSidebar")
        picker = sidebar.get_by_role("combobox", name="Model")
        expect(picker).to_be_visible(timeout=FIRST_RENDER_MS)
        picker.click()
        page.get_by_role("option", name="digits-cnn", exact=True).click()
        expect(sidebar).to_contain_text(cz.list_samples()["digits-cnn"], timeout=RERUN_MS)
        mine = session_id(page)
        url = page.url

        page.reload()
        expect(page.get_by_test_id("stSidebar").get_by_role("combobox", name="Model")).to_have_value(
            "digits-cnn", timeout=RERUN_MS)
        assert session_id(page) == mine

        other = page.context.browser.new_context(viewport={"width": 1400, "height": 1000})  # its own cookies
        try:
            theirs = other.new_page()
            theirs.goto(url)  # the instructor's URL, read off the projector
            picker = theirs.get_by_test_id("stSidebar").get_by_role("combobox", name="Model")
            expect(picker).to_have_value("digits-mlp", timeout=FIRST_RENDER_MS)  # the default, not the instructor's
            theirs.wait_for_function(f"() => !window.location.search.includes({mine!r})", timeout=RERUN_MS)
            assert session_id(theirs) != mine
        finally:
            other.close()
