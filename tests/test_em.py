"""EM path: scikit-learn and mclust oracles, hand-computed MAP updates, properties."""

import warnings

import jax
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sklearn.mixture import GaussianMixture as SkGaussianMixture

import bayesgmm
from bayesgmm import load_dataset
from bayesgmm.inference.em import kernel as em
from bayesgmm.inference.em.fit import aic, bic, fit_em, icl, n_parameters
from bayesgmm.inference.em.sklearn_shapes import log_prob as _log_prob
from bayesgmm.inference.em.sklearn_shapes import responsibilities as _resp
from bayesgmm.params import GMMParams

COV_TYPES = ["full", "tied", "diag", "spherical"]


def blobs(n_obs=300, seed=0):
    rng = np.random.default_rng(seed)
    centers = np.array([[0.0, 0.0, 0.0], [4.0, 1.0, -2.0], [-3.0, 5.0, 2.0]])
    labels = rng.integers(3, size=n_obs)
    X = centers[labels] + rng.normal(size=(n_obs, 3)) * np.array([1.0, 0.5, 1.5]) + 10.0
    return X, centers + 10.0


def shared_init(centers, covariance_type):
    n_components, n_features = centers.shape
    prec = {
        "full": np.stack([np.eye(n_features) * (k + 1) for k in range(n_components)]),
        "tied": np.eye(n_features) * 0.5,
        "diag": np.ones((n_components, n_features)) * 0.7,
        "spherical": np.ones(n_components) * 0.7,
    }[covariance_type]
    return {
        "weights_init": np.full(n_components, 1.0 / n_components),
        "means_init": centers + 0.5,
        "precisions_init": prec,
    }


@pytest.mark.parametrize("covariance_type", COV_TYPES)
def test_matches_sklearn_from_same_start(covariance_type):
    X, centers = blobs()
    init = shared_init(centers, covariance_type)
    kw = dict(covariance_type=covariance_type, tol=1e-12, max_iter=2000, reg_covar=1e-6, **init)
    sk = SkGaussianMixture(3, **kw).fit(X)
    ours = bayesgmm.GaussianMixture(3, **kw).fit(X)
    ll_sk, ll_ours = sk.score(X) * len(X), ours.score(X) * len(X)
    assert abs(ll_ours - ll_sk) <= 1e-6 * abs(ll_sk)
    assert abs(ours.lower_bound_ - sk.lower_bound_) <= 1e-6 * abs(sk.lower_bound_)
    for name in ["weights_", "means_", "covariances_", "precisions_", "precisions_cholesky_"]:
        a, b = getattr(ours, name), getattr(sk, name)
        assert a.shape == b.shape, name
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-7, err_msg=name)
    assert ours.converged_ and sk.converged_
    assert abs(ours.n_iter_ - sk.n_iter_) <= 2


@pytest.mark.parametrize("covariance_type", COV_TYPES)
def test_first_iterations_equal_sklearn(covariance_type):
    """The lower-bound history itself, iteration by iteration, not only the optimum."""
    X, centers = blobs(seed=1)
    kw = dict(covariance_type=covariance_type, tol=0.0, max_iter=5, **shared_init(centers, covariance_type))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        sk = SkGaussianMixture(3, **kw).fit(X)
        ours = bayesgmm.GaussianMixture(3, **kw).fit(X)
    np.testing.assert_allclose(ours.lower_bounds_, sk.lower_bounds_, rtol=1e-10)


def test_mclust_faithful_eee_3():
    # mclust (EEE, G=3) reports loglik -1126.326 and BIC -2314.316 (its sign). mclust stops on a
    # relative change of 1e-5 (~0.011 here), so it sits up to ~0.02 below the exact optimum.
    X, _ = load_dataset("faithful")
    res = fit_em(X, 3, "tied", n_init=10, seed=0, tol=1e-9, max_iter=1000, reg_covar=0.0)
    assert res.log_likelihood == pytest.approx(-1126.326, abs=0.02)
    assert res.log_likelihood >= -1126.326 - 1e-3
    assert bic(res) == pytest.approx(2314.316, abs=0.05)
    assert n_parameters(3, 2, "tied") == 11


