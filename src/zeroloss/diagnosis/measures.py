"""What :func:`zeroloss.diagnose` measures along a run, for any ``nn.Module`` (docs/theory.md §1.3, §1.5, §2.1).

- :func:`kernel_matrix` — the empirical NTK Θ(X, X) of :func:`zeroloss.entk` as one (N, N) float64 matrix,
  N = n·k (a k-output model's full kernel, sample-major), so that GD on ½‖f − y‖² moves the outputs by −ηΘr.
- :func:`movement` — relative parameter movement ‖θ_t − θ₀‖/‖θ₀‖ per module and in total.
- :func:`rate_statistics` — the measured per-step contraction of the residual norm against the kernel's.
- :class:`ModuleObjective` + :func:`estimate_alpha_module` — Chatterjee's α(w₀, r) estimated on a ball for any
  model, reusing the sampler and projected descent of :mod:`zeroloss.pl_estimates`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn
from torch.func import functional_call

from zeroloss.pl_estimates import AlphaEstimate, FlatObjective, estimate_alpha
from zeroloss.precision import no_tf32

#: Movement row of the total over every trainable parameter.
ALL_MODULES = "(all)"


def kernel_matrix(model: nn.Module, X: torch.Tensor, names: list[str], outputs: int,
                  X2: torch.Tensor | None = None) -> torch.Tensor:
    """Θ(X, X2) (default X2 = X) over the parameters ``names``, float64: (n, n2) for one output, else the full
    kernel flattened sample-major to (n·k, n2·k) (row i·k + a)."""
    from zeroloss.ntk.entk import entk

    if outputs == 1:
        return entk(model, X, X2, params=names, dtype=torch.float64)
    K = entk(model, X, X2, params=names, outputs="full", dtype=torch.float64)
    a, b, k, _ = K.shape
    return K.permute(0, 2, 1, 3).reshape(a * k, b * k)


def owner(name: str) -> str:
    """The module owning a parameter: ``"layers.0.weight"`` → ``"layers.0"``; the root module is ``"(root)"``."""
    head = name.rpartition(".")[0]
    return head or "(root)"


def module_groups(names: list[str]) -> dict[str, list[str]]:
    """Module name → its trainable parameter names (model order)."""
    groups: dict[str, list[str]] = {}
    for k in names:
        groups.setdefault(owner(k), []).append(k)
    return groups


def movement(current: dict[str, torch.Tensor], initial: dict[str, torch.Tensor],
             groups: dict[str, list[str]]) -> tuple[dict[str, float], float]:
    """(module → ‖θ_t − θ₀‖/‖θ₀‖ including :data:`ALL_MODULES`, total distance ‖θ_t − θ₀‖).

    A module whose θ₀ is exactly zero (a zero-initialised bias) has no relative scale: its value is inf once it
    moves (0 while it has not).
    """
    out: dict[str, float] = {}
    total_d2 = total_n2 = 0.0
    for mod, keys in groups.items():
        d2 = sum(float((current[k].detach().double() - initial[k].double()).pow(2).sum()) for k in keys)
        n2 = sum(float(initial[k].double().pow(2).sum()) for k in keys)
        total_d2, total_n2 = total_d2 + d2, total_n2 + n2
        out[mod] = math.sqrt(d2 / n2) if n2 > 0 else (0.0 if d2 == 0 else math.inf)
    out[ALL_MODULES] = math.sqrt(total_d2 / total_n2) if total_n2 > 0 else (0.0 if total_d2 == 0 else math.inf)
    return out, math.sqrt(total_d2)


@dataclass
class RateStatistics:
    """Per-step contraction of the residual norm ρ_k = ‖r_{k+1}‖/‖r_k‖ = √(L(k+1)/L(k)).

    Attributes:
        bound: 1 − ηλ_min(Θ₀), the kernel's slowest-mode factor: the linearised GD residual contracts at least this
            fast per step when ηλ_max ≤ 2 − ηλ_min (Du et al.'s L(k) ≤ (1 − ηλ₀/2)^k L(0) is the same statement with
            λ_min(Θ_k) ≥ λ₀/2 along the run, docs/theory.md §1.5).
        measured: geometric mean of ρ_k over the second half of the usable steps of the real model (the tail rate).
        predicted: the same over the same steps of the closed-form (kernel) prediction.
        worst: max_k ρ_k of the real model over the usable steps.
        steps_used: usable steps (both losses finite and above the floor, see :func:`rate_statistics`).
    """

    bound: float
    measured: float
    predicted: float
    worst: float
    steps_used: int


def usable_steps(L: np.ndarray, floor: float) -> int:
    """Number K of leading steps with L(0..K) finite and L(k) > floor·L(0) (the first unusable one ends it)."""
    ok = np.isfinite(L) & (L > floor * L[0]) & (L > 0)
    return int(np.argmin(ok)) if not ok.all() else len(L)


def rate_statistics(real: np.ndarray, predicted: np.ndarray | None, lr: float, lambda_min0: float,
                    floor: float) -> RateStatistics:
    """Tail contraction rates of the real and the predicted loss curves (each (steps + 1,)) and the bound.

    Steps are used while both curves are finite and above ``floor``·L(0): below (10⁴·eps)² L(0) the residual is
    within 10⁴ round-offs of the outputs and a ratio of losses would measure round-off, not the dynamics (the floor
    of :func:`zeroloss.compare_contraction`).
    """
    K = usable_steps(real, floor)
    if predicted is not None:
        K = min(K, usable_steps(predicted, floor))
    K -= 1  # ratios need k and k + 1
    bound = 1.0 - lr * lambda_min0
    if K < 2:
        return RateStatistics(bound, math.nan, math.nan, math.nan, max(K, 0))
    half = K // 2

    def tail(L: np.ndarray) -> float:
        return float(math.sqrt(L[K] / L[half]) ** (1.0 / (K - half)))

    ratios = np.sqrt(real[1: K + 1] / real[:K])
    pred = tail(predicted) if predicted is not None else math.nan
    return RateStatistics(bound, tail(real), pred, float(ratios.max()), K)


class ModuleObjective(FlatObjective):
    """F(w) = Σ_i ‖f(x_i; w) − y_i‖² (= 2L) of an ``nn.Module`` as a function of a flat float64 vector.

    A :class:`zeroloss.pl_estimates.FlatObjective` like ``MemberObjective`` (``w0``, ``value``; the
    gradient from the base class), so :func:`~zeroloss.pl_estimates.estimate_alpha` runs on any
    model. Points are evaluated one at a time through ``torch.func.functional_call`` (robust for every layer type;
    the point counts are small).

    Args:
        model: the model (its parameters ``names`` are the variables; everything else is held fixed).
        names: trainable parameter names.
        X: inputs; Y: (n, k) targets.
        w0: the parameters at which the ball is centred (default: the model's current ones).
    """

    def __init__(self, model: nn.Module, names: list[str], X: torch.Tensor, Y: torch.Tensor,
                 w0: dict[str, torch.Tensor] | None = None) -> None:
        named = dict(model.named_parameters())
        source = w0 if w0 is not None else {k: named[k].detach() for k in names}
        self.model, self.names, self.X, self.Y = model, names, X, Y.reshape(X.shape[0], -1)
        self.dtype = named[names[0]].dtype
        self.shapes = [tuple(source[k].shape) for k in names]
        self.sizes = [source[k].numel() for k in names]
        self.w0 = torch.cat([source[k].detach().reshape(-1).to(torch.float64) for k in names])

    def _one(self, w: torch.Tensor) -> torch.Tensor:
        parts = torch.split(w.to(self.dtype), self.sizes)
        params = {k: p.reshape(s) for k, p, s in zip(self.names, parts, self.shapes, strict=True)}
        out = functional_call(self.model, params, (self.X,)).reshape(self.Y.shape)
        return (out - self.Y).pow(2).sum().to(torch.float64)

    def value(self, W: torch.Tensor) -> torch.Tensor:
        """F at each row of W (N, p): (N,)."""
        return torch.stack([self._one(w) for w in W])



@dataclass
class AlphaSummary:
    """Chatterjee's α(w₀, r) on the ball the run stayed in — an *estimate* (every value found is attained in the
    ball, so each is an upper bound on the infimum).

    Attributes:
        radius: r = the largest distance ‖θ_t − θ₀‖ the real run reached at a probe.
        estimate: min of ``sampled``, ``descent`` and ``trajectory``.
        sampled, descent: from :func:`~zeroloss.pl_estimates.estimate_alpha` (sampling the ball and
            projected descent on ‖∇F‖²/F); ``descent`` is inf when double backward is not available.
        trajectory: 4·min_t ‖∇L‖²/(2L) over the run's probes (‖∇F‖²/F = 4‖∇L‖²/(2L) with F = 2L): the run's own
            points lie in the ball too.
        criterion: 4F(w₀) < r²α with the estimate (Chatterjee's local PL criterion, docs/theory.md §2.1) — an
            estimate as well: α is over-estimated, so a True here is not a certificate.
    """

    radius: float
    estimate: float
    sampled: float
    descent: float
    trajectory: float
    criterion: bool


def estimate_alpha_module(obj: ModuleObjective, radius: float, trajectory_pl: float, samples: int, starts: int,
                          steps: int, seed: int) -> AlphaSummary:
    """Estimate α(w₀, r) for any model: ball sampling + projected descent (falls back to sampling alone when the
    model does not support double backward), and the run's trajectory; see :class:`AlphaSummary`."""
    with no_tf32():
        f0 = float(obj.value(obj.w0.unsqueeze(0))[0])
    trajectory = 4.0 * trajectory_pl
    if not radius > 0 or not math.isfinite(radius):
        return AlphaSummary(radius, trajectory, math.inf, math.inf, trajectory, False)
    try:
        est: AlphaEstimate = estimate_alpha(obj, radius, samples=samples, starts=starts, steps=steps,  # type: ignore
                                            seed=seed)
        sampled, descent = est.sampled, est.descent
    except RuntimeError:  # no double backward for some layer: sampling only
        est = estimate_alpha(obj, radius, samples=samples, starts=0, steps=0, seed=seed)  # type: ignore[arg-type]
        sampled, descent = est.sampled, math.inf
    value = min(sampled, descent, trajectory)
    return AlphaSummary(radius, value, sampled, descent, trajectory, bool(4.0 * f0 < radius**2 * value))
