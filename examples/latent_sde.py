"""A small latent SDE trained twice, side by side: with torchsde.sdeint and with parasolve.sdeint.

    python examples/latent_sde.py [--fast]

The posterior SDE (Itô, diagonal noise) has an MLP drift ``f``, a prior drift ``h`` (a learnable
Ornstein–Uhlenbeck pull) and a state-dependent diffusion ``g``; ``logqp=True`` accumulates the
KL penalty ``0.5 |(f - h) / g|^2`` along the path. The loss is the squared error of the first
latent coordinate against noisy sine data plus the KL term. Both runs start from the same weights
and use the same Brownian path each iteration (a ``BrownianInterval`` with the iteration as its
entropy); parasolve solves every path by Picard sweeps (the parallel scheme) and differentiates
by the discrete adjoint. Their gradients are autograd's through the same discrete solution, so
the two loss curves agree to the Picard tolerance (printed), not merely in distribution.
"""

import argparse
import copy
import time

import torch
import torchsde

import parasolve


class LatentSDE(torch.nn.Module):
    noise_type, sde_type = "diagonal", "ito"

    def __init__(self, latent=2, width=16):
        super().__init__()
        self.net = torch.nn.Sequential(torch.nn.Linear(latent + 1, width), torch.nn.Tanh(),
                                       torch.nn.Linear(width, latent))
        self.log_theta = torch.nn.Parameter(torch.zeros(latent))
        self.sigma = torch.nn.Parameter(torch.full((latent,), -1.0))
        self.y0 = torch.nn.Parameter(torch.zeros(latent))

    def f(self, t, y):  # posterior drift
        return self.net(torch.cat([y, t.expand(y.shape[0], 1)], 1))

    def h(self, t, y):  # prior drift: an OU pull to 0
        return -self.log_theta.exp() * y

    def g(self, t, y):
        return torch.sigmoid(self.sigma) * (1 + 0.1 * torch.tanh(y))


def data(ts, batch, gen):
    phase = 0.3 * torch.randn(batch, 1, generator=gen, dtype=torch.float64)
    return torch.sin(2 * ts[None, :] + phase).T + 0.05 * torch.randn(len(ts), batch, generator=gen,
                                                                      dtype=torch.float64)


def train(solver, model, ts, xs, iters, batch, dt, options=None):
    opt = torch.optim.Adam(model.parameters(), lr=2e-2)
    losses, start = [], time.perf_counter()
    for it in range(iters):
        bm = torchsde.BrownianInterval(float(ts[0]), float(ts[-1]), size=(batch, 3), dtype=torch.float64,  # logqp: one more channel
                                       entropy=it, dt=dt, levy_area_approximation="space-time")
        y0 = model.y0.expand(batch, 2)
        kwargs = {} if options is None else {"options": options}
        ys, log_ratio = solver(model, y0, ts, bm=bm, dt=dt, logqp=True, **kwargs)
        loss = ((ys[..., 0] - xs) ** 2).mean() + 0.1 * log_ratio.sum(0).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(float(loss.detach()))
    return losses, time.perf_counter() - start


def main(fast: bool = False):
    torch.set_num_threads(1)
    torch.manual_seed(0)
    iters, batch, dt = (4, 8, 0.1) if fast else (60, 32, 0.02)
    ts = torch.linspace(0.0, 2.0, 11, dtype=torch.float64)
    xs = data(ts, batch, torch.Generator().manual_seed(1))
    model = LatentSDE().double()
    twin = copy.deepcopy(model)
    ref, ref_s = train(torchsde.sdeint, model, ts, xs, iters, batch, dt)
    par, par_s = train(parasolve.sdeint, twin, ts, xs, iters, batch, dt, options={"scheme": "picard", "tol": 1e-9})
    gap = max(abs(a - b) for a, b in zip(ref, par))
    print(f"{iters} iterations, {int(2.0 / dt)} steps each: loss {ref[0]:.4f} -> {ref[-1]:.4f} (torchsde, "
          f"{ref_s:.2f} s) and {par[0]:.4f} -> {par[-1]:.4f} (parasolve picard, {par_s:.2f} s); "
          f"max |loss gap| over training {gap:.1e}")
    return ref, par


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--fast", action="store_true")
    main(parser.parse_args().fast)
