"""What is measured along training (docs/theory.md §1.3, §1.5): a registry of probes, name → function.

A probe takes a :class:`ProbeContext` (the net at step k, the data, the parameters at step 0, the Gram at step 0,
the current gradients) and returns ``{metric name: tensor of shape (S,)}``. :func:`zeroloss.train_gd` calls the
selected probes on its schedule and stores the values in a tidy history.

Probes:
    ``loss``            L = ½ Σ_i (u_i − y_i)² per member.
    ``movement``        ‖W^(h)(k) − W^(h)(0)‖_F / √m per hidden layer (``movement_W{h}``) and ‖a(k) − a(0)‖
                        (``movement_a``).
    ``lambda_min``      λ_min of the full Gram G(k) = Σ_h G^(h)(k) (float64).
    ``lambda_min_last`` λ_min of G^(H)(k), the matrix of Du et al.'s analysis.
    ``gram_drift``      ‖G(k) − G(0)‖_F / ‖G(0)‖_F.
    ``pl_ratio``        ‖∇L‖² / (2L); for the squared loss ‖∇L‖² = rᵀ G r, so λ_min(G) ≤ ratio ≤ λ_max(G).

Every probe is computed per member: a member whose parameters overflowed (non-finite weights, hence a NaN or
inf Gram) gets NaN for its values and never stops the other members' measurements (:func:`train_gd` records
only the members still active, and marks the overflowing one diverged at the step where its loss stopped being
finite).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field

import torch

from zeroloss.kernels.empirical import _gram_by_layer
from zeroloss.nets.base import EnsembleNet
from zeroloss.spectra import eigenvalues_or_nan


@dataclass
class ProbeContext:
    """Everything a probe may look at, at one step.

    Attributes:
        net: the ensemble at step k.
        X: inputs; y: labels (n,) or (S, n).
        loss: (S,) current loss per member.
        gradients: computes parameter name → gradient at step k (same shapes as the parameters); read it as
            ``ctx.grads``, which calls it once, on first use, so steps whose probes need no gradient skip it.
        initial: parameter name → value at step 0.
        cache: per-step scratch space shared by the probes (e.g. the Gram matrices, computed once).
        persistent: scratch space kept across steps (e.g. the full Gram at the first probed step).
        layer_grams: computes the per-layer float64 Gram matrices at step k, 1-based layer → (S, n, n), layers in
            order — the training loop's shortcut from its own forward pass
            (:meth:`zeroloss.train.backprop.Backprop.layer_grams`); None: :func:`zeroloss.gram_by_layer`'s
            forward and backward pass on ``net`` and ``X``.
    """

    net: EnsembleNet
    X: torch.Tensor
    y: torch.Tensor
    loss: torch.Tensor
    gradients: Callable[[], dict[str, torch.Tensor]]
    initial: dict[str, torch.Tensor]
    cache: dict[str, object] = field(default_factory=dict)
    persistent: dict[str, object] = field(default_factory=dict)
    layer_grams: Callable[[], dict[int, torch.Tensor]] | None = None

    @property
    def grads(self) -> dict[str, torch.Tensor]:
        """Parameter name → gradient at step k, computed on first use."""
        if "grads" not in self.cache:
            self.cache["grads"] = self.gradients()
        return self.cache["grads"]  # type: ignore[return-value]

    def grams(self) -> dict[int, torch.Tensor]:
        """Per-layer Gram matrices at step k (float64), computed once per step."""
        if "grams" not in self.cache:
            if self.layer_grams is not None:
                self.cache["grams"] = self.layer_grams()
            else:  # no memory check here: a run is sized before it starts (a probe must not refuse half-way)
                self.cache["grams"] = _gram_by_layer(self.net, self.X, "all", torch.float64, None,
                                                     check_budget=False)
        return self.cache["grams"]  # type: ignore[return-value]

    def full_gram(self) -> torch.Tensor:
        if "full" not in self.cache:
            per_layer = list(self.grams().values())
            total = per_layer[0].clone()
            for K in per_layer[1:]:
                total += K
            self.cache["full"] = total
        return self.cache["full"]  # type: ignore[return-value]


Probe = Callable[[ProbeContext], dict[str, torch.Tensor]]


def probe_loss(ctx: ProbeContext) -> dict[str, torch.Tensor]:
    return {"loss": ctx.loss}


def probe_movement(ctx: ProbeContext) -> dict[str, torch.Tensor]:
    """‖θ(k) − θ(0)‖ per member and parameter tensor (hidden weights divided by √m), summed in float64.

    The difference is written into one buffer per parameter kept across steps: a fresh weight-sized temporary at
    every probed step (200 MB for 6 members of width 2048) made the allocator map and unmap pages each step — a
    quarter of a wide du2019 run's CPU time went to page faults.
    """
    out = {}
    width = getattr(ctx.net, "width", None)
    for name, p in ctx.net.named_parameters():
        buffer = ctx.persistent.get(f"movement_buffer_{name}")
        if buffer is None:  # one run's parameters keep their shape and dtype: allocated once
            buffer = ctx.persistent[f"movement_buffer_{name}"] = torch.empty_like(p, requires_grad=False)
        torch.sub(p.detach(), ctx.initial[name], out=buffer)
        diff = buffer.flatten(1).norm(dim=1, dtype=torch.float64)
        is_output = ctx.net.layer_of(name) == ctx.net.depth + 1
        out[f"movement_{name}"] = diff if (is_output or width is None) else diff / math.sqrt(width)
    return out


def probe_lambda_min(ctx: ProbeContext) -> dict[str, torch.Tensor]:
    return {"lambda_min": eigenvalues_or_nan(ctx.full_gram())[:, 0]}


def probe_lambda_min_last(ctx: ProbeContext) -> dict[str, torch.Tensor]:
    return {"lambda_min_last": eigenvalues_or_nan(ctx.grams()[ctx.net.depth])[:, 0]}


def probe_gram_drift(ctx: ProbeContext) -> dict[str, torch.Tensor]:
    G = ctx.full_gram()
    G0 = ctx.persistent.setdefault("initial_gram", G.clone())
    return {"gram_drift": (G - G0).flatten(1).norm(dim=1) / G0.flatten(1).norm(dim=1)}


def probe_pl_ratio(ctx: ProbeContext) -> dict[str, torch.Tensor]:
    squared = sum(g.detach().flatten(1).double().pow(2).sum(dim=1) for g in ctx.grads.values())
    return {"pl_ratio": squared / (2.0 * ctx.loss.double())}


#: name → probe. Plain dict: add your own (a function of a :class:`ProbeContext`).
PROBES: dict[str, Probe] = {
    "loss": probe_loss,
    "movement": probe_movement,
    "lambda_min": probe_lambda_min,
    "lambda_min_last": probe_lambda_min_last,
    "gram_drift": probe_gram_drift,
    "pl_ratio": probe_pl_ratio,
}

DEFAULT_PROBES = ("loss", "movement", "lambda_min", "lambda_min_last", "gram_drift", "pl_ratio")
