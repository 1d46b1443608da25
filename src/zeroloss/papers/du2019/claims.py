"""The claims of Du et al.'s experiments: measured quantities, thresholds with their provenance, three verdicts.

Every function here reads a one-row-per-run table (:func:`zeroloss.papers.du2019.runs.runs_table` of a sweep;
the summary columns of :func:`~zeroloss.papers.du2019.runs.run_batch`) and returns :class:`Claim` s. A run is
*censored* when ``max_steps`` cut it before the end of its own kernel window (``censored`` column); a verdict that
censored runs could change is INCONCLUSIVE, with the reason. The tests feed each function synthetic tables with
the claimed effect present (PASS), absent (FAIL) and censored (INCONCLUSIVE).

Thresholds:

- :data:`TRACK_TOL` — τ: a run *tracks* its kernel when max_k |√L_k − √L̂_k| ≤ τ √L_0 over its kernel window.
- :data:`FIT_RATIO`, :data:`FIT_WITHIN` — random labels count as fitted once L ≤ FIT_RATIO · L(0), and the claim
  asks for it within FIT_WITHIN times the run's kernel horizon (the step at which its kernel prediction gets there):
  the time is part of the claim, so a run that has not fitted by then fails, unless censored.
- Linear decrement (:func:`linear_claim`): at η = 1/λ_max(G(0)) every step achieves at least 1 − :data:`LINEAR_TOL`
  of the linearised decrement 1 − (1 − ηλ_min(G(k)))² (the fraction per width is the *laziness curve*).
- Slopes (:func:`slope_claim`, the one slope rule; docs/theory.md §1.5): log-log least squares over all
  (width, seed) points, 95 % Student-t interval [lo, hi] of half-width h. FAIL when lo > −½ (the whole interval
  decays more slowly than m^(−1/2)) — unless the local slopes are still moving towards −½ (:func:`local_slopes`),
  which is INCONCLUSIVE "pre-asymptotic"; INCONCLUSIVE when h ≥ :data:`SLOPE_HALF_WIDTH`; PASS when lo ≤ −½ and
  h < :data:`SLOPE_HALF_WIDTH` — the interval then reaches −½ and lies below −¼: m^(−1/4) is excluded, and a
  quantity that decays at exactly m^(−1/2) (the weight movement, the initial Gram's fluctuation) passes with
  probability ≈ 97.5 % rather than by luck, which "entirely ≤ −½" would demand.
- Depth (:func:`depth_claim`): the needed width per (net, depth) on the grid of widths tried, as an interval when
  censored; the FC net's growth with depth must exceed the ResNet's by :data:`DEPTH_MARGIN_STEPS` grid steps.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from zeroloss.papers.base import FAIL, INCONCLUSIVE, PASS, Claim, Provenance
from zeroloss.papers.du2019.runs import FIT_RATIO

#: τ of the tracking claims (residual-norm gap over ‖r(0)‖).
TRACK_TOL = 0.05
#: Random labels must be fitted (L ≤ FIT_RATIO·L(0)) within this many kernel horizons.
FIT_WITHIN = 2.0
#: Du et al.'s width exponent: movement, Gram drift and the deviation from the kernel dynamics are O(m^(−1/2)).
SLOPE_BOUND = -0.5
#: Two-sided confidence of the slope interval.
SLOPE_CONFIDENCE = 0.95
#: Largest half-width (exclusive) of a slope interval that can PASS: with lo ≤ −½ it keeps hi < −¼.
SLOPE_HALF_WIDTH = 0.125
#: The linear-decrement claim's tolerance: a step counts as linear when it achieves ≥ 1 − LINEAR_TOL of the
#: decrement 1 − (1 − ηλ_min(G(k)))² of the linearised dynamics.
LINEAR_TOL = 0.1
#: FC's needed-width growth with depth must exceed the ResNet's by this many grid steps (width doublings).
DEPTH_MARGIN_STEPS = 2

LINEAR_SOURCE = Provenance(
    "derived", "the linearised dynamics r(k+1) = (I − ηG(k)) r(k) of docs/theory.md §1.3 give "
               "L(k+1)/L(k) ≤ (1 − ηλ_min(G(k)))² while ηλ_max(G(k)) ≤ 2 − ηλ_min(G(k)), with the full Gram's "
               "λ_min as the paper's remark (Conclusion) conjectures; Du et al.'s theorems prove the weaker "
               "1 − ηλ₀/2 only for "
               f"η = O(λ₀/n²) (du2019.theorem); tolerance {LINEAR_TOL:g} (lab): the second-order terms may take up to "
               "a tenth of the linear decrement, fixed before the runs were looked at; steps with L(k) ≤ 10⁻⁸·L(0) "
               "are not used (the ratio of two losses there carries round-off)")
TRACK_SOURCE = Provenance(
    "lab", f"τ = {TRACK_TOL:g}: the kernel prediction describes a run when the residual norm stays within "
           "5 % of ‖r(0)‖ of it at every step of the kernel's window — a round one-in-twenty agreement, far below "
           "the factor-of-several spread that separates the nets here, and the same τ for every width, depth and net")
FIT_SOURCE = Provenance(
    "lab", f"L ≤ {FIT_RATIO:g}·L(0) within {FIT_WITHIN:g}× the kernel's horizon (the step at which the kernel "
           "prediction reaches the same fraction): Du et al.'s theorems say arbitrary labels are fitted at the "
           f"kernel's linear rate; the factor {FIT_WITHIN:g} leaves room for a finite-width net that trails its kernel")
SLOPE_SOURCE = Provenance(
    "theorem", "Du et al. 2019, the perturbation analysis behind Thms 5.1/6.1/7.1: every layer moves "
               "‖W^(h)(k) − W^(h)(0)‖_F ≤ √m·R′ with R′ ∝ m^(−1/2), i.e. ‖W^(h)(k) − W^(h)(0)‖_F/√m = O(m^(−1/2)), "
               "and the "
               "Gram matrix, hence the dynamics, stay within O(R′) of their initial values (docs/theory.md §1.5): "
               f"decay at least as fast as m^(−1/2); rule: the fit's {SLOPE_CONFIDENCE:.0%} t-interval reaches −½ and "
               f"has half-width < {SLOPE_HALF_WIDTH} (so it excludes m^(−1/4)); entirely above −½ fails unless the "
               "local slopes are still moving (pre-asymptotic)")
DEPTH_SOURCE = Provenance(
    "theorem", "Du et al. 2019, Thm 5.1 (FC: m = Ω(2^{O(H)}·poly(n, 1/λ₀))) vs Thm 6.1 (ResNet: polynomial, no "
               f"exponential depth factor); τ = {TRACK_TOL:g} as the tracking claim; margin {DEPTH_MARGIN_STEPS} "
               "grid steps: a needed width read off the grid is within one step of the truth, so a difference of "
               "two growths is within two")


def _check_columns(runs: pd.DataFrame, needed: tuple[str, ...]) -> None:
    missing = [c for c in needed if c not in runs.columns]
    if missing:
        raise ValueError(f"runs: columns {missing} missing (not a du2019 result table?)")


def _fmt(x: float) -> str:
    return ("-inf" if x < 0 else "inf") if math.isinf(x) else f"{x:.3g}"


# ------------------------------------------------------------------------------------- (a) linear decrement

def laziness_curve(runs: pd.DataFrame) -> pd.Series:
    """Per width (sorted): the smallest fraction of the linear decrement that any step of any seed achieved."""
    return runs.groupby("width")["linear_fraction_min"].min().astype(float).sort_index()


def linear_claim(experiment: str, net: str, runs: pd.DataFrame) -> Claim:
    """(a) At the widest width every step achieves ≥ 1 − LINEAR_TOL of the linear decrement 1 − (1 − ηλ_min(G(k)))²,
    η = 1/λ_max(G(0)); the details give the laziness curve and the widest width at which it fails."""
    _check_columns(runs, ("width", "eta", "lambda_max_G0", "linear_steps", "linear_fraction_min", "censored",
                          "diverged"))
    curve = laziness_curve(runs)
    wide = runs[runs["width"] == runs["width"].max()]
    width = int(wide["width"].iloc[0])
    floor = 1.0 - LINEAR_TOL
    text = (f"{net} (m = {width}): every GD step achieves ≥ {floor:g} of the linearised decrement, "
            f"L(k+1)/L(k) ≤ 1 − {floor:g}·(1 − (1 − ηλ_min(G(k)))²), η = 1/λ_max(G(0))")
    worst = float(curve.iloc[-1])
    failing = [int(m) for m, f in curve.items() if not f >= floor]  # NaN (no usable step) counts as failing
    first_fail = max(failing) if failing else None
    details = ("laziness curve (min over seeds and steps of the fraction of the linear decrement achieved) — "
               + ", ".join(f"m={int(m)}: {_fmt(f)}" for m, f in curve.items())
               + f"; widest width at which it fails: {first_fail if first_fail else 'none tried'}; "
               + ("the same against λ_min(G(0)) (laziness with respect to the initial kernel) — " + ", ".join(
                   f"m={int(m)}: {_fmt(f)}" for m, f in runs.groupby("width")["linear_fraction_min_G0"].min().items())
                  + "; " if "linear_fraction_min_G0" in runs.columns else "")
               + f"{int(wide['linear_steps'].sum())} steps checked at m = {width}")
    measured = worst
    expected = f"≥ {floor:g}"
    kw = {"provenance": LINEAR_SOURCE, "details": details}
    if (wide["eta"] * wide["lambda_max_G0"] > 1.0 + 1e-9).any():  # 1e-9: the product of two rounded floats
        return Claim(experiment, text, measured, expected, INCONCLUSIVE, **kw,
                     reason="a step η > 1/λ_max(G(0)) was used: outside the claim's range")
    if not worst >= floor or wide["diverged"].astype(bool).any():
        return Claim(experiment, text, measured, expected, FAIL, **kw)
    if wide["censored"].astype(bool).any():
        return Claim(experiment, text, measured, expected, INCONCLUSIVE, **kw,
                     reason="max_steps cut a run before the end of its kernel window: its later steps are unchecked")
    return Claim(experiment, text, measured, expected, PASS, **kw)


# ---------------------------------------------------------------------------------------- (a) tracking, fit

def tracking_claim(experiment: str, net: str, runs: pd.DataFrame) -> Claim:
    """(a) At the widest width every seed's loss curve stays within τ of its kernel prediction."""
    _check_columns(runs, ("width", "kernel_deviation", "censored"))
    wide = runs[runs["width"] == runs["width"].max()]
    width = int(wide["width"].iloc[0])
    worst = float(wide["kernel_deviation"].max())
    text = (f"{net} (m = {width}): the loss follows the kernel prediction ½Σ(1 − ηλ_i)^{{2k}}⟨v_i, y − u₀⟩² of "
            f"G(0): max_k |√L_k − √L̂_k| / √L_0 ≤ τ")
    details = (f"worst of {len(wide)} seeds over each run's kernel window (until L̂ ≤ 10⁻⁴ L̂_0); per seed: "
               + ", ".join(_fmt(v) for v in wide["kernel_deviation"]))
    kw = {"provenance": TRACK_SOURCE, "details": details}
    if worst > TRACK_TOL:  # censored windows give lower bounds: an excess is decided either way
        return Claim(experiment, text, worst, f"≤ {TRACK_TOL:g}", FAIL, **kw)
    if wide["censored"].astype(bool).any():
        return Claim(experiment, text, worst, f"≤ {TRACK_TOL:g}", INCONCLUSIVE, **kw,
                     reason="max_steps cut a run's kernel window: its deviation is only a lower bound")
    return Claim(experiment, text, worst, f"≤ {TRACK_TOL:g}", PASS, **kw)


