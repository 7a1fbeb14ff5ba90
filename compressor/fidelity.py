"""Fidelity of an embedding model: how much of the uncompressed model's embeddings a compressed one keeps.

A sentence encoder has no labels to be right or wrong about; what compression can lose is the geometry of its
embeddings. Four measures, each against the uncompressed model's embeddings e (reference) of the same held-out
sentences, with ê the compressed model's:

    cosine          cos(ê_i, e_i) = ê_i·e_i / (‖ê_i‖ ‖e_i‖)      mean and worst (minimum) over the test sentences
    top-k agreement |N_k(i) ∩ N̂_k(i)| / k, averaged over i, where N_k(i) are the k nearest other test sentences
                    of i by cosine among the reference embeddings and N̂_k(i) among the compressed ones
                    (search results a user would get: do they stay the same?)
    topic accuracy  a nearest-centroid classifier fitted on the *reference* embeddings of the train part
                    (centroid_t = mean of the unit embeddings of topic t), applied to the compressed embeddings
                    of the test part: does a downstream model built on the uncompressed encoder still work?

`measure(encode, reference)` takes any callable from token ids to embeddings (a PyTorch model, an ONNX Runtime
session wrapped in a function), so eager, simulated and deployed models are scored by the same code.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F
from torch import nn

from compressor.data import DataSplits
from compressor.inference import macro_f1
from compressor.validation import check_int

Encode = Callable[[torch.Tensor], torch.Tensor]  # token ids (B, L) -> embeddings (B, D)
EMBED_BATCH = 64  # sentences per forward pass while embedding a split
NEIGHBOURS = 5  # k of the top-k agreement


@dataclass(frozen=True)
class Reference:
    """What the uncompressed model gives, computed once and reused for every compressed model."""

    test_embeddings: torch.Tensor  # (N_test, D) reference embeddings of the held-out sentences
    test_labels: torch.Tensor  # (N_test,) topic index
    centroids: torch.Tensor  # (T, D) unit-length mean reference embedding of each topic's train sentences


@dataclass(frozen=True)
class Fidelity:
    """Compressed vs uncompressed embeddings of the held-out sentences. Fractions in [0, 1] except cosines."""

    mean_cosine: float
    worst_cosine: float
    neighbour_agreement: float  # top-k nearest-neighbour agreement
    neighbours: int  # k
    topic_accuracy: float  # nearest-centroid (reference centroids) on the compressed embeddings
    baseline_topic_accuracy: float  # the same classifier on the reference embeddings
    topic_macro_f1: float
    baseline_topic_macro_f1: float
    examples: int

    def to_dict(self) -> dict[str, float | int]:
        return asdict(self)


def embed(encode: Encode | nn.Module, X: torch.Tensor, batch_size: int = EMBED_BATCH) -> torch.Tensor:
    """Embeddings (N, D) of token ids X (N, L), in batches, without gradients; float32 on the CPU."""
    check_int("batch_size", batch_size, 1)
    if isinstance(encode, nn.Module):
        encode.eval()
    with torch.inference_mode():
        parts = [torch.as_tensor(encode(X[i : i + batch_size])).float() for i in range(0, len(X), batch_size)]
    return torch.cat(parts)


def cosine_similarities(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """cos(a_i, b_i) for each row i: (N, D), (N, D) -> (N,)."""
    if a.shape != b.shape or a.dim() != 2:
        raise ValueError(f"embeddings must be two (N, D) tensors of one shape, got {tuple(a.shape)} and {tuple(b.shape)}")
    return F.cosine_similarity(a.double(), b.double(), dim=1, eps=1e-12).clamp(-1.0, 1.0)  # no 1 + 2e-16


def nearest_neighbours(embeddings: torch.Tensor, k: int) -> torch.Tensor:
    """(N, k) indices of each row's k most cosine-similar other rows (itself excluded), most similar first."""
    k = check_int("k", k, 1, len(embeddings) - 1)
    unit = F.normalize(embeddings.double(), dim=1)
    similarity = unit @ unit.T  # (N, N)
    similarity.fill_diagonal_(-float("inf"))
    return similarity.topk(k, dim=1).indices


def neighbour_agreement(reference: torch.Tensor, compressed: torch.Tensor, k: int = NEIGHBOURS) -> float:
    """Mean over rows of |N_k(reference) ∩ N_k(compressed)| / k: the share of top-k neighbours kept."""
    ours, theirs = nearest_neighbours(reference, k), nearest_neighbours(compressed, k)
    shared = (ours.unsqueeze(2) == theirs.unsqueeze(1)).any(dim=2).sum(dim=1)  # (N,) neighbours in both lists
    return shared.double().mean().item() / k


def centroids(embeddings: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """(T, D) unit-length mean of the unit embeddings of each label 0..T−1 (every label must occur)."""
    unit = F.normalize(embeddings.double(), dim=1)
    count = int(labels.max()) + 1
    sums = torch.zeros(count, unit.shape[1], dtype=torch.float64).index_add_(0, labels, unit)
    if (torch.bincount(labels, minlength=count) == 0).any():
        raise ValueError("every topic 0..T−1 needs at least one training embedding for its centroid")
    return F.normalize(sums, dim=1)


def classify(embeddings: torch.Tensor, centroid_table: torch.Tensor) -> torch.Tensor:
    """Topic of each embedding: the centroid with the highest cosine similarity."""
    return (F.normalize(embeddings.double(), dim=1) @ centroid_table.double().T).argmax(dim=1)


def reference(baseline: Encode | nn.Module, data: DataSplits) -> Reference:
    """The uncompressed model's test embeddings and its train-part topic centroids (needs topic labels)."""
    if data.train.y is None or data.test.y is None:
        raise ValueError("fidelity needs topic labels (Split.y) on the train and test parts")
    return Reference(
        test_embeddings=embed(baseline, data.test.X),
        test_labels=data.test.y,
        centroids=centroids(embed(baseline, data.train.X), data.train.y),
    )


def compare(compressed: torch.Tensor, ref: Reference, k: int = NEIGHBOURS) -> Fidelity:
    """The four measures for compressed test embeddings (N_test, D) against the reference."""

    cosines = cosine_similarities(compressed, ref.test_embeddings)
    predicted, baseline_predicted = classify(compressed, ref.centroids), classify(ref.test_embeddings, ref.centroids)
    labels = ref.test_labels
    return Fidelity(
        mean_cosine=cosines.mean().item(),
        worst_cosine=cosines.min().item(),
        neighbour_agreement=neighbour_agreement(ref.test_embeddings, compressed, k),
        neighbours=k,
        topic_accuracy=(predicted == labels).double().mean().item(),
        baseline_topic_accuracy=(baseline_predicted == labels).double().mean().item(),
        topic_macro_f1=macro_f1(predicted, labels),
        baseline_topic_macro_f1=macro_f1(baseline_predicted, labels),
        examples=len(labels),
    )


def measure(encode: Encode | nn.Module, data: DataSplits, ref: Reference, k: int = NEIGHBOURS) -> Fidelity:
    """Fidelity of any encoder (model or callable, e.g. an ONNX Runtime session) on the test part of `data`."""
    return compare(embed(encode, data.test.X), ref, k)
