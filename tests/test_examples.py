"""Every example a user can copy runs and shows what it says.

* The docstring examples of every module under ``src/zeroloss`` (doctest: one test per module, found with
  :class:`doctest.DocTestFinder` over :func:`pkgutil.walk_packages`); a module whose import needs an optional
  dependency that is not installed is skipped with the reason.
* Every ```python block of README.md, executed in a fresh namespace in a temporary working directory (```bash and
  other fences are shell, not Python); a block that warns fails; the "Ten lines of Python" must also reach what
  it claims (every member at the target loss), and "Your own model" must print what its comments say.
"""

from __future__ import annotations

import doctest
import importlib
import pkgutil
import time
import traceback
from pathlib import Path

import pytest
import torch

import zeroloss
from helpers import markdown_python_blocks, run_markdown_block

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
#: Modules never imported here: ``zeroloss.__main__`` runs the command line when imported.
NOT_IMPORTED = {"zeroloss.__main__"}
#: Doctest flags: the same as ``pytest --doctest-modules`` with the project's settings (none): outputs must match.
FLAGS = 0


def _modules() -> list[str]:
    names = {"zeroloss"}
    for info in pkgutil.walk_packages(zeroloss.__path__, "zeroloss.", onerror=lambda name: None):
        names.add(info.name)
    return sorted(names - NOT_IMPORTED)


def _import(name: str):
    try:
        return importlib.import_module(name)
    except ModuleNotFoundError as exc:  # an optional dependency (e.g. ray) that is not installed
        if exc.name and not exc.name.startswith("zeroloss"):
            pytest.skip(f"{name} needs the optional dependency {exc.name!r}, not installed")
        raise


@pytest.mark.parametrize("name", _modules())
def test_docstring_examples(name, tmp_path, monkeypatch):
    module = _import(name)
    monkeypatch.chdir(tmp_path)  # an example that writes a file writes it here
    tests = doctest.DocTestFinder(exclude_empty=True).find(module, name)
    runner = doctest.DocTestRunner(optionflags=FLAGS)
    report: list[str] = []
    for test in sorted(tests, key=lambda t: t.name):
        runner.run(test, out=report.append)
    results = runner.summarize(verbose=False) if tests else doctest.TestResults(0, 0)
    assert results.failed == 0, "".join(report)


def _readme_blocks() -> list[tuple[str, str, int]]:
    return markdown_python_blocks(README)


def test_readme_has_python_examples():
    titles = [title for title, _, _ in _readme_blocks()]
    assert "Ten lines of Python" in titles and "Your own model" in titles


def test_your_own_model_block_is_at_most_15_lines():
    (code,) = [code for title, code, _ in _readme_blocks() if title == "Your own model"]
    assert len(code.strip().splitlines()) <= 15


@pytest.mark.parametrize("title, code, first_line", _readme_blocks(), ids=[t for t, _, _ in _readme_blocks()])
def test_readme_python_block_runs(title, code, first_line, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # a block that writes a file writes it here
    t0 = time.perf_counter()
    namespace, printed = run_markdown_block(README, code, first_line, name="__readme__")
    seconds = time.perf_counter() - t0
    assert printed.strip(), f"the README block under {title!r} prints nothing"
    if title == "Ten lines of Python":
        # What the block says it shows: gradient descent at its default step takes every member to the target.
        run = namespace["run"]
        assert run.status == ["reached target"] * run.net.members, run.summary()
        assert (run.final_loss <= 1e-6).all() and (run.losses[0] > 4).all()  # "from about 8 to below 10⁻⁶"
        assert run.steps <= 100  # "in about 60 steps" (the target is checked every 16 steps: up to 15 more)
        drift = run.metric("gram_drift").iloc[-1]
        assert ((drift > 0.01) & (drift < 0.06)).all(), drift  # "its Gram matrix moves by 2–5 %"
        assert "reached target" in printed
        print(f"README ten lines: {seconds:.1f} s, {run.steps} steps")  # shown with -s; not asserted (load)
    if title == "Your own model":
        # What its comments say: a (16, 16) float64 eNTK, a linearisation to train, the diagnosis's verdicts and
        # the width sweep's slopes.
        assert namespace["K"].shape == (16, 16) and namespace["K"].dtype == torch.float64
        assert isinstance(namespace["lin"], torch.nn.Module)
        assert "lazy (kernel) regime: YES" in printed and "rate matches the kernel" in printed
        assert "width slopes" in printed and all(name in printed for name in ("movement", "drift", "gap"))


def test_a_documented_block_that_warns_fails_naming_its_line_in_the_file(tmp_path):
    """The runner's own check (negative control): a warning is an error, reported at the Markdown file's line."""
    page = tmp_path / "page.md"
    page.write_text("# Page\n\ntext\n\n```python\nimport warnings\nwarnings.warn('copied example warns')\n```\n")
    ((title, code, first_line),) = markdown_python_blocks(page)
    assert (title, first_line) == ("Page", 6)
    with pytest.raises(UserWarning, match="copied example warns") as caught:
        run_markdown_block(page, code, first_line)
    where = traceback.extract_tb(caught.value.__traceback__)[-1]
    assert (where.filename, where.lineno) == (str(page), 7)
