"""Online SGD with label noise on the smoothed-step net, two step sizes (docs/theory.md §3.4), compiled with numba.

One fresh sample per step, per member: x ∼ U[0, 1], y = f*(x) + ξ with ξ ∼ U[−noise, noise]; with the residual
r = y − f(x) and the per-sample loss ℓ = (y − f(x))² (the official code's normalisation, no ½):

    a_j ← a_j + h · 2r · φ_j(x),               φ_0 = 1, φ_j = σ((x − u_j)/η)
    u_j ← u_j − hε · 2r · a_j · σ′((x − u_j)/η)/η     (old a_j; both updates use the same sample)

``derivative="exact"`` (default) uses σ′; ``"box"`` uses the code's surrogate 1{|x − u_j| ≤ η/2}/η for σ′(·)/η.
After p steps the slow time is τ = p·h·ε. The exact population risk
(:func:`~zeroloss.papers.marion2023.twotimescale.risk.exact_risk`) is logged ``logs`` times, evenly spaced in steps.
All members advance side by side in one compiled loop (``prange`` over members; a plain loop for one member, so that no
thread pool spins beside it); member k draws from its own xoshiro256** stream seeded ``seed + k``.

References:
    Marion & Berthier, NeurIPS 2023, §5 (experiments); official code github.com/PierreMarion23/two-timescale-nn
    (``experiment.py``, ``neural_network.py``).

Examples:
    >>> from zeroloss.papers.marion2023.twotimescale.targets import target_preset
    >>> run = online_sgd(target_preset("paper"), eps=1.0, h=1e-3, steps=2000, neurons=8, repeats=2, seed=0,
    ...                  logs=4)
    >>> run.risk.shape, run.log_steps.tolist()
    ((5, 2), [0, 500, 1000, 1500, 2000])
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numba as nb
import numpy as np
import pandas as pd

from zeroloss.errors import ZerolossInputError, choice, positive_int
from zeroloss.papers.marion2023.twotimescale.model import check_params, init_positions
from zeroloss.papers.marion2023.twotimescale.risk import exact_risk
from zeroloss.papers.marion2023.twotimescale.rng import next_uniform, seed_states

DERIVATIVES = ("exact", "box")


@nb.njit(inline="always", cache=True)
def _sigma(z):
    if z <= -0.5:
        return 0.0
    if z >= 0.5:
        return 1.0
    if z <= 0.0:
        w = z + 0.5
        return 4.0 * w * w * w
    w = 0.5 - z
    return 1.0 - 4.0 * w * w * w


@nb.njit(inline="always", cache=True)
def _sigma_d1(z):
    if z <= -0.5 or z >= 0.5:
        return 0.0
    w = z + 0.5 if z <= 0.0 else 0.5 - z
    return 12.0 * w * w


@nb.njit(inline="always", cache=True)
def _target_value(x, jumps, values):
    i = 0
    while i < jumps.shape[0] and x >= jumps[i]:
        i += 1
    return values[i]


@nb.njit(inline="always", cache=True)
def _step(a, u, phi, x, y, h, heps, eta, box):
    """One SGD step of one member, in place: a (m+1,), u (m,), phi (m,) scratch."""
    m = u.shape[0]
    inv_eta = 1.0 / eta
    f = a[0]
    for j in range(m):
        p = _sigma((x - u[j]) * inv_eta)
        phi[j] = p
        f += a[j + 1] * p
    g = 2.0 * (y - f)
    for j in range(m):
        d = x - u[j]
        if box:
            dphi = inv_eta if abs(d) <= 0.5 * eta else 0.0
        else:
            dphi = _sigma_d1(d * inv_eta) * inv_eta
        aj = a[j + 1]
        a[j + 1] = aj + h * g * phi[j]
        if dphi != 0.0:
            u[j] -= heps * g * aj * dphi
    a[0] += h * g


@nb.njit(inline="always", cache=True)
def _advance(ar, ur, s, phi, steps, h, heps, eta, noise, jumps, values, box):
    """Advance one member ``steps`` steps with fresh samples from its stream ``s`` (in place)."""
    for _ in range(steps):
        x = next_uniform(s)
        xi = noise * (2.0 * next_uniform(s) - 1.0)
        y = _target_value(x, jumps, values) + xi
        _step(ar, ur, phi, x, y, h, heps, eta, box)


@nb.njit(parallel=True, cache=True)
def _sgd_chunk(a, u, states, steps, h, eps, eta, noise, jumps, values, box):
    """Advance every member ``steps`` steps, members in parallel (``prange``), each from its own stream."""
    R, m = u.shape
    for r in nb.prange(R):
        _advance(a[r], u[r], states[r], np.empty(m), steps, h, h * eps, eta, noise, jumps, values, box)


@nb.njit(cache=True)
def _sgd_chunk_serial(a, u, states, steps, h, eps, eta, noise, jumps, values, box):
    """:func:`_sgd_chunk` without the thread pool, for one member: a parallel region with one iteration leaves the
    pool's other threads spinning, which costs a busy 2-core machine CPU for nothing. Same results (each member only
    reads its own stream)."""
    R, m = u.shape
    for r in range(R):
        _advance(a[r], u[r], states[r], np.empty(m), steps, h, h * eps, eta, noise, jumps, values, box)


@nb.njit(cache=True)
def _sgd_given(a, u, xs, ys, h, eps, eta, box):
    """Advance every member through the given samples xs, ys (R, N) (in place): the testable twin."""
    R, m = u.shape
    phi = np.empty(m)
    for r in range(R):
        for k in range(xs.shape[1]):
            _step(a[r], u[r], phi, xs[r, k], ys[r, k], h, h * eps, eta, box)


def sgd_on_samples(a: np.ndarray, u: np.ndarray, xs: np.ndarray, ys: np.ndarray, h: float, eps: float, eta: float,
                   derivative: str = "exact") -> tuple[np.ndarray, np.ndarray]:
    """Run the compiled SGD update through given samples; returns new (a, u). xs, ys: (R, N)."""
    a, u = check_params(a, u, eta)
    a, u = a.copy(), u.copy()
    _sgd_given(a, u, np.ascontiguousarray(xs, dtype=np.float64), np.ascontiguousarray(ys, dtype=np.float64),
               float(h), float(eps), float(eta), choice(derivative, "derivative", DERIVATIVES) == "box")
    return a, u


@dataclass
class SGDRun:
    """The result of :func:`online_sgd`.

    Attributes:
        log_steps: (L,) steps at which the state was logged (0 … steps).
        risk: (L, R) exact population risk ∫₀¹(f − f*)² at those steps.
        a: (L, R, m + 1) outer weights (column 0 the bias) at those steps.
        u: (L, R, m) positions at those steps.
        h, eps, eta: step, ratio of timescales, smoothing width.
        seconds: wall time of the stepping and logging.
    """

    log_steps: np.ndarray
    risk: np.ndarray
    a: np.ndarray
    u: np.ndarray
    h: float
    eps: float
    eta: float
    seconds: float

    @property
    def steps(self) -> int:
        return int(self.log_steps[-1])

    @property
    def tau(self) -> np.ndarray:
        """(L,) slow time τ = p·h·ε of each log."""
        return self.log_steps * self.h * self.eps

    @property
    def final_risk(self) -> np.ndarray:
        return self.risk[-1]

    def to_frame(self) -> pd.DataFrame:
        """Tidy (step, member, metric, value) with metrics ``risk`` and ``tau``."""
        L, R = self.risk.shape
        step = np.repeat(self.log_steps, R)
        member = np.tile(np.arange(R), L)
        risk = pd.DataFrame({"step": step, "member": member, "metric": "risk", "value": self.risk.reshape(-1)})
        tau = pd.DataFrame({"step": step, "member": member, "metric": "tau", "value": np.repeat(self.tau, R)})
        return pd.concat([risk, tau], ignore_index=True)


def log_schedule(steps: int, logs: int) -> np.ndarray:
    """Steps 0 = p_0 < … < p_L = steps, about ``logs`` evenly spaced intervals (duplicates removed)."""
    return np.unique(np.round(np.linspace(0, steps, logs + 1)).astype(np.int64))


def online_sgd(target, eps: float, h: float, steps: int, neurons: int = 20, eta: float = 4e-3, repeats: int = 1,
               seed: int = 0, noise: float = 1.0, derivative: str = "exact", logs: int = 100,
               u0: np.ndarray | None = None, a0: np.ndarray | None = None, progress: bool = False) -> SGDRun:
    """Online SGD with label noise, members side by side (docs/theory.md §3.4).

    Args:
        target: a :class:`~zeroloss.papers.marion2023.twotimescale.targets.PiecewiseConstant`.
        eps: ε, the ratio of the u-step to the a-step (u moves with hε).
        h: step size of a.
        steps: number of SGD steps p (slow time τ = p h ε).
        neurons: m (ignored when u0 is given).
        eta: smoothing width η.
        repeats: R members; member k draws u₀ and its samples from seed + k.
        seed: seed of member 0.
        noise: label noise half-width (ξ ∼ U[−noise, noise]; the paper uses 1).
        derivative: ``"exact"`` σ′ (default) or ``"box"`` (the official code's surrogate).
        logs: about how many times the exact risk is logged.
        u0: optional (R, m) initial positions (default sorted U[0, 1]^m per member).
        a0: optional (R, m + 1) initial outer weights (default 0, as the code).
        progress: show a tqdm bar on stderr.

    Returns:
        :class:`SGDRun`.
    """
    steps = positive_int(steps, "steps")
    logs = positive_int(logs, "logs")
    for name, value in (("eps", eps), ("h", h), ("eta", eta)):
        if not (isinstance(value, (int, float)) and np.isfinite(value) and value > 0):
            raise ZerolossInputError(f"{name}: a positive number, got {value!r}")
    if not (np.isfinite(noise) and noise >= 0):
        raise ZerolossInputError(f"noise: a number ≥ 0, got {noise!r}")
    box = choice(derivative, "derivative", DERIVATIVES) == "box"
    u = init_positions(neurons, repeats, seed) if u0 is None else np.array(u0, dtype=np.float64, ndmin=2)
    a = np.zeros((u.shape[0], u.shape[1] + 1)) if a0 is None else np.array(a0, dtype=np.float64, ndmin=2)
    a, u = check_params(a, u, eta)
    a, u = np.ascontiguousarray(a.copy()), np.ascontiguousarray(u.copy())
    states = seed_states(seed, u.shape[0])
    schedule = log_schedule(steps, logs)
    risks, a_hist, u_hist = [exact_risk(a, u, eta, target)], [a.copy()], [u.copy()]
    t0 = time.perf_counter()
    from tqdm import tqdm

    bar = tqdm(total=steps, disable=None if progress else True, unit="step", unit_scale=True, leave=False)
    chunk = _sgd_chunk if u.shape[0] > 1 and nb.get_num_threads() > 1 else _sgd_chunk_serial
    for start, stop in zip(schedule[:-1], schedule[1:], strict=True):
        chunk(a, u, states, int(stop - start), float(h), float(eps), float(eta), float(noise), target.jumps,
              target.values, box)
        with np.errstate(all="ignore"):
            risks.append(exact_risk(a, u, eta, target) if np.all(np.isfinite(a)) and np.all(np.isfinite(u))
                         else _risk_or_nan(a, u, eta, target))
        a_hist.append(a.copy())
        u_hist.append(u.copy())
        bar.update(int(stop - start))
    bar.close()
    return SGDRun(schedule, np.array(risks), np.array(a_hist), np.array(u_hist), float(h), float(eps), float(eta),
                  time.perf_counter() - t0)


def _risk_or_nan(a: np.ndarray, u: np.ndarray, eta: float, target) -> np.ndarray:
    """Exact risk per member, NaN for a member whose parameters are no longer finite."""
    out = np.full(u.shape[0], np.nan)
    ok = np.all(np.isfinite(a), axis=1) & np.all(np.isfinite(u), axis=1)
    if ok.any():
        out[ok] = exact_risk(a[ok], u[ok], eta, target)
    return out
