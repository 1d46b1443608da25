"""Claims and the HTML report: reproduce of a (fake) paper, inline SVGs, the claims table, determinism."""

from __future__ import annotations

import dataclasses
import json
import re
import shutil

import matplotlib.pyplot as plt
import pytest
from typer.testing import CliRunner

import fake_experiment
from fake_experiment import PAPER
from zeroloss.cli import app
from zeroloss.report import figure_svg

pytestmark = pytest.mark.usefixtures("fake_registered")

#: The fake paper's runs take microseconds: run them in-process (reproduce's default starts a pool).
LOCAL = ("--device", "cpu", "--executor", "local")


def test_reproduce_writes_claims_and_a_self_contained_report(tmp_path):
    out = tmp_path / "res"
    res = CliRunner().invoke(app, ["reproduce", PAPER, "--scale", "tiny", *LOCAL, "--out", str(out)])
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
        res = CliRunner().invoke(app, ["reproduce", PAPER, *LOCAL, "--out", str(out), "--json"])
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
    import zeroloss.papers as experiments

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

    import zeroloss.papers as experiments

    monkeypatch.setitem(experiments.REGISTRY, fake_experiment.NAME,
                        dataclasses.replace(fake_experiment.EXPERIMENT, claims=broken))
    res = CliRunner().invoke(app, ["reproduce", PAPER, *LOCAL, "--out", str(tmp_path / "o")])
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


# ------------------------------------------------------------------------------------------- rendering

LONG_CLAIM = ("the smallest width at which every member reaches L ≤ 10⁻²·L(0) within the step budget grows at most "
              "polynomially in the depth H for the residual net, while for the fully-connected net it grows "
              "exponentially")
#: Run-spec keys added to the fake's runs so that the per-run table is far wider than an 800 px page.
WIDE_KEYS = [f"option_with_a_long_name_{i}" for i in range(14)]


@pytest.fixture
def rich_report(tmp_path, monkeypatch):
    """A fake reproduction whose report has every verdict but ERROR, a long claim with its provenance and reason, a
    measured value that is a long unbroken string, and a per-run table with 16 varying keys."""
    import fake_experiment_plugin  # noqa: F401 - registers the plain fake now, so that a lookup does not re-register it
    import zeroloss.papers as experiments
    from zeroloss.papers.base import Claim, Provenance

    def claims(df):
        out = fake_experiment.claims(df)
        out.append(Claim(fake_experiment.NAME, LONG_CLAIM, "a_very_long_unbroken_value_" * 4, "≤ 2·(depth ratio)^3",
                         "INCONCLUSIVE", details="measured over 3 seeds",
                         provenance=Provenance("theorem", "Du et al. 2019, Thm 5.1: m = Ω(poly(n, 2^O(H)))"),
                         reason="3 of 4 widths censored at the 300-step budget"))
        out.append(Claim(fake_experiment.NAME, "a claim that fails", 3.0, "≤ 1", False,
                         provenance=Provenance("lab", "a margin over seed noise, fixed before running")))
        return out

    specs = [dict(s, **{k: i * s["seed"] + s["width"] for i, k in enumerate(WIDE_KEYS)})
             for s in fake_experiment.specs()]
    experiment = dataclasses.replace(fake_experiment.EXPERIMENT, claims=claims, specs={"tiny": specs})
    monkeypatch.setitem(experiments.REGISTRY, fake_experiment.NAME, experiment)
    out = tmp_path / "res"
    res = CliRunner().invoke(app, ["reproduce", PAPER, *LOCAL, "--out", str(out)])
    assert res.exit_code == 0, res.output
    return out / "report.html"


def test_report_header_counts_verdicts_and_names_the_versions(rich_report):
    from zeroloss.version import __version__, describe_version, source_commit

    html = rich_report.read_text()
    header = html[html.index('<header class="top">'):html.index("</header>")]
    for n, verdict in ((2, "PASS"), (1, "FAIL"), (1, "INCONCLUSIVE"), (0, "ERROR")):
        assert f">{n} {verdict}</li>" in header, verdict
    assert f"<code>{describe_version()}</code>" in header  # the package that built the page
    runs_made_by = f"zeroloss {__version__}" + (f" (commit {source_commit()})" if source_commit() else "")
    assert f"runs made by</dt><dd><code>{runs_made_by}</code>" in header  # from the runs' env.json


def test_report_claim_row_gives_text_then_measured_and_expected_with_provenance_and_reason(rich_report):
    html = rich_report.read_text()
    row = next(r for r in html.split("<tr ") if LONG_CLAIM in r)
    cells = re.findall(r"<td[^>]*>(.*?)</td>", row, flags=re.S)
    assert [c.split("<")[0].strip() for c in cells[:1]] == ["INCONCLUSIVE"]
    assert cells[1].strip().startswith(LONG_CLAIM)  # the claim's words first, then why
    assert "Inconclusive because</b> 3 of 4 widths censored at the 300-step budget" in cells[1]
    assert "Threshold from</b> theorem: Du et al. 2019, Thm 5.1" in cells[1] and "measured over 3 seeds" in cells[1]
    assert cells[2] == "a_very_long_unbroken_value_" * 4 and cells[3] == "≤ 2·(depth ratio)^3"
    fail_row = next(r for r in html.split("<tr ") if "a claim that fails" in r)
    assert fail_row.startswith('class="fail"') and "Threshold from</b> lab choice: a margin over seed noise" in fail_row
    # wide tables scroll inside their own box; the page has no script and fetches nothing
    assert html.count('<div class="scroll"><table class="wide">') == 2 and "<script" not in html
    assert not re.search(r'(src|href)="(https?:)?//', html)


@pytest.mark.slow
@pytest.mark.skipif(shutil.which("chromium") is None and shutil.which("chromium-browser") is None,
                    reason="headless Chromium is not on PATH (Debian: apt-get install -y chromium)")
def test_report_never_scrolls_sideways_at_800_and_1400_px_in_headless_chromium(rich_report, tmp_path):
    from benchmarks.screenshot_report import find_chromium, measure_width, png_size, screenshot

    chromium = find_chromium()
    for width in (800, 1400):
        layout = measure_width(rich_report, width, chromium, height=1200)
        assert layout["viewport"] == width
        assert layout["scroll"] == width, layout  # page width = viewport width: nothing sticks out
        assert layout["overflowing"] == [], layout
    png = tmp_path / "shot.png"
    screenshot(rich_report, png, 800, chromium, height=1200)
    assert png_size(png) == (800, 1200)
    # the check can fail: the same page without its scrolling boxes runs off an 800 px window
    broken = tmp_path / "broken.html"
    broken.write_text(rich_report.read_text().replace('class="scroll"', 'class="no-scroll"'))
    layout = measure_width(broken, 800, chromium, height=1200)
    assert layout["scroll"] > 800 and any(o.startswith("table.wide") for o in layout["overflowing"]), layout
