"""Marion & Berthier (NeurIPS 2023) experiments (MATH §3.4): settings from the official code.

Registered experiments (each with ``tiny`` and ``paper`` scales):

- ``marion2023.regimes``: online SGD on the univariate net in the two-timescale regime (ε = 2·10⁻⁵) against its
  ε → 0 limit from the same u₀ (general limit, 1000 Euler steps in τ), and the same u₀ trained with ε = 1
  (one step h = 10⁻⁵ for both a and u); claims: SGD tracks the limit at matched slow time, and ε = 1 ends far
  higher. Figures: risk against the SGD step on log axes with the limit overlaid at matched τ = p·h·ε; the final
  f of both regimes with their neuron positions; snapshots of f (SGD and limit) at τ/τ_max ∈ {0, 0.1, 0.4, 1}.
- ``marion2023.eps_sweep``: ε ∈ {0.01, 0.1, 1}, repeats per ε; claim: smaller ε, lower median final risk.
- ``marion2023.appendix``: full-batch GD with two optimisers on the additive 2-D and 10-D models and the ReLU
  model; standard regime (lr 1.0 for a and u) vs two-timescale (lr_a = 1.0, lr_u = 0.01); claim per setting: the
  two-timescale median final criterion ‖ŷ − y‖₂/n is lower.

u₀ is drawn conditioned on the validity condition of the limit (≥ 2 neurons per constant piece), so the limit is
defined for every repeat; the SGD run with the same seed starts from the same u₀.
"""

from __future__ import annotations

from typing import Any

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from zeroloss.experiments.base import Claim, Experiment, RunOutput, Spec, one_row_per_run, register  # noqa: E402
from zeroloss.twotimescale import (  # noqa: E402
    forward,
    general_limit,
    init_positions,
    online_sgd,
    target_preset,
    two_optimizer_gd,
)

PAPER = "marion2023"


_runs = one_row_per_run


def _tidy(steps: np.ndarray, metrics: dict[str, np.ndarray]) -> pd.DataFrame:
    """Tidy (step, metric, value) from per-log arrays of equal length."""
    frames = [pd.DataFrame({"step": steps, "metric": name, "value": values}) for name, values in metrics.items()]
    return pd.concat(frames, ignore_index=True)


# ------------------------------------------------------------------------------------------ online SGD
#: Fractions of the slow-time horizon at which (u, a) are stored for the snapshot panels (0 and the end included).
SNAPSHOT_FRACTIONS = (0.0, 0.1, 0.4, 1.0)


def _snapshot_indices(tau: np.ndarray) -> list[int]:
    """Log indices nearest to :data:`SNAPSHOT_FRACTIONS` of the horizon (the last log always included)."""
    return sorted({int(np.argmin(np.abs(tau - f * tau[-1]))) for f in SNAPSHOT_FRACTIONS})


def _parameters_frame(step: int, u: np.ndarray, a: np.ndarray, prefix: str = "") -> pd.DataFrame:
    """Tidy rows ``{prefix}u_j`` (j < m) and ``{prefix}a_j`` (j ≤ m, a_0 the bias) at ``step``."""
    names = [f"{prefix}u_{j}" for j in range(u.size)] + [f"{prefix}a_{j}" for j in range(a.size)]
    return pd.DataFrame({"step": int(step), "metric": names, "value": np.concatenate([u, a])})


def run_sgd_batch(specs: list[Spec], device: Any = "cpu") -> list[RunOutput]:
    """One online-SGD run per spec, plus its ε → 0 limit from the same u₀ when the spec asks (``limit``).

    Metrics per log: ``risk``, ``tau`` (and ``limit_risk``); at the snapshot steps the parameters ``u_j``, ``a_j``
    (and the limit's ``limit_u_j``, ``limit_a_j``).
    """
    first = specs[0]
    target = target_preset(first["target"])
    u0 = np.concatenate([init_positions(first["neurons"], 1, s["seed"], valid_for=target) for s in specs])
    steps = int(round(first["t_max"] / (first["h"] * first["eps"])))
    outputs = []
    # Each repeat draws its samples from its own stream: run them one by one (numba makes this cheap) so that
    # a run's result does not depend on which other seeds share its batch.
    for k, spec in enumerate(specs):
        run = online_sgd(target, eps=spec["eps"], h=spec["h"], steps=steps, eta=spec["eta"], seed=spec["seed"],
                         u0=u0[k : k + 1], logs=spec.get("logs", 100), derivative=spec.get("derivative", "exact"))
        metrics = {"risk": run.risk[:, 0], "tau": run.tau}
        summary = {"final_risk": float(run.final_risk[0]), "steps_done": run.steps, "seconds": run.seconds}
        limit = None
        if spec.get("limit", False):
            limit = general_limit(u0[k : k + 1], spec["eta"], target, spec["t_max"], n_steps=1000,
                                  logs=len(run.tau) - 1)
            metrics["limit_risk"] = np.interp(run.tau, limit.tau, limit.risk[:, 0])
            summary["limit_final_risk"] = float(limit.final_risk[0])
        frame = _tidy(run.log_steps, metrics)
        shots = _snapshot_indices(run.tau)
        snapshots = [_parameters_frame(run.log_steps[i], run.u[i, 0], run.a[i, 0]) for i in shots]
        if limit is not None:  # the limit's (u, a*(u)) at the log nearest in slow time to each snapshot
            for i in shots:
                j = int(np.argmin(np.abs(limit.tau - run.tau[i])))
                snapshots.append(_parameters_frame(run.log_steps[i], limit.u[j, 0], limit.a[j, 0], "limit_"))
        final = pd.concat(snapshots, ignore_index=True)
        outputs.append(RunOutput(pd.concat([frame, final], ignore_index=True), summary))
    return outputs


