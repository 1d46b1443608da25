"""Old module paths kept importable after the move to one wing per paper (``zeroloss.papers``).

Before the wings, a paper's code lived in ``zeroloss.experiments``, ``zeroloss.theory``, ``zeroloss.twotimescale``
and ``zeroloss.init``. A user script (or a stored sweep naming its experiment's module) may still import those
paths: :class:`AliasFinder` answers them with the module at its new place — the same module object, so
``zeroloss.theory.du2019 is zeroloss.papers.du2019.theory`` — and a :class:`DeprecationWarning` that names the
new path. Old packages that no longer exist (``zeroloss.theory``) are answered by an empty package whose
submodules are aliases too.

``zeroloss.spectrum`` is not aliased: it is the public function :func:`zeroloss.spectrum`; the module that defines
it is :mod:`zeroloss.spectra`.
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.util
import sys
import types
import warnings

#: Old module path → new module path. A prefix entry (ending in ".") maps every submodule below it.
ALIASES = {
    "zeroloss.experiments": "zeroloss.papers",
    "zeroloss.experiments.base": "zeroloss.papers.base",
    "zeroloss.experiments.registry": "zeroloss.papers.registry",
    "zeroloss.experiments.du2019": "zeroloss.papers.du2019.experiments",
    "zeroloss.experiments.du2019_runs": "zeroloss.papers.du2019.runs",
    "zeroloss.experiments.du2019_claims": "zeroloss.papers.du2019.claims",
    "zeroloss.experiments.plotting": "zeroloss.papers.du2019.plots",
    "zeroloss.experiments.chatterjee2022": "zeroloss.papers.chatterjee2022.experiments",
    "zeroloss.experiments.chatterjee2022_claims": "zeroloss.papers.chatterjee2022.claims",
    "zeroloss.experiments.chatterjee2022_plots": "zeroloss.papers.chatterjee2022.plots",
    "zeroloss.experiments.chatterjee2022_search": "zeroloss.papers.chatterjee2022.search",
    "zeroloss.experiments.marion2023": "zeroloss.papers.marion2023.experiments",
    "zeroloss.experiments.marion2023_claims": "zeroloss.papers.marion2023.claims",
    "zeroloss.experiments.marion2023_plots": "zeroloss.papers.marion2023.plots",
    "zeroloss.theory": None,  # an empty package: only its submodules are aliased
    "zeroloss.theory.du2019": "zeroloss.papers.du2019.theory",
    "zeroloss.theory.chatterjee2022": "zeroloss.papers.chatterjee2022.theory",
    "zeroloss.theory.chatterjee_bounds": "zeroloss.papers.chatterjee2022.bounds",
    "zeroloss.theory.chatterjee_estimates": "zeroloss.pl_estimates",
    "zeroloss.init": "zeroloss.papers.chatterjee2022.init",
    "zeroloss.texttable": "zeroloss.report.texttable",
    "zeroloss.twotimescale.": "zeroloss.papers.marion2023.twotimescale.",
}


def new_name(old: str) -> str | None:
    """The module path that replaced ``old`` (``None`` for an empty old package); ``KeyError`` if not an alias."""
    if old in ALIASES:
        return ALIASES[old]
    if old == "zeroloss.twotimescale":
        return "zeroloss.papers.marion2023.twotimescale"
    for prefix, target in ALIASES.items():
        if prefix.endswith(".") and old.startswith(prefix):
            return target + old[len(prefix):]
    raise KeyError(old)


class _AliasLoader(importlib.abc.Loader):
    def __init__(self, old: str, new: str | None) -> None:
        self.old, self.new = old, new

    def create_module(self, spec):  # noqa: ANN001 - importlib's protocol
        if self.new is None:
            module = types.ModuleType(self.old, "A moved package: see zeroloss._aliases.")
            module.__path__ = []
            return module
        if self.old != "zeroloss.twotimescale":  # the public subpackage zeroloss.twotimescale is not deprecated
            warnings.warn(f"{self.old} moved to {self.new}", DeprecationWarning, stacklevel=4)
        return importlib.import_module(self.new)

    def exec_module(self, module: types.ModuleType) -> None:
        """Nothing to run: the module was imported (or created) by :meth:`create_module`."""


class AliasFinder(importlib.abc.MetaPathFinder):
    """Finds the old module paths of :data:`ALIASES` and loads the modules at their new place."""

    def find_spec(self, fullname, path=None, target=None):  # noqa: ANN001 - importlib's protocol
        if not fullname.startswith(("zeroloss.experiments", "zeroloss.theory", "zeroloss.init",
                                    "zeroloss.texttable", "zeroloss.twotimescale")):
            return None
        try:
            new = new_name(fullname)
        except KeyError:
            return None
        return importlib.util.spec_from_loader(fullname, _AliasLoader(fullname, new),
                                               is_package=new is None or fullname.count(".") == 1)


def install_module_aliases() -> None:
    """Put one :class:`AliasFinder` first on ``sys.meta_path`` (idempotent)."""
    if not any(isinstance(finder, AliasFinder) for finder in sys.meta_path):
        sys.meta_path.insert(0, AliasFinder())  # before the path finder, which would load a second copy
