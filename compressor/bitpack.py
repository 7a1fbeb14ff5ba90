"""Bit packing: unsigned integers stored at exactly `bits` bits each, back to back.

    values 5, 1, 7 at 3 bits  ->  bits 101 001 111 + 0000000 padding  ->  bytes 0xA7 0x80

Bits are written most significant first (numpy's `packbits` order) and the last byte is padded with zero
bits, so n values take ⌈n · bits / 8⌉ bytes. Vectorised: each value becomes a row of bits, the rows are
concatenated and packed in one `packbits` call, with no Python loop over the values.
"""
from __future__ import annotations

import numpy as np

MAX_BITS = 32
_CONTAINERS = ((8, np.dtype(">u1")), (16, np.dtype(">u2")), (32, np.dtype(">u4")))  # big-endian: MSB first


def packed_size(count: int, bits: int) -> int:
    """Bytes taken by `count` values of `bits` bits: ⌈count · bits / 8⌉."""
    return (count * bits + 7) // 8


def pack_bits(values: np.ndarray, bits: int) -> bytes:
    """Integers in [0, 2^bits − 1] packed at `bits` bits each."""
    width, container = _container(bits)
    values = np.asarray(values).reshape(-1)
    if values.size and (values.min() < 0 or values.max() >= 2**bits):
        raise ValueError(f"values in [{values.min()}, {values.max()}] do not fit in {bits} bits")
    as_bytes = values.astype(container).reshape(-1, 1).view(np.uint8)  # (n, width / 8)
    bit_rows = np.unpackbits(as_bytes, axis=1)[:, width - bits :]  # (n, bits), most significant bit first
    return np.packbits(bit_rows).tobytes()


def unpack_bits(data: bytes, bits: int, count: int) -> np.ndarray:
    """The `count` integers (int64) that `pack_bits(values, bits)` stored in `data`."""
    width, container = _container(bits)
    if len(data) != packed_size(count, bits):
        raise ValueError(f"{len(data)} bytes cannot hold exactly {count} values of {bits} bits")
    bit_rows = np.unpackbits(np.frombuffer(data, np.uint8), count=count * bits).reshape(count, bits)
    padded = np.zeros((count, width), np.uint8)  # (n, width): zero high bits, then the stored bits
    padded[:, width - bits :] = bit_rows
    return np.packbits(padded, axis=1).view(container).reshape(-1).astype(np.int64)


def _container(bits: int) -> tuple[int, np.dtype]:
    """The smallest big-endian unsigned type holding `bits` bits, with its width."""
    if isinstance(bits, bool) or not isinstance(bits, (int, np.integer)) or not 1 <= bits <= MAX_BITS:
        raise ValueError(f"bits={bits!r} is not allowed; choose a whole number from 1 to {MAX_BITS}")
    return next((width, dtype) for width, dtype in _CONTAINERS if bits <= width)
