"""The accelerator against the CPU: same nets, same Gram matrices, same training, same limit kernels.

Skipped where no CUDA device exists (CI). On a GPU machine, run ``python -m pytest -q tests/test_accelerator.py``
(``benchmarks/gpu_checks.sh`` does, before the GPU benchmarks). ``ZEROLOSS_TEST_ACCELERATOR=cpu`` runs the same
tests with the CPU on both sides: that proves only that the tests themselves run, not anything about a GPU.

Tolerances: float64 on both sides, the same algorithms, reductions summed in another order by cuBLAS and by the
CPU's BLAS: agreement to ~1e-14 relative is expected; 1e-10 (1e-9 for whole training runs, whose 30 steps
compound round-off through λ_max(G)·η < 2 contractions) is loose enough for every order of summation and tight
enough that any real difference (a missing scale, TF32, a wrong member) fails by orders of magnitude.
"""

from __future__ import annotations

import os

import numpy as np
import pytest
import torch
from tests.conftest import NET_KINDS, make_net

from helpers import relative_error
from zeroloss.kernels.empirical import gram
from zeroloss.kernels.limit import limit_kernel
from zeroloss.nets import ConvResNet, FeedForward, FullyConnected, ResNet
from zeroloss.precision import no_tf32
from zeroloss.train.gd import train_gd


def _accelerator() -> torch.device | None:
    forced = os.environ.get("ZEROLOSS_TEST_ACCELERATOR")
    if forced:
        return torch.device(forced)
    return torch.device("cuda") if torch.cuda.is_available() else None


ACCELERATOR = _accelerator()
pytestmark = pytest.mark.skipif(ACCELERATOR is None,
                                reason="no CUDA device (set ZEROLOSS_TEST_ACCELERATOR for a dry run)")


def _twin(net, device: torch.device):
    """The same net (same seed, members and shape) built on ``device``: weights drawn on CPU generators."""
    if isinstance(net, ConvResNet):
        return ConvResNet(net.channels, net.positions, net.width, net.depth, net.kernel_size, net.activation,
                          net.members, net.seed, net.dtype, device, net.c_res)
    if isinstance(net, FeedForward):
        return FeedForward(net.d, net.widths, net.activation, net.members, net.seed, net.dtype, device, net.bias,
                           net.output_bias)
    if isinstance(net, ResNet):
        return ResNet(net.d, net.width, net.depth, net.activation, net.members, net.seed, net.dtype, device,
                      net.c_res)
    return FullyConnected(net.d, net.width, net.depth, net.activation, net.members, net.seed, net.dtype, device)


@pytest.mark.parametrize("kind", NET_KINDS)
def test_weights_and_predictions_match_the_cpu(kind):
    net, X, _ = make_net(kind, members=3, width=32)
    twin = _twin(net, ACCELERATOR)
    for (name, p), q in zip(net.named_parameters(), twin.parameters(), strict=True):
        assert q.device.type == ACCELERATOR.type and torch.equal(p, q.cpu()), name
    with torch.no_grad():
        assert relative_error(twin(X.to(ACCELERATOR)), net(X)) < 1e-10


@pytest.mark.parametrize("kind", NET_KINDS)
@pytest.mark.parametrize("layer", ["all", "last", "output", 1])
def test_gram_matches_the_cpu(kind, layer):
    net, X, _ = make_net(kind, members=2, width=32)
    twin = _twin(net, ACCELERATOR)
    G = gram(twin, X.to(ACCELERATOR), layer=layer)
    assert G.device.type == ACCELERATOR.type and G.dtype == torch.float64
    assert relative_error(G, gram(net, X, layer=layer)) < 1e-10


def test_no_tf32_gives_ieee_float32_matmuls_even_when_the_user_enabled_tf32():
    """A mixed-sign (256 × 1024) @ (1024 × 256) product: TF32 (10 mantissa bits) misses float64 by ~1e-4 of the
    largest entry, IEEE float32 by ~1e-7; 1e-5 separates the two. Where TF32 exists (CUDA), the test first
    shows that it is really on outside the guard, so that the check inside can fail."""
    gen = torch.Generator().manual_seed(0)
    A, B = (torch.randn(256, 1024, generator=gen, dtype=torch.float64) for _ in range(2))
    exact = A @ B.T

    def error() -> float:
        product = A.float().to(ACCELERATOR) @ B.float().to(ACCELERATOR).T
        return relative_error(product.double(), exact)

    before = torch.backends.cuda.matmul.fp32_precision
    torch.backends.cuda.matmul.fp32_precision = "tf32"
    try:
        if ACCELERATOR.type == "cuda":
            assert error() > 1e-5  # TF32 really is on
        with no_tf32():
            assert error() < 1e-5
    finally:
        torch.backends.cuda.matmul.fp32_precision = before


