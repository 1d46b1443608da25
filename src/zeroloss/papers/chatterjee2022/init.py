"""Initialisations of :class:`~zeroloss.nets.FeedForward`: the standard laws and Chatterjee's positive one.

The registry :data:`INITIALISERS` maps a name to a function ``fn(net, generators, **options) -> dict`` (facts about
the draw, also stored as ``net.init_info``); :func:`initialise` is the entry point. Member k draws from its own CPU
generator seeded ``seed + k``, so member k equals the single-member net initialised with seed + k; PyTorch's
``nn.init`` is never called.

- ``gaussian``, ``kaiming``, ``xavier``, ``lecun``, ``torch_default``: the standard laws of
  :mod:`zeroloss.nets.laws` (a FeedForward can also be built with them directly: ``FeedForward(..., init=name)``).
- ``positive`` (Chatterjee, docs/theory.md §2.3): W₁ = 0, biases 0, hidden weights W_ℓ (ℓ ≥ 2) a positive constant
  (default 1/fan_in) or U[lo, hi] with 0 < lo, output weights v = M; the output bias c = mean(y − vᵀz^(L)(w₀))
  (= ȳ − vᵀz^(L)(w₀), every input giving the same z^(L) when W₁ = 0) when σ(0) ≠ 0, else c = 0. M is given,
  or computed per member from the certified bound: M = r + (M* − r)/√ρ with M* the threshold of
  :meth:`~zeroloss.papers.chatterjee2022.bounds.FirstLayerBound.output_scale_threshold`, so that the certified
  ratio 4F(w₀)/(r²α_lb) equals ρ (default ρ = 1/4, the largest ratio at which docs/theory.md §2.1 allows the GD step
  1/β, since min(1/β, 2(1 − √ρ)/β) = 1/β exactly when ρ ≤ 1/4).

Layering: this module imports the net (:mod:`zeroloss.nets.feedforward`), its laws and the bound
(:mod:`zeroloss.papers.chatterjee2022.bounds`, which depends only on the activations); nothing below it imports it.

References:
    S. Chatterjee. Convergence of gradient descent for deep neural networks. arXiv:2203.16462 (2022).

Examples:
    >>> from zeroloss.nets import FeedForward
    >>> net = FeedForward(d=4, widths=[8], members=2, seed=3, init=None)
    >>> info = initialise(net, "torch_default")
    >>> bool(net.W1.abs().max() <= 0.5)
    True
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch

from zeroloss.errors import ZerolossInputError, choice, require
from zeroloss.nets.base import member_generators
from zeroloss.nets.feedforward import FeedForward
from zeroloss.nets.laws import STANDARD_LAWS
from zeroloss.nets.laws import param_shape as _shape
from zeroloss.nets.laws import write_params as _write
from zeroloss.papers.chatterjee2022.bounds import check_certificate_assumptions, check_radius, first_layer_bound

Initialiser = Callable[..., dict]


def positive(
    net: FeedForward,
    generators: list[torch.Generator],
    X: torch.Tensor | None = None,
    y: torch.Tensor | None = None,
    radius: float | None = None,
    hidden: float | tuple[float, float] | None = None,
    M: float | None = None,
    rho: float = 0.25,
) -> dict:
    """Chatterjee's positive initialisation (docs/theory.md §2.3), with the certified output scale unless M is given.

    Args:
        net: the FeedForward (activation strictly increasing when M is computed).
        generators: one per member.
        X: inputs (n, d) — needed to compute M and, when σ(0) ≠ 0, the output bias.
        y: labels (n,) — needed with X.
        radius: r of the certificate (needed to compute M); must be below the smallest hidden weight.
        hidden: hidden-weight constant (default 1/fan_in per layer), or (lo, hi) for U[lo, hi] with 0 < lo < hi.
        M: output scale; None computes the certified one.
        rho: target certified ratio 4F(w₀)/(r²α_lb) ∈ (0, 1) when M is computed (see the module docstring).

    Returns:
        {"M": [per member], "radius", "rho", "f0": [per member], "threshold": [M* per member]} (JSON-ready).
    """
    S = net.members
    values: dict[str, torch.Tensor] = {}
    interval = isinstance(hidden, (tuple, list))
    accepted = "must be a positive constant or (lo, hi) with 0 < lo < hi"
    if interval:
        require(len(hidden) == 2 and all(_finite_number(v) for v in hidden) and 0.0 < hidden[0] < hidden[1],
                "hidden", accepted, hidden)
    elif hidden is not None:
        require(_finite_number(hidden) and hidden > 0.0, "hidden", accepted, hidden)
    for ell in range(2, net.depth + 1):
        shape = _shape(net, f"W{ell}")
        if hidden is None:
            values[f"W{ell}"] = torch.full((S, *shape), 1.0 / shape[1], dtype=torch.float64, device="cpu")
        elif interval:
            lo, hi = (float(v) for v in hidden)
            values[f"W{ell}"] = torch.stack([lo + (hi - lo) * torch.rand(shape, generator=g, dtype=torch.float64,
                                                                           device="cpu")
                                             for g in generators])
        else:
            values[f"W{ell}"] = torch.full((S, *shape), float(hidden), dtype=torch.float64, device="cpu")
    needs_bias = net.activation.sigma0 != 0.0
    if needs_bias and not net.output_bias:
        raise ZerolossInputError(
            f"output_bias: the positive init with σ(0) = {net.activation.sigma0:.3g} ≠ 0 needs the output bias c "
            "to cancel the constant prediction, got output_bias=False"
        )
    info: dict = {"radius": radius, "rho": rho}
    if M is None:
        require(X is not None and y is not None, "X, y", "the positive init needs the data to compute M", None)
        require(_finite_number(radius) and radius > 0, "radius", "must be a positive number to compute M", radius)
        radius = check_radius(radius)
        require(_finite_number(rho) and 0.0 < rho < 1.0, "rho", "must be in (0, 1)", rho)
        Xd = torch.as_tensor(X, dtype=torch.float64)
        lam = check_certificate_assumptions(net.activation, Xd)
        values["v"] = torch.ones(S, *_shape(net, "v"), dtype=torch.float64, device="cpu")
        f0 = _set_output_bias(net, values, Xd, y, needs_bias)
        Ms, thresholds = [], []
        for k in range(S):
            member = {name: t[k] for name, t in values.items()}
            if net.depth:
                member["W1"] = torch.zeros(_shape(net, "W1"), dtype=torch.float64, device="cpu")
            if net.bias:
                member.update({f"b{ell}": torch.zeros(net.widths[ell - 1], dtype=torch.float64, device="cpu")
                               for ell in range(1, net.depth + 1)})
            # any M > r
            member["v"] = torch.full(_shape(net, "v"), 2.0 * radius + 1.0, dtype=torch.float64, device="cpu")
            bound = first_layer_bound(member, Xd, radius, net.activation, net.depth, net.bias, lam)
            threshold = bound.output_scale_threshold(float(f0[k]), radius)
            if threshold is None:
                raise ZerolossInputError(f"radius: no certified output scale M at r = {radius:.3g}: {bound.reason}")
            M_k = radius + (threshold - radius) / math.sqrt(rho)
            if not math.isfinite(M_k):
                raise ZerolossInputError(
                    f"radius: no certified output scale M at r = {radius:.3g}: "
                    f"M* = r + sqrt(F(w₀)/(λ_min(XXᵀ) d₁))/(r κ) overflows float64 (κ = {bound.kappa:.3g}); "
                    "use a larger radius")
            thresholds.append(threshold)
            Ms.append(M_k)
        info["threshold"] = thresholds
    else:
        require(_finite_number(M) and M > 0.0, "M", "must be a positive output scale", M)
        Ms = [float(M)] * S
    values["v"] = torch.stack([torch.full(_shape(net, "v"), m, dtype=torch.float64, device="cpu") for m in Ms])
    if needs_bias:
        require(X is not None and y is not None, "X, y", "the positive init with σ(0) ≠ 0 needs the data to set c",
                None)
        f0 = _set_output_bias(net, values, torch.as_tensor(X, dtype=torch.float64), y, True)
    else:
        _write(net, values)
        f0 = None if y is None else _loss(net, torch.as_tensor(X, dtype=torch.float64), y)
    info["M"] = Ms
    info["f0"] = None if f0 is None else [float(v) for v in f0]
    return info


def _finite_number(value: object) -> bool:
    """A real, finite number (bools excluded)."""
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _loss(net: FeedForward, X: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Chatterjee's F = Σ_i (u_i − y_i)² per member, float64."""
    params = {k: p.detach().to(torch.float64) for k, p in net.named_parameters()}
    u = net.functional_forward(params, X)[0]
    return (u - torch.as_tensor(y, dtype=torch.float64)).pow(2).sum(dim=1)


