"""A fast, deterministic stand-in experiment for testing the sweep machinery (no training involved).

The "loss" of a run is L_k = L_0 · (1 − lr·width/10)^k · (1 + 0.05·z) with z ~ N(0, 1) drawn from the run's
seed, so every value depends on the run's spec and seed only (never on which other runs share its batch).
Spec flags: ``diverge`` (the loss blows up to inf: summary ``diverged``), ``fail`` (run_batch raises),
``sleep`` (seconds per batch: lets a test kill a sweep mid-way), ``crash`` (the worker process running the batch
kills itself with SIGKILL) and ``crash_once: PATH`` (the same, only if PATH does not exist yet; it is created
first). A crash never happens in the process that imported this module first (the test runner): there the batch
raises instead. Nor does a sleep: the runner itself is never killed, and its reference sweeps need no delay (the
sleep changes no value).

Tests register it with the ``fake_registered`` fixture (conftest.py); subprocesses (CLI, process pool, Ray workers) get
it through ``ZEROLOSS_EXTRA_EXPERIMENTS=fake_experiment_plugin``, which the fixture sets.
"""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import numpy as np
import pandas as pd

from zeroloss.papers.base import Claim, Experiment, RunOutput, pyplot, register

NAME = "fake.decay"
PAPER = "fakepaper"
STEPS = 5
#: The test runner's pid, inherited by every worker through the environment: crashes happen only elsewhere.
MAIN_PID = int(os.environ.setdefault("ZEROLOSS_FAKE_MAIN_PID", str(os.getpid())))
#: Every call of run_batch in this process: the list of batch sizes (to check batching).
CALLS: list[int] = []


def _one(spec: dict) -> RunOutput:
    rng = np.random.default_rng(spec["seed"])
    factor = 1.0 + 0.05 * rng.standard_normal()
    rate = 1.0 - spec["lr"] * spec["width"] / 10.0
    steps = np.arange(STEPS + 1)
    if spec.get("diverge"):
        loss = np.array([factor * 10.0**k for k in steps[:-1]] + [np.inf])
    else:
        loss = factor * rate**steps
    metrics = pd.DataFrame({"step": steps, "metric": "loss", "value": loss})
    summary = {"initial_loss": float(loss[0]), "final_loss": float(loss[-1]),
               "diverged": bool(not np.isfinite(loss).all())}
    return RunOutput(metrics, summary)


def run_batch(specs: list[dict], device: str = "cpu") -> list[RunOutput]:
    CALLS.append(len(specs))
    if os.getpid() != MAIN_PID:
        time.sleep(max(s.get("sleep", 0.0) for s in specs))
    for s in specs:
        marker = s.get("crash_once")
        if s.get("crash") or (marker and not os.path.exists(marker)):
            if marker:
                open(marker, "w").close()
            if os.getpid() == MAIN_PID:
                raise RuntimeError("fake crash asked for in the test runner itself: raised instead")
            os.kill(os.getpid(), signal.SIGKILL)
    if any(s.get("fail") for s in specs):
        raise RuntimeError("fake failure asked for by the spec")
    return [_one(s) for s in specs]


def plot(df: pd.DataFrame) -> dict:
    fig, ax = pyplot().subplots(figsize=(4, 3))
    loss = df[df["metric"] == "loss"]
    for rid, curve in loss.groupby("run_id", sort=True):
        ax.semilogy(curve["step"], curve["value"], label=rid)
    ax.set_xlabel("step")
    ax.set_ylabel("loss")
    return {"loss curves": fig}


def claims(df: pd.DataFrame) -> list[Claim]:
    runs = df.drop_duplicates("run_id")
    ok = runs[~runs["diverged"].astype(bool)]
    ratio = float((ok["final_loss"] / ok["initial_loss"]).max()) if len(ok) else float("nan")
    return [
        Claim(NAME, "every non-diverged run decreases its loss", ratio, "< 1", bool(ratio < 1)),
        Claim(NAME, "no run diverges", int(runs["diverged"].astype(bool).sum()), "0",
              bool(not runs["diverged"].astype(bool).any())),
    ]


def specs(widths=(1, 2), seeds=(0, 1), **extra) -> list[dict]:
    return [{"width": w, "lr": 0.1, "seed": s, **extra} for w in widths for s in seeds]


EXPERIMENT = Experiment(
    name=NAME, paper=PAPER, description="A fake experiment for the sweep tests.",
    specs={"tiny": specs(), "paper": specs(widths=(1, 2, 3), seeds=(0, 1, 2))},
    run_batch=run_batch, plot=plot, claims=claims,
)


def register_fake() -> Experiment:
    return register(EXPERIMENT)


def sweep_yaml(sleep: float) -> str:
    """A sweep file of 16 fake runs (8 widths × 2 seeds), each sleeping ``sleep`` s: long enough to be killed."""
    return (f"experiment: {NAME}\nbase: {{lr: 0.1, sleep: {sleep}}}\n"
            "grid: {width: [1, 2, 3, 4, 5, 6, 7, 8]}\nseeds: 2\n")


def cli_env() -> dict[str, str]:
    """The environment for a ``python -m zeroloss`` subprocess that finds this plugin (and the source tree)."""
    root = Path(__file__).resolve().parents[1]
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(root / "tests"), str(root / "src"), env.get("PYTHONPATH", "")])
    env["ZEROLOSS_EXTRA_EXPERIMENTS"] = "fake_experiment_plugin"
    return env
