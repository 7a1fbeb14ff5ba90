"""What a user sets stays set: across pages, across a reload (a new session with the same ?s= id), and never
into another session (ui/session.py)."""
from __future__ import annotations

import json
import os
import time
from pathlib import Path

from streamlit.testing.v1 import AppTest

from ui import session
from ui.session import ID_PATTERN, POINTS, QUERY_KEY

ROOT = Path(__file__).resolve().parents[1]
PRUNING, QUANTIZATION, LOW_RANK = "pages/1_Pruning.py", "pages/2_Quantization.py", "pages/3_Low-rank.py"


def open_page(page: str, session_id: str | None = None) -> AppTest:
    """A new session (a first visit, or a reload with ?s=session_id) on `page`, entered from the Overview."""
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=120)
    if session_id is not None:
        at.query_params[QUERY_KEY] = session_id
    return at.run().switch_page(page).run()


def test_every_control_keeps_its_value_across_pages():
    at = open_page(PRUNING)
    at.select_slider(key="prune_amount").set_value(0.85)
    at.radio(key="prune_criterion").set_value("random")
    at.toggle(key="prune_finetune").set_value(True).run()
    at.select_slider(key="prune_ft_epochs").set_value(1).run()
    assert not at.exception
    at.switch_page(QUANTIZATION).run()
    at.slider(key="quant_bits").set_value(3).run()
    assert "prune_amount" not in [w.key for w in at.select_slider]  # the Pruning widgets are gone with their page
    at.switch_page(LOW_RANK).run()
    at.switch_page(PRUNING).run()
    assert not at.exception
    assert at.select_slider(key="prune_amount").value == 0.85
    assert at.radio(key="prune_criterion").value == "random"
    assert at.toggle(key="prune_finetune").value is True
    assert at.select_slider(key="prune_ft_epochs").value == 1
    at.switch_page(QUANTIZATION).run()
    assert at.slider(key="quant_bits").value == 3


def test_a_reload_restores_settings_points_and_pins_and_the_id_stays_in_the_url():
    first = open_page(PRUNING)
    session_id = first.query_params[QUERY_KEY]
    assert isinstance(session_id, str) and ID_PATTERN.fullmatch(session_id)
    first.select_slider(key="prune_amount").set_value(0.85).run()
    first.switch_page(QUANTIZATION).run()
    assert first.query_params[QUERY_KEY] == session_id  # still in the URL after a page switch
    first.slider(key="quant_bits").set_value(2).run()
    points = dict(first.session_state[POINTS])
    pinned = next(iter(points))
    first.session_state[POINTS][pinned]["pinned"] = True
    first.switch_page(PRUNING).run()  # a run after the pin writes it (the Trade-offs page calls set_pinned)

    reloaded = open_page(QUANTIZATION, session_id)  # a reload: a new session, the same URL
    assert not reloaded.exception
    assert reloaded.slider(key="quant_bits").value == 2
    assert set(reloaded.session_state[POINTS]) == set(points)
    assert reloaded.session_state[POINTS][pinned]["pinned"] is True
    reloaded.switch_page(PRUNING).run()
    assert reloaded.select_slider(key="prune_amount").value == 0.85


def test_the_pipeline_recipe_survives_a_reload():
    first = open_page("pages/4_Pipeline.py")
    session_id = first.query_params[QUERY_KEY]
    first.session_state["pipeline_json"] = '{"steps": [{"type": "quantize", "bits": 3}]}'
    first.button(key="pipeline_load_json").click().run()
    assert not first.exception
    reloaded = open_page("pages/4_Pipeline.py", session_id)
    assert not reloaded.exception
    assert json.loads(reloaded.code[-1].value)["steps"] == [{"type": "quantize", "bits": 3}]


