# ---
# jupyter:
#   jupytext:
#     formats: py:percent
#     text_representation:
#       extension: .py
#       format_name: percent
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # Large data
#
# What bayesgmm offers when the data are large:
#
# - **Minibatch SVI from disk**: `fit_svi` takes a `numpy.memmap` (e.g. a `.npy` file opened
#   with `mmap_mode="r"`) or a callable that returns an iterable of row chunks. It then never
#   loads the data whole: each chunk of optimisation steps reads its random minibatches from
#   the source.
# - **EM in memory**: `fit_em` works on an array in memory, in blocks of rows
#   (`block_size`), and is fast on millions of rows.
# - **Exact EM out of core**: given a memmap, a chunk callable or a Parquet file or directory,
#   `fit_em` streams the rows in chunks of `chunk_size` rows at every iteration, so memory is a
#   few chunks whatever the number of rows; from the same start it gives in-memory EM's fit.
# - NUTS needs the full data at every gradient step; it is for data sets that fit in memory
#   and that it can go through thousands of times.
#
# The data here are simulated from a known three-component mixture, so that the estimates can
# be compared with the truth. The test suite runs this notebook with `BAYESGMM_SMOKE=1`, with
# far fewer rows and steps.

# %%
import itertools
import os
import shutil
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
import pandas as pd

import bayesgmm
import bayesgmm.plots as bp

SMOKE = os.environ.get("BAYESGMM_SMOKE") == "1"
N_OBS = 40_000 if SMOKE else 2_000_000
MAX_STEPS = 1000 if SMOKE else 20_000
if SMOKE:
    warnings.simplefilter("ignore", bayesgmm.DiagnosticsWarning)

true_weights = np.array([0.5, 0.3, 0.2])
true_means = np.array([[0.0, 0.0], [4.0, 1.0], [1.0, 5.0]])
true_covs = np.array([[[1.0, 0.5], [0.5, 1.0]], [[0.5, 0.0], [0.0, 2.0]], [[1.5, -0.7], [-0.7, 1.0]]])

# %% [markdown]
# ## A data set on disk
# The rows are written to a `.npy` file chunk by chunk (`np.lib.format.open_memmap`), so that
# they never sit in memory all at once, and opened again read-only as a memmap.

# %%
workdir = Path(tempfile.mkdtemp())
path = workdir / "mixture.npy"
rng = np.random.default_rng(0)
out = np.lib.format.open_memmap(path, mode="w+", dtype=np.float64, shape=(N_OBS, 2))
CHUNK = 100_000
for start in range(0, N_OBS, CHUNK):
    n = min(CHUNK, N_OBS - start)
    z = rng.choice(3, size=n, p=true_weights)
    noise = np.einsum("nij,nj->ni", np.linalg.cholesky(true_covs)[z], rng.standard_normal((n, 2)))
    out[start : start + n] = true_means[z] + noise
out.flush()
del out

X_disk = np.load(path, mmap_mode="r")
print(type(X_disk).__name__, X_disk.shape, f"{path.stat().st_size / 1e6:.0f} MB on disk")

# %% [markdown]
# ## Minibatch SVI on the memmap
# With a memmap, `fit_svi` uses minibatches of `batch_size` rows (4096 by default): each step's
# likelihood is that of the minibatch, scaled up to the whole data set. Its start is the best of
# a few EM fits on `init_rows` random rows. `observed_data` and `log_likelihood` hold a random
# subset of `max_observed` rows, since a log-likelihood per draw and per row would not fit in
# memory (`attrs["observed_subset"]` says so).

# %%
start = time.perf_counter()
svi = bayesgmm.fit_svi(X_disk, 3, batch_size=4096, max_steps=MAX_STEPS, num_samples=500, seed=0)
print(f"{time.perf_counter() - start:.1f} s, converged: {bool(svi.attrs['converged'])}")
print("observed_data rows kept:", svi.observed_data.sizes["obs"], "of", N_OBS)


# %% [markdown]
# The estimates beside the truth (components numbered by decreasing weight, as the truth is):


# %%
def compare(summary):
    truth = np.concatenate([true_weights, true_means.ravel()])
    return pd.DataFrame({"truth": truth, "mean": summary["mean"], "sd": summary["sd"]}, index=summary.index)


compare(bayesgmm.summary(svi, var_names=["weights", "means"])).round(3)

