"""The NNGP and NTK of a user's module, in blocks of input pairs: :func:`infinite_kernel` and its memory statement.

Two passes, as :mod:`zeroloss.kernels.recursions` does for the lab's nets: every rule is entrywise in the pair
(i, j) once the variances K_ii(s, s) of each node are known, so

1. the **diagonal pass** runs the plan on the pairs (i, i) alone — arrays (n, *S, *S) or (n, *S) — and records the
   per-position variances of every node a nonlinearity or a LayerNorm reads (and the quadrature's error estimate);
2. the **block pass** runs it on row blocks of pairs, (r, c, *S, *S) (full) or (r, c, *S) (pixel-diagonal), with
   the variances taken from the diagonal pass; with X2 None only the upper triangle is computed and mirrored.

Every op is a tensor op over the whole block: no Python loop over pairs. The rows of a block are sized so that its
peak — the node arrays alive at once (each freed after its last use) plus the temporaries of the op running,
:data:`TEMPORARIES` input-sized arrays — stays within ``block_bytes``; :func:`infinite_kernel_memory_bytes` states
the whole peak before anything is allocated and the call checks it against the memory budget (:mod:`zeroloss.budget`).

Examples:
    >>> import torch
    >>> net = torch.nn.Sequential(torch.nn.Linear(3, 512), torch.nn.ReLU(), torch.nn.Linear(512, 1))
    >>> X = torch.randn(5, 3, dtype=torch.float64)
    >>> res = infinite_kernel(net, X)
    >>> res.nngp.shape, res.ntk.shape, res.laws["0"].source
    (torch.Size([5, 5]), torch.Size([5, 5]), 'pytorch-default')
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import nn

from zeroloss.budget import resolve_block_bytes
from zeroloss.errors import ZerolossInputError, choice, positive_int, require
from zeroloss.infinite.graph import Plan, build_plan
from zeroloss.infinite.laws import Law, resolve_laws
from zeroloss.infinite.rules import RULES, Ctx, KState
from zeroloss.kernels.gaussian import DEFAULT_NODES
from zeroloss.precision import no_tf32

KINDS = ("nngp", "ntk", "both")
PARAMETERISATIONS = ("standard", "ntk")
#: Input-sized temporary arrays an op may hold while it runs (a closed form's intermediate arrays, a convolution's
#: padded copy and accumulator); the quadrature's chunks are bounded separately by ``block_bytes``.
TEMPORARIES = 10

Tensor = torch.Tensor


@dataclass
class InfiniteKernel:
    """The infinite-width kernels of a module on inputs (X, X2), and how they were obtained.

    Attributes:
        nngp: (n1, n2) lim E[f(x_i) f(x_j)] per output (None unless asked for).
        ntk: (n1, n2) the NTK per output (None unless asked for).
        outputs: k, outputs per sample.
        output_structure: the kernel of the k outputs — the (k, k) block of inputs (i, j) is K[i, j] · I_k.
        parameterisation: ``"standard"`` or ``"ntk"``.
        laws: module name → :class:`~zeroloss.infinite.laws.Law` used for each linear layer.
        expectations: node name → how its Gaussian expectations were taken.
        quadrature_error: the largest estimated absolute error of a quadrature expectation (0 when every
            nonlinearity has a closed form), per node in ``quadrature_errors``.
        layout: ``"full"`` (cross-position covariances, for pooling) or ``"pixel-diagonal"``.
        memory_bytes: the peak stated before computing (:func:`infinite_kernel_memory_bytes`).
    """

    nngp: Tensor | None
    ntk: Tensor | None
    outputs: int
    output_structure: str
    parameterisation: str
    laws: dict[str, Law]
    expectations: dict[str, str]
    quadrature_error: float
    quadrature_errors: dict[str, float]
    layout: str
    memory_bytes: int
    block_rows: int = 0
    notes: list[str] = field(default_factory=list)

    def __repr__(self) -> str:
        shape = tuple((self.nngp if self.nngp is not None else self.ntk).shape)  # type: ignore[union-attr]
        kinds = ", ".join(k for k in ("nngp", "ntk") if getattr(self, k) is not None)
        return (f"InfiniteKernel({kinds} {shape}, {self.parameterisation} parameterisation, {self.outputs} "
                f"output(s), {self.layout}, quadrature error ≤ {self.quadrature_error:.2g})")


def _as_tensor(X: Any, field_name: str) -> Tensor:
    if isinstance(X, np.ndarray):
        X = torch.from_numpy(X)
    if not isinstance(X, Tensor) or not X.is_floating_point():
        raise ZerolossInputError(f"{field_name}: must be a floating tensor or array (n, *shape), got "
                                 f"{type(X).__name__}{'' if not isinstance(X, Tensor) else ' of ' + str(X.dtype)}")
    require(X.ndim >= 2 and X.shape[0] >= 1, field_name, "must have shape (n, features) or (n, channels, *spatial)",
            tuple(X.shape))
    if not bool(torch.isfinite(X).all()):
        raise ZerolossInputError(f"{field_name}: must be finite, got NaN or inf")
    return X


def _per_pair_bytes(plan: Plan, need_ntk: bool, itemsize: int) -> tuple[int, dict[str, int]]:
    """Peak bytes per pair of one pass (live node arrays + the running op's temporaries), and each node's size."""
    size = {}
    for s in plan.steps:
        per = (s.positions**2 if plan.full else s.positions) * itemsize
        size[s.name] = per * (2 if need_ntk and s.rule != "input" else 1)
    peak = 0
    live: dict[str, int] = {}
    for i, s in enumerate(plan.steps):
        ins = max((size[n] for n in s.inputs), default=size[s.name])
        live[s.name] = size[s.name]
        peak = max(peak, sum(live.values()) + TEMPORARIES * ins)
        for n in s.inputs:
            if plan.last_use.get(n, -1) <= i:
                live.pop(n, None)
    return peak, size


def _rows(n1: int, cols: int, per_pair: int, block_bytes: int) -> int:
    return max(1, min(n1, block_bytes // max(1, cols * per_pair)))


def _memory(plan: Plan, n1: int, n2: int | None, kind: str, block_bytes: int, itemsize: int) -> tuple[int, int]:
    need_ntk = kind != "nngp"
    per_pair, _ = _per_pair_bytes(plan, need_ntk, itemsize)
    cols = n2 if n2 is not None else n1
    rows = _rows(n1, cols, per_pair, block_bytes)
    results = (2 if kind == "both" else 1) * n1 * cols * 8
    diag = (n1 + (n2 or 0)) * per_pair
    variances = sum(s.positions for s in plan.steps) * (n1 + (n2 or 0)) * 8
    quadrature = block_bytes if any(s.rule == "elementwise" and not s.params["nl"].closed for s in plan.steps) else 0
    return results + rows * cols * per_pair + diag + variances + quadrature, rows


def infinite_kernel_memory_bytes(model: nn.Module, input_shape: tuple[int, ...], n1: int, n2: int | None = None,
                                 kind: str = "both", block_bytes: int | None = None,
                                 dtype: torch.dtype = torch.float64) -> int:
    """Upper estimate of the peak memory of :func:`infinite_kernel` for n1 (and n2) inputs of ``input_shape``.

    The result kernels, one block of pairs (its rows sized to ``block_bytes``), the diagonal passes, the recorded
    variances and one quadrature chunk when a nonlinearity has no closed form. Builds the plan (a forward pass on
    two zero inputs), nothing of the kernels' size.

    Examples:
        >>> net = torch.nn.Sequential(torch.nn.Linear(8, 64), torch.nn.ReLU(), torch.nn.Linear(64, 1))
        >>> round(infinite_kernel_memory_bytes(net, (8,), n1=1000) / 2**20)  # MiB, in blocks of 64 MiB (the default)
        79
        >>> round(infinite_kernel_memory_bytes(net, (8,), n1=1000, block_bytes=2**20) / 2**20)  # blocks of 1 MiB
        16
    """
    choice(kind, "kind", KINDS)
    plan = build_plan(model, torch.zeros(2, *input_shape))
    budget = resolve_block_bytes(block_bytes, "cpu")
    return _memory(plan, positive_int(n1, "n1"), n2, kind, budget, torch.finfo(dtype).bits // 8)[0]


def _input_block(X1: Tensor, X2: Tensor, full: bool, diagonal: bool) -> Tensor:
    """K of the inputs: (1/C) Σ_c x_ic(s) x_jc(t) — (r, c, *S, *S), (r, c, *S), or for the diagonal pass (n, …)."""
    n1, C = X1.shape[0], X1.shape[1]
    S = tuple(X1.shape[2:])
    A = X1.reshape(n1, C, -1)
    if diagonal:
        K = torch.einsum("icp,icq->ipq", A, A) if full and S else (A * A).sum(1)
        return K.reshape(n1, *S, *S) / C if full and S else K.reshape(n1, *S) / C
    B = X2.reshape(X2.shape[0], C, -1)
    if full and S:
        return torch.einsum("icp,jcq->ijpq", A, B).reshape(n1, X2.shape[0], *S, *S) / C
    return torch.einsum("icp,jcp->ijp", A, B).reshape(n1, X2.shape[0], *S) / C


def _run(plan: Plan, ctx: Ctx, K0: Tensor) -> KState:
    """Execute the plan on one pass; node states are freed after their last use."""
    states: dict[str, KState] = {}
    out: KState | None = None
    for i, step in enumerate(plan.steps):
        if step.rule == "input":
            out = KState(K0, None)
        else:
            ctx.owned = frozenset(n for n in step.inputs if plan.last_use.get(n, -1) <= i and step.inputs.count(n) == 1)
            out = RULES[step.rule].fn(step, [states[n] for n in step.inputs], ctx)
        states[step.name] = out
        for n in step.inputs:
            if plan.last_use.get(n, -1) <= i:
                states.pop(n, None)
    assert out is not None
    return out


def _expectation_notes(plan: Plan, nodes: int) -> dict[str, str]:
    notes = {}
    for s in plan.steps:
        if s.rule == "elementwise":
            nl = s.params["nl"]
            notes[s.name] = ("identity" if nl.act is None else f"closed form ({nl.name})" if nl.closed
                             else f"Gauss–Hermite quadrature ({nl.name}, {nodes} nodes per axis)")
    return notes


def compute_kernels(plan: Plan, laws: dict[str, Any], modules: dict[str, nn.Module], X: Tensor, X2: Tensor | None,
                    kind: str, parameterisation: str, nodes: int, budget: int,
                    grad: bool = False) -> tuple[dict[str, Tensor], dict[str, float]]:
    """The two passes (module docstring) on inputs already on their device and dtype: kind → (n1, n2) kernel, and
    the quadrature's error estimates by node. ``grad``: differentiable in the laws (tensors allowed in place of the
    floats of :class:`~zeroloss.infinite.laws.Law`), out-of-place arithmetic, one block (for GP hyperparameters).
    """
    need_ntk = kind != "nngp"
    Y = X if X2 is None else X2
    n1, n2 = X.shape[0], Y.shape[0]
    itemsize = torch.finfo(X.dtype).bits // 8

    def ctx(lead: int, record: dict | None = None, variances: dict | None = None, ntk: bool = need_ntk,
            square: int = 0) -> Ctx:
        return Ctx(lead, plan.full, parameterisation, ntk, laws, modules, nodes, budget, record, variances, square,
                   inplace=not grad)

    with no_tf32(), (contextlib.nullcontext() if grad else torch.no_grad()):
        rec1: dict[str, Tensor] = {}
        diag_ctx = ctx(1, rec1, ntk=False)
        _run(plan, diag_ctx, _input_block(X, X, plan.full, True))
        rec2 = rec1
        if X2 is not None:
            rec2 = {}
            _run(plan, ctx(1, rec2, ntk=False), _input_block(Y, Y, plan.full, True))
        if grad:
            variances = {name: (v, rec2[name]) for name, v in rec1.items()}
            state = _run(plan, ctx(2, variances=variances, square=n1 if X2 is None else 0),
                         _input_block(X, Y, plan.full, False))
            results = {}
            for k in ("nngp", "ntk"):
                if kind in (k, "both"):
                    B = (state.nngp if k == "nngp" else state.ntk).reshape(n1, n2)  # type: ignore[union-attr]
                    results[k] = torch.triu(B) + torch.triu(B, 1).T if X2 is None else B
            return results, diag_ctx.quadrature_errors
        results = {k: torch.empty(n1, n2, dtype=X.dtype, device=X.device) for k in ("nngp", "ntk")
                   if kind in (k, "both")}
        start = 0
        while start < n1:
            cols = slice(start, n1) if X2 is None else slice(0, n2)
            ncols = cols.stop - cols.start
            stop = min(n1, start + _rows(n1, ncols, _per_pair_bytes(plan, need_ntk, itemsize)[0], budget))
            rows_ = slice(start, stop)
            variances = {name: (v[rows_], rec2[name][cols]) for name, v in rec1.items()}
            square = stop - start if X2 is None else 0
            state = _run(plan, ctx(2, variances=variances, square=square),
                         _input_block(X[rows_], Y[cols], plan.full, False))
            for k, out in results.items():
                B = state.nngp if k == "nngp" else state.ntk
                assert B is not None
                B = B.reshape(stop - start, ncols)
                if X2 is None:
                    sq = B[:, : stop - start]
                    sq.copy_(torch.triu(sq) + torch.triu(sq, 1).T)
                    out[rows_, cols] = B
                    out[cols, rows_] = B.T
                else:
                    out[rows_, cols] = B
            start = stop
    return results, diag_ctx.quadrature_errors


def infinite_kernel(
    model: nn.Module,
    X: Tensor,
    X2: Tensor | None = None,
    *,
    kind: str = "both",
    parameterisation: str = "standard",
    init: str | dict[str, tuple[float, float]] | None = None,
    nodes: int = DEFAULT_NODES,
    device: torch.device | str | None = None,
    dtype: torch.dtype = torch.float64,
    block_bytes: int | None = None,
    memory_budget: int | str | None = None,
) -> InfiniteKernel:
    """NNGP and/or NTK of an ``nn.Module`` at infinite width (every hidden width → ∞, the laws of its layers kept).

    Args:
        model: a module whose forward ``torch.fx`` can trace, built from the ops of docs/infinite.md; its output
            must be (n, k). Any op without a rule is refused, naming the node, before anything is computed.
        X: (n1, *shape) inputs (tensor or numpy array); X2: (n2, *shape) for a cross kernel (None: X).
        kind: ``"nngp"``, ``"ntk"`` or ``"both"``.
        parameterisation: ``"standard"`` (the module's own parameters: the NTK at its own widths, which
            ``zeroloss.entk`` of the module concentrates on) or ``"ntk"`` (the width-independent limit).
        init: the laws of the linear layers: None/``"auto"`` (PyTorch's default recognised, else measured),
            ``"default"``, ``"measured"``, or a mapping module name → (σ_w², σ_b²) (:mod:`zeroloss.infinite.laws`).
        nodes: Gauss–Hermite nodes per axis for nonlinearities without a closed form.
        device: where to compute (default: X's device); dtype: float64 (default) or float32.
        block_bytes: memory of one block's arrays (None: :func:`zeroloss.budget.default_block_bytes` of the device).
        memory_budget: the most :func:`infinite_kernel_memory_bytes` may state (bytes or e.g. ``"8GiB"``; None:
            ``ZEROLOSS_MAX_BYTES`` or half the available memory); over it nothing is allocated.

    Returns:
        :class:`InfiniteKernel` (kernels in ``dtype``; the k outputs are i.i.d.: the kernel of outputs a, b is
        K δ_ab, said in ``output_structure``).
    """
    choice(kind, "kind", KINDS)
    choice(parameterisation, "parameterisation", PARAMETERISATIONS)
    require(dtype in (torch.float64, torch.float32), "dtype", "must be torch.float64 or torch.float32", dtype)
    nodes = positive_int(nodes, "nodes")
    X = _as_tensor(X, "X")
    Y = X if X2 is None else _as_tensor(X2, "X2")
    require(tuple(Y.shape[1:]) == tuple(X.shape[1:]), "X2", f"must have shape (n2, {', '.join(map(str, X.shape[1:]))})"
            f" like X", tuple(Y.shape))
    where = torch.device(device) if device is not None else X.device
    plan = build_plan(model, X[:2])
    laws = resolve_laws(plan.layers, init)
    budget = resolve_block_bytes(block_bytes, where)
    n1, n2 = X.shape[0], (None if X2 is None else Y.shape[0])
    itemsize = torch.finfo(dtype).bits // 8
    need, rows = _memory(plan, n1, n2, kind, budget, itemsize)
    from zeroloss.budget import ARGUMENT, check_memory

    check_memory(need, memory_budget, field="X", flag=ARGUMENT, hint="use fewer inputs or a smaller block_bytes",
                 what=f"the {n1} × {n2 or n1} infinite-width kernel(s)")
    modules = dict(model.named_modules())
    X = X.to(device=where, dtype=dtype)
    Y = X if X2 is None else Y.to(device=where, dtype=dtype)

    results, errors = compute_kernels(plan, laws, modules, X, Y if X2 is not None else None, kind, parameterisation,
                                      nodes, budget)
    k = plan.outputs
    structure = (f"{k} outputs, independent and identically distributed: the ({k}, {k}) kernel of inputs (i, j) "
                 f"is K[i, j] · I_{k}") if k > 1 else "one output: the kernel is K"
    return InfiniteKernel(results.get("nngp"), results.get("ntk"), k, structure, parameterisation, laws,
                          _expectation_notes(plan, nodes), max(errors.values(), default=0.0), errors,
                          "full" if plan.full else "pixel-diagonal", need, rows)
