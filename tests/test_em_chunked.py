"""Streamed (out-of-core) EM against in-memory EM from the same start."""

import jax
import jax.numpy as jnp
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from sklearn.exceptions import ConvergenceWarning

from bayesgmm import GaussianMixture, fit_em
from bayesgmm.inference.em import chunked
from bayesgmm.inference.em import kernel as em
from bayesgmm.inference.em.chunk_pass import chunk_em_data, chunk_stats

N_OBS, CHUNK = 3003, 1000  # the chunk size does not divide n_obs
TYPES = ("full", "tied", "diag", "spherical")


@pytest.fixture(scope="module")
def X():
    rng = np.random.default_rng(1)
    parts = [rng.normal(m, s, (n, 3)) for m, s, n in ((0, 1, 1200), (4, 0.7, 1000), (-3, 1.5, 803))]
    return rng.permutation(np.vstack(parts)) + 100.0  # off the origin: the centring matters


@pytest.fixture(scope="module")
def sources(X, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("ooc")
    np.save(tmp / "x.npy", X)
    (tmp / "pq").mkdir()
    for i, part in enumerate(np.array_split(X, 3)):  # three files, uneven row groups
        table = pa.table({f"x{j}": part[:, j] for j in range(3)})
        pq.write_table(table, tmp / "pq" / f"part{i}.parquet", row_group_size=700)
    return {
        "memmap": lambda: np.load(tmp / "x.npy", mmap_mode="r"),
        "callable": lambda: lambda: (X[i : i + 777] for i in range(0, N_OBS, 777)),
        "parquet": lambda: str(tmp / "pq"),
    }


@pytest.fixture(scope="module")
def in_memory(X):
    return {ct: fit_em(X, 3, ct, seed=0, tol=1e-6, max_iter=40) for ct in TYPES}


def _assert_same(a, b):
    assert b.n_iter == a.n_iter and b.converged == a.converged
    np.testing.assert_allclose(b.log_likelihood, a.log_likelihood, rtol=1e-10)
    np.testing.assert_allclose(b.lower_bounds, a.lower_bounds, rtol=1e-10)
    for p, q in zip(a.params, b.params, strict=True):
        np.testing.assert_allclose(np.asarray(q), np.asarray(p), rtol=1e-8, atol=1e-10)
    np.testing.assert_array_equal(b.labels, a.labels)


@pytest.mark.parametrize("kind", ["memmap", "callable", "parquet"])
@pytest.mark.parametrize("covariance_type", TYPES)
def test_streamed_em_equals_in_memory_em(sources, in_memory, kind, covariance_type):
    # Fewer rows than n_subsample: the start is in-memory fit_em's k-means start with the same seed.
    res = fit_em(sources[kind](), 3, covariance_type, seed=0, tol=1e-6, max_iter=40, chunk_size=CHUNK)
    _assert_same(in_memory[covariance_type], res)


def test_given_start_on_a_subsampled_source(X, sources):
    with pytest.warns(ConvergenceWarning):
        start = fit_em(X, 3, "full", seed=3, max_iter=2)
    given = dict(weights_init=np.asarray(start.params.weights), means_init=np.asarray(start.params.means),
                 precisions_init=np.linalg.inv(start.covariances))  # fmt: skip
    ref = fit_em(X, 3, "full", tol=1e-6, **given)
    res = chunked.fit_em_chunked(sources["memmap"](), 3, tol=1e-6, chunk_size=CHUNK, n_subsample=100, **given)
    _assert_same(ref, res)


def test_subsampled_kmeans_start_reaches_the_in_memory_optimum(X, sources, in_memory):
    res = chunked.fit_em_chunked(sources["memmap"](), 3, seed=0, tol=1e-6, max_iter=40, n_subsample=500)
    np.testing.assert_allclose(res.log_likelihood, in_memory["full"].log_likelihood, rtol=1e-6)


def test_sample_weight_as_repeated_rows(X, sources):
    w = np.random.default_rng(2).integers(0, 3, N_OBS).astype(float)
    ref = fit_em(np.repeat(X, w.astype(int), axis=0), 3, "diag", seed=0, tol=1e-6)
    res = fit_em(sources["memmap"](), 3, "diag", tol=1e-6, chunk_size=CHUNK, sample_weight=w,
                 weights_init=np.asarray(ref.params.weights), means_init=np.asarray(ref.params.means),
                 precisions_init=1 / ref.covariances, max_iter=0)  # fmt: skip
    np.testing.assert_allclose(res.log_likelihood, ref.log_likelihood, rtol=1e-10)
    with pytest.raises(ValueError, match="sample_weight needs X as an array or memmap"):
        fit_em(sources["callable"](), 3, sample_weight=np.ones(N_OBS))


def test_each_compiled_pass_sees_chunk_sized_arrays_only(sources, monkeypatch):
    shapes, inner = [], chunked._chunk_stats

    def spy(params, Z, w, **static):
        shapes.append((Z.shape, w.shape))
        return inner(params, Z, w, **static)

    monkeypatch.setattr(chunked, "_chunk_stats", spy)
    with pytest.warns(ConvergenceWarning):
        res = fit_em(sources["callable"](), 3, "tied", seed=0, max_iter=3, tol=0, chunk_size=CHUNK)
    assert res.n_iter == 3 and len(shapes) == 3 * 4  # ceil(3003 / 1000) chunks a pass
    assert set(shapes) == {((CHUNK, 3), (CHUNK,))}


def test_bad_chunks_get_clear_errors(X, tmp_path):
    def wrong_width():
        return [X[:100], X[100:200, :2]]

    with pytest.raises(ValueError, match=r"Every chunk must have shape \(n_rows, 3\)"):
        fit_em(wrong_width, 2)
    bad = X.copy()
    bad[2500, 1] = np.nan
    np.save(tmp_path / "nan.npy", bad)
    with pytest.raises(ValueError, match="NaN or infinity"):
        fit_em(np.load(tmp_path / "nan.npy", mmap_mode="r"), 2, chunk_size=CHUNK)
    pq.write_table(pa.table({"a": [1.0, None, 2.0], "b": [0.0, 1.0, 2.0]}), tmp_path / "null.parquet")
    with pytest.raises(ValueError, match="NaN or infinity"):
        fit_em(tmp_path / "null.parquet", 1)
    calls = []

    def shrinking():  # a row fewer after the first pass
        calls.append(1)
        return [X[: N_OBS - (len(calls) > 1)]]

    with pytest.raises(ValueError, match="must return the same rows"):
        fit_em(shrinking, 2, max_iter=2)
    with pytest.raises(ValueError, match="does not take prior="):
        fit_em(lambda: [X], 2, prior="default")


def test_gaussian_mixture_fits_a_parquet_directory(sources, in_memory, X):
    gm = GaussianMixture(3, random_state=0, tol=1e-6, max_iter=40, chunk_size=CHUNK).fit(sources["parquet"]())
    np.testing.assert_allclose(gm.lower_bound_, in_memory["full"].lower_bound, rtol=1e-10)
    assert gm.n_features_in_ == 3 and list(gm.feature_names_in_) == ["x0", "x1", "x2"]
    frame = pd.DataFrame(X, columns=["x0", "x1", "x2"])
    np.testing.assert_array_equal(gm.predict(frame), in_memory["full"].labels)


def test_chunks_spread_over_devices_give_the_same_fit(sources, in_memory):
    # Two chunks of four blocks: one on each local device when there are two (chunk_pass).
    res = fit_em(
        sources["memmap"](), 3, "full", seed=0, tol=1e-6, max_iter=40, chunk_size=2048, block_size=512
    )
    _assert_same(in_memory["full"], res)


@pytest.mark.parametrize("covariance_type", TYPES)
@pytest.mark.parametrize("n_obs", [1000, 1024])  # padded to whole blocks, and not
def test_chunk_features_are_em_datas_bit_for_bit(X, covariance_type, n_obs):
    Z, w = jnp.asarray(X[:n_obs] - 100.0), jnp.linspace(0.5, 1.5, n_obs)
    want, got = em.em_data(Z, w, covariance_type, 256), chunk_em_data(Z, w, covariance_type, 256)
    for a, b in zip(want, got, strict=True):
        assert (a is None) == (b is None)
        if a is not None:
            np.testing.assert_array_equal(np.asarray(b), np.asarray(a))


@pytest.mark.parametrize("covariance_type", TYPES)
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_chunk_stats_are_in_memory_data_stats(X, in_memory, covariance_type, dtype):
    params = jax.tree.map(lambda a: jnp.asarray(a, dtype), in_memory[covariance_type].params)
    params = params._replace(means=params.means - jnp.asarray(100.0, dtype))
    Z, w = jnp.asarray(X[:1000] - 100.0, dtype), jnp.linspace(0.5, 1.5, 1000, dtype=dtype)
    data = em.em_data(Z, w, covariance_type, 256)
    S, log_lik, _ = em.data_stats(params, data, covariance_type)
    got = chunk_stats(params, Z, w, covariance_type, 256)
    tol = 1e-12 if dtype == np.float64 else 1e-5
    atol = tol * float(jnp.abs(S).max())
    np.testing.assert_allclose(np.asarray(got[0]), np.asarray(S), rtol=tol, atol=atol)
    np.testing.assert_allclose(float(got[1]), float(log_lik), rtol=tol)
    if data.second is not None:
        np.testing.assert_allclose(np.asarray(got[2]), np.asarray(data.second), rtol=tol)


@pytest.mark.parametrize("covariance_type", TYPES)
def test_float32_streamed_em_equals_in_memory_em(X, sources, covariance_type):
    # float32 takes the centred statistics, which need no tied second moment.
    options = dict(seed=0, tol=0, max_iter=8, dtype=np.float32, block_size=256)
    with pytest.warns(ConvergenceWarning):
        a = fit_em(X, 3, covariance_type, **options)
        b = fit_em(sources["memmap"](), 3, covariance_type, chunk_size=CHUNK, **options)
    np.testing.assert_allclose(b.log_likelihood, a.log_likelihood, rtol=1e-5)
    np.testing.assert_allclose(np.asarray(b.covariances), np.asarray(a.covariances), rtol=1e-4, atol=1e-5)
    np.testing.assert_array_equal(b.labels, a.labels)
