"""Issue 19: unusual but valid inputs accepted, bad ones refused in one line, for any dtype, byte order and file kind;
plugins, ownership, full disks and concurrent writers.

The table of single bad command lines is tests/test_fuzz_cli.py; this file holds the cases that need more than one
command line: results compared between inputs, generated arrays (hypothesis), environment variables, a disk that
fills up, a second writer.
"""

from __future__ import annotations

import errno
import fcntl
import io
import json
import os
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

import fake_experiment
from zeroloss.cli import app
from zeroloss.cli.files import read_array
from zeroloss.errors import ZerolossInputError
from zeroloss.store import claim_folder, sweep_lock
from zeroloss.sweep import run_sweep


def _unit_rows(n: int, d: int, seed: int = 0) -> np.ndarray:
    X = np.random.default_rng(seed).standard_normal((n, d))
    return X / np.linalg.norm(X, axis=1, keepdims=True)


def _one_line_exit_2(res) -> str:
    assert res.exit_code == 2, f"exit {res.exit_code}: {res.output[-1500:]} {res.exception!r}"
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), res.stderr[-1500:]
    return lines[0]


# --------------------------------------------------------------------------- unusual arrays are accepted, converted

@pytest.mark.parametrize("variant", ["big-endian", "longdouble", "npz"])
def test_gram_and_kernel_read_big_endian_longdouble_and_npz_inputs_as_the_native_array(tmp_path, variant):
    """The same numbers in another byte order, as long doubles or inside an .npz give the identical result file."""
    X = _unit_rows(6, 4)
    np.save(tmp_path / "X.npy", X)
    if variant == "big-endian":
        np.save(tmp_path / "Xv.npy", X.astype(">f8"))
        given_path = tmp_path / "Xv.npy"
    elif variant == "longdouble":
        np.save(tmp_path / "Xv.npy", X.astype(np.longdouble))
        given_path = tmp_path / "Xv.npy"
    else:
        np.savez(tmp_path / "Xv.npz", X=X)
        given_path = tmp_path / "Xv.npz"
    for command in (["gram", "--width", "8"], ["kernel"]):
        outputs = []
        for source, name in ((tmp_path / "X.npy", "native"), (given_path, variant)):
            out = tmp_path / f"{command[0]}_{name}.npy"
            res = CliRunner().invoke(app, [*command, "--inputs", str(source), "--out", str(out), "--device", "cpu"])
            assert res.exit_code == 0, res.output
            outputs.append(np.load(out))
        np.testing.assert_array_equal(outputs[0], outputs[1])  # float64 data, converted exactly


# ------------------------------------------------------------------- generated arrays: accepted or one clean error

DTYPES = ["<f8", ">f8", "<f4", ">f4", "<f2", ">f2", "<i8", ">i4", "<u2", "|u1", "|b1", "<c16", "<U3",
          np.dtype(np.longdouble).str]
EXTREMES = [0.0, -0.0, 1.0, -1.0, 1e-320, 5e-324, 1e308, -1e308, float("inf"), float("-inf"), float("nan"), 3.5]


@st.composite
def arrays(draw):
    shape = draw(st.lists(st.integers(0, 4), min_size=0, max_size=3).map(tuple))
    values = draw(st.lists(st.sampled_from(EXTREMES), min_size=int(np.prod(shape)), max_size=int(np.prod(shape))))
    dtype = np.dtype(draw(st.sampled_from(DTYPES)))
    with np.errstate(all="ignore"):
        base = np.array(values, dtype=np.float64).reshape(shape)
        if dtype.kind in "iub":
            base = np.nan_to_num(base, posinf=7, neginf=-7).clip(0 if dtype.kind == "u" else -7, 7)
        return base.astype(dtype) if dtype.kind != "U" else base.astype(str).astype(dtype)


