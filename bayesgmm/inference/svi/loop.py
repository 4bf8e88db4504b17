"""The compiled half of SVI: guide start, chunks of steps, draws from the guide.

XLA compilation costs seconds, more than a whole fit on moderate data, so each fit
configuration gets one ``Program`` per process (``program``): a jitted chunk of steps
for every restart at once (``vmap`` over a ``lax.scan``), a jitted start and jitted
draws. Later chunks and later fits with the same shapes reuse the compiled code; a
last partial chunk runs the same program with the surplus steps skipped.

numpyro sets a guide up (``SVI.init``) by running the model and guide op by op; outside
``jit`` every one of those few hundred small ops is compiled on its own, which took
longer than the fit. So the guide start builds a fresh SVI object *inside* its traced
body and sets it up there; the other programs, which never use the guide's initial
values, share one SVI set up under ``jax.eval_shape`` (``TracingSVI``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import partial

import jax
import jax.numpy as jnp
import numpy as np
from numpyro.handlers import seed, substitute, trace
from numpyro.infer import SVI, Predictive
from numpyro.infer.autoguide import (
    AutoDelta,
    AutoLowRankMultivariateNormal,
    AutoMultivariateNormal,
    AutoNormal,
)
from numpyro.infer.initialization import init_to_median, init_to_value
from numpyro.infer.svi import SVIState
from numpyro.optim import optax_to_numpyro

from bayesgmm._jit import jit
from bayesgmm.inference.svi.draws import importance_fn
from bayesgmm.inference.svi.objective import NOISE, GuideNoise, OrderedTraceELBO, guide_noise_size

#: Variational families by name. ``map`` is a point mass: a MAP estimate, not a posterior.
GUIDES = {
    "meanfield": AutoNormal,
    "fullrank": AutoMultivariateNormal,
    "lowrank": AutoLowRankMultivariateNormal,
    "map": AutoDelta,
}


#: How far back (in steps, at most) ``run_chunks`` compares the current chunk: the
#: learning rate's half-life in ``svi.default_optimizer``.
CONVERGENCE_LAG_STEPS = 2000


def elbo_converged(previous: np.ndarray, current: np.ndarray, tol: float) -> np.ndarray:
    """Whether the smoothed loss of each restart stopped improving between two chunks.

    The smoothed loss is the mean of a chunk of steps. A restart has converged when
    its improvement is below ``tol`` relative to the loss, or below two standard
    errors of the difference of the two means (progress smaller than the noise of
    the stochastic ELBO cannot be told from none).

    Parameters
    ----------
    previous, current : ndarray, shape (n_restarts, n_steps)
        Negative ELBO of every step of two chunks (NaN-free).
    tol : float

    Returns
    -------
    ndarray of bool, shape (n_restarts,)

    Examples
    --------
    >>> elbo_converged(np.full((1, 4), 10.0), np.full((1, 4), 10.0), 1e-4).tolist()
    [True]
    """
    m0, v0 = previous.mean(axis=1), previous.var(axis=1)
    m1, v1 = current.mean(axis=1), current.var(axis=1)
    se = np.sqrt(v0 / previous.shape[1] + v1 / current.shape[1])
    return (m0 - m1) < np.maximum(tol * np.abs(m1), 2.0 * se)


@dataclass
class Program:
    """Compiled pieces shared by every fit with the same configuration.

    ``make(init_loc_fn, init_scale)`` returns a fresh, not yet set-up ``SVI``;
    ``tracing_svi`` is the ``TracingSVI`` of ``make`` that the chunk, draw and importance
    programs share.
    """

    make: object
    tracing_svi: object
    model: object
    names: list
    optim: object
    run_chunk: object
    importance: object
    starts: dict = field(default_factory=dict)
    draws: dict = field(default_factory=dict)
    compiled: set = field(default_factory=set)

    def start_program(self, init_scale, n_restarts: int, dtype):
        """The jitted guide start ``(key, Z, values) -> states`` (see ``initial_states``)."""
        config = (init_scale, n_restarts, np.dtype(dtype).str)
        if config not in self.starts:
            start = partial(_initial_states, self.make, self.optim, init_scale, n_restarts, dtype)
            self.starts[config] = jit(start, run_once=True)
        return self.starts[config]

    def draw_program(self, n_draws: int):
        """The jitted ``(states, keys, Z) -> (params, sites)`` of ``n_draws`` draws (see ``draw``)."""
        if n_draws not in self.draws:
            self.draws[n_draws] = _drawer(self.tracing_svi, self.model, self.names, n_draws)
        return self.draws[n_draws]

    def draw(self, states, keys, Z, n_draws: int):
        """Constrained guide parameters and ``n_draws`` draws of the sites ``names`` for each
        restart in ``states`` (leading axis); one compiled function per ``n_draws``."""
        return self.draw_program(n_draws)(states, keys, Z)


_PROGRAMS: dict = {}


def program(
    key, model, fit_model, guide_name, optimizer, num_particles, chunk_size, mode, names, renyi_alpha=1.0
):
    """The cached ``Program`` for ``key`` (a hashable description of the configuration).

    The loss is ``elbo.OrderedTraceELBO(num_particles, renyi_alpha)``.

    ``mode`` is ``"full"`` (every step sees all rows of the device array ``Z``),
    ``"index"`` (every step draws ``batch_size`` random rows of ``Z`` on the device) or
    ``"stream"`` (the host sends the chunk's minibatches, shape (chunk_size, batch_size,
    n_features)).
    """
    if key not in _PROGRAMS:
        optim = optax_to_numpyro(optimizer)
        loss = OrderedTraceELBO(num_particles=num_particles, alpha=renyi_alpha)

        def make(init_loc_fn=init_to_median, init_scale=0.1):
            guide = make_guide(guide_name, fit_model, init_loc_fn, init_scale)
            return SVI(fit_model, guide, optim, loss)

        tracing = TracingSVI(make)
        _PROGRAMS[key] = Program(
            make,
            tracing,
            model,
            names,
            optim,
            _chunk_runner(tracing, chunk_size, mode),
            importance_fn(tracing, guide_name),
        )
    return _PROGRAMS[key]


def set_up(make, Z, *args):
    """A fresh SVI from ``make(*args)``, set up on data ``Z``; call only inside a trace."""
    svi = make(*args)
    svi.init(jax.random.PRNGKey(0), Z=Z)
    return svi


class TracingSVI:
    """One SVI set up per data shape, for tracing programs that never use the guide's
    initial values (the chunk of steps, the draws, the importance ratios).

    numpyro sets a guide up by tracing the model about seven times (``initialize_model``
    searches for a valid start in a ``while_loop`` and checks its gradient): that was half
    of a first fit's tracing, done again in every program and then pruned from all but
    the guide start. Here it is done once per data shape and type, under
    ``jax.eval_shape``. The SVI keeps that trace's values (the guide's initial values and
    prototype), of which the programs use only shapes and constraints: they run the guide
    on the parameters they are given (a use of such a value in another trace would raise
    JAX's ``UnexpectedTracerError``, not compute anything wrong).

    ``tracing_svi(Z)`` returns ``(svi, n_noise)``: the set-up SVI of ``make()`` and the
    number of noise values ``GuideNoise`` feeds its guide per draw.
    """

    def __init__(self, make):
        self.make, self.cache = make, {}

    def __call__(self, Z):
        key = (tuple(Z.shape), np.dtype(Z.dtype).str, bool(jax.config.jax_enable_x64))
        if key not in self.cache:
            out = []

            def run(Z):
                svi = set_up(self.make, Z)
                out.append((svi, guide_noise_size(svi.guide, Z=Z)))

            jax.eval_shape(run, jax.ShapeDtypeStruct(Z.shape, Z.dtype))
            self.cache[key] = out[0]
        return self.cache[key]


def make_guide(guide_name, fit_model, init_loc_fn, init_scale):
    """A guide of family ``guide_name`` (see ``GUIDES``) starting at ``init_loc_fn``."""
    if guide_name == "map":
        return GUIDES[guide_name](fit_model, init_loc_fn=init_loc_fn)
    return GUIDES[guide_name](fit_model, init_loc_fn=init_loc_fn, init_scale=init_scale)


def _chunk_runner(tracing_svi: TracingSVI, chunk_size: int, mode: str):
    """Jitted ``(states, data, rows, key, n_active) -> (states, losses, mean_params)``.

    ``rows`` (``"index"`` mode only, else None) holds the minibatch rows of ``data`` of
    every step, shape (chunk_size, batch_size), drawn on the host: drawn in the program,
    their random numbers (threefry hashes, compiled as loops of a dozen kernels each) made
    a fifth of its kernels, and so of its compile time. ``key`` seeds the guide's noise.
    ``losses`` has shape (n_restarts, chunk_size); ``mean_params`` are the optimizer's
    parameters averaged over the chunk's steps (see ``run_chunks``). Steps from
    ``n_active`` on leave the state unchanged and have NaN losses (a last partial chunk).
    The guide's noise of all steps is drawn before the loop (``elbo.GuideNoise``), which
    keeps random number generation out of the loop body.
    """

    def batched(states, data, rows, key, n_active):
        if mode == "index":
            first = data[rows[0]]
        elif mode == "full":
            # A full-batch model's set-up is the same for any number of rows: one row gives
            # the shape of the draw program's, which then shares it.
            first = data[:1]
        elif data.ndim == 3:
            first = data[0]
        else:
            first = data
        svi, n_noise = tracing_svi(first)
        n_restarts, dtype = states.rng_key.shape[0], first.dtype
        particles = () if svi.loss.num_particles == 1 else (svi.loss.num_particles,)
        # Each restart its own noise; every restart the same minibatches.
        noise = jax.random.normal(key, (n_restarts, chunk_size, *particles, n_noise), dtype)

        def run_one(state, restart_noise):
            def step(carry, xs):
                i, eps, idx = xs
                if mode == "full":
                    batch = data
                elif mode == "index":
                    batch = data[idx]
                else:
                    batch = data[i]

                def update(carry):
                    old, total = carry
                    # Only OrderedTraceELBO takes the noise; a guide without any needs none.
                    s, loss = svi.update(old, Z=batch, **({NOISE: eps} if n_noise else {}))
                    # The noise comes in through eps, so the state's key is not needed: the
                    # one SVI.update splits off each step would only cost another threefry.
                    s = s._replace(rng_key=old.rng_key)
                    total = jax.tree_util.tree_map(jnp.add, total, svi.optim.get_params(s.optim_state))
                    return (s, total), loss.astype(batch.dtype)

                # n_active is the same for every restart, so under vmap this stays a branch
                # and the surplus steps of a last partial chunk cost nothing.
                skip = lambda carry: (carry, jnp.full((), jnp.nan, batch.dtype))  # noqa: E731
                return jax.lax.cond(i < n_active, update, skip, carry)

            zero = jax.tree_util.tree_map(jnp.zeros_like, svi.optim.get_params(state.optim_state))
            xs = (jnp.arange(chunk_size), restart_noise, rows)
            (state, total), losses = jax.lax.scan(step, (state, zero), xs)
            mean = jax.tree_util.tree_map(lambda t: t / n_active.astype(t.dtype), total)
            return state, losses, mean

        return map_restarts(run_one, states, noise)

    return jit(batched)


def map_restarts(fn, *args):
    """``jax.vmap(fn)(*args)`` over the restarts (leading axis of every leaf).

    A single restart (the default) is run without ``vmap``: batching the traced chunk of
    steps took about a second of tracing at K=10, D=10 (2.2 -> 1.3 s in all).
    """
    if jax.tree_util.tree_leaves(args)[0].shape[0] != 1:
        return jax.vmap(fn)(*args)
    out = fn(*jax.tree_util.tree_map(lambda a: a[0], args))
    return jax.tree_util.tree_map(lambda a: a[None], out)


def _drawer(tracing_svi: TracingSVI, model, names, n_draws):
    """Jitted ``(states, keys, Z) -> (params, sites)``, vectorised over restarts.

    The guide's noise for all draws is drawn at once and fed through ``GuideNoise``
    (0.5 s less to compile at K=10, D=10 than numpyro's draw per site and draw); the
    model then adds its deterministic sites (``scale_tril``, the dp prior's ``weights``).
    """

    def draw(states, keys, Z):
        svi, n_noise = tracing_svi(Z)

        def one(state, key):
            params = svi.get_params(state)
            key_noise, key_model = jax.random.split(key)
            dtype = jax.tree_util.tree_leaves(params)[0].dtype
            noise = jax.random.normal(key_noise, (n_draws, n_noise), dtype)
            guide = substitute(svi.guide, data=params)

            def guide_draw(eps):
                sites = trace(GuideNoise(seed(guide, 0), eps)).get_trace(Z=Z)
                return {k: v["value"] for k, v in sites.items() if v["type"] == "sample"}

            latent = jax.vmap(guide_draw)(noise)
            predictive = Predictive(model, posterior_samples=latent, return_sites=names)
            return params, predictive(key_model, n_obs=1)

        return map_restarts(one, states, keys)

    return jit(draw, run_once=True)


def initial_states(prog: Program, Z, values, init_scale, n_restarts, key, dtype):
    """SVI states of ``n_restarts`` restarts, stacked on a leading axis.

    The guide starts at ``values`` (constrained sites; None for the prior median) with
    scale ``init_scale``; each restart's location parameters are then moved by
    independent ``Normal(0, 0.1)`` noise in the unconstrained space (as NUTS chains are).
    Every floating parameter is cast to ``dtype``: numpyro creates the guide's scales
    in float64 when x64 is on. One compiled program per ``(init_scale, n_restarts, dtype)``
    for the start and the restarts together: op by op, each small operation would be
    compiled on its own (about 1 s in a fresh process at K=10, D=10).
    """
    return prog.start_program(init_scale, n_restarts, dtype)(key, Z, values)


def compile_ahead(prog: Program, pool, *, start, chunk, draw) -> list:
    """Compile a fit's guide start, chunk of steps and draws in ``pool``'s threads.

    A first fit spends most of its time in XLA compilation (about 3 s of CPU for the chunk program
    alone at K=10, D=10), which releases the GIL: compiled in other threads, the programs
    are ready while this one goes on (with the EM start, say). The tracing (lowering) is
    done here, on the calling thread: numpyro keeps its effect handlers on one global
    stack, so two threads must not run numpyro models at once. Once compiled, the usual
    calls with arguments of the same shapes and types find the compiled programs in
    ``jax.jit``'s caches.

    Parameters
    ----------
    prog : Program
    pool : concurrent.futures.Executor
    start : tuple
        ``(init_scale, n_restarts, dtype, key, Z, values)``: the arguments of
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
    init_scale, n_restarts, dtype, key, Z, values = start
    signature = jax.tree_util.tree_map(
        lambda a: (tuple(a.shape), np.dtype(a.dtype).str), (key, Z, values, chunk[:2], draw[2])
    )
    signature = (init_scale, n_restarts, np.dtype(dtype).str, draw[:2], str(signature))
    if signature in prog.compiled:
        return []
    prog.compiled.add(signature)
    traced = prog.start_program(init_scale, n_restarts, dtype).trace(key, Z, values)
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


def _initial_states(make, optim, init_scale, n_restarts, dtype, key, Z, values):
    key_init, key_jitter, key_states = jax.random.split(key, 3)
    init_loc_fn = init_to_median if values is None else init_to_value(values=values)
    svi = make(init_loc_fn, init_scale)
    params = svi.optim.get_params(svi.init(key_init, Z=Z).optim_state)
    params = {k: jnp.asarray(v, dtype) for k, v in params.items()}
    keys = dict(zip(sorted(params), jax.random.split(key_jitter, len(params)), strict=True))

    def restart_params(name, value):
        reps = jnp.broadcast_to(value, (n_restarts, *value.shape))
        if not name.endswith("auto_loc"):
            return reps
        return reps + (0.1 * jax.random.normal(keys[name], reps.shape)).astype(dtype)

    stacked = {k: restart_params(k, v) for k, v in params.items()}
    # The model has no mutable state (no numpyro.mutable sites).
    return SVIState(jax.vmap(optim.init)(stacked), None, jax.random.split(key_states, n_restarts))


def run_chunks(prog: Program, states, data_fn, max_steps, chunk_size, tol, key, bar, *, lag_steps):
    """Run chunks until ``max_steps`` or two converged chunks in a row.

    Each chunk is compared (``elbo_converged``) with the one ``lag_steps`` steps back
    (``CONVERGENCE_LAG_STEPS`` in full batch; the first chunk, early on), with ``tol``
    scaled by the number of chunks between them. Next to the chunk before it, progress per chunk
    sinks below the noise of the stochastic ELBO long before the guide stops moving: on
    iris (K=3, full-rank guide) that rule stopped at 1,200-2,200 steps, 1.5 nats of ELBO
    short of the optimum, with the held-out log predictive density 0-3% off NUTS's over
    seeds 0-4 (0.5-1.2% after 24,000 steps, against two NUTS runs).

    The returned states hold the guide parameters averaged over the last chunk's steps
    (Polyak-Ruppert averaging) rather than the last step's, which jitters around the
    optimum with Adam's steps: on iris, with the rule above, the held-out log predictive
    density spread over 0.5 nats across seeds with averaging and 0.9 without (4-5 seeds).

    ``data_fn()`` returns the ``(data, rows)`` arguments of the next chunk (see ``_chunk_runner``).
    Returns the final states, the ELBO trace (n_restarts, n_steps) and whether it converged.
    """
    max_lag = max(1, round(lag_steps / chunk_size))
    losses, n_done, in_a_row = [], 0, 0
    while n_done < max_steps and in_a_row < 2:
        n_active = min(chunk_size, max_steps - n_done)
        key, sub = jax.random.split(key)
        states, chunk_losses, mean_params = prog.run_chunk(states, *data_fn(), sub, n_active)
        losses.append(np.asarray(chunk_losses)[:, :n_active])
        n_done += n_active
        if len(losses) > 1:
            lag = min(len(losses) - 1, max_lag)
            done = elbo_converged(losses[-1 - lag], losses[-1], tol * lag).all()
            in_a_row = in_a_row + 1 if done else 0
        bar.update(n_active)
        bar.set_postfix(elbo=f"{-losses[-1].mean():.4g}")
    # numpyro's optax wrapper keeps (step, (params, optax state)).
    step, (_, inner) = states.optim_state
    states = states._replace(optim_state=(step, (mean_params, inner)))
    return states, -np.concatenate(losses, axis=1), in_a_row == 2
