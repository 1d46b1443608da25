"""Bad values fed to every command (issue 15.5, 15.7): one line ``error: <field>: ...`` on stderr, exit status 2,
and the working folder exactly as it was (no output, no temporary, no marker, no lock).

Each case starts from a tiny valid command line (so a value that slips through ends the test quickly, with exit 0)
and changes one thing. Commands run in-process through typer's CliRunner. A case whose fix belongs to another
branch is marked ``xfail(strict=True)`` with that branch named: it must fail today, and the mark must go when the
fix is merged.
"""

from __future__ import annotations

import os
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from fake_experiment import NAME, register_fake
from zeroloss.cli import app
from zeroloss.papers.base import REGISTRY

pytestmark = pytest.mark.usefixtures("fake_registered")

TRAIN = ["train", "--n", "6", "--d", "4", "--width", "8", "--steps", "3", "--device", "cpu", "--out", "{w}/run"]
GRAM = ["gram", "--inputs", "{w}/X.npy", "--out", "{w}/G.npy", "--width", "8", "--device", "cpu"]
KERNEL = ["kernel", "--inputs", "{w}/X.npy", "--out", "{w}/K.npy", "--device", "cpu"]
# certify needs linearly independent inputs (n ≤ d): its own 4 points in dimension 6
CERTIFY = ["certify", "--widths", "8", "--inputs", "{w}/X_indep.npy", "--labels", "{w}/y4.npy", "--radius", "0.5",
           "--samples", "2", "--descent-steps", "1", "--activation", "tanh"]
TWO = ["two-timescale", "--t-max", "0.002", "--eps", "1", "--h", "1e-3", "--logs", "2", "--out", "{w}/tt"]
SWEEP = ["sweep", "{w}/ok.yaml", "--out", "{w}/sw", "--device", "cpu"]
REPRODUCE = ["reproduce", "du2019", "--out", "{w}/rep", "--device", "cpu"]



def case(args: list[str], field: str, xfail: str | None = None, id: str | None = None):  # noqa: A002
    """One fuzz case: the command line and the field the error must name first: an option (``--width``, also
    matched as ``width``), a regular expression (``--(n|steps)``), or "" for any."""
    marks = [pytest.mark.xfail(strict=True, reason=xfail)] if xfail else []
    return pytest.param(args, field, marks=marks, id=id or " ".join(a for a in args[:1] + args[-2:]))


