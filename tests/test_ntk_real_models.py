"""The finite side on real models (issue 21, item 0): small stand-ins for every model family that broke
linearize / diagnose / entk — attention, embedding bags, in-place forwards, batch-coupled forwards, NumPy inputs —
and huge n under the default memory budget."""

from __future__ import annotations

import time
import warnings

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call, jacrev

from zeroloss import ZerolossInputError, diagnose, diagnose_memory_bytes, entk, entk_method, linearize
from zeroloss.budget import available_memory
from zeroloss.ntk.entk import _Job
from zeroloss.ntk.memory import MemoryRefusal
from zeroloss.ntk.model import eval_mode

F64 = torch.float64
METHODS = ["structured", "jacobian", "ntvp"]

pytestmark = pytest.mark.filterwarnings("ignore:There is a performance drop:UserWarning")


class MHA(nn.Module):
    def __init__(self):
        super().__init__()
        self.inp = nn.Linear(3, 8)
        self.attn = nn.MultiheadAttention(8, 2, batch_first=True)
        self.out = nn.Linear(8, 1)

    def forward(self, x):
        h = self.inp(x)
        h, _ = self.attn(h, h, h)
        return self.out(h).mean(dim=(1, 2))


class Encoder(nn.Module):
    def __init__(self):
        super().__init__()
        self.inp = nn.Linear(3, 8)
        self.enc = nn.TransformerEncoder(nn.TransformerEncoderLayer(8, 2, 16, dropout=0.1, batch_first=True), 2,
                                         enable_nested_tensor=False)
        self.out = nn.Linear(8, 2)

    def forward(self, x):
        return self.out(self.enc(self.inp(x))).mean(1)


class SDPA(nn.Module):
    def __init__(self):
        super().__init__()
        self.qkv = nn.Linear(3, 24)
        self.out = nn.Linear(8, 1)

    def forward(self, x):
        q, k, v = self.qkv(x).unsqueeze(1).chunk(3, dim=-1)  # (n, 1 head, T, 8)
        return self.out(F.scaled_dot_product_attention(q, k, v).squeeze(1)).mean(dim=(1, 2))


class Bag(nn.Module):
    """EmbeddingBag (no forward-mode AD in torch) or, with ``bag=False``, the same function by Embedding + mean."""

    def __init__(self, bag: bool = True):
        super().__init__()
        self.bag = bag
        self.emb = nn.EmbeddingBag(20, 6, mode="mean") if bag else nn.Embedding(20, 6)
        self.lin = nn.Linear(6, 16)
        self.out = nn.Linear(16, 2)

    def forward(self, x):
        h = self.emb(x) if self.bag else self.emb(x).mean(1)
        return self.out(torch.tanh(self.lin(h)))


class Doubling(nn.Module):
    """f(x) = W (2x) + b, written in place (``x.mul_(2)``) or not."""

    def __init__(self, inplace: bool):
        super().__init__()
        self.inplace = inplace
        self.lin = nn.Linear(3, 2)

    def forward(self, x):
        x = x.mul_(2) if self.inplace else x * 2
        return self.lin(torch.tanh(x))


class BatchStatistic(nn.Module):
    """Batch norm with the batch's statistics forced (``training=True``), or centring over the batch."""

    def __init__(self, kind: str):
        super().__init__()
        self.kind = kind
        self.lin = nn.Linear(3, 4)
        self.out = nn.Linear(4, 1)

    def forward(self, x):
        h = self.lin(x)
        if self.kind == "batch_norm":
            h = F.batch_norm(h, None, None, training=True)
        elif self.kind == "centre":
            h = h - h.mean(0, keepdim=True)
        elif self.kind == "dropout":
            h = F.dropout(h, 0.5, training=True)
        return self.out(torch.tanh(h))


def seeded(cls, *args):
    torch.manual_seed(0)
    return cls(*args).double()


