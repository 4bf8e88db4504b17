"""Draws from a mixture with a uniform noise component: its box, ``sample`` and the predictive groups.

Oracles: binomial standard errors for the share of noise rows, scipy's Kolmogorov-Smirnov
test against the uniform law on the box, the Gaussians' mean and covariance within Monte
Carlo error, and scipy's Beta law for the prior's noise weight. Every test runs on a fixed
seed; the bounds are 4 standard errors (a false failure about once in 16,000 per bound).
"""

import arviz as az
import numpy as np
import pytest
from scipy import stats

from bayesgmm import BayesianGMM, GaussianMixture, fit_em, fit_svi, load
from bayesgmm.noise_region import noise_box
from bayesgmm.ppc import add_predictive
from bayesgmm.priors import Priors

TRUE_MEANS = np.array([[0.0, 0.0], [10.0, 0.0], [0.0, 10.0]])
N_SAMPLES = 20000
Z_BOUND = 4.0


def _contaminated(n_per_cluster, n_outliers):
    """Three unit-variance clusters 10 apart plus outliers uniform over [-50, 60]^2 (outliers last)."""
    rng = np.random.default_rng(19)
    clusters = [rng.normal(m, 1.0, size=(n_per_cluster, 2)) for m in TRUE_MEANS]
    return np.vstack([*clusters, rng.uniform(-50, 60, size=(n_outliers, 2))])


@pytest.fixture(scope="module")
def em_data():
    return _contaminated(300, 18)


@pytest.fixture(scope="module")
def bayes_data():
    return _contaminated(100, 6)  # the shapes of tests/test_bayes_noise.py


@pytest.fixture(scope="module")
def noisy_em(em_data):
    return GaussianMixture(3, noise="uniform", n_init=3, random_state=0).fit(em_data)


@pytest.fixture(scope="module")
def svi_idata(bayes_data):
    return fit_svi(
        bayes_data, 3, num_samples=200, seed=0, noise="uniform", posterior_predictive=True, prior_draws=400
    )


@pytest.fixture(scope="module")
def noisy_bayes(bayes_data):
    return BayesianGMM(
        3, inference="svi", num_samples=200, num_chains=1, random_state=0, noise="uniform"
    ).fit(bayes_data)


def _assert_share(flags, p, n_eff=None):
    """The share of ``flags`` is ``p`` within Z_BOUND binomial standard errors."""
    n = flags.size if n_eff is None else n_eff
    se = np.sqrt(p * (1 - p) / n)
    assert abs(flags.mean() - p) < Z_BOUND * se, (flags.mean(), p, se)


def _assert_uniform_in_box(rows, lower, upper):
    assert len(rows) > 50
    assert np.all(rows >= lower) and np.all(rows <= upper)
    for j in range(rows.shape[1]):
        p = stats.kstest(rows[:, j], stats.uniform(lower[j], upper[j] - lower[j]).cdf).pvalue
        assert p > 1e-4, (j, p)


# (b) the box


def test_the_default_box_is_the_data_bounding_box(em_data, noisy_em):
    res = fit_em(em_data, 3, noise="uniform", seed=0)
    np.testing.assert_array_equal(res.noise_lower, em_data.min(axis=0))
    np.testing.assert_array_equal(res.noise_upper, em_data.max(axis=0))
    np.testing.assert_array_equal(noisy_em.noise_lower_, em_data.min(axis=0))
    np.testing.assert_array_equal(noisy_em.noise_upper_, em_data.max(axis=0))
    assert np.prod(res.noise_upper - res.noise_lower) == pytest.approx(res.noise_volume, rel=1e-12)


@pytest.mark.filterwarnings("ignore:EM did not converge", "ignore:.*hold no observation")
@pytest.mark.parametrize("volume", [1e-3, 37.0, 1e6])
def test_a_given_volume_scales_the_box_about_its_centre(em_data, volume):
    res = fit_em(em_data, 3, noise="uniform", noise_volume=volume, seed=0, max_iter=5)
    lower, upper = res.noise_lower, res.noise_upper
    np.testing.assert_allclose(np.prod(upper - lower), volume, rtol=1e-12)
    centre = (em_data.min(axis=0) + em_data.max(axis=0)) / 2
    np.testing.assert_allclose((lower + upper) / 2, centre, rtol=1e-12, atol=1e-12)
    # One factor in every feature: the sides keep the data box's proportions.
    ranges = em_data.max(axis=0) - em_data.min(axis=0)
    np.testing.assert_allclose((upper - lower) / ranges, ((upper - lower) / ranges)[0], rtol=1e-12)


