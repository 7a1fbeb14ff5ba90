"""A fuzz campaign against the command line, printed as JSON: `python benchmarks/fuzz_cli.py [--root DIR]`.

Every case runs `python -m compressor ...` in a subprocess of the checkout at --root (default: this one), with a
timeout and an address-space limit, and is classified from the outside:

    clean_error       exit 2, stderr is one line starting "error:" (what a user's mistake must give)
    traceback         "Traceback" on stderr
    hang              killed by the timeout
    crash             killed by a signal, or any other exit status without a traceback
    out_of_memory     the address-space limit was hit (MemoryError, or torch/numpy "can't allocate")
    silent_success    exit 0 on an input that is wrong (NaN data, out-of-range labels, a file naming code, ...)
    code_execution    a marker file written by code that a crafted file named (the file chose code to run)
    ok                exit 0 where success is right; `false_rejection` counts valid inputs that were refused

The cases are built without importing the code under test (so the same script measures an old checkout):
artifacts are exported by the checkout's own CLI, then truncated, bit-flipped, or re-framed with a crafted
header (the prefix layout is read from the exported file; versions 1 and 2 of the format are both framed).
Case families: artifact bytes, crafted headers, entry points, .npz data, --input-shape, recipes, numeric flags.
Recipe cases are counted separately too ("by_family"), since recipe parsing lives in compressor/recipe.py.
"""
from __future__ import annotations

import argparse
import collections
import concurrent.futures
import io
import json
import os
import random
import resource
import struct
import subprocess
import sys
import tempfile
import time
import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
PREFIX = struct.Struct("<8sHBIQI")  # magic, version, header codec, header length, file length, CRC-32
MEMORY_LIMIT = 3 * 2**30  # bytes of address space per case (torch alone maps about 0.7 GB)
TIMEOUT_S = 300.0  # generous: on a shared, loaded machine importing torch alone can take a minute
FAST = ["--runs", "20", "--batch-size", "8"]


@dataclass
class Case:
    family: str
    name: str
    args: list[str]
    expect: str  # "error": the input is wrong; "ok": it is valid; "any": either a valid result or a clean error
    marker: Path | None = None  # a file that exists afterwards only if crafted code ran


@dataclass
class Outcome:
    case: Case
    kind: str
    seconds: float
    detail: str = ""


# ---- artifact framing (both format versions) --------------------------------------------------------------------


def unframe(data: bytes) -> tuple[int, int, dict, bytes]:
    """(version, header codec, header dict, blobs) of an exported artifact."""
    _, version, codec, header_length, _, _ = PREFIX.unpack_from(data)
    stored = data[PREFIX.size : PREFIX.size + header_length]
    text = zlib.decompress(stored, -15) if codec == 1 else stored
    return version, codec, json.loads(text), data[PREFIX.size + header_length :]


def frame(version: int, codec: int, header_bytes: bytes, blobs: bytes) -> bytes:
    """Prefix + header + blobs with a valid checksum for `version` (2 also covers the prefix fields)."""
    body = header_bytes + blobs
    fields = struct.pack("<HBIQ", version, codec, len(header_bytes), PREFIX.size + len(body))
    crc = zlib.crc32(body) if version == 1 else zlib.crc32(body, zlib.crc32(fields))
    return PREFIX.pack(b"\x89CMPLAB\n", version, codec, len(header_bytes), PREFIX.size + len(body), crc) + body


def deflate(data: bytes) -> bytes:
    c = zlib.compressobj(9, zlib.DEFLATED, -15)
    return c.compress(data) + c.flush()


