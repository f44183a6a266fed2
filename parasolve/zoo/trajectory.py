"""A toy 2-D planning task and a small trajectory diffusion policy (the paper's robotics rows, locally).

The task. A point robot in the box ``[-1, 1]^2`` must move from a start ``s`` to a goal ``g`` around a
disc obstacle of radius :data:`OBSTACLE_RADIUS` centred at the origin. An action sequence is
:data:`HORIZON` = 16 waypoints ``(16, 2)``; the condition (the "observation") is ``(s, g)``, 4 numbers.

The expert (:func:`expert_paths`, deterministic given the side choice). Waypoint ``k`` sits at
``u_k = k / 15`` on the curve ``p(u) = s + u (g - s) + side * a * sin(pi u) * n``, where ``n`` is the
unit normal of ``g - s`` (rotated +90 degrees) and ``side`` is +1 or -1. So waypoint 0 is ``s`` and
waypoint 15 is ``g``. If the straight line keeps a clearance of ``OBSTACLE_RADIUS + EXPERT_MARGIN``
from the origin at every point of a dense grid of ``u`` (121 points, including the waypoints),
``a = 0``. Otherwise ``a`` is the smallest amplitude for which every larger amplitude also clears the
obstacle with that margin, on the chosen side. If the path leaves the box on that side, the other side
is used. So blocked start/goal pairs have two modes (left or right of the obstacle), the side drawn
with probability 1/2 from the generator: the data is multimodal, as in diffusion-policy tasks.

:func:`make_dataset` draws ``s, g`` uniformly in ``[-0.95, 0.95]^2`` with ``|s|, |g| >= 0.4`` and
``|g - s| >= 0.5``, rejecting pairs for which neither side fits in the box. All waypoints lie in
``[-1, 1]``, so the actions need no normalisation and a sampler may clip its ``x_0`` estimate to
``[-1, 1]`` (``clip_sample=True``), as Diffusion Policy does.

The model. :class:`TrajectoryDenoiser` is a residual MLP predicting the noise ``epsilon`` of a DDPM
with :data:`NUM_TRAIN_TIMESTEPS` = 100 steps and the cosine schedule ("squaredcos_cap_v2", see
:func:`schedule`), the set-up of Diffusion Policy. :func:`load_trajectory_model` loads the
shipped weights (trained by ``python -m parasolve.zoo.training.train_trajectory``);
:func:`trajectory_denoiser` wraps it as a :class:`~parasolve.diffusion.Denoiser` for
:func:`parasolve.diffusion.sample` (``shape=(B, 16, 2)``, ``cond=(B, 4)``, ``sampler="ddpm"``, ``steps=100``).
:func:`ddpm_sample` is the plain sequential DDPM-100 sampler, kept as the reference the parallel
samplers are compared with; :func:`task_score` scores sampled actions.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn
from torch.nn import functional as F

from .._checks import check_positive_int
from ..diffusion.denoiser import Denoiser
from ..diffusion.schedules import alphas_cumprod
from .unet import timestep_embedding

__all__ = [
    "HORIZON", "OBSTACLE_RADIUS", "EXPERT_MARGIN", "GOAL_TOLERANCE", "SMOOTHNESS_LIMIT", "NUM_TRAIN_TIMESTEPS",
    "WEIGHTS_PATH", "expert_paths", "make_dataset", "TrajectoryDenoiser", "schedule",
    "load_trajectory_model", "trajectory_denoiser", "ddpm_sample", "TaskScore", "task_score",
]

HORIZON = 16
OBSTACLE_RADIUS = 0.3
EXPERT_MARGIN = 0.05
GOAL_TOLERANCE = 0.1
SMOOTHNESS_LIMIT = 0.01
NUM_TRAIN_TIMESTEPS = 100
WEIGHTS_PATH = Path(__file__).parent / "weights" / "trajectory_mlp.pt"

_BOX = 1.0
_SAMPLE_BOX = 0.95
_MIN_NORM = 0.4
_MIN_DISTANCE = 0.5
_DENSE = 121  # dense curve points; u = j / 120 contains every waypoint u_k = k / 15


def _check_endpoints(name: str, value: torch.Tensor) -> torch.Tensor:
    if not isinstance(value, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor of shape (B, 2), got {type(value).__name__}")
    if value.dim() != 2 or value.shape[1] != 2:
        raise ValueError(f"{name} must have shape (B, 2), got {tuple(value.shape)}")
    return value


def _curves(start: torch.Tensor, goal: torch.Tensor, amplitude: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
    """Points ``(B, len(u), 2)`` of ``s + u (g - s) + amplitude * sin(pi u) * n`` (amplitude signed)."""
    d = goal - start
    normal = torch.stack([-d[:, 1], d[:, 0]], dim=1) / d.norm(dim=1, keepdim=True)
    bump = torch.sin(math.pi * u)
    return (start[:, None] + u[None, :, None] * d[:, None]
            + (amplitude[:, None] * bump[None, :])[..., None] * normal[:, None])


def _clearing_amplitude(start: torch.Tensor, goal: torch.Tensor, side: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
    """Smallest ``a >= 0`` with ``|p(u)| >= R + margin`` on the dense grid for every amplitude ``>= a``.

    At each ``u``, ``|c + a b n|^2 >= r^2`` (``c`` on the line, ``b = side sin(pi u)``) is a quadratic in
    ``a``; the amplitudes it excludes lie below its larger root, so the answer is the largest root (or 0).
    """
    r = OBSTACLE_RADIUS + EXPERT_MARGIN
    line = _curves(start, goal, torch.zeros_like(side), u)
    if bool(((line.norm(dim=-1) >= r).all(dim=1)).all()):
        return torch.zeros_like(side)
    d = goal - start
    normal = torch.stack([-d[:, 1], d[:, 0]], dim=1) / d.norm(dim=1, keepdim=True)
    b = side[:, None] * torch.sin(math.pi * u)[None]            # (B, U)
    cn = (line * normal[:, None]).sum(-1)                        # (B, U)
    cc = (line * line).sum(-1) - r * r                           # (B, U)
    qa, qb = b * b, 2 * b * cn
    disc = (qb * qb - 4 * qa * cc).clamp_min(0)
    safe = qa > 1e-12
    root = torch.where(safe, (-qb + disc.sqrt()) / (2 * qa.clamp_min(1e-12)), torch.zeros_like(qa))
    blocked = (line.norm(dim=-1) < r).any(dim=1)
    return torch.where(blocked, root.clamp_min(0).amax(dim=1), torch.zeros_like(side))


def expert_paths(start: torch.Tensor, goal: torch.Tensor, side: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Expert waypoints ``(B, 16, 2)`` and a mask ``(B,)`` of pairs whose path fits in the box.

    ``side`` ``(B,)`` holds +1 or -1: the preferred side of the obstacle (used only when the straight
    line is blocked; the other side is taken when the preferred one leaves the box). Float64 inside.
    """
    start, goal = _check_endpoints("start", start), _check_endpoints("goal", goal)
    if not isinstance(side, torch.Tensor):
        raise TypeError(f"side must be a torch.Tensor of +1/-1 of shape (B,), got {type(side).__name__}")
    if side.shape != (start.shape[0],) or goal.shape != start.shape:
        raise ValueError(f"start, goal must be (B, 2) and side (B,), got {tuple(start.shape)}, "
                         f"{tuple(goal.shape)}, {tuple(side.shape)}")
    s, g, sd = start.double(), goal.double(), side.double().sign()
    if bool((sd == 0).any()):
        raise ValueError("side must hold only +1 or -1")
    if bool(((g - s).norm(dim=1) < 1e-9).any()):
        raise ValueError("start and goal must differ in every row (the path's normal is undefined otherwise)")
    dense = torch.linspace(0, 1, _DENSE, dtype=torch.float64)
    waypoints_u = torch.arange(HORIZON, dtype=torch.float64) / (HORIZON - 1)
    best, fits = None, torch.zeros(s.shape[0], dtype=torch.bool)
    for choice in (sd, -sd):
        amp = choice * _clearing_amplitude(s, g, choice, dense)
        inside = (_curves(s, g, amp, dense).abs() <= _BOX).all(dim=2).all(dim=1)
        path = _curves(s, g, amp, waypoints_u)
        best = path if best is None else torch.where((inside & ~fits)[:, None, None], path, best)
        fits = fits | inside
    return best.to(start.dtype), fits


