"""Du et al.'s predictions (MATH §1.5): contraction per step, stable step sizes, width and step scalings.

The theorems (FC, ResNet, convolutional ResNet) state, with probability ≥ 1 − δ over the initialisation, once
the width m is large enough and the step η small enough,

    L(k) ≤ (1 − η λ₀ / 2)^k L(0),        λ₀ = λ_min(K^(H))        (the "du" kernel, :func:`zeroloss.lambda0`)

with m and η given only up to unknown constants:

    | net         | m = Ω(…)                                                    | η = O(…)              |
    | FC          | 2^{O(H)} · max{n⁴/λ⁴, n/δ, n² log(Hn/δ)/λ²}                  | λ / (n² 2^{O(H)})     |
    | ResNet      | max{n⁴/(λ⁴H⁶), n²/(λ²H²), n/δ, n² log(Hn/δ)/λ²}             | λ H² / n²             |
    | Conv-ResNet | the ResNet bound × poly(p)                                   | λ H² / (n² poly(p))   |

The constants hidden in Ω, O, 2^{O(H)} and poly(p) are never invented here: :func:`width_scaling` and
:func:`step_scaling` take them as required keyword arguments (``constant``, ``depth_base`` = the base b of
2^{O(H)} = b^H, ``poly_p`` = the value of poly(p)), so only scalings — ratios between settings — are meaningful.

:func:`compare_contraction` puts a training run from :func:`zeroloss.train_gd` next to the bound: the measured
per-step ratios L(k+1)/L(k) of every member, their worst value and geometric mean, against 1 − ηλ₀/2.

References:
    S. S. Du, J. D. Lee, H. Li, L. Wang, X. Zhai. Gradient Descent Finds Global Minima of Deep Neural Networks.
    ICML 2019, Theorems 5.1, 6.1, 7.1.

Example:
    >>> contraction_bound(lr=0.1, lambda0=0.4)
    0.98
    >>> step_scaling("resnet", n=10, depth=4, lambda0=0.2, constant=1.0)
    0.032
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import torch

from zeroloss.errors import ZerolossInputError, choice, positive_int, require
from zeroloss.nets.base import EnsembleNet
from zeroloss.nets.registry import DU_NETS, resolve_architecture
from zeroloss.spectrum import lambda_max
from zeroloss.train.gd import GDRun

NETS = DU_NETS


def _positive(value: float, field: str) -> float:
    ok = isinstance(value, (int, float, np.floating)) and not isinstance(value, bool) and math.isfinite(value)
    require(ok and value > 0, field, "must be a positive finite number", value)
    return float(value)


def contraction_bound(lr: float, lambda0: float) -> float:
    """Du et al.'s per-step loss contraction factor 1 − η λ₀ / 2 (MATH §1.5).

    Args:
        lr: step size η > 0.
        lambda0: λ₀ = λ_min(K^(H)) > 0 (a non-positive λ₀ carries no guarantee).

    Returns:
        1 − ηλ₀/2. A value ≤ 0 (ηλ₀ ≥ 2) means η is far outside the theorem's range η = O(λ/n²).
    """
    return 1.0 - _positive(lr, "lr") * _positive(lambda0, "lambda0") / 2.0


def largest_stable_step(G: torch.Tensor) -> float | torch.Tensor:
    """2 / λ_max(G) for a finite net's Gram matrix G (float64 spectrum).

    For the linearised dynamics r(k+1) = (I − ηG) r(k) of the residual r = u − y (MATH §1.3) every
    eigendirection contracts iff |1 − ηλ| < 1 for all eigenvalues λ, i.e. η < 2/λ_max(G).

    Args:
        G: (n, n), or (S, n, n) for an ensemble (e.g. ``zeroloss.gram(net, X)``).

    Returns:
        a float for one matrix, an (S,) float64 tensor for a stack.
    """
    top = lambda_max(G)
    if (top <= 0).any():
        raise ZerolossInputError("G: λ_max must be positive for a stable step to exist, got a non-positive one")
    steps = 2.0 / top
    return float(steps) if steps.ndim == 0 else steps


def _check_common(net: str | EnsembleNet, n: int, depth: int | None, lambda0: float | None,
                  constant: float) -> tuple[str, int, int, float, float]:
    """The net's name and depth (from a net object, or a name and ``depth``), and the checked numbers."""
    arch = resolve_architecture(net, {"depth": depth}, {"depth": None})
    choice(arch["name"], "net", NETS)
    if arch["depth"] is None:
        raise ZerolossInputError("depth: required with a net name (a net object carries its own), got None")
    return arch["name"], positive_int(n, "n"), positive_int(arch["depth"], "depth"), _positive(
        lambda0, "lambda0"), _positive(constant, "constant")


