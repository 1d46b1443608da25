"""Running sweeps: batching, resume after kill -9, divergence and failures, the process executor (the Ray executor:
tests/test_sweep_faults_ray.py, whose private local instance runs a sweep and compares it with a local one)."""

from __future__ import annotations

import dataclasses
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

import fake_experiment
from fake_experiment import NAME
from helpers import run_values
from zeroloss.cli import app
from zeroloss.store import load, run_id
from zeroloss.sweep import run_sweep

pytestmark = pytest.mark.usefixtures("fake_registered")


def test_local_executor_batches_seeds_and_step_sizes_and_resume_skips(tmp_path):
    specs = fake_experiment.specs(widths=(1, 2, 3), seeds=(0, 1, 2))
    result = run_sweep(fake_experiment.EXPERIMENT, specs, tmp_path, device="cpu", progress=False)
    assert fake_experiment.CALLS == [3, 3, 3], "one ensemble per width, its seeds together"
    assert (result.ran, result.skipped, result.failed) == (9, 0, {})
    assert sorted(result.run_ids) == sorted(p.name for p in (tmp_path / "runs").iterdir())
    again = run_sweep(fake_experiment.EXPERIMENT, specs + specs[:2], tmp_path, device="cpu", progress=False)
    assert (again.ran, again.skipped) == (0, 9) and fake_experiment.CALLS == [3, 3, 3]
    env = json.loads((tmp_path / "runs" / result.run_ids[0] / "env.json").read_text())
    assert {"python", "torch", "zeroloss", "device", "dtype", "start", "end", "hostname"} <= set(env)


def test_a_diverging_run_is_recorded_and_the_sweep_completes(tmp_path):
    specs = fake_experiment.specs(widths=(1,), seeds=(0, 1)) + [
        {"width": 2, "lr": 0.1, "seed": 0, "diverge": True}]
    result = run_sweep(fake_experiment.EXPERIMENT, specs, tmp_path, device="cpu", progress=False)
    assert result.ran == 3 and result.ok
    bad = run_id(NAME, specs[-1])
    assert result.diverged == [bad]
    runs = load(tmp_path).drop_duplicates("run_id").set_index("run_id")
    assert bool(runs.loc[bad, "diverged"]) and not runs.drop(index=bad)["diverged"].any()


def test_a_raising_configuration_is_isolated_and_reported(tmp_path):
    specs = fake_experiment.specs(widths=(1,), seeds=(0, 1, 2))
    specs[1] = {**specs[1], "fail": True}
    # one batch for all three runs, so the failing run takes its neighbours' batch down with it
    same_batch = dataclasses.replace(fake_experiment.EXPERIMENT, batch_key=lambda spec: "one batch")
    result = run_sweep(same_batch, specs, tmp_path, device="cpu", progress=False)
    assert list(result.failed) == [run_id(NAME, specs[1])]
    assert "fake failure" in result.failed[run_id(NAME, specs[1])]
    assert result.ran == 2, "the neighbours of the failing run were retried alone and stored"
    assert fake_experiment.CALLS == [3, 1, 1, 1]


def test_process_executor_equals_local(tmp_path):
    specs = fake_experiment.specs(widths=(1, 2), seeds=(0, 1))
    run_sweep(fake_experiment.EXPERIMENT, specs, tmp_path / "local", device="cpu", progress=False)
    result = run_sweep(fake_experiment.EXPERIMENT, specs, tmp_path / "proc", executor="process", workers=2,
                       device="cpu", progress=False)
    assert result.ran == 4 and result.ok
    pd.testing.assert_frame_equal(run_values(tmp_path / "local"), run_values(tmp_path / "proc"))
    pids = {json.loads((tmp_path / "proc" / "runs" / r / "env.json").read_text())["pid"] for r in result.run_ids}
    assert os.getpid() not in pids


SWEEP_YAML = fake_experiment.sweep_yaml(0.25)


def _success_marks(out: Path) -> dict[str, int]:
    runs = out / "runs"
    return {p.parent.name: p.stat().st_mtime_ns for p in runs.glob("*/_SUCCESS")} if runs.is_dir() else {}


