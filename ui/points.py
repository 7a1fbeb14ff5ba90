"""Every configuration evaluated in this session becomes a point on the Trade-offs page."""
from __future__ import annotations

import pandas as pd
import streamlit as st

from compressor import Report
from compressor.deploy import with_deployment
from compressor.sweeps import summary
from ui import cache, deploy_jobs
from ui.session import POINTS, save


def record(model_name: str, recipe_json: str, report: Report, page: str, label: str | None = None) -> None:
    """Remember a measured configuration (the same model and recipe twice is one point). A point recorded before
    its deployment was measured (ui/deploy_jobs.py) gets the deployed numbers when they come."""
    points: dict = st.session_state.setdefault(POINTS, {})
    key = (model_name, recipe_json)
    if key not in points:
        points[key] = {"model": model_name, "page": page, "label": label or page, **summary(report),
                       "recipe": recipe_json, "pinned": False}
        save()
    elif report.deployment is not None and points[key].get("kernel") is None:
        points[key].update(summary(report))
        save()


def add_finished_deployments(model_name: str) -> None:
    """Give the timed points still without deployed numbers those measured since (the page that recorded them may
    have moved on before its background deployment finished, ui/deploy_jobs.py)."""
    for (name, recipe_json), row in st.session_state.get(POINTS, {}).items():
        if name != model_name or row.get("kernel") is not None or row.get("latency_ms") is None:
            continue
        status = deploy_jobs.jobs.status((name, recipe_json))
        if status is not None and status.deployment is not None:
            row.update(summary(with_deployment(cache.measured(name, recipe_json), status.deployment)))
            save()


def table(model_name: str | None = None) -> pd.DataFrame:
    """The recorded points (of one model, if named), oldest first."""
    rows = list(st.session_state.get(POINTS, {}).values())
    frame = pd.DataFrame(rows)
    if model_name is not None and not frame.empty:
        frame = frame[frame["model"] == model_name].reset_index(drop=True)
    return frame


def set_pinned(model_name: str, recipe_json: str, pinned: bool) -> None:
    st.session_state[POINTS][(model_name, recipe_json)]["pinned"] = pinned
    save()
