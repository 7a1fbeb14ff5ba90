"""Recovery training results (issue 4), printed as JSON: `python benchmarks/bench_recovery.py`.

- Deep Compression on digits-mlp (AGP prune → fine-tune → k-means quantize → fine-tune → export): the exported
  file's size against the fp32 model (4 bytes per parameter) and the accuracy drop, measured on the model loaded
  back from the file; over several seeds, since one test example is 0.19 points. Targets: ≥ 30× with ≤ 1.0
  point drop; Han et al. report 40× for LeNet-300-100 on MNIST.
- 90% sparsity (global magnitude): one-shot, one-shot + fine-tuning, and AGP with the same number of epochs.
- 2-bit weights: post-training quantization against QAT (quantize, then fine-tune). Target: QAT within 3 points
  of fp32 on digits-mlp.
- Knowledge distillation: a student with about a quarter of the teacher's parameters, KD against the same
  student trained from scratch, for the same epochs.
- Budgets: 5 epochs of fine-tuning digits-mlp ≤ 3 s (first call in the process, and the median of later calls);
  the whole Deep Compression recipe (compress + encode) ≤ 15 s.
Accuracies are percentages on each sample's held-out test split.
"""
from __future__ import annotations

import os
import platform
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402

import compressor as cz  # noqa: E402
from benchmarks.results_io import emit  # noqa: E402
from compressor.distillation import distill, make_student, parameter_count, train_scratch  # noqa: E402
from compressor.state import source_of  # noqa: E402
from compressor.training import accuracy, finetune  # noqa: E402

FINETUNE_BUDGET_S = 3.0
RECIPE_BUDGET_S = 15.0
SEEDS = (0, 1, 2, 3, 4)
LR = 3e-3  # fine-tuning step size for the recovery runs (the finetune default, 1e-3, recovers more slowly)
EPOCHS_90 = 10  # fine-tuning epochs of the 90% sparsity comparison, the same for one-shot + fine-tune and AGP
QAT_EPOCHS = 10
KD = dict(temperature=4.0, alpha=0.9, epochs=20, lr=LR)
STUDENT_WIDTH = {"digits-mlp": 0.4, "digits-cnn": 0.5}  # about 1/4 of the teacher's parameters each


def pct(fraction: float) -> float:
    return round(100 * fraction, 2)


def deep_compression_recipe(amount: float, bits: int, seed: int) -> cz.Recipe:
    return cz.Recipe((
        cz.Prune(amount=amount, scope="global", schedule="agp", steps=8, epochs_per_step=3, lr=LR, seed=seed),
        cz.Finetune(epochs=10, lr=LR, seed=seed),
        cz.Quantize(bits=bits, method="kmeans"),
        cz.Finetune(epochs=5, lr=1e-3, seed=seed),
    ))


def deep_compression(sample: cz.Sample, amount: float, bits: int) -> dict:
    """The recipe per seed: file size and the accuracy of the model loaded back from the file."""
    baseline = accuracy(sample.model, sample.data.test)
    fp32_bytes = 4 * parameter_count(sample.model)
    runs, layer_bytes = [], {}
    for seed in SEEDS:
        recipe = deep_compression_recipe(amount, bits, seed)
        start = time.perf_counter()
        artifact = cz.encode(cz.compress(sample.model, recipe, sample.data))
        seconds = time.perf_counter() - start
        loaded = cz.load(artifact.data)
        runs.append({"seed": seed, "accuracy": pct(accuracy(loaded, sample.data.test)), "file_bytes": artifact.size,
                     "ratio": round(fp32_bytes / artifact.size, 1), "seconds": round(seconds, 2)})
        layer_bytes = layer_bytes if seed != SEEDS[0] else artifact.layer_bytes
    drops = [round(pct(baseline) - run["accuracy"], 2) for run in runs]
    ratios = [run["ratio"] for run in runs]
    return {
        "recipe": deep_compression_recipe(amount, bits, SEEDS[0]).to_dict(),
        "fp32_bytes": fp32_bytes,
        "baseline_accuracy": pct(baseline),
        "runs": runs,
        "accuracy_drop_points": {"seed_0": drops[0], "mean": round(statistics.mean(drops), 2), "min": min(drops),
                                 "max": max(drops)},
        "ratio": {"seed_0": ratios[0], "min": min(ratios), "max": max(ratios)},
        "file_bytes_by_layer_seed_0": layer_bytes,
        "recipe_seconds_max": max(run["seconds"] for run in runs),
    }


