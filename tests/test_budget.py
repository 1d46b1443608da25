"""The memory budget (issue 15.4): sizes parsed, the budget's sources in order, and every entry point refusing an
impossible size with one line naming the size and the setting — before it allocates (the commands: before they
even read their inputs)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from zeroloss.budget import (
    ENV_VAR,
    available_memory,
    check_memory,
    format_bytes,
    npy_shape,
    parse_size,
    resolve_budget,
    train_memory_bytes,
)
from zeroloss.cli import app
from zeroloss.data import sphere_data
from zeroloss.errors import ZerolossInputError
from zeroloss.kernels.empirical import gram, gram_memory_bytes
from zeroloss.kernels.limit import lambda0, limit_kernel, limit_kernel_memory_bytes
from zeroloss.nets import FullyConnected
from zeroloss.spectra import eigenvalues, eigenvalues_memory_bytes, spectrum


@pytest.mark.parametrize("text, expected", [("123", 123), (4096, 4096), ("2e9", 2 * 10**9), ("500M", 500 * 2**20),
                                            ("8GiB", 8 * 2**30), ("1.5 T", int(1.5 * 2**40)), ("3KB", 3000),
                                            ("2gb", 2 * 10**9)])
def test_sizes_are_read_with_units(text, expected):
    assert parse_size(text) == expected


@pytest.mark.parametrize("text", ["", "abc", "-5", "0", "0.5", "1.5XB", "nan", "inf", True, "1e400"])
def test_bad_sizes_are_one_line_errors_naming_the_flag(text):
    with pytest.raises(ZerolossInputError, match=r"^--max-bytes: must be a positive size in bytes"):
        parse_size(text)


def test_the_budget_comes_from_the_call_then_the_environment_then_half_the_available_memory(monkeypatch):
    monkeypatch.delenv(ENV_VAR, raising=False)
    default = resolve_budget()
    # the default is half of MemAvailable read now (other processes move it a little between two reads)
    assert default.source.startswith("half of the") and abs(default.bytes - available_memory() / 2) < 2**28
    monkeypatch.setenv(ENV_VAR, "3GiB")
    assert (resolve_budget().bytes, resolve_budget().source) == (3 * 2**30, f"from {ENV_VAR}")
    assert resolve_budget("1MiB", "--max-bytes").bytes == 2**20, "an explicit value wins over the environment"
    monkeypatch.setenv(ENV_VAR, "lots")
    with pytest.raises(ZerolossInputError, match=rf"^{ENV_VAR}: must be a positive size"):
        resolve_budget()


def test_a_refusal_is_one_line_with_the_size_the_budget_and_the_way_out():
    check_memory(100, 100, field="n", what="x")  # at the budget: accepted
    with pytest.raises(ZerolossInputError) as info:
        check_memory(3 * 2**30, "1GiB", field="--inputs", what="a 20000 × 20000 Gram matrix", hint="use fewer inputs")
    assert str(info.value) == ("--inputs: a 20000 × 20000 Gram matrix needs about 3.0 GiB, more than the memory "
                               "budget of 1.0 GiB (set by --max-bytes); use fewer inputs, or raise it with "
                               "--max-bytes")
    assert format_bytes(512) == "512 B" and format_bytes(1.5 * 2**40) == "1.5 TiB"


def test_library_entry_points_refuse_an_impossible_n_before_allocating():
    X, _ = sphere_data(n=200_000, d=4, seed=0)  # 6.4 MB of inputs; every n × n result would be 320 GB
    net = FullyConnected(d=4, width=8, depth=2, dtype=torch.float64)
    need = gram_memory_bytes(net, 200_000)
    with pytest.raises(ZerolossInputError, match=rf"^X: .* needs about {format_bytes(need)}, more than the "
                                                 r"memory budget of 64\.0 GiB \(set by memory_budget\)"):
        gram(net, X, memory_budget="64GiB")
    need = limit_kernel_memory_bytes(200_000, 2)
    with pytest.raises(ZerolossInputError, match=rf"^X: the 200000 × 200000 limit kernel needs about "
                                                 rf"{format_bytes(need)}"):
        limit_kernel(X, memory_budget="64GiB")
    with pytest.raises(ZerolossInputError, match=r"^X: the 200000 × 200000 limit kernel"):
        lambda0(X, memory_budget="64GiB")


def test_the_environment_variable_bounds_library_calls(monkeypatch):
    X, _ = sphere_data(n=50, d=4, seed=0)
    net = FullyConnected(d=4, width=8, depth=2, dtype=torch.float64)
    assert gram(net, X).shape == (1, 50, 50)
    monkeypatch.setenv(ENV_VAR, "1KiB")
    with pytest.raises(ZerolossInputError, match=rf"\(from {ENV_VAR}\); use fewer inputs, or raise it with "
                                                 r"memory_budget$"):
        gram(net, X)


def test_spectra_state_and_check_their_memory():
    G = torch.eye(30, dtype=torch.float64).expand(2, 30, 30)
    assert eigenvalues_memory_bytes(30, 2) == 3 * 8 * 2 * 900
    assert eigenvalues(G, memory_budget=eigenvalues_memory_bytes(30, 2)).shape == (2, 30)
    with pytest.raises(ZerolossInputError, match=r"^G: the spectrum of 2 matrix\(es\) of size 30 × 30 needs"):
        eigenvalues(G, memory_budget=eigenvalues_memory_bytes(30, 2) - 1)
    with pytest.raises(ZerolossInputError, match=r"^G: the spectrum of 1 matrix"):
        spectrum(G[0], memory_budget=100)


def test_the_parallel_rows_check_works_in_bounded_blocks(monkeypatch):
    import zeroloss.data as data

    X, _ = sphere_data(n=10, d=3, seed=0)
    X[7] = -X[2]  # antiparallel rows in different blocks
    monkeypatch.setattr(data, "PARALLEL_BLOCK_BYTES", 8 * 10 * 3)  # blocks of 3 rows
    with pytest.raises(ZerolossInputError, match=r"rows 2 and 7 are parallel \(antiparallel"):
        data.validate_inputs(X)
    # at n = 200 000 a block holds 41 rows: 66 MB of cosines, not the 6.5 GB of a fixed 4096-row block
    assert max(1, min(4096, data.PARALLEL_BLOCK_BYTES // (8 * 200_000))) * 200_000 * 8 <= 1.05 * 64 * 2**20


def test_npy_header_gives_the_shape_without_reading_the_data(tmp_path):
    path = tmp_path / "X.npy"
    np.save(path, np.zeros((7, 3, 2), dtype=np.float32))
    assert npy_shape(path) == ((7, 3, 2), 4)
    (tmp_path / "bad.npy").write_bytes(b"not numpy")
    assert npy_shape(tmp_path / "bad.npy") is None


@pytest.fixture
def huge_inputs(tmp_path):
    """A valid (200 000, 4) unit-norm .npy file: every n × n output would be 320 GB."""
    X, _ = sphere_data(n=200_000, d=4, seed=0)
    path = tmp_path / "X.npy"
    np.save(path, X.numpy())
    return path


@pytest.mark.parametrize("command", ["gram", "kernel"])
def test_commands_refuse_from_the_header_before_reading_the_inputs(command, huge_inputs, tmp_path, monkeypatch):
    import zeroloss.cli.gram
    import zeroloss.cli.kernel

    def must_not_load(*args, **kwargs):
        raise AssertionError("the inputs were read before the size was checked")

    monkeypatch.setattr(getattr(zeroloss.cli, command), "load_inputs", must_not_load)
    out = tmp_path / "sub" / "out.npy"
    res = CliRunner().invoke(app, [command, "--inputs", str(huge_inputs), "--out", str(out), "--max-bytes", "64GiB",
                                   "--device", "cpu"])
    assert res.exit_code == 2, res.output
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: --inputs: ") and "200000" in lines[0]
    assert "more than the memory budget of 64.0 GiB (set by --max-bytes)" in lines[0]
    assert not (tmp_path / "sub").exists(), "nothing created"


@pytest.mark.parametrize("args, field", [
    (["train", "--steps", str(10**12)], "--steps"),
    (["train", "--n", "200000"], "--n"),
    (["train", "--width", "100000", "--depth", "3"], "--width"),
    (["two-timescale", "--logs", str(10**9), "--t-max", "10"], "--logs"),
    (["two-timescale", "--repeats", str(10**8)], "--repeats"),
])
def test_train_and_two_timescale_refuse_impossible_sizes_before_building_anything(args, field, tmp_path):
    out = tmp_path / "run"
    res = CliRunner().invoke(app, [*args, "--out", str(out), "--max-bytes", "64GiB"])
    assert res.exit_code == 2, res.output
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"error: {field}: ") and "--max-bytes" in lines[0], lines
    assert not out.exists()


def test_train_statement_grows_with_steps_and_n_and_accepts_the_defaults():
    base = dict(net="fc", n=32, width=512, depth=2, members=1, steps=500, probe_every=5, d=16)
    small = train_memory_bytes(**base)
    assert small < 2**27, "the default train command is well under any budget"
    assert train_memory_bytes(**{**base, "steps": 10**12}) > 10**14
    assert train_memory_bytes(**{**base, "n": 200_000}) > 8 * 200_000**2