def fit_claim(experiment: str, label: str, runs: pd.DataFrame) -> Claim:
    """Random labels are fitted: every seed reaches L ≤ FIT_RATIO·L(0) within FIT_WITHIN × its kernel horizon."""
    _check_columns(runs, ("width", "fit_step", "censored", "diverged", "kernel_horizon"))
    wide = runs[runs["width"] == runs["width"].max()]
    text = (f"{label} (m = {int(wide['width'].iloc[0])}) fits random ±1 labels: L ≤ {FIT_RATIO:g}·L(0) within "
            f"{FIT_WITHIN:g}× its kernel's horizon")
    horizon = wide["kernel_horizon"].astype(float)
    steps = pd.to_numeric(wide["fit_step"], errors="coerce").astype(float)  # NaN: never reached
    time = (steps / horizon).where(horizon > 0, np.inf).fillna(np.inf)
    reached = time <= FIT_WITHIN
    measured = float(time.max())
    expected = f"≤ {FIT_WITHIN:g} kernel horizons"
    details = (f"{int(reached.sum())} of {len(wide)} seeds; steps to the target / kernel horizon per seed: "
               + ", ".join(_fmt(t) for t in time) + "; kernel horizons "
               + ", ".join(str(int(k)) for k in wide["kernel_horizon"]) + " steps")
    kw = {"provenance": FIT_SOURCE, "details": details}
    if reached.all():
        return Claim(experiment, text, measured, expected, PASS, **kw)
    open_runs = ~reached & wide["censored"].astype(bool) & ~wide["diverged"].astype(bool)
    if open_runs.any():
        return Claim(experiment, text, measured, expected, INCONCLUSIVE, **kw,
                     reason=f"{int(open_runs.sum())} seed(s) not there yet when max_steps cut the run before "
                            f"{FIT_WITHIN:g}× its kernel horizon")
    return Claim(experiment, text, measured, expected, FAIL, **kw)


