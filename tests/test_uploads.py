"""Your own model in the app (ui/uploads.py): offered to its own session only, refused clearly, deleted with it."""
from __future__ import annotations

import io
import re
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import save
from streamlit.testing.v1 import AppTest

import sample_models
from ui import session, uploads
from ui.session import MODEL, QUERY_KEY

ROOT = Path(__file__).resolve().parents[1]


def weights_bytes(seed: int = 3, pt: bool = False) -> bytes:
    """digits-mlp weights as a safetensors file, or (pt=True) as a torch.save state dict."""
    torch.manual_seed(seed)
    state = sample_models.build("digits-mlp").state_dict()
    if not pt:
        return save(state)
    buffer = io.BytesIO()
    torch.save(state, buffer)
    return buffer.getvalue()


def open_app(session_id: str | None = None) -> AppTest:
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=120)
    if session_id is not None:
        at.query_params[QUERY_KEY] = session_id
    return at.run()


def picker_options(at: AppTest) -> list[str]:
    return list(at.sidebar.selectbox(key="_model_picker").options)


def rendered(at: AppTest) -> str:
    """Everything the last run sent to the browser, as text: every element's message (texts, captions, code,
    figures' JSON, tables, widget ids, labels and options)."""
    def walk(node):
        yield str(getattr(node, "proto", "") or "")
        for child in getattr(node, "children", {}).values():
            yield from walk(child)

    return "\n".join(walk(at._tree))


def test_an_upload_is_offered_to_its_session_only_and_pages_work_on_it():
    alice, bob = open_app(), open_app()
    alice_id, bob_id = alice.query_params[QUERY_KEY], bob.query_params[QUERY_KEY]
    name = uploads.store_weights(alice_id, "digits-mlp", "mine.safetensors", weights_bytes())
    assert name.startswith(f"upload:{alice_id}:")
    alice.run()
    assert "your model (mine.safetensors)" in picker_options(alice)
    alice.sidebar.selectbox(key="_model_picker").set_value(name).run()
    assert not alice.exception
    assert alice.session_state[MODEL] == name
    assert "**your model (mine.safetensors)** — digits-mlp with your weights from mine.safetensors" in alice.markdown[0].value
    assert alice_id not in rendered(alice)
    for page, _, _ in session.PAGES[1:]:  # every page works on it and never shows the session id
        alice.switch_page(page).run()
        assert not alice.exception, page
        assert alice.session_state[MODEL] == name
        assert alice_id not in rendered(alice), page
        if page == "pages/5_Trade-offs.py":
            assert "— your model (mine.safetensors)" in rendered(alice)  # the figure's title
        if page == "pages/6_Export.py":
            python_code = alice.code[0].value
            assert 'load_weights("digits-mlp", "mine.safetensors")' in python_code
            assert "--weights mine.safetensors" in alice.code[1].value
    for page in ("pages/5_Trade-offs.py", "pages/6_Export.py"):  # again, now with the Distillation page's students
        alice.switch_page(page).run()
        assert not alice.exception and alice_id not in rendered(alice), page
    points = alice.session_state[session.POINTS]
    assert any("student" in row["recipe"] for row in points.values())
    assert not any(alice_id in row["recipe"] + row["label"] for row in points.values())  # what the CSV holds

    bob.run()
    assert not any(option.startswith("your model") for option in picker_options(bob))
    bob.session_state[MODEL] = name  # even if bob learnt the name, the picker falls back to a sample
    bob.run()
    assert not bob.exception and bob.session_state[MODEL] != name
    assert session.own_models(bob_id) == {}


def test_another_sessions_name_is_refused_by_the_cache(monkeypatch):
    name = uploads.store_weights("A" * 22, "digits-mlp", "w.safetensors", weights_bytes())
    monkeypatch.setattr(uploads.st, "session_state", {session.SESSION_ID: "B" * 22})
    from ui import cache

    with pytest.raises(ValueError, match="belongs to another session"):
        cache.sample(name)


def test_refused_uploads_leave_nothing(tmp_path):
    sid = "C" * 22
    with pytest.raises(ValueError, match="bias|weight"):
        uploads.store_weights(sid, "digits-cnn", "mlp.safetensors", weights_bytes())  # names differ
    with pytest.raises(ValueError, match="not a readable safetensors file"):
        uploads.store_weights(sid, "digits-mlp", "junk.safetensors", b"\x01" * 64)
    with pytest.raises(ValueError, match="must end in"):
        uploads.store_weights(sid, "digits-mlp", "w.bin", weights_bytes())
    with pytest.raises(ValueError, match="at most 209,715,200 bytes"):
        uploads.store_weights(sid, "digits-mlp", "big.pt", b"\x00" * (200 * 1024**2 + 1))
    with pytest.raises(ValueError, match="runs code, which this server does not allow"):
        uploads.store_entry_point(sid, "tests/models.py:residual_cnn", "d.npz", b"")
    assert session.own_models(sid) == {}
    assert not any(session.uploads_dir(sid).glob("*/*"))


