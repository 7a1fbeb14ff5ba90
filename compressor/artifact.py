"""The exported artifact: one file holding a compressed model. Its length is the "compressed bytes" we report.

File layout (integers little-endian)

    offset  size  field
    0       8     magic b"\\x89CMPLAB\\n" (a non-ASCII first byte, so the file is never mistaken for text)
    8       2     format version (uint16)
    10      1     header codec: 0 stored, 1 raw DEFLATE
    11      4     header length H as stored (uint32)
    15      8     file length (uint64): a truncated file is recognised before anything is decoded
    23      4     CRC-32 of everything after the prefix (header and blobs)
    27      H     header: UTF-8 JSON, deflated when that is smaller
    27 + H  ...   blobs, one per tensor in header order, each the concatenation of its segments

Header
    format       the format version
    source       where the uncompressed architecture comes from (the model's `compressor_source`: a sample name
                 or an entry point), or null
    recipe       the recipe dict given to `encode`, as is, or null
    modules      the layers to rebuild on load, outermost first:
                 {"name": "fc1", "type": "Sequential", "args": {"children": ["0", "1"]}},
                 {"name": "fc1.0", "type": "Linear", "args": {"in_features": 64, "out_features": 16, "bias": false}}
    input_quant  {"fc1": {"bits": 8, "scale": 0.031, "zero_point": 0}, ...}
    tensors      one entry per state_dict tensor, in state_dict order: name, shape, dtype, positions (see
                 sparse_encoding.py), count (values stored), quant (bits, method, scheme, granularity; quantized
                 weights only), offset (from the first blob), length, segments [{role, codec, length, raw_length}]

Segments of a tensor, in this order
    positions    where the non-zeros are (none when dense): bitmask or relative index, whichever is smallest,
                 and dense when that is smaller still (sparse_encoding.py)
    values       plain tensors: the stored values in their dtype as byte planes, all first bytes, then all second
                 bytes, ... (the shuffle filter of HDF5 and Blosc: it groups the sign/exponent bytes that compress)
                 quantized weights: the codes of the stored weights, bit-packed at exactly `bits` bits (bitpack.py)
    scale, zero_point (uniform) or codebook (kmeans): the layer's WeightQuant arrays, float32 byte planes

Zeros are stored as +0.0 (the mask is `value != 0`, so −0.0 from pruning comes back as +0.0, which it equals).
Quantized weights are stored as codes only if decoding them reproduces the weight exactly; else encode refuses.

Codec: every segment is compressed on its own, so per-layer byte counts are exact and the file is the header plus
the sum of the blobs. Raw DEFLATE (zlib with no zlib header or checksum: the file CRC covers every byte) with
the Huffman-only strategy, or stored when that is smaller. Measured (trained digits MLP, 50k weights; random
1000x1000 layer), Huffman-only is both the smallest and the fastest: codes, masks and float bytes are
entropy-limited, not repetitive, so LZ77 matching (DEFLATE level 6) and LZMA (raw LZMA2, no .xz container) rarely pay.

    blob                                  raw      Huffman-only     DEFLATE-6         LZMA2 preset 6
    MLP fp32 dense, byte planes        200 800   176 684  1.1 ms   179 356   8.1 ms   174 242  85 ms
    MLP fp32 dense, as is              200 800   189 014  1.6 ms   189 167   4.9 ms   188 847  41 ms
    MLP 4-bit codes, 90% zeros           2 510     1 679            1 735              1 963
    1000² 4-bit codes, 90% zeros        50 000    26 228  0.3 ms    30 176   7.3 ms    27 462  15 ms
    1000² bitmask, 90% zeros           125 000    59 726  0.9 ms    70 336  29 ms      61 465  45 ms

For positions and quantizer arrays run-length DEFLATE (`Z_RLE`) is tried too: masks have long runs (97% zeros:
1 250 against 1 447 bytes), a symmetric quantizer's zero points are one value repeated.
Both strategies write standard DEFLATE that one `zlib.decompressobj` reads.

Loading never unpickles the artifact: it reads JSON and raw arrays. The architecture comes from `base`
(deep-copied) or is rebuilt with `compressor.models.build_model(source)` (for a sample name that reads the shipped
sample weights with `torch.load(weights_only=True)`; the artifact's tensors then replace them). Every module in
`modules` whose type or arguments differ from the skeleton's is replaced (a Sequential pair replaces a Linear, a
shrunk conv a wide one), then the tensors are loaded with `load_state_dict(strict=True, assign=True)` (assign keeps
the stored dtypes) and the quantization metadata is re-attached.
"""
from __future__ import annotations

