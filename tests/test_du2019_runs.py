"""du2019 runs: the horizon comes from the run's own kernel, the summary measures what the claims read."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from zeroloss.errors import ZerolossInputError
from zeroloss.kernels.empirical import gram
from zeroloss.nets.base import stack_members
from zeroloss.papers.du2019 import experiments as du2019
from zeroloss.papers.du2019.runs import make_data, make_net, run_batch
from zeroloss.papers.du2019.theory import kernel_steps_to
from zeroloss.spectra import lambda_max

pytestmark = pytest.mark.usefixtures("one_thread")


def _specs(**kw):
    base = dict(net="fc", depth=2, width=64, n=6, d=8, run_factor=2.0, probes=du2019.KERNEL_PROBES, limit=True)
    base.update(kw)
    return [du2019._spec(**base, seed=s) for s in range(2)]


@pytest.fixture(scope="module")
def fc_batch():
    specs = _specs()
    return specs, run_batch(specs, "cpu")


def test_step_and_horizon_come_from_the_runs_own_gram(fc_batch):
    specs, outputs = fc_batch
    X, y = make_data(specs[0])
    net = stack_members([make_net(s, s["seed"], torch.device("cpu"), tuple(X.shape[1:])) for s in specs])
    G0 = gram(net, X)
    eta = 1.0 / lambda_max(G0)
    with torch.no_grad():
        r0 = net(X) - y
    horizon = kernel_steps_to(G0, r0, eta, 1e-4)
    for k, out in enumerate(outputs):
        s = out.summary
        assert s["eta"] == pytest.approx(float(eta[k]), rel=1e-12)
        assert s["kernel_horizon"] == int(horizon[k])
        assert s["steps_done"] == math.ceil(2.0 * horizon[k])  # run_factor × its own horizon (purity)
        assert not s["censored"] and not s["diverged"]


def test_summary_and_metrics_hold_what_the_claims_and_figures_read(fc_batch):
    _, outputs = fc_batch
    for out in outputs:
        s, m = out.summary, out.metrics
        assert 0 < s["kernel_deviation"] < 0.5
        assert s["linear_steps"] > 0 and s["linear_fraction_min"] >= 0.9  # the linear-decrement claim's floor
        # the lemma's quantities: λ₀ from the limit kernel, G^(H)(0) near it, λ_min(G^(H)(k)) along the run
        assert s["lambda0"] > 0 and 0 < s["gram_limit_error"] < 1 and s["lemma_steps"] == s["steps_done"] + 1
        assert 0 < s["lambda_min_GH_min"] <= s["lambda_min_GH0"] * (1 + 1e-12)
        assert 0 < s["movement_max"] < 1 and 0 < s["gram_drift_max"] < 1
        assert s["min_loss_ratio"] <= 1e-4 and s["fit_step"] <= 2 * s["kernel_horizon"]
        loss = m[m["metric"] == "loss"].set_index("step")["value"]
        kernel = m[m["metric"] == "kernel_loss"].set_index("step")["value"]
        assert loss.index.equals(kernel.index) and len(loss) <= 201
        assert kernel.iloc[0] == pytest.approx(loss.iloc[0], rel=1e-12)  # L̂_0 = ½‖u(0) − y‖² = L(0)
        probed = {"contraction_ratio", "linear_bound", "lambda_min", "lambda_min_last", "gram_drift", "movement_W1"}
        assert probed <= set(m["metric"])


def test_a_run_cut_by_max_steps_is_censored():
    outputs = run_batch(_specs(max_steps=20, probes=["loss"], limit=False), "cpu")
    for out in outputs:
        assert out.summary["censored"] and out.summary["steps_done"] == 20
        assert "linear_steps" not in out.summary  # λ_min was not probed at every step
        assert "lambda0" not in out.summary  # limit false: the limit kernel is not computed
        assert math.isnan(out.summary["movement_max"])


def test_a_step_beyond_two_over_lambda_max_is_refused():
    with pytest.raises(ZerolossInputError, match="lr_scale"):
        run_batch(_specs(lr_scale=2.5), "cpu")


def test_a_member_trained_in_a_batch_equals_the_same_run_alone():
    """Batched members share one matmul chain; alone, the run does the same arithmetic on one member. The step
    counts differ (the batch runs to its longest horizon), so the common steps are compared; 1e-10 relative allows
    for a batched kernel summing in another order (observed here: equal to the last bit or within 1e-14)."""
    specs = _specs(probes=["loss"], horizon=1e-2)
    batched = run_batch(specs, "cpu")[1]
    alone = run_batch(specs[1:], "cpu")[0]
    a = alone.metrics[alone.metrics["metric"] == "loss"].set_index("step")["value"]
    b = batched.metrics[batched.metrics["metric"] == "loss"].set_index("step")["value"]
    common = a.index.intersection(b.index)
    assert len(common) > 10
    np.testing.assert_allclose(a[common], b[common], rtol=1e-10)
    assert alone.summary["kernel_horizon"] == batched.summary["kernel_horizon"]


def test_conv_resnet_run_and_estimate():
    spec = du2019.conv_specs(8, 1, n=4, channels=2, positions=4)[0]
    (out,) = run_batch([spec], "cpu")
    assert out.summary["kernel_horizon"] > 0 and np.isfinite(out.summary["kernel_deviation"])
    assert du2019.estimate_seconds(spec) > 0
    for specs in du2019.conv_specs(32, 3, 12, 2, 8), du2019.kernel_specs([64], 1, 8, 16):
        assert all(du2019.estimate_seconds(s) > 0 for s in specs)


def test_every_scale_is_defined_for_every_du_experiment():
    from zeroloss.papers.registry import experiments_for_paper

    for experiment in experiments_for_paper("du2019"):
        assert set(experiment.specs) == {"tiny", "medium", "paper"}
        assert len(experiment.specs["tiny"]) < len(experiment.specs["medium"]) <= len(experiment.specs["paper"])
