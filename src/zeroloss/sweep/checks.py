"""Run values checked before a sweep writes anything: NaN step sizes, width 0 and the like (issue 15.6).

A sweep's runs are validated in full before ``.lock`` or ``sweep.json`` exist, so a bad value is a one-line error
(exit status 2 in the CLI) and not a failed run found an hour later. :func:`validate_runs` applies, to every run:

1. the universal rule: a run spec is JSON — text keys; text, numbers, booleans, null, lists, mappings — and every
   number is finite (NaN and inf have no canonical JSON, so they could not even be hashed into a run id);
2. the per-key checks declared for the experiment (:data:`CHECKS`, filled with :func:`declare_checks`): a key
   present in a run must pass its check; keys without a check are passed on as they are;
3. the experiment's own ``validate_spec(spec)`` when it has one (an attribute of the experiment object that raises
   :class:`~zeroloss.errors.ZerolossInputError`).

An experiment module declares its checks next to its ``Experiment``, with the helpers below::

    declare_checks("my.experiment", {"width": positive_int, "lr": positive_number,
                                      "net": one_of("fc", "resnet")})

The paper experiments' checks are declared at the end of this module (what each ``run_batch`` accepts).

Example:
    >>> declare_checks("demo.exp", {"width": positive_int})
    >>> validate_runs("demo.exp", [{"width": 8}, {"width": 0}])
    Traceback (most recent call last):
    ...
    zeroloss.errors.ZerolossInputError: width: must be a positive integer, got 0 (run 2 of 2)
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from zeroloss.errors import ZerolossInputError

#: A per-key check: returns None when the value is accepted, else what is accepted ("must be …").
KeyCheck = Callable[[Any], str | None]
#: experiment name → key → check.
CHECKS: dict[str, dict[str, KeyCheck]] = {}
#: experiment name → checks of a whole run spec (keys that constrain each other, the run's memory): each returns
#: None, or a message that starts with the key it is about.
RUN_CHECKS: dict[str, list[Callable[[Mapping[str, Any]], str | None]]] = {}
#: Seeds go to torch and numpy generators, which take 0 ≤ seed < 2⁶³ (member k of an ensemble uses seed + k).
MAX_SEED = 2**63 - 1


def declare_checks(experiment: str, checks: Mapping[str, KeyCheck]) -> None:
    """Add (or replace) per-key checks for ``experiment``'s run specs."""
    CHECKS.setdefault(experiment, {}).update(checks)


def declare_run_check(experiment: str, check: Callable[[Mapping[str, Any]], str | None]) -> None:
    """Add a check of whole run specs of ``experiment`` (after the per-key checks have passed)."""
    RUN_CHECKS.setdefault(experiment, []).append(check)


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def positive_int(value: Any) -> str | None:
    return None if _is_int(value) and value >= 1 else "must be a positive integer"


def nonnegative_int(value: Any) -> str | None:
    return None if _is_int(value) and value >= 0 else "must be a non-negative integer"


def seed(value: Any) -> str | None:
    return None if _is_int(value) and 0 <= value <= MAX_SEED else "must be an integer from 0 to 2**63 - 1"


def positive_number(value: Any) -> str | None:
    return None if _is_number(value) and math.isfinite(value) and value > 0 else "must be a positive finite number"


def boolean(value: Any) -> str | None:
    return None if isinstance(value, bool) else "must be true or false"


def open_interval(low: float, high: float) -> KeyCheck:
    """A number strictly between ``low`` and ``high``."""

    def check(value: Any) -> str | None:
        return None if _is_number(value) and low < value < high else f"must be a number in ({low:g}, {high:g})"

    return check


def one_of(*accepted: Any) -> KeyCheck:
    """One of ``accepted`` (compared with ==, bools never taken for numbers)."""

    def check(value: Any) -> str | None:
        ok = any(value == a and type(value) is type(a) for a in accepted)
        return None if ok else f"must be one of {', '.join(map(str, accepted))}"

    return check


def one_of_lazy(accepted: Callable[[], Sequence[str]]) -> KeyCheck:
    """One of the names ``accepted()`` returns (a registry read when the check runs)."""

    def check(value: Any) -> str | None:
        names = list(accepted())
        return None if isinstance(value, str) and value in names else f"must be one of {', '.join(names)}"

    return check


