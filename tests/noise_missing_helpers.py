"""Oracles for tests of a uniform noise component with values missing at random (scipy, row by row)."""

import numpy as np
from scipy.special import softmax
from scipy.stats import multivariate_normal

MEANS = np.array([[0.0, 0.0, 0.0], [6.0, 6.0, 0.0]])
COVS = np.array([np.eye(3), [[1.0, 0.5, 0.0], [0.5, 1.0, 0.0], [0.0, 0.0, 2.0]]])


def oracle_joint(X, weights, means, covs, noise_weight, lower, upper):
    """``log pi_k + log N(x_O | mu_O, S_OO)`` and, last, ``log pi_0 - sum_{j in O} log(range_j)``."""
    out = np.empty((len(X), len(weights) + 1))
    for i, row in enumerate(X):
        o = ~np.isnan(row)
        for k, (w, m, S) in enumerate(zip(weights, means, covs, strict=True)):
            out[i, k] = np.log(w) + multivariate_normal(m[o], S[np.ix_(o, o)]).logpdf(row[o])
        out[i, -1] = np.log(noise_weight) - np.sum(np.log((upper - lower)[o]))
    return out


def oracle_conditional_mean(X, weights, means, covs, noise_weight, lower, upper):
    """``E[x_mis | x_obs]``: Gaussian regressions and the box's centre, weighted by responsibilities."""
    resp = softmax(oracle_joint(X, weights, means, covs, noise_weight, lower, upper), axis=1)
    out = X.copy()
    for i, row in enumerate(X):
        o, m_ = ~np.isnan(row), np.isnan(row)
        if not m_.any():
            continue
        guess = resp[i, -1] * (lower + upper)[m_] / 2
        for k, (mu, S) in enumerate(zip(means, covs, strict=True)):
            reg = S[np.ix_(m_, o)] @ np.linalg.solve(S[np.ix_(o, o)], row[o] - mu[o])
            guess = guess + resp[i, k] * (mu[m_] + reg)
        out[i, m_] = guess
    return out


def params_of(res):
    p = res.params
    return np.asarray(p.weights), np.asarray(p.means), np.asarray(p.covariances), res.noise_weight


def simulate(n_obs, missing_share, outlier_share, seed):
    """Two clusters plus outliers uniform in [-20, 25]^3 (last), cells missing at random."""
    rng = np.random.default_rng(seed)
    n_out = int(round(outlier_share * n_obs))
    labels = rng.integers(0, 2, n_obs - n_out)
    X = np.vstack(
        [
            np.array([rng.multivariate_normal(MEANS[k], COVS[k]) for k in labels]),
            rng.uniform(-20, 25, size=(n_out, 3)),
        ]
    )
    holes = rng.random(X.shape) < missing_share
    holes[holes.all(axis=1), 0] = False
    return np.where(holes, np.nan, X), n_out
