"""The ``chatterjee2022.criterion_probability`` claims and figure: the probabilistic corollary against width.

- **n > d: the certificate refuses.** The theorem assumes linearly independent inputs (n ≤ d); past that boundary
  λ_min(XXᵀ) = 0 and the first-layer bound is 0, so there is nothing to certify. The claim is that the lab's
  certificate *refuses* (a :class:`~zeroloss.errors.ZerolossInputError` naming X), not that it returns
  "uncertified": PASS when every n > d run was refused and none certified anything, FAIL otherwise.
- **The positive law with random hidden weights is certified at every width, σ(0) = 0 and σ(0) ≠ 0.** Given that a
  finite certified output scale M* exists, certification holds *by construction* (M is computed from the bound);
  what can fail is that existence (σ′ underflowing on the reachable pre-activations, κ underflowing, or the output
  bias c for σ(0) ≠ 0 breaking the bound), at the smallest width as at the largest: the paper's point that the
  width can stay fixed. PASS when every draw at every width is certified, FAIL when one is not.
- **Gaussian laws: the corollary's proven bound is 0 at every width** — by construction too: the first-layer bound
  needs every hidden and output weight above r, which a Gaussian draw violates; it can fail only through a bug.
  The optimistic count (criterion with the α *estimate*) is reported beside it, labelled as such.

Examples:
    >>> runs = pd.DataFrame([dict(law="lecun", width=4, activation="tanh", n=80, d=64, refused=True, certified=None,
    ...                           trials=8, sigma0=0.0, estimated=None, low=None, high=None)])
    >>> [c.verdict for c in boundary_claim(runs)]
    ['PASS']
"""

from __future__ import annotations

import math
from typing import Any

import pandas as pd

from zeroloss.papers.base import FAIL, INCONCLUSIVE, PASS, Claim, Provenance, one_row_per_run, pyplot

NAME = "chatterjee2022.criterion_probability"
POSITIVE_LAW = "positive_uniform"


def _runs(df: pd.DataFrame) -> pd.DataFrame:
    return one_row_per_run(df) if "run_id" in df.columns else df.reset_index(drop=True)


def _flag(value: object) -> bool:
    return bool(value) if value is not None and not (isinstance(value, float) and math.isnan(value)) else False


def boundary_claim(runs: pd.DataFrame) -> list[Claim]:
    """n > d: every run refused, none certified."""
    beyond = runs[runs["n"] > runs["d"]]
    refused = int(beyond["refused"].map(_flag).sum()) if len(beyond) else 0
    certified = int(beyond["certified"].fillna(0).sum()) if len(beyond) else 0
    if beyond.empty:
        verdict, reason = INCONCLUSIVE, "no run with n > d in the results"
    else:
        verdict, reason = (PASS if refused == len(beyond) and certified == 0 else FAIL), ""
    laws = ", ".join(sorted(set(beyond["law"]))) if len(beyond) else "none"
    return [Claim(
        NAME, "at n > d (inputs linearly dependent) the certificate refuses — it raises an input error naming X — "
              "rather than returning a count", f"{refused}/{len(beyond)} refused, {certified} certified",
        "all refused, none certified", verdict,
        details=f"laws {laws}; n/d = {', '.join(f'{v:.3g}' for v in sorted(set(beyond['n'] / beyond['d'])))}"
        if len(beyond) else "",
        provenance=Provenance("paper", "Chatterjee 2022, abstract and main theorem: 'provided that the input "
                                       "dimension is greater than or equal to the number of data points' (linearly "
                                       "independent inputs)"),
        reason=reason)]


def _per_width(sub: pd.DataFrame, column: str) -> str:
    return ", ".join(f"w{int(w)}: {int(g[column].sum())}/{int(g['trials'].sum())}"
                     for w, g in sub.groupby("width"))


