"""EM per-iteration speed: bayesgmm (JAX) against scikit-learn, in the same run.

Both start from the same parameters (weights_init / means_init / precisions_init), run a
fixed number of iterations (tol=0) and must end at the same log-likelihood. Per-iteration
time is that of the iteration loop alone: bayesgmm's jitted driver on prepared blocks
(compiled first), and scikit-learn's own loop body (``_e_step`` then ``_m_step``), so that
validation, initialisation and noise from set-up do not enter. scikit-learn is timed
with its BLAS limited to 1 and to 2 threads (threadpoolctl) and the faster one is the
reference. bayesgmm's GFLOP/s counts its two GEMMs per iteration (``4 n_obs n_stats K``,
plus ``2 n_obs D^2`` for tied's whitening) against the best float64 matrix-multiply rate
measured here.

Run: ``python benchmarks/bench_em.py [--quick]``.
"""

from __future__ import annotations

import argparse
import time
import warnings

import jax
import jax.numpy as jnp
import numpy as np
from sklearn.mixture import GaussianMixture as SkGaussianMixture
from threadpoolctl import threadpool_info, threadpool_limits

import bayesgmm
from bayesgmm.inference.em import kernel as em
from bayesgmm.inference.em import sklearn_shapes as em_shapes
from bayesgmm.inference.em.fit import fit_em
from bayesgmm.inference.em.stats import n_stats
from bayesgmm.params import GMMParams

N_ITER = 10


def make_data(n_obs, n_features, n_components, seed=0):
    rng = np.random.default_rng(seed)
    centers = rng.normal(size=(n_components, n_features)) * 4
    scales = rng.uniform(0.5, 2.0, size=(n_components, n_features))
    labels = rng.integers(n_components, size=n_obs)
    X = centers[labels] + rng.normal(size=(n_obs, n_features)) * scales[labels]
    return X, centers


def shared_init(centers, covariance_type):
    n_components, n_features = centers.shape
    prec = {
        "full": np.stack([np.eye(n_features)] * n_components),
        "tied": np.eye(n_features),
        "diag": np.ones((n_components, n_features)),
        "spherical": np.ones(n_components),
    }[covariance_type]
    rng = np.random.default_rng(1)
    return {
        "weights_init": np.full(n_components, 1.0 / n_components),
        "means_init": centers + rng.normal(size=centers.shape),
        "precisions_init": prec,
    }


def best_time(fn, repeats):
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return min(times)


def time_ours(X, n_components, covariance_type, init, repeats):
    """Per-iteration time of the jitted EM driver alone (set-up and compilation excluded)."""
    res = fit_em(X, n_components, covariance_type, max_iter=N_ITER, tol=0.0, **init)
    n_features = X.shape[1]
    shift = X.mean(0)
    Z = jnp.asarray(X - shift)
    data = em.em_data(Z, jnp.ones(len(X)), covariance_type)
    tril = em_shapes.scale_tril_from_precisions(
        init["precisions_init"], covariance_type, n_components, n_features
    )
    params0 = GMMParams(
        jnp.asarray(init["weights_init"])[None],
        jnp.asarray(init["means_init"] - shift)[None],
        jnp.asarray(tril)[None],
    )
    lb0 = jnp.full((1,), -jnp.inf)

    def run():
        state = em.run_em_restarts(
            params0,
            data,
            lb0,
            0.0,
            1e-6,
            None,
            covariance_type=covariance_type,
            max_iter=N_ITER,
        )
        return jax.block_until_ready(state)

    run()  # compile
    return best_time(run, repeats) / N_ITER, res.log_likelihood


def time_sklearn(X, n_components, covariance_type, init, repeats, n_threads):
    """Per-iteration time of scikit-learn's own loop body (``_e_step`` then ``_m_step``)."""
    with threadpool_limits(n_threads), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        gm = SkGaussianMixture(
            n_components, covariance_type=covariance_type, max_iter=N_ITER, tol=0.0, **init
        )
        ll = gm.fit(X).score(X) * len(X)

        def run():
            for _ in range(N_ITER):
                _, log_resp = gm._e_step(X)
                gm._m_step(X, log_resp)

        t = best_time(run, repeats)
    return t / N_ITER, ll


def matmul_peak(n=3000, repeats=3):
    """Best float64 GEMM rate (GFLOP/s) of numpy (2 BLAS threads) and of JAX/XLA here."""
    A = np.random.default_rng(0).normal(size=(n, n))
    with threadpool_limits(2):
        t_np = best_time(lambda: A @ A, repeats)
    Aj = jnp.asarray(A)
    mm = jax.jit(lambda a: a @ a)
    mm(Aj).block_until_ready()
    t_jax = best_time(lambda: mm(Aj).block_until_ready(), repeats)
    return 2 * n**3 / min(t_np, t_jax) / 1e9, 2 * n**3 / t_np / 1e9, 2 * n**3 / t_jax / 1e9


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true", help="only N=200,000")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--only", help="run one row, e.g. 1000000,tied")
    args = parser.parse_args()

    blas = [
        f"{i.get('internal_api')} {i.get('version')} ({i.get('architecture')}, "
        f"{i.get('num_threads')} threads)"
        for i in threadpool_info()
        if i.get("user_api") == "blas"
    ]
    print(
        f"bayesgmm {bayesgmm.__version__}, jax {jax.__version__}, {jax.devices()[0].platform}; BLAS: {blas}"
    )
    peak, peak_np, peak_jax = matmul_peak()
    print(f"float64 matmul peak: {peak:.1f} GFLOP/s (numpy {peak_np:.1f}, jax {peak_jax:.1f})")
    print(f"per-iteration times: {N_ITER} iterations, best of {args.repeats} runs\n")

    configs = [(200_000, "full"), (200_000, "diag"), (200_000, "tied")]
    if not args.quick:
        configs += [(1_000_000, "full"), (1_000_000, "diag"), (1_000_000, "tied")]
    if args.only:
        n_obs, covariance_type = args.only.split(",")
        configs = [(int(n_obs), covariance_type)]
    header = (
        f"{'N':>9} {'cov':>5} {'ours ms':>8} {'sk1 ms':>8} {'sk2 ms':>8} {'speed-up':>8} "
        f"{'GFLOP/s':>8} {'%peak':>6} {'LL ours':>16} {'LL sklearn':>16} {'rel diff':>9}"
    )
    print(header)
    n_features = n_components = 10
    for n_obs, covariance_type in configs:
        X, centers = make_data(n_obs, n_features, n_components)
        init = shared_init(centers, covariance_type)
        t_ours, ll_ours = time_ours(X, n_components, covariance_type, init, args.repeats)
        t_sk1, ll_sk = time_sklearn(X, n_components, covariance_type, init, args.repeats, 1)
        t_sk2, _ = time_sklearn(X, n_components, covariance_type, init, args.repeats, 2)
        flops = 4 * n_obs * n_stats(n_features, covariance_type) * n_components
        if covariance_type == "tied":
            flops += 2 * n_obs * n_features**2  # the shared quadratic term's whitening
        gflops = flops / t_ours / 1e9
        print(
            f"{n_obs:>9,} {covariance_type:>5} {t_ours * 1e3:8.1f} {t_sk1 * 1e3:8.1f} {t_sk2 * 1e3:8.1f} "
            f"{min(t_sk1, t_sk2) / t_ours:7.1f}x {gflops:8.1f} {100 * gflops / peak:5.1f}% "
            f"{ll_ours:16.6f} {ll_sk:16.6f} {abs(ll_ours - ll_sk) / abs(ll_sk):9.1e}",
            flush=True,
        )


if __name__ == "__main__":
    main()