CASES = [
    # ---------------------------------------------------------------------------------------------- train
    *(case(TRAIN + [opt, value], opt) for opt, value in [
        ("--width", "0"), ("--width", "-3"), ("--depth", "0"), ("--n", "0"), ("--d", "0"), ("--members", "0"),
        ("--steps", "0"), ("--steps", "-1"), ("--probe-every", "-1"), ("--seed", "-1"), ("--seed", str(2**70)),
        ("--lr", "abc"), ("--net", "cnn"), ("--data", "nope"), ("--dtype", "float16"), ("--device", "tpu"),
        ("--max-bytes", "abc"), ("--steps", str(10**12))]),
    case(TRAIN + ["--max-bytes", "1K"], "--(n|steps|width)", id="train a 1 KiB budget"),
    case(TRAIN + ["--lr", "nan"], "lr"),
    case(TRAIN + ["--lr", "0"], "lr"),
    case(TRAIN + ["--lr", "-1"], "lr"),
    case(TRAIN + ["--lr", "inf"], "lr"),
    case(TRAIN + ["--lr", "0.1,0.2"], "lr", id="train lr per member, one member"),
    case(TRAIN + ["--activation", "nope"], "activation"),
    case(TRAIN + ["--labels", "nope"], "labels"),
    case(TRAIN + ["--net", "resnet", "--c-res", "2"], "c_res"),
    case(TRAIN + ["--data", "digits"], "--d", id="train digits with d=4"),
    case(TRAIN + ["--data", "patches"], "--data", id="train patches with fc"),
    case(TRAIN[:-1] + ["{w}/a_file"], "--out", id="train --out a file"),
    case(TRAIN[:-1] + ["{w}/a_file/run"], "--out", id="train --out inside a file"),
    case(TRAIN[:-1] + ["{w}/foreign"], "--out", id="train --out a foreign folder"),
    # ----------------------------------------------------------------------------------------------- gram
    *(case(GRAM + [opt, value], opt) for opt, value in [
        ("--width", "0"), ("--depth", "0"), ("--members", "0"), ("--layer", "7"), ("--layer", "0"),
        ("--layer", "foo"), ("--seed", "-1"), ("--seed", str(2**70)), ("--net", "cnn"), ("--activation", "nope"),
        ("--device", "tpu"), ("--max-bytes", "0")]),
    case(GRAM + ["--max-bytes", "1K"], "--inputs", id="gram a 1 KiB budget"),
    case(GRAM + ["--net", "resnet", "--c-res", "0"], "--c-res"),
    *(case(GRAM[:2] + [f"{{w}}/{name}"] + GRAM[3:], "--inputs", id=f"gram --inputs {name}") for name in [
        "missing.npy", "not_npy.npy", "X_nan.npy", "X_not_unit.npy", "X_parallel.npy", "X_text.npy", "X_empty.npy",
        "X3.npy", "a_dir"]),
    case(GRAM[:4] + ["{w}/a_dir"] + GRAM[5:], "--out", id="gram --out a folder"),
    case(GRAM[:4] + ["{w}/a_file"] + GRAM[5:], "--out", id="gram --out an existing file"),
    case(GRAM[:4] + ["{w}/a_file/G.npy"] + GRAM[5:], "--out", id="gram --out inside a file"),
    # --------------------------------------------------------------------------------------------- kernel
    *(case(KERNEL + [opt, value], opt) for opt, value in [
        ("--nodes", "0"), ("--nodes", "-5"), ("--depth", "0"), ("--kind", "nope"), ("--net", "nope"),
        ("--activation", "nope"), ("--device", "tpu"), ("--max-bytes", "abc")]),
    case(KERNEL + ["--max-bytes", "10"], "--inputs", id="kernel a 10-byte budget"),
    case(KERNEL + ["--net", "resnet", "--c-res", "1"], "--c-res"),
    case(KERNEL[:2] + ["{w}/X3.npy"] + KERNEL[3:] + ["--net", "conv-resnet", "--kernel-size", "2"], "--kernel-size"),
    *(case(KERNEL[:2] + [f"{{w}}/{name}"] + KERNEL[3:], "--inputs", id=f"kernel --inputs {name}") for name in [
        "missing.npy", "X_nan.npy", "X_not_unit.npy", "X_parallel.npy", "X_empty.npy", "X3.npy"]),
    case(KERNEL[:4] + ["{w}/a_dir"] + KERNEL[5:], "--out", id="kernel --out a folder"),
    case(KERNEL[:4] + ["{w}/a_file/K.npy"] + KERNEL[5:], "--out", id="kernel --out inside a file"),
    # -------------------------------------------------------------------------------------------- certify
    *(case(CERTIFY + [opt, value], opt) for opt, value in [
        ("--radius", "0"), ("--radius", "-1"), ("--radius", "nan"), ("--widths", "0"), ("--widths", "abc"),
        ("--init", "nope")]),
    case(CERTIFY + ["--radius", "1e-300"], "--radius"),
    case(CERTIFY + ["--samples", "-1"], "--samples"),
    case(CERTIFY + ["--descent-steps", "-1"], "--descent-steps"),
    case(CERTIFY + ["--seed", "-1"], "--seed"),
    case(CERTIFY + ["--seed", str(2**70)], "--seed"),
    case(CERTIFY + ["--activation", "nope"], "activation"),
    case(CERTIFY[:6] + ["{w}/y_short.npy"] + CERTIFY[7:], "--labels", id="certify labels of the wrong length"),
    case(CERTIFY[:4] + ["{w}/X_nan.npy"] + CERTIFY[5:], "--inputs", id="certify --inputs with NaN"),
    case(CERTIFY[:4] + ["{w}/missing.npy"] + CERTIFY[5:], "--inputs", id="certify --inputs missing"),
    # -------------------------------------------------------------------------------------- two-timescale
    *(case(TWO + [opt, value], opt) for opt, value in [
        ("--eps", "0"), ("--h", "-1"), ("--t-max", "nan"), ("--eta", "0"), ("--neurons", "0"), ("--repeats", "0"),
        ("--logs", "0"), ("--noise", "-1"), ("--seed", "-1"), ("--seed", str(2**70)), ("--target", "nope"),
        ("--derivative", "nope"), ("--max-bytes", "abc"), ("--logs", str(10**9))]),
    case(TWO[:-1] + ["{w}/a_file"], "--out", id="two-timescale --out a file"),
    case(TWO[:-1] + ["{w}/foreign"], "--out", id="two-timescale --out a foreign folder"),
    # ---------------------------------------------------------------------------------------------- sweep
    *(case(["sweep", f"{{w}}/{name}.yaml", "--out", "{w}/sw", "--device", "cpu"], field, id=f"sweep {name}")
      for name, field in [("missing", "FILE"), ("latin1", "FILE"), ("date", "base.t"),
                          ("duplicate", ".*duplicate.yaml"), ("bomb", ".*bomb.yaml"), ("overlap", "grid.net.width"),
                          ("nan_lr", "lr"),
                          ("width0", "width"), ("billion", "seeds"), ("not_a_mapping", "sweep"),
                          ("unknown_key", "extra"), ("unknown_experiment", "experiment"), ("tab", ".*tab.yaml")]),
    *(case(SWEEP + [opt, value], opt) for opt, value in [
        ("--executor", "nope"), ("--workers", "0"), ("--address", "127.0.0.1:1"), ("--device", "tpu"),
        ("--set", "oops"), ("--max-bytes", "abc")]),
    case(SWEEP[:3] + ["{w}/a_file"] + SWEEP[4:], "--out", id="sweep --out a file"),
    case(SWEEP[:3] + ["{w}/foreign"] + SWEEP[4:], "--out", id="sweep --out a foreign folder"),
    # ------------------------------------------------------------------------------------------ reproduce
    case(["reproduce", "nopaper", "--out", "{w}/rep"], "paper"),
    *(case(REPRODUCE + [opt, value], opt) for opt, value in [
        ("--scale", "huge"), ("--executor", "nope"), ("--workers", "0"), ("--address", "127.0.0.1:1"),
        ("--device", "tpu")]),
    case(REPRODUCE[:3] + ["{w}/a_file"] + REPRODUCE[4:], "--out", id="reproduce --out a file"),
    case(REPRODUCE[:3] + ["{w}/foreign"] + REPRODUCE[4:], "--out", id="reproduce --out a foreign folder"),
    # --------------------------------------------------------------------------------------------- report
    case(["report", "{w}/missing"], "", id="report a missing folder"),
    case(["report", "{w}/a_file"], "", id="report a file"),
    case(["report", "{w}/a_dir"], "", id="report an empty folder"),
    case(["report", "{w}/foreign"], "", id="report a foreign folder"),
    case(["report", "{w}/corrupt"], "", id="report a corrupt run"),
]


