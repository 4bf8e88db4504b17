"""Fits of rows sharded over the local devices (``bayesgmm.shard_rows``) on 1, 2 and 4 host devices.

JAX fixes its number of host devices when it starts, so each count runs in a subprocess that
fits Old Faithful unsharded and sharded (EM, GaussianMixture, SVI, NUTS) and prints the numbers
as JSON. The unsharded rows are C-ordered, as the gathered rows of a sharded array are: a
column-major copy of the same values sums its columns in another order in numpy, and a NUTS
chain started from an EM fit amplifies that last bit. Oracles: scipy's mixture density at the
fitted parameters for EM's log-likelihood; the unsharded fit (the gathered rows, bit for bit)
for the sharded one; for SVI and NUTS on rows kept sharded, whose sums over rows run in another
order, the unsharded posterior means within a few Monte Carlo standard errors (ArviZ's for
NUTS). Minibatch SVI on sharded rows draws stratified minibatches (each device's share from
its own rows), so its steps see other rows than the unsharded fit's: the batch is most of the
data, which keeps the optimiser's minibatch noise (not in the draws' standard error) small.
Numpy's indexing at the global rows is the oracle for the rows each device takes.
"""

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import jax
import numpy as np
import pytest
from jax.sharding import PartitionSpec as P
from scipy.special import logsumexp
from scipy.stats import multivariate_normal

import bayesgmm
from bayesgmm import shard_rows

ROOT = Path(__file__).resolve().parents[1]
DEVICE_COUNTS = (1, 2, 4)
N_DRAWS = 200

WORKER = textwrap.dedent(
    """
    import json, warnings
    import arviz as az
    import jax
    import numpy as np

    warnings.simplefilter("ignore")
    import bayesgmm
    from bayesgmm.inference.svi.data import DeviceRows, load_rows

    X = np.ascontiguousarray(bayesgmm.load_dataset("faithful")[0], dtype=np.float64)
    Xs = bayesgmm.shard_rows(X)
    out = {"n_devices": jax.local_device_count(), "shard_rows": len(Xs.addressable_shards)}
    w = np.linspace(0.5, 1.5, len(X))
    for name, kw in {"full": {}, "blocks": {"block_size": 32}, "tied": {"covariance_type": "tied"}}.items():
        pair = [bayesgmm.fit_em(a, 2, seed=0, **kw) for a in (X, Xs)]
        out["em_" + name] = [r.log_likelihood for r in pair]
    pair = [bayesgmm.fit_em(X, 2, seed=0, sample_weight=ws) for ws in (w, bayesgmm.shard_rows(w))]
    out["em_weighted"] = [r.log_likelihood for r in pair]
    r = bayesgmm.fit_em(Xs, 2, seed=0)
    out["em_params"] = [np.asarray(r.params.weights).tolist(), np.asarray(r.params.means).tolist(),
                        np.asarray(r.covariances).tolist()]
    out["gm"] = [bayesgmm.GaussianMixture(2, random_state=0).fit(a).lower_bound_ for a in (X, Xs)]
    rows = load_rows(Xs, 2, {"rng": np.zeros(2, np.uint32)}, batch_size=None, chunk_size=100,
                     init_rows=20_000, max_observed=20_000).extra
    out["svi_data_devices"] = len(DeviceRows.from_rows(rows, np.float64).data.sharding.device_set)
    rows = load_rows(Xs, 2, {"rng": np.zeros(2, np.uint32)}, batch_size=256, chunk_size=100,
                     init_rows=20_000, max_observed=20_000).extra
    out["svi_batch_devices"] = len(DeviceRows.from_rows(rows, np.float64).data.sharding.device_set)
    # The importance ratios (log_likelihood=True) of the sharded fit only: their program
    # takes the sharded rows too.
    svi = [bayesgmm.fit_svi(a, 2, seed=0, max_steps=300, chunk_size=100, num_samples={N_DRAWS},
                            log_likelihood=a is Xs) for a in (X, Xs)]
    out["svi_lp_finite"] = bool(np.isfinite(svi[1].sample_stats["lp"].values).all())
    summary = lambda i: dict(mean=i.posterior["means"].mean(("chain", "draw")).values.tolist(),
                             sd=i.posterior["means"].std(("chain", "draw")).values.tolist())
    out["svi"] = [summary(i) for i in svi]
    svi = [bayesgmm.fit_svi(a, 2, seed=0, max_steps=300, chunk_size=100, batch_size=256,
                            num_samples={N_DRAWS}, log_likelihood=False) for a in (X, Xs)]
    out["svi_minibatch"] = [summary(i) for i in svi]
    try:
        if out["n_devices"] > 1:
            bayesgmm.fit_svi(Xs, 2, seed=0, batch_size=31)
    except ValueError as error:
        out["svi_uneven_batch"] = str(error)
    # Unsharded, gathered (keep_sharded=False) and, on several devices, rows kept sharded.
    fits = [(X, True), (Xs, False)] + [(Xs, True)] * (out["n_devices"] > 1)
    nuts = [bayesgmm.fit_nuts(a, 2, seed=0, num_warmup=60, num_samples=40, num_chains=2, keep_sharded=k)
            for a, k in fits]
    out["nuts"] = [i.posterior["means"].values.tolist() for i in nuts[:2]]
    # The gathered fit reuses the unsharded one's sampler; sharded rows have their own.
    from bayesgmm.inference.nuts import SAMPLERS
    out["nuts_samplers"] = len(SAMPLERS)
    out["nuts_sharded"] = [dict(mean=i.posterior["means"].mean(("chain", "draw")).values.tolist(),
                                mcse=az.mcse(i, var_names=["means"])["means"].values.tolist(),
                                sharded=i.attrs["sharded_rows"]) for i in nuts[::2]]
    # Data of the sharded fit's log density: on every device that holds rows.
    from bayesgmm.inference.svi.program import local_rows
    idx = np.arange(0, 256, dtype=np.int32) % (len(X) // out["n_devices"])
    take = jax.jit(lambda d, i: local_rows(d, i, out["n_devices"]))
    lowered = take.lower(Xs, idx).compile().as_text()
    block, share = len(X) // out["n_devices"], 256 // out["n_devices"]
    offsets = np.repeat(np.arange(out["n_devices"]) * block, share)
    out["local_rows"] = [np.asarray(take(Xs, idx)).tolist(), X[idx + offsets].tolist(),
                         "all-gather" in lowered]
    try:
        bayesgmm.shard_rows(X[:6])
    except ValueError as error:
        out["uneven"] = str(error)
    print("RESULT" + json.dumps(out))
    """
).replace("{N_DRAWS}", str(N_DRAWS))


