"""Fit the Bayesian mixture with NUTS and return ArviZ InferenceData."""

from __future__ import annotations

import os
from functools import partial
from typing import TYPE_CHECKING, Any

import arviz as az
import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import NamedSharding
from numpy.typing import DTypeLike
from numpyro.infer import MCMC, NUTS

from bayesgmm._cache import ProgramCache
from bayesgmm.inference.chains import ChainsOverDevices
from bayesgmm.inference.noise import noise_em_start, noise_sites
from bayesgmm.inference.prepare import FitSetup, finish, prepare, traced_in
from bayesgmm.inference.start import chain_init_params, em_starts, sites_from_params
from bayesgmm.models import gmm_model, hyper_draws, params_from_sites
from bayesgmm.priors import Priors
from bayesgmm.sharding import row_sharding

if TYPE_CHECKING:
    from bayesgmm._typing import Seed

_EXTRA_FIELDS = (
    "diverging",
    "energy",
    "num_steps",
    "accept_prob",
    "adapt_state.step_size",
    "potential_energy",
)


#: The samplers of ``fit_nuts``'s fits in this process, one per configuration.
SAMPLERS = ProgramCache(maxsize=16)


def _chain_method(
    n_chains: int, progress_bar: bool = False, sharded: bool = False
) -> str | ChainsOverDevices:
    # Several devices run chains in parallel (``chains.ChainsOverDevices``); on one device
    # vmap them, which beats running them one after another on a CPU. numpyro's bars are
    # one per chain: no padding chains then. Rows sharded over the devices: every chain
    # needs all of them, so the chains are vmapped and each device sums its own rows.
    if n_chains > 1 and jax.local_device_count() > 1 and not sharded:
        return ChainsOverDevices(n_chains, pad=not progress_bar)
    return "vectorized"


def _sample_stats(extra: dict) -> dict:
    n_steps = np.asarray(extra["num_steps"])
    return {
        "diverging": np.asarray(extra["diverging"]),
        "energy": np.asarray(extra["energy"]),
        "n_steps": n_steps,
        # A NUTS trajectory of depth d takes at most 2**d - 1 leapfrog steps.
        "tree_depth": np.ceil(np.log2(n_steps + 1)).astype(int),
        "acceptance_rate": np.asarray(extra["accept_prob"]),
        "step_size": np.asarray(extra["adapt_state.step_size"]),
        # Log density of the standardised model, up to a constant.
        "lp": -np.asarray(extra["potential_energy"]),
    }


