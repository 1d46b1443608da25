"""The structured eNTK: layer inputs from forward hooks, output cotangents from one batched backward pass.

For a chunk of c samples the model runs once with forward hooks on the layers :mod:`zeroloss.ntk.rules` covers;
each hook keeps its layer's input (or x̂ for a norm layer) and output z. One backward pass per output dimension a —
batched with ``is_grads_batched`` (a loop when a layer cannot be batched) — of Σ_i f_a(x_i) gives δ_{ia} = ∂f_a(x_i)/
∂z_i for every hooked output at once: samples are independent, so the sum's derivative at z_i is sample i's own.
No parameter gradient is formed in that pass. The rules then turn (inputs, δ) into product-form factors or
per-sample gradients, whichever :func:`~zeroloss.ntk.rules.choose_form` finds cheaper, and parameters no rule
covers fall back to per-sample Jacobians of those parameters alone (:func:`zeroloss.ntk.reference.jacobian_factor`).

What makes a structured parameter safe, checked by :func:`analyse` on a probe batch and again on every chunk:

- it belongs to one module only (a tied weight — the same tensor in two modules — falls back);
- inside its module's call the hook hands the module a private leaf copy of the parameter, so a use of the
  parameter *outside* that call (an attention block reading ``out_proj.weight`` directly, a decoder applying an
  embedding's weight with ``F.linear``) leaves a gradient on the original: such a parameter falls back;
- a module called several times (weights shared across calls) is handled: its calls are more positions t;
- every call receives and returns tensors whose first axis is the batch of samples (checked with a probe batch of
  a prime size that occurs in no other axis); otherwise the module falls back;
- a hooked output or input modified in place later (``ReLU(inplace=True)`` after a BatchNorm, ``out += x``) is
  captured as a copy instead, so δ is taken at the value the layer produced.

If a chunk breaks an assumption the probe accepted (control flow that depends on the data), the computation
restarts with the offending parameters on the fallback path.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass, field, replace

import torch
from torch import nn

from zeroloss.ntk import reference, rules
from zeroloss.ntk.model import FunctionalModel


@dataclass
class Term:
    """One structured parameter: its name, module, attribute, rule kind and the form chosen for it."""

    name: str
    module: str
    attr: str
    kind: str
    form: str = "gradient"


@dataclass
class Analysis:
    """What :func:`analyse` decided: structured terms, the fallback parameters, and per-sample sizes."""

    terms: list[Term]
    fallback: list[str]
    modules: dict[str, nn.Module]
    clone_in: set[str] = field(default_factory=set)
    clone_out: set[str] = field(default_factory=set)
    shapes: dict[str, rules.Shape] = field(default_factory=dict)
    cotangent_elems: int = 0  # Σ over hooked calls of the per-sample output size (δ is k times this)
    patch_elems: int = 0  # largest per-sample patch matrix of a gradient-form convolution (transient)


class Restart(Exception):
    """Raised inside a chunk when a structured parameter must move to the fallback path."""

    def __init__(self, names: set[str], clone_in: set[str] = frozenset(), clone_out: set[str] = frozenset()):
        super().__init__(", ".join(sorted(names)))
        self.names, self.clone_in, self.clone_out = set(names), set(clone_in), set(clone_out)


@dataclass
class Call:
    input: torch.Tensor
    output: torch.Tensor
    in_version: int
    out_version: int
    xhat: torch.Tensor | None = None


class Capture:
    """Forward hooks that record each call of the hooked modules and hand the module private parameter leaves."""

    def __init__(self, modules: dict[str, nn.Module], swap: dict[str, list[str]], clone_in: set[str],
                 clone_out: set[str]) -> None:
        self.modules, self.swap, self.clone_in, self.clone_out = modules, swap, clone_in, clone_out
        self.calls: dict[str, list[Call]] = {name: [] for name in modules}
        self.bad: set[str] = set()
        self._handles: list = []
        self._saved: dict[str, dict[str, torch.Tensor]] = {}

    def __enter__(self) -> Capture:
        for name, module in self.modules.items():
            self._handles.append(module.register_forward_pre_hook(self._pre(name), with_kwargs=True))
            self._handles.append(module.register_forward_hook(self._post(name)))
        return self

    def __exit__(self, *exc) -> None:
        for h in self._handles:
            h.remove()

    def _pre(self, name: str):
        def hook(module: nn.Module, args: tuple, kwargs: dict):
            if kwargs or len(args) != 1 or not isinstance(args[0], torch.Tensor):
                self.bad.add(name)
                return None
            saved = {}
            for attr in self.swap.get(name, []):
                original = module._parameters[attr]
                saved[attr] = original
                module._parameters[attr] = original.detach().requires_grad_(True)  # private leaf for this call
            self._saved[name] = saved
            if name in self.clone_in:
                return (args[0].clone(),), kwargs
            return None

        return hook

    def _post(self, name: str):
        def hook(module: nn.Module, args: tuple, output):
            for attr, original in self._saved.pop(name, {}).items():
                module._parameters[attr] = original
            if name in self.bad or not isinstance(output, torch.Tensor):
                self.bad.add(name)
                return None
            x = args[0]
            xhat = rules.normalised(module, x).detach() if rules.kind_of(module) == "norm" else None
            self.calls[name].append(Call(x, output, x._version, output._version, xhat))
            # the rest of the model gets a copy when it modifies the output in place: z keeps the layer's value
            return output.clone() if name in self.clone_out else None

        return hook

    def check(self, c: int) -> tuple[set[str], set[str], set[str], set[str]]:
        """(modules whose calls break the batch-first rule, modules whose tensors have an axis of size c besides
        the first (ambiguous on a probe batch), inputs modified in place, outputs modified in place)."""
        bad, ambiguous, cin, cout = set(self.bad), set(), set(), set()
        for name, calls in self.calls.items():
            for call in calls:
                for t in (call.input, call.output):
                    if t.ndim == 0 or t.shape[0] != c:
                        bad.add(name)
                    elif c in t.shape[1:]:
                        ambiguous.add(name)
                if call.input._version != call.in_version:
                    cin.add(name)
                if call.output._version != call.out_version:
                    cout.add(name)
        return bad, ambiguous, cin, cout


def _candidates(view: FunctionalModel) -> tuple[dict[str, nn.Module], dict[str, list[str]], list[Term]]:
    model = view.model
    uses: dict[int, int] = {}
    for _, p in model.named_parameters(remove_duplicate=False):
        uses[id(p)] = uses.get(id(p), 0) + 1
    modules: dict[str, nn.Module] = {}
    swap: dict[str, list[str]] = {}
    terms: list[Term] = []
    for mname, module in model.named_modules():
        for attr in rules.structured_attrs(module):
            p = module._parameters.get(attr)
            pname = f"{mname}.{attr}" if mname else attr
            if p is None or pname not in view.params or uses[id(p)] != 1:
                continue
            modules[mname] = module
            swap.setdefault(mname, []).append(attr)
            kind = rules.kind_of(module)
            terms.append(Term(pname, mname, attr, kind))
    return modules, swap, terms


#: Probe batch sizes: primes, so that the batch axis is unlikely to coincide with another axis of a layer's tensors.
PROBE_SIZES = (5, 7, 11, 13, 17, 19, 23, 29, 31, 37, 41, 43)


def analyse(view: FunctionalModel, x: torch.Tensor, full: bool, n1: int, n2: int) -> Analysis:
    """Decide which parameters the rules cover, and each weight's form, from probe batches (see module doc).

    A module is dropped (its parameters fall back) when a call breaks the batch-first rule or is made with other
    arguments than one tensor, or when one of its parameters is used outside its calls. A probe batch size that
    also occurs in another axis of a module's tensors cannot tell the batch axis apart: the next size in
    :data:`PROBE_SIZES` settles it (up to three sizes, then the module falls back). A module never called whose
    parameters are not used either contributes zero and needs no term.
    """
    modules, swap, terms = _candidates(view)
    sizes = [p for p in PROBE_SIZES if p not in x.shape[1:]]
    pending = set(modules)  # modules whose batch axis is not yet established
    dropped: set[str] = set()
    for attempt, c in enumerate(sizes[:3]):
        xp = x[torch.arange(c, device=x.device) % x.shape[0]]
        cap, round_used = _probe_round(view, modules, swap, xp)
        bad, ambiguous, cin, cout = cap.check(c)
        if attempt == 0:
            used, clone_in, clone_out, calls = round_used, cin, cout, cap.calls
        dropped |= bad & pending
        pending &= ambiguous - bad  # established: neither bad nor ambiguous at this size
        if not pending:
            break
    dropped |= pending | {t.module for t in terms if t.name in used}
    zero = {t.name for t in terms if not calls[t.module] and t.module not in dropped}
    kept = [t for t in terms if t.module not in dropped and t.name not in zero]
    structured = {t.name for t in kept} | zero
    fallback = [n for n in view.params if n not in structured]
    analysis = Analysis(kept, fallback, {t.module: modules[t.module] for t in kept}, clone_in, clone_out)
    k = view.k
    for t in kept:
        module = modules[t.module]
        if t.attr == "weight":
            analysis.cotangent_elems += sum(call.output[0].numel() for call in calls[t.module])
        if t.attr == "weight" and t.kind != "norm":
            shape = rules.weight_shape(module, [tuple(cl.input.shape[1:]) for cl in calls[t.module]],
                                       [tuple(cl.output.shape[1:]) for cl in calls[t.module]])
            analysis.shapes[t.name] = shape
            t.form = rules.choose_form(shape, t.kind, k, full, n1, n2)
            if t.form == "gradient" and t.kind == "conv":
                analysis.patch_elems = max(analysis.patch_elems, shape.T * shape.groups * shape.fan_in)
    return analysis


def restart(analysis: Analysis, err: Restart) -> Analysis:
    """The analysis after a chunk raised :class:`Restart`: parameters moved to the fallback, copies added."""
    moved = {t.module for t in analysis.terms if t.name in err.names}
    terms = [t for t in analysis.terms if t.module not in moved]
    fallback = analysis.fallback + [t.name for t in analysis.terms if t.module in moved]
    return replace(analysis, terms=terms, fallback=fallback,
                   modules={m: analysis.modules[m] for m in {t.module for t in terms}},
                   clone_in=analysis.clone_in | err.clone_in, clone_out=analysis.clone_out | err.clone_out)


def _probe_round(view, modules, swap, xp) -> tuple[Capture, set[str]]:
    names = [f"{m}.{a}" if m else a for m in modules for a in swap[m]]
    params = {n: t.detach().requires_grad_(n in names) for n, t in view.params.items()}
    with torch.enable_grad():  # also under a caller's torch.no_grad()
        with Capture(modules, swap, set(), set()) as cap:
            out = view.fn(params, xp)
        originals = [params[n] for n in names]
        used: set[str] = set()
        if originals and out.requires_grad:
            grads = torch.autograd.grad(out.sum(), originals, allow_unused=True)
            used = {n for n, g in zip(names, grads, strict=True) if g is not None}
    return cap, used


# ----------------------------------------------------------------------------------------------------------------


@dataclass
class Factors:
    """A chunk's factors: per key, per-sample gradients (c, k, p) and product-form terms (module, A, D)."""

    gradients: dict[str, list[torch.Tensor]] = field(default_factory=dict)
    products: dict[str, list[tuple[nn.Module | None, torch.Tensor, torch.Tensor]]] = field(default_factory=dict)

    def add_gradient(self, key: str, G: torch.Tensor) -> None:
        self.gradients.setdefault(key, []).append(G)

    def add_product(self, key: str, module: nn.Module | None, A: torch.Tensor, D: torch.Tensor) -> None:
        self.products.setdefault(key, []).append((module, A, D))


