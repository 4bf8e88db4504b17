"""Assignment uncertainty: brute-force oracles on tiny data, invariance of co-clustering, best partitions."""

import importlib
import itertools

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from posterior_helpers import (
    make_idata,
    permute_draws,
    random_perms,
    sample_data,
    synthetic_draws,
    true_params,
)
from scipy import stats

from bayesgmm import (
    best_partition,
    coclustering_matrix,
    membership_probabilities,
    relabel,
    sample_assignments,
)
from bayesgmm.params import GMMParams
from bayesgmm.posterior.draws import params_from_idata
from bayesgmm.posterior.partition import canonical_labels, local_search, partition_loss

relabel_module = importlib.import_module("bayesgmm.posterior.relabel")


def enumerate_memberships(params: GMMParams, X):
    """p(z_i = k | X, params) and p(z_i = z_j | X, params) by summing over all K^N assignments."""
    n_obs, n_components = X.shape[0], len(params.weights)
    cov = np.asarray(params.covariances)
    log_comp = np.stack(
        [
            stats.multivariate_normal(np.asarray(params.means[k]), cov[k]).logpdf(X).reshape(-1)
            for k in range(n_components)
        ],
        axis=1,
    ) + np.log(np.asarray(params.weights))
    zs = np.array(list(itertools.product(range(n_components), repeat=n_obs)))
    log_joint = log_comp[np.arange(n_obs), zs].sum(axis=1)
    post = np.exp(log_joint - np.logaddexp.reduce(log_joint))
    member = np.stack([(post[:, None] * (zs == k)).sum(axis=0) for k in range(n_components)], axis=1)
    together = np.einsum("a,aij->ij", post, (zs[:, :, None] == zs[:, None, :]).astype(float))
    return member, together


def _tiny_posterior(n_obs=5, n_components=2, n_draws=6, seed=0):
    params = true_params(2, n_components, separation=2.0)
    X = sample_data(params, n_obs, seed)
    draws = synthetic_draws(params, 1, n_draws, seed + 1, noise=0.5)
    return make_idata(draws, X), X


@pytest.mark.parametrize(("n_obs", "n_components"), [(5, 2), (4, 3)])
def test_memberships_and_coclustering_match_enumeration(n_obs, n_components):
    idata, X = _tiny_posterior(n_obs, n_components)
    relabelled = relabel(idata, "ecr")
    draws = params_from_idata(relabelled)
    per_draw = [enumerate_memberships(GMMParams(*(np.asarray(a[0, t]) for a in draws)), X) for t in range(6)]
    member = np.stack([m for m, _ in per_draw])
    together = np.stack([t for _, t in per_draw])
    probs = membership_probabilities(relabelled, ci=0.5)
    np.testing.assert_allclose(probs["mean"].values, member.mean(0), atol=1e-10)
    np.testing.assert_allclose(probs["lower"].values, np.quantile(member, 0.25, axis=0), atol=1e-10)
    np.testing.assert_allclose(probs["upper"].values, np.quantile(member, 0.75, axis=0), atol=1e-10)
    np.testing.assert_allclose(coclustering_matrix(idata).values, together.mean(0), atol=1e-10)


def test_membership_summary_columns():
    idata, _ = _tiny_posterior(8, 3)
    probs = membership_probabilities(idata)
    mean = probs["mean"].values
    np.testing.assert_allclose(mean.sum(axis=1), 1.0)
    assert np.all(probs["lower"].values <= mean + 1e-12) and np.all(mean <= probs["upper"].values + 1e-12)
    np.testing.assert_allclose(probs["entropy"].values, -(mean * np.log(mean)).sum(axis=1))
    np.testing.assert_allclose(probs["uncertainty"].values, 1 - mean.max(axis=1))
    assert probs.attrs["relabel_method"] in ("ecr", "stephens")
    with pytest.raises(ValueError, match="ci"):
        membership_probabilities(idata, ci=1.5)


def test_permuting_components_permutes_memberships():
    idata, _ = _tiny_posterior(8, 3)
    relabelled = relabel(idata, "ecr")
    g = np.array([2, 0, 1])
    shape = (*relabelled.posterior["weights"].shape[:2], 3)
    moved = relabelled.copy()
    moved.posterior = relabel_module._permute_dataset(relabelled.posterior, np.broadcast_to(g, shape))
    np.testing.assert_allclose(
        membership_probabilities(moved)["mean"].values,
        membership_probabilities(relabelled)["mean"].values[:, g],
    )


