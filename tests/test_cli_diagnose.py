"""``zeroloss diagnose``: the happy paths (one width, a width sweep, an .npz data set, a factory without arguments)
and every kind of bad input (one line ``error: <field>: ...``, exit 2, nothing written)."""

from __future__ import annotations

import ast
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

import zeroloss
from zeroloss.cli import app
from zeroloss.cli.diagnose import PAGE

runner = CliRunner()

MODEL_FILE = '''
import math
import torch
from torch import nn


class TwoLayer(nn.Module):
    def __init__(self, m, d=8):
        super().__init__()
        self.W = nn.Parameter(torch.randn(m, d))
        self.a = nn.Parameter(torch.randn(m))
        self.m = m

    def forward(self, x):
        return torch.tanh(x @ self.W.T) @ self.a / math.sqrt(self.m)


def make_net(width=64):
    return TwoLayer(width)


def frozen(width=64):
    return TwoLayer(width).requires_grad_(False)


def not_a_module(width=64):
    return "hello"


def broken(width=64):
    raise RuntimeError("out of luck")
'''


@pytest.fixture()
def model_file(tmp_path: Path) -> Path:
    path = tmp_path / "my_net.py"
    path.write_text(MODEL_FILE)
    return path


def invoke(*args: str):
    return runner.invoke(app, ["diagnose", "--threads", "1", *args])


def test_single_width_writes_runs_and_a_page(model_file, tmp_path):
    out = tmp_path / "out"
    result = invoke("--model", f"{model_file}:make_net", "--width", "128", "--n", "12", "--steps", "30",
                    "--probe-every", "10", "--out", str(out))
    assert result.exit_code == 0, result.output + result.stderr
    assert "lazy (kernel) regime" in result.output and f"page: {out / PAGE}" in result.output
    assert sorted(p.name for p in out.iterdir()) == [".zeroloss", PAGE, "runs", "sweep.json"]  # marker: ownership
    df = zeroloss.load(out)
    assert {"loss_real", "loss_linear", "loss_predicted", "entk_drift", "movement"} <= set(df["metric"])
    assert set(df["width"]) == {128} and set(df["model"]) == {f"{model_file}:make_net"}
    html = (out / PAGE).read_text()
    assert html.count("<svg") == 3 and "<script" not in html and "lazy" in html
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []  # no temporary left behind


def test_the_model_file_is_imported_without_writing_bytecode_beside_it(model_file, tmp_path, monkeypatch):
    # Python writes __pycache__ beside an imported file unless told not to (PYTHONDONTWRITEBYTECODE, which this
    # machine may set): with writing allowed, the user's folder still gets nothing but the --out folder
    monkeypatch.setattr(sys, "dont_write_bytecode", False)
    before = {p.name for p in tmp_path.iterdir()}
    result = invoke("--model", f"{model_file}:make_net", "--width", "16", "--n", "8", "--steps", "5",
                    "--out", str(tmp_path / "out"))
    assert result.exit_code == 0, result.output
    assert {p.name for p in tmp_path.iterdir()} - before == {"out"}
    assert sys.dont_write_bytecode is False, "the setting is restored"


def test_width_sweep_with_npz_data_and_test_set(model_file, tmp_path):
    g = np.random.default_rng(0)
    X = g.standard_normal((14, 8))
    X /= np.linalg.norm(X, axis=1, keepdims=True)
    data = tmp_path / "data.npz"
    np.savez(data, X=X[:10], y=np.sign(X[:10, 0]), X_test=X[10:], y_test=np.sign(X[10:, 0]))
    out = tmp_path / "sweep"
    result = invoke("--model", f"{model_file}:make_net", "--widths", "32,128", "--data", str(data), "--steps", "20",
                    "--probe-every", "10", "--out", str(out))
    assert result.exit_code == 0, result.output + result.stderr
    assert "width slopes" in result.output
    manifest = json.loads((out / "sweep.json").read_text())
    assert len(manifest["run_ids"]) == 2 and "slope_drift" in manifest["slopes"]
    df = zeroloss.load(out)
    assert set(df["width"]) == {32, 128} and "test_loss_predicted" in set(df["metric"])
    assert (out / PAGE).read_text().count("<svg") == 1 + 2 * 3  # the width figure and three per run


