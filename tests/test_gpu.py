"""On an NVIDIA GPU the fits give the CPU's numbers (skipped without one: ``pip install ".[cuda]"``).

Oracle: the same fit in a process that sees only the CPU (``JAX_PLATFORMS=cpu``), float64,
from the same seed. EM is deterministic: its log-likelihood agrees to 1e-10 relative. SVI draws
the same random numbers on both, so its posterior means agree to their Monte Carlo error (the
guide draws' sd over the square root of their number).
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import jax
import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]

FIT = """
import json, sys
import numpy as np
import jax
import bayesgmm

X, _ = bayesgmm.load_dataset("faithful")
em = bayesgmm.fit_em(X, 2, "full", n_init=3, seed=0, tol=1e-8, max_iter=500)
idata = bayesgmm.fit_svi(X, 2, seed=0, num_samples=400, progress_bar=False)
means = idata.posterior["means"].values.reshape(-1, 2, 2)
print(json.dumps(dict(
    platform=jax.devices()[0].platform, log_likelihood=em.log_likelihood,
    em_means=np.asarray(em.params.means).tolist(),
    svi_mean=means.mean(0).tolist(), svi_sd=means.std(0).tolist(), n_draws=len(means),
)))
"""


def _has_gpu() -> bool:
    try:
        return len(jax.devices("gpu")) > 0
    except RuntimeError:
        return False


def _fit(platform: str) -> dict:
    env = {**os.environ, "JAX_PLATFORMS": platform, "PYTHONPATH": str(ROOT)}
    out = subprocess.run([sys.executable, "-c", FIT], env=env, capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    return json.loads(out.stdout.strip().splitlines()[-1])


# BAYESGMM_TEST_GPU_PLATFORM=cpu runs the comparison without a GPU, to check the test itself.
PLATFORM = os.environ.get("BAYESGMM_TEST_GPU_PLATFORM", "cuda")


@pytest.mark.skipif(
    PLATFORM == "cuda" and not _has_gpu(), reason="no GPU; pip install '.[cuda]' where there is one"
)
def test_gpu_fits_give_the_cpu_numbers():
    gpu, cpu = _fit(PLATFORM), _fit("cpu")
    assert gpu["platform"] == ("gpu" if PLATFORM == "cuda" else PLATFORM) and cpu["platform"] == "cpu"
    np.testing.assert_allclose(gpu["log_likelihood"], cpu["log_likelihood"], rtol=1e-10)
    np.testing.assert_allclose(gpu["em_means"], cpu["em_means"], atol=1e-7)
    mcse = np.asarray(cpu["svi_sd"]) / np.sqrt(cpu["n_draws"])
    assert np.all(np.abs(np.subtract(gpu["svi_mean"], cpu["svi_mean"])) < 4 * mcse)