def _unit_rows(n: int, d: int, seed: int = 0) -> np.ndarray:
    X = np.random.default_rng(seed).standard_normal((n, d))
    return X / np.linalg.norm(X, axis=1, keepdims=True)


SWEEP_FILES = {
    "ok": "experiment: fake.decay\nbase: {lr: 0.1}\ngrid: {width: [1]}\nseeds: 1\n",
    "date": "experiment: fake.decay\nbase: {lr: 0.1, t: 2001-12-14}\ngrid: {width: [1]}\n",
    "duplicate": "experiment: fake.decay\nbase: {lr: 0.1, lr: 0.2}\ngrid: {width: [1]}\n",
    "bomb": "experiment: fake.decay\nbase:\n  lr: 0.1\n  l0: &l0 [x, x, x, x, x, x, x, x, x]\n"
            + "".join(f"  l{k}: &l{k} [{', '.join([f'*l{k - 1}'] * 9)}]\n" for k in range(1, 9)),
    "overlap": "experiment: fake.decay\nbase: {lr: 0.1, width: 1, net: {width: 8}}\ngrid: {net.width: [1, 2]}\n",
    "nan_lr": "experiment: fake.decay\nbase: {lr: .nan}\ngrid: {width: [1]}\nseeds: 1\n",
    "width0": "experiment: du2019.kernel\nbase: {net: fc, depth: 2, n: 6, d: 4, activation: softplus,"
              " labels: random, data_seed: 0, dtype: float64, run_factor: 2.0, max_steps: 10, probes: [loss]}\n"
              "grid: {width: [0]}\nseeds: 1\n",
    "billion": "experiment: fake.decay\nbase: {lr: 0.1, width: 1}\nseeds: 1000000000\n",
    "not_a_mapping": "- 1\n- 2\n",
    "unknown_key": "experiment: fake.decay\nbase: {lr: 0.1}\ngrid: {width: [1]}\nextra: 1\n",
    "unknown_experiment": "experiment: nope.nope\nbase: {lr: 0.1}\n",
    "tab": "experiment: fake.decay\nbase:\n\tlr: 0.1\n",
}


