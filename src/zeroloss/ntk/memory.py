"""The memory an eNTK computation needs, stated before the work starts, and the chunk sizes that fit a budget.

The statement is a sum of explicit terms, each an upper estimate (itemsize = bytes of the computation dtype):

- the result: n1·n2·(k² for ``outputs="full"``, else 1)·itemsize per returned kernel;
- the fixed part: the float copies of parameters and buffers the computation works on;
- per sample of a chunk, the method's factors and its transient work (see each method's ``*_costs``), measured
  from one sample's forward pass: the bytes autograd saves for the backward pass (counted with
  ``torch.autograd.graph.saved_tensors_hooks``, parameters excluded) are the size of the activations A;
- per pair of samples in a block, the block's temporaries.

:func:`plan_chunks` adds them up for a chunk of c samples — keeping every sample's factors when they fit, else
recomputing column factors — and picks the largest c that fits ``memory_budget`` (or, without it, the working
budget :data:`DEFAULT_WORK_BYTES` on top of the result, the whole within the budget of :mod:`zeroloss.budget`:
``ZEROLOSS_MAX_BYTES`` or half the available memory); it says so in one line when even c = 1 does not fit.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from zeroloss.budget import ENV_VAR, Budget, parse_size, resolve_budget
from zeroloss.errors import ZerolossInputError
from zeroloss.ntk.blocks import Plan
from zeroloss.ntk.model import FunctionalModel

#: Working memory (beyond the result) used for chunks when ``memory_budget`` is None, per device type (the whole call
#: must still fit the budget of :mod:`zeroloss.budget`). 4 GiB on the
#: CPU keeps a CIFAR ResNet-18 kernel of 32 samples (k = 10, float32) in one chunk (its factors stated 4.0 GiB
#: in all); at 1 GiB it took chunks of 6 samples and recomputed column factors 15 times.
DEFAULT_WORK_BYTES = {"cpu": 4 << 30, "cuda": 8 << 30}

#: Factor on the measured activation bytes A for the transient buffers of a forward + backward pass (cotangents
#: the size of the activations, temporaries of the elementwise ops): a forward/backward pair holds A saved
#: tensors plus at most about as much again in flight.
TRANSIENT_FACTOR = 3


@dataclass(frozen=True)
class Footprint:
    """Per-sample sizes of a model, in bytes of the computation dtype, measured on one sample.

    Attributes:
        activations: bytes autograd saves during one sample's forward pass (parameters and buffers excluded).
        params: bytes of the selected parameters (P·itemsize).
        fixed: bytes of the copies of every parameter and buffer held during the computation.
        k: outputs per sample.
        itemsize: bytes per element of the computation dtype.
    """

    activations: int
    params: int
    fixed: int
    k: int
    itemsize: int


def measure(view: FunctionalModel, x: torch.Tensor) -> Footprint:
    """Measure a model's :class:`Footprint` from one forward pass on the first sample of x."""
    seen: set[int] = set()
    excluded = {t.untyped_storage().data_ptr() for t in (*view.params.values(), *view.fixed.values())}
    total = 0

    def pack(t: torch.Tensor) -> torch.Tensor:
        nonlocal total
        try:
            storage = t.untyped_storage()
            ptr = storage.data_ptr()
            if ptr not in seen and ptr not in excluded:
                seen.add(ptr)
                total += storage.nbytes()
        except (RuntimeError, NotImplementedError):  # tensors without storage (functorch wrappers): count size
            total += t.numel() * t.element_size()
        return t

    params = {k: v.detach().requires_grad_(True) for k, v in view.params.items()}
    with torch.enable_grad(), torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        out = view.fn(params, x[:1])
    total += out.numel() * out.element_size()
    itemsize = next(iter(view.params.values())).element_size()
    P = sum(p.numel() for p in view.params.values())
    fixed = sum(t.numel() * t.element_size() for t in (*view.params.values(), *view.fixed.values()))
    fixed += sum(t.numel() * t.element_size() for t in view._member_all.values())
    return Footprint(total, P * itemsize, fixed, out.shape[1], itemsize)


def result_bytes(n1: int, n2: int, k: int, full: bool, keys: int, itemsize: int) -> int:
    """Bytes of the returned kernel(s): ``keys`` tensors of n1·n2 (·k² when full) elements."""
    return n1 * n2 * (k * k if full else 1) * keys * itemsize


