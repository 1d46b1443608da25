import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from tests.conftest import make_net

from zeroloss.data import sphere_data
from zeroloss.errors import ZerolossInputError
from zeroloss.kernels.empirical import gram, gram_by_layer, gram_memory_bytes
from zeroloss.kernels.jacobian import gram_jacobian
from zeroloss.nets import FullyConnected, ResNet
from zeroloss.spectra import eigenvalues, spectrum


def rel_err(A, B):
    return float((A - B).norm() / B.norm())


# The torch.func reference differentiates the conv net's unfold under vmap, which PyTorch runs by its slow
# fallback and says so; that is the reference's speed, not a finding of the test.
@pytest.mark.filterwarnings("ignore:There is a performance drop because we have not yet implemented the batching")
@pytest.mark.parametrize("layer", ["all", "last", "output", 1, 2])
def test_structured_gram_equals_jacobian_contraction(net_kind, layer):
    net, X, _ = make_net(net_kind, members=2, depth=3)
    # Both are exact in float64; they differ only by summation order, so ≤ 1e-10 relative (issue #2's bound).
    assert rel_err(gram(net, X, layer=layer), gram_jacobian(net, X, layer=layer)) <= 1e-10


def test_full_gram_is_sum_of_layers(net_kind):
    net, X, _ = make_net(net_kind)
    per_layer = gram_by_layer(net, X)
    assert sorted(per_layer) == list(range(1, net.depth + 2))
    assert rel_err(sum(per_layer.values()), gram(net, X)) < 1e-14


@pytest.mark.parametrize("cls", [FullyConnected, ResNet])
def test_last_layer_closed_form(cls):
    """docs/theory.md §1.3: G^(H)_ij = s²⟨x_i^(H−1), x_j^(H−1)⟩ Σ_r a_r² σ′(w_r·x_i^(H−1)) σ′(w_r·x_j^(H−1))."""
    X, _ = sphere_data(n=6, d=5, seed=3)
    net = cls(5, 32, 3, "tanh", 1, 0, torch.float64)
    params = dict(net.named_parameters())
    _, maps = net.functional_forward(params, X, record=True)
    x_prev = maps[net.depth - 1].inputs[0]  # x^(H−1), (n, m)
    z = x_prev @ net.W3[0].T
    m = net.width
    s2 = net.activation.c_sigma / m if cls is FullyConnected else (net.c_res / (net.depth * m**0.5)) ** 2
    D = net.a[0] * net.activation.d1(z)  # (n, m): a_r σ′(w_r·x_i)
    expected = s2 * (x_prev @ x_prev.T) * (D @ D.T)
    assert rel_err(gram(net, X, layer="last")[0], expected.detach()) < 1e-12


def test_chunking_does_not_change_the_result(net_kind):
    net, X, _ = make_net(net_kind)
    assert rel_err(gram(net, X, chunk_size=2), gram(net, X)) < 1e-14


@settings(max_examples=15, deadline=None)
@given(seed=st.integers(0, 10_000), kind=st.sampled_from(["fc", "resnet", "conv-resnet"]))
def test_gram_symmetric_psd_and_permutation_equivariant(seed, kind):
    net, X, _ = make_net(kind, members=1, seed=seed, width=8, depth=2)
    G = gram(net, X)[0]
    assert torch.allclose(G, G.T, atol=1e-12 * G.abs().max())
    # PSD up to round-off: eigenvalues ≥ −1e-12 · λ_max (float64 eigensolver accuracy).
    eig = eigenvalues(G)
    assert eig[0] >= -1e-12 * eig[-1]
    perm = torch.randperm(X.shape[0], generator=torch.Generator().manual_seed(seed))
    assert torch.allclose(gram(net, X[perm])[0], G[perm][:, perm], atol=1e-12 * G.abs().max())


def test_gram_float64_even_for_float32_nets():
    net, X, _ = make_net("fc", dtype=torch.float32)
    G = gram(net, X)
    assert G.dtype == torch.float64
    assert net.W1.dtype == torch.float32  # the net itself is untouched


def test_bad_layer_names_the_field():
    net, X, _ = make_net("fc", depth=2)
    with pytest.raises(ZerolossInputError, match="layer: must be 'all', 'last', 'output' or an integer in 1..3"):
        gram(net, X, layer=7)


def test_memory_estimate_is_an_upper_bound_on_stored_tensors():
    net = FullyConnected(d=16, width=64, depth=3, members=2, dtype=torch.float64)
    n = 100
    stored_minimum = 2 * (n * n) * 8  # at least the (S, n, n) float64 result
    estimate = gram_memory_bytes(net, n)
    assert estimate > stored_minimum
    # and it grows quadratically in n for large n
    assert gram_memory_bytes(net, 4000) > 10 * gram_memory_bytes(net, 1000) / 4


def test_spectrum_reports_negative_round_off_instead_of_clipping():
    G = torch.diag(torch.tensor([2.0, 1.0, -1e-15], dtype=torch.float64))
    s = spectrum(G)
    assert s.lambda_min == pytest.approx(-1e-15) and s.negative_count == 1 and s.condition == float("inf")
