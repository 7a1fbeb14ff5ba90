"""Which latency the Trade-offs page plots: deployed (ONNX Runtime, integer kernels where they exist) or eager PyTorch."""
from __future__ import annotations

import pandas as pd

DEPLOYED, EAGER = "Deployed (ONNX Runtime)", "Eager PyTorch (fp32 kernels)"
SOURCES = (DEPLOYED, EAGER)
DEPLOYED_COLUMNS = ("deployed_latency_ms", "deployed_baseline_latency_ms", "deployed_speedup", "kernel",
                    "deployed_accuracy")


def latency_view(table: pd.DataFrame, source: str) -> pd.DataFrame:
    """The points with `latency_ms`, `baseline_latency_ms` and `speedup` taken from `source`.

    Eager values stay in `eager_latency_ms` / `eager_speedup`; `kernel` names the deployed kernels ("simulated":
    no native kernel, fp32 latency; "not deployed": the point was never deployed, so it has no deployed latency
    and drops out of the latency views when deployed latency is shown); `latency_shown` records the choice.
    """
    if source not in SOURCES:
        raise ValueError(f"latency source {source!r} is not one of: {', '.join(SOURCES)}")
    view = table.copy()
    for column in DEPLOYED_COLUMNS:
        if column not in view:
            view[column] = None
    view["eager_latency_ms"], view["eager_speedup"] = view["latency_ms"], view["speedup"]
    if source == DEPLOYED:
        view["latency_ms"] = pd.to_numeric(view["deployed_latency_ms"])
        view["baseline_latency_ms"] = pd.to_numeric(view["deployed_baseline_latency_ms"])
        view["speedup"] = pd.to_numeric(view["deployed_speedup"])
    view["kernel"] = view["kernel"].fillna("not deployed")
    view["latency_shown"] = source
    return view
