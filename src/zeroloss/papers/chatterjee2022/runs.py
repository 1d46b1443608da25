"""Running the chatterjee2022 comparisons: data, nets, each initialisation at its best step, certificates.

This is the run module of ``chatterjee2022.init_comparison`` and ``chatterjee2022.conditioning``
(:mod:`zeroloss.papers.chatterjee2022.experiments` registers them): its code and what it imports set the stored
runs' result version, so claims and figures live elsewhere. One batch is one architecture and one data set; every
initialisation and seed of it trains as one ensemble, each on its own relative step grid
(:mod:`~zeroloss.papers.chatterjee2022.search`).

Besides each run's best count, a batch records the count of the least-squares problem its data reduce to without
hidden biases (:mod:`~zeroloss.papers.chatterjee2022.reduction`, docs/theory.md §2.5): ``ls_steps_to_target`` and
``ls_best_fraction``, computed on the same grid, budget and target.

F = Σ(u − y)² = 2L (train_gd's L = ½Σ(u − y)²): ratios F_k/F_0 = L_k/L_0, and a GD step η on F is lr = 2η.

Examples:
    >>> spec = {"data": "gaussian", "centred": True, "n": 8, "d": 16, "data_seed": 0, "widths": [4, 4],
    ...         "activation": "tanh", "hidden_bias": False, "init": "positive", "seed": 0, "radius_fraction": 0.5,
    ...         "fractions": FRACTIONS, "budget": 2000, "target": 1e-6, "certify": False}
    >>> out = run_batch([spec], "cpu")[0]
    >>> out.summary["steps_to_target"] == out.summary["ls_steps_to_target"]
    True
"""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import pandas as pd
import torch

from zeroloss.data import digits_data, make_labels
from zeroloss.devices import resolve_device
from zeroloss.errors import require
from zeroloss.nets.feedforward import FeedForward
from zeroloss.papers.base import RunOutput, Spec
from zeroloss.papers.chatterjee2022.bounds import input_spectrum
from zeroloss.papers.chatterjee2022.init import initialise
from zeroloss.papers.chatterjee2022.reduction import least_squares_steps
from zeroloss.papers.chatterjee2022.search import BestStep, best_steps
from zeroloss.papers.chatterjee2022.theory import Certificate, TrajectoryCheck, certify, trajectory_check
from zeroloss.train.gd import GDRun, train_gd

POSITIVE = ("positive", "positive_uniform")
BASELINES = ("kaiming", "xavier", "lecun", "torch_default")
DATA = ("gaussian", "digits", "synthetic")
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


