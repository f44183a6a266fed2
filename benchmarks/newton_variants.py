"""Newton's derivative and robustness variants (issue 22, "Larger states"): ``--group variants`` of
``bench_larger_states.py`` (docs/benchmarks/larger-states.md, section 3).

- exact Jacobians by forward-mode AD (``options={"derivative": "jvp"}``) against the finite
  differences: evaluations (a tangent counts as one), sweeps, CPU time of the two interleaved;
- the Jacobian models on fixed RK4 grids: full, exact diagonal (quasi-DEER), ``s I`` + rank-r
  oracle, the secants, Picard; what a sweep's measurement and scans cost;
- damping on long, eccentric and stiff-ish problems (safeguard, fixed damping, a per-step trust factor);
- float32, and odeint on long horizons with each parallel scheme forced.

    python benchmarks/bench_larger_states.py --group variants
"""

from __future__ import annotations

import math
import os
import platform
import statistics
import time
import warnings
from dataclasses import replace

import torch

import parasolve
import parasolve.discrete_problem
import parasolve.drift
from parasolve.evaluators import tangents_per_point
from parasolve.schemes import Newton
from parasolve.schemes.base import per_step
from suite_rows import all_rows, kepler, lorenz, mlp, reference, van_der_pol
from suite_solvers import Counter, counted
from jacobian_ceiling import truncated


def cpu(run) -> float:
    """The process time ``run()`` takes (s)."""
    start = time.process_time()
    run()
    return time.process_time() - start


JVP = {"jacobian": "full", "derivative": "jvp"}
JVP_ROWS = ["vdp-mu1-rtol1e-05", "vdp-mu1-rtol1e-08", "lorenz-rtol1e-08", "kepler-rtol1e-08", "mlp-B16-D2-rtol1e-05"]


class TangentCounter(Counter):
    """The suite's counter, plus the forward-mode tangents riding on each counted state (one
    evaluation each, as ``stats.nfe`` counts them)."""

    def count(self, y):
        before = self.points
        super().count(y)
        self.points += (self.points - before) * tangents_per_point()


class Truncated(Newton):
    """Full-Jacobian Newton whose measured Jacobians are cut before each update: to their diagonal
    (``rank=None``: the exact-diagonal quasi-DEER model) or to ``s I`` plus the best rank-``rank``
    part (an oracle: what any rank-``rank`` model could do at best)."""

    def __init__(self, rank=None):
        super().__init__(jacobian="full")
        self.rank = rank

    def update(self, state, window):
        jac = torch.nan_to_num(window.extra)
        cut = torch.diag_embed(jac.diagonal(dim1=-2, dim2=-1)) if self.rank is None else truncated(jac, self.rank)
        return super().update(state, replace(window, extra=cut))


class Trusted(Newton):
    """Full-Jacobian Newton with a per-step trust factor ``theta_i`` on ``J_i`` (Levenberg-Marquardt
    in the scan's terms: ``theta = 0`` is Picard's row): halved where the step's defect grew since the
    last sweep, doubled (up to 1) where it fell. Per-solve state on the instance: one solve each."""

    def __init__(self, n):
        super().__init__(jacobian="full")
        self.theta = torch.ones(n, dtype=torch.float64)
        self.previous = torch.full((n,), math.nan, dtype=torch.float64)

    def update(self, state, window):
        s, w, ys = window.shift, window.width, window.ys
        defect = per_step(ys[s + 1:] - ys[s:w] - window.inc[s:]).abs().amax(1).double()
        steps = torch.arange(window.start + s, window.start + w)
        theta = torch.where(defect > self.previous[steps], 0.5 * self.theta[steps], (2 * self.theta[steps]).clamp(max=1))
        self.theta[steps], self.previous[steps] = theta, defect
        jac = window.extra.clone()
        jac[s:] = jac[s:] * theta.reshape(-1, 1, 1).to(jac.dtype)
        return super().update(state, replace(window, extra=jac))


class Shrunk(Newton):
    """Full-Jacobian Newton with every ``J_i`` scaled by ``theta`` (a fixed step toward Picard)."""

    def __init__(self, theta: float):
        super().__init__(jacobian="full")
        self.theta = theta

    def update(self, state, window):
        return super().update(state, replace(window, extra=self.theta * window.extra))


