"""From a user's ``nn.Module`` to a plan of kernel rules: trace with ``torch.fx``, match every node to a rule, check.

:func:`build_plan` traces the module's forward (:func:`torch.fx.symbolic_trace`), matches each node to a rule of
:mod:`zeroloss.infinite.rules` by what it calls (module type, function, or tensor method), and refuses an op without
a rule *before* anything is computed, in one line that names the node, the op and the supported list. Only then
are the node shapes found by one forward pass on two samples (:class:`torch.fx.passes.shape_prop.ShapeProp`, in eval
mode) and the shape-dependent conditions checked (groups = 1, zero padding, a Linear on (n, features), what may
follow a Flatten or a concatenation, independent branches in a sum). The plan records per node: the rule, its
inputs, the output's channels C and spatial shape S, and the facts the rules need:

* ``mixed`` — the node's features are not exchangeable (a Flatten over several positions, a concatenation): the
  per-feature average covariance is exact for a following linear layer only, so a nonlinearity there is refused;
* ``gaussian`` — the node is a zero-mean Gaussian in the limit (a linear layer's output, sums and averages of
  them): LayerNorm needs it (its mean over channels → 0), as Neural Tangents' ``stax.LayerNorm`` does;
* ``sources`` — the linear layers whose fresh outputs the node is a linear function of: a sum a + b has no
  cross-covariance term when one operand's sources are not upstream of the other (a residual block x + F(x)
  whose branch ends in a linear layer); otherwise it is refused.

Examples:
    >>> import torch
    >>> net = torch.nn.Sequential(torch.nn.Linear(3, 16), torch.nn.ReLU(), torch.nn.Linear(16, 2))
    >>> plan = build_plan(net, torch.zeros(2, 3))
    >>> [s.rule for s in plan.steps], plan.outputs
    (['input', 'linear', 'elementwise', 'linear'], 2)
"""

from __future__ import annotations

import math
import operator
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import fx, nn
from torch.fx.passes.shape_prop import ShapeProp

from zeroloss.errors import ZerolossInputError
from zeroloss.infinite import elementwise as ew
from zeroloss.ntk.model import eval_mode

ELEMENTWISE_MODULES = {
    nn.ReLU: "relu", nn.GELU: "gelu", nn.Tanh: "tanh", nn.Sigmoid: "sigmoid", nn.SiLU: "silu",
    nn.Identity: "identity", nn.Dropout: "identity", nn.Dropout1d: "identity",
    nn.Dropout2d: "identity",
    nn.LeakyReLU: "leaky_relu", nn.ELU: "elu", nn.Softplus: "softplus",
}
ELEMENTWISE_FUNCTIONS = {
    F.relu: "relu", torch.relu: "relu", F.gelu: "gelu", torch.tanh: "tanh", F.tanh: "tanh",
    torch.sigmoid: "sigmoid", F.sigmoid: "sigmoid", F.silu: "silu", torch.erf: "erf", torch.special.erf: "erf",
    F.leaky_relu: "leaky_relu", F.elu: "elu", F.softplus: "softplus", F.dropout: "identity",
}
ELEMENTWISE_METHODS = {"relu": "relu", "tanh": "tanh", "sigmoid": "sigmoid", "erf": "erf"}
MODULE_RULES = {
    nn.Linear: "linear", nn.Conv1d: "linear", nn.Conv2d: "linear", nn.AvgPool1d: "avgpool",
    nn.AvgPool2d: "avgpool", nn.AdaptiveAvgPool1d: "global_pool", nn.AdaptiveAvgPool2d: "global_pool",
    nn.Flatten: "flatten", nn.ZeroPad1d: "pad", nn.ZeroPad2d: "pad", nn.LayerNorm: "layernorm",
    nn.BatchNorm1d: "batchnorm", nn.BatchNorm2d: "batchnorm",
}
FUNCTION_RULES = {
    operator.add: "add", torch.add: "add", operator.sub: "add", operator.mul: "scale", torch.mul: "scale",
    operator.truediv: "scale", operator.neg: "scale", torch.cat: "concat", torch.concat: "concat",
    torch.flatten: "flatten", torch.mean: "global_pool", F.avg_pool1d: "avgpool", F.avg_pool2d: "avgpool",
    F.adaptive_avg_pool1d: "global_pool", F.adaptive_avg_pool2d: "global_pool", F.pad: "pad",
    operator.getitem: "meta",
    getattr: "meta",
}
METHOD_RULES = {"add": "add", "sub": "add", "mul": "scale", "div": "scale", "flatten": "flatten", "view": "flatten",
                "reshape": "flatten", "mean": "global_pool", "size": "meta", "dim": "meta"}
