"""``jax.jit`` with the XLA options that keep bayesgmm's compile times down on CPU.

A fit compiles a few programs of a few hundred small kernels each (the model's log density,
its gradient, the optimizer), and on CPU XLA's time goes into each kernel's code generation:
about 25 ms a kernel with its MLIR fusion emitters (each fusion runs an MLIR pass pipeline
before LLVM). Its older element-wise emitters make the same programs in far less time.
Measured on the 2-core development machine (AMD EPYC, jax 0.10.2;
``benchmarks/bench_svi.py`` settings at N=100,000, K=10, D=10, float64), compile time of a first
``fit_svi`` in a fresh process went from 16.8 to 9.7 s and the whole first fit from 25.2 to 17.4 s;
a warm fit took 2.31 s with the fusion emitters and 2.23 s without. Not settled for float32: in
full benchmarks at N=100,000, warm fits took 2.72 s (float64) and 1.88 s (float32) before the
change, 3.55 and 3.04 s in the first run after it, and 2.23 and 2.45 s in a later run (with LLVM
level 1 as well; ``benchmarks/README.md``).

The option only concerns XLA's CPU backend and only bayesgmm's own programs: numpyro's NUTS
compiles its programs itself, and a user's code keeps JAX's defaults.
"""

from __future__ import annotations

import jax

#: Compiler options of every program bayesgmm compiles (see the module docstring). LLVM at
#: optimisation level 1 rather than XLA's default: on the development machine the SVI chunk
#: program (K=10, D=10, minibatches) compiled in 4.1-4.5 s of CPU time instead of 5.5-8.0
#: (float64; float32 3.1-3.4 against 5.1-7.5), the EM program in 2.6-3.7 instead of 4.9-5.1,
#: and neither ran measurably slower (chunk steps timed alternately: 2.48 against 2.49 ms a
#: step in float64, 1.45 against 1.41 in float32; EM iterations on 200,000 rows within 5% for
#: every covariance type, both ways).
COMPILER_OPTIONS = {"xla_cpu_use_fusion_emitters": False, "xla_backend_optimization_level": 1}

#: Programs that run once per fit and do little work (SVI's guide start and draws): LLVM's
#: optimisations off. With the fusion emitters, that roughly halved their compile time
#: (1.3 s less in a fresh process at K=10, D=10); the SVI chunk program keeps level 1, since it
#: runs every step, and ran about three times as slowly at level 0.
RUN_ONCE = {**COMPILER_OPTIONS, "xla_backend_optimization_level": 0}


def jit(fun, *, run_once: bool = False, **kwargs):
    """``jax.jit(fun, **kwargs)`` compiled with ``COMPILER_OPTIONS`` (``RUN_ONCE`` if asked).

    A decorator as it is, or through ``functools.partial`` with ``jit``'s keywords.

    Examples
    --------
    >>> double = jit(lambda x: 2 * x)
    >>> int(double(3))
    6
    """
    return jax.jit(fun, compiler_options=RUN_ONCE if run_once else COMPILER_OPTIONS, **kwargs)
