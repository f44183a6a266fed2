"""Parallel diffusion sampling on the core solver: DDPM, DDIM and DPM-Solver++ as step maps.

```python
from parasolve import diffusion
den = diffusion.from_diffusers(unet, scheduler)      # or parasolve.zoo.pretrained("digits")
out = diffusion.sample(den, (4, 3, 32, 32), sampler="ddpm", steps=1000, window=64)
out.x, out.converged, out.stats.iterations, out.stats.nfe
```
diffusers is optional: it is imported only by :func:`from_diffusers`.
"""

from .denoiser import Denoiser
from .exact import GaussianMixtureDenoiser, exact_denoiser
from .from_diffusers import from_diffusers
from .pipelines import parallelize
from .samplers import SAMPLERS, DiffusionStep
from .api import SampleOutput, sample
from .schedules import alphas_cumprod, timesteps

__all__ = ["Denoiser", "exact_denoiser", "GaussianMixtureDenoiser", "from_diffusers", "parallelize", "sample",
           "SampleOutput", "SAMPLERS", "DiffusionStep", "alphas_cumprod", "timesteps"]
