"""Streamed EM (``em.chunked``) against in-memory ``fit_em`` from the same start."""

import numpy as np
import pytest

from bayesgmm.inference.em.chunked import fit_em_chunked
from bayesgmm.inference.em.fit import fit_em

RTOL = 1e-10


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    rng = np.random.default_rng(1)
    X = np.vstack([rng.normal(0, 1, (700, 3)), rng.normal(4, 1.5, (601, 3))])
    path = tmp_path_factory.mktemp("chunked") / "x.npy"
    np.save(path, X)
    return X, path


def _start(X):
    return dict(weights_init=[0.5, 0.5], means_init=X[[0, -1]], tol=1e-8, max_iter=50, seed=0)


def _close(a, b):
    assert a.n_iter == b.n_iter
    assert abs(a.log_likelihood - b.log_likelihood) <= RTOL * abs(b.log_likelihood)
    np.testing.assert_allclose(np.asarray(a.params.means), np.asarray(b.params.means), rtol=1e-8, atol=1e-10)
    np.testing.assert_allclose(a.covariances, b.covariances, rtol=1e-8, atol=1e-10)


@pytest.mark.parametrize("covariance_type", ["full", "tied", "diag", "spherical"])
def test_memmap_matches_in_memory(data, covariance_type):
    X, path = data
    ref = fit_em(X, 2, covariance_type, **_start(X))
    got = fit_em_chunked(np.load(path, mmap_mode="r"), 2, covariance_type, chunk_size=300, **_start(X))
    _close(got, ref)


def test_memmap_dispatch_and_weights(data):
    X, path = data
    w = np.random.default_rng(2).uniform(0.2, 3.0, len(X))
    ref = fit_em(X, 2, sample_weight=w, **_start(X))
    got = fit_em(np.load(path, mmap_mode="r"), 2, sample_weight=w, **_start(X))
    np.testing.assert_array_equal(got.labels, ref.labels)
    _close(got, ref)


def test_iterator_callable_and_parquet(data, tmp_path):
    pa = pytest.importorskip("pyarrow")
    pq = pytest.importorskip("pyarrow.parquet")
    X, _ = data
    ref = fit_em(X, 2, "diag", **_start(X))
    cuts = [0, 123, 500, 977, len(X)]

    def chunks():
        return (X[a:b] for a, b in zip(cuts, cuts[1:], strict=False))

    for i, (a, b) in enumerate(zip(cuts, cuts[1:], strict=False)):
        pq.write_table(pa.table({f"x{j}": X[a:b, j] for j in range(3)}), tmp_path / f"part{i}.parquet")
    for source in (chunks, tmp_path):
        _close(fit_em(source, 2, "diag", **_start(X)), ref)


def test_default_start_fits(data):
    X, path = data
    got = fit_em_chunked(np.load(path, mmap_mode="r"), 2, chunk_size=256, seed=0)
    assert sorted(np.round(np.asarray(got.params.means)[:, 0]).tolist()) == [0.0, 4.0]


def test_wrong_width_chunk_is_an_error(data):
    X, _ = data

    def chunks():
        return iter([X[:100], X[100:200, :2]])

    with pytest.raises(ValueError, match=r"shape \(n_rows, 3\)"):
        fit_em_chunked(chunks, 2, chunk_size=64)
