"""The hand-derived backward sweep (zeroloss.train.backprop) against the nets' definition and autograd.

Tolerances: everything is float64 and the two sides do the same arithmetic in another order (scales folded into
matmuls, sums regrouped), so they agree to a few ulps of the largest term; 1e-12 relative leaves room for the
∼10 accumulated roundings of depth-3 nets without letting any real error (a wrong scale or transposition is
O(1)) through.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from tests.conftest import NET_KINDS, make_net

from helpers import relative_error
from zeroloss.activations import ACTIVATIONS
from zeroloss.errors import ZerolossInputError
from zeroloss.kernels.empirical import gram_by_layer
from zeroloss.nets import FeedForward, FullyConnected
from zeroloss.nets.du import patches, patches_last
from zeroloss.train.backprop import Backprop, ConvResNetBackprop, analytic_backprop
from zeroloss.train.gd import train_gd

RTOL = 1e-12


def _autograd(net, X, r_weights):
    """Gradients of Σ_s ½‖u_s − y_s‖² for y = u − r (so that the residual is r), by autograd."""
    params = dict(net.named_parameters())
    u = net(X)
    y = (u - r_weights).detach()
    loss = 0.5 * (u - y).pow(2).sum()
    return dict(zip(params, torch.autograd.grad(loss, list(params.values())), strict=True))


@pytest.mark.parametrize("kind", NET_KINDS)
@pytest.mark.parametrize("activation", sorted(ACTIVATIONS))
@pytest.mark.parametrize("depth", [1, 3])
def test_forward_and_gradients_match_the_definition_and_autograd(kind, activation, depth):
    net, X, _ = make_net(kind, members=3, width=24, depth=depth, activation=activation)
    X = net.check_inputs(X)
    bp = analytic_backprop(net, X)
    u = bp.forward()
    with torch.no_grad():
        assert relative_error(u, net(X)) < RTOL
    r = torch.randn(u.shape, generator=torch.Generator().manual_seed(1), dtype=u.dtype)
    ours = bp.gradients(r)
    reference = _autograd(net, X, r)
    assert set(ours) == set(reference)
    for name, g in reference.items():
        assert ours[name].shape == g.shape, name
        assert relative_error(ours[name], g) < RTOL, (name, relative_error(ours[name], g))


@pytest.mark.parametrize("widths", [[], [12], [12, 7]])
@pytest.mark.parametrize("bias, output_bias", [(True, True), (False, False), (True, False)])
@pytest.mark.parametrize("activation", ["tanh", "relu", "softplus"])
def test_feedforward_forward_and_gradients_match_the_definition_and_autograd(widths, bias, output_bias, activation):
    """Chatterjee's net: per-layer widths, optional biases, the linear model (widths=[]) included."""
    net = FeedForward(5, widths, activation, members=3, seed=2, dtype=torch.float64, bias=bias,
                      output_bias=output_bias, init="gaussian")
    X = net.check_inputs(torch.randn(6, 5, generator=torch.Generator().manual_seed(0), dtype=torch.float64))
    bp = analytic_backprop(net, X)
    u = bp.forward()
    with torch.no_grad():
        assert relative_error(u, net(X)) < RTOL
    r = torch.randn(u.shape, generator=torch.Generator().manual_seed(1), dtype=u.dtype)
    ours, reference = bp.gradients(r), _autograd(net, X, r)
    assert set(ours) == set(reference)
    for name, g in reference.items():
        assert ours[name].shape == g.shape and relative_error(ours[name], g) < RTOL, name
    expected = {name: p.detach() - ours[name] for name, p in net.named_parameters()}
    bp.step(r)
    for name, p in net.named_parameters():
        assert relative_error(p.detach(), expected[name]) < RTOL, name