def test_float32_gram_is_computed_without_tf32_even_when_the_user_enabled_it():
    """The Gram itself, float32 with the user's TF32 on, against float64 (float32 round-off: ~1e-6)."""
    net, X, _ = make_net("fc", members=2, width=256, dtype=torch.float32)
    reference = gram(_twin(net, ACCELERATOR), X.to(ACCELERATOR), dtype=torch.float64)
    before = torch.backends.cuda.matmul.fp32_precision
    torch.backends.cuda.matmul.fp32_precision = "tf32"
    try:
        G = gram(_twin(net, ACCELERATOR), X.to(ACCELERATOR), dtype=torch.float32)
    finally:
        torch.backends.cuda.matmul.fp32_precision = before
    assert relative_error(G, reference) < 1e-4


@pytest.mark.parametrize("kind", [*NET_KINDS, "feedforward"])
@pytest.mark.parametrize("backprop", ["auto", "autograd"])
def test_training_matches_the_cpu(kind, backprop):
    if kind == "feedforward":  # Chatterjee's net, lecun initialisation, biases
        net = FeedForward(4, [32, 16], "tanh", members=3, seed=0, dtype=torch.float64)
        X, y = make_net("fc")[1:]
    else:
        net, X, y = make_net(kind, members=3, width=32)
    twin = _twin(net, ACCELERATOR)
    lrs = [0.02, 0.05, 0.1]
    probes = ["loss", "pl_ratio", "lambda_min", "movement"]
    ours = train_gd(twin, X.to(ACCELERATOR), y.to(ACCELERATOR), lrs, 30, probe_every=10, probes=probes,
                    progress=False, backprop=backprop)
    ref = train_gd(net, X, y, lrs, 30, probe_every=10, probes=probes, progress=False, backprop=backprop)
    np.testing.assert_allclose(ours.losses, ref.losses, rtol=1e-9)
    np.testing.assert_allclose(ours.history["value"], ref.history["value"], rtol=1e-9, atol=1e-13)
    for (name, p), q in zip(net.named_parameters(), twin.parameters(), strict=True):
        assert relative_error(q, p) < 1e-9, name


def test_a_member_with_an_infinite_weight_stays_frozen_on_the_accelerator():
    """On an accelerator the NaN-safe mask is applied every step (no host read): check it there."""
    net, X, y = make_net("fc", members=3, width=32)
    twin = _twin(net, ACCELERATOR)
    with torch.no_grad():
        twin.W1[1, 0, 0] = float("inf")
    before = {name: p.detach().clone() for name, p in twin.named_parameters()}
    run = train_gd(twin, X.to(ACCELERATOR), y.to(ACCELERATOR), 0.05, 20, probes=["loss"], progress=False)
    assert run.diverged_at == {1: 0}
    for name, p in twin.named_parameters():
        assert torch.equal(p[1], before[name][1]), name
    alone = train_gd(net, X, y, 0.05, 20, probes=["loss"], progress=False)
    np.testing.assert_allclose(run.losses[:, [0, 2]], alone.losses[:, [0, 2]], rtol=1e-9)


@pytest.mark.parametrize("net_name, activation", [("fc", "relu"), ("fc", "softplus"), ("resnet", "erf"),
                                                  ("resnet", "tanh")])
@pytest.mark.parametrize("kind", ["du", "ntk"])
def test_limit_kernel_matches_the_cpu_with_small_blocks(net_name, activation, kind):
    """Small ``block_bytes`` forces many blocks on both sides; closed-form, table and quadrature paths."""
    X = torch.nn.functional.normalize(torch.randn(40, 4, generator=torch.Generator().manual_seed(3),
                                                  dtype=torch.float64), dim=1)
    args = {"net": net_name, "depth": 3, "activation": activation, "kind": kind, "block_bytes": 1 << 16}
    K = limit_kernel(X.to(ACCELERATOR), device=ACCELERATOR, **args)
    assert K.device.type == ACCELERATOR.type and torch.equal(K, K.T)
    assert relative_error(K, limit_kernel(X, **args)) < 1e-10