def test_sessions_see_nothing_of_each_other():
    mine = open_page(QUANTIZATION)
    mine.slider(key="quant_bits").set_value(2).run()
    other = open_page(QUANTIZATION)  # a second visitor: no id in the URL
    assert other.query_params[QUERY_KEY] != mine.query_params[QUERY_KEY]
    assert other.slider(key="quant_bits").value == 4
    assert all(row["recipe"] != json.dumps({"steps": [{"type": "quantize", "bits": 2}]}) for row in
               other.session_state[POINTS].values())
    guessed = open_page(QUANTIZATION, "../../etc/passwd")  # not an id: a new session, nothing read
    assert not guessed.exception and guessed.query_params[QUERY_KEY] != "../../etc/passwd"
    assert guessed.slider(key="quant_bits").value == 4


def test_old_session_files_expire():
    stale = session.session_dir() / ("x" * 22 + ".json")
    stale.write_text("{}")
    old = time.time() - session.SESSION_MAX_AGE_S - 60
    os.utime(stale, (old, old))
    fresh = session.session_dir() / ("y" * 22 + ".json")
    fresh.write_text("{}")
    assert session.expire_old_files() >= 1
    assert not stale.exists() and fresh.exists()


def test_a_value_the_widget_cannot_show_now_falls_back_to_the_default():
    at = open_page(QUANTIZATION)
    at.radio(key="quant_granularity").set_value("channel").run()
    at.number_input(key="quant_channel").set_value(250).run()  # fc1 has 300 output channels
    at.selectbox(key="quant_layer").set_value("fc3").run()  # 10 channels
    assert not at.exception
    assert at.number_input(key="quant_channel").value == 0


def test_session_files_are_written_in_the_background_the_newest_text_winning(tmp_path, monkeypatch):
    monkeypatch.setenv("CLAB_SESSION_DIR", str(tmp_path))
    writer = session.FileWriter()
    for i in range(50):
        writer.put("a" * 22, json.dumps({"move": i}))
    writer.put("b" * 22, json.dumps({"move": "b"}))
    assert writer.flush()
    assert json.loads((tmp_path / f"{'a' * 22}.json").read_text()) == {"move": 49}
    assert json.loads((tmp_path / f"{'b' * 22}.json").read_text()) == {"move": "b"}
    assert sorted(p.name for p in tmp_path.iterdir()) == [f"{'a' * 22}.json", f"{'b' * 22}.json"]  # no scratch left


def test_the_browser_key_is_the_xsrf_token_whatever_its_mask():
    from streamlit.web.server.starlette.starlette_app_utils import generate_xsrf_token_string  # Streamlit's own

    token, other = os.urandom(16), os.urandom(16)
    first, again = generate_xsrf_token_string(token, 1), generate_xsrf_token_string(token, 1)
    assert first != again  # a new random mask on every page load
    assert session.browser_key(first) == session.browser_key(again) is not None
    assert session.browser_key(generate_xsrf_token_string(other, 1)) != session.browser_key(first)
    for broken in (None, "", "1|ab", "2|zz|00|1", "2|0102|0304|1", "2|01020304||1", "x" * 5000):
        assert session.browser_key(broken) is None


def test_a_url_from_someone_elses_screen_starts_a_session_of_its_own(monkeypatch):
    browser = {"key": "instructor"}
    monkeypatch.setattr(session, "browser_key", lambda cookie: browser["key"])
    mine = open_page(QUANTIZATION)
    session_id = mine.query_params[QUERY_KEY]
    mine.slider(key="quant_bits").set_value(2).run()

    browser["key"] = "attendee"  # the projected URL, typed into another browser
    theirs = open_page(QUANTIZATION, session_id)
    assert not theirs.exception and theirs.query_params[QUERY_KEY] != session_id
    assert theirs.slider(key="quant_bits").value == 4 and len(theirs.session_state[POINTS]) <= 1

    browser["key"] = "instructor"  # the instructor's own reload still finds everything
    reloaded = open_page(QUANTIZATION, session_id)
    assert reloaded.query_params[QUERY_KEY] == session_id and reloaded.slider(key="quant_bits").value == 2


def test_an_id_without_a_file_is_not_adopted():
    unknown = "A" * 22
    assert ID_PATTERN.fullmatch(unknown) and not (session.session_dir() / f"{unknown}.json").exists()
    at = open_page(QUANTIZATION, unknown)
    assert not at.exception and at.query_params[QUERY_KEY] != unknown
