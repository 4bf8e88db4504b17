"""Run NUTS chains across JAX's local devices, compiled once per sampler.

numpyro's own ``chain_method="parallel"`` wraps each run in a new ``pmap`` whose function
closes over the model's arguments, so every run compiles again, and it needs one device per
chain. ``ChainsOverDevices`` is a ``chain_method`` that keeps one program per sampler (a
``shard_map`` over the devices), takes the data as an argument of it (refits with new data of
the same shape reuse the program) and runs the chains that share a device one after another
(``lax.map``), so that 4 chains on a 2-core machine run 2 at a time without more devices than
cores.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from functools import partial

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax
from jax.sharding import Mesh
from jax.sharding import PartitionSpec as P


def chain_layout(num_chains: int, n_devices: int, pad: bool = True) -> tuple[int, int]:
    """Return ``(devices used, chains per device)`` for ``num_chains`` chains.

    The fewest chains per device that the devices allow, then the fewest devices that
    hold them; the last device may run copies of the first chains to fill its share
    (dropped afterwards), which costs no time while the other devices work. With
    ``pad=False`` (numpyro's progress bars count the chains) the most devices that share
    the chains evenly.

    Examples
    --------
    >>> chain_layout(4, 2), chain_layout(4, 8), chain_layout(3, 2), chain_layout(5, 4)
    ((2, 2), (4, 1), (2, 2), (3, 2))
    >>> chain_layout(3, 2, pad=False), chain_layout(6, 4, pad=False)
    ((1, 3), (3, 2))
    """
    if not pad:
        n_used = max(d for d in range(1, max(1, min(n_devices, num_chains)) + 1) if num_chains % d == 0)
        return n_used, num_chains // n_used
    per_device = math.ceil(num_chains / max(1, min(n_devices, num_chains)))
    return math.ceil(num_chains / per_device), per_device


class ChainsOverDevices:
    """A numpyro ``chain_method`` running ``num_chains`` chains over the local devices.

    Parameters
    ----------
    num_chains : int
    devices : sequence of jax.Device, optional
        ``jax.local_devices()`` by default.
    pad : bool
        As for ``chain_layout``.

    Examples
    --------
    >>> method = ChainsOverDevices(4, jax.local_devices()[:1])
    >>> method.n_devices, method.per_device
    (1, 4)
    """

    def __init__(self, num_chains: int, devices: list | None = None, pad: bool = True) -> None:
        devices = list(devices if devices is not None else jax.local_devices())
        self.num_chains = num_chains
        self.n_devices, self.per_device = chain_layout(num_chains, len(devices), pad)
        self.devices = devices[: self.n_devices]
        self._programs: dict = {}

    def __call__(self, one_chain: partial) -> Callable:
        """Map numpyro's ``partial(_single_chain_mcmc, args=..., kwargs=..., ...)`` over the chains."""
        options = dict(one_chain.keywords)
        args, kwargs = options.pop("args"), options.pop("kwargs")
        key = (one_chain.func, tuple(sorted(options.items())))
        if key not in self._programs:
            self._programs[key] = self._program(one_chain.func, options)
        program = self._programs[key]
        # On the host: eager operations on arrays spread over several devices have aborted
        # the process (jaxlib 0.10.2, CPU), and numpyro reshapes these.
        return lambda chain_args: jax.device_get(program(chain_args, args, kwargs))

    def _program(self, single_chain: Callable, options: dict) -> Callable:
        """One jitted program: fold the chains onto the devices, run them, unfold them."""

        def on_device(chain_args: tuple, args: tuple, kwargs: dict) -> tuple:
            local = jax.tree_util.tree_map(lambda leaf: leaf[0], chain_args)
            out = lax.map(lambda one: single_chain(one, args=args, kwargs=kwargs, **options), local)
            return jax.tree_util.tree_map(lambda leaf: leaf[None], out)

        mapped = jax.shard_map(
            on_device,
            mesh=Mesh(np.array(self.devices), ("chain",)),
            in_specs=(P("chain"), P(), P()),
            out_specs=P("chain"),
            # numpyro's loops carry values that become per-chain (varying) inside.
            check_vma=False,
        )

        def run(chain_args: tuple, args: tuple, kwargs: dict) -> tuple:
            return self._unfold(mapped(self._fold(chain_args), args, kwargs))

        return jax.jit(run)

    def _fold(self, chain_args: tuple) -> tuple:
        """``(num_chains, ...)`` leaves to ``(n_devices, per_device, ...)``, padding with the first chains."""
        padded = self.n_devices * self.per_device

        def fold(leaf: jax.Array) -> jax.Array:
            if padded > self.num_chains:
                leaf = jnp.concatenate([leaf, leaf[: padded - self.num_chains]])
            return leaf.reshape((self.n_devices, self.per_device) + leaf.shape[1:])

        return jax.tree_util.tree_map(fold, chain_args)

    def _unfold(self, outputs: tuple) -> tuple:
        def unfold(leaf: jax.Array) -> jax.Array:
            # Not -1: a leaf with a zero-length axis (no sticks when K = 1) leaves it undefined.
            return leaf.reshape((leaf.shape[0] * leaf.shape[1],) + leaf.shape[2:])[: self.num_chains]

        return jax.tree_util.tree_map(unfold, outputs)