def test_uploads_go_with_their_session_and_on_remove():
    """The janitor (tests/test_janitor.py has the clock-driven cases) on the app's own folders."""
    from ui.janitor import GRACE_S, Janitor

    sid, gone = "D" * 22, "E" * 22
    name = uploads.store_weights(sid, "digits-mlp", "w.pt", weights_bytes(pt=True))
    old = uploads.store_weights(gone, "digits-mlp", "w.safetensors", weights_bytes(4))
    assert list(session.own_models(gone)) == [old]
    later = time.time() + GRACE_S + 60
    janitor = Janitor(session.session_dir(), is_active=lambda tab: tab == "alive", clock=lambda: later)
    janitor.attach("alive", sid)  # sid's tab is still here; gone's closed more than the grace period ago
    swept = janitor.run_once()  # (the folder is shared with the other tests: their sessions may go too)
    assert gone in swept and sid not in swept
    assert not session.uploads_dir(gone).exists()
    assert list(session.own_models(sid)) == [name]  # a live session's upload stays
    uploads.st.session_state[session.SESSION_ID] = sid
    uploads.remove(name)
    assert session.own_models(sid) == {}


def test_entry_points_only_on_a_server_that_allows_code(monkeypatch, tmp_path):
    import numpy as np

    monkeypatch.delenv("CLAB_ALLOW_CODE", raising=False)
    at = open_app()
    at.expander[0]  # the "Your own model" form is drawn
    assert "Entry point (runs code)" not in at.radio(key="own_kind").options
    np.savez(tmp_path / "d.npz", X=np.zeros((8, 3, 16, 16), np.float32), y=np.arange(8) % 10)
    data = (tmp_path / "d.npz").read_bytes()
    monkeypatch.setenv("CLAB_ALLOW_CODE", "1")
    at.run()
    assert "Entry point (runs code)" in at.radio(key="own_kind").options
    sid = at.query_params[QUERY_KEY]
    name = uploads.store_entry_point(sid, "tests/models.py:residual_cnn", "d.npz", data)
    assert list(session.own_models(sid)) == [name]


def tiny_bert(folder: Path) -> Path:
    from transformers import BertConfig, BertModel

    torch.manual_seed(0)
    BertModel(BertConfig(hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=64),
              add_pooling_layer=False).save_pretrained(folder, safe_serialization=True)
    return folder


def test_a_hugging_face_folder_in_the_app(tmp_path, monkeypatch):
    root = tmp_path / "models"
    tiny_bert(root / "bert")
    monkeypatch.setenv("CLAB_HF_ROOTS", str(root))
    at = open_app()
    sid = at.query_params[QUERY_KEY]
    name = uploads.store_hf_folder(sid, str(root / "bert"))
    assert uploads.store_hf_folder(sid, str(root / "bert")) == name  # same content, same name
    at.run()
    at.sidebar.selectbox(key="_model_picker").set_value(name).run()
    assert not at.exception
    assert "Topic accuracy" in [m.label for m in at.metric]
    assert "your model (bert)" in picker_options(at)
    with pytest.raises(ValueError, match="is not a Hugging Face model folder"):
        uploads.store_hf_folder(sid, str(root))


def test_hugging_face_folders_only_under_an_allowed_root(tmp_path, monkeypatch):
    root, outside = tmp_path / "models", tiny_bert(tmp_path / "elsewhere")
    root.mkdir()
    sid = "F" * 22
    monkeypatch.delenv("CLAB_HF_ROOTS", raising=False)
    with pytest.raises(ValueError, match="Hugging Face folders on the server are off here; .*CLAB_HF_ROOTS="):
        uploads.store_hf_folder(sid, str(outside))
    at = open_app()
    at.radio(key="own_kind").set_value("Hugging Face folder on the server").run()
    assert not at.text_input and "Off on this server" in at.info[0].value  # no path field at all

    monkeypatch.setenv("CLAB_HF_ROOTS", str(root))
    for given in (str(outside), f"{root}/../elsewhere", "~/"):
        with pytest.raises(ValueError, match=f"folder '{re.escape(given)}' is outside the folders this server allows"):
            uploads.store_hf_folder(sid, given)
    (root / "link").symlink_to(outside, target_is_directory=True)  # a symlink inside the root pointing out of it
    with pytest.raises(ValueError, match="is outside the folders this server allows"):
        uploads.store_hf_folder(sid, str(root / "link"))
    (root / "mixed").mkdir()  # a folder inside whose weights file links out
    (root / "mixed" / "config.json").write_bytes((outside / "config.json").read_bytes())
    (root / "mixed" / "model.safetensors").symlink_to(outside / "model.safetensors")
    with pytest.raises(ValueError, match="model.safetensors links to"):
        uploads.store_hf_folder(sid, str(root / "mixed"))
    assert session.own_models(sid) == {}
    monkeypatch.setattr(uploads.sys, "argv", ["app.py", "--hf-root", str(tmp_path)])  # the server option
    assert uploads.store_hf_folder(sid, str(root / "link")).startswith(f"upload:{sid}:")


