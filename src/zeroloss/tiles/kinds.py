"""The kernel kinds a tiled job computes: a registry name → a function ``(X1, X2, spec) → (n1, n2)`` tensor.

A tile of the kernel K(X, X′) is K(X[rows], X′[cols]): a *pure function* of the two input blocks and the kernel
spec. Every kind is one :class:`Kind` entry in :data:`KINDS`:

* ``compute(X1, X2, spec)`` — the tile, float64 (n1, n2) on X1's device. ``X2`` is None for a tile on the
  diagonal of a symmetric kernel (rows = cols): the function returns the square kernel of X1 (exactly symmetric),
  and may use the symmetry to halve its work.
* ``prepare(X, spec)`` (optional) — run once by the driver on all the inputs before any tile; returns the spec
  with settings every tile must share (the limit kernels' Gaussian-expectation rule per layer: one rule for the
  whole kernel, not one per tile).
* ``memory_bytes(rows, cols, X, spec)`` (optional) — the peak of one tile of that size, stated before anything is
  allocated (the job compares it with the per-worker budget).

Built in:

* ``"gram"`` — :func:`zeroloss.gram` of a lab net (Du et al.'s ``fc``, ``resnet``, ``conv-resnet``) built from
  ``net, width, depth, activation, seed, c_res, kernel_size`` (one member, float64), over the layers ``layer``
  (``"all"``: the empirical NTK Σ_h G^(h)). A tile is the cross Gram Σ_{W} ⟨∂u_i/∂W, ∂u_j/∂W⟩, i ∈ rows, j ∈ cols,
  from the per-sample factors of each side (the structured method of :func:`zeroloss.gram`).
* ``"limit"`` — :func:`zeroloss.limit_kernel` (``kind`` du, nngp or ntk) of ``net, depth, activation, c_res,
  kernel_size, nodes``: the infinite-width recursion of :mod:`zeroloss.kernels.recursions` run on the rectangle of
  pairs rows × cols, with the variances of each side from its own diagonal pass.
* ``"entk"`` — :func:`zeroloss.entk` (trace over outputs) of a user's ``nn.Module`` (:mod:`zeroloss.tiles.models`).

Adding a kind (e.g. the infinite-width kernels of a user's module once ``limit_kernel(X, model, X2=...)`` exists)
is one call: ``register_kind("my-kind", lambda X1, X2, spec: ...)``.

Examples:
    >>> import torch
    >>> from zeroloss.data import sphere_data
    >>> X, _ = sphere_data(n=6, d=3, seed=0)
    >>> spec = KernelSpec("limit", {"net": "fc", "depth": 2, "activation": "erf", "kind": "ntk"})
    >>> spec = prepare_spec(X, spec)
    >>> full = compute_tile(X, None, spec)                 # the square kernel of all six inputs
    >>> corner = compute_tile(X[:2], X[4:], spec)          # one off-diagonal tile
    >>> bool(torch.allclose(corner, full[:2, 4:], rtol=1e-13, atol=0))
    True
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any

import torch

from zeroloss.errors import ZerolossInputError, choice

Tensor = torch.Tensor


@dataclass(frozen=True)
class KernelSpec:
    """What a tile computes besides its inputs: the registry ``kind``, its JSON ``params`` and, for kinds that need
    one, the serialised ``model`` (bytes, :mod:`zeroloss.tiles.models`). All three enter the job's fingerprint."""

    kind: str
    params: Mapping[str, Any] = field(default_factory=dict)
    model: bytes | None = None

    def key(self) -> str:
        """A short identity of the spec (for per-process caches of built nets and models)."""
        import hashlib

        from zeroloss.store.runs import canonical_json

        h = hashlib.sha256(canonical_json({"kind": self.kind, "params": dict(self.params)}).encode())
        if self.model is not None:
            h.update(self.model)
        return h.hexdigest()[:16]


KindFn = Callable[[Tensor, Tensor | None, KernelSpec], Tensor]


