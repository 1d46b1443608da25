"""Exact finite-width Gram matrices, structured: no Jacobian is formed (docs/theory.md §1.3, docs/architecture.md).

For a trainable linear map z_i = W a_i the per-sample gradient is ∂u_i/∂W = δ_i a_iᵀ with δ_i = ∂u_i/∂z_i, so

    G^(W)_ij = ⟨∂u_i/∂W, ∂u_j/∂W⟩ = (a_i · a_j)(δ_i · δ_j)

— one forward pass, one backward pass of Σ_i u_i (samples are independent, so ∂(Σ_k u_k)/∂z_i = δ_i), and two
n×n Gram products per layer. For a convolution z_i[:, l] = W φ_l(a_i) the per-sample gradient is
J_i = Σ_l δ_il φ_l(a_i)ᵀ (an m × q·c matrix, formed per sample) and G_ij = ⟨J_i, J_j⟩. A bias contributes δ_i · δ_j.
The Jacobian contraction of :mod:`zeroloss.kernels.jacobian` is the reference these are tested against.

Layers: ``layer="all"`` is the full Gram Σ_h G^(h) (the empirical NTK), ``"last"`` is G^(H), ``"output"`` the
Gram of the output weights a (layer H + 1), an integer h the layer h (1-based).
"""

from __future__ import annotations

import torch

from zeroloss.errors import ZerolossInputError
from zeroloss.nets.base import EnsembleNet, LinearMap, require_ensemble_net
from zeroloss.precision import no_tf32

#: Samples per forward/backward chunk when ``chunk_size`` is not given (bounds the autograd graph's memory).
DEFAULT_CHUNK = 2048


def select_layers(layer: str | int, depth: int, name: str = "layer") -> set[int]:
    """Translate a layer selector into 1-based layer indices of a depth-H net (H + 1 is the output layer).

    ``"all"`` → 1..H+1, ``"last"`` → {H}, ``"output"`` → {H+1}, an int h in 1..H+1 → {h}; ``name`` is the
    argument named in the error.
    """
    H = depth
    if layer == "all":
        return set(range(1, H + 2))
    if layer == "last":
        return {H}
    if layer == "output":
        return {H + 1}
    if isinstance(layer, int) and not isinstance(layer, bool) and 1 <= layer <= H + 1:
        return {layer}
    raise ZerolossInputError(
        f"{name}: must be 'all', 'last', 'output' or an integer in 1..{H + 1} (H + 1 = output), got {layer!r}"
    )


def resolve_layers(net: EnsembleNet, layer: str | int) -> set[int]:
    """:func:`select_layers` for a net (a zeroloss net: anything else is refused in one line)."""
    require_ensemble_net(net, "gram")
    return select_layers(layer, net.depth)


def _map_features(m: LinearMap, delta: torch.Tensor) -> tuple[torch.Tensor | None, torch.Tensor]:
    """Per-sample factors of one map: (inputs, deltas) for dense, (None, J flattened) for conv and bias.

    Shapes: dense → inputs (S, c, fan_in), deltas (S, c, fan_out); conv → J (S, c, fan_out·fan_in);
    bias → deltas (S, c, fan_out).
    """
    if m.kind == "dense":
        return m.inputs, delta
    if m.kind == "conv":
        J = torch.einsum("snmp,snkp->snmk", delta, m.inputs)
        return None, J.flatten(-2)
    if m.kind == "bias":
        return None, delta
    raise ValueError(f"unknown linear-map kind {m.kind!r}")


def gram_by_layer(
    net: EnsembleNet,
    X: torch.Tensor,
    layer: str | int = "all",
    dtype: torch.dtype = torch.float64,
    chunk_size: int | None = None,
    memory_budget: int | str | None = None,
) -> dict[int, torch.Tensor]:
    """Per-layer Gram matrices from one forward/backward pass: 1-based layer → (S, n, n).

    Same arguments as :func:`gram`; the selected layers are the keys (H + 1 is the output layer).
    """
    return _gram_by_layer(net, X, layer, dtype, chunk_size, check_budget=True, memory_budget=memory_budget)


def _gram_by_layer(net: EnsembleNet, X: torch.Tensor, layer: str | int, dtype: torch.dtype, chunk_size: int | None,
                   check_budget: bool, memory_budget: int | str | None = None) -> dict[int, torch.Tensor]:
    """:func:`gram_by_layer`; ``check_budget=False`` skips the memory check (for callers that checked their whole
    run up front, such as the probes of a training run, which must not refuse half-way)."""
    layers = resolve_layers(net, layer)
    X = net.check_inputs(X)
    n = X.shape[0]
    chunk = DEFAULT_CHUNK if chunk_size is None else chunk_size
    if not isinstance(chunk, int) or isinstance(chunk, bool) or chunk <= 0:
        raise ZerolossInputError(f"chunk_size: must be a positive integer, got {chunk_size!r}")
    if check_budget:
        from zeroloss.budget import ARGUMENT, check_memory

        check_memory(gram_memory_bytes(net, n, layer, dtype, chunk), memory_budget, field="X", flag=ARGUMENT,
                     what=f"the Gram matrix of {net.members} member(s) on n = {n} inputs", hint="use fewer inputs")
    X = X.to(dtype)
    params = {k: p.detach().to(dtype).requires_grad_(True) for k, p in net.named_parameters()}
    layer_of: dict[str, int] = {}
    dense_in: dict[str, list[torch.Tensor]] = {}
    factors: dict[str, list[torch.Tensor]] = {}
    with no_tf32(), torch.enable_grad():
        for start in range(0, n, chunk):
            u, maps = net.functional_forward(params, X[start : start + chunk], record=True)
            chosen = [m for m in maps if m.layer in layers]
            deltas = torch.autograd.grad(u.sum(), [m.preact for m in chosen])
            for m, delta in zip(chosen, deltas, strict=True):
                inputs, factor = _map_features(m, delta)
                layer_of[m.param] = m.layer
                factors.setdefault(m.param, []).append(factor.detach())
                if inputs is not None:
                    dense_in.setdefault(m.param, []).append(inputs.detach())
            del u, maps, chosen, deltas
        out: dict[int, torch.Tensor] = {}
        for name, parts in factors.items():
            F = torch.cat(parts, dim=1)
            K = F @ F.transpose(-1, -2)
            if name in dense_in:
                A = torch.cat(dense_in[name], dim=1)
                K.mul_(A @ A.transpose(-1, -2))
            h = layer_of[name]
            out[h] = out[h] + K if h in out else K
    return dict(sorted(out.items()))


