"""EM with a uniform noise component (``fit_em(noise="uniform")``, mclust's noise model)."""

import json
import os
import tempfile
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy import stats
from scipy.special import logsumexp
from sklearn.exceptions import ConvergenceWarning

from bayesgmm import GaussianMixture, load
from bayesgmm.inference.em.criteria import bic, icl
from bayesgmm.inference.em.fit import fit_em, lower_em

COV_TYPES = ["full", "tied", "diag", "spherical"]
TRUE_MEANS = np.array([[0.0, 0.0], [10.0, 0.0], [0.0, 10.0]])
N_PER_CLUSTER = 300
N_OUTLIERS = 18  # 2% of the 918 rows
DATA = Path(__file__).parent / "data"


@pytest.fixture(scope="module")
def contaminated():
    """Three unit-variance clusters 10 apart plus 2% outliers uniform over [-50, 60]^2 (outliers last)."""
    rng = np.random.default_rng(19)
    clusters = [rng.normal(m, 1.0, size=(N_PER_CLUSTER, 2)) for m in TRUE_MEANS]
    return np.vstack([*clusters, rng.uniform(-50, 60, size=(N_OUTLIERS, 2))])


def _fit(X, covariance_type="full", **kw):
    options = {"noise": "uniform", "n_init": 3, "seed": 0, "tol": 1e-10, "max_iter": 500, **kw}
    return fit_em(X, 3, covariance_type, **options)


def _scipy_log_lik(X, weights, means, covariances, noise_weight, volume, w=None):
    """Independent oracle: sum_i w_i log(sum_k pi_k N(x_i | mu_k, S_k) + pi_0 / V)."""
    cols = [
        np.log(pk) + stats.multivariate_normal(m, c).logpdf(X)
        for pk, m, c in zip(weights, means, covariances, strict=True)
    ]
    cols.append(np.full(len(X), np.log(noise_weight) - np.log(volume)))
    rows = logsumexp(np.stack(cols, axis=1), axis=1)
    return rows, float((np.ones(len(X)) if w is None else w) @ rows)


def _params_of(res):
    return (
        np.asarray(res.params.weights),
        np.asarray(res.params.means),
        np.asarray(res.params.covariances),
        res.noise_weight,
    )


@pytest.mark.parametrize("covariance_type", COV_TYPES)
def test_noise_fit_recovers_the_clusters_that_the_plain_fit_misses(contaminated, covariance_type):
    X = contaminated
    res = _fit(X, covariance_type)
    means = np.asarray(res.params.means)
    # Each fitted mean within 4 standard errors (sd / sqrt(n) per coordinate) of a true mean.
    se = 1.0 / np.sqrt(N_PER_CLUSTER)
    dist = np.abs(means[:, None, :] - TRUE_MEANS[None]).max(axis=-1)
    assert np.sort(dist.min(axis=0)).tolist() == pytest.approx([0, 0, 0], abs=4 * se)
    assert sorted(dist.argmin(axis=0).tolist()) == [0, 1, 2]
    # The noise weight within 4 binomial standard errors of the outliers' share.
    share = N_OUTLIERS / len(X)
    assert res.noise_weight == pytest.approx(share, abs=4 * np.sqrt(share * (1 - share) / len(X)))
    assert float(np.sum(res.params.weights)) + res.noise_weight == pytest.approx(1.0, abs=1e-12)
    # Most outliers are labelled noise (a few may fall inside a cluster), almost no inlier is:
    # an inlier is labelled noise only beyond about 4.5 sd (chi2_2 tail probability ~3e-5).
    labels = res.labels
    assert np.mean(labels[-N_OUTLIERS:] == -1) >= 0.8
    assert np.sum(labels[:-N_OUTLIERS] == -1) <= 2
    # Without noise, the outliers pull at least one mean more than 15 standard errors away.
    plain = fit_em(X, 3, covariance_type, n_init=3, seed=0, tol=1e-10, max_iter=500)
    plain_dist = np.abs(np.asarray(plain.params.means)[:, None, :] - TRUE_MEANS[None]).max(axis=-1)
    assert plain_dist.min(axis=0).max() > 15 * se


