"""Seeded fuzzing (Hypothesis, derandomized): artifact bytes, data files and recipes from a hostile user.

Every input ends in a clean ValueError or a valid result, never another exception, and never costs more than a
bounded amount of memory. The bytes are derived from real files (an exported digits-mlp, a valid .npz) by
truncation, bit flips (with and without a repaired checksum) and header fields set to hostile values.
The CLI-level campaign with subprocesses, timeouts and memory limits is benchmarks/fuzz_cli.py.
"""
from __future__ import annotations

import io
import json
import resource
import struct
import zlib

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
from torch import nn

import compressor as cz
from compressor.artifact import encode, load
from compressor.data import check_fits, check_inputs, read_npz
from compressor.recipe import Recipe

FUZZ = settings(derandomize=True, deadline=None, max_examples=100, database=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
PREFIX = struct.Struct("<8sHBIQI")  # magic, version, header codec, header length, file length, CRC-32
MEMORY_GROWTH = 400 * 2**20  # the process's peak resident size may grow by at most this much over a whole test


def peak_rss() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # Linux reports KiB


@pytest.fixture(scope="module")
def memory_budget():
    """Fails the test if, over all its examples, the process's peak memory grew by more than MEMORY_GROWTH."""
    start = peak_rss()
    yield
    assert peak_rss() - start < MEMORY_GROWTH


# ---- artifacts -------------------------------------------------------------------------------------------------------


def _artifacts() -> list[bytes]:
    sample = cz.load_sample("digits-mlp")
    pruned = cz.compress(sample.model, Recipe((cz.Prune(amount=0.9), cz.Quantize(bits=3, granularity="channel"))))
    factorized = cz.low_rank(sample.model, rank=8, layers=["fc2"])
    kmeans = cz.quantize(cz.load_sample("digits-cnn").model, bits=2, method="kmeans")
    return [encode(pruned).data, encode(factorized).data, encode(kmeans).data]


ARTIFACTS = _artifacts()


def unframe(data: bytes) -> tuple[int, dict, bytes]:
    _, version, codec, length, _, _ = PREFIX.unpack_from(data)
    stored = data[PREFIX.size : PREFIX.size + length]
    return version, json.loads(zlib.decompress(stored, -15) if codec == 1 else stored), data[PREFIX.size + length :]


def frame(version: int, header: bytes, blobs: bytes) -> bytes:
    """A correctly checksummed file around any header bytes (format 2: the CRC covers the prefix fields too)."""
    body = header + blobs
    fields = struct.pack("<HBIQ", version, 0, len(header), PREFIX.size + len(body))
    crc = zlib.crc32(body, zlib.crc32(fields)) if version >= 2 else zlib.crc32(body)
    return PREFIX.pack(b"\x89CMPLAB\n", version, 0, len(header), PREFIX.size + len(body), crc) + body


def with_valid_checksum(data: bytes) -> bytes:
    """Recompute the CRC after a flip, so the reader's other checks are what stand between the bytes and harm."""
    if len(data) < PREFIX.size:
        return data
    _, version, codec, length, file_length, _ = PREFIX.unpack_from(data)
    fields = struct.pack("<HBIQ", version, codec, length, file_length)
    body = data[PREFIX.size :]
    crc = zlib.crc32(body, zlib.crc32(fields)) if version >= 2 else zlib.crc32(body)
    return data[:23] + struct.pack("<I", crc) + body


HOSTILE = st.one_of(
    st.none(), st.booleans(), st.integers(min_value=-(2**70), max_value=2**70),
    st.sampled_from([0, 1, -1, 2**31, 2**62, 10**12, 30000]), st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=12), st.lists(st.integers(min_value=-5, max_value=2**33), max_size=4),
    st.dictionaries(st.text(max_size=6), st.integers(min_value=-3, max_value=10**10), max_size=3),
)
TENSOR_FIELDS = ["name", "shape", "dtype", "positions", "count", "offset", "length", "segments", "quant"]
MODULE_ARGS = ["in_features", "out_features", "bias", "children", "kernel_size", "num_features", "groups"]