# ----------------------------------------------------------------------------------------------- (b) slopes

def loglog_fit(x: np.ndarray, y: np.ndarray) -> tuple[float, float, int]:
    """Least-squares slope of log y on log x, its standard error, and the number of points.

    Examples:
        >>> slope, se, n = loglog_fit(np.array([1.0, 2.0, 4.0]), np.array([1.0, 0.5, 0.25]))
        >>> round(slope, 12), round(se, 12), n
        (-1.0, 0.0, 3)
    """
    lx, ly = np.log(np.asarray(x, dtype=float)), np.log(np.asarray(y, dtype=float))
    n = len(lx)
    if n < 3:
        return float("nan"), float("nan"), n
    sxx = float(((lx - lx.mean()) ** 2).sum())
    slope = float(((lx - lx.mean()) * (ly - ly.mean())).sum() / sxx)
    resid = ly - ly.mean() - slope * (lx - lx.mean())
    se = math.sqrt(float((resid**2).sum()) / (n - 2) / sxx)
    return slope, se, n


def _interval(x: np.ndarray, y: np.ndarray) -> tuple[float, float, int]:
    """(slope, half-width of its SLOPE_CONFIDENCE t-interval, points) of the log-log fit; NaNs when < 3 points."""
    from scipy.stats import t as student_t

    slope, se, npts = loglog_fit(x, y)
    if npts < 3:
        return slope, float("nan"), npts
    return slope, float(student_t.ppf(0.5 + SLOPE_CONFIDENCE / 2, npts - 2)) * se, npts


