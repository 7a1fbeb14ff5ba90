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

from compressor import artifact, user_models
from compressor.data import DataSplits, Sample, check_fits
from compressor.deploy import deploy, export_graph, plan_kernels, with_deployment
from compressor.latency import LatencyConfig
from compressor.models import (
    baseline_source, build_model, data_source, is_entry_point, is_hf_source, is_weights_source, list_samples, load_data, load_sample,
    parse_shape, random_data, weights_digest,
)
from compressor.pipeline import compress
from compressor.policy import BIT_WORDS, Evaluator, Int8Deployment
from compressor.recipe import Recipe
from compressor.report import Report, evaluate
from compressor.search import SearchConfig, SearchSpace, deploys, front, run_search, trials_frame
from compressor.sensitivity import SensitivityGrid, greedy_vs_uniform, sensitivity
from compressor.state import source_of
from compressor.workers import GRACE_S, HEARTBEAT_S, open_storage


def _is_artifact(spec: str) -> bool:
    return Path(spec).is_file() and artifact.is_artifact(spec)


def _refuse_code(spec: str, allow_code: bool) -> None:
    """Entry points run the user's code: only with --allow-code."""
    if is_entry_point(spec) and not allow_code:
        raise ValueError(f"{spec!r} is an entry point, which runs code; pass --allow-code to run it")


def open_model(spec: str, allow_code: bool = False) -> nn.Module:
    """A sample name, an exported artifact, or an entry point returning an nn.Module.

    Code runs only with allow_code (--allow-code): an entry point given as --model, or one an artifact's header
    names (the file would choose the code to run).
    """
    if _is_artifact(spec):
        return artifact.load(spec, allow_entry_points=allow_code)
    _refuse_code(spec, allow_code)
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
    sample_data = source is not None and data_source(source) in list_samples()
    if args.input_shape is not None and (args.data is not None or sample_data):
        given = f"--data {args.data!r}" if args.data is not None else f"the sample data of {source!r}"
        raise ValueError(f"--input-shape {args.input_shape!r} does not apply: the model is evaluated on {given}; "
                         "leave it out (it is for models without data)")
    if args.data is not None:
        _refuse_code(args.data, args.allow_code)
        return load_data(args.data)
    if sample_data:
        return load_data(data_source(source))
    if args.input_shape is not None:
        return random_data(parse_shape(args.input_shape))
    raise ValueError(f"model {args.model!r} has no default data; pass --data (sample, entry point or .npz) or --input-shape")


def _own_model(args: argparse.Namespace) -> tuple[nn.Module, DataSplits, nn.Module | None] | None:
    """A Hugging Face folder (--model DIR) or a sample architecture with --weights FILE, with its data (for an
    artifact, --weights are its baseline instead: see `_baseline`); or an artifact loaded into its --base, with that
    base (its baseline) third."""
    base = _base(args)
    if base is not None:
        model = artifact.load(args.model, base=base.model)  # a base of another model is refused (its hash differs)
        return model, (open_data(args, model) if args.data else base.data), base.model
    if _is_artifact(args.model):
        return None
    if args.weights:
        own = user_models.load_weights(args.model, args.weights)
    elif Path(args.model).is_dir():
        own = user_models.load_hf_folder(args.model)
    else:
        return None
    return own.model, (open_data(args, own.model) if args.data else own.data), None


def _base(args: argparse.Namespace) -> Sample | None:
    """--base DIR: the Hugging Face folder an artifact was made from (its architecture is not in the file)."""
    if args.base is None:
        return None
    if not _is_artifact(args.model):
        raise ValueError(f"--base {args.base!r} is for an artifact made from a Hugging Face folder (--model FILE.clab); "
                         f"{args.model!r} is not an artifact: leave --base out")
    source = artifact.read_header(args.model)["source"]
    if source is not None and not is_hf_source(source):
        again = "pass those weights with --weights FILE" if is_weights_source(source) else "leave --base out"
        raise ValueError(f"--base {args.base!r} is for an artifact made from a Hugging Face folder; {args.model!r} was "
                         f"made from {source!r}: {again}")
    if not Path(args.base).is_dir():
        raise ValueError(f"--base {args.base!r} must be the Hugging Face folder (config.json + model.safetensors) "
                         f"{args.model!r} was made from")
    return user_models.load_hf_folder(args.base)


