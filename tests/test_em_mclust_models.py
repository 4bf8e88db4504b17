"""mclust's covariance models in the EM path, against mclust and against brute-force optimisation.

The oracle numbers are mclust 6.0.0's (``tests/data/mclust_bic.json``, written by
``tests/data/mclust_bic.R``: ``Mclust(X, G, modelNames)`` with mclust's defaults).
"""

import json
import warnings
from pathlib import Path

import jax
import numpy as np
import pytest
import scipy.linalg
import scipy.optimize

from bayesgmm import GaussianMixture, compare_n_components, criteria_table, fit_em, load_dataset
from bayesgmm.inference.em import mclust_models
from bayesgmm.inference.em.criteria import n_parameters
from bayesgmm.inference.em.mclust_models import MCLUST_MODELS

# One compiled M-step per model, as EM runs it.
mclust_covariances = jax.jit(mclust_models.mclust_covariances, static_argnums=0)

REFERENCE = json.loads((Path(__file__).parent / "data" / "mclust_bic.json").read_text())
ROWS = {(r["dataset"], r["model"], r["n_components"]): r for r in REFERENCE["results"]}
# The fewest k-means restarts (seed 0) that reach mclust's log-likelihood in every case but these.
N_INIT = 6
N_INIT_MORE = {("iris", "VEE", 4): 18}
# mclust's optimum here, from its hierarchical start, is not one 200 k-means starts reach
# (-1111.28 against -1114.69; scikit-learn's "full" path, unchanged by the mclust models); six
# starts from random responsibilities find a better one (-1106.03).
INIT_PARAMS = {("faithful", "VVV", 4): "random"}
# One K per (data set, model) in the default run, each K for about six models; the rest is slow.
FAST = {
    (ds, m, 1 + (i + (ds == "iris")) % 5) for ds in ("faithful", "iris") for i, m in enumerate(MCLUST_MODELS)
}


def _marks(key):
    return [] if key in FAST else [pytest.mark.slow]


CASES = [
    pytest.param(*key, marks=_marks(key), id="-".join(map(str, key)))
    for key in ROWS
    if ROWS[key]["log_likelihood"] is not None
]


@pytest.fixture(scope="module")
def datasets():
    return {name: load_dataset(name)[0] for name in ("faithful", "iris")}


def test_parameter_counts_are_mclusts():
    for (dataset, model, k), row in ROWS.items():
        n_features = 2 if dataset == "faithful" else 4
        assert n_parameters(k, n_features, model) == row["n_parameters"], (dataset, model, k)


@pytest.mark.parametrize(("dataset", "model", "k"), CASES)
def test_log_likelihood_at_least_mclusts(datasets, dataset, model, k):
    """EM's best of ``N_INIT`` k-means starts (``INIT_PARAMS``: others) is at least mclust's.

    EM runs to ``tol=1e-10`` without ``reg_covar``, so the log-likelihoods are those of the
    optima both reach; mclust's is at most 1e-6 relative better.
    """
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # collapsed restarts are discarded with a warning
        res = fit_em(
            datasets[dataset],
            k,
            model,
            n_init=N_INIT_MORE.get((dataset, model, k), N_INIT),
            init_params=INIT_PARAMS.get((dataset, model, k), "kmeans"),
            seed=0,
            tol=1e-10,
            max_iter=2000,
            reg_covar=0.0,
        )
    reference = ROWS[(dataset, model, k)]["log_likelihood"]
    assert res.log_likelihood >= reference - 1e-6 * abs(reference)


# --- M-steps on fixed statistics -------------------------------------------------------


def _statistics(seed, n_components=2, n_features=3):
    rng = np.random.default_rng(seed)
    nk = rng.uniform(5, 20, n_components)
    W = np.stack(
        [
            A @ A.T * n
            for A, n in zip(rng.normal(size=(n_components, n_features, n_features)), nk, strict=True)
        ]
    )
    return nk, W


def _q(cov, nk, W):
    """Covariance part of the expected complete-data log-likelihood.

    ``-1/2 sum_k [n_k log|S_k| + tr(W_k S_k^-1)]``.
    """
    logdet = np.linalg.slogdet(cov)[1]
    return -0.5 * float(np.sum(nk * logdet + np.trace(np.linalg.solve(cov, W), axis1=-2, axis2=-1)))


def _holds(model, cov, rtol=1e-7):
    """Whether covariances (K, D, D) have ``model``'s volume, shape and orientation constraints."""
    d = cov.shape[-1]
    lam = np.linalg.det(cov) ** (1 / d)
    shapes = cov / lam[:, None, None]
    checks = []
    if model[0] == "E":
        checks.append(np.allclose(lam, lam[0], rtol=rtol))
    if model[2] == "I":
        checks.append(np.allclose(shapes * (1 - np.eye(d)), 0, atol=rtol))
        diag = np.diagonal(shapes, axis1=-2, axis2=-1)
        if model[1] == "I":
            checks.append(np.allclose(diag, 1, rtol=rtol))
        if model[1] == "E":
            checks.append(np.allclose(diag, diag[0], rtol=rtol))
    if model[2] == "E":
        checks.append(
            all(np.allclose(a @ b, b @ a, atol=rtol * np.abs(a @ b).max()) for a in cov for b in cov)
        )
        if model[1] == "E":
            checks.append(np.allclose(shapes, shapes[0], rtol=rtol, atol=rtol))
    if model[2] == "V" and model[1] == "E":
        ev = np.linalg.eigvalsh(shapes)
        checks.append(np.allclose(ev, ev[0], rtol=rtol))
    return all(checks)


