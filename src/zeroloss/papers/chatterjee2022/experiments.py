"""Chatterjee (2022): the registered experiments — init_comparison, conditioning, criterion_probability.

``chatterjee2022.init_comparison`` asks: does the positive initialisation accelerate gradient descent?
(docs/theory.md §2.4). ``chatterjee2022.conditioning`` shows what decides it without hidden biases: κ(XXᵀ)
(docs/theory.md §2.5). ``chatterjee2022.criterion_probability`` is the probabilistic corollary against width
(docs/theory.md §2.6). The runs are in :mod:`~zeroloss.papers.chatterjee2022.runs` and
:mod:`~zeroloss.papers.chatterjee2022.probability_runs` (their code sets the stored runs' result versions).

The paper reports that its positive initialisation "can substantially accelerate optimization relative to
standard random initializations at the same width"; its settings are not available, so this comparison is ours,
designed so that neither the step size nor the budget decides it:

- **Two networks.** :class:`~zeroloss.nets.FeedForward` (tanh, output bias c) *with* trainable hidden biases b_ℓ —
  the network of docs/theory.md §2.2 as written here — and *without* them. Which one the paper's experiment used is
  not known (the available text does not make either "the theorem's"). Under the positive init (W₁ = 0) the hidden
  biases receive the same large gradients as W₁ and add a stiff, rank-one direction to Θ(w₀) (every input has the
  same δ at W₁ = 0), which caps the usable step.
- **Six initialisations at the same width and depth.** ``positive`` (hidden weights the constant 1/fan_in: every
  seed is the same net and the units of a layer stay identical), ``positive_uniform`` (hidden weights drawn from
  U[½, 3⁄2]/fan_in: seeds differ, units differ), both with the certified output scale M at radius
  r = ``radius_fraction`` × the smallest possible hidden weight; baselines ``kaiming``, ``xavier``, ``lecun`` and
  ``torch_default`` (:mod:`zeroloss.nets.laws`).
- **Each initialisation at its best step.** The grid is ``fractions`` × 2/λ_max(Θ(w₀)) of the run's own w₀
  (:mod:`~zeroloss.papers.chatterjee2022.search`): ratio √2 from 1/64 to 4 times the linear stability limit. The
  best step is the one that reaches F ≤ ``target``·F(w₀) in the fewest steps; a run with no grid point there
  within ``budget`` steps is *censored*.
- **Data, n ≤ d = 64.** Gaussian points (N(0, I), "centred", and N(1, I), "uncentred", both projected onto the
  sphere) with random ±1 labels, and scikit-learn's 8×8 digits (parity labels) as shipped ("uncentred") and minus
  the mean of all 1 797 normalised images ("centred"), re-normalised; κ(XXᵀ) is reported (without hidden biases
  the positive init's dynamics are GD on least squares in x, so κ(XXᵀ) sets its speed: docs/theory.md §2.5).
- **Widths 2 … 64 at depth 2, depths 2 … 6 at one width**, several seeds.
- **The certificate** of every positive run (proven α lower bound, α and β estimates) and a second GD run at the
  certificate's own step, checked against the ball and the rate 1 − ηα_lb/2 at every step.

Steps are compared, not seconds: every initialisation of one architecture costs the same per step. The claims and
their decision rules are in :mod:`~zeroloss.papers.chatterjee2022.claims` (the conditioning ones in
:mod:`~zeroloss.papers.chatterjee2022.conditioning`, the corollary's in
:mod:`~zeroloss.papers.chatterjee2022.probability_claims`), the figures in :mod:`~zeroloss.papers.chatterjee2022.plots`.

F = Σ(u − y)² = 2L (train_gd's L = ½Σ(u − y)²): ratios F_k/F_0 = L_k/L_0, and a GD step η on F is lr = 2η.

Examples:
    >>> spec = next(s for s in EXPERIMENT.specs["tiny"] if s["init"] == "kaiming" and not s["hidden_bias"])
    >>> out = run_batch([spec], "cpu")[0]
    >>> out.summary["reached"], out.summary["best_fraction"] in FRACTIONS
    (True, True)
"""

