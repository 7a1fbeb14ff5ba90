"""Running a model on many inputs and scoring its predictions: below training, fidelity and reports (which use it)."""
from __future__ import annotations

import torch
from torch import nn

EVAL_BATCH = 1024  # inputs per forward pass while predicting


def predictions(model: nn.Module, X: torch.Tensor) -> torch.Tensor:
    """Predicted class per output: argmax over the last dimension."""
    with torch.inference_mode():
        logits = torch.cat([model(X[i : i + EVAL_BATCH]) for i in range(0, len(X), EVAL_BATCH)])
    return logits.argmax(dim=-1)


def score(pred: torch.Tensor, target: torch.Tensor) -> tuple[float, float]:
    """Accuracy and macro-F1 of predicted classes against targets."""
    pred, target = pred.reshape(-1), target.reshape(-1)
    return (pred == target).float().mean().item(), macro_f1(pred, target)


def macro_f1(pred: torch.Tensor, target: torch.Tensor) -> float:
    """Mean over classes present in pred or target of F1 = 2·TP / (2·TP + FP + FN)."""
    classes = int(max(pred.max(), target.max())) + 1
    confusion = torch.bincount(target * classes + pred, minlength=classes * classes).view(classes, classes)
    tp = confusion.diag().double()
    predicted, actual = confusion.sum(dim=0).double(), confusion.sum(dim=1).double()  # TP+FP, TP+FN
    present = (predicted + actual) > 0
    return (2 * tp[present] / (predicted[present] + actual[present])).mean().item()
