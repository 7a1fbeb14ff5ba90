"""Where models come from: shipped samples, their students, and user entry points (`file.py:factory`, `pkg.mod:factory`).

A sample name ("digits-mlp"), a sample's student ("digits-mlp@width=0.4") and a sample's architecture holding a
user's weights ("digits-mlp@weights=<SHA-256 prefix>": the architecture only, the weights are the user's) resolve
through the sample registry only: they never run code chosen by whoever wrote the name. A Hugging Face folder's
model is named by its files' hash only ("hf@sha256=<SHA-256 prefix>"): the registry cannot rebuild it, so whoever
loads its artifact passes the folder's model as `base` (checked against the hash); the name never holds a path.
An entry point imports and calls Python code, so only the caller decides to run one (the CLI's --model,
`make_student(source=...)`); a file's header never does (see `compressor.artifact.load`, which needs
`allow_entry_points=True` for that).
"""
from __future__ import annotations

import importlib
import importlib.util
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

import sample_models
from compressor.data import DataSplits, Sample, Split, check_inputs, read_npz
from compressor.state import tag_source
from compressor.validation import check_fraction
from sample_models.architectures import DigitsCNN, DigitsMLP

STUDENT_MARK = "@width="  # "digits-mlp@width=0.4": the sample's architecture at 0.4 of its width
WEIGHTS_MARK = "@weights="  # "digits-mlp@weights=1a2b…": the sample's architecture with a user's weights file
WEIGHTS_DIGEST_CHARS = 16  # the weights file's SHA-256, first 16 hex digits: names which file, checkably
HF_MARK = "hf@sha256="  # "hf@sha256=1a2b…": a Hugging Face folder's model, by its files' SHA-256 (16 hex digits)
MAX_INPUT_ELEMENTS = 2**28  # --input-shape: at most 2^28 random inputs (1 GiB of float32)


# ---- samples ------------------------------------------------------------------------------------------------------


def list_samples() -> dict[str, str]:
    """Sample model names with one-line descriptions."""
    return sample_models.catalog()


def load_sample(name: str) -> Sample:
    """A shipped pretrained sample with its data splits; its model remembers its name as source."""
    available = sample_models.catalog()
    if name not in available:
        raise ValueError(f"unknown sample model {name!r}; available: {', '.join(available)}")
    sample = sample_models.load(name)
    tag_source(sample.model, name)
    return sample


# ---- students of the samples ----------------------------------------------------------------------------------------


def _scaled(size: int, width: float) -> int:
    """A hidden size times the width multiplier, at least 1."""
    return max(1, round(size * width))


def _mlp_student(width: float) -> nn.Module:
    return DigitsMLP(hidden=(_scaled(300, width), _scaled(100, width)))  # the sample is 64-300-100-10


def _cnn_student(width: float) -> nn.Module:
    channels = (_scaled(6, width), _scaled(16, width))  # the sample: conv 6, conv 16, fc 120-84-10
    return DigitsCNN(channels=channels, hidden=(_scaled(120, width), _scaled(84, width)))


SAMPLE_STUDENTS: dict[str, Callable[[float], nn.Module]] = {"digits-mlp": _mlp_student, "digits-cnn": _cnn_student}


def student_source(sample: str, width: float) -> str:
    """The source tag of a sample's student: "digits-mlp@width=0.4"."""
    return f"{sample}{STUDENT_MARK}{float(width)!r}"


def is_student_source(source: str) -> bool:
    """True for "<sample>@width=<w>" (whether or not w is valid: `build_student` says what is wrong)."""
    sample, mark, _ = source.partition(STUDENT_MARK)
    return bool(mark) and sample in SAMPLE_STUDENTS


def check_width(width: float) -> float:
    """A student's width multiplier: above 0, at most 1."""
    width = check_fraction("width", width, 0.0, 1.0)
    if width == 0:
        raise ValueError("width=0 is out of range; allowed: above 0 up to 1")
    return width


def build_student(source: str, seed: int = 0) -> nn.Module:
    """A fresh student from its source tag, initialised from `seed` (the global RNG is left as it was)."""
    sample, _, text = source.partition(STUDENT_MARK)
    if sample not in SAMPLE_STUDENTS:
        raise ValueError(f"student source {source!r} names no sample with students; "
                         f"available: {', '.join(SAMPLE_STUDENTS)}")
    try:
        width = float(text)
    except ValueError:
        raise ValueError(f"student source {source!r}: width {text!r} is not a number") from None
    width = check_width(width)
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        student = SAMPLE_STUDENTS[sample](width)
    return tag_source(student.eval(), student_source(sample, width))


