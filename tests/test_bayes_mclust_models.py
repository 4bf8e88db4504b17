"""mclust's covariance models in the Bayesian fits: EII and EEI, and mclust's aliases.

``EII`` is one variance shared by every component and feature, ``EEI`` one diagonal shared
by every component, both in standardised units (``models._sample_scale_tril``).
"""

import warnings
from functools import partial

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from numpyro import handlers
from numpyro.infer import Predictive
from numpyro.infer.util import log_density
from scipy import stats
from scipy.special import logsumexp

from bayesgmm import BayesianGMM, DiagnosticsWarning, Priors, fit_nuts, fit_svi, load
from bayesgmm.inference.start import sites_from_params
from bayesgmm.models import gmm_model, params_from_sites
from bayesgmm.params import GMMParams

SHARED = ["EII", "EEI"]


def _model(covariance_type, n_components, n_features, priors):
    return partial(
        gmm_model,
        n_components=n_components,
        n_features=n_features,
        covariance_type=covariance_type,
        priors=priors,
    )


def _scales(covariance_type, n_features, rng):
    return rng.uniform(0.5, 1.5, size=() if covariance_type == "EII" else (n_features,))


@pytest.mark.parametrize("covariance_type", SHARED)
@pytest.mark.parametrize("n_features", [1, 3])
def test_log_density_equals_scipy_mixture(covariance_type, n_features):
    """Log joint at a fixed point = scipy's mixture log-likelihood + scipy's log prior."""
    priors = Priors(weight_concentration=1.5, scale_loc=0.7, scale_scale=0.8)
    rng = np.random.default_rng(n_features)
    n_components = 3
    sites = {
        "weights": rng.dirichlet(np.ones(n_components)),
        "means": rng.normal(size=(n_components, n_features)),
        "scales": _scales(covariance_type, n_features, rng),
    }
    Z = rng.normal(size=(20, n_features))
    model = _model(covariance_type, n_components, n_features, priors)
    log_joint, _ = log_density(
        model, (), {"Z": jnp.asarray(Z)}, {k: jnp.asarray(v) for k, v in sites.items()}
    )

    # Sigma_k = s^2 I (EII) or diag(s_1^2, ..., s_D^2) (EEI), the same for every k.
    cov = np.diag(np.broadcast_to(sites["scales"], (n_features,)) ** 2)
    comp = np.stack([stats.multivariate_normal(m, cov).logpdf(Z).reshape(-1) for m in sites["means"]], 1)
    log_lik = logsumexp(np.log(sites["weights"]) + comp, axis=1).sum()
    log_prior = (
        stats.dirichlet(np.full(n_components, 1.5)).logpdf(sites["weights"])
        + stats.norm(priors.mean_loc, priors.mean_scale).logpdf(sites["means"]).sum()
        + stats.lognorm(s=0.8, scale=0.7).logpdf(sites["scales"]).sum()
    )
    np.testing.assert_allclose(float(log_joint), log_lik + log_prior, rtol=1e-10)


@pytest.mark.parametrize("covariance_type", SHARED)
def test_prior_draws_share_one_diagonal_covariance(covariance_type):
    n_components, n_features = 3, 3
    model = _model(covariance_type, n_components, n_features, Priors())
    draws = Predictive(model, num_samples=20)(jax.random.PRNGKey(4), n_obs=1)
    expected_shape = (20,) if covariance_type == "EII" else (20, n_features)
    assert draws["scales"].shape == expected_shape
    cov = np.asarray(params_from_sites({k: v for k, v in draws.items() if k != "Z"}).covariances)
    variances = np.broadcast_to(np.asarray(draws["scales"]).reshape(20, -1) ** 2, (20, n_features))
    expected = np.einsum("dj,jk->djk", variances, np.eye(n_features))
    np.testing.assert_allclose(cov, np.broadcast_to(expected[:, None], cov.shape), rtol=1e-12, atol=0)
    if covariance_type == "EEI":  # a diagonal, not a multiple of the identity
        assert np.ptp(np.einsum("dkii->dki", cov), axis=-1).min() > 0


