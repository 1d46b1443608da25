"""A user's ``nn.Module`` as a pure function of its parameters: what every eNTK method differentiates.

:func:`prepare` checks the arguments of :func:`zeroloss.entk` and returns a :class:`FunctionalModel`:

- the selected parameters θ (``params``: default every parameter with ``requires_grad``; a list of names; or a
  predicate ``(name, parameter) -> bool``), detached copies cast to the computation dtype;
- the other parameters and the buffers (BatchNorm running statistics …), copies cast likewise (integer buffers
  keep their dtype), so that nothing the computation does can reach the user's tensors;
- ``fn(θ, x) -> (c, k)``: the model applied to a batch of c samples through ``torch.func.functional_call``, its
  output flattened per sample to k values. It runs inside :func:`eval_mode`, so BatchNorm uses its running
  statistics and dropout is off, as the eNTK of a trained network is meant (Θ is defined per sample).

zeroloss's own ensemble nets (:class:`~zeroloss.nets.EnsembleNet`, predictions (S, n)) are members side by side:
each member is its own model, so :func:`prepare` gives one :class:`FunctionalModel` per member (k = 1).
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import torch
from torch import nn
from torch.func import functional_call
from torch.nn.attention import SDPBackend, sdpa_kernel

from zeroloss.errors import ZerolossInputError
from zeroloss.nets.base import EnsembleNet

#: Accepted computation dtypes.
DTYPES = (torch.float32, torch.float64)


@contextlib.contextmanager
def eval_mode(model: nn.Module) -> Iterator[None]:
    """Put every submodule in eval mode inside the block; restore each module's own ``training`` flag after.

    Attention is computed by differentiable primitives inside the block: PyTorch's inference fast path of
    ``nn.TransformerEncoderLayer`` / ``nn.MultiheadAttention`` (a fused kernel taken in eval mode when no input
    requires grad, as under ``torch.func`` transforms) has no derivative, so it is switched off
    (``torch.backends.mha``), and ``scaled_dot_product_attention`` runs its "math" backend, which supports
    forward-mode AD and ``vmap`` (the fused CPU flash kernel has neither). Both are restored after.
    """
    flags = [(m, m.training) for m in model.modules()]
    mha = getattr(torch.backends, "mha", None)
    fastpath = mha.get_fastpath_enabled() if mha is not None else None
    model.eval()
    if mha is not None:
        mha.set_fastpath_enabled(False)
    try:
        with sdpa_kernel([SDPBackend.MATH]):
            yield
    finally:
        for m, flag in flags:
            m.training = flag
        if mha is not None:
            mha.set_fastpath_enabled(fastpath)


@dataclass
class FunctionalModel:
    """A model as ``fn(θ, x) -> (c, k)``, with its selected parameters θ and everything else held fixed.

    Attributes:
        model: the user's module (never modified).
        params: selected parameters, name → detached copy in the computation dtype (the point θ₀ of the eNTK).
        fixed: the other parameters and the buffers, name → copy (floating ones cast to the computation dtype).
        k: outputs per sample (the model's per-sample output flattened).
        owner: parameter name → the name of the module that owns it ("" for the root).
        member: for a member of an ensemble net, its index (else None).
    """

    model: nn.Module
    params: dict[str, torch.Tensor]
    fixed: dict[str, torch.Tensor]
    k: int
    owner: dict[str, str]
    member: int | None = None
    no_vmap: dict[str, bool] = field(default_factory=dict, repr=False)
    _member_all: dict[str, torch.Tensor] = field(default_factory=dict, repr=False)

    @property
    def names(self) -> list[str]:
        return list(self.params)

    def fn(self, params: dict[str, torch.Tensor], x: torch.Tensor) -> torch.Tensor:
        """The model's outputs (c, k) on a batch x (c, *shape) at parameters ``params`` (the others fixed)."""
        x = x.clone()  # a forward that writes into its input (x.mul_(2)) must not reach the inputs of a later call
        if self.member is not None:
            net = self.model
            assert isinstance(net, EnsembleNet)
            u, _ = net.functional_forward({**self._member_all, **params}, x)  # (1, c)
            return u[0].unsqueeze(-1)
        out = functional_call(self.model, {**self.fixed, **params}, (x,), tie_weights=True, strict=False)
        if not isinstance(out, torch.Tensor) or out.ndim == 0 or out.shape[0] != x.shape[0]:
            got = type(out).__name__ if not isinstance(out, torch.Tensor) else f"shape {tuple(out.shape)}"
            raise ZerolossInputError(f"model: must return one tensor whose first axis is the batch ({x.shape[0]} "
                                     f"samples), got {got}")
        return out.reshape(out.shape[0], -1)


def _selected_names(model: nn.Module, params: object) -> list[str]:
    named = dict(model.named_parameters())
    if params is None:
        names = [k for k, p in named.items() if p.requires_grad]
        if not names:
            raise ZerolossInputError("params: the model has no parameter with requires_grad=True; name the "
                                     "parameters to differentiate (a list of names or a predicate)")
        return names
    if callable(params):
        names = [k for k, p in named.items() if params(k, p)]
    elif isinstance(params, (list, tuple)) and all(isinstance(k, str) for k in params):
        missing = [k for k in params if k not in named]
        if missing:
            listed = ", ".join(list(named)[:8]) + (", ..." if len(named) > 8 else "")
            raise ZerolossInputError(f"params: no parameter named {missing[0]!r}; the model has: {listed}")
        if len(set(params)) != len(params):
            raise ZerolossInputError(f"params: each name at most once, got {list(params)!r}")
        names = [k for k in named if k in set(params)]  # model order
    else:
        raise ZerolossInputError("params: must be None (every parameter with requires_grad), a list of parameter "
                                 f"names, or a predicate (name, parameter) -> bool, got {type(params).__name__}")
    frozen = [k for k in names if not named[k].requires_grad]
    if frozen:
        raise ZerolossInputError(f"params: parameter {frozen[0]!r} has requires_grad=False (the eNTK is taken over "
                                 "trainable parameters only); leave it out or set requires_grad")
    if not names:
        raise ZerolossInputError("params: selects no parameter")
    return names


def check_model(model: object) -> nn.Module:
    if not isinstance(model, nn.Module):
        raise ZerolossInputError(f"model: must be a torch.nn.Module, got {type(model).__name__}")
    for name, m in model.named_modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm) and not m.track_running_stats:
            raise ZerolossInputError(
                f"model: BatchNorm {name or '<root>'!r} has track_running_stats=False, so it normalises with the "
                "statistics of the batch and a sample's output depends on the other samples; the eNTK is defined "
                "per sample: use running statistics"
            )
    if not any(True for _ in model.parameters()):
        raise ZerolossInputError("model: has no parameters")
    return model


