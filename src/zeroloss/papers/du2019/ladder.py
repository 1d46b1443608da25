"""Running ``du2019.theorem``: the theorems' inequality L(k) ≤ (1 − ηλ₀/2)^k L(0) on a ladder of steps.

One run is one net (FC or ResNet) at width m from its seed, on the data of its spec, trained by full-batch GD with
the step of its ``rung``: a number c gives η = c/λ_max(G(0)) of its own full Gram (c = 1 is the step of
``du2019.kernel``), ``"theorem"`` gives the theorems' step η_thm = λ₀/(n²·2^H) (FC) or λ₀H²/n² (ResNet)
(:func:`zeroloss.papers.du2019.theory.theorem_step`, the constants stated there), with λ₀ = λ_min(K^(H)) of the
kernel module (:func:`zeroloss.limit_kernel`, kind "du", of the run's inputs and architecture). Its window: until
the kernel prediction of its own G(0) at its own η falls to ``horizon`` · L̂_0
(:func:`zeroloss.papers.du2019.theory.kernel_steps_to`), so that every rung covers about the same stretch of the
gradient flow; a window longer than ``max_steps`` is cut there and the run marked *censored*.

Recorded per run: η, ηλ_max(G(0)), η/η_thm, λ₀, η_thm, the window, and the check of the inequality at every step
of the window (:func:`zeroloss.papers.du2019.theory.theorem_inequality`): steps checked, violations, the worst
log(L(k)/bound(k)); the proofs' lemma: min_k λ_min(G^(H)(k)) over the window (every step when the window is at most
:data:`LEMMA_PROBES` steps, else every ``lemma_every``-th). Metrics: the loss and the bound (1 − ηλ₀/2)^k L(0) on at
most :data:`zeroloss.papers.du2019.runs.STORED_STEPS` + 1 steps.

Spec keys: those of :mod:`zeroloss.papers.du2019.runs` (``net``, ``width``, ``depth``, ``n``, ``d``, ``seed``, …,
``horizon``, ``max_steps``) and ``rung``. Runs differing only in ``seed`` and ``rung`` train as one ensemble
(:func:`ladder_batch_key`); each keeps its own window.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import torch

from zeroloss.devices import resolve_device
from zeroloss.errors import require
from zeroloss.kernels.empirical import gram
from zeroloss.kernels.limit import lambda0 as limit_lambda0
from zeroloss.nets.base import stack_members
from zeroloss.papers.base import RunOutput, Spec, default_batch_key
from zeroloss.papers.du2019.runs import STORED_STEPS, make_data, make_net, spec_value
from zeroloss.papers.du2019.theory import kernel_steps_to, theorem_inequality, theorem_step
from zeroloss.spectra import eigenvalues
from zeroloss.train.gd import train_gd

#: λ_min(G^(H)(k)) is probed at every step of a window of at most this many steps, else on this many evenly spaced.
LEMMA_PROBES = 2000


def ladder_batch_key(spec: Spec) -> str:
    """Runs equal but for ``seed`` and ``rung`` share one ensemble."""
    return default_batch_key({k: v for k, v in spec.items() if k != "rung"})


def run_ladder_batch(specs: list[Spec], device: str | torch.device = "cpu") -> list[RunOutput]:
    """Train the runs of one batch (same net and data; seeds and rungs differ) as one ensemble; module docstring."""
    device = resolve_device(device)
    first = specs[0]
    X, y = make_data(first)
    lam0 = limit_lambda0(X, net=first["net"], depth=first["depth"], activation=spec_value(first, "activation"),
                         c_res=spec_value(first, "c_res"))
    require(lam0 > 0, "X", "must give λ₀ = λ_min(K^(H)) > 0 (no two inputs parallel)", lam0)
    eta_thm = theorem_step(first["net"], first["n"], first["depth"], lam0)
    X, y = X.to(device), y.to(device)
    net = stack_members([make_net(s, s["seed"], device, tuple(X.shape[1:])) for s in specs])
    G0 = gram(net, X)
    top = eigenvalues(G0).cpu()[:, -1]
    eta = torch.tensor([eta_thm if s["rung"] == "theorem" else float(s["rung"]) / float(top[i])
                        for i, s in enumerate(specs)], dtype=torch.float64)
    require(bool((eta * top < 2.0).all()), "rung", "must give η < 2/λ_max(G(0))", [s["rung"] for s in specs])
    with torch.no_grad():
        residual0 = (net(X).double() - y.double()).cpu()
    max_steps = int(spec_value(first, "max_steps"))
    horizon = kernel_steps_to(G0, residual0, eta, float(spec_value(first, "horizon")), max_steps)
    own = [max_steps if K < 0 else max(1, int(K)) for K in horizon.tolist()]
    # λ_min(G^(H)(k)) for the lemma: at every step of a window of ≤ LEMMA_PROBES steps, else on LEMMA_PROBES evenly
    # spaced ones (each run's own schedule; the batch probes on every step some run's schedule needs)
    own_every = [max(1, k // LEMMA_PROBES) for k in own]
    run = train_gd(net, X, y, eta, max(own), probe_every=math.gcd(*own_every), probes=["loss", "lambda_min_last"],
                   progress=False, check_step=False)
    last = run.metric("lambda_min_last")
    outputs = []
    for s in range(len(specs)):
        done = min(own[s], run.steps, run.diverged_at.get(s, own[s]))
        loss_s = run.losses[: done + 1, s]
        check = theorem_inequality(loss_s, float(eta[s]), lam0).iloc[0]
        path = last[s][(last.index <= done) & (last.index % own_every[s] == 0)].to_numpy(dtype=float)
        path = path[np.isfinite(path)]
        kept = np.unique(np.round(np.linspace(0, done, STORED_STEPS + 1)).astype(np.int64))
        bound = loss_s[0] * np.exp(kept * math.log1p(-float(eta[s]) * lam0 / 2.0))
        metrics = pd.concat([pd.DataFrame({"step": kept, "metric": "loss", "value": loss_s[kept]}),
                             pd.DataFrame({"step": kept, "metric": "theorem_bound", "value": bound})],
                            ignore_index=True)
        outputs.append(RunOutput(metrics, {
            "eta": float(eta[s]),
            "lambda_max_G0": float(top[s]),
            "eta_lambda_max": float(eta[s] * top[s]),
            "lambda0": lam0,
            "theorem_step": eta_thm,
            "eta_over_theorem": float(eta[s]) / eta_thm,
            "window": int(done),
            "censored": bool(horizon[s] < 0 and s not in run.diverged_at),
            "diverged": s in run.diverged_at,
            "steps_checked": int(check["steps_checked"]),
            "violations": int(check["violations"]),
            "worst_log_excess": float(check["worst_log_excess"]),
            "final_loss_ratio": float(loss_s[-1] / loss_s[0]),
            "lemma_steps": int(len(path)),
            "lemma_every": int(own_every[s]),
            "lambda_min_GH_min": float(path.min()) if len(path) else float("nan"),
            "seconds": run.seconds,
        }))
    return outputs