@pytest.mark.parametrize("covariance_type", COV_TYPES)
def test_log_likelihood_equals_scipy(contaminated, covariance_type):
    X = contaminated
    res = _fit(X, covariance_type)
    volume = float(np.prod(np.ptp(X, axis=0)))
    assert res.noise_volume == pytest.approx(volume, rel=1e-14)
    weights, means, covariances, noise_weight = _params_of(res)
    rows, total = _scipy_log_lik(X, weights, means, covariances, noise_weight, volume)
    assert res.log_likelihood == pytest.approx(total, rel=1e-10)
    np.testing.assert_allclose(res.log_prob(X), rows, rtol=1e-10)
    # Free parameters for K=3, D=2 (means 6, weights 2, covariances), plus mclust's 2 for the noise.
    n_params = 6 + 2 + {"full": 9, "tied": 3, "diag": 6, "spherical": 3}[covariance_type] + 2
    assert bic(res) == pytest.approx(-2 * total + n_params * np.log(len(X)), rel=1e-10)
    resp = res.responsibilities(X)
    assert resp.shape == (len(X), 4)
    np.testing.assert_allclose(resp.sum(axis=1), 1.0, atol=1e-12)
    np.testing.assert_allclose(resp[:, -1], np.exp(np.log(noise_weight) - np.log(volume) - rows), rtol=1e-9)


def test_given_noise_volume_is_the_noise_density(contaminated):
    res = _fit(contaminated, "diag", noise_volume=5e4)
    assert res.noise_volume == 5e4
    weights, means, covariances, noise_weight = _params_of(res)
    _, total = _scipy_log_lik(contaminated, weights, means, covariances, noise_weight, 5e4)
    assert res.log_likelihood == pytest.approx(total, rel=1e-10)


@pytest.mark.parametrize("covariance_type", ["full", "tied"])
def test_fit_is_a_local_maximum_and_the_lower_bound_never_decreases(contaminated, covariance_type):
    X = contaminated
    res = _fit(X, covariance_type, tol=1e-13, max_iter=2000, init_params="random")
    lbs = res.lower_bounds
    assert len(lbs) > 10
    assert np.all(np.diff(lbs) >= -1e-13 * np.abs(lbs[1:]))
    weights, means, covariances, noise_weight = _params_of(res)
    volume = res.noise_volume
    _, best = _scipy_log_lik(X, weights, means, covariances, noise_weight, volume)
    h = 1e-3
    perturbed = []
    for sign in (-1, 1):
        for k in range(3):
            for j in range(2):
                m = means.copy()
                m[k, j] += sign * h
                perturbed.append((weights, m, covariances, noise_weight))
            c = covariances.copy()
            c[k] *= 1 + sign * h
            if covariance_type == "tied":
                c[:] = c[k]
            perturbed.append((weights, means, c, noise_weight))
            # Move weight between component k and the noise.
            wk = weights.copy()
            wk[k] += sign * h * noise_weight
            perturbed.append((wk, means, covariances, noise_weight - sign * h * noise_weight))
    for p in perturbed:
        assert _scipy_log_lik(X, *p, volume)[1] < best


@pytest.mark.parametrize("covariance_type", COV_TYPES)
def test_sample_weight_equals_repeated_rows(contaminated, covariance_type):
    rng = np.random.default_rng(3)
    X = contaminated[::3]
    w = rng.integers(0, 4, size=len(X)).astype(float)
    start = dict(
        weights_init=np.full(3, 1 / 3), means_init=TRUE_MEANS + 0.5,
        precisions_init={"full": np.tile(np.eye(2), (3, 1, 1)), "tied": np.eye(2), "diag": np.ones((3, 2)),
                         "spherical": np.ones(3)}[covariance_type],
    )  # fmt: skip
    kw = dict(tol=1e-12, max_iter=300, **start)
    weighted = _fit(X, covariance_type, sample_weight=w, **kw)
    repeated = _fit(np.repeat(X, w.astype(int), axis=0), covariance_type, **kw)
    assert weighted.noise_volume == pytest.approx(repeated.noise_volume, rel=1e-14)
    assert weighted.log_likelihood == pytest.approx(repeated.log_likelihood, rel=1e-10)
    assert weighted.noise_weight == pytest.approx(repeated.noise_weight, rel=1e-8)
    for a, b in zip(weighted.params, repeated.params, strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-8, atol=1e-10)


