"""Du et al. (ICML 2019) experiments: the paper has none, so these are ours, designed to test its statements.

Du et al.'s theorems say that at large width GD is governed by the Gram matrix: the residual obeys
r(k+1) ≈ (I − ηG(0)) r(k), so the loss follows the kernel prediction L̂_k = ½ Σ_i (1 − ηλ_i)^{2k} ⟨v_i, y − u(0)⟩²
of the full Gram G(0), with an error that falls as m grows, and the width needed for this grows like 2^{O(H)} for
FC nets but not for ResNets (docs/theory.md §1.3, §1.5). Every run is measured against its *own* kernel
prediction, for as many steps as its kernel needs (:mod:`zeroloss.papers.du2019.runs`); the claims are in
:mod:`zeroloss.papers.du2019.claims`.

Registered experiments (scales ``tiny`` for CI, ``medium`` for about 30 CPU minutes, ``paper`` for one GPU):

- ``du2019.kernel`` — FC (H = 2) and ResNet (H = 3) over widths, several seeds, λ_min(G(k)) and λ_min(G^(H)(k))
  probed at every step, λ₀ and K^(H) from the kernel module: (a) at η = 1/λ_max(G(0)) every step achieves ≥ 0.9 of
  the linearised decrement 1 − (1 − ηλ_min(G(k)))² (the laziness curve per width), the loss curve stays within τ of
  its kernel prediction at the widest width, random labels are fitted; (b) the deviation from the kernel
  prediction, the weight movement ‖W^(h)(k) − W^(h)(0)‖_F/√m and the Gram drift fall at least like m^(−1/2);
  the proofs' lemmas: ‖G^(H)(0) − K^(H)‖_F/‖K^(H)‖_F falls like m^(−1/2), λ_min(G^(H)(k)) ≥ λ₀/2 at every step.
- ``du2019.theorem`` — the theorems' inequality L(k) ≤ (1 − ηλ₀/2)^k L(0) on a ladder of steps from 1/λ_max(G(0))
  down to the theorems' step η_thm (:mod:`zeroloss.papers.du2019.ladder`).
- ``du2019.samples`` — the width needed to track the kernel to τ against n, beside the theorems' n⁴/λ₀⁴.
- ``du2019.depth`` — (c) FC vs ResNet at depths 2…H over a grid of widths: the width each needs to track its
  kernel to τ, with censored cells where no width tried does.
- ``du2019.conv`` — (d) the convolutional ResNet fits random labels on patch data within twice its kernel horizon.

Data: n points on S^{d−1} (patch fields of unit Frobenius norm for the conv net), random ±1 labels, softplus.
"""

from __future__ import annotations

import math
from typing import Any

import pandas as pd

from zeroloss.activations import ACTIVATIONS
from zeroloss.budget import MAX_DEPTH, format_bytes, resolve_budget, train_memory_bytes
from zeroloss.errors import BOOLEAN, POSITIVE_INT, POSITIVE_NUMBER, SEED, Rule, ZerolossInputError, is_integer
from zeroloss.nets.registry import DU_NETS
from zeroloss.papers.base import Claim, Experiment, Spec, register
from zeroloss.papers.du2019.claims import (
    FIT_WITHIN,
    depth_claim,
    fit_claim,
    linear_claim,
    slope_claim,
    tracking_claim,
)
from zeroloss.papers.du2019.claims_theorem import lemma_lambda_claim, lemma_limit_claim, samples_claim, theorem_claim
from zeroloss.papers.du2019.ladder import ladder_batch_key, run_ladder_batch
from zeroloss.papers.du2019.runs import DEFAULTS, run_batch, runs_table, spec_value
from zeroloss.sweep.checks import declare_checks, declare_run_check, list_of, one_of, open_interval
from zeroloss.train.probes import PROBES

PAPER = "du2019"


# ---------------------------------------------------------------------------------------------- checks

