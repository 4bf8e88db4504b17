"""Fit the Bayesian mixture by stochastic variational inference (SVI) into ArviZ InferenceData.

The pieces are chosen by name in one place (``config``): the guide from ``GUIDES``, any
optax optimizer, the same ``gmm_model`` as NUTS. ``fit_svi`` composes them: prepare the
data and model (``inference.prepare``), start the guides (``program.initial_states``), run
compiled chunks of steps until the smoothed ELBO stops improving (``loop.run_chunks``), draw
from the best guide or every one (``program.Program.draw``) and finish the InferenceData.
"""

from __future__ import annotations

import json
import time
import warnings
from dataclasses import dataclass, field
from functools import partial
from typing import TYPE_CHECKING, Any

import arviz as az
import numpy as np
import optax
import xarray as xr
from numpy.typing import DTypeLike

from bayesgmm.inference.prepare import FitSetup, finish, prepare
from bayesgmm.inference.svi.cache import PROGRAMS, program_key
from bayesgmm.inference.svi.config import Objective, Output, Schedule, SVISettings, default_optimizer
from bayesgmm.inference.svi.data import is_minibatch, load_rows
from bayesgmm.inference.svi.draws import draw_kept, importance
from bayesgmm.inference.svi.init import init_guides, precision
from bayesgmm.inference.svi.loop import lag_steps, run
from bayesgmm.inference.svi.program import Program, build_program
from bayesgmm.models import LATENT_SITES, WEIGHT_SITES, hyper_draws, params_from_sites
from bayesgmm.priors import Priors

if TYPE_CHECKING:
    from bayesgmm._typing import Seed

#: Names of the keys a fit's seed is split into, in order.
_KEYS = ("init", "svi", "draws", "prior", "idata", "rng")


