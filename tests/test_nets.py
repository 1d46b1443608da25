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


# ---------------------------------------------------------------------------------------------- the registry

def test_registry_names_the_four_nets():
    from zeroloss.nets import NETS, ConvResNet, FeedForward, FullyConnected, ResNet

    assert NETS == {"fc": FullyConnected, "resnet": ResNet, "conv-resnet": ConvResNet, "feedforward": FeedForward}


@pytest.mark.parametrize("name, shape, arch", [
    ("fc", (4,), {"width": 8, "depth": 3, "activation": "erf"}),
    ("resnet", (4,), {"width": 8, "depth": 3, "activation": "tanh", "c_res": 0.25}),
    ("conv-resnet", (2, 5), {"width": 6, "depth": 2, "kernel_size": 5, "activation": "softplus", "c_res": 0.7}),
    ("feedforward", (4,), {"widths": [8, 3], "activation": "tanh", "bias": False, "output_bias": True}),
])
def test_build_net_and_architecture_round_trip(name, shape, arch):
    from zeroloss.nets import NETS, architecture, build_net

    net = build_net(name, shape, **arch, members=2, seed=3, dtype=torch.float64)
    assert type(net) is NETS[name]
    read = architecture(net)
    assert read["name"] == name and {k: read[k] for k in arch} == arch
    twin = build_net(**read, members=2, seed=3, dtype=torch.float64)
    assert architecture(twin) == read
    for (a, p), (b, q) in zip(net.named_parameters(), twin.named_parameters(), strict=True):
        assert a == b and torch.equal(p, q)  # same architecture and seeds: the same draws, bit for bit


def test_build_net_equals_the_class_it_names():
    from zeroloss.nets import build_net

    direct = ResNet(d=4, width=8, depth=3, activation="erf", members=2, seed=1, c_res=0.3)
    built = build_net("resnet", 4, width=8, depth=3, activation="erf", members=2, seed=1, c_res=0.3)
    assert all(torch.equal(p, q) for p, q in zip(direct.parameters(), built.parameters(), strict=True))


@pytest.mark.parametrize("call, match", [
    (lambda b: b("mlp", (4,), width=8, depth=2), "net: must be one of"),
    (lambda b: b("fc", (4,), width=8, depth=2, c_res=0.5), "c_res: not an option of the fc net"),
    (lambda b: b("fc", (2, 5), width=8, depth=2), r"input_shape: fc takes one sample's shape \(d,\)"),
    (lambda b: b("conv-resnet", (5,), width=8, depth=2), r"input_shape: conv-resnet takes .*\(channels, positions\)"),
    (lambda b: b("fc", width=8, depth=2), "input_shape: fc needs d"),
    (lambda b: b("fc", (4,), d=5, width=8, depth=2), "d: 5 disagrees with input_shape"),
])
def test_build_net_errors_name_the_field(call, match):
    from zeroloss.nets import build_net

    with pytest.raises(ZerolossInputError, match=match):
        call(build_net)


def test_net_options_picks_a_nets_fields_from_a_wider_dict():
    from zeroloss.nets import net_options

    everything = {"d": 4, "channels": 2, "positions": 5, "width": 8, "depth": 2, "activation": "erf", "c_res": 0.3,
                  "kernel_size": 3, "lr": 0.1, "seed": 0}
    assert net_options("fc", everything) == {"d": 4, "width": 8, "depth": 2, "activation": "erf"}
    assert net_options("conv-resnet", everything) == {"channels": 2, "positions": 5, "width": 8, "depth": 2,
                                                      "kernel_size": 3, "activation": "erf", "c_res": 0.3}


@pytest.mark.parametrize("kind", ["du", "nngp", "ntk"])
def test_limit_kernel_of_a_net_object_equals_the_name_form(kind):
    from zeroloss.data import patch_data, sphere_data
    from zeroloss.kernels.limit import limit_gram_by_layer, limit_kernel

    X, _ = sphere_data(n=5, d=4, seed=0)
    fc = FullyConnected(4, 16, 3, "erf", seed=9)
    assert torch.equal(limit_kernel(X, fc, kind=kind), limit_kernel(X, "fc", depth=3, activation="erf", kind=kind))
    res = ResNet(4, 16, 2, "tanh", c_res=0.3)
    assert torch.equal(limit_kernel(X, res, kind=kind),
                       limit_kernel(X, "resnet", depth=2, activation="tanh", c_res=0.3, kind=kind))
    P, _ = patch_data(n=4, channels=2, positions=5, seed=0)
    conv = ConvResNet(2, 5, 8, 2, kernel_size=5, activation="erf", c_res=0.6)
    assert torch.equal(limit_kernel(P, conv, kind=kind),
                       limit_kernel(P, "conv-resnet", depth=2, activation="erf", c_res=0.6, kernel_size=5, kind=kind))
    layers = limit_gram_by_layer(X, fc)
    assert all(torch.equal(layers[h], limit_gram_by_layer(X, "fc", 3, "erf")[h]) for h in layers)


