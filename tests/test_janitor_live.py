"""The upload janitor on a real server (ui/janitor.py), with tabs speaking Streamlit's websocket protocol: an upload
survives a reload, goes once its session's last tab has been gone for the grace period, and another session's
stays. The server runs with the grace period shortened to seconds (set before the app imports it)."""
from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch
import websockets
from safetensors.torch import save
from streamlit.proto.BackMsg_pb2 import BackMsg
from streamlit.proto.ForwardMsg_pb2 import ForwardMsg

import sample_models
from scripts.local_server import REPO, free_port, healthy

GRACE_S, BEAT_S = 4.0, 0.5
SERVER = (  # streamlit run app.py, in a process whose janitor has a 4-second grace period
    "import sys; import ui.janitor as janitor; janitor.GRACE_S, janitor.BEAT_S = {grace}, {beat}; "
    "from streamlit.web.cli import main; sys.argv = ['streamlit', 'run', 'app.py', '--server.port', '{port}', "
    "'--server.address', 'localhost', '--server.headless', 'true', "
    "'--browser.gatherUsageStats', 'false']; main()"
)


@pytest.fixture(scope="module")
def server(tmp_path_factory) -> Iterator[tuple[str, Path]]:
    """A server with the short grace period, on its own session folder: (URL, session folder)."""
    folder = tmp_path_factory.mktemp("live-sessions")
    port = free_port()
    log = tempfile.NamedTemporaryFile(prefix="streamlit_janitor_", suffix=".log", delete=False)
    process = subprocess.Popen([sys.executable, "-c", SERVER.format(grace=GRACE_S, beat=BEAT_S, port=port)],
                               cwd=REPO, stdout=log, stderr=subprocess.STDOUT,
                               env={**os.environ, "CLAB_SESSION_DIR": str(folder)})
    url = f"http://localhost:{port}"
    try:
        deadline = time.monotonic() + 60
        while not healthy(url):
            assert process.poll() is None and time.monotonic() < deadline, Path(log.name).read_text()[-3000:]
            time.sleep(0.2)
        yield url, folder
    finally:
        process.terminate()
        process.wait(timeout=10)
        log.close()


async def open_tab(url: str, session_id: str):
    """A browser tab at /?s=<session_id>: its websocket, after the first run of the Overview page finished."""
    ws = await websockets.connect(f"ws://{url.split('://')[1]}/_stcore/stream", subprotocols=["streamlit"],
                                  max_size=64 * 2**20, ping_interval=None)
    msg = BackMsg()
    msg.rerun_script.query_string = f"s={session_id}"
    await ws.send(msg.SerializeToString())
    while True:
        fwd = ForwardMsg()
        fwd.ParseFromString(await asyncio.wait_for(ws.recv(), 120))
        if fwd.WhichOneof("type") == "script_finished":
            if fwd.script_finished == ForwardMsg.FINISHED_EARLY_FOR_RERUN:  # a fresh server's first run reruns
                continue  # through app.py (ui/session.py); the browser, too, waits for the run that follows
            assert fwd.script_finished == ForwardMsg.FINISHED_SUCCESSFULLY
            return ws


def store_upload(session_id: str) -> Path:
    """An upload of `session_id`, stored the way the app's form stores it (in $CLAB_SESSION_DIR)."""
    from ui import uploads

    torch.manual_seed(1)
    weights = save(sample_models.build("digits-mlp").state_dict())
    return uploads.own_model_folder(uploads.store_weights(session_id, "digits-mlp", "w.safetensors", weights))


def test_uploads_survive_a_reload_and_go_after_the_last_tab(server, monkeypatch):
    url, folder = server
    monkeypatch.setenv("CLAB_SESSION_DIR", str(folder))  # the server's folder
    alice, bob = "a" * 22, "b" * 22
    for session_id in (alice, bob):  # sessions that have been here (a tab's first run writes its file)
        (folder / f"{session_id}.json").write_text('{"browser": null}')  # these tabs send no XSRF cookie

    async def scenario() -> None:
        tab = await open_tab(url, alice)
        other = await open_tab(url, bob)
        mine, theirs = store_upload(alice), store_upload(bob)
        await asyncio.sleep(3 * GRACE_S)  # both tabs open: nothing goes, however long
        assert mine.exists() and theirs.exists()
        await tab.close()  # reload: the old tab's websocket closes, a new one carries the same ?s= id
        tab = await open_tab(url, alice)
        await asyncio.sleep(2 * GRACE_S)
        assert mine.exists(), "an upload went on a reload"
        await tab.close()  # alice leaves
        await asyncio.sleep(GRACE_S / 2)
        assert mine.exists(), "an upload went before the grace period ended"
        for _ in range(40):
            if not mine.exists():
                break
            await asyncio.sleep(BEAT_S)
        assert not mine.exists(), "the upload of a session with no tab left stayed"
        assert theirs.exists(), "another session's upload was deleted"
        await other.close()

    asyncio.run(scenario())