def factors(view: FunctionalModel, analysis: Analysis, x: torch.Tensor, keys: dict[str, str]) -> Factors:
    """The :class:`Factors` of a chunk x (c, *shape)."""
    out = Factors()
    c = x.shape[0]
    if analysis.terms:
        structured = {t.name for t in analysis.terms}
        params = {n: t.detach().requires_grad_(n in structured) for n, t in view.params.items()}
        swap: dict[str, list[str]] = {}
        for t in analysis.terms:
            swap.setdefault(t.module, []).append(t.attr)
        with torch.enable_grad(), Capture(analysis.modules, swap, analysis.clone_in, analysis.clone_out) as cap:
            f = view.fn(params, x)
        bad, _, cin, cout = cap.check(c)
        if bad or not cin <= analysis.clone_in or not cout <= analysis.clone_out:
            raise Restart({t.name for t in analysis.terms if t.module in bad}, cin, cout)
        calls = [(name, call) for name, cl in cap.calls.items() for call in cl]
        zs = [call.output for _, call in calls]
        originals = [params[t.name] for t in analysis.terms]
        grads = _cotangents(view, f, zs + originals)
        used = {t.name for t, g in zip(analysis.terms, grads[len(zs):], strict=True) if g is not None}
        if used:
            raise Restart(used)
        deltas: dict[str, list[torch.Tensor]] = {name: [] for name in cap.calls}
        for (name, call), d in zip(calls, grads[: len(zs)], strict=True):
            deltas[name].append(torch.zeros(c, view.k, *call.output.shape[1:], dtype=f.dtype, device=f.device)
                                if d is None else d.detach())
        del f, zs, grads
        for t in analysis.terms:
            _add_term(out, t, analysis.modules[t.module], cap.calls[t.module], deltas[t.module], keys[t.name])
    if analysis.fallback:
        others = {n: v for n, v in view.params.items() if n not in analysis.fallback}
        sub = replace(view, params={n: view.params[n] for n in analysis.fallback}, fixed={**view.fixed, **others})
        for name, J in reference.jacobian_factor(sub, x).items():
            out.add_gradient(keys[name], J)
    return out


