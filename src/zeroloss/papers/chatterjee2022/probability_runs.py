"""Running ``chatterjee2022.criterion_probability``: how often a random initialisation is certified (theory.md §2.1).

The paper's probabilistic corollary: for an initialisation law μ, P(GD converges linearly to zero loss) ≥
μ{w₀ : 4F(w₀) < r²α(w₀, r) for some r}. One run is one (law, width, activation, n): ``trials`` independent draws
(member k is the draw with seed + k), each certified by
:func:`~zeroloss.papers.chatterjee2022.theory.criterion_probability` — the proven count (first-layer bound) with its
Wilson interval, and, apart, the optimistic count with the α *estimate*.

Laws: a standard one (``lecun``, ``kaiming``, …: Gaussian weights, radii ``radii``), or ``positive_uniform``
(Chatterjee's positive init, hidden weights U[½, 3⁄2]/fan_in drawn per trial, output scale M from the bound for each
draw at r = ¼/fan_in, the radius tried). Data: Gaussian points on the sphere in d = 64, random ±1 labels; n > d is
the boundary where the theorem's assumption (linearly independent inputs) fails: the certificate *refuses* there
(:class:`~zeroloss.errors.ZerolossInputError`), and the run records the refusal instead of a count.

Examples:
    >>> spec = {"law": "lecun", "width": 4, "activation": "tanh", "n": 8, "d": 16, "trials": 2, "seed": 0,
    ...         "radii": [0.3], "samples": 2, "descent_starts": 0, "descent_steps": 0}
    >>> out = run_batch([spec])[0].summary
    >>> out["certified"], out["trials"], out["refused"]
    (0, 2, False)
"""

from __future__ import annotations

import pandas as pd
import torch

from zeroloss.data import sphere_data
from zeroloss.devices import resolve_device
from zeroloss.errors import ZerolossInputError
from zeroloss.nets.feedforward import FeedForward
from zeroloss.papers.base import RunOutput, Spec
from zeroloss.papers.chatterjee2022.init import initialise
from zeroloss.papers.chatterjee2022.theory import criterion_probability

#: The positive law with random hidden weights, and its radius as a fraction of 1/fan_in (half the smallest weight).
POSITIVE_LAW = "positive_uniform"
RADIUS_FRACTION = 0.25


def _one(spec: Spec, device: torch.device) -> RunOutput:
    X, y = sphere_data(spec["n"], spec["d"], spec["data_seed"] if "data_seed" in spec else 0)
    width = spec["width"]
    net = FeedForward(spec["d"], [width, width], spec["activation"], spec["trials"], spec["seed"], torch.float64,
                      device, bias=False, output_bias=True, init=None if spec["law"] == POSITIVE_LAW else spec["law"])
    sigma0 = float(net.activation.sigma0)
    base = {"sigma0": sigma0, "trials": spec["trials"], "n_over_d": spec["n"] / spec["d"]}
    try:
        radii = list(spec["radii"])
        if spec["law"] == POSITIVE_LAW:
            radius = RADIUS_FRACTION / width
            initialise(net, "positive", X=X, y=y, radius=radius, hidden=(0.5 / width, 1.5 / width))
            radii = [radius]
        res = criterion_probability(net, X.to(device), y.to(device), radii=radii, samples=spec["samples"],
                                    descent_starts=spec["descent_starts"], descent_steps=spec["descent_steps"],
                                    seed=spec["seed"])
    except ZerolossInputError as exc:
        summary = {**base, "refused": True, "refusal": str(exc), "certified": None, "estimated": None,
                   "estimate": None, "low": None, "high": None}
        return RunOutput(pd.DataFrame(columns=["step", "metric", "value"]), summary)
    summary = {**base, "refused": False, "refusal": "", "certified": res.certified, "estimated": res.estimated,
               "estimate": res.estimate, "low": res.low, "high": res.high}
    return RunOutput(pd.DataFrame(columns=["step", "metric", "value"]), summary)


def run_batch(specs: list[Spec], device: str | torch.device = "cpu") -> list[RunOutput]:
    """One :class:`~zeroloss.papers.base.RunOutput` per spec (each spec is its own ensemble of ``trials`` draws)."""
    dev = resolve_device(device)
    return [_one(spec, dev) for spec in specs]
