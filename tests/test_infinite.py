"""zeroloss.infinite: the NNGP and NTK of a user's nn.Module.

Agreement with Neural Tangents' stax uses reference kernels NT 0.6.5 computed (tests/data/nt_stax_reference.json,
written by ``benchmarks/bench_infinite_nt_side.py --n 4``; NT is not a test dependency): ≤ 1e-10 relative off the
diagonal for closed forms, and ≤ 1e-7 on it, where NT's arctan2 of √(K_ii K_jj − K_ij²) with K_ii K_jj and K_ij²
from different round-offs loses half the digits (√1e-16 ≈ 1e-8) and ours is exact (θ = 0).
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from benchmarks import bench_infinite_nt as B
from torch import nn

import zeroloss
from zeroloss.errors import ZerolossInputError
from zeroloss.infinite import elementwise as ew
from zeroloss.infinite import infinite_kernel, infinite_kernel_memory_bytes
from zeroloss.kernels.gaussian import CLOSED_FORMS, bivariate_expectations

REFERENCE = json.loads((Path(__file__).parent / "data" / "nt_stax_reference.json").read_text())["kernels"]
NT_ARCHS = sorted({k.split("/")[0] for k in REFERENCE})


@pytest.mark.parametrize("name", NT_ARCHS)
def test_agrees_with_neural_tangents(name):
    res = B.ours(name, 4)
    off = ~np.eye(4, dtype=bool)
    for kind in ("nngp", "ntk"):
        ref = np.asarray(REFERENCE[f"{name}/{kind}"])
        mine = getattr(res, kind).numpy()
        scale = np.abs(ref).max()
        assert np.abs(mine - ref)[off].max() / scale <= 1e-10, (name, kind)
        assert np.abs(np.diag(mine) - np.diag(ref)).max() / scale <= 1e-7, (name, kind)


def _blocks(seed=0, size=50):
    g = torch.Generator().manual_seed(seed)
    a = torch.rand(size, generator=g, dtype=torch.float64) * 2 + 0.1
    c = torch.rand(size, generator=g, dtype=torch.float64) * 2 + 0.1
    rho = torch.rand(size, generator=g, dtype=torch.float64) * 1.98 - 0.99
    return a, rho * torch.sqrt(a * c), c


@pytest.mark.parametrize("name", ["gelu", "erf"])
def test_smooth_closed_forms_match_quadrature(name):
    # smooth σ: the 200-node tensor Gauss–Hermite rule is exact to round-off at these variances (≤ 2.1)
    a, b, c = _blocks()
    nl = ew.NONLINEARITIES[name]
    closed = ew.expectations(nl, a, b, c, nodes=200)
    quad = ew.expectations(nl, a, b, c, nodes=200, force_quadrature=True)
    for p in ("ss", "dd"):
        assert torch.allclose(closed[p], quad[p], rtol=0, atol=1e-11), p


def test_relu_and_leaky_relu_closed_forms():
    # ReLU: the atan2 form equals the arccos form of zeroloss.kernels.gaussian off the diagonal, and is exactly
    # 1/2 (dd) and a/2 (ss) on it; LeakyReLU(α) = ReLU(x) − α ReLU(−x) expands into four ReLU expectations.
    a, b, c = _blocks(1)
    relu = CLOSED_FORMS["relu"]
    mine = ew.expectations(ew.NONLINEARITIES["relu"], a, b, c, nodes=8)
    assert torch.allclose(mine["ss"], relu.ss(a, b, c), rtol=1e-13, atol=0)
    assert torch.allclose(mine["dd"], relu.dd(a, b, c), rtol=1e-13, atol=0)
    on = ew.expectations(ew.NONLINEARITIES["relu"], a, a, a, nodes=8)
    assert torch.equal(on["dd"], torch.full_like(a, 0.5)) and torch.allclose(on["ss"], a / 2, rtol=1e-15)
    alpha = 0.2
    leaky = ew.expectations(ew.leaky_relu(alpha), a, b, c, nodes=8)
    ss = (1 + alpha**2) * relu.ss(a, b, c) - 2 * alpha * relu.ss(a, -b, c)
    dd = (1 + alpha**2) * relu.dd(a, b, c) + 2 * alpha * relu.dd(a, -b, c)
    assert torch.allclose(leaky["ss"], ss, rtol=1e-12, atol=1e-15)
    assert torch.allclose(leaky["dd"], dd, rtol=1e-12, atol=1e-15)


def test_quadrature_activation_states_its_error():
    net = nn.Sequential(nn.Linear(3, 16), nn.SiLU(), nn.Linear(16, 1))
    X = torch.randn(4, 3, dtype=torch.float64)
    res = infinite_kernel(net, X)
    assert 0 < res.quadrature_error < 1e-8
    assert ["quadrature" in v for v in res.expectations.values()] == [True]
    # the stated error bounds the difference to a much finer rule
    finer = infinite_kernel(net, X, nodes=300)
    assert (res.nngp - finer.nngp).abs().max() <= 10 * res.quadrature_error + 1e-15
    # and the registry activations go through the same machinery
    sig = bivariate_expectations(torch.ones(1), torch.full((1,), 0.3), torch.ones(1), "sigmoid", method="quadrature")
    assert torch.isfinite(sig["ss"]).all()


class _Hooked(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(3, 8)
        self.calls = 0
        self.fc.register_forward_hook(lambda *a: setattr(self, "calls", self.calls + 1))

    def forward(self, x):
        return torch.sin(self.fc(x))


@pytest.mark.parametrize("build, op", [
    (lambda: nn.Sequential(nn.Conv2d(2, 4, 3), nn.MaxPool2d(2), nn.Flatten(), nn.Linear(4, 1)), "MaxPool2d"),
    (lambda: nn.Sequential(nn.Linear(3, 4), nn.Softmax(dim=1)), "Softmax"),
])
def test_unsupported_op_refused_by_name(build, op):
    X = torch.randn(3, 2, 6, 6) if "Conv" in repr(build()) else torch.randn(3, 3)
    with pytest.raises(ZerolossInputError, match=rf"node .*{op}.*has no infinite-width rule; supported: nn.Linear"):
        infinite_kernel(build(), X)


def test_refusal_comes_before_any_compute():
    net = _Hooked()
    with pytest.raises(ZerolossInputError, match=r"node 'sin' \(function torch.sin\) has no infinite-width rule"):
        infinite_kernel(net, torch.randn(3, 3))
    assert net.calls == 0


class _Shared(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(3, 8)
        self.out = nn.Linear(8, 1)

    def forward(self, x):
        h = torch.relu(self.fc(x))
        return self.out(h + h)


class _LNAfterReLU(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc, self.ln, self.out = nn.Linear(3, 8), nn.LayerNorm(8), nn.Linear(8, 1)

    def forward(self, x):
        return self.out(self.ln(torch.relu(self.fc(x))))


@pytest.mark.parametrize("net, message", [
    (_Shared(), "share randomness"),
    (_LNAfterReLU(), "not a zero-mean Gaussian"),
    (nn.Sequential(nn.Linear(3, 8), nn.Flatten(), nn.Linear(8, 1)), None),  # flatten of (n, d): fine
])
def test_structural_checks(net, message):
    X = torch.randn(3, 3, dtype=torch.float64)
    if message is None:
        assert infinite_kernel(net, X).ntk.shape == (3, 3)
    else:
        with pytest.raises(ZerolossInputError, match=message):
            infinite_kernel(net, X)


def test_multi_output_is_identity_times_scalar_kernel():
    torch.manual_seed(0)
    one = nn.Sequential(nn.Linear(3, 32), nn.ReLU(), nn.Linear(32, 1))
    three = nn.Sequential(nn.Linear(3, 32), nn.ReLU(), nn.Linear(32, 3))
    X = torch.randn(5, 3, dtype=torch.float64)
    a, b = infinite_kernel(one, X, init="default"), infinite_kernel(three, X, init="default")
    assert b.outputs == 3 and "K[i, j] · I_3" in b.output_structure
    assert torch.equal(a.ntk, b.ntk) and torch.equal(a.nngp, b.nngp)


def test_laws_default_given_measured():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(50, 400), nn.ReLU(), nn.Linear(400, 1))
    res = infinite_kernel(net, torch.randn(3, 50, dtype=torch.float64))
    assert res.laws["0"].source == "pytorch-default" and math.isclose(res.laws["0"].sigma_w2, 1 / 3)
    assert math.isclose(res.laws["0"].sigma_b2, 1 / 150)
    with torch.no_grad():
        net[0].weight.normal_(0, 2 / math.sqrt(50))
        net[2].bias.fill_(5.0)
    with pytest.warns(UserWarning, match=r"init: 2.bias has too few entries"):
        res = infinite_kernel(net, torch.randn(3, 50, dtype=torch.float64))
    law = res.laws["0"]
    assert law.source == "measured weight, pytorch-default bias" and law.tolerance < 0.1
    assert abs(law.sigma_w2 / 4 - 1) <= law.tolerance  # 3 standard errors
    assert res.laws["2"].sigma_b2 == 25.0 and res.laws["2"].tolerance == math.inf
    res = infinite_kernel(net, torch.randn(3, 50, dtype=torch.float64), init={"0": (2.0, 0.0), "2": (1.0, 0.1)})
    assert res.laws["0"].source == "given" and res.laws["2"].sigma_b2 == 0.1
    with pytest.raises(ZerolossInputError, match="init: 'fc' is not a linear layer"):
        infinite_kernel(net, torch.randn(3, 50), init={"fc": (1.0, 0.0)})


def test_ntk_parameterisation_is_width_independent():
    X = torch.randn(4, 3, dtype=torch.float64)
    out = {}
    for m in (16, 1024):
        net = nn.Sequential(nn.Linear(3, m), nn.GELU(), nn.Linear(m, m), nn.ReLU(), nn.Linear(m, 1))
        init = {"0": (2.0, 0.1), "2": (2.0, 0.1), "4": (1.0, 0.1)}
        out[m] = (infinite_kernel(net, X, init=init, parameterisation="ntk"), infinite_kernel(net, X, init=init))
    assert torch.allclose(out[16][0].ntk, out[1024][0].ntk, rtol=1e-14)
    assert torch.allclose(out[16][0].nngp, out[16][1].nngp, rtol=1e-14)  # the NNGP does not depend on it
    assert out[1024][1].ntk.max() > 50 * out[16][1].ntk.max() / 64 * 0.9  # standard: grows with width


def _cnn(width=8, channels=2):
    class Block(nn.Module):
        def __init__(self):
            super().__init__()
            self.c1, self.c2 = nn.Conv2d(width, width, 3, padding=1), nn.Conv2d(width, width, 3, padding="same")

        def forward(self, x):
            return x + self.c2(torch.relu(self.c1(x)))

    class CNN(nn.Module):
        def __init__(self):
            super().__init__()
            self.stem, self.block = nn.Conv2d(channels, width, 3, padding=1), Block()
            self.down = nn.Conv2d(width, width, 3, stride=2, padding=1)
            self.head = nn.Linear(width, 1)

        def forward(self, x):
            x = nn.functional.gelu(self.down(self.block(self.stem(x))))
            return self.head(x.mean(dim=(2, 3)))

    return CNN()


def test_blocks_and_cross_kernels_are_consistent():
    torch.manual_seed(1)
    net = _cnn()
    X = torch.randn(7, 2, 5, 5, dtype=torch.float64)
    whole = infinite_kernel(net, X)
    tiny = infinite_kernel(net, X, block_bytes=1)  # one row per block
    assert tiny.block_rows == 1 and whole.block_rows == 7
    assert torch.allclose(whole.ntk, tiny.ntk, rtol=1e-14) and torch.equal(whole.ntk, whole.ntk.T)
    cross = infinite_kernel(net, X[:3], X[3:])
    assert torch.allclose(cross.ntk, whole.ntk[:3, 3:], rtol=1e-13)
    assert torch.allclose(cross.nngp, whole.nngp[:3, 3:], rtol=1e-13)


def test_memory_is_stated_and_checked_before_allocating():
    net = _cnn()
    need = infinite_kernel_memory_bytes(net, (2, 5, 5), n1=7)
    res = infinite_kernel(net, torch.randn(7, 2, 5, 5, dtype=torch.float64))
    assert res.memory_bytes == need and res.layout == "full"
    with pytest.raises(ZerolossInputError, match="X: "):
        infinite_kernel(net, torch.randn(7, 2, 5, 5), memory_budget=need // 2)


def test_limit_kernel_dispatches_user_modules():
    net = nn.Sequential(nn.Linear(3, 8), nn.Tanh(), nn.Linear(8, 1))
    X = torch.randn(4, 3, dtype=torch.float64)
    res = zeroloss.limit_kernel(X, net, kind="ntk")
    assert res.nngp is None and torch.equal(res.ntk, infinite_kernel(net, X, kind="ntk").ntk)
    with pytest.raises(ZerolossInputError, match="depth: applies to the lab's nets only"):
        zeroloss.limit_kernel(X, net, depth=2)
    lab = zeroloss.limit_kernel(X / X.norm(dim=1, keepdim=True), "fc", depth=2, activation="erf")
    assert lab.shape == (4, 4)  # the lab's path, default kind "du", unchanged


def _reinit(net):
    """Gaussian weights with PyTorch's default variances (1/(3 fan_in) for W and b): the limit assumes Gaussian
    pre-activations, and a first layer sums only d (or C·k²) inputs, so its uniform default draw is not Gaussian
    (at d = 3 the NTK's mean was 3 % off); from the second layer on the sum over the width makes it Gaussian."""
    for m in net.modules():
        if isinstance(m, (nn.Linear, nn.Conv2d)):
            fan = m.weight[0].numel()
            with torch.no_grad():
                m.weight.normal_(0, (1 / (3 * fan)) ** 0.5)
                m.bias.normal_(0, (1 / (3 * fan)) ** 0.5)


def _mc(net, X, seeds):
    torch.manual_seed(1234)
    ntk, nngp = [], []
    for _ in range(seeds):
        _reinit(net)
        ntk.append(zeroloss.entk(net, X))
        with torch.no_grad():
            f = net(X)
        nngp.append(f @ f.T)
    return torch.stack(ntk), torch.stack(nngp)


@pytest.mark.slow
def test_monte_carlo_mean_is_the_limit_one_hidden_layer():
    """With one hidden layer E[entk] and E[f fᵀ] over Gaussian weights of PyTorch's default variances *equal* the
    limit at every width (the
    hidden Gram's mean is exactly E_w[σ(w·x_i)σ(w·x_j)]), so the MC mean must be within z standard errors of it:
    z = 4.5 over the 10 distinct entries of each kernel (two-sided Bonferroni at 10 × 2 × 7e-6)."""
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(3, 256), nn.GELU(), nn.Linear(256, 1)).double()
    X = torch.randn(4, 3, dtype=torch.float64)
    limit = infinite_kernel(net, X, init="default")
    ntk, nngp = _mc(net, X, 48)
    # power: f fᵀ of one output fluctuates by O(1) of itself (48 draws: SE ≈ 1/7 of it), the NTK concentrates
    for samples, ref, power in ((ntk, limit.ntk, 0.03), (nngp, limit.nngp, 0.5)):
        se = samples.std(0) / math.sqrt(samples.shape[0])
        assert ((samples.mean(0) - ref).abs() <= 4.5 * se).all()
        assert (se < power * ref.abs().max()).all()  # the test can see an error of a few times ``power``


