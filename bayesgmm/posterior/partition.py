"""A single best partition of the observations under a loss on partitions.

Both losses need only the posterior co-clustering matrix ``P`` (obs, obs):

``"binder"``
    Expected Binder loss with equal costs,
    ``sum_{i<j} 1[c_i = c_j] (1 - P_ij) + 1[c_i != c_j] P_ij``.
``"vi"``
    Wade & Ghahramani's (2018) lower bound on the expected variation of information,
    ``(1/n) sum_i [log2 |c(i)| - 2 log2 sum_{j in c(i)} P_ij + log2 sum_j P_ij]``,
    as in R's ``mcclust.ext::minVI``.

Search (as in SALSO, Dahl et al. 2022, without its random restarts): the
candidates are the hard (MAP) partitions of up to ``max_candidates`` evenly
spaced draws and the average-linkage clusterings of ``1 - P`` cut into 1 to
``n_components + 1`` groups; the best candidate is then improved by sweeps that
move one observation at a time to the cluster (or a new one) that lowers the loss
most, until a sweep changes nothing.
"""

from __future__ import annotations

from typing import NamedTuple

import arviz as az
import numpy as np
from numpy.typing import ArrayLike
from scipy.cluster.hierarchy import fcluster, linkage
from scipy.spatial.distance import squareform

from bayesgmm.posterior.assignments import coclustering_matrix
from bayesgmm.posterior.relabel import draw_responsibilities

LOSSES = ("binder", "vi")


class BestPartition(NamedTuple):
    """Result of :func:`best_partition`.

    Attributes
    ----------
    labels : int ndarray, shape (n_obs,)
        Cluster labels ``0..n_clusters-1`` in order of first appearance.
    expected_loss : float
        The loss of ``labels`` (Binder: expected loss; VI: its lower bound).
    loss : str
    """

    labels: np.ndarray
    expected_loss: float
    loss: str


def canonical_labels(labels: ArrayLike) -> np.ndarray:
    """Relabel clusters ``0, 1, ...`` in order of first appearance: one name per partition.

    Parameters
    ----------
    labels : array-like of int, shape (n_obs,)

    Returns
    -------
    int ndarray, shape (n_obs,)

    Examples
    --------
    >>> canonical_labels([2, 2, 0, 1]).tolist()
    [0, 0, 1, 2]
    """
    _, first, inverse = np.unique(np.asarray(labels), return_index=True, return_inverse=True)
    order = np.argsort(np.argsort(first))
    return order[inverse].reshape(-1)


def _terms(loss: str, sizes, within):
    """Per-observation part of the loss, from its cluster size and ``sum_{j in c(i)} P_ij``."""
    if loss == "binder":
        return sizes - 2.0 * within
    return np.log2(sizes) - 2.0 * np.log2(within)


def partition_loss(labels: ArrayLike, sim: np.ndarray, loss: str = "binder") -> float:
    """Compute the expected Binder loss or the VI lower bound of one partition.

    Parameters
    ----------
    labels : array-like of int, shape (n_obs,)
    sim : ndarray, shape (n_obs, n_obs)
        Posterior co-clustering probabilities.
    loss : {"binder", "vi"}

    Returns
    -------
    float

    Examples
    --------
    >>> partition_loss([0, 0, 1], np.array([[1, 1, 0], [1, 1, 0], [0, 0, 1.0]]))
    0.0
    """
    labels = canonical_labels(labels)
    n_obs = labels.size
    onehot = np.eye(labels.max() + 1)[labels]
    sizes = onehot.sum(axis=0)[labels]
    within = (sim @ onehot)[np.arange(n_obs), labels]
    if loss == "binder":
        # sum_{i<j} P_ij + 1/2 sum_i sum_{j != i, same} (1 - 2 P_ij), with P_ii = 1.
        off = (sim.sum() - np.trace(sim)) / 2.0
        return float(off + 0.5 * np.sum(sizes - 2.0 * within + 1.0))
    total = np.log2(sizes) - 2.0 * np.log2(within) + np.log2(sim.sum(axis=1))
    return float(total.mean())