from __future__ import annotations

import math

from zeroloss.activations import ACTIVATIONS
from zeroloss.errors import BOOLEAN, NONNEGATIVE_INT, POSITIVE_INT, POSITIVE_NUMBER, SEED, Rule
from zeroloss.papers.base import Experiment, Spec, register
from zeroloss.papers.chatterjee2022.claims import CONDITIONING, claims
from zeroloss.papers.chatterjee2022.conditioning import conditioning_claims
from zeroloss.papers.chatterjee2022.plots import plot, plot_conditioning
from zeroloss.papers.chatterjee2022.probability_claims import NAME as PROBABILITY
from zeroloss.papers.chatterjee2022.probability_claims import claims as probability_claims
from zeroloss.papers.chatterjee2022.probability_claims import plot as probability_plot
from zeroloss.papers.chatterjee2022.probability_runs import POSITIVE_LAW as PROBABILITY_POSITIVE
from zeroloss.papers.chatterjee2022.probability_runs import run_batch as probability_run_batch
from zeroloss.papers.chatterjee2022.runs import (
    BASELINES,
    DATA,
    FRACTIONS,
    INITS,
    POSITIVE,
    batch_key,
    run_batch,
)
from zeroloss.sweep.checks import CHECKS, declare_checks, list_of, one_of

PAPER = "chatterjee2022"
NAME = "chatterjee2022.init_comparison"


def make_specs(data: list[tuple[str, bool]], widths: list[int], depths: list[int], depth_width: int, n: int,
               seeds: int, budget: int, certify_budget: int, samples: int, descent: int,
               certified_seeds: int) -> list[Spec]:
    """Runs: for each data variant and network, widths at depth 2 and depths at ``depth_width``, every init, seeds.
    Every positive run is certified; the first ``certified_seeds`` seeds also re-run at the certified step."""
    shapes = [[w, w] for w in widths] + [[depth_width] * L for L in depths if L != 2 or depth_width not in widths]
    specs = []
    for name, centred in data:
        for hidden_bias in (True, False):
            for shape in shapes:
                for init in INITS:
                    for seed in range(seeds):
                        specs.append({
                            "data": name, "centred": centred, "n": n, "d": 64, "data_seed": 0, "widths": shape,
                            "activation": "tanh", "hidden_bias": hidden_bias, "init": init, "seed": seed,
                            "radius_fraction": 0.5, "fractions": FRACTIONS, "budget": budget, "target": 1e-6,
                            "certify_budget": certify_budget, "alpha_samples": samples, "descent_starts": 2,
                            "descent_steps": descent, "certified_step_run": seed < certified_seeds,
                        })
    return specs


ALL_DATA = [("gaussian", True), ("gaussian", False), ("digits", True), ("digits", False)]

# ------------------------------------------------------------------------------------------ cost model
#: Best-step counts at depth 2, n = 16, measured at the paper scale's settings (median over inits and seeds):
#: (data, centred, hidden_bias) → (positive, baselines). The positive init's count grows with depth when the net has
#: hidden biases (×2.5–3 from depth 2 to 6: :data:`POSITIVE_DEPTH_GROWTH` per layer) and does not without them.
STEPS_GUESS = {
    ("gaussian", True, True): (346, 130), ("gaussian", True, False): (19, 40),
    ("gaussian", False, True): (930, 390), ("gaussian", False, False): (190, 160),
    ("digits", True, True): (850, 400), ("digits", True, False): (106, 160),
    ("digits", False, True): (6400, 3900), ("digits", False, False): (1730, 1450),
}
POSITIVE_DEPTH_GROWTH = 0.4
#: CPU seconds, one thread, timed on the shared 2-core development machine under load (so ± 50 %; a quiet machine is
#: faster): a member-step costs a part per layer plus a part per flop (6·n·Σ fan_in·fan_out); a run keeps about
#: ALIVE grid members until its best step (the larger steps diverge early); a certificate (α sampling and descent,
#: β Lanczos) costs about ``certify``; a certified-step run (one member, distance probed every step) ``probe_step``
#: per step, for about 1.4× the best count (its step is about 1/β ≈ half the stability limit, the best one 1/√2).
COSTS = {"member_layer_step": 4e-6, "flop": 7.3e-11, "certify": 0.5, "probe_step": 3.5e-4}
ALIVE = 12


