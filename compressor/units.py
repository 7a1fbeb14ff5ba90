"""How sizes read to people: one formatter for the app, the CLI and the figures."""
from __future__ import annotations


def format_bytes(n: float) -> str:
    """1234 -> '1.2 kB' (decimal units, as file managers show them)."""
    for unit in ("B", "kB", "MB"):
        if abs(n) < 1000:
            return f"{n:,.0f} {unit}" if unit == "B" else f"{n:,.1f} {unit}"
        n /= 1000
    return f"{n:,.1f} GB"
