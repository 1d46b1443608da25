""":func:`diagnose`: train a user's model, its linearisation and the kernel prediction side by side, and measure
the quantities of the convergence theory along the way (docs/theory.md §1.3, §1.5, §2.1).

Three trajectories from the same θ₀, on the squared loss L = ½ Σ_i ‖f(x_i) − y_i‖² (no 1/n, as train_gd):

- the **real** model f(·; θ_t), trained by the optimiser (full-batch GD by default);
- the **linearised** model f_lin(·; θ_t) = f(·; θ₀) + J₀(θ_t − θ₀) (:func:`zeroloss.linearize`), trained by the
  same optimiser with the same step;
- the **predicted** outputs of GD on f_lin in closed form (:func:`zeroloss.predict_gd_mse` with Θ₀ = Θ(X, X) at
  θ₀): r_k = (I − ηΘ₀)^k r₀. For ``optimizer="gd"`` the linearised and the predicted outputs must agree to
  round-off (``gap_predicted`` is that self-check); the real model agrees with them exactly in the lazy regime.

The model is a deep copy of the user's (cast to ``dtype``), applied in eval mode throughout (BatchNorm running
statistics, no dropout), as the empirical NTK of :func:`zeroloss.entk` is: the theory is about the deterministic
function x ↦ f(x; θ). The memory is stated and checked against the budget before training
(:mod:`zeroloss.diagnosis.memory`).
"""

from __future__ import annotations

import math
import time
import warnings
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch import nn
from tqdm.auto import tqdm

from zeroloss.budget import resolve_budget
from zeroloss.diagnosis.checks import (
    Problem,
    check_fraction,
    check_lr,
    check_positive_int,
    check_problem,
    make_optimizer,
)
from zeroloss.diagnosis.measures import (
    ALL_MODULES,
    ModuleObjective,
    estimate_alpha_module,
    kernel_matrix,
    module_groups,
    movement,
    rate_statistics,
)
from zeroloss.diagnosis.memory import check_diagnose_memory
from zeroloss.diagnosis.verdict import Verdict, decide
from zeroloss.errors import ZerolossInputError, boolean
from zeroloss.ntk.linearize import Linearized, linearize
from zeroloss.ntk.predict import predict_gd_mse
from zeroloss.precision import no_tf32
from zeroloss.threads import intra_op_threads
from zeroloss.train.divergence import within_bounds
from zeroloss.usercode import user_code

#: Default step as a fraction of the stability edge 2/λ_max(Θ₀): η = 1/λ_max. The top kernel mode of the
#: linearised GD then converges in one step (1 − ηλ_max = 0) and the step keeps a factor-2 margin to the edge for
#: the kernel's growth along the run; at the edge itself that mode would oscillate without decaying.
LR_FRACTION = 0.5

#: Default number of probes (eNTK, spectrum, movement, PL ratio) along a run when ``probe_every`` is not given.
PROBES = 50

#: Steps of the closed-form prediction computed at once (bounds its memory to CHUNK·(n + m)·k floats).
CHUNK = 512

def _floor(dtype: torch.dtype) -> float:
    """Below this fraction of L(0) ratios of losses measure round-off: (10⁴·eps)² (as compare_contraction)."""
    return (1e4 * torch.finfo(dtype).eps) ** 2


