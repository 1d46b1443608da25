"""The memory :func:`zeroloss.diagnose` needs, stated before it trains, and the up-front refusal over the budget.

With n training samples, k outputs per sample (N = n·k), m test samples (M = m·k), P trainable parameters of
itemsize s and A bytes of saved activations per sample (measured on one sample, as :func:`zeroloss.entk` does):

- kept for the whole run: Θ₀ (N × N float64) and the test cross kernel (M × N); the model, its linearisation's
  copy, θ₀, gradients and up to two optimiser moments (8·P·s);
- at a probe (the largest phase, besides the eNTK's own plan of :func:`zeroloss.entk_memory_bytes`): Θ_t, its
  symmetrised copy, Θ_t − Θ₀ and its symmetrised copy and the eigensolver's copy: 5 N × N float64;
- the closed-form prediction (:func:`zeroloss.predict_gd_mse`, every ``CHUNK`` steps): the kernel's copies, the
  eigenvectors and the eigensolver's workspace (5 N × N), and (CHUNK, N) + (CHUNK, M) arrays three times;
- training: a forward and backward pass of the real model on the n samples and one of the linearisation (a
  forward-mode pass carries a tangent beside every value): 3·A·n + 6·A·n; with the linearisation's reverse-mode
  route (a model whose ops lack forward-mode AD: :func:`zeroloss.linearize`) its Jacobians n·k·P·s.

The sum of what is kept and the largest phase is the statement; the N × N terms alone are checked first, from the
shapes, so a request for n = 200 000 is refused at once without measuring the model.
"""

from __future__ import annotations

import torch
from torch import nn

from zeroloss.budget import Budget, check_memory, format_bytes
from zeroloss.errors import ZerolossInputError

#: N × N float64 matrices alive at a probe or in the closed-form prediction, besides Θ₀ (module docstring).
SQUARE_TEMPORARIES = 5


def square_bytes(n: int, outputs: int, n_test: int = 0, chunk: int = 512) -> int:
    """Bytes of diagnose's kernel matrices from the shapes alone: Θ₀, the test cross kernel, the largest phase of
    N × N temporaries and the prediction's (chunk, N + M) arrays (module docstring).

    Examples:
        >>> square_bytes(1000, 1) == 8 * (6 * 1000**2 + 3 * 512 * 1000)
        True
    """
    N, M = int(n) * int(outputs), int(n_test) * int(outputs)
    return 8 * ((1 + SQUARE_TEMPORARIES) * N * N + M * N + 3 * chunk * (N + M))


def model_bytes(model: nn.Module, X: torch.Tensor, names: list[str], outputs: int, reverse_route: bool) -> int:
    """Bytes of the model side: 8·P·s for the copies, gradients and moments; the training passes (9·A·n); the
    reverse-mode route's Jacobians (n·k·P·s) when ``reverse_route`` (module docstring)."""
    from zeroloss.ntk.memory import measure
    from zeroloss.ntk.model import eval_mode, prepare

    view = prepare(model, names, next(iter(dict(model.named_parameters()).values())).dtype)[0]
    with eval_mode(model):
        fp = measure(view, X)
    n = X.shape[0]
    jacobians = n * outputs * fp.params if reverse_route else 0
    return 8 * fp.params + 9 * fp.activations * n + jacobians


def check_diagnose_memory(model: nn.Module, X: torch.Tensor, names: list[str], outputs: int,
                          X_test: torch.Tensor | None, budget: Budget, field: str = "X",
                          flag: str = "memory_budget") -> int:
    """The stated bytes of a diagnosis (module docstring), refused in one line naming ``field`` over ``budget``.

    The N × N part is checked first from the shapes; then the eNTK's own plan (:func:`zeroloss.entk_memory_bytes`
    within what the budget leaves) and the model's side. Returns the statement.
    """
    from zeroloss.ntk.entk import entk_memory_bytes
    from zeroloss.ntk.memory import MemoryRefusal
    from zeroloss.ntk.model import eval_mode, prepare
    from zeroloss.ntk.reference import forward_mode_gap

    n, m = X.shape[0], 0 if X_test is None else X_test.shape[0]
    N = n * outputs
    hint = "use fewer samples"
    squares = square_bytes(n, outputs, m)
    what = f"the diagnosis of n = {n} samples × {outputs} output(s) (kernel matrices of {N} × {N} float64)"
    check_memory(squares, budget, field=field, what=what, flag=flag, hint=hint)
    full = "full" if outputs > 1 else "trace"
    kept = 8 * (N * N + m * outputs * N)
    try:
        entk_bytes = entk_memory_bytes(model, X, params=names, outputs=full, dtype=torch.float64,
                                       memory_budget=max(1, budget.bytes - kept))
    except MemoryRefusal as err:
        raise ZerolossInputError(f"{field}: the eNTK of the diagnosis does not fit the memory budget of "
                                 f"{format_bytes(budget.bytes)} ({budget.source}) beside its {format_bytes(kept)} "
                                 f"of kernels ({str(err).partition(': ')[2]}); {hint}, or raise it with {flag}"
                                 ) from None
    dtype = next(iter(dict(model.named_parameters()).values())).dtype
    with eval_mode(model):
        reverse = forward_mode_gap(prepare(model, names, dtype)[0], X) is not None
    side = model_bytes(model, X, names, outputs, reverse)
    need = kept + side + max(squares - kept, entk_bytes)
    check_memory(need, budget, field=field, what=what + " and its model", flag=flag, hint=hint)
    return need


def diagnose_memory_bytes(model: nn.Module, X: object, y: object, *, X_test: object = None, y_test: object = None,
                          params: list[str] | None = None, dtype: torch.dtype | None = torch.float64,
                          memory_budget: int | str | None = None) -> int:
    """The bytes :func:`zeroloss.diagnose` with the same arguments states (module docstring), before any training.

    Raises the one-line :class:`~zeroloss.errors.ZerolossInputError` that :func:`zeroloss.diagnose` raises up front
    when the statement exceeds ``memory_budget`` (None: ``ZEROLOSS_MAX_BYTES``, else half the available memory).

    Examples:
        >>> import torch
        >>> net = torch.nn.Sequential(torch.nn.Linear(3, 32), torch.nn.Tanh(), torch.nn.Linear(32, 1))
        >>> X, y = torch.randn(20, 3), torch.randn(20)
        >>> diagnose_memory_bytes(net, X, y) > 6 * 20 * 20 * 8      # Θ₀ and the N × N temporaries, at least
        True
    """
    from zeroloss.budget import resolve_budget
    from zeroloss.diagnosis.checks import check_problem

    budget = resolve_budget(memory_budget, "memory_budget")
    with torch.enable_grad():
        prob = check_problem(model, X, y, X_test, y_test, params=params, dtype=dtype)
        return check_diagnose_memory(prob.model, prob.X, prob.names, prob.outputs, prob.X_test, budget)
