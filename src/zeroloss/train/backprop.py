"""Hand-derived backpropagation for Du et al.'s three nets and Chatterjee's feedforward net: gradient descent's
fast path.

For L_s = ½ Σ_i (u_si − y_i)² the gradient of every parameter is linear in the residual r_s = u_s − y, so one
backward sweep gives all S members their gradients, and a sweep started from η_s r_s gives η_s ∇L_s directly:
that lets :meth:`Backprop.step` write θ ← θ − η_s ∇L_s straight into the weights with ``baddbmm_``, without ever
forming the gradient. Every scale of the architecture (sqrt(c_σ/m), c_res/(H√m)) rides in a matmul's ``alpha``
instead of an elementwise pass.

Notation (one member; all tensors carry the leading member dimension S, and n samples):

Fully connected (docs/theory.md §1.2), c = sqrt(c_σ/m), s_h = σ(z_h) so that x^(h) = c s_h:

    z_1 = X W_1ᵀ,   z_h = c s_{h−1} W_hᵀ (h ≥ 2),   u = c s_H a
    e_H = ∂L/∂s_H = c r aᵀ,   q_h = e_h ⊙ σ′(z_h) = ∂L/∂z_h,   e_{h−1} = c q_h W_h
    ∇a = c s_Hᵀ r,   ∇W_h = c q_hᵀ s_{h−1} (h ≥ 2),   ∇W_1 = q_1ᵀ X

ResNet (docs/theory.md §1.2), c₁ = sqrt(c_σ/m), c_r = c_res/(H√m):

    x_1 = c₁ σ(z_1),   z_h = x_{h−1} W_hᵀ,   x_h = x_{h−1} + c_r σ(z_h) (h ≥ 2),   u = x_H a
    e_H = ∂L/∂x_H = r aᵀ,   q_h = e_h ⊙ σ′(z_h),   e_{h−1} = e_h + c_r q_h W_h (h ≥ 2)
    ∇a = x_Hᵀ r,   ∇W_h = c_r q_hᵀ x_{h−1} (h ≥ 2),   ∇W_1 = c₁ q_1ᵀ X

Convolutional ResNet (docs/theory.md §1.2), patch operator φ (kernel q) and its adjoint φᵀ, z_h, x_h, e_h, q_h
(S, n, m, p):

    z_1 = W_1 φ(X),   x_1 = c₁ σ(z_1),   z_h = W_h φ(x_{h−1}),   x_h = x_{h−1} + c_r σ(z_h),   u = ⟨a, x_H⟩
    e_H = r a,   q_h = e_h ⊙ σ′(z_h),   e_{h−1} = e_h + φᵀ(c_r W_hᵀ q_h) = e_h + c_r W̃_h φ(q_h)
    ∇a = Σ_i r_i x_H,i,   ∇W_h = c_r Σ_{i,l} q_h,il φ_l(x_{h−1,i})ᵀ,   ∇W_1 = c₁ Σ_{i,l} q_1,il φ_l(X_i)ᵀ

The input gradient is itself a convolution: with W_h = [W_h,0 … W_h,q−1] split by kernel offset (blocks m × m),
φᵀ(Wᵀ q) at position l is Σ_k W_h,kᵀ q_{l−k+(q−1)/2}, which is W̃_h φ(q) for the flipped, transposed kernel
W̃_h = [W_h,q−1ᵀ … W_h,0ᵀ]: one matmul of the forward's shape instead of a wide product and a scatter.

Chatterjee's feedforward net (docs/theory.md §2.2), biases b_ℓ and c optional, no architectural scale:

    x_0 = X,   z_ℓ = x_{ℓ−1} W_ℓᵀ + b_ℓ,   x_ℓ = σ(z_ℓ),   u = x_L v + c
    e_L = r vᵀ,   q_ℓ = e_ℓ ⊙ σ′(z_ℓ),   e_{ℓ−1} = q_ℓ W_ℓ
    ∇v = x_Lᵀ r,   ∇c = Σ_i r_i,   ∇W_ℓ = q_ℓᵀ x_{ℓ−1},   ∇b_ℓ = Σ_i q_ℓi

Shapes: X (n, d); z_h, s_h, x_h, e_h, q_h (S, n, m); r (S, n); W_1 (S, m, d), W_h (S, m, m), a (S, m) (for the
feedforward net, per-layer widths d_ℓ in place of m, and v (S, d_L), b_ℓ (S, d_ℓ), c (S, 1)).

Gram matrices (docs/theory.md §1.3). Each sweep hands every dense map's gradient over as ∇W = α qᵀ A (q the
back-propagated (S, n, fan_out) factor, A the map's (S, n, fan_in) input, α its scale): sample i contributes
α q_i A_iᵀ. Swept from r = 1 (the sum Σ_i u_i: samples are independent, so q_i = ∂u_i/∂z_i / α up to the scale),
these are the per-sample gradients of the predictions, and the layer-h Gram matrix is

    G^(h) = α² (Q Qᵀ) ⊙ (A Aᵀ)   (S, n, n),   a bias adds Q Qᵀ (its per-sample gradient is q_i),

which :meth:`Backprop.layer_grams` forms from the activations of the last ``forward`` — the training loop's probes
get their Grams without a second forward pass or autograd. The convolutional ResNet's per-sample gradients are
sums over positions, not outer products: it has no such shortcut (:attr:`Backprop.GRAMS`).

The nets' ``functional_forward`` stays the definition; tests pin this module's predictions, gradients and Gram
matrices to it and to autograd (float64, ≤ 1e-12 relative). User subclasses of these nets use autograd.
"""

