"""Plain containers for the data techniques and reports use."""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn


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
