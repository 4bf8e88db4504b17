import os

import numpy as np
import pytest

# Headless plots everywhere, before anything imports pyplot.
os.environ.setdefault("MPLBACKEND", "Agg")

# Every program the tests compile (numpyro's NUTS programs, the tests' own jitted oracles, and
# those of the subprocesses and notebook kernels, which inherit the variable) gets the XLA
# options bayesgmm gives its own programs (``bayesgmm._jit.COMPILER_OPTIONS``): the same
# computations, compiled in about two thirds of the time, which is most of the suite's time.
# Users' NUTS programs keep XLA's defaults, which sample faster once compiled. Set before
# JAX's backend starts, which reads XLA_FLAGS once.
FAST_COMPILE = "--xla_cpu_use_fusion_emitters=false --xla_backend_optimization_level=1"
if "xla_cpu_use_fusion_emitters" not in os.environ.get("XLA_FLAGS", ""):
    os.environ["XLA_FLAGS"] = f"{os.environ.get('XLA_FLAGS', '')} {FAST_COMPILE}".strip()

import bayesgmm  # noqa: E402,F401  (turns on JAX x64 before any test builds arrays)


@pytest.fixture
def rng():
    return np.random.default_rng(20261125)
