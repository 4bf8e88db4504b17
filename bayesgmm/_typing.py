"""Type aliases used in the public signatures."""

from __future__ import annotations

from typing import TypeAlias

import arviz as az
import jax
import numpy as np
from numpy.typing import ArrayLike

from bayesgmm.inference.em.result import EMResult

#: What a plot draws a fit from: an InferenceData (NUTS, SVI) or an EM result.
Fit: TypeAlias = az.InferenceData | EMResult

#: Randomness at the boundary: an int seed, a NumPy generator, a JAX key or None.
Seed: TypeAlias = int | np.random.Generator | jax.Array | None

#: EM's seeds: also a NumPy RandomState, drawn from as scikit-learn does.
EMSeed: TypeAlias = int | np.random.RandomState | np.random.Generator | jax.Array | None

__all__ = ["ArrayLike", "EMSeed", "Fit", "Seed"]