@pytest.mark.parametrize("covariance_type", SHARED)
def test_sites_from_params_pools_weighted_variances(covariance_type):
    """The EM start's per-component diagonals pooled with the weights, computed by hand."""
    weights = np.array([0.2, 0.8])
    sd = np.array([[1.0, 2.0], [3.0, 0.5]])
    params = GMMParams(weights, np.zeros((2, 2)), np.einsum("kj,ji->kji", sd, np.eye(2)))
    scales = sites_from_params(params, covariance_type)["scales"]
    pooled = np.array([0.2 * 1.0 + 0.8 * 9.0, 0.2 * 4.0 + 0.8 * 0.25])
    expected = np.sqrt(pooled.mean()) if covariance_type == "EII" else np.sqrt(pooled)
    np.testing.assert_allclose(scales, expected, rtol=1e-12)
    # A parameter set of the model's own is reproduced exactly.
    model = _model(covariance_type, 2, 3, Priors())
    draw = {k: v[0] for k, v in Predictive(model, num_samples=1)(jax.random.PRNGKey(7), n_obs=1).items()}
    rebuilt = sites_from_params(params_from_sites(draw), covariance_type)
    trace = handlers.trace(handlers.seed(handlers.substitute(model, rebuilt), 0)).get_trace(n_obs=1)
    np.testing.assert_allclose(trace["scale_tril"]["value"], draw["scale_tril"], rtol=1e-12)


#: Truths: EII's two features have the same marginal law (means on the diagonal), so the
#: standardisation divides them by nearly the same scale and the truth is EII in
#: standardised units too, up to the sampling error of the two scales (O(1/sqrt(n_obs)),
#: about one posterior sd on the variance); EEI stays diagonal under any rescaling.
TRUTH = {
    "EII": dict(weights=[0.5, 0.5], means=[[-1.5, -1.5], [1.5, 1.5]], sd=[0.8, 0.8]),
    "EEI": dict(weights=[0.4, 0.6], means=[[0.0, 0.0], [3.0, 1.0]], sd=[1.0, 0.4]),
}
N_OBS = 500


def _simulate(covariance_type, seed=0):
    truth = TRUTH[covariance_type]
    rng = np.random.default_rng(seed)
    z = rng.choice(2, size=N_OBS, p=truth["weights"])
    return np.asarray(truth["means"])[z] + rng.normal(size=(N_OBS, 2)) * np.asarray(truth["sd"])


@pytest.fixture(scope="module")
def svi_fits():
    return {ct: fit_svi(_simulate(ct), 2, ct, seed=1, num_samples=1000) for ct in SHARED}


@pytest.mark.parametrize("covariance_type", SHARED)
def test_svi_recovers_the_truth(svi_fits, covariance_type):
    """Posterior means within 4 posterior sd of the truth (components matched by their means)."""
    idata, truth = svi_fits[covariance_type], TRUTH[covariance_type]
    assert idata.attrs["covariance_type"] == covariance_type
    post = idata.posterior.stack(sample=("chain", "draw"))
    order = np.argsort(post["means"].mean("sample").values[:, 0])
    estimates = {
        "weights": (post["weights"].values[order], np.asarray(truth["weights"])),
        "means": (post["means"].values[order], np.asarray(truth["means"])),
        "variances": (
            np.einsum("kiis->kis", post["covariances"].values[order]),
            np.broadcast_to(np.square(truth["sd"]), (2, 2)),
        ),
    }
    for name, (draws, true) in estimates.items():
        z = (draws.mean(-1) - true) / draws.std(-1)
        assert np.all(np.abs(z) < 4), (name, z)


@pytest.mark.parametrize("covariance_type", SHARED)
def test_fitted_covariances_are_shared_and_diagonal(svi_fits, covariance_type):
    idata = svi_fits[covariance_type]
    cov = idata.posterior["covariances"]
    assert cov.dims == ("chain", "draw", "component", "feature", "feature_col")
    cov = cov.values
    np.testing.assert_array_equal(cov, np.broadcast_to(cov[:, :, :1], cov.shape))
    off_diagonal = cov * (1 - np.eye(2))
    assert np.all(off_diagonal == 0)
    if covariance_type == "EII":  # s^2 I in standardised units
        scale = idata.constant_data["standardize_scale"].values
        std_variances = np.einsum("cdkii->cdki", cov) / scale**2
        np.testing.assert_allclose(std_variances, std_variances[..., :1] * np.ones(2), rtol=1e-10)


def _faithful_like(seed=3, n_obs=200):
    rng = np.random.default_rng(seed)
    z = rng.choice(2, size=n_obs)
    return np.array([[0.0, 0.0], [3.0, 2.0]])[z] + rng.normal(size=(n_obs, 2))


