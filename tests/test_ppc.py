"""Predictive checks: replicate layout, ArviZ PPC plots, p-values, catching misspecification.

The fast tests use posteriors with known draws: the exact posterior of one normal
(flat prior: sigma^2 ~ (n-1) s^2 / chi2(n-1), mu ~ N(xbar, sigma^2/n)) and, for two
well-separated groups, the same per group with Dirichlet weights. The slow test repeats
the misspecification check with NUTS fits.
"""

import arviz as az
import jax
import matplotlib.pyplot as plt
import numpy as np
import pytest
from posterior_helpers import make_idata, sample_data, synthetic_draws, true_params

import bayesgmm
from bayesgmm.inference.idata import build_inference_data
from bayesgmm.params import GMMParams
from bayesgmm.ppc import add_predictive, count_modes, default_statistics, ppc_pvalues, replicated_statistics

N_OBS = 200
DRAWS = (2, 250)


def bimodal_data(seed=1):
    rng = np.random.default_rng(seed)
    return np.concatenate([rng.normal(-3, 1, N_OBS // 2), rng.normal(3, 1, N_OBS // 2)])[:, None]


def _normal_posterior(x, rng):
    """Exact posterior draws of (mu, sigma) of one normal under the flat prior."""
    n = len(x)
    sig2 = (n - 1) * x.var(ddof=1) / rng.chisquare(n - 1, size=DRAWS)
    return rng.normal(x.mean(), np.sqrt(sig2 / n)), np.sqrt(sig2)


def one_component_idata(X, seed=2):
    mu, sd = _normal_posterior(X[:, 0], np.random.default_rng(seed))
    return _idata(GMMParams(np.ones((*DRAWS, 1)), mu[..., None, None], sd[..., None, None, None]), X)


def two_component_idata(X, seed=3):
    rng = np.random.default_rng(seed)
    groups = [X[:, 0] < 0, X[:, 0] >= 0]
    post = [_normal_posterior(X[g, 0], rng) for g in groups]
    weights = rng.dirichlet([g.sum() + 1 for g in groups], size=DRAWS)
    means = np.stack([m for m, _ in post], axis=-1)[..., None]
    sds = np.stack([s for _, s in post], axis=-1)[..., None, None]
    return _idata(GMMParams(weights, means, sds), X)


def _idata(draws, X):
    return build_inference_data(
        draws, X, np.zeros(1), np.ones(1), key=jax.random.PRNGKey(0), feature_names=["v"]
    )


@pytest.fixture(scope="module")
def bimodal_fits():
    X = bimodal_data()
    return {
        1: add_predictive(one_component_idata(X), seed=4),
        2: add_predictive(two_component_idata(X), seed=4),
    }


@pytest.fixture(scope="module")
def idata_2d():
    params = true_params(n_features=2, n_components=3)
    X = sample_data(params, 120, seed=0)
    return make_idata(synthetic_draws(params, 2, 30, seed=1), X)


# --- count_modes -------------------------------------------------------------------------


def test_count_modes_finds_one_two_three_modes():
    rng = np.random.default_rng(0)
    one = rng.normal(0, 1, 300)
    two = np.concatenate([rng.normal(-4, 1, 150), rng.normal(4, 1, 150)])
    three = np.concatenate([rng.normal(m, 1, 150) for m in (-8, 0, 8)])
    assert [int(count_modes(x)) for x in (one, two, three)] == [1, 2, 3]


def test_count_modes_is_vectorised_over_leading_axes():
    rng = np.random.default_rng(1)
    x = rng.normal(size=(3, 4, 100))
    counts = count_modes(x, bandwidth=0.5)
    assert counts.shape == (3, 4)
    loop = [int(count_modes(x[i, j], bandwidth=0.5)) for i in range(3) for j in range(4)]
    assert counts.reshape(-1).tolist() == loop


def test_count_modes_rarely_invents_modes_in_normal_samples():
    # The statistic's false-alarm rate under a normal model: what keeps the K=1 check honest.
    x = np.random.default_rng(2).normal(size=(400, 200))
    assert np.mean(count_modes(x) > 1) < 0.02


# --- add_predictive ----------------------------------------------------------------------


def test_add_predictive_layout_and_new_object(idata_2d):
    out = add_predictive(idata_2d, seed=0)
    assert "posterior_predictive" not in idata_2d.groups()
    assert "X_0" not in idata_2d.observed_data
    pp = out.posterior_predictive
    assert pp["X"].dims == ("chain", "draw", "obs", "feature")
    assert pp["X"].shape == (2, 30, 120, 2)
    assert list(pp["feature"].values) == list(idata_2d.observed_data["feature"].values)
    for j in range(2):
        np.testing.assert_array_equal(pp[f"X_{j}"].values, pp["X"].values[..., j])
        np.testing.assert_array_equal(
            out.observed_data[f"X_{j}"].values, idata_2d.observed_data["X"].values[:, j]
        )
    # Same seed, same replicates; another seed, others.
    np.testing.assert_array_equal(add_predictive(idata_2d, seed=0).posterior_predictive["X"], pp["X"])
    assert not np.allclose(add_predictive(idata_2d, seed=1).posterior_predictive["X"], pp["X"])


def test_add_predictive_replicates_follow_the_draws(idata_2d):
    # Replicates of well-separated components sit near the component means.
    pp = add_predictive(idata_2d, seed=0).posterior_predictive["X"].values
    means = idata_2d.posterior["means"].values
    d = np.linalg.norm(pp[..., :, None, :] - means[:, :, None, :, :], axis=-1).min(axis=-1)
    assert np.quantile(d, 0.99) < 4.0


def test_add_predictive_prior():
    X = bimodal_data()
    draws = one_component_idata(X).posterior
    prior = GMMParams(draws["weights"].values[:1], draws["means"].values[:1], draws["scale_tril"].values[:1])
    idata = build_inference_data(
        GMMParams(*(draws[v].values for v in ("weights", "means", "scale_tril"))),
        X, np.zeros(1), np.ones(1), key=jax.random.PRNGKey(0), prior_std_params=prior,
    )  # fmt: skip
    out = add_predictive(idata, kind="prior", seed=3)
    assert out.prior_predictive["X"].shape == (1, 250, N_OBS, 1)
    assert "X_0" in out.prior_predictive
    assert ppc_pvalues(out, group="prior_predictive").shape[0] > 5


def test_add_predictive_errors(idata_2d):
    with pytest.raises(ValueError, match="prior_draws"):
        add_predictive(idata_2d, kind="prior")
    with pytest.raises(ValueError, match="kind"):
        add_predictive(idata_2d, kind="posterior_predictive")
    with pytest.raises(ValueError, match="add_predictive"):
        ppc_pvalues(idata_2d)


# --- ArviZ's plots -----------------------------------------------------------------------


def test_arviz_plot_ppc_and_loo_pit_on_1d(bimodal_fits):
    idata = bimodal_fits[2]
    ax = az.plot_ppc(idata, var_names=["X"], num_pp_samples=50)
    assert np.ravel(ax)[0].get_lines()
    ax = az.plot_loo_pit(idata, y="X_0")
    assert ax.get_lines()
    assert az.loo(idata).elpd_loo < 0  # the extra observed variables leave LOO alone
    plt.close("all")


def test_arviz_plots_on_2d(idata_2d):
    idata = add_predictive(idata_2d, seed=0)
    axes = az.plot_ppc(idata, var_names=["X_0", "X_1"], num_pp_samples=20)
    assert np.size(axes) == 2
    for j in range(2):
        assert az.plot_loo_pit(idata, y=f"X_{j}").get_lines()
    plt.close("all")


# --- p-values ----------------------------------------------------------------------------


def test_pvalues_match_a_loop_over_draws(idata_2d):
    idata = add_predictive(idata_2d, seed=0)
    stats = {
        "max0": lambda X: X[..., 0].max(axis=-1),
        "corr": default_statistics(np.zeros((3, 2)))["corr[x0,x1]"],
    }
    table = ppc_pvalues(idata, stats)
    reps = idata.posterior_predictive["X"].values.reshape(-1, 120, 2)
    X = idata.observed_data["X"].values
    for name, fn in stats.items():
        t_rep = np.array([float(fn(r)) for r in reps])
        t_obs = float(fn(X))
        assert table.loc[name, "observed"] == pytest.approx(t_obs)
        assert table.loc[name, "p_value"] == pytest.approx(np.mean(t_rep >= t_obs))
        two = min(1.0, 2 * min(np.mean(t_rep >= t_obs), np.mean(t_rep <= t_obs)))
        assert table.loc[name, "p_two_sided"] == pytest.approx(two)


def test_default_statistics_names(idata_2d):
    table = ppc_pvalues(add_predictive(idata_2d, seed=0))
    names = list(table.index)
    for stat in ("mean", "sd", "skewness", "kurtosis", "q0.05", "q0.95", "min", "max", "n_modes"):
        assert f"{stat}[x0]" in names and f"{stat}[x1]" in names
    assert "corr[x0,x1]" in names
    assert list(table.columns) == ["observed", "replicated_mean", "replicated_sd", "p_value", "p_two_sided"]
    assert table["p_value"].between(0, 1).all() and table["p_two_sided"].between(0, 1).all()


def test_replicated_statistics_keep_chain_and_draw(bimodal_fits):
    reps = replicated_statistics(bimodal_fits[2], {"mean": lambda X: X[..., 0].mean(-1)})
    assert reps["mean"].dims == ("chain", "draw") and reps["mean"].shape == DRAWS
    assert reps["mean"].attrs["observed"] == pytest.approx(bimodal_data()[:, 0].mean())


def test_ppc_catches_one_component_on_bimodal_data(bimodal_fits):
    """K=1 on clearly bimodal data: extreme p-values for the mode count and the kurtosis.

    K=2 (the model that generated the data): neither is extreme. The thresholds hold
    with wide margins (K=1: both p = 0 of 500 replicates; K=2: modes p = 1 by ties,
    kurtosis p ~ 0.5), so the false-failure rate of this fixed-seed test is nil.
    """
    bad, good = ppc_pvalues(bimodal_fits[1]), ppc_pvalues(bimodal_fits[2])
    assert bad.loc["n_modes[v]", "observed"] == 2
    assert bad.loc["n_modes[v]", "p_value"] < 0.01
    assert bad.loc["kurtosis[v]", "p_two_sided"] < 0.01
    assert good.loc["n_modes[v]", "p_two_sided"] > 0.05
    assert 0.05 < good.loc["kurtosis[v]", "p_value"] < 0.95


@pytest.mark.slow
def test_ppc_catches_misspecification_with_nuts_fits():
    X = bimodal_data()
    kw = dict(num_warmup=300, num_samples=300, num_chains=2, seed=0)
    bad = ppc_pvalues(add_predictive(bayesgmm.fit_nuts(X, 1, **kw), seed=1))
    good = ppc_pvalues(add_predictive(bayesgmm.fit_nuts(X, 2, **kw), seed=1))
    print(bad.loc[["n_modes[x0]", "kurtosis[x0]"]], good.loc[["n_modes[x0]", "kurtosis[x0]"]], sep="\n")
    # One-sided for the mode count: the misfit of interest is more modes than the model makes.
    # A normal sample shows a spurious second mode at this bandwidth ~0.5% of the time, so the
    # two-sided value (twice that) would sit at the threshold.
    assert bad.loc["n_modes[x0]", "p_value"] < 0.01
    assert bad.loc["kurtosis[x0]", "p_two_sided"] < 0.01
    assert good.loc["n_modes[x0]", "p_two_sided"] > 0.05
    assert 0.05 < good.loc["kurtosis[x0]", "p_value"] < 0.95
