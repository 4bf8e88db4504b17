"""Parallel NUTS chains by default: the CPU devices bayesgmm asks JAX for, and when it does not."""

import os
import subprocess
import sys

import pytest

from bayesgmm._devices import default_cpu_devices


def _device_count(code: str = "", **env) -> int:
    environ = {k: v for k, v in os.environ.items() if k not in ("XLA_FLAGS", "BAYESGMM_CPU_DEVICES")}
    script = f"import jax\n{code}\nimport bayesgmm\nprint(jax.local_device_count())"
    out = subprocess.run(
        [sys.executable, "-c", script], env={**environ, **env}, capture_output=True, text=True, check=True
    )
    return int(out.stdout.split()[-1])


def test_default_is_one_device_per_chain_of_a_default_fit():
    n_cores = min(os.cpu_count(), 8)
    assert default_cpu_devices({}) == (n_cores if n_cores > 1 else None)
    assert _device_count() == max(1, n_cores)


def test_the_user_setting_wins():
    assert _device_count(BAYESGMM_CPU_DEVICES="0") == 1
    assert _device_count(BAYESGMM_CPU_DEVICES="3") == 3
    assert _device_count(XLA_FLAGS="--xla_force_host_platform_device_count=2") == 2
    assert _device_count('jax.config.update("jax_num_cpu_devices", 5)') == 5
    # A backend the user started already keeps its single device.
    assert _device_count("jax.numpy.ones(1)") == 1


def test_a_bad_setting_is_refused():
    with pytest.raises(ValueError, match="BAYESGMM_CPU_DEVICES"):
        default_cpu_devices({"BAYESGMM_CPU_DEVICES": "four"})
