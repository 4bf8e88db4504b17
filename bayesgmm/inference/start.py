"""Good starting points for samplers and optimisers: the best of a few EM runs."""

from __future__ import annotations

import warnings
from collections.abc import Callable, Sequence
from concurrent.futures import Executor, Future

import jax
import jax.numpy as jnp
import numpy as np
from numpyro.infer.util import unconstrain_fn
from scipy import stats
from scipy.optimize import linear_sum_assignment

from bayesgmm.params import GMMParams
from bayesgmm.priors import Priors

# Weights handed to a sampler must lie strictly inside the simplex.
_MIN_WEIGHT = 1e-3

#: The EM fit that starts each Bayesian type whose name EM's every path (missing values,
#: noise) lacks: its variances are pooled into the shared scales (``sites_from_params``).
EM_START_TYPES = {"EII": "spherical", "EEI": "diag"}


def em_start_type(covariance_type: str) -> str:
    """Return the EM ``covariance_type`` that starts a Bayesian fit of ``covariance_type``."""
    return EM_START_TYPES.get(covariance_type, covariance_type)


def em_start(
    Z: np.ndarray,
    n_components: int,
    covariance_type: str,
    seed: int,
    n_init: int = 4,
    overfitted: bool = False,
) -> GMMParams:
    """Best EM fit of ``n_init`` k-means++-started runs on standardised data ``Z``.

    Runs that put a component on tied values (``_collapsed``) are passed over when
    another run did not; if every run did, the best is kept with a warning.

    Neither sampler nor SVI leaves a poor local optimum of the likelihood once started
    there, so the start matters, but the best likelihood is not always the best start
    (``benchmarks/README.md`` records where the best of more runs did worse), so the
    default stays 4 runs.

    The k-means++ seeds are drawn on the host by scikit-learn's ``kmeans_plusplus`` and
    handed to ``fit_em`` as its starting values (uniform weights, the seeds as means,
    covariances ``reg_covar * I``: what its ``init_params="k-means++"`` computes), one run
    per seed: drawn inside the compiled EM program, their random numbers would dominate its
    kernels and compile time.

    With ``overfitted`` (sparse and dp weight priors, where ``n_components`` is only an
    upper bound), the EM fit with the lowest BIC among 1..n_components components is
    used and the spare components start empty (weight ``_MIN_WEIGHT``, at the data mean
    with unit scale): EM with too many components splits clusters in two, a mode the
    sampler then has to leave through regions of tiny weight, which takes long.

    Returns
    -------
    GMMParams
        Weights clipped away from zero, so that every component can be sampled.
    """
    return em_starts(Z, n_components, covariance_type, seed, n_init=n_init, overfitted=overfitted)[0]


def em_starts(
    Z: np.ndarray,
    n_components: int,
    covariance_type: str,
    seed: int,
    n_init: int = 4,
    overfitted: bool = False,
    max_gap: float = 10.0,
    n_extra: int = 0,
) -> list[GMMParams]:
    """Return the distinct good EM optima of ``n_init + n_extra`` runs, best first.

    They are over-dispersed chain starts. Chains started at one optimum cannot show R-hat a
    second mode. Each distinct optimum (components matched up to relabelling, see
    ``_same_optimum``) whose log-likelihood is within ``max_gap`` nats of the best is
    returned, so that chain ``c`` can start at ``starts[c % len(starts)]``; an optimum
    further below has negligible posterior mass next to the best and would only leave a
    chain stranded. The first element is ``em_start``'s result, the best of the first
    ``n_init`` runs; the ``n_extra`` runs after them only add other optima. Components of
    every start are ordered to match the best one's (the dp prior's ``sites_from_params``
    reorders them by weight again).

    Returns
    -------
    list of GMMParams
    """
    from bayesgmm.inference.em.fit import bic

    rng = np.random.RandomState(seed)
    covariance_type = em_start_type(covariance_type)
    heard = [_heard(_good_em, Z, k, covariance_type, n_init, rng) for k in _sizes(n_components, overfitted)]
    runs = [fits for fits, _ in heard]
    # bic evaluates the log-likelihood again: only when there is a choice.
    size = min(range(len(runs)), key=lambda i: bic(runs[i][0])) if overfitted else 0
    # Too many components collapse onto a few points; that is news only for the size used.
    for caught in heard[size][1]:
        warnings.warn(caught.message, stacklevel=2)
    best, others = runs[size][0], runs[size][1:]
    if n_extra:
        others = others + _extra_runs(Z, best.params.n_components, covariance_type, n_extra, rng)
    distinct = [best]
    for fit in sorted(others, key=lambda fit: -fit.log_likelihood):
        if best.log_likelihood - fit.log_likelihood > max_gap:
            break
        if not any(_same_optimum(fit.params, kept.params) for kept in distinct):
            distinct.append(fit)
    starts = [_aligned(fit.params, best.params) for fit in distinct]
    return [_padded(p, n_components) for p in starts]