def test_factory_without_arguments_on_digits(model_file, tmp_path):
    out = tmp_path / "d"
    model = tmp_path / "digits_net.py"
    model.write_text(MODEL_FILE + "\n\ndef digits_net():\n    return TwoLayer(64, d=64)\n")
    result = invoke("--model", f"{model}:digits_net", "--data", "digits", "--n", "10", "--steps", "5",
                    "--no-alpha", "--out", str(out))
    assert result.exit_code == 0, result.output + result.stderr
    assert set(zeroloss.load(out)["data"]) == {"digits"}


def _npz(tmp_path: Path, **arrays) -> str:
    path = tmp_path / "bad.npz"
    np.savez(path, **arrays)
    return str(path)


BAD = [
    (lambda m, t: ["--model", f"{t / 'missing.py'}:make_net"], "--model", "no such file"),
    (lambda m, t: ["--model", str(m)], "--model", "must be FILE.py:FACTORY"),
    (lambda m, t: ["--model", f"{m}:nope"], "--model",
     "has no 'nope'; callables defined there: TwoLayer, broken, frozen, make_net, not_a_module"),
    (lambda m, t: ["--model", f"{m}:not_a_module", "--width", "8"], "--model",
     "my_net.py:not_a_module(8) must return"),
    (lambda m, t: ["--model", f"{m}:broken"], "--model", "my_net.py:broken() raised RuntimeError: out of luck"),
    (lambda m, t: ["--model", f"{m}:frozen"], "--model", "the model has no trainable parameter"),
    (lambda m, t: ["--model", f"{m}:make_net", "--data", _npz(t, X=np.ones((6, 8), dtype=np.int64), y=np.ones(6))],
     "--data", "integer inputs (torch.int64)"),
    (lambda m, t: ["--model", f"{m}:make_net", "--data", _npz(t, X=np.ones((6, 8)), y=np.ones(5))],
     "--data", "X has 6 samples but y has 5"),
    (lambda m, t: ["--model", f"{m}:make_net", "--data", _npz(t, X=np.ones((6, 5)), y=np.ones(6))],
     "--data", "the model cannot be applied to inputs of shape (6, 5)"),
    (lambda m, t: ["--model", f"{m}:make_net", "--data", _npz(t, X=np.ones((6, 8)), y=np.ones((6, 3)))],
     "--data", "must have shape (6,) or (6, 1)"),
    (lambda m, t: ["--model", f"{m}:make_net", "--data", _npz(t, X=np.ones((6, 8)))], "--data",
     "bad.npz must hold"),
    (lambda m, t: ["--model", f"{m}:make_net", "--data", str(t / "nothing.npz")], "--data", "no such file"),
    (lambda m, t: ["--model", f"{m}:make_net", "--data", "mnist"], "--data",
     "must be sphere, digits or a FILE.npz"),
    (lambda m, t: ["--model", f"{m}:make_net", "--width", "8", "--widths", "8,16"], "--widths", "give either"),
    (lambda m, t: ["--model", f"{m}:make_net", "--widths", "8,8"], "--widths", "a sweep needs at least two"),
    (lambda m, t: ["--model", f"{m}:make_net", "--lr", "-1"], "--lr", "must be auto or a positive number"),
    (lambda m, t: ["--model", f"{m}:make_net", "--optimizer", "sgd"], "--optimizer", "must be one of gd, adam"),
    (lambda m, t: ["--model", f"{m}:make_net", "--labels", "parity"], "--labels", "must be one of"),
]


