"""Full-batch GD with two step sizes for the appendix experiments of Marion & Berthier (MATH §3.4), in torch.

Two models, ensemble-native (leading dim R = repeats), trained on a fixed sample by full-batch gradient descent
with one step size for the outer weights a and another for the positions u (two plain-SGD optimisers, lr_u = ε·lr_a
in the two-timescale regime):

- additive smoothed-step model, x ∈ [0, 1]^d:   f(x) = Σ_{j≤J} Σ_{k≤d} a_{jk} σ((x_k − u_{jk})/η)   (a, u: (R, J, d))
- ReLU model, x ∈ [0, 1]:                        f(x) = Σ_{j≤J} a_j ReLU(x − u_j)                    (a, u: (R, J))

σ is :func:`zeroloss.activations.cubic_step`. Initialisation [code]: u ∼ U[0, 1], a ∼ 3·U[0, 1], member k drawn
from ``default_rng(seed + k)`` (no PyTorch initialiser). Loss: the mean squared error over the sample; reported
criterion [code]: ‖ŷ − y‖₂ / n.

References:
    Marion & Berthier, NeurIPS 2023, Appendix (2-D, 10-D and ReLU experiments); official notebooks
    ``experiment-2d.ipynb``, ``experiment-10d.ipynb``, ``experiment-relu.ipynb``.

Example:
    >>> run = two_optimizer_gd("additive", d=2, n=200, lr_a=1.0, lr_u=0.01, epochs=20, repeats=2, seed=0, logs=4)
    >>> run.criterion.shape
    (5, 2)
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np
import torch

from zeroloss.activations import get_activation
from zeroloss.errors import ZerolossInputError, choice, positive_int
from zeroloss.twotimescale.targets import relu_teacher, sum_of_steps

MODELS = ("additive", "relu")
#: A member whose criterion exceeds this many times its initial value, or is not finite, is frozen as diverged.
DIVERGENCE_FACTOR = 1e6


def additive_forward(a: torch.Tensor, u: torch.Tensor, x: torch.Tensor, eta: float) -> torch.Tensor:
    """Σ_{j,k} a_{jk} σ((x_k − u_{jk})/η): a, u (R, J, d), x (n, d) → (R, n)."""
    sigma = get_activation("cubic_step").fn
    z = (x[None, :, None, :] - u[:, None, :, :]) / eta
    return (a[:, None, :, :] * sigma(z)).sum(dim=(2, 3))


def relu_forward(a: torch.Tensor, u: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """Σ_j a_j ReLU(x − u_j): a, u (R, J), x (n, 1) → (R, n)."""
    return (a[:, None, :] * torch.relu(x[None, :, :1] - u[:, None, :])).sum(dim=2)


def make_data(model: str, d: int, n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """The appendix sample: x ∼ U[0, 1]^d (n, d) with the sum-of-steps target, or d = 1 with the ReLU teacher."""
    rng = np.random.default_rng([seed, 1])  # data stream independent of the members' parameter streams
    x = rng.random((n, d))
    return x, (sum_of_steps(x) if model == "additive" else relu_teacher(x[:, 0]))


@dataclass
class GDRunTT:
    """Result of :func:`two_optimizer_gd`: epochs (L,), criterion (L, R) = ‖ŷ − y‖₂/n, final a and u, the data,
    which members diverged, wall seconds."""

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
    """Full-batch GD with step lr_a on a and lr_u on u (MATH §3.4, appendix), all members side by side.

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
    choice(model, "model", MODELS)
    d, n, epochs = positive_int(d, "d"), positive_int(n, "n"), positive_int(epochs, "epochs")
    neurons, repeats, logs = positive_int(neurons, "neurons"), positive_int(repeats, "repeats"), positive_int(logs,
                                                                                                            "logs")
    if model == "relu" and d != 1:
        raise ZerolossInputError(f"d: the ReLU model is univariate (d = 1), got {d}")
    for name, value in (("lr_a", lr_a), ("lr_u", lr_u), ("eta", eta)):
        if not (np.isfinite(value) and value > 0):
            raise ZerolossInputError(f"{name}: a positive number, got {value!r}")
    x_np, y_np = make_data(model, d, n, seed)
    shape = (neurons, d) if model == "additive" else (neurons,)
    init = [np.random.default_rng(seed + k) for k in range(repeats)]
    u0 = np.stack([g.random(shape) for g in init])
    a0 = np.stack([3.0 * g.random(shape) for g in init])
    a = torch.tensor(a0, dtype=dtype, requires_grad=True)
    u = torch.tensor(u0, dtype=dtype, requires_grad=True)
    x, y = torch.tensor(x_np, dtype=dtype), torch.tensor(y_np, dtype=dtype)
    opt_a, opt_u = torch.optim.SGD([a], lr=lr_a), torch.optim.SGD([u], lr=lr_u)

    def predict() -> torch.Tensor:
        return additive_forward(a, u, x, eta) if model == "additive" else relu_forward(a, u, x)

    schedule = set(np.unique(np.round(np.linspace(0, epochs, logs + 1)).astype(int)).tolist())
    logged, crit = [], []
    alive = torch.ones(repeats, dtype=torch.bool)
    first = None
    t0 = time.perf_counter()
    for epoch in range(epochs + 1):
        opt_a.zero_grad()
        opt_u.zero_grad()
        resid = predict() - y
        criterion = resid.detach().norm(dim=1) / n
        if first is None:
            first = criterion.clone()
        alive &= torch.isfinite(criterion) & (criterion <= DIVERGENCE_FACTOR * first)
        if epoch in schedule:
            logged.append(epoch)
            crit.append(torch.where(alive, criterion, torch.nan).numpy().copy())
        if epoch == epochs:
            break
        # The official code descends the criterion itself, ‖ŷ − y‖₂/n (not the mean squared error): its gradient
        # r/(n‖r‖) is what makes lr = 1.0 a sensible step. Members are independent: one backward for all.
        loss = torch.where(alive, resid.norm(dim=1) / n, torch.zeros_like(criterion)).sum()
        loss.backward()
        with torch.no_grad():  # a diverged member stays frozen: its gradient is zeroed, NaNs never spread
            for p in (a, u):
                p.grad = torch.nan_to_num(p.grad) * alive.view(-1, *([1] * (p.dim() - 1)))
        opt_a.step()
        opt_u.step()
    return GDRunTT(np.array(logged), np.array(crit), a.detach().numpy().copy(), u.detach().numpy().copy(),
                   x_np, y_np, (~alive).numpy(), time.perf_counter() - t0)
