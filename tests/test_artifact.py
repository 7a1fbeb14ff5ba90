"""The exported artifact: exact round-trips, sizes against hand computation, an independent reader, bad files.

Compressed states are built by hand here (weights on a grid with a WeightQuant, Sequential pairs, shrunk
layers), not with the technique modules, so these tests check the file format alone.
"""
from __future__ import annotations

import json
import pickle
import struct
import time
import zlib

import numpy as np
import pytest
import torch
from torch import nn
from torch.nn.utils import prune

from compressor.artifact import FORMAT_VERSION, encode, export, is_artifact, load, read_header
from compressor.bitpack import pack_bits, unpack_bits
from compressor.models import build_model
from compressor.sparse_encoding import Bitmask, RelativeIndex, sparse_encodings
from compressor.state import InputQuant, WeightQuant, input_quant, set_input_quant, source_of, tag_source, weight_quant
from tests import models

PREFIX_FORMAT = "<8sHBIQI"  # as documented in compressor/artifact.py: magic, version, codec, header len, file len, CRC


class MLP(nn.Module):
    """64-300-100-10, the sample MLP's shape (50k weights)."""

    def __init__(self) -> None:
        super().__init__()
        self.fc1, self.fc2, self.fc3 = nn.Linear(64, 300), nn.Linear(300, 100), nn.Linear(100, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc3(torch.relu(self.fc2(torch.relu(self.fc1(x)))))


def mlp(seed: int = 0) -> MLP:
    torch.manual_seed(seed)
    return MLP().eval()


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """These tensors are small: on a busy 2-core machine, OpenMP threads only wait for each other."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture
def mlp_input() -> torch.Tensor:
    return torch.randn(8, 64, generator=torch.Generator().manual_seed(4))


# ---- building compressed states by hand ------------------------------------------------------------------------


def prune_smallest_(layer: nn.Module, fraction: float) -> None:
    """Zero the `fraction` of weights with the smallest magnitude (negative ones become −0.0, as in prune.py)."""
    w = layer.weight.data
    k = int(fraction * w.numel())
    if k:
        threshold = w.abs().flatten().kthvalue(k).values
        w.mul_((w.abs() > threshold).float())


def uniform_quantize_(layer: nn.Module, bits: int, scheme: str, granularity: str) -> WeightQuant:
    """Move the non-zero weights onto a b-bit uniform grid (zeros stay zero) and attach the WeightQuant."""
    w = layer.weight.data
    rows = w.reshape(w.shape[0], -1) if granularity == "channel" else w.reshape(1, -1)  # (C, K) or (1, n)
    if scheme == "affine":
        lo, hi = rows.min(dim=1).values.clamp(max=0), rows.max(dim=1).values.clamp(min=0)
        scale = (hi - lo) / (2**bits - 1)
        zero_point = torch.round(-lo / scale)
    elif bits == 1:  # two levels ±scale/2, no zero code
        scale = 2 * rows.abs().mean(dim=1)
        zero_point = torch.full_like(scale, 0.5)
    else:
        scale = rows.abs().max(dim=1).values / (2 ** (bits - 1) - 1)
        zero_point = torch.full_like(scale, 2.0 ** (bits - 1))
    quant = WeightQuant(bits, "uniform", scheme, granularity, scale=scale.float(), zero_point=zero_point.float())
    w.copy_(torch.where(w != 0, quant.dequantize(quant.codes(w)), torch.zeros_like(w)))
    layer.weight_quant = quant
    return quant


def kmeans_quantize_(layer: nn.Module, bits: int) -> WeightQuant:
    """Share weights: each non-zero weight becomes the nearest of 2^b quantiles (none of them zero)."""
    w = layer.weight.data
    codebook = torch.quantile(w[w != 0], torch.linspace(0.02, 0.98, 2**bits))  # (2^b,)
    assert (codebook != 0).all()
    quant = WeightQuant(bits, "kmeans", "kmeans", "tensor", codebook=codebook.float())
    w.copy_(torch.where(w != 0, quant.dequantize(quant.codes(w)), torch.zeros_like(w)))
    layer.weight_quant = quant
    return quant


def roundtrip(model: nn.Module, base: nn.Module | None = None) -> nn.Module:
    """Encode and load; these tests' entry-point sources (tests.models:...) are trusted code."""
    return load(encode(model).data, base=base, allow_entry_points=True)


def assert_same_model(expected: nn.Module, loaded: nn.Module, x: torch.Tensor) -> None:
    """State dicts equal (keys, dtypes, values), same layer types and quantization metadata, equal outputs."""
    want, got = expected.state_dict(), loaded.state_dict()
    assert set(want) == set(got)  # order may differ: prune.remove re-registers `weight` after `bias`
    for name, tensor in want.items():
        assert got[name].dtype == tensor.dtype and got[name].shape == tensor.shape, name
        assert torch.equal(got[name], tensor), name
    expected_modules, loaded_modules = dict(expected.named_modules()), dict(loaded.named_modules())
    assert list(expected_modules) == list(loaded_modules)
    for name, module in expected_modules.items():
        other = loaded_modules[name]
        assert type(other) is type(module), name
        assert_same_quant(weight_quant(module), weight_quant(other))
        assert input_quant(other) == input_quant(module), name
    assert not loaded.training
    with torch.no_grad():
        assert torch.equal(loaded(x), expected(x))


def assert_same_quant(a: WeightQuant | None, b: WeightQuant | None) -> None:
    assert (a is None) == (b is None)
    if a is not None:
        assert (a.bits, a.method, a.scheme, a.granularity) == (b.bits, b.method, b.scheme, b.granularity)
        for field in ("scale", "zero_point", "codebook"):
            x, y = getattr(a, field), getattr(b, field)
            assert (x is None and y is None) or torch.equal(x, y), field


def read_segments(data: bytes, name: str) -> tuple[dict, dict[str, bytes]]:
    """An independent reader following the documented layout: one tensor's header entry and raw segments."""
    magic, version, codec, header_length, file_length, crc = struct.unpack_from(PREFIX_FORMAT, data)
    start = struct.calcsize(PREFIX_FORMAT)
    assert magic == b"\x89CMPLAB\n" and file_length == len(data)
    assert crc == zlib.crc32(data[start:], zlib.crc32(data[8:23]))  # format 2: prefix fields, then the rest
    text = data[start : start + header_length]
    header = json.loads(zlib.decompress(text, -15) if codec == 1 else text)
    entry = next(t for t in header["tensors"] if t["name"] == name)
    offset, segments = start + header_length + entry["offset"], {}
    for segment in entry["segments"]:
        stored = data[offset : offset + segment["length"]]
        segments[segment["role"]] = zlib.decompress(stored, -15) if segment["codec"] == "deflate" else stored
        assert len(segments[segment["role"]]) == segment["raw_length"]
        offset += segment["length"]
    return entry, segments


def position_kinds(data: bytes) -> dict[str, str]:
    return {t["name"]: t["positions"]["kind"] for t in read_header(data)["tensors"]}


# ---- round trips ------------------------------------------------------------------------------------------------


def test_dense_model_round_trips_exactly_and_file_size_is_the_artifact_size(tmp_path, mlp_input):
    model = mlp()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    path = tmp_path / "mlp.cmp"
    written = export(model, path, recipe={"steps": []})
    assert written.size == len(path.read_bytes()) == path.stat().st_size
    assert sum(written.layer_bytes.values()) == written.size
    assert set(written.layer_bytes) == {"(header)", "fc1", "fc2", "fc3"}
    assert all(torch.equal(v, before[k]) for k, v in model.state_dict().items())  # encode does not touch the model
    assert set(position_kinds(written.data).values()) == {"dense"}
    base = mlp(seed=1)
    base_state = {k: v.clone() for k, v in base.state_dict().items()}
    loaded = load(path, base=base)
    assert_same_model(model, loaded, mlp_input)
    assert all(torch.equal(v, base_state[k]) for k, v in base.state_dict().items())  # base deep-copied, not filled


def test_sparse_model_round_trips_exactly_with_zeros_in_place(mlp_input):
    model = mlp()
    for layer in (model.fc1, model.fc2, model.fc3):
        prune.l1_unstructured(layer, "weight", amount=0.9)
        prune.remove(layer, "weight")
    loaded = roundtrip(model, base=mlp(seed=1))
    assert_same_model(model, loaded, mlp_input)
    for name in ("fc1", "fc2", "fc3"):
        assert torch.equal(getattr(loaded, name).weight == 0, getattr(model, name).weight == 0)
    kinds = position_kinds(encode(model).data)
    assert kinds["fc1.weight"] != "dense" and kinds["fc1.bias"] == "dense"


@pytest.mark.parametrize("bits", [1, 2, 3, 4, 8])
@pytest.mark.parametrize("scheme", ["affine", "symmetric"])
@pytest.mark.parametrize("granularity", ["tensor", "channel"])
def test_uniform_quantized_weights_round_trip_exactly(bits, scheme, granularity, mlp_input):
    model = mlp()
    for layer in (model.fc1, model.fc2, model.fc3):
        prune_smallest_(layer, 0.5)
        uniform_quantize_(layer, bits, scheme, granularity)
    loaded = roundtrip(model, base=mlp(seed=1))
    assert_same_model(model, loaded, mlp_input)
    for name in ("fc1", "fc2", "fc3"):  # the codes themselves survive
        original, restored = getattr(model, name), getattr(loaded, name)
        assert torch.equal(restored.weight_quant.codes(restored.weight), original.weight_quant.codes(original.weight))


@pytest.mark.parametrize("bits", [1, 2, 3, 4, 8])
def test_kmeans_quantized_weights_keep_their_zeros_through_the_mask(bits, mlp_input):
    model = mlp()
    for layer in (model.fc1, model.fc2):
        prune_smallest_(layer, 0.3)
        kmeans_quantize_(layer, bits)
    loaded = roundtrip(model, base=mlp(seed=1))
    assert_same_model(model, loaded, mlp_input)
    assert (loaded.fc1.weight == 0).sum() == (model.fc1.weight == 0).sum() > 0
    assert position_kinds(encode(model).data)["fc1.weight"] in ("bitmask", "index")


def test_one_bit_symmetric_with_zeros_keeps_the_mask_but_a_zero_code_allows_dense(mlp_input):
    model = mlp()
    prune_smallest_(model.fc1, 0.02)
    uniform_quantize_(model.fc1, 1, "symmetric", "tensor")  # no code decodes to 0
    prune_smallest_(model.fc2, 0.02)
    uniform_quantize_(model.fc2, 8, "affine", "channel")  # code zero_point decodes to exactly 0
    kinds = position_kinds(encode(model).data)
    assert kinds["fc1.weight"] != "dense" and kinds["fc2.weight"] == "dense"
    assert_same_model(model, roundtrip(model, base=mlp(seed=1)), mlp_input)


def test_low_rank_pairs_are_rebuilt_in_place_of_the_original_layers(cnn_input, mlp_input):
    model = mlp()
    model.fc2 = nn.Sequential(nn.Linear(300, 20, bias=False), nn.Linear(20, 100))
    prune_smallest_(model.fc2[0], 0.5)
    uniform_quantize_(model.fc2[1], 4, "symmetric", "channel")
    loaded = roundtrip(model.eval(), base=mlp(seed=1))
    assert isinstance(loaded.fc2, nn.Sequential) and loaded.fc2[0].out_features == 20
    assert_same_model(model, loaded, mlp_input)

    cnn = build_model("tests.models:residual_cnn")  # a Sequential pair inside a Sequential that also holds a ReLU
    cnn.stem[0] = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1, bias=False), nn.Conv2d(4, 16, 1, bias=False))
    cnn.head = nn.Sequential(nn.Linear(32, 3, bias=False), nn.Linear(3, 5))
    loaded = roundtrip(cnn.eval())  # skeleton built from the source
    assert [type(m) for m in loaded.stem[0]] == [nn.Conv2d, nn.Conv2d]
    assert_same_model(cnn, loaded, cnn_input)