def test_mclust_iris_vvv_2():
    X, species = load_dataset("iris")
    res = fit_em(X, 2, "full", n_init=5, seed=0, tol=1e-9, max_iter=1000, reg_covar=0.0)
    assert res.log_likelihood == pytest.approx(-214.3547, abs=1e-3)
    assert -bic(res) == pytest.approx(-574.0178, abs=1e-3)  # mclust's sign
    gm = bayesgmm.GaussianMixture(2, n_init=5, random_state=0, tol=1e-9, max_iter=1000, reg_covar=0.0).fit(X)
    assert -gm.bic(X) == pytest.approx(-574.0178, abs=1e-3)
    # One component is exactly setosa.
    labels = gm.predict(X)
    assert len(set(labels[species == species[0]])) == 1


def test_integer_sample_weight_equals_repeated_rows():
    X, centers = blobs(n_obs=120, seed=2)
    counts = np.random.default_rng(0).integers(0, 4, size=len(X))
    init = shared_init(centers, "full")
    a = fit_em(X, 3, sample_weight=counts, tol=1e-10, max_iter=500, **init)
    b = fit_em(np.repeat(X, counts, axis=0), 3, tol=1e-10, max_iter=500, **init)
    assert a.n_iter == b.n_iter
    assert a.log_likelihood == pytest.approx(b.log_likelihood, rel=1e-10)
    for x, y in zip(a.params, b.params, strict=True):
        np.testing.assert_allclose(x, y, rtol=1e-8, atol=1e-10)


@pytest.mark.parametrize("covariance_type", ["full", "diag", "spherical"])
def test_map_em_one_component_closed_form(covariance_type):
    """With one component the responsibilities are 1, so one M-step is the posterior mode."""
    rng = np.random.default_rng(3)
    X = rng.normal(size=(40, 2)) @ np.array([[2.0, 0.0], [0.7, 0.5]]) + 3.0
    n, d = X.shape
    mu0, kappa, nu, psi = np.array([1.0, -1.0]), 2.0, 5.0, np.array([[1.5, 0.3], [0.3, 0.8]])
    prior = {"mean": mu0, "mean_precision": kappa, "dof": nu, "scale": psi}
    res = fit_em(X, 1, covariance_type, prior=prior, reg_covar=0.0, tol=1e-12, seed=0)
    xbar = X.mean(0)
    W = (X - xbar).T @ (X - xbar)
    dd = np.outer(xbar - mu0, xbar - mu0) * kappa * n / (kappa + n)
    mean = (n * xbar + kappa * mu0) / (n + kappa)
    if covariance_type == "full":
        cov = (psi + dd + W) / (nu + n + d + 2)
    elif covariance_type == "diag":
        cov = np.diag((np.diag(psi) + np.diag(dd) + np.diag(W)) / (nu + n + 3))
    else:
        cov = np.eye(d) * (np.trace(psi) / d + np.trace(dd) + np.trace(W)) / (nu + (n + 1) * d + 2)
    np.testing.assert_allclose(res.params.means[0], mean, rtol=1e-10)
    np.testing.assert_allclose(res.params.covariances[0], cov, rtol=1e-10, atol=1e-14)
    # Iteration 1 starts from the k-means init, 2 at the mode, 3 confirms the fixed point.
    assert res.n_iter == 3


def test_map_em_objective_increases_and_prior_shrinks():
    X, _ = load_dataset("faithful")
    res = fit_em(X, 3, "full", prior="default", seed=0, tol=1e-10, max_iter=500)
    assert np.all(np.diff(res.lower_bounds) >= -1e-10)
    ml = fit_em(X, 3, "full", seed=0, tol=1e-10, max_iter=500)
    assert res.log_likelihood <= ml.log_likelihood + 1e-6


