"""The exported artifact: one file holding a compressed model. Its length is the "compressed bytes" we report.

File layout (integers little-endian)

    offset  size  field
    0       8     magic b"\\x89CMPLAB\\n" (a non-ASCII first byte, so the file is never mistaken for text)
    8       2     format version (uint16)
    10      1     header codec: 0 stored, 1 raw DEFLATE
    11      4     header length H as stored (uint32)
    15      8     file length (uint64): a truncated file is recognised before anything is decoded
    23      4     CRC-32 of bytes 8-22 (version, codec, header length, file length) then of everything after
                  the prefix (header and blobs); format 1 covered only what follows the prefix, and is still read
    27      H     header: UTF-8 JSON (keys sorted), deflated when that is smaller
    27 + H  ...   blobs, one per tensor in header order, each the concatenation of its segments

The encoding is canonical: tensors and modules are listed sorted by name and the JSON keys are sorted, so a model
encodes to the same bytes however its state_dict happens to be ordered (a loaded model re-encodes to its file).

Header
    format       the format version
    source       where the uncompressed architecture comes from (the model's `compressor_source`: a sample name,
                 a sample's student "digits-mlp@width=0.4", a sample architecture with a user's weights
                 "digits-mlp@weights=<SHA-256 of the weights file, 16 hex>", a Hugging Face folder's model
                 "hf@sha256=<SHA-256 of its config and weights, 16 hex>", or an entry point), or null
    recipe       the recipe dict given to `encode`, as is, or null
    modules      the layers to rebuild on load, sorted by name (so outermost first); a low-rank pair also records
                 what it replaced (`low_rank.Factorization`), so its rank is known after loading:
                 {"name": "fc1", "type": "Sequential", "args": {"children": ["0", "1"]},
                  "factorization": {"layer_type": "Linear", "shape": [16, 64]}},
                 {"name": "fc1.0", "type": "Linear", "args": {"in_features": 64, "out_features": 16, "bias": false}}
    input_quant  {"fc1": {"bits": 8, "scale": 0.031, "zero_point": 0}, ...}
    tensors      one entry per state_dict tensor, sorted by name: name, shape, dtype, positions (see
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
(deep-copied; a base tagged with another source is refused) or is rebuilt from `source`: a sample name, a sample's
student or a sample architecture with a user's weights resolves through the sample registry only
(`compressor.models`; a sample's weights are read with `torch.load(weights_only=True)`, then the artifact's tensors
replace them). A Hugging Face folder's model ("hf@sha256=<16 hex>") names no path, so it loads only into a `base`
(the folder's model, whose hash must match); without one, one line says so. A file never chooses code to run: an entry-point source (`pkg.mod:factory`,
`file.py:factory`) is refused unless the caller passes `allow_entry_points=True`. Every module in `modules` whose
type or arguments differ from the skeleton's is replaced (a Sequential pair replaces a Linear, a shrunk conv a
wide one), then the tensors are loaded with `load_state_dict(strict=True, assign=True)` (assign keeps the stored
dtypes) and the quantization metadata is re-attached.

A file cannot make the reader allocate more than its own length and its shapes justify. The header is checked
field by field before use; it inflates to at most MAX_HEADER_BYTES; the tensors' elements together are at most
ELEMENTS_PER_BYTE per byte of the file (plus ELEMENT_FLOOR, and never above MAX_ELEMENTS); rebuilt layers are
constructed on PyTorch's "meta" device (no memory) and must have exactly the shapes of the header's tensors
before anything is decoded; every segment's decoded length is the one its tensor's shape implies and at most
what DEFLATE can expand its stored bytes to (1032:1), and inflating stops there. Anything else is a ValueError.
"""
from __future__ import annotations

import copy
import dataclasses
import json
import math
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
from compressor.low_rank import FACTORIZATION, Factorization
from compressor.models import build_model, is_entry_point, needs_base
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
from compressor.validation import check_choice, check_int