# %% [markdown]
# With this many rows the posterior is very narrow: the posterior sds are of the order of
# `1 / sqrt(n_obs)`. The ELBO trace of a minibatch fit is noisy (each step sees another
# minibatch); the smoothed line shows the progress.

# %%
ax = bp.plot_trace_objective(svi)

# %% [markdown]
# ## Minibatch SVI on a chunk source
# Data that are not one array (many files, a database, a Parquet dataset) can be given as a
# callable that returns a fresh iterable of row chunks on every call (one call is one pass
# over the data). The rows are only shuffled within a buffer, so the chunks should come in
# random order, or at least not sorted by cluster. Here the chunks are read from the `.npy`
# file, in a random order on every pass.


# %%
passes = itertools.count()


def chunks():
    # Each pass visits the chunks in a new random order.
    order = np.random.default_rng(next(passes)).permutation(range(0, N_OBS, CHUNK))
    data = np.load(path, mmap_mode="r")
    for start in order:
        yield np.asarray(data[start : start + CHUNK])


start = time.perf_counter()
svi_chunks = bayesgmm.fit_svi(chunks, 3, batch_size=4096, max_steps=MAX_STEPS, num_samples=500, seed=0)
print(f"{time.perf_counter() - start:.1f} s, converged: {bool(svi_chunks.attrs['converged'])}")
compare(bayesgmm.summary(svi_chunks, var_names=["weights", "means"])).round(3)

# %% [markdown]
# ## EM in memory
# `fit_em` takes the rows in memory. 2 million rows of 2 features are 32 MB, which is fine;
# it runs its E- and M-steps over blocks of `block_size` rows, so that the responsibilities of
# all rows are never held at once, but the data themselves are. For data larger than memory,
# stream them (next section) or use minibatch SVI as above.
#
# `tol` is scikit-learn's: EM stops when the mean log-likelihood per row improves by less. Its
# default, `1e-3`, stops a fit of millions of rows after a few iterations, while the
# parameters are still many standard errors from the optimum (the standard errors shrink like
# `1 / sqrt(n_obs)`, the stopping rule does not); a smaller `tol` costs a few more passes.

# %%
X = np.load(path)  # the whole array, in memory
start = time.perf_counter()
em = bayesgmm.fit_em(X, 3, n_init=3, tol=1e-6, seed=0)
print(f"EM on {len(X):,} rows: {time.perf_counter() - start:.1f} s, {em.n_iter} iterations")
order = np.argsort(-np.asarray(em.params.weights))
pd.DataFrame(
    {
        "truth": np.concatenate([true_weights, true_means.ravel()]),
        "EM": np.concatenate(
            [np.asarray(em.params.weights)[order], np.asarray(em.params.means)[order].ravel()]
        ),
    },
    index=compare(bayesgmm.summary(svi, var_names=["weights", "means"])).index,
).round(3)

# %% [markdown]
# ## Exact EM out of core
# Given the memmap itself, `fit_em` streams it: each iteration reads the file in chunks of
# `chunk_size` rows (the next chunk is read in a background thread while the current one is
# computed), sums each chunk's sufficient statistics and then runs the M-step, so only a few
# chunks are in memory at a time. The start is k-means on a uniform random subsample of about
# 100,000 rows; `labels` are computed chunk by chunk in a last pass. A chunk callable or a
# Parquet file or directory (read by record batches) streams the same way. From the same start
# the fit is in-memory EM's to rounding; here the starts differ when there are more rows than
# the subsample (in-memory k-means sees all rows), yet both fits reach the same optimum.

# %%
start = time.perf_counter()
em_disk = bayesgmm.fit_em(X_disk, 3, n_init=3, tol=1e-6, seed=0, chunk_size=CHUNK)
print(f"streamed EM: {time.perf_counter() - start:.1f} s, {em_disk.n_iter} iterations")
per_row = em_disk.log_likelihood / N_OBS, em.log_likelihood / N_OBS
print("log-likelihood per row: streamed {:.6f}, in memory {:.6f}".format(*per_row))

# %% [markdown]
# The SVI fit's ellipses on a random subset of the rows (the ones kept in `observed_data`):

# %%
ax = bp.plot_ellipses(svi, n_draws=20)
ax.collections[0].set_alpha(0.05)

# %% [markdown]
# The file was only for this notebook:

# %%
del X_disk, X
shutil.rmtree(workdir)