def test_empty_component_warns_and_without_reg_covar_raises():
    X, centers = blobs(n_obs=60)
    means = centers.copy()
    means[2] = 1e4  # no observation is anywhere near: its effective count underflows to 0
    init = dict(means_init=means, weights_init=np.full(3, 1 / 3), precisions_init=np.stack([np.eye(3)] * 3))
    # As in scikit-learn, reg_covar keeps the empty component's covariance positive definite.
    with pytest.warns(UserWarning, match=r"1 of 3 components hold no observation \(components \[2\]"):
        res = fit_em(X, 3, **init)
    sk = SkGaussianMixture(3, **init).fit(X)
    np.testing.assert_allclose(res.params.weights, sk.weights_, atol=1e-12)
    with pytest.raises(ValueError, match="reg_covar.*fewer components"):
        fit_em(X, 3, reg_covar=0.0, **init)


def test_singular_covariance_raises_clear_error():
    X = np.vstack([np.random.default_rng(0).normal(size=(20, 2)), np.tile([[50.0, 50.0]], (5, 1))])
    init = dict(means_init=np.array([[0.0, 0.0], [50.0, 50.0]]), weights_init=np.array([0.8, 0.2]))
    with pytest.raises(ValueError, match="positive definite"):
        fit_em(X, 2, reg_covar=0.0, precisions_init=np.stack([np.eye(2)] * 2), **init)
    res = fit_em(X, 2, reg_covar=1e-3, precisions_init=np.stack([np.eye(2)] * 2), **init)
    assert np.isfinite(res.log_likelihood)


def test_float32_agrees_with_float64():
    # Stated tolerance: relative 1e-5 on the log-likelihood, 1e-4 on the parameters.
    X, _ = load_dataset("faithful")
    init = dict(
        weights_init=[0.35, 0.65], means_init=[[2.0, 55.0], [4.3, 80.0]], precisions_init=[np.eye(2)] * 2
    )
    r64 = fit_em(X, 2, tol=1e-8, **init)
    r32 = fit_em(X, 2, tol=1e-4, dtype=np.float32, **init)
    assert r32.params.means.dtype == np.float32
    assert r32.log_likelihood == pytest.approx(r64.log_likelihood, rel=1e-5)
    np.testing.assert_allclose(r32.params.means, r64.params.means, rtol=1e-4)
    np.testing.assert_allclose(r32.params.covariances, r64.params.covariances, rtol=1e-3)


def test_result_to_inference_data():
    X, _ = load_dataset("faithful")
    res = fit_em(X, 2, seed=0)
    idata = res.to_inference_data()
    post = idata.posterior
    assert post["weights"].dims == ("chain", "draw", "component")
    assert post["means"].dims == ("chain", "draw", "component", "feature")
    assert post["covariances"].dims == ("chain", "draw", "component", "feature", "feature_col")
    assert idata.log_likelihood["X"].dims == ("chain", "draw", "obs")
    assert idata.observed_data["X"].dims == ("obs", "feature")
    assert float(idata.log_likelihood["X"].sum()) == pytest.approx(res.log_likelihood)


def test_criteria():
    X, _ = load_dataset("faithful")
    res = fit_em(X, 2, seed=0)
    gm = bayesgmm.GaussianMixture(2, random_state=0).fit(X)
    p = n_parameters(2, 2, "full")
    assert bic(res) == pytest.approx(-2 * res.log_likelihood + p * np.log(len(X)))
    assert aic(res) == pytest.approx(-2 * res.log_likelihood + 2 * p)
    assert icl(res) >= bic(res)
    assert gm.icl(X) == pytest.approx(icl(res), rel=1e-6)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"n_components": 0},
        {"covariance_type": "banana"},
        {"init_params": "nope"},
        {"sample_weight": -np.ones(272)},
        {"sample_weight": np.ones(3)},
        {"tol": -1.0},
    ],
)
def test_bad_arguments_raise(kwargs):
    X, _ = load_dataset("faithful")
    args = {"n_components": 2, **kwargs}
    with pytest.raises(ValueError):
        fit_em(X, **args)