def test_a_flat_data_box_with_a_volume_is_a_cube_about_its_centre():
    X = np.array([[0.0, 1.0], [2.0, 1.0], [1.0, 1.0]])
    lower, upper = noise_box(X, noise_volume=9.0)
    np.testing.assert_allclose(upper - lower, [3.0, 3.0], rtol=1e-12)
    np.testing.assert_allclose((lower + upper) / 2, [1.0, 1.0], rtol=1e-12)


# (a) GaussianMixture.sample


def test_em_sample_draws_noise_rows_uniformly_in_the_box(noisy_em):
    X, labels = noisy_em.sample(N_SAMPLES)
    assert X.shape == (N_SAMPLES, 2) and labels.shape == (N_SAMPLES,)
    assert set(np.unique(labels)) == {-1, 0, 1, 2}
    _assert_share(labels == -1, noisy_em.noise_weight_)
    _assert_uniform_in_box(X[labels == -1], noisy_em.noise_lower_, noisy_em.noise_upper_)


def test_em_sample_gaussian_rows_follow_the_fitted_components(noisy_em):
    X, labels = noisy_em.sample(N_SAMPLES)
    weights = noisy_em.weights_ / (1 - noisy_em.noise_weight_)
    gauss = labels >= 0
    for k in range(3):
        in_k = labels[gauss] == k
        _assert_share(in_k, weights[k])
        rows, mu, cov = X[labels == k], noisy_em.means_[k], noisy_em.covariances_[k]
        n = len(rows)
        # Mean: standard error sqrt(S_jj / n); covariance entry (i, j): sqrt((S_ii S_jj + S_ij^2) / n).
        mean_se = np.sqrt(np.diag(cov) / n)
        assert np.all(np.abs(rows.mean(axis=0) - mu) < Z_BOUND * mean_se)
        cov_se = np.sqrt((np.outer(np.diag(cov), np.diag(cov)) + cov**2) / n)
        assert np.all(np.abs(np.cov(rows, rowvar=False) - cov) < Z_BOUND * cov_se)


def test_em_sample_follows_random_state(noisy_em):
    a, b = noisy_em.sample(50), noisy_em.sample(50)
    np.testing.assert_array_equal(a[0], b[0])
    np.testing.assert_array_equal(a[1], b[1])


# (c) the Bayesian predictive groups


def test_posterior_predictive_draws_noise_rows_with_each_draws_weight(svi_idata):
    pp = svi_idata.posterior_predictive
    assert pp["X"].dims == ("chain", "draw", "obs", "feature")
    assert pp["noise"].dims == ("chain", "draw", "obs")
    weight = svi_idata.posterior["noise_weight"].values  # (chain, draw)
    flags = pp["noise"].values
    # Given the draws, the flags are independent Bernoulli(w_d): the mean's variance is
    # mean(w (1 - w)) / (number of flags).
    se = np.sqrt(np.mean(weight * (1 - weight)) / flags.size)
    assert abs(flags.mean() - weight.mean()) < Z_BOUND * se, (flags.mean(), weight.mean(), se)
    lower, upper = (np.asarray(svi_idata.attrs[k]) for k in ("noise_lower", "noise_upper"))
    X = pp["X"].values
    _assert_uniform_in_box(X[flags], lower, upper)


def test_the_bayesian_box_is_the_data_bounding_box(svi_idata, bayes_data):
    np.testing.assert_array_equal(svi_idata.attrs["noise_lower"], bayes_data.min(axis=0))
    np.testing.assert_array_equal(svi_idata.attrs["noise_upper"], bayes_data.max(axis=0))


def test_the_bayesian_box_with_a_volume_is_scaled_about_the_data_box_centre(bayes_data):
    from bayesgmm.inference.prepare import prepare

    setup = prepare(
        bayes_data, 3, "full", priors=None, weight_prior="dirichlet", feature_names=None, seed=0,
        key_names=("idata",), noise="uniform", noise_volume=37.0,
    )  # fmt: skip
    attrs = setup.base_attrs()
    lower, upper = np.asarray(attrs["noise_lower"]), np.asarray(attrs["noise_upper"])
    assert attrs["noise_volume"] == 37.0
    np.testing.assert_allclose(np.prod(upper - lower), 37.0, rtol=1e-12)
    centre = (bayes_data.min(axis=0) + bayes_data.max(axis=0)) / 2
    np.testing.assert_allclose((lower + upper) / 2, centre, rtol=1e-12, atol=1e-12)


