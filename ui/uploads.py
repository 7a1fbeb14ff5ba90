"""Bring your own model: the Overview page's form, and one session's store of the models it brought.

Each own model lives in `<session dir>/uploads/<session id>/<content hash>/` (the uploaded file and a meta.json
saying what it is) and is named "upload:<session id>:<content hash>": the model picker offers a session only the
names under its own id (ui/session.py `own_models`), and `ui.cache.sample` refuses a name of another session.
Uploads go with their session: when its tab is gone (ui/janitor.py), or on "Remove"; and with them whatever the
server computed from them (ui/owned.py).

What may be brought (compressor/user_models.py checks it): weights for a sample architecture (.safetensors or a
state-dict .pt); a Hugging Face BERT folder on the server, only under a folder the server allows (CLAB_HF_ROOTS or
`streamlit run app.py -- --hf-root DIR`; none by default); and, only on a server started with CLAB_ALLOW_CODE=1 or
`streamlit run app.py -- --allow-code`, an entry point `file.py:factory` with an .npz of evaluation data.
"""
from __future__ import annotations

import hashlib
import json
import shutil
import sys
from pathlib import Path

import streamlit as st

from compressor import user_models
from compressor.data import Sample
from ui.owned import forget_model
from ui.session import MODEL, OWN_PREFIX, SESSION_ID, display_name, own_model_folder, own_model_owner, uploads_dir

HASH_CHARS = 16  # 64 bits of SHA-256: distinct uploads of one session never collide in practice


def _digest(*parts: bytes) -> str:
    h = hashlib.sha256()
    for part in parts:
        h.update(part)
    return h.hexdigest()[:HASH_CHARS]


def _store(session_id: str, digest: str, meta: dict, files: dict[str, bytes]) -> str:
    """Write an own model's files and meta.json, check it loads, and return its name; on a ValueError nothing stays."""
    folder = uploads_dir(session_id) / digest
    folder.mkdir(parents=True, exist_ok=True, mode=0o700)
    try:
        for filename, data in files.items():
            (folder / filename).write_bytes(data)
        sample = load(folder, meta)
    except ValueError:
        shutil.rmtree(folder, ignore_errors=True)
        raise
    meta = dict(meta, description=meta.get("description") or sample.description)
    (folder / "meta.json").write_text(json.dumps(meta), encoding="utf-8")
    return f"{OWN_PREFIX}{session_id}:{digest}"


def store_weights(session_id: str, architecture: str, filename: str, data: bytes) -> str:
    """Keep uploaded weights for a sample architecture (refused unless they load strictly); returns the name."""
    user_models.check_size(len(data), user_models.MAX_WEIGHTS_BYTES, f"upload {filename!r}")
    suffix = Path(filename).suffix.lower()
    if suffix not in user_models.WEIGHT_SUFFIXES:
        raise ValueError(f"upload {filename!r} must end in {', '.join(user_models.WEIGHT_SUFFIXES)}")
    meta = {"kind": "weights", "architecture": architecture, "file": f"weights{suffix}", "shown": Path(filename).name,
            "description": f"{architecture} with your weights from {Path(filename).name}"}
    return _store(session_id, _digest(architecture.encode(), data), meta, {meta["file"]: data})


def store_hf_folder(session_id: str, folder: str) -> str:
    """Keep a reference to a Hugging Face folder on the server (its content hash makes the name); only a folder
    inside the server's allow-list (`hf_roots`), checked after resolving symlinks and `..`."""
    path = user_models.check_hf_path(folder, hf_roots())
    weights = path / "model.safetensors"
    if not weights.is_file() or not (path / "config.json").is_file():
        raise ValueError(f"{folder!r} is not a Hugging Face model folder: it needs config.json and model.safetensors")
    user_models.check_size(weights.stat().st_size, user_models.MAX_HF_BYTES, str(weights))
    return _store(session_id, user_models.hf_digest(path)[:HASH_CHARS], {"kind": "hf", "path": str(path), "shown": path.name}, {})


def store_entry_point(session_id: str, spec: str, filename: str, data: bytes) -> str:
    """Keep an entry point and its .npz evaluation data: only on a server that allows code."""
    user_models.check_size(len(data), user_models.MAX_WEIGHTS_BYTES, f"upload {filename!r}")
    meta = {"kind": "entry", "spec": spec, "file": "data.npz", "shown": Path(spec).name}
    return _store(session_id, _digest(spec.encode(), data), meta, {"data.npz": data})


