"""entk's contract: shapes, trace vs full, cross kernels, by= contributions, state left alone, bad input, and
agreement with zeroloss.gram on zeroloss's own ensemble nets (every method)."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import zeroloss
from helpers import assert_close_rel, make_model
from zeroloss import ZerolossInputError, entk
from zeroloss.kernels.empirical import gram_by_layer

METHODS = ["structured", "jacobian", "ntvp"]


@pytest.mark.parametrize("method", METHODS)
def test_trace_of_full_is_trace_and_cross_kernels_transpose(method):
    model, x1 = make_model("multi-head", n=4)
    _, x2 = make_model("multi-head", n=3, seed=3)
    full = entk(model, x1, x2, outputs="full", method=method)
    assert full.shape == (4, 3, 6, 6)
    trace = entk(model, x1, x2, method=method)
    assert_close_rel(trace, full.diagonal(dim1=2, dim2=3).sum(-1))
    back = entk(model, x2, x1, outputs="full", method=method)
    assert_close_rel(back, full.permute(1, 0, 3, 2))  # Θ(x2, x1)_{ba} = Θ(x1, x2)_{ab}
    square = entk(model, torch.cat([x1, x2]), outputs="full", method=method)
    assert_close_rel(square[:4, 4:], full)  # the cross kernel is the off-diagonal block of the square one
    assert torch.equal(square, square.permute(1, 0, 3, 2))  # square kernels are made exactly symmetric


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("by", ["parameter", "module"])
def test_contributions_sum_to_the_total(method, by):
    model, x = make_model("resnet-bn", n=4)
    total = entk(model, x, method=method)
    parts = entk(model, x, by=by, method=method)
    names = [k for k, _ in model.named_parameters()]
    if by == "parameter":
        assert list(parts) == names
    else:
        assert set(parts) == {k.rpartition(".")[0] for k in names}
        assert_close_rel(parts["block.conv1"], entk(model, x, params=["block.conv1.weight"], method=method))
    assert_close_rel(sum(parts.values()), total)


def test_params_select_by_name_or_predicate():
    model, x = make_model("mlp", n=4)
    by_name = entk(model, x, params=["0.weight", "4.bias"])
    by_pred = entk(model, x, params=lambda name, p: name in ("0.weight", "4.bias"))
    parts = entk(model, x, by="parameter")
    assert_close_rel(by_name, parts["0.weight"] + parts["4.bias"])
    assert torch.equal(by_name, by_pred)
    model[0].bias.requires_grad_(False)  # not selected by default any more
    assert set(entk(model, x, by="parameter")) == set(parts) - {"0.bias"}


@pytest.mark.parametrize("method", METHODS)
def test_the_module_state_is_unchanged(method):
    model, x = make_model("resnet-bn", n=4)
    model.block.train(False)  # a mixed state, restored module by module
    flags = {name: m.training for name, m in model.named_modules()}
    state = {k: v.clone() for k, v in model.state_dict().items()}
    entk(model, x, method=method)
    assert {name: m.training for name, m in model.named_modules()} == flags
    after = model.state_dict()
    assert all(torch.equal(after[k], v) for k, v in state.items())  # running stats, num_batches_tracked, weights
    assert all(p.grad is None for p in model.parameters())


def test_a_callers_no_grad_changes_nothing():
    model, x = make_model("resnet-bn", n=3)
    K = entk(model, x)
    with torch.no_grad():
        for method in METHODS:
            assert_close_rel(entk(model, x, method=method), K)


def test_eval_mode_semantics_batchnorm_uses_running_statistics():
    # a single sample in training mode would make BatchNorm fail or normalise by itself; eval mode is per sample
    bn = nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4), nn.Tanh(), nn.Linear(4, 1)).double()
    x = torch.randn(5, 3, dtype=torch.float64)
    K = entk(bn, x, method="jacobian")
    single = torch.stack([entk(bn, x[i : i + 1], method="jacobian")[0, 0] for i in range(5)])
    assert_close_rel(K.diagonal(), single)


# The torch.func methods differentiate the conv-ResNet's unfold under vmap, which PyTorch runs by its slow
# fallback and says so; that is the reference methods' speed, not a finding of the test.
@pytest.mark.filterwarnings("ignore:There is a performance drop because we have not yet implemented the batching")
@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("kind", ["fc", "resnet", "conv-resnet"])
def test_agrees_with_gram_on_ensemble_nets(kind, method):
    from conftest import make_net

    net, X, _ = make_net(kind, members=2, width=8, depth=2)
    K = entk(net, X, method=method)
    assert K.shape == (2, X.shape[0], X.shape[0])
    assert_close_rel(K, zeroloss.gram(net, X, layer="all"))
    per_layer = entk(net, X, by="module", method=method)
    reference = gram_by_layer(net, X, layer="all")
    assert list(per_layer) == list(reference) == [1, 2, 3]
    for h in reference:
        assert_close_rel(per_layer[h], reference[h])


def test_ensemble_cross_kernel_and_biases():
    net = zeroloss.nets.FeedForward(d=3, widths=[6, 5], members=2, seed=1, dtype=torch.float64)
    X = torch.randn(5, 3, dtype=torch.float64)
    square = entk(net, X)
    assert_close_rel(square, zeroloss.gram(net, X))
    cross = entk(net, X[:3], X[3:], outputs="full")
    assert cross.shape == (2, 3, 2, 1, 1)
    assert_close_rel(cross[..., 0, 0], square[:, :3, 3:])
    by_param = entk(net, X, by="parameter")
    assert list(by_param) == ["W1", "b1", "W2", "b2", "v", "c"]
    assert_close_rel(by_param["c"], torch.ones(2, 5, 5, dtype=torch.float64))  # ∂f/∂c = 1


def test_integer_inputs_stay_integer_and_float32_is_available():
    model, ids = make_model("embed-gru", n=3)
    K64 = entk(model, ids, method="jacobian")
    K32 = entk(model, ids, method="jacobian", dtype=torch.float32)
    assert K32.dtype == torch.float32
    assert_close_rel(K32.double(), K64, rtol=1e-5)  # float32 round-off on O(1) entries


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"outputs": "diag"}, "outputs: must be one of trace, full"),
        ({"by": "layer"}, "by: must be one of total, parameter, module"),
        ({"method": "fast"}, "method: must be one of auto, structured, jacobian, ntvp"),
        ({"params": ["nope"]}, "params: no parameter named 'nope'"),
        ({"params": 3}, "params: must be None"),
        ({"dtype": torch.float16}, "dtype: must be torch.float32 or torch.float64"),
        ({"memory_budget": -1}, "memory_budget: must be a positive size"),
        ({"memory_budget": 1000}, "memory_budget: jacobian needs at least"),
    ],
)
def test_bad_arguments_get_one_line_errors(kwargs, message):
    model, x = make_model("mlp", n=4)
    kwargs.setdefault("method", "jacobian")
    with pytest.raises(ZerolossInputError) as err:
        entk(model, x, **kwargs)
    assert str(err.value).startswith(message)
    assert "\n" not in str(err.value)


class TupleOut(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.lin = nn.Linear(5, 2).double()

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.lin(x), x


class BatchMean(TupleOut):
    def forward(self, x: torch.Tensor) -> torch.Tensor:  # mixes the samples: no per-sample output
        return self.lin(x).mean(0, keepdim=True)


def test_bad_models_and_inputs_get_one_line_errors():
    model, x = make_model("mlp", n=4)
    model[0].weight.requires_grad_(False)
    cases = [
        (lambda: entk(model, x, params=["0.weight"]), "params: parameter '0.weight' has requires_grad=False"),
        (lambda: entk(model, x.long()), "x1: integer inputs (torch.int64) but the model does not accept them"),
        (lambda: entk(model, x, torch.randn(2, 4, dtype=torch.float64)), "x2: per-sample shape must equal x1's"),
        (lambda: entk(model, torch.randn(3, 7, dtype=torch.float64)), "x1: the model cannot be applied"),
        (lambda: entk(model, "x"), "x1: must be a torch.Tensor or a NumPy array"),
        (lambda: entk("model", x), "model: must be a torch.nn.Module"),
        (lambda: entk(nn.BatchNorm1d(5, track_running_stats=False), x), "model: BatchNorm"),
        (lambda: zeroloss.gram(model, x), "net: gram takes a zeroloss net (zeroloss.nets), got Sequential; for any "
                                          "torch.nn.Module use zeroloss.entk"),
        (lambda: entk(TupleOut(), x), "model: must return one tensor whose first axis is the batch"),
        (lambda: entk(BatchMean(), x), "model: must return one tensor whose first axis is the batch"),
    ]
    for call, message in cases:
        with pytest.raises(ZerolossInputError) as err:
            call()
        assert str(err.value).startswith(message), str(err.value)
        assert "\n" not in str(err.value)
