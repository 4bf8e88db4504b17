"""Starting SVI: the guides of every restart, at an EM fit or the prior median.

The start is the first of the three pieces of an SVI fit (``init``, then the chunks of
steps of ``loop.run_chunks``, then the draws): it also compiles the fit's programs in other
threads while the EM start runs on this one.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from concurrent.futures import Executor, Future

import jax
import jax.numpy as jnp
import numpy as np
from numpyro.infer.svi import SVIState

from bayesgmm._jit import compile_pool
from bayesgmm.inference.noise import noise_em_start, noise_sites
from bayesgmm.inference.prepare import FitSetup, traced_in
from bayesgmm.inference.start import compile_em_start, em_start, sites_from_params
from bayesgmm.inference.svi.config import SVISettings
from bayesgmm.inference.svi.data import DeviceRows
from bayesgmm.inference.svi.program import Program, initial_states
from bayesgmm.params import GMMParams


def precision(settings: SVISettings) -> contextlib.AbstractContextManager:
    """Return the context to trace and run the fit's programs in (``prepare.traced_in``)."""
    return traced_in(settings.dtype)


def _init_scale(setup: FitSetup) -> float:
    """Return the guide's initial scale.

    A posterior sd is about sqrt(n_components / n_obs): from numpyro's default guide scale
    of 0.1 it takes thousands of steps to shrink on big data.
    """
    return min(0.1, float(np.sqrt(setup.n_components / setup.data.n_obs)))


def init_guides(
    prog: Program, setup: FitSetup, settings: SVISettings, lap: Callable[[str], None]
) -> tuple[SVIState, DeviceRows]:
    """Start the guides of every restart, compiling the fit's programs meanwhile.

    Compiling takes longer than the fit on moderate data, and XLA compiles without the GIL:
    the EM start's and the SVI programs are traced on this thread and compiled in the pool's
    while it goes on. The EM start's come first, so that their compilation fills the core
    that tracing the SVI programs leaves idle, then the EM start runs here while the SVI
    programs compile.

    Parameters
    ----------
    prog : program.Program
    setup : prepare.FitSetup
    settings : config.SVISettings
    lap : callable
        ``lap(phase)`` records the time since its last call (``attrs["timings"]``).

    Returns
    -------
    states : numpyro.infer.svi.SVIState
    device : data.DeviceRows
    """
    with compile_pool() as pool:
        device, futures = _compile(prog, setup, settings, pool)
        values = None
        if settings.init == "em":
            for future in futures["em"]:
                future.result()
            values = _em_sites(setup)
        lap("em_start")
        for future in futures["svi"]:
            future.result()
        lap("compile")
    with precision(settings):
        dtype = settings.dtype
        values = None if values is None else {k: jnp.asarray(v, dtype) for k, v in values.items()}
        init_scale, key = _init_scale(setup), setup.keys["svi"]
        states = initial_states(prog, device.batch, values, init_scale, settings.n_init, key, dtype)
        jax.block_until_ready(states)
    lap("guide_init")
    return states, device


def _compile(prog: Program, setup: FitSetup, settings: SVISettings, pool: Executor) -> tuple:
    """Trace the EM start's and the SVI programs here and compile them in ``pool``.

    Returns the device rows and the futures of the compilations, ``{"em": [...], "svi": [...]}``.
    """
    rows, dtype, chunk_size = setup.data.extra, settings.dtype, settings.schedule.chunk_size
    futures = {"em": []}
    # In float64, whatever the dtype; EM with noise compiles as it runs.
    if settings.init == "em" and setup.noise_volume is None:
        overfitted = setup.weight_prior != "dirichlet"
        Z, n_components, covariance_type = rows.Z_init, setup.n_components, setup.covariance_type
        futures["em"] = compile_em_start(Z, n_components, covariance_type, pool, overfitted)
    with precision(settings):
        device = DeviceRows.from_rows(rows, dtype)
        start = (_init_scale(setup), settings.n_init, dtype, setup.keys["svi"], device.batch)
        futures["svi"] = compile_ahead(
            prog,
            pool,
            start=(*start, _site_types(setup, settings)),
            chunk=(*device.chunk_types(rows.batching, chunk_size), chunk_size),
            draw=(settings.n_kept, settings.n_draws, device.draw_Z),
        )
    return device, futures