def _as_input(x: object, name: str) -> torch.Tensor:
    """A tensor as given, or a NumPy array (or nested list of numbers) as a tensor; anything else is an error."""
    if isinstance(x, torch.Tensor):
        return x
    if type(x).__module__ == "numpy" or isinstance(x, (list, tuple)):
        try:
            return torch.as_tensor(x)
        except (TypeError, ValueError, RuntimeError):
            pass
    raise ZerolossInputError(f"{name}: must be a torch.Tensor or a NumPy array of numbers with the samples on "
                             f"axis 0, got {type(x).__name__}")


def check_inputs(x1: object, x2: object) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Tensors (or NumPy arrays, converted) with a leading sample axis; x2's trailing shape must equal x1's."""
    x1 = _as_input(x1, "x1")
    x2 = None if x2 is None else _as_input(x2, "x2")
    for name, x in (("x1", x1), ("x2", x2)):
        if x is None:
            continue
        if x.ndim < 1 or x.shape[0] == 0:
            raise ZerolossInputError(f"{name}: must have at least one sample (axis 0), got shape {tuple(x.shape)}")
        if x.is_complex() or x.dtype == torch.bool:
            raise ZerolossInputError(f"{name}: must be a real floating or integer tensor, got {x.dtype}")
    assert isinstance(x1, torch.Tensor)
    if x2 is not None:
        assert isinstance(x2, torch.Tensor)
        if tuple(x2.shape[1:]) != tuple(x1.shape[1:]):
            raise ZerolossInputError(f"x2: per-sample shape must equal x1's {tuple(x1.shape[1:])}, "
                                     f"got {tuple(x2.shape[1:])}")
        if x2.is_floating_point() != x1.is_floating_point():
            raise ZerolossInputError(f"x2: must be of x1's kind (floating or integer), got {x2.dtype} and {x1.dtype}")
    return x1, x2  # type: ignore[return-value]


def _cast(t: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    t = t.detach()
    return t.to(dtype=dtype).clone() if t.is_floating_point() else t.clone()


def cast_inputs(x: torch.Tensor, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    """A private copy of the inputs: floating ones in the computation dtype, integer ones (token ids) unchanged.

    Always a copy, never the caller's storage: nothing the model's forward does to its input can reach the
    caller's tensor (:meth:`FunctionalModel.fn` moreover hands every forward call a fresh copy of its batch).
    """
    x = x.detach().to(device)
    return (x.to(dtype) if x.is_floating_point() else x).clone()


def owner_of(name: str) -> str:
    """The module that owns a parameter: ``"layer1.0.conv1.weight"`` → ``"layer1.0.conv1"`` (root: "")."""
    return name.rpartition(".")[0]


def prepare(model: nn.Module, params: object, dtype: torch.dtype) -> list[FunctionalModel]:
    """The functional views of ``model``: one, or one per member for a zeroloss ensemble net."""
    if dtype not in DTYPES:
        raise ZerolossInputError(f"dtype: must be torch.float32 or torch.float64, got {dtype}")
    model = check_model(model)
    names = _selected_names(model, params)
    if isinstance(model, EnsembleNet):
        all_params = {k: _cast(p, dtype) for k, p in model.named_parameters()}
        views = []
        for s in range(model.members):
            member_all = {k: v[s : s + 1] for k, v in all_params.items()}
            views.append(FunctionalModel(model, {k: member_all[k] for k in names}, {}, 1,
                                         {k: str(model.layer_of(k)) for k in names}, member=s,
                                         _member_all=member_all))
        return views
    selected = set(names)
    named = dict(model.named_parameters())
    fixed = {k: _cast(p, dtype) for k, p in named.items() if k not in selected}
    fixed.update({k: _cast(b, dtype) for k, b in model.named_buffers()})
    chosen = {k: _cast(named[k], dtype) for k in names}
    return [FunctionalModel(model, chosen, fixed, 0, {k: owner_of(k) for k in names})]


def probe_outputs(view: FunctionalModel, x: torch.Tensor, field_name: str) -> int:
    """Apply the model to one sample and return k (outputs per sample); bad inputs give a one-line error."""
    try:
        with torch.no_grad():
            out = view.fn(view.params, x[:1])
    except ZerolossInputError:
        raise
    except (RuntimeError, TypeError, ValueError, IndexError) as err:
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        if not x.is_floating_point():
            raise ZerolossInputError(
                f"{field_name}: integer inputs ({x.dtype}) but the model does not accept them ({first}); integer "
                "inputs are for token ids (a model that starts with nn.Embedding): cast the inputs to float"
            ) from None
        raise ZerolossInputError(f"{field_name}: the model cannot be applied to a batch of shape "
                                 f"(n, {', '.join(map(str, x.shape[1:]))}): {first}") from None
    return out.shape[1]


#: Samples of the probe batch of :func:`check_per_sample` (at most this many, from x1 then x2).
COUPLING_PROBE = 3


def check_per_sample(view: FunctionalModel, x1: torch.Tensor, x2: torch.Tensor | None) -> None:
    """Refuse a forward pass that couples the samples of a batch (one line naming ``model``).

    The eNTK Θ(x_i, x_j) = J(x_i) J(x_j)ᵀ needs f(x_i) to depend on x_i alone: every method evaluates the model on
    chunks (and the per-sample methods on batches of one), so a forward that mixes samples — a batch statistic such
    as ``F.batch_norm(..., training=True)`` or ``h - h.mean(0)``, which on one sample is identically zero — would
    give a silently wrong kernel (zero, for the centring). Checked on a probe batch of up to
    :data:`COUPLING_PROBE` samples: the outputs on the batch must equal the outputs on each sample alone to
    √eps of the computation dtype relative to the outputs' size (round-off of a batched against an unbatched
    product is a few eps; a coupling changes the outputs at the scale of the outputs themselves). A random forward
    (dropout forced on) fails the same comparison and is refused too. Needs two samples; with one it checks nothing.
    """
    xs = x1[:COUPLING_PROBE]
    if x2 is not None and xs.shape[0] < COUPLING_PROBE:
        xs = torch.cat([xs, x2[: COUPLING_PROBE - xs.shape[0]]])
    if xs.shape[0] < 2 or view.member is not None:
        return
    with torch.no_grad():
        try:
            batch = view.fn(view.params, xs)
        except (RuntimeError, TypeError, ValueError, IndexError):
            return  # probe_outputs, on one sample, reports a model that cannot be applied to the inputs
        try:
            alone = torch.cat([view.fn(view.params, xs[i : i + 1]) for i in range(xs.shape[0])])
        except (RuntimeError, TypeError, ValueError, IndexError) as err:
            first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
            raise ZerolossInputError(
                f"model: its forward pass works on a batch of {xs.shape[0]} samples but fails on one sample alone "
                f"({first}), so a sample's outputs depend on the other samples of the batch (a batch statistic, "
                "e.g. batch norm with training=True); the eNTK is defined per sample: use running statistics"
            ) from None
    if batch.shape != alone.shape:
        raise ZerolossInputError(f"model: its outputs on a batch of {xs.shape[0]} samples have shape "
                                 f"{tuple(batch.shape)}, but {tuple(alone.shape)} sample by sample; the eNTK needs "
                                 "per-sample outputs (batch first)")
    scale = float(torch.maximum(batch.abs().max(), alone.abs().max()))
    diff = float((batch - alone).abs().max())
    tol = math.sqrt(torch.finfo(batch.dtype).eps) * scale if batch.is_floating_point() else 0.0
    if diff > tol:
        raise ZerolossInputError(
            f"model: a sample's outputs depend on the other samples of the batch (outputs on a batch of "
            f"{xs.shape[0]} differ from those on each sample alone by {diff:.3g}, outputs of size {scale:.3g}), or "
            "the forward pass is random; the eNTK is defined per sample: remove batch statistics (batch norm with "
            "training=True, centring over the batch) and randomness from the forward pass"
        )


def group_keys(view: FunctionalModel, by: str) -> dict[str, str]:
    """Parameter name → the key of its contribution: itself (by="parameter"), its module ("module"), or "" (total).

    On an ensemble net the "module" of a parameter is its 1-based layer (as in :func:`zeroloss.gram` layers).
    """
    if by == "parameter":
        return {k: k for k in view.names}
    if by == "module":
        return dict(view.owner)
    return {k: "" for k in view.names}


Selector = Callable[[str, torch.Tensor], bool]