def test_bad_data_raises():
    with pytest.raises(ValueError, match="NaN"):
        fit_em(np.array([[1.0, np.nan], [2.0, 3.0], [0.0, 1.0]]), 1)
    with pytest.raises(ValueError, match="n_components"):
        fit_em(np.ones((2, 2)), 3)


INIT_PARAMS = ["kmeans", "k-means++", "random", "random_from_data"]


@pytest.mark.parametrize("init_params", INIT_PARAMS)
def test_more_restarts_never_fit_worse(init_params):
    # Restart i is the same run whatever n_init is, so the best lower bound of more restarts
    # is at least as high, to the last bit. Data where several restarts reach one optimum:
    # computed in one batch, they differed in the last bits with the batch size.
    X = np.random.RandomState(0).randn(50, 5)
    bounds = [fit_em(X, 2, init_params=init_params, seed=0, n_init=n).lower_bound for n in (1, 2, 5)]
    assert bounds == sorted(bounds)


@pytest.mark.parametrize("init_params", INIT_PARAMS)
def test_starts_are_sklearns(init_params):
    # The same random_state starts where scikit-learn starts (max_iter=0 keeps the start).
    X, _ = blobs(n_obs=200, seed=4)
    for seed in (0, 1):
        kw = dict(n_components=3, init_params=init_params, random_state=seed, max_iter=0)
        ours, sk = bayesgmm.GaussianMixture(**kw).fit(X), SkGaussianMixture(**kw).fit(X)
        # scikit-learn divides the start's weights by n_obs, not by their sum (which is
        # n_components for the one-row starts), so only their proportions can agree.
        np.testing.assert_allclose(ours.weights_, sk.weights_ / sk.weights_.sum(), rtol=1e-9)
        np.testing.assert_allclose(ours.means_, sk.means_, rtol=1e-9)
        # One-row starts have covariance reg_covar * I: the moment expansion's absolute error,
        # eps * spread**2 a term (em.py), is then most of it; allow 16 such terms.
        spread = np.abs(X - X.mean(axis=0)).max()
        atol = 16 * np.finfo(float).eps * spread**2
        np.testing.assert_allclose(ours.covariances_, sk.covariances_, rtol=1e-9, atol=atol)


# --- properties ------------------------------------------------------------------------


def random_params(rng, n_components, n_features, covariance_type):
    w = rng.dirichlet(np.ones(n_components))
    means = rng.normal(size=(n_components, n_features)) * 2
    A = rng.normal(size=(n_components, n_features, n_features))
    cov = A @ A.transpose(0, 2, 1) + np.eye(n_features)
    if covariance_type == "tied":
        cov = np.broadcast_to(cov[0], cov.shape)
    elif covariance_type in ("diag", "spherical"):
        var = np.diagonal(cov, axis1=1, axis2=2)
        if covariance_type == "spherical":
            var = var.mean(1, keepdims=True) * np.ones((1, n_features))
        cov = np.stack([np.diag(v) for v in var])
    return GMMParams.from_covariances(w, means, cov)


_e_step = jax.jit(
    lambda params, X, covariance_type: em.e_step(params, em.features(X, covariance_type), covariance_type),
    static_argnums=2,
)


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 2**31 - 1), covariance_type=st.sampled_from(COV_TYPES))
def test_e_step_matches_densities_and_sums_to_one(seed, covariance_type):
    n_components = 3  # fixed so that the jitted E-step compiles once per covariance type
    rng = np.random.default_rng(seed)
    params = random_params(rng, n_components, 3, covariance_type)
    X = rng.normal(size=(16, 3)) * 3
    log_norm, resp = _e_step(params, X, covariance_type)
    np.testing.assert_allclose(resp.sum(1), 1.0, rtol=1e-12)
    np.testing.assert_allclose(log_norm, _log_prob(params, X), rtol=1e-9, atol=1e-9)
    np.testing.assert_allclose(resp, _resp(params, X), atol=1e-9)
    perm = rng.permutation(n_components)
    log_norm_p, resp_p = _e_step(params.permute(perm), X, covariance_type)
    np.testing.assert_allclose(log_norm_p, log_norm, rtol=1e-12)
    np.testing.assert_allclose(resp_p, resp[:, perm], atol=1e-12)


