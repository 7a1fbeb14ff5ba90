"""What unstructured sparsity buys with a sparse kernel: CSR matrix–vector products at batch 1.

Dense kernels multiply zeros like any other number, so a pruned model runs as fast as the dense one. A
CSR (compressed sparse row) kernel stores only the non-zeros, row by row, and skips the rest:
y = W·x costs O(nnz) multiply-adds instead of O(m·n), plus index reads and irregular memory access. It
pays only at high sparsity: published CPU figures put the crossover around 85–90% (Han et al. measured
about 3× for their pruned fc layers at batch 1). `crossover` finds where it is on this machine.

SciPy's CSR product is the kernel: on this CPU it was 1.5–3× faster than `torch.sparse.mm` on a CSR
tensor at batch 1 (1024×1024 layer, 50–99% sparsity) and it has no beta warning.
"""
from __future__ import annotations

import copy
from dataclasses import dataclass

import numpy as np
import scipy.sparse
import torch
from torch import nn

from compressor.latency import LatencyConfig, measure_latency
from compressor.pruning import prune

SWEEP = (0.0, 0.5, 0.7, 0.8, 0.85, 0.9, 0.95, 0.97, 0.99)  # sparsities the crossover sweep times


class CSRLinear(nn.Module):
    """A Linear layer whose weight is a SciPy CSR matrix: y = W·x + b with only the non-zeros of W (inference only)."""

    def __init__(self, linear: nn.Linear) -> None:
        super().__init__()
        self.weight_csr = scipy.sparse.csr_matrix(linear.weight.detach().float().numpy())  # (out, in)
        self.bias = None if linear.bias is None else linear.bias.detach().float().numpy()  # (out,)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (..., in)
        rows = x.reshape(-1, x.shape[-1]).numpy()  # (B, in)
        y = (self.weight_csr @ rows.T).T  # (B, out)
        if self.bias is not None:
            y = y + self.bias
        return torch.from_numpy(np.ascontiguousarray(y, dtype=np.float32)).view(*x.shape[:-1], -1)


def to_csr(model: nn.Module) -> nn.Module:
    """A copy of `model` (inference only) whose Linear layers compute with CSR weights."""
    new = copy.deepcopy(model).eval()
    for name, module in list(new.named_modules()):
        for child_name, child in list(module.named_children()):
            if isinstance(child, nn.Linear):
                setattr(module, child_name, CSRLinear(child))
    return new


def linear_sparsity(model: nn.Module) -> float:
    """Share of zero weights over the model's Linear layers (0 when it has none)."""
    weights = [m.weight for m in model.modules() if isinstance(m, nn.Linear)]
    total = sum(w.numel() for w in weights)
    return float(sum((w == 0).sum().item() for w in weights) / total) if total else 0.0


@dataclass(frozen=True)
class SparseTiming:
    """Dense vs CSR kernels for the same model at batch 1, timed interleaved (milliseconds per input)."""

    sparsity: float  # zeros among the Linear layers' weights
    dense_ms: float
    csr_ms: float

    @property
    def csr_speedup(self) -> float:
        return self.dense_ms / self.csr_ms


def time_csr(model: nn.Module, X: torch.Tensor, runs: int = 50, threads: int = 1) -> SparseTiming:
    """The model with dense kernels vs with CSR Linear layers, one input at a time."""
    config = LatencyConfig(batch_size=1, threads=threads, warmup=10, runs=runs)
    timing = measure_latency({"dense": model, "csr": to_csr(model)}, X, config)
    return SparseTiming(linear_sparsity(model), timing["dense"].median_ms, timing["csr"].median_ms)


@dataclass(frozen=True)
class Crossover:
    """A sparsity sweep of dense vs CSR at batch 1, and the sparsity from which CSR stays faster."""

    timings: list[SparseTiming]
    crossover: float | None  # None: CSR never paid within the sweep

    def rows(self) -> list[dict[str, float]]:
        return [{"sparsity": t.sparsity, "dense_ms": t.dense_ms, "csr_ms": t.csr_ms, "csr_speedup": t.csr_speedup}
                for t in self.timings]


def crossover(model: nn.Module, X: torch.Tensor, sparsities: tuple[float, ...] = SWEEP, runs: int = 50,
              threads: int = 1) -> Crossover:
    """Prune `model` to each sparsity (one global magnitude threshold over Linear layers) and time dense vs CSR."""
    linears = [name for name, m in model.named_modules() if isinstance(m, nn.Linear)]
    if not linears:
        raise ValueError("the model has no Linear layers: CSR kernels here replace Linear layers only")
    timings = []
    for amount in sparsities:
        pruned = prune(model, amount=amount, scope="global", layers=linears) if amount > 0 else model
        timings.append(time_csr(pruned, X, runs, threads))
    return Crossover(timings, _first_lasting_win(timings))


def _first_lasting_win(timings: list[SparseTiming]) -> float | None:
    """The lowest sparsity from which CSR is faster at every higher sparsity of the sweep."""
    found = None
    for timing in reversed(timings):
        if timing.csr_ms >= timing.dense_ms:
            break
        found = timing.sparsity
    return found


def dense_layer(out_features: int, in_features: int, seed: int = 0) -> nn.Module:
    """A seeded Linear layer to sweep when a model's layers are too small for any kernel to matter."""
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(in_features, out_features)).eval()
