"""Streamed EM with hundreds of chunks on two host devices, in a subprocess.

With each chunk's rows spread over the local devices and reduced by an all-reduce, and every
chunk's program dispatched without waiting, a 10,000,000 x 10 memmap (K=10, 153 chunks of
65536 rows) aborted in XLA (SIGABRT, all-reduce rendezvous timeout). That abort is not
reproduced at this size: the fully asynchronous version completed here too (390 chunks of
256 rows, and 150 of 16384). So this test guards what removed its cause: the chunk programs
hold no collective (each chunk runs on one device, the devices' totals are added at the end
of a pass), hundreds of chunks alternating over two devices complete, and the fit is the
in-memory one, whose log-likelihood is scipy's mixture density at its parameters.
"""

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
from scipy.special import logsumexp
from scipy.stats import multivariate_normal

ROOT = Path(__file__).resolve().parents[1]
N_OBS, CHUNK, BLOCK = 99_800, 256, 64  # under n_subsample: the streamed start is fit_em's

WORKER = textwrap.dedent(f"""
    import json, warnings
    import jax, jax.numpy as jnp, numpy as np
    from bayesgmm import fit_em
    from bayesgmm.inference.em import chunked

    warnings.simplefilter("ignore")
    rng = np.random.default_rng(0)
    X = np.concatenate([rng.normal(0, 1, ({N_OBS} // 2, 3)), rng.normal(3, 1.5, ({N_OBS} - {N_OBS} // 2, 3))])
    options = dict(seed=0, max_iter=5, tol=0, block_size={BLOCK})
    streamed = fit_em(X, 2, "full", chunk_size={CHUNK}, **options)
    in_memory = fit_em(X, 2, "full", **options)
    Z, w = jnp.zeros(({CHUNK}, 3)), jnp.ones({CHUNK})
    program = chunked._chunk_stats.lower(streamed.params, Z, w, covariance_type="full", block_size={BLOCK})
    hlo = program.as_text()
    fit = lambda r: dict(ll=r.log_likelihood, lower_bounds=r.lower_bounds.tolist(), labels=r.labels.tolist(),
                         params=[np.asarray(a).tolist() for a in r.params])
    print("RESULT" + json.dumps(dict(n_devices=jax.local_device_count(), streamed=fit(streamed),
                                     in_memory=fit(in_memory), X=X.tolist(),
                                     collective=any(s in hlo for s in ("all_reduce", "all-reduce")))))
""")


@pytest.fixture(scope="module")
def out():
    flags = f"{os.environ.get('XLA_FLAGS', '')} --xla_force_host_platform_device_count=2".strip()
    env = {**os.environ, "XLA_FLAGS": flags, "BAYESGMM_CPU_DEVICES": "2", "PYTHONPATH": str(ROOT)}
    proc = subprocess.run(
        [sys.executable, "-c", WORKER], env=env, capture_output=True, text=True, timeout=240
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    line = next(s for s in proc.stdout.splitlines() if s.startswith("RESULT"))
    return json.loads(line[len("RESULT") :])


def test_hundreds_of_chunks_over_two_devices_complete_with_no_collective(out):
    assert out["n_devices"] == 2 and not out["collective"]
    assert -(-N_OBS // CHUNK) >= 300


def test_they_give_the_in_memory_fit(out):
    a, b = out["in_memory"], out["streamed"]
    np.testing.assert_allclose(b["ll"], a["ll"], rtol=1e-12)
    np.testing.assert_allclose(b["lower_bounds"], a["lower_bounds"], rtol=1e-12)
    for p, q in zip(a["params"], b["params"], strict=True):
        np.testing.assert_allclose(q, p, rtol=1e-9, atol=1e-12)
    np.testing.assert_array_equal(b["labels"], a["labels"])


def test_the_log_likelihood_is_scipys(out):
    X = np.asarray(out["X"])
    weights, means, scale_tril = (np.asarray(a) for a in out["streamed"]["params"])
    log_dens = [
        np.log(wk) + multivariate_normal(m, L @ L.T).logpdf(X)
        for wk, m, L in zip(weights, means, scale_tril, strict=True)
    ]
    np.testing.assert_allclose(out["streamed"]["ll"], logsumexp(log_dens, axis=0).sum(), rtol=1e-10)
