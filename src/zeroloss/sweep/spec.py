"""Sweep files: a YAML document validated by pydantic, expanded into a list of run specs.

A sweep file::

    experiment: du2019.kernel           # a registered experiment (or ``run:``, the same thing by another name)
    base: {net: fc, depth: 2, steps: 200, lr: 0.1}
    grid: {width: [64, 256, 1024]}      # cartesian product over every grid axis
    zip: {n: [8, 16], d: [4, 8]}        # axes that move together (equal lengths)
    seeds: 3                            # a count (0, 1, 2) or a list of seeds

expands into ``len(zip) × Π len(grid) × len(seeds)`` runs, each ``base`` updated with one zip row, one grid
point and ``seed``. Keys may be dotted (``net.width``) to set a nested value. ``--set key=value`` overrides a
dotted path of the document before validation (``base.steps=50``, ``grid.width=[8,16]``, ``seeds=2``), the
value read as a YAML scalar or flow sequence. Unknown keys and malformed values are rejected with the key named.

Numbers: YAML 1.1 reads ``1e-3`` as a string; this loader reads it as the float 0.001, as a user means it.

Refused with a one-line error naming the key, before anything is expanded or hashed: a file that is not UTF-8
text or is larger than :data:`MAX_FILE_BYTES`; a document whose tree, with every alias expanded, has more than
:data:`MAX_NODES` nodes or :data:`MAX_SCALAR_CHARS` characters of scalars (a few hundred bytes of nested aliases
can stand for gigabytes); a key given twice in one mapping; values that are not JSON (dates such as
``2001-12-14``, binary, sets: quote them to pass text); a dotted key that overlaps another setting of the same
value (``base: {net: {width: 8}}`` with ``grid: {net.width: …}``); and more runs than the memory budget can hold
(:meth:`SweepSpec.memory_bytes`, checked by :meth:`SweepSpec.expand`).

Examples:
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


#: Largest sweep file read (bytes): a sweep file names axes and values; the paper sweeps are under 2 KiB.
MAX_FILE_BYTES = 4 * 2**20
#: Most YAML nodes a document may expand to, every alias expanded (a 10⁶-value list is 10⁶ + 1 nodes).
MAX_NODES = 1_000_000
#: Most characters of scalar text a document may expand to, every alias expanded.
MAX_SCALAR_CHARS = 32 * 2**20


class _Loader(yaml.SafeLoader):
    """``yaml.SafeLoader`` that also reads ``1e-3`` / ``5E+2`` (no dot) as floats, refuses a key given twice in one
    mapping, and refuses a document whose alias-expanded tree is larger than :data:`MAX_NODES` /
    :data:`MAX_SCALAR_CHARS` before anything is constructed from it."""

    def compose_document(self) -> yaml.Node:
        node = super().compose_document()
        _check_expanded_size(node)
        return node

    def construct_mapping(self, node: yaml.Node, deep: bool = False) -> dict[Any, Any]:
        if isinstance(node, yaml.MappingNode):
            seen: set[Any] = set()
            for key_node, _ in node.value:
                if key_node.tag == "tag:yaml.org,2002:merge":  # `<<: *defaults`: later keys may override it
                    continue
                key = self.construct_object(key_node, deep=True)
                try:
                    duplicate = key in seen
                except TypeError:  # an unhashable key: the constructor below refuses it
                    continue
                if duplicate:
                    raise yaml.constructor.ConstructorError(None, None, f"duplicate key {key!r}", key_node.start_mark)
                seen.add(key)
        return super().construct_mapping(node, deep)


_FLOAT = re.compile(r"^[-+]?(?:[0-9][0-9_]*)(?:\.[0-9_]*)?[eE][-+]?[0-9]+$")
_Loader.add_implicit_resolver("tag:yaml.org,2002:float", _FLOAT, list("-+0123456789"))


class _TooLarge(yaml.YAMLError):
    """The alias-expanded document is over the limits."""


def _check_expanded_size(root: yaml.Node | None) -> None:
    """Count the nodes and scalar characters of ``root`` with every alias expanded, without expanding it.

    An alias is the same node object as its anchor, so sizes are memoised per node (a chain of k anchors each
    repeating the previous one n times costs O(k·n) here, not n^k). A recursive alias is refused.
    """
    if root is None:
        return
    sizes: dict[int, tuple[int, int]] = {}
    stack: list[tuple[yaml.Node, bool]] = [(root, False)]
    active: set[int] = set()
    while stack:
        node, children_done = stack.pop()
        key = id(node)
        if key in sizes and not children_done:
            continue
        children = _children(node)
        if not children_done:
            if key in active:
                raise _TooLarge(f"a recursive alias (line {node.start_mark.line + 1})")
            active.add(key)
            stack.append((node, True))
            stack.extend((child, False) for child in children if id(child) not in sizes)
            continue
        active.discard(key)
        nodes = 1 + sum(sizes[id(child)][0] for child in children)
        chars = (len(node.value) if isinstance(node, yaml.ScalarNode) else 0) + sum(sizes[id(c)][1] for c in children)
        if nodes > MAX_NODES or chars > MAX_SCALAR_CHARS:
            raise _TooLarge(f"the document expands (aliases included) to more than {MAX_NODES:,} nodes or "
                            f"{MAX_SCALAR_CHARS // 2**20} MiB of text (near line {node.start_mark.line + 1})")
        sizes[key] = (nodes, chars)


def _children(node: yaml.Node) -> list[yaml.Node]:
    if isinstance(node, yaml.SequenceNode):
        return list(node.value)
    if isinstance(node, yaml.MappingNode):
        return [part for pair in node.value for part in pair]
    return []


def yaml_load(text: str, field: str) -> Any:
    """``yaml.load`` with the loader above; any problem (syntax, duplicate key, size, a value that is not JSON)
    becomes a one-line input error."""
    try:
        document = yaml.load(text, Loader=_Loader)  # noqa: S506 - _Loader is a SafeLoader subclass
    except _TooLarge as exc:
        raise ZerolossInputError(f"{field}: too large: {exc}") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" (line {mark.line + 1}, column {mark.column + 1})" if mark is not None else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise ZerolossInputError(f"{field}: not valid YAML{where}: {problem}") from None
    except RecursionError:
        raise ZerolossInputError(f"{field}: not valid YAML: nested too deeply") from None
    _check_plain(document, field)
    return document


def _check_plain(value: Any, field: str) -> None:
    """Every value a JSON value (mapping with text keys, list, text, number, bool, null), checked iteratively;
    a problem is named by its dotted key (``base.t``), or by ``field`` at the top."""
    stack: list[tuple[Any, str | None, int]] = [(value, None, 0)]
    while stack:
        item, path, level = stack.pop()
        if level > MAX_NESTING:
            raise ZerolossInputError(f"{(path or field)[:80]}: values nest at most {MAX_NESTING} levels deep")
        if isinstance(item, dict):
            for key, child in item.items():
                if not isinstance(key, str):
                    raise ZerolossInputError(f"{path or field}: keys must be text, got {key!r} (quote it)")
                stack.append((child, f"{path}.{key}" if path else key, level + 1))
        elif isinstance(item, list):
            stack.extend((child, path, level + 1) for child in item)
        elif not (item is None or isinstance(item, (str, bool, int, float))):
            kind = {"date": "a date", "datetime": "a date and time", "bytes": "binary data",
                    "set": "a set"}.get(type(item).__name__, f"a {type(item).__name__}")
            raise ZerolossInputError(f"{path or field}: {kind} is not a sweep value (values are JSON: text, "
                                     f"numbers, true/false, null, lists, mappings); quote it to pass text, "
                                     f"got {item!r}")


#: Most parts of a dotted key (``a.b.c`` has 3) and most levels of nested mappings and lists in a value: a run
#: spec is hashed and stored as JSON, whose encoder recurses per level (a 3 000-part key raised RecursionError).
MAX_KEY_PARTS = 32
MAX_NESTING = 64


def check_key_depth(dotted: str, field: str, shown: str | None = None) -> None:
    """Refuse a dotted key of more than :data:`MAX_KEY_PARTS` parts (``shown``: the key, quoted shortened)."""
    parts = dotted.count(".") + 1
    if parts > MAX_KEY_PARTS:
        where = f" ({shown[:40]}{'…' if len(shown) > 40 else ''})" if shown else ""
        raise ZerolossInputError(f"{field}: a key has at most {MAX_KEY_PARTS} dotted parts, got {parts}{where}")


def set_dotted(target: dict[str, Any], dotted: str, value: Any, field: str = "--set") -> None:
    """``target["a"]["b"] = value`` for ``dotted = "a.b"``, creating intermediate dicts."""
    check_key_depth(dotted, field)
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


#: Memory per run of expanding, hashing and listing a sweep's runs (:meth:`SweepSpec.memory_bytes`): this plus
#: RUN_BYTES_PER_CHAR per character of the run's canonical JSON. Measured with tracemalloc over expand(), the run ids
#: and the manifest's JSON: 1 122, 3 882 and 185 832 bytes per run for runs of 29, 243 and 8 918 characters; the
#: constants bound all three from above.
RUN_BYTES = 1024
RUN_BYTES_PER_CHAR = 24


def _leaf_paths(parts: tuple[str, ...], value: Any) -> list[tuple[str, ...]]:
    """The paths a base value sets: a non-empty mapping sets its leaves (nested keys are literal), else itself."""
    if isinstance(value, dict) and value:
        return [p for key, child in value.items() for p in _leaf_paths((*parts, key), child)]
    return [parts]


def _merge_dotted(target: dict[str, Any], dotted: str, value: Any) -> None:
    """:func:`set_dotted`, except that a mapping set where a mapping already is merges into it (``net.width: 8``
    then ``net: {depth: 2}`` give ``net: {width: 8, depth: 2}``); :func:`_check_overlaps` has ruled out that two
    settings write the same leaf."""
    parts = dotted.split(".")
    node = target
    for part in parts[:-1]:
        node = node.setdefault(part, {})
    _merge_into(node, parts[-1], value)


def _merge_into(node: dict[str, Any], key: str, value: Any) -> None:
    old = node.get(key)
    if isinstance(old, dict) and isinstance(value, dict):
        for child_key, child in value.items():  # nested keys are literal: not split at dots
            _merge_into(old, child_key, child)
    else:
        node[key] = value


def _check_overlaps(sweep: SweepSpec) -> None:
    """Refuse a value set in two places: the same key, or a key that is a dotted prefix of another
    (``base: {net: {width: 8}}`` and ``grid: {net.width: …}``; ``grid: {net: …}`` and ``base: {net.depth: 2}``)."""
    entries: list[tuple[tuple[str, ...], int, str]] = []  # (path, order, name in the message)
    for key, value in sweep.base.items():
        entries.extend((path, len(entries), f"base.{key}") for path in _leaf_paths(tuple(key.split(".")), value))
    for where, axes in (("grid", sweep.grid), ("zip", sweep.zip)):
        entries.extend((tuple(key.split(".")), len(entries) + i, f"{where}.{key}") for i, key in enumerate(axes))
    if sweep.seeds is not None:
        entries.append((("seed",), len(entries), "seeds.seed"))
    entries.sort()
    for (a, order_a, name_a), (b, order_b, name_b) in zip(entries, entries[1:], strict=False):
        if b[: len(a)] == a:  # sorted: a prefix (or equal) path comes right before the paths it covers
            (_, first), (_, second) = sorted([(order_a, name_a), (order_b, name_b)])
            what = "the same key" if a == b else f"{'.'.join(a)} and {'.'.join(b)} overlap"
            raise ValueError(f"{second}: already set in {first} ({what}); set each value in one place")


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
        from zeroloss.store import canonical_json

        for key, values in axes.items():
            if not values:
                raise ValueError(f"{info.field_name}.{key}: must be a non-empty list, got []")
            if info.field_name == "grid":  # a repeated value would silently be one run, not two
                seen: dict[str, int] = {}
                for i, value in enumerate(values):
                    first = seen.setdefault(canonical_json(value), i)
                    if first != i:
                        raise ValueError(f"grid.{key}: the value {value!r} is listed twice (positions {first + 1} "
                                         f"and {i + 1}); list each value once")
        return axes

    @field_validator("base", "grid", "zip")
    @classmethod
    def _key_depth(cls, mapping: dict[str, Any], info: Any) -> dict[str, Any]:
        for key in mapping:
            check_key_depth(key, info.field_name, key)
        return mapping

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
        _check_overlaps(self)
        return self

    @property
    def name(self) -> str:
        """The experiment name (``experiment`` or ``run``)."""
        return self.experiment or self.run or ""

    def seed_list(self) -> list[int] | None:
        if self.seeds is None:
            return None
        return list(range(self.seeds)) if isinstance(self.seeds, int) else list(self.seeds)

    def expand(self, memory_budget: int | str | None = None) -> list[Spec]:
        """Every run spec, in order: zip rows (outer), grid points, seeds (inner); first :meth:`check_size`."""
        import copy

        self.check_size(memory_budget)

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
                        _merge_dotted(spec, key, copy.deepcopy(value))
                    if seed is not None:
                        spec["seed"] = seed
                    runs.append(spec)
        return runs

    def count(self) -> int:
        """Number of runs :meth:`expand` gives, without expanding (nor listing the seeds)."""
        n = len(next(iter(self.zip.values()))) if self.zip else 1
        for values in self.grid.values():
            n *= len(values)
        if self.seeds is None:
            return n
        return n * (self.seeds if isinstance(self.seeds, int) else len(self.seeds))

    def memory_bytes(self) -> int:
        """An upper estimate of the memory that expanding, hashing and listing the runs takes, without doing it.

        Per run: :data:`RUN_BYTES` + :data:`RUN_BYTES_PER_CHAR` × the length of the longest run's canonical
        JSON (bounded from the values, not built).
        """
        from zeroloss.store import canonical_json

        chars = len(canonical_json(self.base)) + (30 if self.seeds is not None else 0)
        for axes in (self.grid, self.zip):
            for key, values in axes.items():
                chars += len(key) + 4 + max(len(canonical_json(v)) for v in values)
        return self.count() * (RUN_BYTES + RUN_BYTES_PER_CHAR * chars)

    def largest_axis(self) -> str:
        """The setting with the most values (``grid.width``, ``seeds``, …): the one to shrink when there are too
        many runs."""
        sizes = {f"grid.{k}": len(v) for k, v in self.grid.items()}
        sizes.update({f"zip.{k}": len(v) for k, v in self.zip.items()})
        if self.seeds is not None:
            sizes["seeds"] = self.seeds if isinstance(self.seeds, int) else len(self.seeds)
        return max(sizes, key=lambda k: sizes[k]) if sizes else "base"

    def check_size(self, memory_budget: int | str | None = None, flag: str = "memory_budget") -> None:
        """Refuse (one line, naming the largest axis) when :meth:`memory_bytes` exceeds the budget
        (:mod:`zeroloss.budget`; ``flag`` names the setting that raises it)."""
        from zeroloss.budget import check_memory

        check_memory(self.memory_bytes(), memory_budget, field=self.largest_axis(), flag=flag,
                     what=f"expanding {self.count():,} runs", hint="use fewer values or seeds")


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
    """Read and validate a sweep file (UTF-8 YAML, at most :data:`MAX_FILE_BYTES`)."""
    path = Path(path)
    if not path.is_file():
        raise ZerolossInputError(f"FILE: no such sweep file, got {str(path)!r}")
    try:
        size = path.stat().st_size
        if size > MAX_FILE_BYTES:
            raise ZerolossInputError(f"FILE: a sweep file is at most {MAX_FILE_BYTES // 2**20} MiB, got {size:,} "
                                     f"bytes ({str(path)!r})")
        raw = path.read_bytes()
    except OSError as exc:
        raise ZerolossInputError(f"FILE: cannot read {str(path)!r} ({exc.strerror or exc})") from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ZerolossInputError(f"FILE: not UTF-8 text (byte 0x{raw[exc.start]:02x} at offset {exc.start}); "
                                 f"save {str(path)!r} as UTF-8") from None
    return parse_sweep(yaml_load(text, str(path)), overrides)