def _heard(function, *args):
    """``function(*args)`` and the warnings it raised, not shown yet."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        result = function(*args)
    return result, caught


def _extra_runs(Z, n_components, covariance_type, n_runs, rng) -> list:
    """``_good_em``'s runs that may offer other optima.

    None when every run failed, collapsed runs left out, and quietly, since they only add
    candidates to the best start.
    """
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        try:
            fits = _good_em(Z, n_components, covariance_type, n_runs, rng)
        except ValueError:
            return []
    return [fit for fit in fits if not _collapsed(fit.params)]


def _same_optimum(a: GMMParams, b: GMMParams, tol: float = 0.5) -> bool:
    """Whether two fits have the same components up to relabelling.

    Components are matched by their means; a pair is the same when its means are less than
    ``tol`` of their typical standard deviation apart. EM stops on a change of the mean
    log-likelihood, short of the optimum on flat ridges, so exact equality is too strict.
    """
    cost = np.linalg.norm(np.asarray(a.means)[:, None] - np.asarray(b.means)[None], axis=-1)
    rows, cols = linear_sum_assignment(cost)
    sd = np.sqrt((_mean_variance(a)[rows] + _mean_variance(b)[cols]) / 2)
    return bool(np.all(cost[rows, cols] < tol * sd))


def _mean_variance(params: GMMParams) -> np.ndarray:
    """Each component's variance averaged over features, shape (n_components,)."""
    L = np.asarray(params.scale_tril)
    return np.sum(L * L, axis=(-2, -1)) / L.shape[-1]


def _aligned(params: GMMParams, reference: GMMParams) -> GMMParams:
    """``params`` with its components reordered to match ``reference``'s means."""
    cost = np.linalg.norm(np.asarray(reference.means)[:, None] - np.asarray(params.means)[None], axis=-1)
    _, cols = linear_sum_assignment(cost)
    return params.permute(cols)


def _padded(params: GMMParams, n_components: int) -> GMMParams:
    """Spare components appended empty (see ``em_start``) and weights clipped from zero."""
    n_spare, n_features = n_components - params.n_components, params.means.shape[-1]
    weights = np.concatenate([np.asarray(params.weights), np.zeros(n_spare)])
    weights = np.clip(weights, _MIN_WEIGHT, None)
    means = np.concatenate([np.asarray(params.means), np.zeros((n_spare, n_features))])
    scale_tril = np.concatenate(
        [
            np.asarray(params.scale_tril),
            np.broadcast_to(np.eye(n_features), (n_spare, n_features, n_features)),
        ]
    )
    return GMMParams(jnp.asarray(weights / weights.sum()), jnp.asarray(means), jnp.asarray(scale_tril))


#: Covariance regularisation of the EM start (standardised units).
_REG_COVAR = 1e-4


