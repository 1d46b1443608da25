"""Dead workers cost an attempt, not the sweep (issue 15.2): the process executor replaces a broken pool and
resubmits the lost tasks; a task that kills its worker every time is reported failed and the sweep goes on; a
killed driver takes its workers with it, and running the sweep again completes it.

Every comparison is against an uninterrupted sweep of the same specs (the fake experiment's values depend on a
run's own spec and seed only, so they must agree exactly).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pandas as pd
import pytest

import fake_experiment
from fake_experiment import NAME
from helpers import alive, child_pids, run_values
from zeroloss.store import run_id
from zeroloss.sweep import run_sweep
from zeroloss.sweep.executors import MAX_ATTEMPTS, ProcessExecutor

pytestmark = [pytest.mark.usefixtures("fake_registered"), pytest.mark.slow]  # kills and waits: not the fast tier


def _pool_workers(parent: int) -> list[int]:
    """Pids of the spawn-context pool workers whose parent is ``parent`` (not the resource tracker)."""
    return child_pids(parent, b"spawn_main")


def _done(out: Path) -> int:
    return len(list((out / "runs").glob("*/_SUCCESS"))) if (out / "runs").is_dir() else 0


@pytest.mark.skipif(not Path("/proc").is_dir(), reason="finds the pool's workers through /proc (Linux)")
def test_a_worker_killed_mid_sweep_is_replaced_and_the_results_equal_an_uninterrupted_sweep(tmp_path):
    specs = fake_experiment.specs(widths=(1, 2, 3, 4, 5, 6), seeds=(0, 1), sleep=0.3)
    run_sweep(fake_experiment.EXPERIMENT, specs, tmp_path / "local", device="cpu", progress=False)
    out, killed = tmp_path / "proc", []

    def kill_one_worker_mid_sweep() -> None:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and not killed:
            workers = _pool_workers(os.getpid())
            if workers and 1 <= _done(out) < len(specs):
                os.kill(workers[0], signal.SIGKILL)
                killed.append((workers[0], _done(out)))
            time.sleep(0.02)

    killer = threading.Thread(target=kill_one_worker_mid_sweep, daemon=True)
    killer.start()
    with ProcessExecutor(workers=2, device="cpu") as executor:
        result = run_sweep(fake_experiment.EXPERIMENT, specs, out, executor=executor, device="cpu", progress=False)
    killer.join(timeout=5)
    assert killed and killed[0][1] < len(specs), "the worker must be killed while runs were still missing"
    assert executor.pools_replaced >= 1, "the dead worker broke the pool, which was replaced"
    assert result.ok and result.ran == len(specs), result.failed
    pd.testing.assert_frame_equal(run_values(tmp_path / "local"), run_values(out))


def test_a_task_that_kills_its_worker_every_time_fails_alone_and_the_sweep_goes_on(tmp_path):
    good = fake_experiment.specs(widths=(1, 2), seeds=(0, 1), sleep=0.3)  # in flight when the crash happens
    bad = {"width": 3, "lr": 0.1, "seed": 0, "sleep": 0.3, "crash": True}
    attempts = 2  # the bound is a parameter (default MAX_ATTEMPTS): 2 spares one pool start in this test
    assert MAX_ATTEMPTS >= attempts
    with ProcessExecutor(workers=2, device="cpu", max_attempts=attempts) as executor:
        result = run_sweep(fake_experiment.EXPERIMENT, good + [bad], tmp_path / "o", executor=executor,
                           device="cpu", progress=False)
    assert list(result.failed) == [run_id(NAME, bad)]
    assert f"died on each of {attempts} attempts (the last one alone)" in result.failed[run_id(NAME, bad)]
    assert result.ran == len(good), "the neighbours that died with it were retried and stored"
    assert executor.pools_replaced == attempts
    run_sweep(fake_experiment.EXPERIMENT, good, tmp_path / "ref", device="cpu", progress=False)
    pd.testing.assert_frame_equal(run_values(tmp_path / "ref"), run_values(tmp_path / "o"))


SWEEP_YAML = fake_experiment.sweep_yaml(0.4)


@pytest.mark.skipif(not Path("/proc").is_dir(), reason="finds the pool's workers through /proc (Linux)")
def test_kill_minus_9_of_a_process_pool_driver_ends_its_workers_and_a_rerun_completes(tmp_path):
    sweep_file = tmp_path / "sweep.yaml"
    sweep_file.write_text(SWEEP_YAML)
    out = tmp_path / "killed"
    command = [sys.executable, "-m", "zeroloss", "sweep", str(sweep_file), "--out", str(out), "--device", "cpu",
               "--executor", "process", "--workers", "2"]
    proc = subprocess.Popen(command, env=fake_experiment.cli_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 120
    while _done(out) < 2 and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.02)
    workers = _pool_workers(proc.pid)
    assert proc.poll() is None, f"the sweep ended before it could be killed: {proc.stderr.read()!r}"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    before = _done(out)
    assert workers and 2 <= before < 16, (workers, before)
    deadline = time.monotonic() + 30
    while any(alive(pid) for pid in workers) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not any(alive(pid) for pid in workers), "the pool workers outlived their killed driver"

    from zeroloss.sweep.spec import load_sweep_file

    specs = load_sweep_file(sweep_file).expand()
    with ProcessExecutor(workers=2, device="cpu") as executor:  # the re-run, in-process (saves a CLI start)
        again = run_sweep(fake_experiment.EXPERIMENT, specs, out, executor=executor, device="cpu", progress=False)
    assert again.ok and (again.skipped, again.ran) == (before, 16 - before)
    fresh = tmp_path / "fresh"
    run_sweep(fake_experiment.EXPERIMENT, specs, fresh, device="cpu", progress=False)
    pd.testing.assert_frame_equal(run_values(fresh), run_values(out))