from __future__ import annotations

import torch

from zeroloss.nets.base import EnsembleNet
from zeroloss.nets.du import ConvResNet, FullyConnected, ResNet, patches_last
from zeroloss.nets.feedforward import FeedForward
from zeroloss.precision import no_tf32


def _scaled_bmm(b1: torch.Tensor, b2: torch.Tensor, alpha: float) -> torch.Tensor:
    """alpha · (b1 @ b2) batched, the scale applied by the matmul itself (beta = 0 ignores the empty input)."""
    out = torch.empty(*b1.shape[:-1], b2.shape[-1], dtype=b1.dtype, device=b1.device)
    return torch.baddbmm(out, b1, b2, beta=0.0, alpha=alpha)


class LayerGrams:
    """Sums the Gram matrices of a sweep's per-sample gradients per layer: what a sweep from r = 1 hands over.

    ``by_layer``: 1-based layer → (S, n, n) G^(h) = Σ_{θ in layer h} ⟨∂u_i/∂θ, ∂u_j/∂θ⟩.
    """

    def __init__(self, net: EnsembleNet) -> None:
        self.net = net
        self.by_layer: dict[int, torch.Tensor] = {}

    def add(self, name: str, alpha: float, q: torch.Tensor, inputs: torch.Tensor | None) -> None:
        """Parameter ``name`` with per-sample gradients α q_i A_iᵀ: adds α² (Q Qᵀ) ⊙ (A Aᵀ) to its layer.

        q (S, n, fan_out); inputs A (S, n, fan_in), (n, fan_in) when shared by the members, or None for a bias
        (per-sample gradient α q_i: adds α² Q Qᵀ).
        """
        K = torch.matmul(q, q.transpose(-1, -2))  # (S, n, n)
        if inputs is not None:
            K.mul_(torch.matmul(inputs, inputs.transpose(-1, -2)))  # (S, n, n) or (n, n), broadcast
        if alpha != 1.0:
            K.mul_(alpha * alpha)
        h = self.net.layer_of(name)
        self.by_layer[h] = self.by_layer[h] + K if h in self.by_layer else K


