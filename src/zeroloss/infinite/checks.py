"""Plan-time checks of :func:`zeroloss.infinite.graph.build_plan`: each node's rule parameters and facts, and the
one-line refusals of what a rule cannot do with the shapes and arguments at hand (groups ≠ 1, padding modes, a Linear
on spatial inputs, sums of dependent branches, LayerNorm of a non-Gaussian input, per-channel affine maps that
differ between channels, reshapes other than (n, -1), pooling other than global or windowed averages).

Examples:
    >>> import torch
    >>> from zeroloss.infinite.graph import build_plan
    >>> net = torch.nn.Sequential(torch.nn.Linear(3, 8), torch.nn.LayerNorm(8), torch.nn.ReLU(), torch.nn.Linear(8, 1))
    >>> [s.gaussian for s in build_plan(net, torch.zeros(2, 3)).steps]
    [False, True, True, False, True]
"""

from __future__ import annotations

import operator

import torch
from torch import fx, nn

from zeroloss.errors import ZerolossInputError

Tensor = torch.Tensor


def _refuse(node: fx.Node, what: str, reason: str) -> ZerolossInputError:
    from zeroloss.infinite.graph import SUPPORTED

    return ZerolossInputError(f"model: node {node.name!r} ({what}) {reason}; supported: {SUPPORTED}")


def _tuple(v: object, k: int) -> tuple[int, ...]:
    return tuple(v) if isinstance(v, (tuple, list)) else (int(v),) * k  # type: ignore[arg-type]


def _constant(t: Tensor | None, default: float, node: fx.Node, what: str, field_name: str) -> float:
    if t is None:
        return default
    flat = t.detach().to(torch.float64).flatten()
    if not bool((flat == flat[0]).all()):
        raise _refuse(node, what, f"has a {field_name} that differs between channels (the limit needs the same "
                                  f"affine map on every channel, as at initialisation)")
    return float(flat[0])