@pytest.fixture(scope="module")
def results():
    """Run one worker per device count, all at once; return their results by device count."""
    procs = {}
    for n in DEVICE_COUNTS:
        flags = f"{os.environ.get('XLA_FLAGS', '')} --xla_force_host_platform_device_count={n}".strip()
        env = {**os.environ, "XLA_FLAGS": flags, "BAYESGMM_CPU_DEVICES": str(n), "PYTHONPATH": str(ROOT)}
        procs[n] = subprocess.Popen(
            [sys.executable, "-c", WORKER], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )
    out = {}
    try:
        for n, p in procs.items():
            stdout, stderr = p.communicate(timeout=300)
            assert p.returncode == 0, f"worker with {n} devices failed:\n{stderr[-4000:]}"
            line = next(x for x in stdout.splitlines() if x.startswith("RESULT"))
            out[n] = json.loads(line.removeprefix("RESULT"))
    finally:
        for p in procs.values():
            p.kill()
    return out


def _scipy_log_likelihood(X, weights, means, covariances):
    dens = [
        np.log(w) + multivariate_normal(m, c).logpdf(X)
        for w, m, c in zip(weights, means, covariances, strict=True)
    ]
    return float(logsumexp(np.stack(dens), axis=0).sum())


@pytest.mark.parametrize("n_devices", DEVICE_COUNTS)
def test_workers_have_their_devices(results, n_devices):
    res = results[n_devices]
    assert res["n_devices"] == n_devices
    assert res["shard_rows"] == n_devices
    # Full-batch and minibatch SVI keep the rows on every device that holds some.
    assert res["svi_data_devices"] == n_devices
    assert res["svi_batch_devices"] == n_devices
    assert res["svi_lp_finite"]


