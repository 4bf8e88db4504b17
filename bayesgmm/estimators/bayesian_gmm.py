"""scikit-learn style estimator around the Bayesian fits (NUTS, SVI)."""

from __future__ import annotations

import os
from numbers import Integral, Real
from typing import TYPE_CHECKING

import jax
import numpy as np
from sklearn.base import BaseEstimator, DensityMixin
from sklearn.utils._param_validation import Interval, StrOptions
from sklearn.utils.validation import check_is_fitted, validate_data

from bayesgmm import densities, persistence
from bayesgmm._validation import as_key, check_covariance_type, check_X
from bayesgmm.inference.em.mclust_models import EM_COVARIANCE_TYPES
from bayesgmm.inference.em.missing import MISSING, check_incomplete
from bayesgmm.noise_region import attrs_box, sample_with_noise
from bayesgmm.posterior.draws import params_from_idata
from bayesgmm.posterior.imputation import impute_from_params
from bayesgmm.posterior.noise import (
    has_noise,
    log_noise_draws,
    log_predictive_density_noise,
    mean_noise_responsibilities,
)
from bayesgmm.posterior.predictive import log_predictive_density, mean_responsibilities
from bayesgmm.posterior.relabel import relabel
from bayesgmm.priors import Priors

if TYPE_CHECKING:
    from numpy.typing import ArrayLike

    from bayesgmm._typing import Seed

_INFERENCE = ("nuts", "svi")
_WEIGHT_PRIORS = ("dirichlet", "sparse", "dp")