FILE_KINDS = ["npy", "npz", "npz-two", "truncated", "text", "empty", "fifo", "folder", "link-to-fifo", "missing"]


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(array=arrays(), kind=st.sampled_from(FILE_KINDS))
def test_any_array_file_is_read_natively_or_refused_in_one_line(tmp_path, array, kind):
    """read_array returns a native-order numeric array (float64 for long and half floats) or raises the one input
    error type: never numpy's or torch's own exceptions, and never blocks (FIFOs, even behind a link)."""
    import uuid

    path = tmp_path / f"{uuid.uuid4().hex}.{kind}"
    buffer = io.BytesIO()
    np.save(buffer, array)
    data = buffer.getvalue()
    if kind == "fifo":
        os.mkfifo(path)
    elif kind == "folder":
        path.mkdir()
    elif kind == "link-to-fifo":
        os.mkfifo(tmp_path / f"{path.name}.target")
        path.symlink_to(tmp_path / f"{path.name}.target")
    elif kind == "missing":
        pass
    elif kind == "npy":
        path.write_bytes(data)
    elif kind == "npz":
        np.savez(path, X=array)
    elif kind == "npz-two":
        np.savez(path, A=array, B=array)
    elif kind == "truncated":
        path.write_bytes(data[: max(1, len(data) - 3)])
    elif kind == "text":
        path.write_text("1,2,3\n")
    else:
        path.write_bytes(b"")
    try:
        out = read_array(path, "--inputs")
    except ZerolossInputError as exc:
        assert str(exc).startswith("--inputs: ") and "\n" not in str(exc) and "allow_pickle" not in str(exc)
        return
    assert kind in ("npy", "npz") and array.dtype.kind in "fiu"
    assert out.dtype.isnative and out.dtype.kind in "fiu" and out.shape == array.shape
    if array.dtype.kind == "f" and array.dtype.itemsize not in (4, 8):
        assert out.dtype == np.float64
    with np.errstate(all="ignore"):
        np.testing.assert_array_equal(out.astype(np.float64), array.astype(np.float64))


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(dtype=st.sampled_from(["<f8", ">f8", ">f4", np.dtype(np.longdouble).str, "<f2", ">i8"]),
       extreme=st.sampled_from(EXTREMES))
def test_kernel_takes_any_float_layout_or_refuses_in_one_line(tmp_path_factory, dtype, extreme):
    """One entry of valid unit rows replaced by a numeric extreme, stored in any float layout: ``kernel`` exits 0
    (the value is harmless or normalised away) or 2 with one line naming --inputs, and writes only on success."""
    folder = tmp_path_factory.mktemp("k")
    X = _unit_rows(5, 3, seed=1)
    X[2, 1] = extreme
    with np.errstate(all="ignore"):
        np.save(folder / "X.npy", X.astype(np.dtype(dtype)))
    res = CliRunner().invoke(app, ["kernel", "--inputs", str(folder / "X.npy"), "--out", str(folder / "K.npy"),
                                   "--device", "cpu", "--normalise"])
    if res.exit_code == 0:
        assert np.isfinite(np.load(folder / "K.npy")).all()
    else:
        assert _one_line_exit_2(res).startswith("error: --inputs: ")
        assert not (folder / "K.npy").exists()


def test_an_unreadable_input_file_is_one_line(tmp_path, monkeypatch):
    """A file without read permission (simulated: the tests may run as root, who reads anything) is one line naming
    the option, before anything is opened (typer's own readability check drew a multi-line box, issue 19.7)."""
    np.save(tmp_path / "X.npy", _unit_rows(6, 4))
    real_access = os.access
    monkeypatch.setattr(os, "access", lambda p, mode, **kw: False if str(p).endswith("X.npy") else
                        real_access(p, mode, **kw))
    line = _one_line_exit_2(CliRunner().invoke(app, ["gram", "--inputs", str(tmp_path / "X.npy"), "--out",
                                                     str(tmp_path / "G.npy"), "--device", "cpu"]))
    assert line.startswith("error: --inputs: ") and ("not readable" in line or "permission denied" in line)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["X.npy"]


def test_a_coarse_quadrature_that_gives_a_negative_eigenvalue_is_refused(tmp_path):
    """tanh's kernel of 30 points in d = 3 with 8 Gauss-Hermite nodes has λ_min < 0 (measured: about −1e-2): no
    such matrix is written."""
    np.save(tmp_path / "X.npy", _unit_rows(30, 3, seed=5))
    args = ["kernel", "--inputs", str(tmp_path / "X.npy"), "--activation", "tanh", "--device", "cpu"]
    line = _one_line_exit_2(CliRunner().invoke(app, [*args, "--nodes", "8", "--out", str(tmp_path / "K8.npy")]))
    assert line.startswith("error: --nodes: ") and not (tmp_path / "K8.npy").exists()
    res = CliRunner().invoke(app, [*args, "--nodes", "64", "--out", str(tmp_path / "K64.npy")])
    assert res.exit_code == 0 and np.linalg.eigvalsh(np.load(tmp_path / "K64.npy"))[0] > 0


# -------------------------------------------------------------------------------------------- plugins


@pytest.mark.parametrize("value, expected", [(".relative", "must be comma-separated module names"),
                                             ("two words", "must be comma-separated module names"),
                                             ("zeroloss_raising_plugin", "RuntimeError: plugin broken"),
                                             ("zeroloss_exiting_plugin", "SystemExit")])