def fit_svi(
    X: Any,
    n_components: int,
    covariance_type: str = "full",
    *,
    priors: Priors | None = None,
    weight_prior: str = "dirichlet",
    guide: str = "fullrank",
    optimizer: optax.GradientTransformation | None = None,
    num_samples: int = 1000,
    n_init: int = 1,
    keep: str = "best",
    max_steps: int = 20_000,
    tol: float = 1e-4,
    chunk_size: int = 200,
    batch_size: int | None = None,
    num_particles: int = 1,
    renyi_alpha: float = 1.0,
    seed: Seed = None,
    dtype: DTypeLike = np.float64,
    init: str = "em",
    init_rows: int = 20_000,
    max_observed: int = 20_000,
    log_likelihood: bool = True,
    prior_draws: int = 0,
    posterior_predictive: bool = False,
    progress_bar: bool = False,
    feature_names: list[str] | None = None,
    num_restarts: int | None = None,
    missing: str = "error",
    noise: str | None = None,
    noise_volume: float | None = None,
) -> az.InferenceData:
    """Approximate the posterior of a Gaussian mixture by SVI.

    Same model, standardisation and output layout as ``fit_nuts``: the guide's draws
    are stored with ``chain``/``draw`` dims, in the user's units.

    Parameters
    ----------
    X : array-like, numpy.memmap or callable
        Shape (n_obs, n_features). A callable must return a fresh iterable of row
        chunks (arrays of shape (n_rows, n_features)) on each call; with it, and with
        a memmap, the data are never loaded whole (minibatch SVI). A ``jax.Array``
        sharded over the local devices (:func:`bayesgmm.shard_rows`) stays sharded: the sums
        over rows run where the rows are, and with ``batch_size`` each device draws an
        equal share of every minibatch from its own rows (see ``batch_size``).
    n_components : int
    covariance_type : str
        As in ``fit_nuts``.
    priors : Priors, optional
    weight_prior : {"dirichlet", "sparse", "dp"}
        As in ``fit_nuts``.
    guide : {"fullrank", "meanfield", "lowrank", "map"}
        Multivariate normal, independent normals, low-rank plus diagonal normal (all
        in the unconstrained space), or a point mass at the MAP estimate.
    optimizer : optax.GradientTransformation, optional
        Defaults to ``default_optimizer()``.
    num_samples : int
        Draws from the guide per kept restart (1 for ``guide="map"``).
    n_init : int
        Restarts run in parallel from jittered starts.
    keep : {"best", "chains"}
        Keep the restart with the highest final ELBO as one chain, or every restart
        as a chain (their agreement is a check on the optimisation).
    max_steps, tol, chunk_size : int, float, int
        Steps run ``chunk_size`` at a time in one compiled program (compiled once per
        process and configuration); the fit stops after ``max_steps`` or when
        ``loop.elbo_converged`` holds for two chunks in a row, each chunk compared
        with the one 2000 steps back in full batch, with the one before with minibatches
        (``loop.run_chunks``). The draws come from the guide parameters averaged over
        the last chunk.
    batch_size : int, optional
        Minibatch size: the likelihood of ``batch_size`` random rows is scaled by
        ``n_obs / batch_size``. None fits the full data each step (arrays) or uses
        ``config.DEFAULT_BATCH_SIZE`` (memmaps and callables). An in-memory array is copied
        to the device once and each chunk's minibatch row indices are drawn on the host;
        the rows of a memmap or callable are read and sent chunk by chunk. With rows
        sharded over ``D`` devices the minibatch is stratified: ``batch_size / D`` random
        rows of each device's block (so ``batch_size`` must be a multiple of ``D``; other
        values are refused with the nearest that work).
    num_particles : int
        Monte Carlo draws per ELBO gradient.
    renyi_alpha : float in [0, 1], default 1.0
        The objective: 1 is the ELBO (the guide minimises KL(q || p), which makes it
        narrower than the posterior); below 1 the Rényi bound of order ``renyi_alpha``
        over the ``num_particles`` draws of each step (``objective.OrderedTraceELBO``, with
        the doubly reparameterised gradient), 0 the importance-weighted bound. Its guide
        covers more of the posterior's mass, the more so with more particles. It needs
        ``num_particles >= 2`` and full-batch data (the bound of a subsampled likelihood
        is biased). Worth it when the posterior is far from Gaussian, as with few
        observations per parameter, where the ELBO's guide is too narrow (e.g.
        ``renyi_alpha=0, num_particles=64``); each step costs more.
    seed : int, numpy Generator or JAX key, optional
    dtype : numpy dtype, default float64
        Of the SVI arithmetic (guide parameters, data, ELBO); float32 is faster. The EM
        start and the returned draws' summaries are computed in float64.
    init : {"em", "prior"}
        Start at the best of a few EM fits (on ``init_rows`` random rows when there
        are more) or at the prior median.
    init_rows : int
    max_observed : int
        ``observed_data`` and ``log_likelihood`` hold at most this many rows; a larger
        data set is represented by a random subset (``attrs["observed_subset"]``), since
        the log-likelihood of every draw at every row would not fit in memory.
    log_likelihood : bool
        Compute the ``log_likelihood`` group and ``sample_stats`` (each costs
        ``num_samples * min(n_obs, max_observed) * n_components`` densities, often more
        than the fit itself); False leaves both out.
    prior_draws, posterior_predictive, progress_bar, feature_names
        As in ``fit_nuts``.
    num_restarts : int, optional
        Deprecated alias of ``n_init``.
    missing : {"error", "marginalize"}, default "error"
        As in ``fit_nuts``: with ``"marginalize"``, NaN are values missing at random and
        the likelihood is that of the observed values. In-memory arrays only (full batch
        or ``batch_size``); a memmap or chunk callable is refused.
    noise : {None, "uniform"}, default None; noise_volume : float, optional
        A uniform noise component, as in ``fit_nuts`` (the posterior gains
        ``noise_weight``, the predictive groups draw rows from it); the guide starts at
        EM's noise fit on ``init_rows`` rows. The default region is the bounding box of
        the rows kept for ``observed_data`` (all rows, up to ``max_observed``).

    Warns
    -----
    bayesgmm.DiagnosticsWarning
        When the ELBO did not converge within ``max_steps`` or the Pareto k of the guide's
        importance weights exceeds 0.7 (``posterior.diagnostics.fit_problems``).
    FutureWarning
        When ``num_restarts`` is passed.

    Returns
    -------
    arviz.InferenceData
        The groups of ``fit_nuts`` (``posterior``, ``log_likelihood``, ``observed_data``,
        ``constant_data``), plus ``elbo_trace`` (``elbo`` with dims restart/step, for
        every restart) and, when the data are not subset, ``sample_stats`` with ``lp``
        and ``log_q`` per draw (see ``draws.importance_stats``). ``attrs["pareto_k"]``
        says how far the guide is from the posterior (above 0.7, do not trust it): a JSON
        string, since netCDF attributes hold no lists, of one value per restart kept as a
        chain, read by ``json.loads(idata.attrs["pareto_k"])``. ``attrs["n_steps"]`` and
        ``attrs["converged"]`` say how many steps ran and whether the stopping rule (not
        ``max_steps``) ended them; ``max_steps``, ``tol``, ``chunk_size`` and
        ``convergence_lag_steps`` (how far back each chunk is compared) are that rule's settings.
        ``attrs["timings"]`` holds the seconds spent in each phase (JSON): ``em_start``
        includes tracing its own program and the SVI programs, whose compilation runs
        meanwhile in other threads; ``compile`` is the wait for what remains of it after
        the EM start.

    Examples
    --------
    >>> from bayesgmm import fit_svi, load_dataset
    >>> X, _ = load_dataset("faithful")
    >>> idata = fit_svi(X, 2, guide="meanfield", num_samples=100, seed=0)
    >>> idata.posterior["means"].dims
    ('chain', 'draw', 'component', 'feature')
    >>> idata.posterior.sizes["draw"], idata.attrs["converged"]
    (100, 1)
    >>> import json
    >>> [k < 0.7 for k in json.loads(idata.attrs["pareto_k"])]
    [True]

    With a uniform noise component:

    >>> import numpy as np
    >>> X_out = np.vstack([X, [[0.0, 150.0], [7.0, 10.0], [0.5, 20.0]]])
    >>> idata = fit_svi(X_out, 2, num_samples=100, seed=0, noise="uniform")
    >>> idata.posterior["noise_weight"].dims, float(idata.posterior["noise_weight"].mean()) < 0.05
    (('chain', 'draw'), True)
    """
    settings = SVISettings(
        Objective(guide, num_particles, renyi_alpha),
        Schedule(max_steps, tol, chunk_size),
        Output(num_samples, keep, log_likelihood, max_observed, prior_draws, posterior_predictive),
        optimizer or default_optimizer(),
        n_init=_n_init(n_init, num_restarts),
        init=init,
        dtype=np.dtype(dtype),
        progress_bar=progress_bar,
    )
    settings.check(is_minibatch(X, batch_size))
    clock = _Clock()
    load = partial(
        load_rows,
        batch_size=batch_size,
        chunk_size=chunk_size,
        init_rows=init_rows,
        max_observed=max_observed,
    )
    names = dict(priors=priors, weight_prior=weight_prior, feature_names=feature_names, missing=missing)
    names.update(noise=noise, noise_volume=noise_volume)
    setup = prepare(X, n_components, covariance_type, seed=seed, key_names=_KEYS, load=load, **names)
    clock.lap("data")
    return _fit(setup, settings, clock)


