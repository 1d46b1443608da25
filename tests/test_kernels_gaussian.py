"""Bivariate Gaussian expectations: closed forms vs quadrature vs table, convergence, degenerate blocks."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from zeroloss.errors import ZerolossInputError
from zeroloss.kernels.gaussian import (
    CLOSED_FORMS,
    MAX_NODES,
    bivariate_expectations,
    gaussian_mean,
    kernel_expectations,
    quadrature_memory_bytes,
)

F64 = torch.float64


def _blocks(seed: int = 0, count: int = 200) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Random PSD 2×2 blocks: variances in [0.1, 3] (the range the recursions visit), |ρ| ≤ 1 incl. the ends."""
    gen = torch.Generator().manual_seed(seed)
    a = 0.1 + 2.9 * torch.rand(count, generator=gen, dtype=F64)
    c = 0.1 + 2.9 * torch.rand(count, generator=gen, dtype=F64)
    rho = 2.0 * torch.rand(count, generator=gen, dtype=F64) - 1.0
    rho[:4] = torch.tensor([1.0, -1.0, 0.0, 1.0 - 1e-15], dtype=F64)
    return a, rho * torch.sqrt(a * c), c


def test_erf_closed_form_matches_quadrature_to_1e9():
    a, b, c = _blocks()
    closed = bivariate_expectations(a, b, c, "erf", pairs=("ss", "dd"), method="closed")
    # erf′(√a z) = (2/√π) e^{−a z²} is narrow against the N(0, 1) weight when a ≈ 3: measured errors of the
    # σ′σ′ pair are 1e-5 at 64 nodes, 6e-7 at 80, 6e-10 at 120 and round-off at 200 (at a ≈ 1, the FC
    # recursion's variance, 64 nodes already reach 5e-12). 200 nodes: the comparison is then at round-off.
    quad = bivariate_expectations(a, b, c, "erf", pairs=("ss", "dd"), method="quadrature", nodes=200)
    for p in ("ss", "dd"):
        assert (quad[p] - closed[p]).abs().max() <= 1e-9, p
    unit = torch.ones(50, dtype=F64)
    rho = torch.linspace(-1, 1, 50, dtype=F64)
    closed = bivariate_expectations(unit, rho, unit, "erf", pairs=("ss", "dd"), method="closed")
    quad = bivariate_expectations(unit, rho, unit, "erf", pairs=("ss", "dd"), method="quadrature")  # 64 nodes
    for p in ("ss", "dd"):
        assert (quad[p] - closed[p]).abs().max() <= 1e-9, p


def test_quadrature_converges_as_nodes_grow():
    a, b, c = _blocks(seed=1, count=60)
    ref = bivariate_expectations(a, b, c, "softplus", pairs=("ss", "dd"), method="quadrature", nodes=200)
    errors = []
    for nodes in (8, 16, 32, 64):
        q = bivariate_expectations(a, b, c, "softplus", pairs=("ss", "dd"), method="quadrature", nodes=nodes)
        errors.append(max(float((q[p] - ref[p]).abs().max()) for p in ("ss", "dd")))
    assert all(later < earlier for earlier, later in zip(errors, errors[1:], strict=False)), errors
    # 64 nodes: docs/theory.md §1.4's "about 1e-10 for softplus in float64" (measured ~1e-14 on these variances).
    assert errors[-1] <= 1e-10, errors


def test_erf_closed_form_against_scipy_at_one_block():
    """An independent reference: scipy's adaptive 2-D integration of erf(u)erf(v) over the bivariate density."""
    from scipy import integrate, special, stats

    a, b, c = 0.7, 0.4, 1.3
    dens = stats.multivariate_normal(mean=[0, 0], cov=[[a, b], [b, c]])
    ref, _ = integrate.dblquad(lambda v, u: special.erf(u) * special.erf(v) * dens.pdf([u, v]), -12, 12, -12, 12,
                               epsabs=1e-12)
    t = [torch.tensor(v, dtype=F64) for v in (a, b, c)]
    out = bivariate_expectations(t[0], t[1], t[2], "erf", ("ss",), method="closed")
    assert abs(float(out["ss"]) - ref) <= 1e-8  # dblquad's own accuracy at epsabs=1e-12 over a ±12 box


