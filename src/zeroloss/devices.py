"""Where tensors live: the one resolution of ``"auto"`` (and of every other device name) for the whole package.

Examples:
    >>> resolve_device("cpu")
    device(type='cpu')
    >>> resolve_device("auto").type in ("cpu", "cuda")
    True
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from zeroloss.errors import ZerolossInputError

if TYPE_CHECKING:  # torch is imported when a device is resolved, not when this module is
    import torch


def resolve_device(device: str | torch.device | None = "auto", field: str = "device") -> torch.device:
    """Turn a device name into a :class:`torch.device`.

    Args:
        device: ``None`` or ``"auto"`` (CUDA when ``torch.cuda.is_available()``, else the CPU), ``"cpu"``,
            ``"cuda"``, ``"cuda:N"``, any other name :class:`torch.device` parses, or a :class:`torch.device`
            (passed through unchanged).
        field: the argument named in errors (``"--device"`` on the command line).

    Returns:
        the device.

    Raises:
        ZerolossInputError: a name torch does not know, or CUDA asked for where it is not available.
    """
    import torch

    if isinstance(device, torch.device):
        return device
    if device is None or device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        resolved = torch.device(device)
    except (RuntimeError, TypeError):
        raise ZerolossInputError(f"{field}: must be auto, cpu, cuda or cuda:N, got {device!r}") from None
    if resolved.type == "cuda" and not torch.cuda.is_available():
        raise ZerolossInputError(f"{field}: cuda was asked for but torch.cuda.is_available() is False; use cpu")
    return resolved