def local_slopes(widths: np.ndarray, values: np.ndarray) -> list[tuple[int, int, float, float]]:
    """The slope over every three consecutive widths tried: (first width, last width, slope, half-width)."""
    grid = np.unique(widths)
    out = []
    for i in range(len(grid) - 2):
        pick = (widths >= grid[i]) & (widths <= grid[i + 2])
        slope, half, _ = _interval(widths[pick], values[pick])
        out.append((int(grid[i]), int(grid[i + 2]), slope, half))
    return out


def slope_claim(experiment: str, net: str, runs: pd.DataFrame, column: str, label: str,
                provenance: Provenance | None = None, rate: str = "at least as fast as") -> Claim:
    """(b) ``column`` falls with the width at least as fast as m^(−1/2): the one slope rule (module docstring)."""
    _check_columns(runs, ("width", column, "censored"))
    values = runs[column].astype(float)
    usable = np.isfinite(values) & (values > 0)
    widths = runs.loc[usable, "width"].astype(float).to_numpy()
    ys = values[usable].to_numpy()
    slope, half, npts = _interval(widths, ys)
    distinct = len(np.unique(widths))
    text = f"{net}: {label} falls {rate} m^(−1/2)"
    expected = f"95 % interval reaches {SLOPE_BOUND}, half-width < {SLOPE_HALF_WIDTH}"
    left_out = int((~usable).sum())
    details = (f"log-log fit over widths {sorted({int(w) for w in widths})}, {npts} runs"
               + (f" ({left_out} left out: non-finite or zero)" if left_out else ""))
    kw = {"provenance": provenance or SLOPE_SOURCE}
    if distinct < 3 or npts < 4:
        return Claim(experiment, text, "n/a", expected, INCONCLUSIVE, details=details, **kw,
                     reason=f"a slope needs ≥ 3 widths and ≥ 4 runs, got {distinct} widths, {npts} runs")
    lo, hi = slope - half, slope + half
    measured = f"{slope:.3f} ± {half:.3f}"
    local = local_slopes(widths, ys)
    details += f"; interval [{lo:.3f}, {hi:.3f}]; local slopes " + ", ".join(
        f"m={a}…{b}: {s_:.2f} ± {h:.2f}" for a, b, s_, h in local)
    if runs["censored"].astype(bool).any():
        return Claim(experiment, text, measured, expected, INCONCLUSIVE, details=details, **kw,
                     reason="max_steps cut some runs before the end of their kernel window")
    if lo > SLOPE_BOUND:  # the whole interval above −½: decays more slowly over this range
        first, last = local[0], local[-1]
        if len(local) > 1 and last[2] < first[2] and last[2] - last[3] <= SLOPE_BOUND:
            return Claim(experiment, text, measured, expected, INCONCLUSIVE, details=details, **kw,
                         reason=f"pre-asymptotic: the local slope still moves, {first[2]:.2f} over m = "
                                f"{first[0]}…{first[1]} to {last[2]:.2f} ± {last[3]:.2f} over m = {last[0]}…{last[1]}, "
                                f"whose interval reaches {SLOPE_BOUND}")
        return Claim(experiment, text, measured, expected, FAIL, details=details, **kw)
    if not half < SLOPE_HALF_WIDTH:
        return Claim(experiment, text, measured, expected, INCONCLUSIVE, details=details, **kw,
                     reason=f"the interval's half-width {half:.3f} is not below {SLOPE_HALF_WIDTH}: the widths and "
                            "seeds do not pin the slope down")
    where = "entirely below −½" if hi <= SLOPE_BOUND else "contains −½"
    return Claim(experiment, text, f"{measured} ({where})", expected, PASS, details=details, **kw)