@pytest.mark.parametrize("kind", NET_KINDS)
def test_fused_step_equals_parameters_minus_gradients(kind):
    """step(η r) writes θ − ∇θ(η r) in place: the same numbers as forming the gradient first."""
    net, X, _ = make_net(kind, members=3, width=24, depth=3)
    X = net.check_inputs(X)
    bp = analytic_backprop(net, X)
    u = bp.forward()
    eta_r = torch.tensor([0.1, 0.5, 2.0], dtype=u.dtype).unsqueeze(-1) * torch.randn(u.shape, dtype=u.dtype)
    grads = bp.gradients(eta_r)
    expected = {name: p.detach() - grads[name] for name, p in net.named_parameters()}
    bp.step(eta_r)
    for name, p in net.named_parameters():
        assert relative_error(p.detach(), expected[name]) < RTOL, name


@pytest.mark.parametrize("kind, depth", [("fc", 1), ("fc", 3), ("resnet", 2), ("resnet", 3), ("feedforward", 2)])
def test_layer_grams_match_gram_by_layer(kind, depth):
    """G^(h) = α² (Q Qᵀ) ⊙ (A Aᵀ) from one sweep of Σ_i u_i: the exact per-layer Grams of the autograd route."""
    if kind == "feedforward":
        net = FeedForward(4, [9, 6][:depth], "tanh", members=3, seed=1, dtype=torch.float64, bias=True,
                          output_bias=True, init="gaussian")
        X = make_net("fc")[1]
    else:
        net, X, _ = make_net(kind, members=3, width=24, depth=depth)
    X = net.check_inputs(X)
    bp = analytic_backprop(net, X)
    bp.forward()
    assert bp.exact_grams
    ours, reference = bp.layer_grams(), gram_by_layer(net, X)
    assert list(ours) == list(reference)  # every layer, in order
    for h, K in reference.items():
        assert ours[h].shape == K.shape and relative_error(ours[h], K) < RTOL, h


def test_conv_and_float32_nets_have_no_layer_grams_shortcut():
    conv, X, _ = make_net("conv-resnet")
    bp = analytic_backprop(conv, conv.check_inputs(X))
    assert not bp.exact_grams
    with pytest.raises(NotImplementedError):
        bp.layer_grams()
    fc32, X, _ = make_net("fc", dtype=torch.float32)
    assert not analytic_backprop(fc32, fc32.check_inputs(X)).exact_grams  # the probes' Grams are float64


def _trainable(kind: str):
    if kind == "feedforward":
        net = FeedForward(4, [32, 16], "tanh", members=3, seed=0, dtype=torch.float64)
        return (net, *make_net("fc")[1:])
    return make_net(kind, members=3, width=32, depth=3)


# Some of these steps are above 2/λ_max(G(0)) on purpose (oscillating members): the two backward passes must agree
# there too, so the UnstableStepWarning they raise is expected and silenced.
@pytest.mark.filterwarnings("ignore::zeroloss.train.step.UnstableStepWarning")
@pytest.mark.parametrize("kind", [*NET_KINDS, "feedforward"])
def test_train_gd_analytic_and_autograd_runs_agree(kind):
    """Whole runs, per-member step sizes, the fused steps between probes included: the same trajectory, and the
    same Gram probes (from the sweep's layer_grams on one side, zeroloss.gram_by_layer on the other)."""
    runs = {}
    for mode in ("analytic", "autograd"):
        net, X, y = _trainable(kind)
        runs[mode] = (train_gd(net, X, y, lr=[0.05, 0.1, 0.2], steps=40, probe_every=10,
                               probes=["loss", "pl_ratio", "movement", "lambda_min", "lambda_min_last",
                                       "gram_drift"], progress=False, backprop=mode), net)
    (ours, net_a), (ref, net_b) = runs["analytic"], runs["autograd"]
    np.testing.assert_allclose(ours.losses, ref.losses, rtol=1e-10)
    np.testing.assert_allclose(ours.history["value"], ref.history["value"], rtol=1e-9, atol=1e-14)
    for (name, p), q in zip(net_a.named_parameters(), net_b.parameters(), strict=True):
        assert relative_error(p.detach(), q.detach()) < 1e-10, name


