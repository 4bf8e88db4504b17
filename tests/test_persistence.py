"""Saving fitted estimators to netCDF and loading them back (bayesgmm.persistence)."""

import warnings

import arviz as az
import jax.numpy as jnp
import numpy as np
import pandas as pd
import pytest
from sklearn.exceptions import NotFittedError
from sklearn.utils.validation import check_is_fitted

import bayesgmm
from bayesgmm import BayesianGMM, DiagnosticsWarning, GaussianMixture, Priors, load
from bayesgmm.inference.em.mstep import EMPrior
from bayesgmm.persistence import FORMAT_VERSION, decode_params, encode_params

EM_ATTRIBUTES = (
    "weights_",
    "means_",
    "covariances_",
    "precisions_",
    "precisions_cholesky_",
    "converged_",
    "n_iter_",
    "lower_bound_",
    "lower_bounds_",
    "n_features_in_",
)


@pytest.fixture(scope="module")
def faithful():
    X, _ = bayesgmm.load_dataset("faithful")
    return X, pd.DataFrame(X, columns=["eruptions", "waiting"])


def _data(faithful, frame):
    X, df = faithful
    return df if frame else X


def _round_trip(estimator, tmp_path):
    path = tmp_path / "model.nc"
    estimator.save(path)
    loaded = load(path)
    assert type(loaded) is type(estimator)
    check_is_fitted(loaded)
    np.testing.assert_equal(loaded.get_params(), estimator.get_params())
    assert az.from_netcdf(path).groups()  # arviz opens every saved file
    return loaded


def _assert_same_predictions(loaded, estimator, X):
    for method in ("predict", "predict_proba", "score_samples"):
        np.testing.assert_array_equal(getattr(loaded, method)(X), getattr(estimator, method)(X))
    assert loaded.score(X) == estimator.score(X)
    for a, b in zip(loaded.sample(7), estimator.sample(7), strict=True):
        np.testing.assert_array_equal(a, b)


def _assert_feature_names(loaded, estimator, frame):
    assert hasattr(loaded, "feature_names_in_") == frame
    if frame:
        np.testing.assert_array_equal(loaded.feature_names_in_, estimator.feature_names_in_)
        assert loaded.feature_names_in_.dtype == object


@pytest.mark.parametrize("frame", [False, True], ids=["array", "frame"])
@pytest.mark.parametrize("covariance_type", ["full", "tied", "diag", "spherical"])
def test_gaussian_mixture_round_trip(faithful, tmp_path, covariance_type, frame):
    X = _data(faithful, frame)
    gm = GaussianMixture(2, covariance_type=covariance_type, random_state=0).fit(X)
    loaded = _round_trip(gm, tmp_path)
    for name in EM_ATTRIBUTES:
        np.testing.assert_array_equal(getattr(loaded, name), getattr(gm, name))
        assert type(getattr(loaded, name)) is type(getattr(gm, name))
    for name in ("weights_", "means_", "covariances_", "precisions_", "precisions_cholesky_"):
        assert getattr(loaded, name).dtype == getattr(gm, name).dtype
    _assert_feature_names(loaded, gm, frame)
    _assert_same_predictions(loaded, gm, X)
    for criterion in ("bic", "aic", "icl"):
        assert getattr(loaded, criterion)(X) == getattr(gm, criterion)(X)


def test_gaussian_mixture_float32_and_array_parameters(faithful, tmp_path):
    X = faithful[0].astype(np.float32)
    gm = GaussianMixture(
        2,
        means_init=np.array([[2.0, 55.0], [4.5, 80.0]]),
        weights_init=np.array([0.4, 0.6]),
        prior="default",
        random_state=np.random.RandomState(3),
    ).fit(X)
    loaded = _round_trip_params_by_value(gm, tmp_path)
    assert loaded.means_.dtype == np.float32
    np.testing.assert_array_equal(loaded.predict_proba(X), gm.predict_proba(X))
    # A loaded estimator refits as the saved one would: same parameters, same random state.
    np.testing.assert_array_equal(loaded.fit(X).means_, gm.fit(X).means_)


def _round_trip_params_by_value(estimator, tmp_path):
    """Round trip whose random_state is a RandomState (equal by state, not by identity)."""
    path = tmp_path / "model.nc"
    estimator.save(path)
    loaded = load(path)
    params, saved = loaded.get_params(), estimator.get_params()
    np.testing.assert_equal(params.pop("random_state").get_state(), saved.pop("random_state").get_state())
    np.testing.assert_equal(params, saved)
    return loaded


