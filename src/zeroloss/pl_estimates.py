"""Estimates (never proofs) of Chatterjee's α(w₀, r) and β on a ball, for any ensemble net, one member at a time.

    α(w₀, r) = inf { ‖∇F(w)‖² / F(w) : w ∈ B(w₀, r), F(w) ≠ 0 },   F(w) = Σ_i (f(x_i; w) − y_i)²   (docs/theory.md §2.1)

Every point evaluated lies in the ball, so each value of ‖∇F‖²/F found is an upper bound on the infimum: the
estimate is the smallest value found by sampling the ball and by projected descent on ‖∇F‖²/F from several starts.
β — a bound on ‖∇²F‖ over B(w₀, 2r) — is estimated by the largest |Ritz value| of Lanczos iterations on
Hessian-vector products (torch double backward) at w₀ and at points of the ball: again a value attained, hence a
lower estimate of the supremum. The GD step of docs/theory.md §2.1 ([derived]) is η = min(1/β, 2(1 − √ρ)/β),
ρ = 4F(w₀)/(r²α).

Points are evaluated in batches through the net's own ensemble forward pass: a batch of N points is an N-member
copy of the chosen member, so one backward pass gives every point its gradient.

Examples:
    >>> from zeroloss.nets import FeedForward
    >>> X = torch.eye(3, dtype=torch.float64); y = torch.tensor([1.0, -1.0, 0.5], dtype=torch.float64)
    >>> obj = MemberObjective(FeedForward(d=3, widths=[], output_bias=False, dtype=torch.float64), X, y)
    >>> est = estimate_alpha(obj, radius=0.1, samples=8, starts=2, steps=5)
    >>> est.value >= 4.0 - 1e-9   # α of ‖Xv − y‖² with XXᵀ = I is 4 everywhere
    True
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from zeroloss.errors import ZerolossInputError
from zeroloss.nets.base import EnsembleNet
from zeroloss.precision import no_tf32

#: Points whose F is below this fraction of F(w₀) are not used for ‖∇F‖²/F: there the residual r = u − y is
#: ≤ 1e-6 ‖r₀‖, within a few orders of magnitude of float64 round-off in u (≈ 1e-16 ‖u‖), so the ratio is noise.
F_FLOOR = 1e-12

#: Descent on ‖∇F‖²/F: first step length as a fraction of r, then ×GROW after an accepted step and ×SHRINK after a
#: rejected one (a standard adaptive step: the value found can only decrease, whatever the landscape's scale).
INITIAL_STEP = 0.1
GROW = 1.5
SHRINK = 0.5


class FlatObjective:
    """A loss F(w) of a flat float64 parameter vector w (p,), evaluated at a batch of points W (N, p).

    Subclasses set ``w0`` (p,) and define ``value(W) -> (N,)``; the gradient and the Hessian-vector products that
    the α/β estimates need come from autograd here, once for every model.
    """

    w0: torch.Tensor

    @property
    def dim(self) -> int:
        """p, the number of parameters."""
        return self.w0.numel()

    def value(self, W: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def value_and_grad(self, W: torch.Tensor, create_graph: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
        """F (N,) and ∇F (N, p) at each row of W."""
        with torch.enable_grad():
            W = W if W.requires_grad else W.detach().requires_grad_(True)
            F = self.value(W)
            (G,) = torch.autograd.grad(F.sum(), W, create_graph=create_graph)
        return F, G

    def hvp(self, W: torch.Tensor, V: torch.Tensor) -> torch.Tensor:
        """∇²F(w_j) v_j for each row (N, p), by double backward."""
        with torch.enable_grad():
            W = W.detach().requires_grad_(True)
            _, G = self.value_and_grad(W, create_graph=True)
            (HV,) = torch.autograd.grad((G * V).sum(), W)
        return HV


class MemberObjective(FlatObjective):
    """F(w) = Σ_i (f(x_i; w) − y_i)² of one member as a function of a flat float64 vector, batched over points.

    Args:
        net: any :class:`~zeroloss.nets.base.EnsembleNet`.
        X: inputs accepted by ``net.check_inputs``.
        y: labels (n,) or (S, n).
        member: which member (default 0).

    Attributes:
        w0: (p,) the member's parameters, flattened in ``named_parameters`` order.
    """

    def __init__(self, net: EnsembleNet, X: torch.Tensor, y: torch.Tensor, member: int = 0) -> None:
        if not 0 <= member < net.members:
            raise ZerolossInputError(f"member: must be in 0..{net.members - 1}, got {member}")
        self.net = net
        self.X = net.check_inputs(X).to(torch.float64)
        y = torch.as_tensor(y, dtype=torch.float64, device=self.X.device)
        n = self.X.shape[0]
        if y.shape == (net.members, n):
            y = y[member]
        if y.shape != (n,):
            raise ZerolossInputError(f"y: must have shape ({n},) or ({net.members}, {n}), got {tuple(y.shape)}")
        self.y = y
        named = [(k, p.detach()[member].to(torch.float64)) for k, p in net.named_parameters()]
        self.names = [k for k, _ in named]
        self.shapes = [tuple(p.shape) for _, p in named]
        self.sizes = [p.numel() for _, p in named]
        self.w0 = torch.cat([p.flatten() for _, p in named])

    def unflatten(self, W: torch.Tensor) -> dict[str, torch.Tensor]:
        """(N, p) → name → (N, *shape)."""
        parts = torch.split(W, self.sizes, dim=1)
        return {k: part.reshape(W.shape[0], *s) for k, part, s in zip(self.names, parts, self.shapes, strict=True)}

    def value(self, W: torch.Tensor) -> torch.Tensor:
        """F at each row of W (N, p): shape (N,)."""
        u = self.net.functional_forward(self.unflatten(W), self.X)[0]
        return (u - self.y).pow(2).sum(dim=1)



def ball_points(center: torch.Tensor, radius: float, count: int, generator: torch.Generator) -> torch.Tensor:
    """``count`` points of B(center, radius): half uniform in the ball (radius·U^{1/p}, which in high dimension
    lies near the sphere), half with a uniform distance radius·U (so the interior is represented too)."""
    p = center.numel()
    dirs = torch.randn(count, p, generator=generator, dtype=torch.float64, device=generator.device)
    dirs /= dirs.norm(dim=1, keepdim=True)
    u = torch.rand(count, generator=generator, dtype=torch.float64, device=generator.device)
    half = count // 2
    dist = torch.cat([u[:half] ** (1.0 / p), u[half:]]) * radius
    return center + (dirs * dist.unsqueeze(1)).to(center.device)


def project_ball(W: torch.Tensor, center: torch.Tensor, radius: float) -> torch.Tensor:
    """Euclidean projection of each row of W onto B(center, radius)."""
    delta = W - center
    norm = delta.norm(dim=1, keepdim=True)
    return center + delta * torch.clamp(radius / norm.clamp_min(1e-300), max=1.0)


def _ratio_and_grad(obj: MemberObjective, W: torch.Tensor, f_floor: float) -> tuple[torch.Tensor, torch.Tensor]:
    """q = ‖∇F‖²/F (N,) (+inf where F < f_floor) and ∇q = 2∇²F∇F/F − q∇F/F (N, p) by double backward."""
    with torch.enable_grad():
        Wg = W.detach().requires_grad_(True)
        F, G = obj.value_and_grad(Wg, create_graph=True)
        q = G.pow(2).sum(dim=1) / F
        (gq,) = torch.autograd.grad(q.sum(), Wg)
    q = torch.where(F >= f_floor, q, torch.full_like(q, math.inf)).detach()
    return q, gq.detach()


def pl_ratio(obj: MemberObjective, W: torch.Tensor, f_floor: float) -> torch.Tensor:
    """‖∇F‖²/F at each row (N,); +inf where F < f_floor (not used)."""
    F, G = obj.value_and_grad(W)
    q = G.pow(2).sum(dim=1) / F
    return torch.where(F >= f_floor, q, torch.full_like(q, math.inf)).detach()


@dataclass
class AlphaEstimate:
    """An *estimate* of α(w₀, r): every value is attained in the ball, so each is an upper bound on the inf.

    Attributes:
        value: min(sampled, descent).
        sampled: smallest ‖∇F‖²/F over the sampled points (w₀ included).
        descent: smallest value met along projected descent from several starts.
        at_w0: ‖∇F(w₀)‖²/F(w₀).
        argmin_distance: ‖w − w₀‖ at the best point found.
        evaluations: number of points at which the ratio was evaluated.
    """

    value: float
    sampled: float
    descent: float
    at_w0: float
    argmin_distance: float
    evaluations: int


def estimate_alpha(
    obj: MemberObjective, radius: float, samples: int = 64, starts: int = 8, steps: int = 60, seed: int = 0,
) -> AlphaEstimate:
    """Estimate α(w₀, r) = inf ‖∇F‖²/F on B(w₀, r) by sampling and by projected descent (labelled estimate).

    Descent: from w₀ and the ``starts − 1`` best sampled points, normalised projected gradient steps on
    q(w) = ‖∇F‖²/F, ∇q = 2∇²F∇F/F − q∇F/F (Hessian-vector product by double backward); a step is kept only if
    it lowers q, and each start's step length adapts (see :data:`INITIAL_STEP`, :data:`GROW`, :data:`SHRINK`).

    Args:
        obj: the member's objective.
        radius: r > 0.
        samples: points drawn in the ball (w₀ is always added).
        starts: descent starts (0 disables descent).
        steps: descent iterations.
        seed: seed of the sampling.
    """
    gen = torch.Generator().manual_seed(seed)
    w0 = obj.w0
    with no_tf32():
        f0 = float(obj.value(w0.unsqueeze(0))[0])
        floor = F_FLOOR * f0
        pts = torch.cat([w0.unsqueeze(0), ball_points(w0, radius, samples, gen)])
        q = pl_ratio(obj, pts, floor)
        best_i = int(torch.argmin(q))
        best, best_point = float(q[best_i]), pts[best_i]
        sampled, at_w0 = best, float(q[0])
        descent = math.inf
        evaluations = pts.shape[0]
        if starts > 0 and steps > 0:
            order = torch.argsort(q)
            chosen = [0] + [int(i) for i in order if int(i) != 0][: starts - 1]
            W = pts[chosen].clone()
            qW, gW = _ratio_and_grad(obj, W, floor)
            length = torch.full((W.shape[0], 1), INITIAL_STEP * radius, dtype=W.dtype, device=W.device)
            for _ in range(steps):
                direction = gW / gW.norm(dim=1, keepdim=True).clamp_min(1e-300)
                trial = project_ball(W - length * direction, w0, radius)
                q_trial, g_trial = _ratio_and_grad(obj, trial, floor)
                evaluations += W.shape[0]
                better = (q_trial < qW).unsqueeze(1)
                W = torch.where(better, trial, W)
                gW = torch.where(better, g_trial, gW)
                qW = torch.where(better.squeeze(1), q_trial, qW)
                length = torch.where(better, length * GROW, length * SHRINK)
            i = int(torch.argmin(qW))
            descent = float(qW[i])
            if descent < best:
                best, best_point = descent, W[i].clone()
    return AlphaEstimate(best, sampled, descent, at_w0, float((best_point - w0).norm()), evaluations)


def lanczos_extreme(obj: MemberObjective, W: torch.Tensor, steps: int, generator: torch.Generator) -> torch.Tensor:
    """Largest |eigenvalue| of ∇²F at each row of W (N, p) by ``steps`` Lanczos iterations (full
    reorthogonalisation, batched over the rows): shape (N,). Ritz values lie inside the spectrum, so each
    result is at most the true ‖∇²F‖ and converges to it as steps → p."""
    N, p = W.shape
    k = min(steps, p)
    q = torch.randn(N, p, generator=generator, dtype=torch.float64, device="cpu").to(W.device)
    q /= q.norm(dim=1, keepdim=True)
    basis = [q]
    alphas, betas = [], []
    for j in range(k):
        w = obj.hvp(W, q)
        a = (w * q).sum(dim=1)
        alphas.append(a)
        if j == k - 1:
            break
        Q = torch.stack(basis, dim=1)  # (N, j+1, p)
        for _ in range(2):  # twice is enough (Kahan–Parlett "twice is enough")
            w = w - torch.einsum("njp,nj->np", Q, torch.einsum("njp,np->nj", Q, w))
        b = w.norm(dim=1)
        # Breakdown (an invariant subspace found): restart with a fresh orthogonal direction, coupling b = 0.
        broke = b <= 1e-12 * a.abs().clamp_min(1.0)
        if broke.any():
            fresh = torch.randn(N, p, generator=generator, dtype=torch.float64, device="cpu").to(W.device)
            for _ in range(2):
                fresh = fresh - torch.einsum("njp,nj->np", Q, torch.einsum("njp,np->nj", Q, fresh))
            w = torch.where(broke.unsqueeze(1), fresh, w)
            b_next = w.norm(dim=1)
            q = w / b_next.unsqueeze(1)
            b = torch.where(broke, torch.zeros_like(b), b)
        else:
            q = w / b.unsqueeze(1)
        betas.append(b)
        basis.append(q)
    T = torch.diag_embed(torch.stack(alphas, dim=1))
    if betas:
        off = torch.stack(betas, dim=1)
        T = T + torch.diag_embed(off, offset=1) + torch.diag_embed(off, offset=-1)
    return torch.linalg.eigvalsh(T).abs().amax(dim=1)


@dataclass
class BetaEstimate:
    """An *estimate* of β = sup ‖∇²F‖ over B(w₀, 2r): the largest Lanczos |Ritz value| at the points probed.

    Attributes:
        value: max over the points.
        at_w0: the value at w₀.
        points: how many points were probed (w₀ and points on the sphere of radius 2r).
        lanczos_steps: iterations per point.
    """

    value: float
    at_w0: float
    points: int
    lanczos_steps: int


def estimate_beta(obj: MemberObjective, radius: float, points: int = 4, lanczos_steps: int = 30,
                  seed: int = 0) -> BetaEstimate:
    """Estimate β on B(w₀, 2r) (docs/theory.md §2.1): Lanczos at w₀ and at ``points − 1`` random points at distance
    2r."""
    gen = torch.Generator().manual_seed(seed + 1)
    w0 = obj.w0
    pts = [w0.unsqueeze(0)]
    if points > 1:
        dirs = torch.randn(points - 1, obj.dim, generator=gen, dtype=torch.float64, device="cpu").to(w0.device)
        pts.append(w0 + 2.0 * radius * dirs / dirs.norm(dim=1, keepdim=True))
    with no_tf32():
        values = lanczos_extreme(obj, torch.cat(pts), lanczos_steps, gen)
    return BetaEstimate(float(values.max()), float(values[0]), len(values), min(lanczos_steps, obj.dim))


def allowed_step(alpha: float | None, beta: float, f0: float, radius: float) -> tuple[float | None, float | None]:
    """(η, ρ) of docs/theory.md §2.1 [derived]: ρ = 4F(w₀)/(r²α) and η = min(1/β, 2(1 − √ρ)/β) when ρ < 1, else
    (None, ρ).

    η is the step of GD on F = Σ(u − y)²; :func:`zeroloss.train_gd` minimises L = F/2, so its ``lr`` is 2η.

    Examples:
        >>> allowed_step(alpha=4.0, beta=2.0, f0=0.25, radius=1.0)
        (0.5, 0.25)
    """
    if alpha is None or alpha <= 0.0 or not math.isfinite(alpha):
        return None, None
    rho = 4.0 * f0 / (radius**2 * alpha)
    if rho >= 1.0 or beta <= 0.0:
        return None, rho
    return min(1.0 / beta, 2.0 * (1.0 - math.sqrt(rho)) / beta), rho