class Backprop:
    """Forward pass that keeps what the backward sweep needs, and that sweep, for one net and one input set.

    Usage: ``u = bp.forward()``, then either ``bp.gradients(r)`` (a dict name → gradient of Σ_s ½‖u_s − y‖²
    with residual r, shaped like the parameters), ``bp.step(eta_r)`` (θ ← θ − gradient for residual
    ``eta_r`` = η_s r_s, in place) or ``bp.layer_grams()`` (the per-layer Gram matrices, where :attr:`GRAMS`).
    All must follow the ``forward`` of the current parameters.

    The sweep's ``grads`` argument says what becomes of each gradient: a dict stores it, None subtracts it from
    the parameter in place, a :class:`LayerGrams` adds its per-sample Gram matrix.
    """

    #: name of the output weight vector (Du's nets: a; the feedforward net: v)
    OUTPUT = "a"
    #: whether every per-sample gradient is an outer product α q_i A_iᵀ (or a bias's α q_i): then
    #: :meth:`layer_grams` applies
    GRAMS = True

    def __init__(self, net: EnsembleNet, X: torch.Tensor) -> None:
        self.net = net
        self.X = X
        self.weights = [getattr(net, f"W{h}") for h in range(1, net.depth + 1)]
        self.act = net.activation
        self._z: list[torch.Tensor] = []
        self._inputs: list[torch.Tensor] = []  # what layer h multiplies (index h − 1), and the last for a

    def forward(self) -> torch.Tensor:
        """Predictions u (S, n) of the current parameters."""
        raise NotImplementedError

    def gradients(self, r: torch.Tensor) -> dict[str, torch.Tensor]:
        """∇θ of Σ_s ½‖u_s − y‖² where r = u − y (S, n), for every parameter name."""
        grads: dict[str, torch.Tensor] = {}
        with torch.no_grad():
            self._sweep(r, grads)
        return grads

    def step(self, eta_r: torch.Tensor) -> None:
        """θ ← θ − ∇θ for the residual ``eta_r`` (S, n): pass η_s r_s for a step of size η_s per member."""
        with torch.no_grad():
            self._sweep(eta_r, None)

    @property
    def exact_grams(self) -> bool:
        """Whether :meth:`layer_grams` gives the float64 Grams of :func:`zeroloss.gram_by_layer`: the net has
        :attr:`GRAMS` and float64 parameters (a float32 net's activations are not float64)."""
        return self.GRAMS and self.net.dtype == torch.float64

    def layer_grams(self) -> dict[int, torch.Tensor]:
        """Every layer's Gram matrix at the parameters of the last ``forward``: 1-based layer → (S, n, n) in the
        parameters' dtype, layers in order (the values of :func:`zeroloss.gram_by_layer` for ``layer="all"``, to
        round-off).

        One sweep from r = 1 (no forward pass, no autograd), G^(h) = α² (Q Qᵀ) ⊙ (A Aᵀ) per map (module
        docstring). Only where :attr:`GRAMS`.
        """
        if not self.GRAMS:
            raise NotImplementedError(f"{type(self).__name__} has no per-sample outer-product gradients")
        grams = LayerGrams(self.net)
        ones = torch.ones(self.net.members, self.X.shape[0], dtype=self.net.dtype, device=self.net.device)
        with torch.no_grad(), no_tf32():
            self._sweep(ones, grams)
        return dict(sorted(grams.by_layer.items()))

    def _sweep(self, r: torch.Tensor, grads: dict[str, torch.Tensor] | LayerGrams | None) -> None:
        raise NotImplementedError

    def _input(self, index: int, members: int) -> torch.Tensor:
        """What layer ``index + 1`` multiplies (the last: what the output weights multiply), (S, n, fan_in)."""
        inputs = self._inputs[index]
        return inputs.expand(members, *inputs.shape) if inputs.ndim == 2 else inputs  # X is shared by the members

    def _weight_gradient(self, h: int, q: torch.Tensor, alpha: float,
                         grads: dict[str, torch.Tensor] | LayerGrams | None) -> None:
        """∇W_h = alpha · q_hᵀ (layer h's input): stored in ``grads``, subtracted from W_h in place, or its
        per-sample Gram added (the class docstring)."""
        if isinstance(grads, LayerGrams):
            grads.add(f"W{h}", alpha, q, self._inputs[h - 1])
            return
        inputs = self._input(h - 1, q.shape[0])
        if grads is None:
            self.weights[h - 1].baddbmm_(q.transpose(-1, -2), inputs, alpha=-alpha)
        else:
            grads[f"W{h}"] = _scaled_bmm(q.transpose(-1, -2), inputs, alpha)

    def _output_gradient(self, r: torch.Tensor, alpha: float,
                         grads: dict[str, torch.Tensor] | LayerGrams | None) -> None:
        """∇a = alpha · (last hidden input)ᵀ r: stored, subtracted from a in place, or its per-sample Gram added."""
        if isinstance(grads, LayerGrams):
            grads.add(self.OUTPUT, alpha, r.unsqueeze(-1), self._inputs[-1])
            return
        last = self._input(len(self._inputs) - 1, r.shape[0])
        if grads is None:
            getattr(self.net, self.OUTPUT).unsqueeze(1).baddbmm_(r.unsqueeze(1), last, alpha=-alpha)
        else:
            grads[self.OUTPUT] = _scaled_bmm(r.unsqueeze(1), last, alpha).squeeze(1)

    def _bias_gradient(self, name: str, upstream: torch.Tensor,
                       grads: dict[str, torch.Tensor] | LayerGrams | None) -> None:
        """∇b = Σ_i upstream_i over the samples (dim 1), (S, n, fan_out) or (S, n): stored, subtracted from the
        bias in place, or its per-sample Gram added."""
        if isinstance(grads, LayerGrams):
            grads.add(name, 1.0, upstream if upstream.ndim == 3 else upstream.unsqueeze(-1), None)
            return
        self._gradient(name, upstream.sum(dim=1).view(getattr(self.net, name).shape), grads)

    def _gradient(self, name: str, gradient: torch.Tensor, grads: dict[str, torch.Tensor] | None) -> None:
        """Store a formed gradient in ``grads``, or subtract it from the parameter in place."""
        if grads is None:
            getattr(self.net, name).sub_(gradient)
        else:
            grads[name] = gradient