def fit_nuts(
    X: Any,
    n_components: int,
    covariance_type: str = "full",
    *,
    priors: Priors | None = None,
    weight_prior: str = "dirichlet",
    num_warmup: int = 1000,
    num_samples: int = 1000,
    num_chains: int = 4,
    target_accept_prob: float = 0.85,
    max_tree_depth: int = 10,
    seed: Seed = None,
    dtype: DTypeLike = np.float64,
    init: str = "em",
    prior_draws: int = 0,
    posterior_predictive: bool = False,
    progress_bar: bool = False,
    feature_names: list[str] | None = None,
    missing: str = "error",
    noise: str | None = None,
    noise_volume: float | None = None,
    keep_sharded: bool = True,
) -> az.InferenceData:
    """Sample the posterior of a Gaussian mixture with NUTS.

    The data are standardised internally; all reported parameters are in the
    units of ``X``. The assignments are marginalised, so only continuous
    parameters are sampled.

    Parameters
    ----------
    X : array-like, shape (n_obs, n_features)
        A 1-D array is one feature. A ``jax.Array`` whose rows are sharded over the local
        devices (:func:`bayesgmm.shard_rows`) keeps them there (see ``keep_sharded``).
    n_components : int
    covariance_type : {"full", "tied", "diag", "spherical", "EII", "EEI"}
        Or mclust's names of the first four (``VVV``, ``EEE``, ``VVI``, ``VII``), read
        as those. ``EII`` is one variance ``s^2 I`` and ``EEI`` one diagonal covariance,
        both shared by every component (in standardised units; see ``gmm_model``).
        Whatever the type, ``covariances`` and ``scale_tril`` have dims (component,
        feature, feature_col), repeated over the components where they are shared;
        ``attrs["covariance_type"]`` holds the canonical name. mclust's other models
        are fitted by EM only (``fit_em``).
    priors : Priors, optional
        Defaults to ``Priors()``, weakly informative on the standardised scale.
    weight_prior : {"dirichlet", "sparse", "dp"}
        Prior on the weights (see ``gmm_model``): a fixed symmetric Dirichlet, a
        sparse overfitted mixture, or a Dirichlet process truncated at
        ``n_components``. The last two let the posterior say how many components
        are occupied (``n_components_posterior``).
    num_warmup, num_samples, num_chains : int
        Per chain. Chains run in parallel on separate host devices when JAX has
        at least ``num_chains`` of them, vectorised otherwise.
    target_accept_prob, max_tree_depth
        Passed to ``numpyro.infer.NUTS``.
    seed : int, numpy Generator or JAX key, optional
    dtype : numpy dtype, default float64
    init : {"em", "em-best", "prior"}
        ``"em"`` starts the chains at the distinct good optima of
        ``max(4, 2 * num_chains)`` EM runs (``start.em_starts``: the best of the first 4,
        then those within 10 nats of its log-likelihood, chain ``c`` at optimum ``c``
        modulo their number),
        jittered in the unconstrained space, so that R-hat can see competing modes;
        ``"em-best"`` starts every chain at the best of them (R-hat then describes the
        mixing within that mode only); ``"prior"`` uses NumPyro's default uniform
        initialisation.
    prior_draws : int, default 0
        Number of prior draws for the ``prior`` / ``prior_predictive`` groups.
    posterior_predictive : bool, default False
        Add one replicate data set per posterior draw.
    progress_bar : bool, default False
        One bar per chain. A fit with bars compiles its sampler anew (numpyro draws them
        while it traces the sampling loop); without, refits reuse it.
    feature_names : sequence of str, optional
    missing : {"error", "marginalize"}, default "error"
        What NaN in ``X`` mean: an error, or values missing at random, whose likelihood is
        the exact marginal over them (each row's density is that of its observed
        coordinates; ``models.MixtureLikelihood``). The data are standardised with their
        observed values, the chains start at EM optima for incomplete data
        (``fit_em(missing="marginalize")``), ``observed_data`` keeps the NaN and
        ``log_likelihood`` holds each row's observed-data log-likelihood. A row or column
        with every value missing is refused. ``BayesianGMM.impute`` draws the missing values.
    noise : {None, "uniform"}, default None
        ``"uniform"`` adds mclust's uniform noise component for scattered outliers, as
        ``fit_em(noise="uniform")``: density ``1 / noise_volume`` with weight
        ``noise_weight`` ~ the last coordinate of Dirichlet(``weight_concentration``, ...,
        ``priors.noise_concentration``) (see ``models.gmm_model``). The chains start at
        EM's noise fit; the posterior gains ``noise_weight`` (dims chain, draw), ``weights``
        sum to ``1 - noise_weight`` and ``log_likelihood`` includes the noise term. The
        component is never relabelled. With ``weight_prior="sparse"`` or ``"dp"`` the
        Gaussians' shares follow that prior and ``noise_weight`` the same Beta law, and
        rows drawn into the noise never count as occupied components. Needs complete
        data. The predictive groups (``prior_draws``, ``posterior_predictive``) draw each
        replicate row from the noise with the draw's ``noise_weight``, uniform in the
        noise's box, and mark those rows in ``noise`` (chain, draw, obs); the ``prior``
        group gains ``noise_weight``.
    noise_volume : float, optional
        Hypervolume of the noise's support in the units of ``X``; the data's bounding box
        by default. The model uses ``noise_volume / prod(scale)`` on standardised data.
        Recorded in ``attrs["noise_volume"]``; the region, the data's bounding box scaled
        about its centre to that volume (:func:`bayesgmm.noise_region.noise_box`), in
        ``attrs["noise_lower"]`` and ``attrs["noise_upper"]`` (lists of floats).
    keep_sharded : bool, default True
        Only for ``X`` with rows sharded over several devices. True: the standardised rows
        stay on the devices that hold them, the chains run vectorised (numpyro's
        ``chain_method="vectorized"``) with parameters replicated, and each device sums the
        log density over its own rows; the sums run in another order, so the draws agree
        with those of ``np.asarray(X)`` in distribution (within Monte Carlo error), not bit
        for bit. What data too large for one device needs. False: the rows are gathered and
        the chains, not the rows, are spread over the devices (``chains.ChainsOverDevices``),
        the draws those of ``np.asarray(X)``; faster when all rows fit on every device.

    Warns
    -----
    bayesgmm.DiagnosticsWarning
        When divergences, R-hat or ESS of the relabelled parameters, E-BFMI or the tree
        depth say the draws should not be trusted (``posterior.diagnostics.fit_problems``),
        each in words that say what to try; a healthy fit is quiet. Silence them with
        ``warnings.filterwarnings("ignore", category=bayesgmm.DiagnosticsWarning)``.

    Returns
    -------
    arviz.InferenceData
        ``posterior`` (``weights``, ``means``, ``covariances``, ``scale_tril``
        with dims ``component``/``feature``, and ``weight_concentration`` or
        ``concentration``, ``sticks``, ``stick_remainder`` for the sparse and dp
        priors), ``sample_stats`` (``diverging``, ``tree_depth``, ``energy``, ...),
        ``log_likelihood`` (``X`` per observation), ``observed_data``, ``constant_data`` and the optional
        predictive groups.

    Examples
    --------
    >>> from bayesgmm import fit_nuts, load_dataset
    >>> X, _ = load_dataset("faithful")
    >>> idata = fit_nuts(X, 2, num_warmup=300, num_samples=400, num_chains=1, seed=0)
    >>> idata.posterior["means"].dims
    ('chain', 'draw', 'component', 'feature')
    >>> idata.posterior.sizes["draw"], idata.attrs["n_starts"]
    (400, 1)

    With missing values:

    >>> import numpy as np
    >>> X_gaps = X.copy()
    >>> X_gaps[::5, 1] = np.nan
    >>> idata = fit_nuts(X_gaps, 2, num_warmup=300, num_samples=400, num_chains=1, seed=0,
    ...                  missing="marginalize")
    >>> bool(np.isfinite(idata.log_likelihood["X"]).all())
    True

    With a uniform noise component for three gross outliers:

    >>> X_out = np.vstack([X, [[0.0, 150.0], [7.0, 10.0], [0.5, 20.0]]])
    >>> idata = fit_nuts(X_out, 2, num_warmup=300, num_samples=300, num_chains=1, seed=0,
    ...                  noise="uniform")
    >>> float(idata.posterior["noise_weight"].mean()) < 0.05
    True
    """
    if init not in ("em", "em-best", "prior"):
        raise ValueError(f"init must be 'em', 'em-best' or 'prior', got {init!r}.")
    sharding = row_sharding(X) if keep_sharded else None
    setup = prepare(
        X,
        n_components,
        covariance_type,
        priors=priors,
        weight_prior=weight_prior,
        feature_names=feature_names,
        seed=seed,
        key_names=("init", "mcmc", "prior", "idata"),
        missing=missing,
        noise=noise,
        noise_volume=noise_volume,
    )
    settings = dict(num_warmup=num_warmup, num_samples=num_samples, num_chains=num_chains)
    settings.update(target_accept_prob=target_accept_prob, max_tree_depth=max_tree_depth)
    init_params, n_starts = _init_params(setup, init, num_chains)
    mcmc = _run(setup, init_params, dtype, progress_bar, sharding, **settings)
    samples = mcmc.get_samples(group_by_chain=True)
    more = {"init": init, "n_starts": n_starts, "dtype": np.dtype(dtype).name}
    more["sharded_rows"] = int(sharding is not None)
    # Results in the fit's precision, in the user's units.
    return finish(
        setup,
        params_from_sites(samples),
        attrs={"inference": "nuts", **setup.base_attrs(), **settings, **more},
        hyper=hyper_draws(samples, setup.weight_prior),
        prior_draws=prior_draws,
        posterior_predictive=posterior_predictive,
        sample_stats=_sample_stats(mcmc.get_extra_fields(group_by_chain=True)),
        dtype=dtype,
    )


