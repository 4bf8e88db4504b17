"""EM on a global jax.Array sharded over two processes (jax.distributed over loopback, gloo).

Oracle: in-memory ``fit_em`` on all the rows in this process, from the same seed. Two worker
processes each hold a share of one simulated data set (700 and 500 rows, the shorter padded
with zero-weight rows, as a global array must have as many rows on every device; and an even
600/600 split without weights), fit it, and write their results; both must be the oracle's.
"""

import json
import os
import socket
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

import bayesgmm

ROOT = Path(__file__).resolve().parents[1]
N_ROWS = (700, 500)
OPTIONS = dict(n_init=2, seed=0, tol=1e-6, max_iter=300)

WORKER = textwrap.dedent(
    """
    import json, sys
    import jax
    import numpy as np

    process_id, port, out, data = int(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4]
    jax.config.update("jax_cpu_collectives_implementation", "gloo")
    import bayesgmm
    from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

    jax.distributed.initialize(f"127.0.0.1:{port}", num_processes=2, process_id=process_id)
    X, options = np.load(data), json.loads(sys.argv[5])
    n0, n1 = json.loads(sys.argv[6])
    mesh = Mesh(np.array(jax.devices()), ("rows",))
    rows, weights = NamedSharding(mesh, P("rows", None)), NamedSharding(mesh, P("rows"))
    # Uneven shares: the shorter one padded with zero rows of zero weight.
    n_pad = max(n0, n1)
    local = X[:n0] if process_id == 0 else X[n0:]
    padded = np.zeros((n_pad, X.shape[1]))
    padded[: len(local)] = local
    w = np.zeros(n_pad)
    w[: len(local)] = 1.0
    X_g = jax.make_array_from_process_local_data(rows, padded)
    w_g = jax.make_array_from_process_local_data(weights, w)
    half = len(X) // 2
    X_even = jax.make_array_from_process_local_data(rows, X[:half] if process_id == 0 else X[half:])
    assert not X_g.is_fully_addressable
    results = {}
    for name, Xs, ws, cov in [
        ("full", X_g, w_g, "full"), ("diag", X_g, w_g, "diag"), ("even", X_even, None, "full")
    ]:
        res = bayesgmm.fit_em(Xs, 3, cov, sample_weight=ws, **options)
        results[name] = dict(
            log_likelihood=res.log_likelihood, weights=np.asarray(res.params.weights).tolist(),
            means=np.asarray(res.params.means).tolist(), covariances=res.covariances.tolist(),
            n_iter=res.n_iter, labels=res.labels.tolist(),
        )
    gm = bayesgmm.GaussianMixture(3, n_init=2, random_state=0, tol=1e-6, max_iter=300)
    gm.fit(X_g, sample_weight=w_g)
    results["estimator_means"] = gm.means_.tolist()
    try:
        bayesgmm.fit_em(X_g, 3, missing="marginalize")
    except ValueError as error:
        results["error"] = str(error)
    for fit in (bayesgmm.fit_svi, bayesgmm.fit_nuts):
        try:
            fit(X_g, 3)
        except ValueError as error:
            results[fit.__name__] = str(error)
    with open(out, "w") as f:
        json.dump(results, f)
    """
)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def data():
    rng = np.random.default_rng(1)
    centres = np.array([[0.0, 0.0], [5.0, 1.0], [1.0, 6.0]])
    labels = rng.integers(0, 3, sum(N_ROWS))
    return centres[labels] + rng.normal(size=(sum(N_ROWS), 2)) @ np.array([[1.0, 0.3], [0.0, 0.8]])


@pytest.fixture(scope="module")
def workers(data, tmp_path_factory):
    """Run the two worker processes; return their results."""
    tmp = tmp_path_factory.mktemp("multihost")
    np.save(tmp / "X.npy", data)
    (tmp / "worker.py").write_text(WORKER)
    port, env = _free_port(), {**os.environ, "PYTHONPATH": str(ROOT)}
    outs = [tmp / f"out{i}.json" for i in range(2)]
    procs = [
        subprocess.Popen(
            [
                sys.executable,
                str(tmp / "worker.py"),
                str(i),
                str(port),
                str(outs[i]),
                str(tmp / "X.npy"),
                json.dumps(OPTIONS),
                json.dumps(N_ROWS),
            ],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )  # fmt: skip
        for i in range(2)
    ]
    logs = []
    try:
        for p in procs:
            logs.append(p.communicate(timeout=240))
    except subprocess.TimeoutExpired:
        for p in procs:
            p.kill()
        logs = [p.communicate() for p in procs]
        pytest.fail("a worker timed out:\n" + "\n".join(err[-3000:] for _, err in logs))
    failed = [i for i, p in enumerate(procs) if p.returncode != 0]
    assert not failed, "\n".join(f"worker {i}:\n{logs[i][1][-4000:]}" for i in failed)
    return [json.loads(o.read_text()) for o in outs]


@pytest.mark.parametrize("name", ["full", "diag", "even"])
def test_every_process_gets_the_in_memory_fit(workers, data, name):
    cov = "diag" if name == "diag" else "full"
    ref = bayesgmm.fit_em(data, 3, cov, **OPTIONS)
    n0, n1 = N_ROWS
    for res in (w[name] for w in workers):
        assert res["n_iter"] == ref.n_iter
        np.testing.assert_allclose(res["log_likelihood"], ref.log_likelihood, rtol=1e-10)
        np.testing.assert_allclose(res["weights"], ref.params.weights, atol=1e-8)
        np.testing.assert_allclose(res["means"], ref.params.means, atol=1e-8)
        np.testing.assert_allclose(res["covariances"], ref.covariances, atol=1e-8)
        labels = np.asarray(res["labels"])
        # The uneven fits label the global rows: process 1's start after process 0's padded share.
        real = labels if name == "even" else np.concatenate([labels[:n0], labels[n0 : n0 + n1]])
        np.testing.assert_array_equal(real, ref.labels)
    assert workers[0][name] == workers[1][name]


def test_the_estimator_fits_a_sharded_array(workers, data):
    ref = bayesgmm.GaussianMixture(3, n_init=2, random_state=0, tol=1e-6, max_iter=300).fit(data)
    for res in workers:
        np.testing.assert_allclose(res["estimator_means"], ref.means_, atol=1e-8)


def test_unsupported_options_say_what_to_do(workers):
    for res in workers:
        assert "missing='marginalize'" in res["error"] and "gather the rows" in res["error"]


def test_the_bayesian_fits_refuse_rows_on_other_processes(workers):
    for res in workers:
        for name in ("fit_svi", "fit_nuts"):
            assert "other processes" in res[name] and "process_allgather" in res[name]
