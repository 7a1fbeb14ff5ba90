"""Where the non-zeros of a tensor are: dense, bitmask or relative index, whichever takes fewest bytes.

A tensor flattened to n elements with k non-zeros (mask = value != 0) stores its values plus their positions:

    dense           every value stored, no positions:  0 bytes of positions
    bitmask         1 bit per element (numpy packbits):  ⌈n / 8⌉ bytes
    relative index  Deep Compression's scheme (Han et al., ICLR 2016, §3): per non-zero, its gap g (zeros since
                    the previous non-zero) in b bits. The entry 2^b − 1 is a filler: it skips 2^b − 1 zeros and
                    marks no non-zero, so a gap too wide for b bits takes ⌊g / (2^b − 1)⌋ fillers, then the entry
                    g mod (2^b − 1):  ⌈b · (k + Σ ⌊g / (2^b − 1)⌋) / 8⌉ bytes
    mask 0 0 1 0 0 0 0 0 1 1, b = 2 (filler 3):  gaps 2, 5, 0  ->  entries 2 | 3 2 | 0

The width b is chosen per tensor to minimise the size; zeros after the last non-zero cost nothing. The bitmask
wins on moderately sparse tensors, the relative index on very sparse ones (4-bit gaps at 90% zeros: ~5 bits per
non-zero against the bitmask's 10).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar, Protocol

import numpy as np

from compressor.bitpack import MAX_BITS, pack_bits, packed_size, unpack_bits


class PositionEncoding(Protocol):
    """One way to store a boolean mask of non-zeros (n,)."""

    kind: ClassVar[str]

    def nbytes(self) -> int: ...

    def encode(self, mask: np.ndarray) -> bytes: ...

    def decode(self, data: bytes, numel: int) -> np.ndarray: ...

    def to_dict(self) -> dict[str, Any]: ...


@dataclass(frozen=True)
class Dense:
    """No positions: every element's value is stored."""

    kind: ClassVar[str] = "dense"

    def nbytes(self) -> int:
        return 0

    def encode(self, mask: np.ndarray) -> bytes:
        return b""

    def decode(self, data: bytes, numel: int) -> np.ndarray:
        _check_length(self, data, 0)
        return np.ones(numel, dtype=bool)

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind}


@dataclass(frozen=True)
class Bitmask:
    """One bit per element, most significant bit first."""

    numel: int
    kind: ClassVar[str] = "bitmask"

    def nbytes(self) -> int:
        return packed_size(self.numel, 1)

    def encode(self, mask: np.ndarray) -> bytes:
        return np.packbits(mask).tobytes()

    def decode(self, data: bytes, numel: int) -> np.ndarray:
        _check_length(self, data, packed_size(numel, 1))
        return np.unpackbits(np.frombuffer(data, np.uint8), count=numel).astype(bool)

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind}


@dataclass(frozen=True)
class RelativeIndex:
    """Gaps between successive non-zeros at `bits` bits, with filler entries for wider gaps."""

    bits: int
    entries: int  # gap entries plus fillers
    kind: ClassVar[str] = "index"

    @classmethod
    def fit(cls, mask: np.ndarray) -> RelativeIndex:
        """The width that makes this mask's encoding smallest."""
        gaps = zeros_before_nonzeros(mask)
        if gaps.size == 0:
            return cls(bits=1, entries=0)
        widths = range(1, min(int(gaps.max() + 1).bit_length(), MAX_BITS) + 1)  # wider: no fillers, only cost
        options = [cls(bits, gaps.size + int((gaps // _filler(bits)).sum())) for bits in widths]
        return min(options, key=lambda option: option.nbytes())

    def nbytes(self) -> int:
        return packed_size(self.entries, self.bits)

    def encode(self, mask: np.ndarray) -> bytes:
        gaps = zeros_before_nonzeros(mask)
        filler = _filler(self.bits)
        fillers = gaps // filler  # filler entries before each non-zero
        entries = np.full(gaps.size + int(fillers.sum()), filler, dtype=np.int64)
        entries[np.cumsum(fillers + 1) - 1] = gaps % filler  # each non-zero's entry comes after its fillers
        if entries.size != self.entries:
            raise ValueError(f"mask needs {entries.size} entries at {self.bits} bits, not {self.entries}")
        return pack_bits(entries, self.bits)

    def decode(self, data: bytes, numel: int) -> np.ndarray:
        entries = unpack_bits(data, self.bits, self.entries)
        filler = _filler(self.bits)
        is_filler = entries == filler
        steps = np.where(is_filler, filler, entries + 1)  # elements each entry moves past
        positions = (np.cumsum(steps) - 1)[~is_filler]
        if positions.size and positions[-1] >= numel:
            raise ValueError(f"relative index points past the end of a tensor of {numel} elements")
        mask = np.zeros(numel, dtype=bool)
        mask[positions] = True
        return mask

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "bits": self.bits, "entries": self.entries}


def zeros_before_nonzeros(mask: np.ndarray) -> np.ndarray:
    """Gap g_i = p_i − p_{i−1} − 1 between non-zero positions p (p_{−1} = −1), shape (k,)."""
    return np.diff(np.flatnonzero(mask), prepend=-1) - 1


def sparse_encodings(mask: np.ndarray) -> list[PositionEncoding]:
    """The sparse candidates for a mask: its bitmask and its best relative index."""
    return [Bitmask(mask.size), RelativeIndex.fit(mask)]


def encoding_from_dict(spec: dict[str, Any], numel: int) -> PositionEncoding:
    """The encoding described by `to_dict()` (as read from a file header)."""
    kinds = {"dense": lambda: Dense(), "bitmask": lambda: Bitmask(numel),
             "index": lambda: RelativeIndex(int(spec["bits"]), int(spec["entries"]))}
    if spec.get("kind") not in kinds:
        raise ValueError(f"unknown position encoding {spec.get('kind')!r}; known: {', '.join(kinds)}")
    return kinds[spec["kind"]]()


def _filler(bits: int) -> int:
    return 2**bits - 1


def _check_length(encoding: PositionEncoding, data: bytes, expected: int) -> None:
    if len(data) != expected:
        raise ValueError(f"{encoding.kind} positions take {expected} bytes, got {len(data)}")