@pytest.mark.slow
def test_monte_carlo_cnn_converges_with_width():
    """The residual CNN (strided conv, global average pooling): ‖E_S[entk] − Θ_∞‖/‖Θ_∞‖ at width m is bias b_m plus
    noise of standard error se_m; b_m = O(1/m). With 48 re-initialisations: at m = 64 the error is within
    4 se + 2·(err at m = 4)·4/64 (the 1/m bias carried from width 4, doubled), and smaller than at m = 4."""
    X = torch.randn(3, 2, 5, 5, dtype=torch.float64)
    errs, ses = {}, {}
    for m in (4, 64):
        torch.manual_seed(m)
        net = _cnn(width=m).double()
        limit = infinite_kernel(net, X, init="default")
        ntk, _ = _mc(net, X, 48)
        errs[m] = float((ntk.mean(0) - limit.ntk).norm() / limit.ntk.norm())
        ses[m] = float(ntk.std(0).norm() / math.sqrt(48) / limit.ntk.norm())
    assert errs[64] <= 4 * ses[64] + 2 * errs[4] * 4 / 64
    assert errs[64] < errs[4]


@pytest.mark.slow
def test_diagnose_widths_reports_the_distance_to_the_limit():
    def make_net(width):
        return nn.Sequential(nn.Linear(4, width), nn.Tanh(), nn.Linear(width, 1)).double()

    X, y = zeroloss.sphere_data(n=6, d=4, seed=0)
    sweep = zeroloss.diagnose_widths(make_net, [16, 256], X, y, steps=4, probe_every=4, threads=1, progress=False)
    dist = sweep.table["limit_distance"]
    assert dist.notna().all() and (dist > 0).all() and "limit_distance" in sweep.slopes
    assert sweep.table["final_loss_predicted_limit"].notna().all()
    assert "Theta_inf" in str(sweep)
    # the distance is ‖Θ_m(0) − Θ_∞‖/‖Θ_∞‖ of the initial model, as entk and infinite_kernel give it
    from zeroloss.diagnosis.widths import build

    net = build(make_net, 16, 0)
    ref = infinite_kernel(net, X, kind="ntk").ntk
    assert math.isclose(dist.iloc[0], float((zeroloss.entk(net, X) - ref).norm() / ref.norm()), rel_tol=1e-10)

    class NoLimit(nn.Module):
        def __init__(self, m):
            super().__init__()
            self.W = nn.Parameter(torch.randn(m, 4, dtype=torch.float64))

        def forward(self, x):
            return torch.tanh(x @ self.W.T).sum(1, keepdim=True)

    sweep = zeroloss.diagnose_widths(NoLimit, [8, 16], X, y, steps=2, probe_every=2, threads=1, progress=False)
    assert "limit_distance" not in sweep.table and sweep.limit_note.startswith("no infinite-width limit: model:")