def first_order_reference(model, x, theta):
    """f(x; θ₀) + J(x; θ₀)(θ − θ₀) by reverse mode (jacrev), with attention on differentiable primitives."""
    theta0 = {k: p.detach() for k, p in model.named_parameters()}
    with eval_mode(model):
        J = jacrev(lambda p: functional_call(model, p, (x,)))(theta0)
        f0 = model(x)
    rows = f0.numel()
    return f0 + sum(J[k].reshape(rows, -1) @ (theta[k] - theta0[k]).reshape(-1) for k in theta0).reshape(f0.shape)


def perturbed_linearization(model, x):
    lin = linearize(model)
    gen = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for p in lin.model.parameters():
            p.add_(0.05 * torch.randn(p.shape, generator=gen, dtype=p.dtype))
    theta = {k: p.detach() for k, p in lin.model.named_parameters()}
    return lin, lin(x), first_order_reference(model, x, theta)


# --- attention: linearize / diagnose through nn.MultiheadAttention, TransformerEncoderLayer, SDPA -----------------

@pytest.mark.parametrize("cls", [MHA, Encoder, SDPA])
def test_linearize_runs_through_attention_and_is_the_first_order_expansion(cls):
    """Round-off agreement (float64 ≤ 1e-12) with the reverse-mode reference f₀ + J δ; the attention fast-path flag
    of the caller is restored."""
    model = seeded(cls)
    x = torch.randn(5, 4, 3, dtype=F64)
    before = torch.backends.mha.get_fastpath_enabled()
    lin, out, ref = perturbed_linearization(model, x)
    assert lin.route == "jvp"
    assert torch.allclose(out, ref, rtol=0, atol=1e-12), (out - ref).abs().max()
    assert torch.backends.mha.get_fastpath_enabled() == before
    out.sum().backward()  # trainable: the gradient flows to θ
    assert all(p.grad is not None for p in lin.parameters() if p.requires_grad)


@pytest.mark.parametrize("cls", [MHA, Encoder])
def test_diagnose_runs_on_attention_models(cls):
    model = seeded(cls)
    X = torch.randn(6, 4, 3, dtype=F64)
    y = torch.randn(6, 1 if cls is MHA else 2, dtype=F64).squeeze(-1)
    d = diagnose(model, X, y, steps=3, alpha=False, threads=1, progress=False)
    assert np.isfinite(d.verdict.gap) and d.info["memory_bytes"] > 0
    # GD: the linearised model and the closed form agree to round-off (the self-check of diagnose)
    assert d.metric("gap_predicted")["value"].max() < 1e-8


ATTENTION_FILE = '''
import torch
from torch import nn


class Net(nn.Module):
    def __init__(self, width=8):
        super().__init__()
        self.inp = nn.Linear(8, width)
        self.layer = nn.TransformerEncoderLayer(width, 2, 16, dropout=0.0, batch_first=True)
        self.out = nn.Linear(width, 1)

    def forward(self, x):
        h = self.inp(x.reshape(x.shape[0], 2, 4).repeat(1, 1, 2))
        return self.out(self.layer(h)).mean(dim=(1, 2))


class Fails(Net):
    """Fails in the training loop: direct calls with its own nn.Parameters (entk and linearize call it with
    tensors through torch.func), after the input checks' few."""

    calls = 0

    def forward(self, x):
        if isinstance(self.out.weight, nn.Parameter):
            Fails.calls += 1
            if Fails.calls > 5:
                raise RuntimeError("the model broke mid-run")
        return super().forward(x)


def make(width=8):
    return Net(width)


def fails(width=8):
    return Fails(width)
'''


