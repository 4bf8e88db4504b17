"""float32 EM keeps float64's answer where the moment expansion would cancel."""

import numpy as np
import pytest

from bayesgmm.inference.em.fit import bic, fit_em, icl

COV_TYPES = ["full", "tied", "diag", "spherical"]


def _far_apart(separation, seed=0):
    # Two clusters `separation` standard deviations apart, each with its own shape.
    rng = np.random.default_rng(seed)
    a = rng.normal(size=(400, 2)) @ np.array([[1.0, 0.5], [0.0, 0.7]])
    b = rng.normal(size=(400, 2)) * [0.5, 2.0] + [separation, -separation]
    return np.vstack([a, b])


def _sorted(res):
    order = np.argsort(np.asarray(res.params.means)[:, 0])
    cov = np.asarray(res.params.covariances, np.float64)
    return np.asarray(res.params.means, np.float64)[order], cov[order]


@pytest.mark.parametrize("separation", [1000.0, 3000.0])
@pytest.mark.parametrize("covariance_type", COV_TYPES)
def test_float32_far_separated_clusters_agree_with_float64(separation, covariance_type):
    X = _far_apart(separation)
    kw = dict(seed=0, max_iter=300, reg_covar=0.0)
    r64 = fit_em(X, 2, covariance_type, tol=1e-10, **kw)
    r32 = fit_em(X, 2, covariance_type, tol=1e-6, dtype=np.float32, **kw)
    assert r32.converged
    m64, c64 = _sorted(r64)
    m32, c32 = _sorted(r32)
    scale = np.max(np.abs(c64), axis=(1, 2), keepdims=True)
    assert np.max(np.abs(c32 - c64) / scale) < 1e-4
    np.testing.assert_allclose(m32, m64, rtol=1e-6, atol=1e-4)
    assert r32.log_likelihood == pytest.approx(r64.log_likelihood, rel=1e-5)


@pytest.mark.parametrize("covariance_type", COV_TYPES)
def test_float32_data_far_from_origin_centred_before_cast(covariance_type):
    # 1e7 + N(0, 1) cast to float32 first keeps only a few distinct values (spacing 1).
    rng = np.random.default_rng(1)
    X = 1e7 + rng.normal(size=(300, 2)) * [1.0, 0.3]
    r64 = fit_em(X, 1, covariance_type, seed=0)
    r32 = fit_em(X, 1, covariance_type, seed=0, dtype=np.float32)
    c64 = np.asarray(r64.params.covariances, np.float64)
    c32 = np.asarray(r32.params.covariances, np.float64)
    np.testing.assert_allclose(c32, c64, rtol=1e-4, atol=1e-4 * np.abs(c64).max())
    assert r32.log_likelihood == pytest.approx(r64.log_likelihood, rel=1e-5)
    # The criteria score the fit where it ran, not at means rounded to float32's spacing of 1.
    assert bic(r32) == pytest.approx(bic(r64), rel=1e-5)
    assert icl(r32) == pytest.approx(icl(r64), rel=1e-5)
