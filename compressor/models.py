"""Where models come from: shipped samples and user entry points (`file.py:factory`, `package.module:factory`)."""
from __future__ import annotations

import importlib
import importlib.util
import sys
from pathlib import Path
from typing import Any, Callable

from torch import nn

from compressor.data import Sample
from compressor.state import tag_source


def list_samples() -> dict[str, str]:
    """Sample model names with one-line descriptions."""
    import sample_models

    return sample_models.catalog()


def load_sample(name: str) -> Sample:
    """A shipped pretrained sample with its data splits; its model remembers its name as source."""
    import sample_models

    available = sample_models.catalog()
    if name not in available:
        raise ValueError(f"unknown sample model {name!r}; available: {', '.join(available)}")
    sample = sample_models.load(name)
    tag_source(sample.model, name)
    return sample


def is_entry_point(spec: str) -> bool:
    """True for `path/to/file.py:factory` and `package.module:factory`."""
    return ":" in spec and not spec.endswith(":")


def load_entry_point(spec: str) -> Callable[[], Any]:
    """The callable named by an entry point; a clear ValueError if the file, module or name is missing."""
    if not is_entry_point(spec):
        raise ValueError(f"{spec!r} is not an entry point; expected path/to/file.py:factory or package.module:factory")
    target, _, attr = spec.rpartition(":")
    if target.endswith(".py"):
        path = Path(target)
        if not path.is_file():
            raise ValueError(f"entry point file {target!r} does not exist")
        module_name = f"_compressor_entry_{abs(hash(str(path.resolve())))}"
        module = sys.modules.get(module_name)
        if module is None:
            module_spec = importlib.util.spec_from_file_location(module_name, path)
            module = importlib.util.module_from_spec(module_spec)
            sys.modules[module_name] = module
            module_spec.loader.exec_module(module)
    else:
        try:
            module = importlib.import_module(target)
        except ImportError as err:
            raise ValueError(f"entry point module {target!r} cannot be imported: {err}") from None
    if not callable(getattr(module, attr, None)):
        raise ValueError(f"entry point {spec!r}: {target} has no callable named {attr!r}")
    return getattr(module, attr)


def build_model(source: str) -> nn.Module:
    """A fresh uncompressed model from a sample name, a sample's student or an entry point, tagged with its source.

    A student source ("digits-mlp@width=0.4", see `compressor.distillation`) builds an untrained student: an
    artifact holding a trained one loads its weights into it.
    """
    from compressor.distillation import build_student, is_student_source

    if is_student_source(source):
        return build_student(source)
    if is_entry_point(source):
        model = load_entry_point(source)()
        if not isinstance(model, nn.Module):
            raise ValueError(f"entry point {source!r} returned {type(model).__name__}, not a torch.nn.Module")
        return tag_source(model.eval(), source)
    return load_sample(source).model


def baseline_source(source: str) -> str:
    """The model a compressed model is compared with: the sample itself for a student of a sample, else the source."""
    from compressor.distillation import is_student_source

    return source.partition("@")[0] if is_student_source(source) else source


def parse_shape(text: str) -> tuple[int, ...]:
    """'8,3,32,32' -> (8, 3, 32, 32); batch first, every size a positive whole number."""
    try:
        shape = tuple(int(part) for part in text.split(","))
    except ValueError:
        shape = ()
    if not shape or any(size < 1 for size in shape):
        raise ValueError(f"input shape {text!r} must be comma-separated positive whole numbers, batch first (e.g. 8,3,32,32)")
    return shape


def random_data(shape: tuple[int, ...], seed: int = 0) -> "DataSplits":
    """Seeded standard-normal inputs without labels: reports then give agreement with the baseline."""
    import torch

    from compressor.data import DataSplits, Split

    X = torch.randn(shape, generator=torch.Generator().manual_seed(seed))
    return DataSplits.from_test(Split(X))


def load_data(spec: str) -> "DataSplits":
    """Data from a sample name, an entry point returning (X, y) or X, or an .npz with arrays X (and optionally y)."""
    import numpy as np
    import torch

    from compressor.data import DataSplits, Split

    if spec.endswith(".npz"):
        if not Path(spec).is_file():
            raise ValueError(f"data file {spec!r} does not exist")
        with np.load(spec, allow_pickle=False) as arrays:
            if "X" not in arrays:
                raise ValueError(f"data file {spec!r} has arrays {', '.join(arrays.files)}; it needs X (and optionally y)")
            X = torch.as_tensor(arrays["X"], dtype=torch.float32)
            y = torch.as_tensor(arrays["y"]).long() if "y" in arrays else None
        return DataSplits.from_test(Split(X, y))
    if is_entry_point(spec):
        out = load_entry_point(spec)()
        X, y = out if isinstance(out, tuple) else (out, None)
        if not isinstance(X, torch.Tensor) or (y is not None and not isinstance(y, torch.Tensor)):
            raise ValueError(f"data entry point {spec!r} must return a tensor X or a tuple (X, y) of tensors")
        return DataSplits.from_test(Split(X.float(), None if y is None else y.long()))
    if spec in list_samples():
        return load_sample(spec).data
    raise ValueError(f"data {spec!r} is not a sample name ({', '.join(list_samples())}), an entry point or an .npz file")
