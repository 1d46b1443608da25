"""Du et al.'s predictions (docs/theory.md §1.3, §1.5): contraction per step, stable steps, scalings, kernel dynamics.

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
:func:`per_step_contraction` checks the sharper per-step form L(k+1)/L(k) ≤ 1 − ηλ_min(G(k))/2 with the measured
Gram of every step.

Kernel dynamics (§1.3): GD's residual r = u − y obeys r(k+1) = (I − ηG(k)) r(k) + second-order terms, and Du et
al.'s proof keeps G(k) close to G(0). Dropping both corrections gives the kernel prediction from the eigenpairs
(λ_i, v_i) of the full Gram G(0) (all layers, float64):

    L̂_k = ½ Σ_i (1 − ηλ_i)^{2k} ⟨v_i, y − u(0)⟩²                        (:func:`kernel_loss_prediction`)

:func:`kernel_steps_to` is the step at which L̂ falls to a fraction of L̂_0 (a horizon set by the kernel's own
spectrum), :func:`kernel_deviation` the largest gap max_k |√L_k − √L̂_k| / √L_0 between a run and its prediction.
These are functions of measured quantities: nothing here trains.

References:
    S. S. Du, J. D. Lee, H. Li, L. Wang, X. Zhai. Gradient Descent Finds Global Minima of Deep Neural Networks.
    ICML 2019, Theorems 5.1, 6.1, 7.1.

Examples:
    >>> contraction_bound(lr=0.1, lambda0=0.4)
    0.98
    >>> step_scaling("resnet", n=10, depth=4, lambda0=0.2, constant=1.0)
    0.032
    >>> G0 = torch.diag(torch.tensor([2.0, 1.0], dtype=torch.float64))  # eigenvalues 2 and 1
    >>> kernel_loss_prediction(G0, torch.tensor([1.0, 1.0]), lr=0.5, steps=2).tolist()  # ½(0^{2k} + 0.5^{2k})
    [1.0, 0.125, 0.03125]
    >>> int(kernel_steps_to(G0, torch.tensor([1.0, 1.0]), lr=0.5, fraction=1e-3))  # first k: ½·0.25^k ≤ 1e-3
    5
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import torch

from zeroloss.errors import ZerolossInputError, choice, positive_int, require
from zeroloss.nets.base import EnsembleNet
from zeroloss.nets.registry import DU_NETS, resolve_architecture
from zeroloss.ntk.predict import residual_factor
from zeroloss.spectra import lambda_max
from zeroloss.train.gd import GDRun

NETS = DU_NETS


def _positive(value: float, field: str) -> float:
    ok = isinstance(value, (int, float, np.floating)) and not isinstance(value, bool) and math.isfinite(value)
    require(ok and value > 0, field, "must be a positive finite number", value)
    return float(value)


def contraction_bound(lr: float, lambda0: float) -> float:
    """Du et al.'s per-step loss contraction factor 1 − η λ₀ / 2 (docs/theory.md §1.5).

    Args:
        lr: step size η > 0.
        lambda0: λ₀ = λ_min(K^(H)) > 0 (a non-positive λ₀ carries no guarantee).

    Returns:
        1 − ηλ₀/2. A value ≤ 0 (ηλ₀ ≥ 2) means η is far outside the theorem's range η = O(λ/n²).
    """
    return 1.0 - _positive(lr, "lr") * _positive(lambda0, "lambda0") / 2.0


def largest_stable_step(G: torch.Tensor) -> float | torch.Tensor:
    """2 / λ_max(G) for a finite net's Gram matrix G (float64 spectrum).

    For the linearised dynamics r(k+1) = (I − ηG) r(k) of the residual r = u − y (docs/theory.md §1.3) every
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
    """The width m = Ω(…) of Du et al.'s theorems (docs/theory.md §1.5), with the unknown constants as arguments.

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

    Examples:
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
    """The step η = O(…) of Du et al.'s theorems (docs/theory.md §1.5), with the unknown constants as arguments.

    FC: constant · λ / (n² depth_base^H);  ResNet: constant · λH²/n²;  Conv-ResNet: constant · λH²/(n² poly_p).
    ``net`` and ``depth`` as :func:`width_scaling` (a name with a depth, or a net object); ``lambda0`` required.

    Examples:
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

    Examples:
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


