"""Recovery training for embedding models: distil the uncompressed model's embeddings into the compressed one.

A sentence encoder has no labels to train on, and its topics are not what it was trained for; what compression
must keep is the embedding itself. So the compressed model (student) learns to reproduce the uncompressed
model's (teacher's) embeddings t_i of the training sentences, compression held exactly as in `training.py`
(pruned weights stay zero, quantized layers train by QAT, k-means layers train their shared values):

    L = (1/B) Σ_b (1 − cos(s_b, t_b))            s_b the student's embedding of sentence b

For unit-length embeddings ‖s − t‖² = 2 (1 − cos(s, t)), so this is also half the mean squared error.
The teacher's embeddings are computed once per source model and training set, then reused (`teacher_embeddings`).
"""
from __future__ import annotations

from collections.abc import Sequence
from functools import lru_cache

import torch
import torch.nn.functional as F
from torch import nn

from compressor.data import Split
from compressor.fidelity import embed
from compressor.models import baseline_source, build_model
from compressor.recipe import Finetune
from compressor.state import recipe_of, source_of, tag_recipe
from compressor.training import History, Objective, Progress, StopCheck, check_labelled, fit


def cosine_distillation(targets: torch.Tensor) -> Objective:
    """The objective L = mean over the batch of 1 − cos(student embedding, teacher embedding)."""

    def objective(embeddings: torch.Tensor, batch: torch.Tensor) -> torch.Tensor:
        return (1 - F.cosine_similarity(embeddings, targets[batch], dim=1)).mean()

    return objective


def teacher_embeddings(model: nn.Module, data: Split) -> torch.Tensor:
    """The uncompressed model's embeddings (N, D) of `data`: the model its source names, built afresh (cached)."""
    source = source_of(model)
    if source is None:
        raise ValueError("fine-tuning an embedding model distils from its uncompressed source, but this model "
                         "has none (compressor_source); build it with load_sample or build_model")
    if baseline_source(source) is None:  # a user's weights or Hugging Face folder: not in the registry
        raise ValueError(f"fine-tuning an embedding model distils from its uncompressed model, which the registry "
                         f"cannot rebuild for {source!r}; pass targets= (the uncompressed model's embeddings)")
    key = (baseline_source(source), tuple(data.X.shape), hash(data.X.numpy().tobytes()))
    return _teacher_embeddings(key, data.X).clone()


@lru_cache(maxsize=4)
def _teacher_embeddings(key: tuple, X: torch.Tensor) -> torch.Tensor:
    return embed(build_model(key[0]), X)


def finetune_embeddings(
    model: nn.Module,
    data: Split,
    targets: torch.Tensor | None = None,
    epochs: int = 3,
    lr: float = 1e-4,
    batch_size: int = 32,
    seed: int = 0,
    layers: Sequence[str] | None = None,
    progress: Progress | None = None,
    should_stop: StopCheck | None = None,
) -> tuple[nn.Module, History]:
    """A copy of `model` trained to reproduce `targets` (default: its uncompressed source's embeddings of `data`).

    Minibatch Adam on L = mean(1 − cos(s_b, t_b)) with compression held (`training.fit`); the history records
    the loss per epoch. Transformers want small steps: lr around 1e-5 to 1e-4 (1e-3 undoes the pretraining).
    The model's recipe tag gains this finetune step, as `training.finetune` does.
    """
    data = check_labelled(data)
    targets = teacher_embeddings(model, data) if targets is None else targets
    if targets.shape[0] != len(data):
        raise ValueError(f"targets has {targets.shape[0]} embeddings for {len(data)} sentences; they must match")
    tuned, history = fit(model, data, cosine_distillation(targets.detach().float()), epochs=epochs, lr=lr,
                         batch_size=batch_size, seed=seed, layers=layers, progress=progress, should_stop=should_stop,
                         classifies=False)
    step = Finetune(epochs=epochs, lr=lr, batch_size=batch_size, seed=seed, layers=layers).to_dict()
    return tag_recipe(tuned, {"steps": [*(recipe_of(model) or {"steps": []})["steps"], step]}), history
