"""A user's own model, three ways, each ending in a `Sample` (model + data) or ONE clear ValueError.

1. A local Hugging Face folder (`config.json` + `model.safetensors`) of a BERT-like encoder: read with
   `transformers.AutoModel` from that folder only (`local_files_only=True`, `trust_remote_code=False`,
   safetensors only, Hub offline), pooled into sentence embeddings like the minilm-l6 sample and scored on the
   same shipped sentence set (tokenized with the shipped WordPiece tokenizer, so the model's vocabulary must
   cover its ids).
2. Weights for a sample architecture (digits-mlp, digits-cnn) as `.safetensors`, or as a state-dict `.pt` read
   with `torch.load(weights_only=True)` (a pickle that names any code, e.g. `os.system`, is refused by the
   unpickler itself). The file must match the architecture's state dict exactly: names, shapes and dtypes.
3. An entry point `file.py:factory` with evaluation data (`.npz` with X and optionally y). It RUNS the user's
   code, so it is refused unless code was allowed explicitly (`allow_code=True`; the app takes it from
   `CLAB_ALLOW_CODE=1` or `streamlit run app.py -- --allow-code`, the CLI from `--allow-code`).

Sizes are bounded before anything is read: a weights file over `MAX_WEIGHTS_BYTES` is refused unread.
"""
from __future__ import annotations

import hashlib
import os
import pickle
import re
from pathlib import Path

import torch

from compressor.data import Sample
from compressor.models import build_model, hf_source, is_entry_point, load_data, weights_source
from compressor.state import tag_source

MAX_WEIGHTS_BYTES = 200 * 1024**2  # uploads and weight files: 200 MiB (.streamlit/config.toml maxUploadSize = 200)
MAX_HF_BYTES = 2 * 1024**3  # a Hugging Face folder on the server: its model.safetensors at most 2 GiB
WEIGHT_ARCHITECTURES = ("digits-mlp", "digits-cnn")  # sample architectures that take uploaded weights
WEIGHT_SUFFIXES = (".safetensors", ".pt", ".pth")
ENCODER_TYPES = ("bert",)  # BERT WordPiece ids, [PAD] = 0: what the shipped sentences and SentenceEncoder assume
ALLOW_CODE_ENV = "CLAB_ALLOW_CODE"
HF_ROOTS_ENV = "CLAB_HF_ROOTS"  # the app's allow-list of folders holding Hugging Face models (os.pathsep-separated)
HF_ROOT_ARG = "--hf-root"  # or `streamlit run app.py -- --hf-root DIR` (repeatable)


def code_allowed(argv: list[str] | None = None) -> bool:
    """True when the server was started to run users' code: CLAB_ALLOW_CODE=1, or `--allow-code` in argv."""
    return os.environ.get(ALLOW_CODE_ENV) == "1" or "--allow-code" in (argv or [])


def check_size(size: int, limit: int = MAX_WEIGHTS_BYTES, what: str = "file") -> None:
    """A ValueError naming the size and the limit if `size` bytes is over it."""
    if size > limit:
        raise ValueError(f"{what} is {size:,} bytes; at most {limit:,} bytes ({limit / 1024**2:.0f} MiB) are allowed")


def hf_roots(argv: list[str] | None = None) -> list[Path]:
    """The folders under which the app may read Hugging Face models: $CLAB_HF_ROOTS (os.pathsep-separated) and
    every `--hf-root DIR` in argv. None by default: a server's file system is not its users', and a path field
    would let anyone in the room load (or probe for) whatever the server's account can read."""
    roots = [part for part in os.environ.get(HF_ROOTS_ENV, "").split(os.pathsep) if part.strip()]
    argv = argv or []
    roots += [argv[i + 1] for i, arg in enumerate(argv[:-1]) if arg == HF_ROOT_ARG]
    return [Path(root).expanduser().resolve() for root in roots]


