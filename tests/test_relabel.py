"""Relabelling: known permutations undone exactly, idempotence, NUTS chains started in several labellings."""

import importlib
from functools import partial

import arviz as az
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from numpyro.infer import MCMC, NUTS
from posterior_helpers import (
    make_idata,
    permute_draws,
    random_perms,
    sample_data,
    synthetic_draws,
    true_params,
)

from bayesgmm import relabel
from bayesgmm._validation import standardize
from bayesgmm.inference.idata import build_inference_data
from bayesgmm.inference.start import chain_init_params, sites_from_params
from bayesgmm.models import gmm_model, params_from_sites
from bayesgmm.params import GMMParams
from bayesgmm.posterior.draws import params_from_idata
from bayesgmm.posterior.relabel import draw_responsibilities, find_permutations

# The package re-exports the function ``relabel``, which shadows the module of the same name.
relabel_module = importlib.import_module("bayesgmm.posterior.relabel")
N_CHAINS, N_DRAWS = 2, 60
# NUTS warmup and draws per chain: enough for R-hat to settle below 1.01 once relabelled.
NW, NS = 150, 300


def _setup(n_features, seed=0, n_components=3):
    params = true_params(n_features, n_components)
    X = sample_data(params, 40, seed)
    draws = synthetic_draws(params, N_CHAINS, N_DRAWS, seed + 1)
    return draws, X


def _global_perm(a, b):
    """The permutation g with ``b[0, 0, g] == a[0, 0]`` (the caller checks it on all draws)."""
    return np.array([int(np.argmin(np.abs(b[0, 0] - row).sum(-1))) for row in a[0, 0]])


def _assert_equal_up_to_global_perm(relabelled, reference):
    a = relabelled.posterior["means"].values
    b = reference.posterior["means"].values
    g = _global_perm(a, b)
    assert sorted(g) == list(range(a.shape[2]))
    np.testing.assert_array_equal(a, b[:, :, g])


@pytest.mark.parametrize(("method", "n_features"), [("ecr", 2), ("stephens", 2), ("ordering", 1)])
def test_known_permutation_undone_exactly(method, n_features):
    draws, X = _setup(n_features)
    perms = random_perms(N_CHAINS, N_DRAWS, 3, seed=7)
    original = make_idata(draws, X)
    switched = make_idata(permute_draws(draws, perms), X)
    out = relabel(switched, method)
    # The synthetic draws share one labelling, so relabelling recovers them up to one global permutation.
    _assert_equal_up_to_global_perm(out, original)
    _assert_equal_up_to_global_perm(out, relabel(original, method))
    assert out.posterior.attrs["relabel_method"] == method


@pytest.mark.parametrize("method", ["ecr", "stephens", "ordering"])
def test_relabel_is_idempotent(method):
    draws, X = _setup(2)
    idata = make_idata(permute_draws(draws, random_perms(N_CHAINS, N_DRAWS, 3, seed=3)), X)
    once = relabel(idata, method)
    twice = relabel(once, method)
    for name in ("weights", "means", "covariances", "scale_tril", "relabel_permutation"):
        np.testing.assert_array_equal(twice.posterior[name].values, once.posterior[name].values)


def test_stored_permutation_reproduces_relabelled_draws_and_input_is_untouched():
    draws, X = _setup(2)
    idata = make_idata(permute_draws(draws, random_perms(N_CHAINS, N_DRAWS, 3, seed=4)), X)
    before = idata.posterior["means"].values.copy()
    out = relabel(idata, "stephens")
    perm = out.posterior["relabel_permutation"]
    assert perm.dims == ("chain", "draw", "component")
    raw = params_from_idata(idata)
    expected = permute_draws(GMMParams(*(np.asarray(a) for a in raw)), perm.values)
    np.testing.assert_allclose(out.posterior["means"].values, expected.means)
    np.testing.assert_allclose(out.posterior["weights"].values, expected.weights)
    np.testing.assert_allclose(
        out.posterior["covariances"].values, np.asarray(GMMParams(*expected).covariances)
    )
    np.testing.assert_array_equal(idata.posterior["means"].values, before)
    assert "relabel_permutation" not in idata.posterior
    assert "relabel_method" not in idata.posterior.attrs