class NoRestart(Newton):
    """Full-Jacobian Newton without the engine's restart of diverging slots."""

    divergence_ratio = None


def jvp_rows(repeats: int):
    """odeint with Newton forced, Jacobians by finite differences or by JVP: evaluations (tangents
    counted), sweeps, and CPU time of the two, interleaved (order alternating), median of ``repeats``."""
    rows = {r.name: r for r in all_rows()}
    print("| row | derivative | evals | sweeps | CPU s (median) | jvp/fd CPU (median of pairs) | err |")
    print("|---|---|---|---|---|---|---|")
    for name in JVP_ROWS:
        row = rows[name]
        problem = row.make()
        counter = TangentCounter(problem.y0.numel())
        f = counted(problem.f, counter)
        ref = reference(problem)
        blocks = {"blocks": row.batch} if row.batch > 1 else {}
        runs = {}
        for label, opts in (("fd", {"jacobian": "full", **blocks}), ("jvp", {**JVP, **blocks})):
            def go(opts=opts):
                with torch.no_grad():
                    return parasolve.odeint(f, problem.y0, problem.t, rtol=row.rtol, atol=row.atol, full_output=True,
                                            options={"scheme": "newton", "scheme_options": opts})
            counter.reset()
            res = go()
            runs[label] = (go, counter.points, res.stats.sweeps, float((res.ys - ref).abs().max()))
        medians, ratio = paired({label: run[0] for label, run in runs.items()}, repeats)
        for label in ("fd", "jvp"):
            _, points, sweeps, err = runs[label]
            print(f"| {name} | {label} | {points:.0f} | {sweeps} | {medians[label]:.3g} | "
                  f"{f'{ratio:.2f}' if label == 'jvp' else ''} | {err:.1e} |", flush=True)


def structure_rows():
    """``solve`` (RK4, tol 1e-8) with each Jacobian model: sweeps and evaluations per step and stage."""
    print("| problem | model | sweeps | evaluations per step and stage | max error vs sequential |")
    print("|---|---|---|---|---|")
    cases = [("vdp-mu1", van_der_pol(1.0), 10.0, 1000), ("lorenz", lorenz(), 2.0, 1000),
             ("mlp-B1-D16", mlp(1, 16), 5.0, 200), ("mlp-B1-D64", mlp(1, 64), 5.0, 200)]
    for name, prob, T, N in cases:
        y0, t = prob.y0.reshape(-1), torch.linspace(0.0, T, N + 1, dtype=torch.float64)
        models = [("full (finite differences)", "newton", {"jacobian": "full", "max_size": 64}),
                  ("full (JVP)", "newton", {**JVP, "max_size": 64}), ("exact diagonal (quasi-DEER)", Truncated(), None)]
        if name.startswith("mlp"):
            models += [(f"sI + rank {r} oracle", Truncated(r), None) for r in (1, 4)]
        models += [("secant diagonal", "newton", {"jacobian": "diagonal"}), ("scalar secant", "newton", {"jacobian": "scalar"}),
                   ("picard", "picard", None)]
        with torch.no_grad():
            seq = parasolve.solve(prob.f, y0, t, method="sequential", step="rk4")
            for label, method, opts in models:
                sol = parasolve.solve(prob.f, y0, t, method=method, options=opts, step="rk4", tol=1e-8, throw=False)
                print(f"| {name} | {label} | {sol.stats.iterations}{'' if sol.converged else ' (not converged)'} | "
                      f"{sol.stats.nfe / N / 4:.1f} | {float((sol.ys - seq.ys).abs().max()):.1e} |", flush=True)
            runs = {label: (lambda o=o: parasolve.solve(prob.f, y0, t, method="newton", options=o, step="rk4", tol=1e-8))
                    for label, o in (("fd", models[0][2]), ("jvp", models[1][2]))}
            _, ratio = paired(runs, 3)
            print(f"| {name} | JVP / FD CPU time (median of 3 interleaved pairs) | {ratio:.2f} | | |")


def paired(runs: dict, repeats: int):
    """CPU times of ``runs["fd"]`` and ``runs["jvp"]``, interleaved (order alternating): the medians
    of each and the median of the pairs' ratios jvp / fd."""
    times = {"fd": [], "jvp": []}
    for k in range(repeats):
        for label in (("fd", "jvp") if k % 2 == 0 else ("jvp", "fd")):
            times[label].append(cpu(runs[label]))
    medians = {label: statistics.median(v) for label, v in times.items()}
    return medians, statistics.median(j / d for j, d in zip(times["jvp"], times["fd"]))


