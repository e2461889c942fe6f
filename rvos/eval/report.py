"""Write evaluation tables (CSV) and per-item bar plots (PNG), each atomically."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from rvos.io import atomic_open

__all__ = ["plot_bars", "write_csv"]


def write_csv(table: pd.DataFrame, path: str | Path) -> Path:
    """Save `table` without its index; a reader never sees a half-written file."""
    path = Path(path)
    with atomic_open(path, "w") as handle:
        table.to_csv(handle, index=False)
    return path


def plot_bars(
    table: pd.DataFrame, label: str, columns: list[str], path: str | Path, title: str = ""
) -> Path:
    """Grouped bars of `columns` per row of `table`, labelled by column `label`, as a PNG.

    Uses the Agg canvas directly (no pyplot state), so it is safe in workers and tests.
    """
    path = Path(path)
    width = max(6.0, 0.25 * len(table) * max(1, len(columns)) + 2)
    fig = Figure(figsize=(min(width, 60.0), 4.0))
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    table.plot.bar(x=label, y=columns, ax=ax, width=0.8)
    ax.set_ylim(0, 1)
    ax.set_xlabel("")
    ax.set_title(title)
    ax.tick_params(axis="x", labelsize=7)
    fig.tight_layout()
    with atomic_open(path, "wb") as handle:
        fig.savefig(handle, format="png", dpi=100)
    return path
