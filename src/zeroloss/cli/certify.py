"""``zeroloss certify``: Chatterjee's local PL criterion at an initialisation (docs/theory.md §2), proven vs estimated.

Builds a :class:`~zeroloss.nets.FeedForward` (float64), initialises it with ``--init``, and runs
:func:`zeroloss.certify`. ``--json`` prints one object on stdout with at least ``certified``,
``alpha_lower_bound`` (null where nothing is proven), ``alpha_estimate``, ``f0``, ``radius``, ``beta_estimate``
and ``step_size`` (η for GD on F = Σ(u − y)²; ``lr`` = 2η is the matching ``zeroloss train`` step).

Without ``--radius`` the radius is chosen (:func:`zeroloss.papers.chatterjee2022.radius.choose_radius`) on the
grid r_j = c·2^(−j/2), j = 1..40, below
c, the smallest weight the first-layer bound needs r to stay under (the smallest hidden weight, and the output
scale when ``--output-scale`` is given): for ``--init positive`` with the certified output scale, the r whose
certified M is smallest (GD's certified step shrinks like 1/M²); otherwise the r with the largest certified
margin r²α_lb/(4F(w₀)). The choice and the rule are printed on stderr (and under ``radius_choice`` with
``--json``). An initialisation with a non-positive hidden or output weight has no certified radius at all: the
command says so and asks for ``--radius`` (estimates only).

Examples:
    zeroloss certify --widths 64,64 --activation tanh --init positive --inputs X.npy --labels y.npy --json
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import TYPE_CHECKING

import typer

from zeroloss.cli.common import cli_errors, echo_err, parse_int_list
from zeroloss.errors import ZerolossInputError, choice, require, seed_value

#: Radii tried when none is given: c·2^(−j/2) for j = 1..RADIUS_CANDIDATES (down to c/2^20, about c·1e-6).
#: Library field names → the CLI's option names, so that a refusal names the flag the user typed.
FLAGS = {"radius": "--radius", "hidden": "--hidden", "M": "--output-scale", "X": "--inputs", "y": "--labels",
         "samples": "--samples", "descent_steps": "--descent-steps", "seed": "--seed", "activation": "--activation"}
#: Descent starts of the α estimate (zeroloss.certify's default, which the command uses).
DESCENT_STARTS = 8
#: Most loss evaluations (forward and double backward passes) the α estimate may take: samples + starts × steps.
#: The defaults take 64 + 8·60 = 544; at a millisecond or more each, 10⁷ is already hours (issue 19.5: 10¹²
#: descent steps ran with no refusal).
MAX_EVALUATIONS = 10**7

if TYPE_CHECKING:
    import torch


def _load(path: Path, field: str, ndim: int, budget: object = None) -> torch.Tensor:
    import numpy as np
    import torch

    from zeroloss.cli.files import read_array

    array = read_array(path, field, budget=budget)
    if array.ndim != ndim or array.size == 0:
        raise ZerolossInputError(f"{field}: must hold a non-empty numeric array with {ndim} dimensions, got shape "
                                 f"{array.shape}")
    array = array.astype(np.float64)
    if not np.isfinite(array).all():
        raise ZerolossInputError(f"{field}: contains NaN or inf (or values beyond float64's range)")
    return torch.as_tensor(array, dtype=torch.float64)


def check_certify_size(d: int, n: int, sizes: list[int], samples: int, descent_steps: int,
                       max_bytes: str | None = None) -> None:
    """Refuse, before the net is built, a net or an α estimate whose memory is over the budget, or an estimate
    with more than :data:`MAX_EVALUATIONS` loss evaluations (a time limit)."""
    from zeroloss.budget import check_depth, check_memory

    check_depth(len(sizes), "--widths")
    widths = [d, *sizes, 1]
    params = sum(a * b + b for a, b in zip(widths[:-1], widths[1:], strict=True))  # weights and biases, bounded

    def estimate(v: dict[str, int]) -> int:
        # the net (float64, with a copy), the sampled points (samples + 1, P) and one Jacobian (n, P) with its copy
        return 8 * params * (2 + v["--samples"] + 1) + 16 * n * params + 8 * n * max(widths) * len(widths)

    # the sampled points dominate when there are more of them than the Jacobians' 2n rows: then --samples set the size
    field = "--samples" if samples > 2 * n + 2 else "--widths"
    check_memory(estimate({"--samples": samples}), max_bytes, field=field,
                 what=f"certifying a net of {params:,} parameters with {samples:,} sampled points",
                 hint="use fewer samples or smaller widths")
    evaluations = samples + DESCENT_STARTS * descent_steps
    if evaluations > MAX_EVALUATIONS:
        field = "--descent-steps" if DESCENT_STARTS * descent_steps > samples else "--samples"
        raise ZerolossInputError(f"{field}: the α estimate would take {evaluations:,} loss evaluations (samples + "
                                 f"{DESCENT_STARTS}·descent steps), more than {MAX_EVALUATIONS:,} (hours of work); "
                                 "use fewer")


def _flag_error(exc: ZerolossInputError) -> ZerolossInputError:
    """The same message with the library's field name replaced by the CLI flag."""
    text = str(exc)
    field, sep, rest = text.partition(":")
    return ZerolossInputError(f"{FLAGS[field]}:{rest}") if sep and field in FLAGS else exc