def _sgd_spec(eps: float, h: float, t_max: float, seed: int, limit: bool = False, **extra: Any) -> Spec:
    return {"model": "univariate", "target": "paper", "neurons": 20, "eta": 4e-3, "eps": eps, "h": h,
            "t_max": t_max, "seed": seed, "limit": limit, **extra}


def _regimes_specs(seeds: int, h_two_timescale: float) -> list[Spec]:
    two = [_sgd_spec(2e-5, h_two_timescale, 0.035, s, limit=True) for s in range(seeds)]
    one = [_sgd_spec(1.0, 1e-5, 10.0, s) for s in range(seeds)]
    return two + one


#: SGD tracks the limit when, after the fast phase (τ ≥ τ_max/5, once a has caught up with a*(u)), its risk is on
#: average within a factor 2 of the limit's (mean of |log(risk/limit)| ≤ log 2). Pointwise ratios are a poor
#: measure: when a neuron reaches a jump the risk drops steeply, so a small shift in the time of that event gives a
#: large momentary ratio, and the tiny scale's quick config (h = 10⁻³) adds label-noise fluctuations of tens of
#: per cent. Both are deviations the limit theorem allows (they vanish as h, ε → 0); a factor 2 on average is not.
TRACK_FACTOR = 2.0
#: ε = 1 "ends far higher": its median final risk is at least this many times the two-timescale median.
REGIME_RATIO = 2.0


def _regimes_claims(df: pd.DataFrame) -> list[Claim]:
    runs = _runs(df)
    name = "marion2023.regimes"
    two = runs[runs["eps"] < 1]
    worst = []
    for run_id in two["run_id"]:
        sub = df[df["run_id"] == run_id].pivot_table(index="step", columns="metric", values="value")
        late = sub[sub["tau"] >= sub["tau"].max() / 5]
        worst.append(float(np.abs(np.log(late["risk"] / late["limit_risk"])).mean()))
    factor = float(np.exp(np.median(worst)))
    one_median = float(runs[runs["eps"] == 1]["final_risk"].median())
    two_median = float(two["final_risk"].median())
    return [
        Claim(name, "two-timescale SGD tracks its ε → 0 limit at matched slow time", round(factor, 3),
              f"≤ {TRACK_FACTOR:g} (geometric-mean |risk ratio| SGD/limit for τ ≥ τ_max/5, median over seeds)",
              bool(factor <= TRACK_FACTOR), f"{len(two)} seeds, ε = 2e-5, h = {two['h'].iloc[0]:g}"),
        Claim(name, "with ε = 1 (same u₀) the final risk ends far higher than in the two-timescale regime",
              round(one_median / two_median, 3), f"≥ {REGIME_RATIO:g} (ratio of median final risks)",
              bool(one_median >= REGIME_RATIO * two_median),
              f"medians: ε = 1 {one_median:.4g}, ε = 2e-5 {two_median:.4g}; optimum floor ≈ ΣΔf²η/28 = "
              f"{29 * 4e-3 / 28:.4g}"),
    ]


def _parameters_at(rows: pd.DataFrame, step: int, m: int, prefix: str = "") -> tuple[np.ndarray, np.ndarray] | None:
    """(u (m,), a (m + 1,)) stored at ``step`` under ``prefix``, or None when that snapshot is absent."""
    at = rows[rows["step"] == step]
    values = dict(zip(at["metric"], at["value"], strict=False))
    if f"{prefix}u_0" not in values:
        return None
    return (np.array([values[f"{prefix}u_{j}"] for j in range(m)]),
            np.array([values[f"{prefix}a_{j}"] for j in range(m + 1)]))