def _good_em(Z, n_components, covariance_type, n_init, rng):
    """EM fits of ``n_init`` runs from k-means++ seeds, highest lower bound first.

    Only those where no component collapsed (see ``_collapsed``) are kept, if there are any.
    """
    from sklearn.cluster import kmeans_plusplus

    from bayesgmm.inference.em.fit import fit_em
    from bayesgmm.inference.em.missing import hot_deck

    fits, error = [], None
    incomplete = bool(np.isnan(Z).any())
    for _ in range(n_init):
        # k-means++ needs every value: with missing ones, it seeds on a random completion,
        # and EM for incomplete data fits the observed values from there.
        seeding = hot_deck(Z, ~np.isnan(Z), rng) if incomplete else Z
        _, idx = kmeans_plusplus(seeding, n_components, random_state=rng)
        options = _seeded_start(seeding[idx], covariance_type)
        if incomplete:
            options.update(missing="marginalize", seed=rng.randint(2**31 - 1))
        try:
            with warnings.catch_warnings():
                # A start need not be converged: the sampler or optimiser takes it from there;
                # runs with empty components are passed over below.
                warnings.filterwarnings("ignore", message="EM did not converge")
                warnings.filterwarnings("ignore", message=".*hold no observation")
                fits.append(fit_em(Z, n_components, covariance_type, **options))
        except ValueError as exc:  # this run collapsed; fit_em says how to avoid it
            error = exc
    # A run that left a component empty has fewer components than asked (and that
    # component's variance at EM's floor): another run is a better start, if there is one.
    filled = [fit for fit in fits if np.min(np.asarray(fit.params.weights)) * len(Z) > 1e-3]
    fits = filled or fits
    if not fits:
        raise error
    whole = [fit for fit in fits if not _collapsed(fit.params)]
    if not whole:
        warnings.warn(
            f"Every EM start ({len(fits)} runs) put a component on tied values: its variance in some "
            "direction is EM's floor. The data may be rounded or duplicated; the fit starts there, "
            "in a mode whose density is set by the prior on the scales. Add noise within the "
            "rounding interval (dequantize), or use fewer components.",
            stacklevel=3,
        )
        whole = fits
    return sorted(whole, key=lambda fit: -fit.lower_bound)


def _collapsed(params) -> bool:
    """Whether a component's variance in some direction is at EM's floor ``_REG_COVAR``.

    With rounded data, a component can sit on points tied in some direction (iris: many
    setosa petal widths are exactly 0.2 cm). Its likelihood is then bounded only by the
    regularisation, so such a run often has the best lower bound; started there, NUTS and
    SVI stay in that mode, whose posterior density is far higher but set by the scale prior.
    """
    L = np.asarray(params.scale_tril)
    smallest = np.linalg.eigvalsh(L @ np.swapaxes(L, -1, -2)).min()
    return bool(smallest < 2 * _REG_COVAR)


def _seeded_start(seeds: np.ndarray, covariance_type: str) -> dict:
    """``fit_em``'s keywords to start at ``seeds`` (n_components, n_features).

    As its ``init_params="k-means++"`` does: uniform weights, covariances ``_REG_COVAR * I``.
    """
    n_components, n_features = seeds.shape
    shape = {
        "full": (n_components, n_features, n_features),
        "tied": (n_features, n_features),
        "diag": (n_components, n_features),
        "spherical": (n_components,),
    }[covariance_type]
    diagonal = np.eye(n_features) if covariance_type in ("full", "tied") else 1.0
    precision = np.broadcast_to(diagonal / _REG_COVAR, shape)
    return dict(
        weights_init=np.full(n_components, 1 / n_components),
        means_init=seeds,
        precisions_init=precision,
        reg_covar=_REG_COVAR,
    )


def compile_em_start(
    Z: np.ndarray, n_components: int, covariance_type: str, pool: Executor, overfitted: bool = False
) -> list[Future]:
    """Compile the EM programs of ``em_start`` (same arguments) in ``pool``'s threads.

    They are traced on the calling thread, and compiled without the GIL while it goes on;
    ``em_start`` then finds them compiled, as long as it waits for the returned futures first.

    Returns
    -------
    list of concurrent.futures.Future
    """
    from bayesgmm.inference.em.fit import lower_em

    if np.isnan(Z).any():  # EM for incomplete data compiles its own program when it runs
        return []
    covariance_type = em_start_type(covariance_type)
    return [
        pool.submit(lower_em(Z, k, covariance_type, **_seeded_start(Z[:k], covariance_type)).compile)
        for k in _sizes(n_components, overfitted)
    ]


def _sizes(n_components: int, overfitted: bool):
    """Numbers of components the EM start fits: all up to ``n_components`` when overfitted."""
    return range(1, n_components + 1) if overfitted else [n_components]


