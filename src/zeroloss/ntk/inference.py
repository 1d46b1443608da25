"""Inference with infinite-width kernels: the NNGP posterior and the ensemble of networks trained by GD.

Both are closed forms in the training kernels, computed in float64 from one eigendecomposition of the training
kernel (:class:`zeroloss.ntk.predict.Eigendecomposition`, the one place where a training kernel is decomposed and
applied; null eigenvalues are treated as in :func:`zeroloss.predict_gd_mse`, so a singular kernel gives the
pseudo-inverse).

**NNGP posterior** (:func:`gp_inference`). A network at initialisation is, at infinite width, a Gaussian process
f ~ GP(0, K) with K the NNGP kernel (Neal 1996; Lee et al. 2018). Conditioning on y = f(X) + ε, ε ~ N(0, ρ I):

    mean(x)     = K(x, X) (K(X, X) + ρI)⁻¹ y
    cov(x, x')  = K(x, x') − K(x, X) (K(X, X) + ρI)⁻¹ K(X, x')

**Infinite ensemble under gradient descent** (:func:`gradient_descent_mse_ensemble`). A wide network trained by
GD on L = ½ Σ_i ‖f(x_i) − y_i‖² (no 1/n: :func:`zeroloss.train_gd`'s loss) follows its linearisation with the
deterministic limit NTK Θ (Jacot et al. 2018; Lee et al. 2019), while its initial outputs f₀ ~ GP(0, K). With
Θ(X, X) = V diag(λ) Vᵀ and h_t(λ) = (1 − ηλ)^t − 1 (GD, t steps) or e^{−ηλt} − 1 (flow, time t in units of the
step), the outputs at t are f_t(x) = f₀(x) + T_t(x) (f₀(X) − y) with

    T_t(x) = Θ(x, X) V diag(h_t(λ)/λ) Vᵀ          (T_t(X) = V diag(h_t(λ)) Vᵀ on the training inputs)

linear in the Gaussian f₀, so over the ensemble of initialisations f_t(x) is Gaussian with (Lee et al. 2019,
eqs. 13–16; NT's ``gradient_descent_mse_ensemble``):

    mean_t(x)     = −T_t(x) y                        (→ Θ(x, X) Θ⁻¹ y, kernel regression, as t → ∞)
    cov_t(x, x')  = K(x, x') + T_t(x) K(X, X) T_t(x')ᵀ + T_t(x) K(X, x') + K(x, X) T_t(x')ᵀ

Multi-output targets y (n, k) use the kernels as K ⊗ I_k (outputs independent, as at infinite width): the mean is
(m, k), one covariance (m, m) serves every output.

Relation to Neural Tangents 0.6.5 (``nt.predict.gp_inference``, ``nt.predict.gradient_descent_mse_ensemble``):
the same formulas, in float64 torch, with the kernels given as blocks instead of a ``kernel_fn``; ``ridge`` is
NT's ``diag_reg`` with ``diag_reg_absolute_scale=True``; NT's loss is the *mean* squared error over
N = y_train.size values, so NT's ``learning_rate`` is N·η here (as :mod:`zeroloss.ntk.predict` says); NT clips
negative eigenvalues to 0 where this module refuses a kernel that is not positive semi-definite.

References:
    R. M. Neal. Bayesian Learning for Neural Networks. 1996. J. Lee et al. Deep Neural Networks as Gaussian
    Processes. ICLR 2018. A. Jacot, F. Gabriel, C. Hongler. Neural Tangent Kernel. NeurIPS 2018. J. Lee et al.
    Wide Neural Networks of Any Depth Evolve as Linear Models Under Gradient Descent. NeurIPS 2019.

Examples:
    >>> import torch
    >>> K = torch.tensor([[1.0, 0.5], [0.5, 1.0]], dtype=torch.float64)
    >>> y = torch.tensor([1.0, -1.0], dtype=torch.float64)
    >>> post = gp_inference(K, y, k_test_train=K, k_test_test=K)      # test points = training points
    >>> torch.allclose(post.mean, y), float(post.covariance.abs().max()) < 1e-12
    (True, True)
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from zeroloss.errors import ZerolossInputError
from zeroloss.ntk.predict import Eigendecomposition, _as_f64, _schedule, decompose, inverse, residual_factor
from zeroloss.precision import no_tf32


@dataclass
class GaussianPosterior:
    """The NNGP posterior on the test points (float64).

    Attributes:
        mean: (m,) or (m, k) posterior mean (the layout of ``y_train``).
        covariance: (m, m) posterior covariance (shared by the k outputs) when ``k_test_test`` was (m, m); the
            variances (m,) when it was its diagonal (m,); None without ``k_test_test``.
        eigenvalues: (n,) eigenvalues of K(X, X) + ρI, ascending (null ones 0).
    """

    mean: torch.Tensor
    covariance: torch.Tensor | None
    eigenvalues: torch.Tensor


@dataclass
class EnsemblePrediction:
    """Mean and covariance over initialisations of infinitely wide networks trained by GD / gradient flow.

    Attributes:
        times: (T,) float64, the steps (``kind="gd"``) or times (``kind="flow"``); ``inf`` allowed.
        kind: ``"gd"`` or ``"flow"``.
        lr: the step η.
        on: ``"test"`` (the points of ``ntk_test_train``) or ``"train"`` (the training inputs).
        mean: (T, m) or (T, m, k).
        covariance: (T, m, m) (shared by the k outputs), or the variances (T, m) when ``nngp_test_test`` was its
            diagonal (m,), or None without the NNGP blocks.
        eigenvalues: (n,) eigenvalues of Θ(X, X) + ρI, ascending (null ones 0).
    """

    times: torch.Tensor
    kind: str
    lr: float
    on: str
    mean: torch.Tensor
    covariance: torch.Tensor | None
    eigenvalues: torch.Tensor


def _ridge(ridge: object) -> float:
    if isinstance(ridge, bool) or not isinstance(ridge, (int, float)) or not math.isfinite(ridge) or ridge < 0:
        raise ZerolossInputError(f"ridge: must be a non-negative finite number, got {ridge!r}")
    return float(ridge)


def _train_kernel(K: object, name: str) -> tuple[torch.Tensor, float]:
    """(the kernel (n, n) float64, eps of the dtype it came in)."""
    t = _as_f64(K, name)
    eps = torch.finfo(t.dtype).eps if t.is_floating_point() else torch.finfo(torch.float64).eps
    if t.ndim != 2 or t.shape[0] != t.shape[1] or t.shape[0] == 0:
        raise ZerolossInputError(f"{name}: must be a square kernel matrix (n, n) (one output: infinite-width "
                                 f"kernels are K ⊗ I_k), got shape {tuple(t.shape)}")
    return t.to(torch.float64), eps


def _block(K: object, name: str, shape: tuple[int | None, int], device: torch.device) -> torch.Tensor:
    """A kernel block checked against ``shape`` (None: any number of rows), float64 on ``device``."""
    t = _as_f64(K, name).to(device=device, dtype=torch.float64)
    want = f"(m, {shape[1]})" if shape[0] is None else str(shape)
    ok = t.ndim == 2 and t.shape[1] == shape[1] and (shape[0] is None or t.shape[0] == shape[0])
    if not ok:
        raise ZerolossInputError(f"{name}: must have shape {want}, got {tuple(t.shape)}")
    return t


def _test_test(K: object, name: str, m: int, device: torch.device) -> torch.Tensor:
    """K(x, x) as (m, m), or its diagonal (m,)."""
    t = _as_f64(K, name).to(device=device, dtype=torch.float64)
    if tuple(t.shape) not in ((m, m), (m,)):
        raise ZerolossInputError(f"{name}: must have shape ({m}, {m}) or its diagonal ({m},), got {tuple(t.shape)}")
    return t


def _targets(y: object, n: int, device: torch.device) -> torch.Tensor:
    Y = _as_f64(y, "y_train").to(device=device, dtype=torch.float64)
    if Y.ndim not in (1, 2) or Y.shape[0] != n:
        raise ZerolossInputError(f"y_train: must have shape ({n},) or ({n}, k), got {tuple(Y.shape)}")
    return Y


def _quadratic(A: torch.Tensor, W: torch.Tensor, diagonal: bool) -> torch.Tensor:
    """A W Aᵀ (…, m, m), or only its diagonal (…, m)."""
    if diagonal:
        return ((A @ W) * A).sum(-1)
    return A @ W @ A.transpose(-1, -2)


def _symmetric_part(C: torch.Tensor, diagonal: bool) -> torch.Tensor:
    return C if diagonal else 0.5 * (C + C.transpose(-1, -2))


def gp_inference(
    k_train_train: torch.Tensor,
    y_train: torch.Tensor,
    k_test_train: torch.Tensor,
    k_test_test: torch.Tensor | None = None,
    *,
    ridge: float = 0.0,
) -> GaussianPosterior:
    """The NNGP posterior mean and covariance on test points (module docstring; exact Bayesian inference with
    the NNGP as prior and Gaussian noise of variance ``ridge``).

    Args:
        k_train_train: K(X, X), (n, n), symmetric PSD (symmetrised here); a tensor or array.
        y_train: (n,) or (n, k) targets.
        k_test_train: K(x, X), (m, n).
        k_test_test: K(x, x), (m, m) for the covariance, or its diagonal (m,) for the variances only (no (m, m)
            matrix is formed); None for the mean alone.
        ridge: ρ ≥ 0 added to K(X, X)'s diagonal (absolute: the observation-noise variance; NT's ``diag_reg``
            with ``diag_reg_absolute_scale=True``). With ρ = 0 a singular K(X, X) is pseudo-inverted.

    Returns:
        :class:`GaussianPosterior` (float64, on k_train_train's device).

    Raises:
        ZerolossInputError: shapes that do not match, NaN/inf entries, a training kernel that is not positive
            semi-definite, a negative ridge.

    Examples:
        >>> import torch
        >>> K = torch.eye(2, dtype=torch.float64); y = torch.tensor([2.0, 4.0], dtype=torch.float64)
        >>> post = gp_inference(K, y, k_test_train=0.5 * K, k_test_test=torch.ones(2), ridge=1.0)
        >>> post.mean, post.covariance          # 0.5·y/(1 + 1), 1 − 0.25/2
        (tensor([0.5000, 1.0000], dtype=torch.float64), tensor([0.8750, 0.8750], dtype=torch.float64))
    """
    ridge = _ridge(ridge)
    K, eps = _train_kernel(k_train_train, "k_train_train")
    n, device = K.shape[0], K.device
    Y = _targets(y_train, n, device)
    Ks = _block(k_test_train, "k_test_train", (None, n), device)
    Kss = None if k_test_test is None else _test_test(k_test_test, "k_test_test", Ks.shape[0], device)
    with no_tf32():
        spec = decompose(K, eps, ridge, "k_train_train")
        mean = Ks @ spec.solve(Y.reshape(n, -1))  # (m, c)
        covariance = None
        if Kss is not None:
            diagonal = Kss.ndim == 1
            A = Ks @ spec.V  # (m, n): K(x, X) in the eigenbasis
            Ai = A * inverse(spec.lam)  # K_xX (K + ρI)⁺ K_Xx = A diag(1/λ) Aᵀ
            explained = (Ai * A).sum(-1) if diagonal else Ai @ A.T
            covariance = _symmetric_part(Kss - explained, diagonal)
    return GaussianPosterior(mean.reshape(Ks.shape[0], *Y.shape[1:]), covariance, spec.lam)


def gradient_descent_mse_ensemble(
    ntk_train_train: torch.Tensor,
    y_train: torch.Tensor,
    lr: float,
    steps: int | float | list | torch.Tensor | None = None,
    time: float | list | torch.Tensor | None = None,
    *,
    nngp_train_train: torch.Tensor | None = None,
    ntk_test_train: torch.Tensor | None = None,
    nngp_test_train: torch.Tensor | None = None,
    nngp_test_test: torch.Tensor | None = None,
    ridge: float = 0.0,
) -> EnsemblePrediction:
    """Mean and covariance, over random initialisations, of infinitely wide networks trained by gradient descent
    (``steps``) or gradient flow (``time``) on L = ½ Σ ‖f(x_i) − y_i‖² (module docstring; Lee et al. 2019).

    The kernels are blocks of the limit NTK Θ and NNGP K on the training inputs X and the test inputs x (for
    instance :func:`zeroloss.limit_kernel` with ``kind="ntk"`` and ``kind="nngp"`` on the concatenated inputs).

    Args:
        ntk_train_train: Θ(X, X), (n, n), symmetric PSD.
        y_train: (n,) or (n, k) targets.
        lr: the step η > 0 (for the flow, time t means t steps of size η).
        steps: GD step count(s) — an int, a sequence or a 1-D tensor; ``math.inf`` for t = ∞.
        time: gradient-flow time(s), same forms. Give exactly one of ``steps`` and ``time``.
        nngp_train_train: K(X, X), (n, n); needed for the covariance (without it: the mean alone).
        ntk_test_train: Θ(x, X), (m, n); None predicts on the training inputs themselves.
        nngp_test_train: K(x, X), (m, n); with ``ntk_test_train``, needed for the covariance.
        nngp_test_test: K(x, x), (m, m), or its diagonal (m,) for the variances only; with ``ntk_test_train``,
            needed for the covariance.
        ridge: ρ ≥ 0 added to Θ(X, X)'s diagonal at every t, as in :func:`zeroloss.predict_gd_mse`.

    Returns:
        :class:`EnsemblePrediction` (float64) with a leading time axis (T,).

    Raises:
        ZerolossInputError: shapes that do not match, a test NNGP block given without the others, NaN/inf
            entries, a training NTK that is not positive semi-definite, a bad lr, ridge or schedule.

    Examples:
        >>> import math, torch
        >>> ntk = torch.tensor([[2.0, 0.5], [0.5, 1.0]], dtype=torch.float64)
        >>> nngp = 0.5 * ntk; y = torch.tensor([1.0, -1.0], dtype=torch.float64)
        >>> p = gradient_descent_mse_ensemble(ntk, y, lr=0.1, steps=[0, math.inf], nngp_train_train=nngp)
        >>> p.mean[0], torch.allclose(p.mean[1], y)   # 0 at initialisation; y once trained to zero loss
        (tensor([0., 0.], dtype=torch.float64), True)
        >>> torch.allclose(p.covariance[0], nngp), float(p.covariance[1].abs().max()) < 1e-12
        (True, True)
    """
    if isinstance(lr, bool) or not isinstance(lr, (int, float)) or not math.isfinite(lr) or lr <= 0:
        raise ZerolossInputError(f"lr: must be a positive finite number, got {lr!r}")
    ridge = _ridge(ridge)
    times, kind, _ = _schedule(steps, time)
    Theta, eps = _train_kernel(ntk_train_train, "ntk_train_train")
    n, device = Theta.shape[0], Theta.device
    Y = _targets(y_train, n, device)
    test = ntk_test_train is not None
    if not test and (nngp_test_train is not None or nngp_test_test is not None):
        raise ZerolossInputError("ntk_test_train: needed with nngp_test_train / nngp_test_test (the test points' "
                                 "NTK block); without test blocks the prediction is on the training inputs")
    K = None if nngp_train_train is None else _block(nngp_train_train, "nngp_train_train", (n, n), device)
    cross_theta = _block(ntk_test_train, "ntk_test_train", (None, n), device) if test else Theta
    m = cross_theta.shape[0]
    K_cross = K_test = None
    if K is not None:
        if test:
            given = [nngp_test_train is not None, nngp_test_test is not None]
            if not all(given):
                missing = "nngp_test_train" if not given[0] else "nngp_test_test"
                raise ZerolossInputError(f"{missing}: needed for the test covariance with nngp_train_train "
                                         "(or leave out every NNGP block for the mean alone)")
            K_cross = _block(nngp_test_train, "nngp_test_train", (m, n), device)
            K_test = _test_test(nngp_test_test, "nngp_test_test", m, device)
        else:
            K_cross, K_test = K, K
    elif nngp_test_train is not None or nngp_test_test is not None:
        raise ZerolossInputError("nngp_train_train: needed with nngp_test_train / nngp_test_test (the covariance "
                                 "needs the training block too)")
    with no_tf32():
        spec = decompose(Theta, eps, ridge, "ntk_train_train")
        h = residual_factor(spec.lam, float(lr), times, kind)  # (T, n)
        g = h * inverse(spec.lam)  # (T, n): T_t(x) = A diag(g_t) Vᵀ, A = Θ(x, X) V
        A = cross_theta @ spec.V  # (m, n)
        mean = _mean(spec, A, g, Y)
        covariance = None if K is None else _covariance(spec, A, g, K, K_cross, K_test)
    shape = (len(times), m, *Y.shape[1:])
    return EnsemblePrediction(times, kind, float(lr), "test" if test else "train", mean.reshape(shape), covariance,
                              spec.lam)


def _mean(spec: Eigendecomposition, A: torch.Tensor, g: torch.Tensor, Y: torch.Tensor) -> torch.Tensor:
    """−T_t y = −A diag(g_t) Vᵀ y for every t: (T, m, c)."""
    coeff = spec.V.T @ Y.reshape(Y.shape[0], -1)  # (n, c)
    return 0.0 - torch.matmul(A, g.unsqueeze(-1) * coeff)  # 0.0 − x, not −x: no −0 where nothing moved


def _covariance(spec: Eigendecomposition, A: torch.Tensor, g: torch.Tensor, K: torch.Tensor, K_cross: torch.Tensor,
                K_test: torch.Tensor) -> torch.Tensor:
    """K(x, x) + T K(X, X) Tᵀ + T K(X, x) + K(x, X) Tᵀ for every t: (T, m, m), or its diagonal (T, m).

    In the eigenbasis of Θ(X, X): T_t = A diag(g_t) Vᵀ, so T K Tᵀ = (A diag g) W (A diag g)ᵀ with W = Vᵀ K V and
    T K(X, x) = (A diag g) B with B = Vᵀ K(X, x): one n × n and one n × m product, then per time m·n² work.
    """
    diagonal = K_test.ndim == 1
    W = spec.V.T @ K @ spec.V  # (n, n)
    B = spec.V.T @ K_cross.T  # (n, m)
    out = []
    for gt in g:
        Ag = A * gt  # (m, n)
        quad = _quadratic(Ag, W, diagonal)
        cross = (Ag * B.T).sum(-1) if diagonal else Ag @ B
        total = K_test + quad + (2.0 * cross if diagonal else cross + cross.T)
        out.append(_symmetric_part(total, diagonal))
    return torch.stack(out)
