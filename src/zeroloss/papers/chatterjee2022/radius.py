"""The radius of Chatterjee's certificate when none is given (``zeroloss certify`` without ``--radius``).

The radius is chosen on the grid r_j = c·2^(−j/2), j = 1..:data:`RADIUS_CANDIDATES`, below c, the smallest weight
the first-layer bound needs r to stay under (the smallest hidden weight, and the output scale when it is given): for
the positive init with the certified output scale, the r whose certified M is smallest (GD's certified step shrinks
like 1/M²); otherwise the r with the largest certified margin r²α_lb/(4F(w₀)) (docs/theory.md §2). An
initialisation with a non-positive hidden or output weight has no certified radius at all.
"""

from __future__ import annotations

import torch

from zeroloss.errors import ZerolossInputError
from zeroloss.papers.chatterjee2022.bounds import RADIUS_RANGE, check_certificate_assumptions, first_layer_bound
from zeroloss.papers.chatterjee2022.init import initialise

#: Radii tried below the ceiling c: c·2^(−j/2), j = 1..RADIUS_CANDIDATES (down to c/2²⁰).
RADIUS_CANDIDATES = 40


def positive_options(X, y, radius: float, hidden: float, output_scale: float) -> dict:
    """The options of the positive initialiser (0 for ``hidden`` / ``output_scale``: its defaults)."""
    return {"X": X, "y": y, "radius": radius, "hidden": hidden or None, "M": output_scale or None}


def radius_ceiling(net, init: str, hidden: float, output_scale: float) -> tuple[float, str]:
    """c, the weight the radius must stay under, and its name; raises when no radius can be certified."""

    if net.depth < 2:
        raise ZerolossInputError("radius: must be given for a net with fewer than 2 hidden layers (no hidden weight "
                                 "bounds the radius there)")
    if init == "positive":
        c = min(hidden or 1.0 / w for w in net.widths[:-1])
        if output_scale:
            return min(c, output_scale), "the smallest hidden weight and the output scale"
        return c, "the smallest hidden weight"
    initialise(net, init)
    smallest = {name: float(p.detach().min()) for name, p in net.named_parameters()
                if name == "v" or (name.startswith("W") and name != "W1")}
    name = min(smallest, key=smallest.get)
    if smallest[name] <= 0:
        raise ZerolossInputError(
            f"radius: no radius can be certified for init {init!r}: the first-layer bound needs every hidden weight "
            f"(W2..WL) and output weight v positive, but min {name} = {smallest[name]:.3g}; give a radius for "
            "estimates only")
    return min(smallest.values()), "the smallest hidden or output weight"


def choose_radius(net, init: str, X, y, hidden: float, output_scale: float) -> tuple[float, dict]:
    """The radius used when none is given (see the module docstring) and a record of the choice.

    Args:
        net: a single-member :class:`~zeroloss.nets.FeedForward` (float64), initialised here as ``init`` says.
        init: the initialiser's name (:data:`~zeroloss.papers.chatterjee2022.init.INITIALISERS`).
        X, y: (n, d) inputs and (n,) labels.
        hidden, output_scale: the positive init's hidden constant and M (0: its defaults).

    Returns:
        ``(radius, record)``: the record names the rule, the ceiling c and the candidates.
    """


    c, what = radius_ceiling(net, init, hidden, output_scale)
    candidates = [c * 2.0 ** (-j / 2) for j in range(1, RADIUS_CANDIDATES + 1)]
    candidates = [r for r in candidates if r >= RADIUS_RANGE[0]]
    scores, causes = {}, {}
    if init == "positive" and not output_scale:
        rule = "the smallest certified output scale M (GD's certified step shrinks like 1/M²)"
        for r in candidates:
            try:
                scores[r] = -initialise(net, "positive", **positive_options(X, y, r, hidden, 0.0))["M"][0]
            except ZerolossInputError as exc:
                causes[r] = str(exc)
    else:
        rule = "the largest certified margin r²α_lb/(4F(w₀))"
        lam = check_certificate_assumptions(net.activation, X)
        if init == "positive":
            initialise(net, "positive", **positive_options(X, y, c / 2, hidden, output_scale))
        params = {k: p.detach()[0].to(torch.float64) for k, p in net.named_parameters()}
        with torch.no_grad():
            f0 = float((net(X)[0] - y).pow(2).sum())
        for r in candidates:
            bound = first_layer_bound(params, X, r, net.activation, net.depth, net.bias, lam)
            if bound.alpha_lower_bound:
                scores[r] = r**2 * bound.alpha_lower_bound / (4.0 * f0)
            else:
                causes[r] = bound.reason
    if not scores:
        cause = causes[candidates[0]] if candidates else "no candidate radius"
        raise ZerolossInputError(
            f"radius: no radius in c·2^(−j/2), j = 1..{RADIUS_CANDIDATES}, below c = {c:.3g} ({what}) is certified; "
            f"at the largest: {cause.partition(': ')[2] or cause}")
    best = max(scores, key=scores.get)
    objective = -scores[best] if init == "positive" and not output_scale else scores[best]
    record = {"radius": best, "rule": rule, "ceiling": c, "ceiling_is": what, "candidates": len(candidates),
              "objective": objective}
    return best, record
