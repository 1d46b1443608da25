"""``zeroloss kernel ... --out K.zarr``: a kernel as a tiled, resumable job (:func:`zeroloss.tiles.kernel_job`).

    zeroloss kernel --kind ntk --net fc --depth 2 --inputs X.npy --out K.zarr --block 2048 \\
        --executor local|process|ray [--workers N] [--address ADDR] [--dtype float32] [--dry-run]
    zeroloss kernel --kind gram --net fc --width 512 --inputs X.npy --out G.zarr --executor process --workers 2
    zeroloss kernel --kind entk --model my_cnn.py:make_net --inputs X.npy --out E.zarr

Kinds: ``du``, ``nngp``, ``ntk`` (the infinite-width kernels of ``--net``), ``gram`` (the finite-width Gram of a lab
net: ``--width``, ``--seed``, ``--layer``), ``entk`` (the empirical NTK of your model, summed over its outputs).
Inputs of the lab nets are validated as ``zeroloss kernel`` and ``gram`` validate them (``--normalise`` projects
onto the sphere); a user's model takes any numeric array (n, ...). ``--max-bytes`` is the budget *per worker*.
Running the same command again resumes the job (after a kill too); with other inputs, kind, options or model it is
refused in one line. ``--dry-run`` prints the plan and an estimate from one tile timed here, and writes nothing.
Exit status: 0 complete, 1 some tiles failed (their error printed; run again to retry them), 2 bad input.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer

from zeroloss.cli.common import echo_err

LIMIT_KINDS = ("du", "nngp", "ntk")
JOB_KINDS = (*LIMIT_KINDS, "gram", "entk")


def _inputs(path: Path, field: str, lab_net: bool, normalise: bool) -> Any:

    from zeroloss.cli.common import load_inputs

    if lab_net:
        return load_inputs(path, normalise) if field == "--inputs" else _relabel(load_inputs, path, normalise, field)
    from zeroloss.cli.files import read_array

    return read_array(path, field)  # regular files only, sized from the header, native byte order


def _relabel(fn: Any, path: Path, normalise: bool, field: str) -> Any:
    from zeroloss.errors import ZerolossInputError

    try:
        return fn(path, normalise)
    except ZerolossInputError as exc:
        raise ZerolossInputError(str(exc).replace("--inputs", field, 1)) from None


def run_job(o: dict[str, Any]) -> None:
    """The body of ``zeroloss kernel`` for ``--out K.zarr`` (``o``: the command's options)."""
    from zeroloss.activations import ACTIVATIONS
    from zeroloss.budget import FLAG, resolve_budget
    from zeroloss.errors import ZerolossInputError, choice, require
    from zeroloss.kernels.limit import NETS
    from zeroloss.sweep.executors import check_executor_options
    from zeroloss.tiles import kernel_job

    kind = o["kind"]
    choice(kind, "--kind", JOB_KINDS)
    check_executor_options(o["executor"], o["workers"], o["address"])
    from zeroloss.tiles.job import check_address

    check_address(o["address"])
    if o["overwrite"]:
        raise ZerolossInputError("--overwrite: a K.zarr job is resumed, never replaced; delete the folder (or choose "
                                 "another --out) to start again")
    require(o["block"] >= 1, "--block", "must be a positive integer (tile side)", o["block"])
    require(o["threads"] >= 1, "--threads", "must be a positive integer", o["threads"])
    budget = resolve_budget(o["max_bytes"], FLAG)
    user_model = kind == "entk" or o["model"] is not None  # a user's module: its eNTK, or its NNGP/NTK at m → ∞
    lab_net = not user_model
    params: dict[str, Any] = {}
    if lab_net:
        choice(o["net"], "--net", NETS)
        choice(o["activation"], "--activation", tuple(ACTIVATIONS))
        require(o["depth"] >= 1, "--depth", "must be a positive integer", o["depth"])
        if o["net"] != "fc":
            require(0.0 < o["c_res"] < 1.0, "--c-res", "must be in (0, 1)", o["c_res"])
        if o["net"] == "conv-resnet":
            require(o["kernel_size"] >= 1 and o["kernel_size"] % 2 == 1, "--kernel-size",
                    "must be an odd positive integer", o["kernel_size"])
        if o["model"] is not None:
            raise ZerolossInputError(f"--model: only used with --kind entk, got --kind {kind}")
        params = {"net": o["net"], "depth": o["depth"], "activation": o["activation"], "c_res": o["c_res"],
                  "kernel_size": o["kernel_size"]}
    if user_model and kind in ("nngp", "ntk"):
        choice(o["parameterisation"], "--parameterisation", ("standard", "ntk"))
        params.update(kind=kind, parameterisation=o["parameterisation"], nodes=o["nodes"])
        job_kind = "infinite"
    elif user_model and kind != "entk":
        raise ZerolossInputError(f"--kind: a --model takes entk, nngp or ntk, got {kind}")
    else:
        job_kind = "limit" if kind in LIMIT_KINDS else kind
    if kind in LIMIT_KINDS and lab_net:
        require(o["nodes"] >= 1, "--nodes", "must be a positive integer (Gauss-Hermite nodes per axis)", o["nodes"])
        params.update(kind=kind, nodes=o["nodes"])
    elif kind == "gram":
        from zeroloss.cli.gram import parse_layer

        require(o["width"] >= 0, "--width", "must be a positive integer (0: 512)", o["width"])
        layer = parse_layer(o["layer"], o["depth"])
        params.update(width=o["width"] or 512, seed=o["seed"], layer=layer)
    elif o["model"] is None:
        raise ZerolossInputError("--model: --kind entk needs --model FILE.py:FACTORY")
    if o["device"] not in ("auto", "cpu", "cuda"):
        choice(o["device"], "--device", ("auto", "cpu", "cuda"))
    from zeroloss.cli.common import parse_device

    device = parse_device(o["device"]).type
    X = _inputs(o["inputs"], "--inputs", lab_net, o["normalise"])
    X2 = None if o["inputs2"] is None else _inputs(o["inputs2"], "--inputs2", lab_net, o["normalise"])
    if lab_net and (o["net"] == "conv-resnet") != (X.ndim == 3):
        shape_text = "(n, channels, positions)" if o["net"] == "conv-resnet" else "(n, d)"
        raise ZerolossInputError(f"--inputs: {o['net']} needs {shape_text} arrays, got shape {tuple(X.shape)}")
    result = kernel_job(X, job_kind, out=o["out"], X2=X2, params=params,
                        model=o["model"], model_width=o["width"] or None, model_seed=o["seed"], block=o["block"],
                        executor=o["executor"], workers=o["workers"], address=o["address"], dtype=o["dtype"],
                        device=device, threads=o["threads"], memory_budget=budget, dry_run=o["dry_run"],
                        budget_flag=FLAG)
    if result.dry_run is not None:
        for line in result.dry_run.lines():
            typer.echo(line)
        typer.echo(f"dry run: nothing written to {result.path}")
        return
    for (i, j), error in sorted(result.failed.items()):
        echo_err(f"error: tile ({i}, {j}): {error}")
    typer.echo(f"{kind} kernel {result.tiles} tiles: {result.done_before} already done, {result.computed} computed "
               f"in {result.seconds:.1f} s" + (f", {len(result.failed)} failed" if result.failed else ""))
    if result.failed:
        typer.echo(f"run the same command again to retry the failed tiles of {result.path}")
        raise typer.Exit(code=1)
    typer.echo(f"wrote {result.path}")
