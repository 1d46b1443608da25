"""Two-timescale GD on the exact population risk: the deterministic twin of online SGD (docs/theory.md §3.3).

No sample and no label noise: every step uses the exact gradient of L(a, u) = ∫₀¹(f − f*)²
(:func:`~zeroloss.papers.marion2023.twotimescale.risk.risk_and_grad`),

    a ← a − h ∇_a L(a, u),        u ← u − h ε ∇_u L(a, u),

the Euler discretisation of the two-timescale gradient flow ȧ = −∇_a L, u̇ = −ε∇_u L that the paper's theorem is
about (§3). After p steps the slow time is τ = p·h·ε, as for SGD. The fast step h only has to keep the a-problem
stable: ∇_a L = 2(Ga − b) with G = ∫ΦΦᵀ, so h < 1/λ_max(G) (λ_max(G) ≤ tr G ≤ m + 1).

Shapes: u₀ (R, m), a (R, m + 1) with column 0 the bias; members are independent (no quantity mixes them), so a
member's trajectory is the same alone or beside others.

References:
    Marion & Berthier, NeurIPS 2023, §3 (the two-timescale gradient flow on the population risk).

Examples:
    >>> from zeroloss.papers.marion2023.twotimescale.targets import target_preset
    >>> run = population_gd(np.array([[0.1, 0.3, 0.4, 0.55, 0.7, 0.9]]), 4e-3, target_preset("paper"), eps=1e-3,
    ...                     h=0.05, steps=200, logs=4)
    >>> run.risk.shape, bool(run.risk[-1, 0] < run.risk[0, 0])
    ((5, 1), True)
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np

from zeroloss.errors import ZerolossInputError, positive_int
from zeroloss.papers.marion2023.twotimescale.risk import risk_and_grad
from zeroloss.train.divergence import within_bounds


@dataclass
class PopulationRun:
    """Result of :func:`population_gd`: log_steps (L,), tau (L,) = p·h·ε, risk (L, R), u (L, R, m), a (L, R, m + 1),
    diverged (R,), wall seconds."""

    log_steps: np.ndarray
    tau: np.ndarray
    risk: np.ndarray
    u: np.ndarray
    a: np.ndarray
    diverged: np.ndarray
    seconds: float

    @property
    def final_risk(self) -> np.ndarray:
        return self.risk[-1]


def population_gd(u0: np.ndarray, eta: float, target, eps: float, h: float, steps: int, logs: int = 100,
                  a0: np.ndarray | None = None) -> PopulationRun:
    """Two-timescale GD on the exact risk from (a₀, u₀) (module docstring).

    Args:
        u0: (R, m) or (m,) initial positions.
        eta: smoothing width η.
        target: the piecewise-constant f*.
        eps: ε, the ratio of the u-step to the a-step.
        h: step of a (u moves with hε); stable for h < 1/λ_max(G).
        steps: GD steps p.
        logs: about how many times the state is recorded (evenly spaced in steps).
        a0: (R, m + 1) initial outer weights (default 0, as online SGD and the official code).

    Returns:
        :class:`PopulationRun`; a member whose risk or parameters stop being finite, or whose risk exceeds
        :data:`~zeroloss.train.divergence.DIVERGENCE_FACTOR` × its initial risk, is frozen and marked diverged (its
        later risks NaN).
    """
    u = np.array(np.atleast_2d(np.asarray(u0, dtype=np.float64)))
    if u.ndim != 2 or not np.all(np.isfinite(u)):
        raise ZerolossInputError(f"u0: finite positions of shape (R, m), got shape {u.shape}")
    steps, logs = positive_int(steps, "steps"), positive_int(logs, "logs")
    for name, value in (("eps", eps), ("h", h), ("eta", eta)):
        if not (np.isfinite(value) and value > 0):
            raise ZerolossInputError(f"{name}: a positive number, got {value!r}")
    a = np.zeros((u.shape[0], u.shape[1] + 1)) if a0 is None else np.array(a0, dtype=np.float64, ndmin=2)
    schedule = np.unique(np.round(np.linspace(0, steps, logs + 1)).astype(np.int64))
    record = set(schedule.tolist())
    alive = np.ones(u.shape[0], dtype=bool)
    risks, us, as_ = [], [], []
    first = None
    t0 = time.perf_counter()
    for p in range(steps + 1):
        with np.errstate(all="ignore"):
            risk, grad_a, grad_u = risk_and_grad(a, u, eta, target)
        if first is None:
            first = risk.copy()
        alive &= within_bounds(risk, first)
        if p in record:
            risks.append(np.where(alive, risk, np.nan))
            us.append(u.copy())
            as_.append(a.copy())
        if p == steps:
            break
        keep = alive[:, None]
        a = np.where(keep, a - h * grad_a, a)
        u = np.where(keep, u - h * eps * grad_u, u)
        if not (np.all(np.isfinite(a)) and np.all(np.isfinite(u))):
            bad = ~(np.all(np.isfinite(a), axis=1) & np.all(np.isfinite(u), axis=1))
            alive &= ~bad
            a[bad], u[bad] = as_[-1][bad], us[-1][bad]  # frozen at the last recorded finite state
    return PopulationRun(schedule, schedule * h * eps, np.array(risks), np.array(us), np.array(as_), ~alive,
                         time.perf_counter() - t0)
