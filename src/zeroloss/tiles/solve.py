"""Solving (K + ρI) x = b for a kernel in memory or stored in tiles: :func:`solve`, and kernel regression on it.

:func:`solve` is the one entry point for every consumer of a kernel (``predict_gd_mse`` at t = ∞ here; GP inference
can call it the same way): ``kernel`` is a tensor, an array or a :class:`~zeroloss.tiles.reader.StoredKernel`.

* ``"direct"`` (in memory, the default when the float64 matrix and its eigendecomposition fit the budget): one
  ``eigh``; eigenvalues with |λ| ≤ n·eps·λ_max count as null and are excluded (x has no component there), exactly
  as :func:`zeroloss.predict_gd_mse` treats them, so its t = ∞ outputs and this solve agree to round-off.
* ``"cg"`` (streaming, the default otherwise): conjugate gradients with the Jacobi preconditioner, every column of
  b at once, each iteration one pass over the stored tiles (:meth:`StoredKernel.matmul`). Stopping rule: the
  relative residual ‖b − (K + ρI)x‖ / ‖b‖ ≤ ``tol`` (default :data:`DEFAULT_TOL` = 1e-10) for every column; then
  ‖x − x*‖ / ‖x*‖ ≤ κ(K + ρI) · tol. A kernel that does not converge within ``max_iter`` iterations (singular
  without a ridge, or very ill-conditioned) is an error naming the residual reached.

Examples:
    >>> import torch
    >>> K = torch.tensor([[2.0, 0.5], [0.5, 1.0]], dtype=torch.float64)
    >>> b = torch.tensor([1.0, -1.0], dtype=torch.float64)
    >>> direct, cg = solve(K, b, method="direct"), solve(K, b, method="cg")
    >>> bool(torch.allclose(K @ direct.x, b)), cg.method, bool(torch.allclose(cg.x, direct.x, atol=1e-9))
    (True, 'cg', True)
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from zeroloss.budget import ARGUMENT, check_memory, resolve_budget
from zeroloss.errors import ZerolossInputError, choice

#: Relative residual at which conjugate gradients stop.
DEFAULT_TOL = 1e-10
METHODS = ("auto", "direct", "cg")
#: Float64 n × n arrays the direct solve holds: K, its eigenvectors and eigh's workspace (about one more).
DIRECT_ARRAYS = 3


@dataclass
class Solution:
    """x (shaped like b), the method used, CG iterations (0 for direct) and the largest relative residual."""

    x: torch.Tensor
    method: str
    iterations: int
    residual: float


def _is_stored(K: Any) -> bool:
    return bool(getattr(K, "is_stored_kernel", False))


def direct_bytes(n: int) -> int:
    return DIRECT_ARRAYS * 8 * n * n


def _matvec(K: Any, ridge: float) -> Any:
    if _is_stored(K):
        return lambda V: torch.from_numpy(K.matmul(V.numpy())) + ridge * V
    Kt = torch.as_tensor(K, dtype=torch.float64)
    return lambda V: Kt @ V + ridge * V


def _diagonal(K: Any) -> torch.Tensor:
    if _is_stored(K):
        return torch.from_numpy(K.diagonal())
    return torch.as_tensor(K, dtype=torch.float64).diagonal()


def solve(kernel: Any, rhs: Any, *, ridge: float = 0.0, method: str = "auto", tol: float = DEFAULT_TOL,
          max_iter: int | None = None, memory_budget: int | str | None = None) -> Solution:
    """x = (K + ρI)⁻¹ b (null directions of K excluded by ``direct`` when ρ = 0), K in memory or stored.

    Args:
        kernel: (n, n) symmetric PSD tensor or array, or a :class:`~zeroloss.tiles.reader.StoredKernel`.
        rhs: b, (n,) or (n, c).
        ridge: ρ ≥ 0 added to the diagonal.
        method: ``"auto"`` (direct when :func:`direct_bytes` fits the budget, else cg), ``"direct"``, ``"cg"``.
        tol: CG's relative-residual tolerance (see the module docstring).
        max_iter: CG's iteration limit (default max(1000, 10n): n in exact arithmetic, more as round-off
            erodes the conjugacy of ill-conditioned kernels).
        memory_budget: bytes or a size (default :mod:`zeroloss.budget`'s).
    """
    choice(method, "method", METHODS)
    if isinstance(ridge, bool) or not isinstance(ridge, (int, float)) or not math.isfinite(ridge) or ridge < 0:
        raise ZerolossInputError(f"ridge: must be a non-negative finite number, got {ridge!r}")
    if not (isinstance(tol, (int, float)) and 0 < tol < 1):
        raise ZerolossInputError(f"tol: must be in (0, 1), got {tol!r}")
    n = kernel.shape[0]
    if tuple(kernel.shape) != (n, n):
        raise ZerolossInputError(f"kernel: must be square (n, n), got {tuple(kernel.shape)}")
    b = torch.as_tensor(np.asarray(rhs) if not isinstance(rhs, torch.Tensor) else rhs).to(torch.float64).cpu()
    if b.shape[0] != n or b.ndim not in (1, 2):
        raise ZerolossInputError(f"rhs: must have shape ({n},) or ({n}, c), got {tuple(b.shape)}")
    B = b.reshape(n, -1)
    budget = resolve_budget(memory_budget, ARGUMENT)
    if method == "auto":
        in_memory = not _is_stored(kernel) or kernel.in_memory
        method = "direct" if in_memory or direct_bytes(n) <= budget.bytes else "cg"
    if method == "direct":
        check_memory(direct_bytes(n), budget, field="kernel", flag=ARGUMENT, hint="use method='cg'",
                     what=f"the direct solve of a {n} x {n} kernel")
        K = kernel.torch(budget.bytes) if _is_stored(kernel) else torch.as_tensor(kernel, dtype=torch.float64).cpu()
        x = _direct(K, B, ridge)
        residual = _relative_residual(_matvec(K, ridge), x, B)
        return Solution(x.reshape(b.shape), "direct", 0, residual)
    x, iterations, residual = _cg(_matvec(kernel, ridge), _diagonal(kernel) + ridge, B, tol,
                                  max_iter or max(1000, 10 * n))
    return Solution(x.reshape(b.shape), "cg", iterations, residual)


def _direct(K: torch.Tensor, B: torch.Tensor, ridge: float) -> torch.Tensor:
    from zeroloss.precision import no_tf32

    with no_tf32():
        lam, V = torch.linalg.eigh(0.5 * (K + K.T))
        lam_max = float(lam.abs().max()) if lam.numel() else 0.0
        null = lam.abs() <= K.shape[0] * torch.finfo(torch.float64).eps * lam_max
        lam = torch.where(null, torch.zeros_like(lam), lam) + ridge
        inv = torch.where(lam == 0, torch.zeros_like(lam), 1.0 / torch.where(lam == 0, torch.ones_like(lam), lam))
        return V @ (inv.unsqueeze(1) * (V.T @ B))


def _relative_residual(matvec: Any, x: torch.Tensor, B: torch.Tensor) -> float:
    norms = B.norm(dim=0).clamp_min(torch.finfo(torch.float64).tiny)
    return float(((B - matvec(x)).norm(dim=0) / norms).max())


def _cg(matvec: Any, diag: torch.Tensor, B: torch.Tensor, tol: float, max_iter: int) -> tuple[torch.Tensor, int, float]:
    """Jacobi-preconditioned conjugate gradients on every column of B at once."""
    M = torch.where(diag > 0, 1.0 / diag.clamp_min(torch.finfo(torch.float64).tiny), torch.ones_like(diag))
    M = M.unsqueeze(1)
    x = torch.zeros_like(B)
    r = B.clone()
    z = M * r
    p = z.clone()
    rz = (r * z).sum(0)
    bnorm = B.norm(dim=0).clamp_min(torch.finfo(torch.float64).tiny)
    rel = float((r.norm(dim=0) / bnorm).max())
    it = 0
    while rel > tol and it < max_iter:
        Ap = matvec(p)
        pAp = (p * Ap).sum(0)
        alpha = torch.where(pAp > 0, rz / torch.where(pAp > 0, pAp, torch.ones_like(pAp)), torch.zeros_like(pAp))
        x += alpha * p
        r -= alpha * Ap
        z = M * r
        rz_new = (r * z).sum(0)
        beta = torch.where(rz > 0, rz_new / torch.where(rz > 0, rz, torch.ones_like(rz)), torch.zeros_like(rz))
        p = z + beta * p
        rz = rz_new
        it += 1
        rel = float((r.norm(dim=0) / bnorm).max())
    if rel > tol:
        raise ZerolossInputError(f"tol: conjugate gradients reached a relative residual of {rel:.2e}, not {tol:.0e}, "
                                 f"in {it} iterations; the kernel may be singular or ill-conditioned: pass ridge > 0 "
                                 "or a larger tol")
    return x, it, rel


def predict_stored(k_train: Any, y_train: Any, lr: float, steps: Any, time: Any, k_test_train: Any,
                   f0_train: Any, f0_test: Any, ridge: float, memory_budget: int | str | None) -> Any:
    """:func:`zeroloss.predict_gd_mse` for stored kernels: in memory when the kernels (and the eigendecomposition)
    fit the budget, else kernel regression at t = ∞ by streaming conjugate gradients (finite t needs the spectrum,
    hence memory: refused in one line). Streaming returns no eigenvalues (an empty tensor)."""
    from zeroloss.ntk.predict import KernelPrediction, _as_f64, _schedule, predict_gd_mse

    budget = resolve_budget(memory_budget, ARGUMENT)
    n = k_train.shape[0]
    test_bytes = k_test_train.nbytes if _is_stored(k_test_train) else 0
    stored_train = _is_stored(k_train)
    if not stored_train or k_train.in_memory or direct_bytes(n) + test_bytes <= budget.bytes:
        K = k_train.torch(budget.bytes) if stored_train else k_train
        Kt = k_test_train.torch(budget.bytes) if _is_stored(k_test_train) else k_test_train
        return predict_gd_mse(K, y_train, lr, steps=steps, time=time, k_test_train=Kt, f0_train=f0_train,
                              f0_test=f0_test, ridge=ridge)
    if isinstance(lr, bool) or not isinstance(lr, (int, float)) or not math.isfinite(lr) or lr <= 0:
        raise ZerolossInputError(f"lr: must be a positive finite number, got {lr!r}")
    times, kind, _ = _schedule(steps, time)
    if not torch.isinf(times).all():
        raise ZerolossInputError(f"steps/time: the {n} x {n} kernel does not fit the memory budget, so only t = inf "
                                 "(kernel regression, by streaming conjugate gradients) is available; finite t "
                                 "needs the spectrum in memory (raise memory_budget)")
    Y = _as_f64(y_train, "y_train").to(torch.float64)
    if Y.ndim not in (1, 2) or Y.shape[0] != n:
        raise ZerolossInputError(f"y_train: must have shape ({n},) or ({n}, k), got {tuple(Y.shape)}")
    Y2 = Y.reshape(n, -1)
    F0 = torch.zeros_like(Y2) if f0_train is None else _as_f64(f0_train, "f0_train").to(torch.float64).reshape(Y2.shape)
    sol = solve(k_train, Y2 - F0, ridge=ridge, method="cg", memory_budget=budget.bytes)
    alpha = sol.x
    train = F0 + _matvec(k_train, ridge)(alpha)
    test = None
    if k_test_train is not None:
        m = k_test_train.shape[0]
        if tuple(k_test_train.shape) != (m, n):
            raise ZerolossInputError(f"k_test_train: must have shape (m, {n}), got {tuple(k_test_train.shape)}")
        if _is_stored(k_test_train):
            delta = torch.from_numpy(k_test_train.matmul(alpha.numpy()))
        else:
            delta = torch.as_tensor(k_test_train, dtype=torch.float64) @ alpha
        F0t = torch.zeros(m, Y2.shape[1], dtype=torch.float64) if f0_test is None else \
            _as_f64(f0_test, "f0_test").to(torch.float64).reshape(m, Y2.shape[1])
        test = (F0t + delta).reshape(1, m, *Y.shape[1:]).expand(len(times), m, *Y.shape[1:]).clone()
    elif f0_test is not None:
        raise ZerolossInputError("f0_test: needs k_test_train (the test × train kernel)")
    loss = 0.5 * (train - Y2).pow(2).sum() * torch.ones(len(times), dtype=torch.float64)
    train = train.reshape(1, *Y.shape).expand(len(times), *Y.shape).clone()
    return KernelPrediction(times=times, kind=kind, lr=float(lr), train=train, test=test, loss=loss,
                            eigenvalues=torch.empty(0, dtype=torch.float64), null=0)