def open_recipe(path: str | None) -> Recipe | None:
    """The recipe in the JSON file at `path` (None: no recipe)."""
    if path is None:
        return None
    if not path.strip():
        raise ValueError(f"--recipe {path!r} is empty; give the path of a recipe JSON file")
    return Recipe.load(path)


def _compressed(args: argparse.Namespace) -> tuple[nn.Module, nn.Module, DataSplits, Recipe | None, nn.Module | None]:
    """(the model --model names, it compressed by --recipe, its data, the recipe, the --base it was loaded into)."""
    recipe = open_recipe(args.recipe)
    own = _own_model(args)
    model = own[0] if own else open_model(args.model, args.allow_code)
    data = own[1] if own else open_data(args, model)
    small = compress(model, recipe, data) if recipe is not None else model
    if recipe is None and _is_artifact(args.model):
        header_recipe = artifact.read_header(args.model).get("recipe")
        recipe = Recipe.from_dict(header_recipe) if header_recipe is not None else None
    return model, small, data, recipe, (own[2] if own else None)


def _recipe_dict(recipe: Recipe | None) -> dict | None:
    return recipe.to_dict() if recipe is not None else None


def cmd_models(args: argparse.Namespace) -> None:
    for name, description in list_samples().items():
        print(f"{name:<12} {description}")


def _baseline(args: argparse.Namespace, model: nn.Module) -> nn.Module | None:
    """What the evaluated model is compared with: the model itself (it is the uncompressed one), the uncompressed
    model an artifact's source names, the --weights an artifact was made from, or None when those weights are not
    at hand (the artifact is then measured alone)."""
    source = source_of(model)
    if not _is_artifact(args.model) or source is None:
        return model
    if not is_weights_source(source):
        if args.weights:
            raise ValueError(f"--weights {args.weights!r}: {args.model!r} was made from {source!r}, not from uploaded "
                             "weights; leave --weights out")
        return build_model(baseline_source(source))
    if not args.weights:
        return None
    own = user_models.load_weights(data_source(source), args.weights)
    if source_of(own.model) != source:
        raise ValueError(f"--weights {args.weights!r} are not the weights {args.model!r} was made from (SHA-256 starts "
                         f"{weights_digest(source_of(own.model))}; the file records {weights_digest(source)})")
    return own.model


def no_baseline_note(artifact_path: str, source: str) -> str:
    """The one line that says an artifact is measured alone, and how to compare it."""
    return (f"no baseline comparison: {artifact_path} was made from uploaded weights for {data_source(source)} "
            f"(SHA-256 {weights_digest(source)}), which the file does not hold; shown: the file's own measures on the "
            f"{data_source(source)} data (pass --weights with those weights to compare)")


def cmd_evaluate(args: argparse.Namespace) -> None:
    model, small, data, recipe, base = _compressed(args)
    baseline = base if base is not None else _baseline(args, model)
    compared = small if baseline is None else baseline  # no baseline: measured against itself, comparisons dropped
    latency = LatencyConfig(batch_size=args.batch_size, threads=args.threads, runs=args.runs)
    report = evaluate(small, data, baseline=compared, latency=latency, recipe=_recipe_dict(recipe))
    if args.deployed:
        deployment, _ = deploy(small, data, compared, latency, simulated_accuracy=report.accuracy)
        report = with_deployment(report, deployment)
    if baseline is None:
        alone = measured_alone(report, no_baseline_note(args.model, source_of(model)))
        print(json.dumps(alone, indent=2) if args.json else format_alone(report, alone["notes"][0]))
        return
    print(json.dumps(report.to_dict(), indent=2) if args.json else format_report(report))


COMPARISONS = ("baseline_accuracy", "accuracy_drop", "baseline_macro_f1", "baseline_params", "baseline_dense_bytes",
               "compression_ratio", "baseline_macs", "baseline_latency_ms", "baseline_latency_spread_ms", "speedup",
               "baseline_subnormal_params")  # report fields that need the baseline


def measured_alone(report: Report, note: str) -> dict:
    """The report as JSON data without a baseline: every comparison is null (not the model against itself), the
    note first."""
    data = report.to_dict()
    data.update({key: None for key in COMPARISONS}, notes=[note, *report.notes])
    if data["deployment"] is not None:
        data["deployment"].update(baseline_accuracy=None, baseline_bytes=None, deployed_baseline_latency_ms=None,
                                  deployed_speedup=None)
    return data


