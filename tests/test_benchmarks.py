"""The benchmark peers and flop counts that docs/performance.md's train_gd ratios rest on.

A ratio is only honest if the peer does the same arithmetic: these tests pin the two peers of
``benchmarks/bench_train_gd.py`` (the loop of nn.Modules + SGD, and torch.func's vmap(grad)) to train_gd's final
losses, and its flop formulas (the "flop floor") to torch's own FlopCounterMode on one GD step.
"""

from __future__ import annotations

import pytest
import torch
from benchmarks.bench_train_gd import (
    UserConvResNet,
    UserFC,
    conv_gd_step_flops,
    gd_step_flops,
    loop_of_modules,
    vmap_ensemble,
)
from torch.utils.flop_counter import FlopCounterMode

from zeroloss.data import patch_data, sphere_data
from zeroloss.nets import ConvResNet, FullyConnected
from zeroloss.train.gd import train_gd


def _fc_problem():
    X, y = sphere_data(12, 5, seed=0)
    return FullyConnected(5, 24, 3, "softplus", 3, 0, torch.float64), X, y


def _conv_problem():
    X, y = patch_data(10, 3, 6, seed=0)
    return ConvResNet(3, 6, 16, 3, 3, "softplus", 3, 0, torch.float64), X, y


def _step_flops(module: torch.nn.Module, X: torch.Tensor, y: torch.Tensor) -> int:
    with FlopCounterMode(display=False) as counter:
        (0.5 * (module(X) - y).pow(2).sum()).backward()
    return counter.get_total_flops()


@pytest.mark.parametrize("problem", [_fc_problem, _conv_problem], ids=["fc", "conv-resnet"])
@pytest.mark.parametrize("peer", [loop_of_modules, vmap_ensemble], ids=["loop", "vmap"])
def test_peers_reach_train_gds_final_losses(problem, peer):
    (trained, X, y), (template, _, _) = problem(), problem()  # train_gd moves its net's weights in place
    lr, steps = 0.02, 6
    ours = train_gd(trained, X, y, lr, steps, probes=["loss"], progress=False)
    theirs = peer(template, X, y, lr, steps).detach()
    # float64, six steps of the same arithmetic in another order: agreement to round-off (1e-10 leaves ~10⁵ ulps)
    torch.testing.assert_close(torch.as_tensor(ours.losses[-1]), theirs, rtol=1e-10, atol=0)


def test_fc_flop_formula_matches_torchs_flop_counter():
    for n, d, m, depth in [(16, 8, 32, 3), (7, 3, 20, 1), (5, 9, 11, 4)]:
        net = FullyConnected(d, m, depth, "softplus", 1, 0, torch.float32)
        X, y = sphere_data(n, d, seed=0)
        assert gd_step_flops(n, d, m, depth) == _step_flops(UserFC(net), X.float(), y.float())


def test_conv_flop_formula_matches_torchs_flop_counter():
    for n, channels, positions, m, depth in [(16, 4, 10, 32, 3), (5, 2, 7, 9, 2)]:
        net = ConvResNet(channels, positions, m, depth, 3, "softplus", 1, 0, torch.float32)
        X, y = patch_data(n, channels, positions, seed=0)
        counted = _step_flops(UserConvResNet(net), X.float(), y.float())
        # The user module's output ⟨a, x_H⟩ is an elementwise product and sum, which FlopCounterMode does not
        # count; the formula counts its forward and ∂a as the matmuls they are in train_gd (2npm each).
        assert conv_gd_step_flops(n, channels, positions, m, depth) == counted + 2 * 2 * n * positions * m
