"""The empirical neural tangent kernel of any ``nn.Module``: :func:`entk` and :func:`entk_memory_bytes`.

For a model f(x; θ) with k outputs per sample and the Jacobian J(x) = ∂f(x; θ)/∂θ ∈ R^{k × P},

    Θ(x1_i, x2_j) = J(x1_i) J(x2_j)ᵀ = Σ_p J_p(x1_i) J_p(x2_j)ᵀ    ∈ R^{k × k}

summed over the parameter tensors p that ``params`` selects (docs/theory.md §1.3: for zeroloss's nets this is the
full Gram matrix G = Σ_h G^(h) of Du et al., and the per-layer terms are the G^(h)). Gradient descent on the
squared loss moves the outputs by −η Θ (u − y) to first order, which is why Θ's spectrum governs the rate.
"""

from __future__ import annotations

import torch
from torch import nn

from zeroloss.budget import renamed_budget, resolve_budget
from zeroloss.errors import ZerolossInputError, choice
from zeroloss.nets.base import EnsembleNet
from zeroloss.ntk import ensemble, reference, rules, structured
from zeroloss.ntk.blocks import Plan, assemble
from zeroloss.ntk.memory import TRANSIENT_FACTOR, Footprint, MemoryRefusal, measure, plan_chunks, result_bytes
from zeroloss.ntk.model import (
    FunctionalModel,
    cast_inputs,
    check_inputs,
    check_per_sample,
    eval_mode,
    group_keys,
    prepare,
    probe_outputs,
)
from zeroloss.precision import no_tf32

OUTPUTS = ("trace", "full")
BY = ("total", "parameter", "module")
METHODS = ("auto", "structured", "jacobian", "ntvp")


