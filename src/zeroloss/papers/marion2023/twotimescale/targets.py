"""Targets of Marion & Berthier's experiments (docs/theory.md §3.2, §3.4): piecewise-constant f* on [0, 1] and friends.

- :class:`PiecewiseConstant`: f* from its jump positions ``0 < v₁ < … < v_n < 1`` and its ``n + 1`` values, with
  the presets ``"paper"`` (the paper's text: values 1, 4, 1, 2, 1, 4 at jumps .2, .35, .5, .65, .8; the default)
  and ``"code"`` (the official code's teacher, values 1, 5, 1, 3, 1, 5 at the same jumps).
- :func:`sum_of_steps`: the appendix's multi-dimensional target Σ_k [1(x_k>.3) + 1(x_k>.5) + 1(x_k>.7)].
- :func:`relu_teacher`: the appendix's ReLU teacher ReLU(x−.3) − 2 ReLU(x−.5) + 3 ReLU(x−.7).

References:
    Marion & Berthier, "Leveraging the two-timescale regime to demonstrate convergence of neural networks",
    NeurIPS 2023, §5 and Appendix; official code github.com/PierreMarion23/two-timescale-nn.

Examples:
    >>> f = target_preset("paper")
    >>> f(np.array([0.1, 0.4, 0.9])).tolist()
    [1.0, 1.0, 4.0]
    >>> f.jump_sizes.tolist()
    [3.0, -3.0, 1.0, -1.0, 3.0]
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from zeroloss.errors import ZerolossInputError, choice

#: Jump positions shared by both presets (docs/theory.md §3.2).
PRESET_JUMPS = (0.2, 0.35, 0.5, 0.65, 0.8)
#: Named targets: preset name → values on the n + 1 constant pieces.
PRESET_VALUES = {"paper": (1.0, 4.0, 1.0, 2.0, 1.0, 4.0), "code": (1.0, 5.0, 1.0, 3.0, 1.0, 5.0)}


@dataclass(frozen=True)
class PiecewiseConstant:
    """A piecewise-constant target f* on [0, 1].

    Args:
        jumps: (n,) strictly increasing jump positions inside (0, 1).
        values: (n + 1,) the value of f* on [0, v₁), [v₁, v₂), …, [v_n, 1].

    Raises:
        ZerolossInputError: unsorted or out-of-range jumps, a length mismatch, non-finite values.
    """

    jumps: np.ndarray
    values: np.ndarray

    def __post_init__(self) -> None:
        jumps = np.asarray(self.jumps, dtype=np.float64).reshape(-1)
        values = np.asarray(self.values, dtype=np.float64).reshape(-1)
        if not (np.all(np.isfinite(jumps)) and np.all((jumps > 0) & (jumps < 1)) and np.all(np.diff(jumps) > 0)):
            raise ZerolossInputError(f"jumps: strictly increasing positions inside (0, 1), got {jumps.tolist()}")
        if values.shape[0] != jumps.shape[0] + 1 or not np.all(np.isfinite(values)):
            raise ZerolossInputError(f"values: {jumps.shape[0] + 1} finite numbers (one per constant piece), "
                                     f"got {values.tolist()}")
        object.__setattr__(self, "jumps", jumps)
        object.__setattr__(self, "values", values)

    def __call__(self, x: np.ndarray) -> np.ndarray:
        """f*(x) for any array of x (right-continuous: f*(v_i) is the value after the jump)."""
        return self.values[np.searchsorted(self.jumps, np.asarray(x, dtype=np.float64), side="right")]

    @property
    def jump_sizes(self) -> np.ndarray:
        """(n,) Δf_i = f*(v_i⁺) − f*(v_i⁻)."""
        return np.diff(self.values)

    @property
    def edges(self) -> np.ndarray:
        """(n + 2,) the piece boundaries 0, v₁, …, v_n, 1."""
        return np.concatenate([[0.0], self.jumps, [1.0]])

    def pieces(self) -> list[tuple[float, float]]:
        """The constant pieces as (left, right) pairs: [0, v₁), …, [v_n, 1]."""
        e = self.edges
        return [(float(e[i]), float(e[i + 1])) for i in range(len(e) - 1)]


def target_preset(name: str = "paper") -> PiecewiseConstant:
    """The named target: ``"paper"`` (values 1, 4, 1, 2, 1, 4; default) or ``"code"`` (1, 5, 1, 3, 1, 5)."""
    choice(name, "target", tuple(PRESET_VALUES))
    return PiecewiseConstant(np.array(PRESET_JUMPS), np.array(PRESET_VALUES[name]))


#: Thresholds of the appendix's multi-dimensional target, per coordinate.
STEP_THRESHOLDS = (0.3, 0.5, 0.7)


def sum_of_steps(x: np.ndarray) -> np.ndarray:
    """Σ_k Σ_{t ∈ (.3, .5, .7)} 1(x_k > t) for x of shape (..., d) → (...). Appendix, d = 2 and d = 10."""
    x = np.asarray(x, dtype=np.float64)
    return sum((x > t).astype(np.float64) for t in STEP_THRESHOLDS).sum(axis=-1)


#: (kink position, slope change) of the appendix's ReLU teacher.
RELU_TEACHER = ((0.3, 1.0), (0.5, -2.0), (0.7, 3.0))


def relu_teacher(x: np.ndarray) -> np.ndarray:
    """ReLU(x − .3) − 2 ReLU(x − .5) + 3 ReLU(x − .7), elementwise. Appendix, d = 1."""
    x = np.asarray(x, dtype=np.float64)
    return sum(c * np.maximum(x - p, 0.0) for p, c in RELU_TEACHER)