def _check_options(samples: int, descent_steps: int, seed: int, hidden: float, output_scale: float) -> None:
    require(samples >= 0, "--samples", "must be an integer ≥ 0", samples)
    require(descent_steps >= 0, "--descent-steps", "must be an integer ≥ 0", descent_steps)
    seed_value(seed, "--seed", members=2)
    require(math.isfinite(hidden) and hidden >= 0, "--hidden", "must be a positive number (0: 1/fan_in)", hidden)
    require(math.isfinite(output_scale) and output_scale >= 0, "--output-scale",
            "must be a positive number (0: the certified M)", output_scale)


def certify_command(
    widths: str = typer.Option(..., help="hidden widths, comma-separated, e.g. 64,64"),
    activation: str = typer.Option("tanh", help="activation (softplus, tanh, sigmoid, erf for a certificate)"),
    init: str = typer.Option("positive", help="positive | kaiming | xavier | lecun | torch_default | gaussian"),
    inputs: Path = typer.Option(..., help="inputs X, an (n, d) .npy array"),
    labels: Path = typer.Option(..., help="labels y, an (n,) .npy array"),
    radius: float | None = typer.Option(None, help="radius r of the ball B(w0, r); default: chosen (see --help of the "
                                            "module: the smallest certified M, or the largest certified margin)"),
    seed: int = typer.Option(0, help="seed of the initialisation and of the sampling"),
    hidden: float = typer.Option(0.0, help="positive init: hidden-weight constant (0: 1/fan_in)"),
    output_scale: float = typer.Option(0.0, "--output-scale", help="positive init: M (0: the certified M)"),
    samples: int = typer.Option(64, help="points sampled in the ball for the alpha estimate"),
    descent_steps: int = typer.Option(60, help="descent iterations for the alpha estimate"),
    json_out: bool = typer.Option(False, "--json", help="print one JSON object on stdout"),
) -> None:
    """Certify (or estimate) Chatterjee's local PL criterion 4F(w0) < r^2 alpha(w0, r) at an initialisation."""
    import torch

    from zeroloss.nets.feedforward import FeedForward
    from zeroloss.papers.chatterjee2022.init import INITIALISERS, initialise
    from zeroloss.papers.chatterjee2022.radius import choose_radius, positive_options
    from zeroloss.papers.chatterjee2022.theory import certify, check_radius

    choice(init, "--init", tuple(INITIALISERS))
    sizes = parse_int_list(widths, "--widths")
    _check_options(samples, descent_steps, seed, hidden, output_scale)
    if radius is not None:
        radius = check_radius(radius, "--radius")
    X = _load(inputs, "--inputs", 2)
    y = _load(labels, "--labels", 1)
    if y.shape[0] != X.shape[0]:
        raise ZerolossInputError(f"--labels: must have one label per input ({X.shape[0]}), got {y.shape[0]}")
    check_certify_size(X.shape[1], X.shape[0], sizes, samples, descent_steps)
    try:
        net = FeedForward(X.shape[1], sizes, activation, 1, seed, torch.float64, "cpu", init=None)
        choice_record = None
        if radius is None:
            radius, choice_record = choose_radius(net, init, X, y, hidden, output_scale)
            echo_err(f"note: --radius not given: chose r = {radius:.4g} among {choice_record['candidates']} radii "
                     f"c·2^(−j/2) below c = {choice_record['ceiling']:.4g} ({choice_record['ceiling_is']}): it gives "
                     f"{choice_record['rule']}")
        options = positive_options(X, y, radius, hidden, output_scale) if init == "positive" else {}
        info = initialise(net, init, **options)
        cert = certify(net, X, y, radius, samples=samples, descent_steps=descent_steps, seed=seed)
    except ZerolossInputError as exc:
        raise _flag_error(exc) from None
    record = {**cert.to_dict(), "init": init, "widths": sizes, "activation": activation, "seed": seed,
              "init_info": {k: v for k, v in info.items() if k not in ("init", "seed")},
              "radius_choice": choice_record}
    if json_out:
        typer.echo(json.dumps(record, default=float))
        return
    proven = (f"PROVEN: alpha >= {cert.alpha_lower_bound:.6g}; criterion 4F(w0) < r^2 alpha "
              f"{'holds' if cert.certified else 'is not certified'}" if cert.alpha_lower_bound
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
