"""Regenerate the README's result tables from the benchmarks' last JSON: `python scripts/readme_tables.py [--check]`.

Each table sits in README.md between `<!-- table:NAME -->` and `<!-- /table:NAME -->` and is rebuilt from
benchmarks/results/<bench>.json, which the benchmark scripts write when they run. So a README figure is always a
measured one, and `--check` (and tests/test_readme.py) fails when the README and the JSON disagree.
"""
from __future__ import annotations

import argparse
import re
import sys
import textwrap
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.results_io import load_results  # noqa: E402

README = ROOT / "README.md"
BLOCK = re.compile(r"(<!-- table:(?P<name>[\w-]+) -->\n)(?P<body>.*?)(<!-- /table:(?P=name) -->)", re.S)


WIDTH = 116  # README prose line width


def prose(text: str) -> str:
    """A paragraph wrapped to the README's width."""
    return textwrap.fill(text, WIDTH, break_on_hyphens=False) + "\n"


def pct(value: float) -> str:
    return f"{value:.2f}%"


def rows(header: list[str], lines: list[list[str]]) -> str:
    """A Markdown table."""
    out = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return "\n".join(out + ["| " + " | ".join(line) + " |" for line in lines]) + "\n"


def deep_compression() -> str:
    results = load_results("bench_recovery")
    runs = {"94% sparse, 4-bit": results["deep_compression_digits_mlp"],
            "96% sparse, 3-bit (Han et al.'s 40×)": results["deep_compression_digits_mlp_aim_40x"]}
    baseline = runs["94% sparse, 4-bit"]["baseline_accuracy"]
    lines = []
    for label, run in runs.items():
        first, drop = run["runs"][0], run["accuracy_drop_points"]
        lines.append([label, f"{first['file_bytes']:,} B", f"**{run['ratio']['seed_0']}×**",
                      f"{pct(first['accuracy'])} (−{drop['seed_0']:.2f} pt)",
                      f"mean {drop['mean']:.2f}, range {drop['min']:.2f}–{drop['max']:.2f} pt"])
    table = rows(["target", "file", "ratio", f"accuracy (baseline {pct(baseline)})", "drop over 5 seeds"], lines)
    target = runs["94% sparse, 4-bit"]
    ok = {"seed 0": target["accuracy_drop_points"]["seed_0"] <= 1.0 and target["ratio"]["seed_0"] >= 30,
          "on average": target["accuracy_drop_points"]["mean"] <= 1.0 and target["ratio"]["min"] >= 30,
          "every seed": target["accuracy_drop_points"]["max"] <= 1.0 and target["ratio"]["min"] >= 30}
    held = [k for k, v in ok.items() if v]
    missed = [k for k, v in ok.items() if not v]
    verdict = (f"holds for {' and '.join(held)}" if held else "does not hold") + (
        f", not for {' or '.join(missed)}" if held and missed else "")
    aim = runs["96% sparse, 3-bit (Han et al.'s 40×)"]["accuracy_drop_points"]["seed_0"]
    timing = results["finetune_digits_mlp_5_epochs"]
    return table + "\n" + prose(
        f"The ≥ 30× at ≤ 1 point target {verdict}; 40× costs {aim:.2f} points here (one test example is 0.19 "
        f"points). The whole recipe takes ≤ {target['recipe_seconds_max']:.1f} s; fine-tuning digits-mlp for 5 "
        f"epochs {timing['median_s']:.2f} s.")


def sparsity_90() -> str:
    results = load_results("bench_recovery")["sparsity_90"]
    return rows(["model", "baseline", "one-shot", "one-shot + fine-tune", "gradual (AGP)"], [
        [name, pct(r["baseline"]), pct(r["one_shot"]), pct(r["one_shot_finetuned"]), pct(r["agp"])]
        for name, r in results.items()])


def two_bit() -> str:
    results = load_results("bench_recovery")["two_bit_weights"]
    columns = ("uniform_symmetric_per_channel", "uniform_affine_per_channel", "kmeans")
    return rows(["model", "symmetric per channel (ternary)", "affine per channel", "k-means"], [
        [name] + [f"{pct(r[c]['ptq'])} → {pct(r[c]['qat'])}" for c in columns] for name, r in results.items()])