def test_bad_extra_experiments_are_one_line(tmp_path, monkeypatch, value, expected):
    (tmp_path / "zeroloss_raising_plugin.py").write_text("raise RuntimeError('plugin broken')\n")
    (tmp_path / "zeroloss_exiting_plugin.py").write_text("import sys\nsys.exit(4)\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setenv("ZEROLOSS_EXTRA_EXPERIMENTS", value)
    for argv in (["experiments"], ["reproduce", "du2019", "--out", str(tmp_path / "rep")]):
        line = _one_line_exit_2(CliRunner().invoke(app, argv))
        assert line.startswith("error: ZEROLOSS_EXTRA_EXPERIMENTS: ") and expected in line
    assert not (tmp_path / "rep").exists()


# ------------------------------------------------------------------------------------------ ownership


def _fake_finished_run(runs: Path, name: str, spec: object) -> None:
    (runs / name).mkdir(parents=True)
    (runs / name / "spec.json").write_text(json.dumps(spec))
    (runs / name / "_SUCCESS").write_text("")


@pytest.mark.usefixtures("fake_registered")
@pytest.mark.parametrize("spec", [{}, {"experiment": "fake.decay", "spec": {"width": 1}}])
def test_a_fake_finished_run_does_not_get_a_users_folder_adopted(tmp_path, spec):
    """runs/ with one fake finished run (an empty spec, or a valid one under a name that is not its hash) next to a
    user's 12-hex folder: not zeroloss's, so the sweep is refused and the user's folder stays."""
    folder = tmp_path / "mine"
    _fake_finished_run(folder / "runs", "aaaaaaaaaaaa", spec)
    (folder / "runs" / "0123456789ab").mkdir()
    (folder / "runs" / "0123456789ab" / "events.log").write_text("keep")
    with pytest.raises(ZerolossInputError, match="did not create"):
        run_sweep(fake_experiment.EXPERIMENT, fake_experiment.specs(), folder, device="cpu", progress=False)
    assert (folder / "runs" / "0123456789ab" / "events.log").read_text() == "keep"
    assert not (folder / ".zeroloss").exists() and not (folder / ".lock").exists()


@pytest.mark.usefixtures("fake_registered")
def test_clean_stale_keeps_a_run_id_folder_holding_a_users_files(tmp_path):
    out = tmp_path / "sw"
    run_sweep(fake_experiment.EXPERIMENT, fake_experiment.specs(), out, device="cpu", progress=False)
    (out / "runs" / "0123456789ab").mkdir()
    (out / "runs" / "0123456789ab" / "notes.txt").write_text("keep")
    (out / "runs" / "ba9876543210").mkdir()  # a killed writer's leftover: only run files
    (out / "runs" / "ba9876543210" / "spec.json").write_text("{}")
    run_sweep(fake_experiment.EXPERIMENT, fake_experiment.specs(), out, device="cpu", progress=False)
    assert (out / "runs" / "0123456789ab" / "notes.txt").read_text() == "keep"
    assert not (out / "runs" / "ba9876543210").exists()


# ----------------------------------------------------------------------------------------- full disk


@pytest.mark.usefixtures("fake_registered")
@pytest.mark.parametrize("command", ["sweep", "reproduce"])
def test_a_full_disk_leaves_no_empty_folder(tmp_path, monkeypatch, command):
    (tmp_path / "s.yaml").write_text(f"experiment: {fake_experiment.NAME}\nbase: {{lr: 0.1}}\n"
                                     "grid: {width: [1]}\nseeds: 1\n")
    out = tmp_path / "new"

    def full(fd: int) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "fsync", full)
    argv = (["sweep", str(tmp_path / "s.yaml")] if command == "sweep" else ["reproduce", fake_experiment.PAPER])
    line = _one_line_exit_2(CliRunner().invoke(app, [*argv, "--out", str(out), "--device", "cpu"]))
    assert "No space left on device" in line
    assert not out.exists(), sorted(p.name for p in out.rglob("*"))


# ------------------------------------------------------------------------------------------ concurrency


@pytest.mark.usefixtures("fake_registered")
def test_a_second_reproduce_into_a_folder_being_written_is_refused(tmp_path):
    out = claim_folder(tmp_path / "rep", "reproduce")
    with sweep_lock(out):  # another reproduce (of any paper) holds the folder
        line = _one_line_exit_2(CliRunner().invoke(app, ["reproduce", fake_experiment.PAPER, "--out", str(out),
                                                         "--device", "cpu"]))
    assert "being written by another zeroloss process" in line
    assert not (out / fake_experiment.NAME).exists()


LOCAL = ("--device", "cpu", "--executor", "local")  # in this process: the test is about the report, not the executor


