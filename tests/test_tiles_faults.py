"""Kernel jobs survive kill -9 (issue 22.2, 22.5): of the driver mid-job (a CLI subprocess, then the same command),
of a process-pool worker, and of a Ray worker on a private local instance with two workers. Every result is compared
bit for bit with an uninterrupted in-process run of the same tile size (each tile is a pure function of its inputs,
rows, columns and kernel spec, computed with one intra-op thread everywhere).

The kernel: the empirical NTK (``--kind gram``) of a wide lab net (width 2048, depth 4), whose 25 × 25 tiles take
about 0.3 s each on one core, so that the kills land while tiles are still missing.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from helpers import alive, child_pids
from zeroloss.data import sphere_data
from zeroloss.tiles import kernel_job, open_kernel

pytestmark = [pytest.mark.slow,
              pytest.mark.skipif(not Path("/proc").is_dir(), reason="finds the workers through /proc (Linux)")]
ROOT = Path(__file__).resolve().parents[1]
N, BLOCK = 100, 25
PARAMS = {"net": "fc", "width": 2048, "depth": 4, "seed": 0}
TILES = 10  # a 4 × 4 grid, upper triangle


def _inputs():
    return sphere_data(n=N, d=8, seed=0)[0]


@pytest.fixture(scope="module")
def reference(tmp_path_factory) -> np.ndarray:
    """The uninterrupted in-process kernel (10 tiles, ~3 s): computed once per test process, not once per test."""
    out = tmp_path_factory.mktemp("reference") / "ref.zarr"
    kernel_job(_inputs(), "gram", params=PARAMS, out=out, block=BLOCK, progress=False)
    return open_kernel(out).numpy()


def _done(out: Path) -> int:
    records = out / "records"
    return len([p for p in records.iterdir() if p.suffix == ".json"]) if records.is_dir() else 0




def _env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT / "src"), env.get("PYTHONPATH", "")])
    return env


def test_kill_minus_9_of_the_driver_then_the_same_command_finishes_identically(tmp_path, reference):
    np.save(tmp_path / "X.npy", _inputs().numpy())
    out = tmp_path / "K.zarr"
    command = [sys.executable, "-m", "zeroloss", "kernel", "--kind", "gram", "--net", "fc", "--width", "2048",
               "--depth", "4", "--inputs", str(tmp_path / "X.npy"), "--out", str(out), "--block", str(BLOCK),
               "--executor", "process", "--workers", "2", "--device", "cpu"]
    proc = subprocess.Popen(command, env=_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 240
    while _done(out) < 3 and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.02)
    assert proc.poll() is None, f"the job ended before it could be killed: {proc.stderr.read()!r}"
    workers = child_pids(proc.pid, b"spawn_main")
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    before = _done(out)
    assert 3 <= before < TILES, before
    deadline = time.monotonic() + 30
    while any(alive(pid) for pid in workers) and time.monotonic() < deadline:
        time.sleep(0.05)
    again = subprocess.run(command, env=_env(), capture_output=True, text=True, timeout=600)
    assert again.returncode == 0, again.stderr
    assert f"{TILES} tiles: {before} already done, {TILES - before} computed" in again.stdout
    assert np.array_equal(open_kernel(out).numpy(), reference)
    assert open_kernel(out).verify() == []


def test_a_process_worker_killed_mid_job_is_replaced_and_the_kernel_is_identical(tmp_path, reference):
    from zeroloss.sweep.executors import ProcessExecutor

    out, killed = tmp_path / "K.zarr", []

    def kill_one_worker() -> None:
        deadline = time.monotonic() + 240
        while time.monotonic() < deadline and not killed:
            workers = child_pids(os.getpid(), b"spawn_main")
            if workers and 1 <= _done(out) < TILES - 4:
                os.kill(workers[0], signal.SIGKILL)
                killed.append(_done(out))
            time.sleep(0.02)

    killer = threading.Thread(target=kill_one_worker, daemon=True)
    killer.start()
    original = ProcessExecutor.__init__
    pools: list[ProcessExecutor] = []

    def spy(self, *args, **kwargs):
        original(self, *args, **kwargs)
        pools.append(self)

    ProcessExecutor.__init__ = spy  # to read pools_replaced of the job's executor
    try:
        result = kernel_job(_inputs(), "gram", params=PARAMS, out=out, block=BLOCK, executor="process", workers=2,
                            progress=False)
    finally:
        ProcessExecutor.__init__ = original
    killer.join(timeout=5)
    assert killed and killed[0] < TILES, "the worker must be killed while tiles were missing"
    assert pools and pools[0].pools_replaced >= 1, "the dead worker broke the pool, which was replaced"
    assert result.complete and not result.failed
    assert np.array_equal(open_kernel(out).numpy(), reference)


@pytest.mark.ray
def test_a_ray_worker_killed_mid_job_is_retried_and_the_kernel_is_identical(tmp_path, monkeypatch, reference):
    pytest.importorskip("ray", reason="ray is not installed (pip install 'zeroloss[ray]')")
    import shutil
    import tempfile

    ray_tmp = tempfile.mkdtemp(prefix="zlray", dir="/tmp")  # Ray's socket paths must stay under 108 bytes
    monkeypatch.setenv("RAY_TMPDIR", ray_tmp)
    out, killed = tmp_path / "K.zarr", []

    def kill_one_worker() -> None:
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline and not killed:
            running = child_pids(-1, b"ray::run_tile")
            if running and 1 <= _done(out) < TILES - 4:
                os.kill(running[0], signal.SIGKILL)
                killed.append(_done(out))
            time.sleep(0.05)

    killer = threading.Thread(target=kill_one_worker, daemon=True)
    killer.start()
    try:
        result = kernel_job(_inputs(), "gram", params=PARAMS, out=out, block=BLOCK, executor="ray", workers=2,
                            progress=False)
    finally:
        shutil.rmtree(ray_tmp, ignore_errors=True)
    killer.join(timeout=5)
    assert killed, "a Ray worker running a tile must be killed while tiles were missing"
    assert result.complete and not result.failed, result.failed
    assert np.array_equal(open_kernel(out).numpy(), reference)