def distillation() -> str:
    results = load_results("bench_recovery")["knowledge_distillation"]
    width = {"digits-mlp": 0.4, "digits-cnn": 0.5}
    return rows(["teacher", "student", "parameters", "KD", "from scratch"], [
        [f"{name} {pct(r['teacher'])}", f"width {width[name]}", f"{r['student_params']:,} ({r['param_fraction']:.1%})",
         pct(r["kd"]), pct(r["scratch"])] for name, r in results.items()])


def one_shot() -> str:
    r = load_results("bench_core")["digits_mlp_90pct_global_4bit_channel_symmetric"]
    return prose(f"**One-shot, no fine-tuning** (`python benchmarks/bench_core.py`): 90% global magnitude + 4-bit "
            f"per-channel symmetric on digits-mlp is {r['compression_ratio']:.1f}× smaller ({r['compressed_bytes']:,} B) but loses "
            f"{r['accuracy_drop_points']:.1f} points: one-shot compression is half the story.")


def criteria() -> str:
    results = load_results("bench_criteria")["accuracy"]
    lines = []
    for name, r in results.items():
        for criterion in ("magnitude", "taylor", "random"):
            lines.append([name if criterion == "magnitude" else "", criterion] + [pct(v) for v in r[criterion].values()])
    amounts = list(next(iter(results.values()))["magnitude"])
    baselines = ", ".join(f"{name} {pct(r['baseline'])}" for name, r in results.items())
    return rows(["model", "criterion"] + amounts, lines) + f"\nBaselines: {baselines}.\n"


def latency() -> str:
    r, before = load_results("bench_latency"), load_results("bench_latency_before_fix")
    flushed = "flushed" if r["denormals_flushed"] else "not flushed"
    return rows(["technique", "baseline", "compressed", "speedup (median)", "speedup (fastest runs)", "accuracy",
                 "before the fix"], [
        [label, f"{row['baseline_ms']:.2f} ms", f"{row['ms']:.2f} ms", f"{row['speedup']:.2f}×",
         f"{row['speedup_fastest_runs']:.2f}×", pct(row["accuracy"]), f"{before['digits_cnn'][label]['speedup']:.2f}×"]
        for label, row in r["digits_cnn"].items()]) + "\n" + prose(
        f"Batch {r['batch_size']}, {r['threads']} thread, median of {r['runs']} interleaved runs (the middle of "
        f"{r['rounds']} such measurements), denormals {flushed}; "
        f"the shipped digits-cnn has {r['subnormal_parameters']:,} subnormal parameters. Load average "
        f"{r['machine']['load_average_1min']} on {r['machine']['cpus']} cores while timing: the milliseconds are upper "
        f"bounds; above a load of about {r['machine']['cpus']}, compare the fastest-run ratios. Before the fix: "
        f"{before['note']} (load average {before['machine']['load_average_1min']}, median of {before['runs']} runs, "
        f"`benchmarks/results/bench_latency_before_fix.json`).")


MINILM_LABELS = {  # bench_deploy's variant labels -> how the README names them
    "eager fp32": "eager PyTorch fp32", "int8 per tensor": "int8 dynamic, per tensor",
    "int8 per channel": "int8 dynamic, per channel",
    "int8 per channel, FFN outputs fp32": "int8 per channel, six FFN output projections fp32",
    "int4 weight-only": "int4 `MatMulNBits` (blocks of 32)",
}


