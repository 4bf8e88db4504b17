"""The settings of an SVI fit, in a few frozen groups, and the guide and optimiser they name.

Each group is bound once at the top of ``fit_svi`` and passed whole, in the manner of
blackjax's algorithms: ``Objective`` (guide and loss), ``Schedule`` (how long to run and when
to stop), ``Batching`` (which rows each step sees) and ``Output`` (what the fit returns).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import optax
from numpyro.infer.autoguide import (
    AutoDelta,
    AutoGuide,
    AutoLowRankMultivariateNormal,
    AutoMultivariateNormal,
    AutoNormal,
)

from bayesgmm.inference.svi.objective import OrderedTraceELBO

#: Variational families by name. ``map`` is a point mass: a MAP estimate, not a posterior.
GUIDES = {
    "meanfield": AutoNormal,
    "fullrank": AutoMultivariateNormal,
    "lowrank": AutoLowRankMultivariateNormal,
    "map": AutoDelta,
}

#: Minibatch size used when the data are streamed (memmap or chunk callable) and none is given.
DEFAULT_BATCH_SIZE = 4096

#: Type of the minibatch row indices drawn on the host (``batch_size`` with an in-memory array).
ROW_INDEX = np.int32

_DEFAULT_OPTIMIZER = optax.adam(optax.exponential_decay(1e-2, 2000, 0.5))


def default_optimizer() -> optax.GradientTransformation:
    """Return Adam from 0.01, halved every 2000 steps.

    The model is on standardised data and starts at an EM fit, so parameters move by
    O(0.1) and steps of about 0.01 reach them in a few hundred steps; the decay then
    shrinks Adam's jitter around the optimum, which the convergence rule needs to see the
    ELBO flatten. A faster decay freezes the guide short of the optimum. One object is
    shared by every fit, so that their compiled programs are too (programs are cached by
    optimizer, see ``cache.ProgramCache``).

    Returns
    -------
    optax.GradientTransformation

    Examples
    --------
    >>> default_optimizer() is default_optimizer()
    True
    """
    return _DEFAULT_OPTIMIZER


def make_guide(guide_name: str, fit_model: Callable, init_loc_fn: Callable, init_scale: float) -> AutoGuide:
    """Build a guide of family ``guide_name`` (see ``GUIDES``) starting at ``init_loc_fn``.

    Parameters
    ----------
    guide_name : str
        A key of ``GUIDES``.
    fit_model : callable
        The numpyro model the guide approximates.
    init_loc_fn : callable
        numpyro initialisation strategy of the guide's locations.
    init_scale : float
        Initial scale of the guide (unused by ``"map"``).

    Returns
    -------
    numpyro.infer.autoguide.AutoGuide
    """
    if guide_name == "map":
        return GUIDES[guide_name](fit_model, init_loc_fn=init_loc_fn)
    return GUIDES[guide_name](fit_model, init_loc_fn=init_loc_fn, init_scale=init_scale)


@dataclass(frozen=True)
class Objective:
    """The variational family and the bound it optimises.

    Parameters
    ----------
    guide : str
        A key of ``GUIDES``.
    num_particles : int
        Monte Carlo draws per gradient.
    renyi_alpha : float
        1 for the ELBO, below 1 the Rényi bound (see ``objective.OrderedTraceELBO``).
    """

    guide: str = "fullrank"
    num_particles: int = 1
    renyi_alpha: float = 1.0

    def loss(self) -> OrderedTraceELBO:
        """Return the loss: ``OrderedTraceELBO(num_particles, renyi_alpha)``."""
        return OrderedTraceELBO(num_particles=self.num_particles, alpha=float(self.renyi_alpha))


@dataclass(frozen=True)
class Schedule:
    """How the steps run: ``chunk_size`` at a time, at most ``max_steps``, stopping at ``tol``."""

    max_steps: int = 20_000
    tol: float = 1e-4
    chunk_size: int = 200


@dataclass(frozen=True)
class Batching:
    """Which rows each step sees.

    ``mode`` is ``"full"`` (every step sees all rows of the device array), ``"index"``
    (every step sees ``batch_size`` random rows of the device array, their indices drawn on
    the host) or ``"stream"`` (the host sends each chunk's minibatches, shape
    (chunk_size, batch_size, n_features)). ``n_obs`` is the number of rows of the data.
    ``n_shards`` is the number of devices that hold the rows in ``"index"`` mode (one
    block of ``n_obs / n_shards`` rows each): every step takes ``batch_size / n_shards``
    rows from each block, on the device that holds it.
    """

    mode: str
    batch_size: int | None
    n_obs: int
    n_shards: int = 1

    @property
    def scaled_n_obs(self) -> int | None:
        """Return ``n_obs`` where the model scales a minibatch up to it, None in full batch."""
        return None if self.mode == "full" else self.n_obs


@dataclass(frozen=True)
class Output:
    """What the fit returns: draws per kept restart, which restarts, which groups."""

    num_samples: int = 1000
    keep: str = "best"
    log_likelihood: bool = True
    max_observed: int = 20_000
    prior_draws: int = 0
    posterior_predictive: bool = False


@dataclass(frozen=True)
class SVISettings:
    """Every setting of an SVI fit but the model's and the data's, bound once.

    Parameters
    ----------
    objective, schedule, output : Objective, Schedule, Output
    optimizer : optax.GradientTransformation
    n_init : int
        Restarts run in parallel from jittered starts.
    init : {"em", "prior"}
        Start the guide at the best of a few EM fits or at the prior median.
    dtype : numpy dtype
        Of the SVI arithmetic.
    progress_bar : bool
    """

    objective: Objective
    schedule: Schedule
    output: Output
    optimizer: optax.GradientTransformation
    n_init: int = 1
    init: str = "em"
    dtype: np.dtype = np.dtype(np.float64)
    progress_bar: bool = False

    def check(self, minibatch: bool) -> None:
        """Raise ``ValueError`` on settings that cannot be used together."""
        if self.objective.guide not in GUIDES:
            raise ValueError(f"guide must be one of {tuple(GUIDES)}, got {self.objective.guide!r}.")
        if self.output.keep not in ("best", "chains"):
            raise ValueError(f"keep must be 'best' or 'chains', got {self.output.keep!r}.")
        if self.init not in ("em", "prior"):
            raise ValueError(f"init must be 'em' or 'prior', got {self.init!r}.")
        o = self.objective
        _check_renyi(o.renyi_alpha, o.num_particles, o.guide, minibatch)

    @property
    def n_draws(self) -> int:
        """Return the draws per kept restart: one for a point mass."""
        return 1 if self.objective.guide == "map" else self.output.num_samples

    @property
    def n_kept(self) -> int:
        """Return the number of restarts kept as chains."""
        return self.n_init if self.output.keep == "chains" else 1

    @property
    def float32(self) -> bool:
        """Return whether the arithmetic is in float32."""
        return self.dtype == np.float32


def _check_renyi(renyi_alpha, num_particles, guide, minibatch):
    """Raise if the Rényi objective ``renyi_alpha`` cannot be used as asked."""
    if isinstance(renyi_alpha, bool) or not isinstance(renyi_alpha, int | float | np.number):
        raise ValueError(f"renyi_alpha must be a number in [0, 1], got {renyi_alpha!r}.")
    if not 0.0 <= renyi_alpha <= 1.0:
        raise ValueError(f"renyi_alpha must be in [0, 1] (1 is the ELBO), got {renyi_alpha!r}.")
    if renyi_alpha == 1.0:
        return
    if guide == "map":
        raise ValueError("renyi_alpha < 1 needs a guide with spread; guide='map' is a point mass.")
    if num_particles < 2:
        raise ValueError(
            f"renyi_alpha={renyi_alpha} needs num_particles >= 2: with one particle the Rényi "
            "bound is the ELBO. Pass e.g. num_particles=16."
        )
    if minibatch:
        raise ValueError(
            "renyi_alpha < 1 needs full-batch data: the Rényi bound of a subsampled likelihood "
            "is biased. Leave batch_size=None with an in-memory array, or use renyi_alpha=1."
        )
