"""zeroloss — a PyTorch laboratory for the convergence theory of gradient descent on neural networks.

The curated public API. Everything listed in ``__all__`` is documented and stable; modules behind it may change.

Examples:
    >>> import zeroloss
    >>> X, y = zeroloss.sphere_data(n=8, d=5, seed=0)
    >>> net = zeroloss.nets.FullyConnected(d=5, width=64, depth=2, activation="softplus", members=2, seed=0)
    >>> zeroloss.gram(net, X, layer="all").shape
    torch.Size([2, 8, 8])
"""

from __future__ import annotations

import importlib

from zeroloss._aliases import install_module_aliases
from zeroloss.version import __version__ as __version__

#: Where each public name is defined. The package root imports nothing heavy: a name's module is imported on its first
#: use (PEP 562 ``__getattr__``), so that ``import zeroloss`` — and with it the command line, which must parse its
#: arguments before torch is imported — costs milliseconds. ``zeroloss.gram``, ``from zeroloss import gram`` and
#: ``from zeroloss import *`` behave exactly as with eager imports.
_SOURCES = {
    "ACTIVATIONS": "zeroloss.activations", "Activation": "zeroloss.activations",
    "get_activation": "zeroloss.activations",
    "digits_data": "zeroloss.data", "patch_data": "zeroloss.data", "sphere_data": "zeroloss.data",
    "teacher_labels": "zeroloss.data", "validate_inputs": "zeroloss.data",
    "ZerolossInputError": "zeroloss.errors",
    "Diagnosis": "zeroloss.diagnosis", "Verdict": "zeroloss.diagnosis", "WidthSweep": "zeroloss.diagnosis",
    "diagnose": "zeroloss.diagnosis", "diagnose_widths": "zeroloss.diagnosis",
    "diagnose_memory_bytes": "zeroloss.diagnosis",
    "KernelPrediction": "zeroloss.ntk", "Linearized": "zeroloss.ntk", "entk": "zeroloss.ntk",
    "entk_memory_bytes": "zeroloss.ntk", "linearize": "zeroloss.ntk", "predict_gd_mse": "zeroloss.ntk",
    "entk_method": "zeroloss.ntk", "EnsemblePrediction": "zeroloss.ntk", "GaussianPosterior": "zeroloss.ntk",
    "gp_inference": "zeroloss.ntk", "gradient_descent_mse_ensemble": "zeroloss.ntk",
    "INITIALISERS": "zeroloss.papers.chatterjee2022.init", "initialise": "zeroloss.papers.chatterjee2022.init",
    "gram": "zeroloss.kernels.empirical", "gram_memory_bytes": "zeroloss.kernels.empirical",
    "lambda0": "zeroloss.kernels.limit", "limit_gram_by_layer": "zeroloss.kernels.limit",
    "limit_kernel": "zeroloss.kernels.limit",
    "Spectrum": "zeroloss.spectra", "eigenvalues": "zeroloss.spectra", "lambda_max": "zeroloss.spectra",
    "lambda_min": "zeroloss.spectra", "spectrum": "zeroloss.spectra",
    "load": "zeroloss.store",
    "reproduce": "zeroloss.sweep.reproduce",
    **dict.fromkeys(("Certificate", "certify", "criterion_probability", "trajectory_check"),
                    "zeroloss.papers.chatterjee2022.theory"),
    **dict.fromkeys(("compare_contraction", "contraction_bound", "largest_stable_step", "step_scaling",
                     "width_scaling"), "zeroloss.papers.du2019.theory"),
    "GDRun": "zeroloss.train.gd", "train_gd": "zeroloss.train.gd",
    "StoredKernel": "zeroloss.tiles", "kernel_job": "zeroloss.tiles", "open_kernel": "zeroloss.tiles",
    "infinite": "zeroloss.infinite", "nets": "zeroloss.nets", "tiles": "zeroloss.tiles",
    "twotimescale": "zeroloss.papers.marion2023.twotimescale",
}
#: Public names that are modules (the package itself), not a name defined in the module.
_MODULES = ("infinite", "nets", "tiles", "twotimescale")


def __getattr__(name: str) -> object:
    """Import the module that defines the public ``name`` on first use and cache the name here."""
    if name not in _SOURCES:
        raise AttributeError(f"module 'zeroloss' has no attribute {name!r}")
    module = importlib.import_module(_SOURCES[name])
    value = module if name in _MODULES else getattr(module, name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_SOURCES))


install_module_aliases()

__all__ = [
    "ACTIVATIONS",
    "Activation",
    "Certificate",
    "Diagnosis",
    "EnsemblePrediction",
    "GDRun",
    "GaussianPosterior",
    "INITIALISERS",
    "KernelPrediction",
    "Linearized",
    "Spectrum",
    "StoredKernel",
    "Verdict",
    "WidthSweep",
    "ZerolossInputError",
    "certify",
    "compare_contraction",
    "contraction_bound",
    "criterion_probability",
    "diagnose",
    "diagnose_memory_bytes",
    "diagnose_widths",
    "digits_data",
    "eigenvalues",
    "entk",
    "entk_memory_bytes",
    "entk_method",
    "get_activation",
    "gp_inference",
    "gradient_descent_mse_ensemble",
    "gram",
    "gram_memory_bytes",
    "infinite",
    "initialise",
    "kernel_job",
    "lambda0",
    "lambda_max",
    "lambda_min",
    "largest_stable_step",
    "limit_gram_by_layer",
    "limit_kernel",
    "linearize",
    "load",
    "nets",
    "open_kernel",
    "patch_data",
    "predict_gd_mse",
    "reproduce",
    "spectrum",
    "sphere_data",
    "step_scaling",
    "teacher_labels",
    "tiles",
    "train_gd",
    "twotimescale",
    "trajectory_check",
    "validate_inputs",
    "width_scaling",
]