def sparsity_90(sample: cz.Sample) -> dict:
    one_shot = cz.compress(sample.model, cz.Prune(amount=0.9, scope="global"), sample.data)
    tuned, _ = finetune(one_shot, sample.data.train, epochs=EPOCHS_90, lr=LR)
    agp = cz.Prune(amount=0.9, scope="global", schedule="agp", steps=5, epochs_per_step=EPOCHS_90 // 5, lr=LR)
    start = time.perf_counter()
    gradual = cz.compress(sample.model, agp, sample.data)
    agp_seconds = time.perf_counter() - start
    return {
        "baseline": pct(accuracy(sample.model, sample.data.test)),
        "one_shot": pct(accuracy(one_shot, sample.data.test)),
        "one_shot_finetuned": pct(accuracy(tuned, sample.data.test)),
        "agp": pct(accuracy(gradual, sample.data.test)),
        "epochs": EPOCHS_90, "lr": LR, "agp_steps": 5, "agp_seconds": round(agp_seconds, 2),
    }


def two_bit(sample: cz.Sample) -> dict:
    baseline = accuracy(sample.model, sample.data.test)
    rows = {"fp32": pct(baseline)}
    for label, step in {
        "uniform_symmetric_per_channel": cz.Quantize(bits=2, scheme="symmetric", granularity="channel"),  # ternary
        "uniform_affine_per_channel": cz.Quantize(bits=2, scheme="affine", granularity="channel"),
        "kmeans": cz.Quantize(bits=2, method="kmeans"),
    }.items():
        ptq = cz.compress(sample.model, step, sample.data)
        qat, _ = finetune(ptq, sample.data.train, epochs=QAT_EPOCHS, lr=LR)
        rows[label] = {"ptq": pct(accuracy(ptq, sample.data.test)), "qat": pct(accuracy(qat, sample.data.test)),
                       "qat_drop_points": round(pct(baseline) - pct(accuracy(qat, sample.data.test)), 2),
                       "file_bytes_qat": cz.encode(qat).size}
    rows["qat_epochs"], rows["lr"] = QAT_EPOCHS, LR
    return rows


def knowledge_distillation(sample: cz.Sample) -> dict:
    student = make_student(sample.model, STUDENT_WIDTH[sample.name])
    start = time.perf_counter()
    kd, kd_history = distill(sample.model, student, sample.data.train, **KD, test=sample.data.test)
    kd_seconds = time.perf_counter() - start
    scratch, scratch_history = train_scratch(student, sample.data.train, epochs=KD["epochs"], lr=KD["lr"],
                                             test=sample.data.test)
    return {
        "teacher": pct(accuracy(sample.model, sample.data.test)),
        "student_source": source_of(student),
        "teacher_params": parameter_count(sample.model),
        "student_params": parameter_count(student),
        "param_fraction": round(parameter_count(student) / parameter_count(sample.model), 3),
        "kd": pct(accuracy(kd, sample.data.test)),
        "scratch": pct(accuracy(scratch, sample.data.test)),
        "kd_curve": [pct(r["test_accuracy"]) for r in kd_history],
        "scratch_curve": [pct(r["test_accuracy"]) for r in scratch_history],
        "settings": KD, "kd_seconds": round(kd_seconds, 2),
    }


def finetune_timing(sample: cz.Sample) -> dict:
    """5 epochs on the 90%-pruned digits-mlp: the first call of the process (cold) and the median of 5 more."""
    pruned = cz.prune(sample.model, 0.9, scope="global")

    def run() -> float:
        start = time.perf_counter()
        finetune(pruned, sample.data.train, epochs=5)
        return time.perf_counter() - start

    cold = run()
    warm = statistics.median(run() for _ in range(5))
    return {"cold_s": round(cold, 3), "median_s": round(warm, 3), "budget_s": FINETUNE_BUDGET_S,
            "within_budget": max(cold, warm) <= FINETUNE_BUDGET_S}


def main() -> None:
    torch.set_num_threads(1)
    mlp, cnn = cz.load_sample("digits-mlp"), cz.load_sample("digits-cnn")
    results: dict = {
        "machine": {"cpus": os.cpu_count(), "torch_threads": torch.get_num_threads(), "torch": torch.__version__,
                    "python": platform.python_version()},
        "finetune_digits_mlp_5_epochs": finetune_timing(mlp),
    }
    target = deep_compression(mlp, amount=0.94, bits=4)
    results["deep_compression_digits_mlp"] = target
    results["deep_compression_digits_mlp_aim_40x"] = deep_compression(mlp, amount=0.96, bits=3)
    results["deep_compression_recipe_within_budget"] = target["recipe_seconds_max"] <= RECIPE_BUDGET_S
    results["sparsity_90"] = {sample.name: sparsity_90(sample) for sample in (mlp, cnn)}
    results["two_bit_weights"] = {sample.name: two_bit(sample) for sample in (mlp, cnn)}
    results["qat_within_3_points_digits_mlp"] = results["two_bit_weights"]["digits-mlp"]["uniform_symmetric_per_channel"]["qat_drop_points"] <= 3.0
    results["knowledge_distillation"] = {sample.name: knowledge_distillation(sample) for sample in (mlp, cnn)}
    emit(results, __file__)


if __name__ == "__main__":
    main()
