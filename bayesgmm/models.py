"""NumPyro model functions of Gaussian mixtures, with the assignments marginalised.

The models work on standardised data ``Z = (X - loc) / scale``. Plates are named
after the ArviZ dims (``component``, ``obs``) so converters infer them.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpyro
import numpyro.distributions as dist
from jax.scipy.special import logsumexp
from numpyro.distributions import constraints

from bayesgmm import densities, incomplete
from bayesgmm.params import GMMParams
from bayesgmm.priors import Priors

#: Latent sites each covariance type samples, besides ``weights`` and ``means``.
LATENT_SITES = {
    "full": ("scales", "corr_cholesky"),
    "tied": ("scales", "corr_cholesky"),
    "diag": ("scales",),
    "spherical": ("scales",),
    "EII": ("scales",),
    "EEI": ("scales",),
}

#: Latent sites each weight prior samples. Under ``dp`` the ``weights`` are a deterministic
#: function of the ``sticks``; ``weight_concentration`` and ``concentration`` are hyperparameters.
WEIGHT_SITES = {
    "dirichlet": ("weights",),
    "sparse": ("weight_concentration", "weight_gamma", "weight_decay"),
    "dp": ("concentration", "sticks"),
}


def _scale_prior(priors: Priors):
    return dist.LogNormal(jnp.log(priors.scale_loc), priors.scale_scale)


def _sample_scale_tril(covariance_type: str, n_components: int, n_features: int, priors: Priors):
    """Sample the covariance Cholesky factors, shape (n_components, n_features, n_features).

    The ``scales`` site is a standard deviation: shape (n_components,) for ``spherical``,
    (n_components, n_features) for ``diag`` and ``full``, (n_features,) for ``tied`` and
    ``EEI`` (one diagonal shared by every component) and () for ``EII`` (one scalar shared
    by every component and feature). Shared factors are broadcast over the components, as
    ``tied``'s is.
    """
    eye = jnp.eye(n_features)
    if covariance_type in ("EII", "EEI"):
        shape = [] if covariance_type == "EII" else [n_features]
        scales = numpyro.sample("scales", _scale_prior(priors).expand(shape).to_event(len(shape)))
        scale_tril = jnp.broadcast_to(scales, (n_features,))[:, None] * eye
        return jnp.broadcast_to(scale_tril, (n_components, n_features, n_features))
    if covariance_type == "spherical":
        scales = numpyro.sample("scales", _scale_prior(priors).expand([n_components]).to_event(1))
        return scales[:, None, None] * eye
    if covariance_type == "diag":
        scales = numpyro.sample("scales", _scale_prior(priors).expand([n_components, n_features]).to_event(1))
        return scales[..., :, None] * eye
    shape = [n_features] if covariance_type == "tied" else [n_components, n_features]
    scales = numpyro.sample("scales", _scale_prior(priors).expand(shape).to_event(len(shape)))
    if n_features == 1:
        corr = jnp.ones((1, 1))
    else:
        lkj = dist.LKJCholesky(n_features, priors.lkj_concentration)
        corr = numpyro.sample(
            "corr_cholesky", lkj if covariance_type == "tied" else lkj.expand([n_components])
        )
    scale_tril = scales[..., :, None] * corr
    return jnp.broadcast_to(scale_tril, (n_components, n_features, n_features))


class MixtureLikelihood(dist.Distribution):
    """One observation from a Gaussian mixture, event shape (n_features,).

    The same law as ``MixtureSameFamily(Categorical, MultivariateNormal)``, with the
    log density of ``densities.component_log_prob_expanded``: numpyro's multivariate
    normal does one triangular solve per observation and component, which is much slower
    on CPU than one matrix product.

    With ``missing=True``, NaN in a row marks missing coordinates and the row's density is
    the exact marginal of its observed ones (``incomplete.observed_log_density``, one
    masked formula for every pattern); without, the complete-data program is unchanged.

    Examples
    --------
    >>> import jax.numpy as jnp
    >>> p = GMMParams(jnp.ones(1), jnp.zeros((1, 1)), jnp.ones((1, 1, 1)))
    >>> MixtureLikelihood(p).log_prob(jnp.zeros((3, 1))).shape
    (3,)
    """

    support = constraints.real_vector
    pytree_data_fields = ("params", "log_weights", "log_noise", "noise_log_ranges")
    pytree_aux_fields = ("missing",)

    def __init__(
        self,
        params: GMMParams,
        log_weights: jax.Array | None = None,
        missing: bool = False,
        log_noise: jax.Array | None = None,
        noise_log_ranges: jax.Array | None = None,
    ):
        self.params = params
        self.missing = missing
        # Given by models whose weights can underflow (the sparse prior's): log(0) would
        # make the gradient NaN.
        self.log_weights = jnp.log(params.weights) if log_weights is None else log_weights
        # ``log pi_0 - log V`` of a uniform noise component, one more column of the joint
        # densities; None leaves the noise-free program as it is.
        self.log_noise = log_noise
        # ``log`` of the noise box's sides: a row with missing features sees the box's
        # projection on its observed ones, of density ``1 / V`` times the missing sides.
        self.noise_log_ranges = noise_log_ranges
        super().__init__(batch_shape=(), event_shape=(params.n_features,))

    def log_prob(self, value: jax.Array) -> jax.Array:
        """Log density of each row of ``value``, shape ``value.shape[:-1]``."""
        flat = jnp.reshape(value, (-1, value.shape[-1]))
        if self.missing:
            observed = ~jnp.isnan(flat)
            dens = incomplete.observed_log_density(self.params, jnp.where(observed, flat, 0.0), observed)
            joint = self.log_weights + dens
            if self.log_noise is not None:
                unseen = (~observed).astype(joint.dtype) @ self.noise_log_ranges
                joint = jnp.concatenate([joint, (self.log_noise + unseen)[:, None]], axis=-1)
            return logsumexp(joint, axis=-1).reshape(value.shape[:-1])
        # The models see standardised data, where the expanded form's rounding is far below
        # any statistical error, and it needs one matrix product instead of a solve per row.
        joint = self.log_weights + densities.component_log_prob_expanded(self.params, flat)
        if self.log_noise is not None:
            noise = jnp.broadcast_to(self.log_noise, joint.shape[:-1])[..., None]
            joint = jnp.concatenate([joint, noise], axis=-1)
        return logsumexp(joint, axis=-1).reshape(value.shape[:-1])

    def sample(self, key: jax.Array, sample_shape: tuple[int, ...] = ()) -> jax.Array:
        """Draw observations, shape ``(*sample_shape, n_features)``."""
        n_draws = math.prod(sample_shape)
        X, _ = densities.sample(self.params, key, n_draws)
        return X.reshape((*sample_shape, self.params.n_features))


def stick_breaking(sticks: jax.Array) -> jax.Array:
    """Mixture weights from stick-breaking proportions.

    Parameters
    ----------
    sticks : array, shape (..., n_components - 1)
        Share of the stick left so far that each of the first components takes.

    Returns
    -------
    array, shape (..., n_components)
        ``w_k = v_k * prod_{j<k} (1 - v_j)``; the last component takes the mass left
        in the stick, ``prod_j (1 - v_j)`` (the truncation of a Dirichlet process).

    Examples
    --------
    >>> stick_breaking(jnp.array([0.5, 0.5])).tolist()
    [0.5, 0.25, 0.25]
    """
    left = jnp.cumprod(1.0 - sticks, axis=-1)
    before = jnp.concatenate([jnp.ones_like(sticks[..., :1]), left[..., :-1]], axis=-1)
    return jnp.concatenate([sticks * before, left[..., -1:]], axis=-1)


def _sample_weights(weight_prior: str, n_components: int, priors: Priors):
    """Sample the mixture weights, shape (n_components,), under one of ``WEIGHT_SITES``.

    Returns the weights and their logarithm where it is computed without the weights
    (else None).
    """
    if weight_prior == "dirichlet":
        weights = numpyro.sample(
            "weights", dist.Dirichlet(jnp.full(n_components, priors.weight_concentration))
        )
        return weights, None
    if weight_prior == "sparse":
        # Malsiner-Walli, Fruehwirth-Schnatter & Gruen (2016): a small Dirichlet concentration,
        # itself uncertain, empties the components the data do not need.
        e0 = numpyro.sample("weight_concentration", dist.Gamma(priors.sparse_shape, priors.sparse_rate))
        log_weights = _sparse_log_weights(e0, n_components)
        return numpyro.deterministic("weights", jnp.exp(log_weights)), log_weights
    if weight_prior == "dp":
        alpha = numpyro.sample("concentration", dist.Gamma(priors.dp_shape, priors.dp_rate))
        if n_components == 1:
            return numpyro.deterministic("weights", jnp.ones(1)), None
        sticks = numpyro.sample("sticks", dist.Beta(1.0, alpha).expand([n_components - 1]).to_event(1))
        return numpyro.deterministic("weights", stick_breaking(sticks)), None
    raise ValueError(f"weight_prior must be one of {tuple(WEIGHT_SITES)}, got {weight_prior!r}.")


def _sparse_log_weights(e0, n_components: int):
    """Log of Dirichlet(e0, ..., e0) weights, sampled without the funnel of a small e0.

    The weights are normalised Gamma(e0, 1) variables ``g_k``, each written as
    ``g_k = h_k exp(-t_k / e0)`` with ``h_k ~ Gamma(1 + e0, 1)`` and ``t_k ~ Exponential(1)``
    (if ``U`` is uniform, ``h U^(1 / e0)`` is Gamma(e0, 1)). Sampled directly, a weight's
    law under a small e0 puts ``log w`` on a tail of scale ``1 / e0`` (100 at e0 = 0.01),
    whose width also changes with e0: a funnel on which NUTS diverges. Here ``t_k``'s
    prior does not depend on e0 and ``h_k``'s hardly does, an empty component's ``t_k``
    stays near its prior, and an occupied one's moves on a scale set by the data.
    The log-weights are normalised in log space, so none underflows to zero.
    """
    h = numpyro.sample("weight_gamma", dist.Gamma(1.0 + e0 * jnp.ones(n_components), 1.0).to_event(1))
    t = numpyro.sample("weight_decay", dist.Exponential(jnp.ones(n_components)).to_event(1))
    log_g = jnp.log(h) - t / e0
    return log_g - logsumexp(log_g)


def hyper_draws(sites: dict, weight_prior: str) -> dict:
    """Posterior variables of the weight prior besides ``weights``, from sampled sites.

    ``sites`` holds arrays with any leading batch axes. Returns ``weight_concentration``
    (sparse), or ``concentration``, ``sticks`` and ``stick_remainder`` (dp: the mass left
    in the last stick, which the truncation gives to the last component); nothing for
    ``dirichlet``.
    """
    if "noise_weight" in sites:
        return {"noise_weight": sites["noise_weight"], **hyper_draws(_without_noise(sites), weight_prior)}
    if weight_prior == "sparse":
        return {"weight_concentration": sites["weight_concentration"]}
    if weight_prior == "dp":
        out = {"concentration": sites["concentration"], "stick_remainder": sites["weights"][..., -1]}
        if "sticks" in sites:
            out["sticks"] = sites["sticks"]
        return out
    return {}


def gmm_model(
    Z: jax.Array | None = None,
    *,
    n_components: int,
    n_features: int,
    n_obs: int | None = None,
    covariance_type: str = "full",
    priors: Priors | None = None,
    subsample_size: int | None = None,
    weight_prior: str = "dirichlet",
    missing: str = "error",
    noise_log_density: float | None = None,
    noise_log_ranges: tuple[float, ...] | None = None,
) -> None:
    """Finite Gaussian mixture with Dirichlet weights and LKJ covariance priors.

    Parameters
    ----------
    Z : array, shape (n_obs, n_features), optional
        Standardised observations; None samples from the prior predictive.
    n_components, n_features : int
    n_obs : int, optional
        Number of observations; defaults to ``len(Z)``. Give it with a minibatch
        ``Z`` of ``subsample_size`` rows to fit the full data set's likelihood.
    covariance_type : {"full", "tied", "diag", "spherical", "EII", "EEI"}
        ``EII``: one variance ``s^2 I`` shared by every component; ``EEI``: one diagonal
        ``diag(s_1^2, ..., s_D^2)`` shared by every component (mclust's names; both in
        standardised units, see ``_sample_scale_tril``).
    priors : Priors, optional
        Defaults to ``Priors()``.
    subsample_size : int, optional
        Minibatch size for stochastic variational inference; the likelihood is
        scaled by ``n_obs / subsample_size`` by the ``obs`` plate. ``Z`` may hold
        all ``n_obs`` rows (the plate draws the minibatch) or be a minibatch the
        caller already drew at random (data too big for memory).
    weight_prior : {"dirichlet", "sparse", "dp"}
        ``"dirichlet"``: symmetric Dirichlet(``priors.weight_concentration``).
        ``"sparse"``: a sparse (overfitted) finite mixture, Dirichlet(e0) with the
        ``weight_concentration`` e0 ~ Gamma(``priors.sparse_shape``, ``priors.sparse_rate``),
        sampled through ``weight_gamma`` and ``weight_decay`` (see ``_sparse_log_weights``);
        ``weights`` is deterministic.
        ``"dp"``: a Dirichlet process truncated at ``n_components`` components,
        ``sticks`` ~ Beta(1, ``concentration``), ``concentration`` ~
        Gamma(``priors.dp_shape``, ``priors.dp_rate``); ``weights`` is deterministic.
    missing : {"error", "marginalize"}
        With ``"marginalize"``, NaN in ``Z`` are values missing at random: each row's
        likelihood is the exact marginal density of its observed coordinates.
    noise_log_density : float, optional
        ``-log V`` of a uniform noise component of hypervolume ``V`` in the standardised
        coordinates (the user's volume divided by the product of the feature scales), as
        mclust's noise: each row's density is ``pi_0 / V + sum_k pi_k N(z | mu_k, Sigma_k)``.
        ``noise_weight`` ``pi_0`` ~ Beta(``priors.noise_concentration``,
        ``n_components * priors.weight_concentration``) and the Gaussians' shares
        ``weights / (1 - pi_0)`` ~ Dirichlet(``priors.weight_concentration``): together
        exactly Dirichlet(alpha, ..., alpha, ``noise_concentration``) over the
        ``n_components + 1`` weights. The site ``weights`` then holds the shares
        (``params_from_sites`` gives the ``pi_k``). With ``weight_prior="sparse"`` or
        ``"dp"`` the shares follow that prior and ``pi_0`` the same Beta law.
    noise_log_ranges : sequence of float, length n_features, optional
        With ``missing="marginalize"`` and noise: ``log`` of the sides of the noise's box
        (standardised units), whose product is ``V``. A row with observed features ``O`` then
        has the noise density ``pi_0 / prod_{j in O} side_j``, the box's projection on ``O``.

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
    priors = Priors() if priors is None else priors
    n_obs = Z.shape[0] if n_obs is None else n_obs
    weights, log_weights = _sample_weights(weight_prior, n_components, priors)
    log_noise = None
    if noise_log_density is not None:
        weights, log_weights, log_noise = _noise_weights(
            weights, log_weights, n_components, priors, noise_log_density
        )
    means = numpyro.sample(
        "means",
        dist.Normal(priors.mean_loc, priors.mean_scale).expand([n_components, n_features]).to_event(2),
    )
    scale_tril = numpyro.deterministic(
        "scale_tril", _sample_scale_tril(covariance_type, n_components, n_features, priors)
    )
    params = GMMParams(weights, means, scale_tril)
    marginalize = missing == "marginalize"
    if marginalize and log_noise is not None and noise_log_ranges is None:
        raise ValueError("noise with missing='marginalize' needs noise_log_ranges, the log sides of the box.")
    ranges = None if noise_log_ranges is None else jnp.asarray(noise_log_ranges, means.dtype)
    mixture = MixtureLikelihood(params, log_weights, marginalize, log_noise, ranges)
    with numpyro.plate("obs", n_obs, subsample_size=subsample_size) as idx:
        drawn_here = Z is not None and subsample_size is not None and Z.shape[0] == n_obs
        batch = Z[idx] if drawn_here else Z
        numpyro.sample("Z", mixture, obs=batch)


def _without_noise(sites: dict) -> dict:
    return {k: v for k, v in sites.items() if k != "noise_weight"}


def _noise_weights(shares, log_shares, n_components: int, priors: Priors, noise_log_density: float):
    """Sample ``noise_weight`` and return the Gaussian weights, their logs and ``log pi_0 - log V``.

    Dirichlet(alpha, ..., alpha, beta) over K + 1 weights is the noise weight
    ~ Beta(beta, K alpha) times independent Dirichlet(alpha) shares of the rest. Under the
    sparse and dp priors the shares follow that prior instead and ``noise_weight`` keeps
    the same Beta law, independent of them. ``log_shares`` (None: ``log(shares)``) keeps
    the sparse prior's small shares from underflowing.
    """
    noise_weight = numpyro.sample(
        "noise_weight", dist.Beta(priors.noise_concentration, n_components * priors.weight_concentration)
    )
    log_shares = jnp.log(shares) if log_shares is None else log_shares
    log_weights = log_shares + jnp.log1p(-noise_weight)
    return jnp.exp(log_weights), log_weights, jnp.log(noise_weight) + noise_log_density


def params_from_sites(sites: dict) -> GMMParams:
    """GMMParams (standardised units) from one draw of the model's sites.

    With a noise component (``noise_weight`` among the sites), the weights are the
    Gaussians' ``pi_k``, which sum to ``1 - noise_weight``.
    """
    weights = sites["weights"]
    if "noise_weight" in sites:
        weights = weights * (1.0 - sites["noise_weight"][..., None])
    return GMMParams(weights, sites["means"], sites["scale_tril"])