def experiment_data(data: str, centred: bool, n: int, d: int = 64, seed: int = 0, whitened: bool = False,
                    kappa: float | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Inputs (n, d) and labels (n,), float64, for one data variant.

    - ``gaussian``: centred is :func:`zeroloss.data.sphere_data` exactly; uncentred adds 1 to every coordinate
      before the projection onto the sphere (a common mean direction, as non-negative pixel data have). Random ±1
      labels.
    - ``digits``: scikit-learn's 8×8 digits (d = 64), parity labels; centred subtracts the mean of all 1 797
      normalised images, then re-normalises.
    - ``synthetic``: XXᵀ with the prescribed condition number ``kappa``: X = U diag(s) Vᵀ, U (n, n) and V (d, n)
      random orthonormal, s_i² geometric from κ^{1/2} down to κ^{−1/2} scaled so that trace(XXᵀ) = n (mean row norm
      1; rows are *not* re-normalised, which would change κ). Random ±1 labels; ``centred`` is not used.
    - ``whitened`` (gaussian, digits): after the above, X ← (XXᵀ)^{−1/2} X, so XXᵀ = I (κ = 1) and the rows stay unit.
    """
    require(data in DATA, "data", f"must be one of {', '.join(DATA)}", data)
    if data == "synthetic":
        require(isinstance(kappa, (int, float)) and not isinstance(kappa, bool) and kappa >= 1.0, "kappa",
                "must be a number ≥ 1 for synthetic data", kappa)
        require(n <= d, "n", f"must be ≤ d = {d} for synthetic data (XXᵀ of full rank)", n)
        gen = torch.Generator().manual_seed(seed)
        U = torch.linalg.qr(torch.randn(n, n, generator=gen, dtype=torch.float64, device="cpu"))[0]
        V = torch.linalg.qr(torch.randn(d, n, generator=gen, dtype=torch.float64, device="cpu"))[0]
        lam = float(kappa) ** (0.5 - torch.arange(n, dtype=torch.float64) / max(n - 1, 1))
        lam = lam * n / lam.sum()
        X = (U * lam.sqrt()) @ V.T
        return X, make_labels(X, "random", seed)
    if data == "digits":
        X, y = digits_data(n, seed, "parity")
        if centred:
            X = X - _digits_mean()
            X = X / X.norm(dim=1, keepdim=True)
    else:
        gen = torch.Generator().manual_seed(seed)
        Z = torch.randn(n, d, generator=gen, dtype=torch.float64, device="cpu")
        if not centred:
            Z = Z + 1.0
        X = Z / Z.norm(dim=1, keepdim=True)
        y = make_labels(X, "random", seed)
    if whitened:
        lam, vec = torch.linalg.eigh(X @ X.T)
        require(bool(lam[0] > 0), "whitened", "needs linearly independent inputs (n ≤ d)", n)
        X = (vec * lam.rsqrt()) @ vec.T @ X
    return X, y


def spec_data(spec: Spec) -> tuple[torch.Tensor, torch.Tensor]:
    """The data of a run spec (:func:`experiment_data` with its keys; ``whitened`` and ``kappa`` optional)."""
    return experiment_data(spec["data"], spec["centred"], spec["n"], spec["d"], spec["data_seed"],
                           spec.get("whitened", False), spec.get("kappa"))


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


def initialised_net(spec: Spec, X: torch.Tensor, y: torch.Tensor,
                    device: torch.device) -> tuple[FeedForward, dict]:
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

    Every run of a batch also carries the batch's least-squares reference count (``ls_steps_to_target``).
    The intra-op thread count is the sweep runner's (one per batch by default: these tensors are tiny, and on a
    shared 2-core machine two threads made one batch 33× slower, 1.5 s vs 50 s measured back to back)."""
    dev = resolve_device(device)
    first = specs[0]
    X, y = spec_data(first)
    lam_min_xx, lam_max_xx, _ = input_spectrum(X)
    # u(w₀) = c = 0 for the reduced net (tanh, no hidden biases): r₀ = −y (docs/theory.md §2.5)
    ls = least_squares_steps(X, -y, list(first["fractions"]), first["budget"], first["target"])
    data_facts = {"lambda_min_xx": lam_min_xx, "kappa_xx": lam_max_xx / lam_min_xx,
                  "ls_steps_to_target": ls.steps_to_target, "ls_best_fraction": ls.best_fraction}
    X, y = X.to(dev), y.to(dev)
    built = [initialised_net(spec, X, y, dev) for spec in specs]
    found = best_steps([net for net, _ in built], X, y, list(first["fractions"]), first["budget"], first["target"])
    return [_output(spec, net, info, res, X, y, {**data_facts, **_least_squares_step_run(spec, net, info, res, X, y,
                                                                                         ls)})
            for spec, (net, info), res in zip(specs, built, found, strict=True)]


#: Activations with σ(0) = 0 among the certificate's: with them (and no hidden biases) the positive init reduces to
#: least squares in x (docs/theory.md §2.5).
ZERO_AT_ZERO = ("tanh", "erf")


def reduces(spec: Spec) -> bool:
    """The positive init of this spec is GD on least squares in x (docs/theory.md §2.5)."""
    return spec["init"] in POSITIVE and not spec["hidden_bias"] and spec["activation"] in ZERO_AT_ZERO


def _least_squares_step_run(spec: Spec, net: FeedForward, info: dict, res: BestStep, X, y, ls) -> dict:
    """For a positive run that reduces to least squares: GD from its w₀ at the least-squares problem's best grid
    point (φ × its own 2/λ_max(Θ(w₀))), up to the budget; the first step at F ≤ target·F(w₀) (None if never)."""
    if not reduces(spec) or ls.best_fraction is None:
        return {}
    run = train_gd(net.member(0), X, y, lr=ls.best_fraction * res.lr_limit, steps=spec["budget"],
                   target_loss=spec["target"] * float(info["f0"][0]) / 2.0, probes=[], progress=False,
                   check_step=False)
    return {"ls_step_run_steps": run.reached_target_at.get(0)}


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
    if spec["init"] in POSITIVE and spec.get("certify", True):
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