# ---- a sample architecture with a user's weights -------------------------------------------------------------------


def weights_source(architecture: str, digest: str) -> str:
    """The source tag of a sample architecture holding a user's weights: "digits-mlp@weights=<sha256[:16]>".

    The weights themselves are not in the registry: a model rebuilt from this source has the architecture only
    (an artifact's tensors fill it), and there is no baseline to compare with unless the user brings the same file.
    """
    return f"{architecture}{WEIGHTS_MARK}{digest[:WEIGHTS_DIGEST_CHARS]}"


def _is_digest(text: str) -> bool:
    """Exactly `WEIGHTS_DIGEST_CHARS` lowercase hex digits: what a source may carry to name a file (never a path)."""
    return len(text) == WEIGHTS_DIGEST_CHARS and all(c in "0123456789abcdef" for c in text)


def is_weights_source(source: str) -> bool:
    """True for "<sample>@weights=<digest>", the digest exactly `WEIGHTS_DIGEST_CHARS` lowercase hex digits (a file
    that claims anything else there is not trusted as one)."""
    architecture, mark, digest = source.partition(WEIGHTS_MARK)
    return bool(mark) and architecture in sample_models.catalog() and _is_digest(digest)


def weights_digest(source: str) -> str:
    """The weights file's digest in a weights source ("" for any other source)."""
    return source.partition(WEIGHTS_MARK)[2] if is_weights_source(source) else ""


# ---- a Hugging Face folder's model ------------------------------------------------------------------------------------


def hf_source(digest: str) -> str:
    """The source tag of a model read from a Hugging Face folder: "hf@sha256=<16 hex>" (see `user_models.hf_digest`).

    The folder's path is not in it: a tag read from a file never chooses what to read. Its architecture (config.json)
    is not in the registry either, so an artifact of it loads only into the folder's model passed as `base`.
    """
    return f"{HF_MARK}{digest[:WEIGHTS_DIGEST_CHARS]}"


def is_hf_source(source: str) -> bool:
    """True for "hf@sha256=<digest>", the digest exactly `WEIGHTS_DIGEST_CHARS` lowercase hex digits."""
    return source.startswith(HF_MARK) and _is_digest(source[len(HF_MARK):])


def needs_base(source: str) -> str:
    """The one line saying which base rebuilds a model of `source` when the registry cannot ("" when it can)."""
    if not is_hf_source(source):
        return ""
    return (f"it was made from a Hugging Face folder whose config.json and model.safetensors hash to "
            f"{source[len(HF_MARK):]} (SHA-256), and its architecture is in that folder, not in the file: pass "
            "base=compressor.user_models.load_hf_folder(FOLDER).model (CLI: --base FOLDER)")


# ---- entry points ---------------------------------------------------------------------------------------------------


def is_entry_point(spec: str) -> bool:
    """True for `path/to/file.py:factory` and `package.module:factory`."""
    return ":" in spec and not spec.endswith(":")


def load_entry_point(spec: str) -> Callable[[], Any]:
    """The callable named by an entry point; a clear ValueError if the file, module or name is missing or broken."""
    if not is_entry_point(spec):
        raise ValueError(f"{spec!r} is not an entry point; expected path/to/file.py:factory or package.module:factory")
    target, _, attr = spec.rpartition(":")
    try:
        module = _import_file(target) if target.endswith(".py") else importlib.import_module(target)
    except ValueError:
        raise
    except Exception as err:  # the user's module failed while importing: their code, reported in one line
        raise ValueError(f"entry point {spec!r}: importing {target!r} failed: {type(err).__name__}: {err}") from None
    if not callable(getattr(module, attr, None)):
        raise ValueError(f"entry point {spec!r}: {target} has no callable named {attr!r}")
    return getattr(module, attr)


def _import_file(target: str) -> Any:
    path = Path(target)
    if not path.is_file():
        raise ValueError(f"entry point file {target!r} does not exist")
    module_name = f"_compressor_entry_{abs(hash(str(path.resolve())))}"
    if module_name in sys.modules:
        return sys.modules[module_name]
    module_spec = importlib.util.spec_from_file_location(module_name, path)
    module = importlib.util.module_from_spec(module_spec)
    sys.modules[module_name] = module  # before running it, as `import` does (dataclasses look themselves up there)
    try:
        module_spec.loader.exec_module(module)
    except BaseException:
        del sys.modules[module_name]  # only a module that imported cleanly is cached
        raise
    return module