def entk(
    model: nn.Module,
    x1: torch.Tensor,
    x2: torch.Tensor | None = None,
    *,
    params=None,
    outputs: str = "trace",
    by: str = "total",
    method: str = "auto",
    memory_budget: int | str | None = None,
    dtype: torch.dtype = torch.float64,
    max_bytes: int | None = None,
) -> torch.Tensor | dict[str, torch.Tensor] | dict[int, torch.Tensor]:
    """The empirical NTK Θ(x1, x2) = J(x1) J(x2)ᵀ of a model at its current parameters.

    Θ(x1_i, x2_j)_{ab} = Σ_p ⟨∂f_a(x1_i)/∂θ_p, ∂f_b(x2_j)/∂θ_p⟩ over the selected parameter tensors θ_p
    (docs/theory.md §1.3). The model is evaluated through ``torch.func.functional_call`` on copies of its
    parameters and buffers cast to ``dtype``, with every submodule in eval mode (BatchNorm uses its running
    statistics, dropout is off); its ``training`` flags, parameters and buffers are left exactly as they were.
    A forward pass that couples the samples of a batch (batch statistics, centring over the batch) or is random is
    refused up front (:func:`zeroloss.ntk.model.check_per_sample`): its eNTK per sample would be silently wrong.
    Which method ``"auto"`` takes: :func:`entk_method`.

    Args:
        model: any ``nn.Module`` mapping a batch (n, *shape) to outputs (n, *out) in which sample i's outputs
            depend on x_i only (batch first, eval mode); the k = prod(out) outputs per sample are flattened.
            A zeroloss ensemble net (:mod:`zeroloss.nets`, predictions (S, n)) is S independent models: the
            result carries a leading members axis S, member s's kernel taken over member s's parameters
            (the cross-member terms are zero: members share no parameter).
        x1: inputs (n1, *shape), a tensor or a NumPy array, floating, or integer token ids (kept integer).
            They are copied: a forward pass that writes into its input (``x.mul_(2)``) sees a fresh copy at every
            call, so neither the kernel nor the caller's tensor is affected.
        x2: inputs (n2, *shape) for a cross kernel (train × test); None for the square kernel Θ(x1, x1).
        params: which parameters count: None (every parameter with ``requires_grad``), a list of names from
            ``model.named_parameters()``, or a predicate ``(name, parameter) -> bool``.
        outputs: ``"trace"`` — Σ_a Θ_{aa}, shape (n1, n2); ``"full"`` — every output pair, (n1, n2, k, k).
        by: ``"total"`` — one kernel; ``"parameter"`` — dict parameter name → its contribution J_p J_pᵀ;
            ``"module"`` — dict module name → the sum over its own parameters ("" for the root's). On an
            ensemble net ``"module"`` groups by 1-based layer h (int keys, H + 1 = output), as
            :func:`zeroloss.gram` ``layer=h`` does. The contributions sum to the total.
        method: ``"structured"``, ``"jacobian"`` (per-sample Jacobians contracted), ``"ntvp"``
            (NTK-vector products), or ``"auto"``; see :mod:`zeroloss.ntk`.
        memory_budget: the budget of the whole call (result included), in bytes or a size such as ``"2GiB"``; the
            work is chunked over samples to fit, and a request that cannot fit raises
            :class:`ZerolossInputError` naming ``memory_budget``. None:
            the budget of :mod:`zeroloss.budget` (``ZEROLOSS_MAX_BYTES``, else half the available memory), with
            chunks of at most :data:`~zeroloss.ntk.memory.DEFAULT_WORK_BYTES` beyond the result; a request over
            it is refused before anything is allocated, naming ``x1``. :func:`entk_memory_bytes` states the bytes
            in advance.
        dtype: computation and result dtype, torch.float64 (default) or torch.float32. TF32 is off throughout.
        max_bytes: the old name of ``memory_budget`` (deprecated).

    Returns:
        (n1, n2) or (n1, n2, k, k) tensor — with a leading (S,) on an ensemble net — or a dict of them (``by``).

    References:
        A. Jacot, F. Gabriel, C. Hongler. Neural Tangent Kernel. NeurIPS 2018.
        R. Novak, J. Sohl-Dickstein, S. S. Schoenholz. Fast Finite Width Neural Tangent Kernel. ICML 2022.

    Examples:
        >>> import torch
        >>> from torch import nn
        >>> model = nn.Sequential(nn.Linear(3, 16), nn.Tanh(), nn.Linear(16, 2))
        >>> x = torch.randn(5, 3)
        >>> K = entk(model, x)                           # (5, 5), float64, summed over the 2 outputs
        >>> K.shape, K.dtype
        (torch.Size([5, 5]), torch.float64)
        >>> entk(model, x, x[:2], outputs="full").shape  # cross kernel, every output pair
        torch.Size([5, 2, 2, 2])
        >>> parts = entk(model, x, by="module")          # per module: "0" and "2"
        >>> bool(torch.allclose(parts["0"] + parts["2"], K))
        True
    """
    from zeroloss.usercode import finite_inputs, user_code  # the model's errors are reported as the model's

    finite_inputs(x1, "x1"), finite_inputs(x2, "x2")
    with user_code("model", "the model"):
        job = _Job(model, x1, x2, params, outputs, by, method, renamed_budget(memory_budget, max_bytes), dtype)
        return job.run()


def entk_memory_bytes(
    model: nn.Module,
    x1: torch.Tensor,
    x2: torch.Tensor | None = None,
    *,
    params=None,
    outputs: str = "trace",
    by: str = "total",
    method: str = "auto",
    memory_budget: int | str | None = None,
    dtype: torch.dtype = torch.float64,
    max_bytes: int | None = None,
) -> int:
    """The bytes :func:`entk` with the same arguments will need (an upper estimate), stated before computing.

    It measures one sample's forward pass (a few milliseconds) and plans the chunks; nothing of the size of the
    kernel is allocated. Raises :class:`ZerolossInputError`, like :func:`entk`, when ``memory_budget`` is too small.

    Examples:
        >>> import torch
        >>> from torch import nn
        >>> model = nn.Sequential(nn.Linear(3, 16), nn.Tanh(), nn.Linear(16, 1))
        >>> entk_memory_bytes(model, torch.randn(100, 3)) > 100 * 100 * 8  # the result and the work
        True
    """
    job = _Job(model, x1, x2, params, outputs, by, method, renamed_budget(memory_budget, max_bytes), dtype)
    return job.plan().bytes


