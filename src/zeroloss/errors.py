"""The one exception type zeroloss raises for bad user input.

Every message names the offending field and says what is accepted, so the CLI can print it on one line and
exit with status 2.
"""

from __future__ import annotations


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


def positive_int(value: object, field: str) -> int:
    """Return ``value`` as an int after checking it is a positive integer (bools rejected)."""
    ok = isinstance(value, int) and not isinstance(value, bool) and value > 0
    require(ok, field, "must be a positive integer", value)
    return int(value)  # type: ignore[arg-type]


def choice(value: str, field: str, accepted: list[str] | tuple[str, ...]) -> str:
    """Return ``value`` after checking it is one of ``accepted``."""
    require(value in accepted, field, f"must be one of {', '.join(map(str, accepted))}", value)
    return value
