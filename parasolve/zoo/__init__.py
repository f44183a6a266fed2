"""Models that ship with parasolve (weights in the package, nothing downloaded): the digits DDPM and
its classifier, the trajectory-planning policy, and the scripts that trained them (``zoo.training``).

```python
from parasolve import zoo
den = zoo.pretrained("digits")      # a parasolve.diffusion.Denoiser
```
"""

from .pretrained import PRETRAINED, pretrained

__all__ = ["pretrained", "PRETRAINED"]