@settings(max_examples=5, deadline=None)
@given(seed=st.integers(0, 2**31 - 1))
def test_any_random_permutation_is_undone(seed):
    draws, X = _setup(2)
    reference = relabel(make_idata(draws, X), "ecr")
    switched = make_idata(permute_draws(draws, random_perms(N_CHAINS, N_DRAWS, 3, seed)), X)
    _assert_equal_up_to_global_perm(relabel(switched, "ecr"), reference)


def test_assignment_labels_follow_the_relabelling():
    draws, X = _setup(2)
    idata = make_idata(permute_draws(draws, random_perms(N_CHAINS, N_DRAWS, 3, seed=5)), X)
    z = np.argmax(draw_responsibilities(idata), axis=-1).astype(np.int8)
    idata.add_groups({"assignments": {"assignments": z}}, dims={"assignments": ["obs"]})
    out = relabel(idata, "ecr")
    expected = np.argmax(draw_responsibilities(out), axis=-1)
    np.testing.assert_array_equal(out.assignments["assignments"].values, expected)
    assert out.assignments["assignments"].dtype == np.int8


def test_auto_rule(monkeypatch):
    draws, X = _setup(1)
    assert relabel(make_idata(draws, X)).posterior.attrs["relabel_method"] == "ordering"
    draws, X = _setup(2)
    idata = make_idata(draws, X)
    assert find_permutations(idata)[1] == "stephens"
    monkeypatch.setattr(relabel_module, "STEPHENS_MAX_ENTRIES", 0)
    assert find_permutations(idata)[1] == "ecr"
    with pytest.raises(ValueError, match="method"):
        relabel(idata, "nope")


def _fit_in_several_labellings(perms, seed=0):
    """NUTS on well-separated 1-D data, chain c started at the truth permuted by ``perms[c]``."""
    params = true_params(1, 3, separation=8.0)
    X = sample_data(params, 45, seed)
    Z, loc, scale = standardize(X)
    start = GMMParams(
        jnp.asarray(params.weights),
        (jnp.asarray(params.means) - loc) / scale,
        jnp.asarray(params.scale_tril) / scale[:, None],
    )
    model = partial(gmm_model, n_components=3, n_features=1, covariance_type="spherical")
    keys = jax.random.split(jax.random.PRNGKey(seed), len(perms) + 1)
    inits = [
        chain_init_params(
            model, {"Z": jnp.asarray(Z)}, sites_from_params(start.permute(p), "spherical"), 1, k
        )
        for p, k in zip(perms, keys[1:], strict=True)
    ]
    init_params = {name: jnp.concatenate([i[name] for i in inits]) for name in inits[0]}
    mcmc = MCMC(
        NUTS(model),
        num_warmup=NW,
        num_samples=NS,
        num_chains=len(perms),
        chain_method="vectorized",
        progress_bar=False,
    )
    mcmc.run(keys[0], Z=jnp.asarray(Z), init_params=init_params, extra_fields=("potential_energy",))
    lp = -np.asarray(mcmc.get_extra_fields(group_by_chain=True)["potential_energy"])
    draws = params_from_sites(mcmc.get_samples(group_by_chain=True))
    return build_inference_data(draws, X, loc, scale, key=keys[0], sample_stats={"lp": lp})


@pytest.fixture(scope="module")
def fit_in_several_labellings():
    return _fit_in_several_labellings(np.array([[0, 1, 2], [1, 2, 0], [2, 0, 1], [1, 0, 2]]))


@pytest.mark.parametrize("method", ["auto", "ecr", "stephens", "ordering"])
def test_chains_started_in_different_labellings(fit_in_several_labellings, method):
    idata = fit_in_several_labellings
    raw = float(az.rhat(idata, var_names=["means"])["means"].max())
    assert raw > 1.5
    out = relabel(idata, method)
    assert float(az.rhat(out, var_names=["means"])["means"].max()) < 1.01
    assert float(az.rhat(out, var_names=["weights"])["weights"].max()) < 1.01
    # Each chain stayed in its starting labelling, so one permutation per chain undoes it.
    perms = out.posterior["relabel_permutation"].values
    assert all(len(np.unique(perms[c], axis=0)) == 1 for c in range(perms.shape[0]))


# --- stick-breaking variables of the dp prior ------------------------------------------------


