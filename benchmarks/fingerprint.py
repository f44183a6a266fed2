"""A fingerprint of what the solver computes, to show that a refactoring changed nothing.

    PYTHONPATH=/path/to/tree python benchmarks/fingerprint.py --out fingerprint.json

Over a fixed set of ODE, SDE, odeint/sdeint and diffusion configurations (schemes sequential,
picard, newton, anderson, parareal; windows; save modes; warm starts; unconverged and NaN solves
with ``throw=False``; gradients by the discrete adjoint, Picard and scan, with checkpoints and
with tensors the drift closes over; the exact Gaussian-mixture denoiser's DDPM, DDIM, DPM-Solver++,
SDE-DPM-Solver++ and UniPC samplers, per sample too -- not the Karras-sigma samplers, which the
exact denoiser does not take: it indexes its schedule by integer timesteps) it records, per configuration, the
status, sweeps, evaluations, drift calls, the defect sums (``float.hex``, bit for bit), the sweep
history and a SHA-256 of the trajectory's bytes (and of the gradients). Two source trees compute
the same thing iff their JSON files are identical. Public API only, so that any tree since the
engine redesign can be fingerprinted; one torch thread (bitwise reproducible on the CPU).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import sys
import warnings

import torch

import parasolve
from parasolve import diffusion, problems

F64 = torch.float64


def digest(*tensors) -> str:
    """SHA-256 of the tensors' dtypes, shapes and bytes."""
    h = hashlib.sha256()
    for x in tensors:
        if x is None:
            h.update(b"none")
            continue
        x = x.detach().contiguous().cpu()
        h.update(f"{x.dtype}{tuple(x.shape)}".encode())
        h.update(x.reshape(-1).view(torch.uint8).numpy().tobytes() if x.numel() else b"")
    return h.hexdigest()[:24]


def exact(value: float) -> str:
    return float(value).hex() if not math.isnan(value) else "nan"


def record(sol) -> dict:
    """Everything a solve reports, bit for bit."""
    s = sol.stats
    out = {"status": sol.status.value, "method": sol.method, "step": sol.step, "sweeps": s.iterations,
           "nfe": s.nfe, "drift_calls": s.drift_calls, "window": s.window, "defect_sum": exact(s.defect_sum),
           "weighted_defect_sum": exact(s.weighted_defect_sum), "fallbacks": s.fallbacks,
           "noise_floor": exact(s.noise_floor),
           "history": hashlib.sha256(repr([(r.sweep, r.start, r.end, exact(r.residual), r.accepted)
                                           for r in s.history]).encode()).hexdigest()[:24],
           "ys": digest(_defined(sol)), "ts": digest(sol.ts), "failure": None if sol.failure is None else str(sol.failure)}
    if s.per_sample is not None:
        out["per_sample"] = [[p.iterations, p.nfe, exact(p.defect_sum)] for p in s.per_sample]
    return out


def _defined(sol):
    """The states a solve defined: after a NaN/Inf failure the rows past the failing step are
    unwritten buffer rows (``torch.empty``: arbitrary bytes, "not a solution" per ``Status``)."""
    index = getattr(sol.failure, "index", None)
    if index is None or sol.ys.shape[0] != sol.ts.shape[0] or sol.ys.shape[0] == 1:
        return sol.ys
    return sol.ys[:index + 1]


def backward_record(b) -> dict:
    return {"method": b.method, "sweeps": b.sweeps, "vjp_rounds": b.vjp_rounds, "drift_calls": b.drift_calls,
            "nfe": b.nfe, "window": b.window, "defect_sum": exact(b.defect_sum),
            "cotangent_sum": exact(b.cotangent_sum), "history": len(b.history)}


# --------------------------------------------------------------------------- ODE and SDE solves