import copy
import dataclasses
import json
import os
import struct
import zlib
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from compressor.bitpack import pack_bits, packed_size, unpack_bits
from compressor.layers import ROOT_NAME
from compressor.models import build_model
from compressor.sparse_encoding import Dense, PositionEncoding, encoding_from_dict, sparse_encodings
from compressor.state import (
    WEIGHT_QUANT,
    InputQuant,
    WeightQuant,
    input_quant,
    recipe_of,
    set_input_quant,
    source_of,
    tag_recipe,
    tag_source,
    weight_quant,
)
from compressor.validation import check_choice

MAGIC = b"\x89CMPLAB\n"
FORMAT_VERSION = 1
PREFIX = struct.Struct("<8sHBIQI")  # magic, version, header codec, header length, file length, CRC-32
HEADER_KEY = "(header)"  # layer_bytes key of the prefix and header
ROOT_KEY = ROOT_NAME
QUANT_ARRAYS = ("scale", "zero_point", "codebook")  # WeightQuant fields stored as float32 segments

PathOrBytes = str | os.PathLike | bytes | bytearray | memoryview


@dataclass(frozen=True)
class Artifact:
    """An encoded model: the file's bytes and how many of them each module takes."""

    data: bytes
    layer_bytes: dict[str, int]  # module name -> bytes of its tensors' blobs; "(header)" -> prefix and header

    @property
    def size(self) -> int:
        return len(self.data)


# ---- public API ---------------------------------------------------------------------------------------------


def encode(model: nn.Module, recipe: dict[str, Any] | None = None) -> Artifact:
    """The model as artifact bytes: every state_dict tensor in its smallest exact encoding, plus how to rebuild it.

    recipe=None stores the recipe the model carries from `compress` (if any).
    """
    recipe = recipe if recipe is not None else recipe_of(model)
    _check_jsonable(recipe)
    quants = {_join(name, "weight"): wq for name, m in model.named_modules() if (wq := weight_quant(m)) is not None}
    entries, blobs, layer_bytes, offset = [], [], {}, 0
    for name, tensor in model.state_dict().items():
        if not isinstance(tensor, torch.Tensor):
            raise ValueError(f"state_dict entry {name!r} is a {type(tensor).__name__}, not a tensor; cannot export it")
        entry, blob = _encode_tensor(name, tensor, quants.get(name))
        entries.append({**entry, "offset": offset, "length": len(blob)})
        blobs.append(blob)
        owner = name.rpartition(".")[0] or ROOT_KEY
        layer_bytes[owner] = layer_bytes.get(owner, 0) + len(blob)
        offset += len(blob)
    header = {
        "format": FORMAT_VERSION,
        "source": source_of(model),
        "recipe": recipe,
        "modules": _module_specs(model),
        "input_quant": {name: dataclasses.asdict(_plain_input_quant(iq))
                        for name, m in model.named_modules() if (iq := input_quant(m)) is not None},
        "tensors": entries,
    }
    data = _assemble(header, blobs)
    return Artifact(data, {HEADER_KEY: len(data) - offset, **layer_bytes})


def export(model: nn.Module, path: str | os.PathLike, recipe: dict[str, Any] | None = None) -> Artifact:
    """Encode the model and write the artifact to `path`."""
    artifact = encode(model, recipe)
    Path(path).write_bytes(artifact.data)
    return artifact


def read_header(path_or_bytes: PathOrBytes) -> dict[str, Any]:
    """The artifact's metadata: format, source, recipe, modules, input_quant, tensors."""
    header, _ = _parse(_read(path_or_bytes))
    return header