def estimate_seconds(spec: Spec) -> float:
    """Seconds one run of ``spec`` takes on the calibration machine (see :data:`COSTS`, :data:`STEPS_GUESS`).

    Examples:
        >>> spec = EXPERIMENT.specs["paper"][0]
        >>> 0.1 < estimate_seconds(spec) < 60
        True
    """
    widths = list(spec["widths"])
    fans = [spec["d"], *widths, 1]
    flops = 6.0 * spec["n"] * sum(a * b for a, b in zip(fans[:-1], fans[1:], strict=True))
    member_step = COSTS["member_layer_step"] * (len(widths) + 1) + COSTS["flop"] * flops
    positive, baseline = STEPS_GUESS.get((spec["data"], spec["centred"], spec["hidden_bias"]), (1000, 1000))
    if spec["data"] == "synthetic" or spec.get("whitened"):  # the least-squares count ≈ 5κ(XXᵀ) (κ = 1 whitened)
        positive = baseline = 5.0 * (spec.get("kappa") or 1.0) + 10.0
    scale = spec["n"] / 16.0  # κ(XXᵀ), hence the counts, grow with n (a rough guess beyond the measured n = 16)
    if spec["init"] in POSITIVE:
        growth = 1.0 + POSITIVE_DEPTH_GROWTH * (len(widths) - 2) if spec["hidden_bias"] else 1.0
        steps = min(positive * growth * scale, spec["budget"])
        seconds = steps * ALIVE * member_step + (COSTS["certify"] if spec.get("certify", True) else 0.0)
        if spec["certified_step_run"]:
            seconds += min(1.4 * steps, spec["certify_budget"]) * COSTS["probe_step"]
        return seconds
    return min(baseline * scale, spec["budget"]) * ALIVE * member_step

EXPERIMENT = register(Experiment(
    name=NAME, paper=PAPER,
    description="Chatterjee's positive initialisation (certified output scale; hidden weights constant or uniform) "
                "against Kaiming, Xavier, LeCun and PyTorch's default at the same width and depth, tanh, full-batch "
                "GD on the squared loss, n ≤ d = 64 (Gaussian points and digits, centred and uncentred), with "
                "hidden biases b_ℓ (the network of docs/theory.md §2.2 as written here) and without them (which one "
                "the paper's experiment used is not known). Each initialisation at its best step of a grid placed "
                "relative to its own stability limit 2/λ_max(Θ(w₀)); steps to F ≤ 1e-6·F(w₀), censored runs "
                "reported as such; the positive runs' certificates checked by a second run at the certified step.",
    specs={
        "tiny": make_specs([("gaussian", True), ("digits", True)], widths=[4, 16], depths=[3], depth_width=16,
                           n=16, seeds=2, budget=3000, certify_budget=6000, samples=8, descent=10, certified_seeds=2),
        "paper": make_specs(ALL_DATA, widths=[2, 4, 8, 16, 32, 64], depths=[2, 3, 4, 6], depth_width=16, n=16,
                            seeds=3, budget=20000, certify_budget=40000, samples=32, descent=30, certified_seeds=1),
    },
    run_batch=run_batch, plot=plot, claims=claims, batch_key=batch_key, estimate_seconds=estimate_seconds,
))

