"""Chatterjee (2022): does the positive initialisation accelerate gradient descent? (docs/theory.md §2.4)

The paper reports that its positive initialisation "can substantially accelerate optimization relative to
standard random initializations at the same width"; its settings are not available, so this comparison is ours,
designed so that neither the step size nor the budget decides it:

- **Two networks.** :class:`~zeroloss.nets.FeedForward` (tanh, output bias c) *with* trainable hidden biases b_ℓ —
  the network of docs/theory.md §2.2, i.e. the theorem's — and *without* them. Which one the paper's experiment
  used is not known. Under the positive init (W₁ = 0) the hidden biases receive the same large gradients as W₁ and
  add a stiff, rank-one direction to Θ(w₀) (every input has the same δ at W₁ = 0), which caps the usable step.
- **Six initialisations at the same width and depth.** ``positive`` (hidden weights the constant 1/fan_in: every
  seed is the same net and the units of a layer stay identical), ``positive_uniform`` (hidden weights drawn from
  U[½, 3⁄2]/fan_in: seeds differ, units differ), both with the certified output scale M at radius
  r = ``radius_fraction`` × the smallest possible hidden weight; baselines ``kaiming``, ``xavier``, ``lecun`` and
  ``torch_default`` (:mod:`zeroloss.nets.laws`).
- **Each initialisation at its best step.** The grid is ``fractions`` × 2/λ_max(Θ(w₀)) of the run's own w₀
  (:mod:`.chatterjee2022_search`): ratio √2 from 1/64 to 4 times the linear stability limit. The best step is the
  one that reaches F ≤ ``target``·F(w₀) in the fewest steps; a run with no grid point there within ``budget``
  steps is *censored*.
- **Data, n ≤ d = 64.** Gaussian points (N(0, I), "centred", and N(1, I), "uncentred", both projected onto the
  sphere) with random ±1 labels, and scikit-learn's 8×8 digits (parity labels) as shipped ("uncentred") and minus
  the mean of all 1 797 normalised images ("centred"), re-normalised; κ(XXᵀ) is reported (the positive init's
  dynamics are those of a linear model in XXᵀ, so κ(XXᵀ) sets its speed).
- **Widths 2 … 64 at depth 2, depths 2 … 6 at one width**, several seeds.
- **The certificate** of every positive run (proven α lower bound, α and β estimates) and a second GD run at the
  certificate's own step, checked against the ball and the rate 1 − ηα_lb/2 at every step.

Steps are compared, not seconds: every initialisation of one architecture costs the same per step. The claims and
their decision rules are in :mod:`.chatterjee2022_claims`, the figures in :mod:`.chatterjee2022_plots`.

F = Σ(u − y)² = 2L (train_gd's L = ½Σ(u − y)²): ratios F_k/F_0 = L_k/L_0, and a GD step η on F is lr = 2η.

Examples:
    >>> spec = next(s for s in EXPERIMENT.specs["tiny"] if s["init"] == "kaiming" and not s["hidden_bias"])
    >>> out = run_batch([spec], "cpu")[0]
    >>> out.summary["reached"], out.summary["best_fraction"] in FRACTIONS
    (True, True)
"""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import pandas as pd
import torch

from zeroloss.activations import ACTIVATIONS
from zeroloss.data import digits_data, make_labels
from zeroloss.devices import resolve_device
from zeroloss.errors import BOOLEAN, NONNEGATIVE_INT, POSITIVE_INT, POSITIVE_NUMBER, SEED
from zeroloss.nets.feedforward import FeedForward
from zeroloss.papers.base import Experiment, RunOutput, Spec, register
from zeroloss.papers.chatterjee2022.bounds import input_spectrum
from zeroloss.papers.chatterjee2022.claims import BASELINES, POSITIVE, claims
from zeroloss.papers.chatterjee2022.init import initialise
from zeroloss.papers.chatterjee2022.plots import plot
from zeroloss.papers.chatterjee2022.search import BestStep, best_steps
from zeroloss.papers.chatterjee2022.theory import Certificate, TrajectoryCheck, certify, trajectory_check
from zeroloss.sweep.checks import declare_checks, list_of, one_of
from zeroloss.train.gd import GDRun, train_gd

