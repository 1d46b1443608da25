"""Elementwise nonlinearities of the infinite-width rules: closed forms where known, Gauss–Hermite otherwise.

For a pre-activation pair (u, v) ∼ N(0, [[a, b], [b, c]]) (a = K_ii(s, s), b = K_ij(s, t), c = K_jj(t, t), per
pair of inputs and positions) an elementwise σ maps the NNGP and NTK as

    K′ = E[σ(u) σ(v)],      Θ′ = E[σ′(u) σ′(v)] · Θ.

Closed forms (θ = arccos(b/√(ac)), δ² = (1+a)(1+c) − b²):

* ReLU (Cho & Saul 2009): E[σσ] = √(ac)(sin θ + (π − θ) cos θ)/(2π), E[σ′σ′] = (π − θ)/(2π), θ computed as
  atan2(√(ac − b²), b) (exact on diagonal pairs);
* LeakyReLU(α) = ReLU(x) − α ReLU(−x) [derived here from the ReLU ones, E[ReLU(u) v] = b/2]:
  E[σσ] = (1 − α)² J₁ + α b, E[σ′σ′] = (1 + α²)(π − θ)/(2π) + α θ/π, J₁ the ReLU E[σσ];
* erf (Williams 1997): E[σσ] = (2/π) arcsin(2b/√((1+2a)(1+2c))), E[σ′σ′] = (4/π)((1+2a)(1+2c) − 4b²)^(−½);
* GELU x Φ(x) (Tsuchida, Pearce, van der Heide, Roosta, Gallagher 2020; the form of Neural Tangents'
  ``stax.Gelu``): with φ = atan2(b, δ),
  E[σσ] = b/4 + (b φ + (b² + ac δ²)/((1+a)(1+c) δ))/(2π),
  E[σ′σ′] = 1/4 + φ/(2π) + b (1/δ² + (1 − ac)/((1+a)(1+c)) + 1)/(2π δ);
* Identity (and Dropout in eval mode): K′ = K, Θ′ = Θ.

Every other nonlinearity (Tanh, Sigmoid, SiLU, Softplus, ELU, GELU with ``approximate="tanh"``) goes through the
tensor Gauss–Hermite rule of :mod:`zeroloss.kernels.gaussian`; its error is estimated per run by comparing the rule
with one of two thirds the nodes (:func:`quadrature_error`), and stated in the result.

Examples:
    >>> import torch
    >>> one = torch.ones(1, dtype=torch.float64)
    >>> closed = expectations(NONLINEARITIES["gelu"], one, 0.3 * one, 2 * one, nodes=96)
    >>> quad = expectations(NONLINEARITIES["gelu"], one, 0.3 * one, 2 * one, nodes=96, force_quadrature=True)
    >>> bool(torch.allclose(closed["ss"], quad["ss"], atol=1e-12))
    True
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from zeroloss.activations import ACTIVATIONS, Activation
from zeroloss.kernels.gaussian import CLOSED_FORMS, bivariate_expectations, resolve_method

Tensor = torch.Tensor
Closed = Callable[[Tensor, Tensor, Tensor], Tensor]


@dataclass(frozen=True)
class Nonlinearity:
    """One elementwise σ: its name, the :class:`~zeroloss.activations.Activation` used by the quadrature, and closed
    forms of E[σσ] and E[σ′σ′] (functions of broadcastable a, b, c) when known."""

    name: str
    act: Activation | None  # None: the identity
    ss: Closed | None = None
    dd: Closed | None = None
    both: Callable[[Tensor, Tensor, Tensor], tuple[Tensor, Tensor]] | None = None

    @property
    def closed(self) -> bool:
        return self.act is None or (self.ss is not None and self.dd is not None)


def _autograd_d(fn: Callable[[Tensor], Tensor]) -> Callable[[Tensor], Tensor]:
    """σ′ of an elementwise σ by autograd (exact up to round-off), for the activations without a hand-written one."""

    def d(z: Tensor) -> Tensor:
        with torch.enable_grad():
            x = z.detach().clone().requires_grad_(True)
            (g,) = torch.autograd.grad(fn(x).sum(), x, create_graph=False)
        return g

    return d


def _custom(name: str, fn: Callable[[Tensor], Tensor], d1: Callable[[Tensor], Tensor]) -> Activation:
    """An :class:`Activation` for the quadrature (σ, σ′; σ″ by autograd of σ′, used only by the ρ-table method, which
    is never chosen for these: ``analytic=False``)."""
    return Activation(name, fn, d1, _autograd_d(d1), smooth=True, analytic=False, strictly_increasing=False,
                      sigma0=float(fn(torch.zeros((), dtype=torch.float64))))


def _relu_angle(a: Tensor, b: Tensor, c: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """(√(ac), √(ac − b²), θ = atan2(√(ac − b²), b)): exact θ = 0 on a diagonal pair (b = a = c), where
    arccos(b/√(ac)) would lose half the digits (arccos(1 − ε) ≈ √(2ε))."""
    ac = a.clamp_min(0.0) * c.clamp_min(0.0)
    sine = torch.sqrt((ac - b * b).clamp_min(0.0))
    return torch.sqrt(ac), sine, torch.atan2(sine, b)


def _relu_ss_value(a: Tensor, b: Tensor, c: Tensor) -> Tensor:
    _, sine, theta = _relu_angle(a, b, c)
    return (sine + (math.pi - theta) * b) / (2 * math.pi)


def _relu_dd_value(a: Tensor, b: Tensor, c: Tensor) -> Tensor:
    norm, _, theta = _relu_angle(a, b, c)
    # relu′(0) = 0 (torch's autograd): a zero-variance side gives 0
    return torch.where(norm > 0, (math.pi - theta) / (2 * math.pi), torch.zeros_like(theta))


def _safe_div(x: Tensor, y: Tensor) -> Tensor:
    return torch.where(y > 0, x / torch.where(y > 0, y, torch.ones_like(y)), torch.zeros_like(x))


class _ReluSS(torch.autograd.Function):
    """J(a, b, c) = E[relu(u) relu(v)] with its exact gradient: ∂J/∂b = E[relu′relu′] (Price's theorem) and, J being
    √(ac) g(b/√(ac)), ∂J/∂a = (J − b ∂J/∂b)/(2a), ∂J/∂c = (J − b ∂J/∂b)/(2c) — finite on the diagonal, where the
    closed form's √(ac − b²) has an infinite derivative."""

    @staticmethod
    def forward(ctx, a: Tensor, b: Tensor, c: Tensor) -> Tensor:  # type: ignore[override]
        J = _relu_ss_value(a, b, c)
        ctx.save_for_backward(a, b, c, J)
        return J

    @staticmethod
    def backward(ctx, g: Tensor) -> tuple[Tensor, Tensor, Tensor]:  # type: ignore[override]
        a, b, c, J = ctx.saved_tensors
        Jb = _relu_dd_value(a, b, c)
        rest = J - b * Jb
        return ((g * _safe_div(rest, 2 * a)).sum_to_size(a.shape), (g * Jb).sum_to_size(b.shape),
                (g * _safe_div(rest, 2 * c)).sum_to_size(c.shape))


class _ReluDD(torch.autograd.Function):
    """h(ρ) = E[relu′(u) relu′(v)] = (π − arccos ρ)/(2π), ρ = b/√(ac), with h′(ρ) = 1/(2π √(1 − ρ²)); on a
    diagonal pair ρ ≡ 1 whatever the hyperparameters, so its derivative is taken as 0 there (not ∞ · 0)."""

    @staticmethod
    def forward(ctx, a: Tensor, b: Tensor, c: Tensor) -> Tensor:  # type: ignore[override]
        ctx.save_for_backward(a, b, c)
        return _relu_dd_value(a, b, c)

    @staticmethod
    def backward(ctx, g: Tensor) -> tuple[Tensor, Tensor, Tensor]:  # type: ignore[override]
        a, b, c = ctx.saved_tensors
        norm = torch.sqrt(a.clamp_min(0.0) * c.clamp_min(0.0))
        rho = _safe_div(b, norm).clamp(-1.0, 1.0)
        gap = 1.0 - rho * rho
        dh = _safe_div(torch.ones_like(gap), 2 * math.pi * torch.sqrt(gap.clamp_min(0.0)))
        dh = torch.where(gap > 1e-12, dh, torch.zeros_like(dh))
        return ((g * -rho * _safe_div(dh, 2 * a)).sum_to_size(a.shape), (g * _safe_div(dh, norm)).sum_to_size(b.shape),
                (g * -rho * _safe_div(dh, 2 * c)).sum_to_size(c.shape))


def _relu_ss(a: Tensor, b: Tensor, c: Tensor) -> Tensor:
    a, b, c = torch.broadcast_tensors(a, b, c) if a.requires_grad or c.requires_grad else (a, b, c)
    return _ReluSS.apply(a, b, c)


def _relu_dd(a: Tensor, b: Tensor, c: Tensor) -> Tensor:
    a, b, c = torch.broadcast_tensors(a, b, c) if a.requires_grad or c.requires_grad else (a, b, c)
    return _ReluDD.apply(a, b, c)


def _relu_both(a: Tensor, b: Tensor, c: Tensor) -> tuple[Tensor, Tensor]:
    """(E[σσ], E[σ′σ′]) of ReLU together, sharing θ, with in-place arithmetic (the hot path of ReLU nets)."""
    zero = bool((a <= 0).any()) or bool((c <= 0).any())
    ac = a.clamp_min(0.0) * c.clamp_min(0.0)
    mask = ac <= 0 if zero else None
    # b·b rounded before the subtraction (not a fused multiply-add): exactly 0 on a diagonal pair, b = a = c
    sine = ac.sub_(b * b).clamp_min_(0.0).sqrt_()
    rest = torch.atan2(sine, b).neg_().add_(math.pi)  # π − θ
    ss = torch.addcmul(sine, rest, b).div_(2 * math.pi)
    dd = rest.div_(2 * math.pi)
    if mask is not None:
        dd.masked_fill_(mask, 0.0)
    return ss, dd


def _erf_both(a: Tensor, b: Tensor, c: Tensor) -> tuple[Tensor, Tensor]:
    """(E[σσ], E[σ′σ′]) of erf together (Williams' forms), in place where possible."""
    q = (1.0 + 2.0 * a) * (1.0 + 2.0 * c)
    q = q.expand(b.shape).contiguous() if q.shape != b.shape else q
    ss = torch.mul(b, 2.0).mul_(q.rsqrt()).clamp_(-1.0, 1.0).asin_().mul_(2.0 / math.pi)
    dd = q.addcmul_(b, b, value=-4.0).rsqrt_().mul_(4.0 / math.pi)
    return ss, dd


def leaky_relu(alpha: float) -> Nonlinearity:
    """LeakyReLU(α) with its closed forms (module docstring)."""

    def ss(a: Tensor, b: Tensor, c: Tensor) -> Tensor:
        return (1.0 - alpha) ** 2 * _relu_ss(a, b, c) + alpha * b

    def dd(a: Tensor, b: Tensor, c: Tensor) -> Tensor:
        norm, _, theta = _relu_angle(a, b, c)
        both = (1.0 + alpha * alpha) * (math.pi - theta) / (2 * math.pi) + alpha * theta / math.pi
        return torch.where(norm > 0, both, torch.full_like(theta, alpha * alpha))

    act = _custom(f"leaky_relu({alpha:g})", lambda z: F.leaky_relu(z, alpha),
                  lambda z: torch.where(z > 0, torch.ones_like(z), torch.full_like(z, alpha)))
    return Nonlinearity(act.name, act, ss, dd)


def _gelu_parts(a: Tensor, b: Tensor, c: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    prod, prod1 = a * c, (1.0 + a) * (1.0 + c)
    delta2 = (prod1 - b * b).clamp_min(torch.finfo(b.dtype).tiny)
    delta = torch.sqrt(delta2)
    return prod, prod1, delta2, delta


def _gelu_ss(a: Tensor, b: Tensor, c: Tensor) -> Tensor:
    prod, prod1, delta2, delta = _gelu_parts(a, b, c)
    angle = torch.atan2(b, delta)
    return 0.25 * b + ((b * b + prod * delta2) / (prod1 * delta) + b * angle) / (2 * math.pi)


def _gelu_dd(a: Tensor, b: Tensor, c: Tensor) -> Tensor:
    prod, prod1, delta2, delta = _gelu_parts(a, b, c)
    angle = torch.atan2(b, delta)
    first = (1.0 / delta2 + (1.0 - prod) / prod1 + 1.0) * b / delta / (2 * math.pi)
    return first + 0.25 + angle / (2 * math.pi)


def _gelu_tanh(z: Tensor) -> Tensor:
    return F.gelu(z, approximate="tanh")


def _gelu_tanh_d1(z: Tensor) -> Tensor:
    k = math.sqrt(2.0 / math.pi)
    t = torch.tanh(k * (z + 0.044715 * z**3))
    return 0.5 * (1.0 + t) + 0.5 * z * (1.0 - t * t) * k * (1.0 + 3 * 0.044715 * z * z)


def silu_d1(z: Tensor) -> Tensor:
    s = torch.sigmoid(z)
    return s * (1.0 + z * (1.0 - s))


def elu(alpha: float) -> Nonlinearity:
    """ELU(α): quadrature (σ′ = 1 for z > 0, α eᶻ otherwise)."""
    act = _custom(f"elu({alpha:g})", lambda z: F.elu(z, alpha),
                  lambda z: torch.where(z > 0, torch.ones_like(z), alpha * torch.exp(z)))
    return Nonlinearity(act.name, act)


def softplus(beta: float, threshold: float) -> Nonlinearity:
    """Softplus(β, threshold) as torch defines it: the registry's softplus for β = 1, threshold = 20, else
    quadrature."""
    if beta == 1.0 and threshold == 20.0:
        return NONLINEARITIES["softplus"]
    act = _custom(f"softplus({beta:g},{threshold:g})", lambda z: F.softplus(z, beta, threshold),
                  lambda z: torch.where(z * beta > threshold, torch.ones_like(z), torch.sigmoid(beta * z)))
    return Nonlinearity(act.name, act)


#: The nonlinearities without arguments, by name (LeakyReLU, ELU and Softplus with arguments are built by
#: :func:`leaky_relu`, :func:`elu`, :func:`softplus`).
NONLINEARITIES: dict[str, Nonlinearity] = {
    "identity": Nonlinearity("identity", None),
    "relu": Nonlinearity("relu", ACTIVATIONS["relu"], _relu_ss, _relu_dd, _relu_both),
    "erf": Nonlinearity("erf", ACTIVATIONS["erf"], CLOSED_FORMS["erf"].ss, CLOSED_FORMS["erf"].dd, _erf_both),
    "gelu": Nonlinearity("gelu", ACTIVATIONS["gelu"], _gelu_ss, _gelu_dd),
    "gelu_tanh": Nonlinearity("gelu_tanh", _custom("gelu_tanh", _gelu_tanh, _gelu_tanh_d1)),
    "tanh": Nonlinearity("tanh", ACTIVATIONS["tanh"]),
    "sigmoid": Nonlinearity("sigmoid", ACTIVATIONS["sigmoid"]),
    "softplus": Nonlinearity("softplus", ACTIVATIONS["softplus"]),
    "silu": Nonlinearity("silu", _custom("silu", F.silu, silu_d1)),
}


def expectations(nl: Nonlinearity, a: Tensor, b: Tensor, c: Tensor, *, nodes: int, need_dd: bool = True,
                 block_bytes: int = 256 * 2**20, force_quadrature: bool = False,
                 fused: bool = True) -> dict[str, Tensor]:
    """E[σ(u)σ(v)] (``"ss"``) and, with ``need_dd``, E[σ′(u)σ′(v)] (``"dd"``) for broadcastable a, b, c.

    Closed forms keep b's dtype; the quadrature runs in float64 (:mod:`zeroloss.kernels.gaussian`) and is cast back.
    ``fused`` allows the in-place forms that compute both at once (not differentiable: off under autograd).
    """
    if nl.act is None:
        out = {"ss": b}
        if need_dd:
            out["dd"] = torch.ones((), dtype=b.dtype, device=b.device)
        return out
    if nl.closed and not force_quadrature:
        assert nl.ss is not None and nl.dd is not None
        if need_dd and fused and nl.both is not None:
            ss, dd = nl.both(a, b, c)
            return {"ss": ss, "dd": dd}
        out = {"ss": nl.ss(a, b, c)}
        if need_dd:
            out["dd"] = nl.dd(a, b, c)
        return out
    pairs = ("ss", "dd") if need_dd else ("ss",)
    a64, b64, c64 = (t.to(torch.float64) for t in (a, b, c))
    method = "quadrature" if force_quadrature else resolve_method(nl.act, pairs, "auto", a64, c64)
    method = "quadrature" if method == "closed" else method
    res = bivariate_expectations(a64, b64, c64, nl.act, pairs, nodes, method, block_bytes)
    return {p: v.to(b.dtype) for p, v in res.items()}


def quadrature_error(nl: Nonlinearity, a: Tensor, b: Tensor, c: Tensor, *, nodes: int,
                     block_bytes: int = 256 * 2**20) -> float:
    """Estimated error of the ``nodes``-point rule on these blocks: max |E_nodes − E_(2·nodes/3)| over ss and dd
    (a Gauss–Hermite rule's error falls faster than geometrically in the nodes for analytic σ, so the difference
    bounds the error of the coarser rule and hence, generously, of the finer one). 0 for closed forms."""
    if nl.closed:
        return 0.0
    fine = expectations(nl, a, b, c, nodes=nodes, block_bytes=block_bytes, force_quadrature=True)
    coarse = expectations(nl, a, b, c, nodes=max(2, (2 * nodes) // 3), block_bytes=block_bytes, force_quadrature=True)
    return max(float((fine[p] - coarse[p]).detach().abs().max()) for p in fine)  # an estimate, not differentiated