def minilm_deploy() -> str:
    """minilm-l6 on ONNX Runtime: every variant at batch 32 and 1, its deployed fidelity, and the issue's targets."""
    r = load_results("bench_deploy")
    m = r["samples"]["minilm-l6"]
    b32, b1 = m["latency_by_batch"]["32"], m["latency_by_batch"]["1"]
    load = r["machine"]["load_average_before"][0], r["machine"]["load_average_after"][0]
    intro = prose(
        f"**minilm-l6 deployed** (`python benchmarks/bench_deploy.py --samples minilm-l6`; batch 32 of the first held-out "
        f"sentences cut to their longest, {b32['sequence_length']} tokens; {m['runs']} runs per model, "
        f"interleaved, one thread, load average {min(load):.1f}–{max(load):.1f}, so milliseconds are upper bounds and "
        "ratios are what counts; fidelity of the deployed model on the 125 held-out sentences against the uncompressed "
        "embeddings, `benchmarks/results/bench_deploy.json`; recipes in its `recipes`):")
    lines = []
    for label, row in m["models"].items():
        t32, t1 = b32[label], b1[label]
        cosine = "1 / 1" if label == "eager fp32" else \
            f"{row['deployed_mean_cosine']:.4f} / {row['deployed_worst_cosine']:.3f}"
        size = "—" if row["onnx_bytes"] is None else f"{row['onnx_bytes'] / 1e6:.1f}"
        lines.append([MINILM_LABELS.get(label, label.removeprefix("combined: ")), f"{t32['latency_ms']:.1f}",
                      f"{t32['speedup_vs_eager']:.2f}", f"{t32['speedup_vs_ort_fp32']:.2f}", f"{t1['latency_ms']:.1f}",
                      cosine, f"{row['deployed_neighbour_agreement']:.3f}", pct(100 * row["deployed_topic_accuracy"]),
                      size])
    table = rows(["minilm-l6", "batch 32, ms", "× eager", "× ORT fp32", f"batch 1 ({b1['sequence_length']} tokens), ms",
                  "mean / worst cosine", "top-5 agreement", "topic accuracy", ".onnx MB"], lines)
    return intro + "\n" + table + "\n" + prose(_targets_sentence(m["targets"]))


def _targets_sentence(targets: dict) -> str:
    def one(goal: str, best: dict) -> str:
        verdict = "**met**" if best["pass"] else "**not met**"
        return (f"{goal} — {verdict} ({best['variant'].removeprefix('combined: ')}: {best['speedup_vs_eager']:.2f}× "
                f"eager, {best['deployed_latency_ms']:.1f} against {best['eager_fp32_latency_ms']:.1f} ms, mean cosine "
                f"{best['deployed_mean_cosine']:.4f}, worst {best['deployed_worst_cosine']:.3f})")
    int8, combined = targets["int8_alone"]["best"], targets["combined"]["best"]
    goal = "{} ≥ {:g}× eager at mean cosine ≥ {:g}"
    return (f"Targets (in the JSON as `targets`, batch 32): "
            f"{one(goal.format('int8 alone', int8['min_speedup_vs_eager'], int8['min_mean_cosine']), int8)}; "
            f"{one(goal.format('a combined recipe', combined['min_speedup_vs_eager'], combined['min_mean_cosine']), combined)}.")


def seconds(spread: dict | None, keys: tuple[str, ...] = ("p50", "p95")) -> str:
    """'0.12 / 0.84 s' from a bench_room spread; '—' when nothing was measured."""
    return "—" if not spread else " / ".join(f"{spread[k]:.2f}" for k in keys) + " s"


def load(run: dict) -> str:
    return " / ".join(f"{x:.1f}" for x in run["load_average_1m_5m"][:2])


def command(run: dict) -> str:
    """The command that measured a run, without where it also wrote its own copy (--out)."""
    return re.sub(r" --out \S+", "", run["command"])


def outcome(run: dict) -> str:
    return f"{run['errors_shown']} / {run['exceptions_shown']} / {run['failed_sessions']}"


def memory(run: dict) -> str:
    """Before → peak → after; after is '—' for a run that did not wait for disconnected sessions to expire."""
    m = run["server_rss_mb"]
    if m.get("settle_s", 0) < 60:
        return f"{m['before_mb']:.0f} → {m['during_peak_mb']:.0f} → —"
    return f"{m['before_mb']:.0f} → {m['during_peak_mb']:.0f} → {m['after_mb']:.0f} ({m['after_mb'] / m['before_mb'] - 1:+.0%})"


