"""Activation functions σ with their derivatives, c_σ, and the facts the theorems need.

Each activation is an :class:`Activation` record in the registry :data:`ACTIVATIONS` (a plain dict, name →
record). ``fn``, ``d1`` and ``d2`` are σ, σ′ and σ″ as elementwise torch functions; ``c_sigma`` is Du et al.'s
normalisation ``c_σ = 1 / E_{z∼N(0,1)}[σ(z)²]`` (docs/theory.md §1.1) computed by Gauss–Hermite quadrature.

Facts (used to refuse a theorem's guarantee when its assumptions fail):
- ``smooth``: σ and σ′ are Lipschitz (Du et al.'s assumption; the cubic step qualifies, ReLU does not);
- ``analytic``: σ is real-analytic and not a polynomial (Du et al.'s λ₀ > 0 argument);
- ``strictly_increasing``: σ′ > 0 everywhere (Chatterjee's assumption: tanh, softplus, sigmoid, erf);
- ``sigma0``: σ(0) (Chatterjee's output-bias handling when σ(0) ≠ 0).

Examples:
    >>> from zeroloss.activations import get_activation
    >>> act = get_activation("softplus")
    >>> round(act.c_sigma, 6)
    1.085487
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cached_property

import numpy as np
import torch

from zeroloss.errors import ZerolossInputError

Elementwise = Callable[[torch.Tensor], torch.Tensor]

#: Gauss–Hermite nodes used for c_σ; 200 nodes integrate smooth σ² to round-off, but piecewise-polynomial
#: σ² (relu, cubic step) only to about 1e-3 relative, which is why those two carry exact values.
C_SIGMA_NODES = 200


@dataclass(frozen=True, eq=False)
class Activation:
    """An activation σ with σ′, σ″ and the facts the theory needs.

    Args:
        name: registry name.
        fn: σ, elementwise on a tensor of any shape.
        d1: σ′, elementwise.
        d2: σ″, elementwise (almost everywhere for piecewise definitions).
        smooth: σ and σ′ Lipschitz (Du et al. §1.1).
        analytic: real-analytic and not a polynomial.
        strictly_increasing: σ′ > 0 everywhere (Chatterjee §2.2).
        sigma0: σ(0).
        exact_second_moment: E[σ(z)²] in closed form where known (a number, or a function computing it
            exactly); else Gauss–Hermite is used.
    """

    name: str
    fn: Elementwise
    d1: Elementwise
    d2: Elementwise
    smooth: bool
    analytic: bool
    strictly_increasing: bool
    sigma0: float
    exact_second_moment: float | Callable[[], float] | None = field(default=None)

    @cached_property
    def second_moment(self) -> float:
        """E_{z∼N(0,1)}[σ(z)²] (float64 Gauss–Hermite with :data:`C_SIGMA_NODES` nodes, or exact)."""
        if callable(self.exact_second_moment):
            return float(self.exact_second_moment())
        if self.exact_second_moment is not None:
            return float(self.exact_second_moment)
        nodes, weights = np.polynomial.hermite_e.hermegauss(C_SIGMA_NODES)
        z = torch.from_numpy(nodes)
        values = self.fn(z).double().numpy()
        return float(np.sum(weights * values**2) / math.sqrt(2.0 * math.pi))

    @cached_property
    def c_sigma(self) -> float:
        """Du et al.'s c_σ = 1 / E[σ(z)²] for z ∼ N(0, 1)."""
        return 1.0 / self.second_moment

    def __repr__(self) -> str:
        return f"Activation({self.name!r})"


def _softplus_d2(z: torch.Tensor) -> torch.Tensor:
    s = torch.sigmoid(z)
    return s * (1.0 - s)


def _tanh_d1(z: torch.Tensor) -> torch.Tensor:
    return 1.0 - torch.tanh(z) ** 2


def _tanh_d2(z: torch.Tensor) -> torch.Tensor:
    t = torch.tanh(z)
    return -2.0 * t * (1.0 - t**2)


def _erf_d1(z: torch.Tensor) -> torch.Tensor:
    return (2.0 / math.sqrt(math.pi)) * torch.exp(-(z**2))


def _erf_d2(z: torch.Tensor) -> torch.Tensor:
    return -2.0 * z * _erf_d1(z)


def _sigmoid_d1(z: torch.Tensor) -> torch.Tensor:
    s = torch.sigmoid(z)
    return s * (1.0 - s)


def _sigmoid_d2(z: torch.Tensor) -> torch.Tensor:
    s = torch.sigmoid(z)
    return s * (1.0 - s) * (1.0 - 2.0 * s)


def _normal_pdf(z: torch.Tensor) -> torch.Tensor:
    return torch.exp(-0.5 * z**2) / math.sqrt(2.0 * math.pi)


def _normal_cdf(z: torch.Tensor) -> torch.Tensor:
    return 0.5 * (1.0 + torch.erf(z / math.sqrt(2.0)))