def list_of(item: KeyCheck, min_length: int = 1) -> KeyCheck:
    """A list of at least ``min_length`` items, each passing ``item``."""

    def check(value: Any) -> str | None:
        if not isinstance(value, list) or len(value) < min_length:
            return f"must be a list of at least {min_length} item(s)"
        for i, entry in enumerate(value):
            problem = item(entry)
            if problem:
                return f"item {i}: {problem}"
        return None

    return check


def _plain_json_problem(value: Any) -> str | None:
    """Where ``value`` stops being finite JSON (None if it is)."""
    stack: list[tuple[Any, str]] = [(value, "")]
    while stack:
        item, where = stack.pop()
        if isinstance(item, Mapping):
            for key, child in item.items():
                if not isinstance(key, str):
                    return f"{where or 'key'}: keys must be text, got {key!r}"
                stack.append((child, f"{where}.{key}" if where else key))
        elif isinstance(item, (list, tuple)):
            stack.extend((child, where) for child in item)
        elif isinstance(item, float) and not math.isfinite(item):
            return f"{where}: must be a finite number, got {item!r}"
        elif not (item is None or isinstance(item, (str, bool, int, float))):
            return f"{where}: must be a JSON value (text, number, true/false, null, list, mapping), got {item!r}"
    return None


def validate_runs(experiment: Any, specs: Sequence[Mapping[str, Any]]) -> None:
    """Check every run spec of ``experiment`` (an :class:`~zeroloss.experiments.base.Experiment` or its name).

    Raises:
        ZerolossInputError: the first bad value, named by its key, with the run's position (``run 3 of 8``).
    """
    name = experiment if isinstance(experiment, str) else experiment.name
    checks = CHECKS.get(name, {})
    own = None if isinstance(experiment, str) else getattr(experiment, "validate_spec", None)
    total = len(specs)
    for i, spec in enumerate(specs, start=1):
        where = f"run {i} of {total}"
        problem = _plain_json_problem(spec)
        if problem:
            raise ZerolossInputError(f"{problem} ({where})")
        for key, check in checks.items():
            if key in spec:
                problem = check(spec[key])
                if problem:
                    raise ZerolossInputError(f"{key}: {problem}, got {spec[key]!r} ({where})")
        for check in RUN_CHECKS.get(name, []):
            problem = check(spec)
            if problem:
                raise ZerolossInputError(f"{problem} ({where})")
        if callable(own):
            own(spec)


# ------------------------------------------------------------------------------ the paper experiments' checks


def _activations() -> Sequence[str]:
    from zeroloss.activations import ACTIVATIONS

    return list(ACTIVATIONS)


def _probes() -> Sequence[str]:
    from zeroloss.train.probes import PROBES

    return list(PROBES)


def _chatterjee_inits() -> Sequence[str]:
    from zeroloss.experiments.chatterjee2022_claims import BASELINES, POSITIVE

    return [*POSITIVE, *BASELINES]


def _targets() -> Sequence[str]:
    from zeroloss.twotimescale.targets import PRESET_VALUES

    return list(PRESET_VALUES)


def depth(value: Any) -> str | None:
    from zeroloss.budget import MAX_DEPTH

    return None if _is_int(value) and 1 <= value <= MAX_DEPTH else f"must be an integer from 1 to {MAX_DEPTH}"


