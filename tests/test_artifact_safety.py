"""A file cannot hurt the user: it never chooses code to run, never makes the reader allocate more than its own
length and shapes justify, and re-encodes to itself. Crafted files are framed here by hand, following the layout
documented in compressor/artifact.py, so the checks are against the documentation, not the writer."""
from __future__ import annotations

import json
import resource
import struct
import tracemalloc
import zlib

import pytest
import torch
from torch.nn.utils import prune

import compressor as cz
from compressor.artifact import FORMAT_VERSION, encode, load, read_header
from compressor.costs import layer_costs

PREFIX = struct.Struct("<8sHBIQI")  # magic, version, header codec, header length, file length, CRC-32
MAGIC = b"\x89CMPLAB\n"


def frame(header: bytes, blobs: bytes = b"", codec: int = 0, version: int = FORMAT_VERSION) -> bytes:
    """Prefix + header + blobs with a valid checksum (format 2: the prefix fields, then the rest)."""
    body = header + blobs
    fields = struct.pack("<HBIQ", version, codec, len(header), PREFIX.size + len(body))
    crc = zlib.crc32(body, zlib.crc32(fields)) if version >= 2 else zlib.crc32(body)
    return PREFIX.pack(MAGIC, version, codec, len(header), PREFIX.size + len(body), crc) + body


def deflate(data: bytes) -> bytes:
    c = zlib.compressobj(9, zlib.DEFLATED, -15)
    return c.compress(data) + c.flush()


