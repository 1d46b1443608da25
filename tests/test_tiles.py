"""Kernel jobs (issue 22): tiles equal the in-memory kernels, resume and refusals, reading, streaming solves.

Tolerances: a tile and the in-memory kernel are the same arithmetic on different groupings of the same inputs
(the in-memory limit kernel runs its recursion on row blocks of its own size, the in-memory Gram sums per-layer
products over all n samples at once), so they agree to a few float64 round-offs of the kernel's scale
(rtol 1e-12). Jobs of the same tile size on the same device are compared bit for bit.
"""

from __future__ import annotations

import json
import os

import numpy as np
import pytest
import torch
from torch import nn

import zeroloss
from zeroloss.data import patch_data, sphere_data
from zeroloss.errors import ZerolossInputError
from zeroloss.nets import ConvResNet, FullyConnected
from zeroloss.store import sweep_lock
from zeroloss.tiles import TilePlan, kernel_job, open_kernel, solve
from zeroloss.tiles.kinds import KINDS, KernelSpec, compute_tile, prepare_spec, register_kind

RTOL = 1e-12
LIMIT = {"net": "fc", "depth": 2, "activation": "erf", "kind": "ntk"}


def _close(a, b, rtol=RTOL):
    a, b = np.asarray(a), np.asarray(b)
    assert a.shape == b.shape
    assert np.abs(a - b).max() <= rtol * np.abs(b).max(), np.abs(a - b).max()


def test_gram_tiles_assemble_the_lab_nets_gram(tmp_path):
    X, _ = sphere_data(n=23, d=5, seed=0)
    kernel_job(X, "gram", params={"net": "fc", "width": 32, "depth": 3, "seed": 4}, out=tmp_path / "G.zarr",
               block=7, progress=False)
    net = FullyConnected(d=5, width=32, depth=3, members=1, seed=4, dtype=torch.float64)
    _close(open_kernel(tmp_path / "G.zarr").numpy(), zeroloss.gram(net, X)[0])


def test_gram_tiles_of_one_layer_of_the_conv_resnet():
    X, _ = patch_data(n=9, channels=2, positions=5, seed=1)
    spec = KernelSpec("gram", {"net": "conv-resnet", "width": 8, "depth": 2, "seed": 1, "layer": "last"})
    net = ConvResNet(2, 5, 8, 2, 3, "softplus", 1, 1, torch.float64)
    G = zeroloss.gram(net, X, layer="last")[0]
    _close(compute_tile(X[:4], X[4:], spec), G[:4, 4:])
    _close(compute_tile(X[4:], None, spec), G[4:, 4:])


@pytest.mark.parametrize("net", ["fc", "resnet", "conv-resnet"])
def test_limit_tiles_equal_limit_kernel(net):
    X = patch_data(n=8, channels=2, positions=4, seed=0)[0] if net == "conv-resnet" else sphere_data(8, 4, 0)[0]
    X = X * torch.linspace(0.7, 1.3, 8).reshape(-1, *[1] * (X.ndim - 1))  # unequal norms: the quadrature rule
    params = {"net": net, "depth": 3, "activation": "softplus", "kind": "ntk", "nodes": 32}
    spec = prepare_spec(X, KernelSpec("limit", params))
    K = zeroloss.limit_kernel(X, net=net, depth=3, activation="softplus", kind="ntk", nodes=32)
    _close(compute_tile(X[:3], X[5:], spec), K[:3, 5:], 1e-11)
    diag = compute_tile(X[:5], None, spec)
    assert torch.equal(diag, diag.T), "a diagonal tile is exactly symmetric"
    _close(diag, K[:5, :5], 1e-11)


def test_entk_job_of_a_user_model_and_cross_kernel(tmp_path):
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 16), nn.Tanh(), nn.Linear(16, 3))
    X, X2 = torch.randn(11, 4), torch.randn(6, 4)
    kernel_job(X, "entk", model=model, X2=X2, out=tmp_path / "E.zarr", block=4, progress=False)
    K = open_kernel(tmp_path / "E.zarr")
    assert K.shape == (11, 6) and not K.symmetric
    _close(K.numpy(), zeroloss.entk(model, X.double(), X2.double()))