def test_subclasses_use_autograd():
    class Doubled(FullyConnected):  # a subclass may change the forward pass: never assumed to be Du's net
        def functional_forward(self, params, X, record=False):
            out, maps = super().functional_forward(params, X, record)
            return 2 * out, maps

    net = Doubled(4, 16, 2, members=2, dtype=torch.float64)
    X, y = make_net("fc")[1:]
    assert analytic_backprop(net, net.check_inputs(X)) is None
    with pytest.raises(ZerolossInputError, match="backprop: 'analytic' is available for FullyConnected, ResNet, "
                                                 "ConvResNet, FeedForward, not Doubled"):
        train_gd(net, X, y, lr=0.01, steps=2, progress=False, backprop="analytic")
    run = train_gd(net, X, y, lr=0.01, steps=2, probes=["loss"], progress=False)  # auto: autograd, doubled
    with torch.no_grad():
        np.testing.assert_allclose(run.losses[-1], 0.5 * (net(X) - y).pow(2).sum(dim=1).numpy(), rtol=1e-12)


@pytest.mark.parametrize("kernel_size", [1, 3, 5])
def test_positions_first_patches_and_the_flipped_kernel_adjoint(kernel_size):
    """patches_last is patches transposed, and the convolution's adjoint is the flipped-kernel convolution:
    ⟨φ(x) Wᵀ, g⟩ = ⟨x, φ(g) W̃⟩ (zero padding included) for random x, g and W with c_in ≠ c_out."""
    gen = torch.Generator().manual_seed(kernel_size)
    S, n, p, c_in, c_out = 2, 3, 6, 4, 5
    x = torch.randn(S, n, p, c_in, generator=gen, dtype=torch.float64)
    g = torch.randn(S, n, p, c_out, generator=gen, dtype=torch.float64)
    W = torch.randn(S, c_out, kernel_size * c_in, generator=gen, dtype=torch.float64)
    assert torch.equal(patches_last(x, kernel_size), patches(x.transpose(-1, -2), kernel_size).transpose(-1, -2))
    conv = patches_last(x, kernel_size).reshape(S, n * p, -1) @ W.transpose(-1, -2)
    lhs = (conv * g.reshape(S, n * p, c_out)).sum()
    adjoint = patches_last(g, kernel_size).reshape(S, n * p, -1) @ ConvResNetBackprop._flipped_kernel(W, kernel_size)
    rhs = (x.reshape(S, n * p, c_in) * adjoint).sum()
    assert abs(float(lhs - rhs)) < 1e-12 * float(lhs.abs() + 1)


def test_bad_backprop_value():
    net, X, y = make_net("fc", members=2)
    with pytest.raises(ZerolossInputError, match="backprop: must be one of auto, analytic, autograd, got 'jax'"):
        train_gd(net, X, y, lr=0.1, steps=2, progress=False, backprop="jax")


@pytest.mark.parametrize("probes, gradient_steps",
                         [(["loss", "movement", "lambda_min"], 0), (["loss", "pl_ratio"], 11)])
def test_gradients_are_formed_only_for_probes_that_read_them(monkeypatch, probes, gradient_steps):
    """probe_every=1 over 10 steps: only pl_ratio reads the gradient (11 probed steps, the last included); every
    other step is the fused one, and the trajectory is still autograd's."""
    calls = []
    original = Backprop.gradients
    monkeypatch.setattr(Backprop, "gradients", lambda self, r: calls.append(1) or original(self, r))
    net, X, y = make_net("fc", members=2, width=32)
    ours = train_gd(net, X, y, lr=0.1, steps=10, probe_every=1, probes=probes, progress=False)
    assert len(calls) == gradient_steps
    net, X, y = make_net("fc", members=2, width=32)
    ref = train_gd(net, X, y, lr=0.1, steps=10, probe_every=1, probes=probes, progress=False, backprop="autograd")
    np.testing.assert_allclose(ours.losses, ref.losses, rtol=1e-10)
    np.testing.assert_allclose(ours.history["value"], ref.history["value"], rtol=1e-9, atol=1e-14)