def sites_from_params(
    params: GMMParams, covariance_type: str, weight_prior: str = "dirichlet", priors: Priors | None = None
) -> dict:
    """Return the model's latent sites that reproduce ``params``.

    See ``models.LATENT_SITES`` and ``models.WEIGHT_SITES``. For ``full`` and ``tied``,
    dividing each row of the Cholesky factor by its norm gives the Cholesky factor of the
    correlation matrix, and the row norms are the per-feature standard deviations. ``diag``
    and ``spherical`` keep only the diagonal (its mean square for ``spherical``); ``EEI``
    pools the diagonal variances over the components, weighted by the weights, and ``EII``
    pools their mean over the features too. The
    hyperparameter of a ``sparse`` or ``dp`` weight prior starts at its prior median; for
    ``dp`` the components are sorted by decreasing weight (the order stick-breaking favours)
    and the weights are turned into sticks. Computed with numpy on the host: op by op in
    JAX, every small operation would be compiled on its own in a fresh process.
    """
    if weight_prior == "dp":
        params = params.permute(np.argsort(-np.asarray(params.weights), kind="stable"))
    L = np.asarray(params.scale_tril)
    row_norms = np.sqrt(np.sum(L * L, axis=-1))
    sites = {"means": np.asarray(params.means)}
    if covariance_type in EM_START_TYPES:
        weights = np.asarray(params.weights) / np.sum(params.weights)
        pooled = weights @ row_norms**2
        sites["scales"] = np.sqrt(np.mean(pooled) if covariance_type == "EII" else pooled)
    elif covariance_type == "spherical":
        sites["scales"] = np.sqrt(np.mean(row_norms**2, axis=-1))
    elif covariance_type == "diag":
        sites["scales"] = row_norms
    else:
        if covariance_type == "tied":
            L, row_norms = L[0], row_norms[0]
        sites["scales"] = row_norms
        if L.shape[-1] > 1:
            sites["corr_cholesky"] = L / row_norms[..., :, None]
    return {**sites, **_weight_sites(np.asarray(params.weights), weight_prior, priors or Priors())}


def _weight_sites(weights: np.ndarray, weight_prior: str, priors: Priors) -> dict:
    """Sites of the weight prior that reproduce ``weights`` (n_components,)."""
    if weight_prior == "dirichlet":
        return {"weights": np.asarray(weights)}
    if weight_prior == "sparse":
        e0 = stats.gamma(priors.sparse_shape, scale=1 / priors.sparse_rate).median()
        # g_k = h_k exp(-t_k / e0) with h_k = 1, and the largest weight's t at e0: the
        # logits -t_k / e0 are then log w_k up to a constant (see models._sparse_log_weights).
        log_w = np.log(np.asarray(weights))
        decay = e0 * (1.0 + log_w.max() - log_w)
        return {
            "weight_concentration": np.asarray(e0),
            "weight_gamma": np.ones_like(log_w),
            "weight_decay": decay,
        }
    alpha = np.asarray(stats.gamma(priors.dp_shape, scale=1 / priors.dp_rate).median())
    if len(weights) == 1:
        return {"concentration": alpha}
    # v_k = w_k / (mass left before k); clipped inside (0, 1) so it can be unconstrained.
    left = 1.0 - np.concatenate([[0.0], np.cumsum(weights)[:-2]])
    sticks = np.clip(weights[:-1] / left, 1e-6, 1 - 1e-6)
    return {"concentration": alpha, "sticks": np.asarray(sticks)}


def chain_init_params(
    model: Callable,
    model_kwargs: dict,
    sites: dict | Sequence[dict],
    n_chains: int,
    key: jax.Array,
    jitter: float = 0.1,
) -> dict:
    """Return unconstrained starting values for ``n_chains`` chains around one or several points.

    Chain ``c`` starts at ``sites[c % len(sites)]`` (one dict is one point), moved by
    independent ``Normal(0, jitter)`` noise in the unconstrained space, so that R-hat
    sees differences in where chains begin; starting points from different optima
    (``em_starts``) let it see a second mode.

    Returns
    -------
    dict of arrays with a leading ``chain`` axis, as ``MCMC.run(init_params=...)`` expects.
    """
    points = [sites] if isinstance(sites, dict) else list(sites)
    # unconstrain_fn also returns deterministic sites (the dp prior's weights); a sampler
    # handed one would substitute it and cut it loose from the sites it is computed from.
    unconstrained = [
        {k: np.asarray(v) for k, v in unconstrain_fn(model, (), model_kwargs, point).items() if k in point}
        for point in points
    ]
    names = sorted(unconstrained[0])
    keys = jax.random.split(key, len(names))
    out = {}
    for k, name in zip(keys, names, strict=True):
        value = np.stack([unconstrained[c % len(points)][name] for c in range(n_chains)])
        noise = jax.random.normal(k, value.shape, dtype=jnp.result_type(value))
        out[name] = jnp.asarray(value) + jitter * noise
    return out
