"""The univariate smoothed-step network of Marion & Berthier (docs/theory.md §3.1), in numpy, ensemble-native.

    f(x; a, u) = a₀ + Σ_{j=1}^m a_j σ((x − u_j)/η)

σ is the cubic smoothed step of :func:`zeroloss.activations.cubic_step` (0 below −½, 1 above ½,
``4(z+½)³`` on [−½, 0], ``1 − 4(½−z)³`` on [0, ½]); the numpy versions here are tested equal to it. The bias a₀
is the official code's extra neuron at position −η/2, whose σ((x + η/2)/η) is 1 on all of [0, 1]; it is stored as
column 0 of ``a`` and never moves.

Shapes: ``a`` is (R, m + 1) (column 0 the bias), ``u`` is (R, m); R = repeats ("members"), each its own net.

References:
    Marion & Berthier, NeurIPS 2023, eq. (1) and §5; docs/theory.md §3.1.

Examples:
    >>> a = np.array([[1.0, 2.0]]); u = np.array([[0.5]])
    >>> forward(a, u, np.array([0.0, 0.5, 1.0]), eta=0.1).tolist()
    [[1.0, 2.0, 3.0]]
"""

from __future__ import annotations

import numpy as np

from zeroloss.errors import ZerolossInputError, positive_int


def sigma(z: np.ndarray) -> np.ndarray:
    """The cubic smoothed step σ(z), elementwise (numpy twin of ``activations.cubic_step``)."""
    z = np.clip(np.asarray(z, dtype=np.float64), -0.5, 0.5)
    neg = z <= 0
    w = np.where(neg, z + 0.5, 0.5 - z)
    cube = 4.0 * w * w * w
    return np.where(neg, cube, 1.0 - cube)


def sigma_d1(z: np.ndarray) -> np.ndarray:
    """σ′(z) = 12(z+½)² on [−½, 0], 12(½−z)² on [0, ½], 0 elsewhere (twin of ``activations.cubic_step_d1``)."""
    z = np.clip(np.asarray(z, dtype=np.float64), -0.5, 0.5)
    w = 0.5 - np.abs(z)
    return 12.0 * w * w


def features(u: np.ndarray, x: np.ndarray, eta: float) -> np.ndarray:
    """Φ(x) = [1, σ((x − u_1)/η), …, σ((x − u_m)/η)].

    Args:
        u: (R, m) positions.
        x: (N,) shared points or (R, N) per-member points.
        eta: smoothing width η > 0.

    Returns:
        (R, N, m + 1).
    """
    u = np.asarray(u, dtype=np.float64)
    x = np.asarray(x, dtype=np.float64)
    xr = np.broadcast_to(x, (u.shape[0], x.shape[-1]))
    phi = sigma((xr[:, :, None] - u[:, None, :]) / eta)
    return np.concatenate([np.ones(phi.shape[:2] + (1,)), phi], axis=2)


def forward(a: np.ndarray, u: np.ndarray, x: np.ndarray, eta: float) -> np.ndarray:
    """f(x; a, u) for every member: a (R, m + 1), u (R, m), x (N,) or (R, N) → (R, N)."""
    return np.einsum("rnj,rj->rn", features(u, x, eta), np.asarray(a, dtype=np.float64))


def check_params(a: np.ndarray, u: np.ndarray, eta: float) -> tuple[np.ndarray, np.ndarray]:
    """Return (a, u) as float64 arrays of shapes (R, m + 1) and (R, m) after checking them and η."""
    a = np.atleast_2d(np.asarray(a, dtype=np.float64))
    u = np.atleast_2d(np.asarray(u, dtype=np.float64))
    if u.ndim != 2 or a.shape != (u.shape[0], u.shape[1] + 1):
        raise ZerolossInputError(f"a: shape (R, m + 1) matching u of shape (R, m), got a {a.shape}, u {u.shape}")
    if not (np.all(np.isfinite(a)) and np.all(np.isfinite(u))):
        raise ZerolossInputError("a, u: finite numbers, got NaN or inf")
    if not (np.isfinite(eta) and eta > 0):
        raise ZerolossInputError(f"eta: a positive number, got {eta!r}")
    return a, u


def member_rng(seed: int, member: int) -> np.random.Generator:
    """The generator of member k of a run seeded ``seed``: ``default_rng(seed + k)`` (docs/architecture.md: member
    k of an ensemble built with seed s equals the single-member run with seed s + k)."""
    return np.random.default_rng(seed + member)


def init_positions(neurons: int, repeats: int, seed: int, valid_for=None, max_draws: int = 10_000) -> np.ndarray:
    """u₀ = sorted U[0, 1]^m per member (docs/theory.md §3.4), member k drawn from ``default_rng(seed + k)``.

    Args:
        neurons: m.
        repeats: R.
        seed: seed of member 0.
        valid_for: optional :class:`~zeroloss.papers.marion2023.twotimescale.targets.PiecewiseConstant`; when
            given, each member redraws from its own generator until every constant piece of it holds ≥ 2 neurons
            (the validity condition of the two-timescale limit, docs/theory.md §3.3) — i.e. u₀ is drawn
            conditioned on validity.
        max_draws: give up (ZerolossInputError) after this many draws of one member.

    Returns:
        (R, m) sorted positions.
    """
    neurons, repeats = positive_int(neurons, "neurons"), positive_int(repeats, "repeats")
    out = np.empty((repeats, neurons))
    for k in range(repeats):
        rng = member_rng(seed, k)
        for _ in range(max_draws):
            out[k] = np.sort(rng.random(neurons))
            if valid_for is None or neurons_per_piece(out[k], valid_for).min() >= 2:
                break
        else:
            raise ZerolossInputError(f"neurons: too few ({neurons}) to put 2 in every piece of the target by "
                                     f"chance in {max_draws} draws, got {neurons}")
    return out


def neurons_per_piece(u: np.ndarray, target) -> np.ndarray:
    """Count of positions in each constant piece [0, v₁), …, [v_n, 1] of ``target``: u (m,) → (n + 1,) ints.
    Positions outside [0, 1] belong to no piece."""
    u = np.asarray(u, dtype=np.float64)
    inside = u[(u >= 0) & (u <= 1)]
    idx = np.searchsorted(target.jumps, inside, side="right")
    return np.bincount(idx, minlength=len(target.values))
