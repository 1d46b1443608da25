"""The linearised model of any ``nn.Module``: first-order Taylor expansion in the parameters around θ₀.

    f_lin(x; θ) = f(x; θ₀) + J(x; θ₀)(θ − θ₀),        J(x; θ₀) = ∂f(x; θ)/∂θ at θ₀

computed by one forward-mode pass, ``torch.func.jvp`` of θ ↦ f(x; θ) at θ₀ along the tangent θ − θ₀: the primal
output is f(x; θ₀), the tangent output J(x; θ₀)(θ − θ₀). No Jacobian is formed. The tangent output is
differentiable in θ, so the module trains with any ``torch.optim`` optimiser; its gradient is J(x; θ₀)ᵀ g, the
gradient of the real model at θ₀, whatever θ is.

Attention runs through differentiable primitives (:func:`zeroloss.ntk.model.eval_mode`: the fused fast path of
``nn.MultiheadAttention`` / ``nn.TransformerEncoderLayer`` off, ``scaled_dot_product_attention`` on its "math"
backend), as in :func:`zeroloss.entk`. A model with an op that has no forward-mode derivative in torch
(``nn.EmbeddingBag``'s ``_embedding_bag``) takes the reverse-mode route instead (``route == "jacobian"``): the
per-sample Jacobians J(x; θ₀) (n, k, P) by ``vmap(jacrev)``, as :func:`zeroloss.entk`'s "jacobian" method, kept for
the last inputs seen (a training loop reuses them every step), and f_lin = f(x; θ₀) + J(x; θ₀)(θ − θ₀) as an
ordinary differentiable product. Its memory is n·k·P values of the parameters' dtype (counted by
:func:`zeroloss.diagnose_memory_bytes`); it needs one input tensor and one output tensor, samples on axis 0.
Tensor inputs are copied before the model sees them, so an in-place forward (``x.mul_(2)``) changes nothing of
the caller's. Under gradient descent on the squared loss its outputs follow the
closed form of :func:`zeroloss.predict_gd_mse` with the empirical NTK Θ₀ = J Jᵀ (docs/theory.md §1.3).

The module holds a deep copy of the model (so the user's model is never modified): its parameters are θ, trainable,
starting at θ₀; θ₀ itself is kept in non-trainable buffers. The model is always applied in eval mode (BatchNorm
running statistics, no dropout), as the empirical NTK of :func:`zeroloss.entk` is: the linearisation is that of
the deterministic function x ↦ f(x; θ) with the buffers frozen at their values.

References:
    Lee et al., *Wide Neural Networks of Any Depth Evolve as Linear Models Under Gradient Descent*, NeurIPS 2019.
    Chizat, Oyallon, Bach, *On Lazy Training in Differentiable Programming*, NeurIPS 2019.

Examples:
    >>> import torch
    >>> torch.manual_seed(0) and None
    >>> net = torch.nn.Sequential(torch.nn.Linear(3, 16), torch.nn.Tanh(), torch.nn.Linear(16, 1)).double()
    >>> lin = linearize(net)
    >>> x = torch.randn(5, 3, dtype=torch.float64)
    >>> torch.allclose(lin(x), net(x))                  # f_lin(x; θ₀) = f(x; θ₀)
    True
    >>> opt = torch.optim.SGD(lin.parameters(), lr=0.1)
    >>> loss = 0.5 * lin(x).pow(2).sum(); loss.backward(); opt.step()
    >>> bool(0.5 * lin(x).pow(2).sum() < loss)
    True
"""

from __future__ import annotations

import copy
import warnings
from collections.abc import Sequence
from typing import Any

import torch
from torch import nn
from torch.func import functional_call, jvp
from torch.utils._pytree import tree_map

from zeroloss.errors import ZerolossInputError
from zeroloss.ntk.model import FunctionalModel, eval_mode, owner_of
from zeroloss.ntk.reference import forward_mode_op, jacobian_factor

#: Samples per ``vmap(jacrev)`` call of the reverse-mode route (bounds its transient memory; J itself is n·k·P).
JACOBIAN_CHUNK = 64


def _copy_tensors(tree: Any) -> Any:
    return tree_map(lambda t: t.clone() if isinstance(t, torch.Tensor) else t, tree)


def _forward_mode_missing(err: BaseException) -> bool:
    """True for torch's error about an op without a forward-mode derivative (the reverse route then applies)."""
    return "forward AD" in str(err) or "forward-mode" in str(err).lower()


