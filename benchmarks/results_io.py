"""Where benchmark results live: each script prints its JSON and keeps it in benchmarks/results/<script>.json.

The README's result tables are generated from those files (`python scripts/readme_tables.py`), so a figure in
the README is always the last measured one; tests/test_readme.py fails when they disagree.
"""
from __future__ import annotations

import json
from pathlib import Path

RESULTS_DIR = Path(__file__).resolve().parent / "results"


def results_path(script: str) -> Path:
    """benchmarks/results/<name>.json for a benchmark script's path or name (bench_core.py -> bench_core.json)."""
    return RESULTS_DIR / f"{Path(script).stem}.json"


def emit(results: dict, script: str) -> None:
    """Print `results` as JSON and keep them as the script's last result."""
    print(json.dumps(results, indent=2))
    save(results, script)


def save(results: dict, script: str) -> None:
    """Keep `results` as the script's last result, without printing them (a script that prints its own run)."""
    RESULTS_DIR.mkdir(exist_ok=True)
    results_path(script).write_text(json.dumps(results, indent=2) + "\n")


def load_results(name: str) -> dict:
    """The last results of benchmark `name` (e.g. "bench_core")."""
    return json.loads(results_path(name).read_text())