@pytest.mark.parametrize(("args", "field", "message"), BAD)
def test_bad_input_is_one_line_exit_2_nothing_written(model_file, tmp_path, args, field, message):
    out = tmp_path / "out"
    argv = args(model_file, tmp_path)
    before = set(tmp_path.iterdir())
    result = invoke(*argv, "--steps", "3", "--out", str(out))
    lines = result.stderr.strip().splitlines()
    assert result.exit_code == 2, result.output + result.stderr
    assert len(lines) == 1 and lines[0].startswith(f"error: {field}: ") and message in lines[0], lines
    assert not out.exists() and set(tmp_path.iterdir()) == before


def test_import_failure_and_existing_out(tmp_path):
    bad = tmp_path / "bad.py"
    bad.write_text("import this_module_does_not_exist_anywhere\n")
    result = invoke("--model", f"{bad}:f", "--out", str(tmp_path / "o"))
    assert result.exit_code == 2
    assert result.stderr.startswith("error: --model: importing ") and "failed: ModuleNotFoundError" in result.stderr
    (tmp_path / "o").mkdir()  # a folder zeroloss did not make, not empty: refused before the model is imported
    (tmp_path / "o" / "notes.txt").write_text("mine")
    result = invoke("--model", f"{bad}:f", "--out", str(tmp_path / "o"))
    assert result.exit_code == 2 and result.stderr.startswith("error: --out:"), result.stderr
    assert [p.name for p in (tmp_path / "o").iterdir()] == ["notes.txt"]


def test_console_script_exit_status(model_file, tmp_path):
    proc = subprocess.run([sys.executable, "-m", "zeroloss", "diagnose", "--model", f"{model_file}:nope",
                           "--out", str(tmp_path / "o")], capture_output=True, text=True)
    assert proc.returncode == 2 and len(proc.stderr.strip().splitlines()) == 1, proc.stderr
    assert not (tmp_path / "o").exists()


def test_module_top_level_imports_are_light():
    """The CLI module imports typer and the standard library only at top level (torch loads inside the command)."""
    import zeroloss.cli.diagnose as mod

    tree = ast.parse(Path(mod.__file__).read_text())
    names = set()
    for node in tree.body:
        if isinstance(node, ast.Import):
            names |= {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            names.add((node.module or "").split(".")[0])
    assert names <= {"__future__", "importlib", "sys", "pathlib", "typing", "typer"}, names


def test_page_is_deterministic_and_self_contained():
    import torch

    from zeroloss.data import sphere_data
    from zeroloss.diagnosis import diagnose, diagnose_widths
    from zeroloss.diagnosis.page import render_page

    X, y = sphere_data(n=8, d=8, seed=0)
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Linear(8, 32), torch.nn.Tanh(), torch.nn.Linear(32, 1), torch.nn.Flatten(0))
    d = diagnose(net, X, y, steps=5, alpha=False, threads=1, progress=False)
    sweep = diagnose_widths(lambda m: torch.nn.Sequential(torch.nn.Linear(8, m), torch.nn.Tanh(),
                                                          torch.nn.Linear(m, 1), torch.nn.Flatten(0)),
                            [8, 16], X, y, steps=3, threads=1, progress=False)
    pages = [render_page("t", [("run", d)], sweep, {"steps": 5}) for _ in range(2)]
    assert pages[0] == pages[1]
    # nothing fetched at view time (the http:// strings in the SVGs are XML namespace names, not resources)
    assert "<script" not in pages[0] and "<link" not in pages[0] and not re.search(r'(src|href)="https?:', pages[0])
    ids = re.findall(r'\bid="([^"]+)"', pages[0])
    assert len(ids) == len(set(ids))  # figures never share an element id


def test_a_model_file_gets_the_same_module_name_in_every_process(model_file):
    # workers that unpickle the user's objects import the file under the driver's name: it must not depend on
    # Python's per-process string hashing (PYTHONHASHSEED), as hash() would
    code = ("from pathlib import Path; from zeroloss.usercode import user_module_name; "
            f"print(user_module_name(Path({str(model_file)!r})))")
    names = {subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                            env={**os.environ, "PYTHONHASHSEED": seed}).stdout.strip() for seed in ("1", "2")}
    from zeroloss.usercode import user_module_name

    assert names == {user_module_name(model_file)}