@pytest.mark.parametrize("n_devices", DEVICE_COUNTS)
def test_em_sharded_is_unsharded(results, n_devices):
    res = results[n_devices]
    for name in ("em_full", "em_blocks", "em_tied", "em_weighted", "gm"):
        unsharded, sharded = res[name]
        np.testing.assert_allclose(sharded, unsharded, rtol=1e-10, err_msg=name)
    X = np.asarray(bayesgmm.load_dataset("faithful")[0], dtype=np.float64)
    oracle = _scipy_log_likelihood(X, *res["em_params"])
    np.testing.assert_allclose(res["em_full"][1], oracle, rtol=1e-10)
    # And the same fit whatever the number of devices.
    np.testing.assert_allclose(res["em_full"][1], results[1]["em_full"][0], rtol=1e-10)


@pytest.mark.parametrize("n_devices", DEVICE_COUNTS)
@pytest.mark.parametrize("fit", ["svi", "svi_minibatch"])
def test_svi_sharded_posterior_means_within_monte_carlo_error(results, n_devices, fit):
    unsharded, sharded = results[n_devices][fit]
    mean0, mean1 = np.array(unsharded["mean"]), np.array(sharded["mean"])
    # The Monte Carlo error of the difference of two means of N_DRAWS draws each.
    mcse = np.hypot(np.array(unsharded["sd"]), np.array(sharded["sd"])) / np.sqrt(N_DRAWS)
    assert np.all(np.abs(mean1 - mean0) < 3 * mcse), (mean0, mean1, mcse)


@pytest.mark.parametrize("n_devices", DEVICE_COUNTS[1:])
def test_nuts_on_sharded_rows_posterior_means_within_monte_carlo_error(results, n_devices):
    unsharded, sharded = results[n_devices]["nuts_sharded"]
    assert (unsharded["sharded"], sharded["sharded"]) == (0, 1)
    assert results[n_devices]["nuts_samplers"] == 2
    mean0, mean1 = np.array(unsharded["mean"]), np.array(sharded["mean"])
    # ArviZ's Monte Carlo standard errors of the two means (each from its chains' ESS).
    mcse = np.hypot(np.array(unsharded["mcse"]), np.array(sharded["mcse"]))
    assert np.all(np.abs(mean1 - mean0) < 3 * mcse), (mean0, mean1, mcse)


@pytest.mark.parametrize("n_devices", DEVICE_COUNTS)
def test_sharded_minibatch_rows_are_each_devices_own(results, n_devices):
    # Each device's share of a minibatch is indexed in its own block of rows (numpy's
    # fancy indexing at the global rows is the oracle), with no rows gathered.
    taken, oracle, gathers = results[n_devices]["local_rows"]
    np.testing.assert_array_equal(np.array(taken), np.array(oracle))
    assert not gathers


@pytest.mark.parametrize("n_devices", DEVICE_COUNTS)
def test_nuts_gathered_gives_the_same_draws(results, n_devices):
    unsharded, sharded = results[n_devices]["nuts"]
    np.testing.assert_array_equal(np.array(sharded), np.array(unsharded))


def test_svi_refuses_a_batch_the_devices_cannot_share_and_says_what_works(results):
    for n_devices, works in ((2, "30 or 32"), (4, "28 or 32")):
        message = results[n_devices]["svi_uneven_batch"]
        assert "batch_size=31" in message and f"{n_devices} devices" in message and works in message


def test_shard_rows_refuses_uneven_rows_and_says_what_to_do(results):
    message = results[4]["uneven"]
    assert "6 rows" in message and "4 devices" in message
    assert "devices=jax.local_devices()[:3]" in message and "sample_weight 0" in message


def test_shard_rows_places_equal_blocks_of_rows():
    devices = jax.local_devices()
    X = np.arange(4.0 * len(devices) * 2).reshape(-1, 2)
    Xs = shard_rows(X)
    assert Xs.sharding.spec == P("rows") and list(Xs.sharding.mesh.devices) == devices
    assert Xs.is_fully_addressable and Xs.dtype == X.dtype
    for shard in Xs.addressable_shards:
        np.testing.assert_array_equal(np.asarray(shard.data), X[shard.index])
        assert shard.data.shape == (4, 2)
    one = shard_rows(X[:, 0], devices[:1])
    assert one.shape == (len(X),) and one.sharding.device_set == {devices[0]}
    np.testing.assert_array_equal(np.asarray(one), X[:, 0])


@pytest.mark.parametrize(
    "X, devices, match",
    [
        (np.zeros((2, 2, 2)), None, "shape"),
        (np.zeros((4, 2)), [], "non-empty"),
    ],
)
def test_shard_rows_refuses_bad_input(X, devices, match):
    with pytest.raises(ValueError, match=match):
        shard_rows(X, devices)