@settings(max_examples=6, deadline=None)
@given(seed=st.integers(0, 2**31 - 1))
def test_coclustering_invariant_to_any_relabelling(seed):
    params = true_params(2, 3, separation=2.5)
    X = sample_data(params, 12, 0)
    draws = synthetic_draws(params, 2, 20, 1, noise=0.5)
    sim = coclustering_matrix(make_idata(draws, X)).values
    switched = make_idata(permute_draws(draws, random_perms(2, 20, 3, seed)), X)
    np.testing.assert_allclose(coclustering_matrix(switched).values, sim, atol=1e-12)
    np.testing.assert_allclose(coclustering_matrix(relabel(switched, "ecr")).values, sim, atol=1e-12)


def test_assignment_draws_agree_with_exact_coclustering():
    params = true_params(2, 3, separation=2.5)
    X = sample_data(params, 15, 0)
    idata = sample_assignments(make_idata(synthetic_draws(params, 2, 250, 1, noise=0.3), X), seed=3)
    z = idata.assignments["assignments"]
    assert z.dims == ("chain", "draw", "obs") and z.dtype == np.int8
    exact = coclustering_matrix(idata).values
    mc = coclustering_matrix(idata, source="assignments").values
    # Draws (and assignments given draws) are independent: binomial standard errors, 5 SE each.
    se = np.sqrt(exact * (1 - exact) / 500)
    assert np.all(np.abs(mc - exact) <= 5 * se + 1e-9)
    again = sample_assignments(idata, seed=3).assignments["assignments"].values
    np.testing.assert_array_equal(again, z.values)


def _set_partitions(n):
    """All partitions of range(n) as canonical label arrays (restricted growth strings)."""

    def grow(prefix):
        if len(prefix) == n:
            yield np.array(prefix)
            return
        for label in range(max(prefix, default=-1) + 2):
            yield from grow([*prefix, label])

    return list(grow([]))


def test_partition_loss_matches_definitions():
    rng = np.random.default_rng(0)
    A = rng.random((6, 6))
    sim = (A + A.T) / 2
    np.fill_diagonal(sim, 1.0)
    labels = np.array([0, 0, 1, 2, 1, 0])
    same = labels[:, None] == labels[None, :]
    iu = np.triu_indices(6, 1)
    binder = np.sum(np.where(same, 1 - sim, sim)[iu])
    assert partition_loss(labels, sim, "binder") == pytest.approx(binder)
    vi = np.mean(np.log2(same.sum(1)) - 2 * np.log2((same * sim).sum(1)) + np.log2(sim.sum(1)))
    assert partition_loss(labels, sim, "vi") == pytest.approx(vi)


@pytest.mark.parametrize("loss", ["binder", "vi"])
def test_best_partition_is_the_brute_force_optimum(loss):
    params = true_params(2, 3, separation=2.5)
    X = sample_data(params, 7, 2)
    idata = make_idata(synthetic_draws(params, 2, 50, 3, noise=0.8), X)
    sim = coclustering_matrix(idata).values
    best = min(partition_loss(c, sim, loss) for c in _set_partitions(7))
    found = best_partition(idata, loss)
    assert found.expected_loss == pytest.approx(best, abs=1e-10)
    assert found.expected_loss == pytest.approx(partition_loss(found.labels, sim, loss))


def test_local_search_repairs_a_damaged_partition():
    params = true_params(2, 3, separation=8.0)
    X = sample_data(params, 30, 0)
    sim = coclustering_matrix(make_idata(synthetic_draws(params, 1, 20, 1), X)).values
    truth = canonical_labels(np.argmin(((X[:, None] - np.asarray(params.means)) ** 2).sum(-1), axis=1))
    damaged = truth.copy()
    damaged[[0, 5, 9]] = (damaged[[0, 5, 9]] + 1) % 3
    damaged[12] = 3  # a spurious singleton
    for loss in ("binder", "vi"):
        np.testing.assert_array_equal(local_search(damaged, sim, loss), truth)
    # Binder also splits one big cluster by single moves (VI's bound has a local minimum there).
    np.testing.assert_array_equal(local_search(np.zeros(30, dtype=int), sim, "binder"), truth)


def test_best_partition_recovers_separated_clusters_and_ignores_labels():
    params = true_params(2, 3, separation=8.0)
    X = sample_data(params, 40, 0)
    truth = canonical_labels(np.argmin(((X[:, None] - np.asarray(params.means)) ** 2).sum(-1), axis=1))
    draws = synthetic_draws(params, 2, 30, 1)
    switched = make_idata(permute_draws(draws, random_perms(2, 30, 3, 4)), X)
    for loss in ("binder", "vi"):
        part = best_partition(switched, loss)
        np.testing.assert_array_equal(part.labels, truth)
        np.testing.assert_array_equal(best_partition(relabel(switched), loss).labels, truth)
    with pytest.raises(ValueError, match="loss"):
        best_partition(switched, "nope")