def test_shrunk_layers_are_rebuilt_with_their_new_shapes(cnn_input):
    model = build_model("tests.models:residual_cnn")
    keep = torch.arange(24)  # channels 0..23 of the pointwise conv survive, with their BatchNorm and consumers
    pointwise, grouped = model.pointwise, model.grouped
    model.pointwise = nn.Conv2d(16, 24, 1)
    model.pointwise.weight.data = pointwise.weight[keep].clone()
    model.pointwise.bias.data = pointwise.bias[keep].clone()
    model.bn = nn.BatchNorm2d(24)
    for name in ("weight", "bias", "running_mean", "running_var"):
        getattr(model.bn, name).data = torch.rand(24) + 0.5
    model.bn.num_batches_tracked.fill_(7)
    model.grouped = nn.Conv2d(24, 32, 3, padding=1, groups=4)
    model.grouped.weight.data = grouped.weight[:, :6].clone()
    loaded = load(encode(model.eval()).data, allow_entry_points=True)
    assert (loaded.pointwise.out_channels, loaded.bn.num_features, loaded.grouped.in_channels) == (24, 24, 24)
    assert source_of(loaded) == "tests.models:residual_cnn"
    assert_same_model(model, loaded, cnn_input)


def test_input_quantization_is_re_attached_and_applied(mlp_input):
    model = mlp()
    set_input_quant(model.fc1, InputQuant(bits=8, scale=0.05, zero_point=128))
    set_input_quant(model.fc3, InputQuant(bits=4, scale=0.25, zero_point=0))
    loaded = roundtrip(model, base=mlp(seed=1))
    assert input_quant(loaded.fc1) == InputQuant(8, 0.05, 128) and input_quant(loaded.fc2) is None
    assert_same_model(model, loaded, mlp_input)
    with torch.no_grad():  # the hook is what makes the outputs match: without it they differ
        assert not torch.equal(loaded(mlp_input), load(encode(mlp()).data, base=mlp())(mlp_input))