def _n_init(n_init: int, num_restarts: int | None) -> int:
    """``n_init``, or the deprecated ``num_restarts`` when that is given."""
    if num_restarts is None:
        return n_init
    warnings.warn(
        "fit_svi's num_restarts is deprecated and will be removed; pass n_init instead "
        "(scikit-learn's name for restarts).",
        FutureWarning,
        stacklevel=3,
    )
    return num_restarts


def _fit(setup: FitSetup, settings: SVISettings, clock: _Clock) -> az.InferenceData:
    """Run the SVI fit of ``setup`` with ``settings`` and return its InferenceData."""
    prog = _program(setup, settings)
    states, device = init_guides(prog, setup, settings, clock.lap)
    with precision(settings):
        states, trace, converged = run(prog, states, setup, settings, device)
        clock.lap("steps")
        kept, params, fit_sites = draw_kept(prog, states, trace, setup, settings, device)
        # The summaries (user units, log-likelihood) are in float64 whatever the dtype.
        sites = {k: np.asarray(v, np.float64) for k, v in fit_sites.items()}
        clock.lap("draws")
        sample_stats, attrs_extra = importance(prog, setup, settings, device, params, fit_sites)
        clock.lap("importance")
    attrs = {**_attrs(setup, settings, trace, converged, kept), **attrs_extra}
    output = settings.output

    def extend(idata):
        clock.lap("inference_data")
        idata.attrs["timings"] = json.dumps({k: round(v, 4) for k, v in clock.timings.items()})
        idata.add_groups({"elbo_trace": xr.Dataset({"elbo": (("restart", "step"), trace)}, attrs=attrs)})

    return finish(
        setup,
        params_from_sites(sites),
        attrs=attrs,
        hyper=hyper_draws(sites, setup.weight_prior),
        prior_draws=output.prior_draws,
        posterior_predictive=output.posterior_predictive,
        sample_stats=sample_stats,
        log_likelihood=output.log_likelihood,
        short_chains=True,
        extend=extend,
        stacklevel=3,
    )