def _move_scores(i: int, labels, S, sizes, sim, loss: str) -> np.ndarray:
    """Sum of the per-observation terms after moving ``i`` to each cluster (last: a new one).

    ``S[j, k] = sum_{l in k} sim[j, l]``; columns of ``S`` and ``sizes`` include an empty
    last cluster. Each candidate costs O(n_obs), so one sweep is O(n_obs^2 n_clusters).
    """
    n_obs, n_clusters = S.shape
    a = labels[i]
    cand = np.arange(n_clusters)
    lab = np.broadcast_to(labels, (n_clusters, n_obs)).copy()
    lab[:, i] = cand
    new_sizes = sizes[None, :] + np.eye(n_clusters) - np.eye(n_clusters)[a]
    delta = (lab == cand[:, None]).astype(float) - (lab == a)
    within = S[np.arange(n_obs)[None, :], lab] + sim[:, i][None, :] * delta
    return _terms(loss, np.take_along_axis(new_sizes, lab, axis=1), within).sum(axis=1)


def local_search(
    labels: ArrayLike, sim: np.ndarray, loss: str = "binder", max_sweeps: int = 100
) -> np.ndarray:
    """Move single observations to better clusters until a sweep changes nothing.

    Parameters
    ----------
    labels : array-like of int, shape (n_obs,)
        The starting partition.
    sim : ndarray, shape (n_obs, n_obs)
        Posterior co-clustering probabilities.
    loss : {"binder", "vi"}
    max_sweeps : int

    Returns
    -------
    int ndarray, shape (n_obs,)
        Canonical labels of a local minimum of the loss.
    """
    labels = canonical_labels(labels)
    onehot = np.eye(labels.max() + 2)[labels]  # one empty cluster at the end
    S, sizes = sim @ onehot, onehot.sum(axis=0)
    for _ in range(max_sweeps):
        changed = False
        for i in range(labels.size):
            scores = _move_scores(i, labels, S, sizes, sim, loss)
            a, b = labels[i], int(np.argmin(scores))
            if not scores[b] < scores[a] - 1e-12:
                continue
            changed = True
            # Update S and sizes in O(n_obs) instead of recomputing sim @ onehot.
            labels[i] = b
            S[:, a] -= sim[:, i]
            S[:, b] += sim[:, i]
            sizes[a] -= 1
            sizes[b] += 1
            if b == S.shape[1] - 1:  # the empty cluster was used: add a new empty one
                S = np.hstack([S, np.zeros((S.shape[0], 1))])
                sizes = np.append(sizes, 0.0)
            if sizes[a] == 0:  # drop the emptied cluster
                S, sizes = np.delete(S, a, axis=1), np.delete(sizes, a)
                labels[labels > a] -= 1
        if not changed:
            break
    return canonical_labels(labels)


def _candidates(idata, sim: np.ndarray, max_candidates: int) -> list[np.ndarray]:
    resp = draw_responsibilities(idata)
    hard = np.argmax(resp.reshape(-1, *resp.shape[2:]), axis=-1)
    picks = np.unique(np.linspace(0, hard.shape[0] - 1, min(max_candidates, hard.shape[0])).astype(int))
    candidates = [hard[t] for t in picks]
    n_obs = sim.shape[0]
    if n_obs > 1:
        dist = squareform(np.clip(1.0 - sim, 0.0, None), checks=False)
        tree = linkage(dist, method="average")
        for k in range(1, min(n_obs, resp.shape[-1] + 1) + 1):
            candidates.append(fcluster(tree, k, criterion="maxclust") - 1)
    return candidates


def best_partition(
    idata: az.InferenceData, loss: str = "binder", max_candidates: int = 100, sim: np.ndarray | None = None
) -> BestPartition:
    """Find the partition that minimises the posterior expected loss (see the module docstring).

    Parameters
    ----------
    idata : arviz.InferenceData
    loss : {"binder", "vi"}
    max_candidates : int
        Number of draws whose MAP partitions start the search.
    sim : array, shape (n_obs, n_obs), optional
        A co-clustering matrix to use instead of ``coclustering_matrix(idata)``.

    Returns
    -------
    BestPartition
        ``labels`` (obs,), ``expected_loss`` and ``loss``.

    Examples
    --------
    >>> from bayesgmm import fit_svi, load_dataset
    >>> X, _ = load_dataset("faithful")
    >>> idata = fit_svi(X, 2, seed=0)
    >>> import numpy as np
    >>> part = best_partition(idata, loss="vi")
    >>> np.bincount(part.labels).tolist()  # cluster sizes
    [175, 97]
    """
    if loss not in LOSSES:
        raise ValueError(f"loss must be one of {LOSSES}, got {loss!r}.")
    sim = np.asarray(coclustering_matrix(idata) if sim is None else sim, dtype=float)
    candidates = _candidates(idata, sim, max_candidates)
    start = min(candidates, key=lambda c: partition_loss(c, sim, loss))
    labels = local_search(start, sim, loss)
    return BestPartition(labels, partition_loss(labels, sim, loss), loss)
