"""entk's memory statement: the measured resident peak of a fresh process stays within entk_memory_bytes, and a
memory_budget that cannot hold the work is refused before anything is allocated."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import pytest
import torch

from helpers import STATUS_FUNCTION, make_model
from zeroloss import ZerolossInputError, entk, entk_memory_bytes

_PEAK_SCRIPT = STATUS_FUNCTION + textwrap.dedent(
    """
    import json, sys, torch
    from torch import nn
    from zeroloss import entk, entk_memory_bytes

    case, method, outputs, budget = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
    torch.set_num_threads(1)
    torch.manual_seed(0)
    if case == "mlp":
        model = nn.Sequential(nn.Linear(16, 384), nn.Tanh(), nn.Linear(384, 384), nn.Tanh(), nn.Linear(384, 3))
        # jacobian forms 3 per-sample gradients of 1.6e5 parameters per sample (3.8 MB): under the 32 MiB budget
        # its plan takes 2 samples per chunk, so 60 samples already make 30 chunks a side (the chunked path)
        x = torch.randn({"structured": 300, "jacobian": 60}.get(method, 90), 16)
    elif case == "cnn":
        model = nn.Sequential(nn.Conv2d(3, 16, 3, padding=1), nn.Tanh(), nn.Conv2d(16, 16, 3, stride=2), nn.Tanh(),
                              nn.Flatten(), nn.Linear(16 * 7 * 7, 2))
        x = torch.randn(100, 3, 16, 16)
    else:  # a transformer layer: attention parameters on the per-sample Jacobian fallback
        layer = nn.TransformerEncoderLayer(32, 4, 64, dropout=0.0, batch_first=True)
        model = nn.Sequential(layer, nn.Flatten(), nn.Linear(32 * 6, 2))
        x = torch.randn(80, 6, 32)
    model = model.double()
    args = dict(method=method, outputs=outputs, memory_budget=budget)
    # warm-up: the same call, so that one-time costs are not counted as the call's memory: libraries loaded,
    # kernels' first-call allocations, and the first use of the chunking path the call takes (a warm-up on 7
    # samples kept every factor where 300 recompute them, and left 7 MiB of first-use pages to the measured call)
    entk(model, x, **args)
    stated = entk_memory_bytes(model, x, **args)
    before = status("VmRSS")
    K = entk(model, x, **args)
    peak = status("VmHWM")
    result = K.numel() * K.element_size()
    print(json.dumps({"peak": peak - before, "stated": stated, "result": result, "finite": bool(K.isfinite().all())}))
    """
)


@pytest.mark.slow  # a fresh process per case (import torch, warm up, compute): ~10–40 s each on 2 busy cores
@pytest.mark.skipif(not os.path.exists("/proc/self/status"), reason="reads the resident-set peak from /proc")
@pytest.mark.parametrize(
    ("case", "method", "outputs", "budget_mib"),
    [
        ("mlp", "structured", "full", 32),
        ("mlp", "jacobian", "trace", 32),
        ("mlp", "ntvp", "trace", 24),
        ("cnn", "structured", "trace", 16),
        ("transformer", "structured", "full", 16),
    ],
)
def test_measured_peak_stays_within_the_stated_memory(case, method, outputs, budget_mib):
    """A fresh process computes the kernel under a budget small enough to force chunks and reads its resident-set
    peak from /proc; the call's own peak (the resident size before the call subtracted, after a warm-up with the same
    call) must stay within what entk_memory_bytes stated beforehand.

    Cases: the structured product form (MLP, full outputs), the two tutorial methods, the gradient form of
    convolutions (im2col patches), and a transformer layer whose attention falls back to per-sample Jacobians.
    """
    # glibc keeps freed large blocks in the heap after raising its mmap threshold, which would add retained pages
    # to the peak; a fixed threshold returns every large free, so the peak is that of the live tensors (see
    # tests/test_limit_blocks.py, which measures the limit kernels the same way).
    env = {**os.environ, "MALLOC_MMAP_THRESHOLD_": "65536"}
    budget = budget_mib * 2**20
    out = subprocess.run([sys.executable, "-c", _PEAK_SCRIPT, case, method, outputs, str(budget)],
                         capture_output=True, text=True, check=True, env=env)
    info = json.loads(out.stdout.strip().splitlines()[-1])
    print(f"{case} {method} {outputs}: peak {info['peak'] / 2**20:.1f} MiB, stated {info['stated'] / 2**20:.1f} "
          f"MiB, budget {budget_mib} MiB")
    assert info["finite"]
    assert info["peak"] >= info["result"]  # the measurement sees at least the result the call returns
    assert info["peak"] <= info["stated"] <= budget, info


def test_a_budget_that_cannot_hold_the_result_is_refused_before_computing():
    model, x = make_model("mlp", n=300)
    need = entk_memory_bytes(model, x, outputs="full")
    assert need > 300 * 300 * 9 * 8  # the (n, n, k, k) result alone
    with pytest.raises(ZerolossInputError) as err:
        entk(model, x, outputs="full", memory_budget=300 * 300 * 9 * 8)
    message = str(err.value)
    assert message.startswith("memory_budget: structured needs at least") and "for the result" in message
    assert "\n" not in message


def test_the_statement_is_what_the_call_plans_and_budgets_shrink_the_chunks():
    model, x = make_model("cnn2d", n=40)
    loose = entk_memory_bytes(model, x)
    tight = entk_memory_bytes(model, x, memory_budget=loose // 4)
    assert tight <= loose // 4 < loose
    torch.testing.assert_close(entk(model, x, memory_budget=loose // 4), entk(model, x), rtol=1e-13, atol=0)