def _run(
    setup: FitSetup,
    init_params: dict | None,
    dtype: DTypeLike,
    progress_bar: bool,
    sharding: NamedSharding | None,
    *,
    num_warmup: int,
    num_samples: int,
    num_chains: int,
    target_accept_prob: float,
    max_tree_depth: int,
) -> MCMC:
    """Run NUTS on the standardised data in ``dtype``, from ``init_params`` if given.

    With a ``sharding`` (of ``X``'s rows) the data are placed with it.
    """
    settings = dict(num_warmup=num_warmup, num_samples=num_samples, num_chains=num_chains)
    kernel_settings = dict(target_accept_prob=target_accept_prob, max_tree_depth=max_tree_depth)
    if progress_bar:
        # numpyro draws its bars when it traces the sampling loop, so a sampler with bars
        # is used once: a compiled one would report to the bars of its first run.
        mcmc = _sampler(setup, settings, kernel_settings, sharding, progress_bar=True)
    else:
        key = _sampler_key(setup, dtype, settings, kernel_settings, sharding)
        mcmc = SAMPLERS.get(key, lambda: _sampler(setup, settings, kernel_settings, sharding))
    with traced_in(dtype):
        if init_params is not None:
            init_params = jax.tree_util.tree_map(lambda a: jnp.asarray(a, dtype), init_params)
        if sharding is None:
            Z = jnp.asarray(setup.data.extra, dtype)
        else:  # the log density's sum over rows is then partitioned by the rows' devices
            Z = jax.device_put(np.asarray(setup.data.extra, dtype), sharding)
        mcmc.run(
            setup.keys["mcmc"], Z=Z, priors=setup.priors, init_params=init_params, extra_fields=_EXTRA_FIELDS
        )
    return mcmc


