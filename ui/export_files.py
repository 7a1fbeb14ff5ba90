"""The Export page's files: names that match each other, and a readable table of what an artifact holds."""
from __future__ import annotations

import hashlib
import json
import shlex
from typing import Any

import pandas as pd

from compressor import Report
from compressor.artifact import Artifact
from ui import uploads
from ui.session import OWN_PREFIX, file_label


def file_stem(model_name: str, artifact: Artifact) -> str:
    """'digits-mlp-1a2b3c4d': the model's file label (ui.session.file_label: never the session id) and the first
    hex digits of the file's SHA-256 (same bytes, same name)."""
    return f"{file_label(model_name)}-{hashlib.sha256(artifact.data).hexdigest()[:8]}"


def load_back(model_name: str, stem: str) -> tuple[str, str]:
    """The Export page's "Load it back" snippets (Python, shell) for the files named `stem`: a sample by its name; an
    own model as the user brought it (their file names, never the session id), with that as the baseline."""
    if not model_name.startswith(OWN_PREFIX):
        loader, model_args = ("", f"sample = cz.load_sample({json.dumps(model_name)})"), f"--model {shlex.quote(model_name)}"
        python = (f'model = cz.load("{stem}.clab")  # an nn.Module in eval mode, rebuilt from the file alone\n'
                  f"{loader[1]}\nreport = cz.evaluate(model, sample.data, baseline=sample.model)")
        measure = (f"# measure the file: accuracy, size, latency against the uncompressed {model_name}\n"
                   f"python -m compressor evaluate --model {stem}.clab")
    else:
        loader, model_args = _own_loader(uploads.brought(model_name))
        python = (f"sample = {loader[1]}  # your model as you brought it: the baseline\n"
                  f'model = cz.load("{stem}.clab", base=sample.model)  # the compressed file, rebuilt into its architecture\n'
                  "report = cz.evaluate(model, sample.data, baseline=sample.model)")
        measure = _own_measure(uploads.brought(model_name), stem)
    imports = "\n".join(line for line in ("import compressor as cz", loader[0]) if line)
    python = f'{imports}\n\n{python}\nprint(f"{{report.accuracy:.1%}}, {{report.compressed_bytes:,}} bytes")'
    shell = (f"{measure}\n\n# or rebuild the same file from the recipe\n"
             f"python -m compressor export {model_args} --recipe {stem}.recipe.json --out {stem}.clab\n\n"
             "# the ONNX graph for ONNX Runtime (int8 / int4 kernels where the weights allow)\n"
             f"python -m compressor export {model_args} --recipe {stem}.recipe.json --out {stem}.onnx --format onnx")
    return python, shell


def _own_loader(meta: dict[str, Any]) -> tuple[tuple[str, str], str]:
    """((import line, call), CLI model arguments) that load an own model as the user brought it."""
    if meta["kind"] == "weights":
        weights = meta.get("shown") or meta["file"]
        call = f"load_weights({json.dumps(meta['architecture'])}, {json.dumps(weights)})"
        args = f"--model {shlex.quote(meta['architecture'])} --weights {shlex.quote(weights)}"
    elif meta["kind"] == "hf":
        call, args = f"load_hf_folder({json.dumps(meta['path'])})", f"--model {shlex.quote(meta['path'])}"
    else:
        call = f'load_entry_model({json.dumps(meta["spec"])}, "your_data.npz", allow_code=True)'
        args = f"--model {shlex.quote(meta['spec'])} --data your_data.npz --allow-code"
    return (f"from compressor.user_models import {call.partition('(')[0]}", call), args


def _own_measure(meta: dict[str, Any], stem: str) -> str:
    """How to measure the exported file of an own model from the command line."""
    if meta["kind"] == "weights":
        weights = shlex.quote(meta.get("shown") or meta["file"])
        return (f"# measure the file against your weights ({meta['architecture']} architecture, its sample data);\n"
                f"# without --weights it is measured alone (your weights are not in the file)\n"
                f"python -m compressor evaluate --model {stem}.clab --weights {weights}")
    return ("# the file holds the compressed tensors; its architecture is your model's, so it is rebuilt from\n"
            "# your model (Python, above): `evaluate --model FILE.clab` alone cannot rebuild it")


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