@pytest.mark.parametrize(
    "kw, match",
    [
        (dict(noise="bogus"), "noise must be one of"),
        (dict(noise="uniform", noise_volume=0.0), "positive finite"),
        (dict(noise="uniform", noise_volume=-1.0), "positive finite"),
        (dict(noise="uniform", noise_volume=np.inf), "positive finite"),
        (dict(noise_volume=10.0), "only used with noise='uniform'"),
        (dict(noise="uniform", prior="default"), "not available with noise='uniform'"),
        (dict(noise="uniform", dtype=np.float32), "not available with noise='uniform'"),
    ],
)
def test_bad_input_is_refused_with_a_clear_error(contaminated, kw, match):
    with pytest.raises(ValueError, match=match):
        fit_em(contaminated[:50], 2, **kw)


def test_a_flat_bounding_box_is_refused():
    X = np.column_stack([np.arange(10.0), np.ones(10)])
    with pytest.raises(ValueError, match="pass noise_volume"):
        fit_em(X, 2, "diag", noise="uniform", reg_covar=1e-3)
    with pytest.raises(ValueError, match="noise must be one of"):
        GaussianMixture(2, noise="bogus").fit(X)
    with pytest.raises(ValueError, match="noise='uniform' has its own"):
        lower_em(X, 2, noise="uniform")


def test_estimator_predicts_noise_and_round_trips(contaminated):
    X = contaminated
    gm = GaussianMixture(3, noise="uniform", n_init=3, random_state=0, tol=1e-10, max_iter=500).fit(X)
    res = gm.em_result_
    assert gm.noise_weight_ == res.noise_weight and gm.noise_volume_ == res.noise_volume
    labels = gm.predict(X)
    np.testing.assert_array_equal(labels, res.labels)
    np.testing.assert_array_equal(labels, gm.fit_predict(X))
    assert set(np.unique(labels)) == {-1, 0, 1, 2}
    proba = gm.predict_proba(X)
    np.testing.assert_allclose(proba, res.responsibilities(X), rtol=1e-10, atol=1e-14)
    np.testing.assert_allclose(gm.score_samples(X), res.log_prob(X), rtol=1e-12)
    assert gm.bic(X) == pytest.approx(bic(res), rel=1e-12)
    assert gm.icl(X) == pytest.approx(icl(res), rel=1e-12)
    assert gm.sample(5)[0].shape == (5, 2)  # its draws: tests/test_noise_draws.py
    path = os.path.join(tempfile.mkdtemp(), "noise.nc")
    gm.save(path)
    back = load(path)
    assert back.get_params()["noise"] == "uniform"
    assert (back.noise_weight_, back.noise_volume_) == (gm.noise_weight_, gm.noise_volume_)
    np.testing.assert_array_equal(back.predict_proba(X), proba)
    np.testing.assert_array_equal(back.score_samples(X), gm.score_samples(X))
    np.testing.assert_array_equal(back.predict(X), labels)


# mclust 6.0.0 noise fits of faithful plus 15 outliers, written by tests/data/mclust_noise.R
# (initial noise guess: the added rows; Vinv = 1 / bounding-box volume; tol 1e-12).
MCLUST = json.loads((DATA / "mclust_noise.json").read_text())
MCLUST_MODELS = {"EEE": "tied", "VVV": "full", "VVI": "diag", "VII": "spherical"}