def test_cli_diagnose_on_an_attention_model_and_a_model_that_fails_while_training(tmp_path):
    from typer.testing import CliRunner

    from zeroloss.cli import app

    path = tmp_path / "attn.py"
    path.write_text(ATTENTION_FILE)
    runner = CliRunner()
    ok = runner.invoke(app, ["diagnose", "--model", f"{path}:make", "--n", "6", "--steps", "3", "--no-alpha",
                             "--threads", "1", "--out", str(tmp_path / "ok")])
    assert ok.exit_code == 0, ok.output + ok.stderr
    assert "Traceback" not in ok.output + ok.stderr and (tmp_path / "ok" / "diagnose.html").is_file()
    bad = runner.invoke(app, ["diagnose", "--model", f"{path}:fails", "--n", "6", "--steps", "20", "--no-alpha",
                              "--threads", "1", "--out", str(tmp_path / "bad")])
    lines = bad.stderr.strip().splitlines()
    assert bad.exit_code == 2 and len(lines) == 1, bad.output + bad.stderr
    assert lines[0].startswith("error: --model: ") and "the model broke mid-run" in lines[0]
    assert not (tmp_path / "bad").exists()


# --- the default memory budget ------------------------------------------------------------------------------------

def test_entk_default_budget_honours_zeroloss_max_bytes(monkeypatch):
    model = seeded(nn.Sequential, nn.Linear(3, 8), nn.Tanh(), nn.Linear(8, 1))
    x = torch.randn(600, 3, dtype=F64)  # the result alone: 600² · 8 B = 2.7 MiB
    monkeypatch.setenv("ZEROLOSS_MAX_BYTES", "1MiB")
    with pytest.raises(ZerolossInputError) as err:
        entk(model, x)
    message = str(err.value)
    assert message.startswith("x1: ") and "from ZEROLOSS_MAX_BYTES" in message and "\n" not in message
    monkeypatch.setenv("ZEROLOSS_MAX_BYTES", "64MiB")
    assert entk(model, x).shape == (600, 600)
    # an explicit cap names itself
    with pytest.raises(ZerolossInputError, match=r"^memory_budget: .*set by memory_budget"):
        entk(model, x, memory_budget=2**20)


def test_entk_and_diagnose_refuse_n_200000_before_allocating(monkeypatch):
    """n = 200 000: the kernel alone is 200 000² · 8 B = 298 GiB. Under the default budget (half the available
    memory, unless this machine has more than 600 GiB available) both refuse in one line, within seconds, naming
    the inputs."""
    if available_memory() > 600 * 2**30:
        pytest.skip("this machine could hold a 298 GiB kernel under the default budget")
    monkeypatch.delenv("ZEROLOSS_MAX_BYTES", raising=False)
    model = seeded(nn.Sequential, nn.Linear(3, 8), nn.Tanh(), nn.Linear(8, 1))
    X = torch.randn(200_000, 3, dtype=F64)
    y = torch.randn(200_000, dtype=F64)
    start = time.perf_counter()
    for call, field in ((lambda: entk(model, X), "x1: "), (lambda: entk_method(model, X), "x1: "),
                        (lambda: diagnose(model, X, y, steps=1, progress=False), "X: "),
                        (lambda: diagnose_memory_bytes(model, X, y), "X: ")):
        with pytest.raises(ZerolossInputError) as err:
            call()
        message = str(err.value)
        assert message.startswith(field) and "half of the" in message and "\n" not in message, message
        assert "GiB" in message and "200000" in message
    assert time.perf_counter() - start < 30  # nothing of the kernel's size was allocated or trained


def test_cli_diagnose_refuses_a_huge_n_up_front(tmp_path, monkeypatch):
    from typer.testing import CliRunner

    from zeroloss.cli import app

    path = tmp_path / "attn.py"
    path.write_text(ATTENTION_FILE)
    monkeypatch.setenv("ZEROLOSS_MAX_BYTES", "8GiB")
    result = CliRunner().invoke(app, ["diagnose", "--model", f"{path}:make", "--n", "40000", "--steps", "3",
                                      "--out", str(tmp_path / "out")])
    lines = result.stderr.strip().splitlines()
    assert result.exit_code == 2 and len(lines) == 1, result.output + result.stderr
    assert lines[0].startswith("error: --n: ") and "40000" in lines[0] and "from ZEROLOSS_MAX_BYTES" in lines[0]
    assert not (tmp_path / "out").exists()