#: A depth within the commands' limit (zeroloss.budget.MAX_DEPTH).
DEPTH = Rule(lambda v: is_integer(v) and 1 <= v <= MAX_DEPTH, f"must be an integer from 1 to {MAX_DEPTH}")
_CHECKS = {
    "width": POSITIVE_INT, "depth": DEPTH, "n": POSITIVE_INT, "d": POSITIVE_INT, "channels": POSITIVE_INT,
    "positions": POSITIVE_INT, "seed": SEED, "data_seed": SEED, "lr_scale": open_interval(0.0, 2.0),
    "activation": one_of(*ACTIVATIONS), "labels": one_of("random", "gaussian", "teacher"),
    "dtype": one_of("float32", "float64"), "c_res": open_interval(0.0, 1.0), "probes": list_of(one_of(*PROBES)),
    "horizon": open_interval(0.0, 1.0), "run_factor": POSITIVE_NUMBER, "max_steps": POSITIVE_INT, "limit": BOOLEAN,
    "rung": Rule(lambda v: v == "theorem" or (isinstance(v, (int, float)) and not isinstance(v, bool) and 0 < v < 2),
                 "must be 'theorem' or a number c in (0, 2) (η = c/λ_max(G(0)))"),
}


def _validate_spec(nets: tuple[str, ...]):
    """The keys each architecture needs, and inputs that Du et al.'s assumption (no two parallel inputs) admits."""

    def validate(spec: Spec) -> None:
        if spec.get("net") not in nets:
            raise ZerolossInputError(f"net: must be one of {', '.join(nets)}, got {spec.get('net')!r}")
        needed = ("channels", "positions") if spec["net"] == "conv-resnet" else ("d",)
        for key in ("width", "depth", "n", "seed", *needed):
            if key not in spec:
                raise ZerolossInputError(f"{key}: required for net {spec['net']!r} (missing from the run spec)")
        if spec["net"] != "conv-resnet" and spec["d"] < 2:
            raise ZerolossInputError(f"d: must be at least 2 (on S⁰ every two inputs are parallel, which Du et al. "
                                     f"exclude), got {spec['d']!r}")

    return validate


