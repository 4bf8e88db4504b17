"""Fit the Bayesian mixture by stochastic variational inference (SVI) into ArviZ InferenceData.

The pieces are chosen by name in one place: the guide from ``GUIDES``, any optax
optimizer, the same ``gmm_model`` as NUTS. Steps run in jitted chunks (``lax.scan``),
all restarts at once (``vmap``); a fit stops when the smoothed ELBO stops improving.
"""

from __future__ import annotations

import contextlib
import json
import time
import warnings
from concurrent.futures import ThreadPoolExecutor
from functools import partial

import arviz as az
import jax
import jax.numpy as jnp
import numpy as np
import optax
import xarray as xr
from numpyro.infer import Predictive
from tqdm.auto import tqdm

from bayesgmm._validation import as_key, check_covariance_type, check_n_components, check_X, standardize
from bayesgmm.inference.idata import build_inference_data
from bayesgmm.inference.start import compile_em_start, em_start, sites_from_params
from bayesgmm.inference.svi.draws import importance_stats
from bayesgmm.inference.svi.loop import (
    CONVERGENCE_LAG_STEPS,
    GUIDES,
    compile_ahead,
    initial_states,
    program,
    run_chunks,
)
from bayesgmm.models import LATENT_SITES, WEIGHT_SITES, gmm_model, hyper_draws, params_from_sites
from bayesgmm.params import GMMParams
from bayesgmm.priors import Priors
from bayesgmm.sources import as_source, observed_rows, row_blocks, streaming_moments

#: Minibatch size used when the data are streamed (memmap or chunk callable) and none is given.
DEFAULT_BATCH_SIZE = 4096
#: Type of the minibatch row indices drawn on the host (``batch_size`` with an in-memory array).
_ROW_INDEX = np.int32


def default_optimizer() -> optax.GradientTransformation:
    """Adam from 0.01, halved every 2000 steps.

    The model is on standardised data and starts at an EM fit, so parameters move by
    O(0.1) and steps of about 0.01 reach them in a few hundred steps; the decay then
    shrinks Adam's jitter around the optimum, which the convergence rule needs to see
    the ELBO flatten. Halving every 1000 steps froze the guide short of the optimum: on
    iris (K=3) the full-rank guide's held-out log predictive density ended 1.0-1.9% from
    NUTS's over seeds 0-4, against 0.1-0.9% with 2000 (NUTS with 2 x 500 draws). One
    object is shared by every fit, so that their compiled programs are too (they are
    cached by optimizer).
    """
    return _DEFAULT_OPTIMIZER


_DEFAULT_OPTIMIZER = optax.adam(optax.exponential_decay(1e-2, 2000, 0.5))
#: Optimizers whose id() is part of a cached program's key, kept so that no id is reused.
_KEEP_ALIVE: dict = {}


