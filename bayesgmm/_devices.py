"""One JAX CPU device per core, so that NUTS chains and EM passes run in parallel on a CPU.

JAX gives a CPU one device by default. Chains run in parallel only on separate devices;
on one device they are vectorised, and a vectorised NUTS step waits for the chain with the
longest trajectory and compiles a much larger program. bayesgmm therefore asks JAX for
``min(os.cpu_count(), 8)`` CPU devices when it is imported (one per core: more would make
each of EM's programs slower), and runs the chains that share a device one after another
(``inference.chains``), unless

- ``BAYESGMM_CPU_DEVICES`` says otherwise (a number of devices; ``0`` leaves JAX's default),
- the user configured the devices already (``XLA_FLAGS`` with
  ``--xla_force_host_platform_device_count``, ``JAX_NUM_CPU_DEVICES`` or
  ``jax.config.update("jax_num_cpu_devices", ...)``), or
- JAX's backend was started before bayesgmm was imported (then the count can no longer change).

It only concerns the CPU platform: on a GPU machine JAX's default device stays the GPU.
"""

from __future__ import annotations

import os
from collections.abc import Mapping

import jax


def default_cpu_devices(environ: Mapping[str, str] = os.environ) -> int | None:
    """Return the number of CPU devices bayesgmm asks for, or None to leave JAX's setting.

    Parameters
    ----------
    environ : mapping
        The environment variables (``os.environ`` by default).

    Returns
    -------
    int or None

    Examples
    --------
    >>> default_cpu_devices({"BAYESGMM_CPU_DEVICES": "6"})
    6
    >>> default_cpu_devices({"BAYESGMM_CPU_DEVICES": "0"}) is None
    True
    >>> default_cpu_devices({"XLA_FLAGS": "--xla_force_host_platform_device_count=2"}) is None
    True
    """
    requested = environ.get("BAYESGMM_CPU_DEVICES", "").strip()
    if requested:
        if not requested.isdigit():
            raise ValueError(f"BAYESGMM_CPU_DEVICES must be a whole number, got {requested!r}.")
        return int(requested) or None
    if "xla_force_host_platform_device_count" in environ.get("XLA_FLAGS", ""):
        return None
    if "JAX_NUM_CPU_DEVICES" in environ:
        return None
    n_cores = min(os.cpu_count() or 1, 8)
    return n_cores if n_cores > 1 else None


def configure_cpu_devices() -> None:
    """Ask JAX for ``default_cpu_devices()`` CPU devices, if JAX's backend has not started."""
    n_devices = default_cpu_devices()
    if n_devices is None or jax.config.jax_num_cpu_devices != -1:
        return
    try:
        jax.config.update("jax_num_cpu_devices", n_devices)
    except RuntimeError:
        # The backend is running (the user's code made arrays first): its devices stay.
        pass