@dataclass(frozen=True)
class Kind:
    """One registry entry (see the module docstring)."""

    compute: KindFn
    prepare: Callable[[Tensor, KernelSpec], KernelSpec] | None = None
    memory_bytes: Callable[[int, int, Tensor, KernelSpec], int] | None = None
    description: str = ""


#: The kernel kinds, by name. Add one with :func:`register_kind`.
KINDS: dict[str, Kind] = {}


def register_kind(name: str, compute: KindFn, *, prepare: Callable[[Tensor, KernelSpec], KernelSpec] | None = None,
                  memory_bytes: Callable[[int, int, Tensor, KernelSpec], int] | None = None,
                  description: str = "") -> None:
    """Add (or replace) the kind ``name``: ``compute(X1, X2, spec) → (n1, n2)`` float64, X2 None on the diagonal."""
    KINDS[name] = Kind(compute, prepare, memory_bytes, description)


def get_kind(name: str) -> Kind:
    choice(name, "kind", tuple(KINDS))
    return KINDS[name]


def prepare_spec(X: Tensor, spec: KernelSpec) -> KernelSpec:
    """The spec with the kind's shared settings filled in from all the inputs X (the driver runs this once)."""
    kind = get_kind(spec.kind)
    return kind.prepare(X, spec) if kind.prepare is not None else spec


def compute_tile(X1: Tensor, X2: Tensor | None, spec: KernelSpec) -> Tensor:
    """One tile K(X1, X2) (X2 None: the symmetric square K(X1, X1)), float64, checked for its shape."""
    out = get_kind(spec.kind).compute(X1, X2, spec)
    want = (X1.shape[0], X1.shape[0] if X2 is None else X2.shape[0])
    if tuple(out.shape) != want:
        raise RuntimeError(f"kernel kind {spec.kind!r} returned a tile of shape {tuple(out.shape)}, expected {want}")
    return out.to(torch.float64)


def tile_memory_bytes(rows: int, cols: int, X: Tensor, spec: KernelSpec) -> int:
    """Peak memory of one rows × cols tile (the kind's statement, else three float64 rows × cols arrays)."""
    kind = get_kind(spec.kind)
    if kind.memory_bytes is not None:
        return int(kind.memory_bytes(rows, cols, X, spec))
    return 3 * 8 * rows * cols


# ------------------------------------------------------------------------------------------- per-process caches

_CACHE: dict[str, Any] = {}
_CACHE_LIMIT = 4


def cached(key: str, build: Callable[[], Any]) -> Any:
    """``build()`` once per process and key (a worker builds its net or model once, not once per tile)."""
    if key not in _CACHE:
        if len(_CACHE) >= _CACHE_LIMIT:
            _CACHE.pop(next(iter(_CACHE)))
        _CACHE[key] = build()
    return _CACHE[key]


# ------------------------------------------------------------------------------------------- gram (lab nets)

GRAM_DEFAULTS = {"net": "fc", "width": 512, "depth": 2, "activation": "softplus", "seed": 0, "c_res": 0.5,
                 "kernel_size": 3, "layer": "all"}


def _lab_net(X: Tensor, spec: KernelSpec) -> Any:
    """The lab net of a ``gram`` spec for inputs shaped like X (one member, float64, on X's device)."""
    from zeroloss.nets.registry import build_net, net_options

    p = {**GRAM_DEFAULTS, **spec.params}
    options = {"d": X.shape[1], "channels": X.shape[1], "positions": X.shape[-1], "width": p["width"],
               "depth": p["depth"], "activation": p["activation"], "c_res": p["c_res"],
               "kernel_size": p["kernel_size"]}
    return cached(f"gram:{spec.key()}:{tuple(X.shape[1:])}:{X.device}", lambda: build_net(
        p["net"], **net_options(p["net"], options), members=1, seed=int(p["seed"]), dtype=torch.float64,
        device=X.device))