def fit_svi(
    X,
    n_components: int,
    covariance_type: str = "full",
    *,
    priors: Priors | None = None,
    weight_prior: str = "dirichlet",
    guide: str = "fullrank",
    optimizer: optax.GradientTransformation | None = None,
    num_samples: int = 1000,
    num_restarts: int = 1,
    keep: str = "best",
    max_steps: int = 20_000,
    tol: float = 1e-4,
    chunk_size: int = 200,
    batch_size: int | None = None,
    num_particles: int = 1,
    renyi_alpha: float = 1.0,
    seed=None,
    dtype=np.float64,
    init: str = "em",
    init_rows: int = 20_000,
    max_observed: int = 20_000,
    log_likelihood: bool = True,
    prior_draws: int = 0,
    posterior_predictive: bool = False,
    progress_bar: bool = False,
    feature_names=None,
) -> az.InferenceData:
    """Approximate the posterior of a Gaussian mixture by SVI.

    Same model, standardisation and output layout as ``fit_nuts``: the guide's draws
    are stored with ``chain``/``draw`` dims, in the user's units.

    Parameters
    ----------
    X : array-like, numpy.memmap or callable
        Shape (n_obs, n_features). A callable must return a fresh iterable of row
        chunks (arrays of shape (n_rows, n_features)) on each call; with it, and with
        a memmap, the data are never loaded whole (minibatch SVI).
    n_components : int
    covariance_type : {"full", "tied", "diag", "spherical"}
    priors : Priors, optional
    guide : {"fullrank", "meanfield", "lowrank", "map"}
        Multivariate normal, independent normals, low-rank plus diagonal normal (all
        in the unconstrained space), or a point mass at the MAP estimate.
    weight_prior : {"dirichlet", "sparse", "dp"}
        As in ``fit_nuts``.
    optimizer : optax.GradientTransformation, optional
        Defaults to ``default_optimizer()``.
    num_samples : int
        Draws from the guide per kept restart (1 for ``guide="map"``).
    num_restarts : int
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
        ``DEFAULT_BATCH_SIZE`` (memmaps and callables). An in-memory array is copied to
        the device once and each chunk's minibatch row indices are drawn on the host; the
        rows of a memmap or callable are read and sent chunk by chunk.
    num_particles : int
        Monte Carlo draws per ELBO gradient.
    renyi_alpha : float in [0, 1], default 1.0
        The objective: 1 is the ELBO (the guide minimises KL(q || p), which makes it
        narrower than the posterior); below 1 the Rényi bound of order ``renyi_alpha``
        over the ``num_particles`` draws of each step (``elbo.OrderedTraceELBO``, with the
        doubly reparameterised gradient), 0 the importance-weighted bound. Its guide
        covers more of the posterior's mass, the more so with more particles. It needs
        ``num_particles >= 2`` and full-batch data (the bound of a subsampled likelihood
        is biased). Worth it when the posterior is far from Gaussian, as with few
        observations per parameter: on iris (K=3, full, 112 rows) the ELBO's full-rank
        guide had 0.6-0.75 times NUTS's posterior sd in the two overlapping components
        and a held-out log predictive density 1.5-2% above NUTS's; with
        ``renyi_alpha=0, num_particles=64`` it was within 0.8% over seeds 0-5 (about 7 s
        a fit, against 2 s).
    seed : int, numpy Generator or JAX key, optional
    dtype : numpy dtype, default float64
        Of the SVI arithmetic (guide parameters, data, ELBO); float32 is about twice as
        fast. The EM start and the returned draws' summaries are computed in float64.
    init : {"em", "prior"}
        Start at the best of a few EM fits (on ``init_rows`` random rows when there
        are more) or at the prior median.
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

    Warns
    -----
    bayesgmm.DiagnosticsWarning
        When the ELBO did not converge within ``max_steps`` or the Pareto k of the guide's
        importance weights exceeds 0.7 (``posterior.diagnostics.fit_problems``).

    Returns
    -------
    arviz.InferenceData
        The groups of ``fit_nuts`` (``posterior``, ``log_likelihood``, ``observed_data``,
        ``constant_data``), plus ``elbo_trace`` (``elbo`` with dims restart/step, for
        every restart) and, when the data are not subset, ``sample_stats`` with ``lp``
        and ``log_q`` per draw (see ``draws.importance_stats``; ``attrs["pareto_k"]``
        says how far the guide is from the posterior: above 0.7, do not trust it).
        ``attrs["timings"]`` holds the seconds spent in each phase (JSON): ``em_start``
        includes tracing its own program and the SVI programs, whose compilation runs
        meanwhile in other threads; ``compile`` is the wait for what remains of it after
        the EM start.

    Examples
    --------
    >>> from bayesgmm import fit_svi, load_dataset
    >>> X, _ = load_dataset("faithful")
    >>> idata = fit_svi(X, 2, guide="meanfield", seed=0)  # doctest: +SKIP
    >>> idata.posterior["means"].dims  # doctest: +SKIP
    ('chain', 'draw', 'component', 'feature')
    """
    n_components = check_n_components(n_components)
    covariance_type = check_covariance_type(covariance_type)
    if guide not in GUIDES:
        raise ValueError(f"guide must be one of {tuple(GUIDES)}, got {guide!r}.")
    if keep not in ("best", "chains"):
        raise ValueError(f"keep must be 'best' or 'chains', got {keep!r}.")
    if init not in ("em", "prior"):
        raise ValueError(f"init must be 'em' or 'prior', got {init!r}.")
    minibatch = batch_size is not None or callable(X) or isinstance(X, np.memmap)
    _check_renyi(renyi_alpha, num_particles, guide, minibatch)
    if hasattr(X, "columns") and feature_names is None:
        feature_names = [str(c) for c in X.columns]
    priors = Priors() if priors is None else priors
    # The keys are unpacked (and the EM start's seed derived) on the host: op by op on the
    # device, each of those operations would compile a program of its own.
    keys = np.asarray(jax.random.split(as_key(seed), 6))
    key_init, key_svi, key_draws, key_prior, key_idata, key_rng = keys
    rng = np.random.default_rng(key_rng)

    # Full batch: every step sees all rows. With a batch_size, the rows of an in-memory array
    # are indexed on the device; a memmap or callable is streamed (standardised with one-pass
    # moments).
    timings, clock = {}, _Clock()
    streaming = callable(X) or isinstance(X, np.memmap)
    if streaming:
        source = as_source(X)
        n_obs, loc, scale = streaming_moments(source)
        batch_size = min(batch_size or DEFAULT_BATCH_SIZE, n_obs)
        blocks = row_blocks(source, batch_size * chunk_size, rng)
        Z_init = (next(row_blocks(source, min(init_rows, n_obs), rng)) - loc) / scale
        X_obs = observed_rows(source, n_obs, max_observed, rng)
        if n_obs < n_components:
            raise ValueError(f"X has {n_obs} observations but n_components={n_components}.")
    else:
        X = check_X(X, n_components, dtype=np.float64)
        Z_full, loc, scale = standardize(X)
        n_obs = X.shape[0]
        batch_size = None if batch_size is None else min(batch_size, n_obs)
        Z_init = Z_full if n_obs <= init_rows else Z_full[rng.choice(n_obs, init_rows, replace=False)]
        X_obs = X if n_obs <= max_observed else X[np.sort(rng.choice(n_obs, max_observed, replace=False))]
    mode = "stream" if streaming else ("full" if batch_size is None else "index")
    if mode == "index" and n_obs > np.iinfo(_ROW_INDEX).max:
        raise ValueError(f"X has {n_obs} rows, too many to index in memory: pass it as a numpy.memmap.")
    n_features = loc.shape[0]
    timings["data"] = clock.lap()

    if weight_prior not in WEIGHT_SITES:
        raise ValueError(f"weight_prior must be one of {tuple(WEIGHT_SITES)}, got {weight_prior!r}.")
    model_kwargs = dict(
        n_components=n_components,
        n_features=n_features,
        covariance_type=covariance_type,
        priors=priors,
        weight_prior=weight_prior,
    )
    model = partial(gmm_model, **model_kwargs)
    fit_model = model if mode == "full" else partial(model, n_obs=n_obs, subsample_size=batch_size)
    n_draws = 1 if guide == "map" else num_samples
    names = ["means", "scale_tril", *LATENT_SITES[covariance_type], *WEIGHT_SITES[weight_prior]]
    names = [n for n in names if n != "corr_cholesky" or n_features > 1]
    names = ["weights", *(n for n in names if n not in ("weights", "sticks") or n_components > 1)]
    em_seed = int(key_init[-1] % 2**30)
    # A posterior sd is about sqrt(n_components / n_obs): from numpyro's default guide scale
    # of 0.1 it takes thousands of steps to shrink on big data.
    init_scale = min(0.1, float(np.sqrt(n_components / n_obs)))
    optimizer = optimizer or default_optimizer()
    # The compiled programs depend on everything below, and on nothing else.
    config = (
        guide,
        tuple(sorted(model_kwargs.items())),
        n_obs if mode != "full" else None,
        batch_size,
        mode,
        chunk_size,
        num_particles,
        float(renyi_alpha),
        np.dtype(dtype).str,
        id(optimizer),
    )
    prog = program(
        config, model, fit_model, guide, optimizer, num_particles, chunk_size, mode, names, float(renyi_alpha)
    )
    _KEEP_ALIVE[id(optimizer)] = optimizer  # id() in the key must not be reused by another optimizer

    # float32 needs x64 off while tracing: numpyro draws its noise in the default float
    # type, which would make every guide sample float64.
    float32 = np.dtype(dtype) == np.float32
    precision = partial(jax.enable_x64, False) if float32 else contextlib.nullcontext
    # The standardised rows that go to the device: all of them, or a first minibatch of a stream.
    Z_device = ((next(blocks)[:batch_size] - loc) / scale) if mode == "stream" else Z_full
    # Compiling takes longer than the fit on moderate data, and XLA compiles without the GIL:
    # the EM start's and the SVI programs are traced on this thread and compiled in the
    # pool's while it goes on. The EM start's come first, so that their compilation fills
    # the core that tracing the SVI programs leaves idle, then the EM start runs here
    # while the SVI programs compile. (Run in a worker, the EM start was no faster: its
    # tracing holds the GIL as this thread's does.)
    with ThreadPoolExecutor(max_workers=2) as pool:
        em_ahead = []
        if init == "em":  # in float64, whatever the dtype
            em_ahead = compile_em_start(
                Z_init, n_components, covariance_type, pool, weight_prior != "dirichlet"
            )
        with precision():
            # Sliced on the host: on the device each slice would compile a program of its own.
            data = chunk_data = jnp.asarray(Z_device, dtype)
            batch = jnp.asarray(Z_device[:batch_size], dtype) if mode == "index" else data
            if mode == "stream":
                chunk_data = jax.ShapeDtypeStruct((chunk_size, batch_size, n_features), data.dtype)
            rows_type = None
            if mode == "index":
                rows_type = jax.ShapeDtypeStruct((chunk_size, batch_size), _ROW_INDEX)
            # Full batch: one row is enough to set the guide up, and keeps the draw program's
            # shapes (so its compiled code) the same for every n_obs.
            draw_Z = jnp.asarray(Z_device[:1], dtype) if mode == "full" else batch
            n_kept = num_restarts if keep == "chains" else 1
            site_types = _site_types(model_kwargs, init, dtype)
            ahead = compile_ahead(
                prog,
                pool,
                start=(init_scale, num_restarts, dtype, key_svi, batch, site_types),
                chunk=(chunk_data, rows_type, chunk_size),
                draw=(n_kept, n_draws, draw_Z),
            )
        values = None
        if init == "em":
            for future in em_ahead:
                future.result()
            values = _em_sites(Z_init, n_components, covariance_type, weight_prior, priors, em_seed)
        timings["em_start"] = clock.lap()
        for future in ahead:
            future.result()
        timings["compile"] = clock.lap()

    with precision():
        values = None if values is None else {k: jnp.asarray(v, dtype) for k, v in values.items()}
        states = initial_states(prog, batch, values, init_scale, num_restarts, key_svi, dtype)
        jax.block_until_ready(states)
        timings["guide_init"] = clock.lap()

        def data_fn():
            if mode == "full":
                return data, None
            if mode == "index":
                return data, rng.integers(0, n_obs, (chunk_size, batch_size), dtype=_ROW_INDEX)
            block = ((next(blocks) - loc) / scale).reshape(chunk_size, batch_size, -1)
            return jnp.asarray(block, dtype), None

        with tqdm(total=max_steps, disable=not progress_bar, desc="SVI") as bar:
            key_svi, key_chunks = jax.random.split(key_svi)
            # Minibatches: each chunk against the one before. Their noise is far above the
            # guide's slow drift, which on large data hardly moves the fit: compared with
            # 2000 steps back, the steps of bench_svi.py's 100,000-row fits took 3.4 times as
            # long, for a held-out log-likelihood 0.006 nats per row higher. In full batch
            # the noise is only the guide's draws.
            lag_steps = CONVERGENCE_LAG_STEPS if mode == "full" else chunk_size
            states, trace, converged = run_chunks(
                prog, states, data_fn, max_steps, chunk_size, tol, key_chunks, bar, lag_steps=lag_steps
            )
        timings["steps"] = clock.lap()
        final = trace[:, -chunk_size:].mean(axis=1)
        kept = np.arange(num_restarts) if keep == "chains" else np.array([int(np.argmax(final))])
        # Indexed on the host: op by op on the device, every leaf compiles a few small programs.
        kept_states = jax.tree_util.tree_map(lambda a: np.asarray(a)[kept], states)
        params, fit_sites = prog.draw(kept_states, jax.random.split(key_draws, len(kept)), draw_Z, n_draws)
        jax.block_until_ready(fit_sites)
        # The summaries (user units, log-likelihood) are computed in float64 whatever the dtype.
        sites = {k: np.asarray(v, np.float64) for k, v in fit_sites.items()}
        draws = params_from_sites(sites)
        timings["draws"] = clock.lap()

        sample_stats, attrs_extra = None, {}
        if log_likelihood and mode == "full" and n_obs <= max_observed:
            params_list = [jax.tree_util.tree_map(lambda a, r=r: a[r], params) for r in range(len(kept))]
            sample_stats, attrs_extra = importance_stats(
                prog.importance, guide, params_list, _latent(fit_sites, weight_prior), data
            )
        timings["importance"] = clock.lap()
    prior_params = None
    if prior_draws:
        prior_sites = Predictive(model, num_samples=prior_draws)(key_prior, n_obs=1)
        prior_params = jax.tree_util.tree_map(lambda a: a[None], params_from_sites(prior_sites))

    attrs = {
        "inference": "svi",
        "guide": guide,
        "renyi_alpha": float(renyi_alpha),
        "num_particles": num_particles,
        "n_components": n_components,
        "covariance_type": covariance_type,
        "weight_prior": weight_prior,
        "priors": json.dumps(priors.to_dict()),
        "n_obs": n_obs,
        "n_steps": trace.shape[1],
        "converged": int(converged),
        "batch_size": batch_size or n_obs,
        "dtype": np.dtype(dtype).name,
        "kept_restarts": json.dumps(kept.tolist()),
        "observed_subset": int(X_obs.shape[0] < n_obs),
        **attrs_extra,
    }
    with warnings.catch_warnings():
        # A MAP fit has one draw per chain, which ArviZ flags as a likely shape mistake.
        warnings.filterwarnings("ignore", message="More chains")
        idata = build_inference_data(
            draws,
            X_obs,
            loc,
            scale,
            key=key_idata,
            sample_stats=sample_stats,
            prior_std_params=prior_params,
            posterior_predictive=posterior_predictive,
            feature_names=feature_names,
            attrs=attrs,
            hyper_draws=hyper_draws(sites, weight_prior),
            log_likelihood=log_likelihood,
        )
    timings["inference_data"] = clock.lap()
    idata.attrs["timings"] = json.dumps({k: round(v, 4) for k, v in timings.items()})
    elbo_ds = xr.Dataset({"elbo": (("restart", "step"), trace)}, attrs=attrs)
    idata.add_groups({"elbo_trace": elbo_ds})
    # Lazily: bayesgmm.posterior is downstream of inference.
    from bayesgmm.posterior.diagnostics import warn_problems

    warn_problems(idata, stacklevel=2)
    return idata


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


