"""Infinite-width kernels: structure (symmetric PSD, unit diagonals, reductions between nets), methods, CLI."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from zeroloss import lambda0, limit_gram_by_layer, limit_kernel
from zeroloss.activations import get_activation
from zeroloss.cli import app
from zeroloss.data import patch_data, sphere_data
from zeroloss.errors import ZerolossInputError
from zeroloss.kernels.gaussian import bivariate_expectations
from zeroloss.spectra import eigenvalues

NETS = ["fc", "resnet", "conv-resnet"]
KINDS = ["du", "nngp", "ntk"]


def _inputs(net: str, n: int = 7, seed: int = 0) -> torch.Tensor:
    if net == "conv-resnet":
        return patch_data(n, channels=2, positions=5, seed=seed)[0]
    return sphere_data(n, d=4, seed=seed)[0]


@pytest.mark.parametrize("activation", ["erf", "softplus", "relu"])
@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("net", NETS)
def test_kernels_are_symmetric_psd_float64(net, kind, activation):
    K = limit_kernel(_inputs(net), net=net, depth=3, activation=activation, kind=kind)
    assert K.dtype == torch.float64 and K.shape == (7, 7)
    assert torch.equal(K, K.T)
    eig = eigenvalues(K)
    # PSD up to float64 round-off of an n = 7 eigensolve, relative to the largest eigenvalue
    assert eig[0] >= -1e-12 * eig[-1]
    assert eig[0] > 0  # distinct, non-parallel inputs: strictly positive definite (Du et al.'s λ₀ > 0)


@pytest.mark.parametrize("activation", ["softplus", "erf", "tanh", "relu"])
def test_fc_hidden_layers_have_unit_diagonal(activation):
    """With unit inputs every hidden K^(h)_ii = c_σ E[σ(z)²] = 1 (docs/theory.md §1.4); K^(h) is the depth-h NNGP."""
    X = _inputs("fc")
    for h in range(1, 5):
        K = limit_kernel(X, net="fc", depth=h, activation=activation, kind="nngp")
        # relu is closed-form and erf's c_σ exact: round-off; softplus and tanh: E[σ²] by the default 96-node
        # rule (≤ 1e-14 for softplus, ~1e-11 for tanh, whose poles at ±iπ/2 slow Gauss–Hermite down)
        assert torch.allclose(torch.diagonal(K), torch.ones(7, dtype=torch.float64), rtol=0, atol=1e-10)


def test_two_layer_du_kernel_is_c_sigma_times_classical_h_infinity():
    """H = 1: K^(1) = c_σ ⟨x_i, x_j⟩ E[σ′(u)σ′(v)], the classical two-layer H^∞ times c_σ (docs/theory.md §1.4)."""
    X = _inputs("fc")
    G0 = X @ X.T
    one = torch.ones(7, dtype=torch.float64)
    dd = bivariate_expectations(one[:, None], G0, one[None, :], "erf", ("dd",), method="closed")["dd"]
    expected = get_activation("erf").c_sigma * G0 * dd
    for net in ("fc", "resnet"):  # a one-layer ResNet has no residual layer: it is the two-layer FC net
        K = limit_kernel(X, net=net, depth=1, activation="erf", kind="du")
        assert torch.allclose(K, expected, rtol=0, atol=1e-14)


def test_conv_resnet_with_one_position_and_kernel_one_is_the_resnet():
    """A ConvResNet with p = 1 and q = 1 computes exactly the ResNet: the kernels must coincide."""
    X = _inputs("fc")
    for kind in KINDS:
        dense = limit_kernel(X, net="resnet", depth=3, activation="softplus", kind=kind)
        conv = limit_kernel(X.unsqueeze(-1), net="conv-resnet", depth=3, activation="softplus", kind=kind,
                            kernel_size=1)
        # the conv path integrates block by block, the ResNet path uses the ρ-table: both ≲ 1e-12 accurate
        assert torch.allclose(conv, dense, rtol=0, atol=1e-11), kind


@pytest.mark.parametrize("net", NETS)
def test_closed_form_and_quadrature_kernels_agree_for_erf(net):
    X = _inputs(net)
    for kind in KINDS:
        closed = limit_kernel(X, net=net, depth=3, activation="erf", kind=kind, method="closed")
        quad = limit_kernel(X, net=net, depth=3, activation="erf", kind=kind, method="quadrature", nodes=200)
        # 200 nodes: the conv-ResNet's patch sums reach variances of ~4, where erf′(u)² = e^{−2u²} is narrow
        # against the N(0, 1) weight (64 nodes: 1e-6 there); at 200 nodes each expectation is at round-off
        assert (closed - quad).abs().max() <= 1e-9, kind


def test_ntk_is_the_sum_of_the_layers_and_dominates_du():
    X = _inputs("resnet")
    layers = limit_gram_by_layer(X, net="resnet", depth=3, activation="softplus")
    assert sorted(layers) == [1, 2, 3, 4]
    ntk = limit_kernel(X, net="resnet", depth=3, activation="softplus", kind="ntk")
    assert torch.allclose(ntk, sum(layers.values()), rtol=0, atol=1e-14)
    assert torch.allclose(layers[3], limit_kernel(X, net="resnet", depth=3, activation="softplus", kind="du"))
    assert torch.allclose(layers[4], limit_kernel(X, net="resnet", depth=3, activation="softplus", kind="nngp"))
    # every layer's Gram is PSD, so λ_min(NTK) ≥ λ_min(G^(H)) = λ₀
    assert float(eigenvalues(ntk)[0]) >= lambda0(X, net="resnet", depth=3, activation="softplus")


def test_lambda0_is_positive_and_vanishes_for_parallel_inputs():
    X = _inputs("fc")
    assert lambda0(X, net="fc", depth=2, activation="softplus") > 1e-3
    dup = torch.cat([X, X[:1]])
    # two equal rows make K singular: λ₀ = 0 up to round-off of K's entries (~1e-16 × ‖K‖)
    assert abs(lambda0(dup, net="fc", depth=2, activation="softplus")) <= 1e-12


def test_input_errors():
    X = _inputs("fc")
    with pytest.raises(ZerolossInputError, match="net"):
        limit_kernel(X, net="cnn")
    with pytest.raises(ZerolossInputError, match="kind"):
        limit_kernel(X, kind="gp")
    with pytest.raises(ZerolossInputError, match="conv-resnet"):
        limit_kernel(X, net="conv-resnet")
    with pytest.raises(ZerolossInputError, match="c_res"):
        limit_kernel(X, net="resnet", c_res=1.5)
    with pytest.raises(ZerolossInputError, match="NaN"):
        limit_kernel(X * float("nan"))


def test_cli_kernel_writes_the_kernel_and_prints_its_spectrum(tmp_path):
    X = _inputs("fc")
    np.save(tmp_path / "X.npy", X.numpy())
    out = tmp_path / "K.npy"
    result = CliRunner().invoke(app, ["kernel", "--net", "resnet", "--depth", "3", "--activation", "erf",
                                      "--kind", "ntk", "--inputs", str(tmp_path / "X.npy"), "--out", str(out),
                                      "--json"])
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    K = np.load(out)
    expected = limit_kernel(X, net="resnet", depth=3, activation="erf", kind="ntk").numpy()
    np.testing.assert_array_equal(K, expected)
    eig = np.linalg.eigvalsh(K)
    assert summary["lambda_min"] == pytest.approx(eig[0], rel=1e-10)
    assert summary["condition"] == pytest.approx(eig[-1] / eig[0], rel=1e-10)


@pytest.mark.parametrize("problem", ["not-unit", "parallel", "wrong-rank"])
def test_cli_kernel_rejects_bad_inputs_with_one_line(tmp_path, problem):
    X = _inputs("fc").numpy()
    if problem == "not-unit":
        X = 2.0 * X
    elif problem == "parallel":
        X = np.concatenate([X, -X[:1]])
    else:
        X = X[None]  # (1, n, d) read as a conv input, but --net fc
    np.save(tmp_path / "X.npy", X)
    out = tmp_path / "K.npy"
    result = CliRunner().invoke(app, ["kernel", "--inputs", str(tmp_path / "X.npy"), "--out", str(out)])
    assert result.exit_code == 2
    assert result.stderr.startswith("error: --inputs") and result.stderr.count("\n") == 1
    assert not out.exists()


def test_cli_normalise_projects_inputs(tmp_path):
    X = 3.0 * _inputs("fc").numpy()
    np.save(tmp_path / "X.npy", X)
    result = CliRunner().invoke(app, ["kernel", "--inputs", str(tmp_path / "X.npy"), "--out",
                                      str(tmp_path / "K.npy"), "--normalise", "--activation", "relu"])
    assert result.exit_code == 0, result.output
    assert "lambda_min" in result.stdout


def test_cli_kernel_states_large_memory_before_computing(tmp_path, monkeypatch):
    """Above 1 GiB the CLI prints what limit_kernel_memory_bytes states, on stderr, before the kernel is computed.

    The statement is patched to 3 GiB (a real n ≈ 20 000 kernel is too slow for a test); the order is checked by
    recording, from inside limit_kernel, whether the note had already been written.
    """
    import zeroloss.cli.kernel as cli_kernel
    import zeroloss.kernels.limit as limit

    X = _inputs("fc")
    np.save(tmp_path / "X.npy", X.numpy())
    monkeypatch.setattr(limit, "limit_kernel_memory_bytes", lambda *args, **kwargs: 3 * 2**30)
    # the patched 3 GiB statement is also checked against the memory budget: make it fit on any machine
    monkeypatch.setenv("ZEROLOSS_MAX_BYTES", "1TiB")
    notes: list[str] = []
    seen_before: list[bool] = []
    real_echo, real_kernel = cli_kernel.echo_err, limit.limit_kernel
    monkeypatch.setattr(cli_kernel, "echo_err", lambda text: (notes.append(text), real_echo(text)))

    def recording_kernel(*args, **kwargs):
        seen_before.append(bool(notes))
        return real_kernel(*args, **kwargs)

    monkeypatch.setattr(limit, "limit_kernel", recording_kernel)
    result = CliRunner().invoke(app, ["kernel", "--inputs", str(tmp_path / "X.npy"), "--out", str(tmp_path / "K.npy"),
                                      "--device", "cpu"])
    assert result.exit_code == 0, result.output
    assert any("needs about 3." in note for note in notes)  # the kernel's 3 GiB and the command's few MiB more
    assert seen_before == [True]
