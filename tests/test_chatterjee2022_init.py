"""The feedforward net of docs/theory.md §2.2 and the initialisations of init.py."""

import math

import pytest
import torch

from zeroloss.errors import ZerolossInputError
from zeroloss.kernels.empirical import gram
from zeroloss.kernels.jacobian import gram_jacobian
from zeroloss.nets import FeedForward
from zeroloss.papers.chatterjee2022.init import INITIALISERS, initialise


def test_forward_matches_the_formula():
    net = FeedForward(3, [4, 5], "tanh", dtype=torch.float64, seed=1)
    X = torch.randn(6, 3, dtype=torch.float64)
    z = torch.tanh(X @ net.W1[0].T + net.b1[0])
    z = torch.tanh(z @ net.W2[0].T + net.b2[0])
    assert torch.allclose(net(X)[0], z @ net.v[0] + net.c[0], atol=1e-14)


def test_gram_with_biases_equals_jacobian_contraction():
    net = FeedForward(3, [6, 5], "softplus", members=2, dtype=torch.float64, seed=0)
    X = torch.randn(7, 3, dtype=torch.float64)
    G, GJ = gram(net, X), gram_jacobian(net, X)
    assert float((G - GJ).norm() / GJ.norm()) <= 1e-10


def test_member_k_equals_single_net_with_seed_plus_k():
    net = FeedForward(3, [4], "tanh", members=3, seed=5, dtype=torch.float64, init="kaiming")
    X = torch.randn(5, 3, dtype=torch.float64)
    for k in range(3):
        single = FeedForward(3, [4], "tanh", members=1, seed=5 + k, dtype=torch.float64, init="kaiming")
        assert torch.allclose(net(X)[k], single(X)[0], rtol=1e-13, atol=1e-13)


@pytest.mark.parametrize("name, variance", [
    ("kaiming", lambda fan_in, fan_out: 2.0 / fan_in),
    ("lecun", lambda fan_in, fan_out: 1.0 / fan_in),
    ("xavier", lambda fan_in, fan_out: 2.0 / (fan_in + fan_out)),
    ("torch_default", lambda fan_in, fan_out: 1.0 / (3.0 * fan_in)),  # U(±1/√fan_in)
    ("gaussian", lambda fan_in, fan_out: 1.0),
])
def test_initialisation_laws_have_their_variance(name, variance):
    net = FeedForward(200, [300], "tanh", members=1, seed=0, dtype=torch.float64, init=name)
    W = net.W1[0].detach()
    expected = variance(200, 300)
    # 60 000 i.i.d. draws: the sample variance's relative standard error is √(2/N) ≈ 0.6 % (Gaussian) and less
    # for the uniform law; 4 % is over six standard errors.
    assert float(W.var()) == pytest.approx(expected, rel=0.04)
    assert abs(float(W.mean())) < 5 * math.sqrt(expected / W.numel())


def test_initialisers_are_deterministic_per_seed_and_registered():
    assert {"positive", "kaiming", "xavier", "lecun", "torch_default", "gaussian"} <= set(INITIALISERS)
    a = FeedForward(4, [5], "tanh", seed=3, dtype=torch.float64, init="xavier")
    b = FeedForward(4, [5], "tanh", seed=3, dtype=torch.float64, init="xavier")
    assert all(torch.equal(p, q) for p, q in zip(a.parameters(), b.parameters(), strict=True))


def test_unknown_initialiser_names_the_field():
    net = FeedForward(4, [5], "tanh", init=None)
    with pytest.raises(ZerolossInputError, match="init: must be one of"):
        initialise(net, "orthogonal")


def test_the_net_refuses_a_law_that_needs_data_and_names_the_entry_point():
    with pytest.raises(ZerolossInputError, match=r"init: .*zeroloss.initialise\(net, 'positive'"):
        FeedForward(4, [5, 5], "tanh", init="positive")
    with pytest.raises(ZerolossInputError, match="init: must be one of"):
        FeedForward(4, [5], "tanh", init=["lecun"])


def test_positive_uniform_hidden_weights_differ_by_seed_and_by_unit():
    from zeroloss.data import sphere_data

    X, y = sphere_data(n=4, d=8, seed=0)
    net = FeedForward(8, [6, 6, 6], "tanh", members=2, dtype=torch.float64, init=None)
    info = initialise(net, "positive", X=X, y=y, radius=0.02, hidden=(0.1, 0.3))
    W2 = net.W2.detach()
    assert bool((W2 >= 0.1).all() and (W2 <= 0.3).all()) and not torch.equal(W2[0], W2[1])  # seeds differ
    assert W2[0].unique().numel() == W2[0].numel()  # every unit's weights differ
    assert torch.all(net.W1 == 0) and info["M"][0] != info["M"][1]  # each member its own certified M


@pytest.mark.parametrize("options, field", [
    ({"hidden": float("nan")}, "hidden"), ({"hidden": (0.3, 0.1)}, "hidden"), ({"hidden": (0.1,)}, "hidden"),
    ({"hidden": -1.0}, "hidden"), ({"radius": float("inf")}, "radius"), ({"radius": 1e-300}, "radius"),
    ({"rho": 1.0}, "rho"), ({"M": float("nan"), "radius": None}, "M"),
])
def test_positive_options_are_checked_with_one_line_errors(options, field):
    from zeroloss.data import sphere_data

    X, y = sphere_data(n=4, d=8, seed=0)
    net = FeedForward(8, [6, 6], "tanh", dtype=torch.float64, init=None)
    with pytest.raises(ZerolossInputError, match=rf"^{field}: "):
        initialise(net, "positive", **{"X": X, "y": y, "radius": 0.02, **options})


def _imports(path) -> set[str]:
    """Every module a source file imports, at top level or inside functions (AST, not executed)."""
    import ast

    tree = ast.parse(path.read_text())
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            found.add(node.module)
    return found


def test_layering_init_above_the_net_and_theory_never_trains():
    """No import cycle between init.py and nets/feedforward.py (the net and its laws never import init.py), and the
    Chatterjee theory modules are functions of measured quantities: they never import the trainer, the
    initialisers or the experiments."""
    from pathlib import Path

    import zeroloss

    root = Path(zeroloss.__file__).parent
    for name in ("nets/feedforward.py", "nets/laws.py"):
        assert "zeroloss.papers.chatterjee2022.init" not in _imports(root / name), name
    wing = root / "papers" / "chatterjee2022"
    assert "zeroloss.nets.feedforward" in _imports(wing / "init.py")
    never = ("zeroloss.train.gd", "zeroloss.papers.chatterjee2022.init", "zeroloss.papers.chatterjee2022.runs",
             "zeroloss.papers.chatterjee2022.experiments", "zeroloss.papers.chatterjee2022.claims")
    for name in ("theory.py", "bounds.py", "reduction.py"):
        bad = {m for m in _imports(wing / name) if m.startswith(never)}
        assert not bad, (name, bad)