@pytest.mark.slow  # kills a driver and waits: not the fast tier
def test_kill_minus_9_mid_sweep_then_resume_equals_an_uninterrupted_sweep(tmp_path):
    sweep_file = tmp_path / "sweep.yaml"
    sweep_file.write_text(SWEEP_YAML)
    killed = tmp_path / "killed"
    proc = subprocess.Popen([sys.executable, "-m", "zeroloss", "sweep", str(sweep_file), "--out", str(killed),
                             "--device", "cpu"], env=fake_experiment.cli_env(), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE)
    deadline = time.monotonic() + 60
    while len(_success_marks(killed)) < 4 and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.02)
    assert proc.poll() is None, f"the sweep ended before it could be killed: {proc.stderr.read()!r}"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    before = _success_marks(killed)
    assert 4 <= len(before) < 16, f"the kill should land mid-sweep: {len(before)} done; {proc.stderr.read()!r}"

    from zeroloss.sweep.spec import load_sweep_file

    specs = load_sweep_file(sweep_file).expand()
    resumed = run_sweep(fake_experiment.EXPERIMENT, specs, killed, device="cpu", progress=False)
    assert resumed.skipped == len(before) and resumed.ran == 16 - len(before)
    assert {k: v for k, v in _success_marks(killed).items() if k in before} == before, "finished runs untouched"

    fresh = tmp_path / "fresh"
    run_sweep(fake_experiment.EXPERIMENT, specs, fresh, device="cpu", progress=False)
    assert sorted(p.name for p in (killed / "runs").iterdir()) == sorted(p.name for p in (fresh / "runs").iterdir())
    a, b = run_values(killed), run_values(fresh)
    assert not a.duplicated(["run_id", "step", "metric"]).any()
    pd.testing.assert_frame_equal(a, b)


def test_cli_dry_run_prints_runs_and_count(tmp_path):
    sweep_file = tmp_path / "s.yaml"
    sweep_file.write_text("experiment: fake.decay\nbase: {lr: 0.1}\ngrid: {width: [1, 2, 3]}\nseeds: 2\n")
    res = CliRunner().invoke(app, ["sweep", str(sweep_file), "--dry-run", "--set", "seeds=[5]"])
    assert res.exit_code == 0, res.output
    lines = res.stdout.strip().splitlines()
    assert lines[-1] == "3 runs of fake.decay"
    assert json.loads(lines[0].split("  ", 1)[1]) == {"lr": 0.1, "seed": 5, "width": 1}
    assert not any(tmp_path.glob("*/"))


@pytest.mark.parametrize("text, overrides, key", [
    ("experiment: fake.decay\nbase: {lr: 0.1}\nseeds: 1\ngrid: {width: 1}", [], "grid.width"),
    ("experiment: fake.decay\nbase: {lr: 0.1}\nseeds: 1\ngrid: {width: [1]}\nextra: 1", [], "extra"),
    ("experiment: nope\nseeds: 1", [], "experiment"),
    ("experiment: fake.decay\nbase: {lr: 0.1}\nseeds: 1", [], "base"),  # width missing
    ("experiment: fake.decay\nbase: {lr: 0.1}\nseeds: 1\ngrid: {width: [1]}", ["zip.n=[1,2]", "zip.d=[1]"],
     "zip.d"),
    ("experiment: fake.decay\nbase: {lr: 0.1}\nseeds: 1\ngrid: {width: [1]}", ["oops"], "--set"),
])
def test_cli_bad_specs_exit_2_with_one_line_naming_the_key_and_write_nothing(tmp_path, text, overrides, key):
    sweep_file = tmp_path / "s.yaml"
    sweep_file.write_text(text)
    out = tmp_path / "out"
    args = ["sweep", str(sweep_file), "--out", str(out)] + [a for o in overrides for a in ("--set", o)]
    res = CliRunner().invoke(app, args)
    assert res.exit_code == 2, res.output
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"error: {key}:"), res.stderr
    assert not out.exists()


def test_cli_warns_about_keys_no_registered_run_has(tmp_path):
    sweep_file = tmp_path / "s.yaml"
    sweep_file.write_text("experiment: fake.decay\nbase: {lr: 0.1, widht: 3}\nseeds: 1\ngrid: {width: [1]}")
    res = CliRunner().invoke(app, ["sweep", str(sweep_file), "--dry-run"])
    assert res.exit_code == 0
    assert res.stderr.startswith("warning: base.widht: not a key of fake.decay's registered runs")


def test_cli_sweep_runs_and_exits_1_when_a_run_fails(tmp_path):
    sweep_file = tmp_path / "s.yaml"
    sweep_file.write_text("experiment: fake.decay\nbase: {lr: 0.1}\nzip: {width: [1, 2], fail: [false, true]}\n"
                          "seeds: 1\n")
    res = CliRunner().invoke(app, ["sweep", str(sweep_file), "--out", str(tmp_path / "o"), "--device", "cpu"])
    assert res.exit_code == 1
    assert "1 ran" in res.stdout and "1 failed" in res.stdout
    assert "fake failure" in res.stderr
    assert np.isfinite(load(tmp_path / "o")["value"]).all()
