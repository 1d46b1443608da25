"""Du et al.'s theory-exact networks (docs/theory.md §1.2): fully connected, ResNet and convolutional ResNet.

Width m everywhere, no biases, every entry of every W^(h) and of a drawn i.i.d. N(0, 1); the scale lives in the
architecture (the sqrt(c_σ/m) and c_res/(H√m) factors), never in the initialisation, and PyTorch's default
initialisers are not used. All three are ensemble-native: parameters have a leading members dimension S.

References:
    S. S. Du, J. D. Lee, H. Li, L. Wang, X. Zhai. Gradient Descent Finds Global Minima of Deep Neural
    Networks. ICML 2019.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from zeroloss.activations import Activation, get_activation
from zeroloss.errors import positive_int, require
from zeroloss.nets.base import (
    EnsembleNet,
    LinearMap,
    check_dtype,
    check_input_values,
    member_generators,
    member_normal_draws,
    resolve_device,
)


class _DuNet(EnsembleNet):
    """Shared construction of Du et al.'s nets: N(0, 1) weights W1..WH then output weights a, per member."""

    def __init__(
        self,
        fan_ins: list[int],
        width: int,
        output_shape: tuple[int, ...],
        activation: str | Activation,
        members: int,
        seed: int,
        dtype: torch.dtype,
        device: str | torch.device | None,
    ) -> None:
        super().__init__()
        self.width = positive_int(width, "width")
        self.depth = len(fan_ins)
        self.members = positive_int(members, "members")
        self.seed = seed
        self.activation = get_activation(activation)
        self._init_dtype = check_dtype(dtype)
        generators = member_generators(seed, members)
        shapes = [(width, fan_in) for fan_in in fan_ins] + [output_shape]
        draws = member_normal_draws(generators, shapes, self._init_dtype, resolve_device(device))
        for h, weight in enumerate(draws[:-1], start=1):
            self.register_parameter(f"W{h}", nn.Parameter(weight))
        self.a = nn.Parameter(draws[-1])

    def layer_of(self, param: str) -> int:
        return self.depth + 1 if param == "a" else int(param[1:])

    def _act(self, z: torch.Tensor) -> torch.Tensor:
        return self.activation.fn(z)


def _output_layer(x: torch.Tensor, a: torch.Tensor) -> torch.Tensor:
    """f = aᵀ x^(H) per member and sample: x (S, n, k), a (S, k) → (S, n, 1).

    A broadcast product and a sum rather than a batched matrix-vector product: its backward is a broadcast
    product too (∂f/∂x = a), where a bmm would form the (S, n, k) outer product with a batched matmul, about
    twice slower on the CPU for the sizes of issue 2's benchmark.
    """
    return (x * a.unsqueeze(-2)).sum(-1, keepdim=True)


def _check_depth(depth: int) -> int:
    return positive_int(depth, "depth")


def _check_c_res(c_res: float) -> float:
    require(isinstance(c_res, (int, float)) and 0.0 < c_res < 1.0, "c_res", "must be in (0, 1)", c_res)
    return float(c_res)


class FullyConnected(_DuNet):
    """Du et al.'s deep fully-connected net (docs/theory.md §1.2), S members side by side.

        x^(0) = x,   x^(h) = sqrt(c_σ/m) · σ(W^(h) x^(h−1)),  h = 1..H,   f(x) = aᵀ x^(H)

    Args:
        d: input dimension.
        width: m.
        depth: H (number of hidden layers; H = 1 is the two-layer net).
        activation: registry name or :class:`~zeroloss.activations.Activation`.
        members: S.
        seed: member k is drawn with seed + k.
        dtype: float32 or float64.
        device: ``"cpu"``, ``"cuda"``, ``"auto"`` or None (auto).

    Shapes: ``W1`` (S, m, d), ``Wh`` (S, m, m), ``a`` (S, m); ``net(X)`` with X (n, d) gives (S, n).

    Examples:
        >>> net = FullyConnected(d=3, width=16, depth=2, activation="softplus", members=4, seed=0)
        >>> net(torch.eye(3, dtype=torch.float32)).shape
        torch.Size([4, 3])
    """

    def __init__(
        self,
        d: int,
        width: int,
        depth: int,
        activation: str | Activation = "softplus",
        members: int = 1,
        seed: int = 0,
        dtype: torch.dtype = torch.float32,
        device: str | torch.device | None = "cpu",
    ) -> None:
        self.d = positive_int(d, "d")
        depth = _check_depth(depth)
        fan_ins = [d] + [width] * (depth - 1)
        super().__init__(fan_ins, width, (width,), activation, members, seed, dtype, device)
        self.scale = math.sqrt(self.activation.c_sigma / width)

    def _empty_like(self, members: int, seed: int) -> FullyConnected:
        return FullyConnected(self.d, self.width, self.depth, self.activation, members, seed, self.dtype, self.device)

    def functional_forward(
        self, params: dict[str, torch.Tensor], X: torch.Tensor, record: bool = False
    ) -> tuple[torch.Tensor, list[LinearMap]]:
        maps: list[LinearMap] = []
        S = params["a"].shape[0]
        x = X  # (n, d), shared by the members
        for h in range(1, self.depth + 1):
            W = params[f"W{h}"]  # (S, m, fan_in)
            z = torch.matmul(x, W.transpose(-1, -2))  # (S, n, m)
            if record:
                maps.append(LinearMap(f"W{h}", h, "dense", x.expand(S, *x.shape[-2:]), z))
            x = self.scale * self._act(z)
        out = _output_layer(x, params["a"])  # (S, n, 1)
        if record:
            maps.append(LinearMap("a", self.depth + 1, "dense", x, out))
        return out.squeeze(-1), maps


