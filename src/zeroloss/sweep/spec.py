"""Sweep files: a YAML document validated by pydantic, expanded into a list of run specs.

A sweep file::

    experiment: du2019.convergence      # a registered experiment (or ``run:``, the same thing by another name)
    base: {net: fc, depth: 2, steps: 200, lr: 0.1}
    grid: {width: [64, 256, 1024]}      # cartesian product over every grid axis
    zip: {n: [8, 16], d: [4, 8]}        # axes that move together (equal lengths)
    seeds: 3                            # a count (0, 1, 2) or a list of seeds

expands into ``len(zip) × Π len(grid) × len(seeds)`` runs, each ``base`` updated with one zip row, one grid
point and ``seed``. Keys may be dotted (``net.width``) to set a nested value. ``--set key=value`` overrides a
dotted path of the document before validation (``base.steps=50``, ``grid.width=[8,16]``, ``seeds=2``), the
value read as a YAML scalar or flow sequence. Unknown keys and malformed values are rejected with the key named.

Numbers: YAML 1.1 reads ``1e-3`` as a string; this loader reads it as the float 0.001, as a user means it.

Example:
    >>> doc = parse_sweep_text("experiment: demo\\nbase: {a: 1}\\ngrid: {b: [1, 2]}\\nseeds: 2")
    >>> [r["b"] for r in doc.expand()], doc.count()
    ([1, 1, 2, 2], 4)
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, ValidationError, field_validator, model_validator

from zeroloss.errors import ZerolossInputError

Spec = dict[str, Any]


class _Loader(yaml.SafeLoader):
    """``yaml.SafeLoader`` that also reads ``1e-3`` / ``5E+2`` (no dot) as floats."""


_FLOAT = re.compile(r"^[-+]?(?:[0-9][0-9_]*)(?:\.[0-9_]*)?[eE][-+]?[0-9]+$")
_Loader.add_implicit_resolver("tag:yaml.org,2002:float", _FLOAT, list("-+0123456789"))


def yaml_load(text: str, field: str) -> Any:
    """``yaml.load`` with the safe loader above; a syntax error becomes a one-line input error."""
    try:
        return yaml.load(text, Loader=_Loader)  # noqa: S506 - _Loader is a SafeLoader subclass
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" (line {mark.line + 1}, column {mark.column + 1})" if mark is not None else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise ZerolossInputError(f"{field}: not valid YAML{where}: {problem}") from None


def set_dotted(target: dict[str, Any], dotted: str, value: Any, field: str = "--set") -> None:
    """``target["a"]["b"] = value`` for ``dotted = "a.b"``, creating intermediate dicts."""
    parts = dotted.split(".")
    if not all(parts):
        raise ZerolossInputError(f"{field}: key must be dotted names like base.width, got {dotted!r}")
    node = target
    for i, part in enumerate(parts[:-1]):
        child = node.get(part)
        if child is None:
            child = node[part] = {}
        if not isinstance(child, dict):
            where = ".".join(parts[: i + 1])
            raise ZerolossInputError(f"{field}: {where} is a value, not a mapping; cannot set {dotted!r}")
        node = child
    node[parts[-1]] = value


def parse_override(text: str) -> tuple[str, Any]:
    """``"grid.width=[8,16]"`` → ``("grid.width", [8, 16])`` (value read as YAML)."""
    key, sep, raw = text.partition("=")
    if not sep or not key.strip():
        raise ZerolossInputError(f"--set: must be KEY=VALUE with a dotted key, got {text!r}")
    return key.strip(), yaml_load(raw, f"--set {key.strip()}")


def apply_overrides(document: Mapping[str, Any], overrides: Sequence[str]) -> dict[str, Any]:
    """A deep copy of ``document`` with every ``KEY=VALUE`` override applied in order."""
    import copy

    out = copy.deepcopy(dict(document))
    for text in overrides:
        key, value = parse_override(text)
        set_dotted(out, key, value)
    return out


class SweepSpec(BaseModel):
    """A validated sweep file (frozen; unknown keys rejected).

    Attributes:
        experiment: registry name of the experiment whose ``run_batch`` runs each spec.
        run: the same, under another name (give exactly one of ``experiment`` and ``run``).
        base: keys every run shares.
        grid: axis → list of values; the runs are the cartesian product over axes (in file order).
        zip: axis → list of values, all of one length; the i-th values of every axis go together.
        seeds: a count k (seeds 0..k−1) or a list of distinct seeds; sets the ``seed`` key.
        description: free text, kept with the sweep.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    experiment: str | None = None
    run: str | None = None
    base: dict[str, Any] = {}
    grid: dict[str, list[Any]] = {}
    zip: dict[str, list[Any]] = {}
    seeds: int | list[int] | None = None
    description: str = ""

    @field_validator("grid", "zip")
    @classmethod
    def _non_empty_axes(cls, axes: dict[str, list[Any]], info: Any) -> dict[str, list[Any]]:
        for key, values in axes.items():
            if not values:
                raise ValueError(f"{info.field_name}.{key}: must be a non-empty list, got []")
        return axes

    @field_validator("seeds", mode="before")
    @classmethod
    def _valid_seeds(cls, seeds: Any) -> int | list[int] | None:
        def is_int(v: Any) -> bool:
            return isinstance(v, int) and not isinstance(v, bool)

        if seeds is None:
            return None
        if is_int(seeds):
            if seeds < 1:
                raise ValueError(f"seeds: a count must be ≥ 1, got {seeds!r}")
            return seeds
        ok = (isinstance(seeds, list) and seeds and all(is_int(s) and s >= 0 for s in seeds)
              and len(set(seeds)) == len(seeds))
        if not ok:
            raise ValueError(f"seeds: a positive count or a non-empty list of distinct non-negative integers, "
                             f"got {seeds!r}")
        return list(seeds)

    @model_validator(mode="after")
    def _consistent(self) -> SweepSpec:
        if (self.experiment is None) == (self.run is None):
            raise ValueError("experiment: give exactly one of experiment or run (a registered experiment name)")
        lengths = {key: len(values) for key, values in self.zip.items()}
        if len(set(lengths.values())) > 1:
            detail = ", ".join(f"{k}={n}" for k, n in lengths.items())
            first_bad = next(k for k, n in lengths.items() if n != next(iter(lengths.values())))
            raise ValueError(f"zip.{first_bad}: every zip axis needs the same length, got {detail}")
        sources = {"base": set(self.base), "grid": set(self.grid), "zip": set(self.zip)}
        if self.seeds is not None:
            sources["seeds"] = {"seed"}
        seen: dict[str, str] = {}
        for where, keys in sources.items():
            for key in sorted(keys):
                if key in seen:
                    raise ValueError(f"{where}.{key}: already set in {seen[key]}; set each key in one place")
                seen[key] = where
        return self

    @property
    def name(self) -> str:
        """The experiment name (``experiment`` or ``run``)."""
        return self.experiment or self.run or ""

    def seed_list(self) -> list[int] | None:
        if self.seeds is None:
            return None
        return list(range(self.seeds)) if isinstance(self.seeds, int) else list(self.seeds)

    def expand(self) -> list[Spec]:
        """Every run spec, in order: zip rows (outer), grid points, seeds (inner)."""
        import copy

        zip_rows = [dict(zip(self.zip, row, strict=True)) for row in zip(*self.zip.values(), strict=True)] \
            if self.zip else [{}]
        grid_points = [dict(zip(self.grid, point, strict=True)) for point in itertools.product(*self.grid.values())]
        seeds = self.seed_list()
        runs: list[Spec] = []
        for zrow in zip_rows:
            for point in grid_points:
                for seed in seeds if seeds is not None else [None]:
                    spec: Spec = {}
                    for key, value in {**self.base, **zrow, **point}.items():
                        set_dotted(spec, key, copy.deepcopy(value), field="base")
                    if seed is not None:
                        spec["seed"] = seed
                    runs.append(spec)
        return runs

    def count(self) -> int:
        """Number of runs :meth:`expand` gives, without expanding."""
        n = len(next(iter(self.zip.values()))) if self.zip else 1
        for values in self.grid.values():
            n *= len(values)
        seeds = self.seed_list()
        return n * (len(seeds) if seeds is not None else 1)


