"""Chatterjee's local Polyak–Łojasiewicz criterion (docs/theory.md §2): certificate, trajectory check, corollary.

For F(w) = Σ_i (f(x_i; w) − y_i)² (note: F = 2L, L the ½-loss :func:`zeroloss.train_gd` minimises),

    α(w₀, r) = inf { ‖∇F(w)‖²/F(w) : w ∈ B(w₀, r), F(w) ≠ 0 },     criterion  4F(w₀) < r² α(w₀, r).

Then gradient flow stays in B(w₀, r) and F(w(t)) ≤ e^{−αt}F(w₀); gradient descent with step
η ≤ min(1/β, 2(1 − √ρ)/β), ρ = 4F(w₀)/(r²α), β ≥ ‖∇²F‖ on B(w₀, 2r), contracts F by 1 − ηα/2 per step and stays
in the ball ([derived], docs/theory.md §2.1). :func:`certify` says plainly what is proven and what is estimated:

- **proven**: the first-layer lower bound on α (docs/theory.md §2.3, [derived];
  :mod:`~zeroloss.papers.chatterjee2022.bounds`) for a :class:`~zeroloss.nets.FeedForward` whose hidden and output
  weights exceed r (the positive initialisation), and
  the verdict 4F(w₀) < r²α_lb;
- **estimated**: α by sampling and descent in the ball, β by Lanczos on Hessian-vector products
  (:mod:`zeroloss.pl_estimates`), hence the step size (β is always an estimate).

Everything here is a function of a given net and of measured quantities: :func:`trajectory_check` compares a
trajectory that was run elsewhere (losses and distances) with a certificate, and :func:`criterion_probability`
certifies the members of an already initialised ensemble. Nothing in ``theory/`` initialises or trains.

References:
    S. Chatterjee. Convergence of gradient descent for deep neural networks. arXiv:2203.16462 (2022).

Examples:
    >>> from zeroloss.nets import FeedForward
    >>> from zeroloss.papers.chatterjee2022.init import initialise
    >>> from zeroloss.data import sphere_data
    >>> X, y = sphere_data(n=4, d=8, seed=0)
    >>> net = FeedForward(d=8, widths=[8, 8], activation="tanh", dtype=torch.float64, init=None)
    >>> _ = initialise(net, "positive", X=X, y=y, radius=0.05)
    >>> cert = certify(net, X, y, radius=0.05, samples=8, descent_starts=2, descent_steps=5, lanczos_steps=10)
    >>> cert.certified, cert.alpha_lower_bound <= cert.alpha_estimate
    (True, True)
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np
import torch

from zeroloss.errors import choice, positive_int, require
from zeroloss.nets.base import EnsembleNet
from zeroloss.nets.feedforward import FeedForward
from zeroloss.papers.chatterjee2022.bounds import (
    check_certificate_assumptions,
    check_radius,
    first_layer_bound,
    input_spectrum,
)
from zeroloss.pl_estimates import (
    F_FLOOR,
    MemberObjective,
    allowed_step,
    estimate_alpha,
    estimate_beta,
)


def _count(value: object, field: str, minimum: int) -> int:
    """An integer ≥ minimum (bools excluded)."""
    ok = isinstance(value, (int, np.integer)) and not isinstance(value, bool) and value >= minimum
    require(ok, field, f"must be an integer ≥ {minimum}", value)
    return int(value)


@dataclass
class Certificate:
    """The outcome of :func:`certify` for one member at one radius.

    Proven (mathematical, float64 round-off aside):
        alpha_lower_bound: certified α(w₀, r) ≥ this, or None where no bound is proven (see ``reason``).
        certified: 4F(w₀) < r²·alpha_lower_bound.
    Estimated (numerical search; never a proof):
        alpha_estimate: smallest ‖∇F‖²/F found in the ball (an upper bound on the true α).
        alpha_sampled, alpha_descent, alpha_at_w0: its parts.
        criterion_estimated: 4F(w₀) < r²·alpha_estimate (optimistic: α_estimate ≥ α).
        beta_estimate: largest |Hessian eigenvalue| found on B(w₀, 2r) (a lower estimate of the sup).
        step_size: η = min(1/β, 2(1 − √ρ)/β) for GD on F, with α the certified bound when certified, else the
            estimate (``step_basis`` says which); None when ρ ≥ 1. ``lr`` = 2η is the matching
            :func:`zeroloss.train_gd` step (it minimises L = F/2).
    Context: radius, member, f0 = F(w₀) (Chatterjee's F = Σ(u − y)²), lambda_min_xxt, kappa, output_min, reason.
    """

    radius: float
    member: int
    f0: float
    alpha_lower_bound: float | None
    certified: bool
    reason: str
    alpha_estimate: float
    alpha_sampled: float
    alpha_descent: float
    alpha_at_w0: float
    criterion_estimated: bool
    beta_estimate: float | None
    step_size: float | None
    lr: float | None
    rho: float | None
    step_basis: str
    lambda_min_xxt: float
    kappa: float | None = None
    output_min: float | None = None

    def to_dict(self) -> dict:
        """JSON-ready dict (infinities become None)."""
        out = asdict(self)
        return {k: (None if isinstance(v, float) and not math.isfinite(v) else v) for k, v in out.items()}

    def certified_rate(self) -> float | None:
        """1 − ηα_lb/2, the per-step contraction of F the certificate gives at ``step_size`` (None if uncertified)."""
        if not self.certified or self.step_size is None:
            return None
        return 1.0 - self.step_size * self.alpha_lower_bound / 2.0


def certify(
    net: EnsembleNet,
    X: torch.Tensor,
    y: torch.Tensor,
    radius: float,
    member: int = 0,
    certificate: bool = True,
    samples: int = 64,
    descent_starts: int = 8,
    descent_steps: int = 60,
    beta: bool = True,
    beta_points: int = 4,
    lanczos_steps: int = 30,
    seed: int = 0,
) -> Certificate:
    """Check Chatterjee's criterion 4F(w₀) < r²α(w₀, r) for one member: proof where possible, estimates always.

    Args:
        net: any ensemble net; the certified bound exists for :class:`~zeroloss.nets.FeedForward` only.
        X: inputs (n, d), linearly independent for a certificate.
        y: labels (n,) or (S, n).
        radius: r > 0.
        member: which member (default 0).
        certificate: check the theory's assumptions and try the certified bound (raises when they fail);
            False gives estimates only.
        samples, descent_starts, descent_steps: α estimate (see :func:`~zeroloss.pl_estimates.estimate_alpha`).
        beta: estimate β (Lanczos) and the step size; False skips both.
        beta_points, lanczos_steps: β estimate (see :func:`~zeroloss.pl_estimates.estimate_beta`).
        seed: seed of the sampling.

    Raises:
        ZerolossInputError: bad radius or member; with ``certificate``: σ not smooth and strictly increasing,
            or inputs not linearly independent (λ_min(XXᵀ) reported).
    """
    radius = check_radius(radius)
    samples = _count(samples, "samples", 0)
    descent_starts = _count(descent_starts, "descent_starts", 0)
    descent_steps = _count(descent_steps, "descent_steps", 0)
    beta_points = _count(beta_points, "beta_points", 1)
    lanczos_steps = _count(lanczos_steps, "lanczos_steps", 1)
    seed = _count(seed, "seed", 0)
    obj = MemberObjective(net, X, y, member)
    f0 = float(obj.value(obj.w0.unsqueeze(0))[0])
    bound = None
    if certificate:
        lam = check_certificate_assumptions(net.activation, obj.X)  # type: ignore[attr-defined]
        if isinstance(net, FeedForward):
            params = {k: v[0] for k, v in obj.unflatten(obj.w0.unsqueeze(0)).items()}
            bound = first_layer_bound(params, obj.X, radius, net.activation, net.depth, net.bias, lam)
            reason = bound.reason
        else:
            reason = f"no certified bound: the first-layer bound is derived for FeedForward, not {type(net).__name__}"
    else:
        lam = input_spectrum(obj.X)[0]
        reason = "no certificate asked (certificate=False): estimates only"
    alpha_lb = None if bound is None else bound.alpha_lower_bound
    certified = alpha_lb is not None and 4.0 * f0 < radius**2 * alpha_lb
    est = estimate_alpha(obj, radius, samples, descent_starts, descent_steps, seed)
    criterion_estimated = 4.0 * f0 < radius**2 * est.value
    beta_value = step = rho = None
    basis = "not computed (beta=False)"
    if beta:
        beta_value = estimate_beta(obj, radius, beta_points, lanczos_steps, seed).value
        alpha_used = alpha_lb if certified else est.value
        basis = ("certified α lower bound, estimated β" if certified
                 else "estimated α and β (no proof)")
        step, rho = allowed_step(alpha_used, beta_value, f0, radius)
        if step is None:
            basis += "; criterion fails (ρ ≥ 1): no step allowed"
    return Certificate(
        radius=radius, member=member, f0=f0, alpha_lower_bound=alpha_lb, certified=certified, reason=reason,
        alpha_estimate=est.value, alpha_sampled=est.sampled, alpha_descent=est.descent, alpha_at_w0=est.at_w0,
        criterion_estimated=criterion_estimated, beta_estimate=beta_value, step_size=step,
        lr=None if step is None else 2.0 * step, rho=rho, step_basis=basis, lambda_min_xxt=lam,
        kappa=None if bound is None else bound.kappa, output_min=None if bound is None else bound.output_min,
    )


@dataclass
class TrajectoryCheck:
    """A GD trajectory against a certificate: did it stay in B(w₀, r), and was each step's contraction ≤ 1 − ηα/2?

    Attributes:
        radius: r.
        max_distance: max ‖w_k − w₀‖ over the given distances (``probed_steps`` of them).
        stayed_in_ball: max_distance < r.
        probed_steps: how many distances were given.
        step_size: η of GD on F (= train_gd's lr / 2).
        alpha: the α used for the rate (certified bound when certified, else the estimate: ``alpha_basis``).
        alpha_basis: which α.
        predicted_rate: 1 − ηα/2 (None without a finite α).
        worst_ratio: max_k F(w_{k+1})/F(w_k) over steps with F(w_k) ≥ F_FLOOR·F(w₀) (NaN when none).
        mean_ratio: geometric mean of the same ratios.
        rate_ok: worst_ratio ≤ predicted_rate (None when there is nothing to compare).
        steps_checked: number of ratios checked.
        diverged: the losses turned non-finite (the ratios stop there).
    """

    radius: float
    max_distance: float
    stayed_in_ball: bool
    probed_steps: int
    step_size: float
    alpha: float | None
    alpha_basis: str
    predicted_rate: float | None
    worst_ratio: float
    mean_ratio: float
    rate_ok: bool | None
    steps_checked: int
    diverged: bool = False


def trajectory_check(cert: Certificate, losses: np.ndarray, distances: np.ndarray, lr: float) -> TrajectoryCheck:
    """Compare a measured GD trajectory with a certificate (docs/theory.md §2.1): distance from w₀ against r, and
    every per-step ratio F(w_{k+1})/F(w_k) against 1 − ηα/2. Nothing is trained here.

    Args:
        cert: the :class:`Certificate` of the run's start w₀.
        losses: (K + 1,) the loss at every step 0..K — F = Σ(u − y)² or train_gd's L = F/2 (only ratios are used).
            Values after the first non-finite one are ignored (a diverged run: ``diverged`` is set).
        distances: (K',) ‖w_k − w₀‖ at the probed steps (any subset of 0..K; e.g. from train_gd's ``movement``
            probe on a FeedForward: the square root of the sum of the squared ``movement_<param>`` at a step).
        lr: the run's step in :func:`zeroloss.train_gd`'s convention (it minimises L = F/2, so η on F is lr/2).

    Ratios are checked while F(w_k) ≥ F_FLOOR·F(w₀) (below, round-off dominates: see ``F_FLOOR``).

    Examples:
        >>> import math
        >>> cert = Certificate(radius=1.0, member=0, f0=1.0, alpha_lower_bound=4.0, certified=True, reason="",
        ...                    alpha_estimate=4.0, alpha_sampled=4.0, alpha_descent=4.0, alpha_at_w0=4.0,
        ...                    criterion_estimated=True, beta_estimate=2.0, step_size=0.25, lr=0.5, rho=1.0,
        ...                    step_basis="", lambda_min_xxt=1.0)
        >>> losses = 0.5 ** np.arange(6)          # F halves each step: 1 − ηα/2 = 1 − 0.25·4/2 = 0.5
        >>> check = trajectory_check(cert, losses, distances=[0.0, 0.3, 0.4], lr=0.5)
        >>> check.stayed_in_ball, check.worst_ratio, check.predicted_rate, check.rate_ok
        (True, 0.5, 0.5, True)
    """
    losses = np.asarray(losses, dtype=float).reshape(-1)
    dist = np.asarray(distances, dtype=float).reshape(-1)
    require(losses.size >= 1, "losses", "must hold the loss at step 0 at least", losses.size)
    require(dist.size >= 1 and bool(np.isfinite(dist).all()), "distances", "must be finite, at least one", dist)
    require(isinstance(lr, (int, float, np.floating)) and math.isfinite(lr) and lr > 0, "lr",
            "must be a positive number", lr)
    bad = np.nonzero(~np.isfinite(losses))[0]
    diverged = bool(bad.size)
    if diverged:
        losses = losses[: bad[0]]
    eta = float(lr) / 2.0
    alpha = cert.alpha_lower_bound if cert.certified else cert.alpha_estimate
    basis = "certified lower bound" if cert.certified else "estimate (no proof)"
    if losses.size >= 2:
        keep = losses[:-1] >= F_FLOOR * losses[0]
        ratios = (losses[1:] / losses[:-1])[keep]
    else:
        ratios = np.empty(0)
    predicted = None if alpha is None or not math.isfinite(alpha) else 1.0 - eta * alpha / 2.0
    worst = float(ratios.max()) if ratios.size else math.nan
    mean = float(np.exp(np.log(ratios).mean())) if ratios.size else math.nan
    far = float(dist.max())
    rate_ok = None if predicted is None or not ratios.size else bool(worst <= predicted)
    return TrajectoryCheck(
        radius=cert.radius, max_distance=far, stayed_in_ball=far < cert.radius, probed_steps=int(dist.size),
        step_size=eta, alpha=alpha, alpha_basis=basis, predicted_rate=predicted, worst_ratio=worst,
        mean_ratio=mean, rate_ok=rate_ok, steps_checked=int(ratios.size), diverged=diverged,
    )


def binomial_interval(successes: int, trials: int, confidence: float = 0.95,
                      method: str = "wilson") -> tuple[float, float]:
    """Confidence interval for a binomial proportion: ``wilson`` (score) or ``clopper-pearson`` (exact).

    Examples:
        >>> lo, hi = binomial_interval(0, 20)
        >>> lo, round(hi, 4)
        (0.0, 0.1611)
    """
    positive_int(trials, "trials")
    require(0 <= successes <= trials, "successes", f"must be in 0..{trials}", successes)
    require(0.0 < confidence < 1.0, "confidence", "must be in (0, 1)", confidence)
    choice(method, "method", ("wilson", "clopper-pearson"))
    from scipy import stats  # imported when used: ~0.6 s of a worker's start-up

    a = 1.0 - confidence
    if method == "clopper-pearson":
        lo = 0.0 if successes == 0 else float(stats.beta.ppf(a / 2, successes, trials - successes + 1))
        hi = 1.0 if successes == trials else float(stats.beta.ppf(1 - a / 2, successes + 1, trials - successes))
        return lo, hi
    z = float(stats.norm.ppf(1 - a / 2))
    p = successes / trials
    denom = 1 + z**2 / trials
    center = (p + z**2 / (2 * trials)) / denom
    half = z * math.sqrt(p * (1 - p) / trials + z**2 / (4 * trials**2)) / denom
    # At 0 (or all) successes the Wilson limit is exactly 0 (or 1); computed, it is off by round-off.
    lo = 0.0 if successes == 0 else max(0.0, center - half)
    hi = 1.0 if successes == trials else min(1.0, center + half)
    return lo, hi


@dataclass
class CriterionProbability:
    """Monte Carlo estimate of μ{w₀ : some r in the grid satisfies 4F(w₀) < r²α(w₀, r)} (docs/theory.md §2.1
    corollary: P(linear convergence to zero loss) ≥ that probability).

    Only *certified* trials count towards the bound: an estimated success rests on α_estimate, an upper bound on
    α (a value attained in the ball), so it can be wrong in the optimistic direction and is reported apart.

    Attributes:
        law: the initialisation's name (``net.init_info["init"]``, or ``"unknown"``).
        certified: trials with a proven criterion (4F(w₀) < r²α_lb for some r) — the successes of the bound.
        trials: members tried.
        estimate: certified / trials.
        low, high: the confidence interval for the certified proportion (``low`` is the lower confidence bound the
            corollary can use).
        confidence, method: the interval's level and method.
        estimated: trials where the criterion holds with α_estimate for some r (a superset of the certified
            ones: certified ⇒ 4F < r²α_lb ≤ r²α ≤ r²α_est) — optimistic, *not* a bound, labelled as such.
        radii: the radii tried.
        basis: the counts in words.
    """

    law: str
    certified: int
    trials: int
    estimate: float
    low: float
    high: float
    confidence: float
    method: str
    estimated: int
    radii: list[float]
    basis: str


def criterion_probability(
    net: EnsembleNet, X: torch.Tensor, y: torch.Tensor, radii: list[float] | tuple[float, ...] = (0.1, 0.3, 1.0),
    confidence: float = 0.95, method: str = "wilson", samples: int = 16, descent_starts: int = 2,
    descent_steps: int = 20, seed: int = 0,
) -> CriterionProbability:
    """Estimate the probability that an initialisation law satisfies the criterion for some r in ``radii``.

    Each member of ``net`` (already initialised with the law: member k is the draw with seed + k) is one trial.
    The bound counts certified trials only; trials where only the α *estimate* satisfies the criterion are
    counted apart (``estimated``). Nothing is initialised or trained here.

    Args:
        net: an initialised ensemble (for a certificate, a :class:`~zeroloss.nets.FeedForward`).
        X, y: the data (n, d), (n,).
        radii: the radii tried for each trial.
        confidence, method: the interval (:func:`binomial_interval`).
        samples, descent_starts, descent_steps, seed: the α estimate (:func:`certify`).

    Examples:
        >>> from zeroloss.data import sphere_data
        >>> from zeroloss.nets import FeedForward
        >>> X, y = sphere_data(n=4, d=8, seed=0)
        >>> net = FeedForward(8, [8], "tanh", members=4, dtype=torch.float64, init="lecun")
        >>> res = criterion_probability(net, X, y, radii=[0.1], samples=4, descent_starts=0)
        >>> res.law, res.certified, res.trials, res.low, res.high <= 0.5   # a Gaussian law is never certified
        ('lecun', 0, 4, 0.0, True)
    """
    trials = net.members
    radii = [check_radius(r, "radii") for r in (radii if isinstance(radii, (list, tuple)) else [radii])]
    require(bool(radii), "radii", "must be a non-empty list of positive numbers", radii)
    X = torch.as_tensor(X, dtype=torch.float64)
    proven = estimated = 0
    for k in range(trials):
        certs = [certify(net, X, y, r, member=k, samples=samples, descent_starts=descent_starts,
                         descent_steps=descent_steps, beta=False, seed=seed + k) for r in radii]
        proven += any(c.certified for c in certs)
        estimated += any(c.criterion_estimated for c in certs)
    lo, hi = binomial_interval(proven, trials, confidence, method)
    basis = (f"{proven}/{trials} certified (proven; the bound counts these only); {estimated}/{trials} satisfy the "
             "criterion with the α estimate (optimistic, not a bound)")
    law = str(getattr(net, "init_info", {}).get("init", "unknown"))
    return CriterionProbability(law, proven, trials, proven / trials, lo, hi, confidence, method, estimated, radii,
                                basis)