def test_table_matches_quadrature_for_equal_variances():
    rho = torch.linspace(-1, 1, 301, dtype=F64)
    for variance in (1.0, 2.4):
        v = torch.full_like(rho, variance)
        quad = bivariate_expectations(v, rho * variance, v, "softplus", ("ss", "dd"), method="quadrature")
        table = bivariate_expectations(v, rho * variance, v, "softplus", ("ss", "dd"), method="table")
        for p in ("ss", "dd"):
            # cubic Hermite bound Δρ⁴ max|F⁗|/384 ≈ 4e-14 · |F⁗| with the default 1024 intervals
            assert (table[p] - quad[p]).abs().max() <= 1e-12, (variance, p)


def test_table_refuses_unequal_variances():
    one = torch.ones(3, dtype=F64)
    with pytest.raises(ZerolossInputError, match="table"):
        bivariate_expectations(one, 0.5 * one, 2 * one, "softplus", method="table")


@pytest.mark.parametrize(("method", "activation"), [
    (m, a) for m in ("quadrature", "closed", "table") for a in ("erf", "relu", "softplus")
    if m != "closed" or a in CLOSED_FORMS
])
def test_degenerate_blocks_are_finite(method, activation):
    if method == "table":
        a = torch.ones(4, dtype=F64)
        b, c = torch.tensor([1.0, -1.0, 1.0 + 1e-15, 0.0], dtype=F64), a
    else:
        a = torch.tensor([0.0, 1.0, 1.0, 0.0, 2.0], dtype=F64)
        b = torch.tensor([0.0, 1.0 + 1e-15, -1.0, 0.0, 2.0], dtype=F64)  # includes |ρ| slightly above 1
        c = torch.tensor([1.0, 1.0, 1.0, 0.0, 2.0], dtype=F64)
    out = bivariate_expectations(a, b, c, activation, ("ss", "dd"), method=method)
    for p, v in out.items():
        assert torch.isfinite(v).all(), (p, v)


def test_zero_variance_side_reduces_to_one_dimensional_expectation():
    """a = 0 means u ≡ 0: E[σ(u)σ(v)] = σ(0) E[σ(v)]."""
    out = bivariate_expectations(torch.tensor(0.0), torch.tensor(0.0), torch.tensor(1.5), "softplus", ("ss",),
                                 method="quadrature")
    expected = math.log(2.0) * float(gaussian_mean(torch.tensor(1.5), "softplus"))
    assert abs(float(out["ss"]) - expected) <= 1e-13  # both are 64-node rules of the same smooth integrand


def test_relu_closed_form_against_slow_quadrature():
    a, b, c = _blocks(seed=2, count=40)
    closed = bivariate_expectations(a, b, c, "relu", ("ss", "dd"), method="closed")
    quad = bivariate_expectations(a, b, c, "relu", ("ss", "dd"), method="quadrature", nodes=200)
    # Gauss–Hermite converges only like 1/N on relu's kink (measured: 1e-3 for ss, 1.5e-2 for the step σ′σ′
    # at 200 nodes); this checks the closed forms' conventions (scale, angle), not the quadrature's speed.
    assert (quad["ss"] - closed["ss"]).abs().max() <= 3e-3
    assert (quad["dd"] - closed["dd"]).abs().max() <= 3e-2


