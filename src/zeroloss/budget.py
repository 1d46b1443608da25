"""The memory budget: what zeroloss may allocate, checked before it allocates.

Every command and library entry point whose memory grows with n², n·width, the number of steps or the number of
runs states what it will need (``*_memory_bytes`` functions, computed from shapes alone) and compares it with a
budget before it allocates anything; over the budget it refuses with a one-line
:class:`~zeroloss.errors.ZerolossInputError` naming the size and the setting that changes it. This turns "the
machine swaps for an hour, then the kernel kills the process" into an immediate, readable refusal.

The budget, first match wins:

1. the call's own value: ``--max-bytes SIZE`` on the command line, ``memory_budget=`` in the library;
2. the environment variable ``ZEROLOSS_MAX_BYTES`` (useful for sweeps, whose runs are called without flags);
3. :data:`DEFAULT_FRACTION` (one half) of the memory available when the check runs — ``MemAvailable`` of
   ``/proc/meminfo`` on Linux, else ``psutil.virtual_memory().available`` when psutil happens to be installed,
   else the physical memory (``os.sysconf``). Half, because the estimates leave out the interpreter, the libraries
   and the allocator's slack, and because the machine is rarely ours alone.

Two sizes, two names, everywhere:

- the **budget of a call** — ``memory_budget=`` in the library, ``--max-bytes`` on the command line — caps what the
  whole call may need (results included), resolved by :func:`resolve_budget` and compared by :func:`check_memory`;
- the **block size** — ``block_bytes=`` — bounds one working block of a computation that is cut into blocks (the
  infinite-width recursions, quadrature chunks); resolved by :func:`resolve_block_bytes`, default
  :func:`default_block_bytes` of the device. It trades speed for memory and never refuses anything.

Sizes are bytes, or a number with a unit: ``500M``, ``8GiB``, ``2e9``, ``1.5T`` (K, M, G, T are powers of 1024,
as are KiB … TiB; KB, MB, GB, TB are powers of 1000).

Examples:
    >>> parse_size("8GiB"), parse_size("2e9"), format_bytes(9 * 2**30)
    (8589934592, 2000000000, '9.0 GiB')
    >>> check_memory(2**20, 2**30, field="n", what="a 362 × 362 matrix")  # fits: returns quietly
    >>> try:
    ...     check_memory(2**31, "1GiB", field="n", what="a 16384 × 16384 matrix")
    ... except ZerolossInputError as exc:
    ...     print(exc)  # doctest: +NORMALIZE_WHITESPACE
    n: a 16384 × 16384 matrix needs about 2.0 GiB, more than the memory budget of 1.0 GiB (set by --max-bytes);
    raise it with --max-bytes
"""

from __future__ import annotations

import math
import os
import re
from dataclasses import dataclass
from pathlib import Path

from zeroloss.errors import ZerolossInputError

#: Fraction of the available memory used as the default budget.
DEFAULT_FRACTION = 0.5
#: Environment variable that sets the default budget (a size as :func:`parse_size` reads it).
ENV_VAR = "ZEROLOSS_MAX_BYTES"
#: The CLI flag that sets the budget (named in the refusals of the commands).
FLAG = "--max-bytes"
#: The library argument that sets the budget (named in the refusals of library calls).
ARGUMENT = "memory_budget"

_UNITS = {"": 1, "b": 1, "k": 2**10, "m": 2**20, "g": 2**30, "t": 2**40, "kib": 2**10, "mib": 2**20, "gib": 2**30,
          "tib": 2**40, "kb": 10**3, "mb": 10**6, "gb": 10**9, "tb": 10**12}
_SIZE = re.compile(r"^\s*([0-9]*\.?[0-9]+(?:[eE][+-]?[0-9]+)?)\s*([a-zA-Z]*)\s*$")


def parse_size(text: str | int | float, field: str = FLAG) -> int:
    """A positive size in bytes from ``"8GiB"``, ``"500M"``, ``"2e9"`` or a number."""
    if isinstance(text, bool):
        raise ZerolossInputError(f"{field}: must be a positive size in bytes (e.g. 8GiB, 500M, 2e9), got {text!r}")
    if isinstance(text, (int, float)):
        value, unit = float(text), ""
    else:
        match = _SIZE.match(str(text))
        if match is None or match.group(2).lower() not in _UNITS:
            raise ZerolossInputError(f"{field}: must be a positive size in bytes (e.g. 8GiB, 500M, 2e9), "
                                     f"got {text!r}")
        value, unit = float(match.group(1)), match.group(2).lower()
    size = value * _UNITS[unit]
    if not math.isfinite(size) or size < 1:
        raise ZerolossInputError(f"{field}: must be a positive size in bytes (e.g. 8GiB, 500M, 2e9), got {text!r}")
    return int(size)


