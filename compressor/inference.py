"""Running a model on many inputs: predicted classes in batches, below both training and reports (which use it)."""
from __future__ import annotations

import torch
from torch import nn

EVAL_BATCH = 1024  # inputs per forward pass while predicting


def predictions(model: nn.Module, X: torch.Tensor) -> torch.Tensor:
    """Predicted class per output: argmax over the last dimension."""
    with torch.inference_mode():
        logits = torch.cat([model(X[i : i + EVAL_BATCH]) for i in range(0, len(X), EVAL_BATCH)])
    return logits.argmax(dim=-1)
