"""``zeroloss kernel --model FILE.py:FACTORY``: a user's model's infinite-width kernel from the shell, and its errors
(one line ``error: <field>: ...``, exit 2, no file written)."""

from __future__ import annotations

import json

import numpy as np
import torch
from typer.testing import CliRunner

from zeroloss.cli import app
from zeroloss.infinite import infinite_kernel

runner = CliRunner()

MODEL_FILE = '''
from torch import nn


def make_net():
    return nn.Sequential(nn.Conv2d(2, 16, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
                         nn.Linear(16, 1))
'''


def _setup(tmp_path):
    (tmp_path / "my_net.py").write_text(MODEL_FILE)
    X = np.random.default_rng(0).standard_normal((5, 2, 4, 4))
    np.save(tmp_path / "X.npy", X)
    return X


def test_kernel_of_a_user_model(tmp_path):
    X = _setup(tmp_path)
    out = tmp_path / "K.npy"
    result = runner.invoke(app, ["kernel", "--model", f"{tmp_path / 'my_net.py'}:make_net", "--inputs",
                                 str(tmp_path / "X.npy"), "--kind", "ntk", "--out", str(out), "--json"])
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout.strip().splitlines()[-1])
    assert summary["kind"] == "ntk" and summary["n"] == 5 and "pytorch-default" in summary["laws"]["0"]
    K = np.load(out)
    import importlib.util

    spec = importlib.util.spec_from_file_location("my_net_for_test", tmp_path / "my_net.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    ref = infinite_kernel(module.make_net(), torch.from_numpy(X), kind="ntk", init="default").ntk
    assert np.allclose(K, ref.numpy(), rtol=1e-13, atol=0)


def test_kernel_model_errors(tmp_path):
    _setup(tmp_path)
    model = f"{tmp_path / 'my_net.py'}:make_net"
    for args, field in ((["--kind", "du"], "--kind"), (["--kind", "ntk", "--parameterisation", "mean-field"],
                                                         "--parameterisation"),
                        (["--kind", "ntk", "--max-bytes", "1KiB"], "--inputs")):
        out = tmp_path / "K.npy"
        result = runner.invoke(app, ["kernel", "--model", model, "--inputs", str(tmp_path / "X.npy"), "--out",
                                     str(out), *args])
        assert result.exit_code == 2, result.output
        assert result.output.strip().startswith(f"error: {field}:") and len(result.output.strip().splitlines()) == 1
        assert not out.exists()