def _sampler_key(
    setup: FitSetup, dtype: DTypeLike, settings: dict, kernel_settings: dict, sharding: NamedSharding | None
) -> tuple:
    """Return the hashable description of everything a NUTS fit's compiled programs depend on.

    Not the values of the priors: the sampler takes them as an argument. The rows'
    sharding chooses the chain method, and the programs are partitioned by it.
    """
    return (
        sharding,
        tuple(sorted(_static_model_kwargs(setup).items())),
        np.dtype(dtype).str,
        tuple(sorted(settings.items())),
        tuple(sorted(kernel_settings.items())),
    )


def _sampler(
    setup: FitSetup,
    settings: dict,
    kernel_settings: dict,
    sharding: NamedSharding | None = None,
    progress_bar: bool = False,
) -> MCMC:
    """Return a sampler whose compiled programs take the data as an argument.

    ``jit_model_args``: numpyro then compiles the log density as a function of the model's
    arguments (the data and the priors' values), so a refit with new data of the same shape
    or new prior values runs the same programs.
    """
    model = partial(gmm_model, **_static_model_kwargs(setup))
    chain_method = _chain_method(settings["num_chains"], progress_bar, sharding is not None)
    kernel = NUTS(model, **kernel_settings)
    mcmc = MCMC(kernel, **settings, chain_method=chain_method, progress_bar=False, jit_model_args=True)
    # Set afterwards: numpyro refuses bars with a callable chain_method, and they work with this one.
    mcmc.progress_bar = progress_bar and _bars_allowed()
    return mcmc


def _static_model_kwargs(setup: FitSetup) -> dict:
    """``gmm_model``'s keywords that shape its programs: all but the priors."""
    return {k: v for k, v in setup.model_kwargs.items() if k != "priors"}


def _bars_allowed() -> bool:
    # numpyro's own rule: no progress bars in CI or in pytest-xdist workers.
    return not ("CI" in os.environ or "PYTEST_XDIST_WORKER" in os.environ)


def _init_params(setup: FitSetup, init: str, num_chains: int) -> tuple[dict | None, int]:
    """Unconstrained chain starts at EM optima (``start.em_starts``), and how many optima.

    ``(None, 0)`` for ``init="prior"``.
    """
    if init == "prior":
        return None, 0
    Z = setup.data.extra
    if "noise_log_density" in setup.model_kwargs:
        return _noise_init_params(setup, num_chains), 1
    starts = em_starts(
        Z,
        setup.n_components,
        setup.covariance_type,
        seed=int(jax.random.randint(setup.keys["init"], (), 0, 2**30)),
        n_extra=max(0, 2 * num_chains - 4) if init == "em" else 0,
        overfitted=setup.weight_prior != "dirichlet",
    )
    starts = starts if init == "em" else starts[:1]
    sites = [sites_from_params(s, setup.covariance_type, setup.weight_prior, setup.priors) for s in starts]
    init_params = chain_init_params(setup.model, {"Z": jnp.asarray(Z)}, sites, num_chains, setup.keys["init"])
    if num_chains == 1:
        init_params = {k: v[0] for k, v in init_params.items()}
    return init_params, len(starts)


def _noise_init_params(setup: FitSetup, num_chains: int) -> dict:
    """Unconstrained chain starts around EM's best fit with uniform noise (one optimum)."""
    seed = int(jax.random.randint(setup.keys["init"], (), 0, 2**30))
    log_density = setup.model_kwargs["noise_log_density"]
    params, noise_weight = noise_em_start(
        setup.data.extra, setup.n_components, setup.covariance_type, seed, log_density
    )
    sites = noise_sites(params, noise_weight, setup.covariance_type, setup.weight_prior, setup.priors)
    Z = {"Z": jnp.asarray(setup.data.extra)}
    init_params = chain_init_params(setup.model, Z, [sites], num_chains, setup.keys["init"])
    return {k: v[0] for k, v in init_params.items()} if num_chains == 1 else init_params
