"""`python -m compressor`: list samples, evaluate a recipe on a model, export the compressed artifact.

Every mistake in what the user passes ends in one line `error: ...` naming the value, and exit status 2: the core
raises ValueError for bad values and files (and OSError for files it cannot read or write), and `main` prints it.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from torch import nn

from compressor import artifact
from compressor.data import DataSplits, check_fits
from compressor.latency import LatencyConfig
from compressor.models import baseline_source, build_model, is_entry_point, list_samples, load_data, parse_shape, random_data
from compressor.pipeline import compress
from compressor.recipe import Recipe
from compressor.report import Report, evaluate
from compressor.state import source_of


def _is_artifact(spec: str) -> bool:
    return Path(spec).is_file() and artifact.is_artifact(spec)


def open_model(spec: str, allow_code: bool = False) -> nn.Module:
    """A sample name, an exported artifact, or an entry point returning an nn.Module.

    An artifact whose header names an entry point loads only with allow_code (--allow-code): the file would
    choose the code to run. An entry point given on the command line is the user's own choice.
    """
    if _is_artifact(spec):
        return artifact.load(spec, allow_entry_points=allow_code)
    if spec in list_samples() or is_entry_point(spec):
        return build_model(spec)
    if Path(spec).exists():
        raise ValueError(f"{spec!r} is not a Compression Lab artifact")
    raise ValueError(
        f"model {spec!r} is not a sample name ({', '.join(list_samples())}), an artifact file or an entry point "
        "(path/to/file.py:factory or package.module:factory)"
    )


def open_data(args: argparse.Namespace, model: nn.Module) -> DataSplits:
    """--data if given; else the model's sample data; else seeded random inputs of --input-shape; checked to fit."""
    data = _data(args, model)
    check_fits(model, data)
    return data


def _data(args: argparse.Namespace, model: nn.Module) -> DataSplits:
    source = source_of(model)
    sample_data = source is not None and baseline_source(source) in list_samples()
    if args.input_shape is not None and (args.data is not None or sample_data):
        given = f"--data {args.data!r}" if args.data is not None else f"the sample data of {source!r}"
        raise ValueError(f"--input-shape {args.input_shape!r} does not apply: the model is evaluated on {given}; "
                         "leave it out (it is for models without data)")
    if args.data is not None:
        return load_data(args.data)
    if sample_data:
        return load_data(baseline_source(source))
    if args.input_shape is not None:
        return random_data(parse_shape(args.input_shape))
    raise ValueError(f"model {args.model!r} has no default data; pass --data (sample, entry point or .npz) or --input-shape")


def open_recipe(path: str | None) -> Recipe | None:
    """The recipe in the JSON file at `path` (None: no recipe)."""
    if path is None:
        return None
    if not path.strip():
        raise ValueError(f"--recipe {path!r} is empty; give the path of a recipe JSON file")
    return Recipe.load(path)


def _compressed(args: argparse.Namespace) -> tuple[nn.Module, nn.Module, DataSplits, Recipe | None]:
    recipe = open_recipe(args.recipe)
    model = open_model(args.model, args.allow_code)
    data = open_data(args, model)
    small = compress(model, recipe, data) if recipe is not None else model
    if recipe is None and _is_artifact(args.model):
        header_recipe = artifact.read_header(args.model).get("recipe")
        recipe = Recipe.from_dict(header_recipe) if header_recipe is not None else None
    return model, small, data, recipe


def _recipe_dict(recipe: Recipe | None) -> dict | None:
    return recipe.to_dict() if recipe is not None else None


def cmd_models(args: argparse.Namespace) -> None:
    for name, description in list_samples().items():
        print(f"{name:<12} {description}")


def cmd_evaluate(args: argparse.Namespace) -> None:
    model, small, data, recipe = _compressed(args)
    source = source_of(model)
    baseline = build_model(baseline_source(source)) if _is_artifact(args.model) and source else model
    latency = LatencyConfig(batch_size=args.batch_size, threads=args.threads, runs=args.runs)
    report = evaluate(small, data, baseline=baseline, latency=latency, recipe=_recipe_dict(recipe))
    print(json.dumps(report.to_dict(), indent=2) if args.json else format_report(report))


def cmd_export(args: argparse.Namespace) -> None:
    _, small, _, recipe = _compressed(args)
    written = artifact.export(small, args.out, recipe=_recipe_dict(recipe))
    print(f"wrote {args.out}: {written.size:,} bytes")


def format_report(report: Report) -> str:
    """The report as text for a terminal."""
    lines = [report.summary_frame().to_string(float_format=lambda v: f"{v:,.4g}"), ""]
    lines.append(f"compression ratio: {report.compression_ratio:.1f}× (fp32 baseline bytes / exported file bytes)")
    if report.speedup is not None:
        lines.append(
            f"latency: median of {report.latency_runs} runs, batch {report.batch_size}, {report.threads} thread(s); "
            f"speedup {report.speedup:.2f}×"
        )
    lines += [f"note: {note}" for note in report.notes]
    lines += ["", report.to_frame().to_string(index=False)]
    return "\n".join(lines)


class _OneLineParser(argparse.ArgumentParser):
    """argparse, but a usage mistake is one line `error: ...` (exit 2) like every other mistake; --help has the usage."""

    def error(self, message: str) -> None:
        self.exit(2, f"error: {message} (see {self.prog} --help)\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _OneLineParser(prog="python -m compressor", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_OneLineParser)
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
        cmd.add_argument("--allow-code", action="store_true",
                         help="let an artifact whose header names an entry point (pkg.mod:factory) run it; "
                              "only for files you trust")
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
    except (ValueError, OSError) as err:  # the user's mistake, named by the core
        return _fail(str(err))
    except RecursionError:  # last guards: still one line, never a traceback
        return _fail("the input is nested too deeply to process (recursion limit reached)")
    except MemoryError:
        return _fail("out of memory: the input needs more memory than this machine has")
    except KeyboardInterrupt:
        return _fail("interrupted", status=130)
    return 0


def _fail(message: str, status: int = 2) -> int:
    first_line = message.strip().splitlines()[0] if message.strip() else "failed"
    print(f"error: {first_line[:1000]}", file=sys.stderr)
    return status