class _FCResidual(nn.Module):
    def __init__(self):
        super().__init__()
        self.inp, self.fc1, self.fc2 = nn.Linear(3, 16), nn.Linear(16, 16), nn.Linear(16, 16)
        self.ln, self.out = nn.LayerNorm(16), nn.Linear(16, 2)

    def forward(self, x):
        h = self.inp(x)
        h = h + self.fc2(torch.relu(self.fc1(h)))       # the skip reads h after the branch has used it
        return self.out(nn.functional.silu(self.ln(h)) * 0.5)


def _flatten_cnn():
    return nn.Sequential(nn.Conv2d(2, 8, 3, padding=1), nn.ReLU(), nn.Conv2d(8, 8, 3, stride=2), nn.GELU(),
                         nn.Flatten(), nn.Linear(8 * 4, 1))


@pytest.mark.parametrize("build, shape", [(_FCResidual, (3,)), (_cnn, (2, 5, 5)), (_flatten_cnn, (2, 5, 5))])
def test_in_place_fast_path_equals_out_of_place_path(build, shape):
    """The in-place arithmetic of the fast path (fused closed forms, reused buffers) against the out-of-place
    path used under autograd: the same kernels to round-off, also where a skip reads a node twice."""
    from zeroloss.infinite.compute import compute_kernels
    from zeroloss.infinite.graph import build_plan
    from zeroloss.infinite.laws import resolve_laws

    torch.manual_seed(0)
    net = build()
    X = torch.randn(5, *shape, dtype=torch.float64)
    plan = build_plan(net, X[:2])
    laws = resolve_laws(plan.layers, "default")
    modules = dict(net.named_modules())
    fast, _ = compute_kernels(plan, laws, modules, X, None, "both", "standard", 64, 2**30)
    with torch.no_grad():
        slow, _ = compute_kernels(plan, laws, modules, X, None, "both", "standard", 64, 2**30, grad=True)
    for kind in ("nngp", "ntk"):
        assert torch.allclose(fast[kind], slow[kind], rtol=1e-13, atol=0), kind


