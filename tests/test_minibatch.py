"""The observed subset of streamed data: uniform over subsets, whatever the source type.

False-failure budget: the chi-square test rejects at p < 1e-3 (0.1%).
"""

from itertools import combinations

import numpy as np
import pytest
from scipy import stats

from bayesgmm import fit_svi
from bayesgmm.sources import ArraySource, ChunkSource, observed_rows


def _chunked(X, size):
    return ChunkSource(lambda: (X[i : i + size] for i in range(0, len(X), size)))


def test_callable_subset_is_uniform_over_all_subsets():
    # 6 rows, keep 3: each of the C(6, 3) = 20 subsets has probability 1/20.
    X = np.arange(6.0)[:, None]
    source = _chunked(X, 4)
    rng = np.random.default_rng(11)
    subsets = list(combinations(range(6), 3))
    counts = np.zeros(len(subsets))
    n_trials = 4000
    for _ in range(n_trials):
        rows = observed_rows(source, 6, 3, rng)[:, 0].astype(int)
        counts[subsets.index(tuple(rows))] += 1  # distinct and in file order, or this raises
    assert stats.chisquare(counts, np.full(len(subsets), n_trials / len(subsets))).pvalue > 1e-3


def test_callable_subset_does_not_depend_on_the_chunking():
    X = np.arange(50.0)[:, None] * np.array([[1.0, -1.0]])
    picked = [observed_rows(src, 50, 7, np.random.default_rng(3)) for src in (_chunked(X, 1), _chunked(X, 9))]
    picked.append(observed_rows(ArraySource(X), 50, 7, np.random.default_rng(3)))
    for rows in picked[1:]:
        np.testing.assert_array_equal(rows, picked[0])
    assert not np.array_equal(picked[0], X[:7])


def test_callable_that_yields_fewer_rows_than_before_is_refused():
    X = np.arange(10.0)[:, None]
    with pytest.raises(ValueError, match="yielded 10 rows"):
        observed_rows(_chunked(X, 3), 20, 15, np.random.default_rng(0))


def test_streamed_fit_stores_a_random_seeded_subset():
    # Sorted data: the first rows are all from the lower cluster.
    rng = np.random.default_rng(0)
    X = np.sort(np.concatenate([rng.normal(0.0, 1.0, 300), rng.normal(10.0, 1.0, 300)]))[:, None]
    common = dict(
        batch_size=64,
        max_observed=50,
        max_steps=50,
        chunk_size=25,
        num_samples=10,
        log_likelihood=False,
        guide="meanfield",
    )
    fits = [
        fit_svi(lambda: (X[i : i + 100] for i in range(0, 600, 100)), 1, seed=s, **common) for s in (0, 0, 1)
    ]
    rows = [f.observed_data["X"].values[:, 0] for f in fits]
    assert fits[0].attrs["observed_subset"] == 1 and rows[0].shape == (50,)
    assert np.isin(rows[0], X[:, 0]).all() and len(np.unique(rows[0])) == 50
    # A first-rows subset would hold the lower cluster only.
    assert (rows[0] > 5.0).any() and (rows[0] < 5.0).any()
    np.testing.assert_array_equal(rows[0], rows[1])
    assert not np.array_equal(rows[0], rows[2])