def is_artifact(path_or_bytes: PathOrBytes) -> bool:
    """True when the file or bytes start with the artifact magic."""
    if isinstance(path_or_bytes, (bytes, bytearray, memoryview)):
        return bytes(path_or_bytes[: len(MAGIC)]) == MAGIC
    path = Path(path_or_bytes)
    if not path.is_file():
        return False
    with path.open("rb") as file:
        return file.read(len(MAGIC)) == MAGIC


def load(path_or_bytes: PathOrBytes, base: nn.Module | None = None) -> nn.Module:
    """The model stored in an artifact, in eval mode, with its quantization metadata and source tag.

    `base` is a skeleton to rebuild into (deep-copied, never changed); without it the architecture is
    built from the artifact's source.
    """
    header, blobs = _parse(_read(path_or_bytes))
    source = header["source"]
    if base is None and source is None:
        raise ValueError("the artifact was exported without a source; pass base=... (a model of the same architecture)")
    model = copy.deepcopy(base) if base is not None else build_model(source)
    _rebuild_modules(model, header["modules"])
    state, quants = {}, {}
    for entry in header["tensors"]:
        segments = _split_segments(entry, blobs[entry["offset"] : entry["offset"] + entry["length"]])
        state[entry["name"]], quant = _decode_tensor(entry, segments)
        if quant is not None:
            quants[entry["name"].rpartition(".")[0]] = quant
    try:
        model.load_state_dict(state, strict=True, assign=True)
    except RuntimeError as err:
        skeleton = "base model" if base is not None else f"model built from {source!r}"
        raise ValueError(f"the artifact's tensors do not fit the {skeleton}: {err}") from None
    _attach_quantization(model, quants, header["input_quant"])
    if source is not None:
        tag_source(model, source)
    tag_recipe(model, header["recipe"])
    return model.eval()


# ---- tensors: positions + values ------------------------------------------------------------------------------


class PlainValues:
    """A tensor stored as its values in its own dtype: float32 weights, biases, BatchNorm statistics, counters."""

    def __init__(self, tensor: torch.Tensor) -> None:
        self.flat = _to_numpy(tensor).reshape(-1)  # (n,)
        self.mask = self.flat != 0
        self.dense_exact = True  # storing every value is always exact

    def nbytes(self, count: int) -> int:
        return count * self.flat.itemsize

    def segments(self, stored: np.ndarray) -> list[tuple[str, bytes]]:
        return [("values", _byte_planes(self.flat[stored]))]

    def meta(self) -> dict[str, Any]:
        return {}

    @staticmethod
    def decode(entry: dict[str, Any], segments: dict[str, bytes], stored: np.ndarray) -> torch.Tensor:
        dtype = _dtype(entry["dtype"])
        flat = np.zeros(stored.size, dtype=_numpy_dtype(dtype))  # (n,): zeros where nothing is stored
        flat[stored] = _from_byte_planes(segments["values"], flat.dtype, int(stored.sum()))
        return _to_torch(flat, dtype).view(entry["shape"])


