"""The structured method's machinery: both forms of every rule, the fallback decisions, in-place ops, restarts,
chunking. Every result is compared with the independent autograd reference of test_entk_zoo (1e-10 relative)."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from helpers import ZOO, assert_close_rel, loop_reference, make_model
from zeroloss import ZerolossInputError, entk
from zeroloss.ntk import rules
from zeroloss.ntk.entk import _Job


def _analysis(model: nn.Module, x: torch.Tensor, outputs: str = "trace"):
    job = _Job(model, x, None, None, outputs, "total", "structured", None, torch.float64)
    job.plan()
    return job.analysis


@pytest.mark.parametrize("form", ["product", "gradient"])
@pytest.mark.parametrize("name", ZOO)
def test_both_forms_of_every_rule_equal_the_reference(name, form, monkeypatch):
    # the cost model picks one form per weight; forcing each in turn checks the other one's arithmetic too
    monkeypatch.setattr(rules, "choose_form", lambda *args: form)
    model, x = make_model(name, n=3)
    reference = loop_reference(model, x)
    assert_close_rel(entk(model, x, outputs="full", method="structured"), reference)
    assert_close_rel(entk(model, x, method="structured"), reference.diagonal(dim1=2, dim2=3).sum(-1))


def test_cost_model_picks_product_form_for_dense_layers_and_gradient_form_for_many_pixels():
    mlp, x = make_model("mlp")
    assert {t.form for t in _analysis(mlp, x).terms if t.attr == "weight"} == {"product"}
    conv = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.Tanh(), nn.Flatten(), nn.Linear(8 * 16 * 16, 1)).double()
    forms = {t.name: t.form for t in _analysis(conv, torch.randn(4, 3, 16, 16, dtype=torch.float64)).terms}
    assert forms["0.weight"] == "gradient"  # T = 256 pixels: T² = 65536 per pair against 216 weights
    assert forms["3.weight"] == "product"  # one position, 2048 inputs


def test_fallback_decisions():
    transformer, x = make_model("transformer")
    a = _analysis(transformer, x)
    assert set(a.fallback) == {f"layer.self_attn.{p}" for p in ("in_proj_weight", "in_proj_bias", "out_proj.weight",
                                                                  "out_proj.bias")}  # used outside a hooked call
    assert {"layer.linear1.weight", "layer.linear2.weight", "layer.norm1.weight"} <= {t.name for t in a.terms}
    tied, ids = make_model("tied-twice")
    a = _analysis(tied, ids)
    assert a.fallback == ["embed.weight"]  # tied to the decoder
    assert "shared.weight" in {t.name for t in a.terms}  # called twice: more positions, still structured
    gru, ids = make_model("embed-gru")
    assert _analysis(gru, ids).fallback == ["gru.weight_ih_l0", "gru.weight_hh_l0", "gru.bias_ih_l0", "gru.bias_hh_l0"]


class InPlace(nn.Module):
    """BatchNorm output modified in place by a residual += and ReLU(inplace=True), as torchvision's ResNet does."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv1d(3, 3, 3, padding=1)
        self.bn = nn.BatchNorm1d(3)
        self.relu = nn.ReLU(inplace=True)
        self.head = nn.Linear(3 * 6, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.bn(self.conv(x))
        out += x
        out = self.relu(out)
        return self.head(torch.tanh(out).flatten(1))


class UsedOutside(nn.Module):
    """A Linear called normally and its weight also used directly (the rule alone would miss that use)."""

    def __init__(self) -> None:
        super().__init__()
        self.lin = nn.Linear(4, 4)
        self.out = nn.Linear(4, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = torch.tanh(self.lin(x))
        return self.out(torch.tanh(h @ self.lin.weight.T))


class SequenceFirst(nn.Module):
    """Applies a Linear to a (T, n, d) tensor: its first axis is not the samples."""

    def __init__(self) -> None:
        super().__init__()
        self.lin = nn.Linear(3, 3)
        self.out = nn.Linear(3, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # x (n, T, 3)
        h = torch.tanh(self.lin(x.transpose(0, 1)))  # (T, n, 3)
        return self.out(h.mean(0))


class SwitchesWithBatchSize(nn.Module):
    """Uses its Linear through the module for batches of ≥ 3 samples and through F.linear for smaller ones: the
    probe batch (5 samples) accepts it, a chunk of 2 samples breaks the rule and forces a restart."""

    def __init__(self) -> None:
        super().__init__()
        self.lin = nn.Linear(3, 5)
        self.out = nn.Linear(5, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.lin(x) if x.shape[0] >= 3 else nn.functional.linear(x, self.lin.weight, self.lin.bias)
        return self.out(torch.tanh(h))


@pytest.mark.parametrize(
    ("cls", "shape", "fallback"),
    [
        (InPlace, (5, 3, 6), []),
        (UsedOutside, (5, 4), ["lin.weight", "lin.bias"]),
        (SequenceFirst, (5, 4, 3), ["lin.weight", "lin.bias"]),
    ],
)
def test_unusual_forwards_are_detected_and_still_exact(cls, shape, fallback):
    torch.manual_seed(0)
    model = cls().double()
    x = torch.randn(*shape, dtype=torch.float64)
    a = _analysis(model, x)
    assert a.fallback == fallback
    if cls is InPlace:
        assert a.clone_out == {"bn"}  # the copy is taken at the value BatchNorm produced
    assert_close_rel(entk(model, x, outputs="full", method="structured"), loop_reference(model, x))


def test_a_probe_size_that_occurs_in_another_axis_is_resolved_by_the_next_size():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(3, 5), nn.Tanh(), nn.Linear(5, 1)).double()  # hidden width 5 = first probe size
    x = torch.randn(4, 3, dtype=torch.float64)
    assert _analysis(model, x).fallback == []
    assert_close_rel(entk(model, x, method="structured"), loop_reference(model, x)[..., 0, 0])


def test_a_chunk_that_breaks_the_probes_decision_restarts_on_the_fallback_path():
    torch.manual_seed(0)
    model = SwitchesWithBatchSize().double()
    x = torch.randn(6, 3, dtype=torch.float64)
    budget = _Job(model, x, None, None, "trace", "total", "structured", None, torch.float64)
    assert budget.plan().rows == 6
    small = _small_budget(model, x, rows=2)
    job = _Job(model, x, None, None, "trace", "total", "structured", small, torch.float64)
    assert job.plan().rows == 2 and job.analysis.fallback == []
    K = job.run()
    assert "lin.weight" in job.analysis.fallback  # moved by the restart
    assert_close_rel(K, loop_reference(model, x)[..., 0, 0])


def _small_budget(model, x, rows: int, method: str = "structured", x2=None, outputs: str = "trace",
                  by: str = "total") -> int:
    """The smallest memory_budget whose plan has chunks of ``rows`` samples (bisection on the planner, which is cheap
    once the job has measured the model)."""
    job = _Job(model, x, x2, None, outputs, by, method, None, torch.float64)
    lo, hi = 1, 1 << 32
    while lo < hi:
        job.memory_budget = mid = (lo + hi) // 2
        try:
            got = job.plan().rows
        except ZerolossInputError:
            got = 0
        if got >= rows:
            hi = mid
        else:
            lo = mid + 1
    return lo


@pytest.mark.parametrize("method", ["structured", "jacobian", "ntvp"])
def test_chunked_kernels_equal_the_one_chunk_kernels(method):
    model, x = make_model("cnn1d", n=7)
    _, x2 = make_model("cnn1d", n=5, seed=4)
    whole_sq = entk(model, x, outputs="full", method=method)
    whole_x = entk(model, x, x2, method=method, by="module")
    # one-sample chunks for the structured method; the references' per-chunk vmap set-up makes them slow there
    for rows in (1, 3) if method == "structured" else (3,):
        small = _small_budget(model, x, rows, method, outputs="full")
        assert_close_rel(entk(model, x, outputs="full", method=method, memory_budget=small), whole_sq, rtol=1e-13)
        small = _small_budget(model, x, rows, method, x2=x2, by="module")
        parts = entk(model, x, x2, method=method, by="module", memory_budget=small)
        for key in whole_x:
            assert_close_rel(parts[key], whole_x[key], rtol=1e-13)


@pytest.mark.parametrize("name", ["multi-head", "resnet-bn", "transformer", "tied-twice"])
def test_batched_cotangents_equal_the_loop(name, monkeypatch):
    # the CPU runs one backward pass per output; CUDA batches them with is_grads_batched: check that path here
    from zeroloss.ntk import structured

    monkeypatch.setitem(structured.BATCHED_COTANGENTS, "cpu", True)
    model, x = make_model(name, n=3)
    assert_close_rel(entk(model, x, outputs="full", method="structured"), loop_reference(model, x))



def test_auto_takes_the_jacobian_method_when_no_weight_gains_from_the_product_form():
    """A convolution over 64 pixels takes the gradient form, which is the Jacobian method's own arithmetic: with no
    weight in the product form auto runs "jacobian" (no hooks, no probe batch); a dense net, whose weights take the
    product form, keeps "structured". Either way the kernel is the explicit methods'."""
    torch.manual_seed(0)
    conv = nn.Sequential(nn.Conv2d(2, 4, 3, padding=1), nn.Tanh(), nn.AdaptiveAvgPool2d(1), nn.Flatten()).double()
    dense = nn.Sequential(nn.Linear(5, 32), nn.Tanh(), nn.Linear(32, 1)).double()
    for model, x, expected in ((conv, torch.randn(6, 2, 8, 8, dtype=torch.float64), "jacobian"),
                               (dense, torch.randn(6, 5, dtype=torch.float64), "structured")):
        job = _Job(model, x, None, None, "trace", "total", "auto", None, torch.float64)
        job._analyse()
        has_product = any(t.form == "product" for t in job.analysis.terms)
        assert has_product == (expected == "structured")
        assert job.plan().method == expected
        reference = entk(model, x, method="structured")
        assert_close_rel(entk(model, x), reference, rtol=1e-12)
        assert_close_rel(entk(model, x, method="jacobian"), reference, rtol=1e-12)
