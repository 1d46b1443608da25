"""``zeroloss train``: train one of Du et al.'s nets by full-batch GD and write a results folder.

The folder has the store's run format (:mod:`zeroloss.store`), so :func:`zeroloss.load` reads it like a sweep:
one run per ensemble member under ``runs/<id>/`` — ``spec.json`` (every option, with that member's ``lr`` and its
index ``member``; member k's net is drawn with seed + k, the data with ``seed``), ``metrics.parquet`` (the loss
at every step and the probes on their schedule), ``summary.json`` (initial and final loss, ``diverged``, the
step it diverged at or reached the target), ``env.json`` — and ``sweep.json`` listing the runs with the command's
options. It is built under a temporary name beside ``--out`` and renamed into place when complete: bad input, an
error or a kill leaves no result folder, and the temporary a kill leaves is removed by the next ``train`` on the
same ``--out``. ``--overwrite`` replaces only an earlier ``train`` output (see :mod:`zeroloss.store.ownership`).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import TYPE_CHECKING

import typer

from zeroloss.cli.common import check_seed, cli_errors, parse_device, parse_dtype
from zeroloss.errors import ZerolossInputError, choice

if TYPE_CHECKING:
    import torch

DATA = ("sphere", "digits", "patches")
#: The size options' defaults (what a refusal compares with to name the option that set the size).
TRAIN_DEFAULTS = {"--n": 32, "--d": 16, "--channels": 2, "--positions": 8, "--width": 512, "--depth": 2,
                  "--members": 1, "--steps": 500}


def make_data(data: str, net: str, n: int, d: int, channels: int, positions: int, labels: str, seed: int):
    """Inputs and labels for ``train``: sphere or digits for fc/resnet, patches for conv-resnet."""
    from zeroloss.data import digits_data, patch_data, sphere_data

    choice(data, "--data", DATA)
    if (net == "conv-resnet") != (data == "patches"):
        raise ZerolossInputError(
            f"--data: conv-resnet needs --data patches, fc/resnet need sphere or digits, got {data!r} for {net}")
    if data == "sphere":
        if d < 2 and n > 1:
            raise ZerolossInputError(f"--d: points on the sphere S^0 (d = 1) are ±1, so any two of the n = {n} inputs "
                                     "are parallel and λ₀ = 0; use d ≥ 2, got 1")
        return sphere_data(n, d, seed, labels)
    if data == "digits":
        if d != 64:
            raise ZerolossInputError(f"--d: digits images have d = 64, got {d}")
        return digits_data(n, seed, "parity" if labels == "random" else labels)
    return patch_data(n, channels, positions, seed, labels)


def train(
    net: str = typer.Option("fc", help="fc | resnet | conv-resnet"),
    width: int = typer.Option(512, help="width m"),
    depth: int = typer.Option(2, help="number of hidden layers H"),
    activation: str = typer.Option("erf", help="activation name (see zeroloss.ACTIVATIONS); erf meets Du et al.'s "
                                   "assumptions and its Gram is well conditioned (softplus's is ~100x worse: slower)"),
    n: int = typer.Option(32, help="number of training points"),
    d: int = typer.Option(16, help="input dimension (fc/resnet; 64 for digits)"),
    channels: int = typer.Option(2, help="input channels (conv-resnet)"),
    positions: int = typer.Option(8, help="input positions p (conv-resnet)"),
    data: str = typer.Option("sphere", help="sphere | digits | patches"),
    labels: str = typer.Option("random", help="random | gaussian | teacher (digits: parity by default)"),
    lr: str = typer.Option("auto", help="step size, or comma-separated one per member; auto: 1/λ_max(G(0)) per "
                           "member (a step above 2/λ_max(G(0)) is warned about)"),
    steps: int = typer.Option(500, help="maximum number of GD steps"),
    members: int = typer.Option(1, help="ensemble members S (member k uses seed + k)"),
    seed: int = typer.Option(0, help="seed of member 0 and of the data"),
    c_res: float = typer.Option(0.5, "--c-res", help="ResNet residual scale, in (0, 1)"),
    probe_every: int = typer.Option(0, help="probe schedule in steps (0: about 100 probes)"),
    target_loss: float = typer.Option(0.0, help="stop when every member's loss is at most this (0: off)"),
    device: str = typer.Option("auto", help="auto | cpu | cuda"),
    dtype: str = typer.Option("float32", help="float32 | float64 (training dtype; Gram spectra are float64)"),
    out: Path = typer.Option(..., help="results folder to create (one run per member, read by zeroloss.load)"),
    overwrite: bool = typer.Option(False, help="replace --out if it is an earlier train output"),
    max_bytes: str | None = typer.Option(None, "--max-bytes", help="memory budget, e.g. 8GiB (default: half the "
                                         "available memory, or ZEROLOSS_MAX_BYTES)"),
) -> None:
    """Train a Du et al. net by full-batch gradient descent and write a results folder."""
    from zeroloss.store import building_folder, check_folder
    from zeroloss.train.gd import train_gd

    torch_dtype, torch_device = parse_dtype(dtype), parse_device(device)
    check_seed(seed, members if isinstance(members, int) and members > 0 else 1)
    try:
        lrs = None if lr == "auto" else [float(v) for v in lr.split(",")]
    except ValueError:
        raise ZerolossInputError(f"--lr: must be auto, a number or comma-separated numbers, got {lr!r}") from None
    check_folder(out, "train", "--out", replace=True, overwrite=overwrite)  # before the (long) training
    check_train_size(net, n, d, channels, positions, width, depth, members, steps, probe_every, torch_dtype, max_bytes)
    X, y = make_data(data, net, n, d, channels, positions, labels, seed)
    model = build_du_net(net, X, width=width, depth=depth, activation=activation, c_res=c_res, members=members,
                         seed=seed, dtype=torch_dtype, device=torch_device)
    options = {"net": net, "width": width, "depth": depth, "activation": activation, "n": n, "d": d,
               "channels": channels, "positions": positions, "data": data, "labels": labels,
               "lr": lr if lrs is None else lrs,
               "steps": steps, "members": members, "seed": seed, "c_res": c_res, "probe_every": probe_every,
               "target_loss": target_loss, "dtype": dtype}
    with building_folder(out, "train", overwrite) as tmp:
        run = train_gd(model, X, y, lrs if lrs is None or len(lrs) > 1 else lrs[0], steps,
                       probe_every=probe_every or None, target_loss=target_loss or None)
        write_members(tmp, run, options, str(torch_device))
    typer.echo(run.summary().to_string(index=False))
    typer.echo(f"{run.steps} steps in {run.seconds:.2f} s -> {out}")


def check_train_size(net: str, n: int, d: int, channels: int, positions: int, width: int, depth: int, members: int,
                     steps: int, probe_every: int, dtype: torch.dtype, max_bytes: str | None) -> None:
    """Refuse (``--max-bytes``) a run whose stated memory (:func:`zeroloss.budget.train_memory_bytes`) is over the
    budget, before any data or net is made; the sizes are checked positive first."""
    import torch

    from zeroloss.budget import check_depth, check_memory, largest_cause, train_memory_bytes

    for value, name in ((n, "--n"), (d, "--d"), (channels, "--channels"), (positions, "--positions"),
                        (width, "--width"), (members, "--members"), (steps, "--steps")):
        if value < 1:
            raise ZerolossInputError(f"{name}: must be a positive integer, got {value}")
    check_depth(depth, "--depth")
    if probe_every < 0:
        raise ZerolossInputError(f"--probe-every: must be 0 (about 100 probes) or a positive integer, "
                                 f"got {probe_every}")
    itemsize = torch.empty((), dtype=dtype, device="cpu").element_size()

    def estimate(v: dict[str, int]) -> int:
        every = probe_every or max(1, v["--steps"] // 100)
        conv = net == "conv-resnet"
        return train_memory_bytes(net=net, n=v["--n"], width=v["--width"], depth=v["--depth"],
                                  members=v["--members"], steps=v["--steps"], probe_every=every,
                                  d=1 if conv else v["--d"], channels=v["--channels"] if conv else 1,
                                  positions=v["--positions"] if conv else 1, itemsize=itemsize)

    values = {"--n": n, "--d": d, "--channels": channels, "--positions": positions, "--width": width,
              "--depth": depth, "--members": members, "--steps": steps}
    if net == "conv-resnet":
        del values["--d"]
    else:
        del values["--channels"], values["--positions"]
    # name the option that set the size: the one whose default value would shrink the need the most
    field = largest_cause(estimate, values, TRAIN_DEFAULTS, "--width")
    check_memory(estimate(values), max_bytes, field=field,
                 what=f"training {members} member(s) of width {width}, depth {depth} on n = {n} points for "
                      f"{steps:,} steps", hint="use fewer steps, points or members, or a smaller net")


def write_members(folder: Path, run, options: dict, device: str) -> list[str]:
    """Store each member of a :class:`~zeroloss.train.gd.GDRun` as one run of ``folder`` (experiment ``train``).

    Member k's run: ``options`` with ``lr`` = the step it took (``run.lr[k]``: given, or the default 1/λ_max(G(0))
    when ``options["lr"]`` is ``"auto"``) and ``member`` = k; metrics = its loss at every step it
    was active (from ``run.losses``) and its probes other than ``loss`` (the loss probe reads the same values);
    summary = initial loss, last finite loss, ``diverged`` and the step it diverged at (None if it did not), the
    step it reached ``target_loss`` (None), and the run's ``steps`` and ``seconds``.

    Returns:
        The run ids, member order.
    """
    import numpy as np
    import pandas as pd

    from zeroloss.papers.base import RunOutput
    from zeroloss.store import RunStore, environment, python_command

    store = RunStore(folder, "train", field="--out")
    env = environment(device, options["dtype"])
    ids = []
    for k in range(run.losses.shape[1]):
        losses = run.losses[:, k]
        active = np.flatnonzero(np.isfinite(losses))
        loss_rows = pd.DataFrame({"step": active, "metric": "loss", "value": losses[active]})
        probes = run.history[(run.history["member"] == k) & (run.history["metric"] != "loss")]
        metrics = pd.concat([loss_rows, probes.drop(columns="member")], ignore_index=True)
        metrics = metrics.sort_values("step", kind="stable").reset_index(drop=True)
        finite = losses[active]
        summary = {"initial_loss": float(losses[0]), "final_loss": float(finite[-1]) if len(finite) else math.nan,
                   "diverged": k in run.diverged_at, "diverged_at": run.diverged_at.get(k),
                   "reached_target_at": run.reached_target_at.get(k), "steps": int(run.steps),
                   "seconds": float(run.seconds)}
        spec = {**options, "lr": float(run.lr[k]), "member": k}
        if options["lr"] == "auto":
            spec["lr_rule"] = "auto: 1/lambda_max(G(0))"
        ids.append(store.write("train", spec, RunOutput(metrics, summary), env))
    store.write_manifest("train", ids, {"options": options, "command": python_command()})
    return ids


def register(app: typer.Typer) -> None:
    app.command("train")(cli_errors(train))


def build_du_net(net: str, X, **options):
    """One of Du et al.'s nets for inputs X (``train`` and ``gram``): the registry's ``build_net`` with the input
    shape of X and the options the net has (``c_res`` only for the ResNets)."""
    from zeroloss.nets.registry import DU_NETS, build_net, net_options

    choice(net, "--net", DU_NETS)
    ensemble = {k: options.pop(k) for k in ("members", "seed", "dtype", "device")}
    return build_net(net, tuple(X.shape[1:]), **net_options(net, options), **ensemble)
