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

import os
from collections.abc import Callable, Iterator, Mapping
from concurrent.futures import Executor, Future, ThreadPoolExecutor
from contextlib import contextmanager
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


class _CallingThread(Executor):
    """An executor that runs each task at once, on the thread that submits it."""

    def submit(self, fn: Callable, /, *args: Any, **kwargs: Any) -> Future:
        future: Future = Future()
        try:
            future.set_result(fn(*args, **kwargs))
        except BaseException as err:  # noqa: BLE001 - handed to the caller through the future
            future.set_exception(err)
        return future


def compile_threads(environ: Mapping[str, str] = os.environ) -> int:
    """Return how many threads compile a fit's programs while it goes on (0: none).

    ``BAYESGMM_COMPILE_THREADS`` sets it (default 2); ``0`` compiles each program on the
    thread that needs it, when it needs it.

    Examples
    --------
    >>> compile_threads({"BAYESGMM_COMPILE_THREADS": "0"}), compile_threads({})
    (0, 2)
    """
    value = environ.get("BAYESGMM_COMPILE_THREADS", "2").strip() or "2"
    if not value.isdigit():
        raise ValueError(f"BAYESGMM_COMPILE_THREADS must be a whole number of threads, got {value!r}.")
    return int(value)


@contextmanager
def compile_pool() -> Iterator[Executor]:
    """Yield the executor a fit's programs compile in (see :func:`compile_threads`)."""
    n_threads = compile_threads()
    if n_threads == 0:
        yield _CallingThread()
        return
    with ThreadPoolExecutor(max_workers=n_threads) as pool:
        yield pool
