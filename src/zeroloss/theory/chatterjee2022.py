"""Chatterjee's local Polyak–Łojasiewicz criterion (MATH §2): certificates, estimates, trajectory check, corollary.

For F(w) = Σ_i (f(x_i; w) − y_i)² (note: F = 2L, L the ½-loss :func:`zeroloss.train_gd` minimises),

    α(w₀, r) = inf { ‖∇F(w)‖²/F(w) : w ∈ B(w₀, r), F(w) ≠ 0 },     criterion  4F(w₀) < r² α(w₀, r).

Then gradient flow stays in B(w₀, r) and F(w(t)) ≤ e^{−αt}F(w₀); gradient descent with step
η ≤ min(1/β, 2(1 − √ρ)/β), ρ = 4F(w₀)/(r²α), β ≥ ‖∇²F‖ on B(w₀, 2r), contracts F by 1 − ηα/2 per step and stays
in the ball ([derived], MATH §2.1). :func:`certify` says plainly what is proven and what is estimated:

- **proven**: the first-layer lower bound on α (MATH §2.3, [derived]; :mod:`.chatterjee_bounds`) for a
  :class:`~zeroloss.nets.FeedForward` whose hidden and output weights exceed r (the positive initialisation), and
  the verdict 4F(w₀) < r²α_lb;
- **estimated**: α by sampling and descent in the ball, β by Lanczos on Hessian-vector products
  (:mod:`.chatterjee_estimates`), hence the step size (β is always an estimate).

References:
    S. Chatterjee. Convergence of gradient descent for deep neural networks. arXiv:2203.16462 (2022).

Example:
    >>> from zeroloss.nets import FeedForward
    >>> from zeroloss.init import initialise
    >>> from zeroloss.data import sphere_data
    >>> X, y = sphere_data(n=4, d=8, seed=0)
    >>> net = FeedForward(d=8, widths=[8, 8], activation="tanh", dtype=torch.float64, init=None)
    >>> _ = initialise(net, "positive", X=X, y=y, radius=0.05)
    >>> cert = certify(net, X, y, radius=0.05, samples=8, descent_starts=2, descent_steps=5)
    >>> cert.certified, cert.alpha_lower_bound <= cert.alpha_estimate
    (True, True)
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np
import torch
from scipy import stats

from zeroloss.errors import ZerolossInputError, choice, positive_int, require
from zeroloss.nets.base import EnsembleNet
from zeroloss.nets.feedforward import FeedForward
from zeroloss.theory.chatterjee_bounds import check_certificate_assumptions, first_layer_bound, input_spectrum
from zeroloss.theory.chatterjee_estimates import (
    MemberObjective,
    allowed_step,
    estimate_alpha,
    estimate_beta,
)
from zeroloss.train.gd import GDRun, train_gd


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
        samples, descent_starts, descent_steps: α estimate (see :func:`~.chatterjee_estimates.estimate_alpha`).
        beta: estimate β (Lanczos) and the step size; False skips both.
        beta_points, lanczos_steps: β estimate (see :func:`~.chatterjee_estimates.estimate_beta`).
        seed: seed of the sampling.

    Raises:
        ZerolossInputError: bad radius or member; with ``certificate``: σ not smooth and strictly increasing,
            or inputs not linearly independent (λ_min(XXᵀ) reported).
    """
    require(isinstance(radius, (int, float)) and math.isfinite(radius) and radius > 0, "radius",
            "must be a positive number", radius)
    radius = float(radius)
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
    """After a GD run: did it stay in B(w₀, r), and was every step's contraction at most 1 − ηα/2?

    Attributes:
        radius: r.
        max_distance: max ‖w_k − w₀‖ over the probed steps (``probed_steps`` of them).
        stayed_in_ball: max_distance < r.
        step_size: η of GD on F (= train_gd's lr / 2).
        alpha: the α used for the rate (certified bound when certified, else the estimate: ``alpha_basis``).
        predicted_rate: 1 − ηα/2.
        worst_ratio: max_k F(w_{k+1})/F(w_k) over steps with F(w_k) ≥ F_FLOOR·F(w₀).
        mean_ratio: geometric mean of the same ratios.
        rate_ok: worst_ratio ≤ predicted_rate.
        steps_checked: number of ratios checked.
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


def distances(run: GDRun, member: int = 0) -> np.ndarray:
    """‖w_k − w₀‖ at the probed steps of a run with the ``movement`` probe on a net without a ``width`` scaling
    (FeedForward: each ``movement_<param>`` is the raw Frobenius norm), as (steps, 2) [step, distance]."""
    hist = run.history
    sub = hist[(hist["member"] == member) & hist["metric"].str.startswith("movement_")]
    if sub.empty:
        raise ZerolossInputError("run: has no movement history; train with probes including 'movement'")
    if getattr(run.net, "width", None) is not None:
        raise ZerolossInputError("run: distances need raw movements (a net without a width scaling, e.g. FeedForward)")
    total = sub.assign(sq=sub["value"] ** 2).groupby("step")["sq"].sum()
    return np.stack([total.index.to_numpy(dtype=float), np.sqrt(total.to_numpy())], axis=1)


def trajectory_check(run: GDRun, cert: Certificate, member: int = 0) -> TrajectoryCheck:
    """Compare a run with the certificate: distance from w₀ vs r, per-step F ratio vs 1 − ηα/2.

    The run's step η on F is ``run.lr[member] / 2`` (train_gd minimises L = F/2); ratios of L equal ratios of F.
    Ratios are checked while F(w_k) ≥ F_FLOOR·F(w₀) (below, round-off dominates: see ``F_FLOOR``).
    """
    from zeroloss.theory.chatterjee_estimates import F_FLOOR

    dist = distances(run, member)
    eta = float(run.lr[member]) / 2.0
    alpha = cert.alpha_lower_bound if cert.certified else cert.alpha_estimate
    basis = "certified lower bound" if cert.certified else "estimate (no proof)"
    losses = run.losses[:, member]
    losses = losses[np.isfinite(losses)]
    keep = losses[:-1] >= F_FLOOR * losses[0]
    ratios = (losses[1:] / losses[:-1])[keep]
    predicted = None if alpha is None or not math.isfinite(alpha) else 1.0 - eta * alpha / 2.0
    worst = float(ratios.max()) if ratios.size else math.nan
    mean = float(np.exp(np.log(ratios).mean())) if ratios.size else math.nan
    far = float(dist[:, 1].max())
    rate_ok = None if predicted is None or not ratios.size else worst <= predicted
    return TrajectoryCheck(
        radius=cert.radius, max_distance=far, stayed_in_ball=far < cert.radius, probed_steps=len(dist),
        step_size=eta, alpha=alpha, alpha_basis=basis, predicted_rate=predicted, worst_ratio=worst,
        mean_ratio=mean, rate_ok=rate_ok, steps_checked=int(ratios.size),
    )


def run_certified_gd(net: FeedForward, X: torch.Tensor, y: torch.Tensor, cert: Certificate, steps: int,
                     target: float = 1e-6) -> tuple[GDRun, TrajectoryCheck]:
    """GD from a single-member net at the certificate's step (train_gd lr = 2η), distance probed every step,
    stopped once F ≤ target·F(w₀); returns the run and its :class:`TrajectoryCheck`."""
    require(net.members == 1, "net", "must have one member (use net.member(k))", net.members)
    require(cert.lr is not None, "cert", "must allow a step (the criterion holds)", cert.step_basis)
    run = train_gd(net, X, y, lr=cert.lr, steps=steps, probe_every=1, target_loss=target * cert.f0 / 2.0,
                   probes=["loss", "movement"], progress=False)
    return run, trajectory_check(run, cert)


def binomial_interval(successes: int, trials: int, confidence: float = 0.95,
                      method: str = "wilson") -> tuple[float, float]:
    """Confidence interval for a binomial proportion: ``wilson`` (score) or ``clopper-pearson`` (exact).

    Example:
        >>> lo, hi = binomial_interval(0, 20)
        >>> lo, round(hi, 4)
        (0.0, 0.1611)
    """
    positive_int(trials, "trials")
    require(0 <= successes <= trials, "successes", f"must be in 0..{trials}", successes)
    require(0.0 < confidence < 1.0, "confidence", "must be in (0, 1)", confidence)
    choice(method, "method", ("wilson", "clopper-pearson"))
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
    return max(0.0, center - half), min(1.0, center + half)


@dataclass
class CriterionProbability:
    """Monte Carlo estimate of μ{w₀ : some r in the grid satisfies 4F(w₀) < r²α(w₀, r)} (MATH §2.1 corollary).

    ``basis`` says whether each success was proven (certified) or estimated (α estimate: an upper bound on α, so
    an estimated success is optimistic). ``low``, ``high``: the confidence interval for the proportion.
    """

    law: str
    successes: int
    trials: int
    estimate: float
    low: float
    high: float
    confidence: float
    method: str
    radii: list[float]
    basis: str


def criterion_probability(
    law: str, X: torch.Tensor, y: torch.Tensor, widths: list[int], activation: str = "tanh",
    radii: list[float] | tuple[float, ...] = (0.1, 0.3, 1.0), trials: int = 32, seed: int = 0,
    confidence: float = 0.95, method: str = "wilson", init_options: dict | None = None,
    samples: int = 16, descent_starts: int = 2, descent_steps: int = 20,
) -> CriterionProbability:
    """Estimate the probability that an initialisation law satisfies the criterion for some r in ``radii``.

    Trial k is member k of one FeedForward initialised with ``law`` (seed + k). A trial succeeds when some radius
    is certified (proof) or, where nothing is proven, when the *estimated* criterion holds.

    Example:
        >>> from zeroloss.data import sphere_data
        >>> X, y = sphere_data(n=4, d=8, seed=0)
        >>> res = criterion_probability("gaussian", X, y, widths=[8], trials=4, radii=[0.1], samples=4,
        ...                             descent_starts=0)
        >>> 0.0 <= res.low <= res.estimate <= res.high <= 1.0
        True
    """
    from zeroloss.init import initialise

    positive_int(trials, "trials")
    radii = [float(r) for r in radii]
    require(bool(radii) and all(r > 0 for r in radii), "radii", "must be a non-empty list of positive numbers", radii)
    X = torch.as_tensor(X, dtype=torch.float64)
    net = FeedForward(X.shape[1], widths, activation, trials, seed, torch.float64, init=None)
    initialise(net, law, **(init_options or {}))
    proven = estimated = 0
    for k in range(trials):
        certs = [certify(net, X, y, r, member=k, samples=samples, descent_starts=descent_starts,
                         descent_steps=descent_steps, beta=False, seed=seed + k) for r in radii]
        if any(c.certified for c in certs):
            proven += 1
        elif any(c.criterion_estimated for c in certs):
            estimated += 1
    successes = proven + estimated
    lo, hi = binomial_interval(successes, trials, confidence, method)
    basis = (f"{proven} proven (certified), {estimated} estimated (α estimate, optimistic), "
             f"{trials - successes} failed")
    return CriterionProbability(law, successes, trials, successes / trials, lo, hi, confidence, method, radii, basis)