def ode_configs():
    lin, osc, vdp = problems.linear(), problems.harmonic(), problems.van_der_pol()
    for prob in (lin, osc, vdp):
        t = prob.grid(48)
        for method in ("sequential", "picard", "newton", "anderson", "parareal"):
            for window, save in ((None, "all"), (16, "all"), (16, "last")):
                yield f"ode/{prob.name}/{method}/w{window}/{save}", dict(
                    f=prob.f, y0=prob.y0, t=t, method=method, window=window, save=save, tol=1e-8)
    t = osc.grid(40)
    for step in ("midpoint", "heun", "rk4", "ab2"):
        for method in ("picard", "anderson", "newton"):
            yield f"ode/harmonic/{method}/{step}", dict(f=osc.f, y0=osc.y0, t=t, method=method, step=step,
                                                        window=12, tol=1e-9)
    yield "ode/harmonic/auto", dict(f=osc.f, y0=osc.y0, t=t)
    yield "ode/harmonic/picard/float32", dict(f=osc.f, y0=osc.y0.float(), t=t, method="picard")
    yield "ode/harmonic/picard/init", dict(f=osc.f, y0=osc.y0, t=t, method="picard", tol=1e-10,
                                           init=torch.zeros(41, 2, dtype=F64) + osc.y0)
    yield "ode/vdp/picard/max_iters", dict(f=vdp.f, y0=vdp.y0, t=vdp.grid(64), method="picard", max_iters=5,
                                           throw=False)
    yield "ode/vdp/parareal/max_iters", dict(f=vdp.f, y0=vdp.y0, t=vdp.grid(64), method="parareal", max_iters=2,
                                             throw=False)
    blow = lambda t, y: y ** 2  # noqa: E731  (finite-time blow-up at t = 1 from y0 = 1)
    for method in ("sequential", "picard", "anderson", "newton", "parareal"):
        yield f"ode/blowup/{method}", dict(f=blow, y0=torch.ones(1, dtype=F64),
                                           t=torch.linspace(0, 3, 31, dtype=F64), method=method, throw=False)
    yield "ode/anderson/options", dict(f=vdp.f, y0=vdp.y0, t=vdp.grid(64), method="anderson",
                                       options={"memory": 5}, window=32)
    for jacobian in ("diagonal", "full"):
        yield f"ode/newton/{jacobian}", dict(f=vdp.f, y0=vdp.y0, t=vdp.grid(64), method="newton",
                                             options={"jacobian": jacobian}, window=32)
    yield "ode/parareal/coarse_steps", dict(f=osc.f, y0=osc.y0, t=osc.grid(64), method="parareal",
                                            options={"segments": 8, "coarse_steps": 2})
    yield "ode/radau5/newton", dict(f=vdp.f, y0=vdp.y0, t=vdp.grid(32), method="newton", step="radau5")
    yield "ode/radau5/picard", dict(f=vdp.f, y0=vdp.y0, t=vdp.grid(32), method="picard", step="radau5")
    yield "ode/progress", dict(f=osc.f, y0=osc.y0, t=osc.grid(32), method="picard", progress=True)


def sde_configs():
    ou = problems.ornstein_uhlenbeck(paths=8)
    t, y0 = torch.linspace(0, 2, 65, dtype=F64), ou.y0
    for method in ("sequential", "picard", "anderson", "newton"):
        for window, save in ((None, "all"), (16, "last")):
            yield f"sde/ou/{method}/w{window}/{save}", dict(
                f=ou.f, g=ou.g, y0=y0, t=t, method=method, window=window, save=save, tol=1e-8,
                generator=torch.Generator().manual_seed(3))


def run_solve(cfg: dict) -> dict:
    cfg = dict(cfg)
    if "g" in cfg:
        sol = parasolve.solve_sde(cfg.pop("f"), cfg.pop("g"), cfg.pop("y0"), cfg.pop("t"), **cfg)
    else:
        sol = parasolve.solve(cfg.pop("f"), cfg.pop("y0"), cfg.pop("t"), **cfg)
    return record(sol)


# --------------------------------------------------------------------------- gradients

