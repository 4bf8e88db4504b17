"""BayesianGMM keeps scikit-learn's estimator contract: its own check suite and the usual tools."""

import numpy as np
import pandas as pd
import pytest
from sklearn.base import clone
from sklearn.metrics import adjusted_rand_score
from sklearn.mixture import GaussianMixture as SkGaussianMixture
from sklearn.model_selection import KFold, cross_val_score
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.utils._param_validation import InvalidParameterError
from sklearn.utils.estimator_checks import parametrize_with_checks

from bayesgmm import BayesianGMM

# Fast settings: the checks are about the contract, not the quality of the posterior.
FAST_SVI = BayesianGMM(
    2, inference="svi", num_samples=20, num_chains=1, random_state=0, inference_kwargs={"max_steps": 400}
)
FAST_NUTS = BayesianGMM(2, num_warmup=30, num_samples=20, num_chains=1, random_state=0)


@parametrize_with_checks([FAST_SVI])
def test_sklearn_checks_svi(estimator, check):
    check(estimator)


@pytest.mark.slow
@parametrize_with_checks([FAST_NUTS])
def test_sklearn_checks_nuts(estimator, check):
    check(estimator)


@pytest.fixture(scope="module")
def blobs():
    """Three well separated clusters with named columns, and the true labels."""
    rng = np.random.default_rng(0)
    centres = np.array([[-6.0, 0.0], [0.0, 6.0], [6.0, 0.0]])
    labels = np.repeat(np.arange(3), 60)
    X = centres[labels] + rng.normal(size=(180, 2))
    return pd.DataFrame(X, columns=["x", "y"]), labels


@pytest.fixture(scope="module")
def fitted(blobs):
    frame, _ = blobs
    return clone(FAST_SVI).set_params(n_components=3).fit(frame)


def test_fit_predict_is_fit_then_predict_and_finds_the_clusters(blobs, fitted):
    frame, labels = blobs
    predicted = clone(fitted).fit_predict(frame)
    np.testing.assert_array_equal(predicted, fitted.predict(frame))
    assert adjusted_rand_score(labels, predicted) == 1.0
    oracle = SkGaussianMixture(3, random_state=0).fit_predict(frame)
    assert adjusted_rand_score(oracle, predicted) == 1.0


def test_score_is_the_mean_of_score_samples_and_works_in_cross_validation(blobs, fitted):
    frame, _ = blobs
    assert fitted.score(frame) == pytest.approx(fitted.score_samples(frame).mean(), rel=1e-12)
    folds = KFold(3, shuffle=True, random_state=0)
    scores = cross_val_score(clone(fitted), frame, cv=folds)
    # The held-out mean log density of a correct model is close to that of scikit-learn's EM fit:
    # predictive and plug-in densities differ by about n_parameters / (2 n_obs) nats per row.
    theirs = cross_val_score(SkGaussianMixture(3, random_state=0), frame, cv=folds)
    np.testing.assert_allclose(scores, theirs, atol=17 / 120)


def test_feature_names_as_sklearn(blobs, fitted):
    frame, _ = blobs
    np.testing.assert_array_equal(fitted.feature_names_in_, ["x", "y"])
    assert fitted.n_features_in_ == 2
    on_array = clone(fitted).fit(frame.to_numpy())
    assert not hasattr(on_array, "feature_names_in_")
    assert not hasattr(SkGaussianMixture(3).fit(frame.to_numpy()), "feature_names_in_")


def test_pipeline_is_the_same_as_scaling_by_hand(blobs):
    frame, _ = blobs
    pipe = make_pipeline(StandardScaler(), clone(FAST_SVI).set_params(n_components=3)).fit(frame)
    scaled = StandardScaler().fit_transform(frame)
    by_hand = clone(FAST_SVI).set_params(n_components=3).fit(scaled)
    np.testing.assert_allclose(
        pipe.predict_proba(frame), by_hand.predict_proba(scaled), rtol=1e-9, atol=1e-12
    )
    np.testing.assert_array_equal(pipe.predict(frame), by_hand.predict(scaled))


def test_clone_get_params_set_params():
    model = BayesianGMM(4, "diag", inference="svi", weight_prior="sparse", random_state=3)
    params = model.get_params()
    assert params["n_components"] == 4 and params["weight_prior"] == "sparse"
    copy = clone(model)
    assert copy is not model and copy.get_params() == params
    assert model.set_params(n_components=2, covariance_type="full") is model
    assert (model.n_components, model.covariance_type) == (2, "full")
    with pytest.raises(ValueError, match="Invalid parameter 'n_component'"):
        model.set_params(n_component=2)


@pytest.mark.parametrize(
    "params, words",
    [
        ({"n_components": 0}, "'n_components' parameter of BayesianGMM must be an int in the range [1, inf)"),
        ({"covariance_type": "XYZ"}, "'covariance_type' parameter of BayesianGMM must be a str among"),
        ({"inference": "gibbs"}, "'inference' parameter of BayesianGMM must be a str among"),
        ({"weight_prior": "pitman-yor"}, "'weight_prior' parameter of BayesianGMM must be a str among"),
        ({"num_chains": 0}, "'num_chains' parameter of BayesianGMM must be an int in the range [1, inf)"),
        ({"num_samples": 2.5}, "'num_samples' parameter of BayesianGMM must be an int"),
        ({"inference_kwargs": [("max_steps", 3)]}, "'inference_kwargs' parameter of BayesianGMM must be"),
        ({"random_state": "seed"}, "'random_state' parameter of BayesianGMM must be"),
    ],
)
def test_bad_parameters_are_refused_before_fitting(params, words):
    X = np.random.default_rng(0).normal(size=(20, 2))
    with pytest.raises(InvalidParameterError) as info:
        BayesianGMM(**params).fit(X)
    assert words in str(info.value)


def test_sklearn_validates_its_own_parameters_the_same_way():
    """The oracle for the message format: scikit-learn's GaussianMixture on the same mistake."""
    X = np.random.default_rng(0).normal(size=(20, 2))
    with pytest.raises(InvalidParameterError) as theirs:
        SkGaussianMixture(n_components=0).fit(X)
    with pytest.raises(InvalidParameterError) as ours:
        BayesianGMM(n_components=0).fit(X)
    assert str(ours.value) == str(theirs.value).replace("GaussianMixture", "BayesianGMM")


def test_sample_shapes_and_labels(fitted):
    X, labels = fitted.sample(500, random_state=1)
    assert X.shape == (500, 2) and labels.shape == (500,)
    assert set(np.unique(labels)) <= {0, 1, 2}
    # Each sampled point is most probably from the component that drew it (clusters far apart).
    assert (fitted.predict(X) == labels).mean() > 0.97
    with pytest.raises(ValueError, match="n_samples must be at least 1"):
        fitted.sample(0)
