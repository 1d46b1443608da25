"""The self-contained HTML page of ``zeroloss diagnose``: verdicts, inline SVG figures, the spec.

Like :mod:`zeroloss.report`: figures are inline ``<svg>`` (deterministic bytes: fixed ``svg.hashsalt``, no date,
ids prefixed per figure), no scripts, no external resources, no time stamp — the same runs give the same page.

Examples:
    >>> html = render_page("demo", runs=[], sweep=None, spec={"steps": 10})
    >>> html.startswith("<!DOCTYPE html>") and "<script" not in html
    True
"""

from __future__ import annotations

import json
from typing import Any

import jinja2
from markupsafe import Markup

from zeroloss.diagnosis.figures import dynamics_figure, loss_figure, spectrum_figure

TEMPLATE = """<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>{{ title }}</title>
<style>
body { font-family: system-ui, sans-serif; max-width: 72rem; margin: 2rem auto; padding: 0 1rem; color: #222; }
h1 { font-size: 1.5rem; } h2 { font-size: 1.2rem; margin-top: 2rem; border-bottom: 1px solid #ccc; }
pre { background: #f6f6f6; padding: .6rem; overflow-x: auto; font-size: .85rem; }
pre.verdict { white-space: pre-wrap; overflow-wrap: anywhere; overflow-x: visible; }
.figs { display: flex; flex-wrap: wrap; gap: 1rem; } .figs figure { margin: 0; }
figure svg { max-width: 34rem; height: auto; } figcaption { font-size: .85rem; color: #555; }
table { border-collapse: collapse; font-size: .85rem; } td, th { border: 1px solid #ccc; padding: .2rem .5rem; }
.yes { color: #060; font-weight: bold; } .no { color: #a00; font-weight: bold; }
</style></head><body>
<h1>{{ title }}</h1>
<p>Real model, its linearisation f_lin(x; θ) = f(x; θ₀) + J₀(θ − θ₀) and the closed-form kernel prediction,
trained side by side from the same θ₀ on L = ½Σ‖f − y‖².
Training ran in eval mode: every module's <code>eval()</code> behaviour throughout (BatchNorm with its running
statistics, dropout off), so the model trained is the deterministic function x ↦ f(x; θ) whose empirical NTK the
theory describes, not what <code>model.train()</code> would compute.
Thresholds and their reasons: <code>zeroloss.diagnosis.verdict</code>.</p>
{% if sweep %}
<h2>Width sweep</h2>
<div class="figs"><figure>{{ sweep.svg }}<figcaption>maxima over each run against width; dotted: m^-1/2</figcaption>
</figure></div>
<table><tr><th>quantity</th><th>slope</th><th>std. error</th><th>points</th></tr>
{% for row in sweep.slopes %}<tr><td>{{ row.name }}</td><td>{{ row.slope }}</td><td>{{ row.stderr }}</td>
<td>{{ row.points }}</td></tr>{% endfor %}</table>
<p></p>
<table><tr>{% for c in sweep.columns %}<th>{{ c }}</th>{% endfor %}</tr>
{% for r in sweep.rows %}<tr>{% for v in r %}<td>{{ v }}</td>{% endfor %}</tr>{% endfor %}</table>
{% endif %}
{% for run in runs %}
<h2>{{ run.label }} — lazy:
<span class="{{ 'yes' if run.lazy else 'no' }}">{{ 'yes' if run.lazy else 'no' }}</span></h2>
<pre class="verdict">{{ run.verdict }}</pre>
<div class="figs">{% for cap, svg in run.figures %}<figure>{{ svg }}<figcaption>{{ cap }}</figcaption></figure>
{% endfor %}</div>
{% endfor %}
<h2>Spec</h2>
<pre>{{ spec }}</pre>
</body></html>
"""


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def render_page(title: str, runs: list[tuple[str, Any]], sweep: Any, spec: dict[str, Any]) -> str:
    """The page for ``runs`` — (label, :class:`~zeroloss.diagnosis.run.Diagnosis`) pairs — and an optional
    :class:`~zeroloss.diagnosis.widths.WidthSweep`."""
    from zeroloss.report import figure_svg

    env = jinja2.Environment(autoescape=True, undefined=jinja2.StrictUndefined)
    items = []
    for i, (label, d) in enumerate(runs):
        figs = [("loss of the real, linearised and predicted models", loss_figure(d.history)),
                ("eNTK drift and relative parameter movement", dynamics_figure(d.history)),
                ("spectrum of the empirical NTK Θ₀", spectrum_figure(d.spectrum0))]
        svgs = [(cap, Markup(figure_svg(fig, prefix=f"r{i}f{j}-")))
                for j, (cap, fig) in enumerate(figs)]
        items.append({"label": label, "lazy": d.verdict.lazy, "verdict": str(d.verdict), "figures": svgs})
    sweep_ctx = None
    if sweep is not None:
        columns = ["width", "repeat", "gap", "drift", "movement", "lazy", "rate_matches", "lr", "final_loss_real"]
        columns = [c for c in columns if c in sweep.table.columns]
        sweep_ctx = {
            "svg": Markup(figure_svg(sweep.figure(), prefix="w-")),
            "slopes": [{"name": k, "slope": _fmt(s.slope), "stderr": _fmt(s.stderr), "points": s.points}
                       for k, s in sweep.slopes.items()],
            "columns": columns,
            "rows": [[_fmt(v) for v in row] for row in sweep.table[columns].itertuples(index=False)],
        }
    return env.from_string(TEMPLATE).render(title=title, runs=items, sweep=sweep_ctx,
                                            spec=json.dumps(spec, indent=1, sort_keys=True, default=str))
