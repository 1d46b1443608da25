"""Claims and the self-contained HTML report of a results directory (jinja2 template, inline SVG figures).

For every sweep directory (one per experiment) the stored runs are loaded (:func:`zeroloss.store.load`), the
experiment's ``claims(df)`` and ``plot(df)`` are evaluated, and the results written to ``claims.json`` (a list of
objects with ``experiment``, ``claim``, ``measured``, ``expected``, ``passed``, ``details``) and
``report.html``: the claims table (pass green, fail red), each experiment's description, figures, runs and
specs, and the environment the runs executed on. Nothing is fetched at view time (no scripts, no external CSS).

Determinism: figures are drawn with matplotlib's Agg/SVG backends with ``svg.hashsalt`` fixed and
``metadata={"Date": None}``, and the report carries no generation time stamp, so rebuilding the report from
the same stored runs gives identical bytes.

Examples:
    >>> import matplotlib.pyplot as plt
    >>> fig, ax = plt.subplots(); _ = ax.plot([0, 1], [1, 0])
    >>> figure_svg(fig) == figure_svg(fig)
    True
"""

from __future__ import annotations

import io
import json
import math
import re
import traceback
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402

from zeroloss.store import (  # noqa: E402
    CLAIMS,
    REPORT,
    REPRODUCE_MANIFEST,
    atomic_write_bytes,
    claim_folder,
    clean_folder,
    empty_frame,
    finished_run_dirs,
    flatten,
    folder_kind,
    load,
    output_errors,
    read_manifest,
    sweep_dirs,
    to_jsonable,
)

#: Salt for matplotlib's SVG ids: fixed, so identical figures give identical bytes.
SVG_HASHSALT = "zeroloss"


# ------------------------------------------------------------------------------------------- figures

def figure_svg(fig: Any, prefix: str = "") -> str:
    """The figure as an inline ``<svg>`` element (no XML prolog), ids prefixed with ``prefix``.

    Prefixing keeps ids unique when several figures share one HTML page.
    """
    buf = io.StringIO()
    with matplotlib.rc_context({"svg.hashsalt": SVG_HASHSALT, "svg.fonttype": "path"}):
        fig.savefig(buf, format="svg", metadata={"Date": None}, bbox_inches="tight")
    text = buf.getvalue()
    text = text[text.index("<svg"):]
    if prefix:
        ids = set(re.findall(r'\bid="([^"]+)"', text))

        def rename(match: re.Match[str]) -> str:
            name = match.group(2)
            return f"{match.group(1)}{prefix}{name}" if name in ids else match.group(0)

        text = re.sub(r'(\bid="|href="#|url\(#)([^")]+)', rename, text)
    return text


# ------------------------------------------------------------------------------------------- evaluation

@dataclass
class Section:
    """One experiment's part of the report."""

    name: str
    description: str = ""
    paper: str = ""
    scale: str = ""
    claims: list[dict[str, Any]] = field(default_factory=list)
    figures: list[tuple[str, str]] = field(default_factory=list)  # (title, svg)
    runs_expected: int = 0
    runs_finished: int = 0
    runs_diverged: int = 0
    base: dict[str, Any] = field(default_factory=dict)
    varying: list[str] = field(default_factory=list)
    run_rows: list[dict[str, Any]] = field(default_factory=list)
    env: list[dict[str, Any]] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    env_span: tuple[str, str] | None = None  # earliest start, latest end over the runs


def _error_line(exc: BaseException) -> str:
    last = traceback.format_exception_only(type(exc), exc)[-1].strip()
    return last.splitlines()[0]


def _error_claim(name: str, what: str, exc: BaseException) -> dict[str, Any]:
    return {"experiment": name, "claim": f"{what} raised an error", "measured": _error_line(exc),
            "expected": "no error", "verdict": "ERROR", "passed": False, "details": "", "provenance": "",
            "reason": "", "error": True}