def _usable_steps(losses: np.ndarray, lr: np.ndarray | float, lambda_min: np.ndarray,
                  relative_floor: float) -> list[tuple[np.ndarray, int, float, np.ndarray]]:
    """Per member: (its loss curve, K the steps k → k + 1 with L(k) and L(k + 1) both usable — finite, positive, with
    a finite λ_min and above ``relative_floor`` · L(0), up to the first unusable step —, its η, its λ_min path)."""
    L = np.asarray(losses, dtype=np.float64)
    lam = np.asarray(lambda_min, dtype=np.float64)
    if L.ndim == 1:
        L, lam = L[:, None], lam[:, None]
    if lam.shape != L.shape:
        raise ZerolossInputError(f"lambda_min: must have the shape of losses {L.shape}, got {lam.shape}")
    eta = np.broadcast_to(np.asarray(lr, dtype=np.float64), (L.shape[1],))
    _positive(relative_floor, "relative_floor")
    out = []
    for s in range(L.shape[1]):
        curve = L[:, s]
        ok = np.isfinite(curve) & np.isfinite(lam[:, s]) & (curve > relative_floor * curve[0]) & (curve > 0)
        usable = int(np.argmin(ok)) if not ok.all() else len(curve)
        out.append((curve, max(usable - 1, 0), float(eta[s]), lam[:, s]))
    return out


def per_step_contraction(losses: np.ndarray, lr: np.ndarray | float, lambda_min: np.ndarray,
                         relative_floor: float = (1e4 * float(np.finfo(np.float64).eps)) ** 2) -> pd.DataFrame:
    """Every step's ratio L(k+1)/L(k) against Du et al.'s per-step bound 1 − η λ_min(G(k)) / 2.

    Du et al.'s proof (Thm 5.1 and its analogues) shows, for η small enough and m large enough,
    ‖y − u(k+1)‖² ≤ (1 − ηλ_min(G(k))/2) ‖y − u(k)‖² with the Gram G(k) of the step (docs/theory.md §1.3, §1.5);
    here it is checked step by step with the measured λ_min(G(k)). No tolerance: the bound is an inequality and
    the ratios are float64; a step k → k + 1 is used while L(k) and L(k + 1) are finite and above
    ``relative_floor`` · L(0) (default (10⁴·eps)², the rule of :func:`compare_contraction`: below it the residual
    is within 10⁴ round-offs of the predictions and a ratio would measure round-off), stopping at the first
    unusable step.

    Args:
        losses: (K + 1, S) or (K + 1,) float64 losses of every step (NaN after a member diverged).
        lr: η per member, (S,) or a scalar.
        lambda_min: λ_min(G(k)) at every step, the same shape as ``losses`` (the step's full Gram, float64).
        relative_floor: steps with L(k) ≤ relative_floor · L(0) and all later ones are not checked.

    Returns:
        one row per member: ``steps_checked``, ``violations`` (steps with ratio > bound), ``worst_excess``
        (max_k ratio − bound; ≤ 0 when the bound holds everywhere), ``worst_step``, ``worst_ratio``.

    Examples:
        >>> L = 0.9 ** np.arange(6.0)                      # contracts by 0.9 each step
        >>> per_step_contraction(L, lr=0.1, lambda_min=np.full(6, 1.0))["violations"].item()   # bound 0.95
        0
        >>> per_step_contraction(L, lr=0.1, lambda_min=np.full(6, 3.0))["violations"].item()   # bound 0.85
        5
    """
    rows = []
    for s, (curve, K, eta_s, lam_s) in enumerate(_usable_steps(losses, lr, lambda_min, relative_floor)):
        ratio = curve[1 : K + 1] / curve[:K]
        bound = 1.0 - eta_s * lam_s[:K] / 2.0
        excess = ratio - bound
        worst = int(np.argmax(excess)) if K else -1
        rows.append({
            "member": s,
            "steps_checked": K,
            "violations": int((excess > 0).sum()),
            "worst_excess": float(excess[worst]) if K else float("nan"),
            "worst_step": worst,
            "worst_ratio": float(ratio[worst]) if K else float("nan"),
        })
    return pd.DataFrame(rows)


