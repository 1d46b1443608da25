"""Empirical neural tangent kernels of any ``nn.Module`` (issue 13).

- :func:`entk` — Θ(x1, x2) = J(x1) J(x2)ᵀ, per parameter or module on request, chunked within a memory budget.
- :func:`entk_memory_bytes` — the memory :func:`entk` will need, stated before computing.

Methods: ``"jacobian"`` and ``"ntvp"`` are the two ``torch.func`` tutorial methods (:mod:`zeroloss.ntk.reference`).
"""

from zeroloss.ntk.entk import entk, entk_memory_bytes

__all__ = ["entk", "entk_memory_bytes"]