def format_alone(report: Report, note: str) -> str:
    """A report without a baseline, for a terminal: the note, then the model's own measures."""
    own = report.summary_frame()[["compressed"]].rename(columns={"compressed": "this file"})
    lines = [f"note: {note}", "", own.to_string(float_format=_number)]
    if report.latency_ms is not None:
        lines.append(f"latency: median of {report.latency_runs} runs, batch {report.batch_size}, {report.threads} thread(s)")
    return "\n".join([*lines, "", report.to_frame().to_string(index=False)])


def cmd_export(args: argparse.Namespace) -> None:
    _, small, data, recipe, _ = _compressed(args)
    if args.format == "onnx":
        plan = plan_kernels(small)
        proto = export_graph(small, data)  # token models: named int64 inputs, free sequence axis
        Path(args.out).write_bytes(proto.SerializeToString())
        print(f"wrote {args.out}: {proto.ByteSize():,} bytes, ONNX for ONNX Runtime ({plan.kernel}: {plan.reason})")
        return
    written = artifact.export(small, args.out, recipe=_recipe_dict(recipe))
    print(f"wrote {args.out}: {written.size:,} bytes")


def _number(value: float) -> str:
    """Counts (parameters, bytes, MACs) in full with thousands separators, other values to 4 significant digits."""
    return f"{value:,.0f}" if value.is_integer() and abs(value) >= 1 else f"{value:,.4g}"


def format_report(report: Report) -> str:
    """The report as text for a terminal."""
    lines = [report.summary_frame().to_string(float_format=_number), ""]
    lines.append(f"compression ratio: {report.compression_ratio:.1f}× (fp32 baseline bytes / exported file bytes)")
    if report.latency_ms is not None:
        flushed = "denormals flushed" if report.denormals_flushed else "denormals not flushed"
        ratio = f"; speedup {report.speedup:.2f}×" if report.speedup is not None else ""
        lines.append(
            f"latency: median of {report.latency_runs} runs, batch {report.batch_size}, {report.threads} thread(s), "
            f"{flushed}{ratio}"
        )
    if report.deployment is not None:
        d = report.deployment
        lines.append(
            f"deployed: {d.runtime} {d.runtime_version} ({d.execution_provider}), kernel {d.kernel}"
            f"{' (simulated: fp32 latency)' if d.simulated else ''}, batch {d.batch_size}, {d.threads} thread(s), "
            f"CPU {', '.join(d.cpu_flags) or 'no AVX2/AVX-512/VNNI'}; {d.deployed_latency_ms:.4f} ms vs fp32 "
            f"{d.deployed_baseline_latency_ms:.4f} ms, speedup {d.deployed_speedup:.2f}×"
        )
    lines += [f"note: {note}" for note in report.notes]
    lines += ["", report.to_frame().to_string(index=False)]
    return "\n".join(lines)


# ---------------------------------------------------------------- search and sensitivity (issue 9)


def _floats(text: str, name: str, count: int | None = None) -> tuple:
    """"0.1,0.9" -> (0.1, 0.9); "fp32" and "int8-deployed" stay words; one clear error otherwise."""
    values = []
    for part in text.split(","):
        part = part.strip()
        if part in BIT_WORDS:
            values.append(BIT_WORDS[part])
        else:
            try:
                values.append(int(part) if part.isdigit() else float(part))
            except ValueError:
                raise ValueError(f"--{name} {text!r}: {part!r} is not a number") from None
    if count is not None and len(values) != count:
        raise ValueError(f"--{name} {text!r} must be {count} comma-separated numbers (low,high)")
    return tuple(values)


def _sample_evaluator(model: str, deployed: bool = False):
    """The sample's evaluator; `deployed`: every policy deployed on ONNX Runtime (int8-deployed layers as dynamic
    int8, the rest fp32), with deployed quality and latency (batch 32, one thread, against the fp32 graph)."""
    sample = load_sample(model)
    if deployed:
        return Evaluator(sample.model, sample.data, measure_deployed=Int8Deployment(sample.model, sample.data))
    return Evaluator(sample.model, sample.data)


