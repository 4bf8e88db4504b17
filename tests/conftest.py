import gc
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


def _n_memory_maps() -> int:
    try:
        with open("/proc/self/maps") as maps:
            return sum(1 for _ in maps)
    except OSError:  # not Linux
        return 0


def _map_budget() -> int:
    try:
        return int(open("/proc/sys/vm/max_map_count").read()) // 2
    except (OSError, ValueError):
        return 32_765


@pytest.fixture(autouse=True, scope="module")
def _bounded_compiled_programs():
    """Drop the compiled programs between test modules once the process holds many.

    Every compiled XLA CPU program keeps a few memory mappings of its own, and Linux refuses a
    process more than ``vm.max_map_count`` of them (65,530 by default): a test worker that has
    compiled thousands of programs crashes inside XLA's compiler. Each module still reuses what
    it compiled; past half the limit, the next module starts without the earlier ones' programs.
    """
    yield
    if _n_memory_maps() > _map_budget():
        import jax

        from bayesgmm.inference.nuts import SAMPLERS
        from bayesgmm.inference.svi.cache import PROGRAMS

        SAMPLERS.clear()
        PROGRAMS.clear()
        jax.clear_caches()
        gc.collect()
