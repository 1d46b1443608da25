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

    declare_checks("my.experiment", {"width": POSITIVE_INT, "lr": POSITIVE_NUMBER,
                                      "net": one_of("fc", "resnet")})

Each paper wing declares its experiments' checks beside them (``zeroloss.papers.<paper>.experiments``).

Examples:
    >>> from zeroloss.errors import POSITIVE_INT
    >>> declare_checks("demo.exp", {"width": POSITIVE_INT})
    >>> validate_runs("demo.exp", [{"width": 8}, {"width": 0}])
    Traceback (most recent call last):
    ...
    zeroloss.errors.ZerolossInputError: width: must be a positive integer, got 0 (run 2 of 2)
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from zeroloss.errors import (
    Rule,
    ZerolossInputError,
)

#: A per-key check: a :class:`~zeroloss.errors.Rule` (its ``problem`` is None when the value is accepted, else what
#: is accepted, "must be …"). The rules are zeroloss's one validator set (:mod:`zeroloss.errors`).
KeyCheck = Rule
#: experiment name → key → check.
CHECKS: dict[str, dict[str, KeyCheck]] = {}
#: experiment name → checks of a whole run spec (keys that constrain each other, the run's memory): each returns
#: None, or a message that starts with the key it is about.
RUN_CHECKS: dict[str, list[Callable[[Mapping[str, Any]], str | None]]] = {}


def declare_checks(experiment: str, checks: Mapping[str, KeyCheck]) -> None:
    """Add (or replace) per-key checks for ``experiment``'s run specs."""
    CHECKS.setdefault(experiment, {}).update(checks)


def declare_run_check(experiment: str, check: Callable[[Mapping[str, Any]], str | None]) -> None:
    """Add a check of whole run specs of ``experiment`` (after the per-key checks have passed)."""
    RUN_CHECKS.setdefault(experiment, []).append(check)


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def open_interval(low: float, high: float) -> KeyCheck:
    """A number strictly between ``low`` and ``high``."""

    return Rule(lambda value: _is_number(value) and low < value < high, f"must be a number in ({low:g}, {high:g})")


def one_of(*accepted: Any) -> KeyCheck:
    """One of ``accepted`` (compared with ==, bools never taken for numbers)."""

    return Rule(lambda value: any(value == a and type(value) is type(a) for a in accepted),
                f"must be one of {', '.join(map(str, accepted))}")


def one_of_lazy(accepted: Callable[[], Sequence[str]]) -> KeyCheck:
    """One of the names ``accepted()`` returns (a registry read when the check runs)."""

    return _OneOfLazy(lambda value: isinstance(value, str) and value in accepted(), "", accepted)


class _OneOfLazy(Rule):
    def __init__(self, accepts: Callable[[Any], bool], accepted: str, names: Callable[[], Sequence[str]]) -> None:
        super().__init__(accepts, accepted)
        object.__setattr__(self, "names", names)

    def problem(self, value: Any) -> str | None:
        return None if self.accepts(value) else f"must be one of {', '.join(self.names())}"


def list_of(item: KeyCheck, min_length: int = 1) -> KeyCheck:
    """A list of at least ``min_length`` items, each passing ``item``."""

    return _ListOf(lambda value: isinstance(value, list) and len(value) >= min_length,
                   f"must be a list of at least {min_length} item(s)", item)


class _ListOf(Rule):
    def __init__(self, accepts: Callable[[Any], bool], accepted: str, item: KeyCheck) -> None:
        super().__init__(accepts, accepted)
        object.__setattr__(self, "item", item)

    def problem(self, value: Any) -> str | None:
        if not self.accepts(value):
            return self.accepted
        for i, entry in enumerate(value):
            problem = self.item.problem(entry)
            if problem:
                return f"item {i}: {problem}"
        return None


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
    """Check every run spec of ``experiment`` (an :class:`~zeroloss.papers.base.Experiment` or its name).

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
                problem = check.problem(spec[key])
                if problem:
                    raise ZerolossInputError(f"{key}: {problem}, got {spec[key]!r} ({where})")
        for check in RUN_CHECKS.get(name, []):
            problem = check(spec)
            if problem:
                raise ZerolossInputError(f"{problem} ({where})")
        if callable(own):
            try:
                own(spec)
            except ZerolossInputError as exc:
                raise ZerolossInputError(f"{exc} ({where})") from None
