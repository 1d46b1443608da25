"""The installed zeroloss version, read from the package metadata (one source of truth: pyproject.toml).

Example:
    >>> from zeroloss.version import __version__
    >>> isinstance(__version__, str)
    True
"""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("zeroloss")
except PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0+unknown"

__all__ = ["__version__"]
