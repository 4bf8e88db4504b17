"""First-fit latency of each method, as a user meets it: a fresh process, then a refit.

Each row runs in a new Python process (``--one`` below) that imports the library, fits the
bundled Old Faithful data (272 x 2, K=2, full covariance; iris, 150 x 4, K=3, for the
``nuts-iris`` row) and fits it again with another seed. "cold" is the first fit's wall
time, compilation included (the import is timed apart); "warm" is the refit, and "warm/cold"
their ratio (the target for NUTS on iris: at most 1/4). The peers run in the same script:
scikit-learn's ``GaussianMixture`` (EM) and ``BayesianGaussianMixture`` (variational), and a
plain NumPyro mixture (``MixtureSameFamily`` with ``LKJCholesky``, NUTS with its defaults;
``plain_numpyro.py``) for NUTS.

Run: ``python benchmarks/bench_first_fit.py`` (about five minutes on 2 cores).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
import warnings

N_WARMUP, N_SAMPLES, N_CHAINS = 1000, 1000, 4


#: The data and K of each method's row: Old Faithful with K=2, and iris with K=3 for "nuts-iris".
DATA = {"nuts-iris": ("iris", 3)}


def _data(method: str):
    from bayesgmm import load_dataset

    name, n_components = DATA.get(method, ("faithful", 2))
    return load_dataset(name)[0], n_components


def _bayesgmm(method: str):
    import bayesgmm

    X, n_components = _data(method)
    if method == "em":
        return lambda seed: bayesgmm.GaussianMixture(2, random_state=seed).fit(X)
    if method == "svi":
        return lambda seed: bayesgmm.fit_svi(X, 2, seed=seed)
    return lambda seed: bayesgmm.fit_nuts(
        X, n_components, num_warmup=N_WARMUP, num_samples=N_SAMPLES, num_chains=N_CHAINS, seed=seed
    )


def _sklearn(method: str):
    from sklearn.mixture import BayesianGaussianMixture, GaussianMixture

    X, _ = _data(method)
    cls = GaussianMixture if method == "em" else BayesianGaussianMixture
    return lambda seed: cls(n_components=2, random_state=seed).fit(X)


def _plain_numpyro(method: str):
    import jax.numpy as jnp
    import plain_numpyro

    plain_numpyro.set_devices(N_CHAINS)
    X, n_components = _data(method)
    Z = plain_numpyro.standardise(jnp.asarray(X))

    def fit(seed):
        mcmc = plain_numpyro.new_mcmc(N_WARMUP, N_SAMPLES, N_CHAINS)
        return plain_numpyro.run(mcmc, Z, n_components, seed)

    return fit


def one(library: str, method: str) -> dict:
    """Time the import, a first fit and a refit in this process."""
    warnings.simplefilter("ignore")
    start = time.perf_counter()
    fit = {"bayesgmm": _bayesgmm, "sklearn": _sklearn, "numpyro": _plain_numpyro}[library](method)
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
    ("nuts-iris", "bayesgmm", "numpyro"),
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

    print(
        f"Old Faithful (272 x 2), K=2, full (nuts-iris: iris 150 x 4, K=3); "
        f"NUTS {N_CHAINS} x {N_WARMUP} + {N_SAMPLES}; seconds"
    )
    print(
        f"{'method':>9} {'library':>9} {'import':>7} {'cold':>7} {'warm':>7} {'warm/cold':>9}"
        "   peer's cold/ours, warm/ours"
    )
    for method, ours, peer in ROWS:
        a, b = run(ours, method), run(peer, method)
        for name, t in ((ours, a), (peer, b)):
            print(
                f"{method:>9} {name:>9} {t['import']:7.2f} {t['cold']:7.2f} {t['warm']:7.2f} "
                f"{t['warm'] / t['cold']:9.2f}"
            )
        print(f"{'':>48}   {b['cold'] / a['cold']:.2f}x, {b['warm'] / a['warm']:.2f}x")


if __name__ == "__main__":
    main()