def cmd_search(args: argparse.Namespace) -> None:
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    space = SearchSpace(
        amounts=None if args.amounts == "off" else _floats(args.amounts, "amounts", 2),
        bits=None if args.bits == "off" else _floats(args.bits, "bits"),
        rank_ratios=None if args.rank_ratios == "off" else _floats(args.rank_ratios, "rank-ratios", 2),
        share=tuple(part.strip() for part in args.share.split(",") if part.strip()),
    )
    config = SearchConfig(trials=args.trials, population=args.population, seed=args.seed,
                          objectives=tuple(args.objectives.split(",")), max_drop=args.max_drop, max_bytes=args.max_bytes,
                          greedy_seeds=args.greedy_seeds)
    storage_url = args.storage or f"{args.study}.journal.log"
    storage = open_storage(storage_url, heartbeat_interval=args.heartbeat, grace_period=args.grace)
    deployed = deploys(space, config)
    study = run_search(_sample_evaluator(args.model, deployed), space, config, storage=storage, study_name=args.study)
    frame = trials_frame(study)
    best = front(frame, config.objectives)
    if args.json:
        print(json.dumps({"model": args.model, "study": args.study, "storage": storage_url,
                          "complete_trials": len(frame), "objectives": list(config.objectives),
                          "greedy_seed_evaluations": study.user_attrs.get("greedy_seed_evaluations", 0),
                          "front": best.drop(columns=["feasible"]).to_dict("records")}, indent=2, default=float))
        return
    seeded = study.user_attrs.get("greedy_seed_evaluations")
    print(f"study {args.study!r} on {storage_url}: {len(frame)} complete trials"
          f"{f' (and {seeded} policies measured by the greedy seeds sensitivity run)' if seeded else ''}; "
          f"Pareto front ({len(best)} points):")
    shown = best.assign(quality=best["quality"].map("{:.2%}".format))
    columns = ["number", "generation", "quality", "bytes", "effective_macs"] + (["latency_ms"] if deployed else [])
    print(shown[columns + ["policy"]].to_string(index=False))
    print("(--json gives each point's recipe)")


def cmd_sensitivity(args: argparse.Namespace) -> None:
    evaluator = _sample_evaluator(args.model)
    grid = SensitivityGrid(amounts=_floats(args.amounts, "amounts"), bits=_floats(args.bits, "bits"),
                           rank_ratios=() if args.rank_ratios == "off" else _floats(args.rank_ratios, "rank-ratios"))
    table = sensitivity(evaluator, grid)
    compared = greedy_vs_uniform(evaluator, table, args.max_drop)
    if args.json:
        print(json.dumps({"model": args.model, "sensitivity": table.to_dict("records"),
                          "max_drop": args.max_drop, "greedy_vs_uniform": compared.to_dict("records")},
                         indent=2, default=float))
        return
    heat = table.pivot_table(index="layer", columns=["kind", "setting"], values="drop", sort=False)
    print("quality drop per layer (rows) and setting (columns):")
    print(heat.to_string(float_format=lambda v: f"{v:+.3f}"))
    print(f"\ngreedy per-layer recipe for a drop of at most {args.max_drop} per layer, next to the uniform one of the same size:")
    print(compared.drop(columns=["metric", "recipe_json"]).to_string(index=False))


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
        cmd.add_argument("--model", required=True, help="sample name, artifact file, Hugging Face folder (config.json + "
                                                        "model.safetensors, BERT), or file.py:factory (with --allow-code)")
        cmd.add_argument("--data", help="sample name, .npz with X (and y), or (with --allow-code) an entry point returning (X, y)")
        cmd.add_argument("--recipe", required=name == "export", help="recipe JSON file")
        cmd.add_argument("--input-shape", help="random inputs for a model without data, batch first: 8,3,32,32")
        cmd.add_argument("--weights", help="your weights for --model digits-mlp or digits-cnn: .safetensors, or a "
                                           "state-dict .pt (read with weights_only=True); checked name by name. With "
                                           "--model FILE.clab exported from your weights: the same file, to compare "
                                           "with (without it the artifact is measured alone)")
        cmd.add_argument("--base", help="with --model FILE.clab made from a Hugging Face folder: that folder (the file holds "
                                        "the compressed tensors, not the architecture; a folder of another model is "
                                        "refused: its hash differs); the uncompressed baseline too")
        cmd.add_argument("--allow-code", action="store_true",
                         help="let an artifact whose header names an entry point (pkg.mod:factory) run it; "
                              "only for files you trust")
        cmd.set_defaults(run=run)
        if name == "evaluate":
            cmd.add_argument("--batch-size", type=int, default=LatencyConfig.batch_size, help="batch for latency")
            cmd.add_argument("--threads", type=int, default=LatencyConfig.threads, help="threads for latency")
            cmd.add_argument("--runs", type=int, default=LatencyConfig.runs, help="timed runs (at least 20)")
            cmd.add_argument("--json", action="store_true", help="print one JSON object")
            cmd.add_argument("--deployed", action="store_true",
                             help="also deploy on ONNX Runtime: integer kernels, deployed latency and accuracy")
        else:
            cmd.add_argument("--out", required=True, help="file to write")
            cmd.add_argument("--format", choices=("clab", "onnx"), default="clab",
                             help="clab: the compressed artifact (default); onnx: the graph ONNX Runtime runs "
                                  "(int8 / int4 kernels where the weights allow)")
    _add_search_parsers(sub)
    return parser