class FullyConnectedBackprop(Backprop):
    """:class:`Backprop` for :class:`~zeroloss.nets.FullyConnected` (equations in the module docstring)."""

    def forward(self) -> torch.Tensor:
        c = self.net.scale
        with torch.no_grad():
            z = torch.matmul(self.X, self.weights[0].transpose(-1, -2))  # (S, n, m)
            self._z, self._inputs = [z], [self.X]
            s = self.act.fn(z)
            for W in self.weights[1:]:
                self._inputs.append(s)
                z = _scaled_bmm(s, W.transpose(-1, -2), c)
                self._z.append(z)
                s = self.act.fn(z)
            self._inputs.append(s)
            return _scaled_bmm(s, self.net.a.unsqueeze(-1), c).squeeze(-1)

    def _sweep(self, r: torch.Tensor, grads: dict[str, torch.Tensor] | LayerGrams | None) -> None:
        c = self.net.scale
        e = (c * r).unsqueeze(-1) * self.net.a.unsqueeze(-2)  # ∂L/∂s_H, before a moves
        self._output_gradient(r, c, grads)
        for h in range(self.net.depth, 0, -1):
            q = torch.mul(self.act.d1(self._z[h - 1]), e)  # ∂L/∂z_h
            if h > 1:
                e = _scaled_bmm(q, self.weights[h - 1], c)  # ∂L/∂s_{h−1}, before W_h moves
            self._weight_gradient(h, q, c if h > 1 else 1.0, grads)


