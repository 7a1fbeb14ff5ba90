"""State that persists across pages, under plain st.session_state keys (widget keys are page-scoped)."""
from __future__ import annotations

import streamlit as st
import torch

from compressor import list_samples

MODEL = "model_name"  # the picked sample, shared by every page
POINTS = "tradeoff_points"  # every configuration evaluated this session: (model, recipe JSON) -> row


def model_picker() -> str:
    """The model picker in the sidebar of every page; returns the chosen sample name.

    Also sets torch to one intra-op thread for this run: Streamlit runs each rerun in a fresh thread and the
    setting is per thread; the models are tiny and thirty sessions share two cores.
    """
    torch.set_num_threads(1)
    samples = list_samples()
    names = list(samples)
    current = st.session_state.get(MODEL, names[0])
    st.session_state[MODEL] = current

    def remember() -> None:
        st.session_state[MODEL] = st.session_state["_model_picker"]

    st.sidebar.selectbox(
        "Model", names, index=names.index(current), key="_model_picker", on_change=remember,
        format_func=lambda name: name, help="The pretrained model every page compresses.",
    )
    st.sidebar.caption(samples[current])
    return st.session_state[MODEL]
