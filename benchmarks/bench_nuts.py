"""NUTS sampling efficiency: min bulk ESS per second of bayesgmm, a plain NumPyro mixture and PyMC.

The three sample the same kind of model on the same simulated data (``make_data``: N=2000,
D=3, K=3 well-separated full-covariance Gaussians by default, seed 0):

- bayesgmm: the public call ``bayesgmm.fit_nuts(X, K, covariance_type="full", ...)`` with its
  defaults (EM starts, target_accept_prob 0.85, float64, its own priors: log-normal scales
  instead of half-normal ones), imported first so that it sets one JAX CPU device per core;
- plain NumPyro: the model a user writes by hand (``plain_numpyro.py``) on standardised data,
  ``MCMC(NUTS(model), chain_method="parallel")`` with NumPyro's defaults (uniform init,
  target_accept_prob 0.8, float32) and one host device per chain;
- PyMC: the same model as plain NumPyro (``pm.Dirichlet``, ``pm.Normal``, ``pm.LKJCholeskyCov``
  with a ``HalfNormal`` sd_dist, ``pm.Mixture`` of ``pm.MvNormal``) on the same standardised
  data, ``pm.sample`` with PyMC's own NUTS and its defaults (jitter+adapt_diag, target_accept
  0.8, float64), ``cores=min(chains, cpu count)``, in a process whose BLAS and OpenMP run one
  thread (``--pymc-blas-threads``, default 1): on Linux PyMC forks one process per chain and then
  does not limit their BLAS threads (its ``blas_cores`` applies to spawned workers only), and
  with OpenBLAS's default of one thread per core the chains' processes oversubscribed the
  cores and sampled about 7 times slower on 2 cores. ``--pymc-blas-threads 0`` leaves the
  default, to see what an untuned PyMC gets.

Each library runs in a fresh Python process (``--one``), which fits twice with the same sizes:
"cold" is the first fit (compilation included), "warm" a refit with another seed, timed the way
a user refits: bayesgmm's same public call (it reuses its compiled sampler); a new
``MCMC`` object for NumPyro, which compiles again on every ``run`` with ``chain_method=
"parallel"`` (a 1-warmup, 1-draw run measures about what that costs, printed below the
table); a second ``pm.sample`` on the same model for PyMC (its C code is cached on disk by
PyTensor, so PyMC's cold fit is only as cold as PyTensor's cache under ``~/.pytensor``; a
first PyMC run on a machine compiles minutes more). ESS/s is the warm fit's min bulk ESS over
its wall time.

Every draw's components are matched to the true ones (label switching): the permutation
minimising the squared distance of its means to the true means, applied to means, weights
and covariances. Min bulk ESS (``az.ess(method="bulk")``) and max R-hat (rank-normalised)
run over every scalar of those (upper triangle of the covariances). The errors of the matched
posterior means against the truth (means in the true components' standard deviations,
weights absolute, covariances relative in Frobenius norm) say that a fit found the right
mode; a row with R-hat > 1.01, a mean more than 0.5 sd off, a weight more than 0.1 off or a
covariance more than 50% off is flagged loudly, whatever its ESS/s.

Run (on a quiet machine; bayesgmm's own compilation cache is turned off in its process)::

    python benchmarks/bench_nuts.py                  # N=2000, D=3, K=3, 4 chains x (1000 + 1000)
    python benchmarks/bench_nuts.py --quick          # tiny sizes, a smoke run
    python benchmarks/bench_nuts.py --skip-pymc
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import platform
import subprocess
import sys
import time
import warnings
from importlib.metadata import version

import numpy as np

LIBRARIES = ("bayesgmm", "numpyro", "pymc")
DATA_SEED = 0
QUICK = dict(n_obs=300, draws=200, tune=200, chains=2)


def make_data(n_obs, n_features, n_components, seed=DATA_SEED):
    """Well-separated full-covariance Gaussians, and their parameters.

    With ``rng = np.random.default_rng(seed)``: means ``4 * rng.normal(size=(K, D))``, drawn
    again until every pair is at least 7 apart; covariances ``R diag(s**2) R^T`` with ``R`` a
    random rotation (QR of a standard normal matrix) and ``s ~ U(0.6, 1.4)`` per axis, so any
    two means are at least 5 of either component's standard deviations apart along the line
    joining them; weights proportional to 2, 3, ..., K + 1; labels drawn with those weights.
    """
    rng = np.random.default_rng(seed)
    while True:
        means = 4 * rng.normal(size=(n_components, n_features))
        gaps = np.linalg.norm(means[:, None] - means[None], axis=-1)[np.triu_indices(n_components, 1)]
        if n_components == 1 or gaps.min() >= 7:
            break
    covs = []
    for _ in range(n_components):
        q, r = np.linalg.qr(rng.normal(size=(n_features, n_features)))
        rot = q * np.sign(np.diag(r))
        covs.append(rot @ np.diag(rng.uniform(0.6, 1.4, n_features) ** 2) @ rot.T)
    covs = np.stack(covs)
    weights = np.arange(2, n_components + 2) / np.arange(2, n_components + 2).sum()
    labels = rng.choice(n_components, size=n_obs, p=weights)
    noise = np.einsum("nij,nj->ni", np.linalg.cholesky(covs)[labels], rng.normal(size=(n_obs, n_features)))
    X = means[labels] + noise
    return X, {"weights": weights, "means": means, "covariances": covs}


def match_to_truth(draws, true_means):
    """Relabel every draw by the permutation of components closest to the true means."""
    means = draws["means"]  # (chain, draw, K, D)
    perms = np.array(list(itertools.permutations(range(means.shape[2]))))  # (P, K)
    # cost[c, s, p] = sum_k |means[c, s, perms[p, k]] - true[k]|^2
    cost = ((means[:, :, perms] - true_means) ** 2).sum(axis=(-2, -1))
    best = perms[cost.argmin(-1)]  # (chain, draw, K)
    return {
        name: np.take_along_axis(x, best.reshape(best.shape + (1,) * (x.ndim - 3)), axis=2)
        for name, x in draws.items()
        if name in ("means", "weights", "covariances")
    }


def diagnose(draws, truth):
    """Min bulk ESS, max R-hat and errors against the truth of label-matched draws."""
    import arviz as az

    matched = match_to_truth(draws, truth["means"])
    iu = np.triu_indices(truth["means"].shape[1])
    scalars = {
        "means": matched["means"],
        "weights": matched["weights"],
        "covariances": matched["covariances"][..., iu[0], iu[1]],
    }
    dataset = az.convert_to_dataset(scalars)
    ess = az.ess(dataset, method="bulk")
    rhat = az.rhat(dataset)
    post = {name: x.mean(axis=(0, 1)) for name, x in matched.items()}
    true_sd = np.sqrt(np.diagonal(truth["covariances"], axis1=-2, axis2=-1))
    cov_err = np.linalg.norm(post["covariances"] - truth["covariances"], axis=(-2, -1)) / np.linalg.norm(
        truth["covariances"], axis=(-2, -1)
    )
    return {
        "min_ess": float(min(ess[v].min() for v in ess.data_vars)),
        "max_rhat": float(max(rhat[v].max() for v in rhat.data_vars)),
        "mean_err_sd": float((np.abs(post["means"] - truth["means"]) / true_sd).max()),
        "weight_err": float(np.abs(post["weights"] - truth["weights"]).max()),
        "cov_err": float(cov_err.max()),
    }


def _to_data_units(means, covs, X):
    """Standardised-unit means and covariances back in the units of ``X``."""
    loc, scale = X.mean(0), X.std(0)
    return means * scale + loc, covs * scale[:, None] * scale[None, :]


def _bayesgmm(X, args):
    import bayesgmm  # sets one JAX CPU device per core (before JAX's backend starts)

    def fit(seed):
        return bayesgmm.fit_nuts(
            X,
            args.n_components,
            covariance_type="full",
            num_warmup=args.tune,
            num_samples=args.draws,
            num_chains=args.chains,
            seed=seed,
        )

    def draws(idata):
        post = idata.posterior
        return {
            "means": post["means"].values,
            "weights": post["weights"].values,
            "covariances": post["covariances"].values,
            "divergences": int(idata.sample_stats["diverging"].values.sum()),
        }

    import jax

    return fit, draws, {"jax_devices": jax.local_device_count()}


def _numpyro(X, args):
    import plain_numpyro

    plain_numpyro.set_devices(args.chains)
    import jax
    import jax.numpy as jnp

    Z = plain_numpyro.standardise(jnp.asarray(X))
    mcmc = None

    def fit(seed):
        nonlocal mcmc
        mcmc = plain_numpyro.new_mcmc(args.tune, args.draws, args.chains)  # a new one per fit
        return plain_numpyro.run(mcmc, Z, args.n_components, seed)

    def draws(samples):
        tril = np.asarray(samples["scales"])[..., :, None] * np.asarray(samples["corr"])
        means, covs = _to_data_units(np.asarray(samples["means"]), tril @ np.swapaxes(tril, -1, -2), X)
        weights = np.asarray(samples["weights"])
        divergences = int(np.asarray(mcmc.get_extra_fields()["diverging"]).sum())
        return {"means": means, "weights": weights, "covariances": covs, "divergences": divergences}

    def compile_estimate():
        """Wall time of a 1-warmup, 1-draw run on a new MCMC: about what each run compiles."""
        start = time.perf_counter()
        plain_numpyro.run(plain_numpyro.new_mcmc(1, 1, args.chains), Z, args.n_components, 3)
        return time.perf_counter() - start

    return fit, draws, {"jax_devices": jax.local_device_count(), "compile_estimate": compile_estimate}


def _pymc(X, args):
    import pymc as pm
    import pytensor.tensor as pt

    K, D = args.n_components, args.n_features
    Z = (X - X.mean(0)) / X.std(0)
    with pm.Model() as model:
        weights = pm.Dirichlet("weights", a=np.ones(K))
        means = pm.Normal("means", 0.0, 2.0, shape=(K, D))
        sd_dist = pm.HalfNormal.dist(1.0, shape=D)
        chols = [pm.LKJCholeskyCov(f"chol{k}", n=D, eta=2.0, sd_dist=sd_dist)[0] for k in range(K)]
        pm.Deterministic("covariances", pt.stack([c @ c.T for c in chols]))
        components = [pm.MvNormal.dist(mu=means[k], chol=chols[k]) for k in range(K)]
        pm.Mixture("X", w=weights, comp_dists=components, observed=Z)

    def fit(seed):
        return pm.sample(
            args.draws,
            tune=args.tune,
            chains=args.chains,
            cores=min(args.chains, os.cpu_count() or 1),
            random_seed=seed,
            progressbar=False,
            model=model,
        )

    def draws(idata):
        post = idata.posterior
        means, covs = _to_data_units(post["means"].values, post["covariances"].values, X)
        weights = post["weights"].values
        divergences = int(idata.sample_stats["diverging"].values.sum())
        return {"means": means, "weights": weights, "covariances": covs, "divergences": divergences}

    return fit, draws, {}


def one(library, args):
    """Fit twice in this process (cold, then warm with another seed); diagnose the warm fit."""
    warnings.simplefilter("ignore")
    X, truth = make_data(args.n_obs, args.n_features, args.n_components)
    fit, draws, extra = {"bayesgmm": _bayesgmm, "numpyro": _numpyro, "pymc": _pymc}[library](X, args)
    start = time.perf_counter()
    fit(1)
    cold = time.perf_counter() - start
    start = time.perf_counter()
    result = fit(2)
    warm = time.perf_counter() - start
    d = draws(result)
    out = {"cold": cold, "warm": warm, "divergences": d.pop("divergences"), **diagnose(d, truth)}
    if "compile_estimate" in extra:
        out["compile_estimate"] = extra.pop("compile_estimate")()
    return {**out, **extra}


def machine():
    model = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            model = next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    system = f"{platform.system()} {platform.release()}, Python {platform.python_version()}"
    return f"{model}, {os.cpu_count()} cores, {system}"


def versions(libraries):
    names = ["bayesgmm", "jax", "numpyro", "arviz"] + (["pymc", "pytensor"] if "pymc" in libraries else [])
    return ", ".join(f"{name} {version(name)}" for name in names)


def problems(row, n_obs_per_component):
    """Why a row's draws should not be trusted, in words (empty if none)."""
    found = []
    if not row["max_rhat"] <= 1.01:
        found.append(f"R-hat {row['max_rhat']:.3f} > 1.01")
    if not row["mean_err_sd"] <= 0.5:
        found.append(f"means {row['mean_err_sd']:.2f} sd off")
    if not row["weight_err"] <= 0.1:
        found.append(f"weights {row['weight_err']:.2f} off")
    if not row["cov_err"] <= max(0.5, 5 / np.sqrt(n_obs_per_component)):
        found.append(f"covariances {100 * row['cov_err']:.0f}% off")
    return found


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n-obs", type=int, default=2000)
    parser.add_argument("--n-features", type=int, default=3)
    parser.add_argument("--n-components", type=int, default=3)
    parser.add_argument("--draws", type=int, default=1000, help="per chain")
    parser.add_argument("--tune", type=int, default=1000, help="warm-up draws per chain")
    parser.add_argument("--chains", type=int, default=4)
    parser.add_argument("--quick", action="store_true", help="tiny sizes for a smoke run: " + str(QUICK))
    parser.add_argument("--skip-pymc", action="store_true")
    parser.add_argument(
        "--pymc-blas-threads",
        type=int,
        default=1,
        help="OPENBLAS_NUM_THREADS and OMP_NUM_THREADS of PyMC's process; 0 leaves them as they are",
    )
    parser.add_argument("--one", choices=LIBRARIES, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.quick:
        vars(args).update(QUICK)
    if args.one:
        print(json.dumps(one(args.one, args)))
        return

    sizes = [f"--{name.replace('_', '-')}={getattr(args, name)}"
             for name in ("n_obs", "n_features", "n_components", "draws", "tune", "chains")]  # fmt: skip
    env = {k: v for k, v in os.environ.items() if k != "BAYESGMM_COMPILATION_CACHE"}
    libraries = [lib for lib in LIBRARIES if not (lib == "pymc" and args.skip_pymc)]
    rows = {}
    for library in libraries:
        print(f"running {library} ...", file=sys.stderr, flush=True)
        start = time.perf_counter()
        child_env = dict(env)
        if library == "pymc" and args.pymc_blas_threads:
            threads = str(args.pymc_blas_threads)
            child_env.update(OPENBLAS_NUM_THREADS=threads, OMP_NUM_THREADS=threads, MKL_NUM_THREADS=threads)
        command = [sys.executable, __file__, "--one", library, *sizes]
        out = subprocess.run(command, capture_output=True, text=True, env=child_env)
        if out.returncode:
            sys.exit(f"{library} failed:\n{out.stderr[-5000:]}")
        rows[library] = json.loads(out.stdout.strip().splitlines()[-1])
        print(f"  {library}: {time.perf_counter() - start:.0f} s in all", file=sys.stderr, flush=True)

    _, truth = make_data(args.n_obs, args.n_features, args.n_components)
    print(f"machine: {machine()}")
    print(f"versions: {versions(libraries)}")
    devices = ", ".join(f"{lib} {rows[lib]['jax_devices']}" for lib in rows if "jax_devices" in rows[lib])
    pymc_threads = args.pymc_blas_threads or "default"
    print(f"JAX CPU devices in each library's process: {devices}; PyMC's BLAS threads: {pymc_threads}")
    print(
        f"data: N={args.n_obs}, D={args.n_features}, K={args.n_components}, seed {DATA_SEED}, true weights "
        f"{np.round(truth['weights'], 3).tolist()}, means {np.round(truth['means'], 2).tolist()}"
    )
    print(
        f"NUTS: {args.chains} chains x ({args.tune} warm-up + {args.draws} draws); cold = first fit in a "
        "fresh process, warm = refit with another seed; ESS/s = min bulk ESS / warm seconds"
    )
    print()
    print(
        f"{'library':>9} {'cold s':>8} {'warm s':>8} {'min ESS':>8} {'ESS/s':>8} {'R-hat':>6} {'div':>5} "
        f"{'mean err':>8} {'w err':>6} {'cov err':>7} {'bayesgmm/peer':>13}"
    )
    ours = rows["bayesgmm"]["min_ess"] / rows["bayesgmm"]["warm"]
    flagged = []
    for library, row in rows.items():
        ess_s = row["min_ess"] / row["warm"]
        ratio = "" if library == "bayesgmm" else f"{ours / ess_s:.1f}x"
        found = problems(row, args.n_obs * truth["weights"].min())
        print(
            f"{library:>9} {row['cold']:8.1f} {row['warm']:8.1f} {row['min_ess']:8.0f} {ess_s:8.1f} "
            f"{row['max_rhat']:6.3f} {row['divergences']:5d} {row['mean_err_sd']:8.2f} "
            f"{row['weight_err']:6.3f} {100 * row['cov_err']:6.1f}% {ratio:>13}"
            + ("   <-- WARNING" if found else "")
        )
        if found:
            flagged.append(f"WARNING: {library}'s draws are not to be trusted ({'; '.join(found)}).")
    print(
        "\nmean err: max |posterior mean - true mean| in true component sds; w err: max absolute error "
        "of the weights; cov err: max relative (Frobenius) error of the covariances."
    )
    if "numpyro" in rows:
        print(
            f"plain NumPyro compiles in every run: a 1-warm-up, 1-draw run takes "
            f"{rows['numpyro']['compile_estimate']:.1f} s."
        )
    if "pymc" in rows:
        print("PyMC's cold fit reuses the C code that earlier runs left in PyTensor's cache (~/.pytensor).")
    for line in flagged:
        print("\n" + "!" * 100 + "\n" + line + "\n" + "!" * 100)
    if flagged and args.quick:
        print("(--quick's short chains often give R-hat above 1.01.)")


if __name__ == "__main__":
    main()