def _depth_factor(net: str, depth: int, depth_base: float | None, poly_p: float | None) -> float:
    """2^{O(H)} = depth_base^H for FC; poly(p) for the conv-ResNet; 1 for the ResNet. Never invented."""
    if net == "fc":
        if depth_base is None:
            raise ZerolossInputError("depth_base: the FC bounds hold up to 2^{O(H)} = depth_base^H; pass the base "
                                     "you assume (the paper leaves it unknown), got None")
        require(_positive(depth_base, "depth_base") >= 1.0, "depth_base", "must be ≥ 1", depth_base)
        return float(depth_base) ** depth
    if net == "conv-resnet":
        if poly_p is None:
            raise ZerolossInputError("poly_p: the conv-ResNet bounds hold up to a factor poly(p); pass its value "
                                     "(the paper leaves it unknown), got None")
        return _positive(poly_p, "poly_p")
    return 1.0


def width_scaling(net: str | EnsembleNet, n: int, depth: int | None = None, lambda0: float | None = None,
                  delta: float | None = None, *, constant: float, depth_base: float | None = None,
                  poly_p: float | None = None) -> float:
    """The width m = Ω(…) of Du et al.'s theorems (MATH §1.5), with the unknown constants as arguments.

    FC:          constant · depth_base^H · max{n⁴/λ⁴, n/δ, n² log(Hn/δ)/λ²}
    ResNet:      constant · max{n⁴/(λ⁴H⁶), n²/(λ²H²), n/δ, n² log(Hn/δ)/λ²}
    Conv-ResNet: constant · poly_p · (the ResNet max)

    Args:
        net: ``"fc"``, ``"resnet"`` or ``"conv-resnet"``, or a net object of those kinds (its kind and depth).
        n, depth: number of samples, H (``depth`` is read from a net object; an explicit one must agree).
        lambda0: λ₀ > 0 (required).
        delta: failure probability, in (0, 1) (required).
        constant: the constant hidden in Ω (required: the paper does not give it).
        depth_base: b in 2^{O(H)} = b^H (required for ``fc``).
        poly_p: the value of poly(p) (required for ``conv-resnet``).

    Returns:
        the width (a float: compare ratios between settings, not absolute values).

    Example:
        >>> round(width_scaling("resnet", n=4, depth=2, lambda0=1.0, delta=0.5, constant=1.0), 4)  # 16 log 16
        44.3614
    """
    net, n, H, lam, c = _check_common(net, n, depth, lambda0, constant)
    d = _positive(delta, "delta")
    require(d < 1.0, "delta", "must be in (0, 1)", delta)
    log_term = n**2 * math.log(H * n / d) / lam**2
    if net == "fc":
        core = max(n**4 / lam**4, n / d, log_term)
    else:
        core = max(n**4 / (lam**4 * H**6), n**2 / (lam**2 * H**2), n / d, log_term)
    return c * _depth_factor(net, H, depth_base, poly_p) * core


