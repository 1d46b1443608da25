"""``zeroloss two-timescale``: Marion & Berthier's online SGD on the univariate smoothed-step net.

Runs ``steps = t_max / (h·ε)`` steps of online SGD with label noise (docs/theory.md §3.4) for every repeat side
by side and writes a results folder in the store's run format (:mod:`zeroloss.store`, read by
:func:`zeroloss.load`): one run per repeat under ``runs/<id>/`` — ``spec.json`` (every option and the index
``repeat``; repeat k uses seed + k), ``metrics.parquet`` (tidy: step, metric ∈ {risk, tau}, value),
``summary.json`` (``final_risk``, ``steps``, ``seconds``, ``tau_max``, ``diverged``), ``env.json`` — and
``sweep.json`` listing them with the command's options. The folder is built under a temporary name and renamed
into place when complete (see :mod:`zeroloss.cli.train`). ``--json`` prints one object with ``final_risk`` (one
per repeat), ``steps``, ``seconds``, ``tau_max`` and ``out``.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import typer

from zeroloss.cli.common import check_seed, cli_errors
from zeroloss.errors import ZerolossInputError, choice, positive_int

#: Refuse runs longer than this many steps per repeat from the CLI (the paper's largest is 1.75·10⁸).
MAX_STEPS = 10**10


def two_timescale(
    eps: float = typer.Option(2e-5, help="ε: ratio of the u-step to the a-step"),
    h: float = typer.Option(1e-3, help="step size of a (the u-step is h·ε)"),
    t_max: float = typer.Option(0.035, "--t-max", help="slow-time horizon τ = p·h·ε"),
    neurons: int = typer.Option(20, help="m, number of neurons"),
    eta: float = typer.Option(4e-3, help="smoothing width η of the cubic step"),
    target: str = typer.Option("paper", help="paper (values 1,4,1,2,1,4) | code (1,5,1,3,1,5)"),
    seed: int = typer.Option(0, help="seed of repeat 0 (repeat k uses seed + k)"),
    repeats: int = typer.Option(1, help="independent repeats, run side by side"),
    derivative: str = typer.Option("exact", help="exact σ′ | box (the official code's surrogate)"),
    noise: float = typer.Option(1.0, help="label noise half-width: ξ ∼ U[−noise, noise]"),
    logs: int = typer.Option(100, help="about how many times the exact risk is logged"),
    out: Path = typer.Option(..., help="results folder to create (one run per repeat, read by zeroloss.load)"),
    overwrite: bool = typer.Option(False, help="replace --out if it is an earlier two-timescale output"),
    json_output: bool = typer.Option(False, "--json", help="print one JSON object on stdout"),
    max_bytes: str | None = typer.Option(None, "--max-bytes", help="memory budget, e.g. 8GiB (default: half the "
                                         "available memory, or ZEROLOSS_MAX_BYTES)"),
) -> None:
    """Online SGD in (or out of) the two-timescale regime; the exact population risk is logged along the way."""
    from zeroloss.papers.marion2023.twotimescale import online_sgd, target_preset
    from zeroloss.papers.marion2023.twotimescale.sgd import DERIVATIVES
    from zeroloss.store import building_folder, check_folder

    choice(target, "--target", ("paper", "code"))
    choice(derivative, "--derivative", DERIVATIVES)
    for name, value in (("--eps", eps), ("--h", h), ("--t-max", t_max), ("--eta", eta)):
        if not (math.isfinite(value) and value > 0):
            raise ZerolossInputError(f"{name}: must be a positive number, got {value!r}")
    if not (math.isfinite(noise) and noise >= 0):
        raise ZerolossInputError(f"--noise: must be a number ≥ 0, got {noise!r}")
    for name, value in (("--neurons", neurons), ("--repeats", repeats), ("--logs", logs)):
        positive_int(value, name)
    ratio = t_max / h / eps  # h·eps may underflow to 0 (eps = 1e-320): divide in turn, inf when it overflows
    if not (math.isfinite(ratio) and 0.5 <= ratio < MAX_STEPS + 0.5):
        raise ZerolossInputError(f"--t-max: t_max/(h·eps) must give between 1 and {MAX_STEPS:.0e} steps, got "
                                 f"{ratio:.4g} (t_max = {t_max:g}, h = {h:g}, eps = {eps:g})")
    steps = int(round(ratio))
    check_seed(seed, repeats)
    check_two_timescale_size(repeats, neurons, logs, steps, max_bytes)
    options = {"eps": eps, "h": h, "t_max": t_max, "neurons": neurons, "eta": eta, "target": target, "seed": seed,
               "repeats": repeats, "derivative": derivative, "noise": noise, "logs": logs, "steps": steps}
    check_folder(out, "two-timescale", "--out", replace=True, overwrite=overwrite)
    with building_folder(out, "two-timescale", overwrite) as tmp:
        run = online_sgd(target_preset(target), eps=eps, h=h, steps=steps, neurons=neurons, eta=eta,
                         repeats=repeats, seed=seed, noise=noise, derivative=derivative, logs=logs,
                         progress=not json_output)
        write_repeats(tmp, run, options)
    summary = {"final_risk": run.final_risk.tolist(), "steps": run.steps, "seconds": run.seconds,
               "tau_max": float(run.tau[-1]), "out": str(out)}
    if json_output:
        typer.echo(json.dumps(summary))
        return
    for k, value in enumerate(summary["final_risk"]):
        typer.echo(f"repeat {k}: final risk {value:.6g}")
    typer.echo(f"{run.steps} steps × {repeats} repeats in {run.seconds:.2f} s (τ = {run.tau[-1]:.4g}) -> {out}")


def check_two_timescale_size(repeats: int, neurons: int, logs: int, steps: int, max_bytes: str | None) -> None:
    """Refuse (``--max-bytes``) a run whose logged states would not fit the budget
    (:func:`zeroloss.budget.two_timescale_memory_bytes`), before anything is allocated."""
    from zeroloss.budget import check_memory, two_timescale_memory_bytes

    need = two_timescale_memory_bytes(repeats=repeats, neurons=neurons, logs=logs, steps=steps)
    check_memory(need, max_bytes, field="--logs" if logs >= repeats else "--repeats",
                 what=f"logging {repeats:,} repeat(s) of {neurons} neurons {min(logs, steps):,} times",
                 hint="use fewer logs, repeats or neurons")


def write_repeats(folder: Path, run, options: dict) -> list[str]:
    """Store each repeat of a :class:`~zeroloss.papers.marion2023.twotimescale.sgd.SGDRun` as one run
    (experiment ``two-timescale``).

    Returns:
        The run ids, repeat order.
    """
    import numpy as np
    import pandas as pd

    from zeroloss.papers.base import RunOutput
    from zeroloss.store import RunStore, environment, python_command

    store = RunStore(folder, "two-timescale", field="--out")
    env = environment("cpu", "float64")
    steps, tau = run.log_steps, run.tau
    ids = []
    for k in range(run.risk.shape[1]):
        risk = run.risk[:, k]
        metrics = pd.concat([pd.DataFrame({"step": steps, "metric": "risk", "value": risk}),
                             pd.DataFrame({"step": steps, "metric": "tau", "value": tau})], ignore_index=True)
        summary = {"final_risk": float(risk[-1]), "steps": run.steps, "seconds": float(run.seconds),
                   "tau_max": float(tau[-1]), "diverged": bool(not np.isfinite(risk).all())}
        ids.append(store.write("two-timescale", {**options, "repeat": k}, RunOutput(metrics, summary), env))
    store.write_manifest("two-timescale", ids, {"options": options, "command": python_command()})
    return ids


def register(app: typer.Typer) -> None:
    app.command("two-timescale")(cli_errors(two_timescale))