def _dp_idata(sticks, means, X):
    """InferenceData of dp draws: weights from ``sticks`` (chain, draw, stick), 1-D means."""
    from bayesgmm.models import stick_breaking

    weights = np.asarray(stick_breaking(jnp.asarray(sticks)))
    lead = weights.shape[:-1]
    tril = np.ones((*lead, weights.shape[-1], 1, 1))
    hyper = {"concentration": np.ones(lead), "sticks": sticks, "stick_remainder": weights[..., -1]}
    return build_inference_data(
        GMMParams(weights, means, tril),
        X,
        np.zeros(1),
        np.ones(1),
        key=jax.random.PRNGKey(0),
        hyper_draws=hyper,
    )


def test_relabelled_sticks_match_a_hand_computation():
    # Sticks (0.5, 0.5) give weights (0.5, 0.25, 0.25) to components at 12, 0, 6. Sorted by
    # mean the weights are (0.25, 0.25, 0.5): sticks 0.25 / 1 and 0.25 / 0.75, remainder 0.5.
    X = np.array([[0.0], [6.0], [12.0]])
    idata = _dp_idata(np.array([[[0.5, 0.5]]]), np.array([[[[12.0], [0.0], [6.0]]]]), X)
    out = relabel(idata, "ordering")
    np.testing.assert_allclose(out.posterior["weights"].values[0, 0], [0.25, 0.25, 0.5])
    np.testing.assert_allclose(out.posterior["sticks"].values[0, 0], [0.25, 1 / 3])
    np.testing.assert_allclose(out.posterior["stick_remainder"].values[0, 0], 0.5)
    np.testing.assert_array_equal(idata.posterior["sticks"].values[0, 0], [0.5, 0.5])


@settings(max_examples=5, deadline=None)
@given(seed=st.integers(0, 2**31 - 1))
def test_relabelled_sticks_break_into_the_relabelled_weights(seed):
    from bayesgmm.models import stick_breaking

    rng = np.random.default_rng(seed)
    sticks = rng.beta(1.0, 2.0, (N_CHAINS, N_DRAWS, 4))
    means = 6.0 * random_perms(N_CHAINS, N_DRAWS, 5, seed).astype(float)[..., None]
    out = relabel(_dp_idata(sticks, means, 6.0 * np.arange(5.0)[:, None]), "ordering")
    post = out.posterior
    weights = post["weights"].transpose("chain", "draw", "component").values
    np.testing.assert_allclose(
        np.asarray(stick_breaking(jnp.asarray(post["sticks"].values))), weights, atol=1e-12
    )
    np.testing.assert_allclose(post["stick_remainder"].values, weights[..., -1])
    assert post["sticks"].dims == ("chain", "draw", "stick")
    # Relabelling again changes nothing, sticks included.
    np.testing.assert_array_equal(relabel(out, "ordering").posterior["sticks"].values, post["sticks"].values)


def test_truncation_report_reads_the_sampled_last_stick_after_relabelling():
    from bayesgmm import n_components_posterior

    rng = np.random.default_rng(7)
    sticks = rng.beta(1.0, 2.0, (N_CHAINS, N_DRAWS, 2))
    means = 6.0 * random_perms(N_CHAINS, N_DRAWS, 3, seed=8).astype(float)[..., None]
    idata = _dp_idata(sticks, means, 6.0 * np.arange(3.0)[:, None])
    # The sampled last weight, prod(1 - v_k), by hand.
    expected = float(np.prod(1.0 - sticks, axis=-1).mean())
    for fit in (idata, relabel(idata, "ordering")):
        assert n_components_posterior(fit, seed=0).attrs["stick_remainder_mean"] == pytest.approx(expected)


@pytest.mark.parametrize("method", ["ecr", "stephens"])
def test_components_numbered_by_decreasing_weight_whatever_the_labelling(method):
    draws, X = _setup(2)
    outs = [
        relabel(make_idata(permute_draws(draws, random_perms(N_CHAINS, N_DRAWS, 3, seed=s)), X), method)
        for s in (3, 4)
    ]
    for name in ("weights", "means"):
        np.testing.assert_array_equal(outs[0].posterior[name].values, outs[1].posterior[name].values)
    truth = true_params(2)
    order = np.argsort(-np.asarray(truth.weights))
    means = outs[0].posterior["means"].mean(("chain", "draw")).values
    np.testing.assert_allclose(means, np.asarray(truth.means)[order], atol=0.1)
    assert np.all(np.diff(outs[0].posterior["weights"].mean(("chain", "draw")).values) < 0)