ROOM_HEADER = ["load avg (1 / 5 min)", "first render p50 / p95", "move p50 / p95 / max", "first moves p50 / p95",
               "deployed latency shown p50 / p95", "script runs/s", "errors / exceptions / failed",
               "RSS before → peak → after (MB)"]


def room_row(label: str, run: dict) -> list[str]:
    return [label, load(run), seconds(run["first_render_s"]), seconds(run["move_s"], ("p50", "p95", "max")),
            seconds(run.get("first_move_s")), seconds(run.get("deployed_shown_after_s")),
            f"{run['script_runs_per_s']:.1f}", outcome(run), memory(run)]


def room() -> str:
    r = load_results("bench_room")
    lines = []
    if "before" in r:
        b = r["before"]
        lines.append(room_row(f"before this work: {b['sessions']} sessions, a move every ~{b['think_s']:g} s", b))
    for key in ("room", "memory"):
        run = r[key]
        lines.append(room_row(f"{run['sessions']} sessions, a move every ~{run['think_s']:g} s ({run['moves_per_session']} "
                              f"each)", run))
    if "throughput" in r:
        run = r["throughput"]
        lines.append(room_row(f"{run['sessions']} sessions back to back on computed stops ({run['moves_per_session']} "
                              f"moves each)", run))
    room, mem = r["room"], r["memory"]["server_rss_mb"]
    p95s = [run["move_p95_s"] for run in room.get("repeats", [])] or [room["move_s"]["p95"]]
    met = (f"met in {sum(p <= 1.0 for p in p95s)} of {len(p95s)} runs on fresh servers, p95 "
           f"{', '.join(f'{p:.2f}' for p in p95s)} s (the row is the last)" if len(p95s) > 1 else
           f"{'met' if p95s[0] <= 1.0 else 'not met'} ({p95s[0]:.2f} s)")
    grown = mem["after_mb"] / mem["before_mb"] - 1
    main = (f" The server process alone: {mem['before_main_mb']:.0f} → {mem['after_main_mb']:.0f} MB "
            f"({mem['after_main_mb'] / mem['before_main_mb'] - 1:+.1%}); the rest is its deployment child, which exits "
            f"after a minute without a job." if "before_main_mb" in mem else "")
    speed = ""
    if "throughput" in r:
        t = r["throughput"]
        speed = (f" One process sustains {t['script_runs_per_s']:.1f} slider script runs per second on digits-mlp Pruning "
                 f"once its stops are computed (target ≥ 15: {'met' if t['script_runs_per_s'] >= 15 else 'not met'}; "
                 f"`{command(t)}`).")
    return rows(["one process (digits-mlp)", *ROOM_HEADER], lines) + "\n" + prose(
        f"Measured at {room['uptime'].split('up')[0].strip()} UTC and later (load average stated per row: other "
        f"jobs shared the 2 cores, so every time is an upper bound). Target move p95 ≤ 1 s with 30 sessions: {met}. "
        f"Memory after 100 sessions came, worked and left ({mem['settle_s']:g} s "
        f"after the last one): {grown:+.1%} of before (target ≤ +10%: {'met' if grown <= 0.10 else 'not met'}); "
        f"before = after each scenario's warm-up render and move, after = once the disconnected sessions expired."
        f"{main}{speed} Commands: `{command(room)}`; `{command(r['memory'])}`.")


def room_scaling() -> str:
    r = load_results("bench_room")
    runs = list(r["scaling"].values())
    lines = [[str(run["workers"]), str(run["sessions"]), run["uptime"].split("up")[0].strip()[:5],
              *room_row("", run)[1:]] for run in runs]
    thirty = [f"{run['workers']} process{'es' if run['workers'] > 1 else ''}: {run['move_s']['p95']:.2f} s "
              f"({'met' if run['move_s']['p95'] <= 1.0 else 'not met'})" for run in runs if run["sessions"] == 30]
    return rows(["processes", "sessions", "measured (UTC)", *ROOM_HEADER], lines) + "\n" + prose(
        "Rows measured at different times measure the code of that time: each row is rerun by its command (the row "
        "keeps the last run). "
        f"Move p95 with 30 sessions against the 1 s target: {'; '.join(thirty)}. With 100 sessions a move every ~3 s "
        "asks for more script runs per second than two cores give (each run is Python under one process's GIL), so "
        "moves queue whatever the number of processes. RSS is the sum over the processes: each holds its own models "
        "and caches.")


