import math

import pytest
import torch
from tests.conftest import make_net

from zeroloss.errors import ZerolossInputError
from zeroloss.nets import ConvResNet, FullyConnected, ResNet, patches


def test_member_k_equals_single_net_with_seed_plus_k(net_kind):
    net, X, _ = make_net(net_kind, members=3, seed=5)
    out = net(net.check_inputs(X))
    for k in range(3):
        single, _, _ = make_net(net_kind, members=1, seed=5 + k)
        for (_, p), (_, q) in zip(net.named_parameters(), single.named_parameters(), strict=True):
            assert torch.equal(p[k], q[0])
        # Identical weights; the batched contraction (S = 3 vs 1) may sum in another order: round-off only.
        assert torch.allclose(out[k], single(single.check_inputs(X))[0], rtol=1e-13, atol=1e-13)


def test_weights_are_standard_normal_draws_not_torch_defaults():
    net = FullyConnected(d=3, width=4, depth=2, members=1, seed=11, dtype=torch.float64)
    gen = torch.Generator().manual_seed(11)
    expected_w1 = torch.randn((4, 3), generator=gen, dtype=torch.float64)
    expected_w2 = torch.randn((4, 4), generator=gen, dtype=torch.float64)
    assert torch.equal(net.W1[0], expected_w1) and torch.equal(net.W2[0], expected_w2)


def test_fc_forward_matches_the_formula():
    net = FullyConnected(d=3, width=5, depth=2, activation="tanh", members=1, seed=0, dtype=torch.float64)
    X = torch.nn.functional.normalize(torch.randn(4, 3, dtype=torch.float64), dim=1)
    c = net.activation.c_sigma
    x1 = math.sqrt(c / 5) * torch.tanh(X @ net.W1[0].T)
    x2 = math.sqrt(c / 5) * torch.tanh(x1 @ net.W2[0].T)
    assert torch.allclose(net(X)[0], x2 @ net.a[0], atol=1e-14)


def test_resnet_forward_matches_the_formula():
    net = ResNet(d=3, width=6, depth=3, activation="erf", members=1, seed=1, dtype=torch.float64, c_res=0.3)
    X = torch.nn.functional.normalize(torch.randn(4, 3, dtype=torch.float64), dim=1)
    c = net.activation.c_sigma
    x = math.sqrt(c / 6) * torch.erf(X @ net.W1[0].T)
    for W in (net.W2[0], net.W3[0]):
        x = x + 0.3 / (3 * math.sqrt(6)) * torch.erf(x @ W.T)
    assert torch.allclose(net(X)[0], x @ net.a[0], atol=1e-14)


def test_conv_resnet_matches_torch_conv1d():
    net = ConvResNet(channels=2, positions=7, width=4, depth=2, members=1, seed=2, dtype=torch.float64)
    X = torch.randn(3, 2, 7, dtype=torch.float64)
    c = net.activation.c_sigma
    # W (m, q·c) with column index k·c + ch ↔ conv1d kernel (m, c, q)[:, ch, k].
    def conv(x, W, channels):
        kernel = W.reshape(W.shape[0], 3, channels).permute(0, 2, 1)
        return torch.nn.functional.conv1d(x, kernel, padding=1)
    x = math.sqrt(c / 4) * torch.nn.functional.softplus(conv(X, net.W1[0], 2))
    x = x + 0.5 / (2 * math.sqrt(4)) * torch.nn.functional.softplus(conv(x, net.W2[0], 4))
    expected = (x * net.a[0]).sum(dim=(1, 2))
    assert torch.allclose(net(X)[0], expected, atol=1e-13)


def test_patches_stack_neighbouring_columns():
    x = torch.arange(6.0).reshape(1, 2, 3)  # channels 2, positions 3
    phi = patches(x, 3)[0]  # (6, 3): rows k·c + ch
    assert phi[:, 0].tolist() == [0, 0, 0, 3, 1, 4]  # column l=0: [x_{-1}=0; x_0; x_1]
    assert phi[:, 2].tolist() == [1, 4, 2, 5, 0, 0]


@pytest.mark.parametrize("bad", [
    lambda: FullyConnected(d=3, width=0, depth=2),
    lambda: FullyConnected(d=3, width=4, depth=2, seed=-1),
    lambda: ResNet(d=3, width=4, depth=2, c_res=1.5),
    lambda: ConvResNet(2, 5, 4, 2, kernel_size=2),
    lambda: FullyConnected(d=3, width=4, depth=2, dtype=torch.int32),
])
def test_bad_construction_arguments_raise(bad):
    with pytest.raises(ZerolossInputError):
        bad()


def test_wrong_input_shape_names_X():
    net = FullyConnected(d=3, width=4, depth=1)
    with pytest.raises(ZerolossInputError, match=r"X: must have shape \(n, 3\)"):
        net(net.check_inputs(torch.zeros(2, 4)))


def test_member_copy():
    net, X, _ = make_net("resnet", members=3)
    assert torch.equal(net.member(2)(X)[0], net(X)[2])


def test_stack_members_keeps_each_nets_weights(net_kind):
    from zeroloss.nets.base import stack_members

    nets = [make_net(net_kind, members=1, seed=s)[0] for s in (4, 9, 2)]
    stacked = stack_members(nets)
    X = make_net(net_kind)[1]
    assert stacked.members == 3
    for k, net in enumerate(nets):
        assert torch.allclose(stacked(X)[k], net(X)[0], rtol=1e-13, atol=1e-13)
    with pytest.raises(ZerolossInputError):
        stack_members([stacked])
