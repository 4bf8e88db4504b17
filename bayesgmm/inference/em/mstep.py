"""The EM M-step and the log prior of MAP-EM, from the sufficient statistics of ``stats``."""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from numpy.typing import ArrayLike

from bayesgmm.inference.em.mclust_models import mclust_covariances, sklearn_layout
from bayesgmm.inference.em.stats import precisions
from bayesgmm.params import GMMParams


class EMPrior(NamedTuple):
    """Conjugate prior for MAP-EM (Fraley & Raftery 2007), in the fit's coordinates.

    Weights ~ Dirichlet(``weight_concentration``); given the covariance, each mean ~
    Normal(``mean``, covariance / ``mean_precision``); each covariance ~ inverse-Wishart
    (``dof``, ``scale``). ``diag`` uses the diagonal of ``scale`` (inverse-gamma per
    feature) and ``spherical`` the mean of its diagonal.

    Attributes
    ----------
    mean : array, shape (n_features,)
    mean_precision : float
        Pseudo-count kappa of the mean prior.
    dof : float
        Degrees of freedom nu of the inverse-Wishart prior.
    scale : array, shape (n_features, n_features)
        Scale matrix Psi of the inverse-Wishart prior.
    weight_concentration : float
        Dirichlet concentration alpha (1 leaves the weights unpenalised).
    """

    mean: jnp.ndarray
    mean_precision: jnp.ndarray
    dof: jnp.ndarray
    scale: jnp.ndarray
    weight_concentration: jnp.ndarray


def _unpack_symmetric(v, n_features):
    """Upper-triangle vectors, shape (n, n_features (n_features + 1) / 2) -> (n, D, D)."""
    rows, cols = jnp.triu_indices(n_features)
    M = jnp.zeros((v.shape[0], n_features, n_features), v.dtype).at[:, rows, cols].set(v)
    return M + jnp.swapaxes(M, -1, -2) * (1.0 - jnp.eye(n_features, dtype=v.dtype))


