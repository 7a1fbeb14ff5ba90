"""Wall-clock latency on this machine: warm-up, then the median of many timed runs, models interleaved.

Timing runs with denormals flushed to zero (`torch.set_flush_denormal(True)`, restored afterwards), as
deployment runtimes do. On many CPUs dense kernels slow down by an order of magnitude on subnormal floats
(|x| < 1.2e-38, e.g. the weights of dead channels after weight decay): digits-cnn, trained with 4,385 of them,
took 12.2 ms per batch of 256 instead of 2.0 ms on an Intel CPU, so any technique that happened to zero them
showed a fake 7–12× speedup. With them flushed, a speedup is the technique's own.
"""
from __future__ import annotations

import statistics
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from typing import Any
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
    min_ms: float  # fastest run: the least disturbed by other processes on a loaded machine
    runs: int
    batch_size: int
    threads: int
    denormals_flushed: bool  # subnormal floats were treated as zero while timing (False: the CPU cannot)

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


@contextmanager
def _denormals_flushed():
    """Subnormal floats read and written as zero inside the block; yields whether the CPU supports it.

    The flag is per thread (x86 MXCSR), so it holds for the timing thread; the previous state is restored.
    """
    before = denormals_are_flushed()
    supported = torch.set_flush_denormal(True)
    try:
        yield supported
    finally:
        torch.set_flush_denormal(before)


@contextmanager
def denormal_state_kept() -> Iterator[None]:
    """This thread's denormal flushing as it was before the block, whatever the block set.

    ONNX Runtime's `session.set_denormal_as_zero` turns FTZ/DAZ on for the calling thread when a session is made
    and never turns it off: every later float computation in that thread (a Streamlit script run, a test) would
    silently read subnormals as zero, e.g. count none in a model full of them.
    """
    before = denormals_are_flushed()
    try:
        yield
    finally:
        torch.set_flush_denormal(before)


def denormals_are_flushed() -> bool:
    """Whether this thread currently flushes denormals: the smallest subnormal float times one reads as zero."""
    probe = torch.tensor([2.0**-149], dtype=torch.float32)  # exactly representable as a subnormal (or 0 when flushed)
    return bool((probe * 1.0).item() == 0.0)


def batch_of(X: torch.Tensor, batch_size: int) -> torch.Tensor:
    """The first `batch_size` inputs, repeating the data if it is shorter."""
    repeats = -(-batch_size // len(X))
    return X.repeat((repeats,) + (1,) * (X.dim() - 1))[:batch_size] if repeats > 1 else X[:batch_size]


def measure_latency(
    models: Mapping[str, nn.Module], X: torch.Tensor, config: LatencyConfig = LatencyConfig()
) -> dict[str, Latency]:
    """Time every model on the same batch, alternating models run by run so drift hits them alike."""
    batch = batch_of(X, config.batch_size)
    with _threads(config.threads), _denormals_flushed() as flushed, torch.inference_mode():
        return time_calls({name: (lambda m=model: m(batch)) for name, model in models.items()}, config, flushed)


def time_calls(calls: Mapping[str, Callable[[], Any]], config: LatencyConfig, flushed: bool) -> dict[str, Latency]:
    """Warm each call up, then time them alternately run by run (forward, then reverse order).

    `flushed` states whether the calls ran with denormals flushed; any runtime (eager PyTorch, ONNX Runtime) is
    timed by this one loop, so their figures are comparable.
    """
    names = list(calls)
    samples: dict[str, list[float]] = {name: [] for name in names}
    for name in names:
        for _ in range(config.warmup):
            calls[name]()
    for run in range(config.runs):
        for name in names if run % 2 == 0 else reversed(names):
            start = time.perf_counter()
            calls[name]()
            samples[name].append((time.perf_counter() - start) * 1000.0)
    return {name: _summarize(times, config, flushed) for name, times in samples.items()}


def _summarize(times: list[float], config: LatencyConfig, flushed: bool) -> Latency:
    q1, median, q3 = statistics.quantiles(times, n=4, method="inclusive")
    return Latency(median, q1, q3, min(times), len(times), config.batch_size, config.threads, flushed)