class BayesianGMM(DensityMixin, BaseEstimator):
    """Bayesian Gaussian mixture fitted by NUTS or variational inference.

    Parameters
    ----------
    n_components : int, default 2
    covariance_type : {"full", "tied", "diag", "spherical", "EII", "EEI"}, default "full"
        Or mclust's ``VVV``, ``EEE``, ``VVI``, ``VII`` for the first four; kept as given
        (``get_params``), while ``idata_.attrs["covariance_type"]`` holds the canonical
        name. mclust's other models raise a ``ValueError`` (use ``GaussianMixture``).
    inference : {"nuts", "svi"}, default "nuts"
    priors : bayesgmm.Priors, optional
        Weakly informative defaults on the standardised scale.
    weight_prior : {"dirichlet", "sparse", "dp"}, default "dirichlet"
        Prior on the weights: a symmetric Dirichlet, a sparse overfitted mixture
        or a truncated Dirichlet process (see ``gmm_model``); with the last two,
        ``n_components`` is an upper bound and ``n_components_posterior(idata_)``
        gives the posterior of the number of occupied components.
    num_warmup, num_samples, num_chains : int
        NUTS settings (``num_samples`` and ``num_chains`` also set the number
        of guide draws and restarts for SVI).
    inference_kwargs : dict, optional
        Further keyword arguments for ``fit_nuts`` or ``fit_svi``.
    random_state : int, numpy Generator or None
    progress_bar : bool, default False
    missing : {"error", "marginalize"}, default "error"
        With ``"marginalize"``, NaN are values missing at random: the likelihood is that of
        each row's observed values (see ``fit_nuts``), ``predict``, ``predict_proba``,
        ``score`` and ``score_samples`` take rows with NaN (given their observed values),
        and ``impute`` draws the missing values, one completed data set per posterior draw.
    noise : {None, "uniform"}, default None; noise_volume : float, optional
        mclust's uniform noise component for scattered outliers, and its hypervolume in the
        units of ``X`` (the data's bounding box by default), as in ``fit_nuts``: ``predict``
        gives -1 for rows most probably noise, ``predict_proba`` has the noise last and
        ``score_samples`` includes the noise term; ``weights_`` sum to ``1 - noise_weight_``.

    Attributes
    ----------
    idata_ : arviz.InferenceData
        The full posterior (relabelled so that components mean the same thing
        in every draw).
    weights_ : ndarray, shape (n_components,)
        Posterior means, in the units of ``X``; so are ``means_`` (n_components,
        n_features) and ``covariances_`` (n_components, n_features, n_features).
    noise_weight_, noise_volume_ : float or None; noise_lower_, noise_upper_ : ndarray (D,) or None
        Posterior mean of the noise weight, the noise's hypervolume and its box (None without ``noise``).
    n_features_in_ : int
    feature_names_in_ : ndarray of str
        Only when ``X`` had column names, all strings. Predicting on other columns, or on
        columns in another order, raises a ``ValueError`` as in scikit-learn.

    Examples
    --------
    >>> from bayesgmm import BayesianGMM, load_dataset
    >>> X, _ = load_dataset("faithful")
    >>> gmm = BayesianGMM(2, num_warmup=300, num_samples=400, num_chains=1, random_state=0).fit(X)
    >>> gmm.means_.round(1)
    array([[ 4.3, 80. ],
           [ 2. , 54.5]])

    With a noise component, gross outliers are labelled -1:

    >>> import numpy as np
    >>> X_out = np.vstack([X, [[0.0, 150.0], [7.0, 10.0]]])
    >>> noisy = BayesianGMM(2, inference="svi", num_samples=100, num_chains=1, random_state=0,
    ...                     noise="uniform").fit(X_out)
    >>> noisy.predict(X_out)[-2:].tolist(), noisy.predict_proba(X_out).shape
    ([-1, -1], (274, 3))
    """

    # Checked by scikit-learn's own validation in ``fit``, with its error messages.
    _parameter_constraints: dict = {
        "n_components": [Interval(Integral, 1, None, closed="left")],
        # Every EM name, so that mclust's EM-only models get check_covariance_type's message.
        "covariance_type": [StrOptions(set(EM_COVARIANCE_TYPES))],
        "inference": [StrOptions(set(_INFERENCE))],
        "priors": [Priors, None],
        "weight_prior": [StrOptions(set(_WEIGHT_PRIORS))],
        "num_warmup": [Interval(Integral, 0, None, closed="left")],
        "num_samples": [Interval(Integral, 1, None, closed="left")],
        "num_chains": [Interval(Integral, 1, None, closed="left")],
        "inference_kwargs": [dict, None],
        "random_state": ["random_state", np.random.Generator, jax.Array],
        "progress_bar": ["boolean"],
        "missing": [StrOptions(set(MISSING))],
        "noise": [StrOptions({"uniform"}), None],
        "noise_volume": [Interval(Real, 0, None, closed="neither"), None],
    }

    def __init__(
        self,
        n_components: int = 2,
        covariance_type: str = "full",
        inference: str = "nuts",
        priors: Priors | None = None,
        weight_prior: str = "dirichlet",
        num_warmup: int = 1000,
        num_samples: int = 1000,
        num_chains: int = 4,
        inference_kwargs: dict | None = None,
        random_state: Seed = None,
        progress_bar: bool = False,
        missing: str = "error",
        noise: str | None = None,
        noise_volume: float | None = None,
    ):
        self.n_components = n_components
        self.covariance_type = covariance_type
        self.inference = inference
        self.priors = priors
        self.weight_prior = weight_prior
        self.num_warmup = num_warmup
        self.num_samples = num_samples
        self.num_chains = num_chains
        self.inference_kwargs = inference_kwargs
        self.random_state = random_state
        self.progress_bar = progress_bar
        self.missing = missing
        self.noise = noise
        self.noise_volume = noise_volume

    def _fit_idata(self, X, feature_names):
        covariance_type = check_covariance_type(self.covariance_type)
        common = dict(
            priors=self.priors,
            weight_prior=self.weight_prior,
            seed=self.random_state,
            progress_bar=self.progress_bar,
            feature_names=feature_names,
            missing=self.missing,
            noise=self.noise,
            noise_volume=self.noise_volume,
            **(self.inference_kwargs or {}),
        )
        if self.inference == "nuts":
            from bayesgmm.inference.nuts import fit_nuts

            return fit_nuts(
                X,
                self.n_components,
                covariance_type,
                num_warmup=self.num_warmup,
                num_samples=self.num_samples,
                num_chains=self.num_chains,
                **common,
            )
        from bayesgmm.inference.svi.fit import fit_svi

        return fit_svi(
            X,
            self.n_components,
            covariance_type,
            num_samples=self.num_samples,
            n_init=self.num_chains,
            **common,
        )

    def fit(self, X: ArrayLike, y: None = None) -> BayesianGMM:
        """Sample the posterior of the mixture for ``X``, shape (n_obs, n_features).

        As in scikit-learn, ``X`` must be 2-D (a single feature is ``X.reshape(-1, 1)``);
        the functions (``fit_nuts``, ``fit_svi``) also take 1-D data.
        """
        self._validate_params()
        # The posterior's feature coordinates are the column names, whatever their type.
        feature_names = [str(c) for c in X.columns] if hasattr(X, "columns") else None
        X = self._validate(X, reset=True)
        self._set_fitted(relabel(self._fit_idata(X, feature_names)))
        return self

    def fit_predict(self, X: ArrayLike, y: None = None) -> np.ndarray:
        """Fit to ``X`` and return the most probable component of each row, shape (n_obs,).

        The same as ``fit(X).predict(X)``: components are those of the relabelled
        posterior (``idata_``; see :func:`bayesgmm.relabel` for their order).

        Examples
        --------
        >>> from bayesgmm import BayesianGMM, load_dataset
        >>> X, _ = load_dataset("faithful")
        >>> gmm = BayesianGMM(2, inference="svi", num_samples=50, num_chains=1, random_state=0)
        >>> labels = gmm.fit_predict(X)
        >>> labels.shape, (labels == gmm.predict(X)).all()
        ((272,), np.True_)
        """
        return self.fit(X).predict(X)

    def _set_fitted(self, idata):
        """Set ``idata_`` and what is read from it: the draws predictions use, posterior means."""
        self.idata_ = idata
        self._params = params_from_idata(idata)
        post = idata.posterior
        self.weights_ = post["weights"].mean(("chain", "draw")).values
        self.means_ = post["means"].mean(("chain", "draw")).values
        self.covariances_ = post["covariances"].mean(("chain", "draw")).values
        noisy = has_noise(idata)
        self._log_noise = log_noise_draws(idata) if noisy else None
        self.noise_weight_ = float(post["noise_weight"].mean()) if noisy else None
        self.noise_volume_ = float(idata.attrs["noise_volume"]) if noisy else None
        box = [idata.attrs.get(f"noise_{end}") if noisy else None for end in ("lower", "upper")]
        self.noise_lower_, self.noise_upper_ = (None if b is None else np.asarray(b, np.float64) for b in box)

    def save(self, path: str | os.PathLike) -> None:
        """Write the fitted model to one netCDF file; :func:`bayesgmm.load` reads it back.

        The file is ``idata_`` (``arviz.from_netcdf`` opens it) with the parameters and
        feature names in its attributes (see :mod:`bayesgmm.persistence`).

        Parameters
        ----------
        path : str or path-like
            Overwritten if it exists.

        Examples
        --------
        >>> import os, tempfile
        >>> import numpy as np
        >>> from bayesgmm import BayesianGMM, load, load_dataset
        >>> X, _ = load_dataset("faithful")
        >>> gmm = BayesianGMM(2, inference="svi", num_samples=50, num_chains=1, random_state=0).fit(X)
        >>> path = os.path.join(tempfile.mkdtemp(), "gmm.nc")
        >>> gmm.save(path)
        >>> np.array_equal(load(path).score_samples(X), gmm.score_samples(X))
        True
        """
        check_is_fitted(self, "idata_")
        persistence.save_model(self, self.idata_, path)

    def _validate(self, X, reset):
        """``X`` as a float array, shape (n_obs, n_features), checked as scikit-learn checks it.

        scikit-learn's ``validate_data`` refuses 1-D input and records (``reset``) or checks
        the number and names of the features; ``check_X`` then says what to do about values
        that are not finite or too few observations.
        """
        X = validate_data(self, X, reset=reset, dtype=np.float64, ensure_all_finite=False)
        if self.missing == "error" or not np.isnan(X).any():
            return check_X(X, self.n_components if reset else None)
        if reset:
            return check_incomplete(X, self.n_components)[0]
        check_X(np.where(np.isnan(X), 0.0, X))  # what check_X says of anything but NaN
        empty = np.flatnonzero(np.isnan(X).all(axis=1))
        if empty.size:
            raise ValueError(
                f"X has {empty.size} row(s) with every value missing (first: {empty[:5].tolist()}); "
                "such a row carries no information: drop it."
            )
        return X

    def _box(self):
        return None if self.noise_lower_ is None else (self.noise_lower_, self.noise_upper_)

    def _check_X(self, X):
        check_is_fitted(self, "idata_")
        return self._validate(X, reset=False)

    def predict_proba(self, X: ArrayLike) -> np.ndarray:
        """Posterior-averaged membership probabilities, shape (n_obs, n_components).

        With ``noise``, shape (n_obs, n_components + 1): the noise's column is last.
        """
        X = self._check_X(X)  # before reading any fitted attribute: NotFittedError first
        if self._log_noise is not None:
            return mean_noise_responsibilities(self._params, self._log_noise, X, noise_box=self._box())
        return mean_responsibilities(self._params, X)

    def predict(self, X: ArrayLike) -> np.ndarray:
        """Most probable component of each observation, shape (n_obs,); -1 for noise."""
        resp = self.predict_proba(X)
        labels = resp.argmax(axis=1)
        if self._log_noise is not None:
            labels = np.where(labels == resp.shape[1] - 1, -1, labels)
        return labels

    def score_samples(self, X: ArrayLike) -> np.ndarray:
        """Log posterior predictive density of each observation, shape (n_obs,).

        With ``noise``, the mixture's density includes the noise term.
        """
        X = self._check_X(X)
        if self._log_noise is not None:
            return log_predictive_density_noise(self._params, self._log_noise, X, noise_box=self._box())
        return log_predictive_density(self._params, X)

    def score(self, X: ArrayLike, y: None = None) -> float:
        """Mean log posterior predictive density per observation."""
        return float(self.score_samples(X).mean())

    def impute(self, X: ArrayLike, n_draws: int | None = None, random_state: Seed = None) -> np.ndarray:
        """Draw the missing values (NaN) of ``X`` once per posterior draw (multiple imputation).

        For each posterior draw, each row's component is drawn given its observed values
        and the draw's parameters, then its missing values from that component's Gaussian
        conditional on the observed ones (:func:`bayesgmm.posterior.imputation.impute_from_params`).
        Needs ``missing="marginalize"``.

        Parameters
        ----------
        X : array-like, shape (n_obs, n_features)
            Not modified; observed values are returned exactly.
        n_draws : int, optional
            Posterior draws used (at random); all by default.
        random_state : int, numpy Generator or JAX key, optional
            The estimator's ``random_state`` by default.

        Returns
        -------
        ndarray, shape (n_draws, n_obs, n_features)
            Averaged over the first axis, an estimate of ``E[x_mis | x_obs, data]``.

        Examples
        --------
        >>> import numpy as np
        >>> from bayesgmm import BayesianGMM, load_dataset
        >>> X, _ = load_dataset("faithful")
        >>> X[:3, 1] = np.nan
        >>> gmm = BayesianGMM(2, inference="svi", num_samples=100, num_chains=1, random_state=0,
        ...                   missing="marginalize").fit(X)
        >>> gmm.impute(X, n_draws=50).shape
        (50, 272, 2)
        """
        X = self._check_X(X)
        seed = as_key(self.random_state if random_state is None else random_state)
        noise = None if self._log_noise is None else (self._log_noise, self.noise_lower_, self.noise_upper_)
        return impute_from_params(self._params, X, n_draws, seed, noise=noise)

    def sample(self, n_samples: int = 1, random_state: Seed = None) -> tuple[np.ndarray, np.ndarray]:
        """Draw from the posterior predictive distribution.

        Each sample comes from a posterior draw picked at random. With ``noise``, it is the
        noise's with that draw's ``noise_weight``, uniform in the noise's box
        (``idata_.attrs["noise_lower"]``, ``["noise_upper"]``), and otherwise drawn from the
        Gaussians with weights ``pi_k / (1 - noise_weight)``.

        Returns
        -------
        X : ndarray, shape (n_samples, n_features)
        labels : ndarray, shape (n_samples,)
            The component each sample came from, in the relabelled labelling; -1 for noise.
        """
        check_is_fitted(self, "idata_")
        box = attrs_box(self.idata_.attrs) if self._log_noise is not None else None
        if n_samples < 1:
            raise ValueError(f"n_samples must be at least 1, got {n_samples}.")
        key_draw, key_x = jax.random.split(
            as_key(self.random_state if random_state is None else random_state)
        )
        flat = jax.tree_util.tree_map(lambda a: a.reshape((-1, *a.shape[2:])), self._params)
        idx = jax.random.randint(key_draw, (n_samples,), 0, flat.weights.shape[0])
        picked = jax.tree_util.tree_map(lambda a: a[idx], flat)
        keys = jax.random.split(key_x, n_samples)
        if box is None:
            X, labels = jax.vmap(lambda p, k: densities.sample(p, k, 1))(picked, keys)
        else:
            noise_weight = self.idata_.posterior["noise_weight"].transpose("chain", "draw").values.reshape(-1)
            picked_weight = noise_weight[np.asarray(idx)]
            X, labels = jax.vmap(lambda p, w, k: sample_with_noise(p, w, *box, k, 1))(
                picked, picked_weight, keys
            )
        return np.asarray(X[:, 0]), np.asarray(labels[:, 0])
