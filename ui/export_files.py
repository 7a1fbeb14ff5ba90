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
    if model_name.startswith(OWN_PREFIX):
        return _own_load_back(uploads.brought(model_name), stem)
    python = ("import compressor as cz\n\n"
              f'model = cz.load("{stem}.clab")  # an nn.Module in eval mode, rebuilt from the file alone\n'
              f"sample = cz.load_sample({json.dumps(model_name)})\n"
              f"report = cz.evaluate(model, sample.data, baseline=sample.model)\n{_PRINT}")
    measure = (f"# measure the file: accuracy, size, latency against the uncompressed {model_name}\n"
               f"python -m compressor evaluate --model {stem}.clab")
    return python, _shell(measure, f"--model {shlex.quote(model_name)}", stem)


_PRINT = 'print(f"{report.accuracy:.1%}, {report.compressed_bytes:,} bytes")'


def _shell(measure: str, model_args: str, stem: str) -> str:
    return (f"{measure}\n\n# rebuild the same file from the recipe\n"
            f"python -m compressor export {model_args} --recipe {stem}.recipe.json --out {stem}.clab\n\n"
            "# the ONNX graph for ONNX Runtime (int8 / int4 kernels where the weights allow)\n"
            f"python -m compressor export {model_args} --recipe {stem}.recipe.json --out {stem}.onnx --format onnx")


def _own_load_back(meta: dict[str, Any], stem: str) -> tuple[str, str]:
    """Snippets for an own model: loaded as the user brought it (the baseline), the file rebuilt into it."""
    if meta["kind"] == "weights":
        weights = meta.get("shown") or meta["file"]
        loader = f"load_weights({json.dumps(meta['architecture'])}, {json.dumps(weights)})"
        model_args = f"--model {shlex.quote(meta['architecture'])} --weights {shlex.quote(weights)}"
        measure = (f"# measure the file against your weights ({meta['architecture']} architecture, its sample data);\n"
                   "# without --weights it is measured alone (your weights are not in the file)\n"
                   f"python -m compressor evaluate --model {stem}.clab --weights {shlex.quote(weights)}")
    elif meta["kind"] == "hf":
        loader, model_args = f"load_hf_folder({json.dumps(meta['path'])})", f"--model {shlex.quote(meta['path'])}"
        measure = ("# measure the file against your model: the file records your folder's hash, not its architecture,\n"
                   "# so it loads into that folder's model only (--base; another folder is refused)\n"
                   f"python -m compressor evaluate --model {stem}.clab --base {shlex.quote(meta['path'])}")
    else:
        loader = f'load_entry_model({json.dumps(meta["spec"])}, "your_data.npz", allow_code=True)'
        model_args = f"--model {shlex.quote(meta['spec'])} --data your_data.npz --allow-code"
        measure = ("# measure the file against your model: the file names your entry point, which runs only with --allow-code\n"
                   f"python -m compressor evaluate --model {stem}.clab --data your_data.npz --allow-code")
    python = (f"import compressor as cz\nfrom compressor.user_models import {loader.partition('(')[0]}\n\n"
              f"sample = {loader}  # your model as you brought it: the baseline\n"
              f'model = cz.load("{stem}.clab", base=sample.model)  # the compressed file, rebuilt into its architecture\n'
              f"report = cz.evaluate(model, sample.data, baseline=sample.model)\n{_PRINT}")
    return python, _shell(measure, model_args, stem)


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
