"""The two ``torch.func`` tutorial methods for the empirical NTK, kept as references (and as fallbacks).

Both follow the "Neural Tangent Kernels" tutorial of ``torch.func`` (pytorch.org/tutorials, intermediate/
neural_tangent_kernels), chunked over samples so that their memory is bounded.

``"jacobian"`` — Jacobian contraction. Per sample the Jacobian J(x_i) ∈ R^{k × P} by ``vmap(jacrev(f))`` over the
samples of a chunk, then

    Θ(x_i, x_j)_{ab} = Σ_p J_p(x_i)_{a,·} · J_p(x_j)_{b,·}          (per parameter tensor p, then summed)

Cost: k backward passes per sample and n1·n2·k²·P multiply-adds; memory k·P per sample of a chunk.

``"ntvp"`` — NTK-vector products. For each sample x_i of a row chunk and output a, the vector-Jacobian product
v_{ia} = J(x_i)ᵀ e_a ∈ R^P (``vjp``), then for every sample x_j of a column chunk the Jacobian-vector product
J(x_j) v_{ia} = Θ(x_j, x_i)_{·a} (``jvp``), both vmapped. The tutorial vmaps the vjp over every pair (i, j); here
it is taken once per x_i and pushed through every x_j, which is the same products with k·n2 times fewer vjps.
Cost: ≈ n1·k·n2 forward passes (jvp) — no Jacobian is stored, which is why the tutorial recommends it for wide
outputs; memory k·P per row sample plus one batched jvp.

Both apply the model to single samples (``x.unsqueeze(0)``) inside ``vmap``, so they need nothing from the model
but ``torch.func`` support; where ``vmap`` over samples fails (``nn.GRU``), :func:`map_samples` loops instead.
"""

from __future__ import annotations

import re
import warnings
from collections.abc import Callable
from typing import Any

import torch
from torch.func import jacrev, jvp, vjp, vmap
from torch.utils._pytree import tree_leaves, tree_map

from zeroloss.ntk.model import FunctionalModel


def _single(view: FunctionalModel):
    def f(params: dict[str, torch.Tensor], xi: torch.Tensor) -> torch.Tensor:
        return view.fn(params, xi.unsqueeze(0))[0]  # (k,)

    return f


def map_samples(view: FunctionalModel, tag: str, f: Callable[..., Any], args: tuple, dims: tuple) -> Any:
    """``vmap(f, dims)(*args)``, or a Python loop over the mapped axis when the model does not support ``vmap``.

    Some modules cannot run under ``vmap`` over samples: ``nn.GRU``/``nn.LSTM`` create their zero initial state
    unbatched and write into it (torch 2.x raises "output with shape … doesn't match the broadcast shape").
    The loop computes the same thing one slice at a time; the outcome is remembered per model view and ``tag``.
    """
    if not view.no_vmap.get(tag, False):
        try:
            return vmap(f, dims)(*args)
        except (RuntimeError, NotImplementedError):
            view.no_vmap[tag] = True
    size = next(tree_leaves(a)[0].shape[0] for a, d in zip(args, dims, strict=True) if d is not None)
    results = []
    for i in range(size):
        sliced = tuple(a if d is None else tree_map(lambda t, i=i: t[i], a) for a, d in zip(args, dims, strict=True))
        results.append(f(*sliced))
    return tree_map(lambda *ts: torch.stack(ts), results[0], *results[1:])


def jacobian_factor(view: FunctionalModel, x: torch.Tensor) -> dict[str, torch.Tensor]:
    """Per-sample Jacobians of a chunk: parameter name → (c, k, P_p)."""
    jac = map_samples(view, "jacobian", jacrev(_single(view)), (view.params, x), (None, 0))  # name → (c, k, *shape)
    return {name: J.reshape(J.shape[0], J.shape[1], -1) for name, J in jac.items()}


