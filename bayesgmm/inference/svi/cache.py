"""The compiled programs of SVI fits, kept per configuration in a bounded cache.

Refits of the same configuration (model, guide, loss, batching, dtype, optimizer) find their
``program.Program`` here and reuse its compiled code; the least recently used configurations
are dropped, with their compiled code.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Hashable
from typing import TYPE_CHECKING

import numpy as np
import optax
from numpy.typing import DTypeLike

from bayesgmm.inference.svi.config import Batching, Objective

if TYPE_CHECKING:
    from bayesgmm.inference.svi.program import Program


class ProgramCache:
    """The ``Program`` of each fit configuration, the least recently used evicted past ``maxsize``.

    A key describes everything the compiled programs depend on (see ``program_key``); the
    optimizer is part of it as the object itself, which the key then keeps alive, so that
    it cannot be mistaken for a later optimizer. Evicting a program frees its compiled code.

    Parameters
    ----------
    maxsize : int
        Configurations kept at most.

    Examples
    --------
    >>> cache = ProgramCache(maxsize=1)
    >>> cache.get("a", lambda: 1), cache.get("a", lambda: 2), cache.get("b", lambda: 3), len(cache)
    (1, 1, 3, 1)
    """

    def __init__(self, maxsize: int = 16) -> None:
        self.maxsize = maxsize
        self._programs: OrderedDict = OrderedDict()

    def __len__(self) -> int:
        """Return the number of configurations held."""
        return len(self._programs)

    def get(self, key: Hashable, build: Callable[[], Program]) -> Program:
        """Return the program of ``key``, built by ``build()`` if it is not held."""
        if key in self._programs:
            self._programs.move_to_end(key)
            return self._programs[key]
        program = self._programs[key] = build()
        while len(self._programs) > self.maxsize:
            self._programs.popitem(last=False)
        return program

    def clear(self) -> None:
        """Drop every program."""
        self._programs.clear()


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
