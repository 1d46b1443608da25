"""Data sets for the theory: points on the unit sphere, labels, scikit-learn's digits, patch inputs; validation.

Du et al. assume unit-norm inputs (Frobenius norm 1 for the convolutional net), no two inputs parallel (else
λ₀ = 0) and |y_i| = O(1) (docs/theory.md §1.1). :func:`validate_inputs` checks exactly these and names the problem.
Nothing is downloaded: the digits come with scikit-learn.

Examples:
    >>> X, y = sphere_data(n=4, d=3, seed=0)
    >>> X.shape, y.shape, bool(torch.allclose(X.norm(dim=1), torch.ones(4, dtype=X.dtype)))
    (torch.Size([4, 3]), torch.Size([4]), True)
"""

from __future__ import annotations

import numpy as np
import torch

from zeroloss.errors import ZerolossInputError, boolean, choice, positive_int

LABELS = ("random", "gaussian", "teacher")
#: Two unit vectors whose |cosine| exceeds this are reported as parallel (λ₀ would be 0 up to round-off).
PARALLEL_COSINE = 1.0 - 1e-9
#: Allowed deviation of an input's norm from 1 before it counts as "not on the sphere" (float32 round-off is
#: about 1e-7 per entry; 1e-5 leaves room for it without accepting genuinely unnormalised data).
NORM_TOLERANCE = 1e-5


def _normalise_rows(X: torch.Tensor) -> torch.Tensor:
    flat = X.reshape(X.shape[0], -1)
    return (flat / flat.norm(dim=1, keepdim=True)).reshape(X.shape)


def _as_native_tensor(X: torch.Tensor | np.ndarray, name: str) -> torch.Tensor:
    """``X`` as a tensor; a NumPy array in another byte order, or of ``longdouble``/``float16``, is converted first
    (torch reads neither), and anything that is not real numbers is refused."""
    if isinstance(X, np.ndarray):
        if X.dtype.kind not in "fiu":
            raise ZerolossInputError(f"{name}: must be real numbers (floats or integers), got dtype {X.dtype}")
        if X.dtype.kind == "f" and X.dtype.itemsize not in (4, 8):
            with np.errstate(over="ignore"):
                X = X.astype(np.float64)
        elif not X.dtype.isnative:
            X = X.astype(X.dtype.newbyteorder("="))
    try:
        return torch.as_tensor(X)
    except (TypeError, ValueError, RuntimeError) as exc:
        raise ZerolossInputError(f"{name}: must be a tensor or a numeric array ({exc})") from None


def validate_inputs(
    X: torch.Tensor | np.ndarray,
    unit_norm: bool = True,
    normalise: bool = False,
    check_parallel: bool = True,
    name: str = "X",
) -> torch.Tensor:
    """Check inputs for Du et al.'s nets and return them as a float64 tensor.

    Args:
        X: (n, d), or (n, channels, positions) for the convolutional ResNet (norm = Frobenius norm per sample).
        unit_norm: require ‖x_i‖ = 1 (within :data:`NORM_TOLERANCE`).
        normalise: project every x_i onto the sphere instead of raising (an explicit choice).
        check_parallel: reject duplicate or parallel inputs (|cos| > :data:`PARALLEL_COSINE`), which make λ₀ = 0.
        name: the field name used in error messages.

    Raises:
        ZerolossInputError: NaN/inf, wrong rank, a zero input, non-unit norms, parallel or duplicate points —
            the message names the rows.
    """
    unit_norm, normalise = boolean(unit_norm, "unit_norm"), boolean(normalise, "normalise")
    check_parallel = boolean(check_parallel, "check_parallel")
    X = _as_native_tensor(X, name)
    if X.ndim not in (2, 3):
        raise ZerolossInputError(f"{name}: must have shape (n, d) or (n, channels, positions), got {tuple(X.shape)}")
    if X.shape[0] < 1 or X[0].numel() < 1:
        raise ZerolossInputError(f"{name}: must hold at least one non-empty input, got shape {tuple(X.shape)}")
    X = X.to(torch.float64)
    if not torch.isfinite(X).all():
        bad = int(torch.nonzero(~torch.isfinite(X.reshape(X.shape[0], -1)).all(dim=1))[0])
        raise ZerolossInputError(f"{name}: contains NaN or inf (first in row {bad})")
    norms = X.reshape(X.shape[0], -1).norm(dim=1)
    if not torch.isfinite(norms).all():  # entries near 1e308: the sum of squares overflows float64
        raise ZerolossInputError(f"{name}: row {int(torch.nonzero(~torch.isfinite(norms))[0])} has a norm beyond "
                                 "float64's range (entries near 1e308); scale the inputs down")
    if (norms == 0).any():
        raise ZerolossInputError(f"{name}: row {int(torch.nonzero(norms == 0)[0])} is zero; inputs must be non-zero")
    if normalise:
        X = _normalise_rows(X)
    elif unit_norm:
        off = (norms - 1.0).abs()
        if (off > NORM_TOLERANCE).any():
            row = int(off.argmax())
            raise ZerolossInputError(
                f"{name}: Du et al.'s nets need unit-norm inputs; row {row} has norm {float(norms[row]):.6g} "
                "(pass normalise=True / --normalise to project onto the sphere)"
            )
    if check_parallel:
        _check_not_parallel(X, name)
    return X