#: The constants this lab takes for the O(·) of the theorems' step (docs/theory.md §1.5): the O(·) constant 1 and
#: 2^{O(H)} = 2^H. The paper gives neither; constant 1 is the largest step of the theorem's form with no unstated
#: factor, and base 2 the smallest at which 2^{O(H)} is an exponential at all, so :func:`theorem_step` is the largest
#: (cheapest, most demanding) step the form allows. A smaller hidden constant gives a smaller step, whose run is the
#: same gradient-flow path sampled more finely: the du2019.theorem ladder shows the verdict below it.
THEOREM_STEP_CONSTANT = 1.0
THEOREM_DEPTH_BASE = 2.0


def theorem_step(net: str, n: int, depth: int, lambda0: float) -> float:
    """The theorems' step η_thm = λ₀/(n²·2^H) (FC) or λ₀H²/n² (ResNet), with :data:`THEOREM_STEP_CONSTANT` and
    :data:`THEOREM_DEPTH_BASE` for the unknown constants (:func:`step_scaling`).

    Examples:
        >>> theorem_step("fc", n=4, depth=2, lambda0=0.08)   # 0.08 / (16 · 4)
        0.00125
    """
    return step_scaling(net, n, depth, lambda0, constant=THEOREM_STEP_CONSTANT, depth_base=THEOREM_DEPTH_BASE)


def theorem_inequality(losses: np.ndarray, lr: np.ndarray | float, lambda0: float,
                       relative_floor: float = (1e4 * float(np.finfo(np.float64).eps)) ** 2) -> pd.DataFrame:
    """The theorems' inequality L(k) ≤ (1 − ηλ₀/2)^k L(0) at every step k of a run, per member.

    Checked from k = 1 while L(k) is finite and both L(k) and the bound are above ``relative_floor`` · L(0) (below,
    the loss measures round-off: the rule of :func:`per_step_contraction`); a non-finite loss before that counts
    as a violation (the member diverged). No tolerance: an inequality between float64 numbers, the bound taken in
    logarithms (k·log(1 − ηλ₀/2)).

    Args:
        losses: (K + 1, S) or (K + 1,) float64 losses of every step.
        lr: η per member, (S,) or a scalar.
        lambda0: λ₀ = λ_min(K^(H)) of the run's inputs (:func:`zeroloss.lambda0`).
        relative_floor: as :func:`per_step_contraction`.

    Returns:
        one row per member: ``steps_checked``, ``violations`` (steps with L(k) > bound), ``worst_log_excess``
        (max_k log(L(k) / ((1 − ηλ₀/2)^k L(0))); < 0 when the inequality holds everywhere), ``worst_step``.

    Examples:
        >>> L = 0.9 ** np.arange(6.0)
        >>> theorem_inequality(L, lr=0.1, lambda0=1.0)["violations"].item()     # 0.9^k ≤ 0.95^k
        0
        >>> theorem_inequality(L, lr=0.1, lambda0=3.0)["violations"].item()     # 0.9^k > 0.85^k
        5
    """
    L = np.asarray(losses, dtype=np.float64)
    L = L[:, None] if L.ndim == 1 else L
    eta = np.broadcast_to(np.asarray(lr, dtype=np.float64), (L.shape[1],))
    lam = _positive(lambda0, "lambda0")
    _positive(relative_floor, "relative_floor")
    rows = []
    k = np.arange(L.shape[0], dtype=np.float64)
    for s in range(L.shape[1]):
        curve = L[:, s]
        require(bool(eta[s] * lam < 2.0), "lr", "must satisfy ηλ₀ < 2 (the bound is then positive)", float(eta[s]))
        log_bound = k * math.log1p(-eta[s] * lam / 2.0)  # log of (1 − ηλ₀/2)^k
        finite = np.isfinite(curve)
        above = finite & (curve > relative_floor * curve[0]) & (log_bound > math.log(relative_floor))
        # the checked steps: k ≥ 1 up to the first unusable one; a non-finite loss there is a violation
        bad = ~above[1:]
        stop = 1 + int(np.argmax(bad)) if bad.any() else len(curve)
        excess = np.log(curve[1:stop] / curve[0]) - log_bound[1:stop]
        if stop < len(curve) and not finite[stop]:
            excess = np.append(excess, np.inf)
        worst = int(np.argmax(excess)) if len(excess) else -1
        rows.append({"member": s, "steps_checked": len(excess), "violations": int((excess > 0).sum()),
                     "worst_log_excess": float(excess[worst]) if len(excess) else float("nan"),
                     "worst_step": worst + 1 if len(excess) else -1})
    return pd.DataFrame(rows)