def test_gaussian_mean_closed_and_quadrature():
    var = torch.tensor([0.3, 1.0, 2.5], dtype=F64)
    relu_q = gaussian_mean(var, "relu", nodes=300, method="quadrature")
    assert torch.allclose(relu_q, torch.sqrt(var / (2 * math.pi)), atol=1e-3)  # kink: O(1/N) convergence
    assert gaussian_mean(var, "erf", method="quadrature").abs().max() <= 1e-15  # odd σ: exact by symmetry
    # softplus: independent reference by numpy's trapezoid rule on a fine grid (error ≪ 1e-10)
    z = np.linspace(-40, 40, 400_001)
    pdf = np.exp(-z**2 / 2) / math.sqrt(2 * math.pi)
    for v in (0.3, 1.0, 2.5):
        ref = np.trapezoid(np.logaddexp(0.0, math.sqrt(v) * z) * pdf, z)
        assert abs(float(gaussian_mean(torch.tensor(v, dtype=F64), "softplus")) - ref) <= 1e-10


@settings(max_examples=25, deadline=None)
@given(a=st.floats(0.05, 3.0), c=st.floats(0.05, 3.0), rho=st.floats(-1.0, 1.0))
def test_symmetric_pairs_are_symmetric_in_the_block(a, c, rho):
    b = rho * math.sqrt(a * c)
    t = [torch.tensor(x, dtype=F64) for x in (a, b, c)]
    one = bivariate_expectations(t[0], t[1], t[2], "softplus", ("ss", "dd"), method="quadrature")
    two = bivariate_expectations(t[2], t[1], t[0], "softplus", ("ss", "dd"), method="quadrature")
    for p in ("ss", "dd"):
        # swapping u and v changes which axis carries the Cholesky factor, so the two are equal up to the
        # 64-node rule's error for softplus at variances ≤ 3 (≤ 1e-13 measured; docs/theory.md §1.4 quotes ~1e-10)
        assert abs(float(one[p] - two[p])) <= 1e-10


def test_kernel_expectations_mirror_matches_full_evaluation():
    gen = torch.Generator().manual_seed(3)
    X = torch.randn(5, 3, generator=gen, dtype=F64)
    K = X @ X.T
    diag = torch.diagonal(K)
    mirrored = kernel_expectations(K, diag, "softplus", ("ss", "dd"), method="quadrature")
    full = bivariate_expectations(diag[:, None], K, diag[None, :], "softplus", ("ss", "dd"), method="quadrature")
    upper = torch.triu(torch.ones(5, 5, dtype=torch.bool))
    for p in ("ss", "dd"):
        assert torch.equal(mirrored[p], mirrored[p].T)
        # i ≤ j: the same rule on the same blocks (a = K_ii carries the Cholesky factor in both), bit for bit
        # up to the summation order of the batched einsum
        assert (mirrored[p] - full[p])[upper].abs().max() <= 1e-14


def test_quadrature_chunking_does_not_change_results():
    a, b, c = _blocks(seed=4, count=50)
    one = bivariate_expectations(a, b, c, "gelu", ("ss", "sd"), method="quadrature")
    tiny = bivariate_expectations(a, b, c, "gelu", ("ss", "sd"), method="quadrature", block_bytes=1)
    for p in ("ss", "sd"):
        # the same rule; only the einsum's summation order may change with the chunk's size (a few ulps)
        assert torch.allclose(one[p], tiny[p], rtol=0, atol=1e-14)


def test_memory_estimate_is_bounded_by_the_chunk_budget():
    budget = 64 * 2**20
    small = quadrature_memory_bytes(100, 64, budget)
    big = quadrature_memory_bytes(10**8, 64, budget)
    assert small < big
    assert big <= budget + 8 * 10**8 * 8  # one chunk within the budget + the (blocks,) inputs and outputs


def test_bad_arguments_raise_one_line_errors():
    one = torch.ones(2, dtype=F64)
    with pytest.raises(ZerolossInputError, match="method"):
        bivariate_expectations(one, one, one, "softplus", method="closed")
    with pytest.raises(ZerolossInputError, match="pairs"):
        bivariate_expectations(one, one, one, "softplus", pairs=("xx",))
    with pytest.raises(ZerolossInputError, match="nodes"):
        bivariate_expectations(one, one, one, "softplus", method="quadrature", nodes=MAX_NODES + 1)
    with pytest.raises(ZerolossInputError, match="finite"):
        bivariate_expectations(one * float("nan"), one, one, "softplus")
