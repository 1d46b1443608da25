"""Figures of the Marion & Berthier experiments, from the sweep's tidy DataFrame (see :func:`zeroloss.load`).

- :func:`regimes_plot`: per target, the population risk against slow time τ for two-timescale SGD (solid), its
  ε → 0 limit from the same u₀ (dashed) and ε = 1 (dotted), with the O(η) floor Σ Δf² η/28 and the floor plus SGD's
  O(h) label-noise excess; then snapshots of f, f* and the neurons for the first paper-target seed.
- :func:`sweep_plot`: final risk per ε (box-plot, every repeat drawn).
- :func:`appendix_plot`: final criterion per regime and setting; the 2-D neuron positions against the target's jumps.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from zeroloss.papers.base import pyplot
from zeroloss.papers.marion2023.claims import runs_table
from zeroloss.papers.marion2023.twotimescale import floor_risk, forward, target_preset


def _parameters_at(rows: pd.DataFrame, step: int, m: int, prefix: str = "") -> tuple[np.ndarray, np.ndarray] | None:
    """(u (m,), a (m + 1,)) stored at ``step`` under ``prefix``, or None when that snapshot is absent."""
    at = rows[rows["step"] == step]
    values = dict(zip(at["metric"], at["value"], strict=False))
    if f"{prefix}u_0" not in values:
        return None
    return (np.array([values[f"{prefix}u_{j}"] for j in range(m)]),
            np.array([values[f"{prefix}a_{j}"] for j in range(m + 1)]))


def _risk_panel(ax, df: pd.DataFrame, runs: pd.DataFrame, target: str) -> None:
    sub_runs = runs[runs["target"] == target]
    for i, run in enumerate(sub_runs[sub_runs["eps"] < 1].itertuples()):
        rows = df[(df["run_id"] == run.run_id) & df["metric"].isin(["risk", "tau", "limit_risk"])]
        sub = rows.pivot_table(index="step", columns="metric", values="value")
        tau = sub["tau"].to_numpy()
        keep = tau > 0
        ax.loglog(tau[keep], sub["risk"].to_numpy()[keep], "-", color=f"C{i % 10}", lw=1,
                  label=f"seed {run.seed}")
        if "limit_risk" in sub:
            ax.loglog(tau[keep], sub["limit_risk"].to_numpy()[keep], "--", color=f"C{i % 10}", lw=1.2)
    for i, run in enumerate(sub_runs[sub_runs["eps"] == 1].itertuples()):
        rows = df[(df["run_id"] == run.run_id) & df["metric"].isin(["risk", "tau"])]
        sub = rows.pivot_table(index="step", columns="metric", values="value")
        tau = sub["tau"].to_numpy()
        keep = tau > 0
        ax.loglog(tau[keep], sub["risk"].to_numpy()[keep], ":", color=f"C{i % 10}", lw=1,
                  label="ε = 1" if i == 0 else None)
    if not sub_runs.empty:
        floor = floor_risk(target_preset(target), float(sub_runs["eta"].iloc[0]))
        ax.axhline(floor, color="k", lw=1.5, label="O(η) floor Σ Δf² η/28")
        excess = sub_runs[sub_runs["eps"] < 1]["noise_excess"].median()
        if np.isfinite(excess):
            ax.axhline(floor + excess, color="0.45", lw=1.2, ls="--", label="floor + SGD's O(h) label-noise excess")
    ax.set_xlabel("slow time τ = p·h·ε")
    ax.set_ylabel("population risk ∫(f − f*)²")
    ax.set_title(f"{target} target: SGD ε = 2·10⁻⁵ (solid), its ε → 0 limit (dashed), ε = 1 (dotted)", fontsize=9)
    ax.legend(fontsize=6, ncol=2)


def regimes_plot(df: pd.DataFrame) -> dict[str, Any]:
    """Risk against slow time per target, and snapshots of f for the first paper-target seed."""
    plt = pyplot()
    runs = runs_table(df)
    targets = [t for t in ("paper", "code") if t in set(runs["target"])]
    fig, axes = plt.subplots(1, max(len(targets), 1), figsize=(7.5 * max(len(targets), 1), 4.6), squeeze=False)
    for ax, target in zip(axes[0], targets, strict=False):
        _risk_panel(ax, df, runs, target)
    fig.tight_layout()
    figures = {"risk against slow time: two-timescale SGD, its ε → 0 limit, ε = 1, and the O(η) floor": fig}
    if targets:
        figures["snapshots of f, f* and the neurons (first seed)"] = _snapshots(df, runs, targets[0])
    return figures


def _snapshots(df: pd.DataFrame, runs: pd.DataFrame, target: str):
    plt = pyplot()
    fig, (snap, track) = plt.subplots(1, 2, figsize=(13, 4.3))
    f_star = target_preset(target)
    x = np.linspace(0, 1, 2001)
    for panel in (snap, track):
        panel.plot(x, f_star(x), "k-", lw=2, label="f*")
    sub_runs = runs[runs["target"] == target]
    for two_timescale, color in ((True, "C0"), (False, "C3")):
        chosen = sub_runs[(sub_runs["eps"] < 1) == two_timescale]
        if chosen.empty:
            continue
        first = chosen.iloc[0]
        rows = df[df["run_id"] == first["run_id"]]
        m = int(first["neurons"])
        u, a = _parameters_at(rows, int(rows["step"].max()), m)
        snap.plot(x, forward(a[None], u[None], x, first["eta"])[0], color=color, label=f"f, ε = {first['eps']:g}")
        snap.plot(u, np.full(m, -0.3 if two_timescale else -0.6), "|", color=color, ms=12)
    snap.set_title(f"{target} target, end of training, seed {int(sub_runs['seed'].min())} (ticks: neurons u_j)")
    snap.set_xlabel("x")
    snap.set_ylabel("f(x)")
    snap.legend(fontsize=7)
    two = sub_runs[sub_runs["eps"] < 1]
    if not two.empty:
        first = two.iloc[0]
        rows = df[df["run_id"] == first["run_id"]]
        m = int(first["neurons"])
        tau = rows[rows["metric"] == "tau"].set_index("step")["value"]
        steps = sorted(int(s) for s in rows[rows["metric"] == "u_0"]["step"].unique())
        for k, step in enumerate(steps):
            color = plt.cm.viridis(k / max(len(steps) - 1, 1))
            u, a = _parameters_at(rows, step, m)
            track.plot(x, forward(a[None], u[None], x, first["eta"])[0], color=color, lw=1,
                       label=f"τ = {tau.get(step, np.nan):.3g}")
            track.plot(u, np.full(m, -0.3 - 0.3 * k), "|", color=color, ms=8)
            limit = _parameters_at(rows, step, m, "limit_")
            if limit is not None:
                track.plot(x, forward(limit[1][None], limit[0][None], x, first["eta"])[0], "--", color=color, lw=1)
        track.set_title(f"ε = {first['eps']:g}, seed {first['seed']}: SGD (solid) and limit (dashed)")
        track.set_xlabel("x")
        track.set_ylabel("f(x)")
        track.legend(fontsize=7)
    fig.tight_layout()
    return fig


def sweep_plot(df: pd.DataFrame) -> dict[str, Any]:
    """Final (plateau) risk per ε, every repeat drawn over its box: at equal slow time and at equal samples."""
    plt = pyplot()
    runs = runs_table(df)
    steps = (runs["t_max"] / (runs["h"] * runs["eps"])).round()
    common_tau = runs.groupby("t_max")["eps"].nunique().idxmax() if not runs.empty else 0.0
    groups = {f"equal slow time τ_max = {common_tau:g}": runs[runs["t_max"] == common_tau]}
    if not runs.empty:
        same = runs[steps == steps[runs["eps"] == runs["eps"].min()].max()]
        if same["t_max"].nunique() > 1:
            groups[f"equal samples ({steps[same.index].iloc[0]:.3g} SGD steps)"] = same
    fig, axes = plt.subplots(1, len(groups), figsize=(5.5 * len(groups), 4), squeeze=False, sharey=True)
    for ax, (title, group) in zip(axes[0], groups.items(), strict=True):
        eps_values = sorted(group["eps"].unique())
        data = [group[group["eps"] == e]["plateau_risk"].to_numpy() for e in eps_values]
        ax.boxplot(data, tick_labels=[f"{e:g}" for e in eps_values])
        for i, values in enumerate(data, start=1):
            ax.plot(np.full(values.size, i), values, ".", color="C0", alpha=0.6)
        if not group.empty:
            target = str(group["target"].iloc[0]) if "target" in group else "paper"
            ax.axhline(floor_risk(target_preset(target), float(group["eta"].iloc[0])), color="k", lw=1,
                       label="O(η) floor Σ Δf² η/28")
            ax.legend(fontsize=7)
        ax.set_yscale("log")
        ax.set_xlabel("ε (ratio of the u-step to the a-step)")
        ax.set_title(f"ε sweep at {title}", fontsize=9)
    axes[0][0].set_ylabel("risk, mean over the last fifth of τ_max")
    fig.tight_layout()
    return {"final risk against ε (box-plot)": fig}


def eta_plot(df: pd.DataFrame) -> dict[str, Any]:
    """Final (plateau) risk against η, per seed, with the floor Σ Δf² η/28 (log-log: slope 1 is O(η))."""
    plt = pyplot()
    runs = runs_table(df)
    fig, ax = plt.subplots(figsize=(5.5, 4))
    for i, (seed, group) in enumerate(runs.groupby("seed")):
        group = group.sort_values("eta")
        ax.loglog(group["eta"], group["plateau_risk"], "o-", color=f"C{i % 10}", lw=1, ms=4, label=f"seed {seed}")
    if not runs.empty:
        grid = np.sort(runs["eta"].unique())
        target = target_preset(str(runs["target"].iloc[0]))
        ax.loglog(grid, [floor_risk(target, e) for e in grid], "k--", lw=1.5, label="floor Σ Δf² η/28 (slope 1)")
    ax.set_xlabel("smoothing width η")
    ax.set_ylabel("risk, mean over the last fifth of τ_max")
    ax.set_title("the O(η) scaling at fixed ε", fontsize=9)
    ax.legend(fontsize=7)
    fig.tight_layout()
    return {"final risk against η": fig}


def _setting(row: Any) -> str:
    return f"{row['model']} d={int(row['d'])}"


def appendix_plot(df: pd.DataFrame) -> dict[str, Any]:
    """Final criterion per regime and setting; the 2-D neuron positions of seed 0 against the target's jumps."""
    plt = pyplot()
    runs = runs_table(df)
    runs["setting"] = runs.apply(_setting, axis=1)
    settings = sorted(runs["setting"].unique())
    fig, axes = plt.subplots(1, len(settings), figsize=(4.2 * len(settings), 3.8), squeeze=False)
    for ax, setting in zip(axes[0], settings, strict=True):
        group = runs[runs["setting"] == setting]
        regimes = ["standard", "two-timescale"]
        ax.boxplot([group[group["regime"] == r]["final_criterion"].to_numpy() for r in regimes],
                   tick_labels=regimes)
        ax.set_yscale("log")
        ax.set_title(f"{setting}, {int(group['epochs'].max())} epochs")
        ax.set_ylabel("final ‖ŷ − y‖₂ / n")
    fig.tight_layout()
    figures = {"final criterion per regime (box-plots)": fig}
    two_d = runs[(runs["model"] == "additive") & (runs["d"] == 2)]
    if not two_d.empty:
        fig2, axes2 = plt.subplots(1, 2, figsize=(9, 4.6))
        for ax, regime in zip(axes2, ("standard", "two-timescale"), strict=True):
            chosen = two_d[two_d["regime"] == regime]
            if chosen.empty:
                continue
            run_id = chosen.iloc[0]["run_id"]
            final = df[(df["run_id"] == run_id) & df["metric"].str.startswith("u_")]
            u = final.sort_values("metric", key=lambda s: s.str[2:].astype(int))["value"].to_numpy().reshape(-1, 2)
            for t in (0.3, 0.5, 0.7):  # the target's jumps, wide and light so that a neuron on one shows
                ax.axvline(t, color="0.8", lw=5)
                ax.axhline(t, color="0.8", lw=5)
            for x1, x2 in u:  # neuron j's step along x₁ (vertical line) and along x₂ (horizontal line)
                ax.axvline(x1, color="C1", ls="--", lw=1)
                ax.axhline(x2, color="C3", ls="--", lw=1)
            ax.set_xlim(-0.05, 1.05)
            ax.set_ylim(-0.05, 1.05)
            ax.set_title(f"2-D, {regime} regime")
            ax.set_xlabel("x₁")
            ax.set_ylabel("x₂")
        fig2.suptitle("seed 0: neuron steps (dashed; x₁ orange, x₂ red) against the target's jumps (grey)",
                      fontsize=9)
        fig2.tight_layout()
        figures["neuron positions on the 2-D target, seed 0"] = fig2
    return figures
