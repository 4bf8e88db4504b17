"""NumPyro model functions of Gaussian mixtures, with the assignments marginalised.

The models work on standardised data ``Z = (X - loc) / scale``. Plates are named
after the ArviZ dims (``component``, ``obs``) so converters infer them.
"""

from __future__ import annotations

import math

import jax.numpy as jnp
import numpyro
import numpyro.distributions as dist
from numpyro.distributions import constraints

from bayesgmm import densities
from bayesgmm.params import GMMParams
from bayesgmm.priors import Priors

#: Latent sites each covariance type samples, besides ``weights`` and ``means``.
LATENT_SITES = {
    "full": ("scales", "corr_cholesky"),
    "tied": ("scales", "corr_cholesky"),
    "diag": ("scales",),
    "spherical": ("scales",),
}


def _scale_prior(priors: Priors):
    return dist.LogNormal(jnp.log(priors.scale_loc), priors.scale_scale)


def _sample_scale_tril(covariance_type: str, n_components: int, n_features: int, priors: Priors):
    """Sample the covariance Cholesky factors, shape (n_components, n_features, n_features)."""
    eye = jnp.eye(n_features)
    if covariance_type == "spherical":
        scales = numpyro.sample("scales", _scale_prior(priors).expand([n_components]).to_event(1))
        return scales[:, None, None] * eye
    if covariance_type == "diag":
        scales = numpyro.sample(
            "scales", _scale_prior(priors).expand([n_components, n_features]).to_event(1)
        )
        return scales[..., :, None] * eye
    shape = [n_features] if covariance_type == "tied" else [n_components, n_features]
    scales = numpyro.sample("scales", _scale_prior(priors).expand(shape).to_event(len(shape)))
    if n_features == 1:
        corr = jnp.ones((1, 1))
    else:
        lkj = dist.LKJCholesky(n_features, priors.lkj_concentration)
        corr = numpyro.sample("corr_cholesky", lkj if covariance_type == "tied" else lkj.expand([n_components]))
    scale_tril = scales[..., :, None] * corr
    return jnp.broadcast_to(scale_tril, (n_components, n_features, n_features))


class MixtureLikelihood(dist.Distribution):
    """One observation from a Gaussian mixture, event shape (n_features,).

    The same law as ``MixtureSameFamily(Categorical, MultivariateNormal)``, with the
    log density of ``densities.log_prob``: numpyro's multivariate normal does one
    triangular solve per observation and component, many times slower on CPU.

    Examples
    --------
    >>> import jax.numpy as jnp
    >>> p = GMMParams(jnp.ones(1), jnp.zeros((1, 1)), jnp.ones((1, 1, 1)))
    >>> MixtureLikelihood(p).log_prob(jnp.zeros((3, 1))).shape
    (3,)
    """

    support = constraints.real_vector

    def __init__(self, params: GMMParams):
        self.params = params
        super().__init__(batch_shape=(), event_shape=(params.n_features,))

    def log_prob(self, value):
        flat = jnp.reshape(value, (-1, value.shape[-1]))
        return densities.log_prob(self.params, flat).reshape(value.shape[:-1])

    def sample(self, key, sample_shape=()):
        n_draws = math.prod(sample_shape)
        X, _ = densities.sample(self.params, key, n_draws)
        return X.reshape((*sample_shape, self.params.n_features))


def gmm_model(
    Z=None,
    *,
    n_components: int,
    n_features: int,
    n_obs: int | None = None,
    covariance_type: str = "full",
    priors: Priors = Priors(),
    subsample_size: int | None = None,
):
    """Finite Gaussian mixture with Dirichlet weights and LKJ covariance priors.

    Parameters
    ----------
    Z : array, shape (n_obs, n_features), optional
        Standardised observations; None samples from the prior predictive.
    n_components, n_features : int
    n_obs : int, optional
        Number of observations; defaults to ``len(Z)``. Give it with a minibatch
        ``Z`` of ``subsample_size`` rows to fit the full data set's likelihood.
    covariance_type : {"full", "tied", "diag", "spherical"}
    priors : Priors
    subsample_size : int, optional
        Minibatch size for stochastic variational inference; the likelihood is
        scaled by ``n_obs / subsample_size`` by the ``obs`` plate. ``Z`` may hold
        all ``n_obs`` rows (the plate draws the minibatch) or be a minibatch the
        caller already drew at random (data too big for memory).

    Notes
    -----
    The deterministic site ``scale_tril`` holds the Cholesky factors of the
    covariances (standardised units); the likelihood is the log-sum-exp over
    components, so no discrete assignment is ever sampled.

    Examples
    --------
    >>> import jax
    >>> from numpyro.infer import Predictive
    >>> draws = Predictive(gmm_model, num_samples=2)(jax.random.PRNGKey(0), n_components=2,
    ...                                              n_features=1, n_obs=5)
    >>> draws["Z"].shape
    (2, 5, 1)
    """
    n_obs = Z.shape[0] if n_obs is None else n_obs
    weights = numpyro.sample(
        "weights", dist.Dirichlet(jnp.full(n_components, priors.weight_concentration))
    )
    means = numpyro.sample(
        "means",
        dist.Normal(priors.mean_loc, priors.mean_scale).expand([n_components, n_features]).to_event(2),
    )
    scale_tril = numpyro.deterministic(
        "scale_tril", _sample_scale_tril(covariance_type, n_components, n_features, priors)
    )
    mixture = MixtureLikelihood(GMMParams(weights, means, scale_tril))
    with numpyro.plate("obs", n_obs, subsample_size=subsample_size) as idx:
        drawn_here = Z is not None and subsample_size is not None and Z.shape[0] == n_obs
        batch = Z[idx] if drawn_here else Z
        numpyro.sample("Z", mixture, obs=batch)


def params_from_sites(sites: dict) -> GMMParams:
    """GMMParams (standardised units) from one draw of the model's sites."""
    return GMMParams(sites["weights"], sites["means"], sites["scale_tril"])
