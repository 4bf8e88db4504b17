"""``jax.jit`` with the XLA options that keep bayesgmm's compile times down on CPU.

A fit compiles a few programs of a few hundred small kernels each (the model's log density,
its gradient, the optimizer), and on CPU XLA's time goes into each kernel's code generation.
Its MLIR fusion emitters run an MLIR pass pipeline on each fusion before LLVM; its older
element-wise emitters make the same programs in far less time, and the programs run as fast
(``benchmarks/`` holds the measurements).

The option only concerns XLA's CPU backend and only bayesgmm's own programs: numpyro's NUTS
compiles its programs itself, and a user's code keeps JAX's defaults.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax

#: Compiler options of every program bayesgmm compiles (see the module docstring). LLVM at
#: optimisation level 1 rather than XLA's default: the programs compile faster and run no
#: measurably slower.
COMPILER_OPTIONS = {"xla_cpu_use_fusion_emitters": False, "xla_backend_optimization_level": 1}

#: Programs that run once per fit and do little work (SVI's guide start and draws): LLVM's
#: optimisations off, which shortens their compile time. The SVI chunk program keeps level 1:
#: it runs every step, and at level 0 it runs several times as slowly.
RUN_ONCE = {**COMPILER_OPTIONS, "xla_backend_optimization_level": 0}


def jit(fun: Callable, *, run_once: bool = False, **kwargs: Any) -> Callable:
    """Return ``jax.jit(fun, **kwargs)``, compiled with ``COMPILER_OPTIONS`` (``RUN_ONCE`` if asked).

    A decorator as it is, or through ``functools.partial`` with ``jit``'s keywords.

    Examples
    --------
    >>> double = jit(lambda x: 2 * x)
    >>> int(double(3))
    6
    """
    return jax.jit(fun, compiler_options=RUN_ONCE if run_once else COMPILER_OPTIONS, **kwargs)