@pytest.fixture(scope="module")
def workspace(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Valid inputs, bad inputs, a file, an empty folder, a foreign folder and a corrupt zeroloss run — made once:
    every case checks that it leaves the folder exactly as it found it."""
    w = tmp_path_factory.mktemp("fuzz") / "w"
    w.mkdir()
    X = _unit_rows(6, 4)
    np.save(w / "X.npy", X)
    np.save(w / "y.npy", np.linspace(-1, 1, 6))
    np.save(w / "y_short.npy", np.linspace(-1, 1, 5))
    np.save(w / "X_indep.npy", _unit_rows(4, 6))
    np.save(w / "y4.npy", np.linspace(-1, 1, 4))
    X3 = np.random.default_rng(1).standard_normal((6, 2, 5))
    np.save(w / "X3.npy", X3 / np.linalg.norm(X3.reshape(6, -1), axis=1)[:, None, None])
    np.save(w / "X_nan.npy", np.where(np.arange(24).reshape(6, 4) == 5, np.nan, X))
    np.save(w / "X_not_unit.npy", 2 * X)
    np.save(w / "X_parallel.npy", np.vstack([X, -X[:1]]))
    np.save(w / "X_text.npy", np.array([["a", "b"], ["c", "d"]]))
    np.save(w / "X_empty.npy", np.zeros((0, 4)))
    (w / "not_npy.npy").write_text("not a numpy file")
    (w / "a_file").write_text("keep me")
    (w / "a_dir").mkdir()
    (w / "foreign").mkdir()
    (w / "foreign" / "runs").mkdir()
    (w / "foreign" / "runs" / "exp1").mkdir()
    (w / "foreign" / "runs" / "exp1" / "events.log").write_text("keep")
    (w / "foreign" / "report.html").write_text("<p>mine</p>")
    for name, text in SWEEP_FILES.items():
        (w / f"{name}.yaml").write_text(text)
    (w / "latin1.yaml").write_bytes("experiment: fake.decay\ndescription: caf\u00e9\n".encode("latin-1"))
    corrupt = w / "corrupt"
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("ZEROLOSS_EXTRA_EXPERIMENTS", "fake_experiment_plugin")
        register_fake()
        try:
            res = CliRunner().invoke(app, ["sweep", str(w / "ok.yaml"), "--out", str(corrupt), "--device", "cpu"])
        finally:
            REGISTRY.pop(NAME, None)
    assert res.exit_code == 0, res.output
    for summary in corrupt.glob("runs/*/summary.json"):
        summary.write_text("{not json")
    return w


def _tree(root: Path) -> dict[str, tuple[int, int, int]]:
    """Every entry under ``root``: relative path → (mode, size, mtime_ns)."""
    out = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            path = Path(dirpath) / name
            st = path.lstat()
            out[str(path.relative_to(root))] = (st.st_mode, st.st_size if path.is_file() else 0, st.st_mtime_ns)
    return out


@pytest.mark.parametrize("base", [TRAIN, GRAM, KERNEL, CERTIFY, TWO, SWEEP],
                         ids=["train", "gram", "kernel", "certify", "two-timescale", "sweep"])
def test_every_base_command_line_is_valid(workspace, tmp_path, base):
    """The premise of every case below: unchanged, the base command succeeds (so a case that exits 2 does so because
    of the one thing it changed). Run on a copy of the workspace, which the cases need unchanged. reproduce's base
    is left out: it would train du2019's tiny scale (minutes); its cases only change its arguments."""
    copy = tmp_path / "w"
    shutil.copytree(workspace, copy)
    res = CliRunner().invoke(app, [a.replace("{w}", str(copy)) for a in base])
    assert res.exit_code == 0, f"exit {res.exit_code}: {res.output[-2000:]} {res.exception!r}"


@pytest.mark.parametrize("args, field", CASES)
def test_bad_value_is_one_line_exit_2_and_nothing_changes(workspace, args, field):
    argv = [a.replace("{w}", str(workspace)) for a in args]
    before = _tree(workspace)
    res = CliRunner().invoke(app, argv)
    assert res.exit_code == 2, f"exit {res.exit_code}: {res.output[-2000:]} {res.exception!r}"
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), res.stderr[-2000:]
    if field:
        bare = field[2:] if field.startswith("--") else field
        assert re.match(rf"error: (--)?{bare}:", lines[0]), lines[0]
    assert _tree(workspace) == before, "the working folder changed"


POSITIVE_INT_OPTIONS = [(TRAIN, "--width"), (TRAIN, "--depth"), (TRAIN, "--n"), (TRAIN, "--members"),
                        (TRAIN, "--steps"), (GRAM, "--width"), (GRAM, "--depth"), (GRAM, "--members"),
                        (KERNEL, "--depth"), (KERNEL, "--nodes"), (TWO, "--neurons"), (TWO, "--repeats"),
                        (TWO, "--logs"), (SWEEP, "--workers")]


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(target=st.sampled_from(POSITIVE_INT_OPTIONS), value=st.integers(max_value=0) | st.integers(min_value=2**64))
def test_any_non_positive_or_huge_integer_option_is_refused(workspace, target, value):
    base, option = target
    argv = [a.replace("{w}", str(workspace)) for a in base] + [option, str(value)]
    before = _tree(workspace)
    res = CliRunner().invoke(app, argv)
    assert res.exit_code == 2, f"{option} {value}: exit {res.exit_code}: {res.output[-1500:]} {res.exception!r}"
    assert len(res.stderr.strip().splitlines()) == 1 and res.stderr.startswith("error: "), res.stderr[-1500:]
    assert _tree(workspace) == before