def evaluate_sweep(sweep_dir: Path, figure_prefix: str = "f") -> Section:
    """Load one sweep directory, evaluate its experiment's claims and figures; errors are recorded, not raised."""
    from zeroloss.papers.registry import get_experiment
    from zeroloss.store import read_run

    manifest = read_manifest(sweep_dir)
    run_dirs = finished_run_dirs(sweep_dir)
    runs = [read_run(d) for d in run_dirs]
    name = manifest.get("experiment") or (runs[0]["experiment"] if runs else sweep_dir.name)
    section = Section(name=name, scale=str(manifest.get("scale", "")),
                      runs_expected=len(manifest.get("run_ids", run_dirs)), runs_finished=len(runs))
    section.runs_diverged = sum(bool(r["summary"].get("diverged")) for r in runs)
    _describe_runs(section, runs)
    try:
        experiment = get_experiment(name)
    except Exception as exc:
        section.errors.append(_error_line(exc))
        return section
    section.description, section.paper = experiment.description, experiment.paper
    stale = manifest.get("stale_kept") or []
    if stale:
        section.errors.append(f"{len(stale)} of the runs were computed by other code (result version ≠ "
                              f"{manifest.get('result_version')}) and kept with --keep-stale: the claims below rest "
                              "on them")
    if section.runs_finished < section.runs_expected:
        section.errors.append(f"only {section.runs_finished} of {section.runs_expected} runs finished; "
                              "re-run the sweep to complete it")
    df = load(sweep_dir) if runs else empty_frame()  # load() refuses a folder without finished runs
    try:
        section.claims = [dict(c.to_dict(), error=False) for c in experiment.claims(df)]
    except Exception as exc:
        section.claims = [_error_claim(name, "claims(df)", exc)]
        section.errors.append(f"claims(df): {_error_line(exc)}")
    try:
        figures = experiment.plot(df) or {}
        for i, (title, fig) in enumerate(figures.items()):
            section.figures.append((title, figure_svg(fig, prefix=f"{figure_prefix}{i}-")))
            plt.close(fig)
    except Exception as exc:
        section.errors.append(f"plot(df): {_error_line(exc)}")
    return section


def _describe_runs(section: Section, runs: list[dict[str, Any]]) -> None:
    """Split specs into shared (base) and varying keys; one row per run; the distinct environments."""
    flat = [flatten(r["spec"]) for r in runs]
    keys = sorted({k for f in flat for k in f})
    shared = {k: flat[0][k] for k in keys if flat and all(k in f and f[k] == flat[0][k] for f in flat)}
    section.base = shared
    section.varying = [k for k in keys if k not in shared]
    for r, f in zip(runs, flat, strict=True):
        summary = r["summary"]
        row = {"run_id": r["run_id"], **{k: f.get(k, "") for k in section.varying},
               "diverged": bool(summary.get("diverged"))}
        section.run_rows.append(row)
    env_keys = ("python", "torch", "zeroloss", "zeroloss_commit", "result_version", "device", "device_name", "dtype",
                "executor", "hostname")
    counts = Counter(tuple((k, str(r["env"].get(k, ""))) for k in env_keys) for r in runs)
    starts = [r["env"].get("start") for r in runs if r["env"].get("start")]
    ends = [r["env"].get("end") for r in runs if r["env"].get("end")]
    for combo, n in sorted(counts.items()):
        section.env.append({**dict(combo), "runs": n})
    if starts:
        section.env_span = (min(starts), max(ends) if ends else "")


def evaluate(out: Path | str, experiments: list[str] | None = None) -> list[Section]:
    """Evaluate every sweep directory under ``out`` (or only those of ``experiments``, in that order)."""
    out = Path(out)
    dirs = sweep_dirs(out)
    if experiments is not None:
        by_name = {d.name: d for d in dirs}
        dirs = [by_name[n] for n in experiments if n in by_name]
    return [evaluate_sweep(d, figure_prefix=f"f{i}-") for i, d in enumerate(dirs)]


# ------------------------------------------------------------------------------------------- rendering

def format_value(value: Any) -> str:
    """Numbers to 4 significant digits; other values as text."""
    if isinstance(value, bool) or value is None:
        return str(value)
    if isinstance(value, (tuple, list)):
        return "[" + ", ".join(format_value(v) for v in value) + "]"
    if isinstance(value, float):
        if math.isnan(value) or math.isinf(value):
            return str(value)
        return f"{value:.4g}"
    return str(value)