#: The supported ops, as the refusal lists them (docs/infinite.md has the rule of each).
SUPPORTED = ("nn.Linear, nn.Conv1d/2d (groups=1, zero padding), nn.ReLU, nn.LeakyReLU, nn.GELU, nn.Tanh, "
             "nn.Sigmoid, nn.SiLU, nn.Softplus, nn.ELU, nn.Identity, nn.Dropout, nn.AvgPool1d/2d, "
             "nn.AdaptiveAvgPool1d/2d(1), nn.Flatten, nn.ZeroPad1d/2d and F.pad with zeros, nn.LayerNorm, "
             "nn.BatchNorm1d/2d (eval), their torch./F. functions and torch.erf, "
             "+ and - of branches, * and / by a number, torch.cat on dim 1, torch.flatten / .view / .reshape "
             "to (n, -1), .mean over the spatial dims")


@dataclass
class Step:
    """One node of the plan: ``rule`` (a key of :data:`zeroloss.infinite.rules.RULES`) applied to ``inputs``
    (node names), giving an output of ``channels`` C and spatial shape ``spatial`` S; ``params`` what the rule needs."""

    name: str
    rule: str
    inputs: tuple[str, ...]
    channels: int
    spatial: tuple[int, ...]
    params: dict = field(default_factory=dict)
    target: str = ""
    mixed: bool = False
    gaussian: bool = False
    sources: frozenset[str] | None = None
    upstream: frozenset[str] = frozenset()

    @property
    def positions(self) -> int:
        return math.prod(self.spatial)


@dataclass
class Plan:
    """The traced model as kernel rules: ``steps`` in execution order (the first is the input), the linear layers
    by module name, whether cross-position covariances are needed (``full``), and the outputs k per sample."""

    steps: list[Step]
    layers: dict[str, nn.Module]
    full: bool
    outputs: int
    last_use: dict[str, int]

    def step(self, name: str) -> Step:
        return next(s for s in self.steps if s.name == name)


def _refuse(node: fx.Node, what: str, reason: str = "has no infinite-width rule") -> ZerolossInputError:
    return ZerolossInputError(f"model: node {node.name!r} ({what}) {reason}; supported: {SUPPORTED}")


def _describe(node: fx.Node, modules: dict[str, nn.Module]) -> str:
    if node.op == "call_module":
        return f"{type(modules[node.target]).__name__} module {node.target!r}"
    if node.op == "call_function":
        module = getattr(node.target, "__module__", "") or ""
        return f"function {module}.{getattr(node.target, '__name__', node.target)}"
    if node.op == "call_method":
        return f"tensor method .{node.target}()"
    return f"{node.op} {node.target!r}"


def _match(node: fx.Node, modules: dict[str, nn.Module]) -> str:
    """The rule of one node by what it calls (no shapes yet); raises the one-line refusal."""
    if node.op == "placeholder":
        return "input"
    if node.op == "output":
        return "output"
    if node.op == "call_module":
        kind = type(modules[node.target])
        if kind in ELEMENTWISE_MODULES:
            return "elementwise"
        if kind in MODULE_RULES:
            return MODULE_RULES[kind]
    elif node.op == "call_function":
        if node.target in ELEMENTWISE_FUNCTIONS:
            return "elementwise"
        if node.target in FUNCTION_RULES:
            return FUNCTION_RULES[node.target]
    elif node.op == "call_method":
        if node.target in ELEMENTWISE_METHODS:
            return "elementwise"
        if node.target in METHOD_RULES:
            return METHOD_RULES[node.target]
    raise _refuse(node, _describe(node, modules))


def trace(model: nn.Module) -> fx.GraphModule:
    """``torch.fx.symbolic_trace`` of the model; a module fx cannot trace is refused with fx's reason."""
    try:
        return fx.symbolic_trace(model)
    except Exception as exc:  # fx raises many kinds (TraceError, TypeError on control flow, ...)
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ZerolossInputError(f"model: torch.fx cannot trace its forward ({first}); the infinite-width kernel "
                                 f"needs a forward without data-dependent control flow") from None