def _add_search_parsers(sub) -> None:
    """`search` and `sensitivity`: per-layer policies of a sample model."""
    cmd = sub.add_parser("search", help="NSGA-II search of per-layer policies (several workers may share --storage)")
    cmd.add_argument("--model", required=True, help="sample name")
    cmd.add_argument("--trials", type=int, default=200, help="complete trials the study ends with (all workers together)")
    cmd.add_argument("--storage", help="journal file path (default: STUDY.journal.log) or postgresql://user:pw@host/db")
    cmd.add_argument("--study", default="search", help="study name; workers with the same name share the work")
    cmd.add_argument("--population", type=int, default=20, help="NSGA-II population size (2 to 1000)")
    cmd.add_argument("--seed", type=int, default=0)
    cmd.add_argument("--objectives", default="quality,bytes,effective_macs",
                     help="comma-separated: quality, bytes, effective_macs, latency_ms (deploys every policy on ONNX Runtime)")
    cmd.add_argument("--max-drop", type=float, help="constraint: accuracy drop at most this fraction (0.01 = 1 point)")
    cmd.add_argument("--max-bytes", type=int, help="constraint: exported file at most this many bytes")
    cmd.add_argument("--amounts", default="0,0.95", help="pruning amount range low,high, or off")
    cmd.add_argument("--bits", default="fp32,8,6,5,4,3,2",
                     help="bit-width choices, or off; int8-deployed = dynamic int8 on ONNX Runtime (mixed precision: "
                          "--amounts off --bits int8-deployed,fp32 --objectives quality,latency_ms)")
    cmd.add_argument("--share", default="", help="module names whose layers share one gene, e.g. attention (a block's "
                                                 "query, key, value and output projections together)")
    cmd.add_argument("--rank-ratios", default="off", help="rank-ratio range low,high (1.0: not factorized), or off")
    cmd.add_argument("--greedy-seeds", type=int, default=0,
                     help="0 to --population: first-generation policies from greedy selection on a sensitivity run over "
                          "the search's genes (AIMET's recipe), measured before the first trial; with --max-drop, the "
                          "most compressing greedy policy that holds it and its neighbours")
    cmd.add_argument("--heartbeat", type=int, default=HEARTBEAT_S, help="PostgreSQL heartbeat interval, seconds")
    cmd.add_argument("--grace", type=int, default=GRACE_S, help="PostgreSQL: seconds without heartbeat before a trial is retried")
    cmd.add_argument("--json", action="store_true", help="print one JSON object")
    cmd.set_defaults(run=cmd_search)

    cmd = sub.add_parser("sensitivity", help="per-layer sensitivity and the greedy per-layer recipe")
    cmd.add_argument("--model", required=True, help="sample name")
    cmd.add_argument("--amounts", default="0.5,0.7,0.8,0.9,0.95,0.98", help="pruning amounts tried per layer")
    cmd.add_argument("--bits", default="8,6,4,3,2,1", help="bit widths tried per layer")
    cmd.add_argument("--rank-ratios", default="0.5,0.25,0.1", help="rank ratios tried per layer, or off")
    cmd.add_argument("--max-drop", type=float, default=0.01, help="greedy recipe: each layer's own drop at most this")
    cmd.add_argument("--json", action="store_true", help="print one JSON object")
    cmd.set_defaults(run=cmd_sensitivity)


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