def positive_claim(runs: pd.DataFrame) -> list[Claim]:
    """The positive law with random hidden weights: certified in every draw at every width, for σ(0) = 0 and ≠ 0."""
    pos = runs[(runs["law"] == POSITIVE_LAW) & (runs["n"] <= runs["d"])]
    out = []
    for zero, label in ((True, "σ(0) = 0"), (False, "σ(0) ≠ 0")):
        sub = pos[(pos["sigma0"] == 0.0) == zero]
        trials = int(sub["trials"].sum()) if len(sub) else 0
        certified = int(sub["certified"].fillna(0).sum()) if len(sub) else 0
        refused = int(sub["refused"].map(_flag).sum()) if len(sub) else 0
        if sub.empty:
            verdict, reason = INCONCLUSIVE, f"no {POSITIVE_LAW} run with {label} and n ≤ d in the results"
        else:
            verdict, reason = (PASS if certified == trials and not refused else FAIL), ""
        acts = ", ".join(sorted(set(sub["activation"]))) if len(sub) else "none"
        lows = f"; smallest Wilson lower bound {float(sub['low'].min()):.3g}" if len(sub) and not refused else ""
        out.append(Claim(
            NAME, f"{label}: Chatterjee's positive init with random hidden weights U[½, 3⁄2]/fan_in is certified in "
                  "every draw at every width (the width need not grow)",
            f"{certified}/{trials} draws", "all, at every width", verdict,
            details=f"by construction once a finite M* exists (M is computed from the bound, r = ¼/fan_in): what is "
                    f"tested is that it exists for every draw; activations {acts}; per width "
                    f"{_per_width(sub, 'certified')}"
                    f"{lows}; {refused} runs refused" if len(sub) else "",
            provenance=Provenance("paper", "Chatterjee 2022, abstract: with the proper initialisation GD converges "
                                           "'when training any feedforward neural network with smooth and strictly "
                                           "increasing activation functions' and 'the width of the network can be a "
                                           "fixed number'"),
            reason=reason))
    return out


def gaussian_claim(runs: pd.DataFrame) -> list[Claim]:
    """Standard (Gaussian) laws: the proven count is 0 at every width; the optimistic count beside it."""
    gauss = runs[(runs["law"] != POSITIVE_LAW) & (runs["n"] <= runs["d"])]
    trials = int(gauss["trials"].sum()) if len(gauss) else 0
    certified = int(gauss["certified"].fillna(0).sum()) if len(gauss) else 0
    verdict, reason = (INCONCLUSIVE, "no Gaussian-law run with n ≤ d in the results") if gauss.empty else \
        (certified == 0, "")
    high = f"; largest Wilson upper bound {float(gauss['high'].max()):.3g}" if len(gauss) else ""
    return [Claim(
        NAME, "for Gaussian initialisations the corollary's proven bound is vacuous: the first-layer certificate "
              "never certifies, at any width (by construction)",
        f"{certified}/{trials} draws", "none", verdict,
        details=f"holds by construction: the bound needs every hidden and output weight above r, which a Gaussian "
                f"draw violates, so it can fail only through a bug{high}; optimistic count (criterion with the α "
                f"estimate, not a bound) per width: {_per_width(gauss, 'estimated')}" if len(gauss) else "",
        provenance=Provenance("derived", "the first-layer bound's hypotheses (docs/theory.md §2.3)"),
        reason=reason)]


def claims(df: pd.DataFrame) -> list[Claim]:
    runs = _runs(df)
    return boundary_claim(runs) + positive_claim(runs) + gaussian_claim(runs)


def plot(df: pd.DataFrame) -> dict[str, Any]:
    """The certified proportion (Wilson interval) and the optimistic one against width, per law and activation."""
    plt = pyplot()

    runs = _runs(df)
    runs = runs[(runs["n"] <= runs["d"]) & ~runs["refused"].map(_flag)]
    fig, ax = plt.subplots(figsize=(5.6, 4.0))
    for i, ((law, act), sub) in enumerate(sorted(runs.groupby(["law", "activation"]))):
        sub = sub.sort_values("width")
        w = sub["width"].to_numpy(float) * 2.0 ** (0.05 * (i - 1.5))  # a small offset: the series overlap
        p = sub["estimate"].to_numpy(float)
        err = [p - sub["low"].to_numpy(float), sub["high"].to_numpy(float) - p]
        ax.errorbar(w, p, yerr=err, color=f"C{i}", marker="o", capsize=2, label=f"{law}, {act}: certified")
        ax.plot(w, (sub["estimated"] / sub["trials"]).to_numpy(float), color=f"C{i}", ls=":", marker="x",
                label=f"{law}, {act}: α estimate (optimistic)")
    ax.set_xscale("log", base=2)
    ax.set_ylim(-0.05, 1.05)
    ax.set_xlabel("width (depth 2; series offset slightly)")
    ax.set_ylabel("P(criterion holds), 95 % Wilson interval")
    ax.set_title("the probabilistic corollary: certified proportion of random draws", fontsize=9)
    ax.legend(fontsize=6, frameon=False)
    fig.tight_layout()
    return {"criterion probability vs width": fig}
