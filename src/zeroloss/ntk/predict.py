"""Closed-form outputs of gradient descent / gradient flow on the squared loss of a linearised model.

For the linearised model f_lin(x; θ) = f(x; θ₀) + J(x)(θ − θ₀) (:func:`zeroloss.linearize`) trained on

    L(θ) = ½ Σ_i ‖f_lin(x_i; θ) − y_i‖²          (no 1/n: the loss of :func:`zeroloss.train_gd`)

the training residual r = f_lin(X) − Y evolves linearly with the empirical NTK Θ = J Jᵀ of the training set:

    gradient descent, step η:   r_k = (I − ηΘ)^k r₀          θ_k − θ₀ = −η Jᵀ Σ_{j<k} r_j
    gradient flow,    rate η:   r(t) = e^{−ηΘt} r₀          (t counted in units of the step, like k)

and a test point x moves with the cross kernel Θ(x, X) = J(x) Jᵀ:

    f(x) − f₀(x) = Θ(x, X) V diag(h(λ, t)/λ) Vᵀ r₀,   f(X) − f₀(X) = V diag(h(λ, t)) Vᵀ r₀

with Θ = V diag(λ) Vᵀ and h = (1 − ηλ)^k − 1 (GD) or e^{−ηλt} − 1 (flow). At t = ∞ (``math.inf`` among the steps
or times) this is kernel regression, f(x) = f₀(x) + Θ(x, X) Θ⁺ (Y − f₀(X)) (ridge regression when ``ridge`` > 0).

Numerics: one float64 eigendecomposition serves every step or time asked for. h is computed as
``expm1(k·log1p(−ηλ))`` (GD, ηλ < 1) or ``expm1(−ηλt)`` (flow), so that ηλ ≪ 1 keeps its digits (the naive
(1 − ηλ)^k − 1 loses them all once ηλ < 1e-16), and h/λ → −ηk as λ → 0 without a 0/0. Eigenvalues with
|λ| ≤ n·eps·λ_max (eps of the kernel's dtype, the rank tolerance of ``torch.linalg.matrix_rank``) are *null*: Θ v = 0
means Jᵀv = 0, so that component of the residual stays put for every t and contributes exactly nothing to a test
point (Θ(x, X) v = J(x) Jᵀ v = 0); setting it to zero avoids multiplying round-off by ηt (or by 1/λ at t = ∞).
An eigenvalue below −n·eps·λ_max is an error (the kernel is not positive semi-definite). With ηλ_max > 2 the
predicted GD outputs grow without bound, as real GD on the linear model does; nothing is clipped.

Multi-output Y (n, k): a kernel (n, n) is used as Θ ⊗ I_k (every output column evolves with the same kernel); a
full kernel (n, n, k, k) (``zeroloss.entk(..., outputs="full")``) gives the exact linearised dynamics of a
k-output model. Note that ``entk(..., outputs="trace")`` *sums* over outputs; the Θ ⊗ I_k approximation of a
k-output model uses the mean, trace/k.

Relation to Neural Tangents' ``nt.predict.gradient_descent_mse(k, y, learning_rate)`` (checked by
tests/test_predict.py against a transcription of its formula): NT solves gradient flow on the *mean* squared loss
(1/(2N)) Σ ‖f − y‖², N = ``y_train.size`` (n·k), so f_t − y = exp(−lr_NT · t · Θ / N)(f₀ − y). The same t gives
the same outputs when **lr_NT = N · η**. NT's trace kernel is the mean over the traced output axis (ours sums),
its ``diag_reg`` defaults to a scale relative to the mean trace (ours is absolute), it clips negative eigenvalues
to 0 where we raise, and it has no closed form for discrete steps (only gradient flow).

References:
    Jacot, Gabriel, Hongler, *Neural Tangent Kernel*, NeurIPS 2018.
    Lee et al., *Wide Neural Networks of Any Depth Evolve as Linear Models Under Gradient Descent*, NeurIPS 2019
    (eqs. 8–11).
    Neural Tangents, ``neural_tangents/_src/predict.py``, ``gradient_descent_mse``.

Examples:
    >>> import math, torch
    >>> K = torch.tensor([[2.0, 0.5], [0.5, 1.0]], dtype=torch.float64)
    >>> y = torch.tensor([1.0, -1.0], dtype=torch.float64)
    >>> p = predict_gd_mse(K, y, lr=0.1, steps=[0, 1, math.inf])
    >>> p.train[1]                      # one GD step from f₀ = 0: ηΘy
    tensor([ 0.1500, -0.0500], dtype=torch.float64)
    >>> torch.allclose(p.train[2], y)   # t = ∞ interpolates
    True
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch

from zeroloss.errors import ZerolossInputError
from zeroloss.precision import no_tf32


@dataclass
class KernelPrediction:
    """Outputs of GD / gradient flow on the linearised model's squared loss, at several steps or times.

    Attributes:
        times: (T,) float64, the steps (``kind="gd"``) or times (``kind="flow"``) asked for; ``inf`` allowed.
        kind: ``"gd"`` (discrete steps, (I − ηΘ)^k) or ``"flow"`` (e^{−ηΘt}).
        lr: the step η.
        train: (T, n) or (T, n, k) predicted training outputs.
        test: (T, m) or (T, m, k) predicted test outputs, or None without ``k_test_train``.
        loss: (T,) ½ Σ ‖train − y‖², the loss L of the linearised model.
        eigenvalues: (n,) or (n·k,) eigenvalues of the training kernel (+ ridge), ascending; null ones set to 0.
        null: how many eigenvalues were treated as zero (see the module docstring).
    """

    times: torch.Tensor
    kind: str
    lr: float
    train: torch.Tensor
    test: torch.Tensor | None
    loss: torch.Tensor
    eigenvalues: torch.Tensor
    null: int


def _as_f64(value: object, name: str) -> torch.Tensor:
    try:
        t = torch.as_tensor(value)
    except (TypeError, ValueError, RuntimeError):
        raise ZerolossInputError(f"{name}: must be a tensor or array of numbers, got {type(value).__name__}") from None
    if not (t.is_floating_point() or t.dtype in (torch.int8, torch.int16, torch.int32, torch.int64, torch.uint8)):
        raise ZerolossInputError(f"{name}: must be real numbers, got dtype {t.dtype}")
    if not torch.isfinite(t).all():
        raise ZerolossInputError(f"{name}: contains NaN or inf entries")
    return t


def _flatten_kernel(K: torch.Tensor, name: str, rows: str) -> tuple[torch.Tensor, int | None]:
    """(a, b) stays; full (a, b, k, k) → (a·k, b·k) with row index i·k + α; returns (matrix, k or None)."""
    if K.ndim == 2:
        return K, None
    if K.ndim == 4 and K.shape[2] == K.shape[3]:
        a, b, k, _ = K.shape
        return K.permute(0, 2, 1, 3).reshape(a * k, b * k), k
    raise ZerolossInputError(f"{name}: must have shape ({rows}, n) or ({rows}, n, k, k), got {tuple(K.shape)}")


@dataclass
class Eigendecomposition:
    """A symmetric PSD kernel K = V diag(λ) Vᵀ (float64), its null eigenvalues set to exactly 0, plus a ridge.

    Every closed form of this module and of :mod:`zeroloss.ntk.inference` is a spectral function of the training
    kernel, g(K) B = V diag(g(λ)) Vᵀ B: this is the one place where the training kernel is decomposed and applied,
    so that a kernel held elsewhere (on disk, in tiles) needs a replacement of this class only.

    Attributes:
        lam: (N,) eigenvalues, ascending, + ridge; |λ| ≤ N·eps·λ_max are null (0 before the ridge).
        V: (N, N) orthonormal eigenvectors.
        null: how many eigenvalues are exactly 0 (null and no ridge).
    """

    lam: torch.Tensor
    V: torch.Tensor
    null: int

    def apply(self, g: torch.Tensor, B: torch.Tensor) -> torch.Tensor:
        """V diag(g) Vᵀ B for B (N, c) and g (N,) or (T, N): (N, c) or (T, N, c), contracted without an N × N × T
        intermediate (Vᵀ B first, then the scaling, then V)."""
        coeff = self.V.T @ B  # (N, c)
        return torch.matmul(self.V, g.unsqueeze(-1) * coeff)

    def solve(self, B: torch.Tensor) -> torch.Tensor:
        """K⁺ B = V diag(1/λ) Vᵀ B (the pseudo-inverse: null eigenvalues contribute 0), B (N, c)."""
        return self.apply(inverse(self.lam), B)


def inverse(lam: torch.Tensor) -> torch.Tensor:
    """1/λ with 0 for λ = 0 (the pseudo-inverse's spectrum)."""
    safe = torch.where(lam == 0, torch.ones_like(lam), lam)
    return torch.where(lam == 0, torch.zeros_like(lam), 1.0 / safe)


def decompose(K: torch.Tensor, eps: float, ridge: float, field: str) -> Eigendecomposition:
    """The :class:`Eigendecomposition` of the symmetric part of K (float64, (N, N)) plus ``ridge``·I.

    Eigenvalues with |λ| ≤ N·eps·λ_max (eps of the dtype the kernel came in) are null; one below −N·eps·λ_max is
    refused: the kernel is not positive semi-definite (one line naming ``field``).
    """
    lam, V = torch.linalg.eigh(0.5 * (K + K.T))
    lam_max = float(lam.abs().max()) if lam.numel() else 0.0
    tol = K.shape[0] * eps * lam_max
    if lam.numel() and float(lam[0]) < -tol:
        raise ZerolossInputError(
            f"{field}: must be positive semi-definite; smallest eigenvalue {float(lam[0]):.3e} is below "
            f"−n·eps·λ_max = {-tol:.3e}")
    lam = torch.where(lam.abs() <= tol, torch.zeros_like(lam), lam) + ridge
    return Eigendecomposition(lam, V, int((lam == 0).sum()))


def _schedule(steps: object, time: object) -> tuple[torch.Tensor, str, bool]:
    """(times (T,) float64, kind, scalar?) from exactly one of steps / time."""
    if (steps is None) == (time is None):
        raise ZerolossInputError("steps/time: give exactly one (steps for gradient descent, time for gradient flow)")
    name, value = ("steps", steps) if steps is not None else ("time", time)
    scalar = not isinstance(value, (Sequence, torch.Tensor)) or (isinstance(value, torch.Tensor) and value.ndim == 0)
    try:
        t = torch.as_tensor(value, dtype=torch.float64).reshape(-1)
    except (TypeError, ValueError, RuntimeError):
        raise ZerolossInputError(f"{name}: must be a number or a sequence of numbers, got {value!r}") from None
    if t.numel() == 0 or torch.isnan(t).any() or (t < 0).any():
        raise ZerolossInputError(f"{name}: must be non-negative numbers (math.inf for t = ∞), got {value!r}")
    if name == "steps":
        finite = t[torch.isfinite(t)]
        if (finite != finite.round()).any():
            raise ZerolossInputError(f"steps: must be non-negative integers (or math.inf), got {value!r}")
    return t, ("gd" if name == "steps" else "flow"), scalar


def residual_factor(lam: torch.Tensor, lr: float, times: torch.Tensor, kind: str) -> torch.Tensor:
    """h(λ, t) = g(λ, t) − 1, with g = (1 − ηλ)^t (``"gd"``) or e^{−ηλt} (``"flow"``): shape (T, N).

    λ must already have its null eigenvalues set to exactly 0 (h = 0 there for every t, ∞ included). Stable for
    ηλ ≪ 1 (expm1/log1p forms). GD at t = ∞: −1 for 0 < ηλ < 2, NaN for ηλ ≥ 2 (no limit: the step diverges).

    Examples:
        >>> residual_factor(torch.tensor([1e-20, 0.0, 1.0]), 1.0, torch.tensor([3.0]), "gd")
        tensor([[-3.0000e-20,  0.0000e+00, -1.0000e+00]], dtype=torch.float64)
    """
    lam = lam.to(torch.float64).unsqueeze(0)  # (1, N)
    t = times.to(device=lam.device, dtype=torch.float64).unsqueeze(1)  # (T, 1)
    x = lr * lam
    inf = torch.isinf(t)
    t_fin = torch.where(inf, torch.zeros_like(t), t)  # keep inf out of the arithmetic; patched below
    if kind == "flow":
        h = torch.expm1(-x * t_fin)
        h_inf = torch.where(lam > 0, -torch.ones_like(x), torch.zeros_like(x))
    else:
        small = x < 1.0
        log_base = torch.log1p(-torch.where(small, x, torch.zeros_like(x)))
        h_small = torch.expm1(t_fin * log_base)
        h_large = torch.pow(1.0 - x, t_fin) - 1.0  # ηλ ≥ 1: 1 − ηλ ≤ 0, so nothing cancels against the −1
        h = torch.where(small, h_small, h_large)
        nan = torch.full_like(x, math.nan)
        h_inf = torch.where(lam == 0, torch.zeros_like(x), torch.where(x < 2.0, -torch.ones_like(x), nan))
    h = torch.where(lam == 0, torch.zeros_like(h), h)
    return torch.where(inf, h_inf.expand_as(h), h)


def _over_lambda(h: torch.Tensor, lam: torch.Tensor) -> torch.Tensor:
    """h/λ, with 0 for null eigenvalues (their test contribution is exactly zero, see the module docstring)."""
    return h * inverse(lam)


def predict_gd_mse(
    k_train: torch.Tensor,
    y_train: torch.Tensor,
    lr: float,
    steps: int | float | Sequence[float] | torch.Tensor | None = None,
    time: float | Sequence[float] | torch.Tensor | None = None,
    k_test_train: torch.Tensor | None = None,
    f0_train: torch.Tensor | None = None,
    f0_test: torch.Tensor | None = None,
    ridge: float = 0.0,
    memory_budget: int | str | None = None,
) -> KernelPrediction:
    """Outputs of GD (``steps``) or gradient flow (``time``) on the linearised model's squared loss, train and test.

    Closed forms (module docstring; Lee et al. 2019, eqs. 8–11), for L = ½ Σ ‖f − y‖² (no 1/n):

        f_train(k) = y + (I − ηΘ)^k (f₀ − y)                          gradient descent
        f_train(t) = y + e^{−ηΘt} (f₀ − y)                            gradient flow
        f_test     = f₀_test + Θ_test,train Θ⁻¹ (f_train(t) − f₀)    (null directions excluded)

    and kernel (ridge) regression at t = ∞. Neural Tangents' ``gradient_descent_mse`` with learning rate
    lr_NT = N·η (N = y_train.numel()) gives the same flow outputs (see the module docstring).

    Args:
        k_train: Θ(X, X), (n, n), or full (n, n, k, k) for k-output models; symmetric PSD (symmetrised here).
        y_train: (n,) or (n, k) targets.
        lr: the step η > 0 (for the flow, the rate: time t means t steps of size η).
        steps: number(s) of GD steps — an int, a sequence or a 1-D tensor; ``math.inf`` for t = ∞.
        time: gradient-flow time(s), same forms. Give exactly one of ``steps`` and ``time``.
        k_test_train: Θ(X_test, X), (m, n) or full (m, n, k, k).
        f0_train: outputs at θ₀ on X, shaped like ``y_train`` (default 0).
        f0_test: outputs at θ₀ on X_test, (m,) or (m, k) (default 0 when ``k_test_train`` is given).
        ridge: ρ ≥ 0 added to Θ's diagonal (absolute units) at every t, as NT's ``diag_reg``: the exact dynamics of
            the model with one extra free output offset per training point; at t = ∞ the test outputs are kernel
            ridge regression f₀_test + Θ_test,train (Θ + ρI)⁻¹ (y − f₀). (For ridge predictions on the training
            points themselves pass ``k_test_train=k_train`` and ``f0_test=f0_train``.)
        memory_budget: used only when a kernel is a stored one (:func:`zeroloss.open_kernel`): in memory when it
            and its eigendecomposition fit (bytes or a size; default :mod:`zeroloss.budget`'s), else t = ∞ only, by
            streaming conjugate gradients (:func:`zeroloss.tiles.solve`; no eigenvalues returned).

    Returns:
        :class:`KernelPrediction` (float64). ``train``/``test`` have a leading time axis (T,), also for a scalar
        ``steps``/``time``.

    Raises:
        ZerolossInputError: shapes that do not match, a negative or non-finite lr, ridge or time, a kernel with
            NaN/inf entries or clearly negative eigenvalues.

    Examples:
        >>> import torch
        >>> K = torch.eye(3, dtype=torch.float64); y = torch.ones(3, dtype=torch.float64)
        >>> predict_gd_mse(K, y, lr=0.5, time=[0.0, 2.0]).loss     # ½·3·e^{−2ηt}
        tensor([1.5000, 0.2030], dtype=torch.float64)
    """
    if getattr(k_train, "is_stored_kernel", False) or getattr(k_test_train, "is_stored_kernel", False):
        from zeroloss.tiles.solve import predict_stored

        return predict_stored(k_train, y_train, lr, steps, time, k_test_train, f0_train, f0_test, ridge,
                              memory_budget)
    if isinstance(lr, bool) or not isinstance(lr, (int, float)) or not math.isfinite(lr) or lr <= 0:
        raise ZerolossInputError(f"lr: must be a positive finite number, got {lr!r}")
    if isinstance(ridge, bool) or not isinstance(ridge, (int, float)) or not math.isfinite(ridge) or ridge < 0:
        raise ZerolossInputError(f"ridge: must be a non-negative finite number, got {ridge!r}")
    times, kind, _ = _schedule(steps, time)
    K_in = _as_f64(k_train, "k_train")
    eps = torch.finfo(K_in.dtype).eps if K_in.is_floating_point() else torch.finfo(torch.float64).eps
    K, k_full = _flatten_kernel(K_in.to(torch.float64), "k_train", "n")
    n_rows = K.shape[0] if k_full is None else K.shape[0] // k_full
    if K.shape[0] != K.shape[1]:
        raise ZerolossInputError(f"k_train: must be square (n, n) or (n, n, k, k), got {tuple(K_in.shape)}")
    Y = _as_f64(y_train, "y_train").to(device=K.device, dtype=torch.float64, copy=True)
    if Y.ndim not in (1, 2) or Y.shape[0] != n_rows:
        raise ZerolossInputError(f"y_train: must have shape ({n_rows},) or ({n_rows}, k), got {tuple(Y.shape)}")
    out_shape = tuple(Y.shape)
    Y2 = Y.reshape(n_rows, -1)
    k_out = Y2.shape[1]
    if k_full is not None and k_full != k_out:
        raise ZerolossInputError(f"y_train: the full kernel has k = {k_full} outputs, got y_train {out_shape}")
    F0 = torch.zeros_like(Y2) if f0_train is None else _as_f64(f0_train, "f0_train").to(Y2.device, torch.float64)
    if f0_train is not None and F0.reshape(-1).shape != Y2.reshape(-1).shape:
        raise ZerolossInputError(f"f0_train: must have the shape of y_train {out_shape}, got {tuple(F0.shape)}")
    F0 = F0.reshape(n_rows, k_out)
    # residual in the layout of K: (N, c) with N = n (columns = outputs) or n·k (one column)
    R0 = (F0 - Y2) if k_full is None else (F0 - Y2).reshape(-1, 1)

    with no_tf32():
        spec = decompose(K, eps, ridge, "k_train")
        lam, V, null = spec.lam, spec.V, spec.null
        coeff = V.T @ R0  # (N, c)
        h = residual_factor(lam, float(lr), times, kind)  # (T, N)
        train = F0.reshape(R0.shape).unsqueeze(0) + spec.apply(h, R0)
        residual = train - (Y2 if k_full is None else Y2.reshape(-1, 1)).unsqueeze(0)
        loss = 0.5 * residual.pow(2).sum(dim=(1, 2))
        test = None
        if k_test_train is not None:
            test = _predict_test(k_test_train, f0_test, V, _over_lambda(h, lam), coeff, n_rows, k_out, k_full,
                                 Y.ndim)
        elif f0_test is not None:
            raise ZerolossInputError("f0_test: needs k_test_train (the test × train kernel)")
    train = train.reshape(len(times), *out_shape)
    return KernelPrediction(times=times, kind=kind, lr=float(lr), train=train, test=test, loss=loss,
                            eigenvalues=lam, null=null)


def _predict_test(k_test_train: torch.Tensor, f0_test: torch.Tensor | None, V: torch.Tensor, h_over: torch.Tensor,
                  coeff: torch.Tensor, n: int, k: int, k_full: int | None, y_ndim: int) -> torch.Tensor:
    """Test outputs (T, m) or (T, m, k): f0_test + Θ_test,train V diag(h/λ) Vᵀ r₀."""
    Kt_in = _as_f64(k_test_train, "k_test_train").to(V.device, torch.float64)
    Kt, kt_full = _flatten_kernel(Kt_in, "k_test_train", "m")
    if (kt_full is None) != (k_full is None) or (kt_full is not None and kt_full != k_full):
        raise ZerolossInputError(
            f"k_test_train: must be a full kernel exactly when k_train is, got {tuple(Kt_in.shape)}")
    if Kt.shape[1] != V.shape[0]:
        raise ZerolossInputError(f"k_test_train: second axis must match k_train's n = {n}, got {tuple(Kt_in.shape)}")
    m = Kt.shape[0] if k_full is None else Kt.shape[0] // k_full
    shape = (m,) if y_ndim == 1 else (m, k)
    if f0_test is None:
        F0t = torch.zeros(m, k, dtype=torch.float64, device=V.device)
    else:
        F0t = _as_f64(f0_test, "f0_test").to(V.device, torch.float64)
        if tuple(F0t.shape) != shape:
            raise ZerolossInputError(f"f0_test: must have shape {shape} (y_train's layout), got {tuple(F0t.shape)}")
        F0t = F0t.reshape(m, k)
    # test(t) = f0_test + Kt V diag(h/λ) Vᵀ r0 (layout of Kt: (m, c) or (m·k, 1)); contracted pairwise, smallest
    # first: (Kt V) (m, N) once, then per time (m, N)·(N, c), never an (m or N) × N × T intermediate
    delta = torch.matmul(Kt @ V, h_over.unsqueeze(-1) * coeff.unsqueeze(0))
    test = F0t.reshape(delta.shape[1], delta.shape[2]).unsqueeze(0) + delta
    return test.reshape(h_over.shape[0], *shape)