def _du_run(spec: Mapping[str, Any]) -> str | None:
    """A du2019 run's keys together: the data its net needs, inputs that can be non-parallel, and its memory (the
    budget the run itself will have: ``ZEROLOSS_MAX_BYTES`` or half the available memory), all before anything is
    written."""
    from zeroloss.budget import resolve_budget, train_memory_bytes

    net = spec.get("net")
    if net == "conv-resnet":
        missing = [k for k in ("channels", "positions") if k not in spec]
        if missing:
            return f"{missing[0]}: a conv-resnet run needs channels and positions (its patch inputs' shape)"
    elif net is not None and "d" in spec and spec["d"] < 2 and spec.get("n", 2) > 1:
        return (f"d: must be at least 2 for n = {spec.get('n')} inputs (on the sphere S^0 every two inputs are "
                f"parallel, so λ₀ = 0), got {spec['d']}")
    if not all(k in spec for k in ("net", "width", "depth", "n")):
        return None  # a missing key is reported by the sweep's key check
    steps = spec.get("max_steps", 100_000)
    conv = net == "conv-resnet"
    need = train_memory_bytes(net=net, n=spec["n"], width=spec["width"], depth=spec["depth"], members=1,
                              steps=steps, probe_every=max(1, steps // 200), d=1 if conv else spec.get("d", 1),
                              channels=spec.get("channels", 1) if conv else 1,
                              positions=spec.get("positions", 1) if conv else 1,
                              itemsize=4 if spec.get("dtype") == "float32" else 8)
    budget = resolve_budget(None)
    if need > budget.bytes:
        from zeroloss.budget import format_bytes

        sizes = {k: spec[k] for k in ("width", "n", "d", "channels", "max_steps") if _is_int(spec.get(k))}
        key = max(sizes, key=lambda k: sizes[k]) if sizes else "width"
        return (f"{key}: the run needs about {format_bytes(need)}, more than the memory budget of "
                f"{format_bytes(budget.bytes)} ({budget.source}); use smaller values or set ZEROLOSS_MAX_BYTES")
    return None


_DU = {
    "net": one_of("fc", "resnet", "conv-resnet"), "width": positive_int, "depth": depth, "n": positive_int,
    "d": positive_int, "channels": positive_int, "positions": positive_int, "steps": positive_int,
    "probe_every": positive_int, "seed": seed, "data_seed": seed, "lr": positive_number,
    "lr_scale": positive_number, "activation": one_of_lazy(_activations), "labels": one_of("random", "gaussian",
                                                                                          "teacher"),
    "dtype": one_of("float32", "float64"), "c_res": open_interval(0.0, 1.0), "probes": list_of(one_of_lazy(_probes)),
    "horizon": open_interval(0.0, 1.0), "run_factor": positive_number, "max_steps": positive_int,
}
for _name in ("du2019.kernel", "du2019.depth", "du2019.conv"):
    declare_checks(_name, _DU)
    declare_run_check(_name, _du_run)

declare_checks("chatterjee2022.init_comparison", {
    "data": one_of("digits", "gaussian"), "n": positive_int, "d": positive_int, "data_seed": seed, "seed": seed,
    "centred": boolean, "hidden_bias": boolean, "widths": list_of(positive_int, min_length=0),
    "activation": one_of_lazy(_activations), "init": one_of_lazy(_chatterjee_inits), "radius_fraction": positive_number,
    "fractions": list_of(positive_number), "budget": positive_int, "certify_budget": positive_int,
    "target": positive_number, "alpha_samples": positive_int, "descent_starts": positive_int,
    "descent_steps": nonnegative_int, "certified_step_run": boolean,
})

_MARION_SGD = {
    "model": one_of("univariate"), "target": one_of_lazy(_targets), "neurons": positive_int, "eta": positive_number,
    "eps": positive_number, "h": positive_number, "t_max": positive_number, "seed": seed, "limit": boolean,
    "logs": positive_int, "derivative": one_of("exact", "box"),
}


def _marion_run(spec: Mapping[str, Any]) -> str | None:
    """A two-timescale SGD run's length t_max/(h·ε) (at most 10¹⁰ steps, as the command's) and its logged states
    against the run's memory budget, before anything is written."""
    from zeroloss.budget import format_bytes, resolve_budget, two_timescale_memory_bytes

    if not all(_is_number(spec.get(k)) for k in ("t_max", "h", "eps")):
        return None
    steps = spec["t_max"] / spec["h"] / spec["eps"]  # divided in turn: h·ε may underflow
    if not (math.isfinite(steps) and 0.5 <= steps < 1e10 + 0.5):
        return f"t_max: t_max/(h·eps) must give between 1 and 1e10 steps, got {steps:.4g}"
    if _is_int(spec.get("neurons")) and _is_int(spec.get("logs", 100)):
        need = two_timescale_memory_bytes(repeats=1, neurons=spec["neurons"], logs=spec.get("logs", 100),
                                          steps=int(round(steps)))
        budget = resolve_budget(None)
        if need > budget.bytes:
            key = "neurons" if spec["neurons"] > spec.get("logs", 100) else "logs"
            return (f"{key}: the run needs about {format_bytes(need)}, more than the memory budget of "
                    f"{format_bytes(budget.bytes)} ({budget.source}); use smaller values or set ZEROLOSS_MAX_BYTES")
    return None


declare_checks("marion2023.regimes", _MARION_SGD)
declare_checks("marion2023.eps_sweep", _MARION_SGD)
declare_run_check("marion2023.regimes", _marion_run)
declare_run_check("marion2023.eps_sweep", _marion_run)
declare_checks("marion2023.appendix", {
    "model": one_of("additive", "relu"), "d": positive_int, "n": positive_int,
    "regime": one_of("standard", "two-timescale"), "lr_a": positive_number, "lr_u": positive_number,
    "epochs": positive_int, "seed": seed, "logs": positive_int,
})
