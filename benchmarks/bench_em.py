"""EM against scikit-learn's ``GaussianMixture``, at the call users make, in the same run.

Both start from the same parameters (weights_init / means_init / precisions_init), run a
fixed number of iterations (tol=0) and must end at the same log-likelihood. Three columns:

- *warm*: the whole ``GaussianMixture(...).fit(X)`` call (validation, copies, the final
  E-step, everything), best of ``--repeats`` calls in one process, after a first call;
  ours and scikit-learn's alternate so that both sample the same stretch of the machine.
- *cold*: the first ``fit`` call in a fresh Python process (compilation included for
  bayesgmm; the import is timed apart and not included), each library in its own process.
- *inner*: time per iteration of the loop alone. For bayesgmm, ``(T(max_iter=N_ITER) -
  T(max_iter=0)) / N_ITER`` of the public call; for scikit-learn its own loop body
  (``_e_step`` then ``_m_step``).

scikit-learn is timed with its BLAS limited to 1 and to 2 threads (threadpoolctl) and the
faster is the reference. The machine is described first: CPU, cores, BLAS, JAX devices.

Run: ``python benchmarks/bench_em.py [--quick] [--repeats R]`` (``--quick``: N=200,000 only).
"""

from __future__ import annotations

import argparse
import os
import platform
import subprocess
import sys
import time
import warnings

import jax
import jax.numpy as jnp
import numpy as np
import sklearn
from sklearn.mixture import GaussianMixture as SkGaussianMixture
from threadpoolctl import threadpool_info, threadpool_limits

import bayesgmm
from bayesgmm.inference.em.stats import n_stats

N_ITER = 20


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


def _fit_ours(X, n_components, covariance_type, init, max_iter=None):
    max_iter = N_ITER if max_iter is None else max_iter
    gm = bayesgmm.GaussianMixture(
        n_components, covariance_type=covariance_type, max_iter=max_iter, tol=0.0, **init
    )
    return gm.fit(X)


def _fit_sklearn(X, n_components, covariance_type, init, n_threads):
    with threadpool_limits(n_threads):
        gm = SkGaussianMixture(
            n_components, covariance_type=covariance_type, max_iter=N_ITER, tol=0.0, **init
        )
        return gm.fit(X)


def time_warm(X, n_components, covariance_type, init, repeats):
    """Best whole-call times of ours and of scikit-learn (1 and 2 BLAS threads), alternated."""
    _fit_ours(X, n_components, covariance_type, init)  # compile
    _fit_ours(X, n_components, covariance_type, init, max_iter=0)
    times = {"ours": [], "ours0": [], "sk1": [], "sk2": []}
    for _ in range(repeats):
        for name, fit in (
            ("ours", lambda: _fit_ours(X, n_components, covariance_type, init)),
            ("ours0", lambda: _fit_ours(X, n_components, covariance_type, init, max_iter=0)),
            ("sk1", lambda: _fit_sklearn(X, n_components, covariance_type, init, 1)),
            ("sk2", lambda: _fit_sklearn(X, n_components, covariance_type, init, 2)),
        ):
            t = time.perf_counter()
            fit()
            times[name].append(time.perf_counter() - t)
    return {name: min(t) for name, t in times.items()}


def time_sklearn_loop(X, n_components, covariance_type, init, repeats, n_threads):
    """Per-iteration time of scikit-learn's own loop body (``_e_step`` then ``_m_step``)."""
    gm = _fit_sklearn(X, n_components, covariance_type, init, n_threads)
    with threadpool_limits(n_threads):

        def run():
            for _ in range(N_ITER):
                _, log_resp = gm._e_step(X)
                gm._m_step(X, log_resp)

        return best_time(run, repeats) / N_ITER


def cold(library, n_obs, covariance_type):
    """Import time and first-fit time in this (fresh) process."""
    n_features = n_components = 10
    X, centers = make_data(n_obs, n_features, n_components)
    init = shared_init(centers, covariance_type)
    t = time.perf_counter()
    if library == "ours":
        _fit_ours(X, n_components, covariance_type, init)
    else:
        with threadpool_limits(2):
            SkGaussianMixture(
                n_components, covariance_type=covariance_type, max_iter=N_ITER, tol=0.0, **init
            ).fit(X)
    return time.perf_counter() - t