@settings(max_examples=10, deadline=None)
@given(seed=st.integers(0, 2**31 - 1))
def test_fit_invariant_to_row_order(seed):
    X, centers = blobs(n_obs=60, seed=5)
    init = shared_init(centers, "full")
    order = np.random.default_rng(seed).permutation(len(X))
    a = fit_em(X, 3, tol=1e-10, max_iter=200, **init)
    b = fit_em(X[order], 3, tol=1e-10, max_iter=200, **init)
    assert a.log_likelihood == pytest.approx(b.log_likelihood, rel=1e-10)
    np.testing.assert_allclose(a.params.means, b.params.means, rtol=1e-8)


def test_result_to_inference_data_is_the_builders():
    """EM's InferenceData has the groups, variables, dims and coordinates of NUTS and SVI's builder."""
    from bayesgmm.inference.idata import build_inference_data

    X, _ = load_dataset("faithful")
    res = fit_em(X, 2, seed=0)
    idata = res.to_inference_data()
    draws = GMMParams(*(np.asarray(a)[None, None] for a in res.params))
    ref = build_inference_data(draws, np.asarray(X), np.zeros(2), np.ones(2), key=jax.random.PRNGKey(0))
    assert set(idata.groups()) == set(ref.groups())
    for group in ref.groups():
        assert set(idata[group].data_vars) == set(ref[group].data_vars)
        for name in ref[group].data_vars:
            assert idata[group][name].dims == ref[group][name].dims
        for coord in ref[group].coords:
            np.testing.assert_array_equal(idata[group][coord].values, ref[group][coord].values)


@pytest.mark.skipif(jax.local_device_count() < 2, reason="needs two JAX devices")
@pytest.mark.parametrize("covariance_type", COV_TYPES)
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_rows_spread_over_devices_fit_as_on_one(covariance_type, dtype, monkeypatch):
    from bayesgmm.inference.em import fit as em_fit
    from bayesgmm.inference.em.shards import default_n_shards

    X, _ = blobs(n_obs=1500, seed=3)
    # One restart: two reaching one optimum in two component orders tie to the last bits.
    kw = dict(n_init=1, max_iter=30, tol=0.0, seed=0, dtype=dtype, block_size=128)
    assert default_n_shards(len(X), 128) == jax.local_device_count()
    spread = fit_em(X, 3, covariance_type, **kw)
    monkeypatch.setattr(em_fit, "default_n_shards", lambda n_obs, block_size: 1)
    single = fit_em(X, 3, covariance_type, **kw)
    rtol = 1e-10 if dtype == np.float64 else 1e-5
    assert spread.n_iter == single.n_iter == 30
    assert spread.log_likelihood == pytest.approx(single.log_likelihood, rel=rtol)
    np.testing.assert_allclose(spread.lower_bounds, single.lower_bounds, rtol=rtol)
    for a, b in zip(spread.params, single.params, strict=True):
        np.testing.assert_allclose(a, b, rtol=100 * rtol, atol=100 * rtol)
    np.testing.assert_array_equal(spread.labels, single.labels)
    # The labels of the fit are those predict gives with its parameters.
    np.testing.assert_array_equal(spread.labels, np.argmax(_resp(spread.params, X), axis=1))


def test_restarts_tied_up_to_rounding_keep_the_first():
    # Two restarts at one optimum differ by rounding that depends on how rows were summed.
    from types import SimpleNamespace

    from bayesgmm.inference.em.report import pick_best

    ok = np.array([True, True, True])
    tied = SimpleNamespace(ok=ok, lower_bound=np.array([-3.7, -3.7 + 2e-15, -3.8]))
    assert pick_best(tied, max_iter=10) == 0
    better = SimpleNamespace(ok=ok, lower_bound=np.array([-3.7, -3.7 + 1e-9, -3.8]))
    assert pick_best(better, max_iter=10) == 1