declare_checks(EXPERIMENT.name, {
    "certify": BOOLEAN, "data": one_of("digits", "gaussian"), "n": POSITIVE_INT, "d": POSITIVE_INT,
    "data_seed": SEED, "seed": SEED,
    "centred": BOOLEAN, "hidden_bias": BOOLEAN, "widths": list_of(POSITIVE_INT, min_length=0),
    "activation": one_of(*ACTIVATIONS), "init": one_of(*POSITIVE, *BASELINES), "radius_fraction": POSITIVE_NUMBER,
    "fractions": list_of(POSITIVE_NUMBER), "budget": POSITIVE_INT, "certify_budget": POSITIVE_INT,
    "target": POSITIVE_NUMBER, "alpha_samples": POSITIVE_INT, "descent_starts": POSITIVE_INT,
    "descent_steps": NONNEGATIVE_INT, "certified_step_run": BOOLEAN,
})


# ------------------------------------------------------------------------------------------ conditioning
#: A synthetic spectrum's κ(XXᵀ): a finite number ≥ 1.
KAPPA_CHECK = Rule(lambda v: v is None or (isinstance(v, (int, float)) and not isinstance(v, bool)
                                           and math.isfinite(v) and v >= 1.0),
                   "must be a number ≥ 1 (synthetic data), or null")


def conditioning_specs(variants: list[dict], widths: list[int], n: int, seeds: int, budget: int) -> list[Spec]:
    """Runs of ``chatterjee2022.conditioning``: the net without hidden biases at one shape, every init and seed, on
    each data variant (``data``, ``centred``, ``whitened``, and ``kappa`` for synthetic data, else None: every run
    sets the same keys, so that a sweep file can say them all); no certificate (the claims
    here are about step counts; the certificate is init_comparison's)."""
    return [{"data": "gaussian", "centred": True, "whitened": False, "kappa": None, **variant, "n": n, "d": 64,
             "data_seed": 0, "widths": list(widths),
             "activation": "tanh", "hidden_bias": False, "init": init, "seed": seed, "radius_fraction": 0.5,
             "fractions": FRACTIONS, "budget": budget, "target": 1e-6, "certify": False,
             "certified_step_run": False}
            for variant in variants for init in INITS for seed in range(seeds)]


#: Data variants by κ(XXᵀ) at n = 16: whitened (1), Gaussian centred (5.6), digits centred (48.7), Gaussian
#: uncentred (53.5), digits uncentred (700), and synthetic spectra.
CONDITIONING_VARIANTS = {
    "tiny": [{"data": "digits", "whitened": True}, {"data": "gaussian"}, {"data": "synthetic", "kappa": 20.0},
             {"data": "gaussian", "centred": False}, {"data": "synthetic", "kappa": 150.0}],
    "paper": [{"data": "digits", "whitened": True}, {"data": "gaussian", "whitened": True}, {"data": "gaussian"},
              {"data": "digits"}, {"data": "gaussian", "centred": False}, {"data": "digits", "centred": False},
              *({"data": "synthetic", "kappa": k} for k in (3.0, 30.0, 300.0, 3000.0))],
}

CONDITIONING_EXPERIMENT = register(Experiment(
    name=CONDITIONING, paper=PAPER,
    description="Without hidden biases the positive initialisation is GD on "
                "least squares in x (docs/theory.md §2.5), so its step count is set by the data. One net (tanh, "
                "widths 16, 16, no hidden biases), the six initialisations of init_comparison at their best steps, on "
                "data whose κ(XXᵀ) runs from 1 (whitened) to thousands (uncentred digits, synthetic spectra); the "
                "positive/baseline step ratio against κ(XXᵀ), and each positive count against its least-squares "
                "count.",
    specs={
        "tiny": conditioning_specs(CONDITIONING_VARIANTS["tiny"], [16, 16], n=16, seeds=1, budget=3000),
        "paper": conditioning_specs(CONDITIONING_VARIANTS["paper"], [16, 16], n=16, seeds=3, budget=40000),
    },
    run_batch=run_batch, plot=plot_conditioning, claims=conditioning_claims, batch_key=batch_key,
    estimate_seconds=estimate_seconds,
))