def test_a_net_objects_architecture_wins_and_a_disagreeing_argument_is_an_error():
    from zeroloss.data import sphere_data
    from zeroloss.kernels.limit import lambda0, limit_kernel
    from zeroloss.nets import FeedForward

    X, _ = sphere_data(n=5, d=4, seed=0)
    net = ResNet(4, 16, 3, "erf", c_res=0.3)
    assert lambda0(X, net) == lambda0(X, "resnet", depth=3, activation="erf", c_res=0.3)
    assert torch.equal(limit_kernel(X, net, depth=3, activation="erf", c_res=0.3), limit_kernel(X, net))  # agreeing
    for kwargs, field in [({"depth": 2}, "depth"), ({"activation": "tanh"}, "activation"), ({"c_res": 0.5}, "c_res")]:
        with pytest.raises(ZerolossInputError, match=f"^{field}: .* disagrees with the net's own {field}"):
            limit_kernel(X, net, **kwargs)
    with pytest.raises(ZerolossInputError, match=r"X: must have shape \(n, 4\) to fit the net"):
        limit_kernel(torch.nn.functional.normalize(torch.randn(3, 5, dtype=torch.float64), dim=1), net)
    with pytest.raises(ZerolossInputError, match="net: must be one of fc, resnet, conv-resnet, got 'feedforward'"):
        limit_kernel(X, FeedForward(4, [8]))
    # any other nn.Module is a user's model (zeroloss.infinite): traced, its ops matched to rules; a bare layer traces
    # into its own parameter reads, which have no rule (wrapped in nn.Sequential it is a model like any other)
    with pytest.raises(ZerolossInputError, match="model: node 'weight' .* has no infinite-width rule"):
        limit_kernel(X, torch.nn.Linear(4, 1))
    assert limit_kernel(X, torch.nn.Sequential(torch.nn.Linear(4, 1))).ntk.shape == (X.shape[0], X.shape[0])


def test_theory_scalings_take_a_net_object():
    from zeroloss.papers.du2019.theory import step_scaling, width_scaling

    net = ResNet(4, 16, 3)
    assert width_scaling(net, n=10, lambda0=0.2, delta=0.1, constant=1.0) == width_scaling(
        "resnet", n=10, depth=3, lambda0=0.2, delta=0.1, constant=1.0)
    assert step_scaling(net, n=10, lambda0=0.2, constant=1.0) == step_scaling("resnet", 10, 3, 0.2, constant=1.0)
    with pytest.raises(ZerolossInputError, match="depth: 2 disagrees with the net's own depth 3"):
        step_scaling(net, n=10, depth=2, lambda0=0.2, constant=1.0)
    with pytest.raises(ZerolossInputError, match="depth: required with a net name"):
        step_scaling("resnet", n=10, lambda0=0.2, constant=1.0)
    with pytest.raises(ZerolossInputError, match="lambda0: must be a positive finite number, got None"):
        step_scaling(net, n=10, constant=1.0)


def test_input_values_are_checked_for_every_net():
    net = ConvResNet(channels=2, positions=5, width=4, depth=1)
    with pytest.raises(ZerolossInputError, match=r"X: contains NaN or inf \(first in row 1\)"):
        net.check_inputs(torch.tensor([[[0.0] * 5] * 2, [[float("inf")] * 5] * 2]))
    with pytest.raises(ZerolossInputError, match=r"X: must hold at least one input, got shape \(0, 2, 5\)"):
        net.check_inputs(torch.empty(0, 2, 5))
    with pytest.raises(ZerolossInputError, match=r"X: must have shape \(n, 2, 5\) = \(n, channels, positions\)"):
        net.check_inputs(torch.zeros(3, 5, 2))


def test_one_device_resolution():
    from zeroloss.devices import resolve_device

    assert resolve_device("cpu") == torch.device("cpu") and resolve_device(torch.device("cpu")).type == "cpu"
    assert resolve_device(None) == resolve_device("auto") == torch.device("cuda" if torch.cuda.is_available() else
                                                                         "cpu")
    with pytest.raises(ZerolossInputError, match="--device: must be auto, cpu, cuda or cuda:N, got 'gpu'"):
        resolve_device("gpu", "--device")
    if not torch.cuda.is_available():
        with pytest.raises(ZerolossInputError, match="device: cuda was asked for"):
            FullyConnected(3, 4, 1, device="cuda")
