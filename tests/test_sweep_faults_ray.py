"""The Ray executor's exposure and faults (issue 15.8, 15.2).

Without an address it starts its own local instance — never one found on the machine (a running head, a stale
record, ``RAY_ADDRESS``) — with every listening socket on the loopback interface, and shuts it down at the end.
With an address it joins that cluster and passes no resource counts (Ray refuses ``num_cpus`` there). A task
whose worker dies is retried by Ray.

The head used here is started and stopped by the test itself: ``ray start --head`` on 127.0.0.1 in a private
``RAY_TMPDIR`` (so its record is where Ray looks for one), stopped by signalling the processes whose command line
names that directory (and their descendants) by pid — never ``ray stop``, which would stop every Ray instance of
the user. Skipped when ray is not installed.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd
import pytest

import fake_experiment
from helpers import alive, run_values
from zeroloss.sweep import run_sweep
from zeroloss.sweep.executors import RayExecutor

ray = pytest.importorskip("ray", reason="ray is not installed (pip install 'zeroloss[ray]')")
pytestmark = [pytest.mark.ray, pytest.mark.slow, pytest.mark.usefixtures("fake_registered"),
              pytest.mark.skipif(not Path("/proc/net/tcp").exists(), reason="reads sockets from /proc (Linux)")]
ROOT = Path(__file__).resolve().parents[1]
LOOPBACK = {"127.0.0.1", "::1", "::ffff:127.0.0.1"}


def _ppids() -> dict[int, int]:
    out = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                out[int(entry)] = int(Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()[1])
            except OSError:
                pass
    return out


def _descendants(roots: set[int]) -> set[int]:
    parents, found, frontier = _ppids(), set(), set(roots)
    while frontier:
        found |= frontier
        frontier = {pid for pid, ppid in parents.items() if ppid in frontier} - found
    return found


def _address(hex_address: str) -> str:
    ip = bytes.fromhex(hex_address.split(":")[0])
    if len(ip) == 4:
        return ".".join(str(b) for b in ip[::-1])
    words = [int.from_bytes(ip[i:i + 4][::-1], "big") for i in range(0, 16, 4)]
    if words[:2] == [0, 0] and words[2] == 0xFFFF:  # IPv4-mapped
        return "::ffff:" + ".".join(str(b) for b in words[3].to_bytes(4, "big"))
    return "::1" if words == [0, 0, 0, 1] else ("::" if words == [0, 0, 0, 0] else ip.hex())


def _listening_addresses(pids: set[int]) -> set[str]:
    """The addresses that the processes ``pids`` listen on (TCP, IPv4 and IPv6)."""
    listening = {}
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            fields = line.split()
            if fields[3] == "0A":  # LISTEN
                listening[fields[9]] = _address(fields[1])
    found = set()
    for pid in pids:
        try:
            fds = os.listdir(f"/proc/{pid}/fd")
        except OSError:
            continue
        for fd in fds:
            try:
                target = os.readlink(f"/proc/{pid}/fd/{fd}")
            except OSError:
                continue
            if target.startswith("socket:[") and target[8:-1] in listening:
                found.add(listening[target[8:-1]])
    return found


@pytest.fixture
def ray_tmpdir(monkeypatch):
    """A private, short RAY_TMPDIR (Ray's socket paths must stay under 108 bytes)."""
    path = tempfile.mkdtemp(prefix="zlray", dir="/tmp")
    monkeypatch.setenv("RAY_TMPDIR", path)
    yield Path(path)
    shutil.rmtree(path, ignore_errors=True)


def _gcs_address() -> str:
    return ray.get_runtime_context().gcs_address


def test_without_address_a_private_loopback_instance_ignores_what_is_recorded(tmp_path, ray_tmpdir, monkeypatch):
    # what made ray.init() attach elsewhere (and then refuse num_cpus): a stale record and RAY_ADDRESS
    (ray_tmpdir / "ray").mkdir()
    (ray_tmpdir / "ray" / "ray_current_cluster").write_text("127.0.0.1:9")
    monkeypatch.setenv("RAY_ADDRESS", "127.0.0.1:9")
    specs = fake_experiment.specs(widths=(1, 2), seeds=(0,))
    run_sweep(fake_experiment.EXPERIMENT, specs, tmp_path / "local", device="cpu", progress=False)
    before = _descendants({os.getpid()})
    with RayExecutor(workers=2) as executor:
        started = _descendants({os.getpid()}) - before
        assert not _gcs_address().endswith(":9")
        assert {node["NodeManagerAddress"] for node in ray.nodes()} == {"127.0.0.1"}
        listening = _listening_addresses(started)
        assert listening and listening <= LOOPBACK, f"Ray listens beyond the loopback interface: {listening}"
        result = run_sweep(fake_experiment.EXPERIMENT, specs, tmp_path / "ray", executor=executor, device="cpu",
                           progress=False)
    assert result.ok and result.ran == 2, result.failed
    pd.testing.assert_frame_equal(run_values(tmp_path / "local"), run_values(tmp_path / "ray"))
    assert not ray.is_initialized(), "the local instance is shut down at the end"
    deadline = time.monotonic() + 30
    while _listening_addresses(started) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not _listening_addresses(started), "the local instance's servers stopped"


def _head_env(tmpdir: Path, token: str) -> dict[str, str]:
    """The environment of the head and of a driver that joins it: loopback only, token authentication with a
    token of this test (not the user's ~/.ray/auth_token), the fake experiment importable."""
    path = os.pathsep.join([str(ROOT / "tests"), str(ROOT / "src"), os.environ.get("PYTHONPATH", "")])
    # RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0: Ray's single-node mode, which keeps 127.0.0.1 as the node address (on
    # Linux Ray otherwise rewrites a loopback address to the machine's network address, ray-project/ray#59110).
    return dict(os.environ, RAY_TMPDIR=str(tmpdir), RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER="0", RAY_AUTH_MODE="token",
                RAY_AUTH_TOKEN=token, PYTHONPATH=path, ZEROLOSS_EXTRA_EXPERIMENTS="fake_experiment_plugin")


def _start_head(tmpdir: Path, token: str) -> str:
    ray_cli = Path(sys.executable).with_name("ray")
    subprocess.run([str(ray_cli), "start", "--head", "--node-ip-address", "127.0.0.1", "--port", "0",
                    "--num-cpus", "2", "--include-dashboard", "false", "--disable-usage-stats"],
                   env=_head_env(tmpdir, token), check=True, capture_output=True, timeout=180)
    return (tmpdir / "ray" / "ray_current_cluster").read_text().strip()


def _head_processes(tmpdir: Path) -> set[int]:
    roots = set()
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                if str(tmpdir).encode() in Path(f"/proc/{entry}/cmdline").read_bytes():
                    roots.add(int(entry))
            except OSError:
                pass
    return _descendants(roots) - {os.getpid()}


def _stop_head(tmpdir: Path) -> None:
    """Signal the head's processes (their command line names ``tmpdir``) and their descendants, by pid: SIGTERM,
    then SIGKILL to what still runs a second later (Ray's gcs_server and raylet were measured still running 6 s after
    SIGTERM; a longer grace only made the test wait)."""
    pids = _head_processes(tmpdir)
    for sig, grace in ((signal.SIGTERM, 1.0), (signal.SIGKILL, 5.0)):
        for pid in pids:
            try:
                os.kill(pid, sig)
            except ProcessLookupError:
                pass
        deadline = time.monotonic() + grace
        while time.monotonic() < deadline and any(alive(pid) for pid in pids):
            time.sleep(0.1)


def test_with_a_running_head_no_address_starts_its_own_and_address_joins_it(tmp_path, ray_tmpdir, monkeypatch):
    specs = fake_experiment.specs(widths=(1, 2), seeds=(0,))
    run_sweep(fake_experiment.EXPERIMENT, specs, tmp_path / "local", device="cpu", progress=False)
    head = _start_head(ray_tmpdir, token := secrets.token_hex(32))
    try:
        listening = _listening_addresses(_head_processes(ray_tmpdir))
        assert listening and listening <= LOOPBACK, listening
        # No address, with the head running, recorded in RAY_TMPDIR and named by RAY_ADDRESS: a private instance
        # (before the fix: ray.init() attached to the head and refused num_cpus).
        monkeypatch.setenv("RAY_ADDRESS", head)
        with RayExecutor(workers=2) as executor:
            assert _gcs_address() != head
            own = run_sweep(fake_experiment.EXPERIMENT, specs, tmp_path / "own", executor=executor, device="cpu",
                            progress=False)
        assert not ray.is_initialized()
        # --address: joins the head (as a user would, from the command line), passing no num_cpus for --workers.
        sweep_file = tmp_path / "s.yaml"
        sweep_file.write_text("experiment: fake.decay\nbase: {lr: 0.1}\ngrid: {width: [1, 2]}\nseeds: [0]\n")
        joined = subprocess.run(
            [sys.executable, "-m", "zeroloss", "sweep", str(sweep_file), "--out", str(tmp_path / "joined"),
             "--executor", "ray", "--address", head, "--workers", "2", "--device", "cpu", "--json"],
            env=_head_env(ray_tmpdir, token), capture_output=True, text=True, timeout=300)
        assert joined.returncode == 0, joined.stderr[-3000:]
        # the batches ran in the head's workers: their pids have worker logs in the head's session
        logs = {p.name for p in ray_tmpdir.glob("ray/session_*/logs/worker-*")}
        pids = {str(json.loads((tmp_path / "joined" / "runs" / rid / "env.json").read_text())["pid"])
                for rid in own.run_ids}  # the same specs, so the same run ids
        assert pids and all(any(name.endswith(f"-{pid}.out") or f"-{pid}." in name for name in logs)
                            for pid in pids), (pids, sorted(logs)[:5])
    finally:
        _stop_head(ray_tmpdir)
    assert own.ok and own.ran == 2, own.failed
    assert json.loads(joined.stdout)["ran"] == 2
    pd.testing.assert_frame_equal(run_values(tmp_path / "local"), run_values(tmp_path / "own"))
    pd.testing.assert_frame_equal(run_values(tmp_path / "local"), run_values(tmp_path / "joined"))


def test_a_ray_task_whose_worker_dies_is_retried(tmp_path, ray_tmpdir):
    marker = tmp_path / "crashed-once"
    specs = fake_experiment.specs(widths=(1,), seeds=(0, 1), crash_once=str(marker))
    with RayExecutor(workers=1) as executor:
        result = run_sweep(fake_experiment.EXPERIMENT, specs, tmp_path / "ray", executor=executor, device="cpu",
                           progress=False)
    assert marker.exists(), "the first attempt's worker killed itself"
    assert result.ok and result.ran == 2, result.failed
    run_sweep(fake_experiment.EXPERIMENT, specs, tmp_path / "local", device="cpu", progress=False)
    pd.testing.assert_frame_equal(run_values(tmp_path / "local"), run_values(tmp_path / "ray"))
