"""Stick-breaking variables of a relabelled posterior, recomputed from its weights."""

from __future__ import annotations

import numpy as np
import xarray as xr


def sticks_from_weights(weights: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Stick-breaking proportions that give ``weights``: the inverse of ``models.stick_breaking``.

    Parameters
    ----------
    weights : ndarray, shape (..., n_components)
        Nonnegative, summing to one along the last axis.

    Returns
    -------
    sticks : ndarray, shape (..., n_components - 1)
        ``v_k = w_k / sum_{j>=k} w_j``: the share of the stick left before component ``k``
        that component ``k`` takes. Where nothing is left (``sum_{j>=k} w_j == 0``) any
        share gives the same weights; it is set to 0.
    remainder : ndarray, shape (...)
        ``prod_k (1 - v_k)``, the last weight.

    Examples
    --------
    >>> sticks, rest = sticks_from_weights(np.array([0.25, 0.5, 0.25]))
    >>> sticks.tolist(), float(rest)
    ([0.25, 0.6666666666666666], 0.25)
    """
    weights = np.asarray(weights, dtype=np.float64)
    # The mass left before each component as a sum of the weights after it, not as
    # 1 - cumsum: the small weights at the end of a stick would be lost to cancellation.
    left = np.flip(np.cumsum(np.flip(weights, -1), axis=-1), -1)[..., :-1]
    head = weights[..., :-1]
    sticks = np.divide(head, left, out=np.zeros_like(head), where=left > 0)
    return np.clip(sticks, 0.0, 1.0), weights[..., -1]


def rebreak_sticks(post: xr.Dataset) -> None:
    """Recompute ``sticks`` and ``stick_remainder`` of ``post`` (in place) from its weights."""
    if "sticks" not in post and "stick_remainder" not in post:
        return
    weights = post["weights"].transpose("chain", "draw", "component")
    sticks, remainder = sticks_from_weights(weights.values)
    if "sticks" in post:
        old = post["sticks"].transpose("chain", "draw", "stick")
        post["sticks"] = old.copy(data=sticks.astype(old.dtype)).transpose(*post["sticks"].dims)
    if "stick_remainder" in post:
        old = post["stick_remainder"].transpose("chain", "draw")
        post["stick_remainder"] = old.copy(data=remainder.astype(old.dtype)).transpose(
            *post["stick_remainder"].dims
        )