def _set_output_bias(net: FeedForward, values: dict[str, torch.Tensor], X: torch.Tensor, y: torch.Tensor,
                     center: bool) -> torch.Tensor:
    """Write ``values`` with c = 0, then c = mean(y − u) per member if ``center``; return F(w₀) (S,)."""
    values.pop("c", None)
    _write(net, values)
    if center:
        params = {k: p.detach().to(torch.float64) for k, p in net.named_parameters()}
        u = net.functional_forward(params, X)[0]
        values["c"] = (torch.as_tensor(y, dtype=torch.float64) - u).mean(dim=1, keepdim=True)
        _write(net, values)
    return _loss(net, X, y)


#: name → initialiser ``fn(net, generators, **options) -> dict``. Plain dict: add your own.
INITIALISERS: dict[str, Initialiser] = {"positive": positive, **STANDARD_LAWS}


def initialise(net: FeedForward, name: str, seed: int | None = None, **options) -> dict:
    """Apply the initialiser ``name`` to ``net`` in place, member k drawing from seed + k (default: net.seed).

    Args:
        net: a :class:`~zeroloss.nets.FeedForward`.
        name: a key of :data:`INITIALISERS`.
        seed: seed of member 0 (default ``net.seed``).
        **options: passed to the initialiser (``positive``: X, y, radius, hidden, M, rho).

    Returns:
        Facts about the draw (``{"init": name, "seed": seed, …}``), also stored as ``net.init_info``.

    Examples:
        >>> from zeroloss.nets import FeedForward
        >>> from zeroloss.data import sphere_data
        >>> X, y = sphere_data(n=4, d=8, seed=0)
        >>> net = FeedForward(d=8, widths=[16, 16], activation="tanh", dtype=torch.float64)
        >>> info = initialise(net, "positive", X=X, y=y, radius=0.02)
        >>> info["M"][0] > info["threshold"][0] > 0.02
        True
    """
    if not isinstance(net, FeedForward):
        raise ZerolossInputError(f"net: initialisers apply to a zeroloss.nets.FeedForward, got {type(net).__name__}")
    choice(name, "init", tuple(INITIALISERS))
    seed = net.seed if seed is None else seed
    info = INITIALISERS[name](net, member_generators(seed, net.members), **options)
    info = {"init": name, "seed": seed, **info}
    net.init_info = info
    return info
