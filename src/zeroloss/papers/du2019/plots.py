"""Figures of Du et al.'s experiments (matplotlib, Agg backend; deterministic: no dates, fixed styles).

Every figure labels its axes with the quantity and its unit (steps, neurons per layer, hidden layers; ratios are
dimensionless), shows every seed (points or thin lines) beside the seed mean, draws the claim's threshold where it
has one, and uses the papers' symbols (m, H, η, λ, G(0), τ). A censored quantity is drawn where its runs ran: a
needed width beyond the widths tried sits at the widest width with an upward arrow, never at a width that did not
run. Every axis has labelled ticks: widths are ticked at the values tried; a log axis spanning less than a decade
labels its minor ticks.
"""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from matplotlib.lines import Line2D  # noqa: E402
from matplotlib.ticker import LogFormatterSciNotation, NullLocator  # noqa: E402

from zeroloss.papers.du2019.claims import (  # noqa: E402
    FIT_RATIO,
    LINEAR_TOL,
    TRACK_TOL,
    describe_needed_width,
    laziness_curve,
    loglog_fit,
    needed_widths,
)

NET_LABELS = {"fc": "FC", "resnet": "ResNet", "conv-resnet": "conv-ResNet"}
NET_COLORS = {"fc": "C0", "resnet": "C1", "conv-resnet": "C2"}


def _figure(ncols: int = 1, height: float = 3.8) -> tuple[plt.Figure, list[plt.Axes]]:
    fig, axes = plt.subplots(1, ncols, figsize=(5.0 * ncols, height), squeeze=False)
    return fig, list(axes[0])


def _label_log_axis(ax: plt.Axes, which: str = "y") -> None:
    """Label minor ticks too when the view holds fewer than two decades' marks (so every axis shows numbers)."""
    axis = ax.yaxis if which == "y" else ax.xaxis
    lo, hi = ax.get_ylim() if which == "y" else ax.get_xlim()
    if lo > 0 and np.floor(np.log10(hi)) - np.ceil(np.log10(lo)) < 1:
        axis.set_minor_formatter(LogFormatterSciNotation(labelOnlyBase=False, minor_thresholds=(2, 0.4)))


def _width_axis(ax: plt.Axes, widths: np.ndarray) -> None:
    """Log₂ x axis ticked and labelled at exactly the widths tried."""
    ax.set_xscale("log", base=2)
    ax.set_xticks(widths)
    ax.set_xticklabels([f"{int(w)}" for w in widths])
    ax.xaxis.set_minor_locator(NullLocator())
    ax.set_xlabel("width m (neurons per hidden layer)")


def _widest(runs: pd.DataFrame) -> pd.DataFrame:
    return runs[runs["width"] == runs.groupby("net")["width"].transform("max")]


def _widest_per_net(df: pd.DataFrame, runs: pd.DataFrame):
    """A figure with one panel per net, and per panel (axes, the widest width's runs sorted by seed, each run's
    rows of ``df`` in that order)."""
    wide = _widest(runs)
    nets = list(dict.fromkeys(wide["net"]))
    fig, axes = _figure(len(nets))
    panels = []
    for ax, net in zip(axes, nets, strict=True):
        group = wide[wide["net"] == net].sort_values("seed")
        panels.append((ax, group, [df[df["run_id"] == run_id] for run_id in group["run_id"]]))
    return fig, panels


def _title(run: pd.Series) -> str:
    return f"{NET_LABELS.get(run['net'], run['net'])}, H = {int(run['depth'])}, m = {int(run['width'])}"