class ResNetBackprop(Backprop):
    """:class:`Backprop` for :class:`~zeroloss.nets.ResNet` (equations in the module docstring)."""

    def forward(self) -> torch.Tensor:
        net = self.net
        with torch.no_grad():
            z = torch.matmul(self.X, self.weights[0].transpose(-1, -2))
            self._z, self._inputs = [z], [self.X]
            x = net.first_scale * self.act.fn(z)
            for W in self.weights[1:]:
                self._inputs.append(x)
                z = torch.bmm(x, W.transpose(-1, -2))
                self._z.append(z)
                x = torch.add(x, self.act.fn(z), alpha=net.residual_scale)
            self._inputs.append(x)
            return torch.bmm(x, net.a.unsqueeze(-1)).squeeze(-1)

    def _sweep(self, r: torch.Tensor, grads: dict[str, torch.Tensor] | LayerGrams | None) -> None:
        net = self.net
        e = r.unsqueeze(-1) * net.a.unsqueeze(-2)  # ∂L/∂x_H, before a moves
        self._output_gradient(r, 1.0, grads)
        for h in range(net.depth, 1, -1):
            q = torch.mul(self.act.d1(self._z[h - 1]), e)  # ∂L/∂z_h / c_r
            e = torch.baddbmm(e, q, self.weights[h - 1], alpha=net.residual_scale)  # ∂L/∂x_{h−1}, before W_h moves
            self._weight_gradient(h, q, net.residual_scale, grads)
        q = torch.mul(self.act.d1(self._z[0]), e)
        self._weight_gradient(1, q, net.first_scale, grads)