def format_bytes(size: float) -> str:
    """``9663676416`` → ``'9.0 GiB'`` (binary units, one decimal)."""
    for unit, scale in (("TiB", 2**40), ("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)):
        if size >= scale:
            return f"{size / scale:.1f} {unit}"
    return f"{int(size)} B"


def available_memory() -> int:
    """Memory available to a new allocation now, in bytes (see the module docstring for the sources)."""
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        import psutil  # not a dependency: used only when it is installed anyway

        return int(psutil.virtual_memory().available)
    except Exception:  # noqa: BLE001 - absent or unusable: fall back to the physical memory
        pass
    return int(os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE"))


@dataclass(frozen=True)
class Budget:
    """A memory budget in bytes and where it came from (for the refusal message)."""

    bytes: int
    source: str


def resolve_budget(value: int | str | None = None, field: str = ARGUMENT) -> Budget:
    """The budget in force: ``value`` when given, else ``ZEROLOSS_MAX_BYTES``, else the default fraction.

    Args:
        value: bytes (or a size string); None for the default.
        field: the name used in an error about ``value`` (``--max-bytes`` or ``memory_budget``).
    """
    if value is not None:
        return Budget(parse_size(value, field), f"set by {field}")
    env = os.environ.get(ENV_VAR)
    if env:
        return Budget(parse_size(env, ENV_VAR), f"from {ENV_VAR}")
    available = available_memory()
    return Budget(max(1, int(DEFAULT_FRACTION * available)), f"half of the {format_bytes(available)} available")


def check_memory(need: int, budget: int | str | Budget | None, *, field: str, what: str, flag: str = FLAG,
                 hint: str = "") -> None:
    """Refuse (one-line :class:`~zeroloss.errors.ZerolossInputError`) when ``need`` bytes exceed the budget.

    Args:
        need: the stated memory of the operation, in bytes.
        budget: a :class:`Budget`, bytes, a size string, or None (the default, see :func:`resolve_budget`).
        field: the input whose size is the cause (``--inputs``, ``n``, ``grid``), named first in the message.
        what: what needs the memory, e.g. ``"a 20000 × 20000 Gram matrix"``.
        flag: the setting that raises the budget (``--max-bytes`` on the command line, ``memory_budget`` in the
            library).
        hint: another way out, e.g. ``"use fewer inputs"`` (optional).
    """
    if not isinstance(budget, Budget):
        budget = resolve_budget(budget, flag)
    if need <= budget.bytes:
        return
    way_out = f"{hint}, or raise it with {flag}" if hint else f"raise it with {flag}"
    raise ZerolossInputError(f"{field}: {what} needs about {format_bytes(need)}, more than the memory budget of "
                             f"{format_bytes(budget.bytes)} ({budget.source}); {way_out}")


def npy_shape(path: Path | str) -> tuple[tuple[int, ...], int] | None:
    """(shape, itemsize) of a ``.npy`` file from its header alone (nothing else is read); None if unreadable.

    Lets a command size its work before it loads, let alone validates, the inputs.
    """
    import numpy as np

    try:
        with open(path, "rb") as handle:
            version = np.lib.format.read_magic(handle)
            reader = {(1, 0): np.lib.format.read_array_header_1_0, (2, 0): np.lib.format.read_array_header_2_0}
            if version not in reader:
                return None
            shape, _, dtype = reader[version](handle)
    except (OSError, ValueError):
        return None
    return tuple(int(s) for s in shape), int(np.dtype(dtype).itemsize)


def du_net_parameters(net: str, *, width: int, depth: int, d: int = 1, channels: int = 1, positions: int = 1,
                      kernel_size: int = 3) -> int:
    """Parameters of one member of Du et al.'s ``fc``, ``resnet`` or ``conv-resnet`` (docs/theory.md §1.2), from
    the shapes.

    fc / resnet: W¹ (m × d), W² … W^H (m × m), a (m); conv-resnet: W¹ (m × q·c), W² … W^H (m × q·m), a (m × p).

    Examples:
        >>> du_net_parameters("fc", width=512, depth=2, d=16)  # 512·16 + 512² + 512
        270848
    """
    m, H = int(width), int(depth)
    if net == "conv-resnet":
        return m * kernel_size * channels + (H - 1) * m * kernel_size * m + m * positions
    return m * d + (H - 1) * m * m + m


#: Bytes per member of building a Du net besides its weights: the member's own torch.Generator (its Mersenne
#: Twister state: 2.7 KB measured as resident growth over 10⁵ generators, rounded up) ...
MEMBER_GENERATOR_BYTES = 4096
#: ... and per parameter tensor of a member, the drawn tensor's own object (0.7 KB measured the same way, rounded
#: up). A million members of a width-8 net took 6.4 GB resident where the weights alone are 1.7 GB (issue 19.4).
MEMBER_TENSOR_BYTES = 1024


def du_net_memory_bytes(parameters: int, members: int, tensors: int = 3) -> int:
    """Peak memory of building a Du net: every member's weights are drawn in float64 on the CPU, then stacked
    (:func:`zeroloss.nets.base.member_normal_draws`), so two float64 copies of all parameters, plus each member's
    generator and its ``tensors`` drawn tensor objects (:data:`MEMBER_GENERATOR_BYTES`, :data:`MEMBER_TENSOR_BYTES`).
    """
    return int(members) * (2 * 8 * int(parameters) + MEMBER_GENERATOR_BYTES + MEMBER_TENSOR_BYTES * int(tensors))


#: Bytes per member and step of a training run's loss history: the (steps + 1, S) float64 loss array, its tidy
#: rows (step, metric, value) in the stored metrics and their copies while a run is written (sorted, concatenated).
TRAIN_BYTES_PER_STEP = 96
#: Bytes per recorded probe value (a Python tuple in train_gd's records, then a DataFrame row, then its copies).
TRAIN_BYTES_PER_RECORD = 256


def train_memory_bytes(*, net: str, n: int, width: int, depth: int, members: int, steps: int, probe_every: int,
                       d: int = 1, channels: int = 1, positions: int = 1, itemsize: int = 4,
                       gram_probes: bool = True, kernel_size: int = 3) -> int:
    """An upper estimate of what ``zeroloss train`` holds at its peak, from the options alone (nothing built).

    The net (building it: :func:`du_net_memory_bytes`; training: parameters, their step-0 copy and gradients),
    the inputs, the forward and backward activations (four (S, n, m[, p]) tensors per layer), the Gram probes
    (per layer and full Gram, the step-0 Gram, the spectrum: H + 6 float64 (S, n, n) arrays, and the per-sample
    factors), and the histories (:data:`TRAIN_BYTES_PER_STEP` per member and step,
    :data:`TRAIN_BYTES_PER_RECORD` per probe value).

    Examples:
        >>> train_memory_bytes(net="fc", n=32, width=512, depth=2, members=1, steps=500, probe_every=5, d=16) < 2**27
        True
    """
    S, m, H, p = int(members), int(width), int(depth), int(positions)
    params = du_net_parameters(net, width=m, depth=H, d=d, channels=channels, positions=p)
    training = 3 * S * params * itemsize + 4 * H * S * n * m * p * itemsize + 2 * n * max(d, channels * p) * 8
    # the first layer's per-sample factors, twice (kernels.empirical.gram_memory_bytes): for the convolution the
    # per-sample gradients (m × q·c), for a dense layer its inputs and outputs (d + m)
    first = m * kernel_size * channels if net == "conv-resnet" else d + m
    grams = ((H + 6) * 8 * S * n * n + 8 * S * n * H * (2 * m * p + m * 3) + 16 * S * n * first
             if gram_probes else 0)
    probe_steps = int(steps) // max(1, int(probe_every)) + 2
    histories = TRAIN_BYTES_PER_STEP * S * (int(steps) + 1) + TRAIN_BYTES_PER_RECORD * S * probe_steps * (2 * H + 8)
    return max(du_net_memory_bytes(params, S, H + 1), training + grams + histories)


def two_timescale_memory_bytes(*, repeats: int, neurons: int, logs: int, steps: int) -> int:
    """An upper estimate of what ``zeroloss two-timescale`` holds: the logged states (positions u, weights a with
    the bias, the risk: (L, R, 2m + 2) float64, L ≤ logs + 1 log points), their tidy rows as they are written
    (risk and τ per log point and repeat, with copies: 256 bytes per point) and the log schedule (logs + 1 float
    and integer points, whatever the number of steps). The stepping itself is O(R·m).

    Examples:
        >>> two_timescale_memory_bytes(repeats=5, neurons=20, logs=100, steps=10**6) < 2**20
        True
    """
    R, m, L = int(repeats), int(neurons), min(int(logs), int(steps)) + 1
    schedule = 16 * (int(logs) + 1)  # the log schedule is built from logs + 1 points before duplicates are dropped
    return R * L * (8 * (2 * m + 3) + 256) + 64 * R * m + schedule


#: Default block size by device type (:func:`default_block_bytes`).
DEFAULT_BLOCK_BYTES = {"cpu": 64 * 2**20, "cuda": 2**30}


def default_block_bytes(device: object = None) -> int:
    """The default block (and quadrature-chunk) size on a device: 64 MiB on the CPU, 1 GiB on CUDA.

    Measured on the 2-core CPU with ``python -m benchmarks.bench_limit_kernel --no-peer --block-bytes B``
    (n = 2000, H = 5, softplus du): 0.71–0.80 s at 16–64 MiB, 1.31 s at 256 MiB (blocks that no longer fit in
    cache), 1.13 s at 4 MiB (per-block overhead). On a GPU fewer, larger blocks mean fewer kernel launches.
    """
    kind = getattr(device, "type", None) or (str(device).split(":")[0] if device is not None else "cpu")
    return DEFAULT_BLOCK_BYTES.get(kind, DEFAULT_BLOCK_BYTES["cpu"])


def resolve_block_bytes(value: int | str | None, device: object = None, field: str = "block_bytes") -> int:
    """A block size in bytes: ``value`` (bytes or a size such as ``"64MiB"``) or the device's default.

    Examples:
        >>> resolve_block_bytes("1MiB"), resolve_block_bytes(None, "cpu") == DEFAULT_BLOCK_BYTES["cpu"]
        (1048576, True)
    """
    return default_block_bytes(device) if value is None else parse_size(value, field)


def renamed_block_bytes(block_bytes: int | str | None, max_bytes: int | str | None) -> int | str | None:
    """``block_bytes``, or the value given under its old name ``max_bytes`` (with a DeprecationWarning)."""
    if max_bytes is None:
        return block_bytes
    import warnings

    if block_bytes is not None:
        raise ZerolossInputError("max_bytes: the old name of block_bytes; give block_bytes alone")
    warnings.warn("max_bytes (the size of one block) is now called block_bytes", DeprecationWarning, stacklevel=3)
    return max_bytes


def renamed_budget(memory_budget: int | str | None, max_bytes: int | str | None) -> int | str | None:
    """``memory_budget``, or the value given under its old name ``max_bytes`` (entk; with a DeprecationWarning)."""
    if max_bytes is None:
        return memory_budget
    import warnings

    if memory_budget is not None:
        raise ZerolossInputError("max_bytes: the old name of memory_budget; give memory_budget alone")
    warnings.warn("entk's max_bytes (the budget of the whole call) is now called memory_budget", DeprecationWarning,
                  stacklevel=3)
    return max_bytes


#: The deepest net a command or sweep builds (hidden layers H; for ``certify``, the number of hidden widths). Every
#: layer is a Python-level step of the forward pass, of the backward pass and of the kernel recursions, so the time
#: grows with H whatever the memory; Du et al.'s theorems hold H fixed as m grows and the paper runs H ≤ 6. A depth
#: of 10⁶ ran for hours without a refusal (issue 19.5): beyond this it is refused at once.
MAX_DEPTH = 1000


def check_depth(depth: object, field: str) -> int:
    """``depth`` after checking it is an integer in 1..:data:`MAX_DEPTH`.

    Examples:
        >>> check_depth(3, "--depth")
        3
    """
    from zeroloss.errors import is_integer

    if not (is_integer(depth) and 1 <= depth <= MAX_DEPTH):  # type: ignore[operator]
        raise ZerolossInputError(f"{field}: must be an integer from 1 to {MAX_DEPTH} (deeper nets take hours per "
                                 f"step; the papers use H ≤ 6), got {depth!r}")
    return int(depth)  # type: ignore[call-overload]


def largest_cause(estimate, values: dict[str, int], defaults: dict[str, int], fallback: str) -> str:
    """The option that set a size: the one whose return to its default value shrinks ``estimate`` the most.

    Args:
        estimate: ``estimate(values) -> bytes`` for a mapping of option → value.
        values: the options as given.
        defaults: each option's default (only options above their default are candidates).
        fallback: the name returned when no option is above its default.

    Examples:
        >>> largest_cause(lambda v: v["--n"] ** 2 * v["--members"], {"--n": 64, "--members": 10**9},
        ...               {"--n": 32, "--members": 1}, "--n")
        '--members'
    """
    best, smallest = fallback, None
    for key, value in values.items():
        if key not in defaults or value <= defaults[key]:
            continue
        need = estimate({**values, key: defaults[key]})
        if smallest is None or need < smallest:
            best, smallest = key, need
    return best
