"""The batch interface, checked from outside: real subprocesses for the promised JSON, in-process for the rest."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from compressor.cli import main

ROOT = Path(__file__).resolve().parents[1]
RECIPE = {"steps": [
    {"type": "prune", "amount": 0.9, "criterion": "magnitude", "scope": "global"},
    {"type": "quantize", "bits": 4, "scheme": "symmetric", "granularity": "channel"},
]}
FAST = ["--runs", "20", "--batch-size", "8"]


@pytest.fixture
def recipe_file(tmp_path):
    path = tmp_path / "recipe.json"
    path.write_text(json.dumps(RECIPE))
    return str(path)


def run_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "compressor", *args], cwd=ROOT, capture_output=True, text=True)


def test_models_lists_the_samples():
    out = run_cli("models")
    assert out.returncode == 0
    assert "digits-mlp" in out.stdout and "digits-cnn" in out.stdout


def test_evaluate_json_has_the_promised_keys(recipe_file):
    out = run_cli("evaluate", "--model", "digits-mlp", "--recipe", recipe_file, "--json", *FAST)
    assert out.returncode == 0, out.stderr
    report = json.loads(out.stdout)
    for key in ("accuracy", "baseline_accuracy", "accuracy_drop", "params", "nonzero_params", "dense_bytes",
                "compressed_bytes", "compression_ratio", "macs", "effective_macs", "latency_ms",
                "baseline_latency_ms", "speedup", "layers"):
        assert key in report
    assert report["compression_ratio"] > 10
    assert report["recipe"] == RECIPE


def test_export_then_evaluate_the_artifact(tmp_path, recipe_file, capsys):
    out_file = tmp_path / "mlp.clab"
    assert main(["export", "--model", "digits-mlp", "--recipe", recipe_file, "--out", str(out_file)]) == 0
    assert out_file.stat().st_size > 0
    capsys.readouterr()
    assert main(["evaluate", "--model", "digits-mlp", "--recipe", recipe_file, "--json", *FAST]) == 0
    direct = json.loads(capsys.readouterr().out)
    assert main(["evaluate", "--model", str(out_file), "--json", *FAST]) == 0
    loaded = json.loads(capsys.readouterr().out)
    assert loaded["accuracy"] == direct["accuracy"]
    assert loaded["baseline_accuracy"] == direct["baseline_accuracy"]
    assert loaded["compressed_bytes"] == out_file.stat().st_size == direct["compressed_bytes"]
    assert loaded["recipe"] == RECIPE


def test_entry_point_model_with_random_inputs_reports_agreement(capsys):
    code = main(["evaluate", "--model", "tests/models.py:residual_cnn", "--input-shape", "8,3,16,16", "--json",
                 "--allow-code", *FAST])
    assert code == 0
    report = json.loads(capsys.readouterr().out)
    assert report["metric"] == "agreement" and report["accuracy"] == 1.0


def test_entry_point_model_with_entry_point_data(tmp_path, capsys):
    recipe = tmp_path / "r.json"
    recipe.write_text(json.dumps({"steps": [{"type": "quantize", "bits": 8, "granularity": "channel"}]}))
    code = main(["evaluate", "--model", "tests.models:residual_cnn", "--data", "tests.models:residual_cnn_data",
                 "--recipe", str(recipe), "--json", "--allow-code", *FAST])
    assert code == 0
    report = json.loads(capsys.readouterr().out)
    assert report["metric"] == "accuracy" and report["test_examples"] == 64
    assert abs(report["accuracy"] - report["baseline_accuracy"]) <= 0.1  # 8-bit per channel barely moves it


def test_npz_data(tmp_path, capsys):
    from compressor import load_sample

    data = load_sample("digits-mlp").data.test
    path = tmp_path / "d.npz"
    np.savez(path, X=data.X.numpy()[:100], y=data.y.numpy()[:100])
    assert main(["evaluate", "--model", "digits-mlp", "--data", str(path), "--json", *FAST]) == 0
    assert json.loads(capsys.readouterr().out)["test_examples"] == 100


def test_text_report_is_readable(capsys):
    assert main(["evaluate", "--model", "digits-cnn", *FAST]) == 0
    out = capsys.readouterr().out
    assert "compression ratio" in out and "conv1" in out and "batch 8" in out


@pytest.mark.parametrize(
    "args, message",
    [
        (["evaluate", "--model", "digits-xl"], "model 'digits-xl' is not a sample name"),
        (["evaluate", "--model", "tests/models.py:nothing", "--allow-code"], "has no callable named 'nothing'"),
        (["evaluate", "--model", "tests/models.py:residual_cnn", "--allow-code"], "pass --data"),
        (["evaluate", "--model", "tests/models.py:residual_cnn", "--input-shape", "8,x", "--allow-code"], "input shape '8,x'"),
        (["evaluate", "--model", "tests/models.py:residual_cnn"], "runs code; pass --allow-code"),
        (["evaluate", "--model", "digits-mlp", "--data", "tests.models:residual_cnn_data"], "pass --allow-code"),
        (["evaluate", "--model", "digits-mlp", "--weights", "nope.pt"], "weights file 'nope.pt' does not exist"),
        (["evaluate", "--model", "tests", "--json"], "is not a Hugging Face model folder"),
        (["evaluate", "--model", "digits-mlp", "--recipe", "missing.json"], "does not exist"),
        (["evaluate", "--model", "digits-mlp", "--runs", "3"], "runs=3 is out of range"),
        (["evaluate", "--model", "digits-mlp", "--data", "nope.npz"], "data file 'nope.npz' does not exist"),
        (["evaluate", "--model", "README.md"], "not a Compression Lab artifact"),
    ],
)
def test_user_mistakes_print_one_line_and_exit_2(args, message):
    out = run_cli(*args)
    assert out.returncode == 2
    assert message in out.stderr
    assert "Traceback" not in out.stderr and len(out.stderr.strip().splitlines()) == 1


def test_recipe_with_unknown_key_is_a_clear_error(tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"steps": [{"type": "prune", "amount": 0.5, "sparsity": 0.9}]}))
    out = run_cli("evaluate", "--model", "digits-mlp", "--recipe", str(bad))
    assert out.returncode == 2 and "unknown key(s) sparsity" in out.stderr


def test_a_distilled_student_artifact_is_evaluated_on_its_samples_data_against_the_teacher(tmp_path, capsys):
    import compressor as cz

    teacher = cz.load_sample("digits-mlp")
    student = cz.make_student(teacher.model, width=0.25)
    student, _ = cz.distill(teacher.model, student, teacher.data.train, epochs=2)
    path = tmp_path / "student.clab"
    cz.export(student, path)
    assert main(["evaluate", "--model", str(path), "--json", *FAST]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["baseline_params"] == sum(p.numel() for p in teacher.model.parameters())
    assert report["params"] < report["baseline_params"] / 4
    assert report["test_examples"] == len(teacher.data.test)


def test_the_report_table_prints_counts_in_full_with_thousands_separators():
    import compressor as cz
    from compressor.cli import format_report

    sample = cz.load_sample("digits-mlp")
    text = format_report(cz.evaluate(sample.model, sample.data, baseline=sample.model, latency=None))
    parameters = next(line for line in text.splitlines() if line.startswith("parameters"))
    assert parameters.split()[1:] == ["50,610", "50,610"] and "e+" not in text.split("\n\n")[0]
    assert "0.9889" in text  # fractions keep 4 significant digits


# ---- every user mistake: one line naming the value, exit 2 (in-process: an escaping exception fails the test) ----


@pytest.fixture(scope="module")
def bad_files(tmp_path_factory):
    from compressor import load_sample

    root = tmp_path_factory.mktemp("bad")
    test = load_sample("digits-mlp").data.test
    X, y = test.X.numpy()[:50], test.y.numpy()[:50]
    arrays = {
        "narrow.npz": dict(X=X[:, :50], y=y), "labels10.npz": dict(X=X, y=np.full(50, 10)),
        "nan.npz": dict(X=np.full_like(X, np.nan), y=y), "inf.npz": dict(X=np.where(X > 0.5, np.inf, X), y=y),
        "complex.npz": dict(X=X.astype(np.complex64), y=y), "nanlabels.npz": dict(X=X, y=np.full(50, np.nan)),
        "floatlabels.npz": dict(X=X, y=y + 0.5), "negative.npz": dict(X=X, y=-y - 1),
        "objects.npz": dict(X=np.array([X, None], dtype=object)),
    }
    for name, content in arrays.items():
        np.savez(root / name, **content)
    (root / "empty.npz").write_bytes(b"")
    (root / "empty.json").write_text("")
    (root / "empty_steps.json").write_text('{"steps": []}')
    (root / "raises_on_import.py").write_text("raise RuntimeError('boom at import')\n")
    (root / "factories.py").write_text("def raises():\n    raise KeyError('boom')\n\n"
                                       "def nothing():\n    return None\n")
    import compressor as cz

    good = cz.encode(cz.load_sample("digits-mlp").model).data
    (root / "truncated.clab").write_bytes(good[: len(good) // 2])
    (root / "empty.clab").write_bytes(b"")
    return root


@pytest.mark.parametrize("args, message", [
    (["--model", "{d}/factories.py:raises", "--allow-code"], "entry point '{d}/factories.py:raises' raised KeyError: 'boom'"),
    (["--model", "{d}/raises_on_import.py:model", "--allow-code"], "importing '{d}/raises_on_import.py' failed: RuntimeError: boom"),
    (["--model", "{d}/factories.py:nothing", "--allow-code"], "returned NoneType, not a torch.nn.Module"),
    (["--model", "nonexistent_module_xyz:f", "--allow-code"], "importing 'nonexistent_module_xyz' failed: ModuleNotFoundError"),
    (["--model", "digits-mlp", "--data", "{d}/narrow.npz"], "inputs of shape (50,) (per example) do not fit the model"),
    (["--model", "digits-mlp", "--data", "{d}/labels10.npz"], "labels y include 10 but the model has 10 outputs"),
    (["--model", "digits-mlp", "--data", "{d}/nan.npz"], "X has 3,200 values that are NaN or infinite"),
    (["--model", "digits-mlp", "--data", "{d}/inf.npz"], "values that are NaN or infinite"),
    (["--model", "digits-mlp", "--data", "{d}/complex.npz"], "X has dtype torch.complex64; it must hold real numbers"),
    (["--model", "digits-mlp", "--data", "{d}/nanlabels.npz"], "labels y have dtype torch.float64; they must be whole"),
    (["--model", "digits-mlp", "--data", "{d}/floatlabels.npz"], "labels y have dtype torch.float64"),
    (["--model", "digits-mlp", "--data", "{d}/negative.npz"], "labels y include -10; class indices are 0 or more"),
    (["--model", "digits-mlp", "--data", "{d}/objects.npz"], "holds Python objects, which would need unpickling"),
    (["--model", "digits-mlp", "--data", "{d}/empty.npz"], "is not an .npz archive"),
    (["--model", "{d}/truncated.clab"], "artifact is truncated"),
    (["--model", "{d}/empty.clab"], "is not a Compression Lab artifact"),
    (["--model", "tests/models.py:residual_cnn", "--input-shape", "64", "--allow-code"], "input shape '64' must be"),
    (["--model", "tests/models.py:residual_cnn", "--input-shape", "8,64", "--allow-code"], "inputs of shape (64,) (per example) do not fit"),
    (["--model", "digits-mlp", "--input-shape", "8,64"], "--input-shape '8,64' does not apply"),
    (["--model", "digits-mlp", "--recipe", ""], "--recipe '' is empty"),
    (["--model", "digits-mlp", "--recipe", "{d}/empty.json"], "recipe is not valid JSON"),
])
def test_each_mistake_is_one_line_naming_the_value(bad_files, capsys, args, message):
    args = [arg.format(d=bad_files) for arg in args]
    assert main(["evaluate", *args, *FAST]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and len(err.strip().splitlines()) == 1
    assert message.format(d=bad_files) in err


def test_an_empty_recipe_exports_an_equal_copy(bad_files, tmp_path, capsys):
    import compressor as cz

    out = tmp_path / "copy.clab"
    assert main(["export", "--model", "digits-mlp", "--recipe", str(bad_files / "empty_steps.json"), "--out", str(out)]) == 0
    sample = cz.load_sample("digits-mlp")
    loaded = cz.load(out)
    assert all(torch.equal(a, b) for a, b in zip(loaded.state_dict().values(), sample.model.state_dict().values()))
    capsys.readouterr()
    assert main(["evaluate", "--model", str(out), "--json", *FAST]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["recipe"] == {"steps": []} and report["compressed_bytes"] == out.stat().st_size


@pytest.mark.parametrize("source", ["os:abort", "sys:exit"])
def test_an_artifact_naming_code_is_refused_and_runs_it_only_with_allow_code(tmp_path, source):
    import compressor as cz
    from tests.test_artifact_safety import reframe

    path = tmp_path / "crafted.clab"
    path.write_bytes(reframe(cz.encode(cz.load_sample("digits-mlp").model).data, source=source))
    out = run_cli("evaluate", "--model", str(path), *FAST)
    assert out.returncode == 2 and "Traceback" not in out.stderr and len(out.stderr.strip().splitlines()) == 1
    assert f"source is the entry point '{source}'" in out.stderr and "--allow-code" in out.stderr


def test_own_weights_and_hf_folder(tmp_path, capsys):
    """--weights for a sample architecture; a Hugging Face folder as --model."""
    import sample_models
    from safetensors.torch import save_file
    from transformers import BertConfig, BertModel

    torch.manual_seed(1)
    save_file(sample_models.build("digits-mlp").state_dict(), tmp_path / "w.safetensors")  # untrained: near 10%
    assert main(["evaluate", "--model", "digits-mlp", "--weights", str(tmp_path / "w.safetensors"), "--json", *FAST]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["baseline_accuracy"] < 0.5  # the user's (untrained) weights, not the shipped ones
    folder = tmp_path / "bert"
    BertModel(BertConfig(hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=64),
              add_pooling_layer=False).save_pretrained(folder, safe_serialization=True)
    assert main(["evaluate", "--model", str(folder), "--json", *FAST]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["fidelity"] is not None and report["test_examples"] > 0  # scored as an encoder on the sentences
