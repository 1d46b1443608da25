"""Result versions: a stored run knows the code that computed it; a resumed sweep never reuses a stale one silently.

The version is derived from the code (zeroloss.sweep.versions): these tests show that it moves with a change of
what a module computes and not with a docstring, and what a sweep does with finished runs of another version.
"""

from __future__ import annotations

import dataclasses
import json
import sys
import textwrap

import pytest

import fake_experiment
from zeroloss.report import write_report
from zeroloss.sweep import run_sweep, versions
from zeroloss.sweep.versions import module_fingerprints, result_version

pytestmark = pytest.mark.usefixtures("fake_registered")


def _fingerprint(tmp_path, monkeypatch, source: str, name: str) -> tuple[tuple[str, str], ...]:
    """The fingerprints of a fresh module ``name`` with ``source`` (it imports one zeroloss module)."""
    (tmp_path / f"{name}.py").write_text(textwrap.dedent(source))
    monkeypatch.syspath_prepend(str(tmp_path))
    sys.modules.pop(name, None)
    return module_fingerprints.__wrapped__(name)


def test_the_version_follows_the_code_not_its_documentation(tmp_path, monkeypatch):
    base = '''
        """A run module."""
        from zeroloss.errors import require

        STEP = 0.5

        def run_batch(specs, device="cpu"):
            """Docs."""
            return [STEP * s["width"] for s in specs]
    '''
    first = _fingerprint(tmp_path, monkeypatch, base, "run_module_a")
    assert [m for m, _ in first] == ["run_module_a", "zeroloss.errors"], "the module and what it imports"
    redocumented = base.replace('"""Docs."""', '"""Other words, same code."""').replace("# ", "# x")
    assert _fingerprint(tmp_path, monkeypatch, redocumented, "run_module_a") == first
    changed = base.replace("STEP = 0.5", "STEP = 0.25")
    assert _fingerprint(tmp_path, monkeypatch, changed, "run_module_a") != first


def test_every_registered_experiment_has_a_version_of_its_own_code():
    from zeroloss.papers.registry import load_experiments

    registry = load_experiments()
    for name in ("du2019.kernel", "chatterjee2022.init_comparison", "marion2023.regimes"):
        modules = [m for m, _ in module_fingerprints(registry[name].run_batch.__module__)]
        assert registry[name].run_batch.__module__ in modules, modules
        if not name.startswith("marion"):  # Marion's lab has its own loops; the others train with train_gd
            assert "zeroloss.train.gd" in modules, modules
        assert len(result_version(registry[name])) == 12
    bumped = dataclasses.replace(registry["du2019.kernel"], version=2)  # a hand bump for a change outside the code
    assert result_version(bumped) != result_version(registry["du2019.kernel"])


def _stale(monkeypatch, value: str = "an-older-one"):
    """Pretend the code changed: every run stored from now on is compared with another current version."""
    monkeypatch.setattr("zeroloss.sweep.runner.result_version", lambda experiment: value)


def test_stale_runs_are_recomputed_and_said_so(tmp_path, monkeypatch, capsys):
    specs = fake_experiment.specs(widths=(1, 2), seeds=(0, 1))
    first = run_sweep(fake_experiment.EXPERIMENT, specs, tmp_path, device="cpu", progress=False)
    env = json.loads((tmp_path / "runs" / first.run_ids[0] / "env.json").read_text())
    assert env[versions.ENV_KEY] == result_version(fake_experiment.EXPERIMENT)
    again = run_sweep(fake_experiment.EXPERIMENT, specs, tmp_path, device="cpu", progress=False)
    assert (again.ran, again.skipped, again.stale_recomputed) == (0, 4, [])
    assert again.reuse_notes() == [f"note: {fake_experiment.NAME}: 4 finished runs of the same code reused from "
                                   f"{tmp_path}"]
    _stale(monkeypatch)
    fake_experiment.CALLS.clear()
    changed = run_sweep(fake_experiment.EXPERIMENT, specs, tmp_path, device="cpu", progress=False)
    assert (changed.ran, changed.skipped) == (4, 0) and sorted(changed.stale_recomputed) == sorted(first.run_ids)
    assert fake_experiment.CALLS == [2, 2], "the stale runs were run again"
    assert "were run again" in changed.reuse_notes()[0]
    env = json.loads((tmp_path / "runs" / first.run_ids[0] / "env.json").read_text())
    assert env[versions.ENV_KEY] == "an-older-one", "the new result carries the new version"


def test_stale_runs_kept_on_request_are_named_on_the_terminal_and_in_the_report(tmp_path, monkeypatch):
    specs = fake_experiment.specs(widths=(1,), seeds=(0, 1))
    run_sweep(fake_experiment.EXPERIMENT, specs, tmp_path / "s", device="cpu", progress=False)
    _stale(monkeypatch)
    fake_experiment.CALLS.clear()
    kept = run_sweep(fake_experiment.EXPERIMENT, specs, tmp_path / "s", device="cpu", progress=False,
                     keep_stale=True)
    assert fake_experiment.CALLS == [] and (kept.ran, kept.skipped, len(kept.stale_kept)) == (0, 2, 2)
    assert kept.reuse_notes() == [f"warning: {fake_experiment.NAME}: 2 finished runs computed by other code "
                                  "(another result version) were kept (--keep-stale); the report says so"]
    manifest = json.loads((tmp_path / "s" / "sweep.json").read_text())
    assert sorted(manifest["stale_kept"]) == sorted(kept.stale_kept)
    report = write_report(tmp_path / "s")
    html = report.html_path.read_text()
    assert "computed by other code" in html and "--keep-stale" in html
