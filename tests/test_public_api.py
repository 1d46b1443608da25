"""The public face: ``zeroloss.__all__`` and ``zeroloss.nets.__all__`` are pinned, and every name in them is
documented (a test pins ``zeroloss.__all__`` and a docstring for each name).

Adding or removing a public name is a decision: update the pinned list here in the same change.
"""

from __future__ import annotations

import inspect
import re
import sys
import types

import pytest

import zeroloss
import zeroloss.nets

PUBLIC = [
    "ACTIVATIONS", "Activation", "Certificate", "GDRun", "INITIALISERS", "Spectrum", "ZerolossInputError", "certify",
    "compare_contraction", "contraction_bound", "criterion_probability", "digits_data", "eigenvalues",
    "get_activation", "gram", "gram_memory_bytes", "initialise", "lambda0", "lambda_max", "lambda_min",
    "largest_stable_step", "limit_gram_by_layer", "limit_kernel", "load", "nets", "patch_data", "reproduce",
    "spectrum", "sphere_data", "step_scaling", "teacher_labels", "train_gd", "trajectory_check", "twotimescale",
    "validate_inputs", "width_scaling",
    # any nn.Module (issue 13): eNTK, linearisation, closed-form kernel predictions, the diagnosis
    "Diagnosis", "KernelPrediction", "Linearized", "Verdict", "WidthSweep", "diagnose", "diagnose_widths", "entk",
    "entk_memory_bytes", "linearize", "predict_gd_mse",
    # kernels of whole data sets (issue 22): tiled, resumable jobs and what reads them
    "StoredKernel", "kernel_job", "open_kernel", "tiles",
    # issue 21: the method entk chose; inference with infinite-width kernels
    "diagnose_memory_bytes", "entk_method", "EnsemblePrediction", "GaussianPosterior", "gp_inference",
    "gradient_descent_mse_ensemble",
    # infinite width of any traceable nn.Module (issue 21; zeroloss.limit_kernel dispatches to it)
    "infinite",
]

PUBLIC_NETS = [
    "NETS", "NET_FIELDS", "ConvResNet", "EnsembleNet", "FeedForward", "FullyConnected", "LinearMap", "ResNet",
    "architecture", "build_net", "net_options", "patches",
]

#: A docstring shorter than this is a placeholder, not documentation.
MIN_DOC = 20


def test_zeroloss_all_is_pinned():
    assert sorted(zeroloss.__all__) == sorted(PUBLIC)
    assert len(set(zeroloss.__all__)) == len(zeroloss.__all__)


def test_zeroloss_nets_all_is_pinned():
    assert sorted(zeroloss.nets.__all__) == sorted(PUBLIC_NETS)


def _is_documented_data(package: types.ModuleType, name: str, value: object) -> bool:
    """A data object (a registry dict, a constant) is documented by a ``#:`` comment right above its assignment, or
    by a ``:data:`NAME``` mention in the docstring of the module that defines it."""
    for module in list(sys.modules.values()):
        if not (getattr(module, "__name__", "").startswith("zeroloss") and getattr(module, name, None) is value):
            continue
        doc = module.__doc__ or ""
        if f":data:`{name}`" in doc or f":data:`~{module.__name__}.{name}`" in doc:
            return True
        try:
            source = inspect.getsource(module)
        except (OSError, TypeError):
            continue
        if re.search(rf"^#:.*\n(?:#:.*\n)*{re.escape(name)}\s*[:=]", source, flags=re.MULTILINE):
            return True
    return False


@pytest.mark.parametrize("package, name", [(zeroloss, n) for n in PUBLIC] + [(zeroloss.nets, n) for n in PUBLIC_NETS])
def test_every_public_name_is_documented(package, name):
    value = getattr(package, name)
    if isinstance(value, types.ModuleType) or inspect.isclass(value) or callable(value):
        doc = value.__doc__  # its own docstring, not one inherited from a base class
        assert doc is not None and len(doc.strip()) >= MIN_DOC, f"{package.__name__}.{name} has no docstring"
    else:
        assert _is_documented_data(package, name, value), f"{package.__name__}.{name} is undocumented data"


def test_version_comes_from_the_package_metadata():
    from importlib.metadata import version

    assert zeroloss.__version__ == version("zeroloss")


def test_every_public_name_is_on_the_api_page():
    """docs/api.md (the documentation site's API reference, built by mkdocstrings) has an entry for every name of
    ``zeroloss.__all__``: ``::: <the module that defines it>.<name>``, or the module itself for a subpackage."""
    from pathlib import Path

    page = (Path(__file__).resolve().parents[1] / "docs" / "api.md").read_text(encoding="utf-8")
    entries = set(re.findall(r"^::: ([\w.]+)\s*$", page, flags=re.MULTILINE))
    missing = []
    for name in zeroloss.__all__:
        source = zeroloss._SOURCES[name]
        wanted = source if name in zeroloss._MODULES else f"{source}.{name}"
        if wanted not in entries:
            missing.append(f"{name} (::: {wanted})")
    assert not missing, f"docs/api.md lacks: {', '.join(missing)}"
