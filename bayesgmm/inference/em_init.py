"""Starting responsibilities for EM, as scikit-learn's ``init_params`` define them.

Each function maps a key and the data to responsibilities of shape (n_obs, n_components);
``fit_em`` turns them into parameters with one M-step and vmaps them over restarts.

- ``kmeans``: Lloyd's algorithm from a k-means++ seeding, hard assignments.
- ``k-means++``: one observation per component, chosen by k-means++.
- ``random``: uniform random responsibilities, normalised per row.
- ``random_from_data``: one observation per component, chosen uniformly without replacement.
"""

from __future__ import annotations

from functools import partial
from math import log

import jax
import jax.numpy as jnp

INIT_PARAMS = ("kmeans", "k-means++", "random", "random_from_data")


def _sq_dist(X, centers):
    """Squared distances, shape (n_obs, n_centers)."""
    return jnp.maximum(
        jnp.sum(X * X, axis=1)[:, None] - 2 * X @ centers.T + jnp.sum(centers * centers, axis=1), 0.0
    )


def kmeans_plusplus(key, X, w, n_components: int):
    """Greedy k-means++ seeding (Arthur & Vassilvitskii 2007, as in scikit-learn).

    Parameters
    ----------
    key : jax key
    X : array, shape (n_obs, n_features)
    w : array, shape (n_obs,)
        Observation weights.
    n_components : int

    Returns
    -------
    int array, shape (n_components,)
        Indices of the chosen observations.
    """
    n_trials = 2 + int(log(n_components))
    key, sub = jax.random.split(key)
    first = jax.random.categorical(sub, jnp.log(w))
    d2 = _sq_dist(X, X[first][None])[:, 0]
    idx = jnp.zeros(n_components, first.dtype).at[0].set(first)

    def body(i, carry):
        key, idx, d2 = carry
        key, sub = jax.random.split(key)
        pot = w * d2
        # All remaining mass at zero distance (duplicated rows): fall back to the weights.
        logits = jnp.where(jnp.sum(pot) > 0, jnp.log(pot), jnp.log(w))
        cands = jax.random.categorical(sub, logits, shape=(n_trials,))
        d2c = jnp.minimum(d2[None, :], _sq_dist(X, X[cands]).T)
        best = jnp.argmin(d2c @ w)
        return key, idx.at[i].set(cands[best]), d2c[best]

    _, idx, _ = jax.lax.fori_loop(1, n_components, body, (key, idx, d2))
    return idx


def kmeans_labels(key, X, w, n_components: int, max_iter: int = 300, rel_tol: float = 1e-4):
    """Lloyd's algorithm from a k-means++ seeding; returns labels, shape (n_obs,).

    Stops when the total squared centre shift falls below ``rel_tol`` times the mean
    feature variance (scikit-learn's tolerance) or after ``max_iter`` iterations.
    """
    centers = X[kmeans_plusplus(key, X, w, n_components)]
    mean = w @ X / jnp.sum(w)
    tol = rel_tol * jnp.mean(w @ (X - mean) ** 2 / jnp.sum(w))

    def assign(c):
        return jnp.argmin(_sq_dist(X, c), axis=1)

    def cond(carry):
        _, shift, i = carry
        return (shift > tol) & (i < max_iter)

    def body(carry):
        c, _, i = carry
        onehot = jax.nn.one_hot(assign(c), n_components, dtype=X.dtype) * w[:, None]
        counts = jnp.sum(onehot, axis=0)
        # An empty cluster keeps its centre instead of dividing by zero.
        new = jnp.where(counts[:, None] > 0, onehot.T @ X / jnp.maximum(counts, 1e-300)[:, None], c)
        return new, jnp.sum((new - c) ** 2), i + 1

    centers, _, _ = jax.lax.while_loop(cond, body, (centers, jnp.asarray(jnp.inf, X.dtype), 0))
    return assign(centers)


@partial(jax.jit, static_argnames=("n_components", "method"))
def initial_resp(key, X, w, *, n_components: int, method: str):
    """Initial responsibilities, shape (n_obs, n_components), for one restart."""
    n_obs = X.shape[0]
    if method == "kmeans":
        return jax.nn.one_hot(kmeans_labels(key, X, w, n_components), n_components, dtype=X.dtype)
    if method == "random":
        resp = jax.random.uniform(key, (n_obs, n_components), X.dtype)
        return resp / jnp.sum(resp, axis=1, keepdims=True)
    if method == "k-means++":
        idx = kmeans_plusplus(key, X, w, n_components)
    elif method == "random_from_data":
        idx = jax.random.choice(key, n_obs, (n_components,), replace=False, p=w / jnp.sum(w))
    else:
        raise ValueError(f"init_params must be one of {INIT_PARAMS}, got {method!r}.")
    return jnp.zeros((n_obs, n_components), X.dtype).at[idx, jnp.arange(n_components)].set(1.0)