def _run_memory(spec: Spec) -> str | None:
    """A run's memory against the budget it will run under (``ZEROLOSS_MAX_BYTES`` or half the available memory),
    before anything is written; the key named is the largest size of the spec."""
    if not all(is_integer(spec.get(k)) for k in ("width", "depth", "n")) or spec.get("net") not in DU_NETS:
        return None  # the key checks and validate_spec report these
    conv, steps = spec["net"] == "conv-resnet", spec.get("max_steps", DEFAULTS["max_steps"])
    need = train_memory_bytes(net=spec["net"], n=spec["n"], width=spec["width"], depth=spec["depth"], members=1,
                              steps=steps, probe_every=max(1, steps // 200), d=1 if conv else spec.get("d", 1),
                              channels=spec.get("channels", 1) if conv else 1,
                              positions=spec.get("positions", 1) if conv else 1,
                              itemsize=4 if spec.get("dtype") == "float32" else 8)
    budget = resolve_budget(None)
    if need <= budget.bytes:
        return None
    sizes = {k: spec[k] for k in ("width", "n", "d", "channels", "max_steps") if is_integer(spec.get(k))}
    key = max(sizes, key=lambda k: sizes[k]) if sizes else "width"
    return (f"{key}: the run needs about {format_bytes(need)}, more than the memory budget of "
            f"{format_bytes(budget.bytes)} ({budget.source}); use smaller values or set ZEROLOSS_MAX_BYTES")


for _experiment in ("du2019.kernel", "du2019.depth", "du2019.conv", "du2019.theorem", "du2019.samples"):
    declare_checks(_experiment, _CHECKS)
    declare_run_check(_experiment, _run_memory)
NET_LABELS = {"fc": "FC", "resnet": "ResNet", "conv-resnet": "conv-ResNet"}


def _spec(**kw: Any) -> Spec:
    spec = {k: DEFAULTS[k] for k in ("activation", "labels", "data_seed", "dtype")}
    spec.update(kw)
    return spec


#: Effective single-thread float64 flop rate of a du2019 GD step on the calibration machine: the tiny scale's
#: measured CPU seconds (2-core AMD EPYC, one intra-op thread, under load; `zeroloss reproduce du2019 --scale tiny`)
#: divided by the flop counts below; the estimates were within a factor 2 of every experiment's measured time.
CPU_FLOPS = 12e9
#: Typical kernel horizons in steps (the step at which L̂ ≤ 10⁻⁴ L̂_0 with η = 1/λ_max) on the scales' data,
#: measured on the tiny runs: FC grows about 3× per layer (its kernel's condition number does), the ResNets do not.
HORIZON_FC_H2, HORIZON_FC_PER_LAYER, HORIZON_RESNET, HORIZON_CONV = 400.0, 3.0, 250.0, 1500.0


def estimate_seconds(spec: Spec) -> float:
    """Rough single-thread CPU seconds of one run (``reproduce --dry-run``): its flops at :data:`CPU_FLOPS`.

    The horizon is known only once G(0) is computed; it is taken as :data:`HORIZON_FC_H2` × 3^(H−2) for FC,
    :data:`HORIZON_RESNET` for the ResNet, :data:`HORIZON_CONV` for the conv-ResNet, × ``run_factor``. A step
    costs about 6·n·Σ(fan-in × fan-out) flops (three matmuls per map), twice that when the Gram is probed every
    step. On a GPU large widths run much faster and small ones are launch-bound: there this is no guide.
    """
    m, H, n = spec["width"], spec["depth"], spec["n"]
    if spec["net"] == "conv-resnet":
        fan = spec["positions"] * (3 * spec["channels"] * m + (H - 1) * 3 * m * m + m)
        horizon = HORIZON_CONV
    else:
        fan = spec["d"] * m + (H - 1) * m * m + m
        horizon = HORIZON_FC_H2 * HORIZON_FC_PER_LAYER ** (H - 2) if spec["net"] == "fc" else HORIZON_RESNET
    per_step = 6.0 * n * fan * (2.0 if "lambda_min" in spec_value(spec, "probes") else 1.0)
    return horizon * float(spec_value(spec, "run_factor")) * per_step / CPU_FLOPS


# ---------------------------------------------------------------------------------------------- kernel

KERNEL_PROBES = ["loss", "lambda_min", "lambda_min_last", "movement", "gram_drift"]
KERNEL_NETS = (("fc", 2), ("resnet", 3))
#: (summary column, words) of the quantities whose decay with width claim (b) checks.
SLOPES = (("kernel_deviation", "the deviation from the kernel prediction"),
          ("movement_max", "the weight movement max_h ‖W^(h)(k) − W^(h)(0)‖_F/√m"),
          ("gram_drift_max", "the Gram drift max_k ‖G(k) − G(0)‖_F/‖G(0)‖_F"))


def kernel_specs(widths: list[int], seeds: int, n: int, d: int, max_steps: int = 100_000) -> list[Spec]:
    """FC (H = 2) and ResNet (H = 3) at every width and seed; 2× the kernel horizon (the fit claim)."""
    return [_spec(net=net, depth=depth, width=m, n=n, d=d, seed=s, run_factor=FIT_WITHIN, max_steps=max_steps,
                  probes=KERNEL_PROBES, limit=True)
            for net, depth in KERNEL_NETS for m in widths for s in range(seeds)]


def kernel_claims(df: pd.DataFrame) -> list[Claim]:
    runs = runs_table(df)
    name = "du2019.kernel"
    claims = []
    for net, group in runs.groupby("net", sort=False):
        label = NET_LABELS.get(net, net)
        claims += [linear_claim(name, label, group), tracking_claim(name, label, group),
                   fit_claim(name, label, group)]
        claims += [slope_claim(name, label, group, column, text) for column, text in SLOPES]
        claims += [lemma_limit_claim(name, label, group), lemma_lambda_claim(name, label, group)]
    return claims


def kernel_plot(df: pd.DataFrame) -> dict[str, Any]:
    from zeroloss.papers.du2019 import plots  # matplotlib: imported when a figure is drawn

    runs = runs_table(df)
    return {
        "loss against its kernel prediction at the widest width": plots.kernel_curves(df, runs),
        "per-step loss decrease against the linearised 1 − (1 − ηλ_min(G(k)))² at the widest width":
            plots.contraction(df, runs),
        "laziness curve: fraction of the linear decrement achieved against width": plots.laziness(runs),
        "deviation, movement and Gram drift against width": plots.width_scaling(runs),
    }


register(Experiment(
    name="du2019.kernel", paper=PAPER,
    description="Fully-connected (H = 2) and residual (H = 3) nets, softplus, n points on S^{d−1} with random ±1 "
                "labels, full-batch GD with η = 1/λ_max(G(0)) for twice the kernel's horizon, over widths and seeds: "
                "each run against the kernel prediction of its own G(0); λ_min(G(k)) at every step.",
    # tiny: 4 seeds, the width-512 batches being most of its time; over seeds 0–3 every claim's verdict is the one
    # over seeds 0–7 (checked on 8-seed runs), with wider slope intervals (medium and paper, with more seeds and
    # widths, narrow them)
    specs={"tiny": kernel_specs([64, 128, 256, 512], 4, n=8, d=16),
           "medium": kernel_specs([64, 128, 256, 512, 1024, 2048], 6, n=8, d=16),
           "paper": kernel_specs([256, 512, 1024, 2048, 4096, 8192], 8, n=32, d=64)},
    run_batch=run_batch, plot=kernel_plot, claims=kernel_claims, estimate_seconds=estimate_seconds,
    validate_spec=_validate_spec(("fc", "resnet")),
))


# ----------------------------------------------------------------------------------------------- depth

def depth_specs(depths: list[int], widths: list[int], seeds: int, n: int, d: int,
                max_steps: int = 200_000) -> list[Spec]:
    """FC and ResNet at every depth × width × seed, each for its own kernel horizon (loss probe only)."""
    return [_spec(net=net, depth=h, width=m, n=n, d=d, seed=s, run_factor=1.0, max_steps=max_steps)
            for net in ("fc", "resnet") for h in depths for m in widths for s in range(seeds)]


def depth_claims(df: pd.DataFrame) -> list[Claim]:
    return [depth_claim("du2019.depth", runs_table(df))]


def depth_plot(df: pd.DataFrame) -> dict[str, Any]:
    from zeroloss.papers.du2019 import plots  # matplotlib: imported when a figure is drawn

    runs = runs_table(df)
    return {"deviation from the kernel prediction against width, per depth": plots.deviation_by_depth(runs),
            "width needed to track the kernel against depth": plots.needed_width_by_depth(runs)}


register(Experiment(
    name="du2019.depth", paper=PAPER,
    description="Fully-connected vs residual nets at several depths over a grid of widths (softplus, random ±1 "
                "labels, η = 1/λ_max(G(0))), each run until its kernel predicts L ≤ 10⁻⁴·L(0): the width from "
                "which the loss curve stays within τ of its kernel prediction.",
    specs={"tiny": depth_specs([2, 3, 4], [8, 16, 32, 64, 128, 256], 3, n=8, d=16),
           "medium": depth_specs([2, 3, 4, 5], [8, 16, 32, 64, 128, 256, 512], 4, n=8, d=16),
           "paper": depth_specs([2, 3, 4, 5, 6], [8, 16, 32, 64, 128, 256, 512, 1024, 2048, 4096], 8,
                                n=8, d=16, max_steps=1_000_000)},
    run_batch=run_batch, plot=depth_plot, claims=depth_claims, estimate_seconds=estimate_seconds,
    validate_spec=_validate_spec(("fc", "resnet")),
))


# ------------------------------------------------------------------------------------------------ conv

def conv_specs(width: int, seeds: int, n: int, channels: int, positions: int) -> list[Spec]:
    """The convolutional ResNet (H = 3, kernel 3) on patch data, 2× its kernel horizon."""
    return [_spec(net="conv-resnet", depth=3, width=width, n=n, channels=channels, positions=positions, seed=s,
                  run_factor=FIT_WITHIN) for s in range(seeds)]


def conv_claims(df: pd.DataFrame) -> list[Claim]:
    return [fit_claim("du2019.conv", "the convolutional ResNet", runs_table(df))]


def conv_plot(df: pd.DataFrame) -> dict[str, Any]:
    from zeroloss.papers.du2019 import plots  # matplotlib: imported when a figure is drawn

    return {"convolutional ResNet: loss against its kernel prediction": plots.kernel_curves(df, runs_table(df))}


register(Experiment(
    name="du2019.conv", paper=PAPER,
    description="Convolutional ResNet (H = 3, kernel 3, zero padding) on smoothed Gaussian patch fields of unit "
                "Frobenius norm with random ±1 labels, full-batch GD with η = 1/λ_max(G(0)) for twice its "
                "kernel's horizon.",
    specs={"tiny": conv_specs(32, 3, n=12, channels=2, positions=8),
           "medium": conv_specs(64, 5, n=12, channels=2, positions=8),
           "paper": conv_specs(256, 8, n=32, channels=3, positions=16)},
    run_batch=run_batch, plot=conv_plot, claims=conv_claims, estimate_seconds=estimate_seconds,
    validate_spec=_validate_spec(("conv-resnet",)),
))


# --------------------------------------------------------------------------------------------- theorem

def theorem_specs(widths: list[int], seeds: int, n: int, d: int, rungs: list[float], horizon: float,
                  max_steps: int) -> list[Spec]:
    """FC (H = 2) and ResNet (H = 3) at every width × seed × rung (the rungs, then ``"theorem"``), each until its
    kernel predicts L̂ ≤ ``horizon`` · L̂_0 at its own step."""
    return [_spec(net=net, depth=depth, width=m, n=n, d=d, seed=s, rung=rung, horizon=horizon, max_steps=max_steps)
            for net, depth in KERNEL_NETS for m in widths for rung in [*rungs, "theorem"] for s in range(seeds)]


def theorem_claims(df: pd.DataFrame) -> list[Claim]:
    runs = runs_table(df)
    claims = []
    for net, group in runs.groupby("net", sort=False):
        label = NET_LABELS.get(net, net)
        claims.append(theorem_claim("du2019.theorem", label, group))
        at_theorem = group[group["rung"].astype(str) == "theorem"]
        claims.append(lemma_lambda_claim("du2019.theorem", f"{label} at η_thm", at_theorem))
    return claims


def theorem_plot(df: pd.DataFrame) -> dict[str, Any]:
    from zeroloss.papers.du2019 import plots  # matplotlib: imported when a figure is drawn

    runs = runs_table(df)
    return {"the theorem's bound (1 − ηλ₀/2)^k against the loss, per rung, at the widest width":
            plots.theorem_curves(df, runs)}


def estimate_ladder_seconds(spec: Spec) -> float:
    """:func:`estimate_seconds` for the batch's longest window, the theorem rung's (every member of a ladder batch
    trains that long): the kernel horizon at 1/λ_max scaled to the spec's ``horizon`` (log of it) and divided by
    η_thm·λ_max, taken as 10⁻³·(8/n)² (measured: 0.0069–0.0082 at n = 4, 0.0009–0.0011 at n = 8). Small widths are
    bound by the per-step overhead (≈ 0.2–0.3 ms a step on the calibration machine), which the flops leave out."""
    c = 1e-3 * (8.0 / spec["n"]) ** 2
    scale = math.log(1.0 / float(spec_value(spec, "horizon"))) / math.log(1e4)
    return estimate_seconds({**spec, "run_factor": scale / c, "probes": ["loss"]})


register(Experiment(
    name="du2019.theorem", paper=PAPER,
    description="The theorems' inequality L(k) ≤ (1 − ηλ₀/2)^k L(0), λ₀ = λ_min(K^(H)) of the limit kernel, for FC "
                "(H = 2) and ResNet (H = 3) nets over widths, on a ladder of steps from 1/λ_max(G(0)) down to the "
                "theorems' step η_thm = λ₀/(n²2^H) (FC), λ₀H²/n² (ResNet); each run until its kernel predicts "
                "L̂ ≤ horizon·L̂_0 at its own step.",
    specs={"tiny": theorem_specs([8, 32, 128], 2, n=4, d=16, rungs=[1.0, 0.125], horizon=0.5, max_steps=20_000),
           "medium": theorem_specs([16, 64, 256], 2, n=8, d=16, rungs=[1.0, 0.25, 0.0625, 0.015625],
                                   horizon=0.1, max_steps=400_000),
           "paper": theorem_specs([16, 64, 256, 1024, 4096], 4, n=8, d=16,
                                  rungs=[1.0, 0.25, 0.0625, 0.015625, 0.00390625], horizon=1e-2,
                                  max_steps=2_000_000)},
    run_batch=run_ladder_batch, plot=theorem_plot, claims=theorem_claims, batch_key=ladder_batch_key,
    estimate_seconds=estimate_ladder_seconds, validate_spec=_validate_spec(("fc", "resnet")),
))


# --------------------------------------------------------------------------------------------- samples

def samples_specs(ns: list[int], widths: list[int], seeds: int, d: int, max_steps: int = 200_000) -> list[Spec]:
    """FC (H = 2) and ResNet (H = 3) at every n × width × seed, each for its own kernel horizon; λ₀ measured."""
    return [_spec(net=net, depth=depth, width=m, n=n, d=d, seed=s, run_factor=1.0, max_steps=max_steps, limit=True)
            for net, depth in KERNEL_NETS for n in ns for m in widths for s in range(seeds)]


def samples_claims(df: pd.DataFrame) -> list[Claim]:
    runs = runs_table(df)
    return [samples_claim("du2019.samples", NET_LABELS.get(net, net), group)
            for net, group in runs.groupby("net", sort=False)]


def samples_plot(df: pd.DataFrame) -> dict[str, Any]:
    from zeroloss.papers.du2019 import plots  # matplotlib: imported when a figure is drawn

    return {"width needed to track the kernel against n": plots.needed_width_by_n(runs_table(df))}


register(Experiment(
    name="du2019.samples", paper=PAPER,
    description="FC (H = 2) and ResNet (H = 3) nets at several sample sizes n over a grid of widths (softplus, "
                "random ±1 labels, η = 1/λ_max(G(0))), each run until its kernel predicts L ≤ 10⁻⁴·L(0): the width "
                "from which the loss tracks its kernel prediction to τ, against n, beside Du et al.'s n⁴/λ₀⁴.",
    specs={"tiny": samples_specs([4, 8], [4, 8, 16, 32, 64, 128], 2, d=16),
           "medium": samples_specs([4, 8, 16, 32], [4, 8, 16, 32, 64, 128, 256, 512], 3, d=16),
           "paper": samples_specs([8, 16, 32, 64], [16, 32, 64, 128, 256, 512, 1024, 2048, 4096], 4, d=64,
                                  max_steps=1_000_000)},
    run_batch=run_batch, plot=samples_plot, claims=samples_claims, estimate_seconds=estimate_seconds,
    validate_spec=_validate_spec(("fc", "resnet")),
))