def _nonlinearity(node: fx.Node, modules: dict[str, nn.Module]) -> ew.Nonlinearity:
    """The elementwise σ of a node, with its arguments (LeakyReLU slope, ELU α, Softplus β, GELU approximation)."""
    if node.op == "call_module":
        m = modules[node.target]
        name = ELEMENTWISE_MODULES[type(m)]
        if isinstance(m, nn.LeakyReLU):
            return ew.leaky_relu(float(m.negative_slope))
        if isinstance(m, nn.ELU):
            return ew.elu(float(m.alpha))
        if isinstance(m, nn.Softplus):
            return ew.softplus(float(m.beta), float(m.threshold))
        if isinstance(m, nn.GELU) and m.approximate == "tanh":
            return ew.NONLINEARITIES["gelu_tanh"]
        return ew.NONLINEARITIES[name]
    name = (ELEMENTWISE_FUNCTIONS if node.op == "call_function" else ELEMENTWISE_METHODS)[node.target]
    extra = list(node.args[1:]) + list(node.kwargs.values())
    if name == "leaky_relu":
        slope = node.kwargs.get("negative_slope", node.args[1] if len(node.args) > 1 else 0.01)
        return ew.leaky_relu(float(slope))
    if name == "elu":
        return ew.elu(float(node.kwargs.get("alpha", node.args[1] if len(node.args) > 1 else 1.0)))
    if name == "softplus":
        beta = node.kwargs.get("beta", node.args[1] if len(node.args) > 1 else 1.0)
        threshold = node.kwargs.get("threshold", node.args[2] if len(node.args) > 2 else 20.0)
        return ew.softplus(float(beta), float(threshold))
    if name == "gelu" and node.kwargs.get("approximate", extra[0] if extra else "none") == "tanh":
        return ew.NONLINEARITIES["gelu_tanh"]
    return ew.NONLINEARITIES[name]


def _shape(node: fx.Node) -> tuple[int, ...] | None:
    meta = node.meta.get("tensor_meta")
    return tuple(meta.shape) if meta is not None and hasattr(meta, "shape") else None


def _number(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def build_plan(model: nn.Module, example: torch.Tensor) -> Plan:
    """Trace, match every node (refusing an unsupported op before anything runs), propagate shapes on ``example``
    (two samples suffice), and check the shape-dependent conditions. See the module docstring."""
    gm = trace(model)
    modules = dict(gm.named_modules())
    nodes = list(gm.graph.nodes)
    kinds = {node.name: _match(node, modules) for node in nodes}  # refusal before any compute
    placeholders = [n for n in nodes if n.op == "placeholder"]
    if len(placeholders) != 1:
        raise ZerolossInputError(f"model: its forward must take one input tensor, it takes {len(placeholders)}")
    seen: dict[str, str] = {}
    for node in nodes:
        if node.op == "call_module" and kinds[node.name] in ("linear", "layernorm", "batchnorm"):
            if node.target in seen:
                raise _refuse(node, _describe(node, modules), "is called twice (shared weights have no rule here)")
            seen[node.target] = node.name
    param = next(iter(model.parameters()), None)
    dtype = param.dtype if param is not None and param.is_floating_point() else torch.float32
    with eval_mode(model), torch.no_grad():
        try:
            ShapeProp(gm).propagate(example.to(dtype))
        except Exception as exc:
            first = str(exc).splitlines()[0] if str(exc) else ""
            raise ZerolossInputError(f"X: the model's forward fails on inputs of shape {tuple(example.shape)} "
                                     f"({type(exc).__name__}: {first})") from None
    from zeroloss.infinite.checks import check_step

    steps: list[Step] = []
    by_name: dict[str, Step] = {}
    output: Step | None = None
    for node in nodes:
        rule = kinds[node.name]
        if rule == "meta":
            continue
        if rule == "output":
            arg = node.args[0]
            if not isinstance(arg, fx.Node) or arg.name not in by_name:
                raise ZerolossInputError("model: its forward must return one tensor (n, k)")
            output = by_name[arg.name]
            continue
        shape = _shape(node)
        if shape is None:
            raise _refuse(node, _describe(node, modules), "does not return a tensor")
        if len(shape) < 2:
            raise _refuse(node, _describe(node, modules), f"returns shape {shape}: a rule needs (n, C, *spatial)")
        inputs = tuple(a.name for a in node.all_input_nodes if a.name in by_name)
        step = Step(node.name, rule, inputs, shape[1], tuple(shape[2:]),
                    target=node.target if node.op == "call_module" else "")
        if rule == "elementwise":
            step.params["nl"] = _nonlinearity(node, modules)
        ins = [by_name[i] for i in inputs]
        check_step(step, node, ins, modules, _describe(node, modules))
        steps.append(step)
        by_name[node.name] = step
    assert output is not None
    if output.spatial:
        raise ZerolossInputError(f"model: its output {output.name!r} has shape (n, {output.channels}, "
                                 f"{', '.join(map(str, output.spatial))}); the kernel needs outputs (n, k)")
    if output.mixed:
        raise ZerolossInputError(f"model: its output {output.name!r} is a flatten or concatenation with "
                                 f"non-exchangeable features; end the model with a linear layer")
    used = {s.name for s in steps}
    last_use = {name: i for i, s in enumerate(steps) for name in s.inputs if name in used}
    last_use[output.name] = len(steps)
    steps = steps[: steps.index(output) + 1]
    layers = {s.target: modules[s.target] for s in steps if s.rule == "linear"}
    full = any(s.rule in ("avgpool", "global_pool") and by_name[s.inputs[0]].positions > 1 for s in steps)
    return Plan(steps, layers, full, output.channels, last_use)