@pytest.mark.parametrize("model", MCLUST_MODELS)
def test_m_step_has_the_models_constraint(model):
    nk, W = _statistics(0)
    cov = np.asarray(mclust_covariances(model, nk, W))
    assert cov.shape == W.shape
    assert np.all(np.linalg.eigvalsh(cov) > 0)
    assert _holds(model, cov)


def test_constraint_check_can_fail():
    nk, W = _statistics(0)
    unconstrained = np.asarray(mclust_covariances("VVV", nk, W))
    assert not any(_holds(model, unconstrained) for model in MCLUST_MODELS if model != "VVV")


def _covariances_from(theta, model, n_components, n_features):
    """Every covariance of ``model``: volumes, unit-determinant shapes and rotations from free parameters."""
    n_rot = n_features * (n_features - 1) // 2
    count = {"I": 0, "E": 1, "V": n_components}  # the model's letters: how many of each part
    parts, at = [], 0
    for letter, width in zip(model, (1, n_features - 1, n_rot), strict=True):
        block = theta[at : at + count[letter] * width].reshape(count[letter], width)
        parts.append(
            np.broadcast_to(block, (n_components, width))
            if count[letter]
            else np.zeros((n_components, width))
        )
        at += count[letter] * width
    log_vol, log_shape, angles = parts
    log_shape = np.concatenate([log_shape, -log_shape.sum(1, keepdims=True)], axis=1)
    rows, cols = np.triu_indices(n_features, 1)
    covs = []
    for k in range(n_components):
        skew = np.zeros((n_features, n_features))
        skew[rows, cols] = angles[k]
        R = scipy.linalg.expm(skew - skew.T)
        covs.append(np.exp(log_vol[k, 0]) * (R * np.exp(log_shape[k])) @ R.T)
    return np.stack(covs), at


@pytest.mark.parametrize("model", MCLUST_MODELS)
def test_m_step_maximises_q_as_scipy_does(model):
    """On tiny statistics, no numerical optimum over the model's parameters beats the M-step."""
    nk, W = _statistics(1)
    K, d = len(nk), W.shape[-1]
    n_free = _covariances_from(np.zeros(100), model, K, d)[1]
    ours = _q(np.asarray(mclust_covariances(model, nk, W)), nk, W)
    rng = np.random.default_rng(2)
    best = -np.inf
    for _ in range(4):
        opt = scipy.optimize.minimize(
            lambda t: -_q(_covariances_from(t, model, K, d)[0], nk, W), rng.normal(size=n_free), method="BFGS"
        )
        best = max(best, -opt.fun)
    assert ours >= best - 1e-6 * abs(best)
    # and the optimiser gets there: the M-step is the optimum, not merely better than a bad search
    assert best >= ours - 1e-3 * abs(ours)


@pytest.mark.parametrize("model", ["VEI", "VEE", "EVE", "VVE", "VEV"])
def test_iterative_m_step_does_not_decrease_q_from_previous(model):
    """Started at any covariances with the constraint, the alternations never decrease ``Q`` (ECM)."""
    nk, W = _statistics(3)
    for seed in range(3):
        other_nk, other_W = _statistics(10 + seed)
        previous = np.asarray(mclust_covariances(model, other_nk, other_W))
        new = np.asarray(mclust_covariances(model, nk, W, previous))
        assert _q(new, nk, W) >= _q(previous, nk, W) - 1e-9 * abs(_q(previous, nk, W))
        assert _holds(model, new)


def test_aliases_run_the_same_program_as_scikit_learns_names(datasets):
    X = datasets["faithful"]
    for alias, name in (("VII", "spherical"), ("VVI", "diag"), ("EEE", "tied"), ("VVV", "full")):
        a, b = fit_em(X, 2, alias, seed=0), fit_em(X, 2, name, seed=0)
        assert a.log_likelihood == b.log_likelihood
        assert np.array_equal(np.asarray(a.params.scale_tril), np.asarray(b.params.scale_tril))
        assert a.covariance_type == alias


def test_bad_names_and_unsupported_options_say_what_to_do(datasets):
    X = datasets["faithful"]
    with pytest.raises(ValueError, match="mclust's"):
        fit_em(X, 2, "XYZ")
    with pytest.raises(ValueError, match="prior"):
        fit_em(X, 2, "EVE", prior="default")


def test_gaussian_mixture_takes_mclust_names(datasets):
    X = datasets["iris"]
    gm = GaussianMixture(
        3, covariance_type="VEV", n_init=N_INIT, tol=1e-10, max_iter=2000, reg_covar=0.0, random_state=0
    ).fit(X)
    assert gm.covariances_.shape == (3, 4, 4)
    assert _holds("VEV", gm.covariances_, rtol=1e-6)
    # mclust's BIC has the other sign: 2 log L - n_parameters log(n_obs)
    assert -gm.bic(X) == pytest.approx(ROWS[("iris", "VEV", 3)]["bic"], abs=0.01)
    assert GaussianMixture(2, covariance_type="VVI", random_state=0).fit(X).covariances_.shape == (2, 4)


def test_criteria_table_is_mclusts_bic_table(datasets):
    X = datasets["faithful"]
    models = ["EII", "VEV"]
    table = compare_n_components(X, [1, 2], models, n_init=N_INIT, reg_covar=0.0)
    wide = criteria_table(table, "bic", sign="mclust")
    assert list(wide.columns) == models and list(wide.index) == [1, 2]
    expected = [[ROWS[("faithful", m, k)]["bic"] for m in models] for k in (1, 2)]
    # compare_n_components runs EM at its default tol (1e-3 per observation)
    np.testing.assert_allclose(wide.to_numpy(), expected, atol=1.0)
    with pytest.raises(ValueError, match="bic"):
        criteria_table(table, "aic", sign="mclust")