def test_diagnose_memory_statement_grows_like_n_squared():
    model = seeded(nn.Sequential, nn.Linear(3, 8), nn.Tanh(), nn.Linear(8, 1))
    small, large = (diagnose_memory_bytes(model, torch.randn(n, 3, dtype=F64), torch.randn(n, dtype=F64))
                    for n in (400, 800))
    # Θ₀ and five N × N float64 temporaries at a probe, at least; their growth from n = 400 to 800 is in the statement
    assert 6 * 8 * 800**2 < large and large - small >= 6 * 8 * (800**2 - 400**2)


# --- nn.EmbeddingBag: no forward-mode AD --------------------------------------------------------------------------

def test_linearize_takes_the_reverse_route_for_embedding_bag():
    model = seeded(Bag)
    x = torch.randint(0, 20, (7, 4))
    lin, out, ref = perturbed_linearization(model, x)
    assert lin.route == "jacobian"
    assert torch.allclose(out, ref, rtol=0, atol=1e-12), (out - ref).abs().max()
    out.pow(2).sum().backward()
    grads = {k: p.grad for k, p in lin.model.named_parameters()}
    # the gradient of ½Σ f_lin² is J(θ₀)ᵀ f_lin: against the reference Jacobian
    theta0 = {k: p.detach() for k, p in model.named_parameters()}
    J = jacrev(lambda p: functional_call(model, p, (x,)))(theta0)
    for k in theta0:
        expected = torch.einsum("na,na...->...", 2 * out.detach(), J[k])
        assert torch.allclose(grads[k], expected, rtol=0, atol=1e-12)


def test_embedding_bag_in_entk_and_diagnose():
    model = seeded(Bag)
    x = torch.randint(0, 20, (6, 4))
    with pytest.raises(ZerolossInputError) as err:
        entk(model, x, method="ntvp")
    assert str(err.value).startswith("method: 'ntvp' needs forward-mode AD") and "_embedding_bag" in str(err.value)
    reference = entk(model, x, method="jacobian")
    assert torch.allclose(entk(model, x), reference, rtol=1e-12, atol=1e-12)
    y = torch.randn(6, 2, dtype=F64)
    d = diagnose(model, x, y, steps=3, alpha=False, threads=1, progress=False)
    assert d.linear.route == "jacobian" and d.metric("gap_predicted")["value"].max() < 1e-8


def test_auto_never_chooses_ntvp_for_a_model_without_forward_mode(monkeypatch):
    """Where structured does not fit (simulated: its plan refused) auto falls to ntvp for the Embedding twin, but
    never for the EmbeddingBag model: that one is refused with structured's message instead of failing in torch."""
    real_plan = _Job._plan

    def no_structured(self, method):
        if method == "structured":
            raise MemoryRefusal("memory_budget: structured needs at least 1 GiB (simulated)")
        if method == "jacobian":
            raise MemoryRefusal("memory_budget: jacobian needs at least 1 GiB (simulated)")
        return real_plan(self, method)

    monkeypatch.setattr(_Job, "_plan", no_structured)
    x = torch.randint(0, 20, (6, 4))
    assert entk_method(seeded(Bag, False), x) == "ntvp"
    with pytest.raises(ZerolossInputError, match="structured needs at least"):
        entk_method(seeded(Bag, True), x)


# --- in-place forwards ------------------------------------------------------------------------------------------

@pytest.mark.parametrize("method", ["auto", *METHODS])
def test_an_in_place_forward_changes_neither_the_kernel_nor_the_callers_tensor(method):
    x = torch.randn(5, 3, dtype=F64)
    x_copy = x.clone()
    inplace, plain = seeded(Doubling, True), seeded(Doubling, False)
    K = entk(inplace, x, method=method, outputs="full")
    assert torch.equal(x, x_copy)
    assert torch.allclose(K, entk(plain, x_copy, method=method, outputs="full"), rtol=1e-13, atol=1e-14)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        out = linearize(inplace)(x)
    assert torch.equal(x, x_copy) and torch.allclose(out, plain(x_copy), rtol=0, atol=1e-15)


