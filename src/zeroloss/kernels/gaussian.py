"""Bivariate Gaussian expectations E[g(u) h(v)], (u, v) ∼ N(0, A), for every 2×2 block of a kernel at once.

The infinite-width recursions of Du et al. (docs/theory.md §1.4) need, for every pair of inputs (i, j), the
expectation of g(u)h(v) under the block ``A = [[a, b], [b, c]]`` with a = K_ii, b = K_ij, c = K_jj, for
g, h ∈ {σ, σ′}, and the ResNet's b terms need E[σ(u)], u ∼ N(0, a). Pairs are named by two letters:
``"ss"`` = E[σ(u)σ(v)], ``"dd"`` = E[σ′(u)σ′(v)], ``"sd"`` = E[σ(u)σ′(v)]. Three evaluation methods, all float64:

* ``"closed"`` — closed forms from :data:`CLOSED_FORMS` (a plain dict keyed by activation name):

    erf:  E[erf u erf v]   = (2/π) arcsin(2b / √((1+2a)(1+2c))),
          E[erf′u erf′v]   = (4/π) ((1+2a)(1+2c) − 4b²)^(−1/2),      E[erf u] = 0;
    relu: with ρ = b/√(ac), θ = arccos ρ (Cho & Saul's arc-cosine kernels of degree 1 and 0)
          E[relu u relu v] = √(ac) (sin θ + (π − θ) cos θ) / (2π),
          E[relu′u relu′v] = (π − θ) / (2π),                          E[relu u] = √(a / (2π)).

* ``"quadrature"`` — a tensor Gauss–Hermite rule on the Cholesky factor of each block: with z₁, z₂ i.i.d.
  N(0, 1), u = √a z₁ and v = β z₁ + γ z₂, β = b/√a, γ = √(c − b²/a), so

    E[g(u)h(v)] ≈ Σ_k Σ_l w_k w_l g(√a x_k) h(β x_k + γ x_l)

  over ``nodes`` probabilists' Hermite nodes x_k per axis (weights normalised to sum to 1). Degenerate blocks
  are handled without NaN: a = 0 gives β = 0 (u ≡ 0); |ρ| → 1 gives γ = 0 (γ² is clipped at 0, β at ±√c).
  The blocks are processed in chunks whose memory is bounded (:func:`quadrature_memory_bytes`).

* ``"table"`` — when every block has the same variances a = c = v (Du's unit-norm inputs make every hidden
  K_ii equal, docs/theory.md §1.4), F(ρ) = E[g(√v z₁) h(√v z₂)] with corr(z₁, z₂) = ρ is a function of one variable.
  It is tabulated by the same quadrature on a uniform ρ grid together with its derivative, which Price's
  theorem gives exactly, dF/dρ = v E[g′(u) h′(v)], and interpolated by cubic Hermite splines. The
  interpolation error is at most Δρ⁴ max|F⁗| / 384 (F⁗ = v⁴ E[g⁽⁴⁾h⁽⁴⁾] by Price again): below 1e-13 with the
  default grid for the smooth activations. Tables are cached per (activation, variance, pair, settings).
  This is what makes n = 2000 kernels of quadrature-only activations
  take seconds instead of minutes (the per-block rule costs nodes² evaluations for each of the n² blocks).

``method="auto"`` picks closed, else table (analytic σ and constant variances), else quadrature.

References:
    S. S. Du, J. D. Lee, H. Li, L. Wang, X. Zhai. Gradient Descent Finds Global Minima of Deep Neural Networks.
    ICML 2019 (the kernels K^(h)). C. K. I. Williams. Computing with infinite networks. NIPS 1997 (erf).
    Y. Cho, L. K. Saul. Kernel methods for deep learning. NIPS 2009 (arc-cosine). R. Price. A useful theorem
    for nonlinear devices having Gaussian inputs. IRE Trans. Inf. Theory, 1958.

Examples:
    >>> import torch
    >>> one = torch.ones(1, dtype=torch.float64)
    >>> out = bivariate_expectations(one, 0.5 * one, one, "erf", pairs=("ss",), method="quadrature")
    >>> ref = bivariate_expectations(one, 0.5 * one, one, "erf", pairs=("ss",), method="closed")
    >>> bool(torch.allclose(out["ss"], ref["ss"], atol=1e-12))
    True
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import torch

from zeroloss.activations import ACTIVATIONS, Activation, get_activation
from zeroloss.errors import ZerolossInputError, choice, positive_int

#: Gauss–Hermite nodes per axis by default. Measured errors per expectation at unit variance: softplus ~1e-14
#: already at 64 nodes (docs/theory.md §1.4: "60–80 reach about 1e-10"); tanh (poles at ±iπ/2, closer than softplus's
#: ±iπ) 1e-7 at 64, 7e-10 at 96, 1e-11 at 128. erf′ = e^{−u²} narrows as the variance grows (1e-5 at variance
#: 3 with 64 nodes), but erf uses its closed form. 96 keeps every registry activation near 1e-9 or better.
DEFAULT_NODES = 96
#: Intervals of the ρ grid of the "table" method (cubic Hermite error ≤ (2/1024)⁴ max|F⁗|/384 ≈ 4e-14·|F⁗|).
DEFAULT_TABLE_INTERVALS = 1024
#: Memory the quadrature may hold at once (bytes); chunks are sized from it before allocating.
DEFAULT_CHUNK_BYTES = 256 * 2**20
#: Two variances count as "the same" for the table method when they differ by at most this, relatively
#: (a few float64 round-offs; anything larger is a genuinely different block and takes the exact per-block rule).
EQUAL_VARIANCE_RTOL = 1e-13
#: numpy's Gauss–Hermite weights overflow to NaN beyond about 370 nodes; more are refused.
MAX_NODES = 360
PAIRS = ("ss", "dd", "sd")
METHODS = ("auto", "closed", "quadrature", "table")

Tensor = torch.Tensor


@dataclass(frozen=True)
class ClosedForm:
    """Closed forms of one activation: each a function of broadcastable float64 tensors (a, b, c) or (a,)."""

    ss: Callable[[Tensor, Tensor, Tensor], Tensor]
    dd: Callable[[Tensor, Tensor, Tensor], Tensor]
    mean: Callable[[Tensor], Tensor]


def _erf_ss(a: Tensor, b: Tensor, c: Tensor) -> Tensor:
    arg = 2.0 * b / torch.sqrt((1.0 + 2.0 * a) * (1.0 + 2.0 * c))
    return (2.0 / math.pi) * torch.asin(arg.clamp(-1.0, 1.0))


def _erf_dd(a: Tensor, b: Tensor, c: Tensor) -> Tensor:
    det = (1.0 + 2.0 * a) * (1.0 + 2.0 * c) - 4.0 * b * b
    return (4.0 / math.pi) * torch.rsqrt(det)  # det ≥ 1 + 2a + 2c > 0 for any PSD block: never singular


def _erf_mean(a: Tensor) -> Tensor:
    return torch.zeros_like(a)


def _relu_angle(a: Tensor, b: Tensor, c: Tensor) -> tuple[Tensor, Tensor]:
    norm = torch.sqrt(a.clamp_min(0.0) * c.clamp_min(0.0))
    rho = torch.where(norm > 0, b / torch.where(norm > 0, norm, torch.ones_like(norm)), torch.zeros_like(b))
    return norm, torch.arccos(rho.clamp(-1.0, 1.0))


def _relu_ss(a: Tensor, b: Tensor, c: Tensor) -> Tensor:
    norm, theta = _relu_angle(a, b, c)
    return norm * (torch.sin(theta) + (math.pi - theta) * torch.cos(theta)) / (2.0 * math.pi)


def _relu_dd(a: Tensor, b: Tensor, c: Tensor) -> Tensor:
    norm, theta = _relu_angle(a, b, c)
    # relu′(0) = 0 in zeroloss.activations, so a zero-variance side gives 0 (as the quadrature does).
    return torch.where(norm > 0, (math.pi - theta) / (2.0 * math.pi), torch.zeros_like(theta))


def _relu_mean(a: Tensor) -> Tensor:
    return torch.sqrt(a.clamp_min(0.0) / (2.0 * math.pi))


#: Closed forms by activation name (a plain dict; add an entry to give an activation a closed form).
CLOSED_FORMS: dict[str, ClosedForm] = {
    "erf": ClosedForm(_erf_ss, _erf_dd, _erf_mean),
    "relu": ClosedForm(_relu_ss, _relu_dd, _relu_mean),
}


def hermite_rule(nodes: int, device: torch.device | str | None = None) -> tuple[Tensor, Tensor]:
    """Probabilists' Gauss–Hermite nodes x (nodes,) and weights w (nodes,), Σ w = 1: E f(z) ≈ Σ_k w_k f(x_k)."""
    nodes = positive_int(nodes, "nodes")
    if nodes > MAX_NODES:
        raise ZerolossInputError(f"nodes: must be at most {MAX_NODES} (Gauss–Hermite weights overflow beyond), "
                                 f"got {nodes}")
    x, w = np.polynomial.hermite_e.hermegauss(nodes)
    w = w / w.sum()
    return (torch.from_numpy(x).to(device=device, dtype=torch.float64),
            torch.from_numpy(w).to(device=device, dtype=torch.float64))


