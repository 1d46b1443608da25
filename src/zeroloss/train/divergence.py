"""The one divergence rule of every training loop in zeroloss.

A run (or one member of an ensemble, one repeat, one point of a step search) has diverged at step k when its loss
is non-finite or exceeds :data:`DIVERGENCE_FACTOR` × its own step-0 loss. The factor is large on purpose: GD at a
stable step can rise above L(0) for a while (the catapult phase), and a blow-up past 10⁶ × L(0) does not come back
in float64 within any budget used here. The loops that apply it: :func:`zeroloss.train_gd` (per member, with an
overridable factor), :func:`zeroloss.diagnose`, Chatterjee's best-step search and the two-timescale GD.

Examples:
    >>> import math
    >>> within_bounds(3.0, 1.0), within_bounds(math.nan, 1.0), within_bounds(2e6, 1.0)
    (True, False, False)
"""

from __future__ import annotations

import math
from typing import TypeVar

import numpy as np
import torch

#: A loss above this multiple of its step-0 loss marks a divergence.
DIVERGENCE_FACTOR = 1e6

Loss = TypeVar("Loss", float, np.ndarray, torch.Tensor)


def within_bounds(loss: Loss, initial: Loss | float, factor: float = DIVERGENCE_FACTOR) -> bool | Loss:
    """True where ``loss`` is finite and ≤ ``factor`` × ``initial`` (elementwise for arrays and tensors)."""
    if isinstance(loss, torch.Tensor):
        return torch.isfinite(loss) & (loss <= factor * initial)
    if isinstance(loss, np.ndarray):
        return np.isfinite(loss) & (loss <= factor * initial)
    return math.isfinite(loss) and loss <= factor * initial
