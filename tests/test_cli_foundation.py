import json
import subprocess
import sys

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from zeroloss.cli import app
from zeroloss.data import sphere_data
from zeroloss.kernels.empirical import gram
from zeroloss.nets import FullyConnected
from zeroloss.store import load, load_runs
from zeroloss.train.gd import train_gd

runner = CliRunner()


def test_train_writes_one_run_per_member_in_the_store_format(tmp_path):
    out = tmp_path / "run"
    result = runner.invoke(app, ["train", "--n", "8", "--d", "5", "--width", "64", "--members", "2", "--activation",
                                 "softplus", "--lr",
                                 "0.1,0.2", "--steps", "20", "--device", "cpu", "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert {p.name for p in out.iterdir()} == {".zeroloss", "sweep.json", "runs"}
    assert json.loads((out / "sweep.json").read_text())["options"]["lr"] == [0.1, 0.2]
    runs = load_runs(out).set_index("member")
    assert runs["lr"].tolist() == [0.1, 0.2] and runs["members"].eq(2).all() and runs["seed"].eq(0).all()
    assert set(runs["experiment"]) == {"train"} and not runs["diverged"].any()
    df = load(out)
    loss = df[df["metric"] == "loss"]
    assert loss.groupby("member")["step"].apply(list).tolist() == [list(range(21))] * 2, "the loss at every step"
    assert {"lambda_min", "gram_drift"} <= set(df["metric"]), "the probes on their schedule"
    # the stored loss is the loss train_gd computed: member 1 alone, with seed 0 + 1, gives the same curve
    X, y = sphere_data(n=8, d=5, seed=0)
    alone = train_gd(FullyConnected(5, 64, 2, "softplus", members=1, seed=1), X, y, 0.2, 20, probes=["loss"],
                     progress=False)
    np.testing.assert_allclose(loss[loss["member"] == 1]["value"], alone.losses[:, 0], rtol=1e-5)
    assert "final_loss" in result.output


@pytest.mark.slow  # a CLI process: not the fast tier
def test_bad_flag_gives_one_line_error_exit_2_and_nothing_written(tmp_path):
    out = tmp_path / "run"
    # the process itself once (its exit status and stderr), the other flags through the same command in-process
    proc = subprocess.run([sys.executable, "-m", "zeroloss", "train", "--out", str(out), "--steps", "2",
                           "--activation", "swish"], capture_output=True, text=True)
    outcomes = [(proc.returncode, proc.stderr, "activation")]
    for args, field in ([["--width", "0"], "width"], [["--lr", "abc"], "--lr"], [["--dtype", "float16"], "--dtype"]):
        res = runner.invoke(app, ["train", "--out", str(out), "--steps", "2", *args])
        outcomes.append((res.exit_code, res.stderr, field))
    for code, stderr, field in outcomes:
        assert code == 2, stderr
        lines = stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("error: ") and field in lines[0]
        assert not out.exists() and list(tmp_path.iterdir()) == []


def test_gram_command_writes_the_gram_at_initialisation(tmp_path):
    X, _ = sphere_data(n=6, d=4, seed=0)
    np.save(tmp_path / "X.npy", X.numpy())
    out = tmp_path / "G.npy"
    result = runner.invoke(app, ["gram", "--inputs", str(tmp_path / "X.npy"), "--out", str(out), "--width", "32",
                                 "--depth", "2", "--layer", "last", "--seed", "3", "--device", "cpu"])
    assert result.exit_code == 0, result.output
    net = FullyConnected(4, 32, 2, "softplus", members=1, seed=3, dtype=torch.float64)
    np.testing.assert_allclose(np.load(out), gram(net, X, layer="last")[0].numpy(), rtol=1e-12)
    assert "lambda_min" in result.output


def test_gram_command_rejects_unnormalised_inputs(tmp_path):
    np.save(tmp_path / "X.npy", 3 * np.eye(3))
    result = runner.invoke(app, ["gram", "--inputs", str(tmp_path / "X.npy"), "--out", str(tmp_path / "G.npy")])
    assert result.exit_code == 2 and not (tmp_path / "G.npy").exists()
