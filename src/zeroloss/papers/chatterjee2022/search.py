"""Each initialisation's best step: a grid placed relative to its own stability limit, stopped at the first hit.

For the ½-loss L = ½Σ(u − y)² that :func:`zeroloss.train_gd` minimises, gradient descent linearised at w₀ is
r_{k+1} = (I − ηΘ(w₀)) r_k with Θ(w₀) the full Gram matrix (the empirical NTK, all layers): it is stable iff
η < 2/λ_max(Θ(w₀)). Each run's grid is ``fractions`` × 2/λ_max(Θ(w₀)) of *its own* w₀, so an initialisation whose
Θ is a million times stiffer (Chatterjee's positive init has λ_max ∝ M²) is searched on the same relative grid as
the others and cannot fall off it.

All grid points of all runs of a batch train side by side as one ensemble. The *best* step of a run is the grid
point that first reaches F ≤ target·F(w₀); once one of a run's members gets there, the run's other members can
only be slower, so they are dropped (this is what makes the search cheap: a run costs its best member's steps).
A member is diverged when its loss is non-finite or above :data:`~zeroloss.train.divergence.DIVERGENCE_FACTOR` × its
initial loss. A run that has no member at the target after ``budget`` steps is *censored*: its best count is only
known to exceed the budget. The ensemble is trained in chunks (:data:`FIRST_CHUNK`, doubling up to :data:`MAX_CHUNK`
steps) between which finished runs and diverged members are removed.

Examples:
    >>> import torch
    >>> from zeroloss.data import sphere_data
    >>> from zeroloss.nets import FeedForward
    >>> X, y = sphere_data(n=4, d=8, seed=0)
    >>> nets = [FeedForward(8, [8], "tanh", seed=s, dtype=torch.float64, init="lecun") for s in (0, 1)]
    >>> found = best_steps(nets, X, y, fractions=[0.25, 0.5, 1.0], budget=2000, target=1e-6)
    >>> [r.reached for r in found], found[0].steps_to_target > 0
    ([True, True], True)
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch

from zeroloss.kernels.empirical import gram
from zeroloss.nets.base import EnsembleNet, stack_members
from zeroloss.spectra import eigenvalues
from zeroloss.train.divergence import within_bounds
from zeroloss.train.gd import train_gd

#: A member whose loss exceeds this multiple of its initial loss (or is non-finite) is diverged: train_gd's rule.
#: Steps of the first chunk; each next chunk doubles, up to MAX_CHUNK (the Python cost of a chunk is a few ms).
FIRST_CHUNK = 64
MAX_CHUNK = 1024


@dataclass
class BestStep:
    """The outcome of the grid search for one run (one initialised net).

    Attributes:
        lambda_max, lambda_min: extreme eigenvalues of Θ(w₀) (float64).
        lr_limit: 2/λ_max(Θ(w₀)), the linear stability limit of train_gd's lr.
        fractions: the grid, as multiples of ``lr_limit``.
        best: index in ``fractions`` of the best member (None when every member diverged).
        steps_to_target: first step with F ≤ target·F(w₀) of the best member; None when censored.
        steps_run: steps the run was trained for (its best count, or the budget).
        diverged: grid indices that diverged.
        curve: (steps_run + 1,) F_k/F_0 of the best member (or, when censored, of the member lowest at the end).
    """

    lambda_max: float
    lambda_min: float
    lr_limit: float
    fractions: list[float]
    best: int | None = None
    steps_to_target: int | None = None
    steps_run: int = 0
    diverged: list[int] = field(default_factory=list)
    curve: np.ndarray = field(default_factory=lambda: np.empty(0))

    @property
    def reached(self) -> bool:
        return self.steps_to_target is not None

    @property
    def best_lr(self) -> float | None:
        return None if self.best is None else self.fractions[self.best] * self.lr_limit

    @property
    def best_at_grid_edge(self) -> bool:
        """The best step is the smallest or the largest of the grid (a wider grid might do better)."""
        return self.best is not None and self.best in (0, len(self.fractions) - 1)


def theta_extremes(net: EnsembleNet, X: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
    """(λ_max, λ_min) of the full Gram Θ(w₀) of every member, float64: shapes (S,), (S,)."""
    ev = eigenvalues(gram(net, X, "all")).cpu().numpy()
    return ev[:, -1], ev[:, 0]


def best_steps(nets: list[EnsembleNet], X: torch.Tensor, y: torch.Tensor, fractions: list[float], budget: int,
               target: float) -> list[BestStep]:
    """The best grid step of each single-member net (see the module docstring); the nets are not modified.

    Args:
        nets: single-member nets of one architecture (any initialisations).
        X: (n, d) inputs; y: (n,) labels.
        fractions: the grid as multiples of each net's 2/λ_max(Θ(w₀)).
        budget: the most steps a run is trained for.
        target: the relative target F ≤ target·F(w₀).

    Returns:
        One :class:`BestStep` per net, in order.
    """
    G = len(fractions)
    lam_max, lam_min = theta_extremes(stack_members(nets), X)
    results = [BestStep(float(hi), float(lo), 2.0 / float(hi), list(fractions)) for hi, lo in zip(lam_max, lam_min,
                                                                                                  strict=True)]
    owner = [r for r in range(len(nets)) for _ in range(G)]  # member → run
    lrs = np.array([f * res.lr_limit for res in results for f in fractions])
    alive = list(range(len(owner)))
    ensemble = stack_members([nets[r] for r in owner])
    curves: dict[int, list[np.ndarray]] = {m: [] for m in alive}
    start: dict[int, float] = {}
    hits: dict[int, tuple[int, int]] = {}  # run → (step, member)
    done, chunk = 0, FIRST_CHUNK
    while alive and done < budget:
        steps = min(chunk, budget - done)
        # the grid reaches past 2/λ_max(Θ(w₀)) on purpose (the best step is sought), and λ_max is known already:
        # check_step=False skips train_gd's own Gram of G(0) at every chunk
        run = train_gd(ensemble, X, y, lrs[alive], steps, probes=[], progress=False,
                       divergence_factor=float("inf"), check_step=False)
        losses = run.losses  # (steps + 1, len(alive)); the rule below is applied against each member's own L₀
        for j, m in enumerate(alive):
            col = losses[:, j] if done == 0 else losses[1:, j]
            if done == 0:
                start[m] = float(col[0])
            curves[m].append(col)
            bad = np.nonzero(~within_bounds(col, start[m]))[0]
            good = col if not bad.size else col[: bad[0]]
            hit = np.nonzero(good <= target * start[m])[0]
            if hit.size:
                step = done + int(hit[0]) + (0 if done == 0 else 1)
                r = owner[m]
                if r not in hits or step < hits[r][0]:
                    hits[r] = (step, m)
            if bad.size:
                results[owner[m]].diverged.append(m % G)
        done += run.steps
        keep = [j for j, m in enumerate(alive) if owner[m] not in hits and m % G not in results[owner[m]].diverged]
        if len(keep) < len(alive):
            for j, m in enumerate(alive):
                if j not in keep and (owner[m] not in hits or hits[owner[m]][1] != m):
                    curves.pop(m, None)  # a dropped member's curve is not needed (the best one's is kept)
            if keep:
                ensemble = stack_members([ensemble.member(j) for j in keep])
            alive = [alive[j] for j in keep]
        chunk = min(2 * chunk, MAX_CHUNK)
    for r, res in enumerate(results):
        res.diverged.sort()
        if r in hits:
            step, m = hits[r]
            res.best, res.steps_to_target, res.steps_run = m % G, step, step
        else:
            res.steps_run = done
            members = [m for m in alive if owner[m] == r]
            if members:  # censored: the member lowest at the end carries the curve
                finals = [np.concatenate(curves[m])[-1] for m in members]
                m = members[int(np.argmin(finals))]
                res.best = m % G
        if res.best is not None:
            m = r * G + res.best
            res.curve = np.concatenate(curves[m])[: res.steps_run + 1] / start[m]
    return results
