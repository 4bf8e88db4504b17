"""GaussianMixture estimator: scikit-learn's contract and drop-in behaviour."""

import warnings

import numpy as np
import pytest
from sklearn.exceptions import ConvergenceWarning
from sklearn.mixture import GaussianMixture as SkGaussianMixture
from sklearn.utils.estimator_checks import parametrize_with_checks

import bayesgmm
from bayesgmm import GaussianMixture, load_dataset


@parametrize_with_checks([GaussianMixture()])
def test_gaussian_mixture_sklearn_checks(estimator, check):
    check(estimator)


@pytest.fixture(scope="module")
def faithful():
    X, _ = load_dataset("faithful")
    return X


@pytest.mark.parametrize("covariance_type", ["full", "tied", "diag", "spherical"])
def test_gaussian_mixture_attribute_shapes_match_sklearn(faithful, covariance_type):
    ours = GaussianMixture(3, covariance_type=covariance_type, random_state=0).fit(faithful)
    sk = SkGaussianMixture(3, covariance_type=covariance_type, random_state=0).fit(faithful)
    for name in ["weights_", "means_", "covariances_", "precisions_", "precisions_cholesky_"]:
        assert getattr(ours, name).shape == getattr(sk, name).shape, name
    assert ours.n_features_in_ == 2
    assert len(ours.lower_bounds_) == ours.n_iter_
    assert ours.lower_bound_ == ours.lower_bounds_[-1]
    assert ours.predict_proba(faithful).shape == (272, 3)
    np.testing.assert_allclose(ours.predict_proba(faithful).sum(1), 1.0)
    assert ours.aic(faithful) < ours.bic(faithful) <= ours.icl(faithful)


def test_gaussian_mixture_fit_predict_is_predict(faithful):
    gm = GaussianMixture(2, random_state=1, max_iter=3, tol=0.0)
    with pytest.warns(ConvergenceWarning):
        labels = gm.fit_predict(faithful)
    np.testing.assert_array_equal(labels, gm.predict(faithful))


def test_gaussian_mixture_warm_start_continues(faithful):
    kw = dict(random_state=0, tol=0.0, max_iter=2)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        warm = GaussianMixture(2, warm_start=True, **kw).fit(faithful).fit(faithful)
        cold = GaussianMixture(2, **{**kw, "max_iter": 4}).fit(faithful)
    np.testing.assert_allclose(warm.means_, cold.means_, rtol=1e-10)
    assert warm.n_iter_ == 2


def test_gaussian_mixture_score_and_sample(faithful):
    gm = GaussianMixture(2, random_state=0).fit(faithful)
    assert gm.score(faithful) == pytest.approx(gm.em_result_.log_likelihood / 272)
    Xs, ys = gm.sample(500)
    assert Xs.shape == (500, 2) and ys.shape == (500,)
    assert np.all(np.diff(ys) >= 0)
    idata = gm.em_result_.to_inference_data()
    assert set(idata.groups()) >= {"posterior", "log_likelihood", "observed_data"}


def test_gaussian_mixture_collapse_is_a_clear_error():
    X = np.vstack([np.random.default_rng(0).normal(size=(30, 2)), np.tile([[40.0, 40.0]], (4, 1))])
    gm = GaussianMixture(
        2,
        reg_covar=0.0,
        weights_init=[0.9, 0.1],
        means_init=[[0.0, 0.0], [40.0, 40.0]],
        precisions_init=[np.eye(2)] * 2,
    )
    with pytest.raises(ValueError, match="increase reg_covar"):
        gm.fit(X)


def test_gaussian_mixture_public_names():
    for name in ["GaussianMixture", "fit_em", "EMResult", "bic", "aic", "icl"]:
        assert name in bayesgmm.__all__
        assert getattr(bayesgmm, name).__doc__


def test_gaussian_mixture_dataframe_feature_names_as_sklearn(faithful):
    pd = pytest.importorskip("pandas")
    df = pd.DataFrame(faithful, columns=["eruptions", "waiting"])
    with warnings.catch_warnings():
        # scikit-learn warns "X does not have valid feature names" as a UserWarning.
        warnings.simplefilter("error", UserWarning)
        gm = GaussianMixture(2, random_state=0).fit(df)
        labels = gm.fit_predict(df)
        for method in ["predict", "predict_proba", "score_samples", "score", "bic", "aic", "icl"]:
            getattr(gm, method)(df)
    np.testing.assert_array_equal(labels, gm.predict(df))
    np.testing.assert_array_equal(gm.feature_names_in_, ["eruptions", "waiting"])

    sk = SkGaussianMixture(2, random_state=0).fit(df)
    reordered = df[["waiting", "eruptions"]]
    for method in ["predict", "predict_proba", "score_samples"]:
        with pytest.raises(ValueError) as theirs:
            getattr(sk, method)(reordered)
        with pytest.raises(ValueError, match="Feature names must be in the same order") as ours:
            getattr(gm, method)(reordered)
        assert str(ours.value) == str(theirs.value)
    # An array for a model fitted on named columns: the same warning as scikit-learn's.
    with pytest.warns(UserWarning) as theirs:
        sk.predict(faithful)
    with pytest.warns(UserWarning) as ours:
        gm.predict(faithful)
    assert [str(w.message) for w in ours] == [str(w.message) for w in theirs]


@pytest.mark.parametrize("init_params", ["kmeans", "k-means++", "random", "random_from_data"])
def test_gaussian_mixture_same_random_state_same_fit(faithful, init_params):
    # Every random draw comes from random_state, so refitting repeats the fit to the last bit
    # (scikit-learn's sample-weight and idempotence checks rely on it).
    sw = np.random.default_rng(0).integers(0, 5, len(faithful))
    kw = dict(n_components=3, init_params=init_params, n_init=2, random_state=0)
    first, second = (GaussianMixture(**kw).fit(faithful, sample_weight=sw) for _ in range(2))
    for name in ["weights_", "means_", "precisions_cholesky_", "lower_bounds_", "n_iter_"]:
        np.testing.assert_array_equal(getattr(first, name), getattr(second, name), err_msg=name)