def test_residual_cnn_compressed_state_round_trips_from_its_entry_point(cnn_input):
    model = build_model("tests.models:residual_cnn")
    prune_smallest_(model.block.conv1, 0.8)
    uniform_quantize_(model.block.conv1, 3, "affine", "channel")
    kmeans_quantize_(model.depthwise, 2)
    prune_smallest_(model.grouped, 0.95)
    for bn in (model.stem[1], model.block.bn1, model.block.bn2, model.bn):
        bn.running_mean.normal_()
        bn.running_var.uniform_(0.5, 2)
        bn.num_batches_tracked.fill_(3)
    set_input_quant(model.head, InputQuant(bits=8, scale=0.02, zero_point=10))
    path_free = encode(model, recipe={"steps": [{"type": "prune", "amount": 0.8}]}).data
    header = read_header(path_free)
    assert header["source"] == "tests.models:residual_cnn" and header["recipe"]["steps"][0]["amount"] == 0.8
    assert_same_model(model, load(path_free, allow_entry_points=True), cnn_input)


def test_tiny_transformer_round_trips_with_a_base(tiny_transformer, seq_input):
    model = tiny_transformer
    prune_smallest_(model.layers[0].attn.qkv, 0.5)
    uniform_quantize_(model.layers[0].attn.proj, 4, "symmetric", "channel")
    kmeans_quantize_(model.layers[1].mlp[0], 4)
    with torch.no_grad():
        model.norm.weight.uniform_(0.5, 1.5)  # LayerNorm parameters off their defaults
    set_input_quant(model.head, InputQuant(bits=8, scale=0.05, zero_point=128))
    assert source_of(model) is None
    data = encode(model).data
    with pytest.raises(ValueError, match="exported without a source; pass base="):
        load(data)
    loaded = load(data, base=models.tiny_transformer())
    assert source_of(loaded) is None
    assert_same_model(model, loaded, seq_input)


