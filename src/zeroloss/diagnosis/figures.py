"""Figures of a diagnosis (matplotlib ``Figure`` objects, no pyplot state, no global backend change).

- :func:`loss_figure` — loss of the real, linearised and predicted models against step (log scale);
- :func:`dynamics_figure` — eNTK drift and parameter movement (per module and total) against step;
- :func:`spectrum_figure` — the eigenvalues of Θ₀, sorted (log scale);
- :func:`width_figure` — movement, drift and gap against width with their log-log fits and the m^{−1/2} reference.

Examples:
    >>> import numpy as np
    >>> fig = spectrum_figure(np.array([1e-3, 0.1, 2.0]))
    >>> len(fig.axes)
    1
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

#: Figure size in inches (width, height), the same for every panel so that the page lines them up.
SIZE = (5.2, 3.4)

LOSS_STYLES = {"loss_real": ("real", "-", "C0"), "loss_linear": ("linearised", "--", "C1"),
               "loss_predicted": ("kernel prediction", ":", "C2")}


def _positive(values: pd.Series) -> pd.Series:
    return values.where(values > 0)


def loss_figure(history: pd.DataFrame, title: str = "") -> Figure:
    """Loss ½Σ‖f − y‖² of the three trajectories against step (log y)."""
    fig = Figure(figsize=SIZE)
    ax = fig.add_subplot()
    for metric, (label, style, color) in LOSS_STYLES.items():
        rows = history[history["metric"] == metric]
        if len(rows):
            ax.plot(rows["step"], _positive(rows["value"]), style, color=color, label=label)
    ax.set_yscale("log")
    ax.set_xlabel("step")
    ax.set_ylabel("loss L = ½Σ‖f − y‖²")
    ax.set_title(title or "real vs linearised vs kernel prediction")
    ax.legend(frameon=False)
    fig.tight_layout()
    return fig


def dynamics_figure(history: pd.DataFrame, title: str = "") -> Figure:
    """eNTK drift ‖Θ_t − Θ₀‖_F/‖Θ₀‖_F and relative movement ‖θ_t − θ₀‖/‖θ₀‖ (per module, total bold)."""
    fig = Figure(figsize=SIZE)
    ax = fig.add_subplot()
    drift = history[history["metric"] == "entk_drift"]
    if len(drift):
        ax.plot(drift["step"], _positive(drift["value"]), "-", color="k", lw=2, label="eNTK drift")
    moves = history[history["metric"] == "movement"]
    modules = list(dict.fromkeys(moves["module"]))
    for i, mod in enumerate(modules):
        rows = moves[moves["module"] == mod]
        total = mod == "(all)"
        ax.plot(rows["step"], _positive(rows["value"]), "-" if total else "--", lw=2 if total else 1,
                color="C3" if total else f"C{(i + 4) % 10}", label=f"movement {mod}")
    ax.set_yscale("log")
    ax.set_xlabel("step")
    ax.set_ylabel("relative change")
    ax.set_title(title or "kernel drift and parameter movement")
    if len(modules) <= 8:
        ax.legend(frameon=False, fontsize="small")
    fig.tight_layout()
    return fig


def spectrum_figure(eigenvalues: np.ndarray, title: str = "") -> Figure:
    """Eigenvalues of Θ₀ in decreasing order (log y; non-positive ones, round-off, are left out)."""
    fig = Figure(figsize=SIZE)
    ax = fig.add_subplot()
    lam = np.sort(np.asarray(eigenvalues, dtype=np.float64))[::-1]
    idx = np.arange(1, lam.size + 1)
    ok = lam > 0
    ax.plot(idx[ok], lam[ok], ".-", color="C0")
    ax.set_yscale("log")
    ax.set_xlabel("index")
    ax.set_ylabel("eigenvalue of Θ₀")
    ax.set_title(title or f"spectrum of the empirical NTK at init (n·k = {lam.size})")
    fig.tight_layout()
    return fig


def width_figure(sweep: Any, title: str = "") -> Figure:
    """Movement, drift and gap against width (log-log), fitted slopes in the legend, m^{−1/2} dashed."""
    from zeroloss.diagnosis.slopes import BOUND_EXPONENT, SLOPE_METRICS

    fig = Figure(figsize=SIZE)
    ax = fig.add_subplot()
    table = sweep.table
    widths = np.array(sorted(table["width"].unique()), dtype=np.float64)
    for i, name in enumerate(SLOPE_METRICS):
        s = sweep.slopes[name]
        vals = table[name].where(table[name] > 0)
        ax.plot(table["width"], vals, "o", color=f"C{i}", alpha=0.6)
        if np.isfinite(s.slope):
            ax.plot(widths, np.exp(s.intercept) * widths**s.slope, "-", color=f"C{i}",
                    label=f"{name}: slope {s.slope:+.2f}")
            ref = np.exp(s.intercept) * widths[0] ** s.slope * (widths / widths[0]) ** BOUND_EXPONENT
            ax.plot(widths, ref, ":", color=f"C{i}", lw=1)
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("width")
    ax.set_ylabel("max over the run")
    ax.set_title(title or "width slopes (dotted: m^-1/2)")
    ax.legend(frameon=False, fontsize="small")
    fig.tight_layout()
    return fig
