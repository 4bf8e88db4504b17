"""Starting points of EM restarts, drawn as scikit-learn's ``GaussianMixture`` draws them.

The random draws of each ``init_params`` method are scikit-learn's own, on the host and from
scikit-learn's random state, so that a ``random_state`` starts a restart where scikit-learn
starts it:

- ``kmeans``: Lloyd's algorithm (in the compiled program) from the k-means++ seeds that
  ``KMeans(n_clusters, n_init=1, random_state=rng)`` draws (on the data centred on their
  mean, as ``KMeans`` seeds them), hard assignments. The partition is scikit-learn's except
  where Lloyd's iterations meet an empty cluster (scikit-learn moves it to a far
  observation, this keeps its centre) or a near tie.
- ``k-means++``: one observation per component, chosen by ``kmeans_plusplus``.
- ``random``: uniform random responsibilities, normalised per row.
- ``random_from_data``: one observation per component, chosen uniformly without replacement.

The starting parameters are then scikit-learn's too, but for two of its quirks with the
one-observation starts (``k-means++``, ``random_from_data``): it divides their weights by
``n_obs`` rather than by their sum, and its tied covariance, which assumes responsibilities
that sum to one in every row, then depends on where the data lie (it is computed about the
origin; here about the data's mean).

Restarts draw one after another from one random state, as scikit-learn's loop over ``n_init``
does, so restart ``i`` is the same whatever ``n_init`` is. With ``sample_weight`` (which
scikit-learn's ``GaussianMixture`` does not take) k-means and k-means++ weigh the observations
and ``random_from_data`` draws them with probability proportional to their weight.

Only the draws are on the host: a call of scikit-learn's ``KMeans`` has a fixed cost (its
thread-pool set-up) larger than a whole small EM fit, so Lloyd's iterations stay in the
compiled program. ``initial_starts`` returns row indices (or, for ``random``, the
responsibilities) and ``resp_from_start`` turns one restart's entry into responsibilities
there, which ``em.params_from_resp`` turns into parameters.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import jax
import jax.numpy as jnp
import numpy as np
from numpy.typing import ArrayLike, DTypeLike
from sklearn.cluster import kmeans_plusplus

if TYPE_CHECKING:
    from bayesgmm._typing import EMSeed

INIT_PARAMS = ("kmeans", "k-means++", "random", "random_from_data")


def random_state(
    seed: EMSeed,
) -> np.random.RandomState:
    """Make a ``numpy`` RandomState from an int, a RandomState, a Generator, a JAX key or None.

    An int gives ``RandomState(seed)``, as scikit-learn's ``check_random_state`` does, and a
    RandomState is drawn from (and so advanced), as scikit-learn does; None is fresh entropy.

    Parameters
    ----------
    seed : int, RandomState, Generator, JAX key or None

    Returns
    -------
    numpy.random.RandomState
    """
    if isinstance(seed, np.random.RandomState):
        return seed
    if seed is None:
        return np.random.RandomState()
    if isinstance(seed, np.random.Generator):
        return np.random.RandomState(seed.integers(2**31 - 1))
    if isinstance(seed, jax.Array):
        data = jax.random.key_data(seed) if jnp.issubdtype(seed.dtype, jax.dtypes.prng_key) else seed
        return np.random.RandomState(np.asarray(data, dtype=np.uint32).ravel())
    return np.random.RandomState(int(seed))


def initial_starts(
    seed: EMSeed,
    X: ArrayLike,
    sample_weight: ArrayLike | None,
    n_components: int,
    method: str,
    n_init: int,
    n_rows: int,
) -> np.ndarray:
    """Draw the starts of ``n_init`` restarts, stacked on a leading restart axis.

    Parameters
    ----------
    seed : int, RandomState, Generator, JAX key or None
        See ``random_state``.
    X : array, shape (n_obs, n_features)
        The data in the user's coordinates and dtype (what scikit-learn's k-means sees).
    sample_weight : array, shape (n_obs,), or None
    n_components : int
    method : {"kmeans", "k-means++", "random", "random_from_data"}
    n_init : int
    n_rows : int
        Rows of the padded data in the program; padding rows get label 0 or zero
        responsibilities (their weight is zero).

    Returns
    -------
    array
        ``kmeans``, ``k-means++`` and ``random_from_data``: int32 row indices (the seeds or
        the chosen observations), shape (n_init, n_components); ``random``: responsibilities,
        shape (n_init, n_rows, n_components), in ``X``'s dtype.
    """
    if method not in INIT_PARAMS:
        raise ValueError(f"init_params must be one of {INIT_PARAMS}, got {method!r}.")
    rng = random_state(seed)
    n_obs = X.shape[0]
    if sample_weight is not None and np.count_nonzero(sample_weight) < n_components:
        raise ValueError(
            f"init_params={method!r} needs at least n_components={n_components} observations with "
            f"positive sample_weight, got {np.count_nonzero(sample_weight)}."
        )
    if method == "kmeans":
        X = X - X.mean(axis=0)
    starts = np.stack([_one_start(rng, X, sample_weight, n_components, method) for _ in range(n_init)])
    if method == "random":
        return np.pad(starts, ((0, 0), (0, n_rows - n_obs), (0, 0)))
    return starts.astype(np.int32)


def _one_start(rng, X, sample_weight, n_components, method):
    """One restart's draws, with scikit-learn's calls (``BaseMixture._initialize_parameters``)."""
    n_obs = X.shape[0]
    if method == "random":
        resp = rng.uniform(size=(n_obs, n_components)).astype(X.dtype)
        return resp / resp.sum(axis=1)[:, np.newaxis]
    if method == "random_from_data":
        p = None if sample_weight is None else sample_weight / sample_weight.sum()
        return rng.choice(n_obs, size=n_components, replace=False, p=p)
    # kmeans (KMeans's own seeding, on the centred data it is given) and k-means++
    return kmeans_plusplus(X, n_components, sample_weight=sample_weight, random_state=rng)[1]


def resp_from_start(
    start: jnp.ndarray, Z: jnp.ndarray, w: jnp.ndarray, n_components: int, method: str
) -> jnp.ndarray:
    """Compute starting responsibilities from one restart's ``initial_starts`` entry.

    Parameters
    ----------
    start : array
        One restart's entry of ``initial_starts``.
    Z : array, shape (n_rows, n_features)
        The program's (centred, padded) data.
    w : array, shape (n_rows,)
        Their weights (zero for padding rows).
    n_components : int
    method : str
        ``init_params``.

    Returns
    -------
    array, shape (n_rows, n_components)
    """
    if method == "random":
        return start.astype(Z.dtype)
    if method == "kmeans":
        return jax.nn.one_hot(lloyd_labels(Z, w, Z[start]), n_components, dtype=Z.dtype)
    return jnp.zeros((Z.shape[0], n_components), Z.dtype).at[start, jnp.arange(n_components)].set(1.0)


def _sq_dist(X, centers):
    """Squared distances, shape (n_obs, n_centers)."""
    return jnp.maximum(
        jnp.sum(X * X, axis=1)[:, None] - 2 * X @ centers.T + jnp.sum(centers * centers, axis=1), 0.0
    )


def lloyd_labels(
    X: ArrayLike, w: jnp.ndarray | None, centers: jnp.ndarray, max_iter: int = 300, rel_tol: float = 1e-4
) -> jnp.ndarray:
    """Run Lloyd's algorithm from ``centers`` and return the final labels.

    Stops, as scikit-learn's ``KMeans`` does, when the total squared centre shift falls to
    ``rel_tol`` times the mean feature variance or after ``max_iter`` iterations; the labels
    are those of the final centres.

    Parameters
    ----------
    X : array, shape (n_obs, n_features)
    w : array, shape (n_obs,), or None
        Observation weights.
    centers : array, shape (n_components, n_features)
    max_iter : int
    rel_tol : float

    Returns
    -------
    int array, shape (n_obs,)
    """
    n_components = centers.shape[0]
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
        new = jnp.where(counts[:, None] > 0, onehot.T @ X / jnp.maximum(counts, 1e-30)[:, None], c)
        return new, jnp.sum((new - c) ** 2), i + 1

    centers, _, _ = jax.lax.while_loop(cond, body, (centers, jnp.asarray(jnp.inf, X.dtype), 0))
    return assign(centers)


def check_options(
    init_params: str, dtype: DTypeLike, n_init: int, max_iter: int, tol: float, reg_covar: float
) -> np.dtype:
    """Check ``fit_em``'s settings; return ``dtype`` as a numpy dtype."""
    if init_params not in INIT_PARAMS:
        raise ValueError(f"init_params must be one of {INIT_PARAMS}, got {init_params!r}.")
    dtype = np.dtype(dtype)
    if dtype not in (np.float32, np.float64):
        raise ValueError(f"dtype must be float32 or float64, got {dtype}.")
    for name, value in (("n_init", n_init), ("max_iter", max_iter)):
        if int(value) != value or value < (1 if name == "n_init" else 0):
            raise ValueError(
                f"{name} must be a {'positive' if name == 'n_init' else 'non-negative'} integer."
            )
    if not (tol >= 0 and reg_covar >= 0):
        raise ValueError("tol and reg_covar must be non-negative.")
    return dtype
