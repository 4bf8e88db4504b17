"""``GaussianMixture``: a drop-in for scikit-learn's, fitted by the JAX EM in ``inference.em``."""

from __future__ import annotations

import os
import warnings
from dataclasses import replace

import jax
import jax.numpy as jnp
import numpy as np
from numpy.typing import ArrayLike
from sklearn.base import BaseEstimator, DensityMixin
from sklearn.exceptions import ConvergenceWarning
from sklearn.mixture import GaussianMixture as _SkGaussianMixture
from sklearn.utils import check_random_state
from sklearn.utils._param_validation import StrOptions
from sklearn.utils.validation import check_is_fitted

from bayesgmm import incomplete, persistence
from bayesgmm.estimators._fit_data import checked_data, fit_data, fit_dtype, streamed_features
from bayesgmm.estimators.imputation import ConditionalMeanImputer
from bayesgmm.inference.em import criteria, mclust_models, missing, noise, noise_missing, report
from bayesgmm.inference.em import sklearn_shapes as em_shapes
from bayesgmm.inference.em.fit import fit_em
from bayesgmm.inference.em.mstep import EMPrior
from bayesgmm.params import GMMParams


class GaussianMixture(ConditionalMeanImputer, DensityMixin, BaseEstimator):
    """Gaussian mixture fitted by EM, with scikit-learn's parameters, attributes and meaning.

    Parameters are those of :class:`sklearn.mixture.GaussianMixture` (``n_components``,
    ``covariance_type``, ``tol``, ``reg_covar``, ``max_iter``, ``n_init``, ``init_params``,
    ``weights_init``, ``means_init``, ``precisions_init``, ``random_state``, ``warm_start``,
    ``verbose``, ``verbose_interval``), plus

    prior : None, "default", dict or EMPrior
        Conjugate prior for MAP-EM (see :func:`bayesgmm.fit_em`); None is maximum likelihood.
    missing : {"error", "marginalize"}, default "error"
        With ``"marginalize"``, NaN are values missing at random: ``fit`` maximises the
        likelihood of the observed values (see :func:`bayesgmm.fit_em`) and ``predict``,
        ``predict_proba`` and ``score_samples`` take rows with NaN, scored by the exact
        marginal density of their observed coordinates; ``impute`` fills in conditional means.
    noise : {None, "uniform"}, default None; noise_volume : float, optional
        mclust's uniform noise component and its volume (:func:`bayesgmm.fit_em`): ``predict`` gives
        -1 for noise, ``predict_proba`` has the noise last, ``weights_`` sum to ``1 - noise_weight_``.
    chunk_size : int, optional
        Rows per chunk to stream ``X`` in (:func:`bayesgmm.fit_em`); memmaps, callables, Parquet always are.

    Differences: restarts run in one compiled program (so ``random_state`` gives other starts
    than scikit-learn's; restart ``i`` is the same whatever ``n_init`` is), ``fit`` takes
    ``sample_weight``, the error of a collapsed component says what to change, ``icl`` is
    available, and with ``verbose`` the per-iteration lines are printed after the (compiled) run.

    Attributes
    ----------
    weights_ : ndarray, shape (n_components,)
    means_ : ndarray, shape (n_components, n_features)
    covariances_, precisions_, precisions_cholesky_ : ndarray
        Shape (n_components, D, D) for full (and mclust's names, :func:`~bayesgmm.fit_em`, but the
        aliases VII, VVI, EEE), (D, D) tied, (n_components, D) diag, (n_components,) spherical.
    converged_ : bool
    n_iter_ : int
    lower_bound_ : float
        Mean log-likelihood per sample of the best restart (at the parameters before
        its last M-step, as in scikit-learn).
    lower_bounds_ : list of float
    n_features_in_ : int
    feature_names_in_ : ndarray of str
    noise_weight_, noise_volume_ : float; noise_lower_, noise_upper_ : ndarray (D,) (None without ``noise``)
    em_result_ : EMResult
        The underlying fit (``em_result_.to_inference_data()`` for ArviZ).

    Examples
    --------
    >>> import numpy as np
    >>> X = np.array([[1, 2], [1, 4], [1, 0], [10, 2], [10, 4], [10, 0]])
    >>> gm = GaussianMixture(n_components=2, random_state=0).fit(X)
    >>> sorted(np.round(gm.means_[:, 0]).tolist())
    [1.0, 10.0]
    """

    # scikit-learn's constraints and messages; ``prior`` and the noise's are checked by ``fit_em``.
    _parameter_constraints: dict = {
        **_SkGaussianMixture._parameter_constraints,
        "missing": [StrOptions(set(missing.MISSING))],
        "covariance_type": [StrOptions(set(mclust_models.EM_COVARIANCE_TYPES))],
        **dict.fromkeys(("prior", "noise", "noise_volume", "chunk_size"), "no_validation"),
    }

    def __init__(
        self,
        n_components: int = 1,
        *,
        covariance_type: str = "full",
        tol: float = 1e-3,
        reg_covar: float = 1e-6,
        max_iter: int = 100,
        n_init: int = 1,
        init_params: str = "kmeans",
        weights_init: ArrayLike | None = None,
        means_init: ArrayLike | None = None,
        precisions_init: ArrayLike | None = None,
        random_state: int | np.random.RandomState | None = None,
        warm_start: bool = False,
        verbose: int = 0,
        verbose_interval: int = 10,
        prior: str | dict | EMPrior | None = None,
        missing: str = "error",
        noise: str | None = None,
        noise_volume: float | None = None,
        chunk_size: int | None = None,
    ):
        self.n_components = n_components
        self.covariance_type = covariance_type
        self.tol = tol
        self.reg_covar = reg_covar
        self.max_iter = max_iter
        self.n_init = n_init
        self.init_params = init_params
        self.weights_init = weights_init
        self.means_init = means_init
        self.precisions_init = precisions_init
        self.random_state = random_state
        self.warm_start = warm_start
        self.verbose = verbose
        self.verbose_interval = verbose_interval
        self.prior = prior
        self.missing = missing
        self.noise, self.noise_volume, self.chunk_size = noise, noise_volume, chunk_size

    def fit(self, X: ArrayLike, y: None = None, sample_weight: ArrayLike | None = None) -> GaussianMixture:
        """Estimate the parameters by EM.

        Parameters
        ----------
        X : array-like, shape (n_obs, n_features)
        y : None
            Ignored.
        sample_weight : array-like, shape (n_obs,), optional
            Weights of the observations.

        Returns
        -------
        GaussianMixture
            ``self``, fitted.
        """
        self.fit_predict(X, y, sample_weight=sample_weight)
        return self

    def fit_predict(self, X: ArrayLike, y: None = None, sample_weight: ArrayLike | None = None) -> np.ndarray:
        """Fit, then label ``X`` with a final E-step (consistent with ``fit(X).predict(X)``).

        Parameters
        ----------
        X : array-like, shape (n_obs, n_features)
        y : None
            Ignored.
        sample_weight : array-like, shape (n_obs,), optional
            Weights of the observations.

        Returns
        -------
        ndarray of int, shape (n_obs,)
            The most probable component of each observation.
        """
        self._validate_params()
        X = fit_data(self, X)
        warm = self.warm_start and hasattr(self, "converged_")
        init = (self.weights_, self.means_, self.precisions_) if warm else (
            self.weights_init, self.means_init, self.precisions_init
        )  # fmt: skip
        with warnings.catch_warnings():
            # scikit-learn's own message is issued below instead.
            warnings.filterwarnings("ignore", message="EM did not converge", category=ConvergenceWarning)
            res = fit_em(
                X, self.n_components, self.covariance_type,
                n_init=1 if warm else self.n_init, init_params=self.init_params,
                max_iter=self.max_iter, tol=self.tol, reg_covar=self.reg_covar,
                sample_weight=sample_weight, prior=self.prior, seed=check_random_state(self.random_state),
                dtype=fit_dtype(X, self.noise),
                weights_init=init[0], means_init=init[1], precisions_init=init[2],
                initial_lower_bound=self.lower_bound_ if warm else -np.inf, missing=self.missing,
                noise=self.noise, noise_volume=self.noise_volume, chunk_size=self.chunk_size,
            )  # fmt: skip
        self._set_result(res)
        streamed_features(self, X, res)
        if self.verbose:
            report.print_history(self)
        if not self.converged_ and self.max_iter > 0:
            warnings.warn(
                "Best performing initialization did not converge. Try different init parameters, "
                "or increase max_iter, tol, or check for degenerate data.",
                ConvergenceWarning,
                stacklevel=2,
            )
        # The fit's last pass labelled X with the final parameters, as predict(X) would.
        return res.labels.astype(np.int64)

    def _set_result(self, res):
        names = getattr(self, "feature_names_in_", None)
        # Plots and the InferenceData of em_result_ label the features by the columns fitted.
        self.em_result_ = res if names is None else replace(res, feature_names=tuple(map(str, names)))
        for name, value in em_shapes.fitted_attributes(res, self.covariance_type).items():
            setattr(self, name, value)

    def save(self, path: str | os.PathLike) -> None:
        """Write the fitted model to one netCDF file; :func:`bayesgmm.load` reads it back.

        The fitted arrays go in the ``constant_data`` group, the parameters and feature names
        in the file's attributes (see :mod:`bayesgmm.persistence`); ``em_result_`` is not saved.

        Parameters
        ----------
        path : str or path-like
            Overwritten if it exists.

        Examples
        --------
        >>> import os, tempfile
        >>> from bayesgmm import load
        >>> X = np.array([[1, 2], [1, 4], [1, 0], [10, 2], [10, 4], [10, 0]])
        >>> gm = GaussianMixture(n_components=2, random_state=0).fit(X)
        >>> path = os.path.join(tempfile.mkdtemp(), "gm.nc")
        >>> gm.save(path)
        >>> np.array_equal(load(path).predict_proba(X), gm.predict_proba(X))
        True
        """
        check_is_fitted(self)
        persistence.save_model(self, persistence.gaussian_mixture_data(self), path)

    def _set_fitted(self, idata):
        self.__dict__.update(persistence.gaussian_mixture_attributes(idata))

    def _params(self) -> GMMParams:
        """Return the current attributes as GMMParams (so edits to the attributes are honoured)."""
        check_is_fitted(self)
        return em_shapes.params_from_sklearn(
            self.weights_, self.means_, self.precisions_cholesky_, self.covariance_type
        )

    def _validate(self, X):
        check_is_fitted(self)
        return checked_data(self, X, reset=False)

    def _is_noise_fit(self) -> bool:
        return getattr(self, "noise_weight_", None) is not None

    def _responsibilities(self, X):
        if self._is_noise_fit() or np.isnan(X).any():
            return self._special(X, jax.nn.softmax)
        X = jnp.asarray(X, dtype=self.means_.dtype)
        return np.asarray(em_shapes.responsibilities(self._params(), X))

    def _special(self, X, reduce):
        """Apply ``reduce`` over the joint log densities of a noise fit or of rows with NaN."""
        params = self._params()
        if self._is_noise_fit():  # rows with NaN see the box's projection on their observed features
            terms = (self.noise_weight_, self.noise_volume_, self.noise_lower_, self.noise_upper_, X)
            return np.asarray(reduce(noise_missing.joint_log_prob_nan(params, *terms), axis=1))
        return np.asarray(reduce(incomplete.joint_log_prob_nan(params, jnp.asarray(X)), axis=1))

    def score_samples(self, X: ArrayLike) -> np.ndarray:
        """Log density of each observation.

        Parameters
        ----------
        X : array-like, shape (n_obs, n_features)

        Returns
        -------
        ndarray, shape (n_obs,)
        """
        X = self._validate(X)
        if self._is_noise_fit() or np.isnan(X).any():
            return self._special(X, jax.nn.logsumexp)
        return np.asarray(em_shapes.log_prob(self._params(), jnp.asarray(X, dtype=self.means_.dtype)))

    def score(self, X: ArrayLike, y: None = None) -> float:
        """Mean log-likelihood per observation.

        Parameters
        ----------
        X : array-like, shape (n_obs, n_features)
        y : None
            Ignored.

        Returns
        -------
        float
        """
        return float(np.mean(self.score_samples(X)))

    def predict_proba(self, X: ArrayLike) -> np.ndarray:
        """Membership probabilities (responsibilities) of each observation.

        Parameters
        ----------
        X : array-like, shape (n_obs, n_features)

        Returns
        -------
        ndarray, shape (n_obs, n_components), or (n_obs, n_components + 1) with ``noise``
            Each row sums to one; with ``noise`` the last column is the noise's, as mclust's ``z``.
        """
        return self._responsibilities(self._validate(X))

    def predict(self, X: ArrayLike) -> np.ndarray:
        """Label each observation with its most probable component.

        Parameters
        ----------
        X : array-like, shape (n_obs, n_features)

        Returns
        -------
        ndarray of int, shape (n_obs,)
            -1 for rows most probably noise (with ``noise``).
        """
        resp = self.predict_proba(X)
        return noise.labels(resp) if self._is_noise_fit() else np.argmax(resp, axis=1)

    def sample(self, n_samples: int = 1) -> tuple[np.ndarray, np.ndarray]:
        """Draw ``n_samples`` observations from the fitted mixture.

        Parameters
        ----------
        n_samples : int, default 1

        Returns
        -------
        X : ndarray, shape (n_samples, n_features)
            Grouped by component, as scikit-learn returns them.
        labels : ndarray of int, shape (n_samples,)
            With ``noise``: -1 for rows of the noise (uniform in ``[noise_lower_, noise_upper_]``), last.
        """
        check_is_fitted(self)
        if n_samples < 1:
            raise ValueError(
                f"Invalid value for 'n_samples': {n_samples}. The sampling requires at least one sample."
            )
        rng = check_random_state(self.random_state)
        return em_shapes.sample_grouped(self._params(), n_samples, rng, em_shapes.noise_terms(self))

    def _n_parameters(self) -> int:
        extra = criteria.NOISE_PARAMETERS if self._is_noise_fit() else 0
        return criteria.n_parameters(self.n_components, self.means_.shape[1], self.covariance_type) + extra

    def bic(self, X: ArrayLike) -> float:
        """Bayesian information criterion (lower is better), as scikit-learn computes it.

        Parameters
        ----------
        X : array-like, shape (n_obs, n_features)

        Returns
        -------
        float
            ``-2 log L + n_parameters log(n_obs)`` (:func:`bayesgmm.bic`) at the current attributes.
        """
        return criteria.bic_from_log_lik(self.score(X) * X.shape[0], self._n_parameters(), X.shape[0])

    def aic(self, X: ArrayLike) -> float:
        """Akaike information criterion (lower is better), as scikit-learn computes it.

        Parameters
        ----------
        X : array-like, shape (n_obs, n_features)

        Returns
        -------
        float
            ``-2 log L + 2 n_parameters`` (:func:`bayesgmm.aic`) at the current attributes.
        """
        return criteria.aic_from_log_lik(self.score(X) * X.shape[0], self._n_parameters())

    def icl(self, X: ArrayLike) -> float:
        """Integrated completed likelihood as mclust computes it (lower is better).

        Parameters
        ----------
        X : array-like, shape (n_obs, n_features)

        Returns
        -------
        float
            ``bic(X) - 2 sum_i log r_{i, c(i)}`` with ``c(i)`` the most probable component of
            row ``i`` (:func:`bayesgmm.icl`); mclust reports ``-icl``.
        """
        resp = self.predict_proba(X)
        return self.bic(X) + criteria.classification_penalty(resp, np.ones(len(resp)))