class QuantizedValues:
    """A quantized weight stored as the b-bit codes of its stored elements plus its WeightQuant arrays."""

    def __init__(self, name: str, weight: torch.Tensor, quant: WeightQuant) -> None:
        self.quant = _float32_arrays(quant)
        codes = self.quant.codes(weight)  # int64, shaped like weight
        decoded = self.quant.dequantize(codes).to(weight.dtype)
        nonzero = weight != 0
        if not torch.equal(decoded[nonzero], weight[nonzero]):
            worst = (decoded - weight)[nonzero].abs().max().item()
            raise ValueError(f"{name} is not on its WeightQuant grid (largest deviation {worst:.3g}); "
                             "its codes would not reproduce it, so it cannot be exported as quantized")
        self.codes = codes.reshape(-1).numpy()  # (n,)
        self.mask = nonzero.reshape(-1).numpy()
        self.dense_exact = torch.equal(decoded, weight)  # False when zeros have no code (1-bit symmetric, kmeans)

    def nbytes(self, count: int) -> int:
        return packed_size(count, self.quant.bits)

    def segments(self, stored: np.ndarray) -> list[tuple[str, bytes]]:
        arrays = [(field, getattr(self.quant, field)) for field in QUANT_ARRAYS]
        return [("values", pack_bits(self.codes[stored], self.quant.bits))] + [
            (field, _byte_planes(array.numpy())) for field, array in arrays if array is not None
        ]

    def meta(self) -> dict[str, Any]:
        q = self.quant
        return {"quant": {"bits": q.bits, "method": q.method, "scheme": q.scheme, "granularity": q.granularity}}

    @staticmethod
    def decode(
        entry: dict[str, Any], segments: dict[str, bytes], stored: np.ndarray
    ) -> tuple[torch.Tensor, WeightQuant]:
        meta = entry["quant"]
        check_choice("quant method", meta["method"], ("uniform", "kmeans"))
        arrays = {field: torch.from_numpy(_from_byte_planes(data, np.dtype("<f4"), len(data) // 4))
                  for field, data in segments.items() if field in QUANT_ARRAYS}
        quant = WeightQuant(**meta, **arrays)
        codes = np.zeros(stored.size, dtype=np.int64)  # (n,): code 0 where nothing is stored, masked below
        codes[stored] = unpack_bits(segments["values"], quant.bits, int(stored.sum()))
        weight = quant.dequantize(torch.from_numpy(codes).view(entry["shape"])).to(_dtype(entry["dtype"]))
        return weight.masked_fill(~torch.from_numpy(stored).view(entry["shape"]), 0), quant


def _encode_tensor(name: str, tensor: torch.Tensor, quant: WeightQuant | None) -> tuple[dict[str, Any], bytes]:
    """Header entry and blob of one tensor, in the smallest of dense / bitmask / relative index layouts."""
    tensor = tensor.detach().cpu()
    _dtype(str(tensor.dtype).removeprefix("torch."))  # fail early on an unsupported dtype
    values = QuantizedValues(name, tensor, quant) if quant is not None else PlainValues(tensor)
    nonzeros = int(values.mask.sum())
    candidates = ([Dense()] if values.dense_exact else []) + sparse_encodings(values.mask)

    def total(layout: PositionEncoding) -> int:
        return layout.nbytes() + values.nbytes(values.mask.size if isinstance(layout, Dense) else nonzeros)

    layout = min(candidates, key=total)
    stored = np.ones_like(values.mask) if isinstance(layout, Dense) else values.mask
    raw = ([] if isinstance(layout, Dense) else [("positions", layout.encode(values.mask))]) + values.segments(stored)
    segments, parts = [], []
    for role, data in raw:
        codec, packed = _compress(role, data)
        segments.append({"role": role, "codec": codec, "length": len(packed), "raw_length": len(data)})
        parts.append(packed)
    entry = {
        "name": name,
        "shape": list(tensor.shape),
        "dtype": str(tensor.dtype).removeprefix("torch."),
        "positions": layout.to_dict(),
        "count": int(stored.sum()),
        **values.meta(),
        "segments": segments,
    }
    return entry, b"".join(parts)


def _decode_tensor(entry: dict[str, Any], segments: dict[str, bytes]) -> tuple[torch.Tensor, WeightQuant | None]:
    """The tensor (and WeightQuant, if quantized) of one header entry."""
    numel = int(np.prod(entry["shape"], dtype=np.int64))
    stored = encoding_from_dict(entry["positions"], numel).decode(segments.get("positions", b""), numel)
    if int(stored.sum()) != entry["count"]:
        raise ValueError(f"{entry['name']}: positions mark {int(stored.sum())} values, header says {entry['count']}")
    if "quant" in entry:
        return QuantizedValues.decode(entry, segments, stored)
    return PlainValues.decode(entry, segments, stored), None


def _float32_arrays(quant: WeightQuant) -> WeightQuant:
    """The WeightQuant as the file stores it: scale, zero_point and codebook as flat float32."""
    arrays = {f: getattr(quant, f) for f in QUANT_ARRAYS if getattr(quant, f) is not None}
    return dataclasses.replace(quant, **{f: torch.as_tensor(a, dtype=torch.float32).detach().cpu().reshape(-1)
                                         for f, a in arrays.items()})


# ---- dtypes and byte planes -------------------------------------------------------------------------------------

_DTYPES = {
    str(d).removeprefix("torch."): d
    for d in (torch.float32, torch.float64, torch.float16, torch.bfloat16,
              torch.int64, torch.int32, torch.int16, torch.int8, torch.uint8, torch.bool)
}


def _dtype(name: str) -> torch.dtype:
    if name not in _DTYPES:
        raise ValueError(f"dtype {name!r} cannot be exported; supported: {', '.join(_DTYPES)}")
    return _DTYPES[name]


def _numpy_dtype(dtype: torch.dtype) -> np.dtype:
    """Little-endian numpy type with the same bytes (bfloat16, which numpy lacks, as int16)."""
    if dtype == torch.bfloat16:
        return np.dtype("<i2")
    return torch.empty(0, dtype=dtype).numpy().dtype.newbyteorder("<")


def _to_numpy(tensor: torch.Tensor) -> np.ndarray:
    tensor = tensor.contiguous()
    array = tensor.view(torch.int16).numpy() if tensor.dtype == torch.bfloat16 else tensor.numpy()
    return array.astype(_numpy_dtype(tensor.dtype), copy=False)


def _to_torch(array: np.ndarray, dtype: torch.dtype) -> torch.Tensor:
    tensor = torch.from_numpy(array.astype(array.dtype.newbyteorder("="), copy=False))
    return tensor.view(torch.bfloat16) if dtype == torch.bfloat16 else tensor


def _byte_planes(values: np.ndarray) -> bytes:
    """(k,) values of w bytes as w planes of k bytes: byte 0 of every value, then byte 1, ..."""
    return values.view(np.uint8).reshape(-1, values.itemsize).T.tobytes()  # (w, k)


def _from_byte_planes(data: bytes, dtype: np.dtype, count: int) -> np.ndarray:
    if len(data) != count * dtype.itemsize:
        expected = count * dtype.itemsize
        raise ValueError(f"{count} values of {dtype.itemsize} bytes take {expected} bytes, not {len(data)}")
    planes = np.frombuffer(data, np.uint8).reshape(dtype.itemsize, count)  # (w, k)
    return planes.T.copy().view(dtype).reshape(-1)


# ---- lossless codec ---------------------------------------------------------------------------------------------

_STRATEGIES = {"values": (zlib.Z_HUFFMAN_ONLY,)}  # other roles (positions, quantizer arrays) also try Z_RLE
_HEADER_CODECS = ("stored", "deflate")  # index = the header codec byte


def _deflate(data: bytes, strategy: int = zlib.Z_DEFAULT_STRATEGY, level: int = 9) -> bytes:
    """Raw DEFLATE (wbits −15: no zlib header or Adler-32)."""
    compressor = zlib.compressobj(level, zlib.DEFLATED, -15, 9, strategy)
    return compressor.compress(data) + compressor.flush()


def _inflate(data: bytes, raw_length: int) -> bytes:
    decompressor = zlib.decompressobj(-15)
    try:
        out = decompressor.decompress(data, raw_length)
    except zlib.error as err:
        raise ValueError(f"artifact is corrupted: {err}") from None
    if len(out) != raw_length or not decompressor.eof or decompressor.unused_data:
        raise ValueError(f"artifact is corrupted: a segment inflates to other than {raw_length} bytes")
    return out


_DECODERS: dict[str, Callable[[bytes, int], bytes]] = {"stored": lambda data, _: data, "deflate": _inflate}


def _compress(role: str, data: bytes) -> tuple[str, bytes]:
    """The smallest of stored and DEFLATE with each strategy tried for this role."""
    best = ("stored", data)
    for strategy in _STRATEGIES.get(role, (zlib.Z_HUFFMAN_ONLY, zlib.Z_RLE)):
        packed = _deflate(data, strategy)
        if len(packed) < len(best[1]):
            best = ("deflate", packed)
    return best


def _split_segments(entry: dict[str, Any], blob: bytes) -> dict[str, bytes]:
    """A tensor's blob cut into its decompressed segments, by role."""
    segments, start = {}, 0
    for segment in entry["segments"]:
        if segment["codec"] not in _DECODERS:
            raise ValueError(f"{entry['name']}: unknown codec {segment['codec']!r}")
        packed = blob[start : start + segment["length"]]
        segments[segment["role"]] = _DECODERS[segment["codec"]](packed, segment["raw_length"])
        start += segment["length"]
    if start != len(blob):
        raise ValueError(f"{entry['name']}: segments take {start} bytes of a {len(blob)}-byte blob")
    return segments


# ---- file framing -----------------------------------------------------------------------------------------------


def _assemble(header: dict[str, Any], blobs: list[bytes]) -> bytes:
    """Prefix + header (deflated if smaller) + blobs."""
    text = json.dumps(header, separators=(",", ":"), allow_nan=False).encode()
    packed = _deflate(text)
    codec, stored_header = (1, packed) if len(packed) < len(text) else (0, text)
    body = stored_header + b"".join(blobs)
    crc = zlib.crc32(body)
    return PREFIX.pack(MAGIC, FORMAT_VERSION, codec, len(stored_header), PREFIX.size + len(body), crc) + body


def _parse(data: bytes) -> tuple[dict[str, Any], bytes]:
    """Header dict and blob section, after checking magic, version, length and checksum."""
    if data[: len(MAGIC)] != MAGIC:
        raise ValueError(f"not a Compression Lab artifact: starts with {bytes(data[:len(MAGIC)])!r}, not {MAGIC!r}")
    if len(data) < PREFIX.size:
        raise ValueError(f"artifact is truncated: {len(data)} bytes, shorter than its {PREFIX.size}-byte prefix")
    _, version, codec, header_length, file_length, crc = PREFIX.unpack_from(data)
    if version > FORMAT_VERSION:
        raise ValueError(f"artifact format version {version} is newer than this reader's ({FORMAT_VERSION}); "
                         "update compression-lab to load it")
    if version != FORMAT_VERSION:
        raise ValueError(f"artifact format version {version} is not supported (this reader: {FORMAT_VERSION})")
    if len(data) < file_length:
        raise ValueError(f"artifact is truncated: {len(data)} of {file_length} bytes")
    if len(data) > file_length:
        raise ValueError(f"artifact has {len(data) - file_length} unexpected bytes after its end")
    if zlib.crc32(memoryview(data)[PREFIX.size :]) != crc:
        raise ValueError("artifact is corrupted: checksum mismatch")
    if codec >= len(_HEADER_CODECS):
        raise ValueError(f"artifact is corrupted: unknown header codec {codec}")
    stored_header = data[PREFIX.size : PREFIX.size + header_length]
    text = zlib.decompress(stored_header, -15) if _HEADER_CODECS[codec] == "deflate" else stored_header
    header = json.loads(text)
    missing = {"format", "source", "recipe", "modules", "input_quant", "tensors"} - set(header)
    if missing:
        raise ValueError(f"artifact header lacks {', '.join(sorted(missing))}")
    return header, data[PREFIX.size + header_length :]


def _read(path_or_bytes: PathOrBytes) -> bytes:
    if isinstance(path_or_bytes, (bytes, bytearray, memoryview)):
        return bytes(path_or_bytes)
    return Path(path_or_bytes).read_bytes()


def _check_jsonable(recipe: dict[str, Any] | None) -> None:
    try:
        json.dumps(recipe, allow_nan=False)
    except (TypeError, ValueError) as err:
        raise ValueError(f"recipe must be a JSON-able dict (e.g. recipe.to_dict()): {err}") from None


# ---- architecture: module specs and rebuild ---------------------------------------------------------------------


@dataclass(frozen=True)
class LayerKind:
    """How to rebuild one layer type: its class and the constructor arguments read off an instance."""

    cls: type[nn.Module]
    arguments: Callable[[Any], dict[str, Any]]


def _conv_arguments(m: nn.Conv1d | nn.Conv2d) -> dict[str, Any]:
    return {"in_channels": m.in_channels, "out_channels": m.out_channels, "kernel_size": m.kernel_size,
            "stride": m.stride, "padding": m.padding, "dilation": m.dilation, "groups": m.groups,
            "bias": m.bias is not None, "padding_mode": m.padding_mode}


def _batchnorm_arguments(m: nn.BatchNorm1d | nn.BatchNorm2d) -> dict[str, Any]:
    return {"num_features": m.num_features, "eps": m.eps, "momentum": m.momentum, "affine": m.affine,
            "track_running_stats": m.track_running_stats}


LAYER_KINDS: dict[str, LayerKind] = {
    "Linear": LayerKind(nn.Linear, lambda m: {"in_features": m.in_features, "out_features": m.out_features,
                                              "bias": m.bias is not None}),
    "Conv1d": LayerKind(nn.Conv1d, _conv_arguments),
    "Conv2d": LayerKind(nn.Conv2d, _conv_arguments),
    "BatchNorm1d": LayerKind(nn.BatchNorm1d, _batchnorm_arguments),
    "BatchNorm2d": LayerKind(nn.BatchNorm2d, _batchnorm_arguments),
    "LayerNorm": LayerKind(nn.LayerNorm, lambda m: {"normalized_shape": m.normalized_shape, "eps": m.eps,
                                                    "elementwise_affine": m.elementwise_affine,
                                                    "bias": m.bias is not None}),
}


def _module_spec(module: nn.Module) -> dict[str, Any] | None:
    """{"type", "args"} for a rebuildable module (exact layer type, or a Sequential of such), else None."""
    kind = LAYER_KINDS.get(type(module).__name__)
    if kind is not None and type(module) is kind.cls:
        return {"type": type(module).__name__, "args": json.loads(json.dumps(kind.arguments(module)))}
    if type(module) is nn.Sequential and len(module) and all(_module_spec(c) is not None for c in module.children()):
        return {"type": "Sequential", "args": {"children": list(module._modules)}}
    return None


def _module_specs(model: nn.Module) -> list[dict[str, Any]]:
    """Specs of every rebuildable submodule, outermost first (named_modules order)."""
    return [{"name": name, **spec} for name, m in model.named_modules() if name and (spec := _module_spec(m))]


def _build_module(name: str, specs: dict[str, dict[str, Any]]) -> nn.Module:
    spec = specs.get(name)
    if spec is None:
        raise ValueError(f"artifact header has no spec for module {name!r}")
    if spec["type"] == "Sequential":
        children = spec["args"]["children"]
        return nn.Sequential(OrderedDict((child, _build_module(_join(name, child), specs)) for child in children))
    kind = check_choice(f"type of module {name!r}", spec["type"], LAYER_KINDS)
    args = {key: tuple(value) if isinstance(value, list) else value for key, value in spec["args"].items()}
    try:
        return LAYER_KINDS[kind].cls(**args)
    except (TypeError, ValueError) as err:
        raise ValueError(f"cannot rebuild {name!r} as {kind}({args}): {err}") from None


def _rebuild_modules(model: nn.Module, modules: list[dict[str, Any]]) -> None:
    """Replace every spec'd module whose type or arguments differ from the skeleton's, outermost first."""
    specs = {spec["name"]: spec for spec in modules}
    for name, spec in specs.items():
        try:
            current = model.get_submodule(name)
        except AttributeError:
            current = None
        if current is not None and _module_spec(current) == {"type": spec["type"], "args": spec["args"]}:
            continue
        try:
            model.set_submodule(name, _build_module(name, specs))
        except AttributeError:
            raise ValueError(f"cannot place module {name!r}: the skeleton has no parent module for it") from None


def _attach_quantization(model: nn.Module, quants: dict[str, WeightQuant], input_quants: dict[str, Any]) -> None:
    """Set weight_quant exactly as stored (dropping any the skeleton had) and re-attach input quantization."""
    for name, module in model.named_modules():
        if hasattr(module, WEIGHT_QUANT):
            delattr(module, WEIGHT_QUANT)
        if input_quant(module) is not None and name not in input_quants:
            raise ValueError(f"the base model quantizes the input of {name!r} but the artifact does not; "
                             "pass an uncompressed base")
    for name, quant in quants.items():
        setattr(model.get_submodule(name), WEIGHT_QUANT, quant)
    for name, spec in input_quants.items():
        set_input_quant(model.get_submodule(name), InputQuant(**spec))


def _plain_input_quant(spec: InputQuant) -> InputQuant:
    """Python numbers only, for JSON (a float round-trips through JSON exactly)."""
    return InputQuant(bits=int(spec.bits), scale=float(spec.scale), zero_point=int(spec.zero_point))


def _join(prefix: str, name: str) -> str:
    return f"{prefix}.{name}" if prefix else name