class ConvResNetBackprop(Backprop):
    """:class:`Backprop` for :class:`~zeroloss.nets.ConvResNet` (equations in the module docstring).

    Internally positions-first: activations (S, n, p, m) and patches (S, n·p, q·m), so that every convolution,
    weight gradient and input gradient is one batched matmul (fused into the weights like the dense nets'), with
    no permuted copies; only the patches themselves (im2col) are materialised.
    """

    GRAMS = False  # a per-sample gradient Σ_l q_il φ_l(x_i)ᵀ sums over positions: zeroloss.gram_by_layer forms it

    @staticmethod
    def _flipped_kernel(W: torch.Tensor, kernel_size: int) -> torch.Tensor:
        """W̃ (S, q·m, m) from W (S, m, q·m): block row k is W_{q−1−k} (rows: output channel), so that
        φ(q) @ W̃ = φᵀ(q @ W) in the positions-first layout (the adjoint of the convolution is a convolution)."""
        S, m_out, qc = W.shape
        blocks = W.view(S, m_out, kernel_size, qc // kernel_size).flip(2)  # [s, o, k, c] = W_{q−1−k}[o, c]
        return blocks.permute(0, 2, 1, 3).reshape(S, kernel_size * m_out, qc // kernel_size)

    def forward(self) -> torch.Tensor:
        net = self.net
        q, S = net.kernel_size, net.members
        n, p = self.X.shape[0], net.positions
        with torch.no_grad():
            phi = patches_last(self.X.transpose(-1, -2), q).reshape(n * p, -1)  # (n·p, q·c), shared
            z = torch.matmul(phi, self.weights[0].transpose(-1, -2)).view(S, n, p, -1)  # (S, n, p, m)
            self._z, self._inputs = [z], [phi]
            x = net.first_scale * self.act.fn(z)
            for W in self.weights[1:]:
                phi = patches_last(x, q).reshape(S, n * p, -1)  # (S, n·p, q·m)
                self._inputs.append(phi)
                z = torch.bmm(phi, W.transpose(-1, -2)).view(S, n, p, -1)
                self._z.append(z)
                x = torch.add(x, self.act.fn(z), alpha=net.residual_scale)
            self._inputs.append(x)
            a_rows = net.a.transpose(-1, -2).reshape(S, -1, 1)  # (S, p·m, 1), positions-first like x
            return torch.bmm(x.reshape(S, n, -1), a_rows).squeeze(-1)

    def _sweep(self, r: torch.Tensor, grads: dict[str, torch.Tensor] | None) -> None:
        net = self.net
        S, n, p, m = self._z[0].shape
        a_rows = net.a.transpose(-1, -2).contiguous()  # (S, p, m): positions-first, so that e is contiguous
        e = r[:, :, None, None] * a_rows.unsqueeze(1)  # ∂L/∂x_H (S, n, p, m), before a moves
        grad_a = torch.bmm(r.unsqueeze(1), self._inputs[-1].reshape(S, n, p * m)).view(S, p, m)
        self._gradient("a", grad_a.transpose(-1, -2), grads)
        for h in range(net.depth, 1, -1):
            q = torch.mul(self.act.d1(self._z[h - 1]), e)  # ∂L/∂z_h / c_r (S, n, p, m)
            flipped = self._flipped_kernel(self.weights[h - 1], net.kernel_size)  # before W_h moves
            q_patches = patches_last(q, net.kernel_size).reshape(S, n * p, -1)
            e = torch.baddbmm(e.view(S, n * p, m), q_patches, flipped, alpha=net.residual_scale).view(S, n, p, m)
            self._weight_gradient(h, q.view(S, n * p, m), net.residual_scale, grads)
        q = torch.mul(self.act.d1(self._z[0]), e).view(S, n * p, m)
        self._weight_gradient(1, q, net.first_scale, grads)


class FeedForwardBackprop(Backprop):
    """:class:`Backprop` for :class:`~zeroloss.nets.FeedForward` (equations in the module docstring)."""

    OUTPUT = "v"

    def forward(self) -> torch.Tensor:
        net = self.net
        S = net.members
        with torch.no_grad():
            x = self.X
            self._z, self._inputs = [], []
            for ell, W in enumerate(self.weights, start=1):
                self._inputs.append(x)
                x_batch = self._input(ell - 1, S)
                if net.bias:
                    z = torch.baddbmm(getattr(net, f"b{ell}").unsqueeze(-2), x_batch, W.transpose(-1, -2))
                else:
                    z = torch.bmm(x_batch, W.transpose(-1, -2))
                self._z.append(z)
                x = self.act.fn(z)
            self._inputs.append(x)
            u = torch.bmm(self._input(len(self._inputs) - 1, S), net.v.unsqueeze(-1)).squeeze(-1)
            return u + net.c if net.output_bias else u

    def _sweep(self, r: torch.Tensor, grads: dict[str, torch.Tensor] | LayerGrams | None) -> None:
        net = self.net
        e = r.unsqueeze(-1) * net.v.unsqueeze(-2)  # ∂L/∂x_L, before v moves
        self._output_gradient(r, 1.0, grads)
        if net.output_bias:
            self._bias_gradient("c", r, grads)
        for ell in range(net.depth, 0, -1):
            q = torch.mul(self.act.d1(self._z[ell - 1]), e)  # ∂L/∂z_ℓ
            if ell > 1:
                e = torch.bmm(q, self.weights[ell - 1])  # ∂L/∂x_{ℓ−1}, before W_ℓ moves
            self._weight_gradient(ell, q, 1.0, grads)
            if net.bias:
                self._bias_gradient(f"b{ell}", q, grads)


#: Nets with a hand-derived backward, by exact type (a subclass may change the forward pass, so it uses autograd).
BACKPROPS: dict[type, type[Backprop]] = {FullyConnected: FullyConnectedBackprop, ResNet: ResNetBackprop,
                                         ConvResNet: ConvResNetBackprop, FeedForward: FeedForwardBackprop}


def analytic_backprop(net: EnsembleNet, X: torch.Tensor) -> Backprop | None:
    """The hand-derived :class:`Backprop` of ``net`` on inputs X (already checked), or None if it has none."""
    cls = BACKPROPS.get(type(net))
    return None if cls is None else cls(net, X)
