"""The peers of benchmarks/bench_entk.py compute the same kernel as entk (so the ratios in docs/performance.md
compare equal work), and the benchmark models are the architectures the rows name. Speed is not tested."""

from __future__ import annotations

import pytest
import torch
from benchmarks.bench_entk import ResNet18, blocked, cnn, mlp, tutorial_jacobian, tutorial_ntvp

from zeroloss import entk


def _small(case: str):
    torch.manual_seed(0)
    if case == "mlp":
        return mlp(d=5, width=16, depth=3).double(), torch.randn(6, 5, dtype=torch.float64)
    return cnn(channels=4, depth=2).double(), torch.randn(5, 3, 6, 6, dtype=torch.float64)


# The NTVP peer calls torch.func.jvp as the tutorial does; torch's first jvp loads its forward-AD decompositions
# with torch.jit.script, which warns that torch.jit.script is deprecated (torch's internals, not the peer's code).
@pytest.mark.filterwarnings("ignore:`torch.jit.script` is deprecated:DeprecationWarning")
@pytest.mark.parametrize("case", ["mlp", "cnn"])
@pytest.mark.parametrize("block", [None, 2])
def test_tutorial_peers_compute_entks_kernel(case, block):
    model, x = _small(case)
    params = {k: v.detach() for k, v in model.named_parameters()}
    ours = entk(model, x)
    b = block or x.shape[0]
    # float64, the same sums in another order: 1e-12 relative leaves ~10⁴ ulps
    torch.testing.assert_close(blocked(tutorial_jacobian, model, params, x, None, b), ours, rtol=1e-12, atol=0)
    torch.testing.assert_close(blocked(tutorial_ntvp, model, params, x, x, b), ours, rtol=1e-12, atol=0)
    cross = entk(model, x[:3], x[3:])
    torch.testing.assert_close(tutorial_jacobian(model, params, x[:3], x[3:]), cross, rtol=1e-12, atol=0)


def test_benchmark_models_are_the_named_architectures():
    resnet = ResNet18()
    # torchvision's resnet18 with a 3×3 stem and 10 classes
    assert sum(p.numel() for p in resnet.parameters()) == 11_173_962
    assert resnet(torch.randn(2, 3, 32, 32)).shape == (2, 10)
    convs = [m for m in cnn().modules() if isinstance(m, torch.nn.Conv2d)]
    assert [(c.in_channels, c.out_channels, c.kernel_size) for c in convs] == [(3, 64, (3, 3))] + [(64, 64, (3, 3))] * 3
    linears = [m for m in mlp().modules() if isinstance(m, torch.nn.Linear)]
    assert [(m.in_features, m.out_features) for m in linears] == [(32, 1024), (1024, 1024), (1024, 1024), (1024, 1)]
