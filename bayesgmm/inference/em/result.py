"""``EMResult``: the outcome of an EM fit, in the user's units, and how to score it."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import arviz as az
import jax
import jax.numpy as jnp
import numpy as np
from numpy.typing import ArrayLike

from bayesgmm import incomplete
from bayesgmm.inference.em import noise_missing
from bayesgmm.inference.em import sklearn_shapes as em_shapes
from bayesgmm.inference.idata import point_inference_data
from bayesgmm.params import GMMParams


@dataclass(frozen=True)
class EMResult:
    """Outcome of :func:`fit_em`, in the user's units.

    Attributes
    ----------
    params : GMMParams
        Fitted weights (n_components,), means (n_components, n_features) and Cholesky
        factors of the covariances (n_components, n_features, n_features).
    covariance_type : str
    log_likelihood : float
        Total (sample-weighted) log-likelihood of the data at ``params``.
    lower_bound : float
        scikit-learn's ``lower_bound_``: the mean log-likelihood per unit weight at the
        parameters before the last M-step (plus log prior / total weight for MAP-EM).
    lower_bounds : ndarray, shape (n_iter,)
        ``lower_bound`` at each iteration of the best restart.
    converged : bool
    n_iter : int
    labels : ndarray of int32, shape (n_obs,), or None
        The most probable component of each row of ``X`` at ``params`` (the final E-step).
    feature_names : tuple of str or None
        The columns of ``X`` when it was a data frame.
    noise_weight, noise_volume : float or None
        With ``fit_em(noise="uniform")``: the weight of the uniform noise component and the
        hypervolume ``V`` of its support (density ``1 / V``); ``params.weights`` then sum to
        ``1 - noise_weight``, ``log_prob`` includes the noise term, ``responsibilities``
        have a last column for the noise (as mclust's ``z``) and ``labels`` are -1 for rows
        most probably noise. None for a fit without noise.
    noise_lower, noise_upper : ndarray, shape (n_features,), or None
        The noise's region, the box ``[noise_lower, noise_upper]`` of volume ``noise_volume``
        (:func:`bayesgmm.noise_region.noise_box`), from which ``GaussianMixture.sample``
        draws the noise's rows. None for a fit without noise.
    """

    params: GMMParams
    covariance_type: str
    log_likelihood: float
    lower_bound: float
    lower_bounds: np.ndarray
    converged: bool
    n_iter: int
    X: np.ndarray = field(repr=False)
    sample_weight: np.ndarray | None = field(default=None, repr=False)
    #: Means in the coordinates the fit ran in (the data minus ``shift``, float64): float32
    #: cannot hold means far from the origin to the data's precision in the user's units.
    centred_means: np.ndarray | None = field(default=None, repr=False)
    shift: np.ndarray | None = field(default=None, repr=False)
    labels: np.ndarray | None = field(default=None, repr=False)
    feature_names: tuple[str, ...] | None = None
    noise_weight: float | None = None
    noise_volume: float | None = None
    noise_lower: np.ndarray | None = None
    noise_upper: np.ndarray | None = None

    @property
    def covariances(self) -> np.ndarray:
        """Covariances in scikit-learn's shape for ``covariance_type``."""
        return em_shapes.sklearn_covariances(self.params, self.covariance_type)

    def log_prob(self, X: ArrayLike) -> np.ndarray:
        """Compute ``log p(x_i | params)`` for every row of ``X``.

        Computed about the fit's centre in float64, so that a float32 fit far from the
        origin is scored at the parameters it found rather than at their rounded means.

        Parameters
        ----------
        X : array-like, shape (n_obs, n_features)

        Returns
        -------
        ndarray, shape (n_obs,)
        """
        params, Z = self._scoring(X)
        if self.noise_weight is not None:
            return np.asarray(jax.nn.logsumexp(self._noise_joint(params, Z), axis=1), np.float64)
        if np.isnan(Z).any():  # only a fit with missing="marginalize" lets NaN through
            return np.asarray(incomplete.log_prob_nan(params, jnp.asarray(Z)), np.float64)
        return np.asarray(em_shapes.log_prob(params, jnp.asarray(Z)), np.float64)

    def responsibilities(self, X: ArrayLike) -> np.ndarray:
        """Compute the membership probabilities of the rows of ``X``, in float64 as ``log_prob``.

        Parameters
        ----------
        X : array-like, shape (n_obs, n_features)

        Returns
        -------
        ndarray, shape (n_obs, n_components), or (n_obs, n_components + 1) with noise
            Each row sums to one; with noise, the last column is the noise's.
        """
        params, Z = self._scoring(X)
        if self.noise_weight is not None:
            return np.asarray(jax.nn.softmax(self._noise_joint(params, Z), axis=1), np.float64)
        if np.isnan(Z).any():
            return np.asarray(incomplete.responsibilities_nan(params, jnp.asarray(Z)), np.float64)
        return np.asarray(em_shapes.responsibilities(params, jnp.asarray(Z)), np.float64)

    def _noise_terms(self, shift: np.ndarray | float = 0.0) -> tuple:
        """Return the noise's weight, volume and box, the box in the coordinates ``X - shift``."""
        box = [
            None if b is None else np.asarray(b, np.float64) - shift
            for b in (self.noise_lower, self.noise_upper)
        ]
        return self.noise_weight, self.noise_volume, *box

    def _noise_joint(self, params: GMMParams, Z: np.ndarray) -> jnp.ndarray:
        """Joint log densities, noise last, of data ``Z`` in the fit's coordinates (NaN: missing)."""
        shift = 0.0 if self.shift is None else self.shift
        return noise_missing.joint_log_prob_nan(params, *self._noise_terms(shift), Z)

    def impute(self, X: ArrayLike | None = None) -> np.ndarray:
        """Return a copy of ``X`` with each missing value (NaN) replaced by ``E[x_mis | x_obs]``.

        The components' conditional means weighted by each row's responsibilities given its
        observed values (:func:`bayesgmm.incomplete.conditional_mean`); with a noise
        component, the noise's responsibility weights the centre of the noise's box
        (:func:`bayesgmm.inference.em.noise_missing.conditional_mean`).

        Parameters
        ----------
        X : array-like, shape (n_obs, n_features), optional
            The fit's data by default. Not modified; observed values are returned exactly.

        Returns
        -------
        ndarray, shape (n_obs, n_features)

        Examples
        --------
        >>> from bayesgmm import fit_em, load_dataset
        >>> X, _ = load_dataset("faithful")
        >>> X[:3, 1] = np.nan
        >>> res = fit_em(X, 2, seed=0, missing="marginalize")
        >>> res.impute()[:3, 1].round(1)
        array([76.1, 53. , 74.6])
        """
        X = np.array(self.X if X is None else X, np.float64)
        params, Z = self._scoring(X)
        params = GMMParams(*(jnp.asarray(a, jnp.float64) for a in params))
        shift = 0.0 if self.shift is None else self.shift
        if self.noise_weight is not None and np.isnan(X).any():
            mean = noise_missing.conditional_mean(params, *self._noise_terms(shift), Z)
        else:
            mean = np.asarray(incomplete.conditional_mean(params, jnp.asarray(Z)))
        return np.where(np.isnan(X), mean + shift, X)

    def _scoring(self, X):
        """Parameters and data in the coordinates the fit ran in, in float64."""
        X = np.asarray(X, np.float64)
        if self.centred_means is None:
            return self.params, X
        p = self.params
        f64 = jnp.float64
        centred = GMMParams(
            jnp.asarray(p.weights, f64), jnp.asarray(self.centred_means, f64), jnp.asarray(p.scale_tril, f64)
        )
        return centred, X - self.shift

    def to_inference_data(self, feature_names: Sequence[str] | None = None) -> az.InferenceData:
        """Convert the fit to an ArviZ InferenceData with one chain of one draw, at ``params``.

        Built by the same builder as ``fit_nuts`` and ``fit_svi`` (see
        ``inference.idata.point_inference_data``), so groups, names, dims and coordinates
        are theirs.

        Parameters
        ----------
        feature_names : sequence of str, optional
            Coordinates of the ``feature`` dim; by default the fit's ``feature_names``, else
            ``x0, x1, ...``.

        Returns
        -------
        arviz.InferenceData
            ``posterior`` (``weights``, ``means``, ``covariances``, ``scale_tril``, chain and
            draw of size one), ``log_likelihood`` (``X``, pointwise, dims ``obs``),
            ``observed_data`` (``X``) and ``constant_data`` (the identity standardisation);
            ``attrs`` hold ``inference="em"``, the model and the fit's convergence. With noise,
            as the Bayesian fits: ``posterior["noise_weight"]``, ``attrs`` ``noise``,
            ``noise_volume``, ``noise_lower`` and ``noise_upper``, and the noise term in
            ``log_likelihood``, so that ``membership_probabilities`` and the predictive
            functions see the noise.
        """
        if feature_names is None and self.feature_names is not None:
            feature_names = list(self.feature_names)
        attrs = {
            "inference": "em",
            "n_components": int(np.shape(self.params.weights)[-1]),
            "covariance_type": self.covariance_type,
            "log_likelihood": float(self.log_likelihood),
            "converged": int(self.converged),
            "n_iter": int(self.n_iter),
        }
        noise = None
        if self.noise_weight is not None:
            noise = (self.noise_weight, self.noise_volume, self.noise_lower, self.noise_upper)
        return point_inference_data(
            self.params, np.asarray(self.X), feature_names=feature_names, attrs=attrs, noise=noise
        )
