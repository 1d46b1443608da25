"""Result versions: a stored run knows the code that computed it, so a later zeroloss never reuses it silently.

A run's id hashes its experiment and spec (:func:`zeroloss.store.runs.run_id`): what was asked. Its *result
version* names how the answer was computed: a 12-hex hash over the experiment's declared ``version`` and the
code of every zeroloss module its ``run_batch`` reaches — the module that defines it and, transitively, every
zeroloss module those import (at top level or inside functions). Each module counts by its syntax tree with
docstrings removed (comments are not in the tree), so editing documentation keeps the version, while any change to
what the code does — a constant, a formula, an argument, an error message — gives a new one. Nothing is
maintained by hand, so no change can forget to bump it; an experiment may still raise ``version`` for a change
outside zeroloss's code (a data set's file, a dependency's behaviour it relies on).

The sweep runner stores the version in every run's ``env.json``; a resumed sweep recomputes the finished runs
whose version differs (or, asked to keep them, keeps them and says so on the terminal and in the report).

Examples:
    >>> from zeroloss.papers.registry import get_experiment
    >>> v = result_version(get_experiment("du2019.kernel"))
    >>> len(v), v == result_version(get_experiment("du2019.kernel"))
    (12, True)
"""

from __future__ import annotations

import ast
import functools
import hashlib
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from zeroloss.papers.base import Experiment

#: The key of ``env.json`` that holds a run's result version.
ENV_KEY = "result_version"


def _source_path(module: str) -> str | None:
    """The source file of a module. A zeroloss module is found on disk without importing anything (an import could
    run code); another (a user's run module, the root of the walk) through its import spec."""
    if module != "zeroloss" and not module.startswith("zeroloss."):
        import importlib.util

        try:
            spec = importlib.util.find_spec(module)
        except (ImportError, ValueError):
            return None
        return spec.origin if spec is not None and spec.origin and spec.origin.endswith(".py") else None
    root = Path(__file__).resolve().parents[1]  # the zeroloss package folder
    parts = module.split(".")[1:]
    module_file = root.joinpath(*parts).with_suffix(".py") if parts else None
    for candidate in (module_file, root.joinpath(*parts, "__init__.py")):
        if candidate is not None and candidate.is_file():
            return str(candidate)
    return None


def _strip_docstrings(tree: ast.AST) -> ast.AST:
    for node in ast.walk(tree):
        body = getattr(node, "body", None)
        if (isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)) and body
                and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant)
                and isinstance(body[0].value.value, str)):
            node.body = body[1:] or [ast.Pass()]
    return tree


def _imports(tree: ast.AST, module: str) -> set[str]:
    """The zeroloss modules ``tree`` imports (``from a.b import c`` names ``a.b`` and, if it is one, ``a.b.c``)."""
    found: set[str] = set()
    package = module.rsplit(".", 1)[0]
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")
                base = ".".join(parts[: len(parts) - node.level + 1] + ([base] if base else []))
            found.add(base)
            found.update(f"{base}.{a.name}" for a in node.names)
    return {m for m in found if m == "zeroloss" or m.startswith("zeroloss.")}


@functools.cache
def module_fingerprints(root: str) -> tuple[tuple[str, str], ...]:
    """(module, sha256 of its docstring-free syntax tree) for ``root`` and every zeroloss module it reaches."""
    seen: dict[str, str] = {}
    todo = [root]
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        path = _source_path(name)
        if path is None:
            seen[name] = ""
            continue
        with open(path, encoding="utf-8") as handle:
            tree = ast.parse(handle.read(), filename=path)
        todo.extend(_imports(tree, name if not path.endswith("__init__.py") else f"{name}.__init__"))
        seen[name] = hashlib.sha256(ast.dump(_strip_docstrings(tree)).encode()).hexdigest()
    return tuple(sorted((m, h) for m, h in seen.items() if h))


def result_version(experiment: Experiment) -> str:
    """The result version of ``experiment``'s runs (12 hex digits; see the module docstring)."""
    digest = hashlib.sha256()
    digest.update(f"{experiment.name}\n{experiment.version}\n".encode())
    for module, fingerprint in module_fingerprints(experiment.run_batch.__module__):
        digest.update(f"{module} {fingerprint}\n".encode())
    return digest.hexdigest()[:12]