def scan_share(n: int = 200):
    """A sweep's cost parts on the MLP drift at ``n`` RK4 steps: the measurement (states and D probes,
    4 stages) against the matrix scan of the full Jacobians and the element-wise scan of a diagonal."""
    from parasolve.schemes.scan import affine_scan
    print("| D | measure (FD, 4 stages) ms | matrix scan ms | diagonal scan ms |")
    print("|---|---|---|---|")
    for dim in (16, 64):
        prob = mlp(1, dim)
        t = torch.linspace(0.0, 5.0, n + 1, dtype=torch.float64)
        ys = prob.y0.reshape(1, -1).expand(n, dim).contiguous()
        drift = parasolve.drift.BatchedDrift(prob.f, ys.shape[1:], ys.dtype, ys.device)
        problem = parasolve.discrete_problem.Problem(drift, parasolve.steps.STEPS["rk4"], t, ys[0], 1e-8, n, n)
        from parasolve.schemes.jacobians import increments_and_jacobians
        with torch.no_grad():
            _, _, jac = increments_and_jacobians(problem, 0, ys, None)
            eye, b = torch.eye(dim, dtype=jac.dtype), torch.randn(n, dim, dtype=jac.dtype)
            parts = [lambda: increments_and_jacobians(problem, 0, ys, None), lambda: affine_scan(eye + jac, b, b[0]),
                     lambda: affine_scan(1 + jac.diagonal(dim1=-2, dim2=-1), b, b[0])]
            times = [statistics.median(cpu(fn) for _ in range(5)) * 1e3 for fn in parts]
        print(f"| {dim} | {times[0]:.2f} | {times[1]:.2f} | {times[2]:.3f} |", flush=True)


def robustness_rows():
    """Long, eccentric and stiff-ish problems on fixed RK4 grids (tol 1e-8) from the default guess:
    plain full Newton against its safeguarded, damped and trust-region variants."""
    print("| problem | variant | sweeps | evaluations per step and stage | fallbacks | max error vs sequential |")
    print("|---|---|---|---|---|---|")
    full = {"jacobian": "full"}
    cases = [("lorenz t in [0, 20], N 4000", lorenz(), 20.0, 4000), ("kepler e=0.9, 5 periods, N 4000", kepler(e=0.9), None, 4000),
             ("vdp mu=10, t in [0, 30], N 600", van_der_pol(10.0), 30.0, 600),
             ("vdp mu=30, t in [0, 60], N 3000", van_der_pol(30.0), 60.0, 3000)]
    for name, prob, T, N in cases:
        t = torch.linspace(0.0, float(prob.t[-1]) if T is None else T, N + 1, dtype=torch.float64)
        variants_ = [("full (plain)", "newton", full), ("safeguard", "newton", {**full, "safeguard": True}),
                     ("damping 0.5", "newton", {**full, "damping": 0.5}), ("J scaled by 0.5", Shrunk(0.5), None),
                     ("adaptive trust factor", Trusted(N), None), ("no restart of diverging slots", NoRestart(jacobian="full"), None)]
        with torch.no_grad():
            seq = parasolve.solve(prob.f, prob.y0, t, method="sequential", step="rk4")
            for label, method, opts in variants_:
                sol = parasolve.solve(prob.f, prob.y0, t, method=method, options=opts, step="rk4", tol=1e-8, throw=False)
                print(f"| {name} | {label} | {sol.stats.iterations}{'' if sol.converged else ' (not converged)'} | "
                      f"{sol.stats.nfe / N / 4:.1f} | {sol.stats.fallbacks} | {float((sol.ys - seq.ys).abs().max()):.1e} |",
                      flush=True)