def jacobian_pair(
    J1: dict[str, torch.Tensor], J2: dict[str, torch.Tensor], keys: dict[str, str], full: bool
) -> dict[str, torch.Tensor]:
    """Θ blocks from two chunks' Jacobians: key → (c1, c2, k, k) (full) or (c1, c2) (trace)."""
    out: dict[str, torch.Tensor] = {}
    for name, A in J1.items():
        B = J2[name]
        if full:
            c1, k, P = A.shape
            block = (A.reshape(c1 * k, P) @ B.reshape(-1, P).T).reshape(c1, k, B.shape[0], k).transpose(1, 2)
        else:
            block = torch.einsum("iap,jap->ij", A, B)
        key = keys[name]
        out[key] = out[key] + block if key in out else block
    return out


def ntvp_factor(view: FunctionalModel, x: torch.Tensor) -> dict[str, torch.Tensor]:
    """Vector-Jacobian products of a row chunk: name → (c·k, *shape), rows ordered (sample i, output a)."""
    f = _single(view)
    eye = torch.eye(view.k, dtype=_out_dtype(view), device=x.device)

    def per_sample(xi: torch.Tensor) -> dict[str, torch.Tensor]:
        _, pullback = vjp(lambda p: f(p, xi), view.params)
        return vmap(pullback)(eye)[0]  # name → (k, *shape)

    V = map_samples(view, "ntvp-vjp", per_sample, (x,), (0,))  # name → (c, k, *shape)
    return {name: v.flatten(0, 1) for name, v in V.items()}


def ntvp_pair(
    view: FunctionalModel, V: dict[str, torch.Tensor], x2: torch.Tensor, keys: dict[str, str], full: bool
) -> dict[str, torch.Tensor]:
    """Θ blocks from a row chunk's vjps and a column chunk's inputs: key → (c1, c2, k, k) or (c1, c2)."""
    f = _single(view)
    k = view.k
    c1 = next(iter(V.values())).shape[0] // k
    out: dict[str, torch.Tensor] = {}
    for key in dict.fromkeys(keys.values()):
        chosen = {name: (V[name] if keys[name] == key else torch.zeros_like(V[name])) for name in V}

        def push(tangent: dict[str, torch.Tensor]) -> torch.Tensor:
            def one(xj: torch.Tensor) -> torch.Tensor:
                return jvp(lambda p: f(p, xj), (view.params,), (tangent,))[1]  # (k,)

            return map_samples(view, "ntvp-jvp", one, (x2,), (0,))  # (c2, k): row b of Θ(x_j, x_i)_{b a}

        with warnings.catch_warnings():
            # torch's first jvp loads its forward-AD decompositions with torch.jit.script, which warns that
            # torch.jit.script is deprecated: torch's own internals, nothing a caller can change
            warnings.filterwarnings("ignore", message=r"`torch\.jit\.script` is", category=DeprecationWarning)
            # (c1·k, c2, k): [(i, a), j, b] = Θ(x_i, x_j)_{ab}
            pushed = map_samples(view, "ntvp-push", push, (chosen,), (0,))
        block = pushed.reshape(c1, k, x2.shape[0], k).permute(0, 2, 1, 3)
        out[key] = block if full else block.diagonal(dim1=2, dim2=3).sum(-1)
    return out


def forward_mode_gap(view: FunctionalModel, x: torch.Tensor) -> str | None:
    """None when forward-mode AD (``jvp``, what ``"ntvp"`` and :func:`zeroloss.linearize` use) runs through the
    model on one sample of x; else the op that stops it (``"_embedding_bag"``: ``nn.EmbeddingBag`` has no
    forward-mode derivative in torch), or the first line of the error when torch names none."""
    f = _single(view)
    tangent = {name: torch.zeros_like(p) for name, p in view.params.items()}
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=r"`torch\.jit\.script` is", category=DeprecationWarning)
            jvp(lambda p: f(p, x[0]), (view.params,), (tangent,))
    except (NotImplementedError, RuntimeError) as err:
        return forward_mode_op(err)
    return None


def forward_mode_op(err: BaseException) -> str:
    """The op named in torch's "Trying to use forward AD with OP that does not support it" (else the first line)."""
    text = str(err).strip()
    found = re.search(r"forward AD with (\S+)", text)
    if found:
        return found.group(1)
    return text.splitlines()[0] if text else type(err).__name__


def _out_dtype(view: FunctionalModel) -> torch.dtype:
    return next(iter(view.params.values())).dtype
