"""The README's promises hold: its setup commands are what CI runs, its quickstart code runs as written."""
from __future__ import annotations

import os
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text()


def _first_commands() -> list[str]:
    block = re.search(r"```bash\n(.*?)```", README, re.S).group(1)
    return [line.split("#")[0].strip() for line in block.strip().splitlines()]


def test_readme_opens_with_the_app_and_test_commands_that_ci_runs():
    app, tests = _first_commands()
    assert app.endswith("streamlit run app.py")
    assert "pytest" in tests
    ci = (ROOT / ".ci" / "run").read_text()
    for part in tests.split("&&"):
        assert part.strip() in ci, f"CI does not run {part.strip()!r}"


def test_quickstart_runs_as_written(tmp_path, monkeypatch):
    code = re.search(r"## Quickstart \(library\)\n\n```python\n(.*?)```", README, re.S).group(1)
    monkeypatch.chdir(tmp_path)
    namespace: dict = {}
    exec(compile(code, "README quickstart", "exec"), namespace)
    assert os.path.getsize(tmp_path / "mlp.clab") == namespace["report"].compressed_bytes
    assert namespace["report"].accuracy > 0.5


def test_result_tables_agree_with_the_benchmarks_last_json():
    """Every marked table is regenerated from benchmarks/results/*.json; the README must already say the same."""
    from scripts.readme_tables import TABLES, render

    names = re.findall(r"<!-- table:([\w-]+) -->", README)
    assert sorted(names) == sorted(TABLES), "every generated table appears in the README exactly once"
    assert render(README) == README, "README tables are stale: run python scripts/readme_tables.py"


def test_table_generator_rewrites_a_stale_figure_and_rejects_unknown_tables():
    from scripts.readme_tables import render

    stale = README.replace("<!-- table:criteria -->\n", "<!-- table:criteria -->\n| stale | 99.99% |\n", 1)
    assert stale != README and render(stale) == README
    with pytest.raises(ValueError, match="unknown README table 'nope'"):
        render("<!-- table:nope -->\n<!-- /table:nope -->")
