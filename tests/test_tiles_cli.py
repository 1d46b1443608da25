"""``zeroloss kernel ... --out K.zarr`` (issue 22): a tiled job per kind, its dry run, and one-line refusals."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

import zeroloss
from helpers import markdown_python_blocks, run_markdown_block
from zeroloss.cli import app
from zeroloss.data import sphere_data
from zeroloss.tiles import open_kernel

runner = CliRunner()
DOC_KERNEL_JOBS = Path(__file__).resolve().parents[1] / "docs" / "kernel-jobs.md"

CNN = '''
import torch
from torch import nn


def make_cnn(width=4):
    return nn.Sequential(nn.Unflatten(1, (1, 8)), nn.Conv1d(1, width, 3, padding=1), nn.Tanh(),
                         nn.AvgPool1d(2), nn.Flatten(), nn.Linear(4 * width, 2))
'''


@pytest.fixture
def work(tmp_path):
    X, _ = sphere_data(n=12, d=8, seed=0)
    np.save(tmp_path / "X.npy", X.numpy())
    (tmp_path / "cnn.py").write_text(CNN)
    return tmp_path


def _kernel(work, *extra):
    return runner.invoke(app, ["kernel", "--inputs", str(work / "X.npy"), "--device", "cpu", *extra])


def test_limit_kernel_job_equals_the_npy_command(work):
    common = ["--kind", "ntk", "--net", "resnet", "--depth", "2", "--activation", "relu"]
    assert _kernel(work, *common, "--out", str(work / "K.npy")).exit_code == 0
    result = _kernel(work, *common, "--out", str(work / "K.zarr"), "--block", "5")
    assert result.exit_code == 0, result.output
    assert "6 tiles: 0 already done, 6 computed" in result.output
    K = open_kernel(work / "K.zarr").numpy()
    ref = np.load(work / "K.npy")
    assert np.abs(K - ref).max() <= 1e-12 * np.abs(ref).max()  # the same recursion on other row blocks


def test_entk_of_a_users_cnn_runs_as_a_tiled_job(work):
    result = _kernel(work, "--kind", "entk", "--model", f"{work / 'cnn.py'}:make_cnn", "--width", "3", "--seed",
                     "5", "--out", str(work / "E.zarr"), "--block", "5", "--dtype", "float32")
    assert result.exit_code == 0, result.output
    import importlib.util

    spec = importlib.util.spec_from_file_location("user_cnn", work / "cnn.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    torch.manual_seed(5)
    model = module.make_cnn(3)
    ref = zeroloss.entk(model, torch.from_numpy(np.load(work / "X.npy")))
    K = open_kernel(work / "E.zarr").numpy()
    # float32 storage rounds each entry by at most 2⁻²⁴ ≈ 6e-8 of itself (the float64 tiles and the whole-matrix
    # entk differ by round-off only, far below that)
    assert np.abs(K - ref.numpy()).max() <= 1e-7 * np.abs(ref.numpy()).max()


def test_gram_job_and_dry_run(work):
    result = _kernel(work, "--kind", "gram", "--width", "16", "--out", str(work / "G.zarr"), "--block", "5",
                     "--dry-run")
    assert result.exit_code == 0, result.output
    for text in ("tiles: 6 of 5 x 5 (0 done, 6 to compute)", "bytes on disk: 1.2 KiB", "peak memory per worker",
                 "one tile measured", "estimated time", "dry run: nothing written"):
        assert text in result.output
    assert not (work / "G.zarr").exists()
    job = ["--kind", "gram", "--width", "16", "--out", str(work / "G.zarr"), "--block", "5"]
    assert _kernel(work, *job).exit_code == 0
    again = _kernel(work, *job)
    assert "6 already done, 0 computed" in again.output


@pytest.mark.parametrize(("extra", "field"), [
    (["--kind", "gram", "--out", "{w}/G.npy"], "--kind"),
    (["--executor", "process", "--out", "{w}/K.npy"], "--executor"),
    (["--kind", "entk", "--out", "{w}/E.zarr"], "--model"),
    (["--kind", "du", "--model", "{w}/cnn.py:make_cnn", "--out", "{w}/E.zarr"], "--kind"),
    (["--kind", "entk", "--model", "{w}/missing.py:f", "--out", "{w}/E.zarr"], "--model"),
    (["--kind", "ntk", "--block", "0", "--out", "{w}/K.zarr"], "--block"),
    (["--kind", "ntk", "--dtype", "float16", "--out", "{w}/K.zarr"], "--dtype"),
    (["--kind", "ntk", "--workers", "2", "--out", "{w}/K.zarr"], "--workers"),
    (["--kind", "ntk", "--executor", "process", "--address", "1.2.3.4:6379", "--out", "{w}/K.zarr"], "--address"),
    (["--kind", "gram", "--max-bytes", "1K", "--out", "{w}/K.zarr"], "--block"),
    (["--kind", "bogus", "--out", "{w}/K.zarr"], "--kind"),
    (["--kind", "ntk", "--executor", "ray", "--address", "head", "--out", "{w}/K.zarr"], "--address"),
    (["--kind", "ntk", "--executor", "ray", "--address", "head:99999", "--out", "{w}/K.zarr"], "--address"),
    (["--kind", "ntk", "--overwrite", "--out", "{w}/K.zarr"], "--overwrite"),
])
def test_bad_job_options_are_one_line_errors_and_write_nothing(work, extra, field):
    result = _kernel(work, *[e.replace("{w}", str(work)) for e in extra])
    assert result.exit_code == 2, result.output
    lines = [line for line in result.output.splitlines() if line.startswith("error:")]
    assert len(lines) == 1 and lines[0].startswith(f"error: {field}:"), result.output
    assert not any(p.suffix in (".zarr", ".npy") and p.name != "X.npy" for p in work.iterdir())


def test_the_kernel_jobs_page_example_predicts_what_the_in_memory_kernels_predict(work, monkeypatch):
    """docs/kernel-jobs.md's Python block, on the train and test × train kernels of jobs its text describes."""
    X_test, _ = sphere_data(n=5, d=8, seed=1)
    np.save(work / "X_test.npy", X_test.numpy())
    common = ["--kind", "ntk", "--net", "fc", "--depth", "2", "--activation", "relu", "--block", "5"]
    for extra in (["--out", str(work / "K.zarr")],
                  ["--out", str(work / "Kt.zarr"), "--inputs2", str(work / "X.npy")]):
        inputs = work / ("X.npy" if "K.zarr" in extra[1] else "X_test.npy")
        result = runner.invoke(app, ["kernel", "--inputs", str(inputs), "--device", "cpu", *common, *extra])
        assert result.exit_code == 0, result.output
    (_, code, first_line), = markdown_python_blocks(DOC_KERNEL_JOBS)
    y = torch.linspace(-1, 1, 12, dtype=torch.float64)
    monkeypatch.chdir(work)  # the block opens K.zarr and Kt.zarr by relative path
    namespace, _ = run_markdown_block(DOC_KERNEL_JOBS, code, first_line, given={"y": y})
    X = torch.from_numpy(np.load(work / "X.npy"))
    both = zeroloss.limit_kernel(torch.cat([X, X_test]), net="fc", depth=2, activation="relu", kind="ntk")
    K, Kt = both[:12, :12], both[12:, :12]  # the kernel on train ∪ test, cut into its train and test × train blocks
    ref = zeroloss.predict_gd_mse(K, y, lr=1.0, time=[math.inf], k_test_train=Kt)
    pred = namespace["pred"]
    # the same closed form on kernels that agree to round-off (tiles are the same recursion on other row blocks)
    assert torch.allclose(pred.test, ref.test, rtol=1e-9, atol=1e-12)
    assert torch.allclose(pred.train, ref.train, rtol=1e-9, atol=1e-12)