def entk_method(
    model: nn.Module,
    x1: torch.Tensor,
    x2: torch.Tensor | None = None,
    *,
    params=None,
    outputs: str = "trace",
    by: str = "total",
    method: str = "auto",
    memory_budget: int | str | None = None,
    dtype: torch.dtype = torch.float64,
    max_bytes: int | None = None,
) -> str:
    """The method :func:`entk` with the same arguments uses: ``"structured"``, ``"jacobian"`` or ``"ntvp"``.

    With ``method="auto"`` this is the choice described in :mod:`zeroloss.ntk` (the structured rules when their
    plan fits the budget, the Jacobian method for a model none of whose weights takes the product form, ntvp
    when nothing else fits and the model supports forward-mode AD); with a named method, that method once it is
    known to fit. The choice depends only on the arguments and the memory budget, so a call with the same
    arguments and the same ``memory_budget`` (or the same ``ZEROLOSS_MAX_BYTES``) computes with the method returned.
    Like :func:`entk_memory_bytes` it measures one sample's forward pass and allocates nothing of the kernel's
    size; it raises the same one-line errors as :func:`entk` when nothing fits.

    Examples:
        >>> import torch
        >>> from torch import nn
        >>> entk_method(nn.Sequential(nn.Linear(3, 16), nn.Tanh(), nn.Linear(16, 1)), torch.randn(10, 3))
        'structured'
        >>> entk_method(nn.EmbeddingBag(50, 4), torch.randint(0, 50, (10, 3)))  # no weight in the product form
        'jacobian'
    """
    job = _Job(model, x1, x2, params, outputs, by, method, renamed_budget(memory_budget, max_bytes), dtype)
    return job.plan().method


