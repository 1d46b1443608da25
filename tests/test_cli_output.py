"""Where the commands write (issue 15.1, 15.5; 14.3): ownership, output errors, kills, permissions, one run format.

The issue's reproduction commands run as subprocesses (``python -m zeroloss ...``), the rest through typer's
CliRunner (same code, no interpreter start-up). "Nothing left behind" is checked by comparing the whole tree of
the test folder before and after.
"""

from __future__ import annotations

import errno
import json
import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

import fake_experiment
from fake_experiment import PAPER
from helpers import tree_bytes
from zeroloss.cli import app
from zeroloss.data import sphere_data
from zeroloss.errors import ZerolossInputError
from zeroloss.store import MARKER, load, load_runs
from zeroloss.store.atomic import STALE_AFTER_SECONDS

ROOT = Path(__file__).resolve().parents[1]
TRAIN = ["train", "--n", "6", "--d", "4", "--width", "16", "--steps", "5", "--device", "cpu"]
TWO_TIMESCALE = ["two-timescale", "--eps", "1", "--h", "1e-3", "--t-max", "0.01", "--logs", "2"]
SWEEP_YAML = "experiment: fake.decay\nbase: {lr: 0.1}\ngrid: {width: [1, 2]}\nseeds: 1\n"

#: The fake paper's runs take microseconds: run them in-process (reproduce's default starts a pool).
LOCAL = ("--device", "cpu", "--executor", "local")


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT / "tests"), str(ROOT / "src"), env.get("PYTHONPATH", "")])
    env["ZEROLOSS_EXTRA_EXPERIMENTS"] = "fake_experiment_plugin"
    return env


def _zeroloss(*args: object, umask: int | None = None) -> subprocess.CompletedProcess:
    """``python -m zeroloss ARGS`` in a fresh interpreter (the fake experiment registered)."""
    return subprocess.run([sys.executable, "-m", "zeroloss", *map(str, args)], env=_env(), capture_output=True,
                          text=True, timeout=600, preexec_fn=(lambda: os.umask(umask)) if umask is not None else None)


def _cli(*args: object):
    return CliRunner().invoke(app, [str(a) for a in args])


def _one_line_error(code: int, stderr: str, field: str = "--out") -> str:
    lines = stderr.strip().splitlines()
    assert code == 2 and len(lines) == 1 and lines[0].startswith(f"error: {field}: "), (code, stderr)
    return lines[0]


def _inputs(tmp_path: Path) -> Path:
    X, _ = sphere_data(n=5, d=3, seed=0)
    np.save(tmp_path / "X.npy", X.numpy())
    return tmp_path / "X.npy"


# ------------------------------------------------------------------------------------------- the cases

@pytest.mark.usefixtures("fake_registered")
def test_sweep_on_a_tensorboard_folder_deletes_nothing(tmp_path):
    """`mkdir -p proj/runs/exp1 && echo keep > proj/runs/exp1/events.log && zeroloss sweep ok.yaml --out proj`."""
    (tmp_path / "proj" / "runs" / "exp1").mkdir(parents=True)
    (tmp_path / "proj" / "runs" / "exp1" / "events.log").write_text("keep\n")
    (tmp_path / "ok.yaml").write_text(SWEEP_YAML)
    before = tree_bytes(tmp_path)
    proc = _zeroloss("sweep", tmp_path / "ok.yaml", "--out", tmp_path / "proj", "--device", "cpu")
    line = _one_line_error(proc.returncode, proc.stderr)
    assert "did not create" in line
    assert tree_bytes(tmp_path) == before


def test_overwrite_never_deletes_a_foreign_folder(tmp_path):
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "results.csv").write_text("keep\n")
    before = tree_bytes(tmp_path)
    proc = _zeroloss(*TRAIN, "--overwrite", "--out", mine)
    assert "did not create" in _one_line_error(proc.returncode, proc.stderr)
    res = _cli(*TWO_TIMESCALE, "--overwrite", "--out", mine)
    _one_line_error(res.exit_code, res.stderr)
    assert tree_bytes(tmp_path) == before


@pytest.mark.usefixtures("fake_registered")
def test_report_on_a_foreign_folder_keeps_the_users_report(tmp_path):
    proj = tmp_path / "proj"
    (proj / "runs" / "exp1").mkdir(parents=True)
    (proj / "report.html").write_text("<p>mine</p>")
    (proj / "claims.json").write_text('["mine"]')
    before = tree_bytes(tmp_path)
    proc = _zeroloss("report", proj)
    assert "not a zeroloss sweep or reproduce folder" in _one_line_error(proc.returncode, proc.stderr, "DIR")
    assert tree_bytes(tmp_path) == before


