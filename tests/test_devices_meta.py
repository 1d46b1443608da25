"""GPU-correct without a GPU (issue 19.10): every public entry point and each CLI command's compute path runs with
its inputs on the CPU while tensor factories called without a device create ``meta`` tensors
(:class:`zeroloss.testing.meta_device.DefaultDeviceIsMeta`). A tensor made on the default device where the input's
was meant then fails loudly here, as it would on a GPU.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from zeroloss.cli import app
from zeroloss.data import patch_data, sphere_data
from zeroloss.testing.meta_device import DefaultDeviceIsMeta


def test_the_mode_redirects_implicit_factories_and_spares_explicit_ones_and_scalars():
    x = torch.ones(3)
    with DefaultDeviceIsMeta() as mode:
        assert torch.zeros(3).device.type == "meta" and torch.arange(4).device.type == "meta"
        assert torch.zeros(3, device=x.device).device.type == "cpu"
        assert torch.tensor(2.0).device.type == "cpu" and torch.as_tensor(np.ones(2)).device.type == "cpu"
        with pytest.raises((RuntimeError, NotImplementedError)):
            float((torch.randn(3) + x).sum())  # a meta tensor meets a CPU tensor: loud
    assert mode.redirected[:2] == ["zeros", "arange"]


def _nets():
    from zeroloss.nets.registry import build_net

    def make(net, shape):
        return build_net(net, shape, width=8, depth=2, activation="erf", members=2, seed=0, dtype=torch.float64,
                         device=torch.device("cpu"))
    return make


@pytest.mark.parametrize("net", ["fc", "resnet", "conv-resnet"])
def test_nets_gram_training_and_limit_kernels_create_nothing_on_the_default_device(net):
    from zeroloss.kernels.empirical import gram
    from zeroloss.kernels.limit import limit_kernel
    from zeroloss.spectra import spectrum
    from zeroloss.train.gd import train_gd

    X, y = patch_data(6, 2, 5, 0) if net == "conv-resnet" else sphere_data(6, 4, 0)
    with DefaultDeviceIsMeta():
        model = _nets()(net, tuple(X.shape[1:]))
        G = gram(model, X)
        run = train_gd(model, X, y, steps=3, probes=["loss", "lambda_min"], progress=False)
        K = limit_kernel(X, net=net, depth=2, activation="softplus", kind="ntk", nodes=16)
        spec = spectrum(K)
    assert G.device.type == "cpu" and np.isfinite(run.final_loss).all() and spec.lambda_min > 0


@pytest.mark.parametrize("method", ["jacobian", "ntvp", "structured"])
def test_entk_and_diagnose_create_nothing_on_the_default_device(method):
    from zeroloss import diagnose, entk

    X, y = sphere_data(6, 4, 0)
    model = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.Tanh(), torch.nn.Linear(8, 1)).double()
    with DefaultDeviceIsMeta():
        K = entk(model, X, method=method)
        d = diagnose(model, X, y, steps=3, alpha=False, progress=False)
    assert K.device.type == "cpu" and np.isfinite(d.history["value"].to_numpy(dtype=float)).any()


def test_diagnose_alpha_estimate_creates_nothing_on_the_default_device():
    from zeroloss import diagnose

    X, y = sphere_data(6, 4, 0)
    model = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.Tanh(), torch.nn.Linear(8, 1)).double()
    with DefaultDeviceIsMeta():
        diagnose(model, X, y, steps=3, alpha=True, progress=False)


def test_two_timescale_creates_nothing_on_the_default_device():
    from zeroloss.papers.marion2023.twotimescale import online_sgd, target_preset

    with DefaultDeviceIsMeta():
        run = online_sgd(target_preset("paper"), eps=1.0, h=1e-3, steps=3, neurons=4, eta=4e-3, repeats=2, seed=0,
                         noise=1.0, derivative="exact", logs=2, progress=False)
    assert np.isfinite(run.final_risk).all()


@pytest.fixture
def inputs(tmp_path):
    X = np.random.default_rng(0).standard_normal((6, 4))
    np.save(tmp_path / "X.npy", X / np.linalg.norm(X, axis=1, keepdims=True))
    Xi = np.linalg.qr(np.random.default_rng(1).standard_normal((6, 4)))[0].T  # 4 orthonormal rows in d = 6
    np.save(tmp_path / "Xi.npy", Xi)
    np.save(tmp_path / "y4.npy", np.linspace(-1, 1, 4))
    # the user's model says where its parameters live (the mode would put them on meta otherwise, as it should)
    (tmp_path / "model.py").write_text("from torch import nn\n\ndef make():\n    return nn.Sequential(nn.Linear(8, 16, "
                                       "device='cpu'), nn.Tanh(), nn.Linear(16, 1, device='cpu')).double()\n")
    (tmp_path / "du.yaml").write_text(
        "experiment: du2019.kernel\nbase: {net: fc, depth: 2, n: 6, d: 4, activation: softplus, labels: random, "
        "data_seed: 0, dtype: float64, run_factor: 2.0, max_steps: 10, probes: [loss, lambda_min], width: 8, "
        "limit: false}\n"
        "seeds: 2\n")
    return tmp_path


COMMANDS = {
    "gram": ["gram", "--inputs", "{w}/X.npy", "--out", "{w}/G.npy", "--width", "8", "--members", "2"],
    "kernel": ["kernel", "--inputs", "{w}/X.npy", "--out", "{w}/K.npy", "--nodes", "16"],
    "train": ["train", "--n", "6", "--d", "4", "--width", "8", "--steps", "3", "--members", "2", "--out", "{w}/t"],
    "two-timescale": ["two-timescale", "--t-max", "0.002", "--eps", "1", "--logs", "2", "--repeats", "2",
                      "--out", "{w}/tt"],
    "diagnose": ["diagnose", "--model", "{w}/model.py:make", "--n", "6", "--steps", "3", "--no-alpha",
                 "--out", "{w}/d"],
    "sweep du2019.kernel": pytest.param(["sweep", "{w}/du.yaml", "--out", "{w}/sw"]),
    "certify": pytest.param(["certify", "--widths", "8", "--inputs", "{w}/Xi.npy", "--labels", "{w}/y4.npy",
                             "--radius", "0.5", "--samples", "2", "--descent-steps", "1"]),
}


@pytest.mark.parametrize("argv", list(COMMANDS.values()), ids=list(COMMANDS))
def test_each_cli_commands_compute_path_creates_nothing_on_the_default_device(inputs, argv):
    argv = [a.replace("{w}", str(inputs)) for a in argv]
    if argv[0] not in ("certify",):
        argv += ["--device", "cpu"] if argv[0] not in ("two-timescale", "diagnose") else []
    with DefaultDeviceIsMeta():
        res = CliRunner().invoke(app, argv, catch_exceptions=True)
    if res.exception is not None and not isinstance(res.exception, SystemExit):
        raise res.exception
    assert res.exit_code == 0, res.output[-2000:]