def load(folder: Path, meta: dict) -> Sample:
    """The own model stored in `folder`, loaded again from its files (ValueError if it no longer loads)."""
    kind = meta.get("kind")
    if kind == "weights":
        return user_models.load_weights(meta["architecture"], folder / meta["file"])
    if kind == "hf":
        return user_models.load_hf_folder(user_models.check_hf_path(meta["path"], hf_roots()))
    if kind == "entry":
        return user_models.load_entry_model(meta["spec"], str(folder / meta["file"]), allow_code=code_allowed())
    raise ValueError(f"stored model of unknown kind {kind!r}")


def load_own(name: str) -> Sample:
    """An own model by its name "upload:<session id>:<hash>" (the caller checked the session owns it)."""
    meta = brought(name)
    sample = load(own_model_folder(name), meta)
    return Sample(name=name, model=sample.model, data=sample.data, description=meta["description"])


def brought(name: str) -> dict:
    """What an own model is, from its meta.json: kind ("weights", "hf", "entry"), shown (its file or folder name),
    and architecture + file, path, or spec + file."""
    try:
        return json.loads((own_model_folder(name) / "meta.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        raise ValueError(f"{display_name(name)} is gone (removed, or deleted with its session)") from None


def check_owner(name: str) -> None:
    """A ValueError if `name` is another session's own model (sample names pass)."""
    owner = own_model_owner(name)
    if owner is not None and owner != st.session_state.get(SESSION_ID):
        raise ValueError("that model belongs to another session")


def code_allowed() -> bool:
    """Entry points run code: only if the server was started with CLAB_ALLOW_CODE=1 or `-- --allow-code`."""
    return user_models.code_allowed(sys.argv)


def hf_roots() -> list[Path]:
    """Folders this server may read Hugging Face models from: CLAB_HF_ROOTS or `-- --hf-root DIR`; none by default."""
    return user_models.hf_roots(sys.argv)


def remove(name: str) -> None:
    """Delete one of this session's own models now, and what the server computed from it (ui/owned.py)."""
    check_owner(name)
    forget_model(name)
    shutil.rmtree(own_model_folder(name), ignore_errors=True)


# ---------------------------------------------------------------- the form on the Overview page


def _use(store, *args) -> None:
    """Store an own model and pick it; a refused one ends in one st.error line."""
    try:
        name = store(st.session_state[SESSION_ID], *args)
    except ValueError as err:
        st.error(str(err))
        return
    st.session_state[MODEL] = name
    st.rerun()


def form() -> None:
    """"Your own model": upload weights, name a Hugging Face folder, or (if allowed) an entry point."""
    limit = f"at most {user_models.MAX_WEIGHTS_BYTES // 1024**2} MiB"
    kinds = ["Weights for a sample", "Hugging Face folder on the server"] + (["Entry point (runs code)"] if code_allowed() else [])
    kind = st.radio("Bring", kinds, horizontal=True, key="own_kind")
    if kind == kinds[0]:
        architecture = st.selectbox("Architecture", user_models.WEIGHT_ARCHITECTURES, key="own_arch")
        upload = st.file_uploader(f"Weights (.safetensors, or a state-dict .pt; {limit})", key="own_weights",
                                  type=[s.lstrip(".") for s in user_models.WEIGHT_SUFFIXES])
        if upload is not None and st.button("Use these weights", key="own_weights_go"):
            _use(store_weights, architecture, upload.name, upload.getvalue())
    elif kind == kinds[1]:
        roots = hf_roots()
        if not roots:
            st.info(f"Off on this server: it reads model folders only under folders its owner allowed "
                    f"({user_models.HF_ROOTS_ENV}=/path/to/models streamlit run app.py).", icon="🔒")
        else:
            folder = st.text_input("Folder (config.json + model.safetensors, a BERT encoder)", key="own_hf",
                                   help="Allowed: folders under " + ", ".join(str(root) for root in roots))
            if folder and st.button("Load the folder", key="own_hf_go"):
                _use(store_hf_folder, folder)
    else:
        spec = st.text_input("Entry point (path/to/file.py:factory)", key="own_spec")
        upload = st.file_uploader(f"Evaluation data (.npz with X, optionally y; {limit})", type=["npz"], key="own_npz")
        if spec and upload is not None and st.button("Run the entry point", key="own_entry_go"):
            _use(store_entry_point, spec, upload.name, upload.getvalue())
    current = st.session_state.get(MODEL, "")
    if current.startswith(OWN_PREFIX) and st.button("Remove this model of yours", key="own_remove"):
        remove(current)
        st.session_state.pop(MODEL, None)
        st.rerun()
    st.caption("Your models are seen by this session only and deleted with it (or now, with Remove). "
               + ("This server runs entry points (started with code allowed)." if code_allowed()
                  else "Entry points run code and are off on this server."))