def run_export_snippets(name: str, folder: Path, capsys) -> None:
    """The Export page's "Load it back" code for an own model, run as a user would in `folder` (the current
    directory, holding what they brought): the Python loads the file; every shell command succeeds, and the
    rebuilt file is the downloaded one. No session id anywhere in the code."""
    import shlex

    import compressor as cz
    from compressor.cli import main
    from ui.export_files import file_stem, load_back

    own = uploads.load_own(name)
    recipe = cz.Recipe.from_json('{"steps": [{"type": "prune", "amount": 0.5}, {"type": "quantize", "bits": 8}]}')
    artifact = cz.encode(cz.compress(own.model, recipe, own.data), recipe.to_dict())
    stem = file_stem(name, artifact)
    python_code, shell_code = load_back(name, stem)
    assert name.split(":")[1] not in python_code + shell_code
    (folder / f"{stem}.clab").write_bytes(artifact.data)
    (folder / f"{stem}.recipe.json").write_text(recipe.to_json())
    exec(compile(python_code, "export snippet", "exec"), {})
    assert capsys.readouterr().out.endswith(f"%, {artifact.size:,} bytes\n")  # the file it loaded is the one exported
    commands = [shlex.split(line)[3:] for line in shell_code.splitlines() if line.startswith("python -m compressor")]
    assert [c[0] for c in commands] == ["evaluate", "export", "export"]
    for command in commands:
        fast = ["--runs", "20", "--batch-size", "8", "--json"] if command[0] == "evaluate" else []
        assert main(command + fast) == 0, command
    assert (folder / f"{stem}.clab").read_bytes() == artifact.data  # rebuilt from the recipe: the same file


def test_the_export_snippets_of_uploaded_weights_run(tmp_path, monkeypatch, capsys):
    data = weights_bytes(5)
    name = uploads.store_weights("G" * 22, "digits-mlp", "my weights.safetensors", data)
    assert session.file_label(name) == "your-model-my-weights-safetensors"  # the files are named as the user named it
    monkeypatch.chdir(tmp_path)
    (tmp_path / "my weights.safetensors").write_bytes(data)
    run_export_snippets(name, tmp_path, capsys)


def test_the_export_snippets_of_a_hugging_face_folder_run(tmp_path, monkeypatch, capsys):
    """Its file names the folder's model by hash: `evaluate --model FILE.clab --base FOLDER` measures it."""
    monkeypatch.setenv("CLAB_HF_ROOTS", str(tmp_path))
    name = uploads.store_hf_folder("J" * 22, str(tiny_bert(tmp_path / "bert")))
    monkeypatch.chdir(tmp_path)
    run_export_snippets(name, tmp_path, capsys)


def test_cached_copies_go_with_the_files(monkeypatch):
    """ui/cache.py keeps a loaded own model in memory; the janitor's sweep drops it with the files."""
    from ui import cache, janitor

    sid = "H" * 22
    name = uploads.store_weights(sid, "digits-mlp", "w.safetensors", weights_bytes(6))
    loads = []
    real = uploads.load_own
    monkeypatch.setattr(uploads, "load_own", lambda n: loads.append(n) or real(n))
    cache._own(name), cache._own(name)
    assert loads == [name]  # cached
    later = time.time() + janitor.GRACE_S + 60
    assert sid in janitor.Janitor(session.session_dir(), lambda tab: False, lambda: later,
                                  on_gone=janitor._run_hooks).run_once()  # the process janitor's hooks
    with pytest.raises(ValueError, match="is gone"):
        cache._own(name)  # not served from memory: loaded again, and the files are gone
    assert loads == [name, name]


def test_remove_drops_what_was_computed_from_that_model_only(monkeypatch):
    """"Remove this model of yours": its compressed models, reports and figures leave the caches at once; the
    session's other model keeps its own."""
    import compressor as cz
    from ui import cache, figure_cache

    monkeypatch.setattr(uploads, "check_owner", lambda name: None)  # no script run here
    sid = "N" * 22
    gone, kept = (uploads.store_weights(sid, "digits-mlp", f"{i}.safetensors", weights_bytes(10 + i)) for i in range(2))
    int8 = cache.recipe_key(cz.Recipe((cz.Quantize(bits=8),)))
    for name in (gone, kept):
        cache.measured(name, int8, timed=False)
        figure_cache.shared(("test_remove", name), lambda: object())
    uploads.remove(gone)
    with pytest.raises(ValueError, match="is gone"):
        cache.measured(gone, int8, timed=False)  # not served from memory
    assert cache.measured(kept, int8, timed=False).accuracy > 0
    assert [key for key in figure_cache._figures if key[0] == "test_remove"] == [("test_remove", kept)]