@pytest.mark.parametrize("kind", ["nngp", "ntk"])
def test_infinite_width_job_of_a_user_model_equals_its_limit_kernel(tmp_path, kind):
    """The tiled NNGP / NTK of a user's module (kind "infinite") equals zeroloss.limit_kernel of the same module
    in one call: every tile runs the same rules on its rectangle of pairs, so only the summation of blocks differs
    (1e-12 relative: float64 round-off of a few layers)."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 32), nn.ReLU(), nn.Linear(32, 1))
    X = torch.randn(9, 4, dtype=torch.float64)
    kernel_job(X, "infinite", params={"kind": kind}, model=model, out=tmp_path / "K.zarr", block=4, progress=False)
    whole = getattr(zeroloss.limit_kernel(X, model, kind=kind), kind)
    _close(open_kernel(tmp_path / "K.zarr").numpy(), whole, 1e-12)


def test_a_symmetric_job_stores_only_the_upper_triangle_and_the_reader_mirrors(tmp_path):
    X, _ = sphere_data(n=10, d=3, seed=2)
    out = tmp_path / "K.zarr"
    kernel_job(X, "limit", params=LIMIT, out=out, block=4, progress=False)
    chunks = sorted(str(p.relative_to(out / "c")) for p in (out / "c").rglob("*") if p.is_file())
    assert chunks == ["0/0", "0/1", "0/2", "1/1", "1/2", "2/2"]
    assert sum((out / "c" / c).stat().st_size for c in chunks) == TilePlan(10, 10, 4, True).bytes_on_disk(8)
    lazy = open_kernel(out, in_memory=False)
    assert not lazy.in_memory
    full = lazy.numpy()
    assert np.array_equal(full, full.T)
    assert np.array_equal(lazy[5:10, 1:3], full[5:10, 1:3])
    assert lazy.verify() == []


def test_same_tile_size_gives_the_same_bits_and_float32_storage(tmp_path):
    X, _ = sphere_data(n=9, d=3, seed=3)
    kernel_job(X, "limit", params=LIMIT, out=tmp_path / "a.zarr", block=5, progress=False)
    kernel_job(X, "limit", params=LIMIT, out=tmp_path / "b.zarr", block=5, progress=False)
    kernel_job(X, "limit", params=LIMIT, out=tmp_path / "c.zarr", block=5, dtype="float32", progress=False)
    a, b, c = (open_kernel(tmp_path / f"{k}.zarr").numpy() for k in "abc")
    assert np.array_equal(a, b)
    assert c.dtype == np.float64 and np.array_equal(c, a.astype(np.float32).astype(np.float64))


def test_resume_computes_exactly_the_tiles_without_a_record(tmp_path):
    X, _ = sphere_data(n=10, d=3, seed=4)
    out = tmp_path / "K.zarr"
    first = kernel_job(X, "limit", params=LIMIT, out=out, block=4, progress=False)
    reference = open_kernel(out).numpy()
    for name in ("0_1.json", "2_2.json"):  # as if the driver had died before recording these two
        (out / "records" / name).unlink()
    dead = out / "c" / "0" / ".1.abababab.tmp"  # a dead writer's temporary (nobody holds its lock), not young
    dead.write_bytes(b"half a chunk")
    os.utime(dead, (1.0, 1.0))
    with pytest.raises(ZerolossInputError, match="not finished .4 of 6 tiles"):
        open_kernel(out)
    again = kernel_job(X, "limit", params=LIMIT, out=out, block=4, progress=False)
    assert (first.computed, again.done_before, again.computed) == (6, 4, 2)
    assert not dead.exists()
    assert np.array_equal(open_kernel(out).numpy(), reference)


def test_resuming_with_other_inputs_kernel_model_or_block_is_refused_in_one_line(tmp_path):
    X, _ = sphere_data(n=8, d=3, seed=5)
    out = tmp_path / "K.zarr"
    kernel_job(X, "limit", params=LIMIT, out=out, block=4, progress=False)
    cases = [((X[:7], "limit", LIMIT, 4), "--inputs: .* other inputs"),
             ((X, "limit", {**LIMIT, "kind": "nngp"}, 4), "--kind: .* another kernel"),
             ((X, "gram", {"width": 8}, 4), "--kind: .* another kernel"),
             ((X, "limit", LIMIT, 3), "--block: .* block 4, not 3")]
    for (inputs, kind, params, block), message in cases:
        with pytest.raises(ZerolossInputError, match=message) as err:
            kernel_job(inputs, kind, params=params, out=out, block=block, progress=False)
        assert "\n" not in str(err.value)
    m1, m2 = nn.Linear(3, 2), nn.Linear(3, 2)
    kernel_job(X, "entk", model=m1, out=tmp_path / "E.zarr", block=4, progress=False)
    with pytest.raises(ZerolossInputError, match="--model: .* another model"):
        kernel_job(X, "entk", model=m2, out=tmp_path / "E.zarr", block=4, progress=False)


def test_two_drivers_on_one_folder_refuse_each_other(tmp_path):
    X, _ = sphere_data(n=8, d=3, seed=6)
    out = tmp_path / "K.zarr"
    kernel_job(X, "limit", params=LIMIT, out=out, block=8, progress=False)
    for name in os.listdir(out / "records"):
        (out / "records" / name).unlink()
    with sweep_lock(out), pytest.raises(ZerolossInputError, match="being written by another zeroloss process"):
        kernel_job(X, "limit", params=LIMIT, out=out, block=8, progress=False)


def test_dry_run_and_budget_refusal_write_nothing(tmp_path):
    X, _ = sphere_data(n=12, d=3, seed=7)
    out = tmp_path / "K.zarr"
    result = kernel_job(X, "gram", params={"width": 16}, out=out, block=5, dry_run=True)
    info = result.dry_run
    assert (info.tiles, info.done, info.bytes_on_disk) == (6, 0, 6 * 25 * 8)
    assert info.worker_bytes > 0 and info.tile_seconds > 0 and info.estimated_seconds > 0
    assert not out.exists()
    with pytest.raises(ZerolossInputError, match="--block: one 5 x 5 tile .* memory budget"):
        kernel_job(X, "gram", params={"width": 16}, out=out, block=5, memory_budget=1000, progress=False)
    assert not out.exists()


def test_a_foreign_folder_is_refused(tmp_path):
    (tmp_path / "K.zarr").mkdir()
    (tmp_path / "K.zarr" / "notes.txt").write_text("mine")
    X, _ = sphere_data(n=4, d=3, seed=0)
    with pytest.raises(ZerolossInputError, match="zeroloss did not create"):
        kernel_job(X, "limit", params=LIMIT, out=tmp_path / "K.zarr", block=2, progress=False)


def test_verify_finds_a_corrupted_tile(tmp_path):
    X, _ = sphere_data(n=6, d=3, seed=8)
    out = tmp_path / "K.zarr"
    kernel_job(X, "limit", params=LIMIT, out=out, block=3, progress=False)
    record = json.loads((out / "records" / "0_1.json").read_text())
    (out / "records" / "0_1.json").write_text(json.dumps({**record, "sha256": "0" * 64}))
    with pytest.raises(ZerolossInputError, match="do not match their checksum, first .0, 1."):
        open_kernel(out, verify=True)


def test_a_new_kind_is_one_registry_entry(tmp_path):
    register_kind("test-linear", lambda X1, X2, spec: X1 @ (X1 if X2 is None else X2).T)
    try:
        X = torch.randn(7, 3, dtype=torch.float64)
        kernel_job(X, "test-linear", out=tmp_path / "L.zarr", block=3, progress=False)
        _close(open_kernel(tmp_path / "L.zarr").numpy(), X @ X.T)
    finally:
        KINDS.pop("test-linear")


def _regression_problem(tmp_path, n=40):
    X, y = sphere_data(n=n, d=8, seed=9)
    Xt, _ = sphere_data(n=7, d=8, seed=10)
    params = {"net": "fc", "depth": 2, "activation": "relu", "kind": "ntk"}  # condition number 70
    kernel_job(X, "limit", params=params, out=tmp_path / "K.zarr", block=12, progress=False)
    kernel_job(Xt, "limit", X2=X, params=params, out=tmp_path / "Kt.zarr", block=12, progress=False)
    return y, tmp_path / "K.zarr", tmp_path / "Kt.zarr"


def test_streaming_solve_matches_the_in_memory_solve(tmp_path):
    y, k_path, _ = _regression_problem(tmp_path)
    lazy = open_kernel(k_path, in_memory=False)
    K = torch.from_numpy(open_kernel(k_path).numpy())
    direct = solve(K, y, method="direct")
    cg = solve(lazy, y, memory_budget=1000)  # the direct solve does not fit: streaming CG
    assert cg.method == "cg" and 0 < cg.iterations and cg.residual <= 1e-10
    # ‖x − x*‖/‖x*‖ ≤ κ · tol, tol 1e-10 (κ ≈ 70 here)
    kappa = float(torch.linalg.cond(K))
    assert kappa < 1e3
    assert float((cg.x - direct.x).norm() / direct.x.norm()) <= kappa * 1e-10


@pytest.mark.parametrize("ridge", [0.0, 1e-3])
def test_predict_gd_mse_on_stored_kernels_with_a_tiny_budget_matches_the_in_memory_answer(tmp_path, ridge):
    import math

    y, k_path, kt_path = _regression_problem(tmp_path)
    K, Kt = open_kernel(k_path).numpy(), open_kernel(kt_path).numpy()
    ref = zeroloss.predict_gd_mse(torch.from_numpy(K), y, lr=0.1, time=[math.inf],
                                  k_test_train=torch.from_numpy(Kt), ridge=ridge)
    got = zeroloss.predict_gd_mse(open_kernel(k_path, in_memory=False), y, lr=0.1, time=[math.inf],
                                  k_test_train=open_kernel(kt_path, in_memory=False), ridge=ridge,
                                  memory_budget=1000)
    assert got.eigenvalues.numel() == 0, "the streaming path computes no spectrum"
    # CG stops at relative residual 1e-10 and κ < 1e3 (previous test): the coefficients, hence the test outputs,
    # agree to κ·tol < 1e-7 relatively; the train outputs (K + ρI)α = y − f₀ to the residual itself
    _close(got.test, ref.test, 1e-7)
    _close(got.train, ref.train, 1e-9)
    in_memory = zeroloss.predict_gd_mse(open_kernel(k_path), y, lr=0.1, time=[0, 5, math.inf],
                                        k_test_train=open_kernel(kt_path), ridge=ridge)
    assert in_memory.eigenvalues.numel() == 40
    with pytest.raises(ZerolossInputError, match="steps/time: .* only t = inf"):
        zeroloss.predict_gd_mse(open_kernel(k_path, in_memory=False), y, lr=0.1, steps=[5], memory_budget=1000)


def test_lazy_slices_and_matmul_of_symmetric_and_cross_kernels_equal_the_whole_matrix(tmp_path):
    X, _ = sphere_data(n=11, d=3, seed=11)
    X2, _ = sphere_data(n=5, d=3, seed=12)
    kernel_job(X, "limit", params=LIMIT, out=tmp_path / "S.zarr", block=4, progress=False)
    kernel_job(X, "limit", X2=X2, params=LIMIT, out=tmp_path / "C.zarr", block=4, progress=False)
    rng = np.random.default_rng(0)
    for name in ("S", "C"):
        lazy = open_kernel(tmp_path / f"{name}.zarr", in_memory=False)
        whole = open_kernel(tmp_path / f"{name}.zarr", in_memory=True).numpy()
        n1, n2 = lazy.shape
        for _ in range(20):
            a, b = sorted(rng.integers(0, n1 + 1, 2))
            c, d = sorted(rng.integers(0, n2 + 1, 2))
            assert np.array_equal(lazy[a:b, c:d], whole[a:b, c:d]), (name, a, b, c, d)
        V = rng.standard_normal((n2, 3))
        # the lazy product sums each row's tiles in another order than one matmul: round-off only
        _close(lazy.matmul(V), whole @ V, 1e-13)
        if name == "S":
            assert np.array_equal(lazy.diagonal(), np.diag(whole))


@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_a_chunk_written_directly_is_the_chunk_zarr_writes(tmp_path, dtype):
    """write_chunk bypasses zarr's writer: its file must be byte for byte the chunk zarr encodes for the same values
    (edge tiles padded with NaN to the chunk shape), and zarr must read it back; a compressed array is refused."""
    import zarr

    from zeroloss.tiles.plan import Tile
    from zeroloss.tiles.store import raw_bytes_codec, write_chunk

    values = np.random.default_rng(0).standard_normal((7, 10)).astype(dtype)
    for name in ("ours", "zarr"):
        zarr.create_array(store=str(tmp_path / name), shape=(12, 10), chunks=(5, 4), dtype=dtype,
                          fill_value=float("nan"), compressors=None, filters=None, zarr_format=3)
    theirs = zarr.open_array(store=str(tmp_path / "zarr"), mode="r+")
    assert raw_bytes_codec(theirs)
    compressed = zarr.create_array(store=str(tmp_path / "compressed"), shape=(12, 10), chunks=(5, 4), dtype=dtype,
                                   fill_value=float("nan"), zarr_format=3)
    assert not raw_bytes_codec(compressed)  # the negative control: zstd by default, not raw bytes
    for i, (a, b) in enumerate([(0, 5), (5, 10), (10, 12)]):
        for j, (c, d) in enumerate([(0, 4), (4, 8), (8, 10)]):
            tile = values[a:b, c:d] if b <= 7 else np.full((b - a, d - c), 1.5, dtype=dtype)
            write_chunk(tmp_path / "ours", Tile(0, i, j, (a, b), (c, d)), np.ascontiguousarray(tile), (5, 4))
            theirs[a:b, c:d] = tile
            assert (tmp_path / "ours" / "c" / str(i) / str(j)).read_bytes() == \
                (tmp_path / "zarr" / "c" / str(i) / str(j)).read_bytes(), (i, j)
    ours = zarr.open_array(store=str(tmp_path / "ours"), mode="r")
    assert np.array_equal(ours[:], theirs[:], equal_nan=True)
    assert not list((tmp_path / "ours").rglob("*.tmp"))