def linear_contraction(losses: np.ndarray, lr: np.ndarray | float, lambda_min: np.ndarray,
                       relative_floor: float = (1e4 * float(np.finfo(np.float64).eps)) ** 2) -> pd.DataFrame:
    """Each step's loss decrease against the linearised dynamics' 1 − (1 − ηλ_min(G(k)))², per member.

    The linearised step r(k+1) = (I − ηG(k)) r(k) gives ‖r(k+1)‖² ≤ max_i (1 − ηλ_i)² ‖r(k)‖², which is
    (1 − ηλ_min(G(k)))² while ηλ_max(G(k)) ≤ 2 − ηλ_min(G(k)) (docs/theory.md §1.5). The *fraction of the linear
    decrement achieved* at step k is

        f_k = (1 − L(k+1)/L(k)) / (1 − (1 − ηλ_min(G(k)))²),

    ≥ 1 for linear dynamics, below 1 when the second-order terms slow the step down. Steps are used as by
    :func:`per_step_contraction` (both losses finite and above ``relative_floor`` · L(0)).

    Args:
        losses: (K + 1, S) or (K + 1,) losses; lr: η per member; lambda_min: λ_min(G(k)), the shape of ``losses``.

    Returns:
        one row per member: ``steps_checked``, ``min_fraction`` (min_k f_k; NaN when no step is usable),
        ``worst_step``.

    Examples:
        >>> L = 0.81 ** np.arange(5.0)                 # (1 − 0.1)² per step: exactly linear with ηλ_min = 0.1
        >>> round(linear_contraction(L, lr=0.1, lambda_min=np.ones(5))["min_fraction"].item(), 12)
        1.0
        >>> round(linear_contraction(0.9 ** np.arange(5.0), 0.1, np.ones(5))["min_fraction"].item(), 4)  # 0.1/0.19
        0.5263
    """
    rows = []
    for s, (curve, K, eta_s, lam_s) in enumerate(_usable_steps(losses, lr, lambda_min, relative_floor)):
        achieved = 1.0 - curve[1 : K + 1] / curve[:K]
        linear = 1.0 - (1.0 - eta_s * lam_s[:K]) ** 2
        fraction = achieved / linear
        worst = int(np.argmin(fraction)) if K else -1
        rows.append({"member": s, "steps_checked": K,
                     "min_fraction": float(fraction[worst]) if K else float("nan"), "worst_step": worst})
    return pd.DataFrame(rows)