def _regimes_plot(df: pd.DataFrame) -> dict[str, Any]:
    runs = _runs(df)
    fig, (ax, snap, track) = plt.subplots(1, 3, figsize=(16, 4.3))
    for i, run in enumerate(runs.itertuples()):
        sub = df[df["run_id"] == run.run_id]
        sub = sub[sub["metric"].isin(["risk", "tau", "limit_risk"])].pivot_table(index="step", columns="metric",
                                                                                  values="value")
        p = sub.index.to_numpy()
        style = "-" if run.eps < 1 else ":"
        ax.loglog(np.maximum(p, 1), sub["risk"], style, color=f"C{i % 10}", lw=1,
                  label=f"SGD ε={run.eps:g}, seed {run.seed}")
        if "limit_risk" in sub and sub["limit_risk"].notna().any():
            # The limit is plotted at the SGD step p with the same slow time τ = p·h·ε.
            ax.loglog(np.maximum(p, 1), sub["limit_risk"], "--", color=f"C{i % 10}", lw=1.5)
    ax.set_xlabel("SGD step p  (slow time τ = p·h·ε)")
    ax.set_ylabel("population risk ∫(f − f*)²")
    ax.set_title("risk (dashed: ε → 0 limit at matched τ)")
    ax.legend(fontsize=6)
    target = target_preset("paper")
    x = np.linspace(0, 1, 2001)
    for panel in (snap, track):
        panel.plot(x, target(x), "k-", lw=2, label="f*")
    for eps, color in ((2e-5, "C0"), (1.0, "C3")):
        chosen = runs[(runs["eps"] == eps)]
        if chosen.empty:
            continue
        first = chosen.iloc[0]
        rows = df[df["run_id"] == first["run_id"]]
        m = int(first["neurons"])
        u, a = _parameters_at(rows, int(rows["step"].max()), m)
        snap.plot(x, forward(a[None], u[None], x, first["eta"])[0], color=color, label=f"f, ε = {eps:g}")
        snap.plot(u, np.full(m, -0.3 if eps < 1 else -0.6), "|", color=color, ms=12)
    snap.set_title("end of training, first seed (ticks: neuron positions)")
    snap.set_xlabel("x")
    snap.legend(fontsize=7)
    two = runs[runs["eps"] < 1]
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
        track.legend(fontsize=7)
    fig.tight_layout()
    return {"risk against steps, SGD and its limit; snapshots of f, f* and the neurons": fig}


register(Experiment(
    name="marion2023.regimes", paper=PAPER,
    description="Online SGD with label noise on f = a₀ + Σ a_j σ((x − u_j)/η), m = 20, η = 4·10⁻³, paper target: "
                "two-timescale (ε = 2·10⁻⁵, τ_max = 0.035) against the ε → 0 limit from the same u₀, and ε = 1 "
                "(h = 10⁻⁵, τ_max = 10). Tiny uses the quick config h = 10⁻³ for the two-timescale runs.",
    specs={"tiny": _regimes_specs(4, 1e-3), "paper": _regimes_specs(10, 1e-5)},
    run_batch=run_sgd_batch, plot=_regimes_plot, claims=_regimes_claims,
))


# -------------------------------------------------------------------------------------------- ε sweep

def _sweep_specs(repeats: int, h: float) -> list[Spec]:
    return [_sgd_spec(eps, h, 3.0, s) for eps in (0.01, 0.1, 1.0) for s in range(repeats)]


def _sweep_claims(df: pd.DataFrame) -> list[Claim]:
    runs = _runs(df)
    medians = runs.groupby("eps")["final_risk"].median().sort_index()
    ok = bool(np.all(np.diff(medians.to_numpy()) > 0))
    return [Claim("marion2023.eps_sweep", "smaller ε, lower median final risk",
                  ", ".join(f"ε={e:g}: {v:.4g}" for e, v in medians.items()), "increasing in ε", ok,
                  f"{int(runs.groupby('eps').size().min())} repeats per ε, τ_max = 3")]


def _sweep_plot(df: pd.DataFrame) -> dict[str, Any]:
    runs = _runs(df)
    fig, ax = plt.subplots(figsize=(5.5, 4))
    eps_values = sorted(runs["eps"].unique())
    ax.boxplot([runs[runs["eps"] == e]["final_risk"].to_numpy() for e in eps_values],
               tick_labels=[f"{e:g}" for e in eps_values])
    ax.set_yscale("log")
    ax.set_xlabel("ε")
    ax.set_ylabel("final population risk")
    ax.set_title("ε sweep: final risk per repeat")
    fig.tight_layout()
    return {"final risk against ε (box-plot)": fig}