def deflate_zeros(n: int) -> bytes:
    """Raw DEFLATE of n zero bytes, built in chunks (1 GiB gives about 1 MB)."""
    c, chunk, out = zlib.compressobj(9, zlib.DEFLATED, -15), bytes(2**24), []
    for _ in range(n // len(chunk)):
        out.append(c.compress(chunk))
    out.append(c.compress(bytes(n % len(chunk))))
    return b"".join(out) + c.flush()


def reframe(base: bytes, header: dict, blobs: bytes | None = None, compress: bool = True) -> bytes:
    version, _, _, old_blobs = unframe(base)
    text = json.dumps(header).encode()
    return frame(version, 1 if compress else 0, deflate(text) if compress else text, old_blobs if blobs is None else blobs)


# ---- case families ------------------------------------------------------------------------------------------------


def artifact_cases(work: Path, base: bytes, rng: random.Random) -> list[Case]:
    cases: list[Case] = []

    def add(name: str, data: bytes, expect: str = "error", marker: Path | None = None, extra: list[str] = ()) -> None:
        path = work / f"art_{len(cases)}.clab"
        path.write_bytes(data)
        cases.append(Case("artifact", name, ["evaluate", "--model", str(path), *FAST, *extra], expect, marker))

    add("empty file with magic only", base[:8])
    for cut in sorted({9, 15, 26, 40, len(base) // 2, len(base) - 1}):
        add(f"truncated at {cut}", base[:cut])
    add("appended bytes", base + b"\0" * 7)
    for position in [8, 10, 11, 12, 15, 23] + rng.sample(range(27, len(base)), 6):
        data = bytearray(base)
        data[position] ^= 1 << rng.randrange(8)
        add(f"bit flip at {position}", bytes(data))
    return cases


def header_cases(work: Path, base: bytes, rng: random.Random) -> list[Case]:
    """Headers re-framed with a valid checksum: only the reader's own checks stand between them and harm."""
    cases: list[Case] = []
    _, _, header, blobs = unframe(base)

    def add(name: str, data: bytes, expect: str = "error", marker: Path | None = None) -> None:
        path = work / f"hdr_{len(cases)}.clab"
        path.write_bytes(data)
        cases.append(Case("header", name, ["evaluate", "--model", str(path), *FAST], expect, marker))

    def edited(**changes) -> dict:
        return {**json.loads(json.dumps(header)), **changes}

    # the file names code to run
    for i, attr in enumerate(("touch", "touch_and_build")):
        marker = work / f"ran_{i}"
        (work / f"pwn{i}.py").write_text(
            f"from pathlib import Path\nfrom torch import nn\n"
            f"def touch():\n    Path({str(marker)!r}).write_text('ran')\n"
            f"def touch_and_build():\n    touch()\n    return nn.Linear(64, 10)\n")
        add(f"source names a file entry point ({attr})", reframe(base, edited(source=f"{work}/pwn{i}.py:{attr}")),
            marker=marker)
    for source in ("os:abort", "sys:exit", "builtins:input", "this:s", "tests.models:residual_cnn",
                   "digits-mlp@width=nan", "digits-mlp@width=0.4", "digits-xl", 42):
        add(f"source {source!r}", reframe(base, edited(source=source)), expect="any" if source in ("digits-mlp@width=0.4",) else "error")

    # huge constructor arguments from a few bytes
    big = edited(modules=[{"name": "fc1", "type": "Linear", "args": {"in_features": 30000, "out_features": 30000, "bias": True}}])
    add("Linear(30000, 30000) in modules", reframe(base, big))
    big = edited(modules=[{"name": "fc1", "type": "Conv2d", "args": {"in_channels": 4096, "out_channels": 4096,
                                                                      "kernel_size": [64, 64], "stride": 1, "padding": 0,
                                                                      "dilation": 1, "groups": 1, "bias": True,
                                                                      "padding_mode": "zeros"}}])
    add("Conv2d 4096x4096x64x64 in modules", reframe(base, big))
    add("LayerNorm 1e9 in modules", reframe(base, edited(modules=[{"name": "fc1", "type": "LayerNorm",
                                                                  "args": {"normalized_shape": [1000000000]}}])))
    add("BatchNorm1d 2e9 in modules", reframe(base, edited(modules=[{"name": "fc1", "type": "BatchNorm1d",
                                                                    "args": {"num_features": 2000000000}}])))
    deep = [{"name": ".".join(["fc1"] + ["0"] * i), "type": "Sequential", "args": {"children": ["0"]}} for i in range(3000)]
    add("Sequential nested 3000 deep", reframe(base, edited(modules=deep)))
    add("module type 'os.system'", reframe(base, edited(modules=[{"name": "fc1", "type": "system", "args": {}}])))
    add("module args not a dict", reframe(base, edited(modules=[{"name": "fc1", "type": "Linear", "args": [1, 2]}])))
    add("modules not a list", reframe(base, edited(modules="fc1")))

    # tensors: shapes, counts, offsets, segments
    first = header["tensors"][0]
    tensor_edits = {
        "shape 1.5e9": {"shape": [1500000000]},
        "shape 2^62": {"shape": [2**31, 2**31]},
        "shape negative": {"shape": [-1, 64]},
        "shape string": {"shape": "64"},
        "count huge": {"count": 10**12},
        "count negative": {"count": -5},
        "offset negative": {"offset": -100},
        "dtype unknown": {"dtype": "complex128"},
        "positions kind unknown": {"positions": {"kind": "magic"}},
        "positions bits 64": {"positions": {"kind": "index", "bits": 64, "entries": 5}},
        "segments empty": {"segments": []},
        "segment raw_length 1 GiB": {"segments": [{**s, "raw_length": 2**30} for s in first["segments"]]},
        "segment raw_length negative": {"segments": [{**s, "raw_length": -1} for s in first["segments"]]},
        "segment length huge": {"segments": [{**s, "length": 10**12} for s in first["segments"]]},
        "quant bits 60": {"quant": {"bits": 60, "method": "uniform", "scheme": "affine", "granularity": "tensor"}},
        "quant method eval": {"quant": {"bits": 4, "method": "eval", "scheme": "affine", "granularity": "tensor"}},
        "quant extra key": {"quant": {"bits": 4, "method": "uniform", "scheme": "affine", "granularity": "tensor",
                                      "scale": 1}},
        "name unknown": {"name": "evil.weight"},
    }
    for label, change in tensor_edits.items():
        tensors = [dict(t) for t in header["tensors"]]
        tensors[0].update(change)
        add(f"tensor {label}", reframe(base, edited(tensors=tensors)))
    add("tensors not a list", reframe(base, edited(tensors={"a": 1})))
    add("tensor entry not a dict", reframe(base, edited(tensors=[1, 2, 3])))
    add("tensors empty", reframe(base, edited(tensors=[])))
    add("tensor listed twice", reframe(base, edited(tensors=header["tensors"] + header["tensors"][:1])))
    add("input_quant bits 1000", reframe(base, edited(input_quant={"fc1": {"bits": 1000, "scale": 1.0, "zero_point": 0}})))
    add("input_quant on unknown layer", reframe(base, edited(input_quant={"nope": {"bits": 8, "scale": 1.0, "zero_point": 0}})))
    add("input_quant scale NaN", reframe(base, edited(input_quant={"fc1": {"bits": 8, "scale": "NaN", "zero_point": 0}})))
    add("recipe not a dict", reframe(base, edited(recipe=[1, 2])))
    add("recipe with unknown step", reframe(base, edited(recipe={"steps": [{"type": "rm -rf"}]})))
    add("recipe nested 100000 deep", _deep_recipe_artifact(base, header))
    add("format field 99", reframe(base, edited(format=99)))
    add("header missing keys", reframe(base, {"format": 1}))
    add("header is a list", reframe(base, [1, 2, 3]))  # type: ignore[arg-type]
    add("header not UTF-8", frame(unframe(base)[0], 0, b"\xff\xfe{}", blobs))
    add("header not JSON", frame(unframe(base)[0], 0, b"{not json", blobs))
    add("header JSON nested 100000 deep", frame(unframe(base)[0], 0, b"[" * 100000 + b"]" * 100000, blobs))
    add("header deflate of 1 GiB", frame(unframe(base)[0], 1, deflate_zeros(2**30), blobs))
    add("header deflate stream invalid", frame(unframe(base)[0], 1, b"\xff" * 64, blobs))
    add("header codec 7", frame(unframe(base)[0], 7, json.dumps(header).encode(), blobs))

    # a segment that inflates to 1 GiB, claimed by a tensor whose shape says so
    bomb = deflate_zeros(2**30)
    tensors = [dict(t) for t in header["tensors"]]
    tensors[0].update(shape=[2**28], count=2**28, positions={"kind": "dense"}, offset=0, length=len(bomb),
                      segments=[{"role": "values", "codec": "deflate", "length": len(bomb), "raw_length": 2**30}])
    for t in tensors[1:]:
        t["offset"] += len(bomb) - header["tensors"][0]["length"]
    add("segment inflating to 1 GiB (shape says 2^28 floats)",
        reframe(base, edited(tensors=tensors), blobs=bomb + blobs[header["tensors"][0]["length"]:]))
    return cases


def _deep_recipe_artifact(base: bytes, header: dict) -> bytes:
    text = json.dumps({**header, "recipe": None}).encode().replace(b'"recipe": null', b'"recipe": ' + b"[" * 100000 + b"]" * 100000)
    version = unframe(base)[0]
    return frame(version, 1, deflate(text), unframe(base)[3])


def entry_point_cases(work: Path) -> list[Case]:
    (work / "raises.py").write_text("raise RuntimeError('boom at import')\n")
    (work / "factories.py").write_text(
        "import torch\n"
        "def raises():\n    raise KeyError('boom')\n"
        "def returns_none():\n    return None\n"
        "def recurse():\n    return recurse()\n"
        "def model():\n    return torch.nn.Linear(64, 10)\n"
        "def data_nan():\n    return torch.full((20, 64), float('nan')), torch.zeros(20, dtype=torch.long)\n"
        "def data_str():\n    return 'X'\n"
        "def data_three():\n    return torch.zeros(4, 64), torch.zeros(4), torch.zeros(4)\n"
        "def data_labels_out_of_range():\n    return torch.zeros(20, 64), torch.full((20,), 99)\n")
    (work / "syntax.py").write_text("def (:\n")
    f = work / "factories.py"
    specs = {
        f"{work}/raises.py:model": "error", f"{f}:raises": "error", f"{f}:returns_none": "error",
        f"{f}:recurse": "error", f"{work}/syntax.py:model": "error", f"{work}/missing.py:model": "error",
        "nonexistent_module_xyz:model": "error", "tests.models:nothing": "error", "json:loads": "error",
        "tests.models:ResidualCNN": "ok",
    }
    cases = [Case("entry_point", f"--model {spec}", ["evaluate", "--model", spec, "--input-shape", "4,3,16,16", *FAST],
                  expect) for spec, expect in specs.items()]
    for attr, expect in (("data_nan", "error"), ("data_str", "error"), ("data_three", "error"),
                         ("data_labels_out_of_range", "error"), ("raises", "error"), ("recurse", "error")):
        cases.append(Case("entry_point", f"--data {attr}", ["evaluate", "--model", f"{f}:model", "--data",
                                                              f"{f}:{attr}", *FAST], expect))
    return cases


def npz_bytes(**arrays) -> bytes:
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    return buffer.getvalue()


def zip_bomb_npz(nbytes: int) -> bytes:
    """An .npz whose X.npy member deflates nbytes of zeros (float32) into about nbytes/1000."""
    header = b"\x93NUMPY\x01\x00"
    meta = repr({"descr": "<f4", "fortran_order": False, "shape": (nbytes // 256, 64)}).encode()
    meta += b" " * (63 - (10 + len(meta)) % 64) + b"\n"
    head = header + struct.pack("<H", len(meta)) + meta
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        with archive.open("X.npy", "w", force_zip64=True) as member:
            member.write(head)
            chunk = bytes(2**24)
            for _ in range(nbytes // len(chunk)):
                member.write(chunk)
    return buffer.getvalue()


def lying_npy_npz(shape: tuple[int, ...]) -> bytes:
    """An .npz whose X.npy header claims `shape` but holds 16 bytes."""
    meta = repr({"descr": "<f4", "fortran_order": False, "shape": shape}).encode()
    meta += b" " * (63 - (10 + len(meta)) % 64) + b"\n"
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_STORED) as archive:
        archive.writestr("X.npy", b"\x93NUMPY\x01\x00" + struct.pack("<H", len(meta)) + meta + bytes(16))
    return buffer.getvalue()


def data_cases(work: Path) -> list[Case]:
    from sklearn.datasets import load_digits

    digits = load_digits()
    X, y = (digits.data[:200] / 16).astype(np.float32), digits.target[:200].astype(np.int64)
    files = {
        "valid": (npz_bytes(X=X, y=y), "ok"),
        "valid without labels": (npz_bytes(X=X), "ok"),
        "X wrong width": (npz_bytes(X=X[:, :50], y=y), "error"),
        "X as images for the MLP": (npz_bytes(X=X.reshape(-1, 1, 8, 8), y=y), "any"),  # the MLP flattens them
        "X 1-D": (npz_bytes(X=X[0], y=y[:1]), "error"),
        "X scalar": (npz_bytes(X=np.float32(3)), "error"),
        "X empty": (npz_bytes(X=X[:0], y=y[:0]), "error"),
        "X all NaN": (npz_bytes(X=np.full_like(X, np.nan), y=y), "error"),
        "X one inf": (npz_bytes(X=np.where(np.arange(X.size).reshape(X.shape) == 5, np.inf, X).astype(np.float32), y=y), "error"),
        "X complex": (npz_bytes(X=X.astype(np.complex64), y=y), "error"),
        "X strings": (npz_bytes(X=np.array(["a"] * 200), y=y), "error"),
        "X bool": (npz_bytes(X=X > 0.5, y=y), "any"),
        "X float64 huge values": (npz_bytes(X=X.astype(np.float64) * 1e300, y=y), "error"),
        "y NaN": (npz_bytes(X=X, y=np.full(200, np.nan)), "error"),
        "y float 0.5": (npz_bytes(X=X, y=y + 0.5), "error"),
        "y float integral": (npz_bytes(X=X, y=y.astype(np.float64)), "any"),
        "y negative": (npz_bytes(X=X, y=-y - 1), "error"),
        "y 10 for 10 classes": (npz_bytes(X=X, y=np.full(200, 10)), "error"),
        "y 2^40": (npz_bytes(X=X, y=np.full(200, 2**40)), "error"),
        "y wrong length": (npz_bytes(X=X, y=y[:100]), "error"),
        "y 2-D": (npz_bytes(X=X, y=np.stack([y, y], 1)), "error"),
        "y strings": (npz_bytes(X=X, y=np.array(["1"] * 200)), "error"),
        "no X": (npz_bytes(Z=X), "error"),
        "object array (needs pickle)": (npz_bytes(X=np.array([X, None], dtype=object)), "error"),
        "not a zip": (b"hello, not a zip", "error"),
        "empty file": (b"", "error"),
        "truncated zip": (npz_bytes(X=X, y=y)[:500], "error"),
        "zip bomb 4 GiB": (zip_bomb_npz(2**32), "error"),
        "npy header claims 1e12 elements": (lying_npy_npz((10**6, 10**6)), "error"),
        "npy header claims negative shape": (lying_npy_npz((-1, 64)), "error"),
    }
    cases = []
    for i, (name, (data, expect)) in enumerate(files.items()):
        path = work / f"data_{i}.npz"
        path.write_bytes(data)
        cases.append(Case("data", name, ["evaluate", "--model", "digits-mlp", "--data", str(path), *FAST], expect))
    cases.append(Case("data", "data is a directory", ["evaluate", "--model", "digits-mlp", "--data", str(work), *FAST], "error"))
    cases.append(Case("data", "data file.npz is a directory", ["evaluate", "--model", "digits-mlp", "--data",
                                                               str(_dir(work / "d.npz")), *FAST], "error"))
    return cases


def _dir(path: Path) -> Path:
    path.mkdir(exist_ok=True)
    return path


def shape_cases() -> list[Case]:
    model = ["evaluate", "--model", "tests.models:residual_cnn", *FAST]
    shapes = {"4,3,16,16": "ok", "64": "error", "0": "error", "-1": "error", "4,3,0,16": "error", "4,64": "error",
              "1e9": "error", "100000,3,1000,1000": "error", "4,,3": "error", "": "error", "4,3,16,16,": "error",
              "99999999999999999999": "error", " 4, 3, 16, 16": "any"}
    cases = [Case("input_shape", f"--input-shape {s!r}", model + ["--input-shape", s], e) for s, e in shapes.items()]
    cases.append(Case("input_shape", "--input-shape on a sample (does not apply)",
                      ["evaluate", "--model", "digits-mlp", "--input-shape", "8,64", *FAST], "error"))
    return cases


def recipe_cases(work: Path) -> list[Case]:
    texts = {
        "empty steps (valid)": ('{"steps": []}', "ok"),
        "prune 0.5 (valid)": ('{"steps": [{"type": "prune", "amount": 0.5}]}', "ok"),
        "empty file": ("", "error"),
        "whitespace": ("   \n", "error"),
        "not JSON": ("{steps", "error"),
        "a list": ("[]", "error"),
        "a number": ("3", "error"),
        "null": ("null", "error"),
        "no steps": ("{}", "error"),
        "steps not a list": ('{"steps": {}}', "error"),
        "step type a number": ('{"steps": [{"type": 3}]}', "error"),
        "step type a list": ('{"steps": [{"type": ["prune"]}]}', "error"),
        "step type a dict": ('{"steps": [{"type": {"a": 1}}]}', "error"),
        "step not an object": ('{"steps": [1]}', "error"),
        "nested 100000 deep": ('{"steps": ' + "[" * 100000 + "]" * 100000 + "}", "error"),
        "amount 2": ('{"steps": [{"type": "prune", "amount": 2}]}', "error"),
        "amount NaN": ('{"steps": [{"type": "prune", "amount": NaN}]}', "error"),
        "amount a string": ('{"steps": [{"type": "prune", "amount": "0.5"}]}', "error"),
        "bits 0": ('{"steps": [{"type": "quantize", "bits": 0}]}', "error"),
        "bits 1e300": ('{"steps": [{"type": "quantize", "bits": 1e300}]}', "error"),
        "rank 1e18": ('{"steps": [{"type": "low_rank", "rank": 1000000000000000000}]}', "error"),
        "epochs 1e30": ('{"steps": [{"type": "finetune", "epochs": 1e30}]}', "error"),
        "epochs 1000000": ('{"steps": [{"type": "finetune", "epochs": 1000000}]}', "error"),
        "lr 1e308": ('{"steps": [{"type": "finetune", "lr": 1e308}]}', "error"),
        "batch_size 0": ('{"steps": [{"type": "finetune", "batch_size": 0}]}', "error"),
        "agp steps 1e9": ('{"steps": [{"type": "prune", "amount": 0.5, "schedule": "agp", "steps": 1000000000}]}', "error"),
        "unknown key": ('{"steps": [{"type": "prune", "amount": 0.5, "sparsity": 0.9}]}', "error"),
        "overrides with a list": ('{"steps": [{"type": "prune", "amount": 0.5, "overrides": {"fc1": [1]}}]}', "error"),
        "huge string value": ('{"steps": [{"type": "prune", "amount": "' + "9" * 1_000_000 + '"}]}', "error"),
        "huge integer literal": ('{"steps": [{"type": "quantize", "bits": ' + "9" * 5000 + "}]}", "error"),
        "layers matching nothing": ('{"steps": [{"type": "prune", "amount": 0.5, "layers": ["nope*"]}]}', "error"),
        "not UTF-8": ("\udcff", "error"),
    }
    cases = []
    for i, (name, (text, expect)) in enumerate(texts.items()):
        path = work / f"recipe_{i}.json"
        path.write_bytes(text.encode("utf-8", "surrogateescape"))
        cases.append(Case("recipe", name, ["evaluate", "--model", "digits-mlp", "--recipe", str(path), *FAST], expect))
    empty = work / "recipe_empty_steps.json"
    empty.write_text('{"steps": []}')
    cases.append(Case("recipe", "export with empty steps (valid)", ["export", "--model", "digits-mlp", "--recipe",
                                                                   str(empty), "--out", str(work / "empty.clab")], "ok"))
    cases.append(Case("recipe", "--recipe ''", ["evaluate", "--model", "digits-mlp", "--recipe", "", *FAST], "error"))
    cases.append(Case("recipe", "export --recipe ''", ["export", "--model", "digits-mlp", "--recipe", "",
                                                       "--out", str(work / "x.clab")], "error"))
    cases.append(Case("recipe", "recipe is a directory", ["evaluate", "--model", "digits-mlp", "--recipe", str(work), *FAST],
                      "error"))
    return cases


def flag_cases(work: Path) -> list[Case]:
    base = ["evaluate", "--model", "digits-mlp"]
    cases = [Case("flags", " ".join(extra), base + extra, expect) for extra, expect in (
        (["--runs", "0"], "error"), (["--runs", "-5"], "error"), (["--runs", "1000000000"], "error"),
        (["--batch-size", "0", "--runs", "20"], "error"), (["--batch-size", "1000000000000", "--runs", "20"], "error"),
        (["--threads", "0", "--runs", "20"], "error"), (["--threads", "100000", "--runs", "20"], "error"),
        (["--runs", "abc"], "error"),
    )]
    cases += [
        Case("flags", "--model ''", ["evaluate", "--model", "", *FAST], "error"),
        Case("flags", "--model a directory", ["evaluate", "--model", str(work), *FAST], "error"),
        Case("flags", "--model README.md", ["evaluate", "--model", "README.md", *FAST], "error"),
        Case("flags", "--out into a missing directory", ["export", "--model", "digits-mlp", "--recipe",
                                                         str(work / "recipe_1.json"), "--out", "/nonexistent/dir/x.clab"], "error"),
        Case("flags", "--out is a directory", ["export", "--model", "digits-mlp", "--recipe",
                                               str(work / "recipe_1.json"), "--out", str(work)], "error"),
    ]
    return cases


# One case per kind of harm named in issue 7 §2, for a loaded machine where the full set takes too long.
QUICK = (
    "valid artifact", "truncated at 15", "bit flip at 11", "source 'os:abort'", "source 'sys:exit'",
    "source names a file entry point (touch)", "source 42", "Linear(30000, 30000) in modules", "tensor shape 1.5e9",
    "header deflate of 1 GiB", "segment inflating to 1 GiB (shape says 2^28 floats)", "Sequential nested 3000 deep",
    f"--model {{work}}/raises.py:model", "--data raises", "X wrong width", "X all NaN", "X complex", "y NaN",
    "y 10 for 10 classes", "empty file", "zip bomb 4 GiB", "--input-shape '64'", "--input-shape on a sample (does not apply)",
    "--recipe ''", "export with empty steps (valid)", "step type a list", "nested 100000 deep", "--runs abc",
)


# ---- running ------------------------------------------------------------------------------------------------------


def _limit_memory() -> None:
    resource.setrlimit(resource.RLIMIT_AS, (MEMORY_LIMIT, MEMORY_LIMIT))


def run_case(root: Path, case: Case, timeout: float) -> Outcome:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONHASHSEED": "0"}
    start = time.perf_counter()
    try:
        out = subprocess.run([sys.executable, "-m", "compressor", *case.args], cwd=root, capture_output=True,
                             text=True, timeout=timeout, preexec_fn=_limit_memory, env=env, errors="replace")
    except subprocess.TimeoutExpired:
        return Outcome(case, "hang", time.perf_counter() - start)
    seconds = time.perf_counter() - start
    err = out.stderr.strip()
    last = err.splitlines()[-1][:300] if err else ""
    if case.marker is not None and case.marker.exists():
        return Outcome(case, "code_execution", seconds, last)
    if "MemoryError" in err or "can't allocate" in err or "DefaultCPUAllocator" in err or "out of memory" in err.lower():
        return Outcome(case, "out_of_memory", seconds, last)
    if "Traceback" in err:
        return Outcome(case, "traceback", seconds, last)
    if out.returncode < 0:
        return Outcome(case, "crash", seconds, f"signal {-out.returncode}")
    if out.returncode == 0:
        return Outcome(case, "silent_success" if case.expect == "error" else "ok", seconds)
    if out.returncode == 2 and len(err.splitlines()) == 1 and err.startswith("error:"):
        return Outcome(case, "false_rejection" if case.expect == "ok" else "clean_error", seconds, last)
    return Outcome(case, "crash", seconds, f"exit {out.returncode}: {last}")


def build_cases(root: Path, work: Path, seed: int) -> list[Case]:
    rng = random.Random(seed)
    recipe = work / "base_recipe.json"
    recipe.write_text(json.dumps({"steps": [{"type": "prune", "amount": 0.8}, {"type": "quantize", "bits": 4}]}))
    base_path = work / "base.clab"
    made = subprocess.run([sys.executable, "-m", "compressor", "export", "--model", "digits-mlp", "--recipe", str(recipe),
                           "--out", str(base_path)], cwd=root, capture_output=True, text=True)
    if made.returncode != 0:
        raise SystemExit(f"cannot export the base artifact with {root}: {made.stderr}")
    base = base_path.read_bytes()
    cases = [Case("artifact", "valid artifact", ["evaluate", "--model", str(base_path), *FAST], "ok")]
    cases += artifact_cases(work, base, rng) + header_cases(work, base, rng) + entry_point_cases(work)
    cases += data_cases(work) + shape_cases() + recipe_cases(work) + flag_cases(work)
    return cases


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", type=Path, default=ROOT, help="checkout whose CLI is fuzzed")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--timeout", type=float, default=TIMEOUT_S)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--details", action="store_true", help="list every case that is not ok or a clean error")
    parser.add_argument("--quick", action="store_true", help="only the QUICK cases (one per kind of harm)")
    parser.add_argument("--log", type=Path, help="append one JSON line per finished case (partial results survive)")
    args = parser.parse_args()
    root = args.root.resolve()
    with tempfile.TemporaryDirectory(prefix="fuzz_cli_") as tmp:
        work = Path(tmp)
        cases = build_cases(root, work, args.seed)
        if args.quick:
            cases = [case for case in cases if case.name in {name.format(work=work) for name in QUICK}]
        start = time.perf_counter()
        def run_and_log(case: Case) -> Outcome:
            outcome = run_case(root, case, args.timeout)
            if args.log:
                with args.log.open("a") as log:
                    log.write(json.dumps({"family": case.family, "case": case.name, "kind": outcome.kind,
                                          "seconds": round(outcome.seconds, 1), "detail": outcome.detail}) + "\n")
            return outcome

        with concurrent.futures.ThreadPoolExecutor(args.workers) as pool:
            outcomes = list(pool.map(run_and_log, cases))
        wall = time.perf_counter() - start
    counts = collections.Counter(o.kind for o in outcomes)
    by_family: dict[str, collections.Counter] = collections.defaultdict(collections.Counter)
    for o in outcomes:
        by_family[o.case.family][o.kind] += 1
    report = {
        "root": str(root),
        "cases": len(outcomes),
        **{kind: counts.get(kind, 0) for kind in ("clean_error", "traceback", "hang", "crash", "out_of_memory",
                                                  "silent_success", "code_execution", "ok", "false_rejection")},
        "by_family": {family: dict(c) for family, c in sorted(by_family.items())},
        "timeout_s": args.timeout,
        "memory_limit_bytes": MEMORY_LIMIT,
        "workers": args.workers,
        "wall_s": round(wall, 1),
        "python": sys.version.split()[0],
    }
    if args.details:
        report["problems"] = [{"family": o.case.family, "case": o.case.name, "kind": o.kind, "detail": o.detail}
                              for o in outcomes if o.kind not in ("ok", "clean_error")]
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