def m_step(
    S: jnp.ndarray,
    reg_covar: float,
    covariance_type: str,
    map_prior: EMPrior | None = None,
    second: jnp.ndarray | None = None,
    centre: jnp.ndarray | None = None,
    previous: GMMParams | None = None,
) -> tuple[GMMParams, jnp.ndarray]:
    """Compute new parameters from the sufficient statistics ``S = F.T @ (w * resp)``.

    Follows scikit-learn's ``_estimate_gaussian_parameters`` (``nk + 10 eps``, ``reg_covar``
    added to the diagonal); with ``map_prior``, the posterior-mode updates of Fraley & Raftery
    (2007).

    Parameters
    ----------
    S : array, shape (n_stats, n_components)
        Weighted counts, sums and (except for tied) second moments per component.
    reg_covar : float
    covariance_type : str
    map_prior : EMPrior or None
    second : array, shape (n_features (n_features + 1) / 2,), optional
        Tied only: the total weighted second moment ``stats.second_moment(X, w)``. Without
        it, tied's ``S`` holds per-component second moments in ``full``'s layout.
    centre : array, shape (n_components, n_features), optional
        The point each component's sums and second moments in ``S`` are taken about
        (``stats.centred_stats``); None for the moment expansion's statistics of ``x``.
    previous : GMMParams, optional
        The parameters ``S`` was computed at, where mclust's iterative models (VEI, VEE,
        EVE, VVE, VEV) start their M-step (``mclust_models``); mclust's other names take
        ``full``'s statistics and need none.

    Returns
    -------
    params : GMMParams
    ok : bool scalar
        False when a covariance is not positive definite (or not finite).
    """
    model, covariance_type = covariance_type, sklearn_layout(covariance_type)
    eps = jnp.finfo(S.dtype).eps
    n_stats = S.shape[0]
    layout = "full" if covariance_type == "tied" and second is None else covariance_type
    n_features = {"full": _n_feat_full(n_stats), "tied": n_stats - 1}.get(layout, (n_stats - 1) // 2)
    nk = S[0] + 10 * eps
    # Mean offset from the statistics' reference point (the origin, or ``centre``).
    rel = S[1 : 1 + n_features].T / nk[:, None]
    xbar = rel if centre is None else centre + rel
    scatter = _scatter(S, nk, rel, covariance_type, second)
    if map_prior is None:
        means, cov, weights = xbar, _ml_covariances(nk, scatter, covariance_type), nk / jnp.sum(nk)
        if model != covariance_type:
            before = (
                None if previous is None else previous.scale_tril @ jnp.swapaxes(previous.scale_tril, -1, -2)
            )
            cov = mclust_covariances(model, nk, nk[:, None, None] * scatter, before)
    else:
        means, cov, weights = _map_update(nk, xbar, scatter, covariance_type, map_prior)
    scale_tril = _factor(cov, reg_covar, covariance_type, S.shape[1], n_features)
    diag = jnp.diagonal(scale_tril, axis1=-2, axis2=-1)
    # As in scikit-learn, a component left without observations is not a failure while
    # reg_covar keeps its covariance positive definite (``fit_em`` warns about it); without
    # reg_covar its covariance is singular, and the Cholesky factor says so.
    ok = jnp.all(jnp.isfinite(scale_tril)) & jnp.all(diag > 0)
    return GMMParams(weights, means, scale_tril), ok


def _scatter(S, nk, rel, covariance_type, second):
    """Scatter about each component's mean per unit weight: (K, D, D), or (K, D) for diag/spherical."""
    n_components, n_features = rel.shape
    outer = rel[:, :, None] * rel[:, None, :]
    if covariance_type == "tied" and second is not None:
        # Only sum_k nk scatter_k is needed, and as responsibilities sum to one the second
        # moments sum to the data's total: sum_k nk scatter_k = second - sum_k nk xbar xbar^T.
        total = _unpack_symmetric(second[None], n_features)[0] - jnp.sum(nk[:, None, None] * outer, axis=0)
        return jnp.broadcast_to(total / jnp.sum(nk), (n_components, n_features, n_features))
    if covariance_type in ("full", "tied"):
        # E_k[y y^T] - ybar ybar^T for y the data about the reference point.
        second_k = _unpack_symmetric(S[1 + n_features :].T / nk[:, None], n_features) - outer
        if covariance_type == "full":
            return second_k
        total = jnp.sum(nk[:, None, None] * second_k, axis=0)
        return jnp.broadcast_to(total / jnp.sum(nk), (n_components, n_features, n_features))
    return S[1 + n_features :].T / nk[:, None] - rel * rel


def _ml_covariances(nk, scatter, covariance_type):
    """Maximum-likelihood covariances from the scatter (tied: one, pooled)."""
    if covariance_type == "tied":
        return jnp.sum(nk[:, None, None] * scatter, axis=0) / jnp.sum(nk)
    return scatter


def _factor(cov, reg_covar, covariance_type, n_components, n_features):
    """Cholesky factors (n_components, D, D) of the covariances with ``reg_covar`` on the diagonal."""
    dtype = cov.dtype
    if covariance_type == "spherical":
        cov = jnp.mean(cov, axis=-1, keepdims=True) * jnp.ones((1, n_features), dtype)
    if covariance_type in ("diag", "spherical"):
        return jax.vmap(jnp.diag)(jnp.sqrt(cov + reg_covar))
    cov = cov + reg_covar * jnp.eye(n_features, dtype=dtype)
    if covariance_type == "tied":
        cov = jnp.broadcast_to(cov, (n_components, n_features, n_features))
    return jnp.linalg.cholesky(cov)


def _n_feat_full(n_stats):
    # n_stats = 1 + D + D (D + 1) / 2  =>  D = (-3 + sqrt(1 + 8 n_stats)) / 2
    return int(round((-3 + (1 + 8 * n_stats) ** 0.5) / 2))


def _map_update(nk, xbar, scatter, covariance_type, map_prior):
    """Posterior-mode updates for the conjugate prior (Fraley & Raftery 2007, Table 2)."""
    kappa, nu, psi, alpha = (
        map_prior.mean_precision,
        map_prior.dof,
        map_prior.scale,
        map_prior.weight_concentration,
    )
    n_components, n_features = xbar.shape
    means = (nk[:, None] * xbar + kappa * map_prior.mean) / (nk + kappa)[:, None]
    d = xbar - map_prior.mean
    shrink = kappa * nk / (kappa + nk)
    if covariance_type in ("full", "tied"):
        num = nk[:, None, None] * scatter + shrink[:, None, None] * d[:, :, None] * d[:, None, :]
        if covariance_type == "full":
            cov = (psi + num) / (nu + nk + n_features + 2)[:, None, None]
        else:
            cov = (psi + jnp.sum(num, axis=0)) / (nu + jnp.sum(nk) + n_features + 1 + n_components)
    elif covariance_type == "diag":
        cov = (jnp.diagonal(psi) + nk[:, None] * scatter + shrink[:, None] * d * d) / (nu + nk + 3)[:, None]
    else:
        tr = jnp.sum(nk[:, None] * scatter + shrink[:, None] * d * d, axis=-1)
        var = (jnp.trace(psi) / n_features + tr) / (nu + (nk + 1) * n_features + 2)
        cov = var[:, None] * jnp.ones((1, n_features), xbar.dtype)
    weights = (nk + alpha - 1) / (jnp.sum(nk) + n_components * (alpha - 1))
    return means, cov, weights


def log_prior(params: GMMParams, covariance_type: str, map_prior: EMPrior | None) -> jnp.ndarray:
    """Compute the log prior density up to a constant: the MAP-EM objective's extra term.

    Parameters
    ----------
    params : GMMParams
    covariance_type : str
    map_prior : EMPrior or None
        None gives 0.

    Returns
    -------
    scalar
    """
    if map_prior is None:
        return jnp.zeros((), params.means.dtype)
    weights, means, scale_tril = params
    prec, half_log_det = precisions(scale_tril)
    n_features = means.shape[-1]
    d = means - map_prior.mean
    lp_weights = (map_prior.weight_concentration - 1) * jnp.sum(jnp.log(weights))
    mean_quad = map_prior.mean_precision * jnp.einsum("kij,ki,kj->k", prec, d, d)
    if covariance_type == "tied":
        # One shared inverse-Wishart factor, K normal factors for the means.
        iw = (map_prior.dof + n_features + 1) * half_log_det[0] - 0.5 * jnp.trace(prec[0] @ map_prior.scale)
        return lp_weights + iw + jnp.sum(half_log_det - 0.5 * mean_quad)
    if covariance_type == "full":
        power, psi = map_prior.dof + n_features + 2, map_prior.scale
    elif covariance_type == "diag":
        # Inverse-gamma per feature; half_log_det sums over features.
        power, psi = map_prior.dof + 3, jnp.diag(jnp.diagonal(map_prior.scale))
    else:
        # Inverse-gamma(nu / 2, s2 / 2) on sigma^2 with s2 = tr(Psi) / D; half_log_det is
        # -D/2 log sigma^2, so this power gives sigma^2 the exponent -(nu + 2 + D) / 2.
        power = (map_prior.dof + 2) / n_features + 1
        psi = jnp.trace(map_prior.scale) / n_features**2 * jnp.eye(n_features)
    quad = mean_quad + jnp.einsum("kij,ji->k", prec, psi)
    return lp_weights + jnp.sum(power * half_log_det - 0.5 * quad)


def centred_prior(
    spec: str | dict | EMPrior | None,
    X: ArrayLike,
    w: np.ndarray,
    n_components: int,
    shift: np.ndarray,
    dtype: np.dtype,
) -> EMPrior | None:
    """Turn ``fit_em``'s ``prior`` argument into an EMPrior in ``dtype``, centred on ``shift``.

    Parameters
    ----------
    spec : None, "default", dict or EMPrior
        ``fit_em``'s ``prior``; a dict overrides fields of :func:`default_prior`.
    X : array-like, shape (n_obs, n_features)
        The data in the user's units.
    w : ndarray, shape (n_obs,)
    n_components : int
    shift : ndarray, shape (n_features,)
        The centre the fit runs about.
    dtype : numpy dtype

    Returns
    -------
    EMPrior or None
    """
    if spec is None:
        return None
    base = default_prior(X, n_components, sample_weight=w)
    if isinstance(spec, str):
        if spec != "default":
            raise ValueError(f"prior must be None, 'default', a dict or an EMPrior, got {spec!r}.")
        map_prior = base
    elif isinstance(spec, dict):
        unknown = set(spec) - set(EMPrior._fields)
        if unknown:
            raise ValueError(f"Unknown prior fields {sorted(unknown)}; use {EMPrior._fields}.")
        map_prior = base._replace(**spec)
    elif isinstance(spec, EMPrior):
        map_prior = spec
    else:
        raise ValueError(f"prior must be None, 'default', a dict or an EMPrior, got {type(spec).__name__}.")
    # Centre in float64 before casting, as the data are.
    map_prior = map_prior._replace(
        mean=np.asarray(map_prior.mean, np.float64) - np.asarray(shift, np.float64)
    )
    return EMPrior(*(jnp.asarray(v, dtype) for v in map_prior))


def default_prior(X: ArrayLike, n_components: int, sample_weight: ArrayLike | None = None) -> EMPrior:
    """Fraley & Raftery's (2007) default conjugate prior, in the units of ``X``.

    Mean prior at the data mean with pseudo-count 0.01, ``n_features + 2`` degrees of
    freedom, scale ``cov(X) / n_components**(2 / n_features)``, flat Dirichlet.

    Parameters
    ----------
    X : array-like, shape (n_obs, n_features)
    n_components : int
    sample_weight : array-like, shape (n_obs,), optional

    Returns
    -------
    EMPrior

    Examples
    --------
    >>> import numpy as np
    >>> default_prior(np.array([[0.0], [2.0]]), 2).mean.tolist()
    [1.0]
    """
    X = np.asarray(X, dtype=float)
    w = np.ones(len(X)) if sample_weight is None else np.asarray(sample_weight, float)
    n_features = X.shape[1]
    mean = w @ X / w.sum()
    cov = ((X - mean) * w[:, None]).T @ (X - mean) / w.sum()
    return EMPrior(
        mean=mean,
        mean_precision=0.01,
        dof=n_features + 2.0,
        scale=cov / n_components ** (2.0 / n_features),
        weight_concentration=1.0,
    )
