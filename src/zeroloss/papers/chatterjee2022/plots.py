"""Figures of the chatterjee2022 experiment (matplotlib, Agg): steps to target against width and depth, loss curves.

Every panel is one (network, data) pair: rows are the networks (with / without hidden biases), columns the data
variants. Steps are the median over seeds with the seeds' range as error bars; a censored point (no grid step
reached the target within the budget) is drawn at the budget as an open upward triangle, meaning "more than this".

Examples:
    >>> import pandas as pd
    >>> runs = pd.DataFrame([dict(hidden_bias=True, data="gaussian", centred=True, widths=(w, w), init=i, seed=0,
    ...                           reached=True, steps_to_target=s, budget=1000, run_id=f"{i}{w}")
    ...                      for w, s in ((4, 80), (16, 60)) for i in ("positive", "kaiming")])
    >>> sorted(plot(runs))
    ['steps to target vs width']
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pandas as pd

from zeroloss.papers.base import pyplot
from zeroloss.papers.chatterjee2022.claims import data_label, flag, net_label, runs_table

#: Readable names of the initialisations, in legend order.
LABELS = {
    "positive": "positive, hidden 1/fan_in",
    "positive_uniform": "positive, hidden U[½, 3⁄2]/fan_in",
    "kaiming": "Kaiming (He)",
    "xavier": "Xavier (Glorot)",
    "lecun": "LeCun",
    "torch_default": "PyTorch default",
}
COLORS = {"positive": "C3", "positive_uniform": "C1", "kaiming": "C0", "xavier": "C2", "lecun": "C4",
          "torch_default": "C7"}
MARKERS = {"positive": "o", "positive_uniform": "s", "kaiming": "D", "xavier": "v", "lecun": "P", "torch_default": "X"}
#: The two positive laws often coincide: the uniform one is dashed so that both stay visible.
STYLES = {"positive_uniform": "--"}
KAPPA = r"$\kappa(XX^\top)$"
#: The loss curves' lower limit, as a multiple of the target (the curves stop at the target: below is empty).
FLOOR_BELOW_TARGET = 0.1


def _panels(runs: pd.DataFrame) -> tuple[list[bool], list[tuple[str, bool]]]:
    nets = sorted(runs["hidden_bias"].unique(), reverse=True)
    data = sorted({(d, bool(c)) for d, c in zip(runs["data"], runs["centred"], strict=True)},
                  key=lambda dc: (dc[0] != "gaussian", not dc[1]))
    return nets, data


def _figure(nets: list[bool], data: list[tuple[str, bool]]):
    plt = pyplot()

    fig, axes = plt.subplots(len(nets), len(data), figsize=(3.4 * len(data) + 1.2, 2.9 * len(nets) + 0.6),
                             squeeze=False, sharey="row")
    return fig, axes


def _steps_panel(ax, sub: pd.DataFrame, x_of, xlabel: str, log_x: bool) -> None:
    from matplotlib.ticker import NullLocator

    budget = float(sub["budget"].max())
    for init, label in LABELS.items():
        rows = sub[sub["init"] == init]
        if rows.empty:
            continue
        xs, mids, lows, highs, cens = [], [], [], [], []
        for x, group in rows.groupby(rows["widths"].map(x_of)):
            reached = group["reached"].map(flag).to_numpy(dtype=bool)
            counts = np.where(reached, group["steps_to_target"].astype(float), budget)
            xs.append(x)
            mids.append(float(np.median(counts)))
            lows.append(float(counts.min()))
            highs.append(float(counts.max()))
            cens.append(not reached.all() and float(np.median(counts)) >= budget)
        xs, mids = np.array(xs, dtype=float), np.array(mids)
        err = np.array([mids - np.array(lows), np.array(highs) - mids])
        ax.errorbar(xs, mids, yerr=err, color=COLORS[init], marker=MARKERS[init], ms=4, lw=1.2, capsize=2,
                    ls=STYLES.get(init, "-"), label=label)
        cen = np.array(cens, dtype=bool)
        if cen.any():
            ax.plot(xs[cen], mids[cen], linestyle="none", marker="^", ms=9, mfc="none", mec=COLORS[init])
    ax.axhline(budget, color="0.5", lw=0.8, ls=":")
    if log_x:
        ax.set_xscale("log", base=2)
    ax.set_yscale("log")
    ticks = sorted(set(sub["widths"].map(x_of)))
    ax.set_xticks(ticks, [str(t) for t in ticks])
    ax.xaxis.set_minor_locator(NullLocator())
    ax.set_xlabel(xlabel)


def _steps_figure(runs: pd.DataFrame, x_of, xlabel: str, title: str, log_x: bool = True):
    nets, data = _panels(runs)
    fig, axes = _figure(nets, data)
    for i, bias in enumerate(nets):
        for j, (name, centred) in enumerate(data):
            ax = axes[i][j]
            sub = runs[(runs["hidden_bias"] == bias) & (runs["data"] == name) & (runs["centred"] == centred)]
            if not sub.empty:
                _steps_panel(ax, sub, x_of, xlabel, log_x)
                kappa = sub["kappa_xx"].iloc[0] if "kappa_xx" in sub else math.nan
                ax.set_title(f"{data_label(name, centred)}, {KAPPA} = {kappa:.3g}\nnet {net_label(bias)}", fontsize=8)
            if j == 0:
                ax.set_ylabel("GD steps to F ≤ 1e-6·F(w₀)")
    handles, labels = axes[0][0].get_legend_handles_labels()
    from matplotlib.lines import Line2D

    handles += [Line2D([], [], color="0.3", marker="^", mfc="none", ls="none", ms=8), Line2D([], [], color="0.5",
                                                                                           ls=":")]
    labels += ["censored: > budget", "budget"]
    fig.legend(handles, labels, loc="lower center", ncol=4, fontsize=8, frameon=False)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout(rect=(0, 0.1, 1, 0.96))
    return fig


def _curves_figure(df: pd.DataFrame, runs: pd.DataFrame, widths: tuple[int, ...]):
    nets, data = _panels(runs)
    fig, axes = _figure(nets, data)
    target = float(runs["target"].iloc[0]) if "target" in runs else 1e-6
    curves = df[df["metric"] == "F_relative"]
    for i, bias in enumerate(nets):
        for j, (name, centred) in enumerate(data):
            ax = axes[i][j]
            sel = runs[(runs["hidden_bias"] == bias) & (runs["data"] == name) & (runs["centred"] == centred)
                       & (runs["widths"] == widths)]
            for init, label in LABELS.items():
                first = sel[sel["init"] == init].sort_values("seed").head(1)
                if first.empty:
                    continue
                curve = curves[curves["run_id"] == first["run_id"].iloc[0]].sort_values("step")
                if not curve.empty:
                    ax.plot(curve["step"], curve["value"].clip(lower=target * FLOOR_BELOW_TARGET), color=COLORS[init],
                            lw=1.2, ls=STYLES.get(init, "-"), label=label)
            ax.axhline(target, color="k", lw=0.8, ls="--", label="target")
            ax.set_yscale("log")
            ax.set_ylim(target * FLOOR_BELOW_TARGET, 10.0)
            ax.set_xlabel("GD step")
            ax.set_title(f"{data_label(name, centred)}\nnet {net_label(bias)}", fontsize=8)
            if j == 0:
                ax.set_ylabel("F(w_k) / F(w₀)")
    handles, labels = axes[0][0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="lower center", ncol=4, fontsize=8, frameon=False)
    fig.suptitle(f"loss at each init's best step, widths {list(widths)}, seed 0", fontsize=10)
    fig.tight_layout(rect=(0, 0.1, 1, 0.96))
    return fig


def plot(df: pd.DataFrame) -> dict[str, Any]:
    """Figures from the sweep's tidy frame: steps to target vs width (depth 2) and vs depth (at the depth sweep's
    width) when present, and the loss curves of one configuration when the frame has curves."""
    runs = runs_table(df)
    figures: dict[str, Any] = {}
    depth2 = runs[runs["widths"].map(len) == 2]
    if depth2["widths"].nunique() > 1:
        figures["steps to target vs width"] = _steps_figure(
            depth2, lambda w: w[0], "width (depth 2)", "steps to the target at each init's best step, by width")
    deep = runs[runs["widths"].map(len) > 2]
    if not deep.empty:
        width = int(deep["widths"].map(lambda w: w[0]).mode().iloc[0])
        by_depth = runs[runs["widths"].map(lambda w: w[0] == width)]
        figures["steps to target vs depth"] = _steps_figure(
            by_depth, len, f"depth (hidden layers, width {width})", "steps to the target at each init's best step, "
                                                                      "by depth", log_x=False)
    if "metric" in df.columns and (df["metric"] == "F_relative").any():
        widths = sorted(runs["widths"].unique(), key=lambda w: (len(w), w[0]))
        figures["loss curves"] = _curves_figure(df, runs, widths[len(widths) // 2] if widths else ())
    return figures


#: Markers of the conditioning figure's data variants.
VARIANT_MARKERS = {"gaussian": "o", "digits": "s", "synthetic": "^"}


def plot_conditioning(df: pd.DataFrame) -> dict[str, Any]:
    """The positive/baseline step ratio against κ(XXᵀ), one point per data variant (``chatterjee2022.conditioning``):
    against the best and the median baseline; censored counts are left out (the claim says so)."""
    plt = pyplot()

    from zeroloss.papers.chatterjee2022.conditioning import ratio_by_kappa

    table = ratio_by_kappa(runs_table(df))
    fig, ax = plt.subplots(figsize=(5.6, 4.0))
    for column, color, label in (("ratio_best", "C3", "positive / best baseline"),
                                 ("ratio_median", "C0", "positive / median baseline")):
        ok = table.dropna(subset=[column])
        ax.plot(ok["kappa_xx"], ok[column], color=color, lw=0.8, alpha=0.5)
        for _, row in ok.iterrows():
            ax.plot(row["kappa_xx"], row[column], color=color, marker=VARIANT_MARKERS.get(row["data"], "o"),
                    ls="none", mfc="none" if row["whitened"] else color)
        ax.plot([], [], color=color, marker="o", label=label)
    for name, marker in VARIANT_MARKERS.items():
        ax.plot([], [], color="0.4", marker=marker, ls="none", label=name)
    ax.plot([], [], color="0.4", marker="o", mfc="none", ls="none", label="whitened (open)")
    ax.axhline(1.0, color="0.5", lw=0.8, ls=":")
    ax.axhline(0.5, color="0.5", lw=0.8, ls="--", label="2× faster")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel(KAPPA + " (n = 16)")
    ax.set_ylabel("steps to F ≤ 1e-6·F(w₀), ratio")
    ax.set_title("no hidden biases: the positive init is least squares in x", fontsize=9)
    ax.legend(fontsize=7, frameon=False)
    fig.tight_layout()
    return {"step ratio vs condition number": fig}
