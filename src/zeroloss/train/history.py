"""What :func:`zeroloss.train_gd` keeps along a run: each member's state (active, diverged, on target) and the
per-step loss history, which grows in chunks as the run goes — a budget of 10¹² steps allocates nothing up front.

Both stay on the net's device: the loop reads them on the host only at probe steps and every few steps (to decide
whether to stop), never every step.
"""

from __future__ import annotations

import numpy as np
import torch

from zeroloss.train.divergence import within_bounds

#: Rows (steps) per chunk of the loss history: 4096 steps × S members × 8 bytes (32 KiB per member).
LOSS_CHUNK_ROWS = 4096
#: A member whose final loss is at most CONVERGED_ROUNDOFF² × eps² × L(0) (eps of the training dtype) is at the
#: round-off floor: its residual is within 10⁴ round-offs of the predictions, so "no progress" there is not a stall.
CONVERGED_ROUNDOFF = 1e4
#: A member stalled when, over the second half of its run, its loss fell by less than this fraction.
STALL_PROGRESS = 0.01


class LossHistory:
    """Per-step losses of S members, (steps done + 1, S) float64, stored on the device in chunks.

    Examples:
        >>> h = LossHistory(members=2, device=torch.device("cpu"), chunk_rows=2)
        >>> for k in range(3):
        ...     h.append(torch.tensor([1.0, 2.0]) / (k + 1))
        >>> h.numpy().shape, h.allocated_rows
        ((3, 2), 4)
    """

    def __init__(self, members: int, device: torch.device, chunk_rows: int = LOSS_CHUNK_ROWS) -> None:
        self.members, self.device, self.chunk_rows = members, device, chunk_rows
        self.chunks: list[torch.Tensor] = []
        self.rows = 0

    @property
    def allocated_rows(self) -> int:
        """Rows allocated so far (at most one chunk beyond the rows used)."""
        return len(self.chunks) * self.chunk_rows

    def append(self, row: torch.Tensor) -> None:
        """Store one step's (S,) losses (a device-side copy: no host synchronisation)."""
        if self.rows == self.allocated_rows:
            self.chunks.append(torch.empty(self.chunk_rows, self.members, dtype=torch.float64, device=self.device))
        self.chunks[-1][self.rows % self.chunk_rows] = row
        self.rows += 1

    def numpy(self) -> np.ndarray:
        """The stored rows, (rows, S) float64, on the host."""
        if not self.chunks:
            return np.empty((0, self.members))
        return torch.cat(self.chunks).narrow(0, 0, self.rows).cpu().numpy()


class MemberState:
    """Which members are still training, and when each diverged or first reached the target.

    A member diverges at step k when its loss is non-finite or exceeds ``divergence_factor`` × its step-0 loss;
    from then on it is inactive (frozen) and its recorded losses are NaN.
    """

    def __init__(self, members: int, device: torch.device, divergence_factor: float,
                 target_loss: float | None) -> None:
        self.active = torch.ones(members, dtype=torch.bool, device=device)
        self.diverged_step = torch.full((members,), -1, dtype=torch.long, device=device)
        self.reached_step = torch.full((members,), -1, dtype=torch.long, device=device)
        self.divergence_factor, self.target_loss = divergence_factor, target_loss
        self.start_loss: torch.Tensor | None = None
        self._nan: torch.Tensor | None = None

    def observe(self, k: int, loss: torch.Tensor) -> torch.Tensor:
        """Update the state with step k's (S,) float64 losses; return them with NaN for inactive members.

        Called once per step: a handful of small in-place tensor operations (no host synchronisation)."""
        if self.start_loss is None:
            self.start_loss = loss.clone()
            self._nan = torch.full_like(loss, float("nan"))
        blown = self.active & ~within_bounds(loss, self.start_loss, self.divergence_factor)
        self.diverged_step.masked_fill_(blown, k)  # blown members were active: their step was still −1
        self.active &= ~blown
        if self.target_loss is not None:
            self.reached_step.masked_fill_(self.active & (loss <= self.target_loss) & (self.reached_step < 0), k)
        return torch.where(self.active, loss, self._nan)

    def all_finished(self) -> bool:
        """Whether every member has stopped: diverged, or (with a target) reached it. Synchronises with the host."""
        finished = ~self.active
        if self.target_loss is not None:
            finished = finished | (self.reached_step >= 0)
        return bool(finished.all())

    def diverged_at(self) -> dict[int, int]:
        return {s: int(v) for s, v in enumerate(self.diverged_step.tolist()) if v >= 0}

    def reached_target_at(self) -> dict[int, int]:
        return {s: int(v) for s, v in enumerate(self.reached_step.tolist()) if v >= 0}


def member_status(losses: np.ndarray, diverged: bool, reached_target: bool, eps: float) -> str:
    """One member's outcome from its loss history (steps + 1,), as :meth:`zeroloss.GDRun.summary` reports it.

    * ``"diverged"``: marked diverged (non-finite loss, or above the divergence factor × L(0)).
    * ``"reached target"``: its loss got to ``target_loss``.
    * ``"converged"``: final loss ≤ (:data:`CONVERGED_ROUNDOFF` · eps)² · L(0), the round-off floor of the dtype.
    * ``"stalled"``: no progress — over the second half of the run, L(K) > (1 − :data:`STALL_PROGRESS`) · L(⌊K/2⌋)
      (it fell by less than 1 %), while above that floor. A run of K = 0 steps has made no progress either.
    * ``"decreasing"``: still making progress when the step budget ran out.

    Examples:
        >>> member_status(np.array([8.0, 4.0, 2.0, 1.0]), False, False, eps=2.2e-16)
        'decreasing'
        >>> member_status(np.array([8.0, 7.9, 7.9, 7.9]), False, False, eps=2.2e-16)
        'stalled'
    """
    if diverged:
        return "diverged"
    if reached_target:
        return "reached target"
    final, start = losses[-1], losses[0]
    if final <= (CONVERGED_ROUNDOFF * eps) ** 2 * start:
        return "converged"
    K = len(losses) - 1
    if K == 0 or final > (1.0 - STALL_PROGRESS) * losses[K // 2]:
        return "stalled"
    return "decreasing"