class _Job:
    """One eNTK request: validated arguments, the functional views, the plan, and the computation."""

    def __init__(self, model, x1, x2, params, outputs, by, method, memory_budget, dtype) -> None:
        choice(outputs, "outputs", OUTPUTS)
        choice(by, "by", BY)
        choice(method, "method", METHODS)
        x1, x2 = check_inputs(x1, x2)
        self.views = prepare(model, params, dtype)
        self.model = model
        self.ensemble = isinstance(model, EnsembleNet)
        device = next(iter(self.views[0].params.values())).device
        self.device = device
        self.x1 = cast_inputs(x1, dtype, device)
        self.x2 = None if x2 is None else cast_inputs(x2, dtype, device)
        self.full = outputs == "full"
        self.by = by
        self.method = method
        self.memory_budget = memory_budget
        # without memory_budget the whole call must fit the budget of zeroloss.budget (ZEROLOSS_MAX_BYTES, else half
        # the available memory), resolved once so that every method's plan is measured against the same bytes
        self.ceiling = resolve_budget(None, "memory_budget") if memory_budget is None else None
        self.dtype = dtype
        self.analysis: structured.Analysis | None = None
        self.forms: dict[str, str] | None = None
        with eval_mode(model), no_tf32():
            check_per_sample(self.views[0], self.x1, self.x2)
            for view in self.views:
                view.k = probe_outputs(view, self.x1, "x1")
                if self.x2 is not None:
                    probe_outputs(view, self.x2, "x2")
            self.footprint = measure(self.views[0], self.x1)

    @property
    def n1(self) -> int:
        return self.x1.shape[0]

    @property
    def n2(self) -> int:
        return self.n1 if self.x2 is None else self.x2.shape[0]

    def keys(self) -> dict[str, str]:
        return group_keys(self.views[0], self.by)

    def _analyse(self) -> None:
        """Structured analysis (which rule covers which parameter, in which form) for the first view."""
        if self.analysis is not None or self.forms is not None:
            return
        view = self.views[0]
        with eval_mode(self.model), no_tf32():
            if self.ensemble:
                self.forms = ensemble.member_forms(view, self.x1, self.full, self.n1, self.n2)
            else:
                self.analysis = structured.analyse(view, self.x1, self.full, self.n1, self.n2)

    def plan(self) -> Plan:
        """The plan of the method asked for.

        ``"auto"``: "structured" if it fits, else "ntvp" — except that a plain module none of whose weights takes
        the product form (every structured term in the gradient form: convolutions over many pixels, say) gains
        nothing from the rules. Its per-sample gradients are then exactly the Jacobian method's arithmetic, which
        the Jacobian method runs without the hooks, the probe batch and the explicit im2col, so "jacobian" is
        tried first (0.20 s against structured's 0.33 s on the 4-layer CNN of benchmarks/bench_entk.py).
        """
        if self.method == "ntvp":
            gap = self._forward_mode_gap()
            if gap is not None:
                raise ZerolossInputError(
                    f"method: 'ntvp' needs forward-mode AD, which the model's op {gap} does not support; use "
                    "method='structured', 'jacobian' or 'auto'")
        if self.method != "auto":
            return self._plan(self.method)
        order = ["structured", "ntvp"]
        if not self.ensemble:
            self._analyse()
            if self.analysis is not None and not any(t.form == "product" for t in self.analysis.terms):
                order = ["jacobian", "structured", "ntvp"]
        refusals: dict[str, MemoryRefusal] = {}
        for method in order:
            if method == "ntvp" and self._forward_mode_gap() is not None:
                continue  # ntvp would fail (an op without forward-mode AD, e.g. nn.EmbeddingBag): never chosen
            try:
                return self._plan(method)
            except MemoryRefusal as err:
                refusals[method] = err
        raise refusals["structured"]  # nothing fits: the structured method's refusal says what it needs

    def _forward_mode_gap(self) -> str | None:
        """None when forward-mode AD runs through the model (one sample, checked once), else the op that stops it."""
        if not hasattr(self, "_gap"):
            with eval_mode(self.model), no_tf32():
                self._gap = reference.forward_mode_gap(self.views[0], self.x1)
        return self._gap

    def _plan(self, method: str) -> Plan:
        fp: Footprint = self.footprint
        kk = fp.k * fp.k if self.full else 1
        nkeys = len(set(self.keys().values()))
        result = len(self.views) * result_bytes(self.n1, self.n2, fp.k, self.full, nkeys, fp.itemsize)
        act = TRANSIENT_FACTOR * fp.activations
        kP = fp.k * fp.params
        per_pair = (nkeys + 3) * kk * fp.itemsize  # the blocks of every key, a sum and the mirrored copy
        if method == "jacobian":
            # vmap(jacrev): the forward graph and k cotangents batched through it; J and its reshaped copy
            row = col = kP
            transient = (1 + fp.k) * act + kP
        elif method == "ntvp":
            # rows: the vjps (k·P per sample); columns are the inputs themselves; per pair, k jvps in flight
            row, col = kP, 0
            transient = (1 + fp.k) * act + kP
            per_pair += fp.k * act
        else:
            self._analyse()
            row, products, transient = self._structured_bytes()
            col = row
            per_pair += products
        # the private copies of the inputs (cast_inputs) and, while one is made, its source in the computation dtype
        inputs = 2 * sum(x.numel() * x.element_size() for x in (self.x1, self.x2) if x is not None)
        per_input = self.x1[:1].numel() * self.x1.element_size()
        transient += 2 * per_input  # FunctionalModel.fn hands each forward a fresh copy of its chunk
        return plan_chunks(method, self.n1, self.n2, self.x2 is None, row, col, transient, per_pair, fp.fixed + inputs,
                           result, self.memory_budget, self.device, self.ceiling)

    def _structured_bytes(self) -> tuple[int, int, int]:
        """(factor bytes per sample, product-form bytes per pair, transient bytes per sample) of "structured".

        Transient, while a chunk's factors are computed: the forward graph and one backward pass in flight
        (:data:`~zeroloss.ntk.memory.TRANSIENT_FACTOR` × the saved activations), δ of every hooked output for
        each of the k outputs, the patches of a gradient-form convolution, one term's gradients before they are
        stored, and the fallback's Jacobian (a vmapped jacrev, as the "jacobian" method).
        """
        fp = self.footprint
        act = TRANSIENT_FACTOR * fp.activations
        if self.ensemble:
            view = self.views[0]
            with torch.no_grad():
                _, maps = view.model.functional_forward(view._member_all, self.x1[:1], record=True)
            factor = per_pair = delta = 0
            for m in maps:
                if m.param not in view.params:
                    continue
                delta += m.preact[0, 0].numel() * fp.itemsize
                if m.kind == "bias":
                    factor += m.preact[0, 0].numel() * fp.itemsize
                    continue
                s, p = rules.form_bytes(ensemble._shape(m), self.forms[m.param], 1, self.full, fp.itemsize)
                factor += s
                per_pair += p
            return factor, per_pair, act + 2 * delta
        a = self.analysis
        kP_fallback = fp.k * sum(self.views[0].params[n].numel() for n in a.fallback) * fp.itemsize
        factor, per_pair = structured.bytes_per_sample(a, fp.k, self.full, fp.itemsize, 0)
        params = self.views[0].params
        largest = max((fp.k * params[t.name].numel() for t in a.terms if t.form == "gradient"), default=0)
        largest *= fp.itemsize
        transient = act + (fp.k * a.cotangent_elems + a.patch_elems) * fp.itemsize + largest
        if kP_fallback:
            transient += (1 + fp.k) * act + 2 * kP_fallback
        return factor + kP_fallback, per_pair, transient

    def run(self):
        plan = self.plan()
        keys = self.keys()
        results = []
        with eval_mode(self.model), no_tf32(), torch.enable_grad():
            for view in self.views:
                results.append(self._one(view, plan, keys))
        out = results[0] if not self.ensemble else {key: torch.stack([r[key] for r in results]) for key in results[0]}
        if self.by == "total":
            return out[""]
        if self.ensemble and self.by == "module":
            return {int(key): K for key, K in sorted(out.items(), key=lambda kv: int(kv[0]))}
        return out

    def _one(self, view: FunctionalModel, plan: Plan, keys: dict[str, str]) -> dict[str, torch.Tensor]:
        if plan.method != "structured" or self.ensemble:
            return self._assemble(view, plan, keys)
        for _ in range(len(view.params) + 1):
            try:
                return self._assemble(view, plan, keys)
            except structured.Restart as err:  # a chunk broke an assumption the probe batch accepted
                self.analysis = structured.restart(self.analysis, err)
        raise RuntimeError("entk: the structured analysis did not settle")  # each restart removes terms: unreachable

    def _assemble(self, view: FunctionalModel, plan: Plan, keys: dict[str, str]) -> dict[str, torch.Tensor]:
        x1 = self.x1
        x2 = self.x1 if self.x2 is None else self.x2
        tail = (view.k, view.k) if self.full else ()
        out = {key: torch.zeros(self.n1, self.n2, *tail, dtype=self.dtype, device=self.device)
               for key in dict.fromkeys(keys.values())}
        full = self.full
        if plan.method == "jacobian":
            def factor(x: torch.Tensor):
                return reference.jacobian_factor(view, x)

            def pair(f1, f2):
                return reference.jacobian_pair(f1, f2, keys, full)
        elif plan.method == "ntvp":
            def factor(x: torch.Tensor):
                return reference.ntvp_factor(view, x)

            def pair(f1, f2):
                return reference.ntvp_pair(view, f1, f2, keys, full)
        elif self.ensemble:
            def factor(x: torch.Tensor):
                return ensemble.member_factors(view, x, keys, self.forms)

            def pair(f1, f2):
                return structured.pair(f1, f2, full)
        else:
            analysis = self.analysis

            def factor(x: torch.Tensor):
                return structured.factors(view, analysis, x, keys)

            def pair(f1, f2):
                return structured.pair(f1, f2, full)

        def row(a: int, b: int):
            return factor(x1[a:b])

        def col(a: int, b: int):
            return x2[a:b] if plan.method == "ntvp" else factor(x2[a:b])

        return assemble(self.n1, self.n2, self.x2 is None, plan, row, col, pair, out,
                        shared=plan.method != "ntvp")