def _kb(size: float) -> str:
    return f"{size / 1000:.1f} kB"


def _gap(row: dict) -> str:
    return "no point" if row["search_accuracy"] is None else f"{row['search_minus_uniform_points']:+.2f} pt".replace("-", "−")


def search() -> str:
    part = load_results("bench_search")["digits"]
    lines = []
    for r in part["samples"]:
        won, total = r["search_at_least_uniform_count"]
        boxed, box_total = r["search_at_least_uniform_in_reference_box_count"]
        losses = [row for row in r["at_equal_size"]
                  if row["search_accuracy"] is None or row["search_accuracy"] < row["uniform_accuracy"]]
        lost = "; lower at " + ", ".join(f"{_kb(row['bytes'])} ({_gap(row)})" for row in losses) if losses else ""
        seeds = r["other_seeds"]
        others = (f"{min(o['search_at_least_uniform_count'][0] for o in seeds)}–"
                  f"{max(o['search_at_least_uniform_count'][0] for o in seeds)} of {total}") if seeds else "—"
        lines.append([r["model"], f"**{r['hypervolume_search']:.3f}**" if r["hypervolume_search"] > r["hypervolume_uniform"]
                      else f"{r['hypervolume_search']:.3f}", f"{r['hypervolume_uniform']:.3f}",
                      (f"**{won} of {total}**" if won == total else f"{won} of {total}") + lost,
                      f"{boxed} of {box_total}", others, f"{r['search_seconds']:.0f} s"])
    mlp = part["samples"][0]
    spent = "; ".join(f"{r['model']} {r['search_evaluations']['greedy_seed_sensitivity_probes']} sensitivity probes + "
                      f"{r['search_evaluations']['trials']} trials" for r in part["samples"] if "search_evaluations" in r)
    return rows(["model", "hypervolume, search", "hypervolume, uniform grid", "search ≥ grid at the grid's front sizes",
                 "… of them within the reference box", "other seeds (1–4)", f"{mlp['evaluations_each']} evaluations"],
                lines) + "\n" + prose(
        f"At equal size means: for each point of the grid's front, the best accuracy among all the search's trials whose "
        f"file is at most that point's bytes. The search's {mlp['evaluations_each']} evaluations: {spent}. "
        f"Seed {mlp['seed']}; search times (sensitivity run included) at load average "
        f"{part['machine']['load_average_1m']} on {part['machine']['cpus']} shared cores (upper bounds; the budget is "
        f"{part['budget_seconds_digits_mlp']:.0f} s).")