def kernel_curves(df: pd.DataFrame, runs: pd.DataFrame) -> plt.Figure:
    """L(k)/L(0) of every seed at the widest width (solid) and its kernel prediction L̂_k/L̂_0 (dashed), per net."""
    fig, panels = _widest_per_net(df, runs)
    for ax, group, seeds in panels:
        for i, mine in enumerate(seeds):
            for metric, style in (("loss", "-"), ("kernel_loss", "--")):
                curve = mine[mine["metric"] == metric].sort_values("step")
                ax.semilogy(curve["step"], curve["value"] / curve["value"].iloc[0], style, color=f"C{i}",
                            lw=1.3 if style == "-" else 1.0)
        ax.axhline(FIT_RATIO, color="0.3", ls=":", lw=1.0)
        ax.set_title(_title(group.iloc[0]), fontsize=10)
        ax.set_xlabel("GD step k")
        ax.set_ylabel("loss ratio L(k) / L(0)")
        handles = [Line2D([], [], color="0.2", lw=1.3, label=f"GD, one colour per seed ({len(group)})"),
                   Line2D([], [], color="0.2", ls="--", label="kernel prediction L̂_k from G(0)"),
                   Line2D([], [], color="0.3", ls=":", label=f"fit target {FIT_RATIO:g}·L(0)")]
        ax.legend(handles=handles, fontsize=7, loc="lower left")
        _label_log_axis(ax)
    fig.tight_layout()
    return fig


def contraction(df: pd.DataFrame, runs: pd.DataFrame) -> plt.Figure:
    """Per-step loss decrease 1 − L(k+1)/L(k) (solid) against the linearised 1 − (1 − ηλ_min(G(k)))² (dashed), log.

    The linear-decrement claim holds where the solid line stays above 1 − LINEAR_TOL times the dashed one.
    """
    fig, panels = _widest_per_net(df, runs)
    for ax, group, seeds in panels:
        for i, mine in enumerate(seeds):
            ratio = mine[mine["metric"] == "contraction_ratio"].sort_values("step")
            bound = mine[mine["metric"] == "linear_bound"].sort_values("step")
            ax.semilogy(ratio["step"], 1.0 - ratio["value"], "-", color=f"C{i}", lw=1.2)
            ax.semilogy(bound["step"], 1.0 - bound["value"], "--", color=f"C{i}", lw=1.0)
        ax.set_title(_title(group.iloc[0]), fontsize=10)
        ax.set_xlabel("GD step k")
        ax.set_ylabel("per-step loss decrease 1 − L(k+1)/L(k)")
        handles = [Line2D([], [], color="0.2", label=f"measured, one colour per seed ({len(group)})"),
                   Line2D([], [], color="0.2", ls="--", label="linearised: 1 − (1 − ηλ_min(G(k)))², η = 1/λ_max(G(0))")]
        ax.legend(handles=handles, fontsize=7, loc="upper right")
        _label_log_axis(ax)
    fig.tight_layout()
    return fig


def laziness(runs: pd.DataFrame) -> plt.Figure:
    """The laziness curve: per width, the smallest fraction of the linear decrement a step achieved (every seed's
    minimum as a dot, the minimum over seeds as a line), with the claim's floor 1 − LINEAR_TOL."""
    fig, (ax,) = _figure(1)
    widths = np.sort(runs["width"].unique().astype(float))
    for net, group in runs.groupby("net", sort=False):
        color = NET_COLORS.get(net, "C3")
        ax.scatter(group["width"].astype(float), group["linear_fraction_min"].astype(float), s=10, color=color,
                   alpha=0.45, lw=0)
        worst = laziness_curve(group)
        ax.plot(worst.index.astype(float), worst.to_numpy(), "o-", color=color, ms=4,
                label=f"{NET_LABELS.get(net, net)} (H = {int(group['depth'].iloc[0])}), min over seeds")
    ax.axhline(1.0 - LINEAR_TOL, color="0.4", ls="--", lw=0.9, label=f"claim's floor {1.0 - LINEAR_TOL:g}")
    ax.axhline(1.0, color="0.6", ls=":", lw=0.9, label="linear dynamics (1)")
    _width_axis(ax, widths)
    ax.set_ylabel("min_k achieved / linearised decrement")
    ax.set_title("laziness curve at η = 1/λ_max(G(0)) (dots: seeds)", fontsize=9)
    ax.legend(fontsize=7)
    fig.tight_layout()
    return fig


