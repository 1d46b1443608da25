"""``zeroloss diagnose``: is *your* network in the regime the convergence theorems describe?

    zeroloss diagnose --model my_net.py:make_net [--width W | --widths 64,128,...] \\
        --data sphere|digits|FILE.npz --n 32 --steps 200 [--lr η] --out DIR

Loads ``make_net`` from ``my_net.py`` (only the file named here is imported), builds the model (``make_net(W)``
with a width, ``make_net()`` without), trains it, its linearisation and the kernel prediction side by side
(:func:`zeroloss.diagnose`; with ``--widths`` the sweep of :func:`zeroloss.diagnose_widths`) and writes:

    DIR/runs/<id>/...      one run per (width, repeat) through zeroloss.store.RunStore (loadable by zeroloss.load)
    DIR/sweep.json         the manifest (run ids; with --widths the fitted slopes)
    DIR/diagnose.html      self-contained page: verdicts, losses, drift/movement, spectrum of Θ₀, width slopes

``FILE.npz`` holds arrays ``X`` (n, ...) and ``y`` (n,) or (n, k), optionally ``X_test`` and ``y_test``. Every
input is checked before anything is written, the stated memory (:mod:`zeroloss.diagnosis.memory`) included, against
``--max-bytes`` (default ``ZEROLOSS_MAX_BYTES``, else half the available memory); bad input gives one line
``error: <field>: ...`` and exit status 2, and DIR is created only complete. A model that fails while it is trained
(an error raised by torch inside its forward or backward pass) gives one line naming ``--model``, not a traceback.

Top-level imports are typer and the standard library only: torch and zeroloss internals load inside the command.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer

DATA = ("sphere", "digits")
PAGE = "diagnose.html"


def _error(message: str) -> Exception:
    from zeroloss.errors import ZerolossInputError

    return ZerolossInputError(message)


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return f"{type(exc).__name__}: {text.splitlines()[0]}" if text else type(exc).__name__


def load_factory(spec: str) -> tuple[Any, str]:
    """``FILE.py:FACTORY`` → (the callable, a display name); imports FILE (and only it) from its path."""
    path_text, sep, name = spec.rpartition(":")
    if not sep or not path_text or not name:
        raise _error(f"--model: must be FILE.py:FACTORY, got {spec!r}")
    path = Path(path_text)
    if path.suffix != ".py":
        raise _error(f"--model: FILE must be a Python file (.py), got {path_text!r}")
    if not path.is_file():
        raise _error(f"--model: no such file {path_text!r}")
    if not name.isidentifier():
        raise _error(f"--model: FACTORY must be a Python name, got {name!r}")
    from zeroloss.usercode import import_user_file

    module = import_user_file(path, shown=path_text)
    factory = getattr(module, name, None)
    if factory is None:
        defined = sorted(k for k, v in vars(module).items() if callable(v) and not k.startswith("_")
                         and getattr(v, "__module__", None) == module.__name__)
        raise _error(f"--model: {path_text} has no {name!r}; callables defined there: {', '.join(defined) or 'none'}")
    if not callable(factory):
        raise _error(f"--model: {name} in {path_text} is not callable ({type(factory).__name__})")
    return factory, f"{path.name}:{name}"


def call_factory(factory: Any, width: int | None, shown: str) -> Any:
    """``factory(width)`` (or ``factory()``), checked to return an ``nn.Module``; errors name ``--model``."""
    from torch import nn

    call = f"{shown}({'' if width is None else width})"
    try:
        model = factory() if width is None else factory(width)
    except (Exception, SystemExit) as exc:  # the user's code (sys.exit included)
        raise _error(f"--model: {call} raised {_first_line(exc)}") from exc
    if not isinstance(model, nn.Module):
        raise _error(f"--model: {call} must return a torch.nn.Module, got {type(model).__name__}")
    return model


def build_model(factory: Any, width: int | None, seed: int, shown: str) -> Any:
    """:func:`call_factory` with torch's global generator seeded ``seed`` (its state restored after), as
    :func:`zeroloss.diagnose_widths` does for repeat 0."""
    import torch

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return call_factory(factory, width, shown)


def load_data(data: str, n: int, d: int, n_test: int, labels: str, seed: int,
              budget: object = None) -> tuple[Any, Any, Any, Any]:
    """(X, y, X_test, y_test) from ``--data`` (test arrays None when absent)."""
    import torch

    from zeroloss.data import digits_data, sphere_data

    if data in DATA:
        total = n + n_test
        if data == "sphere":
            X, y = sphere_data(total, d, seed, "random" if labels == "auto" else labels)
        else:
            X, y = digits_data(total, seed, "parity" if labels == "auto" else labels)
        if n_test:
            return X[:n], y[:n], X[n:], y[n:]
        return X, y, None, None
    path = Path(data)
    if path.suffix != ".npz":
        raise _error(f"--data: must be sphere, digits or a FILE.npz, got {data!r}")
    from zeroloss.cli.files import read_archive

    arrays = read_archive(path, "--data", budget=budget)  # sized from the headers before anything is decompressed
    missing = [k for k in ("X", "y") if k not in arrays]
    if missing:
        raise _error(f"--data: {path.name} must hold arrays X and y (optionally X_test, y_test), "
                     f"has {sorted(arrays)}")
    out = []
    for key in ("X", "y", "X_test", "y_test"):
        a = arrays.get(key)
        if a is not None and (a.dtype.kind not in "fiu" or a.ndim == 0):
            raise _error(f"--data: {key} must be a numeric array with samples on axis 0, got dtype {a.dtype} "
                         f"shape {a.shape}")
        out.append(None if a is None else torch.as_tensor(a))
    X, y, Xt, yt = out
    if X.shape[0] != y.shape[0]:
        raise _error(f"--data: X has {X.shape[0]} samples but y has {y.shape[0]}")
    if (Xt is None) != (yt is None) and yt is not None:
        raise _error("--data: y_test given without X_test")
    if Xt is not None and yt is not None and Xt.shape[0] != yt.shape[0]:
        raise _error(f"--data: X_test has {Xt.shape[0]} samples but y_test has {yt.shape[0]}")
    return X, y, Xt, yt


def diagnose(
    model: str = typer.Option(..., help="FILE.py:FACTORY, a function returning a torch.nn.Module"),
    width: int = typer.Option(0, help="call FACTORY(width) (0: FACTORY() without arguments)"),
    widths: str = typer.Option("", help="comma-separated widths: a width sweep, FACTORY(w) for each"),
    data: str = typer.Option("sphere", help="sphere | digits | FILE.npz (arrays X, y[, X_test, y_test])"),
    n: int = typer.Option(32, help="training points (sphere, digits)"),
    d: int = typer.Option(8, help="input dimension (sphere)"),
    n_test: int = typer.Option(0, "--n-test", help="extra held-out points (sphere, digits)"),
    labels: str = typer.Option("auto", help="auto | random | gaussian | teacher (digits: parity by default)"),
    steps: int = typer.Option(200, help="optimiser steps"),
    lr: str = typer.Option("auto", help="step size, or auto: lr-fraction x 2/lambda_max of the eNTK at init (as "
                                        "train's auto)"),
    lr_fraction: float = typer.Option(0.5, "--lr-fraction", help="default step as a fraction of 2/lambda_max"),
    optimizer: str = typer.Option("gd", help="gd | adam"),
    probe_every: int = typer.Option(0, "--probe-every", help="steps between probes (0: about 50 probes)"),
    repeats: int = typer.Option(1, help="runs per width in a sweep (torch seeded with seed + repeat)"),
    seed: int = typer.Option(0, help="seed of the data and of torch's generator before FACTORY is called"),
    dtype: str = typer.Option("float64", help="float64 | float32: the dtype the model is trained in"),
    alpha: bool = typer.Option(True, "--alpha/--no-alpha", help="estimate Chatterjee's alpha (single runs)"),
    threads: int = typer.Option(0, help="torch intra-op threads (0: torch's default)"),
    out: Path = typer.Option(..., help="directory to create"),
    overwrite: bool = typer.Option(False, help="replace --out if it is an earlier diagnose output"),
    max_bytes: str | None = typer.Option(None, "--max-bytes", help="memory budget, e.g. 8GiB (default: "
                                         "ZEROLOSS_MAX_BYTES, else half the available memory)"),
) -> None:
    """Train your model, its linearisation and the kernel prediction side by side; write runs and a page."""
    from zeroloss.cli.common import cli_errors

    options = {"model": model, "width": width, "widths": widths, "data": data, "n": n, "d": d, "n_test": n_test,
               "labels": labels, "steps": steps, "lr": lr, "lr_fraction": lr_fraction, "optimizer": optimizer,
               "probe_every": probe_every, "repeats": repeats, "seed": seed, "dtype": dtype, "alpha": alpha,
               "threads": threads, "out": out, "overwrite": overwrite, "max_bytes": max_bytes}
    cli_errors(_diagnose)(options)


def parse_lr(text: str) -> float | None:
    """``--lr``: ``auto`` (None: the default step, lr-fraction × 2/λ_max of the eNTK at init) or a positive number.

    Examples:
        >>> parse_lr("auto"), parse_lr("0.05")
        (None, 0.05)
    """
    import math

    if text.strip().lower() == "auto":
        return None
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not (math.isfinite(value) and value > 0):
        raise _error(f"--lr: must be auto or a positive number, got {text!r}")
    return value


def _diagnose(o: dict[str, Any]) -> None:
    import torch

    from zeroloss.budget import FLAG, resolve_budget
    from zeroloss.cli.common import parse_dtype, parse_int_list
    from zeroloss.diagnosis.checks import OPTIMIZERS, check_problem
    from zeroloss.diagnosis.memory import check_diagnose_memory
    from zeroloss.errors import choice, positive_int
    from zeroloss.store import check_folder
    from zeroloss.usercode import user_code

    torch_dtype = parse_dtype(o["dtype"])
    budget = resolve_budget(o["max_bytes"], FLAG)
    size_field = "--n" if o["data"] in DATA else "--data"
    choice(o["optimizer"], "--optimizer", OPTIMIZERS)
    for key in ("n", "d", "steps", "repeats"):
        positive_int(o[key], f"--{key}")
    for key in ("width", "n_test", "probe_every", "threads"):
        if o[key] < 0:
            raise _error(f"--{key.replace('_', '-')}: must be a non-negative integer, got {o[key]}")
    o["lr"] = parse_lr(o["lr"])
    if not 0 < o["lr_fraction"] <= 1:
        raise _error(f"--lr-fraction: must be in (0, 1], got {o['lr_fraction']}")
    if o["width"] and o["widths"]:
        raise _error("--widths: give either --width or --widths, not both")
    sweep_widths = parse_int_list(o["widths"], "--widths") if o["widths"] else None
    if sweep_widths is not None and len(set(sweep_widths)) < 2:
        raise _error(f"--widths: a sweep needs at least two distinct widths, got {o['widths']!r}")
    labels = ("auto", "random", "gaussian", "teacher") + (("parity",) if o["data"] == "digits" else ())
    choice(o["labels"], "--labels", labels)
    # missing, empty, or (with --overwrite) an earlier diagnose output: checked before the (long) training
    check_folder(o["out"], "diagnose", "--out", replace=True, overwrite=o["overwrite"])

    check_diagnose_size(o, budget)  # sizes from the options or the archive's headers: nothing is built or read yet
    factory, shown = load_factory(o["model"])
    X, y, X_test, y_test = load_data(o["data"], o["n"], o["d"], o["n_test"], o["labels"], o["seed"], budget)
    # validate every model the run will build (one per width) on the data before anything is written
    widths_to_check = sweep_widths or [o["width"] or None]
    for w in widths_to_check:
        m = build_model(factory, w, o["seed"], shown)
        device = next(m.parameters()).device if any(True for _ in m.parameters()) else torch.device("cpu")
        X, y = X.to(device), y.to(device)
        X_test = X_test.to(device) if X_test is not None else None
        y_test = y_test.to(device) if y_test is not None else None
        with user_code("--model", f"{shown}'s model"):
            prob = check_problem(m, X, y, X_test, y_test, dtype=torch_dtype, fields=("--model", "--data", "--data"))
        # the stated memory against the budget, before anything is trained or written
        check_diagnose_memory(prob.model, prob.X, prob.names, prob.outputs, prob.X_test, budget, field=size_field,
                              flag=FLAG)
    from zeroloss.errors import ZerolossInputError

    try:
        with user_code("--model", f"{shown}'s model"):
            _run_and_write(o, factory, shown, sweep_widths, X, y, X_test, y_test, torch_dtype)
    except ZerolossInputError as exc:  # the library names the model "model"; on the command line it is --model
        text = str(exc)
        raise (ZerolossInputError("--" + text) if text.startswith("model: ") else exc) from None


#: Bytes per step of a diagnosis's history (the per-step losses, gaps and contraction as records, then DataFrame
#: rows): 1.2 KB measured with tracemalloc (2 000 against 12 000 steps of a small model, one probe), rounded up.
DIAGNOSE_BYTES_PER_STEP = 1536
#: Defaults of the size options (a refusal names the option whose default would shrink the need the most).
SIZE_DEFAULTS = {"--n": 32, "--d": 8, "--n-test": 0, "--steps": 200}


def check_diagnose_size(o: dict[str, Any], budget: Any) -> None:
    """Refuse (``--max-bytes``) a diagnosis whose data, kernel or history cannot fit, before anything is built: the
    inputs (read, then float64), three n × n float64 kernel matrices (Θ₀, its symmetrised copy, the eigensolver's
    work; k outputs per sample make them k² times larger, which the run checks again once the model is known) and
    :data:`DIAGNOSE_BYTES_PER_STEP` per step. For ``FILE.npz`` the sizes come from the archive's headers."""
    import math

    from zeroloss.budget import check_memory, largest_cause

    values = {"--n": o["n"], "--d": o["d"], "--n-test": o["n_test"], "--steps": o["steps"]}
    if o["data"] not in DATA:
        from zeroloss.cli.files import headers

        if Path(o["data"]).suffix != ".npz":
            raise _error(f"--data: must be sphere, digits or a FILE.npz, got {o['data']!r}")

        found = headers(Path(o["data"]), "--data")
        if "X" not in found:
            return  # load_data names what is missing
        shape = found["X"][0]
        test = found.get("X_test", ((0,), None))[0]
        values = {"--data": shape[0], "--d": math.prod(shape[1:]), "--n-test": test[0], "--steps": o["steps"]}

    def estimate(v: dict[str, int]) -> int:
        n = v.get("--n", v.get("--data", 0))
        return (16 * (n + v["--n-test"]) * v["--d"] + 3 * 8 * n * n + 8 * n * v["--n-test"]
                + DIAGNOSE_BYTES_PER_STEP * (v["--steps"] + 1))

    field = largest_cause(estimate, values, {**SIZE_DEFAULTS, "--data": 32}, "--n")
    check_memory(estimate(values), budget, field=field, what=f"diagnosing on {values.get('--n', values.get('--data'))} "
                 f"points for {o['steps']:,} steps", hint="use fewer points or steps")


