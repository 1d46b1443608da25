"""Every example a user can copy runs and shows what it says.

* The docstring examples of every module under ``src/zeroloss`` (doctest: one test per module, found with
  :class:`doctest.DocTestFinder` over :func:`pkgutil.walk_packages`); a module whose import needs an optional
  dependency that is not installed is skipped with the reason.
* Every ```python block of README.md, executed in a fresh namespace in a temporary working directory (```bash and
  other fences are shell, not Python); the "Ten lines of Python" must also reach what it claims: every member
  at the target loss.
"""

from __future__ import annotations

import contextlib
import doctest
import importlib
import io
import pkgutil
import re
import time
from pathlib import Path

import pytest

import zeroloss

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


def readme_python_blocks() -> list[tuple[str, str]]:
    """(title, code) of every ```python block of README.md; the title is the nearest heading above it."""
    text = README.read_text(encoding="utf-8")
    blocks = []
    for match in re.finditer(r"^```python[ \t]*\n(.*?)^```[ \t]*$", text, flags=re.MULTILINE | re.DOTALL):
        headings = re.findall(r"^#+\s*(.+)$", text[: match.start()], flags=re.MULTILINE)
        blocks.append((headings[-1].strip() if headings else "README", match.group(1)))
    return blocks


def _run_block(code: str, tmp_path: Path, monkeypatch) -> tuple[dict, str, float]:
    monkeypatch.chdir(tmp_path)
    namespace: dict = {"__name__": "__readme__"}
    out = io.StringIO()
    t0 = time.perf_counter()
    with contextlib.redirect_stdout(out):
        exec(compile(code, str(README), "exec"), namespace)  # noqa: S102 - the README's own example
    return namespace, out.getvalue(), time.perf_counter() - t0


def test_readme_has_python_examples():
    titles = [title for title, _ in readme_python_blocks()]
    assert "Ten lines of Python" in titles


@pytest.mark.parametrize("title, code", readme_python_blocks(), ids=[t for t, _ in readme_python_blocks()])
def test_readme_python_block_runs(title, code, tmp_path, monkeypatch):
    namespace, printed, seconds = _run_block(code, tmp_path, monkeypatch)
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
