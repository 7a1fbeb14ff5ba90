"""A slider page's headline: the core numbers at once, the deployed latency when its background job is done.

`attach` gives the page the report with its deployment when one is measured (ui/deploy_jobs.py), else the core
report and the job's status; `headline` draws the metric row. While the job is queued or running, the row is drawn
by a fragment that reruns itself every `POLL_S` seconds (only the fragment: a few milliseconds of the server's
time) and says that the deployed latency is being measured; once it is, the fragment reruns the whole page, so the
metric row, the notes and the session's Trade-offs point all carry the deployed numbers. A failed deployment is
one line under the eager numbers; it never stops the page.
"""
from __future__ import annotations

import streamlit as st

from compressor import Report
from compressor.deploy import with_deployment
from ui import cache
from ui.deploy_jobs import Status
from ui.display import latency_caption, metric_row

POLL_S = 1.5  # seconds between a waiting page's looks at its job


def attach(name: str, recipe_json: str, report: Report) -> tuple[Report, Status]:
    """The report with its deployment if measured, and where the deployment is (asked for if nobody has)."""
    status = cache.deployment_status(name, recipe_json, report)
    if status.deployment is not None:
        return with_deployment(report, status.deployment), status
    return report, status


def headline(name: str, recipe_json: str, report: Report, status: Status) -> None:
    """Metric row and latency caption; a polling fragment while the deployment is pending; a failure in one line."""
    if status.pending:
        _waiting(name, recipe_json, report)
        return
    metric_row(report)
    latency_caption(report)
    if status.state == "failed":
        st.warning(f"The deployed latency could not be measured on ONNX Runtime ({status.error}); the numbers above "
                   "are PyTorch's own.", icon="⚠️")


@st.fragment(run_every=POLL_S)
def _waiting(name: str, recipe_json: str, report: Report) -> None:
    """The core numbers and a "measuring" line, redrawn every POLL_S s until the deployment is done."""
    status = cache.deployment_status(name, recipe_json, report)  # asks again if the job was dropped meanwhile
    if not status.pending:
        st.rerun()  # the whole page, with the deployed numbers (or the failure)
    metric_row(report)
    latency_caption(report)
    ahead = f", {status.waiting} other configuration(s) first" if status.waiting else ""
    st.caption(f"⏳ Measuring the deployed latency: exporting to ONNX and timing on ONNX Runtime in the background "
               f"({status.state}{ahead}). Until then the latency shown is eager PyTorch's, measured.")
