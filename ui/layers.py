"""Layer-level views for the technique pages: which layers a model has, their weights as plain arrays."""
from __future__ import annotations

import numpy as np
import streamlit as st
from torch import nn

from compressor.layers import eligible_layers
from compressor.structured import channel_prunable_layers
from ui.cache import sample
from ui.owned import forgettable


@forgettable(st.cache_data(show_spinner=False))
def weighted_layers(name: str) -> list[str]:
    """Names of the sample's Linear/Conv layers, in model order."""
    return list(eligible_layers(sample(name).model))


@forgettable(st.cache_data(show_spinner=False))
def channel_prunable(name: str) -> list[str]:
    """Layers of the sample whose output channels structured pruning can remove (traced once per model)."""
    s = sample(name)
    return channel_prunable_layers(s.model, s.data.example_input)


def weight_of(model: nn.Module, layer: str) -> np.ndarray:
    """A copy of one layer's weight as a numpy array (the model may be a shared cached one: never hand out views)."""
    return model.get_submodule(layer).weight.detach().numpy().copy()
