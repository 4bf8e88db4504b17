"""Conditional-mean imputation for the EM estimator (``GaussianMixture.impute``)."""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np
from numpy.typing import ArrayLike

from bayesgmm import incomplete
from bayesgmm.inference.em import noise_missing


class ConditionalMeanImputer:
    """``impute``: missing values replaced by their conditional mean under the fitted mixture.

    For classes with ``_validate(X)`` (checked, fitted, NaN allowed) and ``_params()``.
    """

    def impute(self, X: ArrayLike) -> np.ndarray:
        """Return a copy of ``X`` with each missing value (NaN) replaced by ``E[x_mis | x_obs]``.

        The mean of the missing values given a row's observed ones: the components'
        conditional means weighted by the row's responsibilities given its observed values
        (with ``noise``, the noise's responsibility weights the centre of its box). A single
        best guess; ``BayesianGMM.impute`` draws imputations instead.

        Parameters
        ----------
        X : array-like, shape (n_obs, n_features)
            Not modified; observed values are returned exactly.

        Returns
        -------
        ndarray, shape (n_obs, n_features)

        Examples
        --------
        >>> from bayesgmm import GaussianMixture, load_dataset
        >>> X, _ = load_dataset("faithful")
        >>> X[:3, 1] = np.nan
        >>> gm = GaussianMixture(2, missing="marginalize", random_state=0).fit(X)
        >>> filled = gm.impute(X)
        >>> bool(np.isnan(filled).any()), bool((filled[3:] == X[3:]).all())
        (False, True)
        """
        X = np.asarray(self._validate(X), np.float64)
        if not np.isnan(X).any():
            return X.copy()
        params = self._params()
        params = type(params)(*(jnp.asarray(a, jnp.float64) for a in params))
        if getattr(self, "noise_weight_", None) is not None:
            terms = (self.noise_weight_, self.noise_volume_, self.noise_lower_, self.noise_upper_)
            mean = noise_missing.conditional_mean(params, *terms, X)
        else:
            mean = np.asarray(incomplete.conditional_mean(params, jnp.asarray(X)))
        return np.where(np.isnan(X), mean, X)
