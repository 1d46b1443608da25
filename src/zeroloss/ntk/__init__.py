"""Empirical neural tangent kernels of any ``nn.Module`` (issue 13).

- :func:`entk` — Θ(x1, x2) = J(x1) J(x2)ᵀ, per parameter or module on request, chunked within a memory budget.
- :func:`entk_memory_bytes` — the memory :func:`entk` will need, stated before computing.
- :func:`linearize` — the linearised model f(x; θ₀) + J(x; θ₀)(θ − θ₀) of any module, trainable by torch.optim.
- :func:`predict_gd_mse` — closed-form outputs of GD / gradient flow on its squared loss (kernel regression at ∞).

eNTK methods: ``"structured"`` (:mod:`zeroloss.ntk.structured`, the per-layer rules of :mod:`zeroloss.ntk.rules`:
layer inputs from forward hooks, output cotangents from one backward pass per output, no per-sample parameter
gradient where the product form is cheaper); ``"jacobian"`` and ``"ntvp"``, the two ``torch.func`` tutorial methods
(:mod:`zeroloss.ntk.reference`); ``"auto"`` = structured when its plan fits ``max_bytes``, else ntvp — but jacobian
first when no weight of the model takes the product form (then the rules save nothing).
"""

from zeroloss.ntk.entk import entk, entk_memory_bytes
from zeroloss.ntk.linearize import Linearized, linearize
from zeroloss.ntk.predict import KernelPrediction, predict_gd_mse

__all__ = ["KernelPrediction", "Linearized", "entk", "entk_memory_bytes", "linearize", "predict_gd_mse"]