def _add_term(out: Factors, t: Term, module: nn.Module, calls: list[Call], deltas: list[torch.Tensor], key: str):
    if t.kind == "norm":
        if t.attr == "weight":
            G = sum(rules.bias_gradient(module, d * call.xhat.unsqueeze(1)) for call, d in zip(calls, deltas,
                                                                                              strict=True))
        else:
            G = sum(rules.bias_gradient(module, d) for d in deltas)
        out.add_gradient(key, G)
        return
    if t.attr == "bias":
        out.add_gradient(key, sum(rules.bias_gradient(module, d) for d in deltas))
        return
    A = rules.concat_calls([rules.linear_inputs(module, call.input.detach()) for call in calls])
    D = rules.concat_calls([rules.linear_cotangents(module, d) for d in deltas])
    if t.kind == "embedding":
        D = rules.mask_padding(module, A, D)
    if t.form == "product":
        out.add_product(key, module, A, D)
    else:
        out.add_gradient(key, rules.gradient_from_shared(module, A, D))


#: Per device type, whether the k backward passes of :func:`_cotangents` run batched (``is_grads_batched``, i.e.
#: vmap over the cotangents) or as a loop. On the CPU the loop is faster: measured on ResNet-18, 4 samples, k = 10,
#: float32 (2-core machine under load), 18.5 s batched against 7.5 s for the loop — vmap runs the convolutions'
#: backward less efficiently than ten plain passes. On CUDA batching saves nine launches per layer.
BATCHED_COTANGENTS = {"cpu": False, "cuda": True}


