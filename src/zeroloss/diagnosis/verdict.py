"""The verdict of :func:`zeroloss.diagnose`, in numbers: is the run lazy (kernel regime), and does it train at the
kernel's rate?

Lazy (Chizat, Oyallon & Bach 2019; Lee et al. 2019): the network moves like its linearisation f_lin, so the
empirical NTK at initialisation predicts the run. Three measured quantities, each against a stated threshold:

- **gap** = max_t ‖f(X; θ_t) − f_lin(X; θ_t^lin)‖ / ‖f(X; θ₀) − y‖ ≤ :data:`GAP_MAX` — the real and the linearised
  model, trained side by side, stay within 10 % of the distance the outputs have to travel. This is the definition
  of laziness itself (the real run is explained by the linear one); 10 % is the lab's line: a larger gap means the
  kernel prediction misses a visible part of the trajectory.
- **drift** = max_t ‖Θ_t − Θ₀‖_F / ‖Θ₀‖_F ≤ :data:`DRIFT_MAX` — the kernel that drives the dynamics stays within
  10 % of the one the prediction uses (the NTK regime is the one where Θ_t ≈ Θ₀). 10 % is a lab choice of the same
  scale as the gap's. The condition of Du et al.'s analysis, stated for Θ₀ — ‖Θ_t − Θ₀‖₂ ≤ λ_min(Θ₀)/2, which by
  Weyl's inequality keeps λ_min(Θ_t) ≥ λ_min(Θ₀)/2 and the rate 1 − ηλ₀/2 (Du et al. spend λ₀/4 on Θ₀ → K^(H) and
  λ₀/4 on Θ_t → Θ₀) — is reported beside it as ``du_condition``: it is much stricter when Θ₀ is ill-conditioned
  (a width-1024 tanh net with PyTorch's default initialisation on 16 points in d = 8 fails it with a gap of
  5·10⁻⁴: its λ_max/λ_min(Θ₀) is 2·10⁴), so it is not used for the verdict.
- **movement** = max_t ‖θ_t − θ₀‖ / ‖θ₀‖ ≤ :data:`MOVEMENT_MAX` — the parameters stay within half their own initial
  norm. Deliberately loose: in the NTK parametrisation a lazy net may travel a long way in total (about
  ‖r₀‖/√λ_min(Θ₀) for an ill-conditioned kernel) while each neuron moves O(m^{−1/2}); a relative movement of order
  1 means the initialisation no longer describes the network at all.

Rate (docs/theory.md §1.5): the measured tail contraction of the residual norm per step against the kernel
prediction's over the same steps (:class:`~zeroloss.diagnosis.measures.RateStatistics`); they *match* when the
exponents agree within :data:`RATE_TOLERANCE` (|log ρ_real − log ρ_kernel| ≤ 0.1·|log ρ_kernel|): 10 % of the
exponent is the step-count error one would accept when predicting "how many steps to reach ε". Only for
``optimizer="gd"`` (the prediction is for plain GD).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field

#: Threshold on the relative real-vs-linearised gap (module docstring).
GAP_MAX = 0.1
#: Threshold on the relative eNTK drift (module docstring).
DRIFT_MAX = 0.1
#: Threshold on the relative parameter movement (module docstring).
MOVEMENT_MAX = 0.5
#: Relative tolerance on the log of the per-step contraction (module docstring).
RATE_TOLERANCE = 0.1


@dataclass
class Verdict:
    """Lazy or not, and the measured rate against the kernel's, with every number the decision rests on.

    Attributes:
        lazy: gap ≤ GAP_MAX and drift ≤ DRIFT_MAX and movement ≤ MOVEMENT_MAX, and neither model diverged.
        gap, drift, movement: the three maxima over the run (see the module docstring); NaN when not measured.
        loss_gap: max_t |L_real − L_lin| / L(0).
        test_gap: max_t ‖f − f_lin‖/‖f₀ − y‖ on the test inputs (NaN without them).
        du_condition: max_t ‖Θ_t − Θ₀‖₂ ≤ λ_min(Θ₀)/2 (the condition of Du et al.'s analysis, module docstring).
        rate_matches: whether the measured tail rate matches the kernel prediction's (None: not applicable).
        rate_measured, rate_predicted, rate_bound: per-step residual contraction, real, predicted, 1 − ηλ_min(Θ₀).
        lr, lr_edge: the step and the stability edge 2/λ_max(Θ₀).
        lambda_min0, lambda_max0: extreme eigenvalues of Θ₀ (float64).
        diverged_real, diverged_linear: the step at which that model diverged, or None.
        alpha: Chatterjee's α(w₀, r) estimate (NaN when not estimated); alpha_radius: its r; alpha_criterion:
            4F(w₀) < r²α with the estimate.
        reasons: why the run is not lazy / the rate does not match (empty when lazy and matching).
    """

    lazy: bool
    gap: float
    drift: float
    movement: float
    loss_gap: float
    test_gap: float
    du_condition: bool
    rate_matches: bool | None
    rate_measured: float
    rate_predicted: float
    rate_bound: float
    lr: float
    lr_edge: float
    lambda_min0: float
    lambda_max0: float
    diverged_real: int | None
    diverged_linear: int | None
    alpha: float = math.nan
    alpha_radius: float = math.nan
    alpha_criterion: bool | None = None
    reasons: list[str] = field(default_factory=list)

    def summary(self) -> dict[str, object]:
        """Flat dict of the numbers (JSON-able; ``reasons`` joined by "; ")."""
        out = asdict(self)
        out["reasons"] = "; ".join(self.reasons)
        return out

    def __str__(self) -> str:
        def num(x: float) -> str:
            return "n/a" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{x:.4g}"

        def yes(flag: bool | None) -> str:
            return "n/a" if flag is None else ("YES" if flag else "NO")

        lines = [
            f"lazy (kernel) regime: {yes(self.lazy)}",
            f"  real vs linearised gap {num(self.gap):>10}  (lazy if <= {GAP_MAX})  max_t |f - f_lin| / |f0 - y|",
            f"  eNTK drift             {num(self.drift):>10}  (lazy if <= {DRIFT_MAX})  max_t |K_t - K_0|_F / |K_0|_F",
            f"  parameter movement     {num(self.movement):>10}  (lazy if <= {MOVEMENT_MAX})  "
            "max_t |w_t - w_0| / |w_0|",
            f"  loss gap               {num(self.loss_gap):>10}  max_t |L - L_lin| / L(0)",
        ]
        if not math.isnan(self.test_gap):
            lines.append(f"  test gap               {num(self.test_gap):>10}  "
                         "max_t rms(f - f_lin) on X_test / rms(f0 - y) on X")
        lines += [
            f"  Du's condition |K_t - K_0|_2 <= lambda_min(K_0)/2: {yes(self.du_condition)}",
            f"rate matches the kernel: {yes(self.rate_matches)}  (per-step residual contraction: measured "
            f"{num(self.rate_measured)}, kernel {num(self.rate_predicted)}, bound 1 - lr*lambda_min(K_0) = "
            f"{num(self.rate_bound)})",
            f"  lr {num(self.lr)} (stability edge 2/lambda_max(K_0) = {num(self.lr_edge)}); "
            f"lambda_min(K_0) {num(self.lambda_min0)}, lambda_max(K_0) {num(self.lambda_max0)}  (K = empirical NTK)",
        ]
        if not math.isnan(self.alpha):
            lines.append(f"  Chatterjee alpha(w0, r) estimate {num(self.alpha)} on r = {num(self.alpha_radius)}; "
                         f"criterion 4F(w0) < r^2 alpha (estimated): {yes(self.alpha_criterion)}")
        for which, at in (("real model", self.diverged_real), ("linearised model", self.diverged_linear)):
            if at is not None:
                lines.append(f"  the {which} diverged at step {at}")
        if self.reasons:
            lines.append("  because: " + "; ".join(self.reasons))
        return "\n".join(lines)


def decide(gap: float, drift: float, movement: float, diverged_real: int | None, diverged_linear: int | None,
           rate_measured: float, rate_predicted: float, applicable: bool) -> tuple[bool, bool | None, list[str]]:
    """(lazy, rate_matches, reasons) from the measured numbers and the thresholds of this module."""
    reasons = []
    for name, value, limit in (("gap", gap, GAP_MAX), ("drift", drift, DRIFT_MAX),
                               ("movement", movement, MOVEMENT_MAX)):
        if not value <= limit:  # NaN counts as a failure: the quantity could not be measured
            reasons.append(f"{name} {value:.3g} > {limit}" if not math.isnan(value) else f"{name} not measured")
    if diverged_real is not None:
        reasons.append(f"the real model diverged at step {diverged_real}")
    if diverged_linear is not None:
        reasons.append(f"the linearised model diverged at step {diverged_linear}")
    lazy = not reasons
    rate_matches: bool | None = None
    if applicable and all(0 < r < 1 for r in (rate_measured, rate_predicted)):
        lm, lp = math.log(rate_measured), math.log(rate_predicted)
        rate_matches = abs(lm - lp) <= RATE_TOLERANCE * abs(lp)
        if not rate_matches:
            reasons.append(f"tail rate {rate_measured:.4g}/step vs the kernel's {rate_predicted:.4g}")
    elif applicable:
        reasons.append("rate not comparable (a loss curve did not decrease over enough usable steps)")
    return lazy, rate_matches, reasons
