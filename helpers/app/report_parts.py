"""What every section of the report builds with: figures (PNG files, base64 in the HTML), tables of
strings for the templates' ``table`` macro, numbers shown the one way, and the best run by validation AUC."""

from __future__ import annotations

import base64
import io
import re
from dataclasses import dataclass
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd


@dataclass
class Figure:
    """A figure of the report: ``report_files/<name>.png``, embedded in the HTML."""

    name: str
    caption: str
    png: bytes

    @property
    def base64(self) -> str:
        return base64.b64encode(self.png).decode("ascii")


def cells(frame: pd.DataFrame) -> dict:
    """Column names and rows of strings (empty for missing values), as the templates' ``table`` macro takes."""
    rows = [["" if pd.isna(value) else str(value) for value in row] for row in frame.itertuples(index=False)]
    return {"columns": [str(column) for column in frame.columns], "rows": rows}


def figure(fig, name: str, caption: str, files: Path) -> Figure:
    """Save the figure as ``report_files/<name>.png`` and close it."""
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=100, bbox_inches="tight")
    plt.close(fig)
    shown = Figure(re.sub(r"[^A-Za-z0-9_.-]+", "_", name), caption, buffer.getvalue())
    (files / f"{shown.name}.png").write_bytes(shown.png)
    return shown


def number(value, digits: int = 2) -> str:
    """``0.91``; integers as they are; ``-`` for missing values."""
    if value is None or (isinstance(value, float) and np.isnan(value)):
        return "-"
    if isinstance(value, bool) or not isinstance(value, int | float | np.number):
        return str(value)
    return str(value) if isinstance(value, int | np.integer) else f"{value:.{digits}f}"


def signed_interval(estimate: float, low: float, high: float, *, digits: int = 2) -> str:
    """A difference with its interval: ``"+0.04 (-0.01, +0.09)"``, exact zeros unsigned; ``"n/a"`` when undefined."""
    if estimate is None or np.isnan(estimate):
        return "n/a"
    shown = _signed(estimate, digits)
    if np.isnan(low) or np.isnan(high):
        return shown
    return f"{shown} ({_signed(low, digits)}, {_signed(high, digits)})"


def _signed(value: float, digits: int) -> str:
    """``+0.04``, ``-0.01``; an exact 0 without a sign (two identical models differ by exactly 0)."""
    return f"{0.0:.{digits}f}" if value == 0 else f"{value:+.{digits}f}"


def val_auc(run) -> float:
    """The run's AUC on its validation rows (NaN when undefined): how the report chooses a best model."""
    from helpers.evaluation import binary_metrics

    val = run.split("val")
    auc = binary_metrics(val["y_true"], val["probability"].to_numpy(float))["auc"] if len(val) else None
    return np.nan if auc is None else float(auc)


def best_by_val_auc(runs: list):
    """The run of highest validation AUC (runs without one last); None for no runs."""
    return max(runs, key=lambda run: -np.inf if np.isnan(val_auc(run)) else val_auc(run), default=None)
