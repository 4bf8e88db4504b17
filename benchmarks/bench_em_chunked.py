"""Streamed (out-of-core) EM against in-memory EM: peak memory and seconds per iteration.

    python benchmarks/bench_em_chunked.py                 # N=2,000,000
    python benchmarks/bench_em_chunked.py --n-obs 200000

An N x 10 float64 ``.npy`` file, K=10, full covariance, from the same start
(``weights_init``/``means_init``/``precisions_init``), ``tol=0``. Each variant runs in its own
process so that its peak resident memory (``VmHWM`` of ``/proc/self/status``) is its own:

- *in-memory*: ``np.load(path)`` then ``fit_em(X, ...)``;
- *streamed*: ``fit_em(np.load(path, mmap_mode="r"), ..., chunk_size=65536)``.

*s/it* is ``(T(max_iter=10) - T(max_iter=0)) / 10`` in one process after a first, compiling
call; *fixed s* is ``T(max_iter=0)`` (the streamed fit's passes for the mean, the start and the
labels, the in-memory fit's load, copies and final E-step). *base MiB* is the resident memory
after the imports, before the data are touched; *anon* and *file* are the anonymous and the
file-backed resident memory at the end (a memmap's pages that were read count as file-backed
resident memory: page cache the kernel can drop, not a copy of the data).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

import numpy as np

K, D, ITERS, CHUNK = 10, 10, 10, 65_536


def vm(field: str) -> float:
    """Return a ``/proc/self/status`` memory field in MiB."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024
    raise KeyError(field)


def write_data(path: str, n_obs: int) -> None:
    """Write an n_obs x D mixture to ``path`` chunk by chunk (the writer never holds it all)."""
    rng = np.random.default_rng(0)
    centres = rng.normal(0, 5, (K, D))
    out = np.lib.format.open_memmap(path, mode="w+", dtype=np.float64, shape=(n_obs, D))
    for start in range(0, n_obs, 500_000):
        n = min(500_000, n_obs - start)
        out[start : start + n] = centres[rng.integers(0, K, n)] + rng.normal(size=(n, D))
    out.flush()


def child(path: str, mode: str) -> dict:
    """Time one variant in this process; return its figures."""
    from bayesgmm import fit_em

    base = vm("VmRSS")
    head = np.load(path, mmap_mode="r")[:: max(1, len(np.load(path, mmap_mode="r")) // K)][:K]
    start = dict(
        weights_init=np.full(K, 1 / K), means_init=np.array(head), precisions_init=np.stack([np.eye(D)] * K)
    )

    def fit(max_iter):
        X = np.load(path) if mode == "in-memory" else np.load(path, mmap_mode="r")
        extra = {} if mode == "in-memory" else {"chunk_size": CHUNK}
        t = time.perf_counter()
        res = fit_em(X, K, "full", max_iter=max_iter, tol=0.0, **start, **extra)
        return time.perf_counter() - t, res

    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fit(1)  # compile
        t0, _ = fit(0)
        t1, res = fit(ITERS)
    return dict(mode=mode, base=base, peak=vm("VmHWM"), fixed=t0, per_iter=(t1 - t0) / ITERS,
                ll=res.log_likelihood, anon=vm("RssAnon"), file=vm("RssFile"))  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--n-obs", type=int, default=2_000_000)
    parser.add_argument("--child", nargs=2, metavar=("PATH", "MODE"))
    args = parser.parse_args()
    if args.child:
        print(json.dumps(child(*args.child)))
        return
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "x.npy")
        write_data(path, args.n_obs)
        rows = []
        for mode in ("in-memory", "streamed"):
            cmd = [sys.executable, __file__, "--child", path, mode]
            out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
            rows.append(json.loads(out.strip().splitlines()[-1]))
    data_mib = args.n_obs * D * 8 / 2**20
    print(
        f"N={args.n_obs:,} x D={D} float64 ({data_mib:.0f} MiB), K={K}, full, "
        f"chunk_size={CHUNK}, {ITERS} iterations"
    )
    print("     variant | base MiB  peak MiB  peak-base | anon MiB  file MiB |  s/it  fixed s")
    for r in rows:
        print(f"{r['mode']:>12} | {r['base']:8.0f}  {r['peak']:8.0f}  {r['peak'] - r['base']:9.0f} |"
              f" {r['anon']:8.0f}  {r['file']:8.0f} | {r['per_iter']:5.3f}  {r['fixed']:7.2f}")  # fmt: skip
    mem, st = rows
    growth = (st["peak"] - st["base"]) / (mem["peak"] - mem["base"])
    rel = abs(st["ll"] - mem["ll"]) / abs(mem["ll"])
    speed = st["per_iter"] / mem["per_iter"]
    print(f"streamed / in-memory: peak-base {growth:.3f}, s/it {speed:.2f}x; rel LL diff {rel:.1e}")


if __name__ == "__main__":
    main()
