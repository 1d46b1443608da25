"""docs/infinite.md: every ```python block runs (the worked CNN example, the GPyTorch example when gpytorch is
installed) and prints what its comments say."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from helpers import markdown_python_blocks, run_markdown_block

DOC = Path(__file__).resolve().parents[1] / "docs" / "infinite.md"


def _blocks() -> list[tuple[str, str, int]]:
    return markdown_python_blocks(DOC)


def _run(index: int) -> tuple[dict, str]:
    _, code, first_line = _blocks()[index]
    return run_markdown_block(DOC, code, first_line, name="__infinite_doc__")


@pytest.mark.slow
def test_worked_cnn_example():
    namespace, printed = _run(0)
    res = namespace["res"]
    assert res.layout == "full" and res.outputs == 10 and "K[i, j] · I_10" in printed
    assert res.laws["stem"].source == "pytorch-default" and abs(res.laws["stem"].sigma_b2 - 1 / 81) < 1e-15
    distance = float(re.search(r"= ([0-9.]+)", printed.split("||Θ_128")[1]).group(1))
    assert distance < 0.5  # the eNTK of a width-128 copy is near its limit (measured about 0.1)
    assert "model: node '_1' (MaxPool2d module '1') has no infinite-width rule" in printed


@pytest.mark.slow
def test_gpytorch_example():
    pytest.importorskip("gpytorch")
    namespace, printed = _run(1)
    assert "negative marginal log likelihood" in printed
    assert namespace["gp"].kernel.sigma_w2[0].item() > 0
