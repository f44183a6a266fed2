"""How many sweeps a better Jacobian could save: Newton with the measured Jacobian, exact and truncated.

    python benchmarks/jacobian_ceiling.py --out docs/benchmarks/jacobian-ceiling.md        # ~35 min, 2 jobs
    python benchmarks/jacobian_ceiling.py --runs ddim:100:100:0 --ranks 16 --jobs 1           # one sample

The default scheme (``method="newton"``) models each step's Jacobian ``D_i = dPhi_i/dx_i`` by one
number (a secant multiple of the identity). This script measures what the model costs: each run
solves **one sample** (``model:sampler:steps:window:sample``, the ``sample``-th of 4 drawn from
seed 0, the same x_T and noise as the sequential reference) three ways, with the default stop
rule and ``tol``:

- ``scalar``: the default Newton;
- ``full``: Newton with the whole ``256 x 256`` Jacobian of every step, measured by forward
  differences in the sweep's own batched call (``options={"jacobian": "full"}``, 257 evaluations
  per step and sweep) -- the sweeps a Newton-type scheme with exact derivatives needs at this
  stop rule;
- ``rank r`` (``--ranks``): the same measured Jacobian truncated to its identity multiple
  ``s_i = tr(D_i)/D`` plus the best rank-``r`` approximation of ``D_i - s_i I`` (an oracle: what a
  perfect rank-``r`` model would give; a real one would need at least ``r`` probes per step).

From the ``full`` runs it also reports the Jacobians' structure at the last sweep (converged
states): how far ``D_i`` is from a multiple of the identity, how much of the rest a diagonal model
(per pixel, per 2-D Fourier mode) or a rank-``r`` model captures, and how much the top rank-16
input subspaces of steps 10 apart overlap.
"""

from __future__ import annotations

import argparse
import sys
from concurrent.futures import ProcessPoolExecutor
from dataclasses import replace
from pathlib import Path

import torch

from parasolve import diffusion, zoo
from parasolve.schemes.newton import Newton

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_diffusion import machine  # noqa: E402

RUNS = ("digits:ddpm:1000:128:0", "digits:ddim:100:100:0", "digits:ddim:100:100:1", "digits:ddim:100:100:2", "digits:ddim:100:100:3",
        "digits:ddpm:100:100:0")
#: the runs that also get the rank-r oracle rows (the sample the default needs most sweeps on)
ORACLE = "digits:ddim:100:100:3"
SAMPLES = 4


class TruncatedNewton(Newton):
    """Full-Jacobian Newton whose Jacobians are cut to ``s I +`` rank ``rank`` before each step."""

    def __init__(self, rank: int):
        super().__init__(jacobian="full", max_size=4096)
        self.rank = rank

    def update(self, state, window):
        jac = torch.nan_to_num(window.extra)
        return super().update(state, replace(window, extra=truncated(jac, self.rank)))


def truncated(jac: torch.Tensor, rank: int) -> torch.Tensor:
    """``s I`` plus the best rank-``rank`` approximation of ``jac - s I``, per step (``s`` = mean diagonal)."""
    eye = torch.eye(jac.shape[-1], dtype=jac.dtype, device=jac.device)
    s = torch.diagonal(jac, dim1=-2, dim2=-1).mean(-1)[:, None, None]
    u, sv, vh = torch.linalg.svd(jac - s * eye)
    return s * eye + u[..., :rank] @ torch.diag_embed(sv[..., :rank]) @ vh[..., :rank, :]


