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
DIAGNOSE = ["diagnose", "--model", "{w}/models.py:make", "--n", "6", "--d", "3", "--steps", "2", "--no-alpha",
            "--out", "{w}/diag"]



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
    # ------------------------------------------------------------------ issue 19: inputs, sizes, hangs, models
    *(case(GRAM[:2] + [f"{{w}}/{name}"] + GRAM[3:], "--inputs", id=f"gram --inputs {name}") for name in [
        "fifo.npy", "pickled.npy", "truncated.npy", "X_complex.npy", "corrupt.npz", "two_arrays.npz"]),
    case(GRAM[:2] + ["{w}/huge_header.npz"] + GRAM[3:] + ["--max-bytes", "1G"], "--inputs",
         id="gram an .npz whose X states 50000 x 10000: refused from its header"),
    case(KERNEL[:2] + ["{w}/fifo.npy"] + KERNEL[3:], "--inputs", id="kernel --inputs a FIFO"),
    case(CERTIFY[:4] + ["{w}/fifo.npy"] + CERTIFY[5:], "--inputs", id="certify --inputs a FIFO"),
    case(CERTIFY[:6] + ["{w}/pickled.npy"] + CERTIFY[7:], "--labels", id="certify --labels pickled"),
    case(GRAM + ["--members", "1000000", "--width", "512"], "--members", id="gram a million members"),
    case(GRAM + ["--depth", "1000000"], "--depth", id="gram depth 1e6"),
    case(TRAIN + ["--members", "4294967296"], "--members"),
    case(TRAIN + ["--d", "1000000000"], "--d"),
    case(TRAIN[:-2] + ["--net", "conv-resnet", "--data", "patches", "--channels", "100000", "--width", "512",
                       "--n", "32"] + TRAIN[-2:],
         "--channels", id="train conv-resnet --channels 100000"),
    case(TRAIN + ["--depth", "1000000"], "--depth"),
    case(TRAIN + ["--d", "1"], "--d", id="train d=1: every two inputs parallel"),
    case(TRAIN + ["--width", "abc"], "--width", id="train --width abc: a parse error in one line"),
    case(TRAIN + ["--no-such-option", "1"], "--no-such-option", id="train an unknown option in one line"),
    case(KERNEL + ["--depth", "1000000"], "--depth"),
    case(KERNEL + ["--nodes", "1"], "--nodes"),
    case(KERNEL[:2] + ["{w}/X3.npy"] + KERNEL[3:] + ["--net", "conv-resnet", "--kernel-size", "1000000001"],
         "--kernel-size", id="kernel --kernel-size 1000000001 on 5 positions"),
    case(CERTIFY + ["--samples", str(10**12)], "--samples"),
    case(CERTIFY[:2] + [str(10**20)] + CERTIFY[3:], "--widths", id="certify --widths 1e20"),
    case(CERTIFY + ["--descent-steps", str(10**12)], "--descent-steps"),
    case(CERTIFY + ["--samples", "1e12"], "--samples", id="certify --samples 1e12: a parse error in one line"),
    case(TWO + ["--eps", "1e-320"], "--t-max", id="two-timescale --eps 1e-320"),
    *(case(["sweep", f"{{w}}/{name}.yaml", "--out", "{w}/sw", "--device", "cpu"], field, id=f"sweep {name}")
      for name, field in [("du_huge_width", "width"), ("du_conv_in_kernel", "net"), ("du_d1", "d"),
                          ("du_grid_duplicate", "grid.width"), ("deep_key", "base")]),
    case(SWEEP + ["--set", "base." + ".".join(["a"] * 3000) + "=1"], "--set", id="sweep a 3000-part --set key"),
    case(SWEEP + ["--executor", "ray", "--address", "not-an-address:abc"], "--address",
         id="sweep a malformed ray address"),
    case(SWEEP + ["--executor", "ray", "--address", "127.0.0.1:1"], "--address",
         id="sweep a ray address where nothing listens"),
    *(case(DIAGNOSE[:2] + [f"{{w}}/models.py:{factory}"] + DIAGNOSE[3:], "--model", id=f"diagnose model {factory}")
      for factory in ("raises_assertion", "raises_attribute", "nan_output", "inf_output", "exits_in_forward",
                      "meta_params", "exits_in_factory")),
    case(DIAGNOSE[:2] + ["{w}/exits_on_import.py:make"] + DIAGNOSE[3:], "--model", id="diagnose model file exits"),
    case(DIAGNOSE + ["--n", str(10**9)], "--n"),
    case(DIAGNOSE + ["--steps", str(10**12)], "--steps"),
    case(DIAGNOSE + ["--data", "{w}/corrupt.npz"], "--data"),
    case(DIAGNOSE + ["--data", "{w}/huge_header.npz", "--max-bytes", "1G"], "--data",
         id="diagnose an .npz whose X states 50000 x 10000"),
    case(DIAGNOSE + ["--data", "{w}/fifo.npy"], "--data", id="diagnose --data a FIFO"),
]


