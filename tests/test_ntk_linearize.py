"""linearize: f_lin equals f at θ₀, is its first-order expansion, and trains like explicit GD on the linear model."""

from __future__ import annotations

import pytest
import torch
from torch import nn
from torch.func import functional_call, jacrev

from zeroloss.errors import ZerolossInputError
from zeroloss.ntk.linearize import Linearized, linearize

F64 = torch.float64


def mlp(seed=0, d=3, width=16, k=1):
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(d, width), nn.Tanh(), nn.Linear(width, width), nn.Softplus(),
                         nn.Linear(width, k)).double()


def flat_jacobian(net, x):
    """J (n·k, P) by torch.func.jacrev, parameters in named_parameters order (the test's reference)."""
    params = {k: v.detach() for k, v in net.named_parameters()}
    J = jacrev(lambda p: functional_call(net, p, (x,)))(params)
    rows = x.shape[0] * net(x).shape[-1]
    return torch.cat([J[k].reshape(rows, -1) for k in params], dim=1)


def flat(module_params):
    return torch.cat([p.detach().reshape(-1) for p in module_params])


def test_equals_the_model_at_theta0():
    net = mlp()
    x = torch.randn(9, 3, dtype=F64)
    lin = linearize(net)
    assert torch.allclose(lin(x), net(x), rtol=0, atol=1e-15)
    assert {k for k, _ in lin.named_parameters()} == {f"model.{k}" for k, _ in net.named_parameters()}


def test_is_the_first_order_expansion():
    """f_lin(θ₀ + εv) − f(θ₀) against the central difference [f(θ₀ + εv) − f(θ₀ − εv)]/2, whose truncation error
    is ε³|f'''|/6 ≈ 1e-12 at ε = 1e-4 (round-off eps·|f| ≈ 1e-16); f_lin is exactly linear along v."""
    net = mlp(seed=1)
    x = torch.randn(6, 3, dtype=F64)
    lin = linearize(net)
    gen = torch.Generator().manual_seed(3)
    v = {k: torch.randn(p.shape, generator=gen, dtype=F64) for k, p in net.named_parameters()}
    f0 = net(x)

    def real_at(scale):
        params = {k: p.detach() + scale * v[k] for k, p in net.named_parameters()}
        return functional_call(net, params, (x,))

    def lin_at(scale):
        with torch.no_grad():
            for k, p in lin.model.named_parameters():
                p.copy_(lin.theta0()[k] + scale * v[k])
            return lin(x)

    eps = 1e-4
    central = 0.5 * (real_at(eps) - real_at(-eps))
    assert torch.allclose(lin_at(eps) - f0, central, rtol=0, atol=1e-10)
    assert torch.allclose(lin_at(2 * eps) - f0, 2 * (lin_at(eps) - f0), rtol=1e-12, atol=1e-16)
    # and it is J v, with J from jacrev
    J = flat_jacobian(net, x)
    jv = J @ torch.cat([v[k].reshape(-1) for k, _ in net.named_parameters()])
    assert torch.allclose((lin_at(1.0) - f0).reshape(-1), jv, rtol=1e-12, atol=1e-13)


@pytest.mark.parametrize("k", [1, 2])
def test_sgd_trains_it_exactly_like_explicit_gd_on_the_linear_model(k):
    net = mlp(seed=2, k=k)
    x = torch.randn(8, 3, dtype=F64)
    y = torch.randn(8, k, dtype=F64)
    J = flat_jacobian(net, x)
    f0 = net(x).detach().reshape(-1)
    lr = 0.5 / float(torch.linalg.eigvalsh(J @ J.T)[-1])
    theta0 = flat(net.parameters())
    # explicit: δ ← δ − η Jᵀ(f₀ + Jδ − y)
    delta = torch.zeros_like(theta0)
    lin = linearize(net)
    opt = torch.optim.SGD(lin.parameters(), lr=lr)
    for _ in range(20):
        opt.zero_grad()
        loss = 0.5 * (lin(x) - y).pow(2).sum()
        loss.backward()
        opt.step()
        delta = delta - lr * J.T @ (f0 + J @ delta - y.reshape(-1))
    assert torch.allclose(flat(lin.parameters()) - theta0, delta, rtol=0, atol=1e-12)
    with torch.no_grad():
        assert torch.allclose(lin(x).reshape(-1), f0 + J @ delta, rtol=0, atol=1e-12)


def test_user_model_untouched_and_eval_mode():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(4, 8), nn.BatchNorm1d(8), nn.Dropout(0.5), nn.Tanh(), nn.Linear(8, 1)).double()
    net.train()
    x = torch.randn(10, 4, dtype=F64)
    net(x)  # moves BatchNorm's running statistics away from their initial values
    before = {k: v.clone() for k, v in net.state_dict().items()}
    lin = linearize(net)
    lin.train()
    assert lin.training and not lin.model.training
    with torch.no_grad():
        ref = net.eval()(x)
    net.train()
    assert torch.equal(lin(x), ref)  # eval mode: running statistics, no dropout (deterministic)
    opt = torch.optim.Adam(lin.parameters(), lr=1e-2)  # any torch.optim optimiser
    for _ in range(3):
        opt.zero_grad()
        lin(x).pow(2).sum().backward()
        opt.step()
    assert net.training
    for k, v in net.state_dict().items():
        assert torch.equal(v, before[k]), k
    assert not torch.equal(flat(lin.parameters()), flat(net.parameters()))


def test_selected_parameters_and_token_inputs():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Embedding(11, 5), nn.Flatten(), nn.Linear(15, 2)).double()
    tokens = torch.randint(0, 11, (6, 3))
    lin = linearize(net, params=["2.weight"])
    assert [k for k, p in lin.named_parameters() if p.requires_grad] == ["model.2.weight"]
    opt = torch.optim.SGD([p for p in lin.parameters() if p.requires_grad], lr=0.1)
    opt.zero_grad()
    lin(tokens).sum().backward()
    opt.step()
    assert torch.equal(lin.model[0].weight, net[0].weight)  # not linearised in: fixed
    # linear in the last layer's weight already, so the linearisation is exact there
    with torch.no_grad():
        real = functional_call(net, {"2.weight": lin.model[2].weight}, (tokens,))
        assert torch.allclose(lin(tokens), real, atol=1e-13)


def test_moves_with_to():
    lin = linearize(mlp()).to(torch.float32)
    assert all(t.dtype == torch.float32 for t in lin.theta0().values())
    assert lin(torch.randn(2, 3)).dtype == torch.float32


def test_bad_input():
    with pytest.raises(ZerolossInputError, match="^model:"):
        linearize("not a model")
    frozen = nn.Linear(2, 1).requires_grad_(False)
    with pytest.raises(ZerolossInputError, match="^params: the model has no trainable"):
        linearize(frozen)
    with pytest.raises(ZerolossInputError, match="^params: unknown"):
        linearize(nn.Linear(2, 1), params=["nope"])
    m = nn.Linear(2, 1)
    m.register_parameter("count", nn.Parameter(torch.zeros(1, dtype=torch.int64), requires_grad=False))
    with pytest.raises(ZerolossInputError, match="^params: parameters must be floating point"):
        linearize(m, params=["count"])
    assert isinstance(linearize(m), Linearized)
