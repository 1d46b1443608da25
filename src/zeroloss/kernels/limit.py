"""Infinite-width kernels of Du et al.'s three nets: K^(H) ("du"), the NNGP and the NTK; λ₀ (MATH §1.4).

The three kinds are defined by their finite-width meaning, for the nets exactly as :mod:`zeroloss.nets.du`
writes them (width m → ∞, weights N(0, 1), the scale in the architecture):

* ``"du"``   — the limit of G^(H) at initialisation (Du et al.'s K^(H); λ₀ = λ_min of it);
* ``"nngp"`` — the limit of E[f(x_i) f(x_j)] over the initialisation (= the limit of the output-layer Gram
  G^(H+1) = ⟨x_i^(H), x_j^(H)⟩, the covariance of f given the hidden weights);
* ``"ntk"``  — the limit of the full Gram Σ_{h=1}^{H+1} G^(h) (the neural tangent kernel).

Every per-layer limit is available from :func:`limit_gram_by_layer` (the limit of
:func:`zeroloss.kernels.empirical.gram_by_layer`). Notation: Σ^(h) the limit of ⟨x_i^(h), x_j^(h)⟩ (pixel-wise
for the convolutional net), Ė^(h) = E[σ′(u)σ′(v)] with (u, v) from the block of the pre-activations of layer h.

Fully connected [MATH §1.4 for K^(H); the NNGP/NTK are the standard recursions, derived for this net]:

    Σ^(0) = XXᵀ,   Σ^(h) = c_σ E_{Σ^(h−1)}[σσ],   Ė^(h) = E_{Σ^(h−1)}[σ′σ′]
    G^(h) → Σ^(h−1) ⊙ Π_{l=h}^{H} c_σ Ė^(l)  (h ≤ H),   G^(H+1) → Σ^(H)
    du = Σ^(H−1) ⊙ c_σ Ė^(H),   nngp = Σ^(H),   ntk = Σ_h (the above)

ResNet and convolutional ResNet [derived; checked against finite-width Monte Carlo in tests/test_limit_mc.py].
The ResNet is the convolutional ResNet with one position and kernel size 1, so one recursion serves both. With
r = c_res/H, the pixel-diagonal covariances Σ^(h)_ij[l] = lim ⟨x_i^(h)[:, l], x_j^(h)[:, l]⟩ (n, n, p),
Q = Patch(Σ) (Q[l] = Σ_k Σ[l + k], k = −(q−1)/2..(q−1)/2, out-of-range terms dropped), b^(h)_i[l] the limit
of (1/√m) Σ_r x^(h)_{i,r,l}, and every expectation over the block of Q^(h−1) at position l:

    Σ^(1) = c_σ E_{Q^(0)}[σσ],   b^(1) = √c_σ E[σ(u)],   Q^(0)[l] = Σ_k ⟨x_i[:, l+k], x_j[:, l+k]⟩
    Σ^(h) = Σ^(h−1) + r (b_i^(h−1) E σ(v) + E σ(u) b_j^(h−1)) + r² E[σσ],   b^(h) = b^(h−1) + r E σ(u)
    backward (normalised ⟨∂f/∂x^(h)_i[:, l], ∂f/∂x^(h)_j[:, l]⟩ / m; position-diagonal because a's positions
    are independent and the patch sum only shifts along diagonals):
    P^(H) = 1,   P^(h−1) = P^(h) + r² Patch(Ė^(h) ⊙ P^(h))
    G^(h) → Σ_l Q^(h−1)[l] · r² Ė^(h)[l] P^(h)[l]  (2 ≤ h ≤ H),   G^(1) → Σ_l Q^(0)[l] · c_σ Ė^(1)[l] P^(1)[l]
    G^(H+1) → Σ_l Σ^(H)[l]

Only pixel-diagonal covariances enter, because f sums a (m × p) output-weight matrix with independent entries
against x^(H) (no pooling), so cross-position terms average out. The top-layer "du" kernel reproduces MATH's
K^(H) = r² Σ_l Q^(H−1)[l] Ė^(H)[l]; for H = 1 the ResNets have no residual layer and K^(1) uses c_σ (the FC
two-layer kernel). The backward recursion uses the gradient-independence property of these nets (the output
weights a are not reused in the forward pass, and E[σ″(z) ∂f/∂x] = 0 since ∂f/∂x is linear in a).

References:
    S. S. Du, J. D. Lee, H. Li, L. Wang, X. Zhai. Gradient Descent Finds Global Minima of Deep Neural Networks.
    ICML 2019. A. Jacot, F. Gabriel, C. Hongler. Neural Tangent Kernel. NeurIPS 2018. R. Novak et al. Bayesian
    deep convolutional networks with many channels are Gaussian processes. ICLR 2019. G. Yang. Tensor Programs II.

Example:
    >>> from zeroloss.data import sphere_data
    >>> X, _ = sphere_data(n=5, d=3, seed=0)
    >>> K = limit_kernel(X, net="fc", depth=2, activation="erf", kind="du")
    >>> K.shape, K.dtype
    (torch.Size([5, 5]), torch.float64)
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from zeroloss.activations import Activation, get_activation
from zeroloss.data import validate_inputs
from zeroloss.errors import ZerolossInputError, choice, positive_int, require
from zeroloss.gaussian import (
    DEFAULT_MAX_BYTES,
    DEFAULT_NODES,
    gaussian_mean,
    kernel_expectations,
    quadrature_memory_bytes,
)
from zeroloss.precision import no_tf32
from zeroloss.spectrum import lambda_min

NETS = ("fc", "resnet", "conv-resnet")
KINDS = ("du", "nngp", "ntk")

Tensor = torch.Tensor


@dataclass(frozen=True)
class _Expect:
    """The Gaussian-expectation settings of one kernel computation."""

    act: Activation
    nodes: int
    method: str
    max_bytes: int

    def pairs(self, K: Tensor, diag: Tensor, pairs: tuple[str, ...]) -> dict[str, Tensor]:
        return kernel_expectations(K, diag, self.act, pairs, self.nodes, self.method, self.max_bytes)

    def mean(self, diag: Tensor) -> Tensor:
        method = "quadrature" if self.method in ("quadrature", "table") else self.method
        return gaussian_mean(diag, self.act, self.nodes, method)


def _diag(K: Tensor) -> Tensor:
    """(n, n, *rest) → (n, *rest): the diagonal over the first two axes."""
    idx = torch.arange(K.shape[0], device=K.device)
    return K[idx, idx]


def _fc_layers(K0: Tensor, depth: int, e: _Expect, layers: set[int]) -> dict[int, Tensor]:
    """Limits of the FC net's per-layer Grams G^(h) for h in ``layers`` (1..H+1)."""
    H, c = depth, e.act.c_sigma
    top = max(layers)
    low = min(layers)
    sigma = [K0]  # Σ^(0), Σ^(1), ...
    dots: dict[int, Tensor] = {}  # c_σ Ė^(h)
    for h in range(1, H + 1):
        need_ss = h <= H - 1 or top == H + 1
        need_dd = h >= low
        pairs = tuple(p for p, need in (("ss", need_ss), ("dd", need_dd)) if need)
        if not pairs:
            continue
        prev = sigma[h - 1]
        res = e.pairs(prev, _diag(prev), pairs)
        if need_ss:
            sigma.append(c * res["ss"])
        if need_dd:
            dots[h] = c * res["dd"]
    out: dict[int, Tensor] = {}
    if H + 1 in layers:
        out[H + 1] = sigma[H]
    D: Tensor | None = None  # Π_{l=h}^{H} c_σ Ė^(l)
    for h in range(H, low - 1, -1):
        D = dots[h] if D is None else D * dots[h]
        if h in layers:
            out[h] = sigma[h - 1] * D
    return dict(sorted(out.items()))