def float32_rows():
    """The structure rows' problems in float32 (RK4, tol 1e-5): does the differences' sqrt(eps) ~ 3e-4
    error cost sweeps where a JVP's Jacobian is exact?"""
    print("| problem (float32) | derivative | sweeps | max error vs sequential |")
    print("|---|---|---|---|")
    for name, prob, T, N in (("vdp-mu1", van_der_pol(1.0), 10.0, 1000), ("lorenz", lorenz(), 2.0, 1000),
                             ("kepler", kepler(), None, 2000), ("mlp-B1-D16", mlp(1, 16), 5.0, 200)):
        f = prob.f.float() if isinstance(prob.f, torch.nn.Module) else prob.f
        y0 = prob.y0.reshape(-1).float()
        t = torch.linspace(0.0, float(prob.t[-1]) if T is None else T, N + 1, dtype=torch.float32)
        with torch.no_grad():
            seq = parasolve.solve(f, y0, t, method="sequential", step="rk4")
            for derivative in ("fd", "jvp"):
                sol = parasolve.solve(f, y0, t, method="newton", options={"jacobian": "full", "derivative": derivative},
                                      step="rk4", tol=1e-5, throw=False)
                print(f"| {name} | {derivative} | {sol.stats.iterations}{'' if sol.converged else ' (not converged)'} | "
                      f"{float((sol.ys - seq.ys).abs().max()):.1e} |", flush=True)


def odeint_long_rows(repeats: int = 3):
    """odeint (rtol 1e-5, atol 1e-8) on long horizons with each parallel scheme forced, and with its
    defaults, against torchdiffeq's dopri5: passes, sweeps, steps, the error against scipy's DOP853
    at rtol 1e-12 (Lorenz: on the outputs up to t = 12; later no rtol-1e-5 solution is near the
    true one), and the median of paired, interleaved CPU-time ratios."""
    import torchdiffeq
    print("| problem | odeint options | outcome | passes | sweeps | steps ps / td | error ps / td | CPU ps/td |")
    print("|---|---|---|---|---|---|---|---|")
    full = {"jacobian": "full"}
    tol = {"rtol": 1e-5, "atol": 1e-8}
    for name, prob, T, compared in (("lorenz t in [0, 40]", lorenz(), 40.0, 4),
                                    ("vdp mu=10 t in [0, 30]", van_der_pol(10.0), 30.0, 11)):
        t = torch.linspace(0.0, T, 11, dtype=torch.float64)
        ref = reference(replace(prob, t=t))[:compared]
        counter = Counter(prob.y0.numel())
        f = counted(prob.f, counter)
        with torch.no_grad():
            theirs = torchdiffeq.odeint(f, prob.y0, t, method="dopri5", **tol)
        td_steps, td_err = int(counter.points - 2) // 6, float((theirs[:compared] - ref).abs().max())
        for label, opts in (("default", None), ("scheme picard", {"scheme": "picard"}),
                            ("scheme newton full", {"scheme": "newton", "scheme_options": full}),
                            ("scheme newton full, safeguard", {"scheme": "newton", "scheme_options": {**full, "safeguard": True}}),
                            ("scheme newton full, window 64", {"scheme": "newton", "scheme_options": full, "window": 64})):
            def ps():
                with torch.no_grad():
                    return parasolve.odeint(prob.f, prob.y0, t, full_output=True, options=opts, **tol)

            def td():
                with torch.no_grad():
                    return torchdiffeq.odeint(prob.f, prob.y0, t, method="dopri5", **tol)
            try:
                res = ps()
            except Exception as exc:  # noqa: BLE001 -- a failure is the result
                print(f"| {name} | {label} | {type(exc).__name__}: {str(exc).split(';')[0]} | | | | | |", flush=True)
                continue
            ratios = []
            for k in range(repeats):  # interleaved, order alternating
                pair = (ps, td) if k % 2 == 0 else (td, ps)
                times = [cpu(fn) for fn in pair]
                ratios.append(times[0] / times[1] if k % 2 == 0 else times[1] / times[0])
            s = res.stats
            print(f"| {name} | {label} | solved | {s.passes} | {s.sweeps} | {s.accepted_steps} / {td_steps} | "
                  f"{float((res.ys[:compared] - ref).abs().max()):.1e} / {td_err:.1e} | "
                  f"{statistics.median(ratios):.2f} |", flush=True)


def newton_variants(repeats: int):
    warnings.simplefilter("ignore", RuntimeWarning)
    print(f"# {platform.processor() or platform.machine()}, torch {torch.__version__}, load {os.getloadavg()}")
    jvp_rows(repeats)
    print()
    structure_rows()
    print()
    scan_share()
    print()
    robustness_rows()
    print()
    float32_rows()
    print()
    odeint_long_rows(repeats)
    print(f"# load at the end {os.getloadavg()}")
