"""A new user finds their way: ``zeroloss experiments``, ``zeroloss sweep --example``, the ``--out`` help, and a
terminal claims table that wraps long claims instead of cutting them."""

from __future__ import annotations

import json
import re

import pytest
from typer.testing import CliRunner

import fake_experiment
from zeroloss.cli import app
from zeroloss.papers.registry import load_experiments
from zeroloss.report import claims_table
from zeroloss.store import run_id
from zeroloss.sweep.example import example_sweep
from zeroloss.sweep.spec import load_sweep_file, yaml_load

runner = CliRunner()


def _registered() -> list[str]:
    return sorted(load_experiments())


def test_experiments_lists_every_registered_experiment_with_its_paper_and_run_counts():
    registry = load_experiments()
    res = runner.invoke(app, ["experiments", "--json"])
    assert res.exit_code == 0, res.output
    listed = {e["name"]: e for e in json.loads(res.stdout)}
    assert set(listed) == set(registry)
    for name, experiment in registry.items():
        assert listed[name]["paper"] == experiment.paper
        assert listed[name]["scales"] == {scale: len(specs) for scale, specs in experiment.specs.items()}

    table = runner.invoke(app, ["experiments"], env={"COLUMNS": "100"})
    assert table.exit_code == 0, table.output
    for name, experiment in registry.items():
        row = next(line for line in table.stdout.splitlines() if line.startswith(name + " "))
        counts = ", ".join(f"{scale} {len(specs)}" for scale, specs in experiment.specs.items())
        assert experiment.paper in row and counts in row, row
    full = runner.invoke(app, ["experiments", "--full"], env={"COLUMNS": "100"})
    assert full.exit_code == 0 and max(len(line) for line in full.stdout.splitlines()) <= 100
    words = " ".join(full.stdout.split())
    assert all(" ".join(e.description.split()[:4]) in words for e in registry.values())


@pytest.mark.parametrize("name", _registered())
def test_example_sweep_file_is_valid_and_expands_into_the_registered_tiny_runs(name, tmp_path):
    res = runner.invoke(app, ["sweep", "--example", name])
    assert res.exit_code == 0, res.output
    text = res.stdout
    assert text.startswith("# ") and "\nexperiment: " + name + "\n" in text
    assert all(len(line) <= 120 for line in text.splitlines() if not line.startswith("# A sweep over"))
    path = tmp_path / "example.yaml"
    path.write_text(text)
    dry = runner.invoke(app, ["sweep", str(path), "--dry-run", "--json"])
    assert dry.exit_code == 0, dry.output
    assert "warning" not in dry.stderr, dry.stderr  # every key is one the experiment's registered runs use
    planned = json.loads(dry.stdout)
    tiny = load_experiments()[name].specs["tiny"]
    # exactly the registered tiny runs (same run ids): "runs as is" is the tiny scale that CI reproduces
    assert sorted(r["run_id"] for r in planned["runs"]) == sorted({run_id(name, s) for s in tiny})
    assert f"expands into {planned['count']} runs: exactly the registered tiny runs" in text
    # the commented text reads back as the document example_sweep built (values exact: floats round-trip)
    assert yaml_load(text, "example") == example_sweep(load_experiments()[name])[0]


def test_example_of_the_fake_experiment_runs_as_is(fake_registered, tmp_path):  # noqa: F811 - fixture
    text = runner.invoke(app, ["sweep", "--example", fake_experiment.NAME]).stdout
    path = tmp_path / "fake.yaml"
    path.write_text(text)
    doc = load_sweep_file(path, [])
    assert doc.grid == {"width": [1, 2]} and doc.seeds == 2, text  # the fake's tiny runs: widths × seeds
    res = runner.invoke(app, ["sweep", str(path), "--out", str(tmp_path / "out"), "--device", "cpu", "--json"])
    assert res.exit_code == 0, res.output
    assert json.loads(res.stdout)["ran"] == len(fake_experiment.EXPERIMENT.specs["tiny"])