def step_scaling(net: str | EnsembleNet, n: int, depth: int | None = None, lambda0: float | None = None, *,
                 constant: float, depth_base: float | None = None, poly_p: float | None = None) -> float:
    """The step η = O(…) of Du et al.'s theorems (MATH §1.5), with the unknown constants as arguments.

    FC: constant · λ / (n² depth_base^H);  ResNet: constant · λH²/n²;  Conv-ResNet: constant · λH²/(n² poly_p).
    ``net`` and ``depth`` as :func:`width_scaling` (a name with a depth, or a net object); ``lambda0`` required.

    Example:
        >>> step_scaling("fc", n=10, depth=2, lambda0=0.5, constant=1.0, depth_base=2.0)
        0.00125
        >>> from zeroloss.nets import FullyConnected
        >>> step_scaling(FullyConnected(d=3, width=8, depth=2), n=10, lambda0=0.5, constant=1.0, depth_base=2.0)
        0.00125
    """
    net, n, H, lam, c = _check_common(net, n, depth, lambda0, constant)
    factor = _depth_factor(net, H, depth_base, poly_p)
    if net == "fc":
        return c * lam / (n**2 * factor)
    return c * lam * H**2 / (n**2 * factor)


def _default_floor(run: GDRun) -> float:
    """(10⁴ · eps)² of the net's dtype: below this fraction of L(0) the residual is within 10⁴ round-offs of
    the predictions, so a ratio L(k+1)/L(k) would measure round-off (≥ 1e-4 relative), not the dynamics."""
    eps = torch.finfo(run.net.dtype).eps
    return (1e4 * eps) ** 2


def compare_contraction(run: GDRun, lambda0: float, relative_floor: float | None = None) -> pd.DataFrame:
    """Measured per-step contraction of every member of a GD run against Du et al.'s 1 − ηλ₀/2.

    The ratios ρ_k = L(k+1)/L(k) are taken over the steps where both losses are finite and L(k) is above
    ``relative_floor`` × L(0) (see :func:`_default_floor` for the default and why).

    Args:
        run: a :class:`~zeroloss.train.gd.GDRun` (``run.losses`` (steps + 1, S), ``run.lr`` (S,)).
        lambda0: λ₀ of the net's architecture on the run's inputs (:func:`zeroloss.lambda0`).
        relative_floor: skip steps once L(k) ≤ relative_floor · L(0).

    Returns:
        one row per member: ``member``, ``lr``, ``bound`` (1 − ηλ₀/2), ``worst_ratio`` (max_k ρ_k),
        ``geometric_mean_ratio`` ((L(K)/L(0))^(1/K) over the K steps used), ``steps_used``, ``holds``
        (worst_ratio ≤ bound), ``diverged_at``.

    Example:
        >>> from zeroloss.data import sphere_data
        >>> from zeroloss.nets import FullyConnected
        >>> from zeroloss.train.gd import train_gd
        >>> X, y = sphere_data(n=4, d=3, seed=0)
        >>> run = train_gd(FullyConnected(3, 256, 2, "erf", 1, 0, torch.float64), X, y, lr=0.05, steps=20,
        ...                probes=["loss"], progress=False)
        >>> list(compare_contraction(run, lambda0=0.3).columns)[:3]
        ['member', 'lr', 'bound']
    """
    lam = _positive(lambda0, "lambda0")
    floor = _default_floor(run) if relative_floor is None else _positive(relative_floor, "relative_floor")
    losses = np.asarray(run.losses, dtype=np.float64)
    rows = []
    for s in range(losses.shape[1]):
        L = losses[:, s]
        lr = float(run.lr[s])
        ok = np.isfinite(L) & (L > floor * L[0]) & (L > 0)
        # a step k is used when L(k) and L(k+1) are both usable; stop at the first unusable one
        usable = int(np.argmin(ok)) if not ok.all() else len(L)
        K = max(usable - 1, 0)
        ratios = L[1 : K + 1] / L[:K]
        rows.append({
            "member": s,
            "lr": lr,
            "bound": 1.0 - lr * lam / 2.0,
            "worst_ratio": float(ratios.max()) if K else float("nan"),
            "geometric_mean_ratio": float((L[K] / L[0]) ** (1.0 / K)) if K else float("nan"),
            "steps_used": K,
            "holds": bool(K and ratios.max() <= 1.0 - lr * lam / 2.0),
            "diverged_at": run.diverged_at.get(s),
        })
    return pd.DataFrame(rows)
