"""NUTS fits: layout of the InferenceData, parameter recovery, diagnostics on real data."""

import warnings

import arviz as az
import jax
import numpy as np
import pytest
from compile_helpers import CompileTimes

from bayesgmm import DiagnosticsWarning, densities, fit_nuts, load_dataset, relabel
from bayesgmm.params import GMMParams
from bayesgmm.posterior.draws import params_from_idata
from bayesgmm.priors import Priors

SMALL = dict(num_warmup=300, num_samples=300, num_chains=2)


def simulate(params: GMMParams, n_obs, seed):
    X, labels = densities.sample(params, jax.random.PRNGKey(seed), n_obs)
    return np.asarray(X), np.asarray(labels)


def true_params(covariance_type):
    """Three well separated 2-D components with the structure of ``covariance_type``."""
    means = np.array([[-4.0, 0.0], [0.0, 5.0], [5.0, -1.0]])
    weights = np.array([0.3, 0.45, 0.25])
    cov = {
        "full": np.array([[[1.0, 0.6], [0.6, 1.5]], [[0.5, -0.2], [-0.2, 0.8]], [[2.0, 0.0], [0.0, 0.4]]]),
        "tied": np.tile(np.array([[1.0, 0.5], [0.5, 1.2]]), (3, 1, 1)),
        "diag": np.array([np.diag([1.0, 0.3]), np.diag([0.6, 1.5]), np.diag([2.0, 0.8])]),
        "spherical": np.array([np.eye(2) * s for s in (0.5, 1.0, 2.0)]),
    }[covariance_type]
    return GMMParams.from_covariances(weights, means, cov)


def assert_recovers(idata, truth: GMMParams, n_sd=4.0):
    """Each posterior mean lies within ``n_sd`` posterior sds of the truth.

    With ~20 parameters at 4 sd the false-failure rate is about 1e-3 per fit.
    """
    post = relabel(idata, method="ecr").posterior
    # Match the relabelled components to the true ones by their means.
    order = np.argsort(post["means"].mean(("chain", "draw")).values[:, 0])
    true_order = np.argsort(np.asarray(truth.means)[:, 0])
    truth = truth.permute(true_order[np.argsort(order)])
    for name, true in (
        ("weights", truth.weights),
        ("means", truth.means),
        ("covariances", truth.covariances),
    ):
        mean = post[name].mean(("chain", "draw")).values
        sd = post[name].std(("chain", "draw")).values
        z = np.abs(mean - np.asarray(true)) / np.where(sd > 0, sd, np.inf)
        assert np.all(z < n_sd), (name, mean, np.asarray(true), z.max())


def test_inference_data_layout():
    X, _ = simulate(true_params("diag"), 120, seed=1)
    idata = fit_nuts(X, 3, "diag", seed=2, prior_draws=50, posterior_predictive=True, **SMALL)
    assert set(idata.groups()) >= {
        "posterior", "sample_stats", "log_likelihood", "observed_data", "constant_data",
        "prior", "prior_predictive", "posterior_predictive",
    }  # fmt: skip
    post = idata.posterior
    assert post["weights"].dims == ("chain", "draw", "component")
    assert post["means"].dims == ("chain", "draw", "component", "feature")
    assert post["covariances"].dims == ("chain", "draw", "component", "feature", "feature_col")
    assert post.sizes["chain"] == 2 and post.sizes["draw"] == 300
    assert {"diverging", "tree_depth", "energy"} <= set(idata.sample_stats)
    assert idata.log_likelihood["X"].dims == ("chain", "draw", "obs")
    assert idata.posterior_predictive["X"].shape == (2, 300, 120, 2)
    assert idata.prior["means"].shape == (1, 50, 3, 2)
    np.testing.assert_allclose(post["weights"].sum("component"), 1.0, rtol=1e-10)
    # The pointwise log-likelihood is in the user's units: recompute it from the stored draws.
    params = params_from_idata(idata)
    one = jax.tree_util.tree_map(lambda a: a[1, 7], params)
    np.testing.assert_allclose(idata.log_likelihood["X"][1, 7], densities.log_prob(one, X), rtol=1e-10)
    # az.loo runs on it without complaint about shapes.
    assert np.isfinite(az.loo(idata).elpd_loo)


@pytest.mark.parametrize("covariance_type", ["full", "tied", "diag", "spherical"])
def test_recovery_2d(covariance_type):
    truth = true_params(covariance_type)
    X, _ = simulate(truth, 600, seed=3)
    # Shift and scale far from the standard scale: results must come back in these units.
    X = X * np.array([10.0, 0.1]) + np.array([1000.0, -5.0])
    scale = np.array([10.0, 0.1])
    truth = GMMParams(
        truth.weights, truth.means * scale + np.array([1000.0, -5.0]), truth.scale_tril * scale[:, None]
    )
    idata = fit_nuts(X, 3, covariance_type, seed=4, **SMALL)
    assert int(idata.sample_stats["diverging"].sum()) == 0
    assert_recovers(idata, truth)


