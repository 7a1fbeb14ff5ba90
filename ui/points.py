"""Every configuration evaluated in this session becomes a point on the Trade-offs page."""
from __future__ import annotations

import pandas as pd
import streamlit as st

from compressor import Report
from compressor.sweeps import summary
from ui.session import POINTS, save


def record(model_name: str, recipe_json: str, report: Report, page: str, label: str | None = None) -> None:
    """Remember a measured configuration (the same model and recipe twice is one point)."""
    points: dict = st.session_state.setdefault(POINTS, {})
    key = (model_name, recipe_json)
    if key not in points:
        points[key] = {"model": model_name, "page": page, "label": label or page, **summary(report),
                       "recipe": recipe_json, "pinned": False}
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