# ------------------------------------------------------------------------------------------------ (c) depth

def width_status(group: pd.DataFrame) -> pd.Series:
    """Per width (sorted): ``"yes"`` (the seed-mean deviation ≤ τ), ``"no"`` or ``"unknown"``.

    A censored run's deviation is a lower bound, so a mean above τ is still "no"; a mean at or below τ that rests
    on a censored run is "unknown".
    """
    out = {}
    for width, cell in group.groupby("width"):
        mean = float(cell["kernel_deviation"].astype(float).mean())
        if mean > TRACK_TOL:
            out[int(width)] = "no"
        else:
            out[int(width)] = "unknown" if cell["censored"].astype(bool).any() else "yes"
    return pd.Series(out).sort_index()


def needed_width(group: pd.DataFrame) -> tuple[float, float]:
    """log₂ of the needed width m* on the grid of widths tried, as an interval [lo, hi].

    m* is the smallest width tried from which every wider one tracks its kernel (:func:`width_status`). lo is the
    width just above the widest one known *not* to track (−inf when none: m* may lie below the smallest width
    tried), hi the smallest width from which all are known to track (inf when the widest does not: *censored*,
    m* lies beyond the widths tried). A clean cell gives lo = hi; an ``unknown`` width widens the interval.
    Past the widest width the grid continues with its last ratio.
    """
    status = width_status(group).to_numpy()
    logw = np.log2(width_status(group).index.to_numpy(dtype=float))
    last_step = float(logw[-1] - logw[-2]) if len(logw) > 1 else 1.0
    grid = np.append(logw, logw[-1] + last_step)
    no = np.flatnonzero(status == "no")
    lo = float(grid[no[-1] + 1]) if len(no) else -math.inf
    tail = len(status)
    while tail > 0 and status[tail - 1] == "yes":
        tail -= 1
    hi = float(logw[tail]) if tail < len(status) else math.inf
    return lo, hi


def needed_widths(runs: pd.DataFrame) -> pd.DataFrame:
    """One row per (net, depth): ``lo``, ``hi`` (log₂ width, :func:`needed_width`) and ``censored`` (lo < hi)."""
    rows = []
    for (net, depth), group in runs.groupby(["net", "depth"]):
        lo, hi = needed_width(group)
        rows.append({"net": net, "depth": int(depth), "lo": lo, "hi": hi, "censored": lo < hi})
    return pd.DataFrame(rows)