SCALING_PANELS = (("kernel_deviation", "max_k |√L_k − √L̂_k| / √L_0", "deviation from the kernel prediction"),
                  ("movement_max", "max_h ‖W^(h)(k) − W^(h)(0)‖_F / √m", "weight movement"),
                  ("gram_drift_max", "max_k ‖G(k) − G(0)‖_F / ‖G(0)‖_F", "Gram drift"))


def width_scaling(runs: pd.DataFrame) -> plt.Figure:
    """Log-log against m: every seed (dots), the seed mean (line), the fitted slope, an m^(−1/2) guide, τ."""
    fig, axes = _figure(3)
    widths = np.sort(runs["width"].unique().astype(float))
    for ax, (column, ylabel, title) in zip(axes, SCALING_PANELS, strict=True):
        anchor = None
        for net, group in runs.groupby("net", sort=False):
            x = group["width"].astype(float).to_numpy()
            y = group[column].astype(float).to_numpy()
            ok = np.isfinite(y) & (y > 0)
            color = NET_COLORS.get(net, "C3")
            slope, _, _ = loglog_fit(x[ok], y[ok])
            ax.scatter(x[ok], y[ok], s=10, color=color, alpha=0.45, lw=0)
            mean = group[ok].groupby("width")[column].mean()
            ax.plot(mean.index.astype(float), mean.to_numpy(), "o-", color=color, ms=4,
                    label=f"{NET_LABELS.get(net, net)} (H = {int(group['depth'].iloc[0])}): slope {slope:.2f}")
            anchor = anchor if anchor is not None else (float(mean.index[0]), float(mean.iloc[0]))
        if anchor is not None:
            ax.plot(widths, anchor[1] * (widths / anchor[0]) ** -0.5, "k:", lw=1.0, label="∝ m^(−1/2) (Du et al.)")
        if column == "kernel_deviation":
            ax.axhline(TRACK_TOL, color="0.4", ls="--", lw=0.9, label=f"τ = {TRACK_TOL:g}")
        ax.set_yscale("log")
        _width_axis(ax, widths)
        ax.set_ylabel(ylabel)
        ax.set_title(title + " (dots: seeds; line: mean)", fontsize=9)
        ax.legend(fontsize=7)
        _label_log_axis(ax)
    fig.tight_layout()
    return fig


def deviation_by_depth(runs: pd.DataFrame) -> plt.Figure:
    """Per net: the seed-mean kernel deviation against width, one line per depth, seed range shaded, τ dashed.

    Runs cut by ``max_steps`` (their deviation is a lower bound) are drawn as open triangles.
    """
    nets = [n for n in ("fc", "resnet") if n in set(runs["net"])]
    fig, axes = _figure(len(nets))
    widths = np.sort(runs["width"].unique().astype(float))
    depths = sorted(runs["depth"].unique())
    cmap = plt.get_cmap("viridis")
    for ax, net in zip(axes, nets, strict=True):
        for j, depth in enumerate(depths):
            group = runs[(runs["net"] == net) & (runs["depth"] == depth)]
            if group.empty:
                continue
            color = cmap(j / max(1, len(depths) - 1) * 0.85)
            stats = group.groupby("width")["kernel_deviation"].agg(["mean", "min", "max"])
            x = stats.index.astype(float)
            ax.plot(x, stats["mean"], "o-", color=color, ms=3.5, label=f"H = {int(depth)}")
            ax.fill_between(x, stats["min"], stats["max"], color=color, alpha=0.15, lw=0)
            cut = group[group["censored"].astype(bool)]
            if len(cut):
                ax.scatter(cut["width"].astype(float), cut["kernel_deviation"], marker="^", facecolors="none",
                           edgecolors=color, s=30)
        ax.axhline(TRACK_TOL, color="0.3", ls="--", lw=0.9, label=f"τ = {TRACK_TOL:g}")
        ax.set_yscale("log")
        _width_axis(ax, widths)
        ax.set_ylabel("max_k |√L_k − √L̂_k| / √L_0")
        ax.set_title(f"{NET_LABELS[net]}: mean over seeds, shaded: seed range", fontsize=9)
        ax.legend(fontsize=7, title="depth", title_fontsize=7)
        _label_log_axis(ax)
    fig.tight_layout()
    return fig