def _lab_factors(net: Any, X: Tensor, layers: set[int]) -> dict[str, tuple[Tensor | None, Tensor]]:
    """Per-sample factors of every selected linear map of the lab net on X (one forward, one backward pass):
    parameter name → (layer inputs a_i or None, δ_i or the per-sample gradient), as :func:`zeroloss.gram` forms
    them (:func:`zeroloss.kernels.empirical._map_features`)."""
    from zeroloss.kernels.empirical import _map_features

    X = net.check_inputs(X).to(torch.float64)
    params = {k: p.detach().to(torch.float64).requires_grad_(True) for k, p in net.named_parameters()}
    out: dict[str, tuple[Tensor | None, Tensor]] = {}
    with torch.enable_grad():
        u, maps = net.functional_forward(params, X, record=True)
        chosen = [m for m in maps if m.layer in layers]
        deltas = torch.autograd.grad(u.sum(), [m.preact for m in chosen])
        for m, delta in zip(chosen, deltas, strict=True):
            inputs, factor = _map_features(m, delta)
            out[m.param] = (None if inputs is None else inputs.detach(), factor.detach())
    return out


def gram_tile(X1: Tensor, X2: Tensor | None, spec: KernelSpec) -> Tensor:
    """G(X1, X2) of the lab net, (n1, n2): Σ over the selected maps W of ⟨∂u(x1_i)/∂W, ∂u(x2_j)/∂W⟩ =
    (a_i · a_j)(δ_i · δ_j) for a dense map, ⟨J_i, J_j⟩ for a convolution, δ_i · δ_j for a bias (docs/theory.md
    §1.3; the structured method of :func:`zeroloss.gram`, on two sets of inputs)."""
    from zeroloss.kernels.empirical import resolve_layers
    from zeroloss.precision import no_tf32

    net = _lab_net(X1, spec)
    layers = resolve_layers(net, {**GRAM_DEFAULTS, **spec.params}["layer"])
    with no_tf32():
        f1 = _lab_factors(net, X1, layers)
        f2 = f1 if X2 is None else _lab_factors(net, X2, layers)
        K: Tensor | None = None
        for name, (A1, F1) in f1.items():
            A2, F2 = f2[name]
            T = F1 @ F2.transpose(-1, -2)
            if A1 is not None and A2 is not None:
                T.mul_(A1 @ A2.transpose(-1, -2))
            K = T if K is None else K + T
    assert K is not None
    return K[0]


def gram_memory(rows: int, cols: int, X: Tensor, spec: KernelSpec) -> int:
    """:func:`zeroloss.gram_memory_bytes` of the net on rows + cols inputs (factors of both sides, the graph of
    one pass, and three (n, n) products: an upper bound for the rows × cols ones)."""
    from zeroloss.kernels.empirical import gram_memory_bytes

    net = _lab_net(X[:1], spec)
    return gram_memory_bytes(net, rows + cols, {**GRAM_DEFAULTS, **spec.params}["layer"],
                             chunk_size=rows + cols)


# ------------------------------------------------------------------------------------------- limit kernels

LIMIT_DEFAULTS = {"net": "fc", "depth": 2, "activation": "softplus", "kind": "du", "c_res": 0.5,
                  "kernel_size": 3, "nodes": 96}


def _limit_setup(spec: KernelSpec) -> tuple[dict[str, Any], Any, Any]:
    from zeroloss.activations import get_activation
    from zeroloss.kernels.limit import KINDS as LIMIT_KINDS
    from zeroloss.kernels.recursions import Expect

    p = {**LIMIT_DEFAULTS, **spec.params}
    choice(p["kind"], "kind", LIMIT_KINDS)
    act = get_activation(p["activation"])
    return p, act, Expect


def _limit_forward(X: Tensor, p: dict[str, Any], e: Any, sides: Any, K0: Tensor, layers: set[int]) -> dict[int, Tensor]:
    from zeroloss.kernels.recursions import fc_forward, fc_layers, resnet_forward, resnet_layers

    H, q = int(p["depth"]), (int(p["kernel_size"]) if p["net"] == "conv-resnet" else 1)
    if p["net"] == "fc":
        return fc_layers(fc_forward(K0, H, e, sides, min(layers), H + 1 in layers), H, layers)
    fwd = resnet_forward(K0, H, e, sides, min(layers), H + 1 in layers, float(p["c_res"]), q)
    return resnet_layers(fwd, H, layers, float(p["c_res"]), e.act.c_sigma, q)


