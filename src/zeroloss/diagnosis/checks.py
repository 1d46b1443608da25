"""Input checks of :func:`zeroloss.diagnose`: one-line :class:`~zeroloss.errors.ZerolossInputError` naming the field.

The field names are parameters, so that the command line can name its own options (``--model``, ``--data``)
instead of the library's (``model``, ``X``, ``y``).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn

from zeroloss.errors import ZerolossInputError
from zeroloss.ntk.linearize import selected_parameters

#: The optimisers :func:`zeroloss.diagnose` knows by name (a callable ``(params, lr) -> Optimizer`` is also accepted).
OPTIMIZERS = ("gd", "adam")


@dataclass
class Problem:
    """A validated model/data pair, in the dtype the diagnosis computes in.

    Attributes:
        model: a deep copy of the user's model, cast to ``dtype``, in eval mode.
        names: the trainable parameter names (θ).
        X: (n, ...) inputs (floating inputs cast to ``dtype``; integer token ids kept).
        Y: (n, k) targets; ``y_shape`` is the shape the user gave.
        outputs: k, outputs per sample.
        X_test, Y_test: the same for the test set, or None.
    """

    model: nn.Module
    names: list[str]
    X: torch.Tensor
    Y: torch.Tensor
    y_shape: tuple[int, ...]
    outputs: int
    X_test: torch.Tensor | None
    Y_test: torch.Tensor | None


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def _as_tensor(value: object, field: str) -> torch.Tensor:
    if isinstance(value, torch.Tensor):
        t = value.detach()
    else:
        try:
            t = torch.as_tensor(value)
        except (TypeError, ValueError, RuntimeError):
            raise ZerolossInputError(f"{field}: must be a tensor or a numeric array, got {type(value).__name__}") \
                from None
    if t.is_complex() or t.dtype == torch.bool:
        raise ZerolossInputError(f"{field}: must be real numbers (float, or integer token ids), got {t.dtype}")
    if t.ndim < 1 or t.shape[0] == 0:
        raise ZerolossInputError(f"{field}: must have at least one sample on axis 0, got shape {tuple(t.shape)}")
    if t.is_floating_point() and not torch.isfinite(t).all():
        raise ZerolossInputError(f"{field}: contains NaN or inf entries")
    return t


def apply_model(model: nn.Module, X: torch.Tensor, field: str) -> torch.Tensor:
    """model(X) as (n, k); an exception from the model becomes a one-line error naming ``field`` (the inputs)."""
    try:
        out = model(X)
    except (RuntimeError, TypeError, ValueError, IndexError) as exc:
        if not X.is_floating_point():
            raise ZerolossInputError(
                f"{field}: integer inputs ({X.dtype}) but the model does not accept them ({_first_line(exc)}); "
                "integer inputs are for token ids (a model that starts with nn.Embedding): cast them to float"
            ) from exc
        raise ZerolossInputError(f"{field}: the model cannot be applied to inputs of shape {tuple(X.shape)}: "
                                 f"{_first_line(exc)}") from exc
    if not isinstance(out, torch.Tensor):
        raise ZerolossInputError(f"{field}: the model must return one tensor (n, ...), got {type(out).__name__}")
    if out.ndim < 1 or out.shape[0] != X.shape[0]:
        raise ZerolossInputError(f"{field}: the model's output must have the n = {X.shape[0]} samples on axis 0, "
                                 f"got shape {tuple(out.shape)}")
    return out.reshape(X.shape[0], -1)


def _targets(y: object, n: int, k: int, field: str) -> tuple[torch.Tensor, tuple[int, ...]]:
    Y = _as_tensor(y, field)
    if not Y.is_floating_point():
        Y = Y.to(torch.float64)
    shape = tuple(Y.shape)
    if shape[0] != n or Y.numel() != n * k:
        want = f"({n},) or ({n}, {k})" if k > 1 else f"({n},) or ({n}, 1)"
        raise ZerolossInputError(f"{field}: must have shape {want} to match the model's {k} output(s) on {n} "
                                 f"samples, got {shape}")
    return Y.reshape(n, k), shape


def check_problem(model: object, X: object, y: object, X_test: object = None, y_test: object = None, *,
                  params: list[str] | None = None, dtype: torch.dtype | None = torch.float64,
                  fields: tuple[str, str, str] = ("model", "X", "y")) -> Problem:
    """Validate a model and its data and return a :class:`Problem` (a cast deep copy of the model).

    Checks: ``model`` is an ``nn.Module`` with floating trainable parameters whose output depends on them
    differentiably; X has samples on axis 0 and the model accepts it (integer X only for token-id models); y has
    the model's k outputs per sample; the test set likewise.

    Args:
        fields: the names used in error messages for (model, X, y); the test set's are prefixed ``test ``.
    """
    import copy

    f_model, f_x, f_y = fields
    if not isinstance(model, nn.Module):
        raise ZerolossInputError(f"{f_model}: must be a torch.nn.Module, got {type(model).__name__}")
    if dtype not in (None, torch.float32, torch.float64):
        raise ZerolossInputError(f"dtype: must be torch.float32, torch.float64 or None (the model's), got {dtype}")
    named = dict(model.named_parameters())
    nonfloat = [k for k, p in named.items() if not p.is_floating_point()]
    if nonfloat and params is None:
        bad = nonfloat[0]
        raise ZerolossInputError(f"{f_model}: parameter {bad!r} is not floating point ({named[bad].dtype}) and "
                                 "cannot be differentiated; make it a buffer or pass params=[...]")
    try:
        names = selected_parameters(model, params)
    except ZerolossInputError as exc:
        field = "params" if params is not None else f_model
        raise ZerolossInputError(f"{field}: {str(exc).split(': ', 1)[1]}") from None
    meta = [k for k, p in named.items() if p.is_meta]
    if meta:
        raise ZerolossInputError(f"{f_model}: parameter {meta[0]!r} is on the meta device (a shape without values); "
                                 "create the model on the CPU or a GPU, or materialise it (to_empty, then initialise)")
    real = copy.deepcopy(model)
    if dtype is not None:
        real = real.to(dtype)
    real.eval()
    work_dtype = next(p for k, p in real.named_parameters() if k in set(names)).dtype
    Xt = _as_tensor(X, f_x)
    Xt = Xt.to(work_dtype) if Xt.is_floating_point() else Xt
    out = apply_model(real, Xt, f_x)
    if not out.is_floating_point():
        raise ZerolossInputError(f"{f_model}: the output must be floating point, got {out.dtype}")
    if not torch.isfinite(out).all():
        raise ZerolossInputError(f"{f_model}: its output on {f_x} at initialisation has NaN or inf entries; nothing "
                                 "can be trained or linearised from there")
    if not out.requires_grad:
        raise ZerolossInputError(f"{f_model}: the output does not depend differentiably on any trainable parameter "
                                 "(detached, argmax, integer ops?): nothing to linearise")
    n, k = out.shape
    Y, y_shape = _targets(y, n, k, f_y)
    Y = Y.to(work_dtype)
    Xte = Yte = None
    if X_test is not None:
        Xte = _as_tensor(X_test, f"test {f_x}")
        if tuple(Xte.shape[1:]) != tuple(Xt.shape[1:]):
            raise ZerolossInputError(f"test {f_x}: per-sample shape must equal the training inputs' "
                                     f"{tuple(Xt.shape[1:])}, got {tuple(Xte.shape[1:])}")
        Xte = Xte.to(work_dtype) if Xte.is_floating_point() else Xte
        if y_test is not None:
            Yte = _targets(y_test, Xte.shape[0], k, f"test {f_y}")[0].to(work_dtype)
    elif y_test is not None:
        raise ZerolossInputError(f"test {f_y}: given without test inputs")
    return Problem(real, names, Xt, Y, y_shape, k, Xte, Yte)


def check_lr(lr: object, field: str = "lr") -> float | None:
    """None (choose from the kernel) or a positive finite float."""
    if lr is None:
        return None
    if isinstance(lr, bool) or not isinstance(lr, (int, float)) or not math.isfinite(lr) or lr <= 0:
        raise ZerolossInputError(f"{field}: must be a positive finite number (or None: from 2/λ_max(Θ₀)), got {lr!r}")
    return float(lr)


def check_fraction(value: object, field: str = "lr_fraction") -> float:
    """A number in (0, 1]: the step as a fraction of the stability edge 2/λ_max."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 < value <= 1:
        raise ZerolossInputError(f"{field}: must be in (0, 1] (a fraction of 2/λ_max(Θ₀)), got {value!r}")
    return float(value)


def make_optimizer(optimizer: object, field: str = "optimizer") -> Callable[[list[torch.Tensor], float],
                                                                           torch.optim.Optimizer]:
    """``"gd"`` → plain full-batch GD (``torch.optim.SGD`` without momentum), ``"adam"`` → Adam, or the user's
    callable ``(params, lr) -> torch.optim.Optimizer``."""
    if callable(optimizer):
        return optimizer  # type: ignore[return-value]
    if optimizer == "gd":
        return lambda params, lr: torch.optim.SGD(params, lr=lr)
    if optimizer == "adam":
        return lambda params, lr: torch.optim.Adam(params, lr=lr)
    raise ZerolossInputError(f"{field}: must be one of {', '.join(OPTIMIZERS)} or a callable (params, lr) -> "
                             f"torch.optim.Optimizer, got {optimizer!r}")


def check_positive_int(value: object, field: str, allow_none: bool = False) -> int | None:
    if value is None and allow_none:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise ZerolossInputError(f"{field}: must be a positive integer, got {value!r}")
    return int(value)
