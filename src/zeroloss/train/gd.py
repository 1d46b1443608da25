"""Full-batch gradient descent on an ensemble, the papers' way (docs/theory.md §1.2 Training; §2.1).

    L_s(θ_s) = ½ Σ_i (u_si − y_i)²,   θ_s(k+1) = θ_s(k) − η_s ∇L_s(θ_s(k)),   every layer trained (a included).

All S members take their step together: the total loss Σ_s L_s is a sum over independent members, so one
backward pass gives every member its own gradient, and η is a vector of per-member step sizes — by default
η_s = 1/λ_max(G_s(0)), and a given step above the stability bound 2/λ_max(G_s(0)) is warned about
(:mod:`zeroloss.train.step` says why). A member whose loss becomes non-finite or exceeds ``divergence_factor`` ×
its initial loss is marked diverged at that step and frozen (its parameters are no longer updated); the others go
on. :meth:`GDRun.summary` says how each member ended: reached the target, converged, still decreasing, stalled or
diverged.

:func:`train_gd` is a loop: forward pass, loss, bookkeeping, probes, then one step — :func:`~zeroloss.train.step.
gd_step` on the gradients, or its fused fast path :func:`~zeroloss.train.step.fused_step`. Gradients come from the
hand-derived backward sweep of :mod:`zeroloss.train.backprop` for Du's three nets and Chatterjee's feedforward net,
and from ``torch.autograd.grad`` for other nets (user subclasses); ``backprop="autograd"`` forces the latter.
"""

from __future__ import annotations

import math
import numbers
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import torch
from tqdm.auto import tqdm

from zeroloss.errors import ZerolossInputError, boolean, positive_int, positive_number
from zeroloss.nets.base import EnsembleNet, require_ensemble_net
from zeroloss.train.backprop import BACKPROPS, Backprop, analytic_backprop
from zeroloss.train.divergence import DIVERGENCE_FACTOR
from zeroloss.train.history import LossHistory, MemberState, member_status
from zeroloss.train.probes import DEFAULT_PROBES, PROBES, ProbeContext
from zeroloss.train.step import (
    auto_lr,
    fused_step,
    gd_step,
    initial_lambda_max,
    lr_vector,
    stability_bound,
    warn_unstable,
)

#: How often (in steps) the loop asks the device whether every member has stopped (diverged or reached the target);
#: a run may therefore take up to this many steps past the point where all members stopped.
STOP_CHECK_EVERY = 16
#: Accepted values of train_gd's ``backprop``.
BACKPROP_MODES = ("auto", "analytic", "autograd")


@dataclass
class GDRun:
    """The outcome of :func:`train_gd`.

    Attributes:
        net: the trained ensemble (the same object that was passed in, updated in place).
        history: tidy DataFrame with columns ``step``, ``member``, ``metric``, ``value`` (probe schedule).
        losses: (steps_done + 1, S) loss of every member at every step (NaN after a member diverged).
        lr: (S,) step sizes.
        diverged_at: member → step at which it diverged.
        reached_target_at: member → first step with loss ≤ target_loss (when a target was given).
        steps: steps taken.
        seconds: wall time of the loop.
        lambda_max0: (S,) λ_max of each member's full Gram G(0) at the start (float64; NaN if not finite).
    """

    net: EnsembleNet
    history: pd.DataFrame
    losses: np.ndarray
    lr: np.ndarray
    diverged_at: dict[int, int] = field(default_factory=dict)
    reached_target_at: dict[int, int] = field(default_factory=dict)
    steps: int = 0
    seconds: float = 0.0
    lambda_max0: np.ndarray = field(default_factory=lambda: np.empty(0))

    @property
    def final_loss(self) -> np.ndarray:
        """(S,) loss of each member at the last step (NaN for a member that diverged)."""
        return self.losses[-1]

    @property
    def status(self) -> list[str]:
        """Per member: ``"reached target"``, ``"converged"``, ``"decreasing"``, ``"stalled"`` or ``"diverged"``
        (defined in :func:`zeroloss.train.history.member_status`)."""
        eps = torch.finfo(self.net.dtype).eps
        return [member_status(self.losses[:, s], s in self.diverged_at, s in self.reached_target_at, eps)
                for s in range(self.losses.shape[1])]

    def summary(self) -> pd.DataFrame:
        """One row per member: lr, the stability bound 2/λ_max(G(0)), initial and final loss, status (reached
        target, converged, decreasing, stalled or diverged), the step it diverged at, the step it reached the target.
        """
        bound = stability_bound(self.lambda_max0) if len(self.lambda_max0) else np.full(len(self.lr), np.nan)
        return pd.DataFrame([{
            "member": s,
            "lr": float(self.lr[s]),
            "stable_below": float(bound[s]),
            "initial_loss": float(self.losses[0, s]),
            "final_loss": float(self.losses[-1, s]),
            "status": status,
            "diverged_at": self.diverged_at.get(s),
            "reached_target_at": self.reached_target_at.get(s),
        } for s, status in enumerate(self.status)])

    def metric(self, name: str) -> pd.DataFrame:
        """History of one metric as a (step × member) table."""
        sub = self.history[self.history["metric"] == name]
        if sub.empty:
            raise ZerolossInputError(f"metric: not in the history; recorded: {sorted(self.history['metric'].unique())}")
        return sub.pivot(index="step", columns="member", values="value")


