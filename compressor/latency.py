"""Wall-clock latency on this machine: warm-up, then the median of many timed runs, models interleaved."""
from __future__ import annotations

import statistics
import time
from collections.abc import Mapping
from contextlib import contextmanager
from dataclasses import dataclass

import torch
from torch import nn

from compressor.validation import check_int


@dataclass(frozen=True)
class LatencyConfig:
    """How latency is timed; the report states all of it next to the numbers."""

    batch_size: int = 32  # inputs per forward pass
    threads: int = 1  # torch intra-op threads while timing (one thread: steady under load, comparable)
    warmup: int = 5  # untimed passes per model first
    runs: int = 30  # timed passes per model (at least 20)

    def __post_init__(self) -> None:
        check_int("batch_size", self.batch_size, 1, 65536)
        check_int("threads", self.threads, 1, 256)
        check_int("warmup", self.warmup, 0, 1000)
        check_int("runs", self.runs, 20, 100000)


@dataclass(frozen=True)
class Latency:
    """Milliseconds per forward pass of one batch."""

    median_ms: float
    p25_ms: float
    p75_ms: float
    runs: int
    batch_size: int
    threads: int

    @property
    def spread_ms(self) -> float:
        """Interquartile range: how much the middle half of the runs varied."""
        return self.p75_ms - self.p25_ms


@contextmanager
def _threads(n: int):
    before = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def batch_of(X: torch.Tensor, batch_size: int) -> torch.Tensor:
    """The first `batch_size` inputs, repeating the data if it is shorter."""
    repeats = -(-batch_size // len(X))
    return X.repeat((repeats,) + (1,) * (X.dim() - 1))[:batch_size] if repeats > 1 else X[:batch_size]


def measure_latency(
    models: Mapping[str, nn.Module], X: torch.Tensor, config: LatencyConfig = LatencyConfig()
) -> dict[str, Latency]:
    """Time every model on the same batch, alternating models run by run so drift hits them alike."""
    batch = batch_of(X, config.batch_size)
    names = list(models)
    samples: dict[str, list[float]] = {name: [] for name in names}
    with _threads(config.threads), torch.inference_mode():
        for name in names:
            for _ in range(config.warmup):
                models[name](batch)
        for run in range(config.runs):
            for name in names if run % 2 == 0 else reversed(names):
                start = time.perf_counter()
                models[name](batch)
                samples[name].append((time.perf_counter() - start) * 1000.0)
    return {name: _summarize(times, config) for name, times in samples.items()}


def _summarize(times: list[float], config: LatencyConfig) -> Latency:
    q1, median, q3 = statistics.quantiles(times, n=4, method="inclusive")
    return Latency(median, q1, q3, len(times), config.batch_size, config.threads)
