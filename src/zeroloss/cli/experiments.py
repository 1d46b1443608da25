"""``zeroloss experiments``: the registered experiments, their papers and run counts per scale; and the example sweep
file that ``zeroloss sweep --example EXPERIMENT`` prints.

The example is built from the experiment's registered ``tiny`` runs, so it runs as is: their shared settings become
``base``, the settings that vary become a ``grid`` (when the tiny runs are the full cartesian product of their values)
or a ``zip`` (otherwise: one row per distinct setting), and their seeds become ``seeds``. Every key carries its value
at the other scales as a comment, so a user sees what to change to go from the tiny runs to the paper's.
"""

from __future__ import annotations

import json
import math
import textwrap
from typing import TYPE_CHECKING, Any

import typer

from zeroloss.cli.common import cli_errors

if TYPE_CHECKING:
    from zeroloss.experiments.base import Experiment, Spec

#: The scale an example sweep file reproduces (the one every experiment must register: CI runs it).
EXAMPLE_SCALE = "tiny"

#: The longest line of an example file (the comments are wrapped to it).
LINE = 120


def yaml_value(value: Any) -> str:
    """One value in YAML flow style on one line (lists as ``[a, b]``, mappings as ``{k: v}``).

    Example:
        >>> yaml_value([1e-9, "fc", True, None, {"a": 0.5}])
        '[1.0e-09, fc, true, null, {a: 0.5}]'
    """
    import yaml

    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(yaml_value(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{yaml_value(k)}: {yaml_value(v)}" for k, v in value.items()) + "}"
    text = yaml.safe_dump(value, default_flow_style=True, width=math.inf, allow_unicode=True)
    return text.removesuffix("\n").removesuffix("\n...").strip()


def _distinct(values: list[Any]) -> list[Any]:
    """Distinct values in order of first appearance (compared by canonical JSON: lists and dicts are fine)."""
    seen: dict[str, Any] = {}
    for v in values:
        seen.setdefault(json.dumps(v, sort_keys=True), v)
    return list(seen.values())


def _listing(values: list[Any]) -> str:
    """Values for a comment: all of them up to 8, else the first three, …, the last two and the count."""
    if values and all(isinstance(v, int) for v in values) and values == list(range(len(values))) and len(values) > 2:
        return f"0 … {len(values) - 1}"
    if len(values) <= 8:
        return ", ".join(yaml_value(v) for v in values) or "not set"
    return (", ".join(yaml_value(v) for v in values[:3]) + ", …, "
            + ", ".join(yaml_value(v) for v in values[-2:]) + f" ({len(values)} values)")


def _other_scales(experiment: Experiment, key: str, shown: list[Any]) -> str:
    """``  # paper: 64, 128, 256`` for a key whose values differ at another scale ("" when they do not)."""
    notes = []
    for scale, specs in experiment.specs.items():
        if scale == EXAMPLE_SCALE or not specs:
            continue
        values = _distinct([s.get(key) for s in specs if key in s])
        if [json.dumps(v, sort_keys=True) for v in values] != [json.dumps(v, sort_keys=True) for v in shown]:
            notes.append(f"{scale}: {_listing(values)}")
    return f"  # {'; '.join(notes)}" if notes else ""


def example_sweep(experiment: Experiment) -> tuple[dict[str, Any], str]:
    """A sweep document reproducing the experiment's tiny runs, and its commented YAML text.

    Returns:
        ``(document, text)``: the document as :func:`zeroloss.sweep.spec.parse_sweep_text` reads ``text`` back.
    """
    specs: list[Spec] = list(experiment.specs.get(EXAMPLE_SCALE, []))
    if not specs:
        raise ValueError(f"{experiment.name} registers no {EXAMPLE_SCALE} runs")
    keys = list(dict.fromkeys(k for s in specs for k in s))
    doc, expanded = _layout(experiment.name, specs, keys, split_seeds=True)
    if _fingerprints(expanded) != _fingerprints(specs):
        # the tiny runs are not (settings × one seed list): the seed becomes one more zip column
        doc, expanded = _layout(experiment.name, specs, keys, split_seeds=False)
    base = doc["base"]
    seeds = _distinct([s["seed"] for s in specs if "seed" in s])
    runs = len(expanded)

    lines = [f"# A sweep over {experiment.name} ({experiment.paper}), printed by `zeroloss sweep --example "
             f"{experiment.name}`."]
    lines += ["# " + line for line in textwrap.wrap(experiment.description, 100)]
    same = _fingerprints(expanded) == _fingerprints(specs)
    scales = ", ".join(f"{scale}: {len(s)} runs" for scale, s in experiment.specs.items())
    expands = (f"It expands into {runs} runs: " + (f"exactly the registered {EXAMPLE_SCALE} runs" if same else
                                                   f"the first setting of the registered {EXAMPLE_SCALE} runs")
               + f" (registered scales — {scales}).")
    lines += ["#"] + ["# " + line for line in textwrap.wrap(expands, 100)]
    lines += [
        "# The comment after a value gives the value at the other scales. Save, preview, run (re-running resumes):",
        f"#   zeroloss sweep --example {experiment.name} > {experiment.name}.yaml",
        f"#   zeroloss sweep {experiment.name}.yaml --dry-run",
        f"#   zeroloss sweep {experiment.name}.yaml --out sweeps/{experiment.name}",
        f"#   zeroloss sweep {experiment.name}.yaml --set base.KEY=VALUE --out DIR    (change one value)",
        "",
        f"experiment: {experiment.name}",
        "# base: the settings every run shares.",
        "base:",
    ]
    for k, v in base.items():
        lines += _entry(k, v, _other_scales(experiment, k, [v]))
    if "grid" in doc:
        lines += ["# grid: every combination of these values (cartesian product).", "grid:"]
        for k, v in doc["grid"].items():
            lines += _entry(k, v, _other_scales(experiment, k, v))
    if "zip" in doc:
        lines += ["# zip: these lists move together, one run setting per position (equal lengths).", "zip:"]
        for k, v in doc["zip"].items():
            lines += _entry(k, v, _other_scales(experiment, k, _distinct(v)))
    if "seeds" in doc:
        counts = {scale: len(_distinct([s["seed"] for s in sp if "seed" in s]))
                  for scale, sp in experiment.specs.items() if scale != EXAMPLE_SCALE}
        other = "; ".join(f"{scale}: {n}" for scale, n in counts.items() if n != len(seeds))
        lines += ["# seeds: a count k (seeds 0 … k−1) or a list; every setting above runs once per seed.",
                  f"seeds: {yaml_value(doc['seeds'])}" + (f"  # {other}" if other else "")]
    return doc, "\n".join(lines) + "\n"


def _fingerprints(specs: list[Spec]) -> list[str]:
    """The runs as sorted canonical JSON: two lists of runs are the same runs when these are equal."""
    return sorted(json.dumps(s, sort_keys=True) for s in specs)


def _layout(name: str, specs: list[Spec], keys: list[str], split_seeds: bool) -> tuple[dict[str, Any], list[Spec]]:
    """(sweep document, the runs it expands into) for the runs ``specs``.

    Settings shared by every run go to ``base``; the varying ones to a ``grid`` when the distinct settings are their
    full cartesian product, else a ``zip`` (one row per setting). With ``split_seeds`` the seeds become ``seeds``
    (every setting × every seed); without, the seed is one more zip column, which reproduces any set of runs.
    """
    if split_seeds:
        configs = _distinct([{k: v for k, v in s.items() if k != "seed"} for s in specs])
        seeds = _distinct([s["seed"] for s in specs if "seed" in s])
    else:
        configs, seeds = _distinct(list(specs)), []
    # keys absent from some setting cannot be a grid or zip axis: then the example keeps the first setting
    if not all(set(c) == set(configs[0]) for c in configs):
        configs = configs[:1]
    columns = [k for k in keys if not (split_seeds and k == "seed")]
    varying = [k for k in columns if len(_distinct([c.get(k) for c in configs])) > 1]
    base = {k: configs[0][k] for k in columns if k not in varying and k in configs[0]}
    axes = {k: _distinct([c[k] for c in configs]) for k in varying}
    doc: dict[str, Any] = {"experiment": name, "base": base}
    if axes and math.prod(len(v) for v in axes.values()) == len(configs):
        doc["grid"] = axes
    elif axes:
        doc["zip"] = {k: [c[k] for c in configs] for k in varying}
    if seeds:
        doc["seeds"] = len(seeds) if seeds == list(range(len(seeds))) else seeds
    expanded = [{**c, "seed": s} for c in configs for s in seeds] if seeds else configs
    return doc, expanded


def _entry(key: str, value: Any, comment: str) -> list[str]:
    """``  key: value  # comment``; a long list of plain values continues on indented lines (valid flow YAML)."""
    if len(f"  {key}: {yaml_value(value)}{comment}") > LINE and comment:
        # a long note on the other scales goes on its own comment lines above the entry
        note = ["  # " + line for line in textwrap.wrap(comment.removeprefix("  # "), LINE - 4)]
        return note + _entry(key, value, "")
    line = f"  {key}: {yaml_value(value)}{comment}"
    parts = [yaml_value(v) for v in value] if isinstance(value, list) else []
    if len(line) <= 100 or not parts or any(" " in p or "," in p for p in parts):
        return [line]
    chunks = textwrap.wrap(", ".join(parts), 96, break_long_words=False)
    if len(chunks) == 1:
        return [line]
    return [f"  {key}: [{chunks[0]}", *(f"    {chunk}" for chunk in chunks[1:-1]), f"    {chunks[-1]}]{comment}"]


@cli_errors
def experiments(
    json_out: bool = typer.Option(False, "--json", help="print a JSON list on stdout"),
    full: bool = typer.Option(False, "--full", help="also print what each experiment does (its description)"),
) -> None:
    """List the registered experiments: name, paper and number of runs per scale (--full: and what each does)."""
    from zeroloss.cli.common import import_extra_experiments
    from zeroloss.experiments.registry import load_experiments
    from zeroloss.texttable import terminal_width, wrap_table

    import_extra_experiments()

    registry = load_experiments()
    ordered = sorted(registry.values(), key=lambda e: (e.paper, e.name))
    if json_out:
        typer.echo(json.dumps([{"name": e.name, "paper": e.paper, "description": e.description,
                                "scales": {scale: len(s) for scale, s in e.specs.items()}} for e in ordered]))
        return
    header = ("experiment", "paper", "runs per scale") + (("description",) if full else ())
    rows = [(e.name, e.paper, ", ".join(f"{scale} {len(s)}" for scale, s in e.specs.items()))
            + ((e.description,) if full else ()) for e in ordered]
    typer.echo(wrap_table(header, rows, flexible=(3,) if full else ()))
    footer = (f"{len(ordered)} experiments. `zeroloss experiments --full` says what each does; `zeroloss sweep "
              "--example NAME` prints a sweep file for one; `zeroloss reproduce PAPER --scale tiny` runs a paper's "
              "tiny scale.")
    typer.echo("\n".join(textwrap.wrap(footer, terminal_width())))


def register(app: typer.Typer) -> None:
    app.command("experiments")(experiments)