def _labels(y: object, members: int, n: int, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    try:
        y = torch.as_tensor(y)
    except (TypeError, ValueError, RuntimeError):
        raise ZerolossInputError(f"y: must be numbers of shape ({n},) or ({members}, {n}), got {y!r}") from None
    if y.shape not in ((n,), (members, n)):
        raise ZerolossInputError(f"y: must have shape ({n},) or ({members}, {n}), got {tuple(y.shape)}")
    if y.dtype == torch.bool or y.is_complex():
        raise ZerolossInputError(f"y: must be real numbers, got dtype {y.dtype}")
    if not torch.isfinite(y).all():
        raise ZerolossInputError("y: contains NaN or inf")
    return y.to(dtype=dtype, device=device)


def _target(target_loss: object) -> float | None:
    if target_loss is None:
        return None
    ok = isinstance(target_loss, numbers.Real) and not isinstance(target_loss, bool)
    if not (ok and math.isfinite(target_loss) and target_loss >= 0):  # type: ignore[arg-type]
        raise ZerolossInputError(f"target_loss: must be None or a finite number ≥ 0, got {target_loss!r}")
    return float(target_loss)  # type: ignore[arg-type]


def _engine(net: EnsembleNet, X: torch.Tensor, backprop: str) -> Backprop | None:
    """The hand-derived backward sweep for this net (None: autograd), as ``backprop`` asks."""
    if backprop not in BACKPROP_MODES:
        raise ZerolossInputError(f"backprop: must be one of {', '.join(BACKPROP_MODES)}, got {backprop!r}")
    engine = None if backprop == "autograd" else analytic_backprop(net, X)
    if engine is None and backprop == "analytic":
        available = ", ".join(cls.__name__ for cls in BACKPROPS)
        raise ZerolossInputError(f"backprop: 'analytic' is available for {available}, not {type(net).__name__}; "
                                 f"use 'auto' or 'autograd'")
    return engine


class _StepGradients:
    """One step's gradients of Σ_s L_s, stopped members' losses replaced by 0, computed on the first call.

    From the hand-derived sweep (``engine``) when there is one, else by ``torch.autograd.grad`` — not
    ``backward()``: the gradients are returned as computed, without ``.grad``'s copy into the parameters'
    layout (a full pass over every transposed weight gradient).
    """

    def __init__(self, engine: Backprop | None, names: list[str], tensors: list[torch.Tensor], active: torch.Tensor,
                 residual: torch.Tensor, member_loss: torch.Tensor) -> None:
        self.engine, self.names, self.tensors = engine, names, tensors
        self.active, self.residual, self.member_loss = active, residual, member_loss
        self.value: tuple[torch.Tensor, ...] | None = None

    @property
    def computed(self) -> bool:
        return self.value is not None

    def __call__(self) -> tuple[torch.Tensor, ...]:
        if self.value is None:
            if self.engine is not None:
                by_name = self.engine.gradients(torch.where(self.active.unsqueeze(-1), self.residual, 0.0))
                self.value = tuple(by_name[name] for name in self.names)
            else:
                kept = torch.where(self.active, self.member_loss, torch.zeros_like(self.member_loss))
                self.value = torch.autograd.grad(kept.sum(), self.tensors)
        return self.value

    def by_name(self) -> dict[str, torch.Tensor]:
        return dict(zip(self.names, self(), strict=True))


def train_gd(
    net: EnsembleNet,
    X: torch.Tensor,
    y: torch.Tensor,
    lr: float | Sequence[float] | torch.Tensor | None = None,
    steps: int = 1000,
    probe_every: int | None = None,
    target_loss: float | None = None,
    probes: Sequence[str] | None = DEFAULT_PROBES,
    divergence_factor: float = DIVERGENCE_FACTOR,
    progress: bool | None = None,
    backprop: str = "auto",
    check_step: bool = True,
) -> GDRun:
    """Full-batch gradient descent on L = ½ Σ (u − y)² for every member, all layers trained.

    Args:
        net: ensemble net of :mod:`zeroloss.nets` (updated in place). Any other ``torch.nn.Module`` is refused:
            :func:`zeroloss.entk` and :func:`zeroloss.diagnose` take those.
        X: inputs (n, d) or (n, channels, positions), finite, n ≥ 1.
        y: labels (n,) shared by the members, or (S, n).
        lr: a step size, or one per member (S,). None (default): η_s = 1/λ_max(G_s(0)) per member, from the exact
            float64 Gram matrix at the initial parameters (:mod:`zeroloss.train.step`). A given step above
            2/λ_max(G_s(0)) raises one :class:`~zeroloss.train.step.UnstableStepWarning` per such member.
        steps: maximum number of steps (the loss history grows as the run goes: nothing is allocated per step
            of the budget up front).
        probe_every: probe schedule (default: about 100 probes over the run); step 0 and the last step are
            always probed.
        target_loss: stop once every non-diverged member has loss ≤ target_loss (checked every
            :data:`STOP_CHECK_EVERY` steps and at probe steps; ``reached_target_at`` is exact).
        probes: names from :data:`zeroloss.train.probes.PROBES` (None: the default ones).
        divergence_factor: loss > factor × initial loss (or non-finite) marks a member diverged; must be > 1.
        progress: tqdm bar (None: only on a terminal).
        backprop: ``"auto"`` (the hand-derived backward of :mod:`zeroloss.train.backprop` where the net has one,
            else autograd), ``"analytic"`` (require it) or ``"autograd"``. They agree to round-off.
        check_step: True (default): a given ``lr`` is checked against 2/λ_max(G_s(0)), from one exact Gram matrix
            at the start. False: a given ``lr`` is taken as is, and G(0) is not computed (no warning; the summary's
            ``stable_below`` is NaN) — for callers that try steps past the bound on purpose and call train_gd in
            many short pieces, where that Gram would be recomputed at every call. Ignored when ``lr`` is None.

    Returns:
        A :class:`GDRun` with the tidy history; ``run.summary()`` says how each member ended.

    Examples:
        >>> from zeroloss.nets import FullyConnected
        >>> from zeroloss.data import sphere_data
        >>> X, y = sphere_data(n=8, d=8, seed=0)
        >>> net = FullyConnected(d=8, width=128, depth=2, activation="erf", members=2, dtype=torch.float64)
        >>> run = train_gd(net, X, y, steps=300, target_loss=1e-8, probes=["loss"], progress=False)
        >>> run.summary()["status"].tolist(), bool((run.final_loss <= 1e-8).all())
        (['reached target', 'reached target'], True)
    """
    require_ensemble_net(net, "train_gd")
    steps = positive_int(steps, "steps")
    if probes is None:
        probes = DEFAULT_PROBES
    elif isinstance(probes, str):  # one name, not its characters
        probes = [probes]
    elif not isinstance(probes, Sequence) or not all(isinstance(p, str) for p in probes):
        raise ZerolossInputError(f"probes: must be a list of names from {', '.join(PROBES)} (None: the default), "
                                 f"got {probes!r}")
    check_step = boolean(check_step, "check_step")
    if progress is not None:
        progress = boolean(progress, "progress")
    unknown = [p for p in probes if p not in PROBES]
    if unknown:
        raise ZerolossInputError(f"probes: must be among {', '.join(PROBES)}, got {unknown}")
    divergence_factor = positive_number(divergence_factor, "divergence_factor", above=1.0, allow_inf=True)
    target = _target(target_loss)
    every = positive_int(probe_every, "probe_every") if probe_every is not None else max(1, steps // 100)
    X = net.check_inputs(X)
    engine = _engine(net, X, backprop)
    S, n, device = net.members, X.shape[0], net.device
    Y = _labels(y, S, n, net.dtype, device)

    if lr is None or check_step:
        lambda_max0 = initial_lambda_max(net, X)  # from G(0): the default step and the stability check
    else:
        lambda_max0 = np.empty(0)  # not computed: GDRun.summary() shows stable_below as NaN
    if lr is None:
        eta = torch.as_tensor(auto_lr(lambda_max0), dtype=torch.float64)
    else:
        eta = lr_vector(lr, S)
        if check_step:
            warn_unstable(eta.numpy(), stability_bound(lambda_max0))
    lr_net = eta.to(device=device, dtype=net.dtype)  # (S,) η_s in the parameters' dtype

    params = dict(net.named_parameters())
    names, tensors = list(params), list(params.values())
    initial = {k: p.detach().clone() for k, p in params.items()}
    members = MemberState(S, device, divergence_factor, target)
    losses = LossHistory(S, device)
    records: list[tuple[int, int, str, float]] = []
    persistent: dict[str, object] = {}
    # the probes' Gram matrices from the hand-derived sweep, at the activations of the step's own forward pass
    layer_grams = engine.layer_grams if engine is not None and engine.exact_grams else None
    on_cpu = device.type == "cpu"  # reading a flag on the host is free there; on an accelerator it synchronises
    bar = tqdm(total=steps, desc="train_gd", unit="step", leave=False,
               disable=None if progress is None else not progress)
    t0 = time.perf_counter()
    k = 0
    for k in range(steps + 1):
        u = net(X) if engine is None else engine.forward()
        residual = u - Y  # (S, n)
        member_loss = 0.5 * residual.pow(2).sum(dim=1)  # (S,) L_s = ½ ‖u_s − y‖²
        loss_now = member_loss.detach().double()
        losses.append(members.observe(k, loss_now))
        probe_now = k % every == 0
        done = k == steps or ((probe_now or k % STOP_CHECK_EVERY == 0) and members.all_finished())
        gradients = _StepGradients(engine, names, tensors, members.active, residual, member_loss)
        if probe_now or done:
            ctx = ProbeContext(net, X, Y, loss_now, gradients.by_name, initial, persistent=persistent,
                               layer_grams=layer_grams)
            _probe(ctx, probes, k, members.active.tolist(), records)
        if done:
            break
        all_active = on_cpu and bool(members.active.all())
        if not (all_active and fused_step(engine, residual, lr_net, gradients.computed)):
            gd_step(tensors, gradients(), lr_net, None if all_active else members.active)
        bar.update(1)
    bar.close()
    return GDRun(net=net, history=pd.DataFrame.from_records(records, columns=["step", "member", "metric", "value"]),
                 losses=losses.numpy(), lr=eta.numpy(), diverged_at=members.diverged_at(),
                 reached_target_at=members.reached_target_at(), steps=k, seconds=time.perf_counter() - t0,
                 lambda_max0=lambda_max0)


def _probe(ctx: ProbeContext, probes: Sequence[str], k: int, alive: list[bool],
           records: list[tuple[int, int, str, float]]) -> None:
    """Run the named probes at step k and append (step, member, metric, value) for the members still alive."""
    for name in probes:
        for metric, values in PROBES[name](ctx).items():
            vals = values.detach().double().cpu().tolist()
            records.extend((k, s, metric, v) for s, v in enumerate(vals) if alive[s])
