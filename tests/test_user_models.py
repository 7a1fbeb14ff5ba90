"""A user's own model (compressor/user_models.py): Hugging Face folders, sample weights, entry points; and the
files that must be refused."""
from __future__ import annotations

import os
import pickle

import numpy as np
import pytest
import torch
from safetensors.torch import save_file

import sample_models
from compressor import user_models
from compressor.user_models import load_entry_model, load_hf_folder, load_weights


@pytest.fixture
def mlp_state() -> dict[str, torch.Tensor]:
    """digits-mlp weights unlike the shipped ones (seeded), so a round trip proves the file was read."""
    torch.manual_seed(7)
    return {k: v.clone() for k, v in sample_models.build("digits-mlp").state_dict().items()}


@pytest.mark.parametrize("suffix", [".safetensors", ".pt"])
def test_weights_round_trip(tmp_path, mlp_state, suffix):
    path = tmp_path / f"w{suffix}"
    save_file(mlp_state, path) if suffix == ".safetensors" else torch.save(mlp_state, path)
    sample = load_weights("digits-mlp", path)
    loaded = sample.model.state_dict()
    assert loaded.keys() == mlp_state.keys()
    for name, tensor in mlp_state.items():
        assert torch.equal(loaded[name], tensor)
    assert len(sample.data.test) > 0


def test_wrong_shapes_and_dtypes_are_refused(tmp_path, mlp_state):
    name = next(iter(mlp_state))
    bad = dict(mlp_state, **{name: torch.zeros(3, 3)})
    save_file(bad, tmp_path / "shape.safetensors")
    with pytest.raises(ValueError, match=f"{name} is \\(3, 3\\)"):
        load_weights("digits-mlp", tmp_path / "shape.safetensors")
    save_file(dict(mlp_state, **{name: mlp_state[name].double()}), tmp_path / "dtype.safetensors")
    with pytest.raises(ValueError, match="torch.float64"):
        load_weights("digits-mlp", tmp_path / "dtype.safetensors")
    torch.save({k: v for k, v in mlp_state.items() if k != name}, tmp_path / "missing.pt")
    with pytest.raises(ValueError, match="missing"):
        load_weights("digits-mlp", tmp_path / "missing.pt")
    with pytest.raises(ValueError, match="digits-cnn"):  # mlp weights for the cnn: names differ
        load_weights("digits-cnn", tmp_path / "shape.safetensors")


class _Exploit:
    """A pickle that would run `os.system` when loaded by an unsafe unpickler."""

    def __reduce__(self):
        return (os.system, ("echo pwned > /dev/null",))


def test_a_pickle_with_code_is_refused(tmp_path, mlp_state, monkeypatch):
    path = tmp_path / "evil.pt"
    torch.save({"weight": _Exploit()}, path)  # a real torch zip file whose data.pkl references os.system
    assert b"system" in path.read_bytes()
    raw = tmp_path / "raw.pt"
    raw.write_bytes(pickle.dumps(_Exploit()))  # a bare legacy pickle, not a zip
    called = []
    monkeypatch.setattr(os, "system", lambda cmd: called.append(cmd))
    with pytest.raises(ValueError, match="refused: its pickle names posix.system"):
        load_weights("digits-mlp", path)
    assert called == []
    with pytest.raises(ValueError, match="'raw.pt' is not a readable PyTorch state dict"):
        load_weights("digits-mlp", raw)
    assert called == []


