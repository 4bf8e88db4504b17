"""Scaling of EM and SVI in N, D and K against scikit-learn, with a plot.

Three sweeps, full covariances, float64, data from ``bench_em.make_data``:
N in (1e4, 1e5, 1e6, 1e7) at D=10, K=10; D in (2, 5, 10, 20, 40) at N=1e5, K=10;
K in (2, 5, 10, 20, 40) at N=1e5, D=10. A point shared by sweeps runs once.

EM: ``bayesgmm.GaussianMixture`` against ``sklearn.mixture.GaussianMixture``, both from
``bench_em.shared_init``'s start, ``tol=0``, ``n_iter`` iterations (fewer at large N).

- *warm s*: the whole public ``fit`` call after a first one (best of the repeats);
- *ms/it*: one iteration. Ours: ``(T(n_iter) - T(0)) / n_iter`` of the public call.
  scikit-learn's: the clock read after its start and after each M-step inside the same
  call, divided by ``n_iter``.
- scikit-learn runs with its BLAS at 1 and at 2 threads and the faster call is the reference
  (at N=1e7 at 2 threads only, to keep the run short); "rel LL" compares the two fits' ``score``.

SVI: ``bayesgmm.fit_svi`` (mean-field guide, 200 draws, no pointwise log-likelihood, as in
``bench_svi.py``) against ``sklearn.mixture.BayesianGaussianMixture`` (Dirichlet weights as in
``bench_svi.py``, ``k-means++`` start so that its start does not dominate at large N, ``tol=0``,
``n_iter`` iterations). Fixed budgets, not time to an accuracy:

- ours: ``SVI_STEPS`` steps on minibatches of ``BATCH`` rows at every N (``bench_svi.py``'s);
  *fit s* is the whole warm call (EM start, steps, draws); *ms/step*
  is ``(T(SVI_STEPS) - T(CHUNK)) / steps between them``; *ms/pass* is ms/step times
  ``N / rows per step``, the time to visit every row once;
- scikit-learn: *fit s* the whole call, *ms/it* one iteration (one pass over every row), read
  as for EM; the ratio is its ms/it over our ms/pass.

With a GPU (``jax.devices("gpu")`` answers), bayesgmm's EM and SVI are timed again under
``jax.default_device`` of the GPU. Output: the table, ``scaling.csv`` and ``scaling.png``
under ``--out``.

Run: ``python benchmarks/bench_scaling.py [--quick] [--out DIR]`` (``--quick`` skips N=1e7).
"""

from __future__ import annotations

import argparse
import csv
import gc
import os
import time
import warnings

import jax
import matplotlib
from bench_em import describe_machine, make_data, shared_init
from sklearn.mixture import BayesianGaussianMixture
from sklearn.mixture import GaussianMixture as SkGaussianMixture
from threadpoolctl import threadpool_limits

import bayesgmm

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

SWEEPS = {
    "N": [(n, 10, 10) for n in (10_000, 100_000, 1_000_000, 10_000_000)],
    "D": [(100_000, d, 10) for d in (2, 5, 10, 20, 40)],
    "K": [(100_000, 10, k) for k in (2, 5, 10, 20, 40)],
}
SVI_KWARGS = dict(guide="meanfield", num_samples=200, log_likelihood=False, seed=0)
SVI_STEPS, CHUNK, BATCH = 1000, 200, 4096


def n_iter(n_obs):
    """Fewer iterations at large N keep the whole run near a quarter of an hour on 2 cores."""
    return 10 if n_obs <= 100_000 else 5 if n_obs <= 1_000_000 else 2


def timed(fn):
    start = time.perf_counter()
    out = fn()
    return time.perf_counter() - start, out


class _Stamped:
    """Read the clock after the start and after each M-step, inside scikit-learn's own loop."""

    def _initialize(self, *args, **kwargs):
        super()._initialize(*args, **kwargs)
        self.stamps_ = [time.perf_counter()]

    def _m_step(self, *args, **kwargs):
        super()._m_step(*args, **kwargs)
        self.stamps_.append(time.perf_counter())

    def per_iteration(self):
        return (self.stamps_[-1] - self.stamps_[0]) / (len(self.stamps_) - 1)


class StampedGM(_Stamped, SkGaussianMixture):
    pass


class StampedBGM(_Stamped, BayesianGaussianMixture):
    pass


