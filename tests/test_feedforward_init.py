"""The feedforward net of MATH §2.2 and the initialisations of init.py."""

import math

import pytest
import torch

from zeroloss.errors import ZerolossInputError
from zeroloss.init import INITIALISERS, initialise
from zeroloss.kernels.empirical import gram
from zeroloss.kernels.jacobian import gram_jacobian
from zeroloss.nets import FeedForward


def test_forward_matches_the_formula():
    net = FeedForward(3, [4, 5], "tanh", dtype=torch.float64, seed=1)
    X = torch.randn(6, 3, dtype=torch.float64)
    z = torch.tanh(X @ net.W1[0].T + net.b1[0])
    z = torch.tanh(z @ net.W2[0].T + net.b2[0])
    assert torch.allclose(net(X)[0], z @ net.v[0] + net.c[0], atol=1e-14)


def test_gram_with_biases_equals_jacobian_contraction():
    net = FeedForward(3, [6, 5], "softplus", members=2, dtype=torch.float64, seed=0)
    X = torch.randn(7, 3, dtype=torch.float64)
    G, GJ = gram(net, X), gram_jacobian(net, X)
    assert float((G - GJ).norm() / GJ.norm()) <= 1e-10


def test_member_k_equals_single_net_with_seed_plus_k():
    net = FeedForward(3, [4], "tanh", members=3, seed=5, dtype=torch.float64, init="kaiming")
    X = torch.randn(5, 3, dtype=torch.float64)
    for k in range(3):
        single = FeedForward(3, [4], "tanh", members=1, seed=5 + k, dtype=torch.float64, init="kaiming")
        assert torch.allclose(net(X)[k], single(X)[0], rtol=1e-13, atol=1e-13)


@pytest.mark.parametrize("name, variance", [
    ("kaiming", lambda fan_in, fan_out: 2.0 / fan_in),
    ("lecun", lambda fan_in, fan_out: 1.0 / fan_in),
    ("xavier", lambda fan_in, fan_out: 2.0 / (fan_in + fan_out)),
    ("torch_default", lambda fan_in, fan_out: 1.0 / (3.0 * fan_in)),  # U(±1/√fan_in)
    ("gaussian", lambda fan_in, fan_out: 1.0),
])
def test_initialisation_laws_have_their_variance(name, variance):
    net = FeedForward(200, [300], "tanh", members=1, seed=0, dtype=torch.float64, init=name)
    W = net.W1[0].detach()
    expected = variance(200, 300)
    # 60 000 i.i.d. draws: the sample variance's relative standard error is √(2/N) ≈ 0.6 % (Gaussian) and less
    # for the uniform law; 4 % is over six standard errors.
    assert float(W.var()) == pytest.approx(expected, rel=0.04)
    assert abs(float(W.mean())) < 5 * math.sqrt(expected / W.numel())


def test_initialisers_are_deterministic_per_seed_and_registered():
    assert {"positive", "kaiming", "xavier", "lecun", "torch_default", "gaussian"} <= set(INITIALISERS)
    a = FeedForward(4, [5], "tanh", seed=3, dtype=torch.float64, init="xavier")
    b = FeedForward(4, [5], "tanh", seed=3, dtype=torch.float64, init="xavier")
    assert all(torch.equal(p, q) for p, q in zip(a.parameters(), b.parameters(), strict=True))


def test_unknown_initialiser_names_the_field():
    net = FeedForward(4, [5], "tanh", init=None)
    with pytest.raises(ZerolossInputError, match="init: must be one of"):
        initialise(net, "orthogonal")