@pytest.mark.parametrize("dtype", [torch.float64, torch.bfloat16])
def test_other_dtypes_are_kept(dtype):
    model = mlp().to(dtype)
    prune_smallest_(model.fc1, 0.9)
    loaded = roundtrip(model, base=mlp(seed=1))
    x = torch.randn(3, 64, generator=torch.Generator().manual_seed(5)).to(dtype)
    assert_same_model(model, loaded, x)


# ---- sizes ------------------------------------------------------------------------------------------------------


def test_sizes_of_the_50k_mlp_are_within_hand_computed_bounds():
    """Σ over tensors of raw bytes (values + bitmask) bounds the file: compression never grows a segment."""
    dense = mlp()
    params = sum(p.numel() for p in dense.parameters())
    header_allowance = 1500
    assert encode(dense).size <= 4 * params + header_allowance

    sparse = mlp()
    for layer in (sparse.fc1, sparse.fc2, sparse.fc3):
        prune_smallest_(layer, 0.9)
    weights = [layer.weight for layer in (sparse.fc1, sparse.fc2, sparse.fc3)]
    bound = sum(4 * int((w != 0).sum()) + (w.numel() + 7) // 8 for w in weights)  # values + bitmask
    bound += 4 * (300 + 100 + 10)  # biases, dense
    sparse_size = encode(sparse).size
    assert sparse_size <= bound + header_allowance

    quantized = mlp()
    for layer in (quantized.fc1, quantized.fc2, quantized.fc3):
        prune_smallest_(layer, 0.9)
        uniform_quantize_(layer, 4, "symmetric", "channel")
    layers = (quantized.fc1, quantized.fc2, quantized.fc3)
    bound = sum(  # 4-bit codes + bitmask + float32 scale and zero point per channel
        (int((l.weight != 0).sum()) * 4 + 7) // 8 + (l.weight.numel() + 7) // 8 + 8 * l.out_features for l in layers
    )
    bound += 4 * (300 + 100 + 10)
    assert encode(quantized).size <= bound + header_allowance < sparse_size


def test_encoding_the_dashboard_mlp_takes_under_10_ms():
    """Budget 10 ms (the dashboard re-encodes on every slider move); CPU time on one thread, best of 10."""
    dense, compressed = mlp(), mlp()
    for layer in (compressed.fc1, compressed.fc2, compressed.fc3):
        prune_smallest_(layer, 0.9)
        uniform_quantize_(layer, 4, "symmetric", "channel")
    for model in (dense, compressed):
        encode(model)  # warm-up
        best = min(_cpu_seconds(lambda: encode(model)) for _ in range(10))
        assert best < 0.010, f"encode took {best * 1e3:.1f} ms"


def _cpu_seconds(fn) -> float:
    start = time.process_time()
    fn()
    return time.process_time() - start


def test_a_1000x1000_layer_at_90_percent_and_4_bits_is_bit_packed_exactly():
    torch.manual_seed(0)
    layer = nn.Linear(1000, 1000, bias=False)
    keep = torch.zeros(10**6, dtype=torch.bool)
    keep[torch.randperm(10**6)[:100_000]] = True
    magnitudes = torch.empty(1000, 1000).uniform_(0.2, 1.0)  # far enough from 0 that no weight rounds to code 8 (= 0)
    layer.weight.data = torch.where(keep.view(1000, 1000), magnitudes * torch.randn(1000, 1000).sign(), 0.0)
    quant = uniform_quantize_(layer, 4, "symmetric", "tensor")
    model = nn.Sequential(layer)
    data = encode(model).data
    assert len(data) < 4 * 10**6 / 10

    entry, segments = read_segments(data, "0.weight")
    w = layer.weight.detach().reshape(-1)
    nonzero = w != 0
    assert len(segments["values"]) == 100_000 * 4 // 8 == 50_000  # codes of the non-zeros at exactly 4 bits
    bits = np.unpackbits(np.frombuffer(segments["values"], np.uint8)).reshape(-1, 4)  # (100k, 4), MSB first
    codes = bits.astype(np.int64) @ np.array([8, 4, 2, 1])
    assert np.array_equal(codes, quant.codes(layer.weight.detach()).reshape(-1)[nonzero].numpy())

    # positions: relative index at the b minimising ⌈b · (k + Σ ⌊gap / (2^b − 1)⌋) / 8⌉, smaller than a bitmask
    gaps = np.diff(np.flatnonzero(nonzero.numpy()), prepend=-1) - 1
    sizes = {b: (b * (gaps.size + int((gaps // (2**b - 1)).sum())) + 7) // 8 for b in range(1, 17)}
    best = min(sizes, key=sizes.get)
    assert entry["positions"]["kind"] == "index" and entry["positions"]["bits"] == best
    assert len(segments["positions"]) == sizes[best] < 125_000
    loaded = load(data, base=nn.Sequential(nn.Linear(1000, 1000, bias=False)))
    assert torch.equal(loaded[0].weight, layer.weight)


def test_all_zero_tensors_cost_almost_nothing():
    model = nn.Sequential(nn.Linear(100, 100))
    nn.init.zeros_(model[0].weight)
    artifact_ = encode(model)
    entry, segments = read_segments(artifact_.data, "0.weight")
    assert entry["positions"]["entries"] == 0 and entry["count"] == 0
    assert entry["length"] <= 2
    assert torch.equal(roundtrip(model, base=nn.Sequential(nn.Linear(100, 100)))[0].weight, torch.zeros(100, 100))


# ---- the encodings against independent references ---------------------------------------------------------------


def test_bit_packing_matches_a_hand_worked_example_and_round_trips():
    assert pack_bits(np.array([5, 1, 7]), 3) == bytes([0b10100111, 0b10000000])
    rng = np.random.default_rng(0)
    for bits in range(1, 33):
        values = rng.integers(0, 2**bits, size=101, dtype=np.int64)
        packed = pack_bits(values, bits)
        assert len(packed) == (101 * bits + 7) // 8
        assert np.array_equal(unpack_bits(packed, bits, 101), values)
        reference = "".join(format(int(v), f"0{bits}b") for v in values)  # the bits as a string, MSB first
        reference += "0" * (-len(reference) % 8)
        assert packed == int(reference, 2).to_bytes(len(reference) // 8, "big")
    with pytest.raises(ValueError, match="do not fit in 3 bits"):
        pack_bits(np.array([8]), 3)
    with pytest.raises(ValueError, match="bits=0"):
        pack_bits(np.array([0]), 0)


def test_relative_index_matches_the_documented_example():
    mask = np.array([0, 0, 1, 0, 0, 0, 0, 0, 1, 1], dtype=bool)  # gaps 2, 5, 0
    encoding = RelativeIndex(bits=2, entries=4)  # entries 2 | 3 2 | 0
    assert encoding.encode(mask) == bytes([0b10111000])
    assert np.array_equal(encoding.decode(bytes([0b10111000]), 10), mask)


def reference_positions(entries: list[int], bits: int) -> list[int]:
    """Decode relative-index entries one by one, as the scheme is stated."""
    filler, position, positions = 2**bits - 1, -1, []
    for entry in entries:
        if entry == filler:
            position += filler
        else:
            position += entry + 1
            positions.append(position)
    return positions


@pytest.mark.parametrize("density", [0.0, 0.01, 0.1, 0.5, 1.0])
def test_relative_index_round_trips_and_picks_the_smallest_width(density):
    rng = np.random.default_rng(1)
    mask = rng.random(3000) < density
    mask[-50:] = False  # trailing zeros cost nothing
    fitted = RelativeIndex.fit(mask)
    for bits in (1, 2, 3, 5, 8):
        gaps = np.diff(np.flatnonzero(mask), prepend=-1) - 1
        encoding = RelativeIndex(bits, gaps.size + int((gaps // (2**bits - 1)).sum()))
        data = encoding.encode(mask)
        entries = unpack_bits(data, bits, encoding.entries).tolist()
        assert reference_positions(entries, bits) == np.flatnonzero(mask).tolist()
        assert np.array_equal(encoding.decode(data, mask.size), mask)
        assert fitted.nbytes() <= encoding.nbytes()
    bitmask = Bitmask(mask.size)
    assert np.array_equal(bitmask.decode(bitmask.encode(mask), mask.size), mask)
    assert min(e.nbytes() for e in sparse_encodings(mask)) <= bitmask.nbytes() == 375


def test_a_gap_that_is_a_multiple_of_the_filler_needs_a_zero_entry():
    mask = np.array([0, 0, 0, 1], dtype=bool)  # gap 3 = filler at 2 bits
    encoding = RelativeIndex(2, 2)
    assert unpack_bits(encoding.encode(mask), 2, 2).tolist() == [3, 0]
    assert np.array_equal(encoding.decode(encoding.encode(mask), 4), mask)


# ---- errors -----------------------------------------------------------------------------------------------------


def test_bad_files_raise_clear_errors(tmp_path):
    data = encode(mlp()).data
    assert is_artifact(data) and not is_artifact(b"PK\x03\x04")
    with pytest.raises(ValueError, match="not a Compression Lab artifact"):
        load(b"PK\x03\x04 a zip file, not an artifact")
    not_artifact = tmp_path / "weights.pt"
    torch.save(mlp().state_dict(), not_artifact)
    assert not is_artifact(not_artifact)
    with pytest.raises(ValueError, match="not a Compression Lab artifact"):
        read_header(not_artifact)
    newer = bytearray(data)
    struct.pack_into("<H", newer, 8, FORMAT_VERSION + 1)
    with pytest.raises(ValueError, match="newer than this reader"):
        load(bytes(newer), base=mlp())
    with pytest.raises(ValueError, match="truncated"):
        load(data[:-10], base=mlp())
    with pytest.raises(ValueError, match="truncated"):
        load(data[:20], base=mlp())
    corrupted = bytearray(data)
    corrupted[-100] ^= 0xFF
    with pytest.raises(ValueError, match="checksum"):
        load(bytes(corrupted), base=mlp())


def test_bad_inputs_to_encode_and_load_raise():
    with pytest.raises(ValueError, match="JSON-able"):
        encode(mlp(), recipe={"when": object()})
    model = mlp()
    uniform_quantize_(model.fc1, 4, "affine", "tensor")
    model.fc1.weight.data[0, 0] += 1e-3  # off the grid: its codes would not reproduce it
    with pytest.raises(ValueError, match="fc1.weight is not on its WeightQuant grid"):
        encode(model)
    with pytest.raises(ValueError, match="do not fit the base model"):
        load(encode(mlp()).data, base=models.residual_cnn())


def test_loading_never_unpickles(tmp_path, monkeypatch, cnn_input):
    model = build_model("tests.models:residual_cnn")
    prune_smallest_(model.head, 0.5)
    path = tmp_path / "cnn.cmp"
    export(model, path)

    def forbidden(*args, **kwargs):
        raise AssertionError("loading an artifact must not unpickle")

    for module, name in ((pickle, "loads"), (pickle, "load"), (pickle, "Unpickler"), (torch, "load")):
        monkeypatch.setattr(module, name, forbidden)
    assert_same_model(model, load(path, allow_entry_points=True), cnn_input)
    assert_same_model(model, load(path, base=models.residual_cnn()), cnn_input)


def test_a_base_with_stale_quantization_gets_the_artifacts_metadata(mlp_input):
    model = mlp()
    tag_source(model, "unused:source")
    base = mlp(seed=1)
    uniform_quantize_(base.fc1, 2, "affine", "tensor")  # the artifact's fc1 is not quantized
    loaded = roundtrip(model, base=base)
    assert weight_quant(loaded.fc1) is None and weight_quant(base.fc1) is not None
    assert_same_model(model, loaded, mlp_input)