class _Clock:
    """Seconds between successive ``lap`` calls (the phase timings in ``attrs["timings"]``)."""

    def __init__(self):
        self.last = time.perf_counter()

    def lap(self) -> float:
        now = time.perf_counter()
        elapsed, self.last = now - self.last, now
        return elapsed


def _em_sites(Z, n_components, covariance_type, weight_prior, priors, seed) -> dict:
    """The model's sites at the best of a few EM fits to ``Z`` (numpy arrays, float64)."""
    overfitted = weight_prior != "dirichlet"
    start = em_start(Z, n_components, covariance_type, seed=seed, overfitted=overfitted)
    return sites_from_params(start, covariance_type, weight_prior, priors)


def _site_types(model_kwargs: dict, init: str, dtype) -> dict | None:
    """Shapes and type of ``_em_sites``'s values, cast to ``dtype``, known before EM has run
    (None, as the values are, for ``init="prior"``)."""
    if init != "em":
        return None
    n_components, n_features = model_kwargs["n_components"], model_kwargs["n_features"]
    uniform = GMMParams(
        np.full(n_components, 1 / n_components),
        np.zeros((n_components, n_features)),
        np.broadcast_to(np.eye(n_features), (n_components, n_features, n_features)),
    )
    sites = sites_from_params(
        uniform, model_kwargs["covariance_type"], model_kwargs["weight_prior"], model_kwargs["priors"]
    )
    return {k: jax.ShapeDtypeStruct(np.shape(v), dtype) for k, v in sites.items()}


def _latent(sites: dict, weight_prior: str) -> dict:
    """The sampled sites among ``sites``: the dp and sparse priors' ``weights`` are deterministic."""
    return {k: v for k, v in sites.items() if k != "weights" or "weights" in WEIGHT_SITES[weight_prior]}
