"""Pruning criteria compared, printed as JSON: `python benchmarks/bench_criteria.py`.

Test accuracy (%) of both samples after one-shot unstructured pruning, per-layer scope, no fine-tuning, at
50/70/90%: magnitude |w|, Taylor (Molchanov et al., 2019: (w·∂L/∂w)² per mini-batch, averaged, on the
256 calibration examples) and random (seed 0), the baseline any criterion must beat.
"""
from __future__ import annotations

import os
import platform
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402

import compressor as cz  # noqa: E402
from benchmarks.results_io import emit  # noqa: E402
from compressor.pruning import TAYLOR_BATCH  # noqa: E402
from compressor.training import accuracy  # noqa: E402

AMOUNTS = (0.5, 0.7, 0.9)
CRITERIA = ("magnitude", "taylor", "random")


def pct(fraction: float) -> float:
    return round(100 * fraction, 2)


def criteria_table(sample: cz.Sample) -> dict:
    rows = {"baseline": pct(accuracy(sample.model, sample.data.test))}
    for criterion in CRITERIA:
        rows[criterion] = {
            f"{amount:.0%}": pct(accuracy(cz.compress(sample.model, cz.Prune(amount=amount, criterion=criterion),
                                                      sample.data), sample.data.test))
            for amount in AMOUNTS
        }
    return rows


def main() -> None:
    torch.set_num_threads(1)
    results = {
        "machine": {"cpus": os.cpu_count(), "torch_threads": torch.get_num_threads(), "torch": torch.__version__,
                    "python": platform.python_version()},
        "scope": "layer", "taylor_batch_size": TAYLOR_BATCH, "random_seed": 0,
        "accuracy": {name: criteria_table(cz.load_sample(name)) for name in ("digits-mlp", "digits-cnn")},
    }
    emit(results, __file__)


if __name__ == "__main__":
    main()
