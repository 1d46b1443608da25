"""Shared fixtures: small reference problems reused across nets, dtypes and tests; the fake experiment; threads.

Helpers that are plain functions live in ``tests/helpers.py``; the fake experiment itself (importable by worker
processes) in ``tests/fake_experiment.py``.
"""

from __future__ import annotations

import os
import re

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
    # the plugin imported now, not by the test's first load_experiments(): a test that swaps the registered
    # experiment for a variant would otherwise meet the plugin registering the original over it ("registered
    # twice"), or not, depending on which test imported the plugin first in this process
    import fake_experiment_plugin  # noqa: F401
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
    """``zeroloss reproduce all --scale tiny`` (the README's main job), run once per test session on this worker's
    share of the cores (``executor="auto"``: every core without xdist; under ``-n N``, cores / N, so that the other
    workers keep theirs), shared by the tests that need real results: (folder, ReproduceResult)."""
    import zeroloss

    workers = os.environ.get("PYTEST_XDIST_WORKER_COUNT")
    share = max(1, xdist_auto_workers() // int(workers)) if workers else None
    out = tmp_path_factory.mktemp("reproduction") / "tiny"
    result = zeroloss.reproduce("all", scale="tiny", out=out, executor="auto", workers=share, device="cpu",
                                progress=False)
    return out, result


# --- running the suite on every core (pytest-xdist, ``-n auto`` in pyproject.toml) ---------------------------------

#: Tests kept on one xdist worker, one after another, by node id (the scheduler sees node ids only): the tests that
#: read the session's tiny reproduction (one worker computes it, once), and every Ray test (two Ray instances on two
#: cores starve each other, and the loopback tests read the machine's listening sockets).
_TINY_FILES = ("tests/test_papers_purity.py", "tests/test_sweep_reproduce_tiny.py")
#: Tests that share one costly module-scoped fixture (one fresh interpreter checking every precision setting).
_SHARED_FIXTURE = ("tests/test_precision.py::test_no_tf32_pins_ieee_and_restores_the_users_setting",)
_RAY_TEST = re.compile(r"^tests/test_sweep_faults_ray\.py::|::test_(\w+_)?ray(_\w+)?(\[|$)")


def xdist_group_of(nodeid: str) -> str | None:
    """The xdist group of a test (None: any worker)."""
    if nodeid.startswith(_TINY_FILES):
        return "tiny_reproduction"
    if _RAY_TEST.search(nodeid):
        return "ray"
    if nodeid.startswith(_SHARED_FIXTURE):
        return nodeid.split("[")[0]
    return None


def xdist_auto_workers() -> int:
    """One per core this process may run on (the affinity mask, not the machine's count)."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


def pytest_xdist_auto_num_workers(config):
    """``-n auto``: :func:`xdist_auto_workers`."""
    return xdist_auto_workers()


def pytest_xdist_make_scheduler(config, log):
    """xdist's load scheduling, except that the tests of one :func:`xdist_group_of` go to one worker (xdist's own
    ``--dist loadgroup`` reads a node id suffix that pytest 9 no longer lets a plugin set)."""
    from xdist.scheduler import LoadScopeScheduling

    class GroupScheduling(LoadScopeScheduling):
        def _split_scope(self, nodeid: str) -> str:
            return xdist_group_of(nodeid) or nodeid

    return GroupScheduling(config, log)


def pytest_collection_modifyitems(config, items):
    """Check that the node-id rules of :func:`xdist_group_of` cover every test that needs them (a test marked
    ``ray`` or reading ``tiny_reproduction`` outside its group is an error, not a silent second Ray instance or
    reproduction), then put the tiny reproduction's tests first: it is the longest single piece of work, so the
    other worker runs the rest of the suite beside it."""
    for item in items:
        group = xdist_group_of(item.nodeid)
        if item.get_closest_marker("ray") is not None and group != "ray":
            raise pytest.UsageError(f"{item.nodeid}: marked ray but not in the ray group (tests/conftest.py)")
        if "tiny_reproduction" in getattr(item, "fixturenames", ()) and group != "tiny_reproduction":
            raise pytest.UsageError(f"{item.nodeid}: reads tiny_reproduction outside its group (tests/conftest.py)")
    items.sort(key=lambda item: 0 if xdist_group_of(item.nodeid) == "tiny_reproduction" else 1)


def pytest_configure(config):
    """In an xdist worker, torch computes on ``cores / workers`` intra-op threads (at least one): two workers on two
    cores with two threads each would oversubscribe the machine. Tests that set threads themselves still do."""
    workers = os.environ.get("PYTEST_XDIST_WORKER_COUNT")
    if workers:
        torch.set_num_threads(max(1, xdist_auto_workers() // int(workers)))