@st.composite
def crafted_artifacts(draw) -> bytes:
    data = draw(st.sampled_from(ARTIFACTS))
    kind = draw(st.sampled_from(["truncate", "flip", "flip+crc", "tensor field", "module arg", "header field", "segment"]))
    if kind == "truncate":
        return data[: draw(st.integers(0, len(data) - 1))]
    if kind in ("flip", "flip+crc"):
        out = bytearray(data)
        for _ in range(draw(st.integers(1, 4))):
            out[draw(st.integers(0, len(data) - 1))] ^= 1 << draw(st.integers(0, 7))
        return with_valid_checksum(bytes(out)) if kind == "flip+crc" else bytes(out)
    version, header, blobs = unframe(data)
    if kind == "tensor field":
        entry = draw(st.sampled_from(header["tensors"]))
        entry[draw(st.sampled_from(TENSOR_FIELDS))] = draw(HOSTILE)
    elif kind == "module arg":
        spec = draw(st.sampled_from(header["modules"]))
        spec["args"][draw(st.sampled_from(MODULE_ARGS))] = draw(HOSTILE)
    elif kind == "segment":
        segment = draw(st.sampled_from(draw(st.sampled_from(header["tensors"]))["segments"]))
        segment[draw(st.sampled_from(["role", "codec", "length", "raw_length"]))] = draw(HOSTILE)
    else:
        header[draw(st.sampled_from(["format", "source", "recipe", "modules", "input_quant", "tensors"]))] = draw(HOSTILE)
    return frame(version, json.dumps(header).encode(), blobs)


@FUZZ
@given(data=crafted_artifacts())
def test_artifact_bytes_load_or_raise_value_error(memory_budget, data):
    try:
        model = load(data)
    except ValueError:
        return
    assert isinstance(model, nn.Module)
    encode(model)  # a result is valid: it re-encodes


# ---- data files -----------------------------------------------------------------------------------------------------


def _model() -> nn.Module:
    return cz.load_sample("digits-mlp").model


MLP = _model()
DTYPES = st.sampled_from([np.float32, np.float64, np.float16, np.int64, np.int8, np.uint32, np.bool_, np.complex64])


@st.composite
def npz_files(draw) -> bytes:
    X = draw(hnp.arrays(DTYPES, hnp.array_shapes(min_dims=0, max_dims=3, min_side=0, max_side=70)))
    arrays = {"X": X}
    if draw(st.booleans()):
        arrays["y"] = draw(hnp.arrays(DTYPES, hnp.array_shapes(min_dims=0, max_dims=2, min_side=0, max_side=40)))
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    raw = buffer.getvalue()
    if draw(st.booleans()):  # damage the archive
        if draw(st.booleans()):
            raw = raw[: draw(st.integers(0, len(raw)))]
        else:
            out = bytearray(raw)
            out[draw(st.integers(0, len(raw) - 1))] ^= 1 << draw(st.integers(0, 7))
            raw = bytes(out)
    return raw


@FUZZ
@given(raw=npz_files())
def test_npz_data_is_checked_or_refused(memory_budget, tmp_path_factory, raw):
    path = tmp_path_factory.mktemp("npz") / "data.npz"
    path.write_bytes(raw)
    try:
        arrays = read_npz(str(path))
        split = check_inputs(str(path), arrays.get("X", np.zeros(0)), arrays.get("y"))
        check_fits(MLP, cz.DataSplits.from_test(split))
    except ValueError:
        return
    assert split.X.dtype == torch.float32 and torch.isfinite(split.X).all()
    assert split.y is None or (split.y.dtype == torch.int64 and split.y.shape == (len(split.X),) and (split.y < 10).all())


# ---- recipes --------------------------------------------------------------------------------------------------------

# Step types are strings here: a non-string "type" and JSON nested past the recursion limit are recipe.py's own
# open bugs (issue 7 §2, owned by the recipe-vocabulary work), kept out of this test until they are fixed there.
JSON_LEAF = st.one_of(st.none(), st.booleans(), st.integers(-(2**40), 2**40), st.floats(allow_nan=False), st.text(max_size=8))
JSON_VALUE = st.recursive(JSON_LEAF, lambda inner: st.one_of(st.lists(inner, max_size=3),
                                                             st.dictionaries(st.text(max_size=6), inner, max_size=3)),
                          max_leaves=8)
KEYS = st.sampled_from(["amount", "criterion", "scope", "structured", "bits", "scheme", "granularity", "method",
                        "rank", "rank_ratio", "energy", "epochs", "lr", "batch_size", "seed", "layers", "overrides",
                        "schedule", "steps", "norm", "activations", "x"])
STEP = st.fixed_dictionaries({"type": st.sampled_from(["prune", "quantize", "low_rank", "finetune", "zip"])},
                             optional={key: JSON_VALUE for key in ["amount", "bits", "rank", "epochs", "layers"]}) \
    .flatmap(lambda step: st.dictionaries(KEYS, JSON_VALUE, max_size=3).map(lambda extra: {**extra, **step}))


@FUZZ
@given(text=st.one_of(st.builds(lambda steps: json.dumps({"steps": steps}), st.lists(STEP, max_size=3)),
                      st.builds(json.dumps, JSON_VALUE), st.text(max_size=40)))
def test_recipe_json_parses_or_raises_value_error(memory_budget, text):
    try:
        recipe = Recipe.from_json(text)
    except ValueError:
        return
    assert Recipe.from_json(recipe.to_json()) == recipe
