"""zeroloss — a PyTorch laboratory for the convergence theory of gradient descent on neural networks.

The curated public API. Everything listed in ``__all__`` is documented and stable; modules behind it may change.

Example:
    >>> import zeroloss
    >>> X, y = zeroloss.sphere_data(n=8, d=5, seed=0)
    >>> net = zeroloss.nets.FullyConnected(d=5, width=64, depth=2, activation="softplus", members=2, seed=0)
    >>> zeroloss.gram(net, X, layer="all").shape
    torch.Size([2, 8, 8])
"""

from __future__ import annotations

from zeroloss import nets, twotimescale
from zeroloss.activations import ACTIVATIONS, Activation, get_activation
from zeroloss.data import digits_data, patch_data, sphere_data, teacher_labels, validate_inputs
from zeroloss.diagnose import Diagnosis, Verdict, WidthSweep, diagnose, diagnose_widths
from zeroloss.errors import ZerolossInputError
from zeroloss.init import INITIALISERS, initialise
from zeroloss.kernels.empirical import gram, gram_memory_bytes
from zeroloss.kernels.limit import lambda0, limit_gram_by_layer, limit_kernel
from zeroloss.ntk import KernelPrediction, Linearized, entk, entk_memory_bytes, linearize, predict_gd_mse
from zeroloss.spectrum import Spectrum, eigenvalues, lambda_max, lambda_min, spectrum
from zeroloss.store import load
from zeroloss.sweep.reproduce import reproduce
from zeroloss.theory.chatterjee2022 import Certificate, certify, criterion_probability, trajectory_check
from zeroloss.theory.du2019 import (
    compare_contraction,
    contraction_bound,
    largest_stable_step,
    step_scaling,
    width_scaling,
)
from zeroloss.train.gd import GDRun, train_gd
from zeroloss.version import __version__ as __version__

__all__ = [
    "ACTIVATIONS",
    "Activation",
    "Certificate",
    "Diagnosis",
    "GDRun",
    "INITIALISERS",
    "KernelPrediction",
    "Linearized",
    "Spectrum",
    "Verdict",
    "WidthSweep",
    "ZerolossInputError",
    "certify",
    "compare_contraction",
    "contraction_bound",
    "criterion_probability",
    "diagnose",
    "diagnose_widths",
    "digits_data",
    "eigenvalues",
    "entk",
    "entk_memory_bytes",
    "get_activation",
    "gram",
    "gram_memory_bytes",
    "initialise",
    "lambda0",
    "lambda_max",
    "lambda_min",
    "largest_stable_step",
    "limit_gram_by_layer",
    "limit_kernel",
    "linearize",
    "load",
    "nets",
    "patch_data",
    "predict_gd_mse",
    "reproduce",
    "spectrum",
    "sphere_data",
    "step_scaling",
    "teacher_labels",
    "train_gd",
    "twotimescale",
    "trajectory_check",
    "validate_inputs",
    "width_scaling",
]