@dataclass
class Diagnosis:
    """Everything :func:`diagnose` measured.

    Attributes:
        history: tidy DataFrame, columns ``step``, ``metric``, ``value``, ``module`` (see :func:`diagnose` for the
            metrics; ``module`` is set on ``movement`` rows, "" elsewhere).
        verdict: the :class:`~zeroloss.diagnosis.verdict.Verdict`.
        spectrum0: eigenvalues of Θ₀ (float64, ascending), (n·k,).
        lr: the step used.
        steps: the number of steps run.
        seconds: wall time.
        model: the trained copy of the model; linear: the trained :class:`~zeroloss.ntk.linearize.Linearized`.
        info: n, outputs k, parameter count, optimizer, probe_every, dtype.
    """

    history: pd.DataFrame
    verdict: Verdict
    spectrum0: np.ndarray
    lr: float
    steps: int
    seconds: float
    model: nn.Module
    linear: Linearized
    info: dict[str, Any]

    def metric(self, name: str, module: str | None = None) -> pd.DataFrame:
        """Rows of one metric (and one module for ``movement``), columns step, value."""
        rows = self.history[self.history["metric"] == name]
        if module is not None:
            rows = rows[rows["module"] == module]
        if rows.empty:
            raise ZerolossInputError(f"metric: {name!r} not in the history; recorded: "
                                     f"{sorted(self.history['metric'].unique())}")
        return rows[["step", "value"]].reset_index(drop=True)

    def summary(self) -> dict[str, Any]:
        """One flat dict (JSON-able): the verdict's numbers, final losses, steps, seconds and ``info``."""
        out: dict[str, Any] = dict(self.verdict.summary())
        for name in ("loss_real", "loss_linear", "loss_predicted"):
            rows = self.history[self.history["metric"] == name]
            out[f"final_{name}"] = float(rows["value"].iloc[-1]) if len(rows) else math.nan
        out["diverged"] = self.verdict.diverged_real is not None
        out.update(steps=self.steps, seconds=self.seconds, **self.info)
        return out

    def __str__(self) -> str:
        return str(self.verdict)


class _PredictedPath:
    """The closed-form GD outputs at step k, computed CHUNK steps at a time from one kernel."""

    def __init__(self, K0: torch.Tensor, Y: torch.Tensor, lr: float, f0: torch.Tensor,
                 Kt: torch.Tensor | None, f0_test: torch.Tensor | None) -> None:
        self.K0, self.Y, self.lr, self.f0, self.Kt, self.f0_test = K0, Y, lr, f0, Kt, f0_test
        self.start = -1
        self.train = self.test = self.loss = None

    def at(self, k: int) -> tuple[torch.Tensor, torch.Tensor | None, float]:
        if not self.start <= k < self.start + CHUNK or self.start < 0:
            self.start = k
            p = predict_gd_mse(self.K0, self.Y.reshape(-1), self.lr, steps=list(range(k, k + CHUNK)),
                               k_test_train=self.Kt, f0_train=self.f0.reshape(-1),
                               f0_test=None if self.f0_test is None else self.f0_test.reshape(-1))
            self.train, self.test, self.loss = p.train, p.test, p.loss
        i = k - self.start
        n, c = self.Y.shape
        test = None if self.test is None else self.test[i].reshape(-1, c)
        return self.train[i].reshape(n, c), test, float(self.loss[i])


def _theta(model: nn.Module, names: list[str]) -> dict[str, torch.Tensor]:
    named = dict(model.named_parameters())
    return {k: named[k] for k in names}


def _alive(loss: float, L0: float) -> bool:
    return within_bounds(loss, L0)


