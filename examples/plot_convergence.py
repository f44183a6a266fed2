"""Plot how Picard converges per sweep: the window's largest defect and the gap to sequential.

    python examples/plot_convergence.py [--out convergence.png] [--fast]
"""

import argparse

import torch

import parasolve
from parasolve import problems


def main(fast: bool = False, out: str = "convergence.png"):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    torch.set_num_threads(1)
    problem = problems.harmonic(t1=6.0)
    t = problem.grid(200 if fast else 1000)
    seq = parasolve.solve(problem.f, problem.y0, t, method="sequential", vectorized=True)
    fig, (a, b) = plt.subplots(1, 2, figsize=(9, 3.4))
    curves = {}
    for window in (25, 100, None):
        sol = parasolve.solve(problem.f, problem.y0, t, method="picard", window=window, tol=1e-9, vectorized=True)
        label = f"window {window or len(t) - 1}"
        a.semilogy([r.sweep for r in sol.stats.history], [max(r.residual, 1e-17) for r in sol.stats.history], label=label)
        gaps = []  # gap to the sequential solution after k sweeps (the iterate the solve holds then)
        for k in range(1, sol.stats.iterations + 1, max(1, sol.stats.iterations // 15)):
            it = parasolve.solve(problem.f, problem.y0, t, method="picard", window=window, tol=1e-9, max_iters=k, throw=False,
                                 vectorized=True)
            gaps.append((k, max(float((it.ys - seq.ys).abs().max()), 1e-17)))
        b.semilogy(*zip(*gaps), "o-", ms=3, label=label)
        curves[label] = sol
    a.set(xlabel="sweep", ylabel="largest defect in window", title="harmonic oscillator, Euler")
    b.set(xlabel="sweeps k", ylabel="max|x_k - x_seq|", title="gap to the sequential solution")
    a.legend(fontsize=8), b.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(out, dpi=120)
    plt.close(fig)
    print(f"wrote {out}: " + ", ".join(f"{k}: {s.stats.iterations} sweeps" for k, s in curves.items()))
    return curves


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--fast", action="store_true")
    parser.add_argument("--out", default="convergence.png")
    args = parser.parse_args()
    main(args.fast, args.out)