def needed_width_by_depth(runs: pd.DataFrame) -> plt.Figure:
    """Needed width m* against depth H per net: a dot when the grid pins it, a bar for an interval, an arrow at
    the widest (smallest) width tried when no width tried (every width tried) tracks."""
    table = needed_widths(runs)
    widths = np.sort(runs["width"].unique().astype(float))
    fig, (ax,) = _figure(1, height=4.0)
    fig.set_size_inches(7.0, 4.0)
    offsets = {"fc": -0.06, "resnet": 0.06}
    censored_drawn = False
    for net in [n for n in ("fc", "resnet") if n in set(table["net"])]:
        color = NET_COLORS[net]
        rows = table[table["net"] == net].sort_values("depth")
        first = True
        for row in rows.itertuples():
            x = row.depth + offsets[net]
            label = NET_LABELS[net] if first else None
            first = False
            lo, hi = row.lo, row.hi
            if lo == hi:
                ax.plot([x], [2.0**lo], "o", color=color, ms=6, label=label)
            elif np.isinf(hi):  # no width tried tracks: drawn at the widest width tried, pointing up
                ax.plot([x], [widths[-1]], "^", color=color, ms=9, mfc="none", label=label)
                ax.annotate("", xy=(x, widths[-1] * 1.7), xytext=(x, widths[-1]),
                            arrowprops={"arrowstyle": "->", "color": color})
                censored_drawn = True
            elif np.isinf(lo):  # the smallest width tried already tracks: pointing down
                ax.plot([x], [2.0**hi], "v", color=color, ms=9, mfc="none", label=label)
                censored_drawn = True
            else:
                ax.plot([x, x], [2.0**lo, 2.0**hi], "-", color=color, lw=2.5, label=label)
            ax.annotate(describe_needed_width(lo, hi, widths[-1]), (x, 2.0 ** min(hi, np.log2(widths[-1]))),
                        textcoords="offset points", xytext=(6 if net == "resnet" else -6, 4), fontsize=6.5,
                        ha="left" if net == "resnet" else "right", color=color)
    ax.set_yscale("log", base=2)
    ax.set_yticks(widths)
    ax.set_yticklabels([f"{int(w)}" for w in widths])
    ax.yaxis.set_minor_locator(NullLocator())
    ax.set_ylim(widths[0] / 1.6, widths[-1] * 2.2)
    depths = sorted(table["depth"].unique())
    ax.set_xticks(depths)
    ax.set_xlim(depths[0] - 0.5, depths[-1] + 0.5)
    ax.set_xlabel("depth H (hidden layers)")
    ax.set_ylabel(f"needed width m* (tracks to τ = {TRACK_TOL:g})")
    handles, labels = ax.get_legend_handles_labels()
    if censored_drawn:
        handles.append(Line2D([], [], marker="^", ls="", mfc="none", color="0.3", ms=8))
        labels.append("censored: ▲ no width tried tracks,\n▼ the smallest tried already does")
    handles.append(Line2D([], [], color="0.3", lw=2.5))
    labels.append("bar: interval (a width\nbetween is undecided)")
    ax.legend(handles, labels, fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0), borderaxespad=0.0)
    ax.set_title("needed width against depth (y ticks: the widths tried)", fontsize=9)
    fig.tight_layout()
    return fig