def validation_message(exc: ValidationError) -> str:
    """One line naming the key, e.g. ``grid.width: Input should be a valid list, got 5``."""
    first = exc.errors()[0]
    loc = ".".join(str(p) for p in first.get("loc", ())) or "sweep"
    if first.get("type") == "value_error":  # our validators' messages already start with the key
        return str(first.get("msg", "")).removeprefix("Value error, ")
    if first.get("type") == "extra_forbidden":
        accepted = ", ".join(SweepSpec.model_fields)
        return f"{loc}: unknown key (accepted: {accepted})"
    return f"{loc}: {first.get('msg', 'invalid value')}, got {first.get('input')!r}"


def parse_sweep(document: Any, overrides: Sequence[str] = ()) -> SweepSpec:
    """Validate a loaded YAML document (after ``--set`` overrides) into a :class:`SweepSpec`."""
    if document is None:
        document = {}
    if not isinstance(document, Mapping):
        raise ZerolossInputError(f"sweep: the file must be a YAML mapping, got {type(document).__name__}")
    try:
        return SweepSpec.model_validate(apply_overrides(document, overrides))
    except ValidationError as exc:
        raise ZerolossInputError(validation_message(exc)) from None


def parse_sweep_text(text: str, overrides: Sequence[str] = ()) -> SweepSpec:
    """:func:`parse_sweep` of YAML text."""
    return parse_sweep(yaml_load(text, "sweep"), overrides)


def load_sweep_file(path: Path | str, overrides: Sequence[str] = ()) -> SweepSpec:
    """Read and validate a sweep file."""
    path = Path(path)
    if not path.is_file():
        raise ZerolossInputError(f"FILE: no such sweep file, got {str(path)!r}")
    return parse_sweep(yaml_load(path.read_text(), str(path)), overrides)
