"""``zeroloss train``: train one of Du et al.'s nets by full-batch GD and write a run directory.

The run directory holds ``spec.json`` (every option), ``metrics.parquet`` (tidy: step, member, metric, value),
``losses.npy`` (every step's loss per member) and ``summary.json`` / ``summary.csv`` (one row per member). It is
written atomically: bad input or a crash leaves no directory behind.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING

import typer

from zeroloss.cli.common import AtomicDirectory, cli_errors, parse_device, parse_dtype
from zeroloss.errors import ZerolossInputError, choice

if TYPE_CHECKING:
    import torch

DATA = ("sphere", "digits", "patches")


def build_net(net: str, *, d: int, channels: int, positions: int, width: int, depth: int, activation: str,
              members: int, seed: int, dtype: torch.dtype, device: torch.device, c_res: float):
    """Construct the named Du et al. net (shared by ``train`` and ``gram``) through the registry."""
    from zeroloss.nets.registry import DU_NETS, net_options
    from zeroloss.nets.registry import build_net as build

    choice(net, "--net", DU_NETS)
    options = {"d": d, "channels": channels, "positions": positions, "width": width, "depth": depth,
               "activation": activation, "c_res": c_res}
    return build(net, **net_options(net, options), members=members, seed=seed, dtype=dtype, device=device)


def make_data(data: str, net: str, n: int, d: int, channels: int, positions: int, labels: str, seed: int):
    """Inputs and labels for ``train``: sphere or digits for fc/resnet, patches for conv-resnet."""
    from zeroloss.data import digits_data, patch_data, sphere_data

    choice(data, "--data", DATA)
    if (net == "conv-resnet") != (data == "patches"):
        raise ZerolossInputError(
            f"--data: conv-resnet needs --data patches, fc/resnet need sphere or digits, got {data!r} for {net}")
    if data == "sphere":
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
    out: Path = typer.Option(..., help="run directory to create"),
    overwrite: bool = typer.Option(False, help="replace --out if it exists"),
) -> None:
    """Train a Du et al. net by full-batch gradient descent and write a run directory."""
    import numpy as np

    from zeroloss.train.gd import train_gd

    torch_dtype, torch_device = parse_dtype(dtype), parse_device(device)
    try:
        lrs = None if lr == "auto" else [float(v) for v in lr.split(",")]
    except ValueError:
        raise ZerolossInputError(f"--lr: must be auto, a number or comma-separated numbers, got {lr!r}") from None
    X, y = make_data(data, net, n, d, channels, positions, labels, seed)
    model = build_net(net, d=X.shape[1] if X.ndim == 2 else d, channels=channels, positions=positions,
                      width=width, depth=depth, activation=activation, members=members, seed=seed,
                      dtype=torch_dtype, device=torch_device, c_res=c_res)
    spec = {"net": net, "width": width, "depth": depth, "activation": activation, "n": n, "d": d,
            "channels": channels, "positions": positions, "data": data, "labels": labels,
            "lr": lr if lrs is None else lrs,
            "steps": steps, "members": members, "seed": seed, "c_res": c_res, "probe_every": probe_every,
            "target_loss": target_loss, "device": str(torch_device), "dtype": dtype}
    with AtomicDirectory(out, overwrite) as tmp:
        run = train_gd(model, X, y, lrs if lrs is None or len(lrs) > 1 else lrs[0], steps,
                       probe_every=probe_every or None, target_loss=target_loss or None)
        summary = run.summary()
        (tmp / "spec.json").write_text(json.dumps(spec, indent=2, sort_keys=True))
        run.history.to_parquet(tmp / "metrics.parquet", index=False)
        np.save(tmp / "losses.npy", run.losses)
        summary.to_csv(tmp / "summary.csv", index=False)
        record = {"steps": run.steps, "seconds": run.seconds, "members": summary.to_dict(orient="records")}
        (tmp / "summary.json").write_text(json.dumps(record, indent=2, default=str))
    typer.echo(summary.to_string(index=False))
    typer.echo(f"{run.steps} steps in {run.seconds:.2f} s -> {out}")


def register(app: typer.Typer) -> None:
    app.command("train")(cli_errors(train))
