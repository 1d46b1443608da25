"""Infinite-width kernels of Du et al.'s three nets: K^(H) ("du"), the NNGP and the NTK; λ₀ (docs/theory.md §1.4).

The three kinds are defined by their finite-width meaning, for the nets exactly as :mod:`zeroloss.nets.du`
writes them (width m → ∞, weights N(0, 1), the scale in the architecture):

* ``"du"``   — the limit of G^(H) at initialisation (Du et al.'s K^(H); λ₀ = λ_min of it);
* ``"nngp"`` — the limit of E[f(x_i) f(x_j)] over the initialisation (= the limit of the output-layer Gram
  G^(H+1) = ⟨x_i^(H), x_j^(H)⟩, the covariance of f given the hidden weights);
* ``"ntk"``  — the limit of the full Gram Σ_{h=1}^{H+1} G^(h) (the neural tangent kernel).

Every per-layer limit is available from :func:`limit_gram_by_layer` (the limit of
:func:`zeroloss.kernels.empirical.gram_by_layer`). Notation: Σ^(h) the limit of ⟨x_i^(h), x_j^(h)⟩ (pixel-wise
for the convolutional net), Ė^(h) = E[σ′(u)σ′(v)] with (u, v) from the block of the pre-activations of layer h.

Fully connected [docs/theory.md §1.4 for K^(H); the NNGP/NTK are the standard recursions, derived for this net]:

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
against x^(H) (no pooling), so cross-position terms average out. The top-layer "du" kernel reproduces docs/theory.md's
K^(H) = r² Σ_l Q^(H−1)[l] Ė^(H)[l]; for H = 1 the ResNets have no residual layer and K^(1) uses c_σ (the FC
two-layer kernel). The backward recursion uses the gradient-independence property of these nets (the output
weights a are not reused in the forward pass, and E[σ″(z) ∂f/∂x] = 0 since ∂f/∂x is linear in a).

References:
    S. S. Du, J. D. Lee, H. Li, L. Wang, X. Zhai. Gradient Descent Finds Global Minima of Deep Neural Networks.
    ICML 2019. A. Jacot, F. Gabriel, C. Hongler. Neural Tangent Kernel. NeurIPS 2018. R. Novak et al. Bayesian
    deep convolutional networks with many channels are Gaussian processes. ICLR 2019. G. Yang. Tensor Programs II.

Memory. Every recursion is entrywise in the pair (i, j) once the diagonal is known, so the kernel is computed
in two passes (:mod:`zeroloss.kernels.recursions`): the recursion on the diagonal alone, then on row blocks of
the upper triangle, mirrored. Only one block's layer arrays are alive at a time, sized from ``block_bytes``
(default :func:`zeroloss.budget.default_block_bytes`: 64 MiB on the CPU, where blocks that stay in cache run
fastest, 1 GiB on a GPU, where fewer, larger blocks mean fewer kernel launches);
:func:`limit_kernel_memory_bytes` states the peak before anything is allocated: the (n, n) result(s) plus about
2·block_bytes (at n = 20 000 the NTK needs ≈ 5 GiB on a GPU, not the ≈ 54 GiB of one array per layer).

The architecture is given either by name and keyword arguments or by a net object — the same object
:func:`zeroloss.gram` takes — whose architecture (not its weights) is read with :func:`zeroloss.nets.architecture`.

Examples:
    >>> from zeroloss.data import sphere_data
    >>> from zeroloss.nets import FullyConnected
    >>> X, _ = sphere_data(n=5, d=3, seed=0)
    >>> K = limit_kernel(X, net="fc", depth=2, activation="erf", kind="du")
    >>> K.shape, K.dtype
    (torch.Size([5, 5]), torch.float64)
    >>> net = FullyConnected(d=3, width=64, depth=2, activation="erf")
    >>> bool(torch.equal(limit_kernel(X, net, kind="du"), K))      # the net object's architecture, same kernel
    True
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from tqdm.auto import tqdm

from zeroloss.activations import Activation, get_activation
from zeroloss.budget import renamed_block_bytes, resolve_block_bytes
from zeroloss.data import validate_inputs
from zeroloss.errors import choice, positive_int, require
from zeroloss.kernels.empirical import select_layers
from zeroloss.kernels.gaussian import DEFAULT_NODES, quadrature_chunk_bytes, resolve_method
from zeroloss.kernels.recursions import Expect, Forward, Sides, fc_forward, fc_layers, resnet_forward, resnet_layers
from zeroloss.nets.base import EnsembleNet
from zeroloss.nets.registry import DU_NETS, INPUT_FIELDS, resolve_architecture
from zeroloss.precision import no_tf32
from zeroloss.spectra import lambda_min

#: The nets with an infinite-width kernel here (Du et al.'s three), by registry name.
NETS = DU_NETS
#: What the architecture arguments mean when the net is given by name and they are left out (None).
ARCHITECTURE_DEFAULTS = {"depth": 2, "activation": "softplus", "c_res": 0.5, "kernel_size": 3}
KINDS = ("du", "nngp", "ntk")
#: Float64 arrays of a block's size alive at once per layer of depth, and beyond the layers, while one block is
#: computed: each layer keeps its input covariance and its Ė^(h) (2 per layer); the expectations' temporaries
#: (the ρ-table interpolation holds about twelve, the quadrature's flattened blocks about ten), the backward
#: products and the summed kernel make up the rest. tests/test_limit_blocks.py checks the resulting statement
#: against the resident peak of fresh processes (``pytest tests/test_limit_blocks.py -k peak -s`` prints them).
BLOCK_ARRAYS_PER_LAYER = 2
BLOCK_ARRAYS_EXTRA = 20

Tensor = torch.Tensor


def block_rows(n: int, cols: int, depth: int, positions: int, block_bytes: int) -> int:
    """Rows of one block of ``cols`` columns whose working arrays fit in ``block_bytes`` (at least 1, at most n)."""
    per_row = cols * positions * 8 * (BLOCK_ARRAYS_PER_LAYER * depth + BLOCK_ARRAYS_EXTRA)
    return max(1, min(n, block_bytes // per_row))


def _check_X(X: Tensor, net: str, device: torch.device | str | None) -> Tensor:
    X = validate_inputs(X, unit_norm=False, check_parallel=False)
    if net == "conv-resnet":
        require(X.ndim == 3, "X", "conv-resnet needs inputs of shape (n, channels, positions)", tuple(X.shape))
    else:
        require(X.ndim == 2, "X", f"{net} needs inputs of shape (n, d)", tuple(X.shape))
    return X.to(device=device) if device is not None else X


def _input_covariance(X: Tensor, net: str, rows: slice, cols: slice) -> Tensor:
    """Σ^(0) on the pairs rows × cols: (r, c) for the FC net, (r, c, 1) for the ResNet, (r, c, p) pixel-wise for
    the convolutional ResNet (⟨x_i[:, s], x_j[:, s]⟩)."""
    if net == "conv-resnet":
        return torch.einsum("ics,jcs->ijs", X[rows], X[cols])
    K = X[rows] @ X[cols].T
    return K.unsqueeze(-1) if net == "resnet" else K


def _input_variances(X: Tensor, net: str) -> Tensor:
    """The diagonal of Σ^(0): (n,), (n, 1) or (n, p), as :func:`_input_covariance` shapes it."""
    v = (X * X).sum(1)
    return v.unsqueeze(-1) if net == "resnet" else v


def _blockwise(X: Tensor, net: str, depth: int, e: Expect, layers: set[int], c_res: float, kernel_size: int,
               total: bool, progress: bool | None) -> dict[int, Tensor]:
    """The selected per-layer Gram limits (or, with ``total``, their sum under key 0), block by block.

    Pass 1 runs the recursion on the diagonal; pass 2 on row blocks [start, stop) × [start, n) of the upper
    triangle, each sized by :func:`block_rows`, written into the (n, n) results and mirrored. Only pairs i ≤ j
    are ever used (the square part of each block is mirrored from its upper triangle), so the results are
    exactly symmetric and do not depend on the block size.
    """
    H, n = depth, X.shape[0]
    q = kernel_size if net == "conv-resnet" else 1

    def forward(K0: Tensor, sides: Sides, dots_from: int, need_top: bool) -> Forward:
        if net == "fc":
            return fc_forward(K0, H, e, sides, dots_from, need_top)
        return resnet_forward(K0, H, e, sides, dots_from, need_top, c_res, q)

    per_layer: Callable[[Forward], dict[int, Tensor]]
    if net == "fc":
        per_layer = lambda fwd: fc_layers(fwd, H, layers)  # noqa: E731
    else:
        per_layer = lambda fwd: resnet_layers(fwd, H, layers, c_res, e.act.c_sigma, q)  # noqa: E731

    diag0 = _input_variances(X, net)
    variances = forward(diag0, Sides(), dots_from=H + 2, need_top=False).inputs  # layer h's at h − 1
    methods = [resolve_method(e.act, ("ss", "dd"), e.method, v, v) for v in variances]
    positions = diag0.shape[-1] if diag0.ndim == 2 else 1
    keys = [0] if total else sorted(layers)
    out = {k: torch.empty(n, n, dtype=torch.float64, device=X.device) for k in keys}
    first = block_rows(n, n, H, positions, e.block_bytes)
    bar = tqdm(total=n, desc="limit_kernel", unit="row", leave=False,
               disable=(not progress) if progress is not None else (None if first < n else True))
    start = 0
    while start < n:
        stop = min(n, start + block_rows(n, n - start, H, positions, e.block_bytes))
        rows, cols = slice(start, stop), slice(start, n)
        K0 = _input_covariance(X, net, rows, cols)
        idx = torch.arange(stop - start, device=X.device)
        K0[idx, idx] = diag0[rows]  # the diagonal pairs exactly as the diagonal pass saw them
        blocks = per_layer(forward(K0, Sides(variances, methods, rows, cols), min(layers), H + 1 in layers))
        if total:
            blocks = {0: sum(blocks.values())}
        for k, B in blocks.items():
            square = B[:, : stop - start]  # pairs i, j both in the block's rows: keep i ≤ j, as every other block
            square.copy_(torch.triu(square) + torch.triu(square, 1).T)
            out[k][rows, cols] = B
            out[k][cols, rows] = B.T
        bar.update(stop - start)
        start = stop
    bar.close()
    return out


def _limit(X: Tensor, net: str | EnsembleNet, depth: int | None, activation: str | Activation | None, layers: str | int,
           c_res: float | None, kernel_size: int | None, nodes: int, method: str, device: torch.device | str | None,
           block_bytes: int | None, total: bool, progress: bool | None,
           memory_budget: int | str | None = None) -> dict[int, Tensor]:
    """Resolve the architecture (a name with arguments, or a net object), validate, check the memory budget, then run
    :func:`_blockwise`."""
    arch = resolve_architecture(net, {"depth": depth, "activation": activation, "c_res": c_res,
                                      "kernel_size": kernel_size}, ARCHITECTURE_DEFAULTS)
    name = arch["name"]
    choice(name, "net", NETS)
    H = positive_int(arch["depth"], "depth")
    act = get_activation(arch["activation"])
    c_res = arch["c_res"]
    require(isinstance(c_res, (int, float)) and 0.0 < c_res < 1.0, "c_res", "must be in (0, 1)", c_res)
    q = positive_int(arch["kernel_size"], "kernel_size")
    require(q % 2 == 1, "kernel_size", "must be an odd positive integer", q)
    X = _check_X(X, name, device)
    if isinstance(net, EnsembleNet):
        shape = tuple(getattr(net, f) for f in INPUT_FIELDS[name])
        require(tuple(X.shape[1:]) == shape, "X", f"must have shape (n, {', '.join(map(str, shape))}) to fit the "
                f"net", tuple(X.shape))
    budget = resolve_block_bytes(block_bytes, X.device)
    e = Expect(act, positive_int(nodes, "nodes"), method, budget)
    from zeroloss.budget import ARGUMENT, check_memory

    # sized before the layer set is built (an absurd depth is refused here, not by building range(depth))
    n, positions = X.shape[0], (X.shape[2] if X.ndim == 3 else 1)
    outputs = 1 if total or layers != "all" else H + 1
    need = limit_kernel_memory_bytes(n, H, positions, e.nodes, budget, outputs=outputs)
    check_memory(need, memory_budget, field="X", flag=ARGUMENT, hint="use fewer inputs",
                 what=f"the {n} × {n} limit kernel" + ("" if total else f"s of {outputs} layer(s)"))
    chosen = select_layers(layers, H, "layers")
    with no_tf32():
        return _blockwise(X, name, H, e, chosen, float(c_res), q, total, progress)


def limit_gram_by_layer(
    X: Tensor,
    net: str | EnsembleNet = "fc",
    depth: int | None = None,
    activation: str | Activation | None = None,
    layers: str | int = "all",
    c_res: float | None = None,
    kernel_size: int | None = None,
    nodes: int = DEFAULT_NODES,
    method: str = "auto",
    device: torch.device | str | None = None,
    block_bytes: int | None = None,
    progress: bool | None = None,
    memory_budget: int | str | None = None,
    max_bytes: int | None = None,
) -> dict[int, Tensor]:
    """The m → ∞ limit of every selected per-layer Gram G^(h) at initialisation: 1-based layer → (n, n) float64.

    Args:
        X: (n, d), or (n, channels, positions) for ``net="conv-resnet"`` (any finite non-zero inputs; Du's
            theory assumes unit norms).
        net: ``"fc"``, ``"resnet"`` or ``"conv-resnet"``, or a net object of those kinds (its architecture is
            used, not its weights; an explicit argument below that disagrees with it is an error).
        depth: H (default 2 for a name).
        activation: registry name or Activation (default softplus for a name).
        layers: ``"all"`` (1..H+1), ``"last"`` (H), ``"output"`` (H+1) or an int h in 1..H+1.
        c_res: residual scale of the ResNets, in (0, 1) (default 0.5 for a name).
        kernel_size: q of the convolutional ResNet, odd (default 3 for a name).
        nodes, method: Gaussian-expectation settings (:mod:`zeroloss.kernels.gaussian`).
        device: where to compute (default: X's device).
        block_bytes: memory bound of one block's working arrays and of one quadrature chunk (each; None:
            :func:`zeroloss.budget.default_block_bytes` of the device).
        progress: a progress bar over rows (None: on a terminal, when the kernel takes more than one block).
        memory_budget: the most :func:`limit_kernel_memory_bytes` may state (bytes or a size such as ``"8GiB"``;
            None: ``ZEROLOSS_MAX_BYTES`` or half the available memory, :mod:`zeroloss.budget`); over it nothing is
            allocated and a :class:`~zeroloss.errors.ZerolossInputError` names the size.
        max_bytes: the old name of ``block_bytes`` (deprecated).

    Returns:
        dict layer → (n, n) float64 symmetric tensor, the limit of ``gram_by_layer(net, X, layer)[h]``.
        Memory: one (n, n) array per selected layer (:func:`limit_kernel_memory_bytes` with ``outputs``).
    """
    return _limit(X, net, depth, activation, layers, c_res, kernel_size, nodes, method, device,
                  renamed_block_bytes(block_bytes, max_bytes), False, progress, memory_budget)


def limit_kernel(
    X: Tensor,
    net: str | EnsembleNet | torch.nn.Module = "fc",
    depth: int | None = None,
    activation: str | Activation | None = None,
    kind: str | None = None,
    c_res: float | None = None,
    kernel_size: int | None = None,
    nodes: int = DEFAULT_NODES,
    method: str = "auto",
    device: torch.device | str | None = None,
    block_bytes: int | None = None,
    progress: bool | None = None,
    memory_budget: int | str | None = None,
    max_bytes: int | None = None,
    *,
    X2: Tensor | None = None,
    init: str | dict | None = None,
    parameterisation: str = "standard",
    dtype: torch.dtype = torch.float64,
):
    """Infinite-width kernel of one of Du et al.'s nets on inputs X: (n, n) float64 — or of any ``nn.Module``.

    A user's ``nn.Module`` (anything but the lab's nets) goes to :func:`zeroloss.infinite.infinite_kernel`:
    ``limit_kernel(X, model, kind="nngp" | "ntk" | "both", X2=..., init=..., parameterisation=...)`` returns an
    :class:`~zeroloss.infinite.InfiniteKernel` (the kernels with the laws used, the outputs' structure and the
    quadrature's error); ``kind`` defaults to ``"both"`` there, and depth, activation, c_res, kernel_size,
    method and progress do not apply (docs/infinite.md). The keyword-only X2, init, parameterisation and dtype
    apply to such modules only.

    Args:
        X: (n, d), or (n, channels, positions) for the convolutional ResNet.
        net: ``"fc"``, ``"resnet"`` or ``"conv-resnet"``, or a net object of those kinds, as
            :func:`zeroloss.gram` takes it: its architecture (kind, depth, activation, c_res, kernel size) is used,
            not its weights, and an explicit argument below that disagrees with it is an error.
        depth: H (hidden layers; default 2 for a name).
        activation: registry name or Activation (default softplus for a name).
        kind: ``"du"`` (lim G^(H), Du's K^(H); the default, None, for the lab's nets), ``"nngp"`` (lim E[f fᵀ]) or
            ``"ntk"`` (lim Σ_h G^(h)).
        c_res: residual scale of the ResNets, in (0, 1) (default 0.5 for a name, as :mod:`zeroloss.nets.du`).
        kernel_size: q of the convolutional ResNet (default 3 for a name).
        nodes: Gauss–Hermite nodes per axis where no closed form exists.
        method: ``"auto"``, ``"closed"``, ``"quadrature"`` or ``"table"`` (:mod:`zeroloss.kernels.gaussian`).
        device: where to compute (default: X's device). The result stays there.
        block_bytes: memory bound of one block's working arrays and of one quadrature chunk (each; None:
            :func:`zeroloss.budget.default_block_bytes` of the device); the peak is stated by
            :func:`limit_kernel_memory_bytes`.
        progress: a progress bar over rows (None: on a terminal, when the kernel takes more than one block).
        memory_budget: the most :func:`limit_kernel_memory_bytes` may state (bytes or a size such as ``"8GiB"``;
            None: ``ZEROLOSS_MAX_BYTES`` or half the available memory, :mod:`zeroloss.budget`); over it nothing is
            allocated and a :class:`~zeroloss.errors.ZerolossInputError` names the size.
        max_bytes: the old name of ``block_bytes`` (deprecated).

    Returns:
        (n, n) float64 symmetric PSD tensor (exactly symmetric).

    Examples:
        >>> from zeroloss.data import sphere_data
        >>> X, _ = sphere_data(n=4, d=3, seed=1)
        >>> K = limit_kernel(X, net="resnet", depth=3, activation="relu", kind="ntk")
        >>> bool(torch.equal(K, K.T))
        True
    """
    if isinstance(net, torch.nn.Module) and not isinstance(net, EnsembleNet):
        from zeroloss.infinite import infinite_kernel

        for field_name, value in (("depth", depth), ("activation", activation), ("c_res", c_res),
                                  ("kernel_size", kernel_size)):
            require(value is None, field_name, "applies to the lab's nets only, not to a user's nn.Module", value)
        require(method == "auto", "method", "must be 'auto' for a user's nn.Module", method)
        return infinite_kernel(net, X, X2, kind="both" if kind is None else kind, parameterisation=parameterisation,
                               init=init, nodes=nodes, device=device, dtype=dtype,
                               block_bytes=renamed_block_bytes(block_bytes, max_bytes), memory_budget=memory_budget)
    for field_name, value in (("X2", X2), ("init", init)):
        require(value is None, field_name, "applies to a user's nn.Module only (the lab's nets have their laws)", value)
    require(parameterisation == "standard" and dtype == torch.float64, "parameterisation",
            "and dtype apply to a user's nn.Module only", (parameterisation, dtype))
    kind = "du" if kind is None else kind
    choice(kind, "kind", KINDS)
    layers = {"du": "last", "nngp": "output", "ntk": "all"}[kind]
    return _limit(X, net, depth, activation, layers, c_res, kernel_size, nodes, method, device,
                  renamed_block_bytes(block_bytes, max_bytes), True, progress, memory_budget)[0]


def lambda0(X: Tensor, net: str | EnsembleNet = "fc", depth: int | None = None,
            activation: str | Activation | None = None, c_res: float | None = None, kernel_size: int | None = None,
            nodes: int = DEFAULT_NODES, method: str = "auto", device: torch.device | str | None = None,
            memory_budget: int | str | None = None) -> float:
    """Du et al.'s λ₀ = λ_min(K^(H)) of the "du" kernel, in float64 (not clipped: round-off may make it < 0).

    The arguments are those of :func:`limit_kernel` (``net`` a name or a net object).

    Examples:
        >>> from zeroloss.data import sphere_data
        >>> X, _ = sphere_data(n=6, d=4, seed=0)
        >>> lambda0(X, net="fc", depth=2, activation="erf") > 0
        True
    """
    K = limit_kernel(X, net, depth, activation, "du", c_res, kernel_size, nodes, method, device,
                     memory_budget=memory_budget)
    return float(lambda_min(K))


def limit_kernel_memory_bytes(n: int, depth: int, positions: int = 1, nodes: int = DEFAULT_NODES,
                              block_bytes: int | None = None, quadrature: bool = True, outputs: int = 1,
                              device: torch.device | str | None = None, max_bytes: int | None = None) -> int:
    """Upper estimate of the peak memory :func:`limit_kernel` needs, in bytes, stated before anything is allocated.

    The ``outputs`` (n, n) float64 results (1 for :func:`limit_kernel`; one per selected layer for
    :func:`limit_gram_by_layer`), one block's working arrays (:data:`BLOCK_ARRAYS_PER_LAYER` per layer and
    :data:`BLOCK_ARRAYS_EXTRA` more, per entry and position, at most ``block_bytes`` unless a single row needs
    more), the diagonal pass's (n, positions) arrays, and one quadrature chunk when the activation has no closed
    form (``quadrature=True``: the per-block rule, or the building of a ρ-table). ``block_bytes`` None means
    :func:`zeroloss.budget.default_block_bytes` of ``device``. The inputs
    X are not counted, nor blocks that the allocator keeps after they are freed (glibc on the CPU, the caching
    allocator on CUDA: at most about one more budget).

    Examples:
        >>> round(limit_kernel_memory_bytes(20000, depth=5, quadrature=False, device="cuda") / 2**30, 2)  # GiB
        3.98
    """
    H = positive_int(depth, "depth")
    n, positions = positive_int(n, "n"), positive_int(positions, "positions")
    block_bytes = resolve_block_bytes(renamed_block_bytes(block_bytes, max_bytes), device)
    result = positive_int(outputs, "outputs") * n * n * 8
    rows = block_rows(n, n, H, positions, block_bytes)
    block = rows * n * positions * 8 * (BLOCK_ARRAYS_PER_LAYER * H + BLOCK_ARRAYS_EXTRA)
    diagonal = (BLOCK_ARRAYS_PER_LAYER * H + BLOCK_ARRAYS_EXTRA) * n * positions * 8
    chunk = quadrature_chunk_bytes(rows * n * positions, nodes, block_bytes) if quadrature else 0
    return result + block + diagonal + chunk
