"""A bounded cache of compiled programs, one entry per fit configuration.

Refits of a configuration find what its first fit compiled; the least recently used
configurations are dropped, and with them their compiled code.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Hashable
from typing import Any


class ProgramCache:
    """The compiled programs of each fit configuration, the least recently used evicted past ``maxsize``.

    A key describes everything the compiled programs depend on (SVI's ``program_key``, NUTS's
    ``nuts._sampler_key``); objects in a key are kept alive by it, so that a later object
    cannot be mistaken for them. Evicting an entry frees its compiled code.

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

    def get(self, key: Hashable, build: Callable[[], Any]) -> Any:
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