def test_train_overwrite_onto_a_file_leaves_nothing_behind(tmp_path):
    (tmp_path / "FILE").write_text("keep\n")
    before = tree_bytes(tmp_path)
    proc = _zeroloss(*TRAIN, "--overwrite", "--out", tmp_path / "FILE")
    assert "is a file" in _one_line_error(proc.returncode, proc.stderr)
    assert tree_bytes(tmp_path) == before, "no hidden .FILE.*.tmp/ either"


@pytest.mark.slow  # kills a train and waits: not the fast tier
def test_a_killed_train_leaves_a_temporary_that_the_next_train_removes(tmp_path):
    out = tmp_path / "run"
    proc = subprocess.Popen([sys.executable, "-m", "zeroloss", *TRAIN[:-4], "--steps", "1000000", "--probe-every",
                             "1000000", "--device", "cpu", "--out", str(out)], env=_env(),
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 300
    # the temporary is created, then marked: wait for the marker (killing in between is test_ownership's case)
    while not list(tmp_path.glob(f".run.*.tmp/{MARKER}")) and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    assert proc.poll() is None, f"train ended before it could be killed: {proc.stderr.read()!r}"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    (leftover,) = tmp_path.glob(".run.*.tmp")
    assert (leftover / MARKER).is_file() and not out.exists()
    # a temporary younger than STALE_AFTER_SECONDS is never removed (see zeroloss.store.atomic): age it that much
    # rather than wait (its modification time is what the check reads)
    aged = time.time() - STALE_AFTER_SECONDS - 1.0
    os.utime(leftover, (aged, aged))
    again = _zeroloss(*TRAIN, "--out", out)
    assert again.returncode == 0, again.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run"]
    assert load_runs(out)["steps"].tolist() == [5]


@pytest.mark.slow  # two CLI processes that compute: not the fast tier
def test_permissions_follow_the_umask(tmp_path):
    umask = 0o027
    proc = _zeroloss(*TRAIN, "--out", tmp_path / "new" / "run", umask=umask)
    assert proc.returncode == 0, proc.stderr
    gram = _zeroloss("gram", "--inputs", _inputs(tmp_path), "--width", "8", "--device", "cpu", "--out",
                     tmp_path / "g" / "G.npy", umask=umask)
    assert gram.returncode == 0, gram.stderr
    made = [p for p in tmp_path.rglob("*") if p.name != "X.npy"]
    modes = {str(p): oct(p.stat().st_mode & 0o777) for p in made}
    assert modes == {str(p): oct((0o777 if p.is_dir() else 0o666) & ~umask) for p in made}
    assert len(made) >= 12  # new, run, marker, manifest, runs, a run folder and its 5 files; g, G.npy


def test_an_output_is_never_created_at_the_file_system_root(tmp_path):
    top = Path("/") / f"nonexistent-{uuid.uuid4().hex}"
    proc = _zeroloss("gram", "--inputs", _inputs(tmp_path), "--width", "8", "--device", "cpu", "--out",
                     top / "G.npy")
    assert "does not exist" in _one_line_error(proc.returncode, proc.stderr)
    assert not top.exists()


# ------------------------------------------------------------------------------------------- more output errors

def test_seeds_out_of_range_are_one_line_errors(tmp_path):
    for args in ([*TRAIN, "--seed", str(2**70)], [*TRAIN, "--seed", "-1"],
                 [*TRAIN, "--members", "2", "--seed", str(2**63 - 1)],
                 [*TWO_TIMESCALE, "--seed", "-1"], [*TWO_TIMESCALE, "--seed", str(2**70)]):
        res = _cli(*args, "--out", tmp_path / "o")
        _one_line_error(res.exit_code, res.stderr, "--seed")
    assert list(tmp_path.iterdir()) == []


@pytest.mark.usefixtures("fake_registered")
def test_wrong_type_outputs_are_one_line_errors_and_leave_nothing(tmp_path):
    (tmp_path / "FILE").write_text("keep\n")
    (tmp_path / "DIR").mkdir()
    (tmp_path / "s.yaml").write_text(SWEEP_YAML)
    X = _inputs(tmp_path)
    before = tree_bytes(tmp_path)
    for args in ([*TRAIN, "--out", tmp_path / "FILE"],
                 [*TWO_TIMESCALE, "--out", tmp_path / "FILE"],
                 ["sweep", tmp_path / "s.yaml", "--device", "cpu", "--out", tmp_path / "FILE"],
                 ["sweep", tmp_path / "s.yaml", "--device", "cpu", "--out", tmp_path / "FILE" / "sub"],
                 ["reproduce", PAPER, *LOCAL, "--out", tmp_path / "FILE"],
                 ["gram", "--inputs", X, "--width", "8", "--device", "cpu", "--out", tmp_path / "DIR"],
                 ["gram", "--inputs", X, "--width", "8", "--device", "cpu", "--out", tmp_path / "FILE"],
                 ["kernel", "--inputs", X, "--device", "cpu", "--out", tmp_path / "DIR"],
                 ["kernel", "--inputs", X, "--device", "cpu", "--out", tmp_path / "FILE" / "K.npy"]):
        res = _cli(*args)
        _one_line_error(res.exit_code, res.stderr)
        assert tree_bytes(tmp_path) == before, args


def _ignores_permissions() -> bool:
    """Whether this process may write into a folder of mode 0o555 (root with CAP_DAC_OVERRIDE may)."""
    import tempfile

    folder = Path(tempfile.mkdtemp())
    folder.chmod(0o555)
    try:
        (folder / "probe").write_text("")
        return True
    except PermissionError:
        return False
    finally:
        folder.chmod(0o755)
        for p in folder.iterdir():
            p.unlink()
        folder.rmdir()


@pytest.mark.skipif(_ignores_permissions(), reason="this process writes into read-only folders (root); "
                                                   "test_a_failing_write_is_a_one_line_error covers the error path")
@pytest.mark.usefixtures("fake_registered")
def test_read_only_folders_are_one_line_errors(tmp_path):
    ro = tmp_path / "ro"
    ro.mkdir()
    (tmp_path / "s.yaml").write_text(SWEEP_YAML)
    ro.chmod(0o555)
    try:
        for args in ([*TRAIN, "--out", ro / "run"], [*TWO_TIMESCALE, "--out", ro / "run"],
                     ["sweep", tmp_path / "s.yaml", "--device", "cpu", "--out", ro],
                     ["gram", "--inputs", _inputs(tmp_path), "--width", "8", "--device", "cpu", "--out", ro / "G.npy"]):
            res = _cli(*args)
            assert "permission denied" in _one_line_error(res.exit_code, res.stderr)
        assert list(ro.iterdir()) == []
    finally:
        ro.chmod(0o755)


@pytest.mark.usefixtures("fake_registered")
def test_a_failing_write_is_a_one_line_error(tmp_path, monkeypatch):
    """A write refused by the file system (as in a read-only folder, for users other than root) → error: --out."""
    (tmp_path / "s.yaml").write_text(SWEEP_YAML)
    X = _inputs(tmp_path)
    denied = tmp_path / "denied"
    denied.mkdir()
    real_open, real_mkdir = os.open, os.mkdir

    def refuse(real):
        def call(path, *args, **kwargs):
            if str(path).startswith(str(denied)):
                raise PermissionError(errno.EACCES, "Permission denied", str(path))
            return real(path, *args, **kwargs)
        return call

    monkeypatch.setattr(os, "open", refuse(real_open))
    monkeypatch.setattr(os, "mkdir", refuse(real_mkdir))
    for args in ([*TRAIN, "--out", denied / "run"], [*TWO_TIMESCALE, "--out", denied / "run"],
                 ["sweep", tmp_path / "s.yaml", "--device", "cpu", "--out", denied / "sweep"],
                 ["gram", "--inputs", X, "--width", "8", "--device", "cpu", "--out", denied / "G.npy"]):
        res = _cli(*args)
        assert "Permission denied" in _one_line_error(res.exit_code, res.stderr), args
    assert list(denied.iterdir()) == []


@pytest.mark.usefixtures("fake_registered")
def test_report_and_load_name_a_corrupt_run(tmp_path):
    (tmp_path / "s.yaml").write_text(SWEEP_YAML)
    out = tmp_path / "o"
    assert _cli("sweep", tmp_path / "s.yaml", "--device", "cpu", "--out", out).exit_code == 0
    run = sorted((out / "runs").iterdir())[0]
    (run / "summary.json").write_bytes(b"\x00\xff garbage")
    res = _cli("report", out)
    line = _one_line_error(res.exit_code, res.stderr, str(run))
    assert "summary.json" in line and not (out / "report.html").exists()
    with pytest.raises(ZerolossInputError, match=f"^{run}: unreadable zeroloss run: summary.json"):
        load(out)


# ------------------------------------------------------------------------------------------- one run format

@pytest.mark.usefixtures("fake_registered")
def test_load_reads_every_output_kind_and_refuses_a_foreign_folder(tmp_path):
    assert _cli(*TRAIN, "--members", "2", "--lr", "0.1,0.05", "--out", tmp_path / "train").exit_code == 0
    assert _cli(*TWO_TIMESCALE, "--repeats", "2", "--out", tmp_path / "tt").exit_code == 0
    (tmp_path / "s.yaml").write_text(SWEEP_YAML)
    assert _cli("sweep", tmp_path / "s.yaml", "--device", "cpu", "--out", tmp_path / "sweep").exit_code == 0
    assert _cli("reproduce", PAPER, *LOCAL, "--out", tmp_path / "repro").exit_code == 0

    train = load(tmp_path / "train")
    assert set(train["experiment"]) == {"train"} and sorted(set(train["lr"])) == [0.05, 0.1]
    assert train[train["metric"] == "loss"].groupby("member").size().tolist() == [6, 6]
    tt = load_runs(tmp_path / "tt")
    assert set(tt["experiment"]) == {"two-timescale"} and sorted(tt["repeat"]) == [0, 1]
    assert np.isfinite(tt["final_risk"]).all() and tt["steps"].eq(10).all()
    assert len(load_runs(tmp_path / "sweep")) == 2
    repro = load_runs(tmp_path / "repro")
    assert set(repro["experiment"]) == {fake_experiment.NAME}
    assert len(repro) == len(fake_experiment.EXPERIMENT.specs["tiny"])

    (tmp_path / "foreign").mkdir()
    (tmp_path / "foreign" / "data.csv").write_text("x")
    with pytest.raises(ZerolossInputError, match="holds no zeroloss runs"):
        load(tmp_path / "foreign")
    res = _cli("report", tmp_path / "train")
    assert "has no claims to report" in _one_line_error(res.exit_code, res.stderr, "DIR")


def test_overwrite_replaces_a_zeroloss_train_output(tmp_path):
    out = tmp_path / "run"
    assert _cli(*TRAIN, "--lr", "0.1", "--out", out).exit_code == 0
    res = _cli(*TRAIN, "--lr", "0.1", "--out", out)
    assert "pass --overwrite" in _one_line_error(res.exit_code, res.stderr)
    res = _cli(*TRAIN, "--lr", "0.05", "--overwrite", "--out", out)
    assert res.exit_code == 0, res.output
    assert load_runs(out)["lr"].tolist() == [0.05]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run"], "the replaced folder is gone, no temporary left"


@pytest.mark.usefixtures("fake_registered")
def test_folders_of_earlier_versions_are_adopted(tmp_path):
    # a sweep written before the marker existed: resumed (finished runs skipped) and marked
    (tmp_path / "s.yaml").write_text(SWEEP_YAML)
    sweep = tmp_path / "sweep"
    assert _cli("sweep", tmp_path / "s.yaml", "--device", "cpu", "--out", sweep).exit_code == 0
    (sweep / MARKER).unlink()
    res = _cli("sweep", tmp_path / "s.yaml", "--device", "cpu", "--out", sweep, "--json")
    assert res.exit_code == 0, res.output
    assert (json.loads(res.stdout)["skipped"], json.loads(res.stdout)["ran"]) == (2, 0)
    assert json.loads((sweep / MARKER).read_text())["kind"] == "sweep"
    # a train output of the earlier format (its own files): --overwrite may replace it
    old = tmp_path / "old"
    old.mkdir()
    (old / "spec.json").write_text(json.dumps({"net": "fc", "width": 16, "depth": 2, "lr": [0.1], "steps": 5,
                                               "members": 1}))
    for name in ("metrics.parquet", "losses.npy", "summary.json", "summary.csv"):
        (old / name).write_bytes(b"old")
    res = _cli(*TRAIN, "--overwrite", "--out", old)
    assert res.exit_code == 0, res.output
    assert {p.name for p in old.iterdir()} == {MARKER, "sweep.json", "runs"}