def test_corrupt_oversized_and_wrong_kind_are_refused(tmp_path, mlp_state):
    (tmp_path / "junk.safetensors").write_bytes(b"\x00" * 100)
    with pytest.raises(ValueError, match="not a readable safetensors file"):
        load_weights("digits-mlp", tmp_path / "junk.safetensors")
    (tmp_path / "junk.pt").write_bytes(b"PK\x03\x04broken")
    with pytest.raises(ValueError, match="not a readable PyTorch state dict"):
        load_weights("digits-mlp", tmp_path / "junk.pt")
    save_file(mlp_state, tmp_path / "big.safetensors")
    size = (tmp_path / "big.safetensors").stat().st_size
    with pytest.raises(ValueError, match=f"{size:,} bytes; at most 1,000 bytes"):
        load_weights("digits-mlp", tmp_path / "big.safetensors", limit=1000)
    torch.save([1, 2], tmp_path / "list.pt")
    with pytest.raises(ValueError, match="must hold a state dict"):
        load_weights("digits-mlp", tmp_path / "list.pt")
    with pytest.raises(ValueError, match="must end in"):
        load_weights("digits-mlp", tmp_path / "w.bin")
    with pytest.raises(ValueError, match="weights go with one of"):
        load_weights("minilm-l6", tmp_path / "big.safetensors")


def test_hf_folder_round_trip(tmp_path):
    from transformers import BertConfig, BertModel

    config = BertConfig(vocab_size=30522, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                        intermediate_size=64, max_position_embeddings=256)
    torch.manual_seed(0)
    bert = BertModel(config, add_pooling_layer=False).eval()
    bert.save_pretrained(tmp_path, safe_serialization=True)
    assert (tmp_path / "model.safetensors").is_file()
    sample = load_hf_folder(tmp_path)
    assert sample.data.kind == "embedding"
    ids = sample.data.test.X[:4]
    mask = (ids != 0).long()
    with torch.no_grad():
        hidden = bert(input_ids=ids, attention_mask=mask).last_hidden_state
        expected = torch.nn.functional.normalize((hidden * mask[..., None]).sum(1) / mask.sum(1, keepdim=True), dim=1)
        got = sample.model(ids)
        assert torch.allclose(sample.model.bert(input_ids=ids, attention_mask=mask).last_hidden_state, hidden, atol=1e-6)
    assert torch.allclose(got, expected, atol=1e-5)


def test_hf_folder_refusals(tmp_path):
    with pytest.raises(ValueError, match="needs config.json and model.safetensors"):
        load_hf_folder(tmp_path)
    from transformers import BertConfig, BertModel

    BertModel(BertConfig(vocab_size=100, hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                         intermediate_size=32)).save_pretrained(tmp_path, safe_serialization=True)
    with pytest.raises(ValueError, match="vocabulary of 100 tokens"):
        load_hf_folder(tmp_path)
    with pytest.raises(ValueError, match="at most 10 bytes"):
        load_hf_folder(tmp_path, limit=10)
    (tmp_path / "model.safetensors").write_bytes(b"garbage")
    with pytest.raises(ValueError, match="weights cannot be loaded"):
        load_hf_folder(tmp_path)


def test_entry_point_needs_the_opt_in(tmp_path):
    X = np.random.default_rng(0).normal(size=(20, 3, 16, 16)).astype(np.float32)
    np.savez(tmp_path / "eval.npz", X=X, y=np.arange(20) % 10)
    with pytest.raises(ValueError, match="runs code, which this server does not allow"):
        load_entry_model("tests/models.py:residual_cnn", str(tmp_path / "eval.npz"), allow_code=False)
    sample = load_entry_model("tests/models.py:residual_cnn", str(tmp_path / "eval.npz"), allow_code=True)
    assert isinstance(sample.model, torch.nn.Module) and len(sample.data.test) == 20
    with pytest.raises(ValueError, match="must be an .npz"):
        load_entry_model("tests/models.py:residual_cnn", "digits-mlp", allow_code=True)


def test_code_allowed_only_explicitly(monkeypatch):
    monkeypatch.delenv(user_models.ALLOW_CODE_ENV, raising=False)
    assert not user_models.code_allowed([])
    assert user_models.code_allowed(["app.py", "--allow-code"])
    monkeypatch.setenv(user_models.ALLOW_CODE_ENV, "1")
    assert user_models.code_allowed()


