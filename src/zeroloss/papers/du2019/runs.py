"""Running Du et al.'s experiments: one ensemble per shape, every run measured against its own kernel prediction.

A run (docs/theory.md §1.2–§1.3): data on the unit sphere (or unit-Frobenius patch fields for the convolutional
ResNet) with random ±1 labels; one of Du et al.'s nets at width m, depth H, drawn from its seed; full-batch GD on
every layer with the step η = lr_scale / λ_max(G(0)) of its own full Gram G(0) (float64). Before training, the
kernel prediction L̂_k = ½ Σ_i (1 − ηλ_i)^{2k} ⟨v_i, y − u(0)⟩² gives the run its horizon K: the first step with
L̂_K ≤ ``horizon`` · L̂_0 (:func:`zeroloss.papers.du2019.theory.kernel_steps_to`). The run trains for ``run_factor`` · K
steps — its own K, whatever the other runs of its batch need, so that a run's result is the same alone and in any
batch — so how long it runs is set by the kernel's spectrum, not by a budget; only ``max_steps`` caps it, and a run
whose window did not fit under the cap is marked *censored*. A batch trains as long as its longest run needs; each
run keeps the steps of its own window and of its own probe schedule.

Recorded per run (summary): η, λ_max and λ_min of G(0), the kernel horizon, the kernel deviation
max_{k ≤ K} |√L_k − √L̂_k| / √L_0 (:func:`zeroloss.papers.du2019.theory.kernel_deviation`), the first step with
L_k ≤ :data:`FIT_RATIO` · L_0, the largest hidden-layer movement ‖W^(h)(k) − W^(h)(0)‖_F/√m and Gram drift over
the run,
and, when λ_min(G(k)) was probed at every step, the fraction of the linearised decrement 1 − (1 − ηλ_min(G(k)))² that
every step achieved (its minimum over the run, :func:`zeroloss.papers.du2019.theory.linear_contraction`); when
λ_min(G^(H)(k)) was probed at every step, its minimum over the run against λ₀/2 (the proofs' lemma). With
``limit`` true the run also measures its initial last-layer Gram against the infinite-width kernel the theorems use:
λ₀ = λ_min(K^(H)) (:func:`zeroloss.limit_kernel`, kind "du", of the run's inputs and architecture) and
‖G^(H)(0) − K^(H)‖ in the Frobenius norm over ‖K^(H)‖_F and in the operator norm over λ₀.
Metrics: the loss and its kernel prediction (and the probed
quantities) on at most :data:`STORED_STEPS` + 1 steps.

Spec keys: ``net`` (fc, resnet, conv-resnet), ``width``, ``depth``, ``activation``, ``c_res``, ``dtype``, ``n``,
``d`` or ``channels`` + ``positions``, ``labels``, ``data_seed``, ``seed``, ``lr_scale``, ``horizon``,
``run_factor``, ``max_steps``, ``probes``, ``limit``. Runs differing only in ``seed`` train as one ensemble.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pandas as pd
import torch

from zeroloss.data import patch_data, sphere_data
from zeroloss.devices import resolve_device
from zeroloss.errors import require
from zeroloss.kernels.empirical import gram
from zeroloss.kernels.limit import limit_kernel
from zeroloss.nets.base import stack_members
from zeroloss.nets.registry import build_net, net_options
from zeroloss.papers.base import RunOutput, Spec, one_row_per_run
from zeroloss.papers.du2019.theory import (
    kernel_deviation,
    kernel_loss_prediction,
    kernel_steps_to,
    linear_contraction,
)
from zeroloss.spectra import eigenvalues
from zeroloss.train.gd import train_gd

#: Steps kept in the stored metrics of one run (evenly spaced, plus the last): the curves for the figures.
STORED_STEPS = 200

#: The fraction of L(0) at which random labels count as fitted: ``fit_step`` is the first step below it.
FIT_RATIO = 1e-4
#: The fraction of the linear decrement is measured while L(k) > LINEAR_FLOOR · L(0): the residual is then ≥ 10⁻⁴ of
#: its start, so a loss ratio carries ≲ 10⁻¹² of round-off (the fraction ≲ 10⁻¹⁰, against the claim's tolerance 0.1).
#: Below it the ratio of two losses near round-off differs between a run alone and in a batch (summation order) by
#: up to 10⁻⁸ of the fraction: it would measure round-off, not the dynamics.
LINEAR_FLOOR = 1e-8

#: Spec defaults (a spec may override each).
DEFAULTS: dict[str, Any] = {"activation": "softplus", "labels": "random", "data_seed": 0, "dtype": "float64",
                            "c_res": 0.5, "lr_scale": 1.0, "horizon": 1e-4, "run_factor": 1.0,
                            "max_steps": 100_000, "probes": ["loss"], "limit": False}


def spec_value(spec: Spec, key: str) -> Any:
    """``spec[key]``, or its default from :data:`DEFAULTS`."""
    return spec.get(key, DEFAULTS.get(key))


def make_data(spec: Spec) -> tuple[torch.Tensor, torch.Tensor]:
    """The run's inputs (float64, unit norm) and labels."""
    labels, seed = spec_value(spec, "labels"), spec_value(spec, "data_seed")
    if spec["net"] == "conv-resnet":
        return patch_data(spec["n"], spec["channels"], spec["positions"], seed, labels)
    return sphere_data(spec["n"], spec["d"], seed, labels)