def mixed_precision() -> str:
    r = load_results("bench_search")["minilm_mixed_precision"]
    final = r["final_timing"]
    lines = []
    for label, row in final["rows"].items():
        fp32 = row.get("fp32_layers")
        kept = "all" if label.endswith("fp32") and fp32 is None else (
            "none" if not fp32 else f"{len(fp32)}: " + ", ".join(_short(n) for n in fp32[:8]) + (", …" if len(fp32) > 8 else ""))
        cosine = f"{row['mean_cosine']:.4f} / {row['worst_cosine']:.4f}" if "mean_cosine" in row else "1 (reference)"
        holds = "" if "holds_constraint" not in row else (" ✓" if row["holds_constraint"] else " ✗")
        lines.append([label, kept, cosine + holds, f"{row['latency_ms']:.0f} ms",
                      f"{row['speedup_vs_ort_fp32']:.2f}×", f"{row['speedup_vs_eager']:.2f}×"])
    s, g = r["search"], r["greedy"]
    answer = r["answer"]
    seeded = (f", seeded with {s['greedy_seeds']} greedy policies; {s['policies_measured']} policies measured in all, "
              f"{s['of_which_greedy_seeds']} of them the greedy seeds' sensitivity run and bisection (the same as greedy's, "
              f"measured once), in {s['seconds'] / 60:.0f} min" if s.get("greedy_seeds") else
              f", {s['policies_measured']} policies measured in {s['seconds'] / 60:.0f} min")
    return rows(["deployment", "Linear layers kept fp32", "mean / worst cosine", f"batch {final['batch_size']}",
                 "vs ORT fp32", "vs eager fp32"], lines) + "\n" + prose(
        f"{r['constraint']}; {r['genome']}. Search: NSGA-II, {s['trials']} trials (population {s['population']}, seed "
        f"{s['seed']}){seeded}; greedy by "
        f"sensitivity: {g['policies_measured']} policies in {g['seconds'] / 60:.0f} min. Every row above comes from ONE "
        f"closing interleaved run ({final['runs']} runs each, batch {final['batch_size']} of {final['sequence_length']} "
        f"tokens, {final['threads']} thread, load average {r['machine']['load_average_1m']}: upper bounds). Fastest "
        f"deployment holding the constraint: {answer['fastest_holding_constraint']}" + _verdict(final["rows"], answer) + ".")


def _verdict(table: dict, answer: dict) -> str:
    """The search's answer against greedy's, in words."""
    timed_as = answer.get("search_timed_as") or answer["search"] or ""
    found, greedy = table.get(timed_as), table.get("greedy by sensitivity")
    if found is None or greedy is None:
        return "; the search found no deployment holding the constraint"
    if timed_as == "greedy by sensitivity":
        return (f"; the search's best ({answer['search']}) IS greedy's policy ({len(greedy['fp32_layers'])} layers fp32, "
                f"{greedy['speedup_vs_ort_fp32']:.2f}×): seeded with it, the search kept it and found nothing faster "
                f"that holds the constraint")
    better = found["speedup_vs_ort_fp32"] >= greedy["speedup_vs_ort_fp32"]
    return (f"; the search's best ({answer['search']}: {len(found['fp32_layers'])} layers fp32, "
            f"{found['speedup_vs_ort_fp32']:.2f}×) {'matches or beats' if better else 'does NOT beat'} greedy's "
            f"({len(greedy['fp32_layers'])} layers fp32, {greedy['speedup_vs_ort_fp32']:.2f}×)")


def _short(layer: str) -> str:
    """"bert.encoder.layer.3.output.dense" -> "3.output"; "...layer.0.attention.self.query" -> "0.query"."""
    parts = layer.split(".")
    block = next((parts[i + 1] for i, p in enumerate(parts) if p == "layer"), "")
    kind = {"query": "q", "key": "k", "value": "v"}.get(parts[-1], "attn-out" if "attention" in parts else parts[-2])
    return f"{block}.{kind}"


TABLES: dict[str, Callable[[], str]] = {
    "deep-compression": deep_compression, "sparsity-90": sparsity_90, "two-bit": two_bit,
    "distillation": distillation, "one-shot": one_shot, "criteria": criteria, "latency": latency,
    "minilm-deploy": minilm_deploy,
    "room": room, "room-scaling": room_scaling,
    "search": search, "mixed-precision": mixed_precision,
}


def render(text: str) -> str:
    """`text` with every marked table regenerated; an unknown table name is an error."""
    def replace(match: re.Match) -> str:
        name = match["name"]
        if name not in TABLES:
            raise ValueError(f"unknown README table {name!r}; known: {', '.join(TABLES)}")
        return match.group(1) + TABLES[name]() + match.group(4)
    return BLOCK.sub(replace, text)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="exit 1 if README.md differs from the JSON, write nothing")
    args = parser.parse_args(argv)
    text = README.read_text()
    new = render(text)
    if args.check:
        if new != text:
            print("README.md result tables differ from benchmarks/results/*.json; run python scripts/readme_tables.py")
            return 1
        return 0
    README.write_text(new)
    return 0


if __name__ == "__main__":
    sys.exit(main())