def test_readme_worked_example_runs(tmp_path, monkeypatch, capsys):
    """The README's "Your own model" example: save weights, evaluate them with --weights (safetensors and .pt)."""
    import json
    import re
    from pathlib import Path

    from compressor.cli import main

    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    section = readme.split("## Your own model", 1)[1]
    code = re.search(r"```python\n(.*?)```", section, re.S).group(1)
    monkeypatch.chdir(tmp_path)
    exec(compile(code + '\ntorch.save(model.state_dict(), "my_mlp.pt")\n', "README own model", "exec"), {})
    (tmp_path / "int8.json").write_text(json.dumps({"steps": [{"type": "quantize", "bits": 8, "granularity": "channel"}]}))
    fast = ["--runs", "20", "--batch-size", "8", "--json"]
    assert main(["evaluate", "--model", "digits-mlp", "--weights", "my_mlp.safetensors", "--recipe", "int8.json", *fast]) == 0
    first = json.loads(capsys.readouterr().out)
    assert main(["evaluate", "--model", "digits-mlp", "--weights", "my_mlp.pt", *fast]) == 0
    second = json.loads(capsys.readouterr().out)
    assert first["baseline_accuracy"] == second["baseline_accuracy"] > 0.9  # the shipped weights, read back both ways


def test_an_artifact_of_uploaded_weights_round_trips(tmp_path, mlp_state, capsys):
    """Exported from uploaded weights, the file loads back (its architecture from the registry, its tensors from the
    file) and evaluates: alone, with one line saying there is no baseline, or against the same --weights."""
    import json

    import compressor as cz
    from compressor.cli import main
    from compressor.models import weights_source

    save_file(mlp_state, tmp_path / "mine.safetensors")
    own = load_weights("digits-mlp", tmp_path / "mine.safetensors")
    digest = user_models.file_sha256(tmp_path / "mine.safetensors")
    assert cz.artifact.read_header(cz.encode(own.model).data)["source"] == weights_source("digits-mlp", digest)
    (tmp_path / "int8.json").write_text(json.dumps({"steps": [{"type": "quantize", "bits": 8}]}))
    out = str(tmp_path / "mine.clab")
    assert main(["export", "--model", "digits-mlp", "--weights", str(tmp_path / "mine.safetensors"),
                 "--recipe", str(tmp_path / "int8.json"), "--out", out]) == 0
    capsys.readouterr()
    small = cz.compress(own.model, cz.Recipe.from_dict({"steps": [{"type": "quantize", "bits": 8}]}), own.data)
    loaded = cz.load(out)  # no base: rebuilt from the file alone
    X = own.data.test.X[:64]
    with torch.no_grad():
        assert torch.equal(loaded(X), small(X))

    fast = ["--runs", "20", "--batch-size", "8"]
    assert main(["evaluate", "--model", out, *fast]) == 0
    text = capsys.readouterr().out
    assert text.splitlines()[0].startswith(f"note: no baseline comparison: {out} was made from uploaded weights for "
                                           f"digits-mlp (SHA-256 {digest[:16]})")
    assert "baseline" not in text.split("\n", 1)[1]  # no column pretends to be the uploaded model
    assert main(["evaluate", "--model", out, "--json", *fast]) == 0
    alone = json.loads(capsys.readouterr().out)
    expected = small.eval()(own.data.test.X).argmax(1).eq(own.data.test.y).float().mean().item()
    assert alone["accuracy"] == pytest.approx(expected)
    assert alone["baseline_accuracy"] is None and alone["compression_ratio"] is None and alone["speedup"] is None
    assert alone["notes"][0].startswith("no baseline comparison")

    assert main(["evaluate", "--model", out, "--weights", str(tmp_path / "mine.safetensors"), "--json", *fast]) == 0
    compared = json.loads(capsys.readouterr().out)
    with torch.no_grad():
        baseline = own.model(own.data.test.X).argmax(1).eq(own.data.test.y).float().mean().item()
    assert compared["baseline_accuracy"] == pytest.approx(baseline)
    assert compared["accuracy"] == pytest.approx(expected)

    torch.manual_seed(99)
    save_file(sample_models.build("digits-mlp").state_dict(), tmp_path / "other.safetensors")
    assert main(["evaluate", "--model", out, "--weights", str(tmp_path / "other.safetensors"), *fast]) == 2
    assert "are not the weights" in capsys.readouterr().err
    assert main(["export", "--model", "digits-mlp", "--recipe", str(tmp_path / "int8.json"), "--out",
                 str(tmp_path / "sample.clab")]) == 0
    assert main(["evaluate", "--model", str(tmp_path / "sample.clab"), "--weights", str(tmp_path / "mine.safetensors"),
                 *fast]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "leave --weights out" in err


def test_a_weights_source_names_a_sample_and_a_16_hex_digest_only() -> None:
    from compressor.models import is_weights_source, weights_source

    assert is_weights_source(weights_source("digits-mlp", "0123456789abcdef" * 4))
    for forged in ("digits-mlp@weights=../../etc/passwd", "digits-mlp@weights=0123", "digits-mlp@weights=",
                   "digits-mlp@weights=0123456789ABCDEF", "os:system@weights=0123456789abcdef"):
        assert not is_weights_source(forged), forged


def _tiny_bert(folder, seed: int) -> None:
    from transformers import BertConfig, BertModel

    torch.manual_seed(seed)
    BertModel(BertConfig(hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=64),
              add_pooling_layer=False).eval().save_pretrained(folder, safe_serialization=True)


def test_an_artifact_of_a_hf_folder_evaluates_back_into_that_folder_only(tmp_path, capsys):
    """The header names the folder's model by hash (never its path); loading asks for the folder in one line, loads
    into it, and refuses another folder's model."""
    import json

    import compressor as cz
    from compressor.cli import main
    from compressor.models import hf_source
    from compressor.state import source_of
    from tests.test_artifact_safety import reframe

    _tiny_bert(tmp_path / "bert", seed=0)
    _tiny_bert(tmp_path / "other", seed=1)
    own = load_hf_folder(tmp_path / "bert")
    assert source_of(own.model) == hf_source(user_models.hf_digest(tmp_path / "bert"))
    (tmp_path / "int8.json").write_text(json.dumps({"steps": [{"type": "quantize", "bits": 8}]}))
    out = tmp_path / "bert.clab"
    assert main(["export", "--model", str(tmp_path / "bert"), "--recipe", str(tmp_path / "int8.json"), "--out", str(out)]) == 0
    capsys.readouterr()
    header = cz.artifact.read_header(out)
    assert header["source"] == source_of(own.model) and str(tmp_path).encode() not in out.read_bytes()

    with pytest.raises(ValueError, match=r"load_hf_folder\(FOLDER\)\.model \(CLI: --base FOLDER\)") as refused:
        cz.load(out)
    assert "\n" not in str(refused.value)
    fast = ["--runs", "20", "--batch-size", "8", "--json"]
    assert main(["evaluate", "--model", str(out), *fast]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "--base FOLDER" in err

    small = cz.compress(own.model, cz.Recipe.from_dict(json.loads((tmp_path / "int8.json").read_text())), own.data)
    loaded = cz.load(out, base=own.model)
    X = own.data.test.X[:8]
    with torch.no_grad():
        assert torch.equal(loaded(X), small(X))
    assert main(["evaluate", "--model", str(out), "--base", str(tmp_path / "bert"), *fast]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["compressed_bytes"] == out.stat().st_size and report["compression_ratio"] > 1
    assert report["baseline_params"] == sum(p.numel() for p in own.model.parameters())

    other = load_hf_folder(tmp_path / "other").model
    with pytest.raises(ValueError, match="the base model given is 'hf@sha256=[0-9a-f]{16}', but the artifact was made"):
        cz.load(out, base=other)
    assert main(["evaluate", "--model", str(out), "--base", str(tmp_path / "other"), *fast]) == 2
    assert "pass the model it was made from" in capsys.readouterr().err
    assert main(["evaluate", "--model", str(tmp_path / "bert"), "--base", str(tmp_path / "bert"), *fast]) == 2
    assert "leave --base out" in capsys.readouterr().err
    assert main(["export", "--model", "digits-mlp", "--recipe", str(tmp_path / "int8.json"), "--out", str(tmp_path / "s.clab")]) == 0
    assert main(["evaluate", "--model", str(tmp_path / "s.clab"), "--base", str(tmp_path / "bert"), *fast]) == 2
    assert "was made from 'digits-mlp': leave --base out" in capsys.readouterr().err

    from compressor.embedding_training import teacher_embeddings

    with pytest.raises(ValueError, match="cannot rebuild for 'hf@sha256=.*pass targets="):
        teacher_embeddings(own.model, own.data.train)  # fine-tuning's teacher: not rebuilt from a name either
    for forged in ("hf@sha256=../../etc/passwd", "hf@sha256=" + "0" * 15, "hf@sha256=" + "0123456789ABCDEF"):
        with pytest.raises(ValueError, match="unknown sample model"):
            cz.load(reframe(out.read_bytes(), source=forged), allow_entry_points=True)


def test_an_artifact_of_an_entry_point_records_it_and_runs_it_only_when_allowed(tmp_path, capsys):
    """The entry point's spec is the source (as for --model file.py:factory): the file loads back only with the
    opt-in, or into a base the caller built."""
    import compressor as cz
    from compressor.cli import main
    from tests import models

    X = np.random.default_rng(0).normal(size=(20, 3, 16, 16)).astype(np.float32)
    np.savez(tmp_path / "eval.npz", X=X, y=np.arange(20) % 5)  # residual_cnn: 5 classes
    spec = "tests/models.py:residual_cnn"
    own = load_entry_model(spec, str(tmp_path / "eval.npz"), allow_code=True)
    data = cz.encode(own.model).data
    assert cz.artifact.read_header(data)["source"] == spec
    with pytest.raises(ValueError, match="allow_entry_points=True"):
        cz.load(data)
    with torch.no_grad():
        assert torch.equal(cz.load(data, allow_entry_points=True)(own.data.test.X), own.model(own.data.test.X))
        assert torch.equal(cz.load(data, base=models.residual_cnn())(own.data.test.X), own.model(own.data.test.X))
    (tmp_path / "ep.clab").write_bytes(data)
    args = ["evaluate", "--model", str(tmp_path / "ep.clab"), "--data", str(tmp_path / "eval.npz"), "--runs", "20"]
    assert main(args) == 2
    assert "--allow-code" in capsys.readouterr().err
    assert main([*args, "--allow-code"]) == 0


def test_readme_hugging_face_example_runs(tmp_path, monkeypatch, capsys):
    """The README's Hugging Face worked example as written: save a folder, export, evaluate back (refused without
    --base, measured with it), and the Python lines."""
    import json
    import re
    import shlex
    from pathlib import Path

    from compressor.cli import main

    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    section = readme.split("Worked example: a Hugging Face folder", 1)[1].split("\n## ", 1)[0]
    make, use = re.findall(r"```python\n(.*?)```", section, re.S)
    commands = re.search(r"```bash\n(.*?)```", section, re.S).group(1).strip().splitlines()
    monkeypatch.chdir(tmp_path)
    exec(compile(make, "README hf folder", "exec"), {})
    (tmp_path / "int8.json").write_text(json.dumps({"steps": [{"type": "quantize", "bits": 8, "granularity": "channel"}]}))
    for line in commands:
        command, _, comment = line.partition("#")
        args = shlex.split(command)[3:] + (["--runs", "20", "--json"] if "evaluate" in command else [])
        assert main(args) == (2 if comment.strip().startswith("error") else 0), line
    assert "--base FOLDER" in capsys.readouterr().err
    namespace: dict = {}
    exec(compile(use, "README hf load", "exec"), namespace)
    mean_cosine = namespace["report"].fidelity["mean_cosine"]
    assert float(capsys.readouterr().out) == pytest.approx(mean_cosine) and mean_cosine > 0.999
