"""Shared fixtures: small reference problems reused across nets, dtypes and tests."""

from __future__ import annotations

import pytest
import torch

from zeroloss.data import patch_data, sphere_data
from zeroloss.nets import ConvResNet, FullyConnected, ResNet


def make_net(kind: str, members: int = 2, width: int = 16, depth: int = 3, seed: int = 0,
             activation: str = "softplus", dtype: torch.dtype = torch.float64):
    """One of Du's three nets on a matching small input set: (net, X, y)."""
    if kind == "conv-resnet":
        X, y = patch_data(n=6, channels=2, positions=5, seed=seed)
        net = ConvResNet(2, 5, width, depth, 3, activation, members, seed, dtype)
    else:
        X, y = sphere_data(n=7, d=4, seed=seed)
        cls = FullyConnected if kind == "fc" else ResNet
        net = cls(4, width, depth, activation, members, seed, dtype)
    return net, X, y


NET_KINDS = ["fc", "resnet", "conv-resnet"]


@pytest.fixture(params=NET_KINDS)
def net_kind(request) -> str:
    return request.param