def test_gaussian_mixture_warm_start_after_load(faithful, tmp_path):
    X = faithful[0]
    gm = GaussianMixture(2, warm_start=True, max_iter=3, random_state=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # three iterations do not converge
        gm.fit(X)
        loaded = _round_trip(gm, tmp_path)
        np.testing.assert_array_equal(loaded.fit(X).means_, gm.fit(X).means_)


@pytest.fixture(scope="module")
def svi_fits(faithful):
    fits = {}
    for frame in (False, True):
        model = BayesianGMM(
            2, inference="svi", num_samples=50, num_chains=1, priors=Priors(mean_scale=3.0), random_state=0
        )
        fits[frame] = model.fit(_data(faithful, frame))
    return fits


def _assert_same_posterior(loaded, model):
    assert loaded.idata_.groups() == model.idata_.groups()
    for group in model.idata_.groups():
        assert loaded.idata_[group].identical(model.idata_[group]), group
    assert loaded.idata_.attrs == model.idata_.attrs
    for name in ("weights_", "means_", "covariances_", "n_features_in_"):
        np.testing.assert_array_equal(getattr(loaded, name), getattr(model, name))


@pytest.mark.parametrize("frame", [False, True], ids=["array", "frame"])
def test_bayesian_gmm_svi_round_trip(faithful, svi_fits, tmp_path, frame):
    model, X = svi_fits[frame], _data(faithful, frame)
    loaded = _round_trip(model, tmp_path)
    assert not any(key.startswith("bayesgmm_") for key in model.idata_.attrs)  # save copies
    _assert_same_posterior(loaded, model)
    _assert_feature_names(loaded, model, frame)
    _assert_same_predictions(loaded, model, X)
    for a, b in zip(loaded.sample(5, random_state=9), model.sample(5, random_state=9), strict=True):
        np.testing.assert_array_equal(a, b)


def test_bayesian_gmm_nuts_round_trip(faithful, tmp_path):
    X = faithful[1]
    model = BayesianGMM(2, "diag", num_warmup=50, num_samples=50, num_chains=1, random_state=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DiagnosticsWarning)  # too few draws to mix
        model.fit(X)
    loaded = _round_trip(model, tmp_path)
    _assert_same_posterior(loaded, model)
    _assert_feature_names(loaded, model, True)
    _assert_same_predictions(loaded, model, X)


def test_params_json_round_trip():
    params = {
        "none": None,
        "flag": np.bool_(True),
        "count": np.int64(3),
        "array": np.arange(6, dtype=np.float32).reshape(2, 3),
        "empty": np.zeros((0, 2)),
        "pair": (1, (2.5, "a")),
        "nested": {"step_size": 0.01, "shape": [1, 2]},
        "priors": Priors(weight_concentration=0.5),
        "emprior": EMPrior(*(jnp.full((2,), v) for v in (0.0, 1.0, 4.0, 1.0, 1.0))),
        "key": jnp.array([0, 7], dtype=jnp.uint32),
        "generator": np.random.default_rng(5),
        "tol": float("inf"),
    }
    back = decode_params(encode_params(params))
    assert back["generator"].random() == np.random.default_rng(5).random()
    assert isinstance(back["emprior"], EMPrior) and back["key"].dtype == jnp.uint32
    for name in ("emprior", "key"):
        np.testing.assert_equal(np.asarray(back.pop(name)), np.asarray(params.pop(name)))
    back.pop("generator"), params.pop("generator")
    np.testing.assert_equal(back, params)
    assert back["array"].dtype == np.float32 and back["empty"].shape == (0, 2)
    assert back["pair"] == (1, (2.5, "a")) and isinstance(back["priors"], Priors)


def test_params_that_json_cannot_hold_are_refused():
    with pytest.raises(TypeError, match="inference_kwargs"):
        encode_params({"inference_kwargs": {"init": object()}})


def _rewritten(path, tmp_path, **attrs):
    idata = az.from_netcdf(path)
    idata.attrs.update(attrs)
    out = tmp_path / "rewritten.nc"
    idata.to_netcdf(str(out))
    return out


@pytest.fixture
def saved(faithful, tmp_path):
    path = tmp_path / "gm.nc"
    GaussianMixture(2, random_state=0).fit(faithful[0]).save(path)
    return path


def test_newer_format_version_is_refused(saved, tmp_path):
    path = _rewritten(saved, tmp_path, bayesgmm_format_version=FORMAT_VERSION + 1)
    with pytest.raises(ValueError, match=f"format version {FORMAT_VERSION + 1}.*upgrade bayesgmm"):
        load(path)


def test_unknown_class_is_refused(saved, tmp_path):
    with pytest.raises(ValueError, match="'DirichletProcessMixture'"):
        load(_rewritten(saved, tmp_path, bayesgmm_class="DirichletProcessMixture"))


@pytest.mark.parametrize("keep", [0.0, 0.5, 0.99])
def test_damaged_file_is_refused(saved, tmp_path, keep):
    data = saved.read_bytes()
    path = tmp_path / "damaged.nc"
    path.write_bytes(data[: int(len(data) * keep)])
    with pytest.raises(ValueError, match="not a readable netCDF file"):
        load(path)


def test_plain_inference_data_is_refused(tmp_path):
    path = tmp_path / "plain.nc"
    az.from_dict(posterior={"mu": np.zeros((1, 10))}).to_netcdf(str(path))
    with pytest.raises(ValueError, match="not a bayesgmm model"):
        load(path)


def test_missing_file_and_unfitted_estimator(tmp_path):
    with pytest.raises(FileNotFoundError, match="no-model.nc"):
        load(tmp_path / "no-model.nc")
    for estimator in (GaussianMixture(), BayesianGMM()):
        with pytest.raises(NotFittedError):
            estimator.save(tmp_path / "unfitted.nc")
