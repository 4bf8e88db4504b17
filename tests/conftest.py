import os

import numpy as np
import pytest

# Headless plots everywhere, before anything imports pyplot.
os.environ.setdefault("MPLBACKEND", "Agg")

import bayesgmm  # noqa: E402,F401  (turns on JAX x64 before any test builds arrays)


@pytest.fixture
def rng():
    return np.random.default_rng(20261125)
