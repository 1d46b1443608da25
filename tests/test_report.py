"""Claims and the HTML report: reproduce of a (fake) paper, inline SVGs, the claims table, determinism."""

from __future__ import annotations

import dataclasses
import json
import re

import matplotlib.pyplot as plt
import pytest
from typer.testing import CliRunner

import fake_experiment
from fake_experiment import PAPER, fake_registered  # noqa: F401 - pytest fixture
from zeroloss.cli import app
from zeroloss.report import figure_svg

pytestmark = pytest.mark.usefixtures("fake_registered")


def test_reproduce_writes_claims_and_a_self_contained_report(tmp_path):
    out = tmp_path / "res"
    res = CliRunner().invoke(app, ["reproduce", PAPER, "--scale", "tiny", "--device", "cpu", "--out", str(out)])
    assert res.exit_code == 0, res.output
    assert "2/2 claims passed" in res.stdout and "PASS" in res.stdout

    claims = json.loads((out / "claims.json").read_text())
    assert [c["claim"] for c in claims] == ["every non-diverged run decreases its loss", "no run diverges"]
    assert all({"experiment", "claim", "measured", "expected", "passed"} <= set(c) for c in claims)
    # measured value recomputed from the stored runs: the worst loss ratio of the tiny runs (width 1, lr 0.1)
    assert claims[0]["measured"] == pytest.approx(0.99**fake_experiment.STEPS, rel=1e-12)

    html = (out / "report.html").read_text()
    assert html.count("<svg") == 1 and "<?xml" not in html
    assert '<table class="claims">' in html and html.count('<tr class="pass">') == 2
    assert "fake.decay" in html and "Environment" in html and "<script" not in html
    assert not re.search(r'(src|href)="https?://', html), "self-contained: nothing fetched at view time"
    assert len(list((out / "fake.decay" / "runs").iterdir())) == len(fake_experiment.EXPERIMENT.specs["tiny"])


def test_failed_claim_is_a_finding_exit_0_and_rebuilt_report_is_identical(tmp_path):
    out = tmp_path / "res"
    fake_experiment.EXPERIMENT.specs["tiny"].append({"width": 1, "lr": 0.1, "seed": 9, "diverge": True})
    try:
        res = CliRunner().invoke(app, ["reproduce", PAPER, "--device", "cpu", "--out", str(out), "--json"])
    finally:
        fake_experiment.EXPERIMENT.specs["tiny"].pop()
    assert res.exit_code == 0, res.output
    claims = json.loads(res.stdout)
    assert [c["passed"] for c in claims] == [True, False] and claims[1]["measured"] == 1
    html = (out / "report.html").read_bytes()
    assert b'<tr class="fail">' in html

    again = CliRunner().invoke(app, ["report", str(out)])
    assert again.exit_code == 0, again.output
    assert "FAIL" in again.stdout
    assert (out / "report.html").read_bytes() == html, "same stored runs, same report bytes"


def test_unregistered_paper_names_what_is_registered(tmp_path):
    import zeroloss.experiments as experiments

    saved = dict(experiments.REGISTRY)
    experiments.REGISTRY.clear()
    experiments.REGISTRY[fake_experiment.NAME] = fake_experiment.EXPERIMENT
    try:
        res = CliRunner().invoke(app, ["reproduce", "marion2023", "--out", str(tmp_path / "o")])
    finally:
        experiments.REGISTRY.clear()
        experiments.REGISTRY.update(saved)
    assert res.exit_code == 2
    assert res.stderr.strip() == ("error: paper: no experiments registered for 'marion2023'; "
                                  "registered: fakepaper: fake.decay")
    assert not (tmp_path / "o").exists()


def test_claims_or_plot_raising_is_an_error_exit_1_with_the_report_still_written(tmp_path, monkeypatch):
    def broken(df):
        raise ValueError("no such column")

    import zeroloss.experiments as experiments

    monkeypatch.setitem(experiments.REGISTRY, fake_experiment.NAME,
                        dataclasses.replace(fake_experiment.EXPERIMENT, claims=broken))
    res = CliRunner().invoke(app, ["reproduce", PAPER, "--device", "cpu", "--out", str(tmp_path / "o")])
    assert res.exit_code == 1
    assert "ERROR" in res.stdout and "claims(df): ValueError: no such column" in res.stderr
    assert "no such column" in (tmp_path / "o" / "report.html").read_text()


def test_figure_svg_is_deterministic_and_ids_are_prefixed():
    fig, ax = plt.subplots()
    ax.plot([0, 1, 2], [1, 0.5, 0.2])
    ax.set_title("loss")
    first = figure_svg(fig, prefix="a-")
    assert first == figure_svg(fig, prefix="a-") and first.startswith("<svg")
    ids = re.findall(r'\bid="([^"]+)"', first)
    assert ids and all(i.startswith("a-") for i in ids)
    refs = re.findall(r'(?:href="#|url\(#)([^")]+)', first)
    assert refs and all(r.startswith("a-") for r in refs)
    plt.close(fig)


def test_bad_inputs_exit_2_and_write_nothing(tmp_path):
    out = tmp_path / "o"
    for args in (["reproduce", PAPER, "--scale", "huge", "--out", str(out)],
                 ["reproduce", PAPER, "--executor", "slurm", "--out", str(out)],
                 ["reproduce", "nopaper", "--out", str(out)],
                 ["report", str(tmp_path / "missing")]):
        res = CliRunner().invoke(app, args)
        assert res.exit_code == 2, (args, res.output)
        assert len(res.stderr.strip().splitlines()) == 1 and res.stderr.startswith("error: ")
    assert not out.exists()
