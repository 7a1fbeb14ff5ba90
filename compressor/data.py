"""Plain containers for the data techniques and reports use, and the checks on data a user brings.

User data (an .npz file or an entry point's tensors) is checked once, where it enters: `read_npz` reads an
archive without unpickling and without allocating more than the arrays' declared, bounded sizes; `check_inputs`
refuses inputs that would give a number silently (NaN, infinite, complex, no examples, fractional labels);
`check_fits` runs one example through the model and checks the labels against its outputs.
"""
from __future__ import annotations

import math
import zipfile
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

MAX_ARRAY_BYTES = 2**30  # an .npz array may hold at most 1 GiB (decoded); larger ones are refused before reading


@dataclass(frozen=True)
class Split:
    """Inputs X (batch first) and optional integer labels y; y=None means unlabeled data."""

    X: torch.Tensor
    y: torch.Tensor | None = None

    def __post_init__(self) -> None:
        if self.y is not None and len(self.y) != len(self.X):
            raise ValueError(f"Split has {len(self.X)} inputs but {len(self.y)} labels; they must match")

    def __len__(self) -> int:
        return len(self.X)


@dataclass(frozen=True)
class DataSplits:
    """Train (for fine-tuning), calibration (for data-driven criteria; drawn from train) and held-out test."""

    train: Split
    calibration: Split
    test: Split
    kind: str = "classification"  # "classification": outputs are logits; "embedding": outputs are sentence embeddings

    @property
    def example_input(self) -> torch.Tensor:
        """One input with its batch dimension, for tracing layer shapes."""
        return self.calibration.X[:1]

    @classmethod
    def from_test(cls, test: Split) -> "DataSplits":
        """Splits for data that only has one part: it serves every role (no training data is kept apart)."""
        return cls(train=test, calibration=Split(test.X[:256], None if test.y is None else test.y[:256]), test=test)


@dataclass(frozen=True)
class Sample:
    """A shipped pretrained model with its data."""

    name: str
    model: nn.Module
    data: DataSplits
    description: str


# ---- data a user brings --------------------------------------------------------------------------------------------


def read_npz(path: str, limit: int = MAX_ARRAY_BYTES) -> dict[str, np.ndarray]:
    """The arrays of an .npz archive (as `np.savez` writes it), never unpickling, each at most `limit` bytes.

    Each member's .npy header is read first; its declared shape and dtype must agree with the member's size in
    the zip directory and stay within `limit`, so a zip bomb or a lying header is refused before anything is
    allocated. Reading stops at the declared size, and the zip's CRC check catches members that lie about it.
    """
    try:
        archive = zipfile.ZipFile(path)
    except FileNotFoundError:
        raise ValueError(f"data file {path!r} does not exist") from None
    except (zipfile.BadZipFile, OSError, EOFError) as err:
        raise ValueError(f"data file {path!r} is not an .npz archive (a zip of .npy arrays): {err}") from None
    with archive:
        try:
            return {info.filename.removesuffix(".npy"): _read_member(path, archive, info, limit)
                    for info in archive.infolist() if info.filename.endswith(".npy")}
        except (zipfile.BadZipFile, OSError, EOFError, NotImplementedError, RuntimeError) as err:
            raise ValueError(f"data file {path!r} is corrupted: {err}") from None


def _read_member(path: str, archive: zipfile.ZipFile, info: zipfile.ZipInfo, limit: int) -> np.ndarray:
    name = info.filename
    with archive.open(info) as member:
        try:
            version = np.lib.format.read_magic(member)
            if version not in ((1, 0), (2, 0)):
                raise ValueError(f".npy format version {version} is not supported")
            read_header = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
            shape, fortran_order, dtype = read_header(member)
        except ValueError as err:
            raise ValueError(f"data file {path!r}: {name} is not a valid .npy array: {err}") from None
        if dtype.hasobject:
            raise ValueError(f"data file {path!r}: {name} holds Python objects, which would need unpickling; "
                             "store numbers only")
        nbytes = math.prod(shape) * dtype.itemsize
        if nbytes > limit:
            raise ValueError(f"data file {path!r}: {name} of shape {shape} takes {nbytes:,} bytes; "
                             f"allowed: at most {limit:,}")
        header_size = member.tell()
        if info.file_size != header_size + nbytes:
            raise ValueError(f"data file {path!r}: {name} declares shape {shape} of {dtype} ({nbytes:,} bytes) but "
                             f"holds {info.file_size - header_size:,} bytes")
        buffer = bytearray(nbytes)
        if member.readinto(buffer) != nbytes:
            raise ValueError(f"data file {path!r}: {name} is truncated")
    order = "F" if fortran_order else "C"
    return np.frombuffer(buffer, dtype=dtype).reshape(shape, order=order)