def _program(setup: FitSetup, settings: SVISettings) -> Program:
    """Return the cached ``Program`` of this fit's configuration."""
    batching, chunk_size = setup.data.extra.batching, settings.schedule.chunk_size
    model = setup.model
    fit_model = model
    if batching.mode != "full":
        fit_model = partial(model, n_obs=batching.n_obs, subsample_size=batching.batch_size)
    key = program_key(
        settings.objective, batching, setup.model_kwargs, chunk_size, settings.dtype, settings.optimizer
    )
    build = partial(
        build_program,
        settings.objective,
        model,
        fit_model,
        settings.optimizer,
        chunk_size,
        batching.mode,
        _site_names(setup),
        batching.n_shards,
    )
    return PROGRAMS.get(key, build)


def _site_names(setup: FitSetup) -> list:
    """Return the sites the draws return: the parameters and the weight prior's sites."""
    names = ["means", "scale_tril", *LATENT_SITES[setup.covariance_type], *WEIGHT_SITES[setup.weight_prior]]
    names = [n for n in names if n != "corr_cholesky" or setup.n_features > 1]
    if setup.noise_volume is not None:
        names.append("noise_weight")
    return ["weights", *(n for n in names if n not in ("weights", "sticks") or setup.n_components > 1)]


def _attrs(setup: FitSetup, settings: SVISettings, trace, converged: bool, kept) -> dict:
    """Return the InferenceData's ``attrs`` (the importance statistics' are added to them)."""
    objective, data = settings.objective, setup.data
    return {
        "inference": "svi",
        "guide": objective.guide,
        "renyi_alpha": float(objective.renyi_alpha),
        "num_particles": objective.num_particles,
        **setup.base_attrs(),
        "n_obs": data.n_obs,
        "n_steps": trace.shape[1],
        "converged": int(converged),
        # The stopping rule's settings, so that a reader can say why the steps stopped where they did.
        "max_steps": settings.schedule.max_steps,
        "tol": float(settings.schedule.tol),
        "chunk_size": settings.schedule.chunk_size,
        "convergence_lag_steps": lag_steps(data.extra.batching.mode, settings.schedule.chunk_size),
        "batch_size": data.extra.batching.batch_size or data.n_obs,
        "dtype": settings.dtype.name,
        "kept_restarts": json.dumps(kept.tolist()),
        "observed_subset": int(data.X_obs.shape[0] < data.n_obs),
    }


@dataclass
class _Clock:
    """Seconds between successive ``lap`` calls, by phase (``attrs["timings"]``)."""

    last: float = field(default_factory=time.perf_counter)
    timings: dict = field(default_factory=dict)

    def lap(self, name: str) -> None:
        now = time.perf_counter()
        self.timings[name], self.last = now - self.last, now