def time_cold(n_obs, covariance_type):
    """First-fit seconds of each library, each in a fresh process."""
    out = {}
    for library in ("ours", "sklearn"):
        run = subprocess.run(
            [sys.executable, __file__, "--cold", library, f"{n_obs},{covariance_type}"],
            capture_output=True, text=True, check=True,
        )  # fmt: skip
        out[library] = float(run.stdout.strip().splitlines()[-1])
    return out


def describe_machine():
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    blas = [
        f"{i.get('internal_api')} {i.get('version')} ({i.get('architecture')}, "
        f"{i.get('num_threads')} threads)"
        for i in threadpool_info()
        if i.get("user_api") == "blas"
    ]
    return (
        f"{cpu}, {os.cpu_count()} cores; bayesgmm {bayesgmm.__version__}, jax {jax.__version__} "
        f"({jax.local_device_count()} {jax.devices()[0].platform} devices), "
        f"scikit-learn {sklearn.__version__}; "
        f"BLAS: {blas}"
    )


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
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="only N=200,000")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--only", help="run one row, e.g. 1000000,tied")
    parser.add_argument("--cold", nargs=2, help=argparse.SUPPRESS)
    args = parser.parse_args()
    warnings.simplefilter("ignore")
    if args.cold:
        n_obs, covariance_type = args.cold[1].split(",")
        print(cold(args.cold[0], int(n_obs), covariance_type))
        return

    print(describe_machine())
    peak, peak_np, peak_jax = matmul_peak()
    print(f"float64 matmul peak: {peak:.1f} GFLOP/s (numpy {peak_np:.1f}, jax {peak_jax:.1f})")
    print(f"D=10, K=10, {N_ITER} iterations from the same start; warm: best of {args.repeats} calls\n")

    configs = [(200_000, "full"), (200_000, "diag"), (200_000, "tied")]
    if not args.quick:
        configs += [(1_000_000, "full"), (1_000_000, "diag"), (1_000_000, "tied")]
    if args.only:
        n_obs, covariance_type = args.only.split(",")
        configs = [(int(n_obs), covariance_type)]
    print(
        f"{'N':>9} {'cov':>5} | {'warm s':>6} {'sk s':>6} {'ratio':>6} | "
        f"{'cold s':>6} {'sk s':>6} {'ratio':>6} | "
        f"{'ms/it':>6} {'sk ms':>6} {'ratio':>6} {'GFLOP/s':>7} | {'rel LL diff':>11}"
    )
    n_features = n_components = 10
    for n_obs, covariance_type in configs:
        X, centers = make_data(n_obs, n_features, n_components)
        init = shared_init(centers, covariance_type)
        warm = time_warm(X, n_components, covariance_type, init, args.repeats)
        sk_warm = min(warm["sk1"], warm["sk2"])
        n_threads = 1 if warm["sk1"] <= warm["sk2"] else 2
        inner = (warm["ours"] - warm["ours0"]) / N_ITER
        sk_inner = time_sklearn_loop(X, n_components, covariance_type, init, args.repeats, n_threads)
        first = time_cold(n_obs, covariance_type)
        ll_ours = _fit_ours(X, n_components, covariance_type, init).score(X)
        ll_sk = _fit_sklearn(X, n_components, covariance_type, init, n_threads).score(X)
        flops = 4 * n_obs * n_stats(n_features, covariance_type) * n_components
        if covariance_type == "tied":
            flops += 2 * n_obs * n_features**2  # the shared quadratic term's whitening
        print(
            f"{n_obs:>9,} {covariance_type:>5} | "
            f"{warm['ours']:6.3f} {sk_warm:6.3f} {sk_warm / warm['ours']:5.1f}x | "
            f"{first['ours']:6.3f} {first['sklearn']:6.3f} {first['sklearn'] / first['ours']:5.1f}x | "
            f"{inner * 1e3:6.1f} {sk_inner * 1e3:6.1f} {sk_inner / inner:5.1f}x {flops / inner / 1e9:7.1f} | "
            f"{abs(ll_ours - ll_sk) / abs(ll_sk):11.1e}",
            flush=True,
        )


if __name__ == "__main__":
    main()