class Decay(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.a = torch.nn.Parameter(torch.tensor([-0.7, -1.3], dtype=F64))
        self.b = torch.nn.Parameter(torch.tensor(0.4, dtype=F64))

    def forward(self, t, y):
        return self.a * y + self.b * torch.sin(t) * y.flip(-1)


def gradient_configs():
    t = torch.linspace(0, 2, 41, dtype=F64)
    for method in ("picard", "newton", "anderson", "parareal", "sequential"):
        for adj in ({"method": "picard"}, {"method": "scan"}, {"method": "picard", "window": 8},
                    {"method": "picard", "checkpoint": 4}):
            if method == "sequential" and adj.get("window"):
                continue
            for save in ("all", "last"):
                yield f"grad/{method}/{adj}/{save}", dict(method=method, adjoint_options=adj, save=save, t=t)
    yield "grad/picard/ab2", dict(method="picard", step="ab2", adjoint_options={"method": "picard"}, t=t,
                                  save="all")
    yield "grad/picard/ab2/scan", dict(method="picard", step="ab2", adjoint_options={"method": "scan"}, t=t,
                                       save="all")
    yield "grad/picard/rk4/t", dict(method="picard", step="rk4", adjoint_options={"method": "picard"},
                                    t=t.clone().requires_grad_(True), save="all")
    yield "grad/picard/hidden", dict(method="picard", hidden=True, t=t, save="all")
    yield "grad/picard/hidden/last", dict(method="picard", hidden=True, t=t, save="last")
    yield "grad/picard/unconverged", dict(method="picard", t=t, save="all", max_iters=3, throw=False)
    yield "grad/sde/picard", dict(method="picard", t=t, save="all", sde=True)


def run_gradient(cfg: dict) -> dict:
    cfg = dict(cfg)
    torch.manual_seed(0)
    model = Decay()
    y0 = torch.tensor([1.0, -0.5], dtype=F64, requires_grad=True)
    t = cfg.pop("t")
    if cfg.pop("hidden", False):
        w = torch.tensor(0.9, dtype=F64, requires_grad=True)
        f = lambda t, y: -w * y  # noqa: E731  (closes over a tensor requiring grad: found by the solve)
        params = [w]
    else:
        f, params = model, list(model.parameters())
    if cfg.pop("sde", False):
        sol = parasolve.solve_sde(f, lambda t, y: 0.1 * torch.ones_like(y), y0, t,
                                  generator=torch.Generator().manual_seed(5), **cfg)
    else:
        sol = parasolve.solve(f, y0, t, **cfg)
    out = record(sol)
    loss = (sol.ys ** 2).sum() + sol.ys[-1, 0]
    inputs = [y0, *params] + ([t] if t.requires_grad else [])
    try:
        grads = torch.autograd.grad(loss, inputs, allow_unused=True)
        out["grads"] = digest(*grads)
        out["backward"] = backward_record(sol.backward)
    except Exception as exc:  # noqa: BLE001  (an unconverged forward has no gradient: the error is part of the print)
        out["grads"] = f"{type(exc).__name__}: {exc}"
    return out


# --------------------------------------------------------------------------- odeint / sdeint

def run_odeint(method: str) -> dict:
    osc = problems.van_der_pol()
    res = parasolve.odeint(osc.f, osc.y0, torch.linspace(0, 2, 21, dtype=F64), method=method, rtol=1e-6,
                           atol=1e-8, full_output=True)
    s = res.stats
    return {"ys": digest(res.ys if hasattr(res, "ys") else res[0]), "grid": digest(res.grid),
            "stats": repr(s)[:2000]}


def run_sdeint() -> dict:
    class SDE(torch.nn.Module):
        noise_type, sde_type = "diagonal", "ito"

        def f(self, t, y):
            return -y

        def g(self, t, y):
            return 0.2 * torch.ones_like(y)

    y0 = torch.ones(4, 2, dtype=F64)
    ys = parasolve.sdeint(SDE(), y0, torch.linspace(0, 1, 11, dtype=F64), dt=0.02,
                          generator=torch.Generator().manual_seed(2))
    return {"ys": digest(ys)}


# --------------------------------------------------------------------------- diffusion

def diffusion_configs():
    for sampler, steps in (("ddpm", 60), ("ddim", 40), ("dpmsolver++", 20), ("unipc", 20),
                           ("sde-dpmsolver++", 20)):
        for method, window in (("sequential", 64), ("picard", 16), ("newton", 64), ("anderson", 32)):
            yield f"diffusion/{sampler}/{method}/w{window}", dict(sampler=sampler, steps=steps, method=method,
                                                                  window=window)
    yield "diffusion/ddpm/per_sample", dict(sampler="ddpm", steps=60, method="picard", window=16, per_sample=True)
    yield "diffusion/ddim/save_all", dict(sampler="ddim", steps=40, method="picard", window=40, save="all")
    yield "diffusion/ddim/max_iters", dict(sampler="ddim", steps=40, method="picard", window=40, max_iters=2,
                                           throw=False)
    yield "diffusion/ddim/grad", dict(sampler="ddim", steps=20, method="picard", window=20, grad=True)


def run_diffusion(cfg: dict) -> dict:
    cfg = dict(cfg)
    data = torch.rand(8, 2, 3, generator=torch.Generator().manual_seed(0)) * 2 - 1
    den = diffusion.exact_denoiser(data, std=0.05)
    x_T = None
    if cfg.pop("grad", False):
        x_T = torch.randn(3, 2, 3, generator=torch.Generator().manual_seed(9)).requires_grad_(True)
    out = diffusion.sample(den, (3, 2, 3), x_T=x_T, generator=torch.Generator().manual_seed(1), **cfg)
    rec = record(out.solution)
    rec["x"] = digest(out.x, out.noise)
    if x_T is not None:
        (grad,) = torch.autograd.grad(out.x.square().sum(), x_T)
        rec["grad"] = digest(grad)
    return rec


# --------------------------------------------------------------------------- the print

def fingerprint(select: str = "") -> dict:
    torch.set_num_threads(1)
    groups = [(ode_configs(), run_solve), (sde_configs(), run_solve), (gradient_configs(), run_gradient),
              (diffusion_configs(), run_diffusion)]
    result = {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for configs, runner in groups:
            for name, cfg in configs:
                if select in name:
                    try:
                        result[name] = runner(cfg)
                    except Exception as exc:  # noqa: BLE001  (a raised error is part of the print)
                        result[name] = {"error": f"{type(exc).__name__}: {exc}"}
        for method in ("dopri5", "rk4", "radau"):
            if select in f"odeint/{method}":
                try:
                    result[f"odeint/{method}"] = run_odeint(method)
                except Exception as exc:  # noqa: BLE001
                    result[f"odeint/{method}"] = {"error": f"{type(exc).__name__}: {exc}"}
        if select in "sdeint":
            result["sdeint"] = run_sdeint()
    return result


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=None, help="write the JSON here (default: stdout)")
    parser.add_argument("--select", default="", help="only configurations whose name contains this")
    args = parser.parse_args(argv)
    text = json.dumps(fingerprint(args.select), indent=1, sort_keys=True) + "\n"
    if args.out:
        with open(args.out, "w") as fh:
            fh.write(text)
    else:
        sys.stdout.write(text)


if __name__ == "__main__":
    main()
