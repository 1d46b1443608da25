"""A member whose weights overflow is recorded as diverged; the other members' results are kept (issue 15.3).

The reference for "the other members are exact" is the same ensemble with the bad member's step size at 1e20:
that member also diverges at step 1 and is frozen, and nothing about it reaches the healthy member, so the
healthy member's history must agree bit for bit. (A single-member run is not a bit-exact reference: batched
matmuls over two members round differently; it agrees to round-off, checked below at 1e-10 relative.)
"""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import torch
from typer.testing import CliRunner

import zeroloss
from zeroloss.cli import app
from zeroloss.data import sphere_data
from zeroloss.nets import FullyConnected
from zeroloss.spectra import eigenvalues_or_nan
from zeroloss.store import load, load_runs
from zeroloss.train.gd import train_gd
from zeroloss.train.step import UnstableStepWarning

# float64 overflows past ~1.8e308: lr 1e300 makes the first update inf; float32 (~3.4e38) needs only 1e100.
OVERFLOW_LR = {torch.float64: 1e300, torch.float32: 1e100}


def _run(lrs, dtype, members=2):
    """train_gd on the given steps; a step above 2/λ_max(G(0)) (the overflowing ones) must be warned about."""
    X, y = sphere_data(n=8, d=4, seed=0)
    net = FullyConnected(d=4, width=32, depth=2, members=members, dtype=dtype)
    lr = lrs if members > 1 else lrs[0]
    if max(lrs) < 1.0:  # the healthy steps used here are all below the bound (≈ 0.16)
        return train_gd(net, X, y, lr, steps=40, probe_every=4, progress=False)
    with pytest.warns(UnstableStepWarning, match=r"above its stability bound"):
        return train_gd(net, X, y, lr, steps=40, probe_every=4, progress=False)


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_an_overflowing_member_is_diverged_and_the_other_is_unchanged(dtype):
    run = _run([0.1, OVERFLOW_LR[dtype]], dtype)
    assert run.diverged_at == {1: 1}, "the overflowing member diverges at its first update"
    assert np.isnan(run.losses[1:, 1]).all() and np.isfinite(run.losses[:, 0]).all()
    reference = _run([0.1, 1e20], dtype)  # diverges at step 1 too, without overflowing the weights
    assert reference.diverged_at == {1: 1}
    pd.testing.assert_frame_equal(run.history, reference.history)
    np.testing.assert_array_equal(run.losses, reference.losses)
    assert set(run.history[run.history["step"] > 0]["member"]) == {0}, "nothing recorded for it after it diverged"
    assert set(run.history["metric"]) == {"loss", "movement_W1", "movement_W2", "movement_a", "lambda_min",
                                          "lambda_min_last", "gram_drift", "pl_ratio"}


def test_the_healthy_member_agrees_with_a_single_member_run_to_round_off():
    pair = _run([0.1, 1e300], torch.float64).history
    alone = _run([0.1], torch.float64, members=1).history
    mine = pair[pair["member"] == 0].reset_index(drop=True)
    assert mine[["step", "metric"]].equals(alone[["step", "metric"]])
    # 1e-10 relative: batched matmuls over 2 members vs 1 round differently (seen: ≤ 2e-13 on eigenvalues)
    np.testing.assert_allclose(mine["value"], alone["value"], rtol=1e-10, atol=1e-14)


def test_eigenvalues_or_nan_keeps_finite_members():
    G = torch.stack([torch.diag(torch.tensor([2.0, 1.0])), torch.tensor([[1.0, float("inf")], [0.0, 1.0]])])
    eig = eigenvalues_or_nan(G)
    assert eig[0].tolist() == [1.0, 2.0] and torch.isnan(eig[1]).all()
    assert torch.isnan(eigenvalues_or_nan(torch.full((1, 3, 3), float("nan")))).all()


@pytest.mark.parametrize("dtype, lr", [("float64", "0.1,1e300"), ("float32", "0.1,1e100")])
def test_cli_train_writes_the_run_with_the_member_diverged(tmp_path, dtype, lr):
    out = tmp_path / "r"
    with pytest.warns(UnstableStepWarning, match=r"member 1's step"):
        res = CliRunner().invoke(app, ["train", "--width", "64", "--n", "8", "--d", "4", "--steps", "200", "--dtype",
                                       dtype, "--lr", lr, "--members", "2", "--out", str(out), "--device", "cpu"])
    assert res.exit_code == 0, res.output
    runs = load_runs(out).set_index("member")
    assert bool(runs.loc[1, "diverged"]) and runs.loc[1, "diverged_at"] == 1
    # member 0 did not diverge: summary.json stores null, which the one-row-per-run table shows as NaN
    assert not bool(runs.loc[0, "diverged"]) and np.isnan(runs.loc[0, "diverged_at"])
    assert np.isfinite(runs.loc[0, "final_loss"]) and runs.loc[0, "final_loss"] < runs.loc[0, "initial_loss"]
    df = load(out)
    assert np.isfinite(df[df["member"] == 0]["value"]).all()


def test_in_a_sweep_the_overflowing_run_is_diverged_not_failed(tmp_path):
    """A registered experiment whose runs take a raw step (marion2023.appendix's lr_a): lr_a = 1e300 overflows the
    weights at the first step; that run is recorded as diverged, the healthy one beside it finishes finite."""
    sweep = tmp_path / "s.yaml"
    sweep.write_text("experiment: marion2023.appendix\n"
                     "base: {model: additive, d: 2, n: 50, regime: standard, lr_u: 0.01, epochs: 20, logs: 5}\n"
                     "grid: {lr_a: [1.0, 1.0e+300]}\nseeds: 1\n")
    res = CliRunner().invoke(app, ["sweep", str(sweep), "--out", str(tmp_path / "o"), "--device", "cpu", "--json"])
    assert res.exit_code == 0, res.output
    summary = json.loads(res.stdout)
    assert (summary["ran"], summary["failed"], len(summary["diverged"])) == (2, [], 1)
    runs = zeroloss.load(tmp_path / "o").drop_duplicates("run_id").set_index("lr_a")
    assert bool(runs.loc[1e300, "diverged"]) and not bool(runs.loc[1.0, "diverged"])
    assert np.isfinite(runs.loc[1.0, "final_criterion"])
