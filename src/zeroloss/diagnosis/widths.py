""":func:`diagnose_widths`: :func:`zeroloss.diagnose` over a family of widths — a coord-check for the convergence
theory (docs/theory.md §1.5).

For a model family ``factory(width)`` in the NTK parametrisation the lazy-training theorems bound, uniformly over
training, the relative parameter movement, the eNTK drift and the real-vs-linearised gap by O(m^{−1/2})
(Du et al. 2019; Lee et al. 2019, Theorem 2.1). The log-log slope of each against the width m is what the sweep
reports: movement should fall like m^{−1/2} (‖θ_t − θ₀‖ stays O(1) while ‖θ₀‖ grows like √m); the drift and the
gap at least as fast — the second-order analyses (Dyer & Gur-Ari 2020; Huang & Yau 2020) give m^{−1} for both, since
their leading terms are linear in the zero-mean output weights and average out over neurons. A slope near 0 means
the family does not become lazy with width (mean-field or μP parametrisations, or too large a step).

When the family has an infinite-width limit (:mod:`zeroloss.infinite` traces it; otherwise the reason is kept in
``limit_note``), each row also reports ``limit_distance`` = ‖Θ_m(0) − Θ_∞‖_F / ‖Θ_∞‖_F, the initial eNTK against the
limit kernel at the model's own widths and laws (standard parameterisation: what the eNTK concentrates on; its
fitted slope ≈ −½ expected), and ``final_loss_predicted_limit``, the closed-form GD prediction with Θ_∞ in place of
Θ_m(0) (same f₀, step and steps) beside the finite kernel's ``final_loss_predicted``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import pandas as pd
import torch
from torch import nn

from zeroloss.diagnosis.checks import check_positive_int
from zeroloss.diagnosis.run import LR_FRACTION, Diagnosis, diagnose
from zeroloss.diagnosis.slopes import SLOPE_METRICS, Slope, fit_slope
from zeroloss.errors import ZerolossInputError


@dataclass
class WidthSweep:
    """What :func:`diagnose_widths` measured.

    Attributes:
        table: one row per (width, repeat): ``width``, ``repeat``, the verdict's numbers (``gap``, ``drift``,
            ``movement``, ``loss_gap``, ``test_gap``, ``lazy``, ``rate_matches``, ``lr``, ``lambda_min0``, …) and
            ``final_loss_real``.
        slopes: metric (:data:`SLOPE_METRICS`) → :class:`Slope` against width.
        diagnoses: the :class:`~zeroloss.diagnosis.run.Diagnosis` of every row (empty with ``keep=False``).
        limit_note: why the table has no ``limit_distance`` column ("" when it has one, or when not asked).
    """

    table: pd.DataFrame
    slopes: dict[str, Slope]
    diagnoses: list[Diagnosis] = field(default_factory=list)
    limit_note: str = ""

    def figure(self) -> Any:
        """Log-log figure of movement, drift and gap against width, with the fits and the m^{−1/2} reference."""
        from zeroloss.diagnosis.figures import width_figure

        return width_figure(self)

    def summary(self) -> dict[str, float]:
        """Flat dict: ``slope_<metric>``, ``slope_<metric>_stderr`` for each fitted metric."""
        out: dict[str, float] = {}
        for name, s in self.slopes.items():
            out[f"slope_{name}"] = s.slope
            out[f"slope_{name}_stderr"] = s.stderr
        return out

    def __str__(self) -> str:
        lines = ["width slopes (log-log, all repeats):"]
        for name, s in self.slopes.items():
            lines.append(f"  {name:<9} {s.slope:+.3f} +- {s.stderr:.3f}  ({s.points} points)")
        lazy = self.table.groupby("width")["lazy"].mean()
        lines.append("  lazy fraction by width: " + ", ".join(f"{w}: {v:.2g}" for w, v in lazy.items()))
        if "limit_distance" in self.table:
            dist = self.table.groupby("width")["limit_distance"].mean()
            lines.append("  ||Theta_m(0) - Theta_inf|| / ||Theta_inf|| by width: "
                         + ", ".join(f"{w}: {v:.3g}" for w, v in dist.items()))
            if "final_loss_predicted_limit" in self.table:
                pair = self.table.groupby("width")[["final_loss_predicted", "final_loss_predicted_limit"]].mean()
                lines.append("  final loss predicted by Theta_m(0) | Theta_inf: " + ", ".join(
                    f"{w}: {a:.3g} | {b:.3g}" for w, (a, b) in pair.iterrows()))
        elif self.limit_note:
            lines.append(f"  {self.limit_note}")
        return "\n".join(lines)


def diagnose_widths(
    factory: Callable[[int], nn.Module],
    widths: Sequence[int],
    X: torch.Tensor,
    y: torch.Tensor,
    *,
    steps: int,
    lr: float | None = None,
    lr_fraction: float = LR_FRACTION,
    repeats: int = 1,
    seed: int = 0,
    keep: bool = True,
    progress: bool | None = None,
    limit: bool = True,
    **kwargs: Any,
) -> WidthSweep:
    """Run :func:`zeroloss.diagnose` on ``factory(width)`` for every width and fit the width slopes.

    Each width runs ``repeats`` times; before repeat r the global torch generator is seeded with ``seed + r`` (and
    restored afterwards), so a factory that draws from it gives the same seeds at every width and independent
    repeats, reproducibly. The step is each model's own ``lr_fraction``·2/λ_max(Θ₀) unless ``lr`` is given.

    Args:
        factory: ``factory(width) -> nn.Module``.
        widths: at least two distinct positive integers.
        X, y: training data (as :func:`zeroloss.diagnose`).
        steps: optimiser steps per run.
        lr, lr_fraction: the step (see :func:`zeroloss.diagnose`).
        repeats: runs per width.
        seed: seed of repeat 0.
        keep: keep every run's :class:`Diagnosis` (histories, trained models) in the result.
        progress: tqdm bars (None: only on a terminal).
        limit: compare each initial eNTK with the infinite-width kernel when the model has one (module docstring).
        **kwargs: passed on to :func:`zeroloss.diagnose` (``X_test``, ``y_test``, ``optimizer``, ``probe_every``,
            ``dtype``, ``alpha`` (default False here), ``threads``, …).

    Returns:
        :class:`WidthSweep`.

    Examples:
        >>> import math, torch
        >>> class Net(torch.nn.Module):           # two-layer, NTK parametrisation: f = aᵀ tanh(Wx)/√m
        ...     def __init__(self, m):
        ...         super().__init__(); self.m = m
        ...         self.W = torch.nn.Parameter(torch.randn(m, 3, dtype=torch.float64))
        ...         self.a = torch.nn.Parameter(torch.randn(m, dtype=torch.float64))
        ...     def forward(self, x):
        ...         return torch.tanh(x @ self.W.T) @ self.a / math.sqrt(self.m)
        >>> X = torch.nn.functional.normalize(torch.randn(6, 3, dtype=torch.float64), dim=1)
        >>> sweep = diagnose_widths(Net, [64, 256], X, torch.randn(6, dtype=torch.float64), steps=10,
        ...                         probe_every=10, threads=1, progress=False)
        >>> sweep.slopes["movement"].slope < 0
        True
    """
    if isinstance(widths, (str, bytes)) or not isinstance(widths, Sequence):
        raise ZerolossInputError(f"widths: must be a list of positive integers, got {widths!r}")
    ws = [check_positive_int(w, "widths") for w in widths]
    if len(set(ws)) < 2:
        raise ZerolossInputError(f"widths: needs at least two distinct widths to fit a slope, got {list(widths)!r}")
    if not callable(factory):
        raise ZerolossInputError(f"factory: must be a callable width -> nn.Module, got {type(factory).__name__}")
    repeats = check_positive_int(repeats, "repeats")  # type: ignore[assignment]
    kwargs.setdefault("alpha", False)
    rows: list[dict[str, Any]] = []
    kept: list[Diagnosis] = []
    notes: list[str] = []
    for width in ws:
        for r in range(repeats):
            model = build(factory, width, seed + r)
            against = _against_limit(model, X, y, notes) if limit else None
            d = diagnose(model, X, y, steps=steps, lr=lr, lr_fraction=lr_fraction, progress=progress, **kwargs)
            summary = d.summary()
            rows.append({"width": width, "repeat": r, **{k: v for k, v in summary.items() if not isinstance(v, str)
                                                         or k == "reasons"}})
            if against is not None:
                rows[-1].update(against(d.lr, d.steps))
            if keep:
                kept.append(d)
    table = pd.DataFrame(rows)
    slopes = {name: fit_slope(table["width"], table[name]) for name in SLOPE_METRICS}
    if "limit_distance" in table:
        slopes["limit_distance"] = fit_slope(table["width"], table["limit_distance"])
    return WidthSweep(table, slopes, kept, notes[0] if notes else "")


def _against_limit(model: nn.Module, X: torch.Tensor, y: torch.Tensor,
                   notes: list[str]) -> Callable[[float, int], dict[str, float]] | None:
    """Θ_m(0) against Θ_∞ for one initial model (module docstring); None, with the reason in ``notes``, when the
    model has no limit here. Returns a function of (lr, steps) giving the row's columns."""
    from zeroloss.infinite import infinite_kernel
    from zeroloss.ntk import entk, predict_gd_mse

    Xd = torch.as_tensor(X).to(torch.float64)
    try:
        limit = infinite_kernel(model, Xd, kind="ntk").ntk
    except ZerolossInputError as exc:
        if not notes:
            notes.append(f"no infinite-width limit: {str(exc).split('; supported:')[0]}")
        return None
    with torch.no_grad():
        f0 = model(Xd.to(next(model.parameters()).dtype)).to(torch.float64).reshape(Xd.shape[0], -1)
    k = f0.shape[1]
    theta = entk(model, Xd) / k  # the trace over k i.i.d. outputs is k Θ
    distance = float((theta - limit).norm() / limit.norm())
    Y = torch.as_tensor(y).to(torch.float64).reshape(Xd.shape[0], -1)

    def columns(lr: float, steps: int) -> dict[str, float]:
        out = {"limit_distance": distance}
        if k == 1:
            p = predict_gd_mse(limit, Y.reshape(-1), lr, steps=[steps], f0_train=f0.reshape(-1))
            out["final_loss_predicted_limit"] = float(p.loss[-1])
        return out

    return columns


def build(factory: Callable[[int], nn.Module], width: int, seed: int) -> nn.Module:
    """``factory(width)`` with torch's global generator seeded (state restored after); one-line errors."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        try:
            model = factory(width)
        except ZerolossInputError:
            raise
        except SystemExit as exc:  # the user's code exited
            raise ZerolossInputError(f"factory: factory({width}) called sys.exit({exc.code!r})") from None
        except Exception as exc:  # the user's code: name it, one line, keep the cause
            text = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
            raise ZerolossInputError(f"factory: factory({width}) raised {type(exc).__name__}: {text}") from exc
    if not isinstance(model, nn.Module):
        raise ZerolossInputError(f"factory: factory({width}) must return a torch.nn.Module, "
                                 f"got {type(model).__name__}")
    return model
