"""The one exception type zeroloss raises for bad user input.

Every message names the offending field and says what is accepted, so the CLI can print it on one line and
exit with status 2.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Callable
from dataclasses import dataclass


class ZerolossInputError(ValueError):
    """Bad input: the message names the field and what is accepted.

    Examples:
        >>> raise ZerolossInputError("width: must be a positive integer, got -3")
        Traceback (most recent call last):
        ...
        zeroloss.errors.ZerolossInputError: width: must be a positive integer, got -3
    """


def require(condition: bool, field: str, accepted: str, got: object) -> None:
    """Raise :class:`ZerolossInputError` ``"<field>: <accepted>, got <got>"`` unless ``condition`` holds."""
    if not condition:
        raise ZerolossInputError(f"{field}: {accepted}, got {got!r}")


def is_integer(value: object) -> bool:
    """True for Python and NumPy integers (``numbers.Integral``), False for bools and everything else."""
    return isinstance(value, numbers.Integral) and not isinstance(value, bool) and type(value).__name__ != "bool_"


@dataclass(frozen=True)
class Rule:
    """One accepted set of values, stated once: a predicate and the words that say what it accepts.

    A rule serves both contracts zeroloss needs: called with a field name it returns the value or raises
    :class:`ZerolossInputError` (``rule(value, "width")``, how library calls and the CLI validate), and
    :meth:`problem` returns what is accepted or None (how a sweep's per-key checks report a run spec's value).

    Examples:
        >>> POSITIVE_INT(3, "steps"), POSITIVE_INT.problem(0)
        (3, 'must be a positive integer')
    """

    accepts: Callable[[object], bool]
    accepted: str

    def problem(self, value: object) -> str | None:
        """None when ``value`` is accepted, else what is accepted (``"must be …"``)."""
        return None if self.accepts(value) else self.accepted

    def __call__(self, value: object, field: str) -> object:
        problem = self.problem(value)
        if problem:
            raise ZerolossInputError(f"{field}: {problem}, got {value!r}")
        return value


def _is_real(value: object) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, bool) and type(value).__name__ != "bool_"


#: Seeds go to torch and numpy generators, which take 0 ≤ seed < 2⁶³ (member k of an ensemble uses seed + k).
MAX_SEED = 2**63 - 1

POSITIVE_INT = Rule(lambda v: is_integer(v) and v > 0, "must be a positive integer")  # type: ignore[operator]
NONNEGATIVE_INT = Rule(lambda v: is_integer(v) and v >= 0, "must be a non-negative integer")  # type: ignore[operator]
SEED = Rule(lambda v: is_integer(v) and 0 <= v <= MAX_SEED, "must be an integer from 0 to 2**63 - 1")  # type: ignore
POSITIVE_NUMBER = Rule(lambda v: _is_real(v) and math.isfinite(v) and v > 0,  # type: ignore[arg-type, operator]
                       "must be a positive number (finite)")
BOOLEAN = Rule(lambda v: isinstance(v, bool) or type(v).__name__ == "bool_", "must be true or false")


def positive_int(value: object, field: str) -> int:
    """Return ``value`` as an int after checking it is a positive integer (NumPy integers accepted, bools rejected).

    Examples:
        >>> import numpy as np
        >>> positive_int(np.int64(3), "steps")
        3
    """
    return int(POSITIVE_INT(value, field))  # type: ignore[call-overload]


def seed_value(value: object, field: str = "seed", members: int = 1) -> int:
    """Return ``value`` as an int after checking it is a seed whose ``members`` consecutive seeds are all valid.

    Member k of an ensemble built with seed s uses seed s + k, so the largest accepted seed is 2⁶³ − members.

    Examples:
        >>> seed_value(7, "seed", members=4)
        7
    """
    ok = is_integer(value) and 0 <= value <= MAX_SEED + 1 - members  # type: ignore[operator]
    note = " (member k uses seed + k)" if members > 1 else ""
    require(ok, field, f"must be an integer from 0 to 2**63 - {members}{note}", value)
    return int(value)  # type: ignore[call-overload]


def positive_number(value: object, field: str, above: float = 0.0, allow_inf: bool = False) -> float:
    """Return ``value`` as a float after checking it is a real number > ``above`` (finite unless ``allow_inf``).

    Strings, bools and NaN are rejected.

    Examples:
        >>> positive_number(0.5, "lr")
        0.5
    """
    ok = _is_real(value) and not math.isnan(value) and (allow_inf or math.isfinite(value)) and value > above  # type: ignore
    bound = "a positive number" if above == 0 else f"a number > {above:g}"
    require(ok, field, f"must be {bound}{'' if allow_inf else ' (finite)'}", value)
    return float(value)  # type: ignore[arg-type]


def choice(value: str, field: str, accepted: list[str] | tuple[str, ...]) -> str:
    """Return ``value`` after checking it is one of ``accepted``."""
    require(value in accepted, field, f"must be one of {', '.join(map(str, accepted))}", value)
    return value


def boolean(value: object, field: str) -> bool:
    """``value`` after checking it is a bool (NumPy's included): a truthy string such as ``"no"`` is refused, not
    taken for True.

    Examples:
        >>> boolean(True, "normalise")
        True
    """
    require(isinstance(value, bool) or type(value).__name__ == "bool_", field, "must be True or False", value)
    return bool(value)