def check_hf_path(folder: str | Path, roots: list[Path]) -> Path:
    """`folder` resolved (`~`, `..`, symlinks) if it and its config.json and model.safetensors lie inside one of
    `roots` (resolved too); else one ValueError naming the folder and what is allowed."""
    if not roots:
        raise ValueError(f"Hugging Face folders on the server are off here; the server's owner can allow a folder "
                         f"with {HF_ROOTS_ENV}=/path/to/models (or `streamlit run app.py -- {HF_ROOT_ARG} DIR`)")
    path = Path(folder).expanduser().resolve()
    allowed = ", ".join(str(root) for root in roots)
    for target in (path, (path / "config.json").resolve(), (path / "model.safetensors").resolve()):
        if not any(target.is_relative_to(root) for root in roots):
            raise ValueError(f"folder {str(folder)!r} is outside the folders this server allows ({allowed})"
                             + ("" if target == path else f": {target.name} links to {target}"))
    return path


# ---------------------------------------------------------------- 2. weights for a sample architecture


def read_state_dict(path: str | Path, limit: int = MAX_WEIGHTS_BYTES) -> dict[str, torch.Tensor]:
    """Tensors by name from a .safetensors file or a state-dict .pt (weights_only: no code, no objects)."""
    path = Path(path)
    if path.suffix not in WEIGHT_SUFFIXES:
        raise ValueError(f"weights file {path.name!r} must end in {', '.join(WEIGHT_SUFFIXES)}")
    if not path.is_file():
        raise ValueError(f"weights file {str(path)!r} does not exist")
    check_size(path.stat().st_size, limit, f"weights file {path.name!r}")
    if path.suffix == ".safetensors":
        from safetensors import SafetensorError
        from safetensors.torch import load_file

        try:
            return load_file(path, device="cpu")
        except (SafetensorError, OSError, ValueError) as err:
            raise ValueError(f"weights file {path.name!r} is not a readable safetensors file ({err})") from None
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:
        named = re.search(r"GLOBAL (\S+)", str(err))  # the weights-only unpickler names what it blocked
        if named:
            raise ValueError(f"weights file {path.name!r} refused: its pickle names {named.group(1)}, not only tensors "
                             "(read with torch.load(weights_only=True); save a plain state_dict or use safetensors)") from None
        raise ValueError(f"weights file {path.name!r} is not a readable PyTorch state dict (weights-only unpickler: "
                         "not a torch.save file of tensors)") from None
    except Exception as err:  # torch raises RuntimeError, EOFError, zipfile errors... for a damaged file
        raise ValueError(f"weights file {path.name!r} is not a readable PyTorch state dict ({type(err).__name__})") from None
    if not isinstance(state, dict) or not all(isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in state.items()):
        raise ValueError(f"weights file {path.name!r} must hold a state dict (names -> tensors), not {type(state).__name__}")
    return state


def file_sha256(path: str | Path) -> str:
    """The SHA-256 of a file, as hex, read in 1 MiB blocks."""
    digest = hashlib.sha256()
    with Path(path).open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def hf_digest(folder: str | Path) -> str:
    """The identity of a Hugging Face folder's model, as hex: the SHA-256 of its config.json's bytes followed by
    the hex SHA-256 of its model.safetensors (the same weights under another config are another model)."""
    folder = Path(folder)
    digest = hashlib.sha256((folder / "config.json").read_bytes())
    digest.update(file_sha256(folder / "model.safetensors").encode())
    return digest.hexdigest()


def check_state_dict(expected: dict[str, torch.Tensor], given: dict[str, torch.Tensor], what: str) -> None:
    """A ValueError naming the first difference in names, shapes or dtypes between two state dicts."""
    missing = [k for k in expected if k not in given]
    extra = [k for k in given if k not in expected]
    if missing or extra:
        raise ValueError(f"{what}: tensor names differ from the architecture's: missing {missing[:3]}, unexpected {extra[:3]}")
    for name, tensor in expected.items():
        got = given[name]
        if tuple(got.shape) != tuple(tensor.shape) or got.dtype != tensor.dtype:
            raise ValueError(f"{what}: {name} is {tuple(got.shape)} {got.dtype}; the architecture needs "
                             f"{tuple(tensor.shape)} {tensor.dtype}")