def gram(
    net: EnsembleNet,
    X: torch.Tensor,
    layer: str | int = "all",
    dtype: torch.dtype = torch.float64,
    chunk_size: int | None = None,
    memory_budget: int | str | None = None,
) -> torch.Tensor:
    """Exact finite-width Gram matrix of every member at the net's current parameters.

    Args:
        net: an ensemble net (:mod:`zeroloss.nets`).
        X: inputs, (n, d) or (n, channels, positions) for the convolutional ResNet.
        layer: ``"all"`` (Σ_h G^(h), the empirical NTK), ``"last"`` (G^(H)), ``"output"`` (Gram of a), or an int h.
        dtype: computation dtype (float64 by default; parameters are cast, the net is not changed).
        chunk_size: samples per forward/backward pass (default :data:`DEFAULT_CHUNK`); the result is exact
            whatever the chunking. See :func:`gram_memory_bytes` for the memory it needs.
        memory_budget: bytes (or a size such as ``"8GiB"``) that :func:`gram_memory_bytes` may not exceed; None:
            ``ZEROLOSS_MAX_BYTES`` or half the available memory (:mod:`zeroloss.budget`). Over it, nothing is
            allocated and a :class:`~zeroloss.errors.ZerolossInputError` names the size.

    Returns:
        (S, n, n) tensor, G_ij = Σ_{W in layers} ⟨∂u_i/∂W, ∂u_j/∂W⟩.

    Examples:
        >>> from zeroloss.nets import FullyConnected
        >>> net = FullyConnected(d=4, width=32, depth=2, members=3)
        >>> gram(net, torch.eye(4), layer="last").shape
        torch.Size([3, 4, 4])
    """
    per_layer = list(gram_by_layer(net, X, layer, dtype, chunk_size, memory_budget).values())
    total = per_layer[0]
    for K in per_layer[1:]:
        total += K  # in place: the per-layer matrices are fresh tensors owned here
    return total


def gram_memory_bytes(
    net: EnsembleNet, n: int, layer: str | int = "all", dtype: torch.dtype = torch.float64,
    chunk_size: int | None = None,
) -> int:
    """An estimate of the memory :func:`gram` needs, stated before anything is allocated.

    Counts the stored per-sample factors (inputs and δ for dense maps, per-sample gradients for convolutions;
    the largest map's twice, as its chunks are concatenated), the autograd graph of one chunk (about four tensors
    the size of each layer's output per sample, plus the parameters), and three n×n matrices per member (result and
    two products). Measured resident growth at n = 3000 (fc, H = 2): 227 MiB for 223 stated (width 64, S = 1),
    733 MiB for 685 stated (width 512, S = 2): the allocator's slack is not counted.
    """
    layers = resolve_layers(net, layer)
    itemsize = torch.empty((), dtype=dtype).element_size()
    chunk = min(n, chunk_size or DEFAULT_CHUNK)
    member = {k: p.detach()[:1] for k, p in net.named_parameters()}  # one member: views, nothing copied
    with torch.no_grad():
        _, maps = net.functional_forward(member, _one_sample(net, next(iter(member.values()))), record=True)
    stored = graph = largest = 0
    for m in maps:
        out_numel = m.preact[0, 0].numel()
        graph += 4 * out_numel
        if m.layer not in layers:
            continue
        if m.kind == "dense":
            one = m.inputs[0, 0].numel() + out_numel
        elif m.kind == "conv":
            one = m.preact.shape[2] * m.inputs.shape[2]
        else:
            one = out_numel
        stored, largest = stored + one, max(largest, one)
    S = net.members
    params = sum(p.numel() for p in net.parameters())
    # the largest map's factors once more: torch.cat joins its chunks while they are still alive
    total = S * (n * (stored + largest) + chunk * graph + 3 * n * n) + params
    return int(total * itemsize)


def _one_sample(net: EnsembleNet, like: torch.Tensor) -> torch.Tensor:
    """One zero input sample (dtype and device of ``like``) whose forward pass gives every layer's shape.

    A real one-sample pass of one member costs a few vectors; a pass on the meta device would send the activations
    through torch's Python decompositions, which import ``torch._dynamo`` (~1.3 s, once per process).
    """
    if hasattr(net, "positions"):
        shape = (1, net.channels, net.positions)  # type: ignore[attr-defined]
    else:
        shape = (1, net.d)  # type: ignore[attr-defined]
    return torch.zeros(shape, dtype=like.dtype, device=like.device)