PAPER = "chatterjee2022"
NAME = "chatterjee2022.init_comparison"
INITS = (*POSITIVE, *BASELINES)
#: The step grid, as multiples of each run's own 2/λ_max(Θ(w₀)): ratio √2 from 1/64 to 4. Measured before fixing
#: it: the baselines' best steps fell between 1/32 (torch_default and xavier with biases, whose bias directions make
#: Θ stiff) and 2√2 (kaiming at depth 6) of the limit, the positive inits' at 1/√2; the edges leave a factor 2 below
#: and √2 above, and a run whose best is at an edge is flagged (``best_at_grid_edge``).
FRACTIONS = [float(2.0 ** (k / 2)) for k in range(-12, 5)]
#: Points of a loss curve kept in the metrics (evenly spaced steps, plus the first and the last).
CURVE_POINTS = 200


def _digits_mean() -> torch.Tensor:
    """Mean of all 1 797 normalised digit images (the data set's mean, what a practitioner subtracts): (64,)."""
    from sklearn.datasets import load_digits

    images = torch.as_tensor(load_digits().data, dtype=torch.float64)
    return (images / images.norm(dim=1, keepdim=True)).mean(dim=0)


def experiment_data(data: str, centred: bool, n: int, d: int = 64, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Inputs (n, d) with unit rows and labels (n,), float64, for one data variant (see the module docstring).

    ``gaussian`` centred is :func:`zeroloss.data.sphere_data` exactly; uncentred adds 1 to every coordinate before
    the projection (a common mean direction, as non-negative pixel data have). ``digits`` has d = 64.
    """
    if data == "digits":
        X, y = digits_data(n, seed, "parity")
        if centred:
            X = X - _digits_mean()
            X = X / X.norm(dim=1, keepdim=True)
        return X, y
    gen = torch.Generator().manual_seed(seed)
    Z = torch.randn(n, d, generator=gen, dtype=torch.float64)
    if not centred:
        Z = Z + 1.0
    X = Z / Z.norm(dim=1, keepdim=True)
    return X, make_labels(X, "random", seed)


def hidden_range(init: str, widths: list[int]) -> tuple[float, float] | None:
    """The positive inits' hidden-weight law: None for the constant 1/fan_in of each layer, else (lo, hi) of the
    uniform law U[½, 3⁄2]/fan with fan the largest hidden fan-in (every layer's, for the equal widths used here)."""
    if init == "positive":
        return None
    fan = max(widths[:-1])
    return (0.5 / fan, 1.5 / fan)


def radius_of(spec: Spec) -> float:
    """r = radius_fraction × the smallest hidden weight the positive law can draw (1/fan, or ½/fan, fan the largest
    hidden fan-in)."""
    fan = max(spec["widths"][:-1])
    return spec["radius_fraction"] * (0.5 if spec["init"] == "positive_uniform" else 1.0) / fan


def build_net(spec: Spec, X: torch.Tensor, y: torch.Tensor, device: torch.device) -> tuple[FeedForward, dict]:
    """The run's single-member net, initialised (float64); returns it and the init's facts."""
    net = FeedForward(X.shape[1], list(spec["widths"]), spec["activation"], 1, spec["seed"], torch.float64, device,
                      bias=spec["hidden_bias"], output_bias=True, init=None)
    if spec["init"] in POSITIVE:
        info = initialise(net, "positive", X=X.to(device), y=y.to(device), radius=radius_of(spec),
                          hidden=hidden_range(spec["init"], list(spec["widths"])))
    else:
        info = initialise(net, spec["init"])
    return net, info


def batch_key(spec: Spec) -> str:
    """Runs of one architecture and data set (every init and seed) train as one ensemble."""
    per_run = ("seed", "init", "certified_step_run")
    return json.dumps({k: v for k, v in spec.items() if k not in per_run}, sort_keys=True, default=str)


def run_batch(specs: list[Spec], device: str | torch.device = "cpu") -> list[RunOutput]:
    """Runs of one architecture and data set: every init and seed, each on its own relative step grid.

    The intra-op thread count is the sweep runner's (one per batch by default: these tensors are tiny, and on a
    shared 2-core machine two threads made one batch 33× slower, 1.5 s vs 50 s measured back to back)."""
    dev = resolve_device(device)
    first = specs[0]
    X, y = experiment_data(first["data"], first["centred"], first["n"], first["d"], first["data_seed"])
    X, y = X.to(dev), y.to(dev)
    built = [build_net(spec, X, y, dev) for spec in specs]
    found = best_steps([net for net, _ in built], X, y, list(first["fractions"]), first["budget"], first["target"])
    lam_min_xx, lam_max_xx, _ = input_spectrum(X)
    data_facts = {"lambda_min_xx": lam_min_xx, "kappa_xx": lam_max_xx / lam_min_xx}
    return [_output(spec, net, info, res, X, y, data_facts)
            for spec, (net, info), res in zip(specs, built, found, strict=True)]


def thin_curve(curve: np.ndarray, points: int = CURVE_POINTS) -> list[tuple[int, float]]:
    """(step, value) at about ``points`` evenly spaced steps, the first and the last always included."""
    last = len(curve) - 1
    if last < 0:
        return []
    steps = np.unique(np.concatenate([np.linspace(0, last, min(points, last + 1)).round().astype(int), [0, last]]))
    return [(int(k), float(curve[k])) for k in steps]


def _output(spec: Spec, net: FeedForward, info: dict, res: BestStep, X, y, data_facts: dict) -> RunOutput:
    rows = [(k, "F_relative", v) for k, v in thin_curve(res.curve)]
    summary: dict[str, Any] = {
        **data_facts,
        "lambda_max_theta": res.lambda_max, "lambda_min_theta": res.lambda_min,
        "kappa_theta": res.lambda_max / res.lambda_min if res.lambda_min > 0 else None,
        "lr_limit": res.lr_limit, "reached": res.reached, "censored": not res.reached and res.best is not None,
        "all_diverged": res.best is None, "steps_to_target": res.steps_to_target, "steps_run": res.steps_run,
        "best_fraction": None if res.best is None else res.fractions[res.best], "best_lr": res.best_lr,
        "best_at_grid_edge": res.best_at_grid_edge, "diverged_fractions": len(res.diverged),
        "final_relative_F": float(res.curve[-1]) if res.curve.size else None,
        "diverged": res.best is None,
    }
    if spec["init"] in POSITIVE:
        radius = radius_of(spec)
        summary.update({"radius": radius, "M": float(info["M"][0]), "f0": float(info["f0"][0])})
        cert = certify(net, X, y, radius, samples=spec["alpha_samples"], descent_starts=spec["descent_starts"],
                       descent_steps=spec["descent_steps"], seed=spec["seed"])
        summary.update({f"cert_{k}": v for k, v in cert.to_dict().items()
                        if k in ("certified", "alpha_lower_bound", "alpha_estimate", "alpha_at_w0", "beta_estimate",
                                 "step_size", "lr", "rho", "reason")})
        if cert.lr is not None and spec["certified_step_run"]:
            crun, check = run_certified_gd(net, X, y, cert, spec["certify_budget"], spec["target"])
            rows += [(k, "F_relative_certified_step", v)
                     for k, v in thin_curve(crun.losses[:, 0] / crun.losses[0, 0])]
            summary.update({
                "certified_run_steps": int(crun.steps),
                "certified_run_reached_target": 0 in crun.reached_target_at,
                "certified_run_max_distance": check.max_distance,
                "certified_run_stayed_in_ball": check.stayed_in_ball,
                "certified_run_worst_ratio": None if np.isnan(check.worst_ratio) else check.worst_ratio,
                "certified_rate": check.predicted_rate, "certified_run_rate_ok": check.rate_ok,
                "certified_run_diverged": check.diverged,
            })
    metrics = pd.DataFrame(rows, columns=["step", "metric", "value"])
    return RunOutput(metrics, summary)


def movement_distances(run: GDRun, member: int = 0) -> np.ndarray:
    """‖w_k − w₀‖ at the probed steps of a FeedForward run with the ``movement`` probe: (probes,).

    FeedForward's ``movement_<param>`` are raw Frobenius norms (no width scaling), so the distance is the root of
    their sum of squares at each step.
    """
    hist = run.history
    sub = hist[(hist["member"] == member) & hist["metric"].str.startswith("movement_")]
    return np.sqrt(sub.assign(sq=sub["value"] ** 2).groupby("step")["sq"].sum().to_numpy())


def run_certified_gd(net: FeedForward, X: torch.Tensor, y: torch.Tensor, cert: Certificate, steps: int,
                     target: float = 1e-6) -> tuple[GDRun, TrajectoryCheck]:
    """GD from a single-member net (a copy: ``net`` is not modified) at the certificate's step (train_gd's lr = 2η),
    the distance from w₀ probed at every step, stopped once F ≤ target·F(w₀); returns the run and
    :func:`~zeroloss.papers.chatterjee2022.theory.trajectory_check` of it."""
    copy = net.member(0)
    run = train_gd(copy, X, y, lr=cert.lr, steps=steps, probe_every=1, target_loss=target * cert.f0 / 2.0,
                   probes=["loss", "movement"], progress=False)
    return run, trajectory_check(cert, run.losses[:, 0], movement_distances(run), cert.lr)


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
    scale = spec["n"] / 16.0  # κ(XXᵀ), hence the counts, grow with n (a rough guess beyond the measured n = 16)
    if spec["init"] in POSITIVE:
        growth = 1.0 + POSITIVE_DEPTH_GROWTH * (len(widths) - 2) if spec["hidden_bias"] else 1.0
        steps = min(positive * growth * scale, spec["budget"])
        seconds = steps * ALIVE * member_step + COSTS["certify"]
        if spec["certified_step_run"]:
            seconds += min(1.4 * steps, spec["certify_budget"]) * COSTS["probe_step"]
        return seconds
    return min(baseline * scale, spec["budget"]) * ALIVE * member_step

EXPERIMENT = register(Experiment(
    name=NAME, paper=PAPER,
    description="Chatterjee's positive initialisation (certified output scale; hidden weights constant or uniform) "
                "against Kaiming, Xavier, LeCun and PyTorch's default at the same width and depth, tanh, full-batch "
                "GD on the squared loss, n ≤ d = 64 (Gaussian points and digits, centred and uncentred), with "
                "hidden biases (the network of the theorem, docs/theory.md §2.2) and without them (which one the "
                "paper's experiment used is not known). Each initialisation at its best step of a grid placed "
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
    "data": one_of("digits", "gaussian"), "n": POSITIVE_INT, "d": POSITIVE_INT, "data_seed": SEED, "seed": SEED,
    "centred": BOOLEAN, "hidden_bias": BOOLEAN, "widths": list_of(POSITIVE_INT, min_length=0),
    "activation": one_of(*ACTIVATIONS), "init": one_of(*POSITIVE, *BASELINES), "radius_fraction": POSITIVE_NUMBER,
    "fractions": list_of(POSITIVE_NUMBER), "budget": POSITIVE_INT, "certify_budget": POSITIVE_INT,
    "target": POSITIVE_NUMBER, "alpha_samples": POSITIVE_INT, "descent_starts": POSITIVE_INT,
    "descent_steps": NONNEGATIVE_INT, "certified_step_run": BOOLEAN,
})
