"""Shared fixtures: small reference problems reused across nets, dtypes and tests; the fake experiment; threads.

Helpers that are plain functions live in ``tests/helpers.py``; the fake experiment itself (importable by worker
processes) in ``tests/fake_experiment.py``.
"""

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


@pytest.fixture
def fake_registered(monkeypatch):
    """Register the fake experiment for one test (and for its subprocesses), remove it afterwards."""
    import fake_experiment
    from zeroloss.papers.base import REGISTRY

    monkeypatch.setenv("ZEROLOSS_EXTRA_EXPERIMENTS", "fake_experiment_plugin")
    fake_experiment.CALLS.clear()
    fake_experiment.register_fake()
    yield fake_experiment.EXPERIMENT
    REGISTRY.pop(fake_experiment.NAME, None)


@pytest.fixture(scope="module")
def one_thread():
    """Sweeps run each batch on one intra-op thread (zeroloss.threads); tests that call the run code directly do
    the same (on a busy 2-core machine two threads made them ~10× slower)."""
    from zeroloss.threads import intra_op_threads

    with intra_op_threads(1):
        yield


@pytest.fixture(scope="session")
def tiny_reproduction(tmp_path_factory):
    """``zeroloss reproduce all --scale tiny`` (the README's main job), run once per test session on every core
    (``executor="auto"``), shared by the tests that need real results: (folder, ReproduceResult)."""
    import zeroloss

    out = tmp_path_factory.mktemp("reproduction") / "tiny"
    result = zeroloss.reproduce("all", scale="tiny", out=out, executor="auto", device="cpu", progress=False)
    return out, result