def em_ours(X, n_components, init, iters, device, repeats):
    def fit(max_iter):
        gm = bayesgmm.GaussianMixture(n_components, max_iter=max_iter, tol=0.0, **init)
        return gm.fit(X)

    with jax.default_device(device):
        fit(iters), fit(0)  # compile both programs
        warm, gm = min((timed(lambda: fit(iters)) for _ in range(repeats)), key=lambda r: r[0])
        zero = min(timed(lambda: fit(0))[0] for _ in range(repeats))
        return {"warm": warm, "per_it": max(warm - zero, 0.0) / iters, "ll": gm.score(X)}


def em_sklearn(X, n_components, init, iters, repeats, threads):
    best = None
    for n_threads in threads:
        with threadpool_limits(n_threads):
            for _ in range(repeats):
                gm = StampedGM(n_components, max_iter=iters, tol=0.0, **init)
                t, _ = timed(lambda gm=gm: gm.fit(X))
                if best is None or t < best["warm"]:
                    best = {"warm": t, "per_it": gm.per_iteration(), "threads": n_threads, "gm": gm}
    best["ll"] = best.pop("gm").score(X)
    return best


def svi_ours(X, n_components, device):
    def fit(steps):
        return bayesgmm.fit_svi(X, n_components, max_steps=steps, batch_size=BATCH, **SVI_KWARGS)

    with jax.default_device(device):
        fit(CHUNK)  # compile: the step budget is no part of the programs
        total, full = timed(lambda: fit(SVI_STEPS))
        short, first = timed(lambda: fit(CHUNK))
    steps = full.attrs["n_steps"] - first.attrs["n_steps"]
    per_step = (total - short) / steps if steps > 0 else float("nan")
    rows = min(BATCH, len(X))
    return {"fit": total, "steps": int(full.attrs["n_steps"]), "rows": rows, "per_step": per_step,
            "per_pass": per_step * len(X) / rows}  # fmt: skip


def bgm_sklearn(X, n_components, iters):
    bgm = StampedBGM(
        n_components=n_components, weight_concentration_prior_type="dirichlet_distribution",
        init_params="k-means++", max_iter=iters, tol=0.0, random_state=0,
    )  # fmt: skip
    with threadpool_limits(2):
        t, _ = timed(lambda: bgm.fit(X))
    return {"fit": t, "per_it": bgm.per_iteration()}


def gpu_device():
    try:
        return jax.devices("gpu")[0]
    except RuntimeError:
        return None


def run_point(n_obs, n_features, n_components, gpu):
    """All timings at one (N, D, K); the data are made here and freed on return."""
    X, centers = make_data(n_obs, n_features, n_components)
    init = shared_init(centers, "full")
    iters, cpu = n_iter(n_obs), jax.devices("cpu")[0]
    repeats = 3 if n_obs <= 100_000 else 1
    threads = (2,) if n_obs > 1_000_000 else (1, 2)
    row = {"N": n_obs, "D": n_features, "K": n_components, "iters": iters}
    ours = em_ours(X, n_components, init, iters, cpu, repeats)
    sk = em_sklearn(X, n_components, init, iters, repeats, threads)
    row.update(em_warm=ours["warm"], em_it=ours["per_it"], sk_warm=sk["warm"], sk_it=sk["per_it"],
               sk_threads=sk["threads"], rel_ll=abs(ours["ll"] - sk["ll"]) / abs(sk["ll"]))  # fmt: skip
    svi, bgm = svi_ours(X, n_components, cpu), bgm_sklearn(X, n_components, iters)
    row.update(svi_fit=svi["fit"], svi_steps=svi["steps"], svi_rows=svi["rows"], svi_step=svi["per_step"],
               svi_pass=svi["per_pass"], bgm_fit=bgm["fit"], bgm_it=bgm["per_it"])  # fmt: skip
    if gpu is not None:
        row["gpu_em_it"] = em_ours(X, n_components, init, iters, gpu, repeats)["per_it"]
        row["gpu_svi_step"] = svi_ours(X, n_components, gpu)["per_step"]
    del X
    gc.collect()
    return row


HEADER = (
    f"{'sweep':>5} {'N':>10} {'D':>3} {'K':>3} {'it':>2} | {'warm s':>7} {'sk s':>7} {'ratio':>6} | "
    f"{'ms/it':>8} {'sk ms':>8} {'ratio':>6} {'thr':>3} {'rel LL':>7} | "
    f"{'rows/st':>7} {'fit s':>6} {'ms/st':>6} {'ms/pass':>8} | {'BGM s':>7} {'BGM ms':>8} {'ratio':>6}"
)