register(Experiment(
    name="marion2023.eps_sweep", paper=PAPER,
    description="Online SGD for ε ∈ {0.01, 0.1, 1} up to slow time τ = 3 (paper: h = 10⁻⁵, 20 repeats; tiny: "
                "h = 10⁻⁴, 5 repeats).",
    specs={"tiny": _sweep_specs(5, 1e-4), "paper": _sweep_specs(20, 1e-5)},
    run_batch=run_sgd_batch, plot=_sweep_plot, claims=_sweep_claims,
))


# ------------------------------------------------------------------------------------------- appendix

def run_gd_batch(specs: list[Spec], device: Any = "cpu") -> list[RunOutput]:
    """Full-batch GD with two optimisers, one spec at a time (each repeat its own sample and initialisation)."""
    outputs = []
    for spec in specs:
        run = two_optimizer_gd(spec["model"], spec["d"], spec["n"], spec["lr_a"], spec["lr_u"], spec["epochs"],
                               neurons=10, eta=0.01, repeats=1, seed=spec["seed"], logs=50)
        metrics = _tidy(run.epochs, {"criterion": run.criterion[:, 0]})
        positions = run.u[0].reshape(-1)
        final = pd.DataFrame({"step": spec["epochs"], "metric": [f"u_{j}" for j in range(positions.size)],
                              "value": positions})
        outputs.append(RunOutput(pd.concat([metrics, final], ignore_index=True), {
            "final_criterion": float(run.final_criterion[0]), "diverged": bool(run.diverged[0]),
            "seconds": run.seconds}))
    return outputs


def _appendix_specs(settings: list[tuple[str, int, int, int, int]], repeats: int) -> list[Spec]:
    specs = []
    for model, d, n, epochs_std, epochs_two in settings:
        for regime, lr_u, epochs in (("standard", 1.0, epochs_std), ("two-timescale", 0.01, epochs_two)):
            for s in range(repeats):
                specs.append({"model": model, "d": d, "n": n, "regime": regime, "lr_a": 1.0, "lr_u": lr_u,
                              "epochs": epochs, "seed": s})
    return specs


def _setting(row: Any) -> str:
    return f"{row['model']} d={int(row['d'])}"


def _appendix_claims(df: pd.DataFrame) -> list[Claim]:
    runs = _runs(df)
    runs["setting"] = runs.apply(_setting, axis=1)
    claims = []
    for setting, group in runs.groupby("setting"):
        med = group.groupby("regime")["final_criterion"].median()
        claims.append(Claim("marion2023.appendix",
                            f"{setting}: two-timescale GD ends with a lower criterion than the standard regime",
                            f"{med['two-timescale']:.4g} vs {med['standard']:.4g}", "two-timescale < standard",
                            bool(med["two-timescale"] < med["standard"]),
                            f"median ‖ŷ − y‖₂/n over {int(group.groupby('regime').size().min())} repeats"))
    return claims


def _appendix_plot(df: pd.DataFrame) -> dict[str, Any]:
    runs = _runs(df)
    runs["setting"] = runs.apply(_setting, axis=1)
    settings = sorted(runs["setting"].unique())
    fig, axes = plt.subplots(1, len(settings), figsize=(4.2 * len(settings), 3.8), squeeze=False)
    for ax, setting in zip(axes[0], settings, strict=True):
        group = runs[runs["setting"] == setting]
        regimes = ["standard", "two-timescale"]
        ax.boxplot([group[group["regime"] == r]["final_criterion"].to_numpy() for r in regimes],
                   tick_labels=regimes)
        ax.set_yscale("log")
        ax.set_title(setting)
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


register(Experiment(
    name="marion2023.appendix", paper=PAPER,
    description="Full-batch GD with two optimisers (MATH §3.4 appendix): additive model "
                "Σ_j Σ_k a_jk σ((x_k − u_jk)/η), η = 0.01, 10 neurons per coordinate, on Σ_k Σ_t 1(x_k > t) for "
                "d = 2 and d = 10, and the ReLU model on its teacher; standard lr 1.0 for both (300 epochs) vs "
                "lr_a = 1.0, lr_u = 0.01 (5000 epochs); criterion ‖ŷ − y‖₂/n, which is also what is descended (as "
                "in the official code).",
    specs={"tiny": _appendix_specs([("additive", 2, 1000, 300, 5000), ("relu", 1, 1000, 300, 5000),
                                    ("additive", 10, 1000, 300, 5000)], 3),
           "paper": _appendix_specs([("additive", 2, 1000, 300, 5000), ("relu", 1, 1000, 300, 5000),
                                     ("additive", 10, 10_000, 300, 5000)], 20)},
    run_batch=run_gd_batch, plot=_appendix_plot, claims=_appendix_claims,
))