def _unit_rows(n: int, d: int, seed: int = 0) -> np.ndarray:
    X = np.random.default_rng(seed).standard_normal((n, d))
    return X / np.linalg.norm(X, axis=1, keepdims=True)


#: A du2019.kernel run (every key its registered runs set), with ``net`` and more keys to fill in.
DU_BASE = ("experiment: du2019.kernel\nbase: {{net: {net}, depth: 2, n: 6, activation: softplus, labels: random, "
           "data_seed: 0, dtype: float64, run_factor: 2.0, max_steps: 10, probes: [loss], limit: false, "
           "{extra}}}\nseeds: 1\n")

SWEEP_FILES = {
    "ok": "experiment: fake.decay\nbase: {lr: 0.1}\ngrid: {width: [1]}\nseeds: 1\n",
    "date": "experiment: fake.decay\nbase: {lr: 0.1, t: 2001-12-14}\ngrid: {width: [1]}\n",
    "duplicate": "experiment: fake.decay\nbase: {lr: 0.1, lr: 0.2}\ngrid: {width: [1]}\n",
    "bomb": "experiment: fake.decay\nbase:\n  lr: 0.1\n  l0: &l0 [x, x, x, x, x, x, x, x, x]\n"
            + "".join(f"  l{k}: &l{k} [{', '.join([f'*l{k - 1}'] * 9)}]\n" for k in range(1, 9)),
    "overlap": "experiment: fake.decay\nbase: {lr: 0.1, width: 1, net: {width: 8}}\ngrid: {net.width: [1, 2]}\n",
    "nan_lr": "experiment: fake.decay\nbase: {lr: .nan}\ngrid: {width: [1]}\nseeds: 1\n",
    "width0": "experiment: du2019.kernel\nbase: {net: fc, depth: 2, n: 6, d: 4, activation: softplus,"
              " labels: random, data_seed: 0, dtype: float64, run_factor: 2.0, max_steps: 10, probes: [loss],"
              " limit: false}\n"
              "grid: {width: [0]}\nseeds: 1\n",
    "billion": "experiment: fake.decay\nbase: {lr: 0.1, width: 1}\nseeds: 1000000000\n",
    "not_a_mapping": "- 1\n- 2\n",
    "unknown_key": "experiment: fake.decay\nbase: {lr: 0.1}\ngrid: {width: [1]}\nextra: 1\n",
    "unknown_experiment": "experiment: nope.nope\nbase: {lr: 0.1}\n",
    "tab": "experiment: fake.decay\nbase:\n\tlr: 0.1\n",
    "du_huge_width": DU_BASE.format(net="fc", extra="d: 4") + "grid: {width: [100000000000000000000000000000]}\n",
    "du_conv_in_kernel": DU_BASE.format(net="conv-resnet", extra="width: 8, d: 4"),
    "du_d1": DU_BASE.format(net="fc", extra="d: 1, width: 8"),
    "du_grid_duplicate": DU_BASE.format(net="fc", extra="d: 4") + "grid: {width: [16, 16]}\n",
    "deep_key": "experiment: fake.decay\nbase: {lr: 0.1, width: 1, " + ".".join(["k"] * 40) + ": 1}\n",
}