# --- the method auto chose, NumPy inputs, batch-coupled forwards -------------------------------------------------

def test_entk_method_names_the_method_entk_uses():
    mlp = seeded(nn.Sequential, nn.Linear(3, 16), nn.Tanh(), nn.Linear(16, 2))
    x = torch.randn(8, 3, dtype=F64)
    assert entk_method(mlp, x) == "structured"
    assert entk_method(mlp, x, method="ntvp") == "ntvp"
    cnn = seeded(nn.Sequential, nn.Conv2d(2, 8, 3, padding=1), nn.Tanh(), nn.Conv2d(8, 1, 3, padding=1), nn.Flatten())
    assert entk_method(cnn, torch.randn(4, 2, 8, 8, dtype=F64)) == "jacobian"  # no product-form weight


def test_entk_accepts_numpy_inputs():
    model = seeded(nn.Sequential, nn.Linear(3, 16), nn.Tanh(), nn.Linear(16, 1))
    x = np.random.default_rng(0).standard_normal((6, 3))
    assert torch.equal(entk(model, x, x[:2]), entk(model, torch.as_tensor(x), torch.as_tensor(x[:2])))
    tokens = np.random.default_rng(1).integers(0, 20, (5, 4))
    bag = seeded(Bag)
    assert torch.equal(entk(bag, tokens), entk(bag, torch.as_tensor(tokens)))


@pytest.mark.parametrize("kind", ["batch_norm", "centre", "dropout"])
def test_a_batch_coupled_or_random_forward_is_refused(kind):
    model = seeded(BatchStatistic, kind)
    x = torch.randn(6, 3, dtype=F64)
    for method in ("auto", "jacobian"):
        with pytest.raises(ZerolossInputError) as err:
            entk(model, x, method=method)
        assert str(err.value).startswith("model: ") and "other samples of the batch" in str(err.value)
    with pytest.raises(ZerolossInputError, match="^model: "):
        diagnose(model, x, torch.randn(6, dtype=F64), steps=2, alpha=False, progress=False)


def test_per_sample_models_are_not_refused_by_the_coupling_check():
    """No false alarm: eval-mode BatchNorm and float32 deep nets (batched against unbatched round-off ≪ √eps)."""
    torch.manual_seed(0)
    bn = nn.Sequential(nn.Linear(3, 8), nn.BatchNorm1d(8), nn.Tanh(), nn.Linear(8, 1))
    bn.train()
    assert entk(bn, torch.randn(5, 3)).shape == (5, 5) and bn.training
    deep = nn.Sequential(*[m for _ in range(6) for m in (nn.Linear(64, 64), nn.GELU())], nn.Linear(64, 3))
    assert entk(deep, torch.randn(7, 64), dtype=torch.float32).isfinite().all()


# --- the diagnose page ------------------------------------------------------------------------------------------

def test_diagnose_page_says_eval_mode_and_wraps_the_verdict():
    from zeroloss.diagnosis.page import render_page

    model = seeded(nn.Sequential, nn.Linear(3, 16), nn.Tanh(), nn.Linear(16, 1), nn.Flatten(0))
    X, y = torch.randn(6, 3, dtype=F64), torch.randn(6, dtype=F64)
    d = diagnose(model, X, y, steps=3, alpha=False, threads=1, progress=False)
    html = render_page("t", [("run", d)], None, {})
    assert "Training ran in eval mode" in html
    assert '<pre class="verdict">' in html
    rule = html[html.index("pre.verdict {"):].split("}")[0]
    assert "white-space: pre-wrap" in rule and "overflow-wrap: anywhere" in rule
    assert max(len(line) for line in str(d.verdict).splitlines()) > 100  # the lines that must wrap at 800 px
