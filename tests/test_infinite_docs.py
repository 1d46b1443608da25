"""docs/infinite.md: every ```python block runs (the worked CNN example, the GPyTorch example when gpytorch is
installed) and prints what its comments say."""

from __future__ import annotations

import contextlib
import io
import re
from pathlib import Path

import pytest

DOC = Path(__file__).resolve().parents[1] / "docs" / "infinite.md"


def _blocks() -> list[str]:
    return re.findall(r"^```python[ \t]*\n(.*?)^```[ \t]*$", DOC.read_text(encoding="utf-8"), flags=re.M | re.S)


def _run(code: str) -> tuple[dict, str]:
    namespace: dict = {"__name__": "__infinite_doc__"}
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        exec(compile(code, str(DOC), "exec"), namespace)  # noqa: S102 - the doc's own example
    return namespace, out.getvalue()


@pytest.mark.slow
def test_worked_cnn_example():
    code = _blocks()[0]
    namespace, printed = _run(code)
    res = namespace["res"]
    assert res.layout == "full" and res.outputs == 10 and "K[i, j] · I_10" in printed
    assert res.laws["stem"].source == "pytorch-default" and abs(res.laws["stem"].sigma_b2 - 1 / 81) < 1e-15
    distance = float(re.search(r"= ([0-9.]+)", printed.split("||Θ_128")[1]).group(1))
    assert distance < 0.5  # the eNTK of a width-128 copy is near its limit (measured about 0.1)
    assert "model: node '_1' (MaxPool2d module '1') has no infinite-width rule" in printed


@pytest.mark.slow
def test_gpytorch_example():
    pytest.importorskip("gpytorch")
    namespace, printed = _run(_blocks()[1])
    assert "negative marginal log likelihood" in printed
    assert float(namespace["gp"].kernel.sigma_w2[0]) > 0
