"""Running Marion & Berthier's experiments: online SGD (with its ε → 0 limit and the deterministic population run
from the same u₀), one spec at a time, and the appendix's full-batch GD, the specs of a batch side by side
(docs/theory.md §3.4).

This module holds everything a run's result depends on, and nothing of the claims or figures: result versions are
derived from the code of the run module and what it imports (:mod:`zeroloss.sweep.versions`), so editing a claim
does not invalidate stored runs.

Online-SGD spec keys (:func:`run_sgd_batch`): ``target`` (``paper`` or ``code``), ``neurons`` m, ``eta``, ``eps``,
``h``, ``t_max`` (slow-time horizon; steps = τ_max/(hε)), ``seed``, optional ``limit`` (also integrate the ε → 0
limit from the same u₀), ``noise`` (label-noise half-width, default 1: the paper's), ``logs``, ``derivative``,
``start`` (``"conditioned"``, default: u₀ sorted U[0, 1]^m drawn from ``default_rng(seed)`` conditioned on the
validity condition; ``"official"``: the official code's start, ``np.random.seed(seed); sort(rand(m))``, legacy
MT19937), ``population`` (also run two-timescale GD on the exact risk from the same u₀:
:func:`~zeroloss.papers.marion2023.twotimescale.population.population_gd`, step ``population_h``, ratio
``population_eps``).

Examples:
    >>> spec = {"target": "code", "neurons": 20, "eta": 4e-3, "eps": 2e-5, "h": 1e-3, "t_max": 0.02, "seed": 0}
    >>> sgd_steps(spec)
    1000000
    >>> official_start(20, 42)[0, :3].round(4).tolist()   # np.random.seed(42); np.sort(np.random.rand(20))
    [0.0206, 0.0581, 0.156]
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from zeroloss.errors import ZerolossInputError
from zeroloss.papers.base import RunOutput, Spec
from zeroloss.papers.marion2023.twotimescale import (
    check_validity,
    euler_steps,
    general_limit,
    init_positions,
    label_noise_excess,
    latest_closing_time,
    online_sgd,
    target_preset,
)
from zeroloss.papers.marion2023.twotimescale.gd import GDRunTT, gd_per_seed
from zeroloss.papers.marion2023.twotimescale.limit import EULER_DTAU
from zeroloss.papers.marion2023.twotimescale.population import population_gd

#: Slow-time windows, as fractions of a run's horizon, over which risks are averaged: the plateau (the last fifth:
#: for a two-timescale run past 1.2× its closing time, so every jump carries a neuron in the limit) and the middle
#: (used to tell a run that is still descending from one on its plateau). Averaging over a window rather than taking
#: the last log damps the label-noise fluctuation of a single reading (tens of per cent at h = 10⁻³).
PLATEAU_WINDOW = (0.8, 1.0)
MID_WINDOW = (0.4, 0.6)


def _tidy(steps: np.ndarray, metrics: dict[str, np.ndarray]) -> pd.DataFrame:
    """Tidy (step, metric, value) from per-log arrays of equal length."""
    frames = [pd.DataFrame({"step": steps, "metric": name, "value": values}) for name, values in metrics.items()]
    return pd.concat(frames, ignore_index=True)


def window_mean(tau: np.ndarray, values: np.ndarray, window: tuple[float, float]) -> float:
    """Mean of ``values`` over the logs whose τ/τ_max lies in ``window`` (NaN when the window holds no log).

    Examples:
        >>> window_mean(np.array([0.0, 0.5, 0.9, 1.0]), np.array([9.0, 5.0, 2.0, 4.0]), (0.8, 1.0))
        3.0
    """
    frac = tau / tau[-1]
    inside = (frac >= window[0] - 1e-12) & (frac <= window[1] + 1e-12)
    return float(np.mean(values[inside])) if inside.any() else float("nan")


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


def sgd_steps(spec: Spec) -> int:
    """SGD steps p = τ_max/(hε) of a spec."""
    return max(1, int(round(spec["t_max"] / (spec["h"] * spec["eps"]))))


#: The smoothing width at which :data:`~zeroloss.papers.marion2023.twotimescale.limit.EULER_DTAU` was measured.
EULER_ETA = 4e-3


def limit_euler_steps(t_max: float, eta: float) -> int:
    """Euler steps of the general limit up to ``t_max``: the step EULER_DTAU, scaled with η/4·10⁻³ below
    η = 4·10⁻³ (near a jump the reduced risk curves like Δf²/η, so the stable step shrinks with η) and kept above it.
    At η = 4·10⁻³ this is :func:`~zeroloss.papers.marion2023.twotimescale.euler_steps` (the stored runs' steps)."""
    return euler_steps(t_max, EULER_DTAU * min(1.0, eta / EULER_ETA))


STARTS = ("conditioned", "official")


def official_start(neurons: int, seed: int) -> np.ndarray:
    """The official code's u₀ (``experiment.py``): ``np.random.seed(seed); np.sort(np.random.rand(m))`` — legacy
    MT19937, not conditioned on validity. (1, m)."""
    return np.sort(np.random.RandomState(seed).rand(neurons))[None, :]


def start_positions(spec: Spec, target) -> np.ndarray:
    """u₀ (1, m) of an SGD spec: ``start`` = ``"conditioned"`` (default) or ``"official"`` (module docstring)."""
    start = spec.get("start", "conditioned")
    if start == "official":
        u0 = official_start(spec["neurons"], spec["seed"])
        if spec.get("limit", False) or spec.get("population", False):
            check_validity(u0, target)
        return u0
    if start != "conditioned":
        raise ZerolossInputError(f"start: one of {', '.join(STARTS)}, got {start!r}")
    return init_positions(spec["neurons"], 1, spec["seed"], valid_for=target)


def run_sgd_batch(specs: list[Spec], device: Any = "cpu") -> list[RunOutput]:
    """One online-SGD run per spec, plus its ε → 0 limit (``limit``) and its population twin (``population``) from
    the same u₀ when the spec asks.

    Metrics per log: ``risk``, ``tau`` (and ``limit_risk``, ``population_risk``, interpolated to the SGD logs' τ);
    at the snapshot steps the parameters ``u_j``, ``a_j`` (and the limit's ``limit_u_j``, ``limit_a_j``; the
    population run's ``population_u_j``, ``population_a_j``). Summary: ``final_risk``, ``plateau_risk`` and
    ``mid_risk`` (window means, :data:`PLATEAU_WINDOW`, :data:`MID_WINDOW`), ``noise_excess`` (the O(h)
    label-noise excess at the final positions,
    :func:`~zeroloss.papers.marion2023.twotimescale.label_noise_excess`), ``closing_time`` (the sharp flow's, of
    u₀), ``limit_final_risk``, ``population_final_risk``, ``population_plateau_risk``, ``diverged``,
    ``steps_done``, ``seconds``.
    """
    outputs = []
    # Each repeat draws its samples from its own stream: run them one by one (numba makes this cheap) so that
    # a run's result does not depend on which other seeds share its batch.
    for spec in specs:
        target = target_preset(spec["target"])
        u0 = start_positions(spec, target)
        noise = spec.get("noise", 1.0)  # label noise ξ ∼ U[−noise, noise]; the paper's 1 unless the spec says
        run = online_sgd(target, eps=spec["eps"], h=spec["h"], steps=sgd_steps(spec), eta=spec["eta"],
                         seed=spec["seed"], u0=u0, logs=spec.get("logs", 100), noise=noise,
                         derivative=spec.get("derivative", "exact"))
        risk = run.risk[:, 0]
        final_u = run.u[-1]
        finite = bool(np.all(np.isfinite(risk)) and np.all(np.isfinite(final_u)))
        valid = bool(np.min(np.bincount(np.searchsorted(target.jumps, u0[0], side="right"),
                                        minlength=len(target.values))) >= 2)
        summary = {"final_risk": float(risk[-1]), "plateau_risk": window_mean(run.tau, risk, PLATEAU_WINDOW),
                   "mid_risk": window_mean(run.tau, risk, MID_WINDOW), "diverged": not finite,
                   "noise_excess": float(label_noise_excess(final_u, spec["eta"], spec["h"], noise, target)[0])
                   if finite else float("nan"),
                   "closing_time": float(latest_closing_time(u0, target)[0]) if valid else float("nan"),
                   "steps_done": run.steps, "seconds": run.seconds}
        metrics = {"risk": risk, "tau": run.tau}
        shots = _snapshot_indices(run.tau)
        snapshots = [_parameters_frame(run.log_steps[i], run.u[i, 0], run.a[i, 0]) for i in shots]
        if spec.get("limit", False):
            limit = general_limit(u0, spec["eta"], target, spec["t_max"],
                                  n_steps=limit_euler_steps(spec["t_max"], spec["eta"]), logs=len(run.tau) - 1)
            metrics["limit_risk"] = np.interp(run.tau, limit.tau, limit.risk[:, 0])
            summary["limit_final_risk"] = float(limit.final_risk[0])
            for i in shots:  # the limit's (u, a*(u)) at the log nearest in slow time to each snapshot
                j = int(np.argmin(np.abs(limit.tau - run.tau[i])))
                snapshots.append(_parameters_frame(run.log_steps[i], limit.u[j, 0], limit.a[j, 0], "limit_"))
        if spec.get("population", False):
            h_pop, eps_pop = spec["population_h"], spec["population_eps"]
            steps_pop = max(1, int(round(spec["t_max"] / (h_pop * eps_pop))))
            pop = population_gd(u0, spec["eta"], target, eps_pop, h_pop, steps_pop, logs=len(run.tau) - 1)
            pop_risk = pop.risk[:, 0]
            metrics["population_risk"] = np.interp(run.tau, pop.tau, pop_risk)
            summary["population_final_risk"] = float(pop_risk[-1])
            summary["population_plateau_risk"] = window_mean(pop.tau, pop_risk, PLATEAU_WINDOW)
            summary["population_diverged"] = bool(pop.diverged[0])
            for i in shots:
                j = int(np.argmin(np.abs(pop.tau - run.tau[i])))
                snapshots.append(_parameters_frame(run.log_steps[i], pop.u[j, 0], pop.a[j, 0], "population_"))
        frame = _tidy(run.log_steps, metrics)
        outputs.append(RunOutput(pd.concat([frame, *snapshots], ignore_index=True), summary))
    return outputs


# ------------------------------------------------------------------------------------------- appendix

#: Neurons J per coordinate of the appendix models (the paper's 10).
GD_NEURONS = 10
#: At most this many elements of the (R, n, J, d) sample × neuron arrays per group of runs trained side by side
#: (32 MB per array in float64; four such arrays): the tiny scale's three seeds share a group, the paper's 10-D
#: runs (n = 10⁴) go four at a time. Side by side pays off where an epoch is per-operation overhead, not arithmetic.
GD_GROUP_ELEMENTS = 4_000_000


def _gd_group(spec: Spec) -> tuple:
    """What an appendix spec shares with the specs it trains beside: everything but its seed."""
    return spec["model"], spec["d"], spec["n"], spec["lr_a"], spec["lr_u"], spec["epochs"], spec.get("logs", 50)


def _gd_groups(specs: list[Spec]) -> list[list[int]]:
    """Indices of the specs that train side by side: equal :func:`_gd_group`, at most :data:`GD_GROUP_ELEMENTS`."""
    groups: dict[tuple, list[int]] = {}
    for i, spec in enumerate(specs):
        groups.setdefault(_gd_group(spec), []).append(i)
    out = []
    for members in groups.values():
        first = specs[members[0]]
        size = max(1, GD_GROUP_ELEMENTS // (first["n"] * GD_NEURONS * first["d"]))
        out += [members[k:k + size] for k in range(0, len(members), size)]
    return out


def run_gd_batch(specs: list[Spec], device: Any = "cpu") -> list[RunOutput]:
    """Full-batch GD with two optimisers, each spec one independent run (its own sample and initialisation from its
    seed); specs that differ only in seed train side by side
    (:func:`~zeroloss.papers.marion2023.twotimescale.gd.gd_per_seed`: the same numbers as one by one).

    Summary: ``final_criterion`` (NaN when diverged), ``plateau_criterion`` and ``mid_criterion`` (window means),
    ``criterion_at_300`` (the official code's stopping epoch for the standard regime, when logged), ``diverged``,
    ``seconds`` (the wall time of the group the run trained in).
    """
    outputs: list[RunOutput | None] = [None] * len(specs)
    for members in _gd_groups(specs):
        first = specs[members[0]]
        run = gd_per_seed(first["model"], first["d"], first["n"], first["lr_a"], first["lr_u"], first["epochs"],
                          [specs[i]["seed"] for i in members], neurons=GD_NEURONS, eta=0.01,
                          logs=first.get("logs", 50))
        for k, i in enumerate(members):
            outputs[i] = _gd_output(specs[i], run, k)
    return outputs


def _gd_output(spec: Spec, run: GDRunTT, member: int) -> RunOutput:
    """The RunOutput of member ``member`` of a :class:`GDRunTT` (see :func:`run_gd_batch`)."""
    crit = run.criterion[:, member]
    metrics = _tidy(run.epochs, {"criterion": crit})
    positions = run.u[member].reshape(-1)
    final = pd.DataFrame({"step": spec["epochs"], "metric": [f"u_{j}" for j in range(positions.size)],
                          "value": positions})
    tau = run.epochs.astype(np.float64)
    at_300 = crit[run.epochs == 300]
    return RunOutput(pd.concat([metrics, final], ignore_index=True), {
        "final_criterion": float(crit[-1]), "plateau_criterion": window_mean(tau, crit, PLATEAU_WINDOW),
        "mid_criterion": window_mean(tau, crit, MID_WINDOW),
        "criterion_at_300": float(at_300[0]) if at_300.size else float("nan"),
        "diverged": bool(run.diverged[member]), "seconds": run.seconds})