def test_prior_predictive_noise_share_follows_the_beta_prior(svi_idata):
    priors = Priors()
    beta = stats.beta(priors.noise_concentration, 3 * priors.weight_concentration)
    weight = svi_idata.prior["noise_weight"].values
    assert stats.kstest(weight.ravel(), beta.cdf).pvalue > 1e-4
    flags = svi_idata.prior_predictive["noise"].values  # (1, n_draws, n_obs)
    n_draws, n_obs = flags.shape[1:]
    # The share over all rows: Var = Var(w) / n_draws + E[w (1 - w)] / (n_draws n_obs).
    e_w1w = beta.mean() - (beta.var() + beta.mean() ** 2)
    se = np.sqrt(beta.var() / n_draws + e_w1w / (n_draws * n_obs))
    assert abs(flags.mean() - beta.mean()) < Z_BOUND * se, (flags.mean(), beta.mean(), se)
    lower, upper = (np.asarray(svi_idata.attrs[k]) for k in ("noise_lower", "noise_upper"))
    X = svi_idata.prior_predictive["X"].values
    assert np.all(X[flags] >= lower) and np.all(X[flags] <= upper)


def test_add_predictive_draws_from_the_noise(svi_idata):
    idata = add_predictive(svi_idata, seed=3)
    flags = idata.posterior_predictive["noise"].values
    weight = svi_idata.posterior["noise_weight"].values
    se = np.sqrt(np.mean(weight * (1 - weight)) / flags.size)
    assert abs(flags.mean() - weight.mean()) < Z_BOUND * se


def test_bayesian_sample_draws_from_the_noise(noisy_bayes):
    X, labels = noisy_bayes.sample(4000, random_state=1)
    # Each row picks a draw at random: P(noise) is the posterior mean noise weight.
    _assert_share(labels == -1, noisy_bayes.noise_weight_)
    lower, upper = (np.asarray(noisy_bayes.idata_.attrs[k]) for k in ("noise_lower", "noise_upper"))
    assert np.all(X[labels == -1] >= lower) and np.all(X[labels == -1] <= upper)


# (d) save and load


def test_save_load_keeps_the_box_and_sample(noisy_bayes, noisy_em, tmp_path):
    noisy_bayes.save(tmp_path / "b.nc")
    back = load(tmp_path / "b.nc")
    for key in ("noise_lower", "noise_upper"):
        np.testing.assert_array_equal(back.idata_.attrs[key], noisy_bayes.idata_.attrs[key])
    for a, b in zip(back.sample(20, random_state=5), noisy_bayes.sample(20, random_state=5), strict=True):
        np.testing.assert_array_equal(a, b)
    noisy_em.save(tmp_path / "g.nc")
    back = load(tmp_path / "g.nc")
    np.testing.assert_array_equal(back.noise_lower_, noisy_em.noise_lower_)
    np.testing.assert_array_equal(back.noise_upper_, noisy_em.noise_upper_)
    for a, b in zip(back.sample(20), noisy_em.sample(20), strict=True):
        np.testing.assert_array_equal(a, b)


# (e) fits without a stored box


def test_a_bayesian_fit_without_the_box_asks_to_refit(noisy_bayes, svi_idata, tmp_path):
    noisy_bayes.save(tmp_path / "b.nc")
    old = load(tmp_path / "b.nc")
    for key in ("noise_lower", "noise_upper"):
        del old.idata_.attrs[key]
    with pytest.raises(ValueError, match="no stored noise region.*Refit"):
        old.sample(3)
    idata = svi_idata.copy()
    idata.attrs = {k: v for k, v in idata.attrs.items() if k not in ("noise_lower", "noise_upper")}
    with pytest.raises(ValueError, match="no stored noise region.*Refit"):
        add_predictive(idata)


def test_an_em_fit_saved_without_the_box_asks_to_refit(noisy_em, tmp_path):
    noisy_em.save(tmp_path / "g.nc")
    saved = az.from_netcdf(str(tmp_path / "g.nc"))
    constant = saved.constant_data.drop_vars(["noise_lower_", "noise_upper_"])
    az.InferenceData(attrs=dict(saved.attrs), constant_data=constant).to_netcdf(str(tmp_path / "old.nc"))
    old = load(tmp_path / "old.nc")
    assert old.noise_lower_ is None
    np.testing.assert_array_equal(old.predict(np.zeros((2, 2))), noisy_em.predict(np.zeros((2, 2))))
    with pytest.raises(ValueError, match="no stored noise region.*Refit"):
        old.sample(3)