def _patch(M: Tensor, kernel_size: int) -> Tensor:
    """Patch(M)[..., l] = Σ_k M[..., l + k], k = −(q−1)/2..(q−1)/2, out-of-range terms dropped (zero padding)."""
    if kernel_size == 1:
        return M
    half = (kernel_size - 1) // 2
    p = M.shape[-1]
    out = M.clone()
    for k in range(1, half + 1):
        if k >= p:
            break
        out[..., : p - k] += M[..., k:]
        out[..., k:] += M[..., : p - k]
    return out


def _resnet_layers(P0: Tensor, depth: int, e: _Expect, layers: set[int], c_res: float,
                   kernel_size: int) -> dict[int, Tensor]:
    """Limits of the (convolutional) ResNet's per-layer Grams; P0 (n, n, p) pixel-diagonal input covariance."""
    H, c, r = depth, e.act.c_sigma, c_res / depth
    top, low = max(layers), min(layers)
    Q = [_patch(P0, kernel_size)]  # Q^(0), Q^(1), ...
    dd: dict[int, Tensor] = {}  # Ė^(h) at the block of Q^(h−1)
    sigma: Tensor | None = None
    b: Tensor | None = None
    last_forward = H if top == H + 1 else H - 1
    for h in range(1, H + 1):
        need_ss = h <= last_forward
        need_dd = h >= low
        pairs = tuple(p for p, need in (("ss", need_ss), ("dd", need_dd)) if need)
        q = Q[h - 1]
        qd = _diag(q)
        res = e.pairs(q, qd, pairs)
        if need_dd:
            dd[h] = res["dd"]
        if not need_ss:
            continue
        mean = e.mean(qd)  # (n, p): E σ(u_i[l]), u ∼ N(0, Q_ii[l])
        if h == 1:
            sigma = c * res["ss"]
            b = math.sqrt(c) * mean
        else:
            assert sigma is not None and b is not None
            sigma = sigma + r * (b[:, None] * mean[None, :] + mean[:, None] * b[None, :]) + r * r * res["ss"]
            b = b + r * mean
        Q.append(_patch(sigma, kernel_size))
    out: dict[int, Tensor] = {}
    if H + 1 in layers:
        assert sigma is not None
        out[H + 1] = sigma.sum(-1)
    P: Tensor | None = None
    for h in range(H, low - 1, -1):
        P = torch.ones_like(dd[h]) if P is None else P + r * r * _patch(dd[h + 1] * P, kernel_size)
        if h in layers:
            scale = c if h == 1 else r * r
            out[h] = (Q[h - 1] * scale * dd[h] * P).sum(-1)
    return dict(sorted(out.items()))


