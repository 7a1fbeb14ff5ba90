"""Knowledge distillation (Hinton, Vinyals & Dean, 2015): train a small student to imitate a large teacher.

The teacher's softened output distribution p_t = softmax(z_t / T) says more than the label alone (a 3 that
looks a bit like an 8), and the student learns from it together with the hard labels:

    L = α · T² · KL(softmax(z_t/T) ‖ softmax(z_s/T)) + (1 − α) · CE(z_s, y)

with KL(p ‖ q) = Σ_c p_c (log p_c − log q_c) averaged over the batch. A temperature T > 1 flattens both
distributions so the small logits carry signal; the gradient of the soft term shrinks as 1/T², which the
factor T² undoes, keeping the two terms balanced whatever T is. The comparison that shows what the teacher
adds is the same student trained on the hard labels alone for as many epochs (`train_scratch`).

For the shipped samples a student is the same architecture with every hidden size multiplied by `width`
(source "digits-mlp@width=0.4", built by `compressor.models.build_student`, so exported students load);
for any other model the student comes from an entry point (`path/file.py:factory`).
"""
from __future__ import annotations

import copy

import torch
import torch.nn.functional as F
from torch import nn

from compressor.data import Split
from compressor.models import SAMPLE_STUDENTS, build_model, build_student, check_width, student_source
from compressor.state import source_of
from compressor.training import History, Progress, StopCheck, check_labelled, cross_entropy, fit
from compressor.validation import check_fraction, check_positive

TEACHER_BATCH = 1024  # inputs per forward pass while recording the teacher's logits


def make_student(teacher: nn.Module, width: float = 0.5, source: str | None = None, seed: int = 0) -> nn.Module:
    """A fresh, untrained student for `teacher`.

    source=None: the teacher must be a sample (its `compressor_source`, e.g. "digits-mlp"); the student is its
    architecture with every hidden size times `width` (0 < width ≤ 1; parameters shrink roughly as width²).
    source="path/file.py:factory" (or "pkg.mod:factory"): the student that entry point builds, for any teacher.
    """
    if source is not None:
        with torch.random.fork_rng():
            torch.manual_seed(seed)
            return build_model(source)
    return build_student(student_of(teacher, width), seed)


def student_of(teacher: nn.Module, width: float) -> str:
    """The source tag of the built-in student of `teacher` at `width`: "digits-mlp@width=0.4" for the digits-mlp
    sample, one of its students, or its architecture holding a user's weights; ValueError for any other teacher."""
    origin = source_of(teacher) or ""
    sample = origin.partition("@")[0]  # a sample, its student ("@width=") or its architecture with user weights ("@weights=")
    if sample not in SAMPLE_STUDENTS:
        raise ValueError(f"no built-in student for a model from {origin or 'an unknown source'!r} (built-in: "
                         f"{', '.join(SAMPLE_STUDENTS)}); pass source='path/file.py:factory' building the student")
    return student_source(sample, check_width(width))


def parameter_count(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def distillation_loss(student_logits: torch.Tensor, teacher_logits: torch.Tensor, labels: torch.Tensor,
                      temperature: float, alpha: float) -> torch.Tensor:
    """α·T²·KL(softmax(z_t/T) ‖ softmax(z_s/T)) + (1 − α)·CE(z_s, y), both terms averaged over the batch.

    student_logits, teacher_logits: (B, C); labels: (B,) class indices.
    """
    log_p_student = F.log_softmax(student_logits / temperature, dim=-1)  # (B, C)
    log_p_teacher = F.log_softmax(teacher_logits / temperature, dim=-1)  # (B, C)
    soft = F.kl_div(log_p_student, log_p_teacher, log_target=True, reduction="batchmean")  # Σ p_t (log p_t − log p_s) / B
    hard = F.cross_entropy(student_logits, labels)
    return alpha * temperature**2 * soft + (1 - alpha) * hard


@torch.no_grad()
def teacher_logits(teacher: nn.Module, X: torch.Tensor) -> torch.Tensor:
    """The teacher's logits on X, computed once (a copy in eval mode runs, the teacher itself is untouched)."""
    frozen = copy.deepcopy(teacher).eval()
    return torch.cat([frozen(X[i : i + TEACHER_BATCH]) for i in range(0, len(X), TEACHER_BATCH)])  # (N, C)


def distill(
    teacher: nn.Module,
    student: nn.Module,
    data: Split,
    *,
    temperature: float = 4.0,
    alpha: float = 0.9,
    epochs: int = 10,
    lr: float = 1e-3,
    batch_size: int = 64,
    seed: int = 0,
    test: Split | None = None,
    progress: Progress | None = None,
    should_stop: StopCheck | None = None,
) -> tuple[nn.Module, History]:
    """A copy of `student` trained on labelled `data` to minimise `distillation_loss` against `teacher`.

    The teacher's logits are computed once, in eval mode. Training is `training.fit`: minibatch Adam, seeded
    and deterministic, and a compressed student keeps its compression (pruned zeros, quantization grids).
    Returns (student in eval mode, history as in `finetune`, loss being the distillation loss).
    """
    data = check_labelled(data)
    temperature = check_positive("temperature", temperature)
    alpha = check_fraction("alpha", alpha, 0.0, 1.0)
    targets = teacher_logits(teacher, data.X)  # (N, C)
    with torch.no_grad():
        shape = copy.deepcopy(student).eval()(data.X[:1]).shape
    if shape != targets[:1].shape:
        raise ValueError(f"student outputs {tuple(shape)} per example, the teacher {tuple(targets[:1].shape)}; "
                         "they must predict the same classes")
    labels = data.y.long()

    def objective(logits: torch.Tensor, batch: torch.Tensor) -> torch.Tensor:
        return distillation_loss(logits, targets[batch], labels[batch], temperature, alpha)

    return fit(student, data, objective, epochs=epochs, lr=lr, batch_size=batch_size, seed=seed, test=test,
               progress=progress, should_stop=should_stop)


def train_scratch(
    student: nn.Module,
    data: Split,
    *,
    epochs: int = 10,
    lr: float = 1e-3,
    batch_size: int = 64,
    seed: int = 0,
    test: Split | None = None,
    progress: Progress | None = None,
    should_stop: StopCheck | None = None,
) -> tuple[nn.Module, History]:
    """The comparison for `distill`: the same student on the hard labels alone (cross-entropy), same loop."""
    objective = cross_entropy(check_labelled(data))
    return fit(student, data, objective, epochs=epochs, lr=lr, batch_size=batch_size, seed=seed, test=test,
               progress=progress, should_stop=should_stop)
