"""EM's passes over the data spread over the local devices, by blocks of rows.

Every pass of EM is a sum over rows. With several devices (the CPU devices bayesgmm asks
JAX for, one per core, or several GPUs) each device scans its own contiguous share of the
row blocks and the partial sums are added (``psum``); the parameters are replicated. Each
device then runs one thread of the pass, which keeps every core busy through the parts of
an iteration a single device runs on one core (the softmax over components, the loop).
"""

from __future__ import annotations

from collections.abc import Callable
from functools import lru_cache

import jax
import numpy as np
from jax.sharding import Mesh
from jax.sharding import PartitionSpec as P

#: The mesh axis of the row blocks.
ROWS = "rows"


def default_n_shards(n_obs: int, block_size: int) -> int:
    """Return over how many local devices a fit of ``n_obs`` rows spreads its blocks.

    All of them when each gets at least two blocks, else one (small data gain nothing).

    Examples
    --------
    >>> default_n_shards(100, 4096)
    1
    """
    n_devices = jax.local_device_count()
    return n_devices if n_obs >= 2 * n_devices * block_size else 1


@lru_cache(maxsize=8)
def row_mesh(n_shards: int) -> Mesh:
    """Return the mesh of the first ``n_shards`` local devices along ``ROWS``."""
    return Mesh(np.array(jax.local_devices()[:n_shards]), (ROWS,))


def over_shards(fn: Callable, n_shards: int, summed: tuple[bool, ...]) -> Callable:
    """Run ``fn(params, blocks, w_blocks)`` on ``n_shards`` devices, each on its share of the blocks.

    Parameters
    ----------
    fn : callable
        ``fn(params, blocks, w_blocks) -> tuple``, a pass over row blocks (the leading axis
        of ``blocks`` and ``w_blocks``, a multiple of ``n_shards``).
    n_shards : int
        1 returns ``fn`` itself.
    summed : tuple of bool
        For each output, True when it is a sum over rows (added over the devices), False when
        it has one entry per row (concatenated in row order).

    Returns
    -------
    callable
        Same signature and results as ``fn``, up to the order of floating-point sums.

    Examples
    --------
    >>> import jax.numpy as jnp
    >>> total = over_shards(lambda p, b, w: (jnp.sum(b * w),), 1, (True,))
    >>> float(total(None, jnp.ones((2, 3)), jnp.ones((2, 3)))[0])
    6.0
    """
    if n_shards == 1:
        return fn

    def local(params, blocks, w_blocks):
        out = fn(params, blocks, w_blocks)
        return tuple(jax.lax.psum(o, ROWS) if s else o for o, s in zip(out, summed, strict=True))

    return jax.shard_map(
        local,
        mesh=row_mesh(n_shards),
        in_specs=(P(), P(ROWS), P(ROWS)),
        out_specs=tuple(P() if s else P(ROWS) for s in summed),
        # The passes scan with zero-initialised carries that become per-device sums.
        check_vma=False,
    )