def structure(jacs: dict) -> list[dict]:
    """The Jacobians' structure at a dozen steps (see the module docstring)."""
    some = sorted(jacs)[::max(1, len(jacs) // 10)]
    side = int(round(next(iter(jacs.values())).shape[0] ** 0.5))
    f = torch.fft.fft(torch.eye(side, dtype=torch.complex128), norm="ortho")
    fourier = torch.kron(f, f)  # the unitary 2-D DFT of a flattened side x side image
    rows, top = [], {}
    for i in some:
        d = jacs[i].double()
        eye = torch.eye(d.shape[0], dtype=d.dtype)
        s = torch.trace(d) / d.shape[0]
        rest = d - s * eye
        base = torch.linalg.norm(rest)
        u, sv, vh = torch.linalg.svd(rest)
        energy = (sv ** 2).cumsum(0) / (sv ** 2).sum()
        modes = fourier @ d.to(fourier.dtype) @ fourier.conj().T
        fourier_left = torch.linalg.norm(d - (fourier.conj().T @ torch.diag(torch.diagonal(modes)) @ fourier).real)
        pixel_left = torch.linalg.norm(d - torch.diag(torch.diagonal(d)))
        top[i] = vh[:16].T
        rows.append({"step": i, "scalar_share": float(base / torch.linalg.norm(d)), "s": float(s),
                     "eig": (float(torch.linalg.eigvals(d).real.min()), float(torch.linalg.eigvals(d).real.max())),
                     "pixel": float(pixel_left / base), "fourier": float(fourier_left / base),
                     "energy": [float(energy[r - 1]) for r in (4, 16, 64)]})
    for row in rows:
        later = row["step"] + 10
        if later in jacs:
            d = jacs[later].double()
            rest = d - torch.trace(d) / d.shape[0] * torch.eye(d.shape[0], dtype=d.dtype)
            ahead = torch.linalg.svd(rest).Vh[:16].T
            row["overlap10"] = float((top[row["step"]].T @ ahead).pow(2).sum() / 16)
        else:
            row["overlap10"] = None
    return rows


def _inputs(spec: str):
    name, sampler, steps, window, b = spec.split(":")
    steps, window, b = int(steps), int(window), int(b)
    den = zoo.pretrained(name)
    seq = diffusion.sample(den, (SAMPLES, 1, 16, 16), sampler=sampler, steps=steps, method="sequential",
                           generator=torch.Generator().manual_seed(0))
    noise = None if seq.noise is None else seq.noise[:, b:b + 1]
    kwargs = dict(sampler=sampler, steps=steps, window=window, x_T=seq.x_T[b:b + 1], noise=noise, throw=False)
    return den, kwargs, seq.x[b:b + 1]


def _row(label, sol, ref) -> dict:
    return {"label": label, "sweeps": sol.stats.iterations, "nfe": sol.stats.nfe,
            "gap": float((sol.x - ref).abs().max())}


def one(task: tuple[str, int | None]) -> dict:
    """``(spec, None)``: the ``scalar`` and ``full`` solves of a run and the full run's Jacobians;
    ``(spec, r)``: the rank-``r`` oracle."""
    torch.set_num_threads(1)
    spec, rank = task
    den, kwargs, ref = _inputs(spec)
    shape = (1, 1, 16, 16)
    if rank is not None:
        sol = diffusion.sample(den, shape, method=TruncatedNewton(rank), **kwargs)
        return {"spec": spec, "rows": [_row(f"rank {rank}", sol, ref)]}
    jacs = {}

    class Recording(Newton):  # full Newton keeping the last Jacobian measured at every step
        def update(self, state, window):
            for k in range(window.width):
                jacs[window.start + k] = window.extra[k].detach().clone()
            return super().update(state, window)

    rows = [_row("scalar", diffusion.sample(den, shape, **kwargs), ref),
            _row("full", diffusion.sample(den, shape, method=Recording(jacobian="full", max_size=4096), **kwargs), ref)]
    return {"spec": spec, "rows": rows, "structure": structure(jacs)}


def report(results: list[dict], ranks, command: str) -> str:
    lines = ["# What a better Jacobian could save: Newton with measured Jacobians", "",
             "Written by `benchmarks/jacobian_ceiling.py` (its docstring says what each row is); the reading is in",
             "[docs/tolerance.md](../tolerance.md#the-jacobian-ceiling).", "",
             f"Machine: {machine()}; the runs in parallel jobs of one thread each.", "",
             f"Command: `{command}`", "",
             "One sample per row (the `sample`-th of 4 from seed 0), `diffusion.sample`'s default stop rule and tol.", "",
             "| run (model:sampler:steps:window:sample) | scalar (default): sweeps / evals / gap | full Jacobian | "
             + " | ".join(f"rank {r} oracle" for r in ranks) + " |",
             "|---|---|---|" + "---|" * len(ranks)]
    oracle = {(res["spec"], res["rows"][0]["label"]): res["rows"][0] for res in results if "structure" not in res}
    for res in (r for r in results if "structure" in r):
        rows = res["rows"] + [oracle.get((res["spec"], f"rank {r}")) for r in ranks]
        cells = ["-" if r is None else f"{r['sweeps']} / {r['nfe']} / {r['gap']:.1e}" for r in rows]
        lines.append(f"| {res['spec']} | " + " | ".join(cells) + " |")
    lines += ["", "Structure of the measured Jacobians `D_i` at the last sweep (first sample of each sampler):", "",
              "- `|D - sI| / |D|`: the share of `D_i` a multiple of the identity misses (Frobenius norms);",
              "- `pixel`, `Fourier`: what a diagonal model per pixel / per 2-D Fourier mode leaves of `D - sI`;",
              "- `rank 4/16/64`: the share of `|D - sI|^2` its top 4/16/64 singular values hold;",
              "- `overlap +10`: the mean squared cosine between the top-16 input subspaces of step i and i+10.", ""]
    seen = set()
    for res in (r for r in results if "structure" in r):
        sampler = res["spec"].split(":")[1]
        if sampler in seen:
            continue
        seen.add(sampler)
        lines += [f"**{res['spec'].rsplit(':', 1)[0]}**", "",
                  "| step | s | eigenvalues (real parts) | \\|D - sI\\| / \\|D\\| | pixel | Fourier | rank 4 / 16 / 64 | overlap +10 |",
                  "|---|---|---|---|---|---|---|---|"]
        for row in res["structure"]:
            ov = "-" if row["overlap10"] is None else f"{row['overlap10']:.2f}"
            lines.append(f"| {row['step']} | {row['s']:.3g} | {row['eig'][0]:.3g} .. {row['eig'][1]:.3g} | "
                         f"{row['scalar_share']:.3f} | {row['pixel']:.2f} | {row['fourier']:.2f} | "
                         + " / ".join(f"{e:.2f}" for e in row["energy"]) + f" | {ov} |")
        lines.append("")
    return "\n".join(lines) + "\n"


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--runs", default=",".join(RUNS), help="comma-separated model:sampler:steps:window:sample")
    p.add_argument("--ranks", default="4,16", help="comma-separated ranks of the oracle rows ('' for none)")
    p.add_argument("--oracle", default=ORACLE, help="comma-separated runs that get the rank oracles")
    p.add_argument("--jobs", type=int, default=2, help="runs in parallel (one torch thread each)")
    p.add_argument("--out", type=Path, default=None)
    args = p.parse_args(argv)
    ranks = tuple(int(r) for r in args.ranks.split(",") if r)
    tasks = [(spec, None) for spec in args.runs.split(",")]
    tasks += [(spec, r) for spec in args.oracle.split(",") if spec for r in ranks]
    if args.jobs == 1:
        results = [one(task) for task in tasks]
    else:
        with ProcessPoolExecutor(max_workers=args.jobs) as pool:
            results = list(pool.map(one, tasks))
    torch.set_num_threads(1)  # as the jobs run (machine() reports it)
    text = report(results, ranks, "python benchmarks/jacobian_ceiling.py " + " ".join(argv or sys.argv[1:]))
    print(text)
    if args.out:
        args.out.write_text(text)
    return results


if __name__ == "__main__":
    main()