@pytest.mark.usefixtures("fake_registered")
def test_reproduce_into_a_folder_of_another_paper_keeps_its_experiments_in_the_report(tmp_path):
    out = tmp_path / "rep"
    res = CliRunner().invoke(app, ["reproduce", fake_experiment.PAPER, "--out", str(out), *LOCAL])
    assert res.exit_code == 0, res.output
    meta = json.loads((out / "reproduce.json").read_text())
    meta.update({"paper": "otherpaper", "papers": ["otherpaper"]})  # as if another paper had been reproduced here
    (out / "reproduce.json").write_text(json.dumps(meta))
    res = CliRunner().invoke(app, ["reproduce", fake_experiment.PAPER, "--out", str(out), *LOCAL])
    assert res.exit_code == 0, res.output
    meta = json.loads((out / "reproduce.json").read_text())
    assert meta["papers"] == sorted(["otherpaper", fake_experiment.PAPER]) and meta["experiments"] == [
        fake_experiment.NAME]


def test_overwrite_onto_a_folder_another_train_is_building_is_refused_at_once(tmp_path):
    out = tmp_path / "run"
    builder = tmp_path / ".run.0badc0de.tmp"  # another train's folder under construction: its writer holds the lock
    builder.mkdir()
    fd = os.open(builder, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        argv = ["train", "--n", "6", "--d", "4", "--width", "8", "--steps", "3", "--device", "cpu", "--out", str(out),
                "--overwrite"]
        line = _one_line_exit_2(CliRunner().invoke(app, argv))
        assert "being written by another zeroloss process" in line
        assert sorted(p.name for p in tmp_path.iterdir()) == [builder.name]
    finally:
        os.close(fd)


# ---------------------------------------------------------------------------------------- library misuse


class _Asserting(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.lin = torch.nn.Linear(3, 1).double()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        assert x.shape[1] == 99, "my model wants 99 features"
        return self.lin(x)


def test_the_users_own_errors_out_of_entk_and_diagnose_are_the_models():
    from zeroloss import diagnose, entk

    X, y = torch.randn(4, 3, dtype=torch.float64), torch.randn(4, dtype=torch.float64)
    with pytest.raises(ZerolossInputError, match=r"^model: the model raised AssertionError: my model wants 99"):
        entk(_Asserting(), X)
    with pytest.raises(ZerolossInputError, match=r"^model: the model raised AssertionError: my model wants 99"):
        diagnose(_Asserting(), X, y, steps=2, alpha=False, progress=False)


def test_entk_refuses_nan_inputs():
    from zeroloss import entk

    X = torch.randn(4, 3, dtype=torch.float64)
    X[1, 2] = float("nan")
    with pytest.raises(ZerolossInputError, match=r"^x1: contains NaN"):
        entk(torch.nn.Linear(3, 1).double(), X)


def test_train_gd_takes_probes_none_as_the_default_and_refuses_truthy_strings():
    from zeroloss.data import sphere_data, validate_inputs
    from zeroloss.nets import FullyConnected
    from zeroloss.train.gd import train_gd

    X, y = sphere_data(n=4, d=3, seed=0)
    net = FullyConnected(d=3, width=8, depth=2, activation="erf", members=1, dtype=torch.float64)
    run = train_gd(net, X, y, steps=2, probes=None, progress=False)
    assert run.steps == 2
    with pytest.raises(ZerolossInputError, match=r"^check_step: must be True or False, got 'no'"):
        train_gd(net, X, y, lr=0.1, steps=2, check_step="no", progress=False)
    with pytest.raises(ZerolossInputError, match=r"^normalise: must be True or False"):
        validate_inputs(X, normalise="no")


def test_diagnose_refuses_a_truthy_string_for_alpha():
    from zeroloss import diagnose

    net = torch.nn.Sequential(torch.nn.Linear(3, 8), torch.nn.Tanh(), torch.nn.Linear(8, 1)).double()
    X, y = torch.randn(4, 3, dtype=torch.float64), torch.randn(4, dtype=torch.float64)
    with pytest.raises(ZerolossInputError, match=r"^alpha: must be True or False"):
        diagnose(net, X, y, steps=2, alpha="no", progress=False)


def test_every_registered_run_passes_the_new_run_checks_and_extremes_do_not():
    """The whole-run checks (du2019 memory and inputs, marion2023 length and memory) accept every registered run at
    every scale, and refuse an ε that underflows h·ε and a neuron count no budget holds."""
    from zeroloss.papers.registry import load_experiments
    from zeroloss.sweep.checks import validate_runs

    registry = load_experiments()
    for experiment in registry.values():
        for specs in experiment.specs.values():
            validate_runs(experiment, specs)
    regimes = registry["marion2023.regimes"]
    base = dict(regimes.specs["tiny"][0])
    with pytest.raises(ZerolossInputError, match=r"^t_max: t_max/\(h·eps\) must give between 1 and 1e10 steps"):
        validate_runs(regimes, [{**base, "eps": 1e-320}])
    with pytest.raises(ZerolossInputError, match=r"^neurons: the run needs about"):
        validate_runs(regimes, [{**base, "neurons": 10**12}])
