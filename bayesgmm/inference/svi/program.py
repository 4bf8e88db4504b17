"""The compiled half of SVI: guide start, chunks of steps and draws, cached per configuration.

XLA compilation costs more than a whole fit on moderate data, so each fit configuration
gets one ``Program``, kept in a bounded ``cache.ProgramCache``: a jitted chunk of steps for every
restart at once (``vmap`` over a ``lax.scan``), a jitted start and jitted draws. Later
chunks and later fits with the same shapes reuse the compiled code; a last partial chunk
runs the same program with the surplus steps skipped.

numpyro sets a guide up (``SVI.init``) by running the model and guide op by op; outside
``jit`` every one of those few hundred small ops is compiled on its own. So the guide start
builds a fresh SVI object *inside* its traced body and sets it up there; the other
programs, which never use the guide's initial values, share one SVI set up under
``jax.eval_shape`` (``TracingSVI``).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial

import jax
import jax.numpy as jnp
import numpy as np
import optax
from numpy.typing import DTypeLike
from numpyro.infer import SVI
from numpyro.infer.initialization import init_to_median, init_to_value
from numpyro.infer.svi import SVIState
from numpyro.optim import optax_to_numpyro

from bayesgmm._jit import jit
from bayesgmm.inference.svi.config import Objective, make_guide
from bayesgmm.inference.svi.draws import drawer, importance_fn, map_restarts
from bayesgmm.inference.svi.objective import NOISE, guide_noise_size


@dataclass
class Program:
    """Compiled pieces shared by every fit with the same configuration.

    ``make(init_loc_fn, init_scale)`` returns a fresh, not yet set-up ``SVI``;
    ``tracing_svi`` is the ``TracingSVI`` of ``make`` that the chunk, draw and importance
    programs share. ``run_chunk(states, data, rows, key, n_active)`` is the step program
    (see ``_chunk_runner``), ``importance`` the importance-ratio program
    (``draws.importance_fn``).
    """

    make: Callable
    tracing_svi: TracingSVI
    model: Callable
    names: list
    optim: object
    run_chunk: Callable
    importance: Callable
    starts: dict = field(default_factory=dict)
    draws: dict = field(default_factory=dict)
    compiled: set = field(default_factory=set)

    def start_program(self, init_scale: float, n_init: int, dtype: DTypeLike) -> Callable:
        """Return the jitted guide start ``(key, Z, values) -> states`` (see ``initial_states``)."""
        config = (init_scale, n_init, np.dtype(dtype).str)
        if config not in self.starts:
            start = partial(_initial_states, self.make, self.optim, init_scale, n_init, dtype)
            self.starts[config] = jit(start, run_once=True)
        return self.starts[config]

    def draw_program(self, n_draws: int) -> Callable:
        """Return the jitted ``(states, keys, Z) -> (params, sites)`` of ``n_draws`` draws."""
        if n_draws not in self.draws:
            self.draws[n_draws] = drawer(self.tracing_svi, self.model, self.names, n_draws)
        return self.draws[n_draws]

    def draw(self, states: SVIState, keys: jax.Array, Z: jax.Array, n_draws: int) -> tuple:
        """Draw from the guide of each restart in ``states`` (leading axis).

        Returns the constrained guide parameters and ``n_draws`` draws of the sites
        ``names`` for each restart; one compiled function per ``n_draws``.
        """
        return self.draw_program(n_draws)(states, keys, Z)


def build_program(
    objective: Objective,
    model: Callable,
    fit_model: Callable,
    optimizer: optax.GradientTransformation,
    chunk_size: int,
    mode: str,
    names: list,
    n_shards: int = 1,
) -> Program:
    """Build the ``Program`` of one configuration (nothing is compiled yet).

    Parameters
    ----------
    objective : config.Objective
        The guide family and the loss.
    model : callable
        The full-data model (for the draws' deterministic sites).
    fit_model : callable
        The model the steps fit (scaled to minibatches, except in ``"full"`` mode).
    optimizer : optax.GradientTransformation
    chunk_size : int
    mode : {"full", "index", "stream"}
        See ``config.Batching``.
    names : list of str
        The sites the draws return.
    n_shards : int, optional
        ``"index"`` mode: the number of devices that hold the rows (``config.Batching``).

    Returns
    -------
    Program
    """
    optim = optax_to_numpyro(optimizer)
    loss = objective.loss()

    def make(init_loc_fn=init_to_median, init_scale=0.1):
        guide = make_guide(objective.guide, fit_model, init_loc_fn, init_scale)
        return SVI(fit_model, guide, optim, loss)

    tracing = TracingSVI(make)
    run_chunk = _chunk_runner(tracing, chunk_size, mode, n_shards)
    return Program(make, tracing, model, names, optim, run_chunk, importance_fn(tracing, objective.guide))


def set_up(make: Callable, Z: jax.Array, *args: object) -> SVI:
    """Return a fresh SVI from ``make(*args)``, set up on data ``Z``; call only inside a trace."""
    svi = make(*args)
    svi.init(jax.random.PRNGKey(0), Z=Z)
    return svi


class TracingSVI:
    """One SVI set up per data shape, for the programs that never use the guide's initial values.

    Those are the chunk of steps, the draws and the importance ratios. numpyro sets a
    guide up by tracing the model several times (``initialize_model`` searches for a valid
    start in a ``while_loop`` and checks its gradient), which would be done again in every
    program and then pruned from all but the guide start. Here it is done once per data
    shape and type, under ``jax.eval_shape``. The SVI keeps that trace's values (the guide's
    initial values and prototype), of which the programs use only shapes and constraints:
    they run the guide on the parameters they are given (a use of such a value in another
    trace would raise JAX's ``UnexpectedTracerError``, not compute anything wrong).

    ``tracing_svi(Z)`` returns ``(svi, n_noise)``: the set-up SVI of ``make()`` and the
    number of noise values ``GuideNoise`` feeds its guide per draw.

    Parameters
    ----------
    make : callable
        ``make() -> SVI``, not yet set up.
    """

    def __init__(self, make: Callable) -> None:
        self.make, self.cache = make, {}

    def __call__(self, Z: jax.Array) -> tuple:
        """Return ``(svi, n_noise)`` for data of ``Z``'s shape and type."""
        key = (tuple(Z.shape), np.dtype(Z.dtype).str, bool(jax.config.jax_enable_x64))
        if key not in self.cache:
            out = []

            def run(Z):
                svi = set_up(self.make, Z)
                out.append((svi, guide_noise_size(svi.guide, Z=Z)))

            jax.eval_shape(run, jax.ShapeDtypeStruct(Z.shape, Z.dtype))
            self.cache[key] = out[0]
        return self.cache[key]


def _chunk_runner(tracing_svi: TracingSVI, chunk_size: int, mode: str, n_shards: int = 1):
    """Jitted ``(states, data, rows, key, n_active) -> (states, losses, mean_params)``.

    ``rows`` (``"index"`` mode only, else None) holds the minibatch rows of ``data`` of every
    step, shape (chunk_size, batch_size), drawn on the host: drawn in the program, their
    random numbers (threefry hashes, compiled as loops of a dozen kernels each) would add
    much to its compile time. ``key`` seeds the guide's noise. ``losses`` has shape
    (n_init, chunk_size); ``mean_params`` are the optimizer's parameters averaged over the
    chunk's steps (see ``loop.run_chunks``). Steps from ``n_active`` on leave the state
    unchanged and have NaN losses (a last partial chunk). The guide's noise of all steps is
    drawn before the loop (``objective.GuideNoise``), which keeps random number generation
    out of the loop body.
    """

    def batched(states, data, rows, key, n_active):
        svi, n_noise = tracing_svi(_one_batch(data, rows, mode))
        n_init, dtype = states.rng_key.shape[0], data.dtype
        particles = () if svi.loss.num_particles == 1 else (svi.loss.num_particles,)
        # Each restart its own noise; every restart the same minibatches.
        noise = jax.random.normal(key, (n_init, chunk_size, *particles, n_noise), dtype)
        step = partial(_step, svi, n_noise, data, (mode, n_shards), n_active)

        def run_one(state, restart_noise):
            zero = jax.tree_util.tree_map(jnp.zeros_like, svi.optim.get_params(state.optim_state))
            xs = (jnp.arange(chunk_size), restart_noise, rows)
            (state, total), losses = jax.lax.scan(step, (state, zero), xs)
            mean = jax.tree_util.tree_map(lambda t: t / n_active.astype(t.dtype), total)
            return state, losses, mean

        return map_restarts(run_one, states, noise)

    return jit(batched)


def _one_batch(data, rows, mode):
    """One step's data, for setting the guide up."""
    if mode == "index":
        return data[rows[0]]
    if mode == "full":
        # A full-batch model's set-up is the same for any number of rows: one row gives the
        # shape of the draw program's, which then shares it.
        return data[:1]
    return data[0] if data.ndim == 3 else data


def _step(svi, n_noise, data, batching, n_active, carry, xs):
    """One step of the chunk's ``lax.scan``: update, and add the parameters to the running sum."""
    (mode, n_shards), (i, eps, idx) = batching, xs
    if mode == "index":
        batch = data[idx] if n_shards == 1 else local_rows(data, idx, n_shards)
    else:
        batch = data if mode == "full" else data[i]

    def update(carry):
        old, total = carry
        # Only OrderedTraceELBO takes the noise; a guide without any needs none.
        s, loss = svi.update(old, Z=batch, **({NOISE: eps} if n_noise else {}))
        # The noise comes in through eps, so the state's key is not needed: the one
        # SVI.update splits off each step would only cost another threefry.
        s = s._replace(rng_key=old.rng_key)
        total = jax.tree_util.tree_map(jnp.add, total, svi.optim.get_params(s.optim_state))
        return (s, total), loss.astype(batch.dtype)

    # n_active is the same for every restart, so under vmap this stays a branch and the
    # surplus steps of a last partial chunk cost nothing.
    skip = lambda carry: (carry, jnp.full((), jnp.nan, batch.dtype))  # noqa: E731
    return jax.lax.cond(i < n_active, update, skip, carry)


def local_rows(data: jax.Array, idx: jax.Array, n_shards: int) -> jax.Array:
    """Return the minibatch ``idx`` of ``data``, each shard's share taken from its own rows.

    ``data`` (n_obs, n_features) is split into ``n_shards`` blocks of rows, as a row-sharded
    array is over its devices; ``idx`` (batch_size,) holds ``batch_size / n_shards``
    indices into each block in turn. The gather is batched over the blocks, so that XLA
    partitions it (and the model's sum over the minibatch) by device, with no rows moved.
    """
    blocks = data.reshape(n_shards, -1, data.shape[-1])
    picks = jax.vmap(lambda block, i: block[i])(blocks, idx.reshape(n_shards, -1))
    return picks.reshape(idx.shape[0], data.shape[-1])


def initial_states(
    prog: Program,
    Z: jax.Array,
    values: dict | None,
    init_scale: float,
    n_init: int,
    key: jax.Array,
    dtype: DTypeLike,
) -> SVIState:
    """Return the SVI states of ``n_init`` restarts, stacked on a leading axis.

    The guide starts at ``values`` (constrained sites; None for the prior median) with
    scale ``init_scale``; each restart's location parameters are then moved by
    independent ``Normal(0, 0.1)`` noise in the unconstrained space (as NUTS chains are).
    Every floating parameter is cast to ``dtype``: numpyro creates the guide's scales in
    float64 when x64 is on. One compiled program per ``(init_scale, n_init, dtype)`` for
    the start and the restarts together: op by op, each small operation would be compiled
    on its own.
    """
    return prog.start_program(init_scale, n_init, dtype)(key, Z, values)


def _initial_states(make, optim, init_scale, n_init, dtype, key, Z, values):
    key_init, key_jitter, key_states = jax.random.split(key, 3)
    init_loc_fn = init_to_median if values is None else init_to_value(values=values)
    svi = make(init_loc_fn, init_scale)
    params = svi.optim.get_params(svi.init(key_init, Z=Z).optim_state)
    params = {k: jnp.asarray(v, dtype) for k, v in params.items()}
    keys = dict(zip(sorted(params), jax.random.split(key_jitter, len(params)), strict=True))

    def restart_params(name, value):
        reps = jnp.broadcast_to(value, (n_init, *value.shape))
        if not name.endswith("auto_loc"):
            return reps
        return reps + (0.1 * jax.random.normal(keys[name], reps.shape)).astype(dtype)

    stacked = {k: restart_params(k, v) for k, v in params.items()}
    # The model has no mutable state (no numpyro.mutable sites).
    return SVIState(jax.vmap(optim.init)(stacked), None, jax.random.split(key_states, n_init))
