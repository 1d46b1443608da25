"""The README's "Your own model" example runs as printed and shows what its comments say."""

from __future__ import annotations

import contextlib
import io
import re
from pathlib import Path

import torch

README = Path(__file__).resolve().parents[1] / "README.md"


def your_own_model_block() -> str:
    text = README.read_text()
    section = text.split("## Your own model", 1)[1].split("\n## ", 1)[0]
    blocks = re.findall(r"```python\n(.*?)```", section, re.S)
    assert len(blocks) == 1
    return blocks[0]


def test_block_is_at_most_15_lines():
    assert len(your_own_model_block().strip().splitlines()) <= 15


def test_readme_example_runs_and_shows_what_it_says():
    code = your_own_model_block()
    out = io.StringIO()
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny tensors on a shared CI CPU: one intra-op thread (restored below)
    try:
        namespace: dict = {}
        with contextlib.redirect_stdout(out):
            exec(compile(code, "README.md", "exec"), namespace)
    finally:
        torch.set_num_threads(threads)
    text = out.getvalue()
    assert namespace["K"].shape == (16, 16) and namespace["K"].dtype == torch.float64
    assert isinstance(namespace["lin"], torch.nn.Module)
    assert "lazy (kernel) regime: YES" in text and "rate matches the kernel" in text
    assert "width slopes" in text and all(name in text for name in ("movement", "drift", "gap"))
