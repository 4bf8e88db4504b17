"""The BayesianGMM estimator."""

import warnings

import jax
import numpy as np
import pandas as pd
import pytest
from jax.scipy.special import logsumexp
from sklearn.exceptions import NotFittedError
from sklearn.metrics import adjusted_rand_score
from sklearn.mixture import GaussianMixture as SkGaussianMixture

from bayesgmm import BayesianGMM, densities
from bayesgmm.params import GMMParams
from bayesgmm.posterior.draws import params_from_idata


@pytest.fixture(scope="module")
def fitted():
    truth = GMMParams.from_covariances(
        np.array([0.5, 0.5]), np.array([[-3.0, 0.0], [3.0, 1.0]]), np.array([np.eye(2) * 0.5, np.eye(2)])
    )
    X, labels = densities.sample(truth, jax.random.PRNGKey(0), 200)
    frame = pd.DataFrame(np.asarray(X), columns=["a", "b"])
    model = BayesianGMM(2, "diag", num_warmup=200, num_samples=200, num_chains=2, random_state=1).fit(frame)
    return model, frame, np.asarray(labels)


def test_attributes(fitted):
    model, _, _ = fitted
    assert (
        model.weights_.shape == (2,)
        and model.means_.shape == (2, 2)
        and model.covariances_.shape == (2, 2, 2)
    )
    np.testing.assert_allclose(model.weights_.sum(), 1.0)
    assert list(model.feature_names_in_) == ["a", "b"] and model.n_features_in_ == 2
    assert list(model.idata_.posterior["means"].coords["feature"].values) == ["a", "b"]
    assert "relabel_permutation" in model.idata_.posterior
    np.testing.assert_allclose(model.means_, model.idata_.posterior["means"].mean(("chain", "draw")).values)


def test_predict_proba_and_predict(fitted):
    model, frame, labels = fitted
    X = frame.to_numpy()
    proba = model.predict_proba(frame)
    assert proba.shape == (200, 2)
    np.testing.assert_allclose(proba.sum(axis=1), 1.0, rtol=1e-10)
    assert adjusted_rand_score(labels, model.predict(frame)) > 0.95
    # Posterior-averaged, not plug-in: equal to the mean of each draw's responsibilities.
    params = params_from_idata(model.idata_)
    one = jax.tree_util.tree_map(lambda a: a[0, 0], params)
    assert not np.allclose(proba, densities.responsibilities(one, X))


def test_svi_inference(fitted):
    # The same data fitted by SVI: fit_svi takes the estimator's settings (num_samples guide
    # draws, num_chains restarts of which the best is kept) and agrees with the NUTS fit.
    nuts, frame, labels = fitted
    X = frame.to_numpy()
    model = BayesianGMM(
        2,
        "diag",
        inference="svi",
        num_samples=200,
        num_chains=2,
        random_state=1,
        inference_kwargs=dict(guide="meanfield"),
    ).fit(X)
    assert model.idata_.posterior.sizes["chain"] == 1 and model.idata_.posterior.sizes["draw"] == 200
    assert adjusted_rand_score(labels, model.predict(X)) > 0.95
    # Components in the same order (by their first coordinate) for both fits.
    o_svi, o_nuts = np.argsort(model.means_[:, 0]), np.argsort(nuts.means_[:, 0])
    sd = nuts.idata_.posterior["means"].std(("chain", "draw")).values[o_nuts]
    assert np.all(np.abs(model.means_[o_svi] - nuts.means_[o_nuts]) < 0.5 * sd)


def test_score_samples_is_log_posterior_predictive(fitted):
    model, frame, _ = fitted
    X = frame.to_numpy()
    params = params_from_idata(model.idata_)
    flat = jax.tree_util.tree_map(lambda a: a.reshape((-1, *a.shape[2:])), params)
    ll = jax.vmap(lambda p: densities.log_prob(p, X[:5]))(flat)
    expected = logsumexp(ll, axis=0) - np.log(ll.shape[0])
    np.testing.assert_allclose(model.score_samples(frame[:5]), expected, rtol=1e-10)
    assert model.score(frame) == pytest.approx(model.score_samples(frame).mean())


def test_sample(fitted):
    model, frame, _ = fitted
    X = frame.to_numpy()
    Xs, labels = model.sample(5000, random_state=3)
    assert Xs.shape == (5000, 2) and labels.shape == (5000,)
    assert set(np.unique(labels)) <= {0, 1}
    # The predictive mean is near the data mean (5 predictive standard errors).
    assert np.all(
        np.abs(Xs.mean(0) - X.mean(0)) < 5 * X.std(0) / np.sqrt(200) + 5 * Xs.std(0) / np.sqrt(5000)
    )


def test_wrong_input_is_rejected(fitted):
    model, frame, _ = fitted
    with pytest.raises(ValueError, match="features"):
        model.predict(np.zeros((3, 5)))
    with pytest.raises(ValueError, match="NaN"):
        model.score_samples(pd.DataFrame([[np.nan, 1.0]], columns=["a", "b"]))
    with pytest.raises(ValueError, match="inference"):
        BayesianGMM(inference="gibbs").fit(np.zeros((10, 2)))


@pytest.fixture(scope="module")
def sklearn_fitted(fitted):
    """scikit-learn's GaussianMixture on the same frame: the oracle for input checks."""
    return SkGaussianMixture(2, random_state=0).fit(fitted[1])


METHODS = ["predict", "predict_proba", "score_samples", "score"]


@pytest.mark.parametrize("method", METHODS)
def test_features_checked_as_sklearn(fitted, sklearn_fitted, method):
    model, frame, _ = fitted
    for bad in [frame[["b", "a"]], frame.rename(columns={"b": "c"}), frame[["a"]]]:
        with pytest.raises(ValueError) as theirs:
            getattr(sklearn_fitted, method)(bad)
        with pytest.raises(ValueError) as ours:
            getattr(model, method)(bad)
        assert str(ours.value) == str(theirs.value).replace("GaussianMixture", "BayesianGMM")
    # A bare array for a model fitted on named columns: scikit-learn's warning.
    with pytest.warns(UserWarning, match="X does not have valid feature names, but BayesianGMM"):
        getattr(model, method)(frame.to_numpy())
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)
        getattr(model, method)(frame)


def test_one_dimensional_X_refused_as_sklearn(fitted, sklearn_fitted):
    model, frame, _ = fitted
    x = frame["a"].to_numpy()
    with pytest.raises(ValueError) as theirs:
        SkGaussianMixture(2).fit(x)
    with pytest.raises(ValueError, match="Expected 2D array, got 1D array instead") as ours:
        BayesianGMM(2).fit(x)
    assert str(ours.value) == str(theirs.value)
    with pytest.raises(ValueError) as theirs:
        sklearn_fitted.predict(x)
    with pytest.raises(ValueError, match="Reshape your data") as ours:
        model.predict(x)
    assert str(ours.value) == str(theirs.value)


@pytest.mark.parametrize("method", [*METHODS, "sample"])
def test_unfitted_raises_not_fitted_error(method):
    X = np.zeros((4, 2))
    args = () if method == "sample" else (X,)
    with pytest.raises(NotFittedError) as theirs:
        getattr(SkGaussianMixture(2), method)(*args)
    with pytest.raises(NotFittedError) as ours:
        getattr(BayesianGMM(2), method)(*args)
    assert str(ours.value) == str(theirs.value).replace("GaussianMixture", "BayesianGMM")