def load_weights(architecture: str, path: str | Path, limit: int = MAX_WEIGHTS_BYTES) -> Sample:
    """The sample architecture with the user's weights (checked strictly) and the sample's data."""
    import sample_models

    if architecture not in WEIGHT_ARCHITECTURES:
        raise ValueError(f"weights go with one of {', '.join(WEIGHT_ARCHITECTURES)}, not {architecture!r}")
    state = read_state_dict(path, limit)
    model = sample_models.build(architecture)
    check_state_dict(model.state_dict(), state, f"weights file {Path(path).name!r} for {architecture}")
    model.load_state_dict(state, strict=True)
    for tensor in model.state_dict().values():
        if tensor.is_floating_point() and not torch.isfinite(tensor).all():
            raise ValueError(f"weights file {Path(path).name!r} holds NaN or infinite values")
    tag_source(model, weights_source(architecture, file_sha256(path)))  # exports record it: see models.weights_source
    return Sample(name=f"{architecture} + {Path(path).name}", model=model.eval(), data=sample_models.load_data(architecture),
                  description=f"{architecture} architecture with your weights from {Path(path).name}")


# ---------------------------------------------------------------- 1. a local Hugging Face folder


def load_hf_folder(folder: str | Path, limit: int = MAX_HF_BYTES) -> Sample:
    """A BERT-like encoder from a local folder (no download, no remote code), as a sentence encoder on the
    shipped sentence set."""
    from sample_models.minilm import SentenceEncoder, _offline
    from sample_models.sentences import sentence_splits

    folder = Path(folder)
    weights = folder / "model.safetensors"
    if not (folder / "config.json").is_file() or not weights.is_file():
        raise ValueError(f"{str(folder)!r} is not a Hugging Face model folder: it needs config.json and model.safetensors")
    check_size(weights.stat().st_size, limit, f"{weights}")
    _offline()
    from transformers import AutoConfig, AutoModel

    try:
        config = AutoConfig.from_pretrained(folder, local_files_only=True, trust_remote_code=False)
    except Exception as err:  # transformers raises OSError, ValueError, KeyError... for a config it cannot read
        raise ValueError(f"Hugging Face folder {str(folder)!r}: config.json cannot be read ({_first_line(err)})") from None
    if config.model_type not in ENCODER_TYPES:
        raise ValueError(f"Hugging Face folder {str(folder)!r} holds a {config.model_type!r} model; "
                         f"supported: {', '.join(ENCODER_TYPES)} encoders")
    try:
        encoder = AutoModel.from_pretrained(folder, config=config, local_files_only=True, trust_remote_code=False,
                                            use_safetensors=True, add_pooling_layer=False)
    except Exception as err:
        raise ValueError(f"Hugging Face folder {str(folder)!r}: weights cannot be loaded ({_first_line(err)})") from None
    data = sentence_splits()
    top = int(data.train.X.max())
    if config.vocab_size <= top:
        raise ValueError(f"Hugging Face folder {str(folder)!r}: vocabulary of {config.vocab_size} tokens; the shipped "
                         f"sentences (BERT WordPiece ids) need at least {top + 1}")
    model = tag_source(SentenceEncoder(encoder).eval(), hf_source(hf_digest(folder)))  # exports record it: models.hf_source
    return Sample(name=folder.name, model=model, data=data,
                  description=f"{config.model_type} encoder from {folder} "
                              f"({sum(p.numel() for p in encoder.parameters()):,} parameters) on the shipped sentences")




def _first_line(err: Exception) -> str:
    return (str(err).splitlines() or [type(err).__name__])[0][:200]


# ---------------------------------------------------------------- 3. an entry point with evaluation data


def load_entry_model(spec: str, data: str, allow_code: bool) -> Sample:
    """The nn.Module an entry point `file.py:factory` returns, with data from an .npz; only if allow_code."""
    if not allow_code:
        raise ValueError(f"entry point {spec!r} runs code, which this server does not allow; start it with "
                         f"{ALLOW_CODE_ENV}=1 (app) or pass --allow-code (CLI)")
    if not is_entry_point(spec):
        raise ValueError(f"{spec!r} is not an entry point; expected path/to/file.py:factory")
    if not data.endswith(".npz"):
        raise ValueError(f"evaluation data {data!r} must be an .npz file with X (and optionally y)")
    if Path(data).is_file():
        check_size(Path(data).stat().st_size, MAX_WEIGHTS_BYTES, f"data file {Path(data).name!r}")
    model = build_model(spec)  # tagged with the spec: its artifact loads back with allow_entry_points (--allow-code)
    return Sample(name=spec, model=model, data=load_data(data), description=f"your model from {spec}")