class ResNet(_DuNet):
    """Du et al.'s ResNet (docs/theory.md §1.2), 0 < c_res < 1, S members side by side.

        x^(1) = sqrt(c_σ/m) · σ(W^(1) x)
        x^(h) = x^(h−1) + c_res/(H·sqrt(m)) · σ(W^(h) x^(h−1)),   h = 2..H,     f(x) = aᵀ x^(H)

    Args: as :class:`FullyConnected`, plus ``c_res`` (default 0.5).

    Examples:
        >>> net = ResNet(d=3, width=16, depth=3, members=2, seed=1)
        >>> net(torch.eye(3)).shape
        torch.Size([2, 3])
    """

    def __init__(
        self,
        d: int,
        width: int,
        depth: int,
        activation: str | Activation = "softplus",
        members: int = 1,
        seed: int = 0,
        dtype: torch.dtype = torch.float32,
        device: str | torch.device | None = "cpu",
        c_res: float = 0.5,
    ) -> None:
        self.d = positive_int(d, "d")
        depth = _check_depth(depth)
        self.c_res = _check_c_res(c_res)
        fan_ins = [d] + [width] * (depth - 1)
        super().__init__(fan_ins, width, (width,), activation, members, seed, dtype, device)
        self.first_scale = math.sqrt(self.activation.c_sigma / width)
        self.residual_scale = self.c_res / (self.depth * math.sqrt(width))

    def _empty_like(self, members: int, seed: int) -> ResNet:
        return ResNet(self.d, self.width, self.depth, self.activation, members, seed, self.dtype, self.device,
                      self.c_res)

    def functional_forward(
        self, params: dict[str, torch.Tensor], X: torch.Tensor, record: bool = False
    ) -> tuple[torch.Tensor, list[LinearMap]]:
        maps: list[LinearMap] = []
        S = params["a"].shape[0]
        z = torch.matmul(X, params["W1"].transpose(-1, -2))  # (S, n, m)
        if record:
            maps.append(LinearMap("W1", 1, "dense", X.expand(S, *X.shape[-2:]), z))
        x = self.first_scale * self._act(z)
        for h in range(2, self.depth + 1):
            z = torch.matmul(x, params[f"W{h}"].transpose(-1, -2))
            if record:
                maps.append(LinearMap(f"W{h}", h, "dense", x, z))
            x = x + self.residual_scale * self._act(z)
        out = _output_layer(x, params["a"])
        if record:
            maps.append(LinearMap("a", self.depth + 1, "dense", x, out))
        return out.squeeze(-1), maps


def patches(x: torch.Tensor, kernel_size: int) -> torch.Tensor:
    """The patch operator φ (stride 1, zero padding): (..., c, p) → (..., q·c, p).

    Column l of the result stacks columns l − (q−1)/2, …, l + (q−1)/2 of x (out-of-range columns are zero);
    entry ``k·c + ch`` holds channel ch at offset k − (q−1)/2.
    """
    pad = (kernel_size - 1) // 2
    padded = F.pad(x, (pad, pad))
    windows = padded.unfold(-1, kernel_size, 1)  # (..., c, p, q)
    windows = windows.movedim(-1, -3)  # (..., q, c, p)
    return windows.reshape(*x.shape[:-2], kernel_size * x.shape[-2], x.shape[-1])