@pytest.mark.parametrize("covariance_type", ["full", "spherical"])
def test_recovery_1d(covariance_type):
    truth = GMMParams.from_covariances(
        np.array([0.4, 0.6]), np.array([[-3.0], [2.0]]), np.array([[[0.5]], [[1.2]]])
    )
    X, _ = simulate(truth, 500, seed=5)
    idata = fit_nuts(X[:, 0], 2, covariance_type, seed=6, **SMALL)  # 1-D input
    assert idata.posterior.sizes["feature"] == 1
    assert_recovers(idata, truth)


@pytest.fixture(scope="module")
def faithful_fit():
    X, _ = load_dataset("faithful")
    # A healthy fit is quiet: any diagnostics warning fails every test that uses it.
    with warnings.catch_warnings():
        warnings.simplefilter("error", DiagnosticsWarning)
        return relabel(fit_nuts(X, 2, seed=0))


def test_old_faithful_diagnostics(faithful_fit):
    """2 components on Old Faithful: converged chains, no divergences, means in minutes."""
    idata = faithful_fit
    summ = az.summary(idata, var_names=["weights", "means", "covariances"])
    assert summ["r_hat"].max() < 1.01
    assert summ["ess_bulk"].min() > 400 and summ["ess_tail"].min() > 400
    assert int(idata.sample_stats["diverging"].sum()) == 0
    means = idata.posterior["means"].mean(("chain", "draw")).values
    means = means[np.argsort(means[:, 0])]
    # Published two-component fits (e.g. mclust VVV): (2.04, 54.5) and (4.29, 80.0).
    np.testing.assert_allclose(means, [[2.04, 54.5], [4.29, 80.0]], rtol=0.02)


def test_float32_fit_agrees_with_float64_in_mcse(faithful_fit):
    """A float32 fit is float32 throughout and agrees with float64 within 4 combined MCSEs."""
    X, _ = load_dataset("faithful")
    single = relabel(fit_nuts(X, 2, seed=1, dtype=np.float32, **SMALL))
    assert single.posterior["means"].dtype == np.float32
    assert single.log_likelihood["X"].dtype == np.float32
    order = [
        np.argsort(r.posterior["means"].mean(("chain", "draw")).values[:, 0]) for r in (single, faithful_fit)
    ]
    for name in ("weights", "means"):
        m32, m64 = (
            r.posterior[name].mean(("chain", "draw")).values[o]
            for r, o in zip((single, faithful_fit), order, strict=True)
        )
        se32, se64 = (
            az.mcse(r, var_names=[name])[name].values[o]
            for r, o in zip((single, faithful_fit), order, strict=True)
        )
        z = np.abs(m32 - m64) / np.sqrt(se32**2 + se64**2)
        assert np.all(z < 4), (name, z.max())


@pytest.mark.slow
@pytest.mark.parametrize("covariance_type", ["full", "diag"])
def test_two_long_runs_agree_in_mcse(covariance_type):
    """Posterior means of two independent runs differ by less than 4 combined MCSEs."""
    X, _ = simulate(true_params(covariance_type), 300, seed=7)
    runs = [relabel(fit_nuts(X, 3, covariance_type, seed=s), method="ecr") for s in (10, 11)]
    for name in ("weights", "means"):
        m = [r.posterior[name].mean(("chain", "draw")).values for r in runs]
        se = [az.mcse(r, var_names=[name])[name].values for r in runs]
        order = [np.argsort(r.posterior["means"].mean(("chain", "draw")).values[:, 0]) for r in runs]
        diff = m[0][order[0]] - m[1][order[1]]
        z = np.abs(diff) / np.sqrt(se[0][order[0]] ** 2 + se[1][order[1]] ** 2)
        assert np.all(z < 4), (name, z.max())


@pytest.mark.parametrize(
    "X, k, match",
    [
        (np.zeros((5, 2, 2)), 2, "2-D"),
        (np.array([[1.0, np.nan], [2.0, 3.0], [0.0, 1.0]]), 2, "contains NaN in 1 row.*marginalize"),
        (np.array([[1.0, np.inf], [2.0, 3.0], [0.0, 1.0]]), 2, "NaN or infinity"),
        (np.ones((3, 2)), 4, "at least as many observations"),
        (np.empty((0, 2)), 1, "empty"),
        (np.array([["a", "b"], ["c", "d"]]), 1, "numeric"),
    ],
)
def test_unfittable_input_raises(X, k, match):
    with pytest.raises(ValueError, match=match):
        fit_nuts(X, k, num_warmup=10, num_samples=10, num_chains=1)