def _eigen_projections(G0: torch.Tensor, residual0: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Eigenvalues λ_i (S, n) of G(0) and squared projections ⟨v_i, r(0)⟩² (S, n), float64 on the CPU."""
    G = torch.as_tensor(G0).detach().to("cpu", torch.float64)
    r = torch.as_tensor(residual0).detach().to("cpu", torch.float64)
    if G.ndim == 2:
        G = G.unsqueeze(0)
    if r.ndim == 1:
        r = r.unsqueeze(0)
    if G.ndim != 3 or G.shape[-1] != G.shape[-2] or r.shape != G.shape[:2]:
        raise ZerolossInputError(f"G0, residual0: must be (S, n, n) and (S, n) (or (n, n) and (n,)), "
                                 f"got {tuple(G0.shape)} and {tuple(residual0.shape)}")
    lam, V = torch.linalg.eigh(G)
    proj = (V.transpose(-1, -2) @ r.unsqueeze(-1)).squeeze(-1)
    return lam, proj.pow(2)


def _lr_per_member(lr: float | np.ndarray | torch.Tensor, members: int) -> torch.Tensor:
    eta = torch.as_tensor(lr, dtype=torch.float64).flatten().cpu()
    if eta.numel() == 1:
        eta = eta.expand(members)
    if eta.numel() != members or not torch.isfinite(eta).all() or (eta <= 0).any():
        raise ZerolossInputError(f"lr: must be one positive step or one per member ({members}), got {eta.tolist()}")
    return eta


def kernel_loss_prediction(G0: torch.Tensor, residual0: torch.Tensor, lr: float | np.ndarray | torch.Tensor,
                           steps: int) -> np.ndarray:
    """L̂_k = ½ Σ_i (1 − ηλ_i)^{2k} ⟨v_i, r(0)⟩² for k = 0..steps: GD's loss if the Gram stayed G(0).

    The per-mode factor (1 − ηλ_i)^k is :func:`zeroloss.ntk.predict.residual_factor` + 1, the one kernel prediction
    of zeroloss (:func:`zeroloss.predict_gd_mse` gives the same losses from the kernel and the labels).

    Args:
        G0: the full Gram at initialisation, (n, n) or (S, n, n) (e.g. ``zeroloss.gram(net, X)``).
        residual0: r(0) = u(0) − y, (n,) or (S, n) (the sign does not matter: projections are squared).
        lr: η, a scalar or one per member.
        steps: K.

    Returns:
        (K + 1,) float64 for one matrix, (K + 1, S) for a stack. Computed from float64 eigenpairs.
    """
    require(isinstance(steps, (int, np.integer)) and not isinstance(steps, bool) and steps >= 0, "steps",
            "must be a non-negative integer", steps)
    lam, c = _eigen_projections(G0, residual0)
    eta = _lr_per_member(lr, lam.shape[0])
    k = torch.arange(steps + 1, dtype=torch.float64, device=lam.device)
    out = torch.empty(steps + 1, lam.shape[0], dtype=torch.float64, device=lam.device)
    for s in range(lam.shape[0]):  # (K + 1, n) per member: bounded memory for long horizons
        # the residual's mode i is (1 − ηλ_i)^k = 1 + h_i(k) times its start: the kernel prediction's own factor
        decay = 1.0 + residual_factor(lam[s].clamp_min(0.0), float(eta[s]), k, "gd")  # (K + 1, n)
        out[:, s] = 0.5 * (decay.pow(2) * c[s]).sum(dim=1)
    out = out.numpy()
    return out[:, 0] if torch.as_tensor(G0).ndim == 2 else out


def kernel_steps_to(G0: torch.Tensor, residual0: torch.Tensor, lr: float | np.ndarray | torch.Tensor,
                    fraction: float, max_steps: int = 10**7) -> np.ndarray:
    """The first step k with L̂_k ≤ fraction · L̂_0 (:func:`kernel_loss_prediction`), per member.

    The horizon this sets comes from the kernel's own spectrum and the labels' projections on it: with
    η = 1/λ_max, a mode of eigenvalue λ loses a factor (1 − λ/λ_max)² per step, so the horizon grows like the
    condition number λ_max/λ_min when the slowest modes carry label mass. Found by doubling and bisection (L̂ is
    non-increasing when 0 ≤ ηλ_i ≤ 2).

    Args:
        G0, residual0, lr: as :func:`kernel_loss_prediction`.
        fraction: in (0, 1).
        max_steps: search limit.

    Returns:
        int array (S,) (a 0-d array for one matrix); −1 where L̂ is still above the fraction at ``max_steps``.
    """
    require(isinstance(fraction, (int, float)) and 0.0 < fraction < 1.0, "fraction", "must be in (0, 1)", fraction)
    max_steps = positive_int(max_steps, "max_steps")
    lam, c = _eigen_projections(G0, residual0)
    eta = _lr_per_member(lr, lam.shape[0])
    log_q = torch.log((1.0 - eta[:, None] * lam).pow(2))  # −inf for a mode killed in one step: 0^k = 0 for k ≥ 1
    out = np.full(lam.shape[0], -1, dtype=np.int64)
    for s in range(lam.shape[0]):
        target = fraction * float(c[s].sum())

        def above(k: int, s: int = s, target: float = target) -> bool:
            return float((c[s] * torch.exp(k * log_q[s])).sum()) > target

        if not above(max_steps):
            lo, hi = 0, 1  # L̂_lo > target ≥ L̂_hi after the doubling
            while above(hi):
                lo, hi = hi, min(2 * hi, max_steps)
            while hi - lo > 1:
                mid = (lo + hi) // 2
                lo, hi = (mid, hi) if above(mid) else (lo, mid)
            out[s] = hi
    return out[0] if torch.as_tensor(G0).ndim == 2 else out


def kernel_deviation(losses: np.ndarray, predicted: np.ndarray) -> np.ndarray:
    """max_k |√L_k − √L̂_k| / √L_0: how far a run's loss curve strays from its kernel prediction.

    √(2L) = ‖u − y‖, so this is the largest gap between the measured and predicted residual norms, in units of
    the initial one (≤ max_k ‖r(k) − r̂(k)‖/‖r(0)‖, the quantity linearisation theorems bound by O(m^(−1/2))).
    Scale-free, and the gap late in a run is bounded by the residuals themselves, so round-off at tiny losses
    cannot dominate it.

    Args:
        losses: (K + 1,) or (K + 1, S) measured losses; predicted: the same shape (:func:`kernel_loss_prediction`).

    Returns:
        (S,) (a float for 1-d input); ``inf`` for a member whose loss became non-finite (diverged).

    Examples:
        >>> # residual norms √L: measured 1.414, 0.707, 0.141 against predicted 1.414, 0.849, 0: gaps 0, 0.141, 0.141
        >>> round(kernel_deviation(np.array([2.0, 0.5, 0.02]), np.array([2.0, 0.72, 0.0])), 6)   # 0.141 / 1.414
        0.1
    """
    L = np.asarray(losses, dtype=np.float64)
    P = np.asarray(predicted, dtype=np.float64)
    if L.shape != P.shape:
        raise ZerolossInputError(f"predicted: must have the shape of losses {L.shape}, got {P.shape}")
    one = L.ndim == 1
    L, P = (L[:, None], P[:, None]) if one else (L, P)
    gap = np.abs(np.sqrt(np.clip(L, 0.0, None)) - np.sqrt(np.clip(P, 0.0, None))).max(axis=0) / np.sqrt(L[0])
    gap = np.where(np.isfinite(L).all(axis=0), gap, np.inf)
    return float(gap[0]) if one else gap