#: Models for ``diagnose --model``: each factory fails in one way (issue 19.3).
MODELS = """
import sys
import torch
from torch import nn


def make():
    return nn.Sequential(nn.Linear(3, 16), nn.Tanh(), nn.Linear(16, 1)).double()


class Failing(nn.Module):
    def __init__(self, how):
        super().__init__()
        self.how = how
        self.lin = nn.Linear(3, 1).double()

    def forward(self, x):
        if self.how == "assert":
            assert x.shape[1] == 99, "this model expects 99 features"
        if self.how == "attribute":
            return self.no_such_layer(x)
        if self.how == "exit":
            sys.exit(3)
        return self.lin(x) * {"nan": float("nan"), "inf": float("inf")}[self.how]


def raises_assertion():
    return Failing("assert")


def raises_attribute():
    return Failing("attribute")


def nan_output():
    return Failing("nan")


def inf_output():
    return Failing("inf")


def exits_in_forward():
    return Failing("exit")


def meta_params():
    with torch.device("meta"):
        return nn.Sequential(nn.Linear(3, 4), nn.Tanh(), nn.Linear(4, 1))


def exits_in_factory():
    sys.exit(0)
"""


def _npz_with_stated_shape(path: Path, shape: tuple[int, ...]) -> None:
    """An .npz whose member X.npy has a header stating ``shape`` (float64) and a few bytes of data: loading it would
    ask for the stated size, so only a check of the header before decompression refuses it cheaply."""
    import io
    import zipfile

    header = io.BytesIO()
    np.lib.format.write_array_header_1_0(header, {"descr": "<f8", "fortran_order": False, "shape": shape})
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("X.npy", header.getvalue() + bytes(64))
        zf.writestr("y.npy", _npy_bytes(np.zeros(shape[0])))


def _npy_bytes(array: np.ndarray) -> bytes:
    import io

    buffer = io.BytesIO()
    np.save(buffer, array)
    return buffer.getvalue()


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
    os.mkfifo(w / "fifo.npy")  # reading it would block forever: refused before it is opened
    np.save(w / "pickled.npy", np.array([{"a": 1}, None], dtype=object), allow_pickle=True)
    (w / "truncated.npy").write_bytes(_npy_bytes(X)[:-40])
    np.save(w / "X_complex.npy", X.astype(np.complex128))
    (w / "corrupt.npz").write_bytes(b"PK\x03\x04" + bytes(100))
    np.savez(w / "two_arrays.npz", A=X, B=X)
    _npz_with_stated_shape(w / "huge_header.npz", (50_000, 10_000))
    (w / "models.py").write_text(MODELS)
    (w / "exits_on_import.py").write_text("import sys\nsys.exit(0)\n")
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


@pytest.mark.parametrize("base", [TRAIN, GRAM, KERNEL, CERTIFY, TWO, SWEEP, DIAGNOSE],
                         ids=["train", "gram", "kernel", "certify", "two-timescale", "sweep", "diagnose"])
def test_every_base_command_line_is_valid(workspace, tmp_path, base):
    """The premise of every case below: unchanged, the base command succeeds (so a case that exits 2 does so because
    of the one thing it changed). Run on a copy of the workspace, which the cases need unchanged. reproduce's base
    is left out: it would train du2019's tiny scale (minutes); its cases only change its arguments."""
    copy = tmp_path / "w"
    shutil.copytree(workspace, copy, ignore=lambda folder, names: [n for n in names if n == "fifo.npy"])
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
