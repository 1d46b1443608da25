"""``zeroloss certify``: Chatterjee's local PL criterion at an initialisation (MATH §2), proven vs estimated.

Builds a :class:`~zeroloss.nets.FeedForward` (float64), initialises it with ``--init``, and runs
:func:`zeroloss.certify`. ``--json`` prints one object on stdout with at least ``certified``,
``alpha_lower_bound`` (null where nothing is proven), ``alpha_estimate``, ``f0``, ``radius``, ``beta_estimate``
and ``step_size`` (η for GD on F = Σ(u − y)²; ``lr`` = 2η is the matching ``zeroloss train`` step).

Example:
    zeroloss certify --widths 64,64 --activation tanh --init positive --inputs X.npy --labels y.npy \\
        --radius 0.005 --json
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING

import typer

from zeroloss.cli.common import cli_errors, parse_int_list
from zeroloss.errors import ZerolossInputError, choice

if TYPE_CHECKING:
    import torch


def _load(path: Path, field: str, ndim: int) -> torch.Tensor:
    import numpy as np
    import torch

    try:
        array = np.load(path, allow_pickle=False)
    except (OSError, ValueError) as exc:
        raise ZerolossInputError(f"{field}: must be a readable .npy file, got {str(path)!r} ({exc})") from None
    if array.ndim != ndim or not np.issubdtype(array.dtype, np.number):
        raise ZerolossInputError(f"{field}: must hold a numeric array with {ndim} dimensions, got shape {array.shape}")
    if not np.isfinite(array).all():
        raise ZerolossInputError(f"{field}: contains NaN or inf")
    return torch.as_tensor(array, dtype=torch.float64)


def certify_command(
    widths: str = typer.Option(..., help="hidden widths, comma-separated, e.g. 64,64"),
    activation: str = typer.Option("tanh", help="activation (softplus, tanh, sigmoid, erf for a certificate)"),
    init: str = typer.Option("positive", help="positive | kaiming | xavier | lecun | torch_default | gaussian"),
    inputs: Path = typer.Option(..., help="inputs X, an (n, d) .npy array"),
    labels: Path = typer.Option(..., help="labels y, an (n,) .npy array"),
    radius: float = typer.Option(..., help="radius r of the ball B(w0, r)"),
    seed: int = typer.Option(0, help="seed of the initialisation and of the sampling"),
    hidden: float = typer.Option(0.0, help="positive init: hidden-weight constant (0: 1/fan_in)"),
    output_scale: float = typer.Option(0.0, "--output-scale", help="positive init: M (0: the certified M)"),
    samples: int = typer.Option(64, help="points sampled in the ball for the alpha estimate"),
    descent_steps: int = typer.Option(60, help="descent iterations for the alpha estimate"),
    json_out: bool = typer.Option(False, "--json", help="print one JSON object on stdout"),
) -> None:
    """Certify (or estimate) Chatterjee's local PL criterion 4F(w0) < r^2 alpha(w0, r) at an initialisation."""
    import torch

    from zeroloss.init import INITIALISERS, initialise
    from zeroloss.nets.feedforward import FeedForward
    from zeroloss.theory.chatterjee2022 import certify

    choice(init, "--init", tuple(INITIALISERS))
    sizes = parse_int_list(widths, "--widths")
    X = _load(inputs, "--inputs", 2)
    y = _load(labels, "--labels", 1)
    if y.shape[0] != X.shape[0]:
        raise ZerolossInputError(f"--labels: must have one label per input ({X.shape[0]}), got {y.shape[0]}")
    if not radius > 0:
        raise ZerolossInputError(f"--radius: must be a positive number, got {radius}")
    net = FeedForward(X.shape[1], sizes, activation, 1, seed, torch.float64, "cpu", init=None)
    options: dict = {}
    if init == "positive":
        options = {"X": X, "y": y, "radius": radius, "hidden": hidden or None, "M": output_scale or None}
    info = initialise(net, init, **options)
    cert = certify(net, X, y, radius, samples=samples, descent_steps=descent_steps, seed=seed)
    record = {**cert.to_dict(), "init": init, "widths": sizes, "activation": activation, "seed": seed,
              "init_info": {k: v for k, v in info.items() if k not in ("init", "seed")}}
    if json_out:
        typer.echo(json.dumps(record, default=float))
        return
    proven = (f"PROVEN: alpha >= {cert.alpha_lower_bound:.6g}; criterion 4F(w0) < r^2 alpha "
              f"{'holds' if cert.certified else 'is not certified'}" if cert.alpha_lower_bound is not None
              else f"PROVEN: nothing ({cert.reason})")
    lines = [
        f"F(w0) = {cert.f0:.6g}, r = {cert.radius:.6g}, lambda_min(XX^T) = {cert.lambda_min_xxt:.6g}",
        proven,
        f"ESTIMATED: alpha ~ {cert.alpha_estimate:.6g} (criterion {'holds' if cert.criterion_estimated else 'fails'}"
        " with the estimate), beta ~ " + (f"{cert.beta_estimate:.6g}" if cert.beta_estimate is not None else "n/a"),
        "step size eta = " + (f"{cert.step_size:.6g} (train lr = {cert.lr:.6g}); " if cert.step_size else "none; ")
        + cert.step_basis,
    ]
    typer.echo("\n".join(lines))


def register(app: typer.Typer) -> None:
    app.command("certify")(cli_errors(certify_command))
