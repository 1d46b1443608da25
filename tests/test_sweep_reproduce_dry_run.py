"""``zeroloss reproduce PAPER --scale SCALE --dry-run``: every paper and scale lists its runs and an estimate, writes
nothing; finished runs in the folder are counted and calibrate the cost model; scales are per experiment."""

from __future__ import annotations

import dataclasses
import json

import pytest
from typer.testing import CliRunner

from fake_experiment import specs
from zeroloss.cli import app
from zeroloss.errors import ZerolossInputError
from zeroloss.papers import PAPERS, experiments_for_paper
from zeroloss.papers.base import Experiment
from zeroloss.sweep.dry_run import dry_run, experiment_plan, measured_seconds
from zeroloss.sweep.reproduce import plan, scales_of
from zeroloss.sweep.runner import run_sweep, unique_runs

PAIRS = [(paper, scale) for paper in (*PAPERS, "all") for scale in scales_of(experiments_for_paper(paper))]


@pytest.mark.parametrize("paper,scale", PAIRS)
def test_every_paper_and_scale_lists_its_runs_and_writes_nothing(paper, scale, tmp_path):
    out = tmp_path / "out"
    listing = dry_run(paper, scale, out)
    assert not out.exists()
    chosen, skipped = plan(paper, scale)
    assert [p.experiment for p in listing.experiments] == [e.name for e in chosen]
    assert len(listing.skipped) == len(skipped)
    for row, experiment in zip(listing.experiments, chosen, strict=True):
        assert row.runs == row.pending == len(unique_runs(experiment.name, experiment.specs[scale])) > 0
        assert row.done == 0 and row.settings
        if experiment.estimate_seconds is not None:
            assert row.seconds > 0 and row.basis == "cost model"
        else:
            assert row.seconds is None and row.basis == "no cost model"
    text = listing.format()
    assert "estimated total:" in text and all(e.name in text for e in chosen)


def test_marion2023_has_a_cost_model_at_every_scale():
    for experiment in experiments_for_paper("marion2023"):
        for scale, scale_specs in experiment.specs.items():
            assert all(experiment.estimate_seconds(s) > 0 for s in scale_specs), (experiment.name, scale)


def test_cli_dry_run_prints_the_plan_and_json(tmp_path):
    runner = CliRunner()
    out = tmp_path / "o"
    text = runner.invoke(app, ["reproduce", "marion2023", "--scale", "tiny", "--dry-run", "--out", str(out)])
    assert text.exit_code == 0, text.output
    assert "marion2023.regimes: 16 runs, 0 done, 16 to run" in text.stdout and "estimated total" in text.stdout
    as_json = runner.invoke(app, ["reproduce", "marion2023", "--dry-run", "--json", "--out", str(out)])
    record = json.loads(as_json.stdout)
    assert record["scale"] == "tiny" and record["seconds"] > 0 and len(record["experiments"]) == 6
    assert not out.exists()


def test_an_unknown_scale_is_one_line_naming_the_scales_and_writes_nothing(tmp_path):
    out = tmp_path / "o"
    res = CliRunner().invoke(app, ["reproduce", "marion2023", "--scale", "huge", "--dry-run", "--out", str(out)])
    assert res.exit_code == 2 and not out.exists()
    assert res.output.strip() == ("error: --scale: one of tiny, paper (the scales marion2023's experiments "
                                  "define), got 'huge'")
    with pytest.raises(ZerolossInputError, match="--scale"):
        plan("marion2023", "medium")  # no marion2023 experiment has it


def _with_model(experiment: Experiment, model) -> Experiment:
    return dataclasses.replace(experiment, estimate_seconds=model)


def test_finished_runs_are_counted_and_calibrate_the_cost_model(fake_registered, tmp_path):  # noqa: F811
    experiment = fake_registered
    all_specs = specs(widths=(1, 2, 3), seeds=(0, 1))
    sweep_dir = tmp_path / "out" / experiment.name
    run_sweep(experiment, all_specs[:2], sweep_dir, executor="local", device="cpu", progress=False)
    measured = measured_seconds(sweep_dir, {p.name for p in (sweep_dir / "runs").iterdir()})
    assert len(measured) == 2
    mean = sum(t for _, t in measured.values()) / 2

    row = experiment_plan(_with_model(experiment, lambda spec: 10.0), all_specs, sweep_dir)
    assert (row.runs, row.done, row.pending) == (6, 2, 4)
    # model × (Σ measured / Σ modelled): 4 runs × 10 s × (2·mean / 20 s) = 4 × mean
    assert row.seconds == pytest.approx(4 * mean) and "calibrated on 2 finished runs" in row.basis

    row = experiment_plan(_with_model(experiment, None), all_specs, sweep_dir)
    assert row.seconds == pytest.approx(4 * mean) and row.basis == "mean of 2 finished runs in the folder"

    fresh = experiment_plan(_with_model(experiment, lambda spec: 10.0), all_specs, tmp_path / "empty")
    assert fresh.seconds == 60.0 and fresh.basis == "cost model" and not (tmp_path / "empty").exists()


def test_a_scale_only_some_experiments_have_runs_those_and_skips_the_rest(fake_registered, tmp_path):  # noqa: F811
    import zeroloss
    from zeroloss.papers.base import REGISTRY, register

    medium = register(dataclasses.replace(fake_registered, name="fake.medium",
                                          specs={"medium": specs(widths=(1,), seeds=(0,))}))
    try:
        assert scales_of(experiments_for_paper(medium.paper)) == ["tiny", "medium", "paper"]
        result = zeroloss.reproduce(medium.paper, scale="medium", out=tmp_path / "o", executor="local",
                                    device="cpu", progress=False)
        assert [s.experiment for s in result.sweeps] == ["fake.medium"] and result.errors == []
        assert result.skipped == ["fake.decay has no 'medium' scale (it has: tiny, paper): skipped"]
        assert not (tmp_path / "o" / "fake.decay").exists()
    finally:
        REGISTRY.pop("fake.medium", None)