def _run_and_write(o: dict[str, Any], factory: Any, shown: str, sweep_widths: list[int] | None, X: Any, y: Any,
                   X_test: Any, y_test: Any, torch_dtype: Any) -> None:
    from zeroloss.diagnosis.page import render_page
    from zeroloss.diagnosis.run import diagnose as run_diagnose
    from zeroloss.diagnosis.widths import diagnose_widths
    from zeroloss.papers.base import RunOutput
    from zeroloss.store import RunStore, building_folder, environment, python_command

    common = {"lr": o["lr"], "lr_fraction": o["lr_fraction"], "optimizer": o["optimizer"],
              "probe_every": o["probe_every"] or None, "X_test": X_test, "y_test": y_test, "dtype": torch_dtype,
              "threads": o["threads"] or None}
    base_spec = {"model": o["model"], "data": o["data"], "n": int(X.shape[0]), "d": o["d"], "n_test": o["n_test"],
                 "labels": o["labels"], "steps": o["steps"], "lr": o["lr"], "lr_fraction": o["lr_fraction"],
                 "optimizer": o["optimizer"], "probe_every": o["probe_every"], "seed": o["seed"],
                 "dtype": o["dtype"]}
    sweep = None
    if sweep_widths is None:
        model = build_model(factory, o["width"] or None, o["seed"], shown)
        d = run_diagnose(model, X, y, steps=o["steps"], alpha=o["alpha"], memory_budget=o["max_bytes"], **common)
        runs = [({**base_spec, "width": o["width"] or None, "repeat": 0}, d)]
        labels = [shown if not o["width"] else f"{shown}({o['width']})"]
    else:
        sweep = diagnose_widths(lambda w: call_factory(factory, w, shown), sweep_widths, X, y,
                                steps=o["steps"], repeats=o["repeats"], seed=o["seed"], **common)
        rows = sweep.table[["width", "repeat"]].itertuples(index=False)
        runs = [({**base_spec, "width": int(w), "repeat": int(r)}, dd)
                for (w, r), dd in zip(rows, sweep.diagnoses, strict=True)]
        labels = [f"{shown}({int(s['width'])}) repeat {s['repeat']}" for s, _ in runs]
    env = environment(str(X.device), o["dtype"])
    with building_folder(o["out"], "diagnose", o["overwrite"]) as tmp:
        store = RunStore(tmp, "diagnose", field="--out")
        ids = [store.write("diagnose", spec, RunOutput(dd.history, dd.summary()), env=env) for spec, dd in runs]
        extra = {"command": python_command()}
        if sweep is not None:
            extra["slopes"] = sweep.summary()
        store.write_manifest("diagnose", ids, extra)
        html = render_page(f"zeroloss diagnose {shown}", list(zip(labels, [dd for _, dd in runs], strict=True)),
                           sweep, base_spec)
        (tmp / PAGE).write_text(html, encoding="utf-8")
    for label, (_, dd) in zip(labels, runs, strict=True):
        typer.echo(f"== {label}\n{dd.verdict}")
    if sweep is not None:
        typer.echo(str(sweep))
    typer.echo(f"page: {o['out'] / PAGE}")


def register(app: typer.Typer) -> None:
    app.command("diagnose")(diagnose)
