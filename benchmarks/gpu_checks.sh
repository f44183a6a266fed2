#!/usr/bin/env bash
# The one prepared run for a GPU machine: the evaluator tests on CUDA, a CUDA solve with every
# default (full-Jacobian Newton included), and the GPU benchmarks; everything lands in $OUT
# (default gpu-results/). Needs torch with CUDA, pytest, hypothesis, tqdm, scipy, torchdiffeq (no
# diffusers). About 6-8 minutes on one H100/H200. SMOKE=1: the tiniest settings, to check the
# script itself on a CPU machine (a 10x shorter solve and DDPM; the test selection is collected,
# not run: the suite runs those tests on CPU anyway). Results go to docs/benchmarks/gpu.md with the
# card named.
set -uo pipefail
OUT=${OUT:-gpu-results}
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1 PYTHONPATH=.${PYTHONPATH:+:$PYTHONPATH}
py=${PYTHON:-python3}
if [ "${SMOKE:-0}" = 1 ]; then
  tests=(tests/test_evaluators.py -k "graph or device" --collect-only)
  curve=(--batches 1,4 --repeats 1)
  ddpm=(--steps 20 --samples 1 --windows 4 --repeats 1)
else
  tests=(tests/test_evaluators.py tests/test_schemes_jacobians.py)
  curve=()
  ddpm=(--check-syncs)
fi

"$py" - <<'PY' 2>&1 | tee "$OUT/env.txt"
import os, platform, torch
import parasolve
cuda = torch.cuda.is_available()
smoke = os.environ.get("SMOKE", "0") == "1"
n, ddpm_steps = (200, 20) if smoke else (2000, 100)
print("python", platform.python_version(), "torch", torch.__version__, "cuda", torch.version.cuda,
      "device", torch.cuda.get_device_name(0) if cuda else "none")
dev = "cuda" if cuda else "cpu"
f = lambda t, y: torch.stack([y[..., 1], -torch.sin(y[..., 0])], -1)
t = torch.linspace(0, 10, n + 1, dtype=torch.float64, device=dev)
y0 = torch.tensor([1.0, 0.0], dtype=torch.float64, device=dev)
ref = parasolve.solve(f, y0, t, step="rk4", method="sequential", vectorized=True)
for method in ("auto", "picard"):
    sol = parasolve.solve(f, y0, t, step="rk4", method=method, vectorized=True, tol=1e-8)
    print(f"{dev} solve {method} -> {sol.method}: {sol.stats.iterations} sweeps, "
          f"gap {float((sol.ys - ref.ys).abs().max()):.2e}, defect sum {sol.stats.defect_sum:.2e}")
ys = parasolve.odeint(f, y0, torch.linspace(0, 10, 11, dtype=torch.float64, device=dev), rtol=1e-8, atol=1e-11)
print(f"{dev} odeint: shape {tuple(ys.shape)}, y(10) = {ys[-1].tolist()}")
# the digits DDPM with the device's default kernels (TF32 where torch allows it) and with 16-bit
# samples: the row check's tolerance, the measured noise floor and the gap to sequential
from parasolve import diffusion, zoo
den = zoo.pretrained("digits", device=dev)
print(f"{dev} TF32 allowed: matmul {torch.backends.cuda.matmul.allow_tf32}, cudnn {torch.backends.cudnn.allow_tf32}")
for dtype in (torch.float32, torch.float16):
    g = torch.Generator(device=dev).manual_seed(0)
    x_T = torch.randn((4, 1, 16, 16), generator=g, device=dev).to(dtype)
    seq = diffusion.sample(den, (4, 1, 16, 16), steps=ddpm_steps, method="sequential", x_T=x_T, generator=g)
    par = diffusion.sample(den, (4, 1, 16, 16), steps=ddpm_steps, window=ddpm_steps, x_T=x_T, noise=seq.noise)
    print(f"{dev} digits DDPM-{ddpm_steps} {dtype}: {par.stats.iterations} sweeps, noise floor {par.stats.noise_floor:.2g}, "
          f"weighted defect sum {par.stats.weighted_defect_sum:.2e}, "
          f"gap {float((par.x.float() - seq.x.float()).abs().max()):.2e}")
PY
rc_env=${PIPESTATUS[0]}
timeout 200 "$py" -m pytest -q -p no:cacheprovider "${tests[@]}" 2>&1 | tee "$OUT/tests.txt"
rc_tests=${PIPESTATUS[0]}
timeout 120 "$py" benchmarks/bench_gpu_cost_curve.py "${curve[@]}" --json "$OUT/cost_curve.json" 2>&1 | tee "$OUT/cost_curve.txt"
rc_curve=${PIPESTATUS[0]}
timeout 300 "$py" benchmarks/bench_gpu_ddpm.py "${ddpm[@]}" --json "$OUT/ddpm.json" 2>&1 | tee "$OUT/ddpm.txt"
rc_ddpm=${PIPESTATUS[0]}
echo "exit codes: env/solve $rc_env, tests $rc_tests, cost curve $rc_curve, ddpm $rc_ddpm" | tee "$OUT/summary.txt"
[ "$rc_env$rc_tests$rc_curve$rc_ddpm" = 0000 ]
