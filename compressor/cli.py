"""`python -m compressor`: list samples, evaluate a recipe on a model, export the compressed artifact."""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from torch import nn

from compressor import artifact
from compressor.data import DataSplits
from compressor.latency import LatencyConfig
from compressor.models import baseline_source, build_model, is_entry_point, list_samples, load_data, parse_shape, random_data
from compressor.pipeline import compress
from compressor.recipe import Recipe
from compressor.report import Report, evaluate
from compressor.state import source_of


def _is_artifact(spec: str) -> bool:
    return Path(spec).is_file() and artifact.is_artifact(spec)


def open_model(spec: str) -> nn.Module:
    """A sample name, an exported artifact, or an entry point returning an nn.Module."""
    if _is_artifact(spec):
        return artifact.load(spec)
    if spec in list_samples() or is_entry_point(spec):
        return build_model(spec)
    if Path(spec).exists():
        raise ValueError(f"{spec!r} is not a Compression Lab artifact")
    raise ValueError(
        f"model {spec!r} is not a sample name ({', '.join(list_samples())}), an artifact file or an entry point "
        "(path/to/file.py:factory or package.module:factory)"
    )


def open_data(args: argparse.Namespace, model: nn.Module) -> DataSplits:
    """--data if given; else the model's sample data; else seeded random inputs of --input-shape."""
    if args.data:
        return load_data(args.data)
    source = source_of(model)
    if source is not None and baseline_source(source) in list_samples():
        return load_data(baseline_source(source))
    if args.input_shape:
        return random_data(parse_shape(args.input_shape))
    raise ValueError(f"model {args.model!r} has no default data; pass --data (sample, entry point or .npz) or --input-shape")


def _compressed(args: argparse.Namespace) -> tuple[nn.Module, nn.Module, DataSplits, Recipe | None]:
    model = open_model(args.model)
    data = open_data(args, model)
    recipe = Recipe.load(args.recipe) if args.recipe else None
    small = compress(model, recipe, data) if recipe else model
    if recipe is None and _is_artifact(args.model):
        header_recipe = artifact.read_header(args.model).get("recipe")
        recipe = Recipe.from_dict(header_recipe) if header_recipe else None
    return model, small, data, recipe


def cmd_models(args: argparse.Namespace) -> None:
    for name, description in list_samples().items():
        print(f"{name:<12} {description}")


def cmd_evaluate(args: argparse.Namespace) -> None:
    model, small, data, recipe = _compressed(args)
    source = source_of(model)
    baseline = build_model(baseline_source(source)) if _is_artifact(args.model) and source else model
    latency = LatencyConfig(batch_size=args.batch_size, threads=args.threads, runs=args.runs)
    report = evaluate(small, data, baseline=baseline, latency=latency, recipe=recipe and recipe.to_dict())
    print(json.dumps(report.to_dict(), indent=2) if args.json else format_report(report))


def cmd_export(args: argparse.Namespace) -> None:
    _, small, _, recipe = _compressed(args)
    written = artifact.export(small, args.out, recipe=recipe and recipe.to_dict())
    print(f"wrote {args.out}: {written.size:,} bytes")


def _number(value: float) -> str:
    """Counts (parameters, bytes, MACs) in full with thousands separators, other values to 4 significant digits."""
    return f"{value:,.0f}" if value.is_integer() and abs(value) >= 1 else f"{value:,.4g}"


def format_report(report: Report) -> str:
    """The report as text for a terminal."""
    lines = [report.summary_frame().to_string(float_format=_number), ""]
    lines.append(f"compression ratio: {report.compression_ratio:.1f}× (fp32 baseline bytes / exported file bytes)")
    if report.speedup is not None:
        lines.append(
            f"latency: median of {report.latency_runs} runs, batch {report.batch_size}, {report.threads} thread(s); "
            f"speedup {report.speedup:.2f}×"
        )
    lines += [f"note: {note}" for note in report.notes]
    lines += ["", report.to_frame().to_string(index=False)]
    return "\n".join(lines)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m compressor", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("models", help="list the sample models").set_defaults(run=cmd_models)
    for name, run, helptext in (
        ("evaluate", cmd_evaluate, "compress (optionally) and report accuracy, size and latency"),
        ("export", cmd_export, "write the compressed model as an artifact file"),
    ):
        cmd = sub.add_parser(name, help=helptext)
        cmd.add_argument("--model", required=True, help="sample name, artifact file, or file.py:factory / pkg.mod:factory")
        cmd.add_argument("--data", help="sample name, entry point returning (X, y), or .npz with X (and y)")
        cmd.add_argument("--recipe", required=name == "export", help="recipe JSON file")
        cmd.add_argument("--input-shape", help="random inputs for a model without data, batch first: 8,3,32,32")
        cmd.set_defaults(run=run)
        if name == "evaluate":
            cmd.add_argument("--batch-size", type=int, default=LatencyConfig.batch_size, help="batch for latency")
            cmd.add_argument("--threads", type=int, default=LatencyConfig.threads, help="threads for latency")
            cmd.add_argument("--runs", type=int, default=LatencyConfig.runs, help="timed runs (at least 20)")
            cmd.add_argument("--json", action="store_true", help="print one JSON object")
        else:
            cmd.add_argument("--out", required=True, help="artifact file to write")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        args.run(args)
    except (ValueError, OSError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    return 0
