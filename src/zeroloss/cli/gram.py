"""``zeroloss gram``: the exact finite-width Gram matrix of a freshly initialised net on given inputs."""

from __future__ import annotations

import io
from pathlib import Path

import typer

from zeroloss.cli.common import atomic_write_bytes, cli_errors, load_inputs, parse_device
from zeroloss.cli.train import build_net
from zeroloss.errors import ZerolossInputError


def gram(
    inputs: Path = typer.Option(..., help="X.npy: (n, d), or (n, channels, positions) for conv-resnet"),
    out: Path = typer.Option(..., help="where to write G.npy"),
    net: str = typer.Option("fc", help="fc | resnet | conv-resnet"),
    width: int = typer.Option(512, help="width m"),
    depth: int = typer.Option(2, help="number of hidden layers H"),
    activation: str = typer.Option("softplus", help="activation name"),
    layer: str = typer.Option("all", help="all | last | output | an integer h (1-based)"),
    members: int = typer.Option(1, help="members S: G.npy is (S, n, n) when S > 1, else (n, n)"),
    seed: int = typer.Option(0, help="seed of member 0"),
    c_res: float = typer.Option(0.5, "--c-res", help="ResNet residual scale, in (0, 1)"),
    normalise: bool = typer.Option(False, help="project inputs onto the unit sphere instead of rejecting them"),
    device: str = typer.Option("auto", help="auto | cpu | cuda"),
) -> None:
    """Write the Gram matrix at initialisation (float64) and print its extreme eigenvalues."""
    import numpy as np
    import torch

    from zeroloss.kernels.empirical import gram as gram_fn
    from zeroloss.spectrum import spectrum

    X = load_inputs(inputs, normalise)
    layer_sel: str | int = int(layer) if layer.lstrip("-").isdigit() else layer
    wanted = 3 if net == "conv-resnet" else 2
    if X.ndim != wanted:
        shape = "(n, channels, positions)" if wanted == 3 else "(n, d)"
        raise ZerolossInputError(f"--inputs: {net} needs {shape} arrays, got shape {tuple(X.shape)}")
    model = build_net(net, d=X.shape[1], channels=X.shape[1], positions=X.shape[-1], width=width, depth=depth,
                      activation=activation, members=members, seed=seed, dtype=torch.float64,
                      device=parse_device(device), c_res=c_res)
    G = gram_fn(model, X, layer=layer_sel).cpu()
    buffer = io.BytesIO()
    np.save(buffer, (G[0] if members == 1 else G).numpy())
    atomic_write_bytes(out, buffer.getvalue())
    for s in range(members):
        spec = spectrum(G[s])
        typer.echo(f"member {s}: lambda_min {spec.lambda_min:.6g}  lambda_max {spec.lambda_max:.6g}  "
                   f"condition {spec.condition:.4g}  negative eigenvalues {spec.negative_count}")
    typer.echo(f"wrote {out}")


def register(app: typer.Typer) -> None:
    app.command("gram")(cli_errors(gram))
