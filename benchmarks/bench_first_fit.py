"""First-fit latency of each method, as a user meets it: a fresh process, then a refit.

Each row runs in a new Python process (``--one`` below) that imports the library, fits the
bundled Old Faithful data (272 x 2, K=2, full covariance) and fits it again with another
seed. "cold" is the first fit's wall time, compilation included (the import is timed apart);
"warm" is the refit. The peers run in the same script: scikit-learn's ``GaussianMixture``
(EM) and ``BayesianGaussianMixture`` (variational), and a plain NumPyro mixture
(``MixtureSameFamily`` with ``LKJCholesky``, NUTS with its defaults; ``plain_numpyro.py``) for NUTS.

Run: ``python benchmarks/bench_first_fit.py`` (about three minutes on 2 cores).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
import warnings

N_WARMUP, N_SAMPLES, N_CHAINS = 1000, 1000, 4


def _faithful():
    from bayesgmm import load_dataset

    return load_dataset("faithful")[0]


def _bayesgmm(method: str):
    import bayesgmm

    X = _faithful()
    if method == "em":
        return lambda seed: bayesgmm.GaussianMixture(2, random_state=seed).fit(X)
    if method == "svi":
        return lambda seed: bayesgmm.fit_svi(X, 2, seed=seed)
    return lambda seed: bayesgmm.fit_nuts(
        X, 2, num_warmup=N_WARMUP, num_samples=N_SAMPLES, num_chains=N_CHAINS, seed=seed
    )


def _sklearn(method: str):
    from sklearn.mixture import BayesianGaussianMixture, GaussianMixture

    X = _faithful()
    cls = GaussianMixture if method == "em" else BayesianGaussianMixture
    return lambda seed: cls(n_components=2, random_state=seed).fit(X)


def _plain_numpyro():
    import jax.numpy as jnp
    import plain_numpyro

    plain_numpyro.set_devices(N_CHAINS)
    Z = plain_numpyro.standardise(jnp.asarray(_faithful()))

    def fit(seed):
        mcmc = plain_numpyro.new_mcmc(N_WARMUP, N_SAMPLES, N_CHAINS)
        return plain_numpyro.run(mcmc, Z, 2, seed)

    return fit


def one(library: str, method: str) -> dict:
    """Time the import, a first fit and a refit in this process."""
    warnings.simplefilter("ignore")
    start = time.perf_counter()
    fit = {"bayesgmm": _bayesgmm, "sklearn": _sklearn}.get(library, lambda m: _plain_numpyro())(method)
    imported = time.perf_counter()
    fit(0)
    cold = time.perf_counter()
    fit(1)
    warm = time.perf_counter()
    return {"import": imported - start, "cold": cold - imported, "warm": warm - cold}


ROWS = (
    ("em", "bayesgmm", "sklearn"),
    ("svi", "bayesgmm", "sklearn"),
    ("nuts", "bayesgmm", "numpyro"),
)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--one", nargs=2, metavar=("LIBRARY", "METHOD"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        print(json.dumps(one(*args.one)))
        return

    def run(library, method):
        out = subprocess.run(
            [sys.executable, __file__, "--one", library, method], capture_output=True, text=True, check=True
        )
        return json.loads(out.stdout.strip().splitlines()[-1])

    print(f"Old Faithful (272 x 2), K=2, full; NUTS {N_CHAINS} x {N_WARMUP} + {N_SAMPLES}; seconds")
    print(f"{'method':>6} {'library':>9} {'import':>7} {'cold':>7} {'warm':>7}   peer's cold/ours, warm/ours")
    for method, ours, peer in ROWS:
        a, b = run(ours, method), run(peer, method)
        for name, t in ((ours, a), (peer, b)):
            print(f"{method:>6} {name:>9} {t['import']:7.2f} {t['cold']:7.2f} {t['warm']:7.2f}")
        print(f"{'':>35}   {b['cold'] / a['cold']:.2f}x, {b['warm'] / a['warm']:.2f}x")


if __name__ == "__main__":
    main()