#: Bytes of one block of cosines in the parallel-rows check: memory stays bounded whatever n (a fixed 4096-row
#: block was 6.5 GB at n = 200 000).
PARALLEL_BLOCK_BYTES = 64 * 2**20


def _check_not_parallel(X: torch.Tensor, name: str, block: int | None = None) -> None:
    """Raise if two inputs are parallel or equal; blockwise, (block, n) cosines at a time (default: at most
    :data:`PARALLEL_BLOCK_BYTES`)."""
    U = _normalise_rows(X).reshape(X.shape[0], -1)
    n = U.shape[0]
    block = block or max(1, min(4096, PARALLEL_BLOCK_BYTES // (8 * n)))
    for start in range(0, n, block):
        cos = U[start : start + block] @ U.T  # (b, n)
        rows = torch.arange(start, min(start + block, n), device=U.device)
        cos[rows - start, rows] = 0.0
        hit = cos.abs() > PARALLEL_COSINE
        if hit.any():
            i, j = (int(v) for v in torch.nonzero(hit)[0])
            kind = "duplicates" if cos[i, j] > 0 else "antiparallel"
            raise ZerolossInputError(
                f"{name}: rows {start + i} and {j} are parallel ({kind}, cos = {float(cos[i, j]):.12f}); "
                "parallel inputs make λ₀ = 0 — remove one of them"
            )


def teacher_labels(X: torch.Tensor, seed: int = 0, width: int = 64, depth: int = 2,
                   activation: str = "softplus") -> torch.Tensor:
    """Labels from a random teacher net of Du's family, centred and scaled to unit variance: shape (n,).

    The teacher is a :class:`~zeroloss.nets.FullyConnected` (or :class:`~zeroloss.nets.ConvResNet` for 3-D
    inputs) drawn with ``seed + 10_000`` so it never coincides with a student built with a small seed.
    """
    from zeroloss.nets.registry import build_net

    X = torch.as_tensor(X, dtype=torch.float64)
    net = build_net("conv-resnet" if X.ndim == 3 else "fc", X.shape[1:], width=width, depth=depth,
                    activation=activation, seed=seed + 10_000, dtype=torch.float64)
    with torch.no_grad():
        y = net(X)[0]
    return (y - y.mean()) / y.std().clamp_min(1e-12)


def make_labels(X: torch.Tensor, labels: str, seed: int) -> torch.Tensor:
    """Labels for inputs X: ``random`` (±1), ``gaussian`` (N(0, 1)) or ``teacher`` (see :func:`teacher_labels`)."""
    choice(labels, "labels", LABELS)
    n = X.shape[0]
    gen = torch.Generator().manual_seed(seed + 1)
    if labels == "random":
        return torch.randint(0, 2, (n,), generator=gen, device="cpu").to(torch.float64) * 2.0 - 1.0
    if labels == "gaussian":
        return torch.randn(n, generator=gen, dtype=torch.float64, device="cpu")
    return teacher_labels(X, seed=seed)


def sphere_data(n: int, d: int, seed: int = 0, labels: str = "random") -> tuple[torch.Tensor, torch.Tensor]:
    """n points uniform on the unit sphere S^{d−1} (Gaussian, then normalised) and labels.

    Returns:
        X (n, d) float64 with ‖x_i‖ = 1, y (n,) float64.
    """
    n, d = positive_int(n, "n"), positive_int(d, "d")
    gen = torch.Generator().manual_seed(seed)
    X = _normalise_rows(torch.randn(n, d, generator=gen, dtype=torch.float64, device="cpu"))  # data made on the host
    return X, make_labels(X, labels, seed)


def patch_data(n: int, channels: int, positions: int, seed: int = 0,
               labels: str = "random") -> tuple[torch.Tensor, torch.Tensor]:
    """Inputs for the convolutional ResNet: (n, channels, positions) with Frobenius norm 1, and labels.

    Each input is a Gaussian field smoothed along positions with a [1, 2, 1]/4 filter (so neighbouring patches
    are correlated, as in images) and then normalised; ``labels="teacher"`` draws them from a random ConvResNet.
    """
    n, channels, positions = (positive_int(v, f) for v, f in ((n, "n"), (channels, "channels"),
                                                              (positions, "positions")))
    gen = torch.Generator().manual_seed(seed)
    raw = torch.randn(n, channels, positions + 2, generator=gen, dtype=torch.float64, device="cpu")
    smooth = 0.25 * raw[..., :-2] + 0.5 * raw[..., 1:-1] + 0.25 * raw[..., 2:]
    X = _normalise_rows(smooth)
    return X, make_labels(X, labels, seed)


DIGITS_LABELS = ("parity", "random", "gaussian", "teacher")


def digits_data(n: int = 64, seed: int = 0, labels: str = "parity") -> tuple[torch.Tensor, torch.Tensor]:
    """scikit-learn's 8×8 digits (shipped with the package, no download), projected onto the unit sphere.

    A random subset of n distinct images (duplicates and parallel images removed first) in d = 64.

    Args:
        n: number of images (at most the number of distinct ones, 1 700 or so).
        seed: subset choice (and random labels).
        labels: ``parity`` (+1 for even digits, −1 for odd), or ``random``, ``gaussian``, ``teacher``.

    Returns:
        X (n, 64) float64 unit rows, y (n,) float64.
    """
    from sklearn.datasets import load_digits

    choice(labels, "labels", DIGITS_LABELS)
    n = positive_int(n, "n")
    bunch = load_digits()
    images = torch.as_tensor(bunch.data, dtype=torch.float64)
    targets = torch.as_tensor(bunch.target)
    unit = _normalise_rows(images)
    keep = _distinct_directions(unit)
    if n > len(keep):
        raise ZerolossInputError(f"n: digits has {len(keep)} distinct images, got n={n}")
    gen = torch.Generator().manual_seed(seed)
    pick = keep[torch.randperm(len(keep), generator=gen, device="cpu")[:n]]
    X = unit[pick]
    if labels == "parity":
        y = 1.0 - 2.0 * (targets[pick] % 2).to(torch.float64)
    else:
        y = make_labels(X, labels, seed)
    return X, y


def _distinct_directions(U: torch.Tensor) -> torch.Tensor:
    """Indices of rows of U (unit rows) keeping the first of every group of parallel rows."""
    cos = U @ U.T
    cos.fill_diagonal_(0.0)
    later_dup = torch.triu(cos.abs() > PARALLEL_COSINE, diagonal=1).any(dim=0)
    return torch.nonzero(~later_dup).squeeze(1)