def make_net(spec: Spec, seed: int, device: torch.device, input_shape: tuple[int, ...]):
    """One single-member net of the spec's architecture (the nets registry builds it)."""
    dtype = torch.float64 if spec_value(spec, "dtype") == "float64" else torch.float32
    fields = {**{k: spec_value(spec, k) for k in ("activation", "c_res")}, **spec}
    return build_net(spec["net"], input_shape, **net_options(spec["net"], fields), members=1, seed=seed, dtype=dtype,
                     device=device)


def _stored_steps(steps_done: int) -> np.ndarray:
    return np.unique(np.round(np.linspace(0, steps_done, STORED_STEPS + 1)).astype(np.int64))


def _history_max(history: pd.DataFrame, prefix: str) -> float:
    """Largest value over one run's history of the metrics starting with ``prefix`` (NaN when not probed)."""
    rows = history[history["metric"].str.startswith(prefix)]
    return float(rows["value"].max()) if len(rows) else float("nan")


def limit_summary(spec: Spec, net, X: torch.Tensor) -> list[dict[str, float]]:
    """Per member: λ₀ = λ_min(K^(H)) of the run's inputs and architecture, and how far its G^(H)(0) is from K^(H).

    ``lambda0``; ``gram_limit_error`` ‖G^(H)(0) − K^(H)‖_F / ‖K^(H)‖_F (the lemma's m^(−1/2) quantity);
    ``gram_limit_op`` ‖G^(H)(0) − K^(H)‖₂ / λ₀ (Du et al.'s proofs ask ≤ ¼: then λ_min(G^(H)(0)) ≥ ¾λ₀);
    ``lambda_min_GH0`` λ_min(G^(H)(0)). All float64, K^(H) from the kernel module, never from the runs' Grams.
    """
    K = limit_kernel(X.detach().cpu().double(), net=spec["net"], depth=spec["depth"],
                     activation=spec_value(spec, "activation"), c_res=spec_value(spec, "c_res"), kind="du")
    lam0 = float(eigenvalues(K)[0])
    GH = gram(net, X, layer="last").cpu()  # (S, n, n) G^(H)(0)
    diff = GH - K
    op = eigenvalues(diff).abs().amax(dim=-1)  # symmetric: the operator norm is the largest |eigenvalue|
    return [{"lambda0": lam0,
             "gram_limit_error": float(diff[s].norm() / K.norm()),
             "gram_limit_op": float(op[s]) / lam0,
             "lambda_min_GH0": float(eigenvalues(GH[s])[0])} for s in range(GH.shape[0])]


