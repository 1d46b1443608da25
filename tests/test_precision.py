"""no_tf32 under each way a user may have set float32 precision before calling zeroloss.

PyTorch's precision flags are process-global and its "legacy vs new API" bookkeeping is sticky, so each case
runs in a process of its own: a child forked from one fresh interpreter that has imported torch and zeroloss and
touched nothing.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import pytest

SCRIPT = textwrap.dedent("""
    import json, os, sys, traceback
    import torch, zeroloss
    from zeroloss.precision import FP32_PRECISION_BACKENDS, _backend, no_tf32
    # imported here (not called): what the children use is loaded once, before the forks
    _ = (zeroloss.sphere_data, zeroloss.nets.FullyConnected, zeroloss.gram, zeroloss.train_gd, zeroloss.limit_kernel)

    def check(setting):
        if setting == "legacy flags":
            torch.backends.cuda.matmul.allow_tf32 = True
            torch.backends.cudnn.allow_tf32 = True
        elif setting == "new api":
            torch.backends.cuda.matmul.fp32_precision = "tf32"
            torch.backends.mkldnn.matmul.fp32_precision = "bf16"
        elif setting == "matmul precision medium":
            torch.set_float32_matmul_precision("medium")
        before = {p: _backend(p).fp32_precision for p in FP32_PRECISION_BACKENDS}
        with no_tf32():
            inside = {p: _backend(p).fp32_precision for p in FP32_PRECISION_BACKENDS}
            assert set(inside.values()) == {"ieee"}, inside
        after = {p: _backend(p).fp32_precision for p in FP32_PRECISION_BACKENDS}
        assert after == before, (before, after)
        X, y = zeroloss.sphere_data(n=6, d=3, seed=0)
        net = zeroloss.nets.FullyConnected(3, 16, 2, members=2)
        zeroloss.gram(net, X, layer="all")
        zeroloss.train_gd(net, X, y, lr=0.1, steps=3, progress=False)
        zeroloss.limit_kernel(X.double(), depth=2)
        # the API the user chose still reads back what the user set
        if setting == "legacy flags":
            assert torch.backends.cuda.matmul.allow_tf32 and torch.backends.cudnn.allow_tf32
        elif setting == "matmul precision medium":
            assert torch.get_float32_matmul_precision() == "medium"
        elif setting == "default":
            assert not torch.backends.cuda.matmul.allow_tf32

    # one child per setting, forked before any flag is touched or any thread started: each starts from torch's
    # defaults as a fresh interpreter would, without paying for importing torch and zeroloss again
    results = {}
    for setting in sys.argv[1:]:
        pid = os.fork()
        if pid == 0:
            try:
                check(setting)
                code = 0
            except BaseException:
                traceback.print_exc()
                code = 1
            sys.stdout.flush()
            sys.stderr.flush()
            os._exit(code)
        results[setting] = os.waitpid(pid, 0)[1] == 0
    print(json.dumps(results))
""")

SETTINGS = ["default", "legacy flags", "new api", "matmul precision medium"]


@pytest.fixture(scope="module")
def precision_results():
    """Each setting checked in its own forked child of one fresh interpreter: ({setting: passed}, stderr)."""
    done = subprocess.run([sys.executable, "-c", SCRIPT, *SETTINGS], capture_output=True, text=True, timeout=240)
    assert done.returncode == 0, done.stderr[-2000:]
    return json.loads(done.stdout.strip().splitlines()[-1]), done.stderr


@pytest.mark.skipif(not hasattr(os, "fork"), reason="one forked child per setting")
@pytest.mark.parametrize("setting", SETTINGS)
def test_no_tf32_pins_ieee_and_restores_the_users_setting(setting, precision_results):
    passed, stderr = precision_results
    assert passed[setting], stderr[-2000:]


LEGACY_SCRIPT = textwrap.dedent("""
    import torch
    import zeroloss.precision as precision
    torch.backends.cuda.matmul.allow_tf32 = True
    torch.backends.cudnn.allow_tf32 = True
    torch.set_float32_matmul_precision("high")
    precision._has_fp32_precision_api = lambda: False  # what torch < 2.9 (no fp32_precision attributes) reports
    with precision.no_tf32():
        assert not torch.backends.cuda.matmul.allow_tf32 and not torch.backends.cudnn.allow_tf32
        assert torch.get_float32_matmul_precision() == "highest"
    assert torch.backends.cuda.matmul.allow_tf32 and torch.backends.cudnn.allow_tf32
    assert torch.get_float32_matmul_precision() == "high"
    try:
        with precision.no_tf32():
            raise KeyboardInterrupt
    except KeyboardInterrupt:
        pass
    assert torch.backends.cuda.matmul.allow_tf32 and torch.get_float32_matmul_precision() == "high"
    print("ok")
""")


def test_legacy_fallback_for_torch_without_fp32_precision():
    """The torch < 2.9 path (legacy flags only): TF32 off inside, the user's flags back after, even on an error.

    Only torch 2.13 is installed, so the older torch is simulated by what the guard asks it; the legacy flags it
    then drives still exist in 2.13 and behave as in older releases while the new API is never touched.
    """
    done = subprocess.run([sys.executable, "-W", "error", "-c", LEGACY_SCRIPT], capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0 and done.stdout.strip() == "ok", done.stderr[-2000:]