def _check_linear(step, node, x, m, what: str) -> None:
    if isinstance(m, nn.Linear):
        if x.spatial:
            raise _refuse(node, what, f"acts on an input of shape (n, {x.channels}, {', '.join(map(str, x.spatial))})"
                                      f"; a Linear needs (n, features): flatten or pool first")
        return
    k = len(m.kernel_size)
    if m.groups != 1 or m.padding_mode != "zeros" or len(x.spatial) != k:
        raise _refuse(node, what, f"has groups={m.groups}, padding_mode={m.padding_mode!r} on a {len(x.spatial)}-d "
                                  f"input (needs groups=1, zero padding, a {k}-d input)")
    ks, dil = tuple(m.kernel_size), tuple(m.dilation)
    if m.padding == "same":
        total = [d * (q - 1) for d, q in zip(dil, ks, strict=True)]
        lo, hi = tuple(t // 2 for t in total), tuple(t - t // 2 for t in total)
    elif m.padding == "valid":
        lo = hi = (0,) * k
    else:
        lo = hi = _tuple(m.padding, k)
    step.params.update(ks=ks, stride=tuple(m.stride), dil=dil, lo=lo, hi=hi)


def check_step(step, node: fx.Node, ins: list, modules: dict[str, nn.Module], what: str) -> None:
    """Fill ``step.params`` and the flags (module docstring of :mod:`zeroloss.infinite.graph`), refusing what the
    rule cannot do with the shapes and arguments at hand."""
    rule = step.rule
    x = ins[0] if ins else None
    if rule == "input":
        return
    if x is None:
        raise _refuse(node, what, "has no tensor input")
    step.upstream = frozenset().union(*(i.upstream for i in ins))
    copy_flags = dict(mixed=x.mixed, gaussian=x.gaussian, sources=x.sources)
    m = modules.get(node.target) if node.op == "call_module" else None
    if rule == "linear":
        _check_linear(step, node, x, m, what)
        step.gaussian, step.sources, step.upstream = True, frozenset([step.target]), step.upstream | {step.target}
        return
    if rule in ("elementwise", "layernorm") and x.mixed:
        raise _refuse(node, what, f"follows the flatten or concatenation {x.name!r}, whose features are not "
                                  f"exchangeable (only a linear layer may follow it)")
    if rule == "elementwise":
        if step.params["nl"].act is None:
            step.__dict__.update(copy_flags)
        return
    if rule == "add":
        tensors = [a for a in node.args if isinstance(a, fx.Node)]
        if len(tensors) == 2 and tensors[0] is tensors[1]:
            raise _refuse(node, what, f"adds {tensors[0].name!r} to itself: the two terms share randomness "
                                      f"(write 2 * x)")
        if len(node.args) != 2 or len(tensors) != 2 or len(ins) != 2 or node.kwargs:
            raise _refuse(node, what, "adds something other than two tensors of the graph")
        a, b = ins
        if (a.channels, a.spatial) != (b.channels, b.spatial):
            raise _refuse(node, what, "adds tensors of different shapes (broadcasting has no rule)")
        if not ((a.sources is not None and not (a.sources & b.upstream))
                or (b.sources is not None and not (b.sources & a.upstream))):
            raise _refuse(node, what, f"adds {a.name!r} and {b.name!r}, which share randomness (neither is the output "
                                      f"of a linear layer that the other does not depend on)")
        step.mixed = a.mixed or b.mixed
        step.gaussian = a.gaussian and b.gaussian
        step.sources = a.sources | b.sources if a.sources is not None and b.sources is not None else None
        return
    if rule == "scale":
        numbers = [a for a in node.args if isinstance(a, (int, float)) and not isinstance(a, bool)]
        if node.target is operator.neg:
            factor = -1.0
        elif len(numbers) == 1 and len(ins) == 1 and len(node.args) == 2 and not node.kwargs:
            divide = node.target in (operator.truediv, "div")
            if divide and not isinstance(node.args[1], (int, float)):
                raise _refuse(node, what, "divides a number by a tensor")
            factor = 1.0 / numbers[0] if divide else float(numbers[0])
        else:
            raise _refuse(node, what, "multiplies by something other than one number")
        step.params["factor"] = factor
        step.__dict__.update(copy_flags)
        return
    if rule == "concat":
        dim = node.kwargs.get("dim", node.args[1] if len(node.args) > 1 else 0)
        ndim = 2 + len(x.spatial)
        if dim % ndim != 1 or any(i.spatial != x.spatial for i in ins):
            raise _refuse(node, what, f"concatenates along dim {dim}; only channels/features (dim 1) have a rule")
        step.params["weights"] = [i.channels / step.channels for i in ins]
        step.mixed = len(ins) > 1
        step.gaussian = all(i.gaussian for i in ins)
        step.sources = frozenset().union(*(i.sources for i in ins)) if all(i.sources is not None for i in ins) \
            else None
        return
    if rule == "flatten":
        if step.spatial or step.channels != x.channels * x.positions:
            raise _refuse(node, what, f"reshapes (n, {x.channels}, {', '.join(map(str, x.spatial))}) to (n, "
                                      f"{step.channels}, {', '.join(map(str, step.spatial))}); only (n, -1) has a rule")
        step.params["in_spatial"] = x.spatial
        step.__dict__.update(copy_flags)
        step.mixed = x.mixed or x.positions > 1
        return
    step.params["in_spatial"] = x.spatial
    if rule == "pad":
        if m is not None:
            pad = list(m.padding)
        else:
            pad = list(node.args[1]) if len(node.args) > 1 else list(node.kwargs.get("pad", ()))
            mode = node.kwargs.get("mode", node.args[2] if len(node.args) > 2 else "constant")
            value = node.kwargs.get("value", node.args[3] if len(node.args) > 3 else None)
            if mode != "constant" or value not in (None, 0, 0.0):
                raise _refuse(node, what, f"pads with mode={mode!r}, value={value!r}; only zero padding has a rule")
        if len(pad) != 2 * len(x.spatial) or step.channels != x.channels or min(pad) < 0:
            raise _refuse(node, what, f"pads {pad}; only non-negative padding of every spatial dim has a rule")
        step.params["pad"] = pad
        step.__dict__.update(copy_flags)
        return
    if rule == "avgpool":
        k = len(x.spatial)
        if m is not None:
            p = dict(kernel_size=m.kernel_size, stride=m.stride, padding=m.padding, ceil_mode=m.ceil_mode,
                     count_include_pad=m.count_include_pad, divisor_override=getattr(m, "divisor_override", None))
        else:
            names = ["kernel_size", "stride", "padding", "ceil_mode", "count_include_pad", "divisor_override"]
            p = dict(zip(names[: len(node.args) - 1], node.args[1:], strict=True))
            p.update(node.kwargs)
            p.setdefault("stride", None)
            p.setdefault("padding", 0)
            p.setdefault("ceil_mode", False)
            p.setdefault("count_include_pad", True)
            p.setdefault("divisor_override", None)
        if k not in (1, 2):
            raise _refuse(node, what, "pools a non-1-d/2-d input")
        step.params.update(p)
        step.__dict__.update(copy_flags)
        return
    if rule == "global_pool":
        if step.channels != x.channels or any(s != 1 for s in step.spatial):
            raise _refuse(node, what, f"pools to shape (n, {step.channels}, {', '.join(map(str, step.spatial))}); "
                                      f"only global average pooling (output size 1 / the mean over all spatial "
                                      f"dims) has a rule")
        if step.spatial and len(step.spatial) != len(x.spatial):
            raise _refuse(node, what, "keeps some spatial dims")
        step.__dict__.update(copy_flags)
        return
    if rule == "layernorm":
        if tuple(m.normalized_shape) != (x.channels, *x.spatial):
            raise _refuse(node, what, f"normalises over {tuple(m.normalized_shape)}; the rule needs all non-batch "
                                      f"dims {(x.channels, *x.spatial)}")
        if not x.gaussian:
            raise _refuse(node, what, "normalises an input that is not a zero-mean Gaussian in the limit (put it "
                                      "right after a linear layer, as Neural Tangents' LayerNorm requires)")
        gamma = _constant(m.weight, 1.0, node, what, "weight")
        beta = _constant(m.bias, 0.0, node, what, "bias")
        step.params.update(eps=float(m.eps), gamma=gamma, beta=beta,
                           gamma_grad=m.weight is not None and m.weight.requires_grad,
                           beta_grad=m.bias is not None and m.bias.requires_grad)
        step.gaussian = beta == 0.0
        return
    if rule == "batchnorm":
        if m.running_mean is None or m.running_var is None:
            raise _refuse(node, what, "has no running statistics (track_running_stats=False)")
        mean = _constant(m.running_mean, 0.0, node, what, "running_mean")
        var = _constant(m.running_var, 1.0, node, what, "running_var")
        gamma = _constant(m.weight, 1.0, node, what, "weight")
        beta = _constant(m.bias, 0.0, node, what, "bias")
        if (mean != 0.0 or beta != 0.0) and not x.gaussian:
            raise _refuse(node, what, "shifts (running_mean or bias ≠ 0) an input that is not a zero-mean Gaussian")
        step.params.update(eps=float(m.eps), mean=mean, var=var, gamma=gamma, beta=beta,
                           gamma_grad=m.weight is not None and m.weight.requires_grad,
                           beta_grad=m.bias is not None and m.bias.requires_grad)
        shift = mean != 0.0 or beta != 0.0
        step.mixed = x.mixed
        step.gaussian = x.gaussian and not shift
        step.sources = None if shift else x.sources
        return
    raise AssertionError(rule)
