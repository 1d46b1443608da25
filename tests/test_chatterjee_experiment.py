"""The chatterjee2022 experiment end to end on a reduced spec: run_batch, claims, plot."""

import matplotlib.figure
import pandas as pd

from zeroloss.experiments.chatterjee2022 import EXPERIMENT, INITS, claims, plot, run_batch, step_grid


def _frame(specs, outputs):
    """The sweep's tidy layout: one row per (run, step, metric) with the spec and summary columns."""
    frames = []
    for k, (spec, out) in enumerate(zip(specs, outputs, strict=True)):
        m = out.metrics.copy()
        m["run_id"] = f"run{k}"
        for key, v in {**spec, **out.summary}.items():
            m[key] = [tuple(v) if isinstance(v, list) else v] * len(m)
        frames.append(m)
    return pd.concat(frames, ignore_index=True)


def test_reduced_comparison_runs_certifies_and_plots():
    # Gaussian data only, a coarse grid (ratio 8) and a short budget: the structure, not the speed-up, is tested.
    grid = step_grid(1e-9, 8.0, 8.0)
    specs = [dict(s, lr_grid=grid, steps=300, probe_every=3) for s in EXPERIMENT.specs["tiny"]
             if s["data"] == "gaussian" and s["init"] in ("positive", "kaiming")]
    outputs = []
    for spec in specs:  # one batch per init (the batch key differs by init)
        outputs += run_batch([spec], "cpu")
    positive = outputs[0].summary
    assert positive["cert_certified"] is True and positive["cert_alpha_lower_bound"] > 0
    assert positive["certified_run_stayed_in_ball"] is True
    assert positive["lr"] in grid and positive["max_distance"] > 0
    baseline = outputs[1].summary
    assert baseline["cert_alpha_lower_bound"] is None and baseline["cert_certified"] is False
    df = _frame(specs, outputs)
    found = {c.claim.split(":")[0]: c for c in claims(df)}
    assert found["the positive initialisation is certified"].passed
    assert any(c.startswith("gaussian") for c in found)  # the speed comparison is reported, pass or fail
    figures = plot(df)
    assert set(figures) == {"loss curves (gaussian)"}
    assert all(isinstance(f, matplotlib.figure.Figure) for f in figures.values())


def test_tiny_specs_cover_every_init_on_both_data_sets():
    specs = EXPERIMENT.specs["tiny"]
    assert {(s["data"], s["init"]) for s in specs} == {(d, i) for d in ("gaussian", "digits") for i in INITS}
    assert all(s["n"] <= s["d"] for s in specs)  # n ≤ d: linearly independent inputs