def _check_X(X: Tensor, net: str, device: torch.device | str | None) -> Tensor:
    X = validate_inputs(X, unit_norm=False, check_parallel=False)
    if net == "conv-resnet":
        require(X.ndim == 3, "X", "conv-resnet needs inputs of shape (n, channels, positions)", tuple(X.shape))
    else:
        require(X.ndim == 2, "X", f"{net} needs inputs of shape (n, d)", tuple(X.shape))
    return X.to(device=device) if device is not None else X


def limit_gram_by_layer(
    X: Tensor,
    net: str = "fc",
    depth: int = 2,
    activation: str | Activation = "softplus",
    layers: str | int = "all",
    c_res: float = 0.5,
    kernel_size: int = 3,
    nodes: int = DEFAULT_NODES,
    method: str = "auto",
    device: torch.device | str | None = None,
    max_bytes: int = DEFAULT_MAX_BYTES,
) -> dict[int, Tensor]:
    """The m → ∞ limit of every selected per-layer Gram G^(h) at initialisation: 1-based layer → (n, n) float64.

    Args:
        X: (n, d), or (n, channels, positions) for ``net="conv-resnet"`` (any finite non-zero inputs; Du's
            theory assumes unit norms).
        net: ``"fc"``, ``"resnet"`` or ``"conv-resnet"``.
        depth: H.
        activation: registry name or Activation.
        layers: ``"all"`` (1..H+1), ``"last"`` (H), ``"output"`` (H+1) or an int h in 1..H+1.
        c_res: residual scale of the ResNets, in (0, 1).
        kernel_size: q of the convolutional ResNet (odd).
        nodes, method, max_bytes: Gaussian-expectation settings (:mod:`zeroloss.gaussian`).
        device: where to compute (default: X's device).

    Returns:
        dict layer → (n, n) float64 tensor, the limit of ``gram_by_layer(net, X, layer)[h]``.
    """
    choice(net, "net", NETS)
    H = positive_int(depth, "depth")
    act = get_activation(activation)
    require(isinstance(c_res, (int, float)) and 0.0 < c_res < 1.0, "c_res", "must be in (0, 1)", c_res)
    q = positive_int(kernel_size, "kernel_size")
    require(q % 2 == 1, "kernel_size", "must be an odd positive integer", kernel_size)
    if layers == "all":
        chosen = set(range(1, H + 2))
    elif layers == "last":
        chosen = {H}
    elif layers == "output":
        chosen = {H + 1}
    elif isinstance(layers, int) and not isinstance(layers, bool) and 1 <= layers <= H + 1:
        chosen = {layers}
    else:
        raise ZerolossInputError(f"layers: must be 'all', 'last', 'output' or an integer in 1..{H + 1}, "
                                 f"got {layers!r}")
    X = _check_X(X, net, device)
    e = _Expect(act, positive_int(nodes, "nodes"), method, max_bytes)
    with no_tf32():
        if net == "fc":
            return _fc_layers(X @ X.T, H, e, chosen)
        if net == "resnet":
            return _resnet_layers((X @ X.T).unsqueeze(-1), H, e, chosen, float(c_res), 1)
        P0 = torch.einsum("ics,jcs->ijs", X, X)  # (n, n, p): ⟨x_i[:, s], x_j[:, s]⟩
        return _resnet_layers(P0, H, e, chosen, float(c_res), q)