@pytest.mark.parametrize("ref", MCLUST["fits"], ids=lambda r: r["model"])
def test_noise_fit_equals_mclust(ref):
    data = pd.read_csv(DATA / "faithful_outliers.csv")
    X = data[["eruptions", "waiting"]].to_numpy()
    res = fit_em(X, 2, MCLUST_MODELS[ref["model"]], noise="uniform", n_init=5, seed=0, tol=1e-13,
                 max_iter=5000, reg_covar=0.0)  # fmt: skip
    assert 1 / res.noise_volume == pytest.approx(MCLUST["Vinv"], rel=1e-14)
    # mclust stops when the relative change of its log-likelihood is below 1e-12, so its
    # log-likelihood is within ~1e-8 of the optimum and its parameters within ~1e-5 relative
    # (measured: 1e-8 and 8e-6 for VII, the slowest to converge).
    assert res.log_likelihood == pytest.approx(ref["loglik"], abs=1e-6)
    assert -bic(res) == pytest.approx(ref["bic"], abs=1e-6)
    assert res.noise_weight == pytest.approx(ref["pro"][-1], abs=1e-5)
    weights, means, covariances, _ = _params_of(res)
    order, ref_order = np.argsort(means[:, 0]), np.argsort(np.asarray(ref["means"])[:, 0])
    np.testing.assert_allclose(weights[order], np.asarray(ref["pro"][:-1])[ref_order], atol=1e-5)
    np.testing.assert_allclose(means[order], np.asarray(ref["means"])[ref_order], rtol=1e-5)
    ref_cov = np.asarray(ref["covariances"])[ref_order]
    np.testing.assert_allclose(covariances[order], ref_cov, rtol=1e-4, atol=1e-6)
    assert int(np.sum(res.labels == -1)) == ref["n_noise"]


def test_weights_init_below_one_leaves_the_rest_to_the_noise(contaminated):
    # max_iter=0 scores the start: the given parameters, and the noise weight 1 - sum(weights).
    X = contaminated
    weights = np.array([0.3, 0.3, 0.3])
    res = fit_em(X, 3, "full", noise="uniform", max_iter=0, weights_init=weights, means_init=TRUE_MEANS,
                 precisions_init=np.tile(np.eye(2), (3, 1, 1)))  # fmt: skip
    assert res.noise_weight == pytest.approx(0.1, rel=1e-12)
    _, total = _scipy_log_lik(X, weights, TRUE_MEANS, np.tile(np.eye(2), (3, 1, 1)), 0.1, res.noise_volume)
    assert res.log_likelihood == pytest.approx(total, rel=1e-10)


def test_warm_start_continues_a_noise_fit(contaminated):
    X = contaminated
    kw = dict(noise="uniform", random_state=0, tol=1e-10)
    gm = GaussianMixture(3, warm_start=True, max_iter=5, **kw)
    with pytest.warns(ConvergenceWarning):
        gm.fit(X)
    for _ in range(60):
        if gm.converged_:
            break
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            gm.fit(X)
    cold = GaussianMixture(3, max_iter=500, **kw).fit(X)
    assert gm.converged_
    assert gm.noise_weight_ == pytest.approx(cold.noise_weight_, rel=1e-6)
    assert gm.score(X) == pytest.approx(cold.score(X), rel=1e-9)


def test_estimator_fits_float32_data_with_noise_in_float64(contaminated):
    X32 = contaminated.astype(np.float32)
    gm = GaussianMixture(3, noise="uniform", n_init=3, random_state=0, tol=1e-10, max_iter=500).fit(X32)
    res = fit_em(X32.astype(np.float64), 3, noise="uniform", n_init=3, seed=0, tol=1e-10, max_iter=500)
    assert gm.score(X32) * len(X32) == pytest.approx(res.log_likelihood, rel=1e-10)


def test_a_noise_fit_imputes_nothing_in_complete_data(contaminated):
    """Rows with NaN are scored by the box's projection (tests/test_em_noise_missing.py)."""
    X = contaminated
    res = fit_em(X, 3, noise="uniform", seed=0)
    np.testing.assert_array_equal(res.impute(), X)  # the fit's own data have no NaN