def make_dataset(n: int, generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Draw ``n`` expert demonstrations: ``(actions (n, 16, 2), cond (n, 4) = (start, goal))``, float32.

    Deterministic for a seeded ``generator`` (rejection sampling in fixed-size rounds).
    """
    check_positive_int("n", n, fix="Pass the number of demonstrations to draw.")
    actions, conds, have = [], [], 0
    while have < n:
        m = min(max(64, 2 * (n - have)), 8192)
        pts = (torch.rand(m, 4, generator=generator, dtype=torch.float64) * 2 - 1) * _SAMPLE_BOX
        side = torch.where(torch.rand(m, generator=generator) < 0.5, 1.0, -1.0).double()
        s, g = pts[:, :2], pts[:, 2:]
        ok = (s.norm(dim=1) >= _MIN_NORM) & (g.norm(dim=1) >= _MIN_NORM) & ((g - s).norm(dim=1) >= _MIN_DISTANCE)
        s, g, side = s[ok], g[ok], side[ok]
        path, fits = expert_paths(s, g, side)
        actions.append(path[fits])
        conds.append(torch.cat([s, g], dim=1)[fits])
        have += int(fits.sum())
    return torch.cat(actions)[:n].float(), torch.cat(conds)[:n].float()


def schedule() -> torch.Tensor:
    """The model's training schedule ``alpha_bar_t``, ``t = 0 .. 99`` (cosine, "squaredcos_cap_v2"; float32)."""
    return alphas_cumprod("squaredcos_cap_v2", NUM_TRAIN_TIMESTEPS)


class _Block(nn.Module):
    """Pre-LayerNorm residual MLP block with the (time, condition) embedding added in the middle."""

    def __init__(self, width: int, emb_dim: int):
        super().__init__()
        self.norm = nn.LayerNorm(width)
        self.fc1, self.emb, self.fc2 = nn.Linear(width, width), nn.Linear(emb_dim, width), nn.Linear(width, width)
        nn.init.zeros_(self.fc2.weight)
        nn.init.zeros_(self.fc2.bias)

    def forward(self, h: torch.Tensor, emb: torch.Tensor) -> torch.Tensor:
        z = F.silu(self.fc1(self.norm(h)) + self.emb(emb))
        return h + self.fc2(z)


class TrajectoryDenoiser(nn.Module):
    """Residual-MLP epsilon-predictor for action sequences ``(B, 16, 2)`` conditioned on ``(s, g)``.

    ``forward(x, t, cond)``: noisy actions ``x`` ``(B, 16, 2)``, timesteps ``t`` ``(B,)`` (integer or float
    in ``[0, 100)``; a scalar is broadcast), condition ``cond`` ``(B, 4)`` = (start, goal); returns
    ``epsilon`` shaped like ``x``. No batch statistics: samples are processed independently.
    """

    def __init__(self, width: int = 160, depth: int = 3, emb_dim: int = 128, horizon: int = HORIZON):
        super().__init__()
        self.width, self.depth, self.emb_dim, self.horizon = width, depth, emb_dim, horizon
        self.embed = nn.Sequential(nn.Linear(64 + 4, emb_dim), nn.SiLU(), nn.Linear(emb_dim, emb_dim))
        self.inp = nn.Linear(2 * horizon + 4, width)
        self.blocks = nn.ModuleList(_Block(width, emb_dim) for _ in range(depth))
        self.norm_out = nn.LayerNorm(width)
        self.out = nn.Linear(width, 2 * horizon)
        nn.init.zeros_(self.out.weight)
        nn.init.zeros_(self.out.bias)

    def config(self) -> dict:
        return {"width": self.width, "depth": self.depth, "emb_dim": self.emb_dim, "horizon": self.horizon}

    def forward(self, x: torch.Tensor, t: torch.Tensor | float, cond: torch.Tensor | None = None) -> torch.Tensor:
        if x.dim() != 3 or x.shape[1:] != (self.horizon, 2):
            raise ValueError(f"x must have shape (B, {self.horizon}, 2), got {tuple(x.shape)}")
        if cond is None:
            raise ValueError("cond is required: pass cond=(B, 4) tensor of (start, goal)")
        if cond.shape != (x.shape[0], 4):
            raise ValueError(f"cond must have shape ({x.shape[0]}, 4), got {tuple(cond.shape)}")
        t = torch.as_tensor(t, device=x.device)
        if t.dim() == 0:
            t = t.expand(x.shape[0])
        if t.shape != (x.shape[0],):
            raise ValueError(f"t must have shape ({x.shape[0]},) or be a scalar, got {tuple(t.shape)}")
        dtype = self.inp.weight.dtype
        cond = cond.to(dtype)
        emb = self.embed(torch.cat([timestep_embedding(t, 64, max_period=1000.0).to(dtype), cond], dim=1))
        h = self.inp(torch.cat([x.reshape(x.shape[0], -1).to(dtype), cond], dim=1))
        for block in self.blocks:
            h = block(h, emb)
        return self.out(F.silu(self.norm_out(h))).reshape(x.shape).to(x.dtype)


def load_trajectory_model(path: str | Path | None = None, device: str | torch.device = "cpu") -> TrajectoryDenoiser:
    """The shipped :class:`TrajectoryDenoiser` (EMA weights) in eval mode, with gradients off."""
    path = Path(path) if path is not None else WEIGHTS_PATH
    if not path.is_file():
        raise FileNotFoundError(f"no trajectory weights at {path}; train them with "
                                "`python -m parasolve.zoo.training.train_trajectory`")
    blob = torch.load(path, map_location="cpu", weights_only=True)
    model = TrajectoryDenoiser(**blob["config"])
    model.load_state_dict(blob["state_dict"])
    return model.eval().requires_grad_(False).to(device)


def trajectory_denoiser(device: str | torch.device | None = None, path: str | Path | None = None) -> Denoiser:
    """The shipped model as a conditional :class:`~parasolve.diffusion.Denoiser` (epsilon, clip to [-1, 1])."""
    model = load_trajectory_model(path, device if device is not None else "cpu")
    param = next(model.parameters())
    return Denoiser(model, schedule(), prediction_type="epsilon", config={"clip_sample": True},
                    conditional=True, device=param.device, dtype=param.dtype, name="trajectory MLP")


@torch.no_grad()
def ddpm_sample(model, cond: torch.Tensor, generator: torch.Generator | None = None,
                clip: bool = True) -> torch.Tensor:
    """Sequential ancestral DDPM-100 sampling as a plain loop: the reference for every other sampler.

    ``model(x, t, cond)`` predicts ``eps``. From ``x_T ~ N(0, I)``, each step forms
    ``x0 = (x - sqrt(1-abar) eps)/sqrt(abar)`` (clipped to ``[-1, 1]`` if ``clip``), takes the posterior
    mean ``(sqrt(abar_prev) beta / (1-abar)) x0 + (sqrt(alpha) (1-abar_prev) / (1-abar)) x`` and adds
    ``sqrt(beta (1-abar_prev)/(1-abar)) z`` (no noise at the last step). Arithmetic in float64; the
    normals are float32 draws from ``generator``, ``x_T`` first and then ``z`` for t = 99 .. 1 (the order
    of diffusers' loop and of :func:`parasolve.diffusion.sample`, so both see the same noise).
    """
    if not isinstance(cond, torch.Tensor) or cond.dim() != 2 or cond.shape[1] != 4:
        raise ValueError(f"cond must be a tensor of shape (B, 4), got "
                         f"{tuple(cond.shape) if isinstance(cond, torch.Tensor) else type(cond).__name__}")
    abar = schedule().double().to(cond.device)
    abar_prev = torch.cat([torch.ones(1, dtype=torch.float64, device=cond.device), abar[:-1]])
    betas = 1 - abar / abar_prev
    shape = (cond.shape[0], HORIZON, 2)

    def normal() -> torch.Tensor:
        gen_device = generator.device if generator is not None else cond.device
        return torch.randn(shape, generator=generator, device=gen_device).to(cond.device, torch.float64)

    x = normal()
    for t in range(NUM_TRAIN_TIMESTEPS - 1, -1, -1):
        eps = model(x.float(), torch.full((shape[0],), t, device=cond.device), cond).double()
        ab, ab_prev, beta = abar[t], abar_prev[t], betas[t]
        x0 = (x - (1 - ab).sqrt() * eps) / ab.sqrt()
        if clip:
            x0 = x0.clamp(-1, 1)
        x = (ab_prev.sqrt() * beta / (1 - ab)) * x0 + ((1 - beta).sqrt() * (1 - ab_prev) / (1 - ab)) * x
        if t > 0:
            x = x + (beta * (1 - ab_prev) / (1 - ab)).sqrt() * normal()
    return x.to(cond.dtype)


@dataclass(frozen=True)
class TaskScore:
    """Per-sample task metrics (all tensors of shape ``(B,)``).

    ``start_reached``: first waypoint within :data:`GOAL_TOLERANCE` of the start; ``goal_reached``: last
    waypoint within :data:`GOAL_TOLERANCE` of the goal; ``collision_free``: no waypoint strictly inside
    the obstacle disc; ``in_bounds``: all waypoints in ``[-1, 1]^2`` (up to 1e-6); ``smoothness``: mean
    over the 14 interior waypoints of the squared norm of the second difference (0 for a straight
    line at constant speed); ``success``: all four flags and ``smoothness <= SMOOTHNESS_LIMIT``.
    """

    start_reached: torch.Tensor
    goal_reached: torch.Tensor
    collision_free: torch.Tensor
    in_bounds: torch.Tensor
    smoothness: torch.Tensor
    success: torch.Tensor

    def summary(self) -> dict[str, float]:
        """Rates of each flag and the mean smoothness, as plain floats."""
        return {name: float(getattr(self, name).double().mean()) for name in
                ("success", "start_reached", "goal_reached", "collision_free", "in_bounds", "smoothness")}


def task_score(actions: torch.Tensor, start: torch.Tensor, goal: torch.Tensor) -> TaskScore:
    """Score action sequences ``(B, 16, 2)`` for start/goal pairs ``(B, 2)`` (see :class:`TaskScore`)."""
    if not isinstance(actions, torch.Tensor) or actions.dim() != 3 or actions.shape[1:] != (HORIZON, 2):
        raise ValueError(f"actions must be a tensor of shape (B, {HORIZON}, 2), got "
                         f"{tuple(actions.shape) if isinstance(actions, torch.Tensor) else type(actions).__name__}")
    start, goal = _check_endpoints("start", start), _check_endpoints("goal", goal)
    if start.shape[0] != actions.shape[0] or goal.shape[0] != actions.shape[0]:
        raise ValueError(f"start and goal must have {actions.shape[0]} rows like actions, "
                         f"got {start.shape[0]} and {goal.shape[0]}")
    a = actions.double()
    if not bool(torch.isfinite(a).all()):
        raise ValueError("actions contain NaN or Inf")
    start_reached = (a[:, 0] - start.double()).norm(dim=1) <= GOAL_TOLERANCE
    goal_reached = (a[:, -1] - goal.double()).norm(dim=1) <= GOAL_TOLERANCE
    collision_free = (a.norm(dim=2) >= OBSTACLE_RADIUS).all(dim=1)
    in_bounds = (a.abs() <= _BOX + 1e-6).all(dim=2).all(dim=1)
    second = a[:, 2:] - 2 * a[:, 1:-1] + a[:, :-2]
    smoothness = (second ** 2).sum(dim=2).mean(dim=1)
    success = start_reached & goal_reached & collision_free & in_bounds & (smoothness <= SMOOTHNESS_LIMIT)
    return TaskScore(start_reached, goal_reached, collision_free, in_bounds, smoothness, success)