def limit_kernel(
    X: Tensor,
    net: str = "fc",
    depth: int = 2,
    activation: str | Activation = "softplus",
    kind: str = "du",
    c_res: float = 0.5,
    kernel_size: int = 3,
    nodes: int = DEFAULT_NODES,
    method: str = "auto",
    device: torch.device | str | None = None,
    max_bytes: int = DEFAULT_MAX_BYTES,
) -> Tensor:
    """Infinite-width kernel of one of Du et al.'s nets on inputs X: (n, n) float64.

    Args:
        X: (n, d), or (n, channels, positions) for the convolutional ResNet.
        net: ``"fc"``, ``"resnet"`` or ``"conv-resnet"``.
        depth: H (hidden layers).
        activation: registry name or Activation.
        kind: ``"du"`` (lim G^(H), Du's K^(H)), ``"nngp"`` (lim E[f fᵀ]) or ``"ntk"`` (lim Σ_h G^(h)).
        c_res: residual scale of the ResNets, in (0, 1) (default 0.5, as :mod:`zeroloss.nets.du`).
        kernel_size: q of the convolutional ResNet.
        nodes: Gauss–Hermite nodes per axis where no closed form exists.
        method: ``"auto"``, ``"closed"``, ``"quadrature"`` or ``"table"`` (:mod:`zeroloss.gaussian`).
        device: where to compute (default: X's device). The result stays there.
        max_bytes: memory bound of one quadrature chunk (see :func:`limit_kernel_memory_bytes`).

    Returns:
        (n, n) float64 symmetric PSD tensor.

    Example:
        >>> from zeroloss.data import sphere_data
        >>> X, _ = sphere_data(n=4, d=3, seed=1)
        >>> K = limit_kernel(X, net="resnet", depth=3, activation="relu", kind="ntk")
        >>> bool(torch.allclose(K, K.T))
        True
    """
    choice(kind, "kind", KINDS)
    layers = {"du": "last", "nngp": "output", "ntk": "all"}[kind]
    per_layer = limit_gram_by_layer(X, net, depth, activation, layers, c_res, kernel_size, nodes, method,
                                    device, max_bytes)
    total = None
    for K in per_layer.values():
        total = K if total is None else total + K
    assert total is not None
    return 0.5 * (total + total.T)


def lambda0(X: Tensor, net: str = "fc", depth: int = 2, activation: str | Activation = "softplus",
            c_res: float = 0.5, kernel_size: int = 3, nodes: int = DEFAULT_NODES, method: str = "auto",
            device: torch.device | str | None = None) -> float:
    """Du et al.'s λ₀ = λ_min(K^(H)) of the "du" kernel, in float64 (not clipped: round-off may make it < 0).

    Example:
        >>> from zeroloss.data import sphere_data
        >>> X, _ = sphere_data(n=6, d=4, seed=0)
        >>> lambda0(X, net="fc", depth=2, activation="erf") > 0
        True
    """
    K = limit_kernel(X, net, depth, activation, "du", c_res, kernel_size, nodes, method, device)
    return float(lambda_min(K))


def limit_kernel_memory_bytes(n: int, depth: int, positions: int = 1, nodes: int = DEFAULT_NODES,
                              max_bytes: int = DEFAULT_MAX_BYTES, quadrature: bool = True) -> int:
    """Upper estimate of the memory :func:`limit_kernel` needs, in bytes, stated before anything is allocated.

    The NTK recursion keeps one (n, n, positions) float64 array per layer for the backward pass (Σ^(h) or Q^(h))
    and one Ė^(h) per layer, plus about eight working arrays (expectations, interpolation temporaries, the
    accumulated kernel); add one quadrature chunk when no closed form or table applies (``quadrature=True``).

    Example:
        >>> limit_kernel_memory_bytes(2000, depth=5, quadrature=False) / 2**30  # GiB
        0.5364418029785156
    """
    arrays = (2 * positive_int(depth, "depth") + 8) * n * n * positions * 8
    chunk = quadrature_memory_bytes(n * (n + 1) // 2 * positions, nodes, max_bytes) if quadrature else 0
    return arrays + chunk