@pytest.mark.parametrize("kwargs, match", [(dict(n_components=0), "positive integer"),
                                           (dict(covariance_type="banana"), "covariance_type")])  # fmt: skip
def test_bad_settings_raise(kwargs, match):
    args = dict(X=np.random.default_rng(0).normal(size=(20, 2)), n_components=2) | kwargs
    with pytest.raises(ValueError, match=match):
        fit_nuts(**args, num_warmup=10, num_samples=10, num_chains=1)


def test_float32_standardises_before_casting():
    # 1e7 + N(0, 1) cast to float32 first keeps only a handful of distinct values (spacing 1).
    rng = np.random.default_rng(5)
    X = 1e7 + rng.normal(size=(200, 1))
    idata = fit_nuts(X, 1, seed=0, dtype=np.float32, num_warmup=200, num_samples=200, num_chains=1)
    sd = float(np.sqrt(idata.posterior["covariances"].mean()))
    # The posterior of the sd given 200 draws is about 1 +- 0.05.
    assert sd == pytest.approx(np.std(X), rel=0.05)


def _tiny_model(y=None):
    import numpyro
    import numpyro.distributions as dist

    loc = numpyro.sample("loc", dist.Normal(0.0, 1.0))
    numpyro.sample("y", dist.Normal(loc, 1.0), obs=y)


@pytest.mark.parametrize("n_chains", [3, 4])
def test_chains_over_devices_run_each_chain_as_numpyro_does(n_chains):
    from numpyro.infer import MCMC, NUTS

    from bayesgmm.inference.chains import ChainsOverDevices

    y = np.random.default_rng(0).normal(1.0, 1.0, 20)

    def draws(chain_method):
        mcmc = MCMC(NUTS(_tiny_model), num_warmup=30, num_samples=20, num_chains=n_chains,
                    chain_method=chain_method, progress_bar=False)  # fmt: skip
        mcmc.run(jax.random.PRNGKey(3), y=y)
        return np.asarray(mcmc.get_samples(group_by_chain=True)["loc"])

    expected = draws("sequential")
    for devices in (jax.local_devices()[:1], jax.local_devices()[:2]):
        np.testing.assert_allclose(draws(ChainsOverDevices(n_chains, devices)), expected, rtol=1e-9)


def test_refits_reuse_the_sampler_and_match_a_fresh_one():
    from bayesgmm.inference.nuts import SAMPLERS

    X, _ = load_dataset("faithful")
    X2 = X + np.random.default_rng(1).normal(0, 0.1, X.shape)
    kw = dict(num_warmup=50, num_samples=50, num_chains=3, progress_bar=False)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # too few draws for clean diagnostics
        SAMPLERS.clear()
        with CompileTimes() as first:
            fit_nuts(X, 2, seed=0, **kw)
        with CompileTimes() as again:
            refit = fit_nuts(X2, 2, seed=1, **kw)
        assert len(SAMPLERS) == 1  # new data and seed: the same compiled sampler
        assert first.seconds  # the listener hears compilations
        assert again.seconds == []  # a refit of the same shape compiles nothing
        tight = Priors(mean_scale=0.01)  # every mean pinned to the data's mean
        with CompileTimes() as new_priors:
            pinned = fit_nuts(X2, 2, seed=1, priors=tight, **kw)
        assert new_priors.seconds == [] and len(SAMPLERS) == 1
        SAMPLERS.clear()
        fresh_pinned = fit_nuts(X2, 2, seed=1, priors=tight, **kw)
    np.testing.assert_array_equal(pinned.posterior["means"].values, fresh_pinned.posterior["means"].values)
    spread = np.abs(pinned.posterior["means"].mean(("chain", "draw")).values - X2.mean(0))
    assert np.all(spread < 0.05 * X2.std(0))  # the values passed are the ones used
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        SAMPLERS.clear()
        fresh = fit_nuts(X2, 2, seed=1, **kw)
    np.testing.assert_array_equal(refit.posterior["means"].values, fresh.posterior["means"].values)
    np.testing.assert_array_equal(refit.sample_stats["lp"].values, fresh.sample_stats["lp"].values)


def test_one_component_fit_is_the_gaussian_of_the_data():
    X, _ = load_dataset("faithful")
    idata = fit_nuts(X, 1, num_warmup=200, num_samples=200, num_chains=2, seed=0)
    post = idata.posterior
    np.testing.assert_array_equal(post["weights"].values, 1.0)
    # With one component and weak priors the posterior of the mean centres on the sample mean.
    means, sd = (
        post["means"].mean(("chain", "draw")).values[0],
        post["means"].std(("chain", "draw")).values[0],
    )
    assert np.all(np.abs(means - X.mean(axis=0)) < 4 * sd)
    cov = post["covariances"].mean(("chain", "draw")).values[0]
    np.testing.assert_allclose(cov, np.cov(X.T), rtol=0.1)