def test_example_of_a_real_experiment_runs_through_its_run_function(tmp_path):
    """The printed file, shrunk with --set (at most 2 steps, width 8, one seed) so that it takes seconds, trains for
    real through du2019's run function."""
    text = runner.invoke(app, ["sweep", "--example", "du2019.conv"]).stdout
    path = tmp_path / "conv.yaml"
    path.write_text(text)
    res = runner.invoke(app, ["sweep", str(path), "--set", "base.max_steps=2", "--set", "base.width=8",
                              "--set", "seeds=1", "--out", str(tmp_path / "out"), "--device", "cpu", "--json"])
    assert res.exit_code == 0, res.output
    summary = json.loads(res.stdout)
    assert summary["runs"] == summary["ran"] == 1 and summary["failed"] == []


def test_unknown_example_and_missing_file_are_one_line_errors():
    res = runner.invoke(app, ["sweep", "--example", "du2019.nope"])
    assert res.exit_code == 2 and res.stderr.startswith("error: --example: must be a registered experiment")
    assert len(res.stderr.strip().splitlines()) == 1
    res = runner.invoke(app, ["sweep"])
    assert res.exit_code == 2 and res.stderr.startswith("error: FILE: a sweep file is needed")


def test_sweep_help_says_when_out_is_required():
    res = runner.invoke(app, ["sweep", "--help"], env={"COLUMNS": "200"})
    flat = " ".join(res.output.split())
    assert "required unless --dry-run or --example" in flat and "--example" in flat


LONG_CLAIM = ("the smallest width at which every member reaches L ≤ 10⁻²·L(0) within the step budget grows at most "
              "polynomially in the depth H for the residual net, while for the fully-connected net it grows "
              "exponentially, as Du et al. 2019 Theorems 4.1 and 5.1 state")


def _column(table: str, index: int) -> str:
    """The text of one column of a wrapped table (its character range read off the rule line), rows joined."""
    lines = table.splitlines()
    rule = next(line for line in lines if set(line) <= {"-", " "} and "-" in line)
    spans = [m.span() for m in re.finditer(r"-+", rule)]
    start = spans[index][0]
    end = spans[index + 1][0] if index + 1 < len(spans) else None
    body = [line for line in lines[lines.index(rule) + 1:] if line[:1] in ("", " ") or line.split()[0].isupper()]
    return " ".join(" ".join(line[start:end].split()) for line in body if line[start:end].strip())


def test_terminal_claims_table_wraps_a_long_claim_and_keeps_every_word():
    claims = [
        {"experiment": "du2019.depth", "claim": LONG_CLAIM, "measured": 1.234567, "expected": "≤ 2 (lab: a margin)",
         "verdict": "PASS", "passed": True},
        {"experiment": "du2019.depth", "claim": "short", "measured": "n/a", "expected": "—", "verdict": "INCONCLUSIVE",
         "passed": False, "reason": "3 of 4 widths censored at the 300-step budget"},
        {"experiment": "du2019.width", "claim": "movement ∝ m^(-1/2)", "measured": -0.61, "expected": "-0.5 ± 0.15",
         "verdict": "FAIL", "passed": False},
    ]
    for width in (60, 80, 140):
        table = claims_table(claims, width=width)
        lines = table.splitlines()
        assert max(len(line) for line in lines) <= width, table
        assert "…" not in table  # nothing cut
        claim_column = _column(table, 1)
        # every word of the long claim, in order, in the claim column (wrapped over several lines of it)
        assert LONG_CLAIM in claim_column, table
        assert "(inconclusive: 3 of 4 widths censored at the 300-step budget)" in claim_column  # the reason
        assert "≤ 2 (lab: a margin)" in _column(table, 3)
        assert lines[-1] == "1/3 claims passed, 1 fail, 1 inconclusive"
        assert [line for line in lines if line.startswith("du2019.")] == ["du2019.depth", "du2019.width"]
    assert len(claims_table(claims, width=80).splitlines()) > len(claims_table(claims, width=140).splitlines())
