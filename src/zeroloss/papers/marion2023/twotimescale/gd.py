"""Full-batch GD with two step sizes for the appendix experiments of Marion & Berthier (docs/theory.md §3.4), in torch.

Two models, ensemble-native (leading dim R = repeats), trained on a fixed sample by full-batch gradient descent
with one step size for the outer weights a and another for the positions u (two plain-SGD optimisers, lr_u = ε·lr_a
in the two-timescale regime):

- additive smoothed-step model, x ∈ [0, 1]^d:   f(x) = Σ_{j≤J} Σ_{k≤d} a_{jk} σ((x_k − u_{jk})/η)   (a, u: (R, J, d))
- ReLU model, x ∈ [0, 1]:                        f(x) = Σ_{j≤J} a_j ReLU(x − u_j)                    (a, u: (R, J))

σ is :func:`zeroloss.activations.cubic_step`, evaluated as one polynomial of the clamped argument
(:func:`cubic_step_poly`). Initialisation [code]: u ∼ U[0, 1], a ∼ 3·U[0, 1], member k drawn from
``default_rng(seed + k)`` (no PyTorch initialiser). Descended and reported [code]: the criterion ‖ŷ − y‖₂ / n, with
its gradients written out by hand (:func:`criterion_and_grad`; tested against autograd), which is several times
faster than autograd through the branchy σ on a 2-core CPU.

The members of :func:`two_optimizer_gd` share one sample; those of :func:`gd_per_seed` each have their own (one
independent run per seed, trained side by side so that the per-operation overhead of an epoch is paid once).
Members never mix: a member's trajectory is the same alone or beside others.

References:
    Marion & Berthier, NeurIPS 2023, Appendix (2-D, 10-D and ReLU experiments); official notebooks
    ``experiment-2d.ipynb``, ``experiment-10d.ipynb``, ``experiment-relu.ipynb``.

Examples:
    >>> run = two_optimizer_gd("additive", d=2, n=200, lr_a=1.0, lr_u=0.01, epochs=20, repeats=2, seed=0, logs=4)
    >>> run.criterion.shape
    (5, 2)
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np
import torch

from zeroloss.errors import ZerolossInputError, choice, positive_int
from zeroloss.papers.marion2023.twotimescale.targets import relu_teacher, sum_of_steps
from zeroloss.threads import intra_op_threads
from zeroloss.train.divergence import within_bounds

MODELS = ("additive", "relu")
#: Intra-op threads for :func:`two_optimizer_gd`. The per-epoch tensors are small (R·n·J·d ≈ 5·10⁴ elements at
#: the tiny scale): one thread runs an epoch in ~0.1–0.3 ms, while two OpenMP threads on the 2-core machine, with
#: other processes busy, were measured ~100× slower (waiting on a busy core). The GD loop runs single-threaded.
GD_THREADS = 1


def cubic_step_poly(z: torch.Tensor) -> torch.Tensor:
    """σ(z) of :func:`zeroloss.activations.cubic_step` as one polynomial of the clamped argument.

    With c = clamp(z, −½, ½): σ = ½ + 3c − 6c|c| + 4c³ (expanding 4(c+½)³ for c ≤ 0 and 1 − 4(½−c)³ for c ≥ 0);
    tested equal to ``cubic_step`` to round-off. Four elementwise ops instead of eight ``where`` branches.
    """
    c = z.clamp(-0.5, 0.5)
    return 0.5 + c * (3.0 - 6.0 * c.abs() + 4.0 * c * c)


def cubic_step_poly_d1(z: torch.Tensor) -> torch.Tensor:
    """σ′(z) = 3 − 12|c| + 12c² = 3(1 − 2|c|)² on c = clamp(z, −½, ½), 0 outside (½ − |c| vanishes there)."""
    w = 0.5 - z.clamp(-0.5, 0.5).abs()
    return 12.0 * w * w


def additive_forward(a: torch.Tensor, u: torch.Tensor, x: torch.Tensor, eta: float) -> torch.Tensor:
    """Σ_{j,k} a_{jk} σ((x_k − u_{jk})/η): a, u (R, J, d), x (n, d) → (R, n)."""
    z = (x[None, :, None, :] - u[:, None, :, :]) / eta
    return (a[:, None, :, :] * cubic_step_poly(z)).sum(dim=(2, 3))


def relu_forward(a: torch.Tensor, u: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """Σ_j a_j ReLU(x − u_j): a, u (R, J), x (n, 1) → (R, n)."""
    return (a[:, None, :] * torch.relu(x[None, :, :1] - u[:, None, :])).sum(dim=2)


class Workspace:
    """Reusable (R, n, J, d) buffers for :func:`criterion_and_grad` on the additive model.

    An epoch needs three arrays of the sample × neuron size (the clamped arguments, σ and σ′ — 8 MB each for the
    paper's 10-D run, n = 10⁴). Allocated afresh every epoch they are often handed back to the kernel and faulted in
    again (glibc serves blocks this large with mmap, and whether its adaptive threshold keeps them on the heap
    depends on the process's allocation history): on the 2-core machine that page-faulting took as much CPU as the
    arithmetic, and was most of marion2023's system time at paper scale. One workspace per run, reused every epoch,
    allocates them once.

    It also keeps the sample repeated over the neurons (:meth:`sample_grid`, a fourth array of that size, built once
    per run), so that x_{ik} − u_{jk} is a
    subtraction with one broadcast operand: with both operands broadcast (x over j, u over i) torch's elementwise
    loop runs over the innermost dimension d alone, unvectorised (measured 8× slower at d = 2, 2.5× at d = 10).
    """

    def __init__(self) -> None:
        self._buffers: dict[str, torch.Tensor] = {}
        self._grid_of: tuple[torch.Tensor, int, int] | None = None  # (x, x's version, J) the grid was built from

    def get(self, name: str, shape: tuple[int, ...], like: torch.Tensor) -> torch.Tensor:
        """The buffer ``name`` with ``shape``, dtype and device of ``like`` (allocated on first use or change)."""
        buf = self._buffers.get(name)
        if buf is None or buf.shape != shape or buf.dtype != like.dtype or buf.device != like.device:
            buf = torch.empty(shape, dtype=like.dtype, device=like.device)
            self._buffers[name] = buf
        return buf

    def sample_grid(self, x: torch.Tensor, neurons: int) -> torch.Tensor:
        """x (R, n, d) repeated over J = ``neurons``: (R, n, J, d), contiguous; rebuilt only when x is another tensor
        or was modified in place since."""
        key = self._grid_of
        if key is None or key[0] is not x or key[1] != x._version or key[2] != neurons:
            grid = x[:, :, None, :].expand(x.shape[0], x.shape[1], neurons, x.shape[2])
            self._buffers["grid"] = grid.contiguous()
            self._grid_of = (x, x._version, neurons)
        return self._buffers["grid"]


def weighted_sum(g: torch.Tensor, features: torch.Tensor) -> torch.Tensor:
    """Σ_i g_{ri} F_{ri…} per member: g (R, n), F (R, n, …) contiguous → (R, …).

    One batched matrix product, the one ``einsum("rn,rn…->r…", g, F)`` runs (bitwise the same result), without
    einsum's per-call parsing, which costs as much as the product at these sizes."""
    R, n = g.shape
    return torch.bmm(g[:, None, :], features.view(R, n, -1)).view((R,) + tuple(features.shape[2:]))


def weighted_features(a: torch.Tensor, features: torch.Tensor) -> torch.Tensor:
    """Σ_{j…} a_{rj…} F_{rij…} per member: a (R, …), F (R, n, …) contiguous → (R, n); the batched matrix product of
    ``einsum("rj…,rnj…->rn", a, F)`` (bitwise the same result) without its parsing."""
    R, n = features.shape[:2]
    return torch.bmm(a.reshape(R, 1, -1), features.view(R, n, -1).transpose(1, 2)).view(R, n)


def criterion_and_grad(model: str, a: torch.Tensor, u: torch.Tensor, x: torch.Tensor, y: torch.Tensor,
                       eta: float, work: Workspace | None = None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The official criterion C = ‖ŷ − y‖₂/n per member and its exact gradients, by hand (no autograd).

    With r = ŷ − y and g = ∂C/∂ŷ = r/(n‖r‖):

        additive:  ∂C/∂a_{jk} = Σ_i g_i σ(z_{ijk}),        ∂C/∂u_{jk} = −(a_{jk}/η) Σ_i g_i σ′(z_{ijk}),
                   z_{ijk} = (x_{ik} − u_{jk})/η;
        relu:      ∂C/∂a_j = Σ_i g_i ReLU(x_i − u_j),     ∂C/∂u_j = −a_j Σ_i g_i 1(x_i > u_j).

    Args:
        a, u: (R, J, d) for ``additive``, (R, J) for ``relu``.
        x: (n, d), one sample shared by the members, or (R, n, d), member r's own sample x[r].
        y: (n,) or (R, n), as x.
        work: buffers reused across calls (:class:`Workspace`); a fresh one per call when None.

    Returns:
        (C (R,), ∂C/∂a, ∂C/∂u) — the gradients shaped like a and u; a member with r = 0 gets gradient 0.
    """
    n = x.shape[-2]
    xs = x if x.dim() == 3 else x[None]  # (R, n, d) or (1, n, d): broadcast over the members
    if model == "additive":
        work = Workspace() if work is None else work
        shape = (u.shape[0], n) + tuple(u.shape[1:])
        c, phi, dphi = (work.get(name, shape, u) for name in ("c", "phi", "dphi"))
        # Everything of size (R, n, J, d) is written into the workspace's three buffers, in place.
        grid = work.sample_grid(xs, u.shape[1])  # x_{ik} at (i, j, k)
        torch.sub(grid, u[:, None, :, :], out=c).div_(eta).clamp_(-0.5, 0.5)  # clamped z_{ijk}
        w = torch.abs(c, out=dphi)  # |c|, turned into σ′ below
        torch.mul(c, c, out=phi).mul_(4.0).sub_(w, alpha=6.0).add_(3.0).mul_(c).add_(0.5)  # σ(z), cubic_step_poly
        dphi = w.neg_().add_(0.5).square_().mul_(12.0)  # σ′(z) = 12(½ − |c|)², cubic_step_poly_d1
        resid = weighted_features(a, phi) - y
    else:
        diff = xs[:, :, :1] - u[:, None, :]  # (R, n, J)
        phi = torch.relu(diff)
        resid = (a[:, None, :] * phi).sum(dim=2) - y
    norm = resid.norm(dim=1)
    g = resid / (n * torch.where(norm > 0, norm, torch.ones_like(norm)))[:, None]  # (R, n)
    if model == "additive":
        grad_a = weighted_sum(g, phi)
        grad_u = -(a / eta) * weighted_sum(g, dphi)
    else:
        grad_a = weighted_sum(g, phi)
        grad_u = -a * weighted_sum(g, phi.sign())  # 1(x_i > u_j) = sign ReLU(x_i − u_j)
    return norm / n, grad_a, grad_u


def make_data(model: str, d: int, n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """The appendix sample: x ∼ U[0, 1]^d (n, d) with the sum-of-steps target, or d = 1 with the ReLU teacher."""
    rng = np.random.default_rng([seed, 1])  # data stream independent of the members' parameter streams
    x = rng.random((n, d))
    return x, (sum_of_steps(x) if model == "additive" else relu_teacher(x[:, 0]))


@dataclass
class GDRunTT:
    """Result of :func:`two_optimizer_gd` or :func:`gd_per_seed`: epochs (L,), criterion (L, R) = ‖ŷ − y‖₂/n, final
    a and u, the data (x (n, d) and y (n,) when shared; (R, n, d) and (R, n) per member), which members diverged,
    wall seconds."""

    epochs: np.ndarray
    criterion: np.ndarray
    a: np.ndarray
    u: np.ndarray
    x: np.ndarray
    y: np.ndarray
    diverged: np.ndarray
    seconds: float

    @property
    def final_criterion(self) -> np.ndarray:
        return self.criterion[-1]


def two_optimizer_gd(model: str, d: int, n: int, lr_a: float, lr_u: float, epochs: int, neurons: int = 10,
                     eta: float = 0.01, repeats: int = 1, seed: int = 0, logs: int = 50,
                     dtype: torch.dtype = torch.float64) -> GDRunTT:
    """Full-batch GD with step lr_a on a and lr_u on u (docs/theory.md §3.4, appendix), all members side by side.

    Args:
        model: ``"additive"`` (smoothed steps in every coordinate; target Σ_k Σ_t 1(x_k > t)) or ``"relu"`` (d = 1,
            ReLU teacher).
        d: input dimension (2 or 10 in the paper; 1 for relu).
        n: sample size (1000, 10⁴).
        lr_a, lr_u: step sizes (standard regime 1.0 and 1.0; two-timescale 1.0 and 0.01).
        epochs: GD steps (300 standard, 5000 two-timescale).
        neurons: J (10).
        eta: smoothing width η (0.01) of the additive model.
        repeats: R members; member k is initialised from ``default_rng(seed + k)``; the sample from ``seed``.
        seed: seed of member 0 and of the sample.
        logs: about how many times the criterion is recorded.
        dtype: training dtype (float64 default).
    """
    repeats = positive_int(repeats, "repeats")
    d, n, epochs, neurons, logs = _checked(model, d, n, lr_a, lr_u, epochs, neurons, eta, logs)
    x, y = make_data(model, d, n, seed)
    a0, u0 = _initial_parameters(model, d, neurons, [seed + k for k in range(repeats)])
    return _train(model, a0, u0, x, y, lr_a, lr_u, epochs, eta, logs, dtype)


def gd_per_seed(model: str, d: int, n: int, lr_a: float, lr_u: float, epochs: int, seeds: list[int],
                neurons: int = 10, eta: float = 0.01, logs: int = 50, dtype: torch.dtype = torch.float64) -> GDRunTT:
    """One independent run per seed, trained side by side: member k has its own sample ``make_data(…, seeds[k])``
    and its own initialisation ``default_rng(seeds[k])``, i.e. it is the run ``two_optimizer_gd(…, repeats=1,
    seed=seeds[k])``. Arguments as :func:`two_optimizer_gd`; x (R, n, d) and y (R, n) in the result."""
    if len(seeds) == 0:
        raise ZerolossInputError("seeds: at least one seed, got none")
    d, n, epochs, neurons, logs = _checked(model, d, n, lr_a, lr_u, epochs, neurons, eta, logs)
    samples = [make_data(model, d, n, seed) for seed in seeds]
    x, y = np.stack([s[0] for s in samples]), np.stack([s[1] for s in samples])
    a0, u0 = _initial_parameters(model, d, neurons, list(seeds))
    return _train(model, a0, u0, x, y, lr_a, lr_u, epochs, eta, logs, dtype)


def _checked(model: str, d: int, n: int, lr_a: float, lr_u: float, epochs: int, neurons: int, eta: float,
             logs: int) -> tuple[int, int, int, int, int]:
    """(d, n, epochs, neurons, logs) as ints after checking every argument of a GD run."""
    choice(model, "model", MODELS)
    d, n, epochs = positive_int(d, "d"), positive_int(n, "n"), positive_int(epochs, "epochs")
    neurons, logs = positive_int(neurons, "neurons"), positive_int(logs, "logs")
    if model == "relu" and d != 1:
        raise ZerolossInputError(f"d: the ReLU model is univariate (d = 1), got {d}")
    for name, value in (("lr_a", lr_a), ("lr_u", lr_u), ("eta", eta)):
        if not (np.isfinite(value) and value > 0):
            raise ZerolossInputError(f"{name}: a positive number, got {value!r}")
    return d, n, epochs, neurons, logs


def _initial_parameters(model: str, d: int, neurons: int, seeds: list[int]) -> tuple[np.ndarray, np.ndarray]:
    """(a0, u0), (R, J, d) for ``additive`` or (R, J) for ``relu``: member k's u ∼ U[0, 1] then a ∼ 3·U[0, 1],
    both from ``default_rng(seeds[k])``."""
    shape = (neurons, d) if model == "additive" else (neurons,)
    init = [np.random.default_rng(seed) for seed in seeds]
    u0 = np.stack([g.random(shape) for g in init])
    a0 = np.stack([3.0 * g.random(shape) for g in init])
    return a0, u0


def _train(model: str, a0: np.ndarray, u0: np.ndarray, x_np: np.ndarray, y_np: np.ndarray, lr_a: float,
           lr_u: float, epochs: int, eta: float, logs: int, dtype: torch.dtype) -> GDRunTT:
    """GD from (a0, u0) on the sample (x, y) (shared or per member, as :func:`criterion_and_grad`), one thread."""
    a, u = torch.tensor(a0, dtype=dtype), torch.tensor(u0, dtype=dtype)
    x, y = torch.tensor(x_np, dtype=dtype), torch.tensor(y_np, dtype=dtype)
    with intra_op_threads(GD_THREADS):
        logged, crit, alive, seconds, a, u = _descend(model, a, u, x, y, lr_a, lr_u, epochs, eta, logs,
                                                      a0.shape[0])
    return GDRunTT(np.array(logged), np.array(crit), a.numpy().copy(), u.numpy().copy(), x_np, y_np,
                   (~alive).numpy(), seconds)


def _descend(model: str, a: torch.Tensor, u: torch.Tensor, x: torch.Tensor, y: torch.Tensor, lr_a: float,
             lr_u: float, epochs: int, eta: float, logs: int, repeats: int):
    """The GD loop of :func:`two_optimizer_gd`: (logged epochs, criteria, alive mask, seconds, final a, final u)."""
    dtype = a.dtype
    schedule = set(np.unique(np.round(np.linspace(0, epochs, logs + 1)).astype(int)).tolist())
    logged, crit = [], []
    alive = torch.ones(repeats, dtype=torch.bool)
    first = None
    t0 = time.perf_counter()
    view = (-1,) + (1,) * (a.dim() - 1)
    work = Workspace()
    for epoch in range(epochs + 1):
        # The official code descends the criterion itself, ‖ŷ − y‖₂/n (not the mean squared error): its gradient
        # r/(n‖r‖) is what makes lr = 1.0 a sensible step. Two plain-SGD optimisers = two step sizes.
        criterion, grad_a, grad_u = criterion_and_grad(model, a, u, x, y, eta, work)
        if first is None:
            first = criterion.clone()
        alive &= within_bounds(criterion, first)
        if epoch in schedule:
            logged.append(epoch)
            crit.append(torch.where(alive, criterion, torch.nan).numpy().copy())
        if epoch == epochs:
            break
        keep = alive.view(view).to(dtype)  # a diverged member stays frozen; NaNs never spread
        a = a - lr_a * torch.nan_to_num(grad_a) * keep
        u = u - lr_u * torch.nan_to_num(grad_u) * keep
    return logged, crit, alive, time.perf_counter() - t0, a, u