def _variances(X: Tensor, p: dict[str, Any], e: Any) -> list[Tensor]:
    """The diagonal pass: layer h's input variances (index h − 1) of every input of X."""
    from zeroloss.kernels.limit import _input_variances
    from zeroloss.kernels.recursions import Sides, fc_forward, resnet_forward

    H, q = int(p["depth"]), (int(p["kernel_size"]) if p["net"] == "conv-resnet" else 1)
    diag0 = _input_variances(X, p["net"])
    if p["net"] == "fc":
        return fc_forward(diag0, H, e, Sides(), H + 2, False).inputs
    return resnet_forward(diag0, H, e, Sides(), H + 2, False, float(p["c_res"]), q).inputs


def limit_prepare(X: Tensor, spec: KernelSpec) -> KernelSpec:
    """Resolve the Gaussian-expectation method of every layer once, from the variances of *all* inputs, so that
    every tile uses the same rule (``auto`` may pick the ρ-table only when every variance is equal)."""
    from zeroloss.kernels.gaussian import resolve_method
    from zeroloss.kernels.recursions import Expect

    p, act, _ = _limit_setup(spec)
    e = Expect(act, int(p["nodes"]), p.get("method", "auto"), 64 * 2**20)
    methods = [resolve_method(act, ("ss", "dd"), e.method, v, v) for v in _variances(X, p, e)]
    return replace(spec, params={**p, "methods": methods})


def limit_tile(X1: Tensor, X2: Tensor | None, spec: KernelSpec) -> Tensor:
    """The limit kernel on rows × cols: the recursion on the rectangle, each side's variances from its own
    diagonal pass (docs/theory.md §1.4; :mod:`zeroloss.kernels.recursions`), in row blocks whose working arrays fit
    the device's block budget (as :func:`zeroloss.limit_kernel` does). On the diagonal (X2 None) only pairs i ≤ j
    are computed and mirrored, as :func:`zeroloss.limit_kernel` does, so the tile is exactly symmetric."""
    from zeroloss.budget import default_block_bytes
    from zeroloss.kernels.empirical import select_layers
    from zeroloss.kernels.limit import _input_covariance, _input_variances, block_rows
    from zeroloss.kernels.recursions import Sides
    from zeroloss.precision import no_tf32

    p, act, Expect = _limit_setup(spec)
    if "methods" not in p:
        raise ZerolossInputError("spec: a limit-kernel spec must be prepared (prepare_spec) before its tiles")
    H = int(p["depth"])
    e = Expect(act, int(p["nodes"]), p.get("method", "auto"), default_block_bytes(X1.device))
    layers = select_layers({"du": "last", "nngp": "output", "ntk": "all"}[p["kind"]], H)
    symmetric = X2 is None
    X = X1 if symmetric else torch.cat([X1, X2])
    n1, n = X1.shape[0], X.shape[0]
    c0 = 0 if symmetric else n1  # where the columns start in X
    n2 = n - c0
    positions = X.shape[2] if X.ndim == 3 else 1
    out = torch.empty(n1, n2, dtype=torch.float64, device=X.device)
    with no_tf32():
        variances = _variances(X, p, e)
        diag0 = _input_variances(X, p["net"])
        start = 0
        while start < n1:
            first = start if symmetric else 0  # the diagonal tile: columns from the block's first row on
            stop = min(n1, start + block_rows(n1, n2 - first, H, positions, e.block_bytes))
            rows, cols = slice(start, stop), slice(c0 + first, n)
            K0 = _input_covariance(X, p["net"], rows, cols)
            if symmetric:
                idx = torch.arange(stop - start, device=X.device)
                K0[idx, idx] = diag0[rows]  # the diagonal pairs exactly as the diagonal pass saw them
            blocks = _limit_forward(X, p, e, Sides(variances, list(p["methods"]), rows, cols), K0, layers)
            B = sum(blocks.values())
            if symmetric:
                square = B[:, : stop - start]  # pairs within the block's rows: keep i ≤ j
                square.copy_(torch.triu(square) + torch.triu(square, 1).T)
                out[start:stop, first:] = B
                out[first:, start:stop] = B.T
            else:
                out[start:stop] = B
            start = stop
    return out