def _add(a: Any, b: Any) -> Any:
    """a + b over tensors and (nested) tuples, lists and dicts of tensors (the model's output structure)."""
    if isinstance(a, torch.Tensor):
        return a + b
    if isinstance(a, (tuple, list)):
        return type(a)(_add(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, dict):
        return {k: _add(a[k], b[k]) for k in a}
    raise ZerolossInputError(f"model: outputs must be tensors (or tuples/lists/dicts of them), got {type(a).__name__}")


def selected_parameters(model: nn.Module, params: Sequence[str] | None, field: str = "params") -> list[str]:
    """Names of the parameters θ that count: ``params`` (checked), or every floating parameter with requires_grad.

    Raises:
        ZerolossInputError: an unknown name, a non-floating parameter, or no parameter at all.
    """
    named = dict(model.named_parameters())
    if params is None:
        names = [k for k, p in named.items() if p.requires_grad]
    else:
        if isinstance(params, str) or not all(isinstance(k, str) for k in params):
            raise ZerolossInputError(f"{field}: must be a list of parameter names, got {params!r}")
        unknown = [k for k in params if k not in named]
        if unknown:
            raise ZerolossInputError(f"{field}: unknown parameter(s) {unknown}; the model has {list(named)}")
        names = list(dict.fromkeys(params))
    bad = [k for k in names if not named[k].is_floating_point()]
    if bad:
        raise ZerolossInputError(f"{field}: parameters must be floating point to be differentiated, got {bad}")
    if not names:
        raise ZerolossInputError(f"{field}: the model has no trainable parameter (none with requires_grad=True)")
    return names


class Linearized(nn.Module):
    """f_lin(x; θ) = f(x; θ₀) + J(x; θ₀)(θ − θ₀) for a copy of ``model`` (see the module docstring).

    Args:
        model: any ``nn.Module`` whose output is a tensor (or a tuple/list/dict of tensors).
        params: names of the parameters to linearise in (default: every parameter with ``requires_grad``); the
            others stay fixed at their values and are not trainable here.

    Attributes:
        model: the copy; its selected parameters are θ (trainable), everything else is frozen.
        names: the selected parameter names, in ``named_parameters`` order.
        route: ``"jvp"`` (forward mode, the default) or ``"jacobian"`` (reverse mode, taken when the first call
            meets an op without a forward-mode derivative; see the module docstring).
    """

    def __init__(self, model: nn.Module, params: Sequence[str] | None = None) -> None:
        super().__init__()
        if not isinstance(model, nn.Module):
            raise ZerolossInputError(f"model: must be a torch.nn.Module, got {type(model).__name__}")
        names = selected_parameters(model, params)
        self.model = copy.deepcopy(model)
        self.model.eval()
        self.names = names
        keep = set(names)
        for k, p in self.model.named_parameters():
            p.requires_grad_(k in keep)
        named = dict(self.model.named_parameters())
        for i, k in enumerate(names):  # θ₀ as buffers: they follow .to(device/dtype) and the state dict
            self.register_buffer(f"theta0_{i}", named[k].detach().clone())
        self.route = "jvp"
        self._cache: tuple[torch.Tensor, torch.Tensor, dict[str, torch.Tensor]] | None = None

    def train(self, mode: bool = True) -> Linearized:
        """Sets this module's flag only: the wrapped model always runs in eval mode (see the module docstring)."""
        self.training = mode
        return self

    def theta0(self) -> dict[str, torch.Tensor]:
        """θ₀: parameter name → its value at linearisation (buffers, not trainable)."""
        return {k: getattr(self, f"theta0_{i}") for i, k in enumerate(self.names)}

    def delta(self) -> dict[str, torch.Tensor]:
        """θ − θ₀ per parameter name (differentiable in θ)."""
        named = dict(self.model.named_parameters())
        return {k: named[k] - t0 for k, t0 in self.theta0().items()}

    def forward(self, *args: Any, **kwargs: Any) -> Any:
        if self.route == "jvp":
            try:
                return self._forward_jvp(args, kwargs)
            except (NotImplementedError, RuntimeError) as err:
                if not _forward_mode_missing(err):
                    raise
                self._switch_to_jacobian(args, kwargs, err)
        return self._forward_jacobian(args[0])

    def _forward_jvp(self, args: tuple, kwargs: dict) -> Any:
        theta0 = self.theta0()

        def f(params: dict[str, torch.Tensor]) -> Any:
            return functional_call(self.model, params, _copy_tensors(args), _copy_tensors(kwargs))

        with eval_mode(self.model), warnings.catch_warnings():
            # torch's forward-mode AD scripts its jvp decompositions with torch.jit.script when first used, and recent
            # torch (2.13 here) warns that torch.jit.script is deprecated: about torch's internals, not this code.
            warnings.filterwarnings("ignore", message=r"`torch\.jit\.script` is deprecated",
                                    category=DeprecationWarning)
            out, tangent_out = jvp(f, (theta0,), (self.delta(),))
        return _add(out, tangent_out)

    def _switch_to_jacobian(self, args: tuple, kwargs: dict, err: BaseException) -> None:
        """Take the reverse-mode route for good, or refuse in one line when the call does not fit it."""
        op = forward_mode_op(err)
        if kwargs or len(args) != 1 or not isinstance(args[0], torch.Tensor) or args[0].ndim < 1:
            raise ZerolossInputError(
                f"model: forward-mode AD does not run through its op {op}, and linearize's reverse-mode route "
                "needs a forward of one input tensor (samples on axis 0)") from None
        if next(iter(self.theta0().values())).dtype not in (torch.float32, torch.float64):
            raise ZerolossInputError(f"model: forward-mode AD does not run through its op {op}, and linearize's "
                                     "reverse-mode route needs float32 or float64 parameters") from None
        self.route = "jacobian"

    def _view(self) -> FunctionalModel:
        """The copy as a function of θ₀ (the other parameters and the buffers fixed at their current values)."""
        keep = set(self.names)
        fixed = {k: p.detach() for k, p in self.model.named_parameters() if k not in keep}
        fixed.update({k: b for k, b in self.model.named_buffers()})
        theta0 = {k: t.detach() for k, t in self.theta0().items()}
        return FunctionalModel(self.model, theta0, fixed, 0, {k: owner_of(k) for k in self.names})

    def _jacobian(self, x: torch.Tensor) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """(f(x; θ₀) (n, *out), name → J_p (n, k, P_p)) for inputs x, kept for the last x seen."""
        cached = self._cache
        if cached is not None and cached[0].shape == x.shape and cached[0].dtype == x.dtype \
                and cached[0].device == x.device and torch.equal(cached[0], x):
            return cached[1], cached[2]
        view = self._view()
        with eval_mode(self.model), torch.no_grad():
            out = functional_call(self.model, {**view.fixed, **view.params}, (x.clone(),))
        if not isinstance(out, torch.Tensor) or out.ndim < 1 or out.shape[0] != x.shape[0]:
            raise ZerolossInputError("model: linearize's reverse-mode route needs one output tensor with the "
                                     f"{x.shape[0]} samples on axis 0")
        view.k = out[:1].numel()
        parts: list[dict[str, torch.Tensor]] = []
        with eval_mode(self.model), torch.enable_grad():
            for a in range(0, x.shape[0], JACOBIAN_CHUNK):
                parts.append(jacobian_factor(view, x[a : a + JACOBIAN_CHUNK]))
        J = {k: torch.cat([p[k] for p in parts]) for k in self.names}
        self._cache = (x.detach().clone(), out, J)
        return out, J

    def _forward_jacobian(self, x: torch.Tensor) -> torch.Tensor:
        out, J = self._jacobian(x)
        delta = self.delta()
        tangent = sum(torch.einsum("nkp,p->nk", J[k], delta[k].reshape(-1)) for k in self.names)
        return out + tangent.reshape(out.shape)


def linearize(model: nn.Module, params: Sequence[str] | None = None) -> Linearized:
    """The linearised model f_lin(x; θ) = f(x; θ₀) + J(x; θ₀)(θ − θ₀) of ``model`` at its current parameters θ₀.

    Args:
        model: any ``nn.Module`` (not modified: a deep copy is linearised).
        params: parameter names to linearise in; default every parameter with ``requires_grad``.

    Returns:
        :class:`Linearized`, an ``nn.Module`` with the same call signature as ``model``; its parameters start at θ₀
        and train with any ``torch.optim`` optimiser.

    Raises:
        ZerolossInputError: ``model`` is not a module, has no trainable floating-point parameter, or ``params``
            names a parameter it does not have.

    Examples:
        >>> import torch
        >>> net = torch.nn.Linear(2, 1).double()
        >>> lin = linearize(net)
        >>> sorted(dict(lin.named_parameters()))          # θ: the copy's parameters
        ['model.bias', 'model.weight']
    """
    return Linearized(model, params)