def _functions(act: Activation) -> dict[str, Callable[[Tensor], Tensor]]:
    return {"s": act.fn, "d": act.d1, "2": act.d2}


def quadrature_memory_bytes(blocks: int, nodes: int = DEFAULT_NODES, block_bytes: int = DEFAULT_CHUNK_BYTES) -> int:
    """Peak memory of :func:`bivariate_expectations` with the quadrature for ``blocks`` blocks, in bytes.

    Each chunk holds about four (chunk, nodes, nodes) float64 arrays (v, σ(v), σ′(v) and a product); the chunk
    is the largest that keeps this under ``block_bytes`` (at least one block), plus the (blocks,) inputs and
    outputs (eight arrays).
    """
    return quadrature_chunk_bytes(blocks, nodes, block_bytes) + 8 * blocks * 8


def quadrature_chunk_bytes(blocks: int, nodes: int = DEFAULT_NODES, block_bytes: int = DEFAULT_CHUNK_BYTES) -> int:
    """Memory of one quadrature chunk alone: (chunk, nodes, nodes) arrays, at most ``block_bytes`` (≥ one block)."""
    per_block = 4 * nodes * nodes * 8
    return max(1, min(blocks, block_bytes // per_block)) * per_block


class _SqrtFlatAtZero(torch.autograd.Function):
    """√x whose derivative is taken as 0 at x = 0 (not ∞): γ = √(c − b²/a) is 0 on every block with |ρ| = 1, and
    stays 0 whatever moves the entries (a diagonal pair, or x and −x), so autograd through the rule
    (:mod:`zeroloss.gp`) must not multiply ∞ by 0 there."""

    @staticmethod
    def forward(ctx, x: Tensor) -> Tensor:  # type: ignore[override]
        root = torch.sqrt(x)
        ctx.save_for_backward(root)
        return root

    @staticmethod
    def backward(ctx, g: Tensor) -> Tensor:  # type: ignore[override]
        (root,) = ctx.saved_tensors
        return torch.where(root > 0, g / (2 * torch.where(root > 0, root, torch.ones_like(root))), torch.zeros_like(g))


def _sqrt_flat_at_zero(x: Tensor) -> Tensor:
    return _SqrtFlatAtZero.apply(x) if x.requires_grad else torch.sqrt(x)


def _quadrature(a: Tensor, b: Tensor, c: Tensor, fns: dict[str, Callable[[Tensor], Tensor]],
                pairs: Sequence[str], nodes: int, block_bytes: int) -> dict[str, Tensor]:
    """Tensor Gauss–Hermite rule on each block's Cholesky factor; a, b, c flat (B,) float64.

    A pair is two letters of ``fns`` (``s`` σ, ``d`` σ′, ``2`` σ″): E[fns[p0](u) fns[p1](v)].
    """
    x, w = hermite_rule(nodes, a.device)
    sa = torch.sqrt(a.clamp_min(0.0))
    sc = torch.sqrt(c.clamp_min(0.0))
    safe = torch.where(sa > 0, sa, torch.ones_like(sa))
    beta = torch.where(sa > 0, b / safe, torch.zeros_like(b))
    beta = torch.maximum(torch.minimum(beta, sc), -sc)  # |β| ≤ √c for any PSD block (round-off clipped)
    gamma = _sqrt_flat_at_zero((c - beta * beta).clamp_min(0.0))
    out = {p: torch.empty_like(a) for p in pairs}
    chunk = max(1, block_bytes // (4 * nodes * nodes * 8))
    ww = w[:, None] * w[None, :]
    for start in range(0, a.numel(), chunk):
        sl = slice(start, start + chunk)
        u = sa[sl, None] * x  # (B, N)
        v = beta[sl, None, None] * x[:, None] + gamma[sl, None, None] * x[None, :]  # (B, N, N): [k, l]
        cache_u: dict[str, Tensor] = {}
        cache_v: dict[str, Tensor] = {}
        for p in pairs:
            g, h = p[0], p[1]
            if g not in cache_u:
                cache_u[g] = fns[g](u)
            if h not in cache_v:
                cache_v[h] = fns[h](v)
            out[p][sl] = torch.einsum("bk,bkl,kl->b", cache_u[g], cache_v[h], ww)
        del u, v, cache_u, cache_v
    return out


def _price_derivative(pair: str) -> str:
    """The pair whose expectation is dF/db by Price's theorem: (σσ)′ = σ′σ′, (σ′σ′)′ = σ″σ″, (σσ′)′ = σ′σ″."""
    step = {"s": "d", "d": "2"}
    return step[pair[0]] + step[pair[1]]


def correlation_table(variance: float, act: Activation, pair: str, nodes: int = DEFAULT_NODES,
                      intervals: int = DEFAULT_TABLE_INTERVALS, device: torch.device | str | None = None,
                      block_bytes: int = DEFAULT_CHUNK_BYTES) -> tuple[Tensor, Tensor]:
    """F(ρ_k) and dF/dρ(ρ_k) on the uniform grid ρ_k = −1 + 2k/intervals, k = 0..intervals (both (intervals+1,)).

    F(ρ) = E[g(u)h(v)] with a = c = variance and b = ρ·variance, computed by the per-block quadrature; the
    derivative is variance · E[g′(u)h′(v)] (Price's theorem), by the same rule.
    """
    rho = torch.linspace(-1.0, 1.0, intervals + 1, dtype=torch.float64, device=device)
    a = torch.full_like(rho, float(variance))
    deriv = _price_derivative(pair)
    res = _quadrature(a, rho * variance, a, _functions(act), [pair, deriv], nodes, block_bytes)
    return res[pair], variance * res[deriv]


_TABLE_CACHE: dict[tuple, tuple[Tensor, Tensor]] = {}
#: Tables kept (each is two (intervals + 1,) float64 vectors: a few tens of kB).
_TABLE_CACHE_SIZE = 256


def _cached_table(variance: float, act: Activation, pair: str, nodes: int, intervals: int,
                  device: torch.device, block_bytes: int) -> tuple[Tensor, Tensor]:
    """:func:`correlation_table`, cached for registry activations (keyed by name, variance, pair, settings)."""
    if ACTIVATIONS.get(act.name) is not act:
        return correlation_table(variance, act, pair, nodes, intervals, device, block_bytes)
    # variances equal to 13 significant digits share a table (the table method already treats variances within
    # EQUAL_VARIANCE_RTOL as equal; a 1e-13 relative variance change moves F by ~1e-13)
    key = (act.name, f"{variance:.13g}", pair, nodes, intervals, str(device))
    if key not in _TABLE_CACHE:
        if len(_TABLE_CACHE) >= _TABLE_CACHE_SIZE:
            _TABLE_CACHE.pop(next(iter(_TABLE_CACHE)))
        _TABLE_CACHE[key] = correlation_table(variance, act, pair, nodes, intervals, device, block_bytes)
    return _TABLE_CACHE[key]


def _hermite_interpolate(values: Tensor, slopes: Tensor, rho: Tensor) -> Tensor:
    """Cubic Hermite interpolation of a uniform-grid table on [−1, 1] at ρ (any shape, clipped to [−1, 1])."""
    intervals = values.numel() - 1
    step = 2.0 / intervals
    pos = (rho.clamp(-1.0, 1.0) + 1.0) / step
    k = pos.floor().clamp(0, intervals - 1).long()
    t = pos - k
    t2, t3 = t * t, t * t * t
    h00 = 2 * t3 - 3 * t2 + 1
    h10 = t3 - 2 * t2 + t
    h01 = -2 * t3 + 3 * t2
    h11 = t3 - t2
    return h00 * values[k] + h10 * step * slopes[k] + h01 * values[k + 1] + h11 * step * slopes[k + 1]


def _common_variance(a: Tensor, c: Tensor) -> float | None:
    """The shared variance when every a and c equal one value v > 0 (within :data:`EQUAL_VARIANCE_RTOL`).

    a and c may be broadcast views (a (r, 1), c (1, n)): their extremes are taken without materialising them.
    """
    if a.numel() == 0 or c.numel() == 0:
        return None
    lo = min(float(a.detach().min()), float(c.detach().min()))
    hi = max(float(a.detach().max()), float(c.detach().max()))
    if lo > 0 and hi - lo <= EQUAL_VARIANCE_RTOL * hi:
        return 0.5 * (lo + hi)
    return None


def resolve_method(activation: str | Activation, pairs: Sequence[str], method: str, a: Tensor,
                   c: Tensor) -> str:
    """The concrete method (``"closed"``, ``"table"`` or ``"quadrature"``) that ``method`` means for these blocks.

    ``"auto"`` picks the closed form when the activation has one for every pair, else the ρ-table when σ is
    analytic and every variance in a and c is the same, else the per-block quadrature. An explicit method is
    returned as it is, once it is checked to apply.

    Raises:
        ZerolossInputError: ``closed`` without a closed form, ``table`` with unequal variances.
    """
    act = get_activation(activation)
    choice(method, "method", METHODS)
    has_closed = act.name in CLOSED_FORMS and all(p in ("ss", "dd") for p in pairs)
    if method == "closed" and not has_closed:
        raise ZerolossInputError(f"method: 'closed' needs an activation among {', '.join(CLOSED_FORMS)} and pairs "
                                 f"among ss, dd, got {act.name!r} with {list(pairs)}")
    if method == "closed" or (method == "auto" and has_closed):
        return "closed"
    equal = _common_variance(torch.as_tensor(a), torch.as_tensor(c)) is not None
    if method == "table" and not equal:
        raise ZerolossInputError("method: 'table' needs every block to have the same variances a = c > 0")
    if method == "table" or (method == "auto" and equal and act.analytic):
        return "table"
    return "quadrature"


def bivariate_expectations(
    a: Tensor,
    b: Tensor,
    c: Tensor,
    activation: str | Activation,
    pairs: Sequence[str] = ("ss", "dd"),
    nodes: int = DEFAULT_NODES,
    method: str = "auto",
    block_bytes: int = DEFAULT_CHUNK_BYTES,
    table_intervals: int = DEFAULT_TABLE_INTERVALS,
) -> dict[str, Tensor]:
    """E[g(u)h(v)] for (u, v) ∼ N(0, [[a, b], [b, c]]), elementwise over broadcastable a, b, c.

    Args:
        a, b, c: the blocks' entries A₁₁, A₁₂, A₂₂ (any broadcastable shapes; cast to float64).
        activation: registry name or :class:`~zeroloss.activations.Activation`.
        pairs: among ``"ss"`` (σσ), ``"dd"`` (σ′σ′), ``"sd"`` (σ(u)σ′(v)).
        nodes: Gauss–Hermite nodes per axis (quadrature and table).
        method: ``"auto"``, ``"closed"``, ``"quadrature"`` or ``"table"`` (see the module docstring).
        block_bytes: memory bound of one quadrature chunk.
        table_intervals: ρ-grid intervals of the table method.

    Returns:
        pair → float64 tensor of the broadcast shape.

    Raises:
        ZerolossInputError: unknown pair or method; ``closed`` for an activation (or pair) without a closed
            form; ``table`` when the variances are not all equal; NaN/inf entries.
    """
    act = get_activation(activation)
    choice(method, "method", METHODS)
    for p in pairs:
        choice(p, "pairs", PAIRS)
    nodes = positive_int(nodes, "nodes")
    a, b, c = (torch.as_tensor(t, dtype=torch.float64) for t in (a, b, c))
    for name, t in (("a", a), ("b", b), ("c", c)):
        if not torch.isfinite(t).all():
            raise ZerolossInputError(f"{name}: block entries must be finite, got NaN or inf")
    a, b, c = torch.broadcast_tensors(a, b, c)
    shape = a.shape
    method = resolve_method(act, pairs, method, a, c)
    if method == "closed":
        closed = CLOSED_FORMS[act.name]
        return {p: getattr(closed, p)(a, b, c) for p in pairs}
    if method == "table":
        variance = _common_variance(a, c)
        assert variance is not None
        rho = b / variance
        out = {}
        for p in pairs:
            values, slopes = _cached_table(variance, act, p, nodes, table_intervals, a.device, block_bytes)
            out[p] = _hermite_interpolate(values, slopes, rho)
        return out
    res = _quadrature(a.reshape(-1), b.reshape(-1), c.reshape(-1), _functions(act), pairs, nodes, block_bytes)
    return {p: v.reshape(shape) for p, v in res.items()}


def gaussian_mean(variance: Tensor, activation: str | Activation, nodes: int = DEFAULT_NODES,
                  method: str = "auto") -> Tensor:
    """E[σ(u)], u ∼ N(0, variance), elementwise (float64): the ResNet's b-term expectation (docs/theory.md §1.4).

    Closed form when registered (``method="auto"`` or ``"closed"``), else a 1-D Gauss–Hermite rule.

    Examples:
        >>> round(float(gaussian_mean(torch.tensor(1.0), "relu")), 6)  # 1/√(2π)
        0.398942
    """
    act = get_activation(activation)
    choice(method, "method", ("auto", "closed", "quadrature"))
    var = torch.as_tensor(variance, dtype=torch.float64)
    closed = CLOSED_FORMS.get(act.name)
    if method == "closed" and closed is None:
        raise ZerolossInputError(f"method: 'closed' needs an activation among {', '.join(CLOSED_FORMS)}, "
                                 f"got {act.name!r}")
    if closed is not None and method != "quadrature":
        return closed.mean(var)
    x, w = hermite_rule(nodes, var.device)
    return act.fn(torch.sqrt(var.clamp_min(0.0)).unsqueeze(-1) * x) @ w


def kernel_expectations(
    K: Tensor,
    diag: Tensor,
    activation: str | Activation,
    pairs: Sequence[str] = ("ss", "dd"),
    nodes: int = DEFAULT_NODES,
    method: str = "auto",
    block_bytes: int = DEFAULT_CHUNK_BYTES,
) -> dict[str, Tensor]:
    """Expectations over every block of a kernel: A_ij = [[diag_i, K_ij], [K_ji, diag_j]].

    Args:
        K: (n, n, *rest) symmetric in its first two axes (rest = () for dense nets, (p,) for position-wise
            covariances of the convolutional ResNet).
        diag: (n, *rest), the variances (usually K's diagonal).
        activation, pairs, nodes, method, block_bytes: as :func:`bivariate_expectations`.

    Returns:
        pair → (n, n, *rest) float64. With the per-block quadrature only the blocks i ≤ j are integrated and
        mirrored (only for the symmetric pairs ss and dd; ``sd`` is integrated on every block).

    Examples:
        >>> X = torch.eye(3, dtype=torch.float64)
        >>> out = kernel_expectations(X @ X.T, torch.ones(3, dtype=torch.float64), "relu", pairs=("ss",))
        >>> out["ss"].shape
        torch.Size([3, 3])
    """
    K = torch.as_tensor(K, dtype=torch.float64)
    diag = torch.as_tensor(diag, dtype=torch.float64)
    n = K.shape[0]
    a = diag[:, None]
    c = diag[None, :]
    act = get_activation(activation)
    symmetric = all(p in ("ss", "dd") for p in pairs)
    direct = resolve_method(act, pairs, method, diag, diag) == "quadrature"
    if not (direct and symmetric and n > 1):
        return bivariate_expectations(a, K, c, act, pairs, nodes, method, block_bytes)
    i, j = torch.triu_indices(n, n, device=K.device)
    res = bivariate_expectations(diag[i], K[i, j], diag[j], act, pairs, nodes, "quadrature", block_bytes)
    out = {}
    for p, v in res.items():
        full = torch.empty_like(K)
        full[i, j] = v
        full[j, i] = v
        out[p] = full
    return out