declare_checks(CONDITIONING, {
    **CHECKS[NAME], "data": one_of(*DATA), "whitened": BOOLEAN, "kappa": KAPPA_CHECK, "certify": BOOLEAN,
})


# ------------------------------------------------------------------------------------------ criterion probability
def probability_specs(widths: list[int], trials: int, boundary_width: int, samples: int, descent: int) -> list[Spec]:
    """Runs of ``chatterjee2022.criterion_probability``: each law × activation (σ(0) = 0: tanh; σ(0) ≠ 0: softplus)
    × width at n = 16 ≤ d = 64, and at one width n = 80 > d (the boundary)."""
    return [{"law": law, "width": w, "activation": act, "n": n, "d": 64, "trials": trials, "seed": 0,
             "radii": [0.1, 0.3, 1.0, 3.0], "samples": samples, "descent_starts": 1, "descent_steps": descent}
            for law in ("lecun", PROBABILITY_POSITIVE) for act in ("tanh", "softplus")
            for w, n in [*((w, 16) for w in widths), (boundary_width, 80)]]


#: CPU seconds per certificate (one draw, one radius): a fixed part plus a part per gradient evaluation of the α
#: estimate (samples + descent starts × steps), growing with the width; timed at tiny scale on the shared machine
#: under load (12 runs, 6 s), so ± 50 %. A run past n > d is refused before any certificate.
PROBABILITY_COSTS = {"certificate": 0.02, "gradient": 0.004, "width_scale": 64.0}


def probability_seconds(spec: Spec) -> float:
    """Seconds one ``criterion_probability`` run takes (see :data:`PROBABILITY_COSTS`).

    Examples:
        >>> 0 < probability_seconds(PROBABILITY_EXPERIMENT.specs["tiny"][0]) < 10
        True
    """
    if spec["n"] > spec["d"]:
        return 0.05
    radii = 1 if spec["law"] == PROBABILITY_POSITIVE else len(spec["radii"])
    c = PROBABILITY_COSTS
    per = c["certificate"] + c["gradient"] * (spec["samples"] + spec["descent_starts"] * spec["descent_steps"])
    return spec["trials"] * radii * per * (1.0 + spec["width"] / c["width_scale"])


PROBABILITY_EXPERIMENT = register(Experiment(
    name=PROBABILITY, paper=PAPER,
    description="The paper's probabilistic corollary, P(linear convergence) ≥ P(criterion holds), as the certified "
                "proportion of independent random draws (Wilson interval) against width: LeCun's Gaussian law and "
                "Chatterjee's positive init with random hidden weights, for tanh (σ(0) = 0) and softplus (σ(0) ≠ 0), "
                "n = 16 ≤ d = 64, and n = 80 > d, where the certificate must refuse.",
    specs={
        "tiny": probability_specs([2, 16], trials=8, boundary_width=4, samples=4, descent=5),
        "paper": probability_specs([2, 4, 8, 16, 32, 64, 128], trials=32, boundary_width=16, samples=16,
                                   descent=20),
    },
    run_batch=probability_run_batch, plot=probability_plot, claims=probability_claims,
    estimate_seconds=probability_seconds,
))

declare_checks(PROBABILITY, {
    "law": one_of("lecun", "kaiming", "xavier", "gaussian", "torch_default", PROBABILITY_POSITIVE),
    "width": POSITIVE_INT, "activation": one_of(*ACTIVATIONS), "n": POSITIVE_INT, "d": POSITIVE_INT,
    "trials": POSITIVE_INT, "seed": SEED, "radii": list_of(POSITIVE_NUMBER), "samples": NONNEGATIVE_INT,
    "descent_starts": NONNEGATIVE_INT, "descent_steps": NONNEGATIVE_INT,
})