def limit_memory(rows: int, cols: int, X: Tensor, spec: KernelSpec) -> int:
    from zeroloss.kernels.limit import limit_kernel_memory_bytes

    p = {**LIMIT_DEFAULTS, **spec.params}
    positions = X.shape[2] if X.ndim == 3 else 1
    # the rectangle is sized as the square kernel of rows + cols inputs would be (an upper estimate)
    return limit_kernel_memory_bytes(rows + cols, int(p["depth"]), positions, int(p["nodes"]), device=X.device)


# ------------------------------------------------------------------------------------------- entk (user models)

def entk_tile(X1: Tensor, X2: Tensor | None, spec: KernelSpec) -> Tensor:
    """Θ(X1, X2) = J(X1) J(X2)ᵀ summed over the model's outputs (:func:`zeroloss.entk`, ``outputs="trace"``)."""
    from zeroloss.ntk import entk
    from zeroloss.tiles.models import load_model

    model = cached(f"entk:{spec.key()}:{X1.device}", lambda: load_model(spec, X1.device))
    return entk(model, X1, X2)


def entk_memory(rows: int, cols: int, X: Tensor, spec: KernelSpec) -> int:
    from zeroloss.ntk import entk_memory_bytes
    from zeroloss.tiles.models import load_model

    model = cached(f"entk:{spec.key()}:{X.device}", lambda: load_model(spec, X.device))
    sample = X[:1].expand(rows, *X.shape[1:])
    other = X[:1].expand(cols, *X.shape[1:])
    return entk_memory_bytes(model, sample, other) + 8 * rows * cols


# --------------------------------------------------------------------- infinite width of a user's nn.Module

def infinite_tile(X1: Tensor, X2: Tensor | None, spec: KernelSpec) -> Tensor:
    """The NNGP or NTK (``kind``) of a user's ``nn.Module`` at infinite width (:func:`zeroloss.infinite.
    infinite_kernel`, ``parameterisation`` and ``nodes`` from the spec), per output."""
    from zeroloss.infinite import infinite_kernel
    from zeroloss.tiles.models import load_model

    p = spec.params
    model = cached(f"infinite:{spec.key()}:{X1.device}", lambda: load_model(spec, X1.device))
    result = infinite_kernel(model, X1, X2, kind=p["kind"], parameterisation=p.get("parameterisation", "standard"),
                             nodes=int(p.get("nodes", 96)))
    return getattr(result, p["kind"])


def infinite_memory(rows: int, cols: int, X: Tensor, spec: KernelSpec) -> int:
    from zeroloss.infinite import infinite_kernel_memory_bytes
    from zeroloss.tiles.models import load_model

    model = cached(f"infinite:{spec.key()}:{X.device}", lambda: load_model(spec, X.device))
    return infinite_kernel_memory_bytes(model, tuple(X.shape[1:]), rows, cols, kind=spec.params["kind"])


register_kind("gram", gram_tile, memory_bytes=gram_memory,
              description="zeroloss.gram of a lab net (net, width, depth, activation, seed, layer)")
register_kind("limit", limit_tile, prepare=limit_prepare, memory_bytes=limit_memory,
              description="zeroloss.limit_kernel (kind du | nngp | ntk) of a lab net's architecture")
register_kind("entk", entk_tile, memory_bytes=entk_memory,
              description="zeroloss.entk (trace over outputs) of a user's nn.Module")
register_kind("infinite", infinite_tile, memory_bytes=infinite_memory,
              description="zeroloss.limit_kernel (kind nngp | ntk) of a user's nn.Module: its infinite-width kernel")
