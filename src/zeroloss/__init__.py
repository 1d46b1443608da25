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

import importlib
import sys
import types

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
    "Diagnosis": "zeroloss.diagnose", "Verdict": "zeroloss.diagnose", "WidthSweep": "zeroloss.diagnose",
    "diagnose": "zeroloss.diagnose", "diagnose_widths": "zeroloss.diagnose",
    "KernelPrediction": "zeroloss.ntk", "Linearized": "zeroloss.ntk", "entk": "zeroloss.ntk",
    "entk_memory_bytes": "zeroloss.ntk", "linearize": "zeroloss.ntk", "predict_gd_mse": "zeroloss.ntk",
    "INITIALISERS": "zeroloss.init", "initialise": "zeroloss.init",
    "gram": "zeroloss.kernels.empirical", "gram_memory_bytes": "zeroloss.kernels.empirical",
    "lambda0": "zeroloss.kernels.limit", "limit_gram_by_layer": "zeroloss.kernels.limit",
    "limit_kernel": "zeroloss.kernels.limit",
    "Spectrum": "zeroloss.spectrum", "eigenvalues": "zeroloss.spectrum", "lambda_max": "zeroloss.spectrum",
    "lambda_min": "zeroloss.spectrum", "spectrum": "zeroloss.spectrum",
    "load": "zeroloss.store",
    "reproduce": "zeroloss.sweep.reproduce",
    "Certificate": "zeroloss.theory.chatterjee2022", "certify": "zeroloss.theory.chatterjee2022",
    "criterion_probability": "zeroloss.theory.chatterjee2022", "trajectory_check": "zeroloss.theory.chatterjee2022",
    "compare_contraction": "zeroloss.theory.du2019", "contraction_bound": "zeroloss.theory.du2019",
    "largest_stable_step": "zeroloss.theory.du2019", "step_scaling": "zeroloss.theory.du2019",
    "width_scaling": "zeroloss.theory.du2019",
    "GDRun": "zeroloss.train.gd", "train_gd": "zeroloss.train.gd",
    "infinite": None, "nets": None, "twotimescale": None,  # subpackages: the module itself
}


def __getattr__(name: str) -> object:
    """Import the module that defines the public ``name`` on first use and cache the name here."""
    if name not in _SOURCES:
        raise AttributeError(f"module 'zeroloss' has no attribute {name!r}")
    module = _SOURCES[name]
    value = importlib.import_module(f"zeroloss.{name}") if module is None else getattr(
        importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_SOURCES))


class _Package(types.ModuleType):
    """The package module, with one rule: a submodule import never rebinds a public function of the same name.

    Importing ``zeroloss.spectrum`` (the module) makes Python set the package attribute ``spectrum`` to that module;
    the public name ``zeroloss.spectrum`` is the function :func:`zeroloss.spectrum.spectrum`, as it was when the
    package imported everything eagerly. The module stays reachable as ``sys.modules["zeroloss.spectrum"]``.
    """

    def __setattr__(self, name: str, value: object) -> None:
        if isinstance(value, types.ModuleType) and _SOURCES.get(name) == value.__name__:
            return
        super().__setattr__(name, value)


sys.modules[__name__].__class__ = _Package

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
    "infinite",
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
