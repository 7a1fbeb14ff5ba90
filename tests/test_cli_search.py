"""`python -m compressor search` and `sensitivity`, as real subprocesses."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from compressor.cli import main

ROOT = Path(__file__).resolve().parents[1]


def run_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "compressor", *args], cwd=ROOT, capture_output=True, text=True,
                          timeout=300)


def test_search_json_on_a_journal_file_and_resume(tmp_path):
    storage = str(tmp_path / "s.journal.log")
    args = ["search", "--model", "digits-mlp", "--trials", "6", "--population", "3", "--storage", storage,
            "--study", "cli", "--objectives", "quality,bytes", "--json"]
    first = run_cli(*args)
    assert first.returncode == 0, first.stderr
    out = json.loads(first.stdout)
    assert out["complete_trials"] == 6 and out["front"]
    point = out["front"][0]
    assert {"quality", "bytes", "recipe", "generation"} <= set(point)
    again = run_cli(*[a if a != "6" else "8" for a in args])  # the same study continues to 8 trials
    assert json.loads(again.stdout)["complete_trials"] == 8


def test_mixed_precision_search_deploys_every_policy(tmp_path):
    out = run_cli("search", "--model", "digits-mlp", "--amounts", "off", "--bits", "int8-deployed,fp32", "--objectives",
                  "quality,latency_ms", "--max-drop", "0.02", "--trials", "3", "--population", "2",
                  "--greedy-seeds", "1", "--storage", str(tmp_path / "mp.journal.log"), "--study", "mp", "--json")
    assert out.returncode == 0, out.stderr
    result = json.loads(out.stdout)
    assert result["greedy_seed_evaluations"] >= 3  # one probe per layer, then the bisection's policies
    front = result["front"]
    assert front and all(point["latency_ms"] > 0 and point["baseline_latency_ms"] > 0 for point in front)


@pytest.mark.parametrize("args, message", [
    (["--trials", "0"], "trials=0"),
    (["--storage", "sqlite:///x.db"], "SQLite"),
    (["--bits", "4,x"], "'x' is not a number"),
    (["--amounts", "0.5"], "low,high"),
    (["--greedy-seeds", "30"], "greedy_seeds=30"),
    (["--model", "nope"], "unknown sample model 'nope'"),
])
def test_search_mistakes_exit_2_with_one_line(tmp_path, capsys, args, message):
    base = {"--model": "digits-mlp", "--trials": "2", "--storage": str(tmp_path / "x.log")}
    for flag, value in zip(args[::2], args[1::2]):
        base[flag] = value
    assert main(["search", *[x for kv in base.items() for x in kv]]) == 2
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1


def test_sensitivity_json():
    result = run_cli("sensitivity", "--model", "digits-mlp", "--amounts", "0.9", "--bits", "2", "--rank-ratios", "off",
                     "--json")
    assert result.returncode == 0, result.stderr
    out = json.loads(result.stdout)
    assert len(out["sensitivity"]) == 3 * 2
    assert [row["recipe"] for row in out["greedy_vs_uniform"]][0] == "greedy per layer"
