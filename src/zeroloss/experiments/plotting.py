"""Figures for the Du et al. experiments (matplotlib, Agg backend; deterministic: no dates, fixed styles)."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402


def _figure(ncols: int = 1) -> tuple[plt.Figure, list[plt.Axes]]:
    fig, axes = plt.subplots(1, ncols, figsize=(5.2 * ncols, 3.8), squeeze=False)
    return fig, list(axes[0])


def loss_curves_with_bound(df: pd.DataFrame, runs: pd.DataFrame, bound: bool = True) -> plt.Figure:
    """Loss against step (log scale) per run, grouped by net; dashed: L(0)(1 − ηλ₀/2)^k where asked."""
    nets = sorted(runs["net"].unique())
    fig, axes = _figure(len(nets))
    loss = df[df["metric"] == "loss"]
    for ax, net in zip(axes, nets, strict=True):
        for i, run in enumerate(runs[runs["net"] == net].itertuples()):
            curve = loss[loss["run_id"] == run.run_id].sort_values("step")
            ax.semilogy(curve["step"], curve["value"], color=f"C{i}", lw=1.2, label=f"seed {run.seed}")
            if bound and np.isfinite(run.lambda0):
                k = curve["step"].to_numpy()
                rate = 1.0 - run.eta * run.lambda0 / 2.0
                ax.semilogy(k, run.initial_loss * rate**k, color=f"C{i}", ls="--", lw=0.8)
        ax.set_title(f"{net}: loss (dashed: Du et al.'s bound)" if bound else f"{net}: loss")
        ax.set_xlabel("GD step")
        ax.set_ylabel("L = ½Σ(u − y)²")
        ax.legend(fontsize=7)
    fig.tight_layout()
    return fig


def width_scaling(df: pd.DataFrame, runs: pd.DataFrame) -> plt.Figure:
    """Log-log: final movement per layer and Gram drift against m, and |λ_min(G^(H)(0)) − λ₀|/λ₀ against m."""
    fig, (left, right) = _figure(2)
    final = df[df["step"] == df.groupby("run_id")["step"].transform("max")]
    means = final.groupby(["width", "metric"])["value"].mean().unstack()
    widths = means.index.to_numpy(dtype=float)
    for metric in [c for c in means.columns if c.startswith("movement_W") or c == "gram_drift"]:
        left.loglog(widths, means[metric], "o-", label=metric)
    ref = means["gram_drift"].iloc[0] * (widths / widths[0]) ** -0.5
    left.loglog(widths, ref, "k:", label="m^(−1/2)")
    left.set_xlabel("width m")
    left.set_title("movement and Gram drift after training")
    left.legend(fontsize=7)
    err = ((runs["lambda_min_GH0"] - runs["lambda0"]).abs() / runs["lambda0"]).groupby(runs["width"]).mean()
    right.loglog(err.index.to_numpy(dtype=float), err.to_numpy(), "o-")
    right.set_xlabel("width m")
    right.set_title("|λ_min(G^(H)(0)) − λ₀| / λ₀")
    fig.tight_layout()
    return fig


def min_width_by_depth(table: pd.DataFrame) -> plt.Figure:
    """Smallest width reaching the target against depth, per net (unreached depths marked with ×)."""
    fig, (ax,) = _figure(1)
    finite_max = np.nanmax(np.where(np.isfinite(table.to_numpy()), table.to_numpy(), np.nan))
    for i, net in enumerate(table.columns):
        values = table[net].to_numpy()
        depths = table.index.to_numpy()
        ok = np.isfinite(values)
        ax.semilogy(depths[ok], values[ok], "o-", color=f"C{i}", label=net)
        ax.semilogy(depths[~ok], np.full((~ok).sum(), 2 * finite_max), "x", color=f"C{i}", ms=9,
                    label=f"{net}: not reached" if (~ok).any() else None)
    ax.set_xlabel("depth H")
    ax.set_ylabel("smallest width reaching the target")
    ax.legend(fontsize=7)
    fig.tight_layout()
    return fig
