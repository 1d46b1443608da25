"""Du et al. (ICML 2019) experiments: the paper has none, so these are ours, designed to test its statements.

Registered experiments (each with ``tiny`` and ``paper`` scales):

- ``du2019.convergence``: wide FC and ResNet on random labels; the loss decays geometrically with a mean per-step
  contraction no worse than 1 − ηλ₀/2 (MATH §1.5), and random labels are fitted to near-zero loss.
- ``du2019.width``: the same FC net over widths; weight movement ‖W^(h)(k) − W^(h)(0)‖_F/√m and Gram drift fall like
  m^(−1/2), and λ_min(G^(H)(0)) approaches λ₀ as m grows.
- ``du2019.depth``: FC vs ResNet over depths and widths with a fixed step budget; the width needed to reach the
  target loss grows with depth much faster for the FC net than for the ResNet.
- ``du2019.conv``: the convolutional ResNet reaches (near) zero loss on a patch-structured data set.

One run spec is a flat dict (net, width, depth, activation, data, n, d / channels, positions, labels, data_seed,
seed, lr or lr_scale, steps, probe_every); runs that differ only in seed or lr train as one ensemble.
``lr_scale`` sets η = lr_scale · 2/λ_max(G(0)) per member (the largest stable step times a fraction).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pandas as pd
import torch

from zeroloss.data import patch_data, sphere_data
from zeroloss.devices import resolve_device
from zeroloss.experiments import plotting
from zeroloss.experiments.base import Claim, Experiment, RunOutput, Spec, one_row_per_run, register
from zeroloss.kernels.empirical import gram
from zeroloss.nets.base import EnsembleNet, stack_members
from zeroloss.nets.registry import build_net, net_options
from zeroloss.spectrum import eigenvalues
from zeroloss.train.gd import train_gd

PAPER = "du2019"


# ----------------------------------------------------------------------------------------------- running

def _data(spec: Spec) -> tuple[torch.Tensor, torch.Tensor]:
    if spec["net"] == "conv-resnet":
        return patch_data(spec["n"], spec["channels"], spec["positions"], spec["data_seed"], spec["labels"])
    return sphere_data(spec["n"], spec["d"], spec["data_seed"], spec["labels"])


def _single_net(spec: Spec, seed: int, device: torch.device, input_shape: tuple[int, ...]):
    dtype = torch.float64 if spec.get("dtype", "float64") == "float64" else torch.float32
    return build_net(spec["net"], input_shape, **net_options(spec["net"], spec), members=1, seed=seed, dtype=dtype,
                     device=device)


def _lambda0(net: EnsembleNet, X: torch.Tensor) -> float:
    """λ₀ = λ_min(K^(H)) of Du's infinite-width kernel for this net's architecture and data (NaN if unavailable)."""
    try:
        from zeroloss.kernels.limit import lambda0
    except ImportError:  # the kernel module is optional for the runs; claims that need λ₀ then fail loudly
        return float("nan")
    return float(lambda0(X, net=net))


def run_batch(specs: list[Spec], device: str | torch.device = "cpu") -> list[RunOutput]:
    """Train the runs of one batch (same shape; seeds and step sizes differ) as one ensemble."""
    device = resolve_device(device)
    first = specs[0]
    X, y = _data(first)
    net = stack_members([_single_net(s, s["seed"], device, tuple(X.shape[1:])) for s in specs])
    G0 = gram(net, X)
    eig0 = eigenvalues(G0)
    last0 = eigenvalues(gram(net, X, layer="last"))[:, 0]
    lam_max0 = eig0[:, -1].cpu().numpy()
    lr = np.array([s["lr"] if "lr" in s else s["lr_scale"] * 2.0 / lam_max0[k] for k, s in enumerate(specs)])
    probes = first.get("probes", ["loss", "movement", "lambda_min", "lambda_min_last", "gram_drift", "pl_ratio"])
    run = train_gd(net, X, y.to(device), lr, first["steps"], probe_every=first.get("probe_every"),
                   probes=probes, progress=False)
    lam0 = _lambda0(net, X)
    outputs = []
    for k, _spec in enumerate(specs):
        hist = run.history[run.history["member"] == k].drop(columns="member").reset_index(drop=True)
        losses = run.losses[:, k]
        finite = losses[np.isfinite(losses)]
        rate = (finite[-1] / finite[0]) ** (1.0 / max(1, len(finite) - 1)) if len(finite) > 1 else float("nan")
        outputs.append(RunOutput(hist, {
            "eta": float(lr[k]),
            "lambda0": lam0,
            "lambda_max_G0": float(lam_max0[k]),
            "lambda_min_G0": float(eig0[k, 0]),
            "lambda_min_GH0": float(last0[k]),
            "initial_loss": float(losses[0]),
            "final_loss": float(finite[-1]) if len(finite) else float("nan"),
            "loss_ratio": float(finite[-1] / finite[0]) if len(finite) else float("nan"),
            "mean_contraction": float(rate),
            "steps_done": int(run.steps),
            "diverged": k in run.diverged_at,
            "diverged_at": run.diverged_at.get(k),
            "seconds": run.seconds,
        }))
    return outputs


# ----------------------------------------------------------------------------------------------- helpers

_runs = one_row_per_run


def _slope(x: np.ndarray, y: np.ndarray) -> float:
    """Least-squares slope of log y against log x."""
    return float(np.polyfit(np.log(x), np.log(y), 1)[0])


def _base(**kw: Any) -> Spec:
    spec = {"activation": "softplus", "labels": "random", "data_seed": 0, "dtype": "float64", "c_res": 0.5}
    spec.update(kw)
    return spec


# ----------------------------------------------------------------------------------------- convergence

def _convergence_specs(width: int, seeds: int, steps: int) -> list[Spec]:
    specs = []
    for net, depth in (("fc", 2), ("resnet", 3)):
        for seed in range(seeds):
            specs.append(_base(net=net, width=width, depth=depth, n=10, d=10, seed=seed, lr_scale=0.5,
                               steps=steps, probe_every=max(1, steps // 50), probes=["loss", "lambda_min"]))
    return specs


#: Random labels count as fitted when the loss fell below this fraction of its initial value.
FIT_RATIO = 1e-4


def _convergence_claims(df: pd.DataFrame) -> list[Claim]:
    runs = _runs(df)
    claims = []
    for net, group in runs.groupby("net"):
        bound = 1.0 - group["eta"] * group["lambda0"] / 2.0
        worst = float((group["mean_contraction"] - bound).max())
        claims.append(Claim(
            "du2019.convergence", f"{net}: mean per-step loss contraction ≤ 1 − ηλ₀/2 (MATH §1.5)",
            round(float(group["mean_contraction"].max()), 6), f"≤ {float(bound.min()):.6f}",
            bool(worst <= 0.0),
            f"{len(group)} seeds, width {int(group['width'].iloc[0])}; contraction = (L_K/L_0)^(1/K); "
            "no tolerance: the theorem's bound is an inequality"))
        ratio = float(group["loss_ratio"].max())
        claims.append(Claim(
            "du2019.convergence", f"{net}: random ±1 labels are fitted (L_K/L_0 ≤ {FIT_RATIO:g})",
            ratio, f"≤ {FIT_RATIO:g}", bool(ratio <= FIT_RATIO),
            f"worst of {len(group)} seeds after {int(group['steps'].iloc[0])} steps"))
    return claims


def _convergence_plot(df: pd.DataFrame) -> dict[str, Any]:
    return {"loss curves (log scale) with the 1 − ηλ₀/2 bound": plotting.loss_curves_with_bound(df, _runs(df))}


register(Experiment(
    name="du2019.convergence", paper=PAPER,
    description="Wide fully-connected (H=2) and residual (H=3) nets trained by full-batch GD on random ±1 labels "
                "(n=10 points on S^9, η = ½·2/λ_max(G(0))): geometric loss decay against Du et al.'s 1 − ηλ₀/2.",
    specs={"tiny": _convergence_specs(256, 2, 1500), "paper": _convergence_specs(4096, 5, 3000)},
    run_batch=run_batch, plot=_convergence_plot, claims=_convergence_claims,
))


# ----------------------------------------------------------------------------------------------- width

def _width_specs(widths: list[int], seeds: int, steps: int) -> list[Spec]:
    return [_base(net="fc", width=m, depth=2, n=10, d=10, seed=s, lr=0.05, steps=steps,
                  probe_every=steps, probes=["loss", "movement", "lambda_min_last", "gram_drift"])
            for m in widths for s in range(seeds)]


#: Slope tolerance: ±0.15 around −0.5 (issue #3/#6); with 4–5 widths and a few seeds the fitted log-log slope of
#: an m^(−1/2) law scatters by about ±0.05 here, and finite-width corrections O(1/m) bend it at small m.
SLOPE_TOL = 0.15


def _width_claims(df: pd.DataFrame) -> list[Claim]:
    final = df[df["step"] == df.groupby("run_id")["step"].transform("max")]
    per_width = final.groupby(["width", "metric"])["value"].mean().unstack()
    widths = per_width.index.to_numpy(dtype=float)
    claims = []
    where = f"log-log slope over widths {[int(w) for w in widths]}, mean over seeds"
    for metric, label in (("movement_W1", "first-layer movement ‖W¹(K) − W¹(0)‖_F/√m"),
                          ("movement_W2", "last-hidden-layer movement ‖W^H(K) − W^H(0)‖_F/√m")):
        slope = _slope(widths, per_width[metric].to_numpy())
        claims.append(Claim("du2019.width", f"{label} falls like m^(−1/2)", round(slope, 3),
                            f"-0.5 ± {SLOPE_TOL}", bool(abs(slope + 0.5) <= SLOPE_TOL), where))
    # Du et al. bound the Gram drift by O(m^(−1/2)); the drift itself is known to fall faster, like 1/m (Dyer &
    # Gur-Ari 2020, Huang & Yau 2020), so the prediction is "at least as fast as m^(−1/2)".
    slope = _slope(widths, per_width["gram_drift"].to_numpy())
    claims.append(Claim("du2019.width", "Gram drift ‖G(K) − G(0)‖_F/‖G(0)‖_F falls at least like m^(−1/2)",
                        round(slope, 3), f"≤ {-0.5 + SLOPE_TOL}", bool(slope <= -0.5 + SLOPE_TOL),
                        where + "; the 1/m rate of Dyer & Gur-Ari (slope −1) is consistent with Du's bound"))
    runs = _runs(df)
    err = (runs["lambda_min_GH0"] - runs["lambda0"]).abs() / runs["lambda0"]
    by_width = err.groupby(runs["width"]).mean()
    slope = _slope(by_width.index.to_numpy(dtype=float), by_width.to_numpy())
    claims.append(Claim("du2019.width", "λ_min(G^(H)(0)) approaches λ₀ as m grows (relative error falls)",
                        round(slope, 3), "slope < 0 (−0.5 expected)", bool(slope < 0 and by_width.iloc[-1] <
                                                                         by_width.iloc[0]),
                        f"relative errors by width: {', '.join(f'{int(w)}: {v:.3f}' for w, v in by_width.items())}"))
    return claims


def _width_plot(df: pd.DataFrame) -> dict[str, Any]:
    return {"movement, drift and λ_min error against width (log-log)": plotting.width_scaling(df, _runs(df))}


register(Experiment(
    name="du2019.width", paper=PAPER,
    description="The same fully-connected net (H=2, softplus, η=0.05, fixed steps) over widths: weight movement, "
                "Gram drift and |λ_min(G^(H)(0)) − λ₀|/λ₀ against m.",
    specs={"tiny": _width_specs([128, 256, 512, 1024], 2, 200),
           "paper": _width_specs([256, 512, 1024, 2048, 4096, 8192], 8, 1000)},
    run_batch=run_batch, plot=_width_plot, claims=_width_claims,
))


# ----------------------------------------------------------------------------------------------- depth

#: Target of the depth experiment: the loss must fall below this fraction of its initial value within the budget.
DEPTH_TARGET = 1e-2


def _depth_specs(depths: list[int], widths: list[int], steps: int) -> list[Spec]:
    return [_base(net=net, width=m, depth=h, n=10, d=10, seed=0, lr_scale=0.5, steps=steps,
                  probe_every=steps, probes=["loss"])
            for net in ("fc", "resnet") for h in depths for m in widths]


def _min_width(runs: pd.DataFrame) -> pd.DataFrame:
    """Smallest width reaching the target per (net, depth); inf when no width did."""
    reached = runs.assign(ok=runs["loss_ratio"] <= DEPTH_TARGET)
    table = reached[reached["ok"]].groupby(["net", "depth"])["width"].min()
    full = pd.MultiIndex.from_product([sorted(runs["net"].unique()), sorted(runs["depth"].unique())],
                                      names=["net", "depth"])
    return table.reindex(full).astype(float).fillna(math.inf).unstack("net")


def _depth_claims(df: pd.DataFrame) -> list[Claim]:
    table = _min_width(_runs(df))
    growth = table.iloc[-1] / table.iloc[0]  # per net: width needed at max depth / at min depth
    fc, res = float(growth["fc"]), float(growth["resnet"])
    passed = (fc > res) or (math.isinf(table["fc"].iloc[-1]) and math.isfinite(table["resnet"].iloc[-1]))
    return [Claim(
        "du2019.depth", "width needed to reach the target grows with depth faster for FC than for ResNet",
        f"FC ×{fc:g}, ResNet ×{res:g}", "FC growth > ResNet growth", bool(passed),
        "minimum width reaching L ≤ 1e-2·L(0) within the step budget, per depth: " +
        "; ".join(f"H={h}: FC {row['fc']:g}, ResNet {row['resnet']:g}" for h, row in table.iterrows()) +
        " (inf: no width tried reached it)")]


def _depth_plot(df: pd.DataFrame) -> dict[str, Any]:
    return {"width needed against depth": plotting.min_width_by_depth(_min_width(_runs(df)))}


register(Experiment(
    name="du2019.depth", paper=PAPER,
    description="Fully-connected vs residual nets over depths and widths, n=10 random labels, η = ½·2/λ_max(G(0)), "
                "fixed step budget: the smallest width reaching L ≤ 10⁻²·L(0).",
    specs={"tiny": _depth_specs([2, 4, 6], [32, 128, 512], 300),
           "paper": _depth_specs([2, 4, 8, 16], [32, 64, 128, 256, 512, 1024, 2048], 2000)},
    run_batch=run_batch, plot=_depth_plot, claims=_depth_claims,
))


# ------------------------------------------------------------------------------------------------ conv

def _conv_specs(width: int, seeds: int, steps: int) -> list[Spec]:
    return [_base(net="conv-resnet", width=width, depth=3, n=12, channels=2, positions=8, seed=s, lr_scale=0.5,
                  steps=steps, probe_every=max(1, steps // 50), probes=["loss"]) for s in range(seeds)]


def _conv_claims(df: pd.DataFrame) -> list[Claim]:
    runs = _runs(df)
    ratio = float(runs["loss_ratio"].max())
    return [Claim("du2019.conv", f"the convolutional ResNet fits random labels on patch data (L_K/L_0 ≤ {FIT_RATIO:g})",
                  ratio, f"≤ {FIT_RATIO:g}", bool(ratio <= FIT_RATIO), f"worst of {len(runs)} seeds")]


def _conv_plot(df: pd.DataFrame) -> dict[str, Any]:
    return {"convolutional ResNet loss curves": plotting.loss_curves_with_bound(df, _runs(df), bound=False)}


register(Experiment(
    name="du2019.conv", paper=PAPER,
    description="Convolutional ResNet (H=3, kernel 3, 2 channels × 8 positions, smoothed Gaussian fields of unit "
                "Frobenius norm, random ±1 labels) trained by full-batch GD with η = ½·2/λ_max(G(0)).",
    specs={"tiny": _conv_specs(64, 2, 1500), "paper": _conv_specs(512, 5, 5000)},
    run_batch=run_batch, plot=_conv_plot, claims=_conv_claims,
))