def call_entry_point(spec: str) -> Any:
    """What the entry point's callable returns; an exception raised inside it becomes one clear ValueError."""
    factory = load_entry_point(spec)
    try:
        return factory()
    except RecursionError:
        raise ValueError(f"entry point {spec!r} raised RecursionError (unbounded recursion)") from None
    except Exception as err:  # the user's factory failed: their code, reported in one line
        raise ValueError(f"entry point {spec!r} raised {type(err).__name__}: {err}") from None


# ---- building models --------------------------------------------------------------------------------------------------


def build_model(source: str) -> nn.Module:
    """A fresh uncompressed model from a sample name, a sample's student or an entry point, tagged with its source.

    A student source ("digits-mlp@width=0.4") builds an untrained student: an artifact holding a trained one
    loads its weights into it. An entry point runs code: pass only sources you chose yourself.
    """
    if not isinstance(source, str):
        raise ValueError(f"model source {source!r} must be a sample name or an entry point string")
    if is_student_source(source):
        return build_student(source)
    if is_weights_source(source):
        return tag_source(sample_models.build(data_source(source)).eval(), source)
    if is_hf_source(source):
        raise ValueError(f"model source {source!r} cannot be rebuilt from its name: {needs_base(source)}")
    if is_entry_point(source):
        model = call_entry_point(source)
        if not isinstance(model, nn.Module):
            raise ValueError(f"entry point {source!r} returned {type(model).__name__}, not a torch.nn.Module")
        return tag_source(model.eval(), source)
    return load_sample(source).model


def baseline_source(source: str) -> str | None:
    """The model a compressed model is compared with: the sample itself for a student of a sample, None for a
    sample architecture with a user's weights or a Hugging Face folder's model (not in the registry), else the source."""
    if is_weights_source(source) or is_hf_source(source):
        return None
    return source.partition("@")[0] if is_student_source(source) else source


def data_source(source: str) -> str:
    """Whose data a model is evaluated on: the sample for its students and for its architecture with user weights."""
    return source.partition("@")[0] if is_student_source(source) or is_weights_source(source) else source


# ---- data -------------------------------------------------------------------------------------------------------------


def parse_shape(text: str) -> tuple[int, ...]:
    """'8,3,32,32' -> (8, 3, 32, 32); batch first, at least two dimensions, each a positive whole number."""
    try:
        shape = tuple(int(part) for part in text.split(","))
    except ValueError:
        shape = ()
    if len(shape) < 2 or any(size < 1 for size in shape):
        raise ValueError(f"input shape {text!r} must be comma-separated positive whole numbers, batch first, "
                         "with at least one dimension after the batch (e.g. 8,64 or 8,3,32,32)")
    if int(np.prod(shape, dtype=object)) > MAX_INPUT_ELEMENTS:
        raise ValueError(f"input shape {text!r} has {int(np.prod(shape, dtype=object)):,} elements; "
                         f"allowed: at most {MAX_INPUT_ELEMENTS:,}")
    return shape


def random_data(shape: tuple[int, ...], seed: int = 0) -> DataSplits:
    """Seeded standard-normal inputs without labels: reports then give agreement with the baseline."""
    X = torch.randn(shape, generator=torch.Generator().manual_seed(seed))
    return DataSplits.from_test(Split(X))


def load_data(spec: str) -> DataSplits:
    """Data from a sample name, an entry point returning (X, y) or X, or an .npz with arrays X (and optionally y).

    Inputs are checked (real numbers, finite, at least one example) and labels too (whole numbers ≥ 0, one per
    input); whether they fit a model is `compressor.data.check_fits`.
    """
    if spec.endswith(".npz"):
        arrays = read_npz(spec)
        if "X" not in arrays:
            raise ValueError(f"data file {spec!r} has arrays {', '.join(arrays) or 'none'}; it needs X (and optionally y)")
        return DataSplits.from_test(check_inputs(spec, arrays["X"], arrays.get("y")))
    if is_entry_point(spec):
        out = call_entry_point(spec)
        X, y = out if isinstance(out, tuple) and len(out) == 2 else (out, None)
        if not isinstance(X, torch.Tensor) or (y is not None and not isinstance(y, torch.Tensor)):
            raise ValueError(f"data entry point {spec!r} must return a tensor X or a tuple (X, y) of two tensors")
        return DataSplits.from_test(check_inputs(spec, X, y))
    if spec in list_samples():
        return load_sample(spec).data
    raise ValueError(f"data {spec!r} is not a sample name ({', '.join(list_samples())}), an entry point or an .npz file")
