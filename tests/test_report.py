"""Reports are measured: accuracy recomputed by hand, size equal to the exported file, latency as stated."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from compressor import LatencyConfig, Prune, Quantize, Recipe, compress, evaluate, export, load_sample
from compressor.data import DataSplits, Split

FAST = LatencyConfig(batch_size=8, runs=20, warmup=1)


@pytest.fixture(scope="module")
def mlp():
    return load_sample("digits-mlp")


@pytest.fixture(scope="module")
def pruned(mlp):
    recipe = Recipe((Prune(amount=0.9, scope="global"), Quantize(bits=4, scheme="symmetric", granularity="channel")))
    return compress(mlp.model, recipe, mlp.data), recipe


def _macro_f1(pred: np.ndarray, y: np.ndarray) -> float:
    """Macro-F1 by hand: per-class 2PR/(P+R), averaged over the classes present."""
    scores = []
    for c in np.unique(np.concatenate([pred, y])):
        tp = np.sum((pred == c) & (y == c))
        p = tp / max(np.sum(pred == c), 1)
        r = tp / max(np.sum(y == c), 1)
        scores.append(0.0 if p + r == 0 else 2 * p * r / (p + r))
    return float(np.mean(scores))


def test_accuracy_and_f1_match_a_hand_computation(mlp, pruned):
    small, recipe = pruned
    report = evaluate(small, mlp.data, baseline=mlp.model, latency=None, recipe=recipe.to_dict())
    X, y = mlp.data.test.X, mlp.data.test.y
    with torch.no_grad():
        pred, base_pred = small(X).argmax(1), mlp.model(X).argmax(1)
    assert report.metric == "accuracy"
    assert report.accuracy == pytest.approx((pred == y).float().mean().item())
    assert report.baseline_accuracy == pytest.approx((base_pred == y).float().mean().item())
    assert report.accuracy_drop == pytest.approx(report.baseline_accuracy - report.accuracy)
    assert report.macro_f1 == pytest.approx(_macro_f1(pred.numpy(), y.numpy()))
    assert report.test_examples == len(y)


def test_compressed_bytes_are_the_exported_file_size(tmp_path, mlp, pruned):
    small, recipe = pruned
    report = evaluate(small, mlp.data, baseline=mlp.model, latency=None, recipe=recipe.to_dict())
    path = tmp_path / "m.clab"
    export(small, path, recipe=recipe.to_dict())
    assert report.compressed_bytes == path.stat().st_size
    params = sum(p.numel() for p in mlp.model.parameters())
    assert report.baseline_dense_bytes == 4 * params
    assert report.compression_ratio == pytest.approx(4 * params / path.stat().st_size)
    assert sum(row["bytes"] for row in report.layers) < report.compressed_bytes
    assert report.nonzero_params < 0.15 * report.params


def test_latency_is_timed_for_both_models_with_its_conditions_stated(mlp, pruned):
    small, _ = pruned
    report = evaluate(small, mlp.data, baseline=mlp.model, latency=FAST)
    assert report.latency_runs == 20 and report.batch_size == 8 and report.threads == 1
    assert report.latency_ms > 0 and report.baseline_latency_ms > 0
    assert report.speedup == pytest.approx(report.baseline_latency_ms / report.latency_ms)
    assert report.latency_spread_ms >= 0


def test_notes_say_unstructured_zeros_and_fake_quantization_give_no_speedup(mlp, pruned):
    report = evaluate(pruned[0], mlp.data, baseline=mlp.model, latency=None)
    text = " ".join(report.notes)
    assert "dense kernels" in text and "simulated quantization" in text
    assert report.macs == report.baseline_macs
    assert report.effective_macs < 0.2 * report.macs


def test_structured_pruning_reduces_real_macs(mlp):
    small = compress(mlp.model, Prune(amount=0.5, structured=True), mlp.data)
    report = evaluate(small, mlp.data, baseline=mlp.model, latency=None)
    assert report.macs < 0.6 * report.baseline_macs
    assert any("really got smaller" in note for note in report.notes)


def test_baseline_report_against_itself(mlp):
    report = evaluate(mlp.model, mlp.data, latency=None)
    assert report.accuracy_drop == 0 and report.accuracy >= 0.97
    assert report.params == report.baseline_params == report.nonzero_params


def test_unlabelled_data_reports_agreement_with_the_baseline(mlp, pruned):
    data = DataSplits.from_test(Split(mlp.data.test.X))
    report = evaluate(pruned[0], data, baseline=mlp.model, latency=None)
    with torch.no_grad():
        agree = (pruned[0](data.test.X).argmax(1) == mlp.model(data.test.X).argmax(1)).float().mean().item()
    assert report.metric == "agreement" and report.baseline_accuracy == 1.0
    assert report.accuracy == pytest.approx(agree)


def test_report_converts_to_dict_and_frames(mlp, pruned):
    report = evaluate(pruned[0], mlp.data, baseline=mlp.model, latency=FAST)
    data = report.to_dict()
    for key in ("accuracy", "baseline_accuracy", "accuracy_drop", "params", "nonzero_params", "dense_bytes",
                "compressed_bytes", "compression_ratio", "macs", "effective_macs", "latency_ms",
                "baseline_latency_ms", "speedup", "layers"):
        assert key in data
    frame = report.to_frame()
    assert list(frame["name"][:3]) == ["fc1", "fc2", "fc3"]
    assert {"type", "shape", "params", "nonzero", "bits", "rank", "bytes", "macs"} <= set(frame.columns)
    assert report.summary_frame().loc["parameters", "baseline"] == report.baseline_params


def test_macro_f1_agrees_with_scikit_learn():
    from sklearn.metrics import f1_score

    from compressor.report import macro_f1

    g = torch.Generator().manual_seed(0)
    for classes in (2, 5, 10):
        target = torch.randint(0, classes, (300,), generator=g)
        pred = torch.where(torch.rand(300, generator=g) < 0.7, target, torch.randint(0, classes, (300,), generator=g))
        pred[pred == classes - 1] = 0  # one class never predicted: its F1 is 0 and still counts
        expected = f1_score(target.numpy(), pred.numpy(), average="macro", zero_division=0)
        assert macro_f1(pred, target) == pytest.approx(expected, abs=1e-12)
