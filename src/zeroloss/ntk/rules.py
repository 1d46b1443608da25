"""Per-layer rules of the structured eNTK: a layer's contribution from its captured inputs and output cotangents.

Every rule here is the linear-map rule of docs/theory.md §1.3, generalised to weight sharing. A layer whose
parameter W acts on per-sample "patches" a_{i,t} at positions t (a sequence's tokens, a convolution's output
pixels) — z_{i,t} = W a_{i,t} (+ b) — has per-sample, per-output gradient ∂f_a(x_i)/∂W = Σ_t δ_{ia,t} a_{i,t}ᵀ
with δ_{ia,t} = ∂f_a(x_i)/∂z_{i,t}, hence

    Θ^W(x_i, x_j)_{ab} = Σ_{t,t'} (a_{i,t} · a_{j,t'}) (δ_{ia,t} · δ_{jb,t'})                         (product form)
                       = ⟨Σ_t δ_{ia,t} a_{i,t}ᵀ, Σ_{t'} δ_{jb,t'} a_{j,t'}ᵀ⟩                            (gradient form)

The product form costs T²(fan_in + k²·fan_out) per pair of samples (k·fan_out for the trace) and never forms a
gradient; the gradient form costs k·T·|W| per sample and k²·|W| per pair (k·|W| for the trace). Like Novak,
Sohl-Dickstein & Schoenholz (ICML 2022), :func:`choose_form` counts both for the shapes at hand and takes the
cheaper (an MLP layer, T = 1: product form; an early convolution with many pixels: gradient form).

- ``nn.Linear``: a = the input's last axis, positions = every axis between the batch and it; groups 1.
- ``nn.Conv1d/2d/3d``: a = the input patches (padding as the module pads — zeros, reflect, replicate, circular,
  'same' — then stride and dilation by ``Tensor.unfold``), per group g: z_{g} = W_g a_g, positions = output pixels.
- ``nn.Embedding``: a = the one-hot vector of the token, so a_{i,t} · a_{j,t'} = [id_{i,t} = id_{j,t'}]; tokens
  equal to ``padding_idx`` get no gradient, as in PyTorch.
- Biases of the three: ∂f_a/∂b = Σ_t δ_{ia,t} (gradient form; its product form is never cheaper).
- Elementwise affine parameters of ``LayerNorm``, ``RMSNorm``, ``GroupNorm`` and ``BatchNorm1d/2d/3d`` (eval mode,
  running statistics): z = x̂ ⊙ γ + β, so ∂f_a/∂γ = Σ_positions δ_{ia} ⊙ x̂_i and ∂f_a/∂β = Σ_positions δ_{ia}
  (gradient form: these vectors are small), x̂ recomputed from the captured input.

Shapes used below (c samples of a chunk, k outputs): a shared-weight term is ``A`` (c, g, fan_in_g, T) — or the
token ids (c, T) for an embedding — with ``D`` (c, g, k, fan_out_g, T); a gradient term is (c, k, |p|).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

_NORMS: tuple[type, ...] = (nn.LayerNorm, nn.GroupNorm, nn.modules.batchnorm._BatchNorm)
if hasattr(nn, "RMSNorm"):
    _NORMS = (*_NORMS, nn.RMSNorm)
_CONVS = (nn.Conv1d, nn.Conv2d, nn.Conv3d)
_LAST_AXES_NORMS: tuple[type, ...] = (nn.LayerNorm, nn.RMSNorm) if hasattr(nn, "RMSNorm") else (nn.LayerNorm,)


def structured_attrs(module: nn.Module) -> tuple[str, ...]:
    """The parameter attributes of ``module`` that a rule covers (empty for other layers).

    Only the exact forward passes these rules describe qualify: a subclass that overrides ``forward`` does not,
    nor an embedding with ``max_norm`` (its forward renormalises the weight in place) or ``scale_grad_by_freq``
    (PyTorch's gradient is then not the derivative: it is divided by the token's count in the batch).
    """
    t = type(module)
    if isinstance(module, nn.Linear) and t.forward is nn.Linear.forward:
        return ("weight", "bias")
    if isinstance(module, _CONVS) and t.forward in (c.forward for c in _CONVS):
        if t._conv_forward not in (c._conv_forward for c in _CONVS):
            return ()
        return ("weight", "bias")
    if (isinstance(module, nn.Embedding) and t.forward is nn.Embedding.forward and module.max_norm is None
            and not module.scale_grad_by_freq):  # that option rescales PyTorch's gradient by batch frequencies
        return ("weight",)
    if isinstance(module, _NORMS) and t.forward in (c.forward for c in _NORMS + (nn.BatchNorm1d, nn.BatchNorm2d,
                                                                                   nn.BatchNorm3d)):
        return ("weight", "bias")
    return ()


def kind_of(module: nn.Module) -> str:
    if isinstance(module, nn.Linear):
        return "linear"
    if isinstance(module, _CONVS):
        return "conv"
    if isinstance(module, nn.Embedding):
        return "embedding"
    return "norm"


@dataclass(frozen=True)
class Shape:
    """What the cost model needs of a weight: positions T (all calls), groups g, fan_in_g, fan_out_g, |W|."""

    T: int
    groups: int
    fan_in: int
    fan_out: int
    size: int


def weight_shape(module: nn.Module, in_shapes: list[tuple[int, ...]], out_shapes: list[tuple[int, ...]]) -> Shape:
    """The :class:`Shape` of a shared-weight layer from its calls' per-sample input and output shapes."""
    kind = kind_of(module)
    W = module.weight
    if kind == "linear":
        T = sum(math.prod(s[:-1]) for s in in_shapes)
        return Shape(T, 1, W.shape[1], W.shape[0], W.numel())
    if kind == "conv":
        T = sum(math.prod(s[1:]) for s in out_shapes)
        g = module.groups
        return Shape(T, g, W[0].numel(), W.shape[0] // g, W.numel())
    T = sum(math.prod(s) for s in in_shapes)  # embedding: one token per input entry
    return Shape(T, 1, 1, W.shape[1], W.numel())


def choose_form(shape: Shape, kind: str, k: int, full: bool, n1: int, n2: int) -> str:
    """``"product"`` or ``"gradient"``: the form with fewer multiply-adds for these shapes (see module docstring).

    Gradient form: forming the per-sample gradients, (n1 + n2)·k·T·|W| (an embedding scatters k·T·fan_out), and
    their products, n1·n2·kk·|W|. Product form: n1·n2·T²·g·(fan_in_g + kk·fan_out_g + kk), kk = k² (full) or
    k (trace; the sum over outputs folds into the cotangent product, which then costs T²·g·k·fan_out_g).

    Examples:
        >>> dense = Shape(T=1, groups=1, fan_in=1024, fan_out=1024, size=1024 * 1024)
        >>> choose_form(dense, "linear", k=1, full=False, n1=256, n2=256)
        'product'
        >>> conv = Shape(T=256, groups=1, fan_in=64 * 9, fan_out=64, size=64 * 64 * 9)  # 3×3, 16×16 pixels
        >>> choose_form(conv, "conv", k=1, full=False, n1=64, n2=64)
        'gradient'
    """
    kk = k * k if full else k
    pairs = n1 * n2
    form_cost = (n1 + n2) * k * shape.T * (shape.fan_out if kind == "embedding" else shape.size)
    gradient = form_cost + pairs * kk * shape.size
    product = pairs * shape.T**2 * shape.groups * (shape.fan_in + kk * shape.fan_out + kk)
    return "product" if product < gradient else "gradient"


def form_bytes(shape: Shape, form: str, k: int, full: bool, itemsize: int) -> tuple[int, int]:
    """(bytes per sample, bytes per pair of samples) that a weight's factors and block temporaries take."""
    kk = k * k if full else 1
    if form == "gradient":
        return k * shape.size * itemsize, 0
    per_sample = shape.T * shape.groups * (shape.fan_in + k * shape.fan_out) * itemsize
    # X, the cotangent product, their product and its sum over positions (only the sum when T = 1 is reshaped)
    per_pair = shape.T**2 * shape.groups * (1 + 3 * kk) * itemsize
    return per_sample, per_pair


# ----------------------------------------------------------------------------------------------------------------
# Factors from one call: A (c, g, fan_in_g, T) or ids (c, T), and D (c, g, k, fan_out_g, T). Positions last, so
# that a convolution's patches come straight from im2col and its δ needs no copy; several calls of one module are
# concatenated along T.


def linear_inputs(module: nn.Module | None, x: torch.Tensor) -> torch.Tensor:
    """A of a call: (c, g, fan_in_g, T) — patches for a convolution, the input itself for a Linear (ids (c, T) for an
    embedding)."""
    c = x.shape[0]
    if isinstance(module, nn.Embedding):
        return x.reshape(c, -1)
    if module is None or isinstance(module, nn.Linear):
        return x.reshape(c, -1, x.shape[-1]).transpose(1, 2).unsqueeze(1)
    return conv_patches(module, x)


def conv_patches(conv: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """Patches of a ConvNd input: (c, C_in, *spatial) → (c, g, (C_in/g)·prod(kernel), T), in W's column order.

    The input is padded as the module pads it (``_reversed_padding_repeated_twice`` with its padding mode, which
    also covers 'same'), then windowed with the module's stride and dilation: ``F.unfold`` (im2col) for 1-d and 2-d
    convolutions, ``Tensor.unfold`` along each axis for 3-d.
    """
    nd = x.ndim - 2
    c, C = x.shape[0], x.shape[1]
    g = conv.groups
    fan_in = (C // g) * math.prod(conv.kernel_size)
    symmetric = conv.padding_mode == "zeros" and not isinstance(conv.padding, str)
    if not symmetric and any(conv._reversed_padding_repeated_twice):
        mode = "constant" if conv.padding_mode == "zeros" else conv.padding_mode
        x = F.pad(x, conv._reversed_padding_repeated_twice, mode=mode)
    padding = tuple(conv.padding) if symmetric else (0,) * nd
    if nd <= 2:
        one = (1,) if nd == 1 else ()
        zero = (0,) if nd == 1 else ()
        patches = F.unfold(x.unsqueeze(2) if nd == 1 else x, one + tuple(conv.kernel_size),
                           dilation=one + tuple(conv.dilation), padding=zero + padding,
                           stride=one + tuple(conv.stride))
        return patches.view(c, g, fan_in, -1)
    if any(padding):
        x = F.pad(x, [p for q in reversed(padding) for p in (q, q)])
    for d in range(nd):
        K, s, dil = conv.kernel_size[d], conv.stride[d], conv.dilation[d]
        x = x.unfold(2 + d, dil * (K - 1) + 1, s)
        if dil > 1:
            x = x[..., ::dil]
    # x: (c, C_in, T_1..T_nd, K_1..K_nd) → (c, C_in, K_1..K_nd, T_1..T_nd)
    x = x.permute(0, 1, *range(2 + nd, 2 + 2 * nd), *range(2, 2 + nd))
    return x.reshape(c, g, fan_in, -1)


def linear_cotangents(module: nn.Module | None, delta: torch.Tensor) -> torch.Tensor:
    """D of a call from δ (c, k, *out): (c, g, k, fan_out_g, T) (a view for a convolution with one group)."""
    c, k = delta.shape[:2]
    if module is None or isinstance(module, (nn.Linear, nn.Embedding)):
        return delta.reshape(c, k, -1, delta.shape[-1]).transpose(2, 3).unsqueeze(1)
    g = module.groups
    return delta.reshape(c, k, g, delta.shape[2] // g, -1).transpose(1, 2)


def concat_calls(parts: list[torch.Tensor]) -> torch.Tensor:
    """Several calls of one module are more positions: concatenate along T (the last axis); one call is kept as is."""
    return parts[0] if len(parts) == 1 else torch.cat(parts, dim=-1)


def mask_padding(module: nn.Module, ids: torch.Tensor, D: torch.Tensor) -> torch.Tensor:
    """Zero the cotangents of padding tokens: PyTorch gives ``padding_idx`` no gradient."""
    if getattr(module, "padding_idx", None) is None:
        return D
    keep = (ids != module.padding_idx).to(D.dtype)  # (c, T)
    return D * keep[:, None, None, None, :]


def gradient_from_shared(module: nn.Module | None, A: torch.Tensor, D: torch.Tensor) -> torch.Tensor:
    """Per-sample gradients (c, k, |W|) of a shared-weight term: Σ_t δ_{ia,t} a_{i,t}ᵀ (scattered for an embedding)."""
    c, g, k, fo, T = D.shape
    if isinstance(module, nn.Embedding):
        V = module.weight.shape[0]
        G = D.new_zeros(c, V, k * fo)
        G.scatter_add_(1, A.unsqueeze(-1).expand(c, T, k * fo), D.reshape(c, k * fo, T).transpose(1, 2))
        return G.view(c, V, k, fo).transpose(1, 2).reshape(c, k, V * fo)
    # (c, g, k·fo, T) @ (c, g, T, fi) → (c, g, k, fo, fi)
    G = D.reshape(c, g, k * fo, T) @ A.transpose(-1, -2)
    return G.view(c, g, k, fo, -1).transpose(1, 2).reshape(c, k, -1)


def bias_gradient(module: nn.Module, delta: torch.Tensor) -> torch.Tensor:
    """Per-sample gradients (c, k, |b|) of a Linear/Conv bias or a norm's β from δ (c, k, *out), summed over
    positions."""
    c, k = delta.shape[:2]
    if isinstance(module, nn.Linear):
        return delta.reshape(c, k, -1, delta.shape[-1]).sum(2)
    if isinstance(module, _LAST_AXES_NORMS):  # normalized_shape = the trailing axes; positions before them
        return delta.reshape(c, k, -1, math.prod(module.normalized_shape)).sum(2)
    return delta.reshape(c, k, delta.shape[2], -1).sum(-1)  # channel axis 2 of δ: conv, GroupNorm, BatchNorm


def normalised(module: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """x̂ of a norm layer (before its affine map), as its forward computes it in eval mode."""
    if isinstance(module, nn.LayerNorm):
        return F.layer_norm(x, module.normalized_shape, None, None, module.eps)
    if isinstance(module, nn.GroupNorm):
        return F.group_norm(x, module.num_groups, None, None, module.eps)
    if isinstance(module, nn.modules.batchnorm._BatchNorm):
        return F.batch_norm(x, module.running_mean, module.running_var, None, None, False, 0.0, module.eps)
    return F.rms_norm(x, module.normalized_shape, None, module.eps)


# ----------------------------------------------------------------------------------------------------------------
# Blocks between two chunks


def shared_block(
    module: nn.Module | None, A1: torch.Tensor, D1: torch.Tensor, A2: torch.Tensor, D2: torch.Tensor, full: bool
) -> torch.Tensor:
    """Product-form block: Σ_{t,t'} (a_{i,t}·a_{j,t'})(δ_{ia,t}·δ_{jb,t'}) → (c1, c2) or (c1, c2, k, k)."""
    c1, g, k, fo, T1 = D1.shape
    c2, T2 = D2.shape[0], D2.shape[-1]
    if isinstance(module, nn.Embedding):
        X = (A1.reshape(c1 * T1, 1) == A2.reshape(1, c2 * T2)).to(D1.dtype).unsqueeze(0)  # (1, c1·T1, c2·T2)
    else:  # (g, c·T, fan_in) products
        X = _rows(A1.permute(1, 0, 3, 2)) @ _rows(A2.permute(1, 0, 3, 2)).transpose(1, 2)
    if not full:
        # Σ_a δ_{ia,t}·δ_{ja,t'}: one product over (output, fan_out) jointly, rows (sample, position)
        P = _rows(D1.permute(1, 0, 4, 2, 3)) @ _rows(D2.permute(1, 0, 4, 2, 3)).transpose(1, 2)
        return (X * P).view(g, c1, T1, c2, T2).sum(dim=(0, 2, 4))
    # rows (sample, position, output)
    P = _rows(D1.permute(1, 0, 4, 2, 3), 3) @ _rows(D2.permute(1, 0, 4, 2, 3), 3).transpose(1, 2)
    P = P.view(g, c1, T1, k, c2, T2, k) * X.view(g, c1, T1, 1, c2, T2, 1)
    return P.sum(dim=(0, 2, 5)).permute(0, 2, 1, 3)


def _rows(t: torch.Tensor, row_axes: int = 2) -> torch.Tensor:
    """(g, a, b, …) → (g, a·b·…, rest): the group axis first, the next ``row_axes`` axes as rows."""
    return t.reshape(t.shape[0], math.prod(t.shape[1 : 1 + row_axes]), -1)


def gradient_block(G1: torch.Tensor, G2: torch.Tensor, full: bool) -> torch.Tensor:
    """Gradient-form block from per-sample gradients (c1, k, p), (c2, k, p) → (c1, c2) or (c1, c2, k, k)."""
    c1, k, p = G1.shape
    c2 = G2.shape[0]
    if not full:
        return G1.reshape(c1, k * p) @ G2.reshape(c2, k * p).T
    return (G1.reshape(c1 * k, p) @ G2.reshape(c2 * k, p).T).reshape(c1, k, c2, k).transpose(1, 2)
