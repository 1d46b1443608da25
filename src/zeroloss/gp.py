"""A GPyTorch kernel from a user's ``nn.Module``: its NNGP or NTK, with per-layer σ_w², σ_b² as hyperparameters.

:class:`NeuralKernel` (optional extra ``gp``: ``pip install zeroloss[gp]``) traces the module once
(:mod:`zeroloss.infinite`) and evaluates its infinite-width kernel on GPyTorch's inputs with the laws of the linear
layers as positive hyperparameters ``sigma_w2`` and ``sigma_b2`` (one entry per layer, in ``layer_names`` order,
initialised at the module's laws), so that the exact marginal likelihood is optimised by autograd through the
recursion (the out-of-place path of :func:`zeroloss.infinite.compute.compute_kernels`).

Inputs are (n, d) as GPyTorch passes them; a model taking (n, *shape) gets ``input_shape=shape`` and each row is
reshaped. Batched kernels (leading batch dims) are refused.

Examples:
    >>> import torch
    >>> kernel = NeuralKernel(torch.nn.Sequential(torch.nn.Linear(2, 8), torch.nn.ReLU(), torch.nn.Linear(8, 1)))
    >>> x = torch.randn(5, 2, dtype=torch.float64)
    >>> kernel(x).to_dense().shape, kernel.layer_names
    (torch.Size([5, 5]), ['0', '2'])
"""

from __future__ import annotations

import math

import gpytorch
import torch
from torch import nn

from zeroloss.errors import ZerolossInputError, choice
from zeroloss.infinite.compute import PARAMETERISATIONS, compute_kernels
from zeroloss.infinite.graph import build_plan
from zeroloss.infinite.laws import Law, resolve_laws
from zeroloss.kernels.gaussian import DEFAULT_NODES

KINDS = ("nngp", "ntk")


def _input_shape(model: nn.Module) -> tuple[int, ...]:
    first = next((m for m in model.modules() if isinstance(m, (nn.Linear, nn.Conv1d, nn.Conv2d))), None)
    if not isinstance(first, nn.Linear):
        raise ZerolossInputError("input_shape: give the shape of one input (the model does not start with an "
                                 "nn.Linear from which to read it)")
    return (first.in_features,)


class NeuralKernel(gpytorch.kernels.Kernel):
    """The NNGP or NTK of ``model`` as a GPyTorch kernel with learnable per-layer σ_w², σ_b² (module docstring).

    Args:
        model: an ``nn.Module`` :mod:`zeroloss.infinite` supports (with one output, or k i.i.d. outputs).
        kind: ``"nngp"`` or ``"ntk"``.
        parameterisation: ``"standard"`` or ``"ntk"`` (:func:`zeroloss.infinite.infinite_kernel`).
        init: the initial laws (as :func:`zeroloss.infinite.infinite_kernel`'s ``init``).
        input_shape: the shape of one input (default: (in_features,) of the first nn.Linear).
        nodes: Gauss–Hermite nodes for nonlinearities without a closed form.
    """

    has_lengthscale = False

    def __init__(self, model: nn.Module, kind: str = "nngp", parameterisation: str = "standard",
                 init: str | dict | None = None, input_shape: tuple[int, ...] | None = None,
                 nodes: int = DEFAULT_NODES, **kwargs) -> None:
        super().__init__(**kwargs)
        choice(kind, "kind", KINDS)
        choice(parameterisation, "parameterisation", PARAMETERISATIONS)
        self.kind, self.parameterisation, self.nodes = kind, parameterisation, nodes
        self.input_shape = tuple(input_shape) if input_shape is not None else _input_shape(model)
        self._model = [model]  # not a submodule: its weights are not GP parameters
        self._plan = build_plan(model, torch.zeros(2, *self.input_shape))
        laws = resolve_laws(self._plan.layers, init)
        self.layer_names = list(laws)
        self._fans = [laws[n].fan_in for n in self.layer_names]
        positive = gpytorch.constraints.Positive()
        w = torch.tensor([laws[n].sigma_w2 for n in self.layer_names], dtype=torch.float64)
        b = torch.tensor([max(laws[n].sigma_b2, 1e-12) for n in self.layer_names], dtype=torch.float64)
        self.register_parameter("raw_sigma_w2", nn.Parameter(positive.inverse_transform(w)))
        self.register_parameter("raw_sigma_b2", nn.Parameter(positive.inverse_transform(b)))
        self.register_constraint("raw_sigma_w2", positive)
        self.register_constraint("raw_sigma_b2", gpytorch.constraints.Positive())

    @property
    def sigma_w2(self) -> torch.Tensor:
        """σ_w² per layer (``layer_names`` order)."""
        return self.raw_sigma_w2_constraint.transform(self.raw_sigma_w2)

    @property
    def sigma_b2(self) -> torch.Tensor:
        """σ_b² per layer (``layer_names`` order; unused for a layer without bias)."""
        return self.raw_sigma_b2_constraint.transform(self.raw_sigma_b2)

    def laws(self) -> dict[str, Law]:
        """The current hyperparameters as laws (tensors in place of floats, differentiable)."""
        w, b = self.sigma_w2, self.sigma_b2
        return {n: Law(w[i], b[i], "hyperparameter", fan) for i, (n, fan) in  # type: ignore[arg-type]
                enumerate(zip(self.layer_names, self._fans, strict=True))}

    def forward(self, x1: torch.Tensor, x2: torch.Tensor, diag: bool = False, last_dim_is_batch: bool = False,
                **params) -> torch.Tensor:
        if last_dim_is_batch or x1.ndim != 2 or x2.ndim != 2:
            raise ZerolossInputError(f"x1: NeuralKernel takes (n, d) inputs without batch dimensions, got "
                                     f"{tuple(x1.shape)}")
        if math.prod(self.input_shape) != x1.shape[1]:
            raise ZerolossInputError(f"x1: rows of {x1.shape[1]} numbers do not fit the input shape {self.input_shape}")
        same = x1 is x2 or (x1.shape == x2.shape and torch.equal(x1, x2))
        X1 = x1.reshape(-1, *self.input_shape).to(torch.float64)
        X2 = None if same else x2.reshape(-1, *self.input_shape).to(torch.float64)
        model = self._model[0]
        results, _ = compute_kernels(self._plan, self.laws(), dict(model.named_modules()), X1, X2, self.kind,
                                     self.parameterisation, self.nodes, 2**62, grad=True)
        K = results[self.kind].to(x1.dtype)
        return K.diagonal() if diag else K
