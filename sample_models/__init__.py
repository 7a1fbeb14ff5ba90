"""Shipped sample models: small pretrained digit classifiers with their data, ready to compress.

    >>> import sample_models
    >>> sample_models.catalog()          # name -> one-line description
    >>> sample = sample_models.load("digits-mlp")   # compressor.data.Sample: model (eval mode) + splits

Weights live in `sample_models/weights/<name>.pt` (a state_dict only) and are rebuilt, reproducibly,
by `python -m sample_models.train`.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import torch
from torch import nn

from compressor.data import DataSplits, Sample
from sample_models.architectures import DigitsCNN, DigitsMLP
from sample_models import minilm
from sample_models.data import digits_splits
from sample_models.sentences import sentence_splits

WEIGHTS_DIR = Path(__file__).parent / "weights"


@dataclass(frozen=True)
class SampleSpec:
    """How to build one sample: its architecture and the form of its inputs."""

    description: str  # one line, shown in the model picker
    architecture: Callable[[], nn.Module]  # fresh, untrained model
    images: bool  # inputs as (B, 1, 8, 8) images instead of (B, 64) vectors
    pretrained: bool = False  # architecture() already holds its weights (read from an installed package)
    data: Callable[[], DataSplits] | None = None  # its own data splits; None: the digits


SAMPLES: dict[str, SampleSpec] = {
    "digits-mlp": SampleSpec("64-300-100-10 MLP (LeNet-300-100 shape) on 8x8 digits", DigitsMLP, images=False),
    "digits-cnn": SampleSpec("LeNet-5-style CNN (conv 6, conv 16, fc 120-84-10) on 8x8 digits", DigitsCNN, images=True),
    "minilm-l6": SampleSpec("all-MiniLM-L6-v2 sentence encoder (pretrained BERT, 22.7M parameters) on 416 sentences in 8 topics",
                            minilm.build_encoder, images=False, pretrained=True, data=sentence_splits),
}


def catalog() -> dict[str, str]:
    """Sample names with one-line descriptions."""
    return {name: spec.description for name, spec in SAMPLES.items()}


def _spec(name: str) -> SampleSpec:
    if name not in SAMPLES:
        raise ValueError(f"unknown sample model {name!r}; available: {', '.join(SAMPLES)}")
    return SAMPLES[name]


def weights_path(name: str) -> Path:
    """Where the trained state_dict of sample `name` is stored."""
    _spec(name)
    return WEIGHTS_DIR / f"{name}.pt"


def build(name: str) -> nn.Module:
    """A fresh, untrained model with the architecture of sample `name`."""
    return _spec(name).architecture()


def load_data(name: str) -> DataSplits:
    """The train/calibration/test splits sample `name` was trained and is evaluated on (cached, shared)."""
    spec = _spec(name)
    return spec.data() if spec.data is not None else digits_splits(images=spec.images)


def load(name: str) -> Sample:
    """Sample `name`: a new model instance in eval mode with its trained weights, plus its data splits."""
    spec = _spec(name)
    if spec.pretrained:
        return Sample(name=name, model=spec.architecture().eval(), data=load_data(name), description=spec.description)
    path = weights_path(name)
    if not path.is_file():
        raise FileNotFoundError(f"no weights for sample {name!r} at {path}; run `python -m sample_models.train`")
    model = build(name)
    model.load_state_dict(torch.load(path, map_location="cpu", weights_only=True))
    return Sample(name=name, model=model.eval(), data=load_data(name), description=_spec(name).description)