def all_claims(sections: list[Section]) -> list[dict[str, Any]]:
    return [c for s in sections for c in s.claims]


def run_versions(sections: list[Section]) -> list[str]:
    """The zeroloss versions (with the git commit where env.json records one) that made the runs, sorted."""
    found = set()
    for s in sections:
        for e in s.env:
            if e.get("zeroloss"):
                found.add(f"zeroloss {e['zeroloss']}" + (f" (commit {e['zeroloss_commit']})"
                                                         if e.get("zeroloss_commit") else ""))
    return sorted(found)


def render_html(sections: list[Section], title: str, command: str = "") -> str:
    """The report page (jinja2 template ``templates/report.html.j2``).

    Header: the title, the number of claims per verdict (PASS, FAIL, INCONCLUSIVE, ERROR), the zeroloss versions
    (and commits) recorded in the runs' env.json and the one that built the page, and the command. Then the claims
    grouped by experiment — the claim's text first, its measured value and the expected value beside it, below it
    where the threshold comes from (its provenance) and why a claim is INCONCLUSIVE — and one section per
    experiment with its figures (inline SVG), runs, specs and environment. No time stamp: unchanged runs give the
    same bytes (with the same zeroloss).
    """
    import jinja2

    from zeroloss.version import describe_version

    env = jinja2.Environment(loader=jinja2.PackageLoader("zeroloss.report", "templates"),
                             autoescape=jinja2.select_autoescape(["html", "j2"]), trim_blocks=True,
                             lstrip_blocks=True, keep_trailing_newline=True)
    env.filters["fmt"] = format_value
    claims = all_claims(sections)
    return env.get_template("report.html.j2").render(
        title=title,
        command=command,
        sections=sections,
        claims=claims,
        passed=sum(bool(c["passed"]) for c in claims),
        counts=verdict_counts(claims),
        run_versions=run_versions(sections),
        built_with=describe_version(),
        status=claim_status,
        errors=[f"{s.name}: {e}" for s in sections for e in s.errors],
    )


@dataclass
class Report:
    """What :func:`write_report` produced."""

    sections: list[Section]
    claims: list[dict[str, Any]]
    html_path: Path
    claims_path: Path

    @property
    def errors(self) -> list[str]:
        return [f"{s.name}: {e}" for s in self.sections for e in s.errors]


def write_report(out: Path | str, experiments: list[str] | None = None, title: str | None = None,
                 command: str = "", field: str = "out") -> Report:
    """Evaluate claims and figures of ``out`` and write ``out/claims.json`` and ``out/report.html``.

    Only into a zeroloss sweep or reproduce folder (marked, or an earlier version's recognised by its manifest:
    see :mod:`zeroloss.store.ownership`), so a user's own ``report.html`` or ``claims.json`` is never overwritten.

    Args:
        out: a ``zeroloss reproduce`` directory (one sweep dir per experiment) or a single sweep directory.
        experiments: which experiments (default: those of ``out/reproduce.json``, else every sweep dir).
        title: page title (default from ``reproduce.json``).
        command: the command that produced the results, shown on the page.
        field: the name given to ``out`` in error messages (the CLI's ``DIR``).

    Raises:
        ZerolossInputError: ``out`` is not a zeroloss sweep or reproduce folder, or a stored run is unreadable.
    """
    out = Path(out)
    kind = _report_kind(out, field)
    claim_folder(out, kind, field)  # marks an earlier version's folder
    clean_folder(out, kind)
    meta = _reproduce_meta(out, field)
    if experiments is None:
        experiments = meta.get("experiments")
    if title is None:
        title = f"zeroloss reproduce {meta['paper']} --scale {meta['scale']}" if meta else f"zeroloss: {out.name}"
    command = command or meta.get("command", "")
    sections = evaluate(out, experiments)
    claims = [{k: v for k, v in c.items()} for c in all_claims(sections)]
    claims_path, html_path = out / CLAIMS, out / REPORT
    with output_errors(field, out):
        atomic_write_bytes(claims_path, (json.dumps(to_jsonable(claims), indent=1, allow_nan=True) + "\n").encode())
        atomic_write_bytes(html_path, render_html(sections, title, command).encode())
    return Report(sections, claims, html_path, claims_path)


