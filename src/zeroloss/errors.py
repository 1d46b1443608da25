"""The one exception type zeroloss raises for bad user input.

Every message names the offending field and says what is accepted, so the CLI can print it on one line and
exit with status 2.
"""

from __future__ import annotations

import math
import numbers


class ZerolossInputError(ValueError):
    """Bad input: the message names the field and what is accepted.

    Example:
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


def positive_int(value: object, field: str) -> int:
    """Return ``value`` as an int after checking it is a positive integer (NumPy integers accepted, bools rejected).

    Example:
        >>> import numpy as np
        >>> positive_int(np.int64(3), "steps")
        3
    """
    require(is_integer(value) and value > 0, field, "must be a positive integer", value)  # type: ignore[operator]
    return int(value)  # type: ignore[call-overload]


def positive_number(value: object, field: str, above: float = 0.0, allow_inf: bool = False) -> float:
    """Return ``value`` as a float after checking it is a real number > ``above`` (finite unless ``allow_inf``).

    Strings, bools and NaN are rejected.

    Example:
        >>> positive_number(0.5, "lr")
        0.5
    """
    ok = isinstance(value, numbers.Real) and not isinstance(value, bool) and type(value).__name__ != "bool_"
    ok = ok and not math.isnan(value) and (allow_inf or math.isfinite(value)) and value > above  # type: ignore
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

    Example:
        >>> boolean(True, "normalise")
        True
    """
    require(isinstance(value, bool) or type(value).__name__ == "bool_", field, "must be True or False", value)
    return bool(value)