def run_batch(specs: list[Spec], device: str | torch.device = "cpu") -> list[RunOutput]:
    """Train the runs of one batch (same shape, different seeds) as one ensemble; see the module docstring."""
    device = resolve_device(device)
    first = specs[0]
    lr_scale = spec_value(first, "lr_scale")
    require(isinstance(lr_scale, (int, float)) and 0.0 < lr_scale < 2.0, "lr_scale",
            "must be in (0, 2): η = lr_scale/λ_max(G(0)) beyond 2/λ_max has no convergent kernel prediction", lr_scale)
    X, y = make_data(first)
    X, y = X.to(device), y.to(device)
    net = stack_members([make_net(s, s["seed"], device, tuple(X.shape[1:])) for s in specs])
    S = len(specs)
    G0 = gram(net, X)  # (S, n, n) float64, TF32 off
    eig0 = eigenvalues(G0).cpu()
    eta = lr_scale / eig0[:, -1]
    with torch.no_grad():
        residual0 = (net(X).double() - y.double()).cpu()
    max_steps = int(spec_value(first, "max_steps"))
    horizon = kernel_steps_to(G0, residual0, eta, float(spec_value(first, "horizon")), max_steps)
    run_factor = float(spec_value(first, "run_factor"))
    # each run's own window, from its own kernel horizon: never from the other runs of its batch (a run's result is
    # a function of its spec alone, docs/architecture.md "Purity")
    own = [max(1, min(max_steps if K < 0 else int(math.ceil(run_factor * K)), max_steps)) for K in horizon.tolist()]
    probes = list(spec_value(first, "probes"))
    # the per-step linear-decrement check needs λ_min(G(k)) at every step, the lemma λ_min(G^(H)(k))
    every_step = "lambda_min" in probes or "lambda_min_last" in probes
    limits = limit_summary(first, net, X) if spec_value(first, "limit") else None
    own_every = [1 if every_step else max(1, k // STORED_STEPS) for k in own]
    # the batch probes on every step that some run's own schedule needs; each run keeps only its own steps
    run = train_gd(net, X, y, eta, max(own), probe_every=math.gcd(*own_every), probes=probes, progress=False)
    losses = run.losses  # (steps_done + 1, S), every step
    hist = run.history
    lam_path = (run.metric("lambda_min").reindex(range(run.steps + 1)).to_numpy()
                if "lambda_min" in probes and every_step else None)
    last_path = (run.metric("lambda_min_last").reindex(range(run.steps + 1)).to_numpy()
                 if "lambda_min_last" in probes and every_step else None)
    eps = float(torch.finfo(net.dtype).eps)  # the round-off floor of the loss ratios, in the net's dtype
    outputs = []
    for s in range(S):
        K = int(horizon[s])
        diverged = s in run.diverged_at
        # the run ends at its own window's end, or where it diverged (its fate is decided there)
        done = min(own[s], run.steps, run.diverged_at.get(s, own[s]))
        window = done if K < 0 else min(K, done)
        loss_s = losses[: done + 1, s]
        predicted = kernel_loss_prediction(G0[s], residual0[s], eta[s : s + 1], done)
        kept = _stored_steps(done)
        ratio = loss_s / loss_s[0]
        reached = np.flatnonzero(ratio <= FIT_RATIO)
        finite = loss_s[np.isfinite(loss_s)]
        mine = hist[(hist["member"] == s) & (hist["step"] <= done) & (hist["step"] % own_every[s] == 0)]
        rows = [pd.DataFrame({"step": kept, "metric": "loss", "value": loss_s[kept]}),
                pd.DataFrame({"step": kept, "metric": "kernel_loss", "value": predicted[kept]})]
        rows.append(mine[(mine["metric"] != "loss") & mine["step"].isin(kept)].drop(columns="member"))
        summary = {
            "eta": float(eta[s]),
            "lambda_max_G0": float(eig0[s, -1]),
            "lambda_min_G0": float(eig0[s, 0]),
            "kernel_horizon": K,
            "steps_done": int(done),
            # cut by max_steps before the end of its own window (a diverged member's fate is decided: not censored)
            "censored": bool((K < 0 or run_factor * K > max_steps) and not diverged),
            "kernel_deviation": float(kernel_deviation(loss_s[: window + 1], predicted[: window + 1])),
            "initial_loss": float(loss_s[0]),
            "final_loss": float(finite[-1]) if len(finite) else float("nan"),
            "min_loss_ratio": float(np.nanmin(ratio)) if len(finite) else float("nan"),
            "fit_step": int(reached[0]) if len(reached) else None,
            "movement_max": _history_max(mine, "movement_W"),
            "gram_drift_max": _history_max(mine, "gram_drift"),
            "diverged": diverged,
            "diverged_at": run.diverged_at.get(s),
            "seconds": run.seconds,
        }
        if limits is not None:
            summary.update(limits[s])
        if lam_path is not None:
            k = kept[kept < done]
            rows.append(pd.DataFrame({"step": k, "metric": "contraction_ratio", "value": loss_s[k + 1] / loss_s[k]}))
            rows.append(pd.DataFrame({"step": k, "metric": "linear_bound",
                                      "value": (1.0 - float(eta[s]) * lam_path[k, s]) ** 2}))
            row = linear_contraction(loss_s[:, None], eta[s : s + 1].numpy(), lam_path[: done + 1, s : s + 1],
                                     relative_floor=max(LINEAR_FLOOR, (1e4 * eps) ** 2)).iloc[0]
            # the same fraction against G(0)'s λ_min: how far the dynamics stray from the initial kernel's rate
            fixed = np.full((done + 1, 1), float(eig0[s, 0]))
            row0 = linear_contraction(loss_s[:, None], eta[s : s + 1].numpy(), fixed,
                                      relative_floor=max(LINEAR_FLOOR, (1e4 * eps) ** 2)).iloc[0]
            summary.update({"linear_steps": int(row["steps_checked"]),
                            "linear_fraction_min": float(row["min_fraction"]),
                            "linear_fraction_min_G0": float(row0["min_fraction"])})
        if last_path is not None:
            path = last_path[: done + 1, s]
            path = path[np.isfinite(path)]
            summary.update({"lemma_steps": int(len(path)),
                            "lambda_min_GH_min": float(path.min()) if len(path) else float("nan")})
        outputs.append(RunOutput(pd.concat(rows, ignore_index=True), summary))
    return outputs


def runs_table(df: pd.DataFrame) -> pd.DataFrame:
    """One row per run (spec and summary columns) from a sweep's tidy frame."""
    return one_row_per_run(df)