def patches_last(x: torch.Tensor, kernel_size: int) -> torch.Tensor:
    """φ in the positions-first layout: (..., p, c) → (..., p, q·c), the transpose of :func:`patches`.

    Row l stacks rows l − (q−1)/2, …, l + (q−1)/2 of x (zero outside), entry ``k·c + ch`` = channel ch at offset
    k − (q−1)/2: the column order of the conv weights W (S, m, q·c), so that a convolution is one matmul.
    """
    pad = (kernel_size - 1) // 2
    windows = F.pad(x, (0, 0, pad, pad)).unfold(-2, kernel_size, 1)  # (..., p, c, q)
    return windows.transpose(-1, -2).reshape(*x.shape[:-1], kernel_size * x.shape[-1])


class ConvResNet(_DuNet):
    """Du et al.'s convolutional ResNet (docs/theory.md §1.2), S members side by side.

    Input x ∈ R^{c×p} (c channels, p positions), patch operator φ with kernel size q, stride 1, zero padding:

        x^(1) = sqrt(c_σ/m) · σ(W^(1) φ(x))                              ∈ R^{m×p}
        x^(h) = x^(h−1) + c_res/(H·sqrt(m)) · σ(W^(h) φ(x^(h−1))),   h = 2..H
        f(x)  = Σ_{l,r} a_{l,r} x^(H)_{l,r}

    Args:
        channels: c (d₀ in the paper).
        positions: p.
        width: m.
        depth: H.
        kernel_size: q, odd (default 3).
        activation, members, seed, dtype, device: as :class:`FullyConnected`.
        c_res: in (0, 1), default 0.5.

    Shapes: ``W1`` (S, m, q·c), ``Wh`` (S, m, q·m), ``a`` (S, m, p); ``net(X)`` with X (n, c, p) gives (S, n).

    Examples:
        >>> net = ConvResNet(channels=2, positions=5, width=8, depth=2, members=3)
        >>> net(torch.randn(4, 2, 5)).shape
        torch.Size([3, 4])
    """

    def __init__(
        self,
        channels: int,
        positions: int,
        width: int,
        depth: int,
        kernel_size: int = 3,
        activation: str | Activation = "softplus",
        members: int = 1,
        seed: int = 0,
        dtype: torch.dtype = torch.float32,
        device: str | torch.device | None = "cpu",
        c_res: float = 0.5,
    ) -> None:
        self.channels = positive_int(channels, "channels")
        self.positions = positive_int(positions, "positions")
        q = positive_int(kernel_size, "kernel_size")
        require(q % 2 == 1, "kernel_size", "must be an odd positive integer", kernel_size)
        self.kernel_size = q
        depth = _check_depth(depth)
        self.c_res = _check_c_res(c_res)
        fan_ins = [q * channels] + [q * width] * (depth - 1)
        super().__init__(fan_ins, width, (width, positions), activation, members, seed, dtype, device)
        self.first_scale = math.sqrt(self.activation.c_sigma / width)
        self.residual_scale = self.c_res / (self.depth * math.sqrt(width))

    def _empty_like(self, members: int, seed: int) -> ConvResNet:
        return ConvResNet(self.channels, self.positions, self.width, self.depth, self.kernel_size, self.activation,
                          members, seed, self.dtype, self.device, self.c_res)

    def check_inputs(self, X: torch.Tensor) -> torch.Tensor:
        return check_input_values(X, (self.channels, self.positions), "(n, channels, positions)", self.dtype,
                                  self.device)

    def functional_forward(
        self, params: dict[str, torch.Tensor], X: torch.Tensor, record: bool = False
    ) -> tuple[torch.Tensor, list[LinearMap]]:
        maps: list[LinearMap] = []
        S = params["a"].shape[0]
        phi = patches(X, self.kernel_size)  # (n, q·c, p)
        z = torch.einsum("smk,nkp->snmp", params["W1"], phi)  # (S, n, m, p)
        if record:
            maps.append(LinearMap("W1", 1, "conv", phi.expand(S, *phi.shape), z))
        x = self.first_scale * self._act(z)
        for h in range(2, self.depth + 1):
            phi = patches(x, self.kernel_size)  # (S, n, q·m, p)
            z = torch.einsum("smk,snkp->snmp", params[f"W{h}"], phi)
            if record:
                maps.append(LinearMap(f"W{h}", h, "conv", phi, z))
            x = x + self.residual_scale * self._act(z)
        flat = x.flatten(-2)  # (S, n, m·p)
        out = _output_layer(flat, params["a"].flatten(-2))  # (S, n, 1)
        if record:
            maps.append(LinearMap("a", self.depth + 1, "dense", flat, out))
        return out.squeeze(-1), maps
