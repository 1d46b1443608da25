"""Empirical neural tangent kernels of any ``nn.Module`` (issue 13).

- :func:`entk` — Θ(x1, x2) = J(x1) J(x2)ᵀ, per parameter or module on request, chunked within a memory budget.
- :func:`entk_memory_bytes` — the memory :func:`entk` will need, stated before computing.
- :func:`entk_method` — the method :func:`entk` will use (what ``method="auto"`` chooses).
- :func:`linearize` — the linearised model f(x; θ₀) + J(x; θ₀)(θ − θ₀) of any module, trainable by torch.optim.
- :func:`predict_gd_mse` — closed-form outputs of GD / gradient flow on its squared loss (kernel regression at ∞).
- :func:`gp_inference`, :func:`gradient_descent_mse_ensemble` — inference with infinite-width kernels: the NNGP
  posterior, and the mean and covariance of the infinite ensemble trained by GD (:mod:`zeroloss.ntk.inference`).

eNTK methods: ``"structured"`` (:mod:`zeroloss.ntk.structured`, the per-layer rules of :mod:`zeroloss.ntk.rules`:
layer inputs from forward hooks, output cotangents from one backward pass per output, no per-sample parameter
gradient where the product form is cheaper); ``"jacobian"`` and ``"ntvp"``, the two ``torch.func`` tutorial methods
(:mod:`zeroloss.ntk.reference`); ``"auto"`` = structured when its plan fits ``memory_budget``, else ntvp — but jacobian
first when no weight of the model takes the product form (then the rules save nothing); ntvp only for a model
through which forward-mode AD runs. :func:`entk_method` says which one a call uses.
"""

from zeroloss.ntk.entk import entk, entk_memory_bytes, entk_method
from zeroloss.ntk.inference import EnsemblePrediction, GaussianPosterior, gp_inference, gradient_descent_mse_ensemble
from zeroloss.ntk.linearize import Linearized, linearize
from zeroloss.ntk.predict import KernelPrediction, predict_gd_mse

__all__ = ["EnsemblePrediction", "GaussianPosterior", "KernelPrediction", "Linearized", "entk", "entk_memory_bytes",
           "entk_method", "gp_inference", "gradient_descent_mse_ensemble", "linearize", "predict_gd_mse"]
