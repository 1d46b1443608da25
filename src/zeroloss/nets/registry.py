"""One architecture vocabulary: the nets by name, one factory, and a net's architecture (its shape, not its weights).

Every caller that turns a name into a net — the CLI, sweep files and experiments, the teacher labels of
:mod:`zeroloss.data` — goes through :func:`build_net`; every caller that needs a net's architecture from a net object
— :func:`zeroloss.limit_kernel`, :func:`zeroloss.lambda0`, the theory helpers — reads :func:`architecture`.

    name            class                                    architecture fields
    "fc"            :class:`~zeroloss.nets.FullyConnected`   d, width, depth, activation
    "resnet"        :class:`~zeroloss.nets.ResNet`           d, width, depth, activation, c_res
    "conv-resnet"   :class:`~zeroloss.nets.ConvResNet`       channels, positions, width, depth, kernel_size,
                                                             activation, c_res
    "feedforward"   :class:`~zeroloss.nets.FeedForward`      d, widths, activation, bias, output_bias

The first three are Du et al.'s nets (docs/theory.md §1.2), the last Chatterjee's (docs/theory.md §2.2).

Examples:
    >>> net = build_net("resnet", input_shape=(8,), width=32, depth=3, c_res=0.25, members=2)
    >>> architecture(net)
    {'name': 'resnet', 'd': 8, 'width': 32, 'depth': 3, 'activation': 'softplus', 'c_res': 0.25}
    >>> twin = build_net(**architecture(net), members=2)      # the same architecture, the same seeds
    >>> all(bool((p == q).all()) for p, q in zip(net.parameters(), twin.parameters()))
    True
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch

from zeroloss.errors import ZerolossInputError, choice, is_integer
from zeroloss.nets.base import EnsembleNet
from zeroloss.nets.du import ConvResNet, FullyConnected, ResNet
from zeroloss.nets.feedforward import FeedForward

#: name → net class. A plain dict: register your own :class:`~zeroloss.nets.base.EnsembleNet` subclass with
#: ``NETS["mine"] = MyNet`` and ``NET_FIELDS["mine"] = (...)`` (its constructor's architecture arguments).
NETS: dict[str, type[EnsembleNet]] = {
    "fc": FullyConnected,
    "resnet": ResNet,
    "conv-resnet": ConvResNet,
    "feedforward": FeedForward,
}

#: name → the architecture fields of that net, in the order :func:`architecture` lists them; the leading ones
#: (see :data:`INPUT_FIELDS`) describe one input sample.
NET_FIELDS: dict[str, tuple[str, ...]] = {
    "fc": ("d", "width", "depth", "activation"),
    "resnet": ("d", "width", "depth", "activation", "c_res"),
    "conv-resnet": ("channels", "positions", "width", "depth", "kernel_size", "activation", "c_res"),
    "feedforward": ("d", "widths", "activation", "bias", "output_bias"),
}

#: name → the fields that give the shape of one input sample (``X.shape[1:]``).
INPUT_FIELDS: dict[str, tuple[str, ...]] = {
    "fc": ("d",), "resnet": ("d",), "conv-resnet": ("channels", "positions"), "feedforward": ("d",),
}

#: Constructor options that are not architecture but may be passed through :func:`build_net`.
EXTRA_OPTIONS: dict[str, tuple[str, ...]] = {"feedforward": ("init",)}

#: Du et al.'s nets: the ones with an infinite-width kernel in :mod:`zeroloss.kernels.limit`.
DU_NETS = ("fc", "resnet", "conv-resnet")


def _input_fields(name: str, input_shape: Sequence[int] | torch.Size | int) -> dict[str, int]:
    shape = (input_shape,) if is_integer(input_shape) else tuple(input_shape)  # type: ignore[arg-type]
    fields = INPUT_FIELDS.get(name, ())
    if len(shape) != len(fields) or not all(is_integer(v) for v in shape):
        want = "(" + ", ".join(fields) + ("," if len(fields) == 1 else "") + ")"
        raise ZerolossInputError(f"input_shape: {name} takes one sample's shape {want}, got {input_shape!r}")
    return {f: int(v) for f, v in zip(fields, shape, strict=True)}


def build_net(
    name: str,
    input_shape: Sequence[int] | torch.Size | int | None = None,
    *,
    members: int = 1,
    seed: int = 0,
    dtype: torch.dtype = torch.float32,
    device: str | torch.device | None = "cpu",
    **arch: Any,
) -> EnsembleNet:
    """Build the registered net ``name`` — the one factory behind the CLI, sweeps, experiments and data.

    Args:
        name: a key of :data:`NETS` (``"fc"``, ``"resnet"``, ``"conv-resnet"``, ``"feedforward"``).
        input_shape: one sample's shape, ``X.shape[1:]``: ``(d,)`` (or the int d), or ``(channels, positions)``
            for ``conv-resnet``. May be left out when ``arch`` gives those fields (``d=…``); both must agree.
        members, seed, dtype, device: as the net classes (member k is drawn with seed + k).
        **arch: the net's architecture fields (:data:`NET_FIELDS`, e.g. ``width``, ``depth``, ``activation``,
            ``c_res``) and, for ``feedforward``, ``init``. A value of None means "the class default". A field the
            net does not have is an error (use :func:`net_options` to pick a net's fields from a larger dict).

    Returns:
        the net, an :class:`~zeroloss.nets.base.EnsembleNet`.

    Raises:
        ZerolossInputError: unknown name, a field the net does not have, a missing or mismatched input shape.

    Examples:
        >>> build_net("conv-resnet", (2, 5), width=8, depth=2, members=3)(torch.zeros(4, 2, 5)).shape
        torch.Size([3, 4])
    """
    choice(name, "net", tuple(NETS))
    accepted = NET_FIELDS[name] + EXTRA_OPTIONS.get(name, ())
    unknown = sorted(k for k in arch if k not in accepted)
    if unknown:
        raise ZerolossInputError(f"{unknown[0]}: not an option of the {name} net; it takes {', '.join(accepted)}")
    options = {k: v for k, v in arch.items() if v is not None}
    if input_shape is not None:
        for field, value in _input_fields(name, input_shape).items():
            if field in options and options[field] != value:
                raise ZerolossInputError(f"{field}: {options[field]!r} disagrees with input_shape {input_shape!r}")
            options[field] = value
    missing = [f for f in INPUT_FIELDS[name] if f not in options]
    if missing:
        raise ZerolossInputError(f"input_shape: {name} needs {', '.join(missing)} (pass input_shape=X.shape[1:])")
    return NETS[name](**options, members=members, seed=seed, dtype=dtype, device=device)


def net_options(name: str, options: Mapping[str, Any]) -> dict[str, Any]:
    """The entries of ``options`` that are architecture fields (or extra options) of the net ``name``.

    For callers that carry options for every net at once (the CLI's flags, a sweep's spec): the others are
    dropped on purpose. Pass the result to :func:`build_net`.

    Examples:
        >>> net_options("fc", {"d": 4, "width": 16, "depth": 2, "c_res": 0.5, "channels": 2, "lr": 0.1})
        {'d': 4, 'width': 16, 'depth': 2}
    """
    choice(name, "net", tuple(NETS))
    accepted = NET_FIELDS[name] + EXTRA_OPTIONS.get(name, ())
    return {k: options[k] for k in accepted if k in options}


def net_name(net: EnsembleNet) -> str:
    """The registry name of a net: that of the first registered class in its type's MRO (a subclass of a
    registered net shares its architecture fields).

    Raises:
        ZerolossInputError: the net is not an instance of a registered class.
    """
    for cls in type(net).__mro__:
        for name, registered in NETS.items():
            if cls is registered:
                return name
    raise ZerolossInputError(f"net: {type(net).__name__} is not a registered net; registered: {', '.join(NETS)}")


def architecture(net: EnsembleNet) -> dict[str, Any]:
    """A net's architecture — ``{"name": …, <field>: …}`` with the fields of :data:`NET_FIELDS` — not its weights.

    ``build_net(**architecture(net), members=net.members, seed=net.seed)`` rebuilds the same net. The activation
    is given by its registry name (or the :class:`~zeroloss.activations.Activation` itself when unregistered).
    """
    name = net_name(net)
    out: dict[str, Any] = {"name": name}
    for field in NET_FIELDS[name]:
        value = getattr(net, field)
        if field == "activation":
            from zeroloss.activations import ACTIVATIONS

            value = value.name if ACTIVATIONS.get(value.name) is value else value
        out[field] = list(value) if field == "widths" else value
    return out


def resolve_architecture(net: str | EnsembleNet, explicit: Mapping[str, Any], defaults: Mapping[str, Any],
                         ) -> dict[str, Any]:
    """Merge a net (a name or a net object) with explicit arguments into one architecture.

    For a name: each field is the explicit value, else ``defaults[field]``. For a net object: each field is the
    net's own value; an explicit value that disagrees with it is an error naming the field (a net object *is*
    its architecture). Explicit values of None count as not given.

    Args:
        net: a registry name or a net object.
        explicit: field → value as passed by the caller (None: not given).
        defaults: field → value used for a name when the caller gave none.

    Returns:
        ``{"name": …, field: value, …}`` for the fields of ``explicit`` and ``defaults``.

    Examples:
        >>> fc = build_net("fc", 3, width=8, depth=4)
        >>> resolve_architecture(fc, {"depth": None}, {"depth": 2})
        {'name': 'fc', 'depth': 4}
        >>> resolve_architecture(fc, {"depth": 3}, {"depth": 2})
        Traceback (most recent call last):
        ...
        zeroloss.errors.ZerolossInputError: depth: 3 disagrees with the net's own depth 4 (drop the argument)
    """
    fields = list(dict.fromkeys([*defaults, *explicit]))
    if isinstance(net, str):
        choice(net, "net", tuple(NETS))
        return {"name": net, **{f: explicit[f] if explicit.get(f) is not None else defaults.get(f) for f in fields}}
    if not isinstance(net, EnsembleNet):
        raise ZerolossInputError(f"net: must be a registry name ({', '.join(NETS)}) or a zeroloss net, "
                                 f"got {type(net).__name__}")
    own = architecture(net)
    out: dict[str, Any] = {"name": own["name"]}
    for f in fields:
        value = own.get(f, defaults.get(f))
        given = explicit.get(f)
        if given is not None and f in own and not _same(f, given, value):
            shown = getattr(value, "name", value)
            raise ZerolossInputError(f"{f}: {getattr(given, 'name', given)!r} disagrees with the net's own {f} "
                                     f"{shown!r} (drop the argument)")
        out[f] = value
    return out


def _same(field: str, given: Any, own: Any) -> bool:
    if field == "activation":
        from zeroloss.activations import get_activation

        return get_activation(given).name == getattr(own, "name", own)
    return bool(given == own)
