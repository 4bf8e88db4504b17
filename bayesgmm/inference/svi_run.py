"""The compiled half of SVI: guide start, chunks of steps, draws from the guide.

XLA compilation costs seconds, more than a whole fit on moderate data, so each fit
configuration gets one ``Program`` per process (``program``): a jitted chunk of steps
for every restart at once (``vmap`` over a ``lax.scan``, with the ELBO convergence
check inside) and a jitted draw function. Later chunks and later fits with the same
shapes reuse the compiled code; a last partial chunk runs the same program with the
surplus steps masked out.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import jax
import jax.numpy as jnp
import numpy as np
import optax
from numpyro.infer import SVI, Predictive, Trace_ELBO
from numpyro.infer.autoguide import (
    AutoDelta,
    AutoLowRankMultivariateNormal,
    AutoMultivariateNormal,
    AutoNormal,
)
from numpyro.infer.svi import SVIState
from numpyro.optim import optax_to_numpyro

from bayesgmm.inference.svi_draws import importance_fn

#: Variational families by name. ``map`` is a point mass: a MAP estimate, not a posterior.
GUIDES = {
    "meanfield": AutoNormal,
    "fullrank": AutoMultivariateNormal,
    "lowrank": AutoLowRankMultivariateNormal,
    "map": AutoDelta,
}


def converged_from_stats(m0, v0, m1, v1, n_steps, tol):
    """``svi.elbo_converged`` from the means and variances of the two chunks' losses."""
    se = jnp.sqrt((v0 + v1) / n_steps)
    return (m0 - m1) < jnp.maximum(tol * jnp.abs(m1), 2.0 * se)


@dataclass
class Program:
    """Compiled pieces shared by every fit with the same configuration.

    ``svi`` is the SVI object whose ``update`` is traced; its guide is only used for
    its structure (site shapes and order), never for starting values.
    """

    svi: SVI
    run_chunk: object
    importance: object
    model: object
    names: list
    draws: dict = field(default_factory=dict)

    def draw(self, params, keys, n_draws: int):
        """``n_draws`` draws of the sites ``names`` for each kept restart (leading axis of
        ``params`` and ``keys``); one compiled function per ``n_draws``."""
        if n_draws not in self.draws:
            self.draws[n_draws] = _drawer(self.model, self.svi.guide, self.names, n_draws)
        return self.draws[n_draws](params, keys)


_PROGRAMS: dict = {}


def program(key, model, fit_model, guide, optimizer, num_particles, chunk_size, mode, names):
    """The cached ``Program`` for ``key`` (a hashable description of the configuration).

    ``guide`` is this fit's guide; it becomes the program's guide when the program is
    new. ``mode`` is ``"full"`` (every step sees all rows of the device array ``Z``),
    ``"index"`` (every step draws ``batch_size`` random rows of ``Z`` on the device) or
    ``"stream"`` (the host sends the chunk's minibatches, shape (chunk_size, batch_size,
    n_features)).
    """
    if key not in _PROGRAMS:
        svi = SVI(fit_model, guide, optax_to_numpyro(optimizer), Trace_ELBO(num_particles=num_particles))
        runner = _chunk_runner(svi, chunk_size, mode)
        _PROGRAMS[key] = Program(svi, runner, importance_fn(model, guide, guide_name(guide)), model, names)
    return _PROGRAMS[key]


def make_guide(name, fit_model, init_loc_fn, init_scale):
    """A guide of family ``name`` (see ``GUIDES``) starting at ``init_loc_fn``."""
    if name == "map":
        return GUIDES[name](fit_model, init_loc_fn=init_loc_fn)
    return GUIDES[name](fit_model, init_loc_fn=init_loc_fn, init_scale=init_scale)


def guide_name(guide) -> str:
    return next(name for name, cls in GUIDES.items() if type(guide) is cls)


