"""Full-batch gradient descent on an ensemble, the papers' way (Du et al. §1.2 Training; Chatterjee §2.1).

    L_s(θ_s) = ½ Σ_i (u_si − y_i)²,   θ_s(k+1) = θ_s(k) − η_s ∇L_s(θ_s(k)),   every layer trained (a included).

All S members take their step together: the total loss Σ_s L_s is a sum over independent members, so one
backward pass gives every member its own gradient, and η is a vector of per-member step sizes. A member whose
loss becomes non-finite or exceeds ``divergence_factor`` × its initial loss is marked diverged at that step and
frozen (its parameters are no longer updated); the others go on.

Gradients come from the hand-derived backward sweep of :mod:`zeroloss.train.backprop` for Du's three nets and
Chatterjee's feedforward net (which, on the CPU, also writes the update into the weights inside its matmuls), and
from ``torch.autograd.grad`` for other nets (user subclasses); ``backprop="autograd"`` forces the latter.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import torch
from tqdm.auto import tqdm

from zeroloss.errors import ZerolossInputError, positive_int
from zeroloss.nets.base import EnsembleNet
from zeroloss.train.backprop import BACKPROPS, Backprop, analytic_backprop
from zeroloss.train.probes import DEFAULT_PROBES, PROBES, ProbeContext

#: A member whose loss exceeds this multiple of its step-0 loss is declared diverged (issue #2's rule).
DIVERGENCE_FACTOR = 1e6
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
    """

    net: EnsembleNet
    history: pd.DataFrame
    losses: np.ndarray
    lr: np.ndarray
    diverged_at: dict[int, int] = field(default_factory=dict)
    reached_target_at: dict[int, int] = field(default_factory=dict)
    steps: int = 0
    seconds: float = 0.0

    @property
    def final_loss(self) -> np.ndarray:
        """(S,) last finite loss of each member (its loss when it diverged is not used: NaN there)."""
        return self.losses[-1]

    def summary(self) -> pd.DataFrame:
        """One row per member: lr, initial and final loss, diverged (step or None), steps to the target."""
        rows = []
        for s in range(self.losses.shape[1]):
            rows.append({
                "member": s,
                "lr": float(self.lr[s]),
                "initial_loss": float(self.losses[0, s]),
                "final_loss": float(self.losses[-1, s]),
                "diverged_at": self.diverged_at.get(s),
                "reached_target_at": self.reached_target_at.get(s),
            })
        return pd.DataFrame(rows)

    def metric(self, name: str) -> pd.DataFrame:
        """History of one metric as a (step × member) table."""
        sub = self.history[self.history["metric"] == name]
        if sub.empty:
            raise ZerolossInputError(f"metric: not in the history; recorded: {sorted(self.history['metric'].unique())}")
        return sub.pivot(index="step", columns="member", values="value")


def _lr_vector(lr: float | Sequence[float] | torch.Tensor, members: int) -> torch.Tensor:
    values = torch.as_tensor(lr, dtype=torch.float64).flatten()
    if values.numel() == 1:
        values = values.expand(members).clone()
    if values.numel() != members:
        raise ZerolossInputError(f"lr: must be a scalar or one value per member ({members}), got {values.numel()}")
    if not torch.isfinite(values).all() or (values <= 0).any():
        raise ZerolossInputError(f"lr: every step size must be positive and finite, got {values.tolist()}")
    return values