def check_inputs(origin: str, X: np.ndarray | torch.Tensor, y: np.ndarray | torch.Tensor | None = None) -> Split:
    """A Split of float32 inputs and int64 labels, or a ValueError naming what is wrong with the data from `origin`.

    Inputs: real numbers (bool and integers are converted), batch first, at least one example, all finite in
    float32. Labels: whole numbers ≥ 0 of an integer type, one per input.
    """
    X = _as_tensor(origin, "X", X)
    if X.dim() < 2 or len(X) == 0:
        raise ValueError(f"data {origin!r}: X has shape {tuple(X.shape)}; it needs a batch dimension first and at "
                         "least one example with at least one value (e.g. (N, 64))")
    if X.is_complex() or not (X.is_floating_point() or X.dtype in _INTEGER_DTYPES):
        raise ValueError(f"data {origin!r}: X has dtype {X.dtype}; it must hold real numbers")
    X = X.to(torch.float32)
    if not torch.isfinite(X).all():
        bad = int((~torch.isfinite(X)).sum())
        raise ValueError(f"data {origin!r}: X has {bad:,} values that are NaN or infinite (as float32); all must be finite")
    if y is None:
        return Split(X)
    y = _as_tensor(origin, "y", y)
    if y.dtype not in _INTEGER_DTYPES:
        raise ValueError(f"data {origin!r}: labels y have dtype {y.dtype}; they must be whole numbers (class indices) "
                         "of an integer type")
    if y.shape != (len(X),):
        raise ValueError(f"data {origin!r}: labels y have shape {tuple(y.shape)}; expected one per input: ({len(X)},)")
    if (y < 0).any():
        raise ValueError(f"data {origin!r}: labels y include {int(y.min())}; class indices are 0 or more")
    return Split(X, y.to(torch.int64))


_INTEGER_DTYPES = (torch.bool, torch.uint8, torch.int8, torch.int16, torch.int32, torch.int64)


def _as_tensor(origin: str, name: str, array: np.ndarray | torch.Tensor) -> torch.Tensor:
    if isinstance(array, torch.Tensor):
        return array.detach()
    array = np.asarray(array)
    if array.dtype.kind not in "biufc":
        raise ValueError(f"data {origin!r}: {name} has dtype {array.dtype}; it must hold numbers")
    if array.dtype.kind == "u" and array.dtype.itemsize > 1:
        array = array.astype(np.int64)  # torch has no uint16/32/64 arithmetic
    return torch.from_numpy(np.ascontiguousarray(array))


def check_fits(model: nn.Module, data: DataSplits) -> None:
    """One example through the model in eval mode (its mode is restored): inputs must fit, labels its outputs."""
    X = data.test.X
    was_training = model.training
    model.eval()
    try:
        with torch.inference_mode():
            out = model(X[:1])
    except (RuntimeError, ValueError, TypeError, IndexError) as err:
        first_line = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise ValueError(f"inputs of shape {tuple(X.shape[1:])} (per example) do not fit the model: {first_line}") from None
    finally:
        model.train(was_training)
    if not isinstance(out, torch.Tensor) or out.dim() < 2:
        raise ValueError(f"the model returns {type(out).__name__} {tuple(getattr(out, 'shape', ()))}; "
                         "expected class scores (batch, classes)")
    y = data.test.y
    classes = out.shape[-1]
    if y is not None and len(y) and int(y.max()) >= classes:
        raise ValueError(f"labels y include {int(y.max())} but the model has {classes} outputs (classes 0 to {classes - 1})")
