"""The BayesianGMM estimator and the bayesgmm command line."""

import subprocess
import sys

import arviz as az
import jax
import numpy as np
import pandas as pd
import pytest
from jax.scipy.special import logsumexp
from sklearn.metrics import adjusted_rand_score

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
    return model, np.asarray(X), np.asarray(labels)


def test_attributes(fitted):
    model, X, _ = fitted
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
    model, X, labels = fitted
    proba = model.predict_proba(X)
    assert proba.shape == (200, 2)
    np.testing.assert_allclose(proba.sum(axis=1), 1.0, rtol=1e-10)
    assert adjusted_rand_score(labels, model.predict(X)) > 0.95
    # Posterior-averaged, not plug-in: equal to the mean of each draw's responsibilities.
    params = params_from_idata(model.idata_)
    one = jax.tree_util.tree_map(lambda a: a[0, 0], params)
    assert not np.allclose(proba, densities.responsibilities(one, X))


def test_svi_inference(fitted):
    # The same data fitted by SVI: fit_svi takes the estimator's settings (num_samples guide
    # draws, num_chains restarts of which the best is kept) and agrees with the NUTS fit.
    nuts, X, labels = fitted
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
    model, X, _ = fitted
    params = params_from_idata(model.idata_)
    flat = jax.tree_util.tree_map(lambda a: a.reshape((-1, *a.shape[2:])), params)
    ll = jax.vmap(lambda p: densities.log_prob(p, X[:5]))(flat)
    expected = logsumexp(ll, axis=0) - np.log(ll.shape[0])
    np.testing.assert_allclose(model.score_samples(X[:5]), expected, rtol=1e-10)
    assert model.score(X) == pytest.approx(model.score_samples(X).mean())


def test_sample(fitted):
    model, X, _ = fitted
    Xs, labels = model.sample(5000, random_state=3)
    assert Xs.shape == (5000, 2) and labels.shape == (5000,)
    assert set(np.unique(labels)) <= {0, 1}
    # The predictive mean is near the data mean (5 predictive standard errors).
    assert np.all(
        np.abs(Xs.mean(0) - X.mean(0)) < 5 * X.std(0) / np.sqrt(200) + 5 * Xs.std(0) / np.sqrt(5000)
    )


def test_wrong_input_is_rejected(fitted):
    model, _, _ = fitted
    with pytest.raises(ValueError, match="features"):
        model.predict(np.zeros((3, 5)))
    with pytest.raises(ValueError, match="NaN"):
        model.score_samples(np.array([[np.nan, 1.0]]))
    with pytest.raises(ValueError, match="inference"):
        BayesianGMM(inference="gibbs").fit(np.zeros((10, 2)))


def test_command_line_fits_and_saves(tmp_path):
    out = tmp_path / "fit.nc"
    cmd = [
        sys.executable,
        "-m",
        "bayesgmm.cli",
        "fit",
        "--warmup",
        "150",
        "--samples",
        "150",
        "--chains",
        "2",
    ]
    result = subprocess.run([*cmd, "--no-progress", "--output", str(out)], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert "eruptions" in result.stdout and "max R-hat" in result.stdout and "divergences" in result.stdout
    idata = az.from_netcdf(out)
    means = idata.posterior["means"].mean(("chain", "draw")).values
    np.testing.assert_allclose(np.sort(means[:, 1]), [54.5, 80.0], rtol=0.03)


def test_command_line_reports_bad_data(tmp_path):
    bad = tmp_path / "bad.csv"
    bad.write_text("a,b\n1,2\n,3\n4,5\n")
    result = subprocess.run(
        [sys.executable, "-m", "bayesgmm.cli", "fit", "--data", str(bad), "--warmup", "5", "--samples", "5"],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 2 and "NaN" in result.stderr