class MemoryRefusal(ZerolossInputError):
    """``memory_budget`` cannot hold a method's smallest plan (the message says how much it needs)."""


def plan_chunks(
    method: str,
    n1: int,
    n2: int,
    square: bool,
    row_factor: int,
    col_factor: int,
    transient: int,
    per_pair: int,
    fixed: int,
    result: int,
    memory_budget: int | None,
    device: torch.device,
    ceiling: Budget | None = None,
) -> Plan:
    """The plan whose stated memory fits the budget, with the largest chunks; see the module docstring.

    The budget is ``memory_budget`` when given. Without it, the whole call must fit ``ceiling`` — the budget of
    :mod:`zeroloss.budget` (``ZEROLOSS_MAX_BYTES``, else half the available memory; resolved here when None) — and
    the chunks use at most :data:`DEFAULT_WORK_BYTES` beyond the result and the parameter copies. A request that
    does not fit is refused in one line before anything is allocated, naming ``memory_budget`` when it was given and
    the inputs ``x1`` (their number of samples) otherwise.

    Per sample: ``row_factor`` / ``col_factor`` bytes of factors kept for a sample of x1 / x2 (for a square kernel
    the row factors serve as column factors), ``transient`` bytes while a chunk's factors are computed; per pair of
    samples in a block, ``per_pair`` bytes. Two regimes, the first preferred:

    - store: every sample's factors are kept — fixed + result + n1·row (+ n2·col) + c·transient + c²·per_pair;
    - recompute: only a row chunk's and a column chunk's factors live — fixed + result + c·(row + col + transient)
      + c²·per_pair, and column factors are recomputed for every row chunk.
    """
    if memory_budget is not None:
        budget = parse_size(memory_budget, "memory_budget") if not isinstance(memory_budget, int) or isinstance(
            memory_budget, bool) or memory_budget <= 0 else memory_budget
        budget, source, field = budget, "set by memory_budget", "memory_budget"
    else:
        ceiling = ceiling if ceiling is not None else resolve_budget(None, "memory_budget")
        work = DEFAULT_WORK_BYTES.get(device.type, DEFAULT_WORK_BYTES["cpu"])
        budget, source, field = min(ceiling.bytes, fixed + result + work), ceiling.source, "x1"
    free = budget - fixed - result
    n = max(n1, n2)
    kept = n1 * row_factor + (0 if square else n2 * col_factor)
    c = _largest_chunk(free - kept, transient, per_pair, n)
    if c >= 1:
        stated = fixed + result + kept + c * transient + c * c * per_pair
        return Plan(method, min(c, n1), min(c, n2), True, int(stated), int(result))
    per_sample = row_factor + (row_factor if square else col_factor) + transient
    c = _largest_chunk(free, per_sample, per_pair, n)
    if c < 1:
        need_one = fixed + result + per_sample + per_pair
        size = f"{n1} x {n2} samples" if not square else f"{n1} samples"
        raise MemoryRefusal(
            f"{field}: {method} needs at least {_gib(need_one)} for the eNTK of {size} "
            f"({_gib(result)} for the result, {_gib(fixed)} for parameter copies, {_gib(per_sample)} per sample of a "
            f"chunk), more than the memory budget of {_gib(budget)} ({source}); ask for less (fewer samples, "
            f"outputs='trace', by='total', fewer params) or raise the budget (memory_budget, or {ENV_VAR})"
        )
    stated = fixed + result + c * per_sample + c * c * per_pair
    return Plan(method, min(c, n1), min(c, n2), False, int(stated), int(result))


def _largest_chunk(free: int, per_sample: int, per_pair: int, n: int) -> int:
    """Largest integer c ≤ n with c·per_sample + c²·per_pair ≤ free (0 when none)."""
    if free <= 0:
        return 0
    if per_pair == 0:
        c = free // max(per_sample, 1)
    else:
        c = int((-per_sample + math.sqrt(per_sample**2 + 4 * per_pair * free)) / (2 * per_pair))
    c = min(c, n)
    while c > 0 and c * per_sample + c * c * per_pair > free:
        c -= 1
    return c


def _gib(b: int | None) -> str:
    if b is None:
        return "None"
    return f"{b / 2**30:.3g} GiB" if b >= 2**28 else f"{b / 2**20:.3g} MiB"
