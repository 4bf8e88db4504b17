"""The SVI run loop: compiled chunks of steps until the smoothed ELBO stops improving."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

import jax
import numpy as np
from numpyro.infer.svi import SVIState
from tqdm.std import tqdm

from bayesgmm.inference.progress import progress_bar
from bayesgmm.inference.svi.data import DeviceRows, chunk_feed

if TYPE_CHECKING:
    from bayesgmm.inference.prepare import FitSetup
    from bayesgmm.inference.svi.config import SVISettings
    from bayesgmm.inference.svi.program import Program

#: How far back (in steps, at most) ``run_chunks`` compares the current chunk in full batch:
#: the learning rate's half-life in ``config.default_optimizer``.
CONVERGENCE_LAG_STEPS = 2000


def elbo_converged(previous: np.ndarray, current: np.ndarray, tol: float) -> np.ndarray:
    """Return whether the smoothed loss of each restart stopped improving between two chunks.

    The smoothed loss is the mean of a chunk of steps. A restart has converged when
    its improvement is below ``tol`` relative to the loss, or below two standard
    errors of the difference of the two means (progress smaller than the noise of
    the stochastic ELBO cannot be told from none).

    Parameters
    ----------
    previous, current : ndarray, shape (n_init, n_steps)
        Negative ELBO of every step of two chunks (NaN-free).
    tol : float

    Returns
    -------
    ndarray of bool, shape (n_init,)

    Examples
    --------
    >>> elbo_converged(np.full((1, 4), 10.0), np.full((1, 4), 10.0), 1e-4).tolist()
    [True]
    """
    m0, v0 = previous.mean(axis=1), previous.var(axis=1)
    m1, v1 = current.mean(axis=1), current.var(axis=1)
    se = np.sqrt(v0 / previous.shape[1] + v1 / current.shape[1])
    return (m0 - m1) < np.maximum(tol * np.abs(m1), 2.0 * se)


def lag_steps(mode: str, chunk_size: int) -> int:
    """Return how far back a chunk is compared: ``CONVERGENCE_LAG_STEPS`` in full batch, else one chunk.

    A minibatch ELBO's noise is far above the guide's slow drift, which on large data hardly
    moves the fit, so comparing far back would only run longer. In full batch the noise is
    only the guide's draws, and progress per chunk sinks below it long before the guide
    stops moving.

    Examples
    --------
    >>> lag_steps("full", 200), lag_steps("index", 200)
    (2000, 200)
    """
    return CONVERGENCE_LAG_STEPS if mode == "full" else chunk_size


def run_chunks(
    prog: Program,
    states: SVIState,
    data_fn: Callable[[], tuple],
    max_steps: int,
    chunk_size: int,
    tol: float,
    key: jax.Array,
    bar: tqdm,
    *,
    lag_steps: int,
) -> tuple[SVIState, np.ndarray, bool]:
    """Run chunks until ``max_steps`` or two converged chunks in a row.

    Each chunk is compared (``elbo_converged``) with the one ``lag_steps`` steps back
    (the first chunk, early on), with ``tol`` scaled by the number of chunks between them.
    Next to the chunk before it, progress per chunk sinks below the noise of the stochastic
    ELBO long before the guide stops moving, and the fit would stop short of the optimum.

    The returned states hold the guide parameters averaged over the last chunk's steps
    (Polyak-Ruppert averaging) rather than the last step's, which jitters around the
    optimum with Adam's steps.

    Parameters
    ----------
    prog : program.Program
        Anything with its ``run_chunk(states, data, rows, key, n_active)``.
    states : numpyro.infer.svi.SVIState
        Of every restart, stacked on a leading axis.
    data_fn : callable
        ``data_fn()`` returns the ``(data, rows)`` arguments of the next chunk
        (``data.chunk_feed``).
    max_steps, chunk_size : int
    tol : float
    key : jax PRNG key
    bar : tqdm.tqdm
        Progress bar, updated after each chunk.
    lag_steps : int
        See ``lag_steps``.

    Returns
    -------
    states : numpyro.infer.svi.SVIState
    trace : ndarray, shape (n_init, n_steps)
        The ELBO of every step.
    converged : bool
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


def run(
    prog: Program, states: SVIState, setup: FitSetup, settings: SVISettings, device: DeviceRows
) -> tuple[SVIState, np.ndarray, bool]:
    """Run a fit's chunks of steps from ``states``: ``(states, trace, converged)``.

    Parameters
    ----------
    prog : program.Program
    states : numpyro.infer.svi.SVIState
    setup : prepare.FitSetup
    settings : config.SVISettings
    device : data.DeviceRows

    Returns
    -------
    See ``run_chunks``.
    """
    schedule, rows = settings.schedule, setup.data.extra
    feed = chunk_feed(rows, device, setup.data, schedule.chunk_size, settings.dtype)
    with progress_bar(schedule.max_steps, "SVI", disable=not settings.progress_bar) as bar:
        _, key_chunks = jax.random.split(setup.keys["svi"])
        return run_chunks(
            prog,
            states,
            feed,
            schedule.max_steps,
            schedule.chunk_size,
            schedule.tol,
            key_chunks,
            bar,
            lag_steps=lag_steps(rows.batching.mode, schedule.chunk_size),
        )