def _em_sites(setup: FitSetup) -> dict:
    """Return the model's sites at the best of a few EM fits to the rows ``Z_init`` (numpy, float64)."""
    overfitted = setup.weight_prior != "dirichlet"
    seed = int(setup.keys["init"][-1] % 2**30)
    Z = setup.data.extra.Z_init
    if setup.noise_volume is not None:
        log_density = setup.model_kwargs["noise_log_density"]
        params, noise_weight = noise_em_start(Z, setup.n_components, setup.covariance_type, seed, log_density)
        return noise_sites(params, noise_weight, setup.covariance_type, setup.weight_prior, setup.priors)
    start = em_start(Z, setup.n_components, setup.covariance_type, seed=seed, overfitted=overfitted)
    return sites_from_params(start, setup.covariance_type, setup.weight_prior, setup.priors)


def _site_types(setup: FitSetup, settings: SVISettings) -> dict | None:
    """Shapes and type of ``_em_sites``'s values cast to the fit's dtype, known before EM has run.

    None, as the values are, for ``init="prior"``.
    """
    if settings.init != "em":
        return None
    n_components, n_features = setup.n_components, setup.n_features
    uniform = GMMParams(
        np.full(n_components, 1 / n_components),
        np.zeros((n_components, n_features)),
        np.broadcast_to(np.eye(n_features), (n_components, n_features, n_features)),
    )
    start = (uniform, setup.covariance_type, setup.weight_prior, setup.priors)
    if setup.noise_volume is None:
        sites = sites_from_params(*start)
    else:
        sites = noise_sites(uniform, 0.5, *start[1:])
    return {k: jax.ShapeDtypeStruct(np.shape(v), settings.dtype) for k, v in sites.items()}


def compile_ahead(prog: Program, pool: Executor, *, start: tuple, chunk: tuple, draw: tuple) -> list[Future]:
    """Compile a fit's guide start, chunk of steps and draws in ``pool``'s threads.

    XLA compiles without the GIL: compiled in other threads, the programs are ready while
    this one goes on (with the EM start, say). The tracing (lowering) is done here, on the
    calling thread: numpyro keeps its effect handlers on one global stack, so two threads
    must not run numpyro models at once. Once compiled, the usual calls with arguments of
    the same shapes and types find the compiled programs in ``jax.jit``'s caches.

    Parameters
    ----------
    prog : Program
    pool : concurrent.futures.Executor
    start : tuple
        ``(init_scale, n_init, dtype, key, Z, values)``: the arguments of
        ``initial_states`` (arrays or ``jax.ShapeDtypeStruct``; ``values`` may be None).
    chunk : tuple
        ``(data, rows, n_active)``: the arguments of ``prog.run_chunk`` but its key
        (arrays or ``jax.ShapeDtypeStruct``; ``rows`` may be None; ``n_active`` an int).
    draw : tuple
        ``(n_kept, n_draws, Z)``: restarts kept, draws per restart and data of ``prog.draw``.

    Returns
    -------
    list of concurrent.futures.Future
        Wait for them before calling the programs: a call made before its program has
        compiled compiles it a second time. Empty when this signature was compiled before.
    """
    init_scale, n_init, dtype, key, Z, values = start
    signature = jax.tree_util.tree_map(
        lambda a: (tuple(a.shape), np.dtype(a.dtype).str, str(getattr(a, "sharding", None))),
        (key, Z, values, chunk[:2], draw[2]),
    )
    signature = (init_scale, n_init, np.dtype(dtype).str, draw[:2], str(signature))
    if signature in prog.compiled:
        return []
    prog.compiled.add(signature)
    traced = prog.start_program(init_scale, n_init, dtype).trace(key, Z, values)
    states = traced.out_info
    data, rows, n_active = chunk
    # The longest compile first.
    futures = [pool.submit(prog.run_chunk.lower(states, data, rows, key, n_active).compile)]
    futures.append(pool.submit(traced.lower().compile))
    n_kept, n_draws, draw_Z = draw
    # The kept restarts are indexed on the host (numpy arrays: never weakly typed).
    kept = jax.tree_util.tree_map(lambda a: jax.ShapeDtypeStruct((n_kept, *a.shape[1:]), a.dtype), states)
    keys = jax.ShapeDtypeStruct((n_kept, *key.shape), key.dtype)
    futures.append(pool.submit(prog.draw_program(n_draws).lower(kept, keys, draw_Z).compile))
    return futures
