"""Property tests (hypothesis): for any seed, inputs and sample count, a square eNTK is symmetric and positive
semi-definite, and permuting the samples permutes its rows and columns (and cross kernels transpose)."""

from __future__ import annotations

import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

from zeroloss import entk

MODELS = {
    "mlp": (lambda: nn.Sequential(nn.Linear(4, 8), nn.Tanh(), nn.Linear(8, 2)), (4,)),
    "cnn": (lambda: nn.Sequential(nn.Conv1d(2, 3, 3, padding=1), nn.Tanh(), nn.Flatten(), nn.Linear(3 * 5, 2)), (2, 5)),
    "ln": (lambda: nn.Sequential(nn.Linear(3, 6), nn.LayerNorm(6), nn.Tanh(), nn.Linear(6, 1)), (3,)),
}

cases = st.tuples(st.sampled_from(sorted(MODELS)), st.integers(0, 2**16), st.integers(2, 7),
                  st.sampled_from(["structured", "jacobian"]), st.sampled_from(["trace", "full"]))


def _setup(name: str, seed: int, n: int):
    factory, shape = MODELS[name]
    torch.manual_seed(seed)
    model = factory().double()
    x = torch.randn(n, *shape, dtype=torch.float64, generator=torch.Generator().manual_seed(seed + 1))
    return model, x


@settings(max_examples=25, deadline=None)
@given(cases)
def test_square_kernels_are_symmetric_positive_semidefinite(case):
    name, seed, n, method, outputs = case
    model, x = _setup(name, seed, n)
    K = entk(model, x, method=method, outputs=outputs)
    if outputs == "full":
        K = K.permute(0, 2, 1, 3).reshape(n * K.shape[2], -1)  # Θ as one (n·k) × (n·k) Gram matrix
    assert torch.equal(K, K.T)
    eig = torch.linalg.eigvalsh(K)
    # a Gram matrix J Jᵀ: its eigenvalues are ≥ 0 up to round-off, ~1e-15 of the largest in float64
    assert eig.min() >= -1e-12 * eig.max()


@settings(max_examples=25, deadline=None)
@given(cases, st.randoms(use_true_random=False))
def test_permuting_samples_permutes_the_kernel(case, rng):
    name, seed, n, method, outputs = case
    model, x = _setup(name, seed, n)
    perm = list(range(n))
    rng.shuffle(perm)
    perm = torch.tensor(perm)
    K = entk(model, x, method=method, outputs=outputs)
    Kp = entk(model, x[perm], method=method, outputs=outputs)
    # same products summed in another order (chunks and matmul blocking see other rows): round-off only
    torch.testing.assert_close(Kp, K[perm][:, perm], rtol=1e-12, atol=1e-12 * float(K.abs().max()))
    m = n // 2
    cross = entk(model, x[:m], x[m:], method=method, outputs=outputs)
    back = entk(model, x[m:], x[:m], method=method, outputs=outputs)
    swapped = back.transpose(0, 1) if outputs == "trace" else back.permute(1, 0, 3, 2)
    torch.testing.assert_close(cross, swapped, rtol=1e-12, atol=1e-12 * float(K.abs().max()))
