"""minilm-l6 (all-MiniLM-L6-v2) in eager PyTorch, printed as JSON: `python benchmarks/bench_minilm.py [--epochs N]`.

One torch thread, batches of 32 of the shipped sentences (each batch cut to its longest sentence, as a tokenizer
padding to the longest does), latency as the median of interleaved runs after warm-up. Fidelity is measured on
the 125 held-out sentences against the uncompressed model's embeddings (`compressor.fidelity`).

- eager fp32 latency at batch 32 (and the batch's sequence length);
- 8-bit simulated weights (symmetric, per channel; per tensor): fidelity and file size;
- structured pruning of the FFN width by 50% and of a quarter of the heads: fidelity, latency, speedup;
- fine-tuning the FFN-pruned model by distilling the uncompressed embeddings (1 − cos loss): fidelity recovered.
Timings on a shared 2-core machine are upper bounds. ONNX Runtime and integer kernels: benchmarks/bench_deploy.py.
"""
from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402

import compressor as cz  # noqa: E402
from compressor import fidelity  # noqa: E402
from compressor.latency import LatencyConfig, measure_latency  # noqa: E402

FFN = ("*.intermediate.dense",)
HEADS = ("*.attention.self.query", "*.attention.self.key", "*.attention.self.value")
RECIPES = {
    "8-bit symmetric per channel": cz.Recipe((cz.Quantize(bits=8, scheme="symmetric", granularity="channel"),)),
    "8-bit affine per tensor": cz.Recipe((cz.Quantize(bits=8),)),
    "structured FFN 50%": cz.Recipe((cz.Prune(amount=0.5, structured=True, layers=FFN),)),
    "structured heads 25%": cz.Recipe((cz.Prune(amount=0.25, structured=True, layers=HEADS),)),
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=3, help="fine-tuning epochs for the recovery row (1-20)")
    parser.add_argument("--lr", type=float, default=1e-4, help="fine-tuning learning rate (Adam)")
    args = parser.parse_args()
    torch.set_num_threads(1)
    sample = cz.load_sample("minilm-l6")
    data = sample.data
    ref = fidelity.reference(sample.model, data)
    batch = data.test.X[:32]
    results: dict = {"machine": {"python": platform.python_version(), "torch": torch.__version__, "threads": 1,
                                 "note": "shared 2-core machine under load: timings are upper bounds"},
                     "batch_size": 32, "sequence_length": int((batch != 0).sum(dim=1).max()),
                     "test_sentences": len(data.test)}
    models = {"fp32": sample.model}
    for label, recipe in RECIPES.items():
        start = time.perf_counter()
        models[label] = cz.compress(sample.model, recipe, data)
        results.setdefault("compress_seconds", {})[label] = round(time.perf_counter() - start, 2)
    start = time.perf_counter()
    models["structured FFN 50% + fine-tune"] = cz.compress(
        models["structured FFN 50%"], cz.Finetune(epochs=args.epochs, lr=args.lr, batch_size=32), data)
    results["finetune"] = {"epochs": args.epochs, "lr": args.lr, "batch_size": 32,
                           "seconds": round(time.perf_counter() - start, 1), "train_sentences": len(data.train)}
    timed = {k: m for k, m in models.items() if k in ("fp32", "structured FFN 50%", "structured heads 25%")}
    latency = measure_latency(timed, batch, LatencyConfig(batch_size=32, threads=1, warmup=3, runs=20))
    rows = {}
    for label, model in models.items():
        row = fidelity.measure(model, data, ref).to_dict()
        row["file_bytes"] = cz.encode(model).size
        if label in latency:
            row["latency_ms"] = round(latency[label].median_ms, 1)
            row["latency_iqr_ms"] = round(latency[label].spread_ms, 1)
            row["speedup"] = round(latency["fp32"].median_ms / latency[label].median_ms, 2)
        rows[label] = row
    results["models"] = rows
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