def format_row(sweep, r):
    line = (
        f"{sweep:>5} {r['N']:>10,} {r['D']:>3} {r['K']:>3} {r['iters']:>2} | "
        f"{r['em_warm']:7.3f} {r['sk_warm']:7.3f} {r['sk_warm'] / r['em_warm']:5.1f}x | "
        f"{r['em_it'] * 1e3:8.1f} {r['sk_it'] * 1e3:8.1f} {r['sk_it'] / r['em_it']:5.1f}x "
        f"{r['sk_threads']:>3} {r['rel_ll']:7.1e} | "
        f"{r['svi_rows']:>7} {r['svi_fit']:6.2f} {r['svi_step'] * 1e3:6.2f} {r['svi_pass'] * 1e3:8.1f} | "
        f"{r['bgm_fit']:7.2f} {r['bgm_it'] * 1e3:8.1f} {r['bgm_it'] / r['svi_pass']:5.1f}x"
    )
    if "gpu_em_it" in r:
        line += f" | GPU EM {r['gpu_em_it'] * 1e3:.2f} ms/it, SVI {r['gpu_svi_step'] * 1e3:.3f} ms/step"
    return line


def print_header(gpu):
    print(describe_machine())
    print(f"GPU: {gpu}" if gpu is not None else "no GPU")
    print(
        "EM: full covariances, same start, tol=0, 'it' iterations; warm s = whole fit call (best of 3 "
        "at N<=1e5, 1 above); ms/it = one iteration; sklearn at its faster of 1 and 2 BLAS threads "
        "('thr'; 2 only at N=1e7); ratio = sklearn / ours.\n"
        f"SVI: fit_svi meanfield, {SVI_STEPS} steps (fewer if its stopping rule ends them), "
        f"rows/st = rows per step (minibatches at every N); fit s = whole warm "
        "call (EM start, steps, 200 draws); ms/st = one step; ms/pass = ms/st x N / rows per step.\n"
        "BGM: sklearn BayesianGaussianMixture, k-means++ start, tol=0, 'it' iterations, 2 BLAS threads; "
        "BGM s = whole fit call; BGM ms = one iteration (a pass over the data); "
        "ratio = BGM ms / our ms/pass.\n"
    )
    print(HEADER, flush=True)


def write_csv(rows, path):
    keys = list(dict.fromkeys(k for _, r in rows for k in r))
    with open(path, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=["sweep", *keys])
        writer.writeheader()
        for sweep, r in rows:
            writer.writerow({"sweep": sweep, **r})


def plot(rows, path):
    series = {
        "em_it": "EM bayesgmm", "sk_it": "EM sklearn", "svi_step": "SVI bayesgmm (per step)",
        "svi_pass": "SVI bayesgmm (per pass over the data)",
        "bgm_it": "BGM sklearn (per iteration)", "gpu_em_it": "EM bayesgmm GPU",
        "gpu_svi_step": "SVI bayesgmm GPU (per step)",
    }  # fmt: skip
    fig, axes = plt.subplots(1, 3, figsize=(12, 3.8), constrained_layout=True)
    for ax, sweep in zip(axes, SWEEPS, strict=True):
        points = [r for s, r in rows if s == sweep]
        x = [r[sweep] for r in points]
        for key, label in series.items():
            if key in points[0]:
                style = "o--" if key == "svi_pass" else "o-"
                ax.plot(x, [r[key] for r in points], style, label=label, ms=4)
        ax.set(xscale="log", yscale="log", xlabel=sweep, title=f"sweep in {sweep}")
        ax.grid(True, which="both", alpha=0.3)
    axes[0].set_ylabel("seconds per iteration")
    axes[0].legend(fontsize=7)
    fig.savefig(path, dpi=80)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="skip N=1e7")
    parser.add_argument("--out", default="benchmarks", help="folder for scaling.csv and scaling.png")
    args = parser.parse_args()
    warnings.simplefilter("ignore")  # ConvergenceWarning at a fixed budget is expected
    os.makedirs(args.out, exist_ok=True)
    gpu = gpu_device()
    print_header(gpu)
    done, rows = {}, []
    for sweep, points in SWEEPS.items():
        for point in points:
            if args.quick and point[0] > 1_000_000:
                continue
            if point not in done:
                done[point] = run_point(*point, gpu)
            rows.append((sweep, done[point]))
            print(format_row(sweep, done[point]), flush=True)
            write_csv(rows, os.path.join(args.out, "scaling.csv"))  # so that a cut-short run keeps its rows
    plot(rows, os.path.join(args.out, "scaling.png"))


if __name__ == "__main__":
    main()
