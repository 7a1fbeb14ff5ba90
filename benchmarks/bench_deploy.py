"""Deployed latency on this CPU, printed as JSON and written to benchmarks/results/bench_deploy.json:

    python benchmarks/bench_deploy.py [--samples digits-mlp digits-cnn] [--batch-sizes 1 32] [--threads 1] [--runs 200]

For each sample and batch size, in ONE interleaved timing run: eager PyTorch fp32, ONNX Runtime fp32, ORT int8
(dynamic Linear + static QDQ conv; per tensor and per channel, symmetric), ORT int4 weight-only (MatMulNBits on
the Linear layers; convolutions stay fp32). Each row: median latency, speedup against eager fp32 and against ORT
fp32, the deployed .onnx size, and accuracy of the deployed model next to the simulated (PyTorch) one.
Then the CSR-vs-dense sweep at batch 1: on each sample's Linear layers and on a 1024×1024 layer.

Another sample (e.g. minilm-l6, whose inputs are token ids and whose quality is fidelity) plugs in through
`SUBJECTS`: a function returning the model, its data and a quality function of the outputs.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import sys
from collections.abc import Callable
from pathlib import Path
from typing import NamedTuple

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import onnxruntime as ort  # noqa: E402
import torch  # noqa: E402
from torch import nn  # noqa: E402

import compressor as cz  # noqa: E402
from compressor.data import DataSplits  # noqa: E402
from compressor.deploy import batch_feeds, cpu_flags, deployed_graph, outputs, session
from compressor.latency import time_calls  # noqa: E402
from compressor.latency import LatencyConfig, batch_of  # noqa: E402
from compressor.onnx_export import to_onnx  # noqa: E402
from compressor.report import score  # noqa: E402
from compressor.sparse_kernel import crossover, dense_layer  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results" / "bench_deploy.json"


class Subject(NamedTuple):
    """What the benchmark needs of a sample: the model, its data and how to score outputs (higher is better)."""

    model: nn.Module
    data: DataSplits
    quality: Callable[[torch.Tensor], float]  # outputs on data.test.X → accuracy or fidelity
    quality_name: str


def digits_subject(name: str) -> Subject:
    sample = cz.load_sample(name)
    y = sample.data.test.y
    return Subject(sample.model, sample.data, lambda out: score(out.argmax(dim=-1), y)[0], "accuracy")


SUBJECTS: dict[str, Callable[[str], Subject]] = {"digits-mlp": digits_subject, "digits-cnn": digits_subject}


def variants(model: nn.Module) -> dict[str, list]:
    """Recipes whose weights map onto ORT's integer kernels (int4 on Linear layers only)."""
    linears = [name for name, m in model.named_modules() if isinstance(m, nn.Linear)]
    return {
        "int8 per tensor": [cz.Quantize(bits=8, scheme="symmetric", granularity="tensor")],
        "int8 per channel": [cz.Quantize(bits=8, scheme="symmetric", granularity="channel")],
        "int4 weight-only": [cz.Quantize(bits=4, scheme="symmetric", granularity="channel", layers=linears)],
    }


def bench_sample(name: str, batch_sizes: list[int], threads: int, runs: int) -> dict:
    subject = SUBJECTS[name](name)
    model, data, X = subject.model, subject.data, subject.data.test.X
    example = X[:2]
    graphs = {"ORT fp32": to_onnx(model, example)}
    simulated = {"eager fp32": model, "ORT fp32": model}
    for label, steps in variants(model).items():
        small = cz.compress(model, steps, data)
        graphs[label] = deployed_graph(small, example, calibration=data.train.X)
        simulated[label] = small
    sessions = {label: session(proto, threads) for label, proto in graphs.items()}
    with torch.inference_mode():
        quality = {label: subject.quality(m(X)) for label, m in simulated.items()}
    deployed_quality = {"eager fp32": quality["eager fp32"]}
    deployed_quality |= {label: subject.quality(outputs(s, X)) for label, s in sessions.items()}
    clab = {label: len(cz.encode(m).data) for label, m in simulated.items()}

    by_batch = {}
    for batch_size in batch_sizes:
        config = LatencyConfig(batch_size=batch_size, threads=threads, warmup=20, runs=runs)
        feed, eager_batch = batch_feeds(X, batch_size), batch_of(X, batch_size)
        calls = {"eager fp32": lambda: model(eager_batch)}
        calls |= {label: (lambda s=s: s.run(None, feed)) for label, s in sessions.items()}
        torch.set_num_threads(threads)
        flushed = torch.set_flush_denormal(True)  # eager as ORT's sessions (set_denormal_as_zero)
        with torch.inference_mode():
            timing = time_calls(calls, config, flushed=flushed)
        eager, ort_fp32 = timing["eager fp32"].median_ms, timing["ORT fp32"].median_ms
        by_batch[str(batch_size)] = {
            label: {
                "latency_ms": round(t.median_ms, 4),
                "iqr_ms": round(t.spread_ms, 4),
                "speedup_vs_eager": round(eager / t.median_ms, 2),
                "speedup_vs_ort_fp32": round(ort_fp32 / t.median_ms, 2),
            }
            for label, t in timing.items()
        }
    sizes = {label: graphs[label].ByteSize() if label in graphs else None for label in calls}
    models = {
        label: {
            "onnx_bytes": sizes[label],
            "clab_bytes": clab[label],
            f"deployed_{subject.quality_name}": round(deployed_quality[label], 4),
            f"simulated_{subject.quality_name}": round(quality[label], 4),
        }
        for label in calls
    }
    sweep = crossover(model, X, runs=max(20, runs // 4), threads=threads)
    return {"models": models, "latency_by_batch": by_batch,
            "csr_vs_dense_batch1": {"crossover_sparsity": _round(sweep.crossover), "sweep": _rounded(sweep.rows())}}


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 4)


def _rounded(rows: list[dict]) -> list[dict]:
    return [{k: round(v, 4) for k, v in row.items()} for row in rows]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", nargs="+", default=list(SUBJECTS), choices=list(SUBJECTS))
    parser.add_argument("--batch-sizes", nargs="+", type=int, default=[1, 32])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--runs", type=int, default=200)
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()
    torch.set_flush_denormal(True)  # eager as ORT's sessions: subnormals flushed to zero
    load_before = os.getloadavg()
    results = {name: bench_sample(name, args.batch_sizes, args.threads, args.runs) for name in args.samples}
    reference = crossover(dense_layer(1024, 1024), torch.randn(8, 1024), runs=max(20, args.runs // 4), threads=args.threads)
    output = {
        "machine": {
            "cpu": platform.processor() or platform.machine(), "cores": os.cpu_count(), "cpu_flags": list(cpu_flags()),
            "load_average_before": [round(v, 2) for v in load_before],
            "load_average_after": [round(v, 2) for v in os.getloadavg()],
            "note": "shared machine (other jobs running): timings are upper bounds; ratios are interleaved run by run",
        },
        "runtime": {"onnxruntime": ort.__version__, "torch": torch.__version__, "provider": "CPUExecutionProvider",
                    "threads": args.threads, "denormals_flushed": True, "runs": args.runs},
        "samples": results,
        "csr_vs_dense_batch1_1024x1024": {"crossover_sparsity": _round(reference.crossover), "sweep": _rounded(reference.rows())},
    }
    text = json.dumps(output, indent=2)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(text + "\n")
    print(text)


if __name__ == "__main__":
    main()
