"""The Export page's files: names that match each other, and a readable table of what an artifact holds."""
from __future__ import annotations

import hashlib
import json
from typing import Any

import pandas as pd

from compressor import Report
from compressor.artifact import Artifact


def file_stem(model_name: str, artifact: Artifact) -> str:
    """'digits-mlp-1a2b3c4d': the model and the first hex digits of the file's SHA-256 (same bytes, same name)."""
    return f"{model_name}-{hashlib.sha256(artifact.data).hexdigest()[:8]}"


def report_csv(report: Report) -> str:
    """The per-layer table, as CSV."""
    return report.to_frame().to_csv(index=False)


def report_json(report: Report) -> str:
    """Everything the report measured, as JSON."""
    return json.dumps(report.to_dict(), indent=2) + "\n"


POSITIONS = {"dense": "none: every value stored", "bitmask": "bitmask", "index": "relative indices"}


def _encoding(entry: dict[str, Any]) -> str:
    quant = entry.get("quant")
    if quant is None:
        return entry["dtype"]
    return f"{quant['bits']}-bit {'k-means' if quant['method'] == 'kmeans' else quant['scheme']} codes"


def contents_table(header: dict[str, Any]) -> pd.DataFrame:
    """One row per stored tensor: how many values are stored, how their positions and values are encoded, bytes."""
    rows = []
    for entry in header["tensors"]:
        total = 1
        for dim in entry["shape"]:
            total *= dim
        rows.append({
            "tensor": entry["name"],
            "shape": "×".join(map(str, entry["shape"])),
            "values stored": f"{entry['count']:,} of {total:,}",
            "positions of non-zeros": POSITIONS.get(entry["positions"]["kind"], entry["positions"]["kind"]),
            "values as": _encoding(entry),
            "bytes": entry["length"],
        })
    return pd.DataFrame(rows)
