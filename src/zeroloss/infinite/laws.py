"""The initialisation law of each linear layer: (σ_w², σ_b²) with Var W = σ_w²/fan_in and Var b = σ_b².

The infinite-width kernel is the kernel of a *distribution* of weights; a module holds one draw. Per ``nn.Linear`` /
``nn.Conv1d`` / ``nn.Conv2d`` the law is found in one of three ways, and the result reports which (:class:`Law`):

* ``"pytorch-default"`` — PyTorch's ``reset_parameters``: W ∼ U(±1/√fan_in) (``kaiming_uniform_(a=√5)``:
  bound = √(2/(1+5)) · √(3/fan_in)), so Var W = 1/(3 fan_in), σ_w² = 1/3; b ∼ U(±1/√fan_in), σ_b² = 1/(3 fan_in).
  Recognised when every |W_k| ≤ 1/√fan_in and the sample variance agrees with 1/(3 fan_in) within
  :data:`RECOGNISE_SIGMAS` standard errors (a uniform law has kurtosis 9/5, so the relative standard error of
  the sample variance of N entries is √(0.8/N));
* ``"given"`` — ``init={"layer.name": (σ_w², σ_b²)}``;
* ``"measured"`` — σ_w² = fan_in · mean(W²), σ_b² = mean(b²) (zero-mean laws; W and b each recognised or
  measured on its own), with the stated relative
  tolerance 3 √((κ − 1)/N) (κ the sample kurtosis); a warning when it exceeds :data:`MEASURE_WARN` (a tensor too
  small to measure its law, e.g. a one-entry output bias).

Examples:
    >>> import torch
    >>> layer = torch.nn.Linear(200, 300)
    >>> law = find_law(layer, "fc")
    >>> law.source, round(law.sigma_w2, 6), round(law.sigma_b2 * 600, 6)
    ('pytorch-default', 0.333333, 1.0)
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Mapping
from dataclasses import dataclass

import torch
from torch import nn

from zeroloss.errors import ZerolossInputError

#: A weight tensor is recognised as PyTorch's default draw when its variance is within this many standard errors.
RECOGNISE_SIGMAS = 4.0
#: A measured law whose relative tolerance exceeds this draws a warning.
MEASURE_WARN = 0.1
INIT_CHOICES = ("auto", "default", "measured")


@dataclass(frozen=True)
class Law:
    """The law of one linear layer: Var W = sigma_w2 / fan_in, Var b = sigma_b2 (0 without bias).

    ``tolerance`` is the relative uncertainty of a measured law (3 standard errors, the larger of W's and b's);
    0 for the default and given laws.
    """

    sigma_w2: float
    sigma_b2: float
    source: str
    fan_in: int
    tolerance: float = 0.0

    def __str__(self) -> str:
        tol = f" ± {100 * self.tolerance:.2g} %" if self.tolerance else ""
        return f"σ_w² = {self.sigma_w2:.6g}, σ_b² = {self.sigma_b2:.6g} ({self.source}{tol}, fan_in {self.fan_in})"


def fan_in(module: nn.Module) -> int:
    """Inputs per output unit: in_features, or in_channels · prod(kernel_size) for a convolution (groups = 1)."""
    if isinstance(module, nn.Linear):
        return module.in_features
    return module.in_channels * math.prod(module.kernel_size)


def _measure(t: torch.Tensor) -> tuple[float, float]:
    """(mean of t², relative tolerance 3 √((κ − 1)/N)); an all-zero tensor is measured exactly (0, 0)."""
    x = t.detach().to(torch.float64).flatten()
    m2 = float((x * x).mean())
    if m2 == 0.0:
        return 0.0, 0.0
    kurt = float((x**4).mean()) / (m2 * m2)
    return m2, 3.0 * math.sqrt(max(kurt - 1.0, 0.0) / x.numel()) if x.numel() > 1 else math.inf


def _is_default(t: torch.Tensor, fan: int) -> bool:
    x = t.detach().to(torch.float64).flatten()
    bound = 1.0 / math.sqrt(fan)
    if float(x.abs().max()) > bound * (1 + 1e-6):
        return False
    if x.numel() < 2:
        return True
    rel = float((x * x).mean()) * 3.0 * fan - 1.0
    return abs(rel) <= RECOGNISE_SIGMAS * math.sqrt(0.8 / x.numel())


def find_law(module: nn.Module, name: str, init: str = "auto") -> Law:
    """The law of one linear layer (``init`` ``"auto"``: each of W and b recognised as PyTorch's default draw, else
    measured; ``"default"``; ``"measured"``)."""
    fan = fan_in(module)
    bias = module.bias
    default_w = init == "default" or (init == "auto" and _is_default(module.weight, fan))
    default_b = bias is None or init == "default" or (init == "auto" and _is_default(bias, fan))
    w2, tol_w = (1.0 / 3.0, 0.0) if default_w else _measure(module.weight)
    w2 = w2 if default_w else fan * w2
    b2, tol_b = (0.0, 0.0) if bias is None else (1.0 / (3.0 * fan), 0.0) if default_b else _measure(bias)
    source = {(True, True): "pytorch-default", (False, False): "measured",
              (True, False): "pytorch-default weight, measured bias",
              (False, True): "measured weight, pytorch-default bias"}[(default_w, default_b)]
    tol = max(tol_w, tol_b)
    if tol > MEASURE_WARN:
        which = "weight" if tol_w >= tol_b else "bias"
        warnings.warn(f"init: {name}.{which} has too few entries to measure its variance (relative tolerance "
                      f"{tol:.2g}); pass init={{{name!r}: (sigma_w2, sigma_b2)}} to state the law", stacklevel=3)
    return Law(w2, b2, source, fan, tol)


def resolve_laws(layers: Mapping[str, nn.Module],
                 init: str | Mapping[str, tuple[float, float]] | None) -> dict[str, Law]:
    """The law of every linear layer by module name; ``init`` None or ``"auto"``, ``"default"``, ``"measured"``,
    or a mapping name → (σ_w², σ_b²) (the layers it leaves out are found as ``"auto"``).

    Raises:
        ZerolossInputError: an unknown init choice, a mapping naming no linear layer, or a negative variance.
    """
    given: Mapping[str, tuple[float, float]] = {}
    mode = "auto"
    if isinstance(init, Mapping):
        given = init
        unknown = sorted(set(given) - set(layers))
        if unknown:
            raise ZerolossInputError(f"init: {unknown[0]!r} is not a linear layer of the model; its linear layers "
                                     f"are {', '.join(layers) or '(none)'}")
    elif init is not None:
        if init not in INIT_CHOICES:
            raise ZerolossInputError(f"init: must be one of {', '.join(INIT_CHOICES)} or a mapping from layer names "
                                     f"to (sigma_w2, sigma_b2), got {init!r}")
        mode = init
    laws = {}
    for name, module in layers.items():
        if name in given:
            try:
                w2, b2 = (float(v) for v in given[name])
            except (TypeError, ValueError):
                raise ZerolossInputError(f"init: {name!r} must map to (sigma_w2, sigma_b2), got {given[name]!r}") \
                    from None
            if not (w2 >= 0 and b2 >= 0 and math.isfinite(w2) and math.isfinite(b2)):
                raise ZerolossInputError(f"init: {name!r} needs finite variances ≥ 0, got ({w2}, {b2})")
            laws[name] = Law(w2, b2 if module.bias is not None else 0.0, "given", fan_in(module))
        else:
            laws[name] = find_law(module, name, mode)
    return laws