def test_pixel_diagonal_layout_equals_full_layout():
    """Without pooling only K(s, s) is needed (the graph's choice); forcing cross-position covariances changes
    nothing."""
    from zeroloss.infinite.compute import compute_kernels
    from zeroloss.infinite.graph import build_plan
    from zeroloss.infinite.laws import resolve_laws

    net = _flatten_cnn()
    X = torch.randn(4, 2, 5, 5, dtype=torch.float64)
    plan = build_plan(net, X[:2])
    assert not plan.full
    laws = resolve_laws(plan.layers, "default")
    diag, _ = compute_kernels(plan, laws, dict(net.named_modules()), X, None, "both", "standard", 64, 2**30)
    plan.full = True
    full, _ = compute_kernels(plan, laws, dict(net.named_modules()), X, None, "both", "standard", 64, 2**30)
    for kind in ("nngp", "ntk"):
        assert torch.allclose(diag[kind], full[kind], rtol=1e-13, atol=0), kind


_PEAK_SCRIPT = '''
import json, sys, torch
from torch import nn
from zeroloss.infinite import infinite_kernel, infinite_kernel_memory_bytes

def status(field):
    for line in open("/proc/self/status"):
        if line.startswith(field):
            return int(line.split()[1]) * 1024

torch.set_num_threads(1)
torch.manual_seed(0)
kind, budget = sys.argv[1], int(sys.argv[2])
if kind == "cnn":
    net = nn.Sequential(nn.Conv2d(2, 16, 3, padding=1), nn.ReLU(), nn.Conv2d(16, 16, 3, stride=2, padding=1),
                        nn.GELU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(16, 1))
    X = torch.randn(30, 2, 8, 8, dtype=torch.float64)
else:
    net = nn.Sequential(nn.Linear(8, 64), nn.ReLU(), nn.Linear(64, 64), nn.GELU(), nn.Linear(64, 1))
    X = torch.randn(1500, 8, dtype=torch.float64)
infinite_kernel(net, X[:6], block_bytes=budget)  # warm: libraries loaded
before = status("VmRSS")
res = infinite_kernel(net, X, block_bytes=budget)
peak = status("VmHWM")
stated = infinite_kernel_memory_bytes(net, tuple(X.shape[1:]), X.shape[0], block_bytes=budget)
print(json.dumps({"peak": peak - before, "stated": stated, "rows": res.block_rows, "n": X.shape[0]}))
'''


@pytest.mark.slow
@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="reads the resident-set peak from /proc")
@pytest.mark.parametrize("kind", ["cnn", "fc"])
def test_measured_peak_stays_within_the_stated_memory(kind):
    """A fresh process computes NNGP and NTK with an 8 MiB block budget (several blocks; the CNN's full
    cross-position layout, closed forms) and reads its resident-set peak from /proc: the kernel's own
    peak must stay within what infinite_kernel_memory_bytes states (glibc's mmap threshold fixed, as in
    tests/test_limit_blocks.py, so that freed blocks are returned and the peak is that of the live arrays)."""
    import os
    import subprocess
    import sys

    env = {**os.environ, "MALLOC_MMAP_THRESHOLD_": "65536"}
    out = subprocess.run([sys.executable, "-c", _PEAK_SCRIPT, kind, str(8 * 2**20)], capture_output=True, text=True,
                         check=True, env=env)
    info = json.loads(out.stdout.strip().splitlines()[-1])
    assert info["rows"] < info["n"]  # the budget did split the kernel into blocks
    assert 2 * info["n"] ** 2 * 8 <= info["peak"] <= info["stated"], info
