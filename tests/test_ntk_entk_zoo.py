"""entk on a zoo of ordinary PyTorch models equals an independent per-sample autograd reference.

The reference (:func:`loop_reference`) uses neither torch.func nor anything from zeroloss: for each sample i and
output a it calls ``torch.autograd.grad`` on the model applied to x_i alone (in eval mode) and contracts the
flattened gradients. Every method of :func:`zeroloss.entk` must equal it to 1e-10 relative in float64 (the two
sum the same products in another order: round-off is ~1e-15 relative; 1e-10 leaves room for cancellation in
near-zero entries, measured relative to the largest entry).

The zoo of models is in tests/helpers.py.
"""

from __future__ import annotations

import pytest
import torch
from torch import nn

import zeroloss
from helpers import ZOO, assert_close_rel, loop_reference, make_model


@pytest.fixture(scope="module")
def references() -> dict[str, tuple[nn.Module, torch.Tensor, torch.Tensor, torch.Tensor]]:
    cache = {}
    for name in ZOO:
        model, x1 = make_model(name, n=4)
        _, x2 = make_model(name, n=3, seed=7)
        cache[name] = (x1, x2, loop_reference(model, x1), loop_reference(model, x1, x2))
    return cache


@pytest.mark.parametrize("method", ["jacobian", "ntvp", "structured", "auto"])
@pytest.mark.parametrize("name", ZOO)
def test_entk_equals_the_autograd_reference(name, method, references):
    model, _ = make_model(name, n=4)
    x1, x2, square, cross = references[name]
    full = zeroloss.entk(model, x1, outputs="full", method=method)
    assert full.dtype == torch.float64
    assert_close_rel(full, square)
    trace = zeroloss.entk(model, x1, x2, method=method)
    assert_close_rel(trace, cross.diagonal(dim1=2, dim2=3).sum(-1))