def _cotangents(view: FunctionalModel, f: torch.Tensor, inputs: list[torch.Tensor]) -> list[torch.Tensor | None]:
    """∂(Σ_i f_{ia})/∂input for every output a: (c, k, …) for an input (c, …), sample first (None where unused).

    Inputs must be batch-first (c, …): the hooked outputs are. The parameters checked for outside use are
    returned as (k, *shape) (only whether they are None matters).
    """
    k = view.k
    if k == 1:
        grads = torch.autograd.grad(f, inputs, torch.ones_like(f), allow_unused=True)
        return [None if g is None else g.unsqueeze(1) for g in grads]
    eye = torch.eye(k, dtype=f.dtype, device=f.device).unsqueeze(1).expand(k, f.shape[0], k)
    if BATCHED_COTANGENTS.get(f.device.type, False) and not view.no_vmap.get("cotangents", False):
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            try:
                grads = torch.autograd.grad(f, inputs, eye, retain_graph=True, allow_unused=True,
                                            is_grads_batched=True)
            except (RuntimeError, NotImplementedError):
                grads = None
        slow = [w for w in caught if "performance drop" in str(w.message)]
        for w in caught:
            if w not in slow:
                warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)
        if grads is not None:
            if slow:  # correct, but torch ran a layer's backward one output at a time: the loop is as fast
                view.no_vmap["cotangents"] = True
            return [None if g is None else g.transpose(0, 1) for g in grads]
        view.no_vmap["cotangents"] = True
    out: list[torch.Tensor | None] = [None] * len(inputs)
    for a in range(k):  # one backward pass per output, each written into its slot (no stacked copy)
        grads = torch.autograd.grad(f, inputs, eye[a], retain_graph=a < k - 1, allow_unused=True)
        for i, g in enumerate(grads):
            if g is None:
                continue
            if out[i] is None:
                out[i] = g.new_zeros(g.shape[0], k, *g.shape[1:])
            out[i][:, a] = g
        del grads
    return out


def pair(F1: Factors, F2: Factors, full: bool) -> dict[str, torch.Tensor]:
    """The blocks Θ(x1 chunk, x2 chunk) per key from two chunks' :class:`Factors`."""
    out: dict[str, torch.Tensor] = {}
    for key, G1s in F1.gradients.items():
        for G1, G2 in zip(G1s, F2.gradients[key], strict=True):
            block = rules.gradient_block(G1, G2, full)
            out[key] = out[key] + block if key in out else block
    for key, terms1 in F1.products.items():
        for (module, A1, D1), (_, A2, D2) in zip(terms1, F2.products[key], strict=True):
            block = rules.shared_block(module, A1, D1, A2, D2, full)
            out[key] = out[key] + block if key in out else block
    return out


def bytes_per_sample(analysis: Analysis, k: int, full: bool, itemsize: int, P_fallback: int) -> tuple[int, int]:
    """(factor bytes per sample, product-form bytes per pair) of the structured terms, plus the fallback's J."""
    per_sample = k * P_fallback * itemsize
    per_pair = 0
    for t in analysis.terms:
        shape = analysis.shapes.get(t.name)
        if shape is None:  # biases and norms: a per-sample gradient of the parameter's size
            per_sample += k * math.prod(analysis.modules[t.module]._parameters[t.attr].shape) * itemsize
            continue
        s, p = rules.form_bytes(shape, t.form, k, full, itemsize)
        per_sample += s
        per_pair += p
    return per_sample, per_pair