def _chunk_runner(svi: SVI, chunk_size: int, mode: str):
    """Jitted ``(states, prev, data, key, n_active, batch_size, tol) -> (states, losses, stats, done)``.

    ``prev`` and ``stats`` are the (mean, variance) of each restart's losses over the
    previous and this chunk; ``done`` says per restart whether ``elbo_converged`` holds.
    Steps from ``n_active`` on leave the state unchanged (a last partial chunk).
    """

    def run_one(state, prev, data, key, n_active, tol, batch_size):
        def step(s, i):
            if mode == "full":
                batch = data
            elif mode == "index":
                idx = jax.random.randint(jax.random.fold_in(key, i), (batch_size,), 0, data.shape[0])
                batch = data[idx]
            else:
                batch = data[i]

            # n_active is the same for every restart, so under vmap this stays a branch
            # and the surplus steps of a last partial chunk cost nothing.
            def update(s):
                s, loss = svi.update(s, Z=batch)
                return s, loss.astype(batch.dtype)

            return jax.lax.cond(i < n_active, update, lambda s: (s, jnp.full((), jnp.nan, batch.dtype)), s)

        state, losses = jax.lax.scan(step, state, jnp.arange(chunk_size))
        m1, v1 = jnp.nanmean(losses), jnp.nanvar(losses)
        done = converged_from_stats(prev[0], prev[1], m1, v1, n_active, tol)
        return state, losses, (m1, v1), done

    batched = jax.vmap(run_one, in_axes=(0, 0, None, None, None, None, None))
    return jax.jit(batched, static_argnums=6)


def _drawer(model, guide, names, n_draws):
    """Jitted ``(params, key) -> sites``, ``n_draws`` draws for each kept restart (leading axis)."""

    def draw(params, key):
        predictive = Predictive(model, guide=guide, params=params, num_samples=n_draws, return_sites=names)
        return predictive(key, n_obs=1)

    return jax.jit(jax.vmap(draw))


def initial_states(prog: Program, guide, Z, n_restarts, key, dtype):
    """SVI states of ``n_restarts`` restarts, stacked on a leading axis.

    ``guide`` (from ``make_guide``) is set up once, at its start; each restart's location
    parameters are then moved by independent ``Normal(0, 0.1)`` noise in the
    unconstrained space (as NUTS chains are), so that restarts cost one set-up, not one
    each. Every floating parameter is cast to ``dtype``: numpyro creates the guide's
    scales in float64 when x64 is on, which would turn a float32 fit into float64
    arithmetic throughout.
    """
    # A program made by an earlier fit keeps its own (set-up) guide for the compiled
    # steps; this fit's guide only provides the starting values.
    svi = prog.svi if prog.svi.guide is guide else SVI(prog.svi.model, guide, prog.svi.optim, prog.svi.loss)
    key_init, key_jitter, key_states = jax.random.split(key, 3)
    state = svi.init(key_init, Z=Z)
    params = prog.svi.optim.get_params(state.optim_state)
    params = {k: jnp.asarray(v, dtype) for k, v in params.items()}
    keys = dict(zip(sorted(params), jax.random.split(key_jitter, len(params)), strict=True))

    def restart_params(name, value):
        reps = jnp.broadcast_to(value, (n_restarts, *value.shape))
        if not name.endswith("auto_loc"):
            return reps
        return reps + (0.1 * jax.random.normal(keys[name], reps.shape)).astype(dtype)

    stacked = {k: restart_params(k, v) for k, v in params.items()}
    optim_state = jax.vmap(prog.svi.optim.init)(stacked)
    return SVIState(optim_state, state.mutable_state, jax.random.split(key_states, n_restarts))


def run_chunks(prog: Program, states, mode, data_fn, max_steps, chunk_size, tol, batch_size, key, bar):
    """Run chunks until ``max_steps`` or two converged chunks in a row.

    Returns the final states, the ELBO trace (n_restarts, n_steps) and whether it converged.
    """
    n_restarts = jax.tree_util.tree_leaves(states)[0].shape[0]
    prev = (jnp.full(n_restarts, jnp.inf), jnp.zeros(n_restarts))
    losses, n_done, in_a_row = [], 0, 0
    while n_done < max_steps and in_a_row < 2:
        n_active = min(chunk_size, max_steps - n_done)
        key, sub = jax.random.split(key)
        states, chunk_losses, prev, done = prog.run_chunk(
            states, prev, data_fn(), sub, n_active, tol, batch_size if mode == "index" else 0
        )
        losses.append(np.asarray(chunk_losses)[:, :n_active])
        n_done += n_active
        in_a_row = in_a_row + 1 if np.asarray(done).all() and len(losses) > 1 else 0
        bar.update(n_active)
        bar.set_postfix(elbo=f"{-losses[-1].mean():.4g}")
    return states, -np.concatenate(losses, axis=1), in_a_row == 2


def default_optimizer(lr: float = 0.01) -> optax.GradientTransformation:
    """Adam, ``lr`` decaying by half every 1000 steps (see ``svi.default_optimizer``)."""
    return optax.adam(optax.exponential_decay(lr, 1000, 0.5))
