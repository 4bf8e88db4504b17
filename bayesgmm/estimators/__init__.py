"""scikit-learn style estimators: thin shells over the fitting functions."""

from bayesgmm.estimators.bayesian_gmm import BayesianGMM

__all__ = ["BayesianGMM"]