def _labels(y: torch.Tensor, members: int, n: int, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    y = torch.as_tensor(y)
    if y.shape not in ((n,), (members, n)):
        raise ZerolossInputError(f"y: must have shape ({n},) or ({members}, {n}), got {tuple(y.shape)}")
    if not torch.isfinite(y).all():
        raise ZerolossInputError("y: contains NaN or inf")
    return y.to(dtype=dtype, device=device)


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
    lr: float | Sequence[float] | torch.Tensor,
    steps: int,
    probe_every: int | None = None,
    target_loss: float | None = None,
    probes: Sequence[str] = DEFAULT_PROBES,
    divergence_factor: float = DIVERGENCE_FACTOR,
    progress: bool | None = None,
    backprop: str = "auto",
) -> GDRun:
    """Full-batch gradient descent on L = ½ Σ (u − y)² for every member, all layers trained.

    Args:
        net: ensemble net (updated in place).
        X: inputs (n, d) or (n, channels, positions).
        y: labels (n,) shared by the members, or (S, n).
        lr: a step size, or one per member (S,).
        steps: maximum number of steps.
        probe_every: probe schedule (default: about 100 probes over the run); step 0 and the last step are
            always probed.
        target_loss: stop once every non-diverged member has loss ≤ target_loss (checked every
            :data:`STOP_CHECK_EVERY` steps and at probe steps; ``reached_target_at`` is exact).
        probes: names from :data:`zeroloss.train.probes.PROBES`.
        divergence_factor: loss > factor × initial loss (or non-finite) marks a member diverged.
        progress: tqdm bar (None: only on a terminal).
        backprop: ``"auto"`` (the hand-derived backward of :mod:`zeroloss.train.backprop` where the net has one,
            else autograd), ``"analytic"`` (require it) or ``"autograd"``. They agree to round-off.

    Returns:
        A :class:`GDRun` with the tidy history.

    Example:
        >>> from zeroloss.nets import FullyConnected
        >>> from zeroloss.data import sphere_data
        >>> X, y = sphere_data(n=8, d=4, seed=0)
        >>> net = FullyConnected(d=4, width=128, depth=2, members=2, dtype=torch.float64)
        >>> run = train_gd(net, X, y, lr=[0.1, 0.2], steps=50, probes=["loss"], progress=False)
        >>> bool((run.final_loss < run.losses[0]).all())
        True
    """
    steps = positive_int(steps, "steps")
    unknown = [p for p in probes if p not in PROBES]
    if unknown:
        raise ZerolossInputError(f"probes: must be among {', '.join(PROBES)}, got {unknown}")
    if backprop not in BACKPROP_MODES:
        raise ZerolossInputError(f"backprop: must be one of {', '.join(BACKPROP_MODES)}, got {backprop!r}")
    X = net.check_inputs(X)
    engine = None if backprop == "autograd" else analytic_backprop(net, X)
    if engine is None and backprop == "analytic":
        available = ", ".join(cls.__name__ for cls in BACKPROPS)
        raise ZerolossInputError(f"backprop: 'analytic' is available for {available}, not {type(net).__name__}; "
                                 f"use 'auto' or 'autograd'")
    S, n = net.members, X.shape[0]
    Y = _labels(y, S, n, net.dtype, net.device)
    eta = _lr_vector(lr, S).to(device=net.device)
    every = probe_every if probe_every is not None else max(1, steps // 100)
    positive_int(every, "probe_every")
    params = dict(net.named_parameters())
    initial = {k: p.detach().clone() for k, p in params.items()}
    device = net.device
    active = torch.ones(S, dtype=torch.bool, device=device)
    # Bookkeeping stays on the device: the loop synchronises with the host only at probe steps and every
    # STOP_CHECK_EVERY steps (to decide whether to stop), never every step.
    losses = torch.full((steps + 1, S), float("nan"), dtype=torch.float64, device=device)
    diverged_step = torch.full((S,), -1, dtype=torch.long, device=device)
    reached_step = torch.full((S,), -1, dtype=torch.long, device=device)
    records: list[tuple[int, int, str, float]] = []
    persistent: dict[str, object] = {}
    run = GDRun(net=net, history=pd.DataFrame(), losses=np.empty(0), lr=eta.cpu().numpy())
    start_loss: torch.Tensor | None = None
    t0 = time.perf_counter()
    bar = tqdm(total=steps, desc="train_gd", unit="step", leave=False,
               disable=None if progress is None else not progress)
    k = 0
    names, tensors = list(params), list(params.values())
    # θ ← θ − η_s g in one fused in-place pass per parameter (addcmul_), with g zeroed for stopped members:
    # their gradients may be NaN (their forward pass is), so they are masked rather than multiplied by 0. On the
    # CPU, reading whether every member is still active costs nothing, so the mask (one more pass over every
    # gradient) is skipped while none has stopped; on an accelerator that read would synchronise with the host
    # every step, so the mask is always applied there.
    #
    # With the hand-derived backward on the CPU, while every member is active and no probe has asked for this
    # step's gradient (only pl_ratio does), the step goes further: the sweep starts from η_s r_s and subtracts
    # each gradient inside the matmul that computes it.
    neg_eta = [(-eta).to(p.dtype).view(-1, *([1] * (p.ndim - 1))) for p in tensors]
    eta_column = eta.to(net.dtype).unsqueeze(-1)  # (S, 1)
    free_reads = device.type == "cpu"
    for k in range(steps + 1):
        u = net(X) if engine is None else engine.forward()
        residual = u - Y  # (S, n)
        member_loss = 0.5 * residual.pow(2).sum(dim=1)  # (S,)
        loss_now = member_loss.detach().double()
        if start_loss is None:
            start_loss = loss_now.clone()
        blown = active & (~torch.isfinite(loss_now) | (loss_now > divergence_factor * start_loss))
        diverged_step = torch.where(blown, k, diverged_step)
        active &= ~blown
        losses[k] = torch.where(active, loss_now, torch.full_like(loss_now, float("nan")))
        if target_loss is not None:
            reached_step = torch.where(active & (loss_now <= target_loss) & (reached_step < 0), k, reached_step)
        probe_now = k % every == 0
        done = k == steps
        if not done and (probe_now or k % STOP_CHECK_EVERY == 0):
            finished = ~active | (reached_step >= 0) if target_loss is not None else ~active
            done = bool(finished.all())
        step_gradients = _StepGradients(engine, names, tensors, active, residual, member_loss)
        if probe_now or done:
            ctx = ProbeContext(net, X, Y, loss_now, step_gradients.by_name, initial, persistent=persistent)
            alive = active.tolist()
            for name in probes:
                for metric, values in PROBES[name](ctx).items():
                    vals = values.detach().double().cpu().tolist()
                    records.extend((k, s, metric, v) for s, v in enumerate(vals) if alive[s])
        if done:
            break
        masked = not (free_reads and bool(active.all()))
        if engine is not None and not masked and not step_gradients.computed:
            engine.step(residual * eta_column)
        else:
            grads = step_gradients()  # outside no_grad: autograd builds its last node here
            with torch.no_grad():
                for p, g, coef in zip(tensors, grads, neg_eta, strict=True):
                    p.addcmul_(torch.where(active.view(-1, *([1] * (p.ndim - 1))), g, 0.0) if masked else g, coef)
        bar.update(1)
    bar.close()
    run.seconds = time.perf_counter() - t0
    run.steps = k
    run.losses = losses[: k + 1].cpu().numpy()
    run.diverged_at = {s: int(v) for s, v in enumerate(diverged_step.tolist()) if v >= 0}
    run.reached_target_at = {s: int(v) for s, v in enumerate(reached_step.tolist()) if v >= 0}
    run.history = pd.DataFrame.from_records(records, columns=["step", "member", "metric", "value"])
    return run
