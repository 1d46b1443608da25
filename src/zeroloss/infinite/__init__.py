"""Infinite width for any traceable ``nn.Module``: its NNGP and NTK, propagated through its ``torch.fx`` graph.

* :mod:`~zeroloss.infinite.graph` — trace the module, match every node to a rule, refuse unsupported ops by name;
* :mod:`~zeroloss.infinite.rules` — one function per op mapping (K, Θ) of its inputs to its output's;
* :mod:`~zeroloss.infinite.checks` — the plan-time checks and refusals (shapes, arguments, independence);
* :mod:`~zeroloss.infinite.elementwise` — closed forms (ReLU, LeakyReLU, GELU, erf) and quadrature (the rest);
* :mod:`~zeroloss.infinite.laws` — the initialisation law of each linear layer (PyTorch default, given, measured);
* :mod:`~zeroloss.infinite.compute` — the two-pass blocked computation and its memory statement.

``zeroloss.limit_kernel(X, model, kind=...)`` dispatches here for a module that is not one of the lab's nets.
docs/infinite.md has the supported-ops table, the parameterisations and a worked example.
"""

from zeroloss.infinite.compute import (
    KINDS,
    PARAMETERISATIONS,
    InfiniteKernel,
    infinite_kernel,
    infinite_kernel_memory_bytes,
)
from zeroloss.infinite.laws import Law

__all__ = ["KINDS", "PARAMETERISATIONS", "InfiniteKernel", "Law", "infinite_kernel", "infinite_kernel_memory_bytes"]