def theorem_curves(df: pd.DataFrame, runs: pd.DataFrame) -> plt.Figure:
    """Per net at the widest width: L(k)/L(0) of the first seed at every rung (solid) and the theorem's bound
    (1 − ηλ₀/2)^k (dashed, same colour), against the gradient-flow time ηk·λ_max(G(0)) so that the rungs align."""
    wide = _widest(runs)
    nets = list(dict.fromkeys(wide["net"]))
    fig, axes = _figure(len(nets))
    for ax, net in zip(axes, nets, strict=True):
        group = wide[(wide["net"] == net) & (wide["seed"] == wide["seed"].min())]
        group = group.assign(order=group["eta_lambda_max"]).sort_values("order", ascending=False)
        for i, run in enumerate(group.itertuples()):
            mine = df[df["run_id"] == run.run_id]
            time = lambda frame: frame["step"] * run.eta_lambda_max  # noqa: E731, B023
            loss = mine[mine["metric"] == "loss"].sort_values("step")
            bound = mine[mine["metric"] == "theorem_bound"].sort_values("step")
            label = "η_thm" if str(run.rung) == "theorem" else f"η = {float(run.rung):g}/λ_max"
            ax.semilogy(time(loss), loss["value"] / loss["value"].iloc[0], "-", color=f"C{i}", lw=1.2,
                        label=f"{label} (ηλ_max = {run.eta_lambda_max:.2g})")
            ax.semilogy(time(bound), bound["value"] / bound["value"].iloc[0], "--", color=f"C{i}", lw=1.0)
        ax.set_title(f"{NET_LABELS.get(net, net)}, m = {int(group['width'].iloc[0])} (dashed: (1 − ηλ₀/2)^k)",
                     fontsize=9)
        ax.set_xlabel("gradient-flow time η k λ_max(G(0))")
        ax.set_ylabel("loss ratio L(k) / L(0)")
        ax.legend(fontsize=7, loc="lower left")
        _label_log_axis(ax)
    fig.tight_layout()
    return fig


def needed_width_by_n(runs: pd.DataFrame) -> plt.Figure:
    """The width needed to track the kernel to τ against n (log-log), per net: a dot where pinned, a bar over the
    grid interval, an upward arrow at the widest width when censored; beside it the theorem's n⁴/λ₀⁴ scaled to
    the first pinned point."""
    from zeroloss.papers.du2019.claims_theorem import samples_table

    table = samples_table(runs)
    widths = np.sort(runs["width"].unique().astype(float))
    fig, (ax,) = _figure(1)
    for net, group in table.groupby("net", sort=False):
        color = NET_COLORS.get(net, "C3")
        n = group["n"].to_numpy(float)
        lo = np.where(np.isfinite(group["lo"]), 2.0 ** group["lo"], widths[0] / 2)
        hi = np.where(np.isfinite(group["hi"]), 2.0 ** group["hi"], widths[-1])
        ax.vlines(n, lo, hi, color=color, lw=2, alpha=0.6)
        mid = np.sqrt(lo * hi)
        ax.plot(n, mid, "o-", color=color, ms=4, label=f"{NET_LABELS.get(net, net)}: needed width (grid interval)")
        for x, h, open_top in zip(n, hi, ~np.isfinite(group["hi"]), strict=True):
            if open_top:
                ax.annotate("", xy=(x, h * 1.6), xytext=(x, h), arrowprops={"arrowstyle": "->", "color": color})
        theorem = n**4 / group["lambda0"].to_numpy(float) ** 4
        ax.plot(n, mid[0] * theorem / theorem[0], ":", color=color, lw=1.0, label="Du et al.: ∝ n⁴/λ₀⁴")
    ax.set_xscale("log", base=2)
    ax.set_yscale("log", base=2)
    ns = np.sort(table["n"].unique().astype(float))
    ax.set_xticks(ns)
    ax.set_xticklabels([f"{int(v)}" for v in ns])
    ax.xaxis.set_minor_locator(NullLocator())
    ax.set_xlabel("samples n")
    ax.set_ylabel(f"width m needed to track the kernel to τ = {TRACK_TOL:g}")
    ax.legend(fontsize=7)
    fig.tight_layout()
    return fig