def _gelu(z: torch.Tensor) -> torch.Tensor:
    return z * _normal_cdf(z)


def _gelu_d1(z: torch.Tensor) -> torch.Tensor:
    return _normal_cdf(z) + z * _normal_pdf(z)


def _gelu_d2(z: torch.Tensor) -> torch.Tensor:
    return _normal_pdf(z) * (2.0 - z**2)


def _relu_d1(z: torch.Tensor) -> torch.Tensor:
    return (z > 0).to(z.dtype)


def _zero(z: torch.Tensor) -> torch.Tensor:
    return torch.zeros_like(z)


def cubic_step(z: torch.Tensor) -> torch.Tensor:
    """Marion & Berthier's smoothed step (docs/theory.md §3.1): 0 below −½, 1 above ½, and in between
    ``4(z+½)³`` on [−½, 0], ``1 − 4(½−z)³`` on [0, ½]. C¹ with ∫σ′ = 1."""
    left = 4.0 * (z + 0.5) ** 3
    right = 1.0 - 4.0 * (0.5 - z) ** 3
    inner = torch.where(z <= 0, left, right)
    return torch.where(z <= -0.5, torch.zeros_like(z), torch.where(z >= 0.5, torch.ones_like(z), inner))


def cubic_step_d1(z: torch.Tensor) -> torch.Tensor:
    """σ′ of :func:`cubic_step`: ``12(z+½)²`` on [−½, 0], ``12(½−z)²`` on [0, ½], 0 elsewhere."""
    inner = torch.where(z <= 0, 12.0 * (z + 0.5) ** 2, 12.0 * (0.5 - z) ** 2)
    return torch.where(z.abs() >= 0.5, torch.zeros_like(z), inner)


def cubic_step_d2(z: torch.Tensor) -> torch.Tensor:
    """σ″ of :func:`cubic_step` (jumps from +12 to −12 at 0): ``24(z+½)`` then ``−24(½−z)``."""
    inner = torch.where(z <= 0, 24.0 * (z + 0.5), -24.0 * (0.5 - z))
    return torch.where(z.abs() >= 0.5, torch.zeros_like(z), inner)


def _cubic_step_second_moment() -> float:
    """E[σ(z)²] for the cubic step: P(z > ½) plus the exact integral over [−½, ½] (scipy quad, smooth there)."""
    from scipy import integrate, stats

    def integrand(z: float) -> float:
        value = float(cubic_step(torch.tensor(z, dtype=torch.float64)))
        return value**2 * stats.norm.pdf(z)

    left, _ = integrate.quad(integrand, -0.5, 0.0, epsabs=1e-14, epsrel=1e-13)
    right, _ = integrate.quad(integrand, 0.0, 0.5, epsabs=1e-14, epsrel=1e-13)
    return float(stats.norm.sf(0.5) + left + right)


ACTIVATIONS: dict[str, Activation] = {
    "softplus": Activation(
        "softplus", torch.nn.functional.softplus, torch.sigmoid, _softplus_d2,
        smooth=True, analytic=True, strictly_increasing=True, sigma0=math.log(2.0),
    ),
    "erf": Activation(
        "erf", torch.erf, _erf_d1, _erf_d2,
        smooth=True, analytic=True, strictly_increasing=True, sigma0=0.0,
        exact_second_moment=(2.0 / math.pi) * math.asin(2.0 / 3.0),
    ),
    "tanh": Activation(
        "tanh", torch.tanh, _tanh_d1, _tanh_d2,
        smooth=True, analytic=True, strictly_increasing=True, sigma0=0.0,
    ),
    "sigmoid": Activation(
        "sigmoid", torch.sigmoid, _sigmoid_d1, _sigmoid_d2,
        smooth=True, analytic=True, strictly_increasing=True, sigma0=0.5,
    ),
    "gelu": Activation(
        "gelu", _gelu, _gelu_d1, _gelu_d2,
        smooth=True, analytic=True, strictly_increasing=False, sigma0=0.0,
    ),
    "cubic_step": Activation(
        "cubic_step", cubic_step, cubic_step_d1, cubic_step_d2,
        smooth=True, analytic=False, strictly_increasing=False, sigma0=0.5,
        exact_second_moment=_cubic_step_second_moment,
    ),
    "relu": Activation(
        "relu", torch.relu, _relu_d1, _zero,
        smooth=False, analytic=False, strictly_increasing=False, sigma0=0.0,
        exact_second_moment=0.5,
    ),
}


def get_activation(name: str | Activation) -> Activation:
    """Look an activation up by name (an :class:`Activation` passes through).

    Raises:
        ZerolossInputError: unknown name; the message lists the accepted names.
    """
    if isinstance(name, Activation):
        return name
    if name not in ACTIVATIONS:
        raise ZerolossInputError(f"activation: must be one of {', '.join(ACTIVATIONS)}, got {name!r}")
    return ACTIVATIONS[name]
