"""scikit-learn style estimators: thin shells over the fitting functions."""

from bayesgmm.estimators.bayesian_gmm import BayesianGMM
from bayesgmm.estimators.gaussian_mixture import GaussianMixture

__all__ = ["BayesianGMM", "GaussianMixture"]