def _report_kind(out: Path, field: str) -> str:
    """``sweep`` or ``reproduce``: the kind of zeroloss folder a report may be written into; else an error."""
    from zeroloss.errors import ZerolossInputError

    if not out.is_dir():
        raise ZerolossInputError(f"{field}: not a folder, got {str(out)!r}")
    kind = folder_kind(out)
    if kind in ("train", "two-timescale", "diagnose"):
        raise ZerolossInputError(f"{field}: {out} is a `zeroloss {kind}` output, which has no claims to report; "
                                 "read it with zeroloss.load()")
    if kind not in ("sweep", "reproduce"):
        inside = [p.name for p in sweep_dirs(out, field)]
        hint = f" (its sub-folders {', '.join(inside)} are: report on each)" if inside else ""
        raise ZerolossInputError(f"{field}: {out} is not a zeroloss sweep or reproduce folder{hint}; zeroloss "
                                 "writes report.html and claims.json only into its own folders")
    return kind


def _reproduce_meta(out: Path, field: str) -> dict[str, Any]:
    from zeroloss.errors import ZerolossInputError

    path = out / REPRODUCE_MANIFEST
    if not path.is_file():
        return {}
    try:
        meta = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise ZerolossInputError(f"{field}: {path} is unreadable: {exc}") from None
    if not isinstance(meta, dict) or not {"paper", "scale"} <= set(meta):
        raise ZerolossInputError(f"{field}: {path} is unreadable: needs paper and scale")
    return meta


def claim_status(claim: dict[str, Any]) -> str:
    """PASS, FAIL, INCONCLUSIVE or ERROR for one entry of claims.json (older files carry only ``passed``)."""
    if claim.get("error"):
        return "ERROR"
    return str(claim.get("verdict") or ("PASS" if claim["passed"] else "FAIL"))


def verdict_counts(claims: list[dict[str, Any]]) -> dict[str, int]:
    """How many claims reached each status, in the order PASS, FAIL, INCONCLUSIVE, ERROR."""
    counts = {status: 0 for status in ("PASS", "FAIL", "INCONCLUSIVE", "ERROR")}
    for c in claims:
        counts[claim_status(c)] += 1
    return counts


def claims_table(claims: list[dict[str, Any]], width: int | None = None) -> str:
    """Plain-text claims table for the terminal: claims grouped under their experiment, long text wrapped.

    Columns: verdict, claim (an INCONCLUSIVE claim's reason on the lines below it), measured, expected; the claim and
    expected columns wrap within ``width`` (default: the terminal's width), nothing is cut. Last line: the counts.

    Examples:
        >>> c = {"experiment": "du2019.kernel", "claim": "relative movement of the weights shrinks like m^(-1/2) as "
        ...      "the width m grows", "measured": -0.48, "expected": "-0.5 ± 0.15", "verdict": "PASS", "passed": True}
        >>> print(claims_table([c], width=60))
        verdict  claim                         measured  expected
        -------  ----------------------------  --------  -----------
        du2019.kernel
        PASS     relative movement of the         -0.48  -0.5 ± 0.15
                 weights shrinks like
                 m^(-1/2) as the width m
                 grows
        1/1 claims passed
    """
    from zeroloss.report.texttable import wrap_table

    if not claims:
        return "no claims"
    rows, titles = [], {}
    for c in claims:
        if not rows or c["experiment"] != claims[len(rows) - 1]["experiment"]:
            titles[len(rows)] = str(c["experiment"])
        status = claim_status(c)
        text = str(c["claim"]) + (f"\n(inconclusive: {c['reason']})" if status == "INCONCLUSIVE" and c.get("reason")
                                  else "")
        rows.append((status, text, format_value(c["measured"]), str(c["expected"])))
    # the claim keeps about twice the width of measured and expected when the terminal is narrow
    table = wrap_table(("verdict", "claim", "measured", "expected"), rows, width, flexible={1: 2.0, 2: 1.0, 3: 1.0},
                       right=(2,), titles=titles)
    counts = verdict_counts(claims)
    return table + "\n" + (f"{counts['PASS']}/{len(claims)} claims passed"
                           + "".join(f", {v} {k.lower()}" for k, v in counts.items() if k != "PASS" and v))
