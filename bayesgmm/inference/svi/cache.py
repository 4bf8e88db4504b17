"""The compiled programs of SVI fits, kept per configuration in a bounded ``ProgramCache``.

Refits of the same configuration (model, guide, loss, batching, dtype, optimizer) find their
``program.Program`` here and reuse its compiled code; the least recently used configurations
are dropped, with their compiled code.
"""

from __future__ import annotations

import numpy as np
import optax
from numpy.typing import DTypeLike

from bayesgmm._cache import ProgramCache
from bayesgmm.inference.svi.config import Batching, Objective

__all__ = ["PROGRAMS", "ProgramCache", "program_key"]

#: The programs of ``fit_svi``'s fits in this process.
PROGRAMS = ProgramCache(maxsize=16)


def program_key(
    objective: Objective,
    batching: Batching,
    model_kwargs: dict,
    chunk_size: int,
    dtype: DTypeLike,
    optimizer: optax.GradientTransformation,
) -> tuple:
    """Return the hashable description of everything a fit's compiled programs depend on.

    Parameters
    ----------
    objective : config.Objective
    batching : config.Batching
    model_kwargs : dict
        ``gmm_model``'s keywords.
    chunk_size : int
    dtype : numpy dtype
    optimizer : optax.GradientTransformation
        A named tuple of its functions: hashable, and equal only to the same functions.
        Any other optimizer object is compared by identity.

    Returns
    -------
    tuple
    """
    try:
        hash(optimizer)
    except TypeError:
        optimizer = _Identity(optimizer)
    return (
        objective.guide,
        tuple(sorted(model_kwargs.items())),
        batching.scaled_n_obs,
        batching.batch_size,
        batching.mode,
        batching.n_shards,
        chunk_size,
        objective.num_particles,
        float(objective.renyi_alpha),
        np.dtype(dtype).str,
        optimizer,
    )


class _Identity:
    """A key for an unhashable object: equal only to a key for the same object, which it keeps alive."""

    def __init__(self, obj):
        self.obj = obj

    def __hash__(self):
        return id(self.obj)

    def __eq__(self, other):
        return isinstance(other, _Identity) and other.obj is self.obj
