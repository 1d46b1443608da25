"""The layer-by-layer infinite-width recursions of Du et al.'s nets, on one block of input pairs (docs/theory.md §1.4).

Every recursion here is *entrywise* in the pair (i, j): the only other things an entry needs are the variances
of its two inputs at each layer (the diagonal entries K_ii and K_jj) and, for the ResNets, per-input means. So a
kernel is computed in two passes (:mod:`zeroloss.kernels.limit` drives them):

1. the **diagonal pass** runs the recursion on the (n, *rest) diagonal alone — each pair (i, i) is its own
   variance — and records, layer by layer, the diagonal covariances and the Gaussian-expectation method;
2. the **block pass** runs the same recursion on a rectangle of pairs, rows × cols, of shape (r, c, *rest),
   taking the variances of its rows and columns from the diagonal pass.

That is what bounds the memory of large kernels: only one block's layer arrays are alive at a time.

Notation (as :mod:`zeroloss.kernels.limit`): Σ^(h) the limit of ⟨x_i^(h), x_j^(h)⟩ (pixel-diagonal (…, p) for the
convolutional net), Ė^(h) = E[σ′(u)σ′(v)] under the block of layer h's pre-activations, r = c_res/H, Q = Patch(Σ).

Fully connected:

    Σ^(0) = XXᵀ,   Σ^(h) = c_σ E_{Σ^(h−1)}[σσ],   Ė^(h) = E_{Σ^(h−1)}[σ′σ′]
    G^(h) → Σ^(h−1) ⊙ Π_{l=h}^{H} c_σ Ė^(l)  (h ≤ H),   G^(H+1) → Σ^(H)

(Convolutional) ResNet, expectations under Q^(h−1) at each position l:

    Σ^(1) = c_σ E[σσ],   b^(1) = √c_σ E[σ(u)]
    Σ^(h) = Σ^(h−1) + r (b_i^(h−1) E σ(v) + E σ(u) b_j^(h−1)) + r² E[σσ],   b^(h) = b^(h−1) + r E σ(u)
    P^(H) = 1,   P^(h−1) = P^(h) + r² Patch(Ė^(h) ⊙ P^(h))
    G^(h) → Σ_l Q^(h−1)[l] · r² Ė^(h)[l] P^(h)[l]  (2 ≤ h ≤ H; c_σ instead of r² at h = 1),   G^(H+1) → Σ_l Σ^(H)[l]
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch

from zeroloss.activations import Activation
from zeroloss.kernels.gaussian import bivariate_expectations, gaussian_mean, resolve_method

Tensor = torch.Tensor


@dataclass(frozen=True)
class Expect:
    """The Gaussian-expectation settings of one kernel computation (:mod:`zeroloss.kernels.gaussian`)."""

    act: Activation
    nodes: int
    method: str
    block_bytes: int

    def pairs(self, K: Tensor, a: Tensor, c: Tensor, pairs: tuple[str, ...], method: str) -> dict[str, Tensor]:
        """E[g(u)h(v)] over every block [[a_i, K_ij], [K_ij, c_j]] (a, c broadcast against K)."""
        return bivariate_expectations(a, K, c, self.act, pairs, self.nodes, method, self.block_bytes)

    def mean(self, variance: Tensor) -> Tensor:
        """E σ(u), u ∼ N(0, variance), elementwise."""
        method = "quadrature" if self.method in ("quadrature", "table") else self.method
        return gaussian_mean(variance, self.act, self.nodes, method)


@dataclass
class Sides:
    """Where a recursion runs, and the variances of the two inputs of each of its pairs, layer by layer.

    With ``variances`` None the block *is* the diagonal, shape (n, *rest): every entry is its own pair's
    variance (the diagonal pass). Otherwise the block covers ``rows`` × ``cols`` with shape (r, c, *rest);
    ``variances[h − 1]`` is the (n, *rest) diagonal of layer h's input covariance (Σ^(h−1) or Q^(h−1)) from the
    diagonal pass, and ``methods[h − 1]`` the expectation method resolved once from it, so that every block of
    a kernel uses the same rule.
    """

    variances: list[Tensor] | None = None
    methods: list[str] = field(default_factory=list)
    rows: slice = field(default_factory=lambda: slice(None))
    cols: slice = field(default_factory=lambda: slice(None))

    def at(self, h: int, q: Tensor, e: Expect, pairs: tuple[str, ...]) -> tuple[Tensor, Tensor, str]:
        """(a, c, method) for layer h, whose input covariance on this block is q."""
        if self.variances is None:
            return q, q, resolve_method(e.act, pairs, e.method, q, q)
        v = self.variances[h - 1]
        return v[self.rows].unsqueeze(1), v[self.cols].unsqueeze(0), self.methods[h - 1]


@dataclass
class Forward:
    """What the forward part of a recursion leaves for the per-layer Grams.

    Attributes:
        inputs: layer h's input covariance at index h − 1 (FC: Σ^(h−1); ResNets: Q^(h−1) = Patch(Σ^(h−1))).
        dots: layer h → the Ė^(h) factor (FC: c_σ Ė^(h); ResNets: Ė^(h)).
        top: Σ^(H) (the output layer's input covariance) when it was asked for, else None.
    """

    inputs: list[Tensor]
    dots: dict[int, Tensor]
    top: Tensor | None


def fc_forward(K0: Tensor, depth: int, e: Expect, sides: Sides, dots_from: int, need_top: bool) -> Forward:
    """Forward recursion of the FC net on one block: Σ^(h) for the layers needed, c_σ Ė^(h) for h ≥ dots_from."""
    H, c = depth, e.act.c_sigma
    inputs = [K0]
    dots: dict[int, Tensor] = {}
    for h in range(1, H + 1):
        need_ss = h <= H - 1 or need_top
        need_dd = h >= dots_from
        pairs = tuple(p for p, need in (("ss", need_ss), ("dd", need_dd)) if need)
        if not pairs:
            continue
        a, cc, method = sides.at(h, inputs[h - 1], e, pairs)
        res = e.pairs(inputs[h - 1], a, cc, pairs, method)
        if need_ss:
            inputs.append(c * res["ss"])
        if need_dd:
            dots[h] = c * res["dd"]
    top = inputs.pop() if need_top else None
    return Forward(inputs, dots, top)


def fc_layers(fwd: Forward, depth: int, layers: set[int]) -> dict[int, Tensor]:
    """Per-layer Gram limits of the FC net from its forward recursion: h → Σ^(h−1) ⊙ Π_{l=h}^{H} c_σ Ė^(l)."""
    out: dict[int, Tensor] = {}
    if depth + 1 in layers:
        assert fwd.top is not None
        out[depth + 1] = fwd.top
    D: Tensor | None = None  # Π_{l=h}^{H} c_σ Ė^(l)
    for h in range(depth, min(layers) - 1, -1):
        D = fwd.dots[h] if D is None else D * fwd.dots[h]
        if h in layers:
            out[h] = fwd.inputs[h - 1] * D
    return out


def patch(M: Tensor, kernel_size: int) -> Tensor:
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


def resnet_forward(P0: Tensor, depth: int, e: Expect, sides: Sides, dots_from: int, need_top: bool,
                   c_res: float, kernel_size: int) -> Forward:
    """Forward recursion of the (convolutional) ResNet on one block; P0 (…, p) the pixel-diagonal input covariance.

    ``inputs`` holds Q^(h−1) = Patch(Σ^(h−1)), ``dots`` Ė^(h), ``top`` Σ^(H). The b terms are per input, so each
    side carries its own (b_i for the rows, b_j for the columns), built from the means of its own variances.
    """
    H, c, r = depth, e.act.c_sigma, c_res / depth
    inputs = [patch(P0, kernel_size)]
    dots: dict[int, Tensor] = {}
    sigma = b_row = b_col = None
    last_forward = H if need_top else H - 1
    for h in range(1, H + 1):
        need_ss = h <= last_forward
        need_dd = h >= dots_from
        pairs = tuple(p for p, need in (("ss", need_ss), ("dd", need_dd)) if need)
        if not pairs:
            continue
        q = inputs[h - 1]
        a, cc, method = sides.at(h, q, e, pairs)
        res = e.pairs(q, a, cc, pairs, method)
        if need_dd:
            dots[h] = res["dd"]
        if not need_ss:
            continue
        mean_row, mean_col = e.mean(a), e.mean(cc)  # E σ(u_i[l]), u ∼ N(0, Q_ii[l]), for each side
        if h == 1:
            sigma = c * res["ss"]
            b_row, b_col = math.sqrt(c) * mean_row, math.sqrt(c) * mean_col
        else:
            assert sigma is not None and b_row is not None and b_col is not None
            sigma = sigma + r * (b_row * mean_col + mean_row * b_col) + r * r * res["ss"]
            b_row, b_col = b_row + r * mean_row, b_col + r * mean_col
        if h < H:
            inputs.append(patch(sigma, kernel_size))
    return Forward(inputs, dots, sigma if need_top else None)


def resnet_layers(fwd: Forward, depth: int, layers: set[int], c_res: float, c_sigma: float,
                  kernel_size: int) -> dict[int, Tensor]:
    """Per-layer Gram limits of the (convolutional) ResNet, summed over positions (the backward recursion P)."""
    r = c_res / depth
    out: dict[int, Tensor] = {}
    if depth + 1 in layers:
        assert fwd.top is not None
        out[depth + 1] = fwd.top.sum(-1)
    P: Tensor | None = None
    for h in range(depth, min(layers) - 1, -1):
        dd = fwd.dots[h]
        P = torch.ones_like(dd) if P is None else P + r * r * patch(fwd.dots[h + 1] * P, kernel_size)
        if h in layers:
            scale = c_sigma if h == 1 else r * r
            out[h] = (fwd.inputs[h - 1] * scale * dd * P).sum(-1)
    return out
