"""Initialisations of :class:`~zeroloss.nets.FeedForward`, explicit laws drawn with the member generators.

Every initialiser writes the parameters in place, member by member: member k draws from its own CPU generator
seeded ``seed + k`` (float64 draws, then cast), so member k equals the single-member net initialised with
seed + k. PyTorch's ``nn.init`` is never called. The registry :data:`INITIALISERS` maps a name to a function
``fn(net, generators, **options) -> dict`` (facts about the draw, also stored as ``net.init_info``);
:func:`initialise` is the entry point.

Laws (fan_in / fan_out of each dense map; v has fan_out 1):

- ``gaussian``: every weight N(0, 1), biases 0 (Du et al.'s law; MATH §1.2).
- ``kaiming`` (He et al. 2015, normal, fan-in, gain √2): W ~ N(0, 2/fan_in), biases 0.
- ``xavier`` (Glorot & Bengio 2010, normal): W ~ N(0, 2/(fan_in + fan_out)), biases 0.
- ``lecun`` (LeCun et al. 1998, normal): W ~ N(0, 1/fan_in), biases 0.
- ``torch_default``: nn.Linear's default law, reproduced explicitly: weights and biases U(−1/√fan_in, 1/√fan_in)
  (kaiming_uniform with a = √5 gives bound √(6/((1 + 5) fan_in)) = 1/√fan_in), weight then bias per layer.
- ``positive`` (Chatterjee, MATH §2.3): W₁ = 0, biases 0, hidden weights W_ℓ (ℓ ≥ 2) a positive constant
  (default 1/fan_in) or U[lo, hi] with 0 < lo, output weights v = M; the output bias c = mean(y − vᵀz^(L)(w₀))
  (= ȳ − vᵀz^(L)(w₀), every input giving the same z^(L) when W₁ = 0) when σ(0) ≠ 0, else c = 0. M is given,
  or computed per member from the certified bound: M = r + (M* − r)/√ρ with M* the threshold of
  :meth:`~zeroloss.theory.chatterjee_bounds.FirstLayerBound.output_scale_threshold`, so that the certified
  ratio 4F(w₀)/(r²α_lb) equals ρ (default ρ = 1/4, the largest ratio at which MATH §2.1 allows the GD step 1/β,
  since min(1/β, 2(1 − √ρ)/β) = 1/β exactly when ρ ≤ 1/4).

References:
    K. He, X. Zhang, S. Ren, J. Sun. Delving deep into rectifiers. ICCV 2015.
    X. Glorot, Y. Bengio. Understanding the difficulty of training deep feedforward neural networks. AISTATS 2010.
    Y. LeCun, L. Bottou, G. Orr, K.-R. Müller. Efficient BackProp. 1998.
    S. Chatterjee. Convergence of gradient descent for deep neural networks. arXiv:2203.16462 (2022).

Example:
    >>> from zeroloss.nets import FeedForward
    >>> net = FeedForward(d=4, widths=[8], members=2, seed=3, init="kaiming")
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

Initialiser = Callable[..., dict]


def _weights(net: FeedForward) -> list[tuple[str, int, int]]:
    """(name, fan_in, fan_out) of each dense map, in parameter order: W1..WL then v."""
    fans = net.fan_ins
    out = [(f"W{ell}", fans[ell - 1], fans[ell]) for ell in range(1, net.depth + 1)]
    return [*out, ("v", fans[-1], 1)]


def _shape(net: FeedForward, name: str) -> tuple[int, ...]:
    return tuple(dict(net.named_parameters())[name].shape[1:])


def _write(net: FeedForward, values: dict[str, torch.Tensor]) -> None:
    """Copy (S, *shape) float64 tensors into the named parameters; every other parameter is set to 0."""
    with torch.no_grad():
        for name, p in net.named_parameters():
            if name in values:
                p.copy_(values[name].to(dtype=p.dtype, device=p.device))
            else:
                p.zero_()


def _normal_law(std: Callable[[int, int], float]) -> Initialiser:
    def init(net: FeedForward, generators: list[torch.Generator]) -> dict:
        values: dict[str, list[torch.Tensor]] = {}
        for g in generators:
            for name, fan_in, fan_out in _weights(net):
                draw = torch.randn(_shape(net, name), generator=g, dtype=torch.float64) * std(fan_in, fan_out)
                values.setdefault(name, []).append(draw)
        _write(net, {k: torch.stack(v) for k, v in values.items()})
        return {}

    return init


gaussian = _normal_law(lambda fan_in, fan_out: 1.0)
gaussian.__doc__ = "Du et al.'s law: every weight N(0, 1), biases 0."
kaiming = _normal_law(lambda fan_in, fan_out: math.sqrt(2.0 / fan_in))
kaiming.__doc__ = "He (Kaiming) normal, fan-in mode, gain √2: W ~ N(0, 2/fan_in), biases 0."
xavier = _normal_law(lambda fan_in, fan_out: math.sqrt(2.0 / (fan_in + fan_out)))
xavier.__doc__ = "Glorot (Xavier) normal: W ~ N(0, 2/(fan_in + fan_out)), biases 0."
lecun = _normal_law(lambda fan_in, fan_out: math.sqrt(1.0 / fan_in))
lecun.__doc__ = "LeCun normal: W ~ N(0, 1/fan_in), biases 0."


def torch_default(net: FeedForward, generators: list[torch.Generator]) -> dict:
    """nn.Linear's default law, drawn explicitly: weight then bias of each layer U(±1/√fan_in)."""
    values: dict[str, list[torch.Tensor]] = {}
    biases = {f"W{ell}": f"b{ell}" for ell in range(1, net.depth + 1)} if net.bias else {}
    if net.output_bias:
        biases["v"] = "c"
    for g in generators:
        for name, fan_in, _ in _weights(net):
            bound = 1.0 / math.sqrt(fan_in)
            for param in (name, biases.get(name)):
                if param is None:
                    continue
                draw = (torch.rand(_shape(net, param), generator=g, dtype=torch.float64) * 2.0 - 1.0) * bound
                values.setdefault(param, []).append(draw)
    _write(net, {k: torch.stack(v) for k, v in values.items()})
    return {}


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
    """Chatterjee's positive initialisation (MATH §2.3), with the certified output scale unless M is given.

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
    from zeroloss.theory.chatterjee_bounds import check_certificate_assumptions, first_layer_bound

    S = net.members
    values: dict[str, torch.Tensor] = {}
    for ell in range(2, net.depth + 1):
        shape = _shape(net, f"W{ell}")
        if hidden is None:
            values[f"W{ell}"] = torch.full((S, *shape), 1.0 / shape[1], dtype=torch.float64)
        elif isinstance(hidden, (tuple, list)):
            lo, hi = (float(v) for v in hidden)
            require(0.0 < lo < hi, "hidden", "must be a positive constant or (lo, hi) with 0 < lo < hi", hidden)
            values[f"W{ell}"] = torch.stack([lo + (hi - lo) * torch.rand(shape, generator=g, dtype=torch.float64)
                                             for g in generators])
        else:
            require(float(hidden) > 0.0, "hidden", "must be a positive constant or (lo, hi) with 0 < lo < hi", hidden)
            values[f"W{ell}"] = torch.full((S, *shape), float(hidden), dtype=torch.float64)
    needs_bias = net.activation.sigma0 != 0.0
    if needs_bias and not net.output_bias:
        raise ZerolossInputError(
            f"output_bias: the positive init with σ(0) = {net.activation.sigma0:.3g} ≠ 0 needs the output bias c "
            "to cancel the constant prediction, got output_bias=False"
        )
    info: dict = {"radius": radius, "rho": rho}
    if M is None:
        require(X is not None and y is not None, "X, y", "the positive init needs the data to compute M", None)
        require(radius is not None and radius > 0, "radius", "must be a positive number to compute M", radius)
        require(0.0 < rho < 1.0, "rho", "must be in (0, 1)", rho)
        Xd = torch.as_tensor(X, dtype=torch.float64)
        lam = check_certificate_assumptions(net.activation, Xd)
        values["v"] = torch.ones(S, *_shape(net, "v"), dtype=torch.float64)
        f0 = _set_output_bias(net, values, Xd, y, needs_bias)
        Ms, thresholds = [], []
        for k in range(S):
            member = {name: t[k] for name, t in values.items()}
            if net.depth:
                member["W1"] = torch.zeros(_shape(net, "W1"), dtype=torch.float64)
            if net.bias:
                member.update({f"b{ell}": torch.zeros(net.widths[ell - 1], dtype=torch.float64)
                               for ell in range(1, net.depth + 1)})
            member["v"] = torch.full(_shape(net, "v"), 2.0 * radius + 1.0, dtype=torch.float64)  # any M > r
            bound = first_layer_bound(member, Xd, radius, net.activation, net.depth, net.bias, lam)
            threshold = bound.output_scale_threshold(float(f0[k]), radius)
            if threshold is None:
                raise ZerolossInputError(f"radius: must be below the smallest hidden weight; {bound.reason}")
            thresholds.append(threshold)
            Ms.append(radius + (threshold - radius) / math.sqrt(rho))
        info["threshold"] = thresholds
    else:
        require(float(M) > 0.0, "M", "must be a positive output scale", M)
        Ms = [float(M)] * S
    values["v"] = torch.stack([torch.full(_shape(net, "v"), m, dtype=torch.float64) for m in Ms])
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
INITIALISERS: dict[str, Initialiser] = {
    "positive": positive,
    "kaiming": kaiming,
    "xavier": xavier,
    "lecun": lecun,
    "torch_default": torch_default,
    "gaussian": gaussian,
}


def initialise(net: FeedForward, name: str, seed: int | None = None, **options) -> dict:
    """Apply the initialiser ``name`` to ``net`` in place, member k drawing from seed + k (default: net.seed).

    Args:
        net: a :class:`~zeroloss.nets.FeedForward`.
        name: a key of :data:`INITIALISERS`.
        seed: seed of member 0 (default ``net.seed``).
        **options: passed to the initialiser (``positive``: X, y, radius, hidden, M, rho).

    Returns:
        Facts about the draw (``{"init": name, "seed": seed, …}``), also stored as ``net.init_info``.

    Example:
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
