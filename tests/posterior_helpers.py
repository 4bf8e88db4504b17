"""Synthetic mixture posteriors for the posterior tests: known draws, known permutations."""

from __future__ import annotations

import jax
import numpy as np

import bayesgmm  # noqa: F401  (turns on x64 before any array is made)
from bayesgmm import densities
from bayesgmm.inference.idata import build_inference_data
from bayesgmm.params import GMMParams


def true_params(n_features: int = 2, n_components: int = 3, separation: float = 6.0) -> GMMParams:
    """Well-separated components on a line (1-D) or a ring (2-D)."""
    angles = 2 * np.pi * np.arange(n_components) / n_components
    if n_features == 1:
        means = separation * np.arange(n_components, dtype=float)[:, None]
    else:
        means = separation * np.stack([np.cos(angles), np.sin(angles)], axis=1)
    weights = np.linspace(1.0, 2.0, n_components)
    tril = np.broadcast_to(np.eye(n_features), (n_components, n_features, n_features))
    return GMMParams(weights / weights.sum(), means, np.array(tril))


def synthetic_draws(params: GMMParams, n_chains: int, n_draws: int, seed: int, noise: float = 0.1):
    """Draws scattered around ``params``, leaves shaped (n_chains, n_draws, ...)."""
    rng = np.random.default_rng(seed)
    lead = (n_chains, n_draws)
    weights = rng.dirichlet(200 * np.asarray(params.weights), size=lead)
    means = np.asarray(params.means) + noise * rng.standard_normal((*lead, *np.shape(params.means)))
    tril = np.broadcast_to(np.asarray(params.scale_tril), (*lead, *np.shape(params.scale_tril)))
    return GMMParams(weights, means, np.array(tril))


def permute_draws(draws: GMMParams, perms: np.ndarray) -> GMMParams:
    """Apply one permutation per draw; ``perms`` has shape (n_chains, n_draws, n_components)."""
    return GMMParams(
        np.take_along_axis(np.asarray(draws.weights), perms, axis=-1),
        np.take_along_axis(np.asarray(draws.means), perms[..., None], axis=-2),
        np.take_along_axis(np.asarray(draws.scale_tril), perms[..., None, None], axis=-3),
    )


def random_perms(n_chains: int, n_draws: int, n_components: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return np.argsort(rng.random((n_chains, n_draws, n_components)), axis=-1)


def make_idata(draws: GMMParams, X: np.ndarray, lp: np.ndarray | None = None):
    """InferenceData of user-unit draws (standardisation loc 0, scale 1)."""
    n_features = X.shape[1]
    sample_stats = None if lp is None else {"lp": lp}
    return build_inference_data(
        GMMParams(*(np.asarray(a) for a in draws)),
        X,
        np.zeros(n_features),
        np.ones(n_features),
        key=jax.random.PRNGKey(0),
        sample_stats=sample_stats,
    )


def sample_data(params: GMMParams, n_obs: int, seed: int) -> np.ndarray:
    X, _ = densities.sample(GMMParams(*(np.asarray(a) for a in params)), jax.random.PRNGKey(seed), n_obs)
    return np.asarray(X)