def _growth(table: pd.DataFrame, net: str, first: int, last: int) -> tuple[float, float]:
    """log₂ m*(last) − log₂ m*(first) as an interval (±inf where a bound is missing)."""
    a = table[(table["net"] == net) & (table["depth"] == first)].iloc[0]
    b = table[(table["net"] == net) & (table["depth"] == last)].iloc[0]
    lo, hi = b["lo"] - a["hi"], b["hi"] - a["lo"]
    return (-math.inf if math.isnan(lo) else lo), (math.inf if math.isnan(hi) else hi)


def describe_needed_width(lo: float, hi: float, widest: float) -> str:
    """The interval in words: ``"64"``, ``"≤ 8"``, ``"> 256"``, ``"32–128"``."""
    if lo == hi:
        return f"{2 ** lo:g}"
    if math.isinf(hi):
        return f"> {widest:g}" if math.isinf(lo) or 2**lo > widest else f"≥ {2 ** lo:g}"
    return f"≤ {2 ** hi:g}" if math.isinf(lo) else f"{2 ** lo:g}–{2 ** hi:g}"


def depth_claim(experiment: str, runs: pd.DataFrame) -> Claim:
    """(c) From the shallowest to the deepest depth, the width an FC net needs to track its kernel grows by
    :data:`DEPTH_MARGIN_STEPS` grid steps more than the ResNet's."""
    _check_columns(runs, ("net", "depth", "width", "kernel_deviation", "censored"))
    table = needed_widths(runs)
    depths = sorted(set(table.loc[table["net"] == "fc", "depth"]) & set(table.loc[table["net"] == "resnet",
                                                                                  "depth"]))
    widths = np.sort(runs["width"].unique().astype(float))
    step = float(np.max(np.log2(widths[1:] / widths[:-1]))) if len(widths) > 1 else math.inf
    margin = DEPTH_MARGIN_STEPS * step
    first, last = (depths[0], depths[-1]) if depths else (0, 0)
    text = (f"the width needed to track the kernel dynamics (τ = {TRACK_TOL:g}) grows with depth H = {first}→{last} "
            f"faster for FC than for ResNet (by ≥ {DEPTH_MARGIN_STEPS} width doublings)")

    def cell(net: str, depth: int) -> str:
        row = table[(table["net"] == net) & (table["depth"] == depth)].iloc[0]
        return describe_needed_width(row["lo"], row["hi"], widths[-1])

    details = "needed width m* per depth — " + "; ".join(
        f"H={h}: FC {cell('fc', h)}, ResNet {cell('resnet', h)}" for h in depths) + \
        f" (widths tried {[int(w) for w in widths]}, seed-mean deviation ≤ τ at that width and every wider one)"
    kw = {"provenance": DEPTH_SOURCE, "details": details}
    expected = f"log₂ growth FC − ResNet ≥ {margin:g}"
    if len(depths) < 2:
        return Claim(experiment, text, "n/a", expected, INCONCLUSIVE, **kw,
                     reason="both nets need at least two common depths")
    fc_lo, fc_hi = _growth(table, "fc", first, last)
    res_lo, res_hi = _growth(table, "resnet", first, last)
    lo, hi = fc_lo - res_hi, fc_hi - res_lo
    measured = f"[{_fmt(lo)}, {_fmt(hi)}] doublings (FC [{_fmt(fc_lo)}, {_fmt(fc_hi)}], " \
               f"ResNet [{_fmt(res_lo)}, {_fmt(res_hi)}])"
    if lo >= margin:
        return Claim(experiment, text, measured, expected, PASS, **kw)
    if hi <= 0:
        return Claim(experiment, text, measured, expected, FAIL, **kw)
    censored = table[table["censored"] & table["depth"].isin([first, last])]
    if len(censored):
        where = ", ".join(f"{r.net} H={r.depth}" for r in censored.itertuples())
        reason = f"censored needed widths ({where}) leave the difference undecided"
    else:
        reason = f"the difference is within the grid's resolution (< {margin:g} doublings) but not ≤ 0"
    return Claim(experiment, text, measured, expected, INCONCLUSIVE, reason=reason, **kw)
