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
            help=f"On {report.test_examples} held-out examples; baseline {report.baseline_accuracy:.1%}.",
        )
    cols[1].metric(
        "Size (exported file)", format_bytes(report.compressed_bytes), f"{report.compression_ratio:.1f}× smaller",
        delta_color="off", help=f"fp32 baseline: {format_bytes(report.baseline_dense_bytes)}.",
    )
    if report.latency_ms is not None:
        delta, colour = relative_change(report.latency_ms, report.baseline_latency_ms)
        cols[2].metric(
            "Latency", f"{report.latency_ms:.3f} ms", delta, delta_color=colour,
            help=f"Median of {report.latency_runs} runs, batch {report.batch_size}, {report.threads} thread(s), "
            f"on this server; baseline {report.baseline_latency_ms:.3f} ms.",
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


def fidelity_metric(column, report: Report) -> None:
    """An embedding model's headline: mean cosine to the uncompressed embeddings, the other measures in the help."""
    f = report.fidelity
    column.metric(
        "Mean cosine to uncompressed", f"{f['mean_cosine']:.4f}", f"{f['mean_cosine'] - 1:+.4f}",
        help=f"On {f['examples']} held-out sentences: worst cosine {f['worst_cosine']:.4f}; top-{f['neighbours']} "
             f"nearest-neighbour agreement {f['neighbour_agreement']:.1%}; topic accuracy (nearest centroid fitted "
             f"on uncompressed train embeddings) {f['topic_accuracy']:.1%}, uncompressed {f['baseline_topic_accuracy']:.1%}.",
    )


def latency_caption(report: Report) -> None:
    if report.latency_ms is not None:
        st.caption(
            f"Latency: median of {report.latency_runs} timed runs after warm-up, batch {report.batch_size}, "
            f"{report.threads} thread(s), measured on this server (speedup {report.speedup:.2f}×)."
        )


def notes(report: Report) -> None:
    """The report's plain-language caveats (e.g. no speedup from unstructured zeros)."""
    for note in report.notes:
        st.info(note, icon="💡")


@contextmanager
def user_errors() -> Iterator[None]:
    """Show a ValueError from the core as a clear message (not a traceback) and stop the page there."""
    try:
        yield
    except ValueError as err:
        st.error(str(err), icon="⚠️")
        st.stop()