MAGIC = b"\x89CMPLAB\n"
FORMAT_VERSION = 2
READABLE_VERSIONS = (1, 2)  # 1: the CRC does not cover the prefix fields
PREFIX = struct.Struct("<8sHBIQI")  # magic, version, header codec, header length, file length, CRC-32
PREFIX_FIELDS = struct.Struct("<HBIQ")  # the fields between the magic and the CRC, as the CRC covers them
MAX_HEADER_BYTES = 2**24  # a header inflates to at most 16 MiB of JSON (far above any model here)
MAX_ELEMENTS = 2**28  # tensor elements in one artifact: at most 2^28 (1 GiB as float32)
ELEMENTS_PER_BYTE = 1024  # ... and at most this many per byte of the file, plus ELEMENT_FLOOR
ELEMENT_FLOOR = 2**22  # (a 99%-sparse 1-bit layer stores about 100 elements per byte; all-zero ones more)
MAX_DEFLATE_RATIO = 1032  # DEFLATE cannot expand data more than 1032:1 (plus a few bytes of stream overhead)
MAX_MODULE_DEPTH = 64  # dots in a module name
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

    recipe=None stores the recipe the model carries from `compress` (if any). The bytes depend only on the
    model's content, not on the order of its state_dict (tensors sorted by name, JSON keys sorted).
    """
    recipe = recipe if recipe is not None else recipe_of(model)
    _check_jsonable(recipe)
    quants = {_join(name, "weight"): wq for name, m in model.named_modules() if (wq := weight_quant(m)) is not None}
    entries, blobs, layer_bytes, offset = [], [], {}, 0
    for name, tensor in sorted(model.state_dict().items()):
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


def load(path_or_bytes: PathOrBytes, base: nn.Module | None = None, *, allow_entry_points: bool = False) -> nn.Module:
    """The model stored in an artifact, in eval mode, with its quantization metadata and source tag.

    `base` is a skeleton to rebuild into (deep-copied, never changed; if it records a source, that must be the
    artifact's); without it the architecture is built from the artifact's source: a sample name, a sample's student
    or a sample architecture with a user's weights, through the sample registry (a Hugging Face folder's model needs
    its folder's model as `base`, and the error says so). A source
    naming an entry point would run code the file chose, so it is refused unless `allow_entry_points=True`
    (pass that only for files you trust, or pass `base` instead). A bad or crafted file raises ValueError.
    """
    data = _read(path_or_bytes)
    header, blobs = _parse(data)
    source = header["source"]
    model, skeleton = _skeleton(source, base, allow_entry_points)
    _rebuild_modules(model, header["modules"])
    _check_shapes(model, header["tensors"], skeleton)
    state, quants = {}, {}
    for entry in header["tensors"]:
        segments = _split_segments(entry, blobs[entry["offset"] : entry["offset"] + entry["length"]])
        state[entry["name"]], quant = _decode_tensor(entry, segments)
        if quant is not None:
            quants[entry["name"].rpartition(".")[0]] = quant
    try:
        model.load_state_dict(state, strict=True, assign=True)
    except RuntimeError as err:
        raise ValueError(f"the artifact's tensors do not fit the {skeleton}: {err}") from None
    _attach_quantization(model, quants, header["input_quant"])
    _attach_factorizations(model, header["modules"])
    if source is not None:
        tag_source(model, source)
    tag_recipe(model, header["recipe"])
    return model.eval()


def _skeleton(source: str | None, base: nn.Module | None, allow_entry_points: bool) -> tuple[nn.Module, str]:
    """The model to load into and how to name it in errors: a copy of `base`, or one built from the source."""
    if base is not None:
        _check_base(source, base)
        return copy.deepcopy(base), "base model"
    if source is None:
        raise ValueError("the artifact was exported without a source; pass base=... (a model of the same architecture)")
    if needs_base(source):
        raise ValueError(f"the artifact cannot be rebuilt from the file alone: {needs_base(source)}")
    if is_entry_point(source) and not allow_entry_points:
        raise ValueError(f"the artifact's source is the entry point {source!r}: loading it would run code the file "
                         "names; pass allow_entry_points=True (CLI: --allow-code) if you trust the file, or "
                         "base=... (a model of the same architecture)")
    return build_model(source), f"model built from {source!r}"


def _check_base(source: str | None, base: nn.Module) -> None:
    """A base that records where it comes from must come from where the artifact says it does (an untagged base is
    the caller's word): a Hugging Face folder's model with another hash, or another sample, is refused."""
    given = source_of(base)
    if source is not None and given is not None and given != source:
        raise ValueError(f"the base model given is {given!r}, but the artifact was made from {source!r}: "
                         "pass the model it was made from")


def _check_shapes(model: nn.Module, tensors: list[dict[str, Any]], skeleton: str) -> None:
    """Every tensor of the (meta-built) model must be in the header with the same shape, before anything is decoded."""
    want = {name: list(tensor.shape) for name, tensor in model.state_dict().items()}
    have = {entry["name"]: entry["shape"] for entry in tensors}
    missing, unexpected = sorted(set(want) - set(have)), sorted(set(have) - set(want))
    if missing or unexpected:
        raise ValueError(f"the artifact's tensors do not fit the {skeleton}: "
                         f"missing {', '.join(missing[:5]) or 'none'}; unexpected {', '.join(unexpected[:5]) or 'none'}")
    for name, shape in want.items():
        if have[name] != shape:
            raise ValueError(f"the artifact's tensors do not fit the {skeleton}: {name} has shape {have[name]} "
                             f"in the file but {shape} in the model")


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
        quant = _weight_quant(entry, segments)
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
    numel = math.prod(entry["shape"])
    stored = _layout(entry).decode(segments.get("positions", b""), numel)
    if int(stored.sum()) != entry["count"]:
        raise ValueError(f"{entry['name']}: positions mark {int(stored.sum())} values, header says {entry['count']}")
    if "quant" in entry:
        return QuantizedValues.decode(entry, segments, stored)
    return PlainValues.decode(entry, segments, stored), None


def _layout(entry: dict[str, Any]) -> PositionEncoding:
    """The entry's position encoding, checked: an index has 1 to 32 bits and at most one entry per element."""
    spec, numel = entry["positions"], math.prod(entry["shape"])
    layout = encoding_from_dict(spec, numel) if spec.get("kind") != "index" else None
    if layout is None:
        _check_keys(f"{entry['name']} positions", spec, {"kind", "bits", "entries"})
        bits = check_int(f"{entry['name']} positions bits", spec["bits"], 1, 32)
        check_int(f"{entry['name']} positions entries", spec["entries"], 0, numel)
        layout = encoding_from_dict({**spec, "bits": bits}, numel)
    return layout


def _weight_quant(entry: dict[str, Any], segments: dict[str, bytes]) -> WeightQuant:
    """The WeightQuant of a quantized entry, with its arrays checked against the weight's shape."""
    name, meta, shape = entry["name"], entry["quant"], entry["shape"]
    _check_keys(f"{name} quant", meta, {"bits", "method", "scheme", "granularity"})
    bits = check_int(f"{name} quant bits", meta["bits"], 1, 8)
    method = check_choice(f"{name} quant method", meta["method"], ("uniform", "kmeans"))
    check_choice(f"{name} quant scheme", meta["scheme"], ("affine", "symmetric") if method == "uniform" else ("kmeans",))
    granularity = check_choice(f"{name} quant granularity", meta["granularity"], ("tensor", "channel"))
    if not shape:
        raise ValueError(f"{name}: a quantized weight needs at least one dimension, not shape {shape}")
    arrays = {field: torch.from_numpy(_from_byte_planes(data, np.dtype("<f4"), len(data) // 4))
              for field, data in segments.items() if field in QUANT_ARRAYS}
    return WeightQuant(bits, method, meta["scheme"], granularity, **arrays)


def _quant_lengths(entry: dict[str, Any]) -> dict[str, int]:
    """Bytes of each quantizer array a quantized entry must store."""
    quant, shape = entry["quant"], entry["shape"]
    if quant.get("method") == "kmeans":
        return {"codebook": 4 * 2 ** check_int(f"{entry['name']} quant bits", quant.get("bits"), 1, 8)}
    channels = shape[0] if quant.get("granularity") == "channel" and shape else 1
    return {"scale": 4 * channels, "zero_point": 4 * channels}


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
    """Raw DEFLATE data that must inflate to exactly raw_length bytes; inflating stops there."""
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
    """A tensor's blob cut into its decompressed segments, by role (each checked against the length it must have)."""
    expected = _segment_lengths(entry)
    roles = [segment["role"] for segment in entry["segments"]]
    if roles != list(expected):
        raise ValueError(f"{entry['name']}: segments {roles} do not match the header, which needs {list(expected)}")
    segments, start = {}, 0
    for segment in entry["segments"]:
        role, length, raw_length = segment["role"], segment["length"], segment["raw_length"]
        if raw_length != expected[role]:
            raise ValueError(f"{entry['name']}: {role} segment claims {raw_length} bytes; its shape needs {expected[role]}")
        codec = check_choice(f"{entry['name']} {role} codec", segment["codec"], _DECODERS)
        if (codec == "stored" and raw_length != length) or raw_length > MAX_DEFLATE_RATIO * length + 64:
            raise ValueError(f"{entry['name']}: {length} stored bytes cannot decode to {raw_length} with {codec}")
        segments[role] = _DECODERS[codec](blob[start : start + length], raw_length)
        start += length
    if start != len(blob):
        raise ValueError(f"{entry['name']}: segments take {start} bytes of a {len(blob)}-byte blob")
    return segments


def _segment_lengths(entry: dict[str, Any]) -> dict[str, int]:
    """Role -> decoded bytes, in file order, as the entry's shape, count, dtype and quantization imply."""
    layout, count = _layout(entry), entry["count"]
    lengths = {} if isinstance(layout, Dense) else {"positions": layout.nbytes()}
    if "quant" in entry:
        bits = check_int(f"{entry['name']} quant bits", entry["quant"].get("bits"), 1, 8)
        return {**lengths, "values": packed_size(count, bits), **_quant_lengths(entry)}
    itemsize = _numpy_dtype(_dtype(entry["dtype"])).itemsize
    return {**lengths, "values": count * itemsize}


# ---- file framing -----------------------------------------------------------------------------------------------


def _assemble(header: dict[str, Any], blobs: list[bytes]) -> bytes:
    """Prefix + header (deflated if smaller) + blobs."""
    text = json.dumps(header, separators=(",", ":"), sort_keys=True, allow_nan=False).encode()
    packed = _deflate(text)
    codec, stored_header = (1, packed) if len(packed) < len(text) else (0, text)
    body = stored_header + b"".join(blobs)
    fields = (FORMAT_VERSION, codec, len(stored_header), PREFIX.size + len(body))
    return PREFIX.pack(MAGIC, *fields, _checksum(fields, body)) + body


def _checksum(fields: tuple[int, int, int, int], body: bytes | memoryview) -> int:
    """CRC-32 of the prefix fields (format 2 on) and then of the body."""
    start = zlib.crc32(PREFIX_FIELDS.pack(*fields)) if fields[0] >= 2 else 0
    return zlib.crc32(body, start)


def _parse(data: bytes) -> tuple[dict[str, Any], bytes]:
    """Header dict and blob section, after checking magic, version, length, checksum and every header field."""
    if data[: len(MAGIC)] != MAGIC:
        raise ValueError(f"not a Compression Lab artifact: starts with {bytes(data[:len(MAGIC)])!r}, not {MAGIC!r}")
    if len(data) < PREFIX.size:
        raise ValueError(f"artifact is truncated: {len(data)} bytes, shorter than its {PREFIX.size}-byte prefix")
    _, version, codec, header_length, file_length, crc = PREFIX.unpack_from(data)
    if version > FORMAT_VERSION:
        raise ValueError(f"artifact format version {version} is newer than this reader's ({FORMAT_VERSION}); "
                         "update compression-lab to load it")
    if version not in READABLE_VERSIONS:
        raise ValueError(f"artifact format version {version} is not supported (this reader: {READABLE_VERSIONS})")
    if len(data) < file_length:
        raise ValueError(f"artifact is truncated: {len(data)} of {file_length} bytes")
    if len(data) > file_length:
        raise ValueError(f"artifact has {len(data) - file_length} unexpected bytes after its end")
    if _checksum((version, codec, header_length, file_length), memoryview(data)[PREFIX.size :]) != crc:
        raise ValueError("artifact is corrupted: checksum mismatch")
    if codec >= len(_HEADER_CODECS):
        raise ValueError(f"artifact is corrupted: unknown header codec {codec}")
    if PREFIX.size + header_length > len(data):
        raise ValueError(f"artifact is corrupted: a {header_length}-byte header does not fit in {len(data)} bytes")
    header = _decode_header(data[PREFIX.size : PREFIX.size + header_length], _HEADER_CODECS[codec])
    blobs = data[PREFIX.size + header_length :]
    _check_header(header, len(blobs), len(data))
    return header, blobs


def _decode_header(stored: bytes, codec: str) -> dict[str, Any]:
    """The header's JSON, inflated to at most MAX_HEADER_BYTES."""
    if codec == "deflate":
        decompressor = zlib.decompressobj(-15)
        try:
            text = decompressor.decompress(stored, MAX_HEADER_BYTES + 1)
        except zlib.error as err:
            raise ValueError(f"artifact header is corrupted: {err}") from None
        if len(text) > MAX_HEADER_BYTES:
            raise ValueError(f"artifact header inflates to more than {MAX_HEADER_BYTES:,} bytes; refused")
        if not decompressor.eof or decompressor.unused_data:
            raise ValueError("artifact header is corrupted: its DEFLATE stream is incomplete or followed by junk")
    else:
        text = stored
    if len(text) > MAX_HEADER_BYTES:
        raise ValueError(f"artifact header takes more than {MAX_HEADER_BYTES:,} bytes; refused")
    try:
        header = json.loads(text)
    except RecursionError:
        raise ValueError("artifact header is not valid: its JSON is nested too deeply") from None
    except ValueError as err:  # JSONDecodeError, UnicodeDecodeError, an integer of too many digits
        raise ValueError(f"artifact header is not valid JSON: {str(err)[:200]}") from None
    if not isinstance(header, dict):
        raise ValueError(f"artifact header must be a JSON object, not {type(header).__name__}")
    return header


HEADER_KEYS = ("format", "source", "recipe", "modules", "input_quant", "tensors")
TENSOR_KEYS = ("name", "shape", "dtype", "positions", "count", "offset", "length", "segments")
SEGMENT_KEYS = ("role", "codec", "length", "raw_length")


def _check_header(header: dict[str, Any], blob_bytes: int, file_bytes: int) -> None:
    """Every field the reader uses has the type and range it must have, and the sizes fit this file."""
    _check_keys("header", header, HEADER_KEYS)
    if header["format"] not in READABLE_VERSIONS:
        raise ValueError(f"artifact header: format {_short(header['format'])} is not one this reader knows "
                         f"({', '.join(map(str, READABLE_VERSIONS))})")
    _expect("source", header["source"], (str, type(None)), "a string or null")
    _expect("recipe", header["recipe"], (dict, type(None)), "an object or null")
    for i, spec in enumerate(_expect("modules", header["modules"], list, "a list")):
        _check_module_spec(f"modules[{i}]", spec)
    for name, spec in _expect("input_quant", header["input_quant"], dict, "an object").items():
        _check_keys(f"input_quant[{name!r}]", spec, ("bits", "scale", "zero_point"))
        bits = _whole(f"input_quant[{name!r}].bits", spec["bits"], 1, 16)
        _whole(f"input_quant[{name!r}].zero_point", spec["zero_point"], 0, 2**bits - 1)
        scale = _expect(f"input_quant[{name!r}].scale", spec["scale"], (int, float), "a number")
        if isinstance(scale, bool) or not 0 < scale < math.inf:
            raise ValueError(f"artifact header: input_quant[{name!r}].scale={_short(scale)} must be finite and above 0")
    offset, elements, names = 0, 0, set()
    for i, entry in enumerate(_expect("tensors", header["tensors"], list, "a list")):
        where = f"tensors[{i}]"
        _check_keys(where, entry, TENSOR_KEYS, optional=("quant",))
        name = _expect(f"{where}.name", entry["name"], str, "a string")
        if name in names:
            raise ValueError(f"artifact header: tensor {_short(name)} is listed twice")
        names.add(name)
        shape = _expect(f"{where}.shape", entry["shape"], list, "a list of sizes")
        for size in shape:
            _whole(f"{where}.shape", size, 0, MAX_ELEMENTS)
        elements += math.prod(shape)
        _expect(f"{where}.dtype", entry["dtype"], str, "a string")
        _expect(f"{where}.positions", entry["positions"], dict, "an object")
        _expect(f"{where}.quant", entry.get("quant", {}), dict, "an object")
        _whole(f"{where}.count", entry["count"], 0, math.prod(shape))
        if _whole(f"{where}.offset", entry["offset"], 0) != offset:
            raise ValueError(f"artifact header: {where}.offset is {entry['offset']}, expected {offset} (blobs back to back)")
        length = _whole(f"{where}.length", entry["length"], 0, blob_bytes - offset)
        segment_bytes = 0
        for j, segment in enumerate(_expect(f"{where}.segments", entry["segments"], list, "a list")):
            _check_keys(f"{where}.segments[{j}]", segment, SEGMENT_KEYS)
            _expect(f"{where}.segments[{j}].role", segment["role"], str, "a string")
            _expect(f"{where}.segments[{j}].codec", segment["codec"], str, "a string")
            segment_bytes += _whole(f"{where}.segments[{j}].length", segment["length"], 0, length)
            _whole(f"{where}.segments[{j}].raw_length", segment["raw_length"], 0)
        if segment_bytes != length:
            raise ValueError(f"artifact header: {where} segments take {segment_bytes} bytes, not its length {length}")
        offset += length
    if offset != blob_bytes:
        raise ValueError(f"artifact is corrupted: the tensors take {offset} bytes but {blob_bytes} follow the header")
    budget = min(MAX_ELEMENTS, ELEMENT_FLOOR + ELEMENTS_PER_BYTE * file_bytes)
    if elements > budget:
        raise ValueError(f"artifact declares {elements:,} tensor elements; a {file_bytes:,}-byte file may hold at most "
                         f"{budget:,} (see compressor.artifact.MAX_ELEMENTS); refused")


def _check_module_spec(where: str, spec: Any) -> None:
    _check_keys(where, spec, ("name", "type", "args"), optional=("factorization",))
    name = _expect(f"{where}.name", spec["name"], str, "a string")
    if not name or name.count(".") > MAX_MODULE_DEPTH:
        raise ValueError(f"artifact header: module name {_short(name)} must be non-empty and at most "
                         f"{MAX_MODULE_DEPTH} levels deep")
    _expect(f"{where}.type", spec["type"], str, "a string")
    args = _expect(f"{where}.args", spec["args"], dict, "an object")
    if spec["type"] == "Sequential":
        for child in _expect(f"{where}.args.children", args.get("children"), list, "a list of names"):
            _expect(f"{where}.args.children", child, str, "a list of names")
    if "factorization" in spec:
        factorization = spec["factorization"]
        _check_keys(f"{where}.factorization", factorization, ("layer_type", "shape"))
        check_choice(f"{where}.factorization.layer_type", factorization["layer_type"], ("Linear", "Conv1d", "Conv2d"))
        for size in _expect(f"{where}.factorization.shape", factorization["shape"], list, "a list of sizes"):
            _whole(f"{where}.factorization.shape", size, 1, MAX_ELEMENTS)


def _check_keys(where: str, value: Any, required: tuple[str, ...] | set[str], optional: tuple[str, ...] = ()) -> None:
    """`value` is an object with every required key and no key outside required + optional."""
    _expect(where, value, dict, "an object")
    missing = sorted(set(required) - set(value))
    unknown = sorted(set(value) - set(required) - set(optional))
    if missing or unknown:
        raise ValueError(f"artifact header: {where} lacks {', '.join(missing) or 'nothing'} and has unknown "
                         f"{', '.join(_short(k) for k in unknown) or 'nothing'}")


def _expect(where: str, value: Any, kind: type | tuple[type, ...], what: str) -> Any:
    if not isinstance(value, kind):
        raise ValueError(f"artifact header: {where} must be {what}, got {_short(value)}")
    return value


def _whole(where: str, value: Any, low: int, high: int | None = None) -> int:
    """A whole number in [low, high] read from the header (its value shown shortened in the error)."""
    if isinstance(value, bool) or not isinstance(value, int) or value < low or (high is not None and value > high):
        allowed = f"from {low}" + ("" if high is None else f" to {high:,}")
        raise ValueError(f"artifact header: {where}={_short(value)} must be a whole number {allowed}")
    return value


def _short(value: Any, limit: int = 60) -> str:
    """repr() cut to `limit` characters: a crafted file's huge values are never echoed in full."""
    text = repr(value) if not isinstance(value, int) or abs(value) < 10**limit else f"<integer of {len(str(value))} digits>"
    return text if len(text) <= limit else text[: limit - 3] + "..."


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
    """Specs of every rebuildable submodule, sorted by name (a parent's name sorts before its children's)."""
    specs = []
    for name, module in model.named_modules():
        if name and (spec := _module_spec(module)):
            factorization = getattr(module, FACTORIZATION, None) if spec["type"] == "Sequential" else None
            if isinstance(factorization, Factorization):
                spec["factorization"] = {"layer_type": factorization.layer_type, "shape": list(factorization.shape)}
            specs.append({"name": name, **spec})
    return sorted(specs, key=lambda spec: spec["name"])


def _build_module(name: str, specs: dict[str, dict[str, Any]], depth: int = 0) -> nn.Module:
    """The module a spec describes, on the "meta" device: its size is checked against the header before any memory."""
    spec = specs.get(name)
    if spec is None:
        raise ValueError(f"artifact header has no spec for module {_short(name)}")
    if depth > MAX_MODULE_DEPTH:
        raise ValueError(f"artifact header nests modules more than {MAX_MODULE_DEPTH} deep under {_short(name)}")
    if spec["type"] == "Sequential":
        children = OrderedDict((child, _build_module(_join(name, child), specs, depth + 1))
                               for child in spec["args"]["children"])
        try:
            return nn.Sequential(children)
        except (KeyError, TypeError) as err:  # a child name PyTorch refuses ("" or with a dot)
            raise ValueError(f"cannot rebuild {_short(name)} as Sequential: {err}") from None
    kind = check_choice(f"type of module {_short(name)}", spec["type"], LAYER_KINDS)
    args = {key: tuple(value) if isinstance(value, list) else value for key, value in spec["args"].items()}
    try:
        with torch.device("meta"):
            return LAYER_KINDS[kind].cls(**args)
    except (TypeError, ValueError, RuntimeError, OverflowError) as err:  # arguments the layer refuses
        raise ValueError(f"cannot rebuild {_short(name)} as {kind}({_short(args, 200)}): {str(err)[:200]}") from None


def _rebuild_modules(model: nn.Module, modules: list[dict[str, Any]]) -> None:
    """Replace every spec'd module whose type or arguments differ from the skeleton's, outermost first."""
    specs = {spec["name"]: spec for spec in modules}
    for name, spec in sorted(specs.items()):
        try:
            current = model.get_submodule(name)
        except AttributeError:
            current = None
        if current is not None and _module_spec(current) == {"type": spec["type"], "args": spec["args"]}:
            continue
        replacement = _build_module(name, specs)
        try:
            model.set_submodule(name, replacement)
        except (AttributeError, TypeError, KeyError):
            raise ValueError(f"cannot place module {_short(name)}: the skeleton has no parent module for it") from None


def _attach_factorizations(model: nn.Module, modules: list[dict[str, Any]]) -> None:
    """Mark low-rank pairs exactly as stored (so their rank is reported after loading), and no other module."""
    stored = {spec["name"]: spec["factorization"] for spec in modules if "factorization" in spec}
    for name, module in model.named_modules():
        if name in stored:
            shape = tuple(stored[name]["shape"])
            setattr(module, FACTORIZATION, Factorization(stored[name]["layer_type"], shape))
        elif hasattr(module, FACTORIZATION):
            delattr(module, FACTORIZATION)


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
        try:
            module = model.get_submodule(name)
        except AttributeError:
            raise ValueError(f"artifact header: input_quant names module {_short(name)}, which the model lacks") from None
        set_input_quant(module, InputQuant(**spec))


def _plain_input_quant(spec: InputQuant) -> InputQuant:
    """Python numbers only, for JSON (a float round-trips through JSON exactly)."""
    return InputQuant(bits=int(spec.bits), scale=float(spec.scale), zero_point=int(spec.zero_point))


def _join(prefix: str, name: str) -> str:
    return f"{prefix}.{name}" if prefix else name
