"""Rows of the data spread over this process's devices: ``shard_rows`` and what the fits do with them.

Every fit takes a ``jax.Array`` whose rows are split over the local devices (a
``NamedSharding`` with the rows on one mesh axis, fully addressable), as ``shard_rows``
makes one. Each fit reads it as it reads a numpy array, so the numbers are those of the
gathered array ``np.asarray(X)`` (to rounding, or within Monte Carlo error where sums over
rows run on the devices, in another order); parameters are replicated on every device:

- ``fit_em`` and ``GaussianMixture.fit`` gather the rows to the host (they are validated,
  centred in float64 and padded there) and spread EM's row blocks over the local devices
  themselves (``inference.em.shards``).
- ``fit_svi`` places the standardised rows with ``X``'s row sharding, so that every step's
  log-likelihood sum over rows runs on the devices that hold them (the partial sums are
  added in another order: the numbers agree to rounding, the posterior within its Monte
  Carlo error). With ``batch_size`` every device takes ``batch_size / n_devices`` random
  rows of its own block in each step (a stratified minibatch, ``svi.program.local_rows``),
  its share of the sum scaled to ``n_obs`` as an unsharded minibatch's; ``batch_size``
  must be a multiple of the number of devices.
- ``fit_nuts`` keeps the rows sharded too (``keep_sharded=True``, the default): the chains
  run vectorised with replicated parameters, and XLA splits the log density's sum over
  rows by device; the draws agree with the gathered array's within Monte Carlo error. With
  ``keep_sharded=False`` it gathers the rows and gives every chain's device all of them
  (the chains, not the rows, are spread over the devices, ``inference.chains``): the draws
  are those of the gathered array, and on small data that is faster.

A global array with rows on other processes (``jax.distributed``) is another case:
``fit_em`` streams it (``inference.em.multihost``), and the other fits refuse it.
"""

from __future__ import annotations

from collections.abc import Sequence

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P
from numpy.typing import ArrayLike

__all__ = ["shard_rows"]

#: The mesh axis of the rows (EM's row blocks use the same name, ``inference.em.shards``).
ROWS = "rows"


def shard_rows(X: ArrayLike, devices: Sequence[jax.Device] | None = None) -> jax.Array:
    """Place the rows of ``X`` on ``devices``, an equal share on each.

    The rows are split in order into ``len(devices)`` contiguous blocks (a ``NamedSharding``
    over a one-axis mesh ``"rows"``; columns are not split). Every fit takes the result;
    :mod:`bayesgmm.sharding` says what each does with it (the numbers are those of
    ``np.asarray(X)``).

    Parameters
    ----------
    X : array-like, shape (n_obs, n_features) or (n_obs,)
        A numpy array, data frame or fully addressable ``jax.Array``; its dtype is kept.
    devices : sequence of jax.Device, optional
        Devices of this process; all of them (``jax.local_devices()``) by default.

    Returns
    -------
    jax.Array, shape of ``X``
        Fully addressable, ``n_obs / len(devices)`` rows on each device.

    Raises
    ------
    ValueError
        When ``n_obs`` is not a multiple of the number of devices (JAX shards evenly only).
        No rows are added: a padded row would change every fit but a weighted EM. The
        message says which devices share the rows evenly; for EM, padding with zero rows
        of zero ``sample_weight`` leaves the fit unchanged.

    Examples
    --------
    >>> import numpy as np
    >>> X = shard_rows(np.zeros((8, 2)), jax.local_devices()[:1])
    >>> X.shape, X.sharding.mesh.axis_names
    ((8, 2), ('rows',))
    """
    devices = list(jax.local_devices() if devices is None else devices)
    if not devices or any(d.process_index != jax.process_index() for d in devices):
        raise ValueError("devices must be a non-empty list of this process's devices (jax.local_devices()).")
    if hasattr(X, "to_numpy"):  # pandas
        X = X.to_numpy()
    if isinstance(X, jax.Array) and not X.is_fully_addressable:
        raise ValueError("X has rows on other processes; pass this process's rows as a numpy array.")
    X = X if isinstance(X, jax.Array) else np.asarray(X)
    if X.ndim not in (1, 2):
        raise ValueError(f"X must have shape (n_obs, n_features) or (n_obs,), got {X.shape}.")
    n_obs, n_devices = X.shape[0], len(devices)
    if n_obs % n_devices:
        even = max(k for k in range(1, n_devices + 1) if n_obs % k == 0)
        raise ValueError(
            f"X has {n_obs} rows, which {n_devices} devices cannot share evenly: pass "
            f"devices=jax.local_devices()[:{even}], or drop {n_obs % n_devices} rows, or (fit_em "
            f"only) append {-n_obs % n_devices} zero rows with sample_weight 0."
        )
    return jax.device_put(X, NamedSharding(Mesh(np.array(devices), (ROWS,)), P(ROWS)))


def row_sharding(X: object) -> NamedSharding | None:
    """Return the sharding of ``X``'s rows over several local devices, or None for any other ``X``.

    For a fully addressable ``jax.Array`` with a ``NamedSharding`` that splits its rows: the
    same mesh and row axis, columns not split (for the fit's 2-D standardised rows).

    Examples
    --------
    >>> row_sharding(np.zeros((4, 2))) is None, row_sharding(jax.numpy.zeros((4, 2))) is None
    (True, True)
    """
    if not (isinstance(X, jax.Array) and X.is_fully_addressable and isinstance(X.sharding, NamedSharding)):
        return None
    spec = X.sharding.spec
    if len(X.sharding.device_set) < 2 or not spec or spec[0] is None:
        return None
    return NamedSharding(X.sharding.mesh, P(spec[0], None))