def deflate_zeros(n: int) -> bytes:
    c, chunk = zlib.compressobj(9, zlib.DEFLATED, -15), bytes(2**20)
    return b"".join(c.compress(chunk) for _ in range(n // len(chunk))) + c.flush()


def unframe(data: bytes) -> tuple[dict, bytes]:
    _, _, codec, length, _, _ = PREFIX.unpack_from(data)
    stored = data[PREFIX.size : PREFIX.size + length]
    return json.loads(zlib.decompress(stored, -15) if codec == 1 else stored), data[PREFIX.size + length :]


def reframe(data: bytes, **changes) -> bytes:
    header, blobs = unframe(data)
    return frame(json.dumps({**header, **changes}).encode(), blobs)


@pytest.fixture(scope="module")
def mlp_artifact() -> bytes:
    """digits-mlp, 80% pruned: a real file to craft from (source "digits-mlp")."""
    return encode(cz.prune(cz.load_sample("digits-mlp").model, 0.8)).data


def peak_bytes(fn) -> int:
    """Memory fn takes at its peak: tracemalloc sees Python and numpy buffers, the growth of the process's peak
    resident size sees torch's allocator too (a layer that is built gets initialised, so its pages are touched)."""
    rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # Linux: KiB
    tracemalloc.start()
    try:
        fn()
    except ValueError:
        pass
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    return max(peak, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 - rss_before)


# ---- code -----------------------------------------------------------------------------------------------------------


def test_an_artifact_naming_an_entry_point_runs_nothing_without_the_opt_in(mlp_artifact, tmp_path):
    marker = tmp_path / "ran"
    module = tmp_path / "payload.py"
    module.write_text(f"from pathlib import Path\nPath({str(marker)!r}).write_text('at import')\n"
                      f"def build():\n    Path({str(marker)!r}).write_text('called')\n")
    for source in (f"{module}:build", "os:abort", "sys:exit", "tests.models:residual_cnn"):
        crafted = reframe(mlp_artifact, source=source)
        with pytest.raises(ValueError, match=rf"entry point '{source}'.*allow_entry_points=True \(CLI: --allow-code\)"):
            load(crafted)
    assert not marker.exists()
    with pytest.raises(ValueError, match="returned NoneType, not a torch.nn.Module"):  # with the opt-in it runs
        load(reframe(mlp_artifact, source=f"{module}:build"), allow_entry_points=True)
    assert marker.read_text() == "called"


def test_sample_and_student_sources_resolve_through_the_registry(mlp_artifact):
    assert cz.load(mlp_artifact).fc1.weight.shape == (300, 64)
    student = cz.make_student(cz.load_sample("digits-mlp").model, width=0.25)
    loaded = load(encode(student).data)
    assert loaded.fc1.out_features == 75 and read_header(encode(student).data)["source"] == "digits-mlp@width=0.25"
    for source, message in (("digits-xl", "unknown sample model 'digits-xl'"), (42, "source must be a string"),
                            ("digits-mlp@width=2", "width=2.0 is out of range")):
        with pytest.raises(ValueError, match=message):
            load(reframe(mlp_artifact, source=source))


# ---- sizes ------------------------------------------------------------------------------------------------------------


def test_a_small_header_cannot_build_a_huge_layer(mlp_artifact):
    header, _ = unframe(mlp_artifact)
    huge = [{"name": "fc1", "type": "Linear", "args": {"in_features": 30000, "out_features": 30000, "bias": True}}]
    crafted = reframe(mlp_artifact, modules=huge)
    assert len(crafted) < 100_000
    with pytest.raises(ValueError, match=r"fc1.weight has shape \[300, 64\] in the file but \[30000, 30000\]"):
        load(crafted)
    assert peak_bytes(lambda: load(crafted)) < 50 * 2**20  # 3.6 GB if the layer were allocated


@pytest.mark.parametrize("shape", [[1_500_000_000], [2**31, 2**31], [30000, 30000]])
def test_a_tensor_shape_beyond_what_the_file_can_hold_is_refused_before_decoding(mlp_artifact, shape):
    header, _ = unframe(mlp_artifact)
    header["tensors"][0]["shape"] = shape
    crafted = reframe(mlp_artifact, tensors=header["tensors"])
    with pytest.raises(ValueError, match="(tensor elements|must be a whole number)"):
        load(crafted)
    assert peak_bytes(lambda: load(crafted)) < 50 * 2**20


def test_a_header_that_inflates_without_bound_is_refused(mlp_artifact):
    bomb = frame(deflate_zeros(2**28), codec=1)  # 256 MiB of zeros in about 260 KB
    with pytest.raises(ValueError, match="header inflates to more than"):
        load(bomb)
    assert peak_bytes(lambda: load(bomb)) < 40 * 2**20


def test_a_segment_inflates_only_to_what_its_shape_needs(mlp_artifact):
    header, blobs = unframe(mlp_artifact)
    first = header["tensors"][0]
    bomb = deflate_zeros(2**27)
    first["segments"] = [{"role": "values", "codec": "deflate", "length": len(bomb), "raw_length": 2**27}]
    first.update(positions={"kind": "dense"}, count=first["shape"][0] * (first["shape"][1] if len(first["shape"]) > 1 else 1),
                 length=len(bomb))
    for entry in header["tensors"][1:]:
        entry["offset"] += len(bomb) - unframe(mlp_artifact)[0]["tensors"][0]["length"]
    crafted = frame(json.dumps(header).encode(), bomb + blobs[unframe(mlp_artifact)[0]["tensors"][0]["length"]:])
    with pytest.raises(ValueError, match="values segment claims 134217728 bytes; its shape needs"):
        load(crafted)
    assert peak_bytes(lambda: load(crafted)) < 40 * 2**20


def test_the_header_length_field_is_covered_by_the_checksum(mlp_artifact):
    for offset in range(8, 23):  # version, codec, header length, file length
        flipped = bytearray(mlp_artifact)
        flipped[offset] ^= 0x01
        with pytest.raises(ValueError, match="(checksum|truncated|unexpected bytes|version|header codec)"):
            load(bytes(flipped))


def test_format_1_files_still_load(mlp_artifact):
    header, blobs = unframe(mlp_artifact)
    old = frame(deflate(json.dumps({**header, "format": 1}).encode()), blobs, codec=1, version=1)
    model = load(old)
    assert torch.equal(model.fc1.weight, load(mlp_artifact).fc1.weight)


@pytest.mark.parametrize("change", [
    {"modules": [{"name": "fc1" + ".0" * 100, "type": "Linear", "args": {}}]},
    {"modules": "fc1"},
    {"tensors": [1, 2]},
    {"input_quant": {"fc1": {"bits": 8, "scale": float("nan"), "zero_point": 0}}},
    {"input_quant": {"nope": {"bits": 8, "scale": 1.0, "zero_point": 0}}},
    {"source": ["digits-mlp"]},
])
def test_malformed_headers_are_clear_errors(mlp_artifact, change):
    with pytest.raises(ValueError, match="artifact header|input_quant"):
        load(reframe(mlp_artifact, **change))


def test_deeply_nested_header_json_is_a_clear_error():
    with pytest.raises(ValueError, match="nested too deeply"):
        load(frame(b"[" * 200_000 + b"]" * 200_000))


# ---- canonical encoding ------------------------------------------------------------------------------------------------


def test_the_encoding_does_not_depend_on_state_dict_order():
    model = cz.load_sample("digits-mlp").model
    reordered = cz.prune(model, 0.5)
    for layer in (reordered.fc1, reordered.fc2):  # prune.remove re-registers `weight` after `bias`
        prune.identity(layer, "weight")
        prune.remove(layer, "weight")
    assert list(reordered.state_dict())[:2] == ["fc1.bias", "fc1.weight"]
    data = encode(reordered).data
    assert data == encode(cz.prune(model, 0.5)).data
    assert encode(load(data)).data == data  # a loaded model re-encodes to its own file


def test_a_fine_tuned_artifact_reports_its_own_file_size(tmp_path):
    sample = cz.load_sample("digits-mlp")
    recipe = cz.Recipe((cz.Prune(amount=0.8), cz.Finetune(epochs=1)))
    small = cz.compress(sample.model, recipe, sample.data)
    path = tmp_path / "tuned.clab"
    size = cz.export(small, path).size
    loaded = load(path)
    report = cz.evaluate(loaded, sample.data, baseline=sample.model, latency=None)
    assert report.compressed_bytes == size == path.stat().st_size


def test_a_low_rank_layers_rank_survives_export_and_load():
    sample = cz.load_sample("digits-mlp")
    small = cz.low_rank(sample.model, rank=12, layers=["fc1"])
    loaded = load(encode(small).data)
    ranks = {cost.name: cost.rank for cost in layer_costs(loaded, sample.data.example_input)}
    assert ranks["fc1.0"] == ranks["fc1.1"] == 12 and ranks["fc2"] is None
    report = cz.evaluate(loaded, sample.data, baseline=sample.model, latency=None)
    assert {row["name"]: row["rank"] for row in report.layers}["fc1.0"] == 12
    assert encode(loaded).data == encode(small).data
