"""The kernel rules: how each op maps the NNGP K and the NTK Θ of its inputs to those of its output.

Conventions. For a node with C channels (features) and spatial shape S, K is the per-channel average covariance
lim (1/C) Σ_c x_ic(s) x_jc(t) and Θ the per-channel NTK lim Σ_θ ∂x_ic(s)/∂θ · ∂x_jc(t)/∂θ (the same for every
channel, zero across channels). On a block of pairs they are arrays (*pairs, *S, *S) — "full", the cross-position
covariances that pooling needs — or (*pairs, *S), "pixel-diagonal", when no pooling follows (a Flatten then a
linear layer sees the diagonal only); *pairs is (r, c) in a block of input pairs, (n,) in the diagonal pass.

Each rule is one function ``rule(step, inputs, ctx) -> KState`` below, registered in :data:`RULES` with the text
of its NNGP and NTK maps (docs/infinite.md prints the table). With W_std² = σ_w², b_std² = σ_b² of the layer
(:mod:`zeroloss.infinite.laws`), 𝒫 the average over the filter window (zero padding counted, as Neural Tangents),
and the parameterisation "standard" (the module's own parameters: Θ at its own widths, what ``zeroloss.entk``
concentrates on) or "ntk" (f = σ_w/√fan_in · W x + σ_b b with W, b ∼ N(0, 1): the width-independent limit):

    linear:   K′ = σ_w² 𝒫(K) + σ_b²,
              Θ′ = σ_w² 𝒫(Θ) + fan_in 𝒫(K) + 1 (standard)   or   σ_w² 𝒫(Θ) + σ_w² 𝒫(K) + σ_b² (ntk)

(a term only for a parameter with ``requires_grad``; Neural Tangents' ``stax.Dense``/``stax.Conv`` are the same).

Examples:
    >>> sorted(RULES)[:4]
    ['add', 'avgpool', 'batchnorm', 'concat']
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn

from zeroloss.infinite import elementwise as ew
from zeroloss.infinite.laws import Law

Tensor = torch.Tensor


@dataclass
class KState:
    """NNGP and NTK of one node on the current block (``ntk`` None: zero, or not asked for)."""

    nngp: Tensor
    ntk: Tensor | None


@dataclass
class Ctx:
    """What the rules need beyond their inputs: the pass (``lead`` 1: the diagonal pass over pairs (i, i); 2: a
    block rows × cols), the layout, the laws and settings, and the per-node variances (recorded by the diagonal
    pass in ``record``, read by a block from ``variances`` as (rows (r, *S), cols (c, *S))). ``square`` r > 0 says
    the block's first r columns are its rows (pairs (k, k) are diagonal pairs, see :func:`pin_diagonal`); ``owned``
    the inputs of the running step that nothing later reads (a rule may overwrite them); ``inplace`` False keeps
    every operation out of place (autograd through the laws, :mod:`zeroloss.gp`)."""

    lead: int
    full: bool
    parameterisation: str
    need_ntk: bool
    laws: dict[str, Law]
    modules: dict[str, nn.Module]
    nodes: int
    block_bytes: int
    record: dict[str, Tensor] | None = None
    variances: dict[str, tuple[Tensor, Tensor]] | None = None
    square: int = 0
    owned: frozenset[str] = frozenset()
    quadrature_errors: dict[str, float] = field(default_factory=dict)
    inplace: bool = True


# ----------------------------------------------------------------------------------------------- layout helpers

def spatial_diagonal(T: Tensor, lead: int, S: tuple[int, ...], full: bool) -> Tensor:
    """K(s, s) of a kernel array: (*pairs, *S) from (*pairs, *S, *S) (full) or itself (pixel-diagonal)."""
    if not full or not S:
        return T
    P = math.prod(S)
    head = T.shape[:lead]
    return torch.diagonal(T.reshape(*head, P, P), dim1=-2, dim2=-1).reshape(*head, *S)


def input_variances(name: str, T: Tensor, S: tuple[int, ...], ctx: Ctx) -> tuple[Tensor, Tensor]:
    """The per-position variances (rows (r, *S), cols (c, *S)) of node ``name`` — in the diagonal pass read off
    its own array (both sides the same, (n, *S)) and recorded for the blocks."""
    if ctx.lead == 1:
        v = spatial_diagonal(T, 1, S, ctx.full)
        if ctx.record is not None:
            ctx.record[name] = v
        return v, v
    assert ctx.variances is not None
    return ctx.variances[name]


def pin_diagonal(T: Tensor, v: Tensor, S: tuple[int, ...], ctx: Ctx, in_place: bool = False) -> Tensor:
    """T with its diagonal pairs' variances (i = j, s = t) set to the diagonal pass's v, bit for bit.

    A closed form is ill-conditioned at correlation 1 (arccos(1 − ε) ≈ √(2ε)), so a one-ulp difference between a
    block's K_ii(s, s) and the recorded variance would cost half the digits; pinned, both passes see one number.
    """
    if ctx.lead != 2 or not ctx.square:
        return T
    r = ctx.square
    idx = torch.arange(r, device=T.device)
    T = T if in_place and T.is_contiguous() else T.clone()
    if ctx.full and S:
        P = math.prod(S)
        view = T.view(T.shape[0], T.shape[1], P, P)
        p = torch.arange(P, device=T.device)
        view[idx[:, None], idx[:, None], p[None, :], p[None, :]] = v[:r].reshape(r, P)
    else:
        T[idx, idx] = v[:r]
    return T


def pair_variances(name: str, T: Tensor, S: tuple[int, ...], ctx: Ctx) -> tuple[Tensor, Tensor]:
    """a = K_ii(s, s) and c = K_jj(t, t), shaped to broadcast against T (the pair's 2 × 2 Gaussian block)."""
    v1, v2 = input_variances(name, T, S, ctx)
    k = len(S)
    ones = (1,) * k
    if ctx.lead == 1:
        if ctx.full and k:
            return v1.reshape(v1.shape[0], *S, *ones), v2.reshape(v2.shape[0], *ones, *S)
        return v1, v2
    if ctx.full and k:
        return v1.reshape(v1.shape[0], 1, *S, *ones), v2.reshape(1, v2.shape[0], *ones, *S)
    return v1.unsqueeze(1), v2.unsqueeze(0)


def _spatial_axes(ctx: Ctx, k: int) -> list[list[int]]:
    """Axis indices of each spatial copy: one copy (pixel-diagonal) or two (full)."""
    copies = 2 if ctx.full else 1
    return [list(range(ctx.lead + c * k, ctx.lead + (c + 1) * k)) for c in range(copies)]


def window_sum(T: Tensor, ctx: Ctx, ks: tuple[int, ...], stride: tuple[int, ...], lo: tuple[int, ...],
               dil: tuple[int, ...], S_out: tuple[int, ...]) -> Tensor:
    """|k| 𝒫(T): Σ_δ T(s·stride + δ·dil − lo, t·stride + δ·dil − lo), zero outside (the same offset δ on both
    positions: one weight multiplies both). Returns a new array; the caller folds 1/|k| into its own scaling.

    The window is a product over the spatial dims, so the sum is taken one dim at a time (Σ_d k_d shifted adds
    instead of Π_d k_d), each offset adding only its in-range part (no padded copy), the first offset that covers
    every output starting the sum (no zero fill); vectorised over pairs.
    """
    copies = _spatial_axes(ctx, len(ks))
    for d in range(len(ks)):
        size_in, st = T.shape[copies[0][d]], stride[d]
        pieces = []
        for off in range(ks[d]):
            shift = off * dil[d] - lo[d]  # output o reads input o·st + shift
            o_lo, o_hi = max(0, -(shift // st)), min(S_out[d] - 1, (size_in - 1 - shift) // st)
            if o_hi < o_lo:
                continue
            src: list[slice] = [slice(None)] * T.ndim
            dst: list[slice] = [slice(None)] * T.ndim
            for axes in copies:
                src[axes[d]] = slice(o_lo * st + shift, o_hi * st + shift + 1, st)
                dst[axes[d]] = slice(o_lo, o_hi + 1)
            pieces.append((o_hi - o_lo + 1 == S_out[d], tuple(dst), tuple(src)))
        full = next((p for p in pieces if p[0]), None)
        if full is not None:
            out = T[full[2]].clone()
        else:
            shape = list(T.shape)
            for axes in copies:
                shape[axes[d]] = S_out[d]
            out = T.new_zeros(shape)
        for piece in pieces:
            if piece is not full:
                out[piece[1]] += T[piece[2]]
        T = out
    return T


# ----------------------------------------------------------------------------------------------------- rules

def rule_linear(step, ins: list[KState], ctx: Ctx) -> KState:
    """nn.Linear / nn.Conv1d / nn.Conv2d: K′ = σ_w² 𝒫(K) + σ_b², Θ′ (module docstring)."""
    m = ctx.modules[step.target]
    law = ctx.laws[step.target]
    x = ins[0]

    # 𝒫 = window sum / |k|; the 1/|k| is folded into the laws' factors below (one pass fewer per array)
    window = 1 if isinstance(m, nn.Linear) else math.prod(step.params["ks"])
    law = Law(law.sigma_w2 / window, law.sigma_b2, law.source, law.fan_in / window)  # type: ignore[arg-type]

    def patch(T: Tensor) -> Tensor:  # window sum: a new array, except for nn.Linear (T itself)
        if isinstance(m, nn.Linear):
            return T
        p = step.params
        return window_sum(T, ctx, p["ks"], p["stride"], p["lo"], p["dil"], step.spatial)

    PK = patch(x.nngp)
    if not ctx.inplace:  # differentiable in the laws: out of place
        nngp = law.sigma_w2 * PK + (law.sigma_b2 if m.bias is not None else 0.0)
        ntk = None
        if ctx.need_ntk:
            standard = ctx.parameterisation == "standard"
            ntk = 0.0 * PK if x.ntk is None else law.sigma_w2 * patch(x.ntk)
            if m.weight.requires_grad:
                ntk = ntk + (law.fan_in if standard else law.sigma_w2) * PK
            if m.bias is not None and m.bias.requires_grad:
                ntk = ntk + (1.0 if standard else law.sigma_b2)
        return KState(nngp, ntk)
    ntk = None
    if ctx.need_ntk:
        standard = ctx.parameterisation == "standard"
        w_grad = m.weight.requires_grad
        b_grad = m.bias is not None and m.bias.requires_grad
        if x.ntk is not None:
            own = not isinstance(m, nn.Linear) or step.inputs[0] in ctx.owned  # nn.Linear's patch is T itself
            ntk = patch(x.ntk).mul_(law.sigma_w2) if own else x.ntk * law.sigma_w2
            if w_grad:
                ntk.add_(PK, alpha=law.fan_in if standard else law.sigma_w2)
        else:
            ntk = PK * (law.fan_in if standard else law.sigma_w2) if w_grad else torch.zeros_like(PK)
        if b_grad:
            ntk.add_(1.0 if standard else law.sigma_b2)
    nngp = PK.mul_(law.sigma_w2) if PK is not x.nngp else PK * law.sigma_w2
    if m.bias is not None:
        nngp.add_(law.sigma_b2)
    return KState(nngp, ntk)


def rule_elementwise(step, ins: list[KState], ctx: Ctx) -> KState:
    """σ elementwise: K′ = E[σ(u)σ(v)], Θ′ = E[σ′(u)σ′(v)] Θ over (u, v) ∼ N(0, [[a, b], [b, c]]) per pair and
    positions (closed form or quadrature, :mod:`zeroloss.infinite.elementwise`)."""
    nl: ew.Nonlinearity = step.params["nl"]
    x = ins[0]
    if nl.act is None:
        return KState(x.nngp, x.ntk)
    a, c = pair_variances(step.inputs[0], x.nngp, step.spatial, ctx)
    K = x.nngp
    if ctx.square:
        K = pin_diagonal(K, ctx.variances[step.inputs[0]][0], step.spatial, ctx,  # type: ignore[index]
                         in_place=ctx.inplace and step.inputs[0] in ctx.owned)
    need_dd = ctx.need_ntk and x.ntk is not None
    res = ew.expectations(nl, a, K, c, nodes=ctx.nodes, need_dd=need_dd, block_bytes=ctx.block_bytes,
                          fused=ctx.inplace)
    if ctx.lead == 1 and not nl.closed:
        ctx.quadrature_errors[step.name] = ew.quadrature_error(nl, a, K, c, nodes=ctx.nodes,
                                                               block_bytes=ctx.block_bytes)
    if not need_dd:
        return KState(res["ss"], None)
    dd = res["dd"]
    fresh = ctx.inplace and dd.shape == K.shape and dd.data_ptr() not in (K.data_ptr(), res["ss"].data_ptr())
    return KState(res["ss"], dd.mul_(x.ntk) if fresh else dd * x.ntk)


def _sum(parts: list[Tensor | None]) -> Tensor | None:
    present = [p for p in parts if p is not None]
    if not present:
        return None
    out = present[0].clone()
    for p in present[1:]:
        out = out + p
    return out


def rule_add(step, ins: list[KState], ctx: Ctx) -> KState:
    """a ± b of independent branches (one ends in a linear layer the other does not depend on): K′ = K_a + K_b,
    Θ′ = Θ_a + Θ_b (the cross terms vanish in the limit)."""
    return KState(_sum([x.nngp for x in ins]), _sum([x.ntk for x in ins]))


def rule_scale(step, ins: list[KState], ctx: Ctx) -> KState:
    """c · x (or x / c, −x): K′ = c² K, Θ′ = c² Θ."""
    f2 = step.params["factor"] ** 2
    x = ins[0]
    return KState(f2 * x.nngp, None if x.ntk is None else f2 * x.ntk)


def rule_concat(step, ins: list[KState], ctx: Ctx) -> KState:
    """torch.cat on channels: K′ = Σ_k (C_k/C) K_k, Θ′ likewise (exact for a following linear layer only)."""
    w = step.params["weights"]
    nngp = _sum([wk * x.nngp for wk, x in zip(w, ins, strict=True)])
    ntk = _sum([None if x.ntk is None else wk * x.ntk for wk, x in zip(w, ins, strict=True)])
    assert nngp is not None
    return KState(nngp, ntk)


def _drop_spatial(T: Tensor, ctx: Ctx) -> Tensor:
    return T.reshape(T.shape[: ctx.lead])


def rule_flatten(step, ins: list[KState], ctx: Ctx) -> KState:
    """Flatten (n, C, *S) → (n, C·P): K′ = mean_s K(s, s), Θ′ = mean_s Θ(s, s) (what a following linear layer
    sees; a nonlinearity after it is refused). Neural Tangents' ``stax.Flatten`` is the same."""
    S = step.params["in_spatial"]

    def flat(T: Tensor | None) -> Tensor | None:
        if T is None:
            return None
        if not S:
            return T
        D = spatial_diagonal(T, ctx.lead, S, ctx.full)
        return D.mean(dim=tuple(range(ctx.lead, D.ndim)))

    nngp = flat(ins[0].nngp)
    assert nngp is not None
    return KState(nngp, flat(ins[0].ntk))


def rule_avgpool(step, ins: list[KState], ctx: Ctx) -> KState:
    """AvgPool: K′(s, t) = Σ_{u ∈ win(s), v ∈ win(t)} K(u, v)/|win|² (the same average on each position,
    ``count_include_pad`` as torch); needs the full covariances."""
    p = step.params
    S = p["in_spatial"]
    k = len(S)
    pool = F.avg_pool1d if k == 1 else F.avg_pool2d
    args = dict(kernel_size=p["kernel_size"], stride=p["stride"], padding=p["padding"], ceil_mode=p["ceil_mode"],
                count_include_pad=p["count_include_pad"])
    if k == 2:
        args["divisor_override"] = p["divisor_override"]

    def apply(T: Tensor | None) -> Tensor | None:
        if T is None:
            return None
        lead = ctx.lead
        swap = list(range(lead)) + list(range(lead + k, lead + 2 * k)) + list(range(lead, lead + k))
        for _ in range(2):  # pool the last copy's k axes, then swap the two copies: both pooled, order restored
            head = T.shape[:-k]
            out = pool(T.reshape(-1, 1, *T.shape[-k:]), **args)
            T = out.reshape(*head, *out.shape[-k:]).permute(swap)
        return T.contiguous()

    nngp = apply(ins[0].nngp)
    assert nngp is not None
    return KState(nngp, apply(ins[0].ntk))


def rule_global_pool(step, ins: list[KState], ctx: Ctx) -> KState:
    """Global average pooling (AdaptiveAvgPool to 1, .mean over the spatial dims): K′ = mean_{s,t} K(s, t),
    Θ′ = mean_{s,t} Θ(s, t)."""
    S = step.params["in_spatial"]

    def pool(T: Tensor | None) -> Tensor | None:
        if T is None:
            return None
        if ctx.full:
            T = T.mean(dim=tuple(range(ctx.lead, T.ndim)))
        else:
            assert math.prod(S) == 1
            T = _drop_spatial(T, ctx)
        return T.reshape(*T.shape, *((1,) * (2 if ctx.full else 1) * len(step.spatial)))

    nngp = pool(ins[0].nngp)
    assert nngp is not None
    return KState(nngp, pool(ins[0].ntk))


def rule_pad(step, ins: list[KState], ctx: Ctx) -> KState:
    """Zero padding of the spatial dims: K′ and Θ′ are K and Θ zero-padded on each position axis."""
    pad = step.params["pad"]  # F.pad order: last spatial dim first
    full_pad = pad + pad if ctx.full else pad

    def apply(T: Tensor | None) -> Tensor | None:
        return None if T is None else F.pad(T, full_pad)

    nngp = apply(ins[0].nngp)
    assert nngp is not None
    return KState(nngp, apply(ins[0].ntk))


def _per_input(v: Tensor, ctx: Ctx) -> Tensor:
    return v.mean(dim=tuple(range(1, v.ndim))) if v.ndim > 1 else v


def rule_layernorm(step, ins: list[KState], ctx: Ctx) -> KState:
    """LayerNorm over all non-batch dims of a zero-mean Gaussian input (γ, β constant): with v_i = mean_s K_ii(s, s),
    K̂ = K/√((v_i+ε)(v_j+ε)), K′ = γ² K̂ + β², Θ′ = γ² Θ/√((v_i+ε)(v_j+ε)) + K̂ [γ trained] + 1 [β trained]
    (Neural Tangents' ``stax.LayerNorm``, which has no γ, β)."""
    p = step.params
    x = ins[0]
    v1, v2 = input_variances(step.inputs[0], x.nngp, step.spatial, ctx)
    r1, r2 = torch.sqrt(_per_input(v1, ctx) + p["eps"]), torch.sqrt(_per_input(v2, ctx) + p["eps"])
    extra = (1,) * (x.nngp.ndim - ctx.lead)
    norm = (r1 * r2 if ctx.lead == 1 else r1[:, None] * r2[None, :]).reshape(*x.nngp.shape[: ctx.lead], *extra)
    Kh = x.nngp / norm
    nngp = p["gamma"] ** 2 * Kh + p["beta"] ** 2
    ntk = None
    if ctx.need_ntk:
        ntk = torch.zeros_like(Kh) if x.ntk is None else p["gamma"] ** 2 * x.ntk / norm
        if p["gamma_grad"]:
            ntk = ntk + Kh
        if p["beta_grad"]:
            ntk = ntk + 1.0
    return KState(nngp, ntk)


def rule_batchnorm(step, ins: list[KState], ctx: Ctx) -> KState:
    """BatchNorm in eval mode with per-channel constants (as at initialisation): x̂ = (x − μ_r)/s, s = √(σ_r² + ε),
    y = γ x̂ + β: K_x̂ = (K + μ_r²)/s², K′ = γ² K_x̂ − 2γβ μ_r/s + β², Θ′ = γ² Θ/s² + K_x̂ [γ trained] + 1 [β trained]
    (μ_r ≠ 0 or β ≠ 0 needs a zero-mean Gaussian input)."""
    p = step.params
    x = ins[0]
    s2 = p["var"] + p["eps"]
    Kx = (x.nngp + p["mean"] ** 2) / s2
    nngp = p["gamma"] ** 2 * Kx - 2 * p["gamma"] * p["beta"] * p["mean"] / math.sqrt(s2) + p["beta"] ** 2
    ntk = None
    if ctx.need_ntk:
        ntk = torch.zeros_like(Kx) if x.ntk is None else p["gamma"] ** 2 * x.ntk / s2
        if p["gamma_grad"]:
            ntk = ntk + Kx
        if p["beta_grad"]:
            ntk = ntk + 1.0
    return KState(nngp, ntk)


@dataclass(frozen=True)
class Rule:
    """One op's rule: the function and the text of its NNGP and NTK maps, and how the expectations are taken."""

    fn: Callable[..., KState]
    ops: str
    nngp: str
    ntk: str
    exact: str = "exact (linear)"


RULES: dict[str, Rule] = {
    "linear": Rule(rule_linear, "nn.Linear, nn.Conv1d, nn.Conv2d (stride, padding incl. 'same', dilation)",
                   "σ_w² 𝒫(K) + σ_b²", "σ_w² 𝒫(Θ) + fan_in 𝒫(K) + 1 (standard); σ_w² 𝒫(Θ) + σ_w² 𝒫(K) + σ_b² (ntk)"),
    "elementwise": Rule(rule_elementwise, "ReLU, LeakyReLU, GELU, erf; Tanh, Sigmoid, SiLU, Softplus, ELU, "
                        "GELU(tanh); Identity, Dropout", "E[σ(u)σ(v)]", "E[σ′(u)σ′(v)] Θ",
                        "closed form (ReLU, LeakyReLU, GELU, erf); Gauss–Hermite quadrature (the rest)"),
    "add": Rule(rule_add, "a + b, a − b of independent branches", "K_a + K_b", "Θ_a + Θ_b"),
    "scale": Rule(rule_scale, "c · x, x / c, −x", "c² K", "c² Θ"),
    "concat": Rule(rule_concat, "torch.cat(dim=1)", "Σ_k (C_k/C) K_k", "Σ_k (C_k/C) Θ_k"),
    "flatten": Rule(rule_flatten, "nn.Flatten, torch.flatten, .view/.reshape(n, -1)", "mean_s K(s, s)",
                    "mean_s Θ(s, s)"),
    "pad": Rule(rule_pad, "nn.ZeroPad1d/2d, F.pad(mode='constant', value=0) of spatial dims", "K zero-padded",
                "Θ zero-padded"),
    "avgpool": Rule(rule_avgpool, "nn.AvgPool1d/2d, F.avg_pool1d/2d", "avg_win(s) avg_win(t) K",
                    "avg_win(s) avg_win(t) Θ"),
    "global_pool": Rule(rule_global_pool, "nn.AdaptiveAvgPool1d/2d(1), .mean over spatial dims",
                        "mean_{s,t} K(s, t)", "mean_{s,t} Θ(s, t)"),
    "layernorm": Rule(rule_layernorm, "nn.LayerNorm over (C, *S) of a Gaussian input", "γ² K/√((v_i+ε)(v_j+ε)) + β²",
                      "γ² Θ/√((v_i+ε)(v_j+ε)) + K̂ + 1", "exact (normalisation)"),
    "batchnorm": Rule(rule_batchnorm, "nn.BatchNorm1d/2d, eval mode, per-channel constants",
                      "γ² (K + μ_r²)/s² − 2γβμ_r/s + β²", "γ² Θ/s² + K_x̂ + 1"),
}