def diagnose(
    model: nn.Module,
    X: torch.Tensor,
    y: torch.Tensor,
    *,
    steps: int,
    lr: float | None = None,
    optimizer: Any = "gd",
    probe_every: int | None = None,
    X_test: torch.Tensor | None = None,
    y_test: torch.Tensor | None = None,
    lr_fraction: float = LR_FRACTION,
    params: list[str] | None = None,
    dtype: torch.dtype | None = torch.float64,
    alpha: bool = True,
    alpha_samples: int = 16,
    alpha_starts: int = 2,
    alpha_steps: int = 10,
    seed: int = 0,
    threads: int | None = None,
    progress: bool | None = None,
    memory_budget: int | str | None = None,
) -> Diagnosis:
    """Is this model in the regime the convergence theorems describe? Train it, its linearisation and the kernel
    prediction side by side and measure.

    Recorded in ``history`` (tidy: step, metric, value, module), every step: ``loss_real``, ``loss_linear``,
    ``loss_predicted`` (½Σ‖f − y‖² of the three), ``gap`` = ‖f − f_lin‖/‖f₀ − y‖, ``gap_predicted`` =
    ‖f_lin − f_pred‖/‖f₀ − y‖ (round-off for GD: a self-check), ``contraction`` = ‖r_k‖/‖r_{k−1}‖ of the real
    model; every ``probe_every`` steps: ``movement`` per module (column ``module``; ``(all)`` for the total)
    ‖θ_t − θ₀‖/‖θ₀‖, ``distance`` ‖θ_t − θ₀‖, ``entk_drift`` ‖Θ_t − Θ₀‖_F/‖Θ₀‖_F, ``entk_change`` ‖Θ_t − Θ₀‖₂,
    ``lambda_min`` and ``lambda_max`` of Θ_t (float64), ``pl_ratio`` ‖∇L‖²/(2L) (λ_min(Θ_t) ≤ it ≤ λ_max(Θ_t),
    docs/theory.md §1.3) and with test inputs ``test_gap`` (RMS of f − f_lin on the test inputs over the RMS of
    the training residual r₀) and, with test labels, ``test_loss_real``, ``test_loss_linear``, ``test_loss_predicted``.
    Chatterjee's α(w₀, r) is estimated at the end on the ball the run stayed in (an estimate: see
    :class:`~zeroloss.diagnosis.measures.AlphaSummary`). A model whose loss becomes non-finite or exceeds
    10⁶·L(0) is frozen there and recorded as diverged; the other goes on.

    Args:
        model: any ``nn.Module`` mapping (n, ...) inputs to (n, ...) outputs, k values per sample (not modified).
        X: (n, ...) training inputs (integer token ids for an embedding model); y: (n,) or (n, k) targets.
        steps: number of optimiser steps.
        lr: the step η; default ``lr_fraction``·2/λ_max(Θ₀). A step above 2/λ_max(Θ₀) warns (GD on the linearised
            model diverges there).
        optimizer: ``"gd"`` (full-batch gradient descent), ``"adam"``, or ``(params, lr) -> torch.optim.Optimizer``;
            the closed-form prediction and the rate comparison are for ``"gd"`` only.
        probe_every: steps between probes (default steps // 50, at least 1); the last step is always probed.
        X_test, y_test: optional test inputs (m, ...) and targets (m,) / (m, k).
        lr_fraction: in (0, 1]; the default step is this fraction of 2/λ_max(Θ₀) (see :data:`LR_FRACTION`).
        params: names of the parameters to train (default every parameter with ``requires_grad``).
        dtype: the computation dtype of the copy (default float64; None keeps the model's). Spectra are float64.
        alpha: estimate Chatterjee's α (costs ``alpha_samples`` + ``alpha_starts``·``alpha_steps`` double
            backward passes).
        alpha_samples, alpha_starts, alpha_steps: the α estimate's sampling and descent budget.
        seed: seed of the α estimate's sampling.
        threads: torch intra-op threads while it runs (restored after); None leaves torch's setting. Small models
            on a busy CPU run far faster with 1 (each tiny op otherwise waits for the other threads).
        progress: tqdm bar (None: only on a terminal).
        memory_budget: the most the diagnosis may state (bytes or a size such as ``"8GiB"``; None:
            ``ZEROLOSS_MAX_BYTES``, else half the available memory, :mod:`zeroloss.budget`). The statement
            (:func:`zeroloss.diagnosis.memory.diagnose_memory_bytes`, in ``info["memory_bytes"]``) is checked before
            training; over the budget nothing runs and a one-line error names ``X``.

    Returns:
        :class:`Diagnosis` (``str()`` of it is the verdict).

    Raises:
        ZerolossInputError: bad model/data/options (one line naming the field).

    Examples:
        >>> import torch
        >>> torch.manual_seed(0) and None
        >>> net = torch.nn.Sequential(torch.nn.Linear(3, 256), torch.nn.Tanh(), torch.nn.Linear(256, 1)).double()
        >>> X = torch.randn(8, 3, dtype=torch.float64); y = torch.randn(8, dtype=torch.float64)
        >>> d = diagnose(net, X, y, steps=20, probe_every=10, alpha=False, threads=1, progress=False)
        >>> d.verdict.gap < 0.1, sorted(d.history["metric"].unique())[:3]
        (True, ['contraction', 'distance', 'entk_change'])
    """
    steps = check_positive_int(steps, "steps")  # type: ignore[assignment]
    lr = check_lr(lr)
    lr_fraction = check_fraction(lr_fraction)
    probe_every = check_positive_int(probe_every, "probe_every", allow_none=True) or max(1, steps // PROBES)
    make = make_optimizer(optimizer)
    for name, value in (("alpha_samples", alpha_samples), ("alpha_starts", alpha_starts),
                        ("alpha_steps", alpha_steps)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise ZerolossInputError(f"{name}: must be a non-negative integer, got {value!r}")
    threads = check_positive_int(threads, "threads", allow_none=True)
    alpha = boolean(alpha, "alpha")
    t_start = time.perf_counter()
    with torch.enable_grad(), intra_op_threads(threads), user_code("model", "the model"):
        prob = check_problem(model, X, y, X_test, y_test, params=params, dtype=dtype)
        budget = resolve_budget(memory_budget, "memory_budget")
        need = check_diagnose_memory(prob.model, prob.X, prob.names, prob.outputs, prob.X_test, budget)
        d = _run(prob, steps, lr, lr_fraction, optimizer, make, probe_every, alpha,
                 (alpha_samples, alpha_starts, alpha_steps, seed), progress, t_start)
        d.info["memory_bytes"] = need
        return d


def _run(prob: Problem, steps: int, lr: float | None, lr_fraction: float, optimizer: Any, make: Any,
         probe_every: int, alpha: bool, alpha_budget: tuple[int, int, int, int], progress: bool | None,
         t_start: float) -> Diagnosis:
    real, names, X, Y, k = prob.model, prob.names, prob.X, prob.Y, prob.outputs
    dtype = next(iter(_theta(real, names).values())).dtype
    with torch.no_grad():
        f0 = real(X).reshape(Y.shape)
        f0_test = real(prob.X_test).reshape(prob.X_test.shape[0], k) if prob.X_test is not None else None
    r0 = float((f0 - Y).norm())
    if r0 == 0.0:
        raise ZerolossInputError("y: equals the model's outputs at initialisation: there is nothing to train")
    L0 = 0.5 * r0**2
    with no_tf32():
        K0 = kernel_matrix(real, X, names, k)
        if not torch.isfinite(K0).all():
            raise ZerolossInputError("model: its empirical NTK on X at initialisation has NaN or inf entries (the "
                                     "gradients of its outputs are not finite)")
        eig0 = torch.linalg.eigvalsh(0.5 * (K0 + K0.T))
        Kt = kernel_matrix(real, prob.X_test, names, k, X2=X) if prob.X_test is not None else None
    lam_min0, lam_max0 = float(eig0[0]), float(eig0[-1])
    if not lam_max0 > 0:
        raise ZerolossInputError("model: its empirical NTK on X is zero (the outputs do not move with θ)")
    lr_edge = 2.0 / lam_max0
    if lr is None:
        lr = lr_fraction * lr_edge
    elif lr > lr_edge:
        warnings.warn(f"lr = {lr:.4g} exceeds 2/λ_max(Θ₀) = {lr_edge:.4g}: gradient descent on the linearised model "
                      "diverges along the top kernel direction", UserWarning, stacklevel=3)
    gd = optimizer == "gd"
    path = _PredictedPath(K0, Y, lr, f0, Kt, f0_test) if gd else None

    lin = linearize(real, params=names)
    theta0 = {kk: p.detach().clone() for kk, p in _theta(real, names).items()}
    real_params = list(_theta(real, names).values())
    opt_real = make(real_params, lr)
    opt_lin = make([p for p in lin.parameters() if p.requires_grad], lr)
    groups = module_groups(names)
    rec: list[tuple[int, str, float, str]] = []
    alive_real = alive_lin = True
    diverged_real = diverged_linear = None
    prev_real = math.nan
    du_ok = True
    maxima = {"gap": 0.0, "drift": 0.0, "movement": 0.0, "loss_gap": 0.0, "test_gap": math.nan}
    pl_min, dist_max = math.inf, 0.0
    losses_real = np.full(steps + 1, math.nan)
    losses_pred = np.full(steps + 1, math.nan) if gd else None
    bar = tqdm(total=steps + 1, desc="diagnose", unit="step", leave=False,
               disable=None if progress is None else not progress)
    for step in range(steps + 1):
        probe = step % probe_every == 0 or step == steps
        f = g = None
        if alive_real:
            f = real(X).reshape(Y.shape)
            loss = 0.5 * (f - Y).pow(2).sum()
            L = float(loss.detach())
            rec.append((step, "loss_real", L, ""))
            losses_real[step] = L
            if step > 0 and math.isfinite(prev_real) and prev_real > 0:
                rec.append((step, "contraction", math.sqrt(L / prev_real), ""))
            prev_real = L
            if not _alive(L, L0):
                alive_real, diverged_real = False, step
            else:
                opt_real.zero_grad()
                loss.backward()
        if alive_lin:
            g = lin(X).reshape(Y.shape)
            loss_lin = 0.5 * (g - Y).pow(2).sum()
            Ll = float(loss_lin.detach())
            rec.append((step, "loss_linear", Ll, ""))
            if not _alive(Ll, L0):
                alive_lin, diverged_linear = False, step
            else:
                opt_lin.zero_grad()
                loss_lin.backward()
        pred = pred_test = None
        if path is not None:
            pred, pred_test, Lp = path.at(step)
            rec.append((step, "loss_predicted", Lp, ""))
            losses_pred[step] = Lp  # type: ignore[index]
            if alive_lin:
                rec.append((step, "gap_predicted", float((g.detach() - pred).norm()) / r0, ""))
        if alive_real and alive_lin:
            gap = float((f.detach() - g.detach()).norm()) / r0
            rec.append((step, "gap", gap, ""))
            maxima["gap"] = max(maxima["gap"], gap)
            maxima["loss_gap"] = max(maxima["loss_gap"], abs(L - Ll) / L0)
        if probe and alive_real:
            pl, dist, drift, du, moved = _probe(rec, step, real, lin, names, groups, theta0, X, k, K0, lam_min0, L,
                                                alive_lin, prob, r0, pred_test, maxima)
            du_ok = du_ok and du
            maxima["drift"] = max(maxima["drift"], drift)
            maxima["movement"] = max(maxima["movement"], moved)
            if L > 1e-12 * L0:
                pl_min = min(pl_min, pl)
            dist_max = max(dist_max, dist)
        if alive_real and step < steps:
            opt_real.step()
        if alive_lin and step < steps:
            opt_lin.step()
        bar.update(1)
        if not (alive_real or alive_lin):
            break
    bar.close()
    if gd and path is not None and step < steps:  # both diverged early: finish the prediction's loss curve
        for s in range(step + 1, steps + 1):
            losses_pred[s] = path.at(s)[2]  # type: ignore[index]
            rec.append((s, "loss_predicted", float(losses_pred[s]), ""))  # type: ignore[index]
    rates = rate_statistics(losses_real, losses_pred, lr, lam_min0, _floor(dtype))
    lazy, rate_ok, reasons = decide(maxima["gap"], maxima["drift"], maxima["movement"], diverged_real,
                                    diverged_linear, rates.measured, rates.predicted, gd)
    verdict = Verdict(lazy=lazy, gap=maxima["gap"], drift=maxima["drift"], movement=maxima["movement"],
                      loss_gap=maxima["loss_gap"], test_gap=maxima["test_gap"], du_condition=du_ok,
                      rate_matches=rate_ok, rate_measured=rates.measured, rate_predicted=rates.predicted,
                      rate_bound=rates.bound, lr=lr, lr_edge=lr_edge, lambda_min0=lam_min0, lambda_max0=lam_max0,
                      diverged_real=diverged_real, diverged_linear=diverged_linear, reasons=reasons)
    if alpha and diverged_real is None:
        samples, starts, a_steps, seed = alpha_budget
        obj = ModuleObjective(real, names, X, Y, w0=theta0)
        a = estimate_alpha_module(obj, dist_max, pl_min, samples, starts, a_steps, seed)
        verdict.alpha, verdict.alpha_radius, verdict.alpha_criterion = a.estimate, a.radius, a.criterion
    history = pd.DataFrame.from_records(rec, columns=["step", "metric", "value", "module"])
    info = {"n": int(X.shape[0]), "outputs": int(k), "parameters": int(sum(p.numel() for p in real_params)),
            "optimizer": optimizer if isinstance(optimizer, str) else getattr(optimizer, "__name__", "callable"),
            "probe_every": int(probe_every), "dtype": str(dtype).replace("torch.", "")}
    return Diagnosis(history, verdict, eig0.cpu().numpy(), float(lr), int(step), time.perf_counter() - t_start,
                     real, lin, info)


def _probe(rec: list, step: int, real: nn.Module, lin: Linearized, names: list[str], groups: dict[str, list[str]],
           theta0: dict[str, torch.Tensor], X: torch.Tensor, k: int, K0: torch.Tensor, lam_min0: float, L: float,
           alive_lin: bool, prob: Problem, r0: float, pred_test: torch.Tensor | None, maxima: dict[str, float],
           ) -> tuple[float, float, float, bool, float]:
    """Record one probe's metrics; return (PL ratio, distance, drift, Du's condition holds, total movement)."""
    theta = _theta(real, names)
    rel, dist = movement(theta, theta0, groups)
    for mod, value in rel.items():
        rec.append((step, "movement", value, mod))
    rec.append((step, "distance", dist, ""))
    grad2 = sum(float(p.grad.double().pow(2).sum()) for p in theta.values() if p.grad is not None)
    pl = grad2 / (2.0 * L) if L > 0 else math.nan
    rec.append((step, "pl_ratio", pl, ""))
    with no_tf32():
        K = kernel_matrix(real, X, names, k).detach()
        eig = torch.linalg.eigvalsh(0.5 * (K + K.T))
        diff = K - K0
        change = float(torch.linalg.eigvalsh(0.5 * (diff + diff.T)).abs().max())
        drift = float(diff.norm() / K0.norm())
    rec += [(step, "lambda_min", float(eig[0]), ""), (step, "lambda_max", float(eig[-1]), ""),
            (step, "entk_drift", drift, ""), (step, "entk_change", change, "")]
    if prob.X_test is not None:
        with torch.no_grad():
            ft = real(prob.X_test).reshape(prob.X_test.shape[0], k)
            gt = lin(prob.X_test).reshape(ft.shape) if alive_lin else None
        n, m = X.shape[0], prob.X_test.shape[0]
        if gt is not None:
            test_gap = float((ft - gt).norm()) / math.sqrt(m) / (r0 / math.sqrt(n))
            rec.append((step, "test_gap", test_gap, ""))
            maxima["test_gap"] = test_gap if math.isnan(maxima["test_gap"]) else max(maxima["test_gap"], test_gap)
        if prob.Y_test is not None:
            rec.append((step, "test_loss_real", float(0.5 * (ft - prob.Y_test).pow(2).sum()), ""))
            if gt is not None:
                rec.append((step, "test_loss_linear", float(0.5 * (gt - prob.Y_test).pow(2).sum()), ""))
            if pred_test is not None:
                rec.append((step, "test_loss_predicted", float(0.5 * (pred_test - prob.Y_test).pow(2).sum()), ""))
    return pl, dist, drift, change <= lam_min0 / 2.0, rel[ALL_MODULES]