@pytest.mark.filterwarnings("ignore::bayesgmm.DiagnosticsWarning")  # short fits, compared exactly
def test_alias_fits_as_the_canonical_type():
    X = _faithful_like()
    common = dict(seed=5, num_samples=50, max_steps=400)
    alias, canonical = fit_svi(X, 2, "VVV", **common), fit_svi(X, 2, "full", **common)
    assert alias.attrs["covariance_type"] == "full"
    for name in ("weights", "means", "covariances"):
        np.testing.assert_array_equal(alias.posterior[name].values, canonical.posterior[name].values)


@pytest.mark.parametrize("name", ["EEV", "VEV", "EVI", "VEI", "EVE", "VEE", "EVV", "VVE"])
def test_em_only_models_are_refused_with_a_pointer_to_em(name):
    X = _faithful_like()
    for fit in (fit_svi, fit_nuts):
        with pytest.raises(
            ValueError, match=rf"'{name}' is available by EM only \(fit_em or GaussianMixture\)"
        ):
            fit(X, 2, name)
    with pytest.raises(ValueError, match="EII") as info:
        BayesianGMM(2, name, inference="svi").fit(X)
    assert "fit_em" in str(info.value)


def test_unknown_name_lists_the_bayesian_choices():
    with pytest.raises(ValueError, match=r"'full', 'tied', 'diag', 'spherical', 'EII', 'EEI'"):
        fit_svi(_faithful_like(), 2, "XYZ")


@pytest.fixture(scope="module")
def estimator_fits():
    X = _faithful_like()
    fits = {}
    for name in ("VVI", "EII"):
        fits[name] = BayesianGMM(2, name, inference="svi", num_samples=50, num_chains=1, random_state=0).fit(
            X
        )
    return X, fits


def test_estimator_keeps_the_alias_and_records_the_canonical_name(estimator_fits):
    _, fits = estimator_fits
    model = fits["VVI"]
    assert model.get_params()["covariance_type"] == "VVI"
    assert model.idata_.attrs["covariance_type"] == "diag"


def test_eii_estimator_save_load_round_trip(estimator_fits, tmp_path):
    X, fits = estimator_fits
    model = fits["EII"]
    path = tmp_path / "eii.nc"
    model.save(path)
    loaded = load(path)
    assert loaded.get_params() == model.get_params()
    assert loaded.idata_.attrs["covariance_type"] == "EII"
    for group in model.idata_.groups():
        assert loaded.idata_[group].identical(model.idata_[group]), group
    for method in ("predict_proba", "score_samples"):
        np.testing.assert_array_equal(getattr(loaded, method)(X), getattr(model, method)(X))
    cov = loaded.covariances_  # relabelled posterior means, still shared by both components
    np.testing.assert_allclose(cov[0], cov[1], rtol=1e-12)


@pytest.mark.filterwarnings("ignore::bayesgmm.DiagnosticsWarning")  # short fits, checked for structure
def test_missing_values_and_noise_paths_keep_the_shared_structure():
    """The EM start (spherical / diag EM with missing values, with noise) feeds both types."""
    X = _faithful_like()
    X_nan = X.copy()
    X_nan[::10, 1] = np.nan
    common = dict(seed=0, num_samples=20, max_steps=400)
    fits = {
        "EEI": fit_svi(X_nan, 2, "EEI", missing="marginalize", **common),
        "EII": fit_svi(np.vstack([X, [[15.0, -12.0]]]), 2, "EII", noise="uniform", **common),
    }
    for covariance_type, idata in fits.items():
        cov = idata.posterior["covariances"].values
        np.testing.assert_array_equal(cov, np.broadcast_to(cov[:, :, :1], cov.shape))
        assert np.all(cov * (1 - np.eye(2)) == 0) and np.all(np.isfinite(cov)), covariance_type


def test_nuts_samples_eei():
    """One short NUTS run: the chains start from the pooled EM start and keep one diagonal."""
    X = _simulate("EEI", seed=2)[:300]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DiagnosticsWarning)  # too few draws to judge mixing
        idata = fit_nuts(X, 2, "EEI", num_warmup=150, num_samples=100, num_chains=1, seed=0)
    assert idata.attrs["covariance_type"] == "EEI"
    assert int(idata.sample_stats["diverging"].sum()) == 0
    cov = idata.posterior["covariances"].values
    np.testing.assert_array_equal(cov, np.broadcast_to(cov[:, :, :1], cov.shape))
    variances = np.einsum("cdii->cdi", cov[:, :, 0]).reshape(-1, 2)
    z = (variances.mean(0) - np.square(TRUTH["EEI"]["sd"])) / variances.std(0)
    assert np.all(np.abs(z) < 4), z
