"""Numerical-precision guards: TF32 off while kernels and spectra are computed.

On Ampere and Hopper GPUs PyTorch may run float32 matmuls in TF32 (10-bit mantissa), which is far too coarse
for Gram matrices whose λ_min is small. :func:`no_tf32` disables it inside a ``with`` block and restores the
user's settings afterwards.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch


@contextlib.contextmanager
def no_tf32() -> Iterator[None]:
    """Context manager: TF32 off for CUDA matmuls and cuDNN inside the block, previous settings restored after."""
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
