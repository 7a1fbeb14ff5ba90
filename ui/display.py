"""How pages show numbers: metric rows with deltas against the baseline, notes, friendly errors."""
from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import streamlit as st

from compressor import Report
from compressor.units import format_bytes


def relative_change(new: float, old: float) -> tuple[str, str]:
    """Delta text and colour mode for st.metric: lower is better; an unchanged value is shown neutral."""
    change = new / old - 1 if old else 0.0
    if abs(change) < 0.005:
        return "±0%", "off"
    return f"{change:+.0%}", "inverse"


def metric_row(report: Report) -> None:
    """Accuracy, size, latency, non-zero parameters and MACs of the compressed model, with deltas."""
    cols = st.columns(5)
    if report.fidelity is not None:
        fidelity_metric(cols[0], report)
    else:
        drop_points = -report.accuracy_drop * 100
        cols[0].metric(
            report.metric.capitalize(), f"{report.accuracy:.1%}", f"{drop_points:+.1f} pts",
            help=f"On {report.test_examples} held-out examples; baseline {report.baseline_accuracy:.1%}."
            + (f" Deployed on ONNX Runtime: {report.deployment.deployed_accuracy:.1%}." if report.deployment else ""),
        )
    cols[1].metric(
        "Size (exported file)", format_bytes(report.compressed_bytes), f"{report.compression_ratio:.1f}× smaller",
        delta_color="off", help=f"fp32 baseline: {format_bytes(report.baseline_dense_bytes)}.",
    )
    if report.deployment is not None:
        d = report.deployment
        delta, colour = relative_change(d.deployed_latency_ms, d.deployed_baseline_latency_ms)
        cols[2].metric(
            "Latency (deployed)" + (", simulated" if d.simulated else ""), f"{d.deployed_latency_ms:.3f} ms", delta,
            delta_color=colour,
            help=f"ONNX Runtime {d.runtime_version}, {d.kernel} kernels ({d.kernel_detail}); median of {d.runs} runs, "
            f"batch {d.batch_size}, {d.threads} thread(s); fp32 baseline on ONNX Runtime "
            f"{d.deployed_baseline_latency_ms:.3f} ms. Eager PyTorch: {report.latency_ms:.3f} ms.",
        )
    elif report.latency_ms is not None:
        delta, colour = relative_change(report.latency_ms, report.baseline_latency_ms)
        cols[2].metric(
            "Latency", f"{report.latency_ms:.3f} ms", delta, delta_color=colour,
            help=f"Median of {report.latency_runs} runs, batch {report.batch_size}, {report.threads} thread(s), "
            f"{flushed_text(report)}, on this server; baseline {report.baseline_latency_ms:.3f} ms.",
        )
    else:
        cols[2].metric("Latency", "not timed")
    delta, colour = relative_change(report.nonzero_params, report.baseline_params)
    cols[3].metric(
        "Non-zero params", f"{report.nonzero_params:,}", delta, delta_color=colour,
        help=f"Baseline: {report.baseline_params:,} parameters.",
    )
    delta, colour = relative_change(report.macs, report.baseline_macs)
    cols[4].metric(
        "MACs / example", f"{report.macs:,}", delta, delta_color=colour,
        help=f"Effective (zeros skipped): {report.effective_macs:,}.",
    )


def flushed_text(report: Report) -> str:
    """How subnormal floats were treated while timing, in a few words."""
    return "denormals flushed to zero" if report.denormals_flushed else "denormals not flushed (unsupported CPU)"


def fidelity_metric(column, report: Report) -> None:
    """An embedding model's headline: mean cosine to the uncompressed embeddings, the other measures in the help."""
    f = report.fidelity
    column.metric(
        "Mean cosine to uncompressed", f"{f['mean_cosine']:.4f}", f"{f['mean_cosine'] - 1:+.4f}",
        help=f"On {f['examples']} held-out sentences: worst cosine {f['worst_cosine']:.4f}; top-{f['neighbours']} "
             f"nearest-neighbour agreement {f['neighbour_agreement']:.1%}; topic accuracy (nearest centroid fitted "
             f"on uncompressed train embeddings) {f['topic_accuracy']:.1%}, uncompressed {f['baseline_topic_accuracy']:.1%}."
             + deployed_fidelity(report),
    )


def deployed_quality(d) -> str:
    """The deployed model's quality in words: accuracy as a percentage, or an embedding model's cosines."""
    if d.deployed_worst_cosine is not None:
        return f"mean cosine {d.deployed_accuracy:.4f} (worst {d.deployed_worst_cosine:.4f}) to the uncompressed embeddings"
    return f"{d.deployed_accuracy:.1%} {d.metric}"


def deployed_fidelity(report: Report) -> str:
    """The deployed (ONNX Runtime) model's mean and worst cosine, as a sentence; empty when not deployed."""
    d = report.deployment
    if d is None or d.deployed_worst_cosine is None:
        return ""
    return (f" Deployed on ONNX Runtime ({d.kernel}): mean cosine {d.deployed_accuracy:.4f}, worst "
            f"{d.deployed_worst_cosine:.4f}.")


def latency_caption(report: Report) -> None:
    """How latency was timed; a speedup only where there is a ratio (not for the baseline against itself)."""
    ratio = f" (speedup {report.speedup:.2f}×)" if report.speedup is not None else ""
    if report.deployment is not None:
        d = report.deployment
        simulated = (" **Simulated**: no native kernel for these weights on this CPU, so the deployed latency is "
                     "the fp32 graph's." if d.simulated else "")
        deployed_ratio = f"speedup {d.deployed_speedup:.2f}×; " if report.speedup is not None else ""
        st.caption(
            f"Latency shown: **deployed** on ONNX Runtime {d.runtime_version} ({d.execution_provider}, {d.kernel} "
            f"kernels), median of {d.runs} runs after warm-up, batch {d.batch_size}, {d.threads} thread(s), "
            f"{flushed_text(report)}, timed alongside the fp32 baseline on the same runtime ({deployed_ratio}CPU: "
            f"{', '.join(d.cpu_flags) or 'no AVX2/AVX-512/VNNI'}). Eager PyTorch: {report.latency_ms:.3f} ms"
            f"{ratio}.{simulated}"
        )
    elif report.latency_ms is not None:
        st.caption(
            f"Latency: median of {report.latency_runs} timed runs after warm-up, batch {report.batch_size}, "
            f"{report.threads} thread(s), {flushed_text(report)} (as deployment runtimes do), measured on this "
            f"server{ratio}."
        )


def notes(report: Report) -> None:
    """The report's plain-language caveats (e.g. no speedup from unstructured zeros)."""
    for note in report.notes:
        st.info(note, icon="💡")


MAX_MESSAGE = 400  # characters of an error message shown: a pasted megabyte is not echoed back whole


def short(message: str, limit: int = MAX_MESSAGE) -> str:
    """The message, or its start and end with how much was left out between them."""
    if len(message) <= limit:
        return message
    tail = 60
    head = limit - tail
    return f"{message[:head]} … [{len(message) - head - tail:,} characters left out] … {message[-tail:]}"


def show_error(err: Exception) -> None:
    """A user's mistake as one clear (and bounded) line."""
    st.error(short(str(err)), icon="⚠️")


@contextmanager
def user_errors() -> Iterator[None]:
    """Show a ValueError from the core as a clear message (not a traceback) and stop the page there."""
    try:
        yield
    except ValueError as err:
        show_error(err)
        st.stop()
