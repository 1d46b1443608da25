"""The installed zeroloss version, read from the package metadata (one source of truth: pyproject.toml), and the
git commit of the source tree when zeroloss runs from a git checkout.

Examples:
    >>> from zeroloss.version import __version__, describe_version
    >>> isinstance(__version__, str) and describe_version().startswith(f"zeroloss {__version__}")
    True
"""

from __future__ import annotations

import functools
import subprocess
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

try:
    __version__ = version("zeroloss")
except PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0+unknown"

__all__ = ["__version__", "describe_version", "source_commit"]


def _git(root: Path, *args: str) -> subprocess.CompletedProcess[str] | None:
    try:  # --no-optional-locks: a read-only query never takes the index lock of a checkout someone is working in
        return subprocess.run(["git", "--no-optional-locks", "-C", str(root), *args], capture_output=True, text=True,
                              timeout=10, check=False)
    except (OSError, subprocess.SubprocessError):  # no git on PATH, or it hung
        return None


@functools.lru_cache(maxsize=1)
def source_commit() -> str | None:
    """The commit of the git checkout this package is imported from: 12 hex digits, ``+dirty`` when tracked files
    differ from it; None for an installed wheel (or when git is not available).

    Only a checkout of zeroloss itself counts: the package must sit at ``<root>/src/zeroloss`` with a ``.git`` and a
    ``pyproject.toml`` naming zeroloss in ``<root>``, so a wheel installed inside some other repository never reports
    that repository's commit.
    """
    root = Path(__file__).resolve().parents[2]
    pyproject = root / "pyproject.toml"
    if not ((root / ".git").exists() and pyproject.is_file()):
        return None
    try:
        if 'name = "zeroloss"' not in pyproject.read_text(encoding="utf-8"):
            return None
    except OSError:
        return None
    head = _git(root, "rev-parse", "--short=12", "HEAD")
    if head is None or head.returncode != 0 or not head.stdout.strip():
        return None
    diff = _git(root, "diff", "--quiet", "HEAD", "--")
    dirty = diff is not None and diff.returncode == 1
    return head.stdout.strip() + ("+dirty" if dirty else "")


def describe_version() -> str:
    """``"zeroloss 0.1.0"``, plus ``" (commit 0123456789ab)"`` when running from a git checkout."""
    commit = source_commit()
    return f"zeroloss {__version__}" + (f" (commit {commit})" if commit else "")
