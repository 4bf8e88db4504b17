import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import stats

from bayesgmm import densities
from bayesgmm.params import GMMParams


def random_params(rng, n_components, n_features):
    A = rng.normal(size=(n_components, n_features, n_features))
    cov = A @ np.swapaxes(A, 1, 2) + 0.5 * np.eye(n_features)
    return GMMParams.from_covariances(
        rng.dirichlet(np.ones(n_components)), rng.normal(size=(n_components, n_features)), cov
    )


@pytest.mark.parametrize("n_features", [1, 2, 4])
def test_component_log_prob_matches_scipy(rng, n_features):
    p = random_params(rng, 3, n_features)
    X = rng.normal(size=(7, n_features))
    got = np.asarray(densities.component_log_prob(p, X))
    cov = np.asarray(p.covariances)
    want = np.stack(
        [stats.multivariate_normal(p.means[k], cov[k]).logpdf(X).reshape(-1) for k in range(3)], axis=1
    )
    np.testing.assert_allclose(got, want, rtol=1e-10)


@pytest.mark.parametrize("n_features", [1, 2, 4, 10])
def test_expanded_component_log_prob_matches_scipy(rng, n_features):
    p = random_params(rng, 3, n_features)
    X = rng.normal(size=(50, n_features)) * 2
    cov = np.asarray(p.covariances)
    want = np.stack(
        [stats.multivariate_normal(p.means[k], cov[k]).logpdf(X).reshape(-1) for k in range(3)], axis=1
    )
    got = np.asarray(densities.component_log_prob_expanded(p, X))
    # Exact to eps times the size of the terms that cancel, x'Px + mu'P mu (see its docstring).
    precision = np.linalg.inv(cov)
    terms = np.einsum("ni,kij,nj->nk", X, precision, X) + np.einsum(
        "ki,kij,kj->k", p.means, precision, p.means
    )
    np.testing.assert_array_less(np.abs(got - want), 20 * np.finfo(np.float64).eps * (terms + np.abs(want)))
    # float32: the same bound in float32's eps.
    p32 = GMMParams(*(jnp.asarray(a, jnp.float32) for a in p))
    got32 = densities.component_log_prob_expanded(p32, jnp.asarray(X, jnp.float32))
    assert got32.dtype == jnp.float32
    got32 = np.asarray(got32, np.float64)
    np.testing.assert_array_less(np.abs(got32 - want), 20 * np.finfo(np.float32).eps * (terms + np.abs(want)))


def test_quadratic_features_are_the_upper_triangle_of_outer_products(rng):
    X = rng.normal(size=(5, 4))
    rows, cols = np.triu_indices(4)
    np.testing.assert_allclose(densities.quadratic_features(X), X[:, rows] * X[:, cols], rtol=1e-15)


def test_log_prob_is_brute_force_sum_over_assignments(rng):
    """The log-sum-exp marginal equals summing the joint over all K^N assignment vectors."""
    p = random_params(rng, 3, 2)
    X = rng.normal(size=(5, 2))
    joint = np.asarray(densities.joint_log_prob(p, X))  # (n_obs, K)
    total = np.logaddexp.reduce(
        [sum(joint[i, z[i]] for i in range(5)) for z in itertools.product(range(3), repeat=5)]
    )
    np.testing.assert_allclose(float(densities.log_prob(p, X).sum()), total, rtol=1e-12)


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 2**31 - 1), perm_seed=st.integers(0, 1000))
def test_permuting_components_permutes_responsibilities(seed, perm_seed):
    rng = np.random.default_rng(seed)
    p = random_params(rng, 4, 2)
    X = rng.normal(size=(6, 2)) * 2
    perm = np.random.default_rng(perm_seed).permutation(4)
    r = np.asarray(densities.responsibilities(p, X))
    r_perm = np.asarray(densities.responsibilities(p.permute(perm), X))
    np.testing.assert_allclose(r.sum(axis=1), 1.0, rtol=1e-12)
    np.testing.assert_allclose(r_perm, r[:, perm], atol=1e-12)
    np.testing.assert_allclose(densities.log_prob(p.permute(perm), X), densities.log_prob(p, X), rtol=1e-12)


def test_far_points_stay_finite():
    """Log space: a point 1e3 sd away has a finite log density and valid responsibilities."""
    p = GMMParams(jnp.array([0.5, 0.5]), jnp.array([[0.0], [1.0]]), jnp.ones((2, 1, 1)))
    X = jnp.array([[1e3], [-1e3]])
    assert np.isfinite(densities.log_prob(p, X)).all()
    np.testing.assert_allclose(densities.responsibilities(p, X).sum(axis=1), 1.0)


def test_sample_moments(rng):
    p = random_params(rng, 2, 2)
    X, labels = densities.sample(p, jax.random.PRNGKey(0), 200_000)
    X, labels = np.asarray(X), np.asarray(labels)
    # Monte Carlo tolerance: 5 standard errors of a proportion and of a mean.
    w = np.asarray(p.weights)
    se = np.sqrt(w * (1 - w) / len(labels))
    assert np.all(np.abs(np.bincount(labels) / len(labels) - w) < 5 * se)
    for k in range(2):
        Xk = X[labels == k]
        sd = np.sqrt(np.diag(np.asarray(p.covariances[k])) / len(Xk))
        assert np.all(np.abs(Xk.mean(0) - np.asarray(p.means[k])) < 5 * sd)


def test_unstandardize_density_jacobian(rng):
    """Densities in user units = standardised density minus log|scale| per observation."""
    p = random_params(rng, 2, 3)
    loc, scale = rng.normal(size=3), rng.uniform(0.5, 4, size=3)
    Z = rng.normal(size=(4, 3))
    X = loc + Z * scale
    user = p.unstandardize(loc, scale)
    np.testing.assert_allclose(
        densities.log_prob(user, X), densities.log_prob(p, Z) - np.log(scale).sum(), rtol=1e-12
    )


def test_over_draws_lifts_over_chain_and_draw_and_compiles_once(rng):
    draws = [random_params(rng, 3, 2) for _ in range(6)]
    stacked = GMMParams(
        *(
            np.stack([np.asarray(getattr(p, f)) for p in draws]).reshape(
                2, 3, *np.shape(getattr(draws[0], f))
            )
            for f in GMMParams._fields
        )
    )
    X = rng.normal(size=(5, 2))
    got = np.asarray(densities.over_draws(densities.log_prob, stacked, X, batch_size=4))
    want = np.stack([np.asarray(densities.log_prob(p, X)) for p in draws]).reshape(2, 3, 5)
    np.testing.assert_allclose(got, want, rtol=1e-12)
    n_programs = densities._map_draws_jit._cache_size()
    densities.over_draws(densities.log_prob, GMMParams(*(a + 0.0 for a in stacked)), X + 1.0, batch_size=4)
    assert densities._map_draws_jit._cache_size() == n_programs
