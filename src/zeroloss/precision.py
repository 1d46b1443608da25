"""Numerical-precision guards: TF32 (and bf16) off while kernels and spectra are computed.

On Ampere and Hopper GPUs PyTorch may run float32 matmuls in TF32 (10-bit mantissa), and on the CPU oneDNN may
run them in bf16 (after ``torch.set_float32_matmul_precision("medium")``): both are far too coarse for Gram
matrices whose λ_min is small. :func:`no_tf32` forces IEEE float32 inside a ``with`` block and restores the
user's settings afterwards.

PyTorch ≥ 2.9 has two APIs for these settings, the per-backend ``fp32_precision`` attributes and the legacy
``allow_tf32`` flags / ``set_float32_matmul_precision``, and it raises when the legacy flags are *read* after the
new API was *written*. So the guard reads, writes and restores only the new attributes: that never raises,
whichever API the user chose, and leaves the user's legacy reads working if the user used the legacy API.
Older torch (no ``fp32_precision``) gets the legacy flags.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch

#: The backends whose float32 precision the guard pins to IEEE (``torch.backends.<path>.fp32_precision``).
FP32_PRECISION_BACKENDS = ("cuda.matmul", "cudnn.conv", "cudnn.rnn", "mkldnn.matmul", "mkldnn.conv", "mkldnn.rnn")


def _backend(path: str) -> object:
    obj: object = torch.backends
    for part in path.split("."):
        obj = getattr(obj, part)
    return obj


def _has_fp32_precision_api() -> bool:
    return hasattr(torch.backends.cuda.matmul, "fp32_precision")


@contextlib.contextmanager
def no_tf32() -> Iterator[None]:
    """Context manager: IEEE float32 for CUDA matmuls, cuDNN and oneDNN inside the block, settings restored after.

    Examples:
        >>> import torch
        >>> from zeroloss.precision import no_tf32
        >>> with no_tf32():
        ...     torch.backends.cuda.matmul.fp32_precision
        'ieee'
    """
    if not _has_fp32_precision_api():  # torch < 2.9
        with _legacy_no_tf32():
            yield
        return
    backends = [_backend(path) for path in FP32_PRECISION_BACKENDS]
    saved = [b.fp32_precision for b in backends]
    for b in backends:
        b.fp32_precision = "ieee"
    try:
        yield
    finally:
        for b, value in zip(backends, saved, strict=True):
            b.fp32_precision = value


@contextlib.contextmanager
def _legacy_no_tf32() -> Iterator[None]:
    matmul = torch.backends.cuda.matmul.allow_tf32
    cudnn = torch.backends.cudnn.allow_tf32
    precision = torch.get_float32_matmul_precision()
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    torch.set_float32_matmul_precision("highest")
    try:
        yield
    finally:
        torch.backends.cuda.matmul.allow_tf32 = matmul
        torch.backends.cudnn.allow_tf32 = cudnn
        torch.set_float32_matmul_precision(precision)
