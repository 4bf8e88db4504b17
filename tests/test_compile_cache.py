"""The persistent compilation cache: off by default, on when asked, and found by a new process."""

import os
import subprocess
import sys

_FIT = """
import logging, numpy as np, bayesgmm
logging.basicConfig(level=logging.WARNING, format="%(message)s")
logging.getLogger("jax._src.compiler").setLevel(logging.DEBUG)
X = np.random.default_rng(0).normal(size=(500, 2))
bayesgmm.fit_svi(X, 2, guide="meanfield", batch_size=100, max_steps=400, num_samples=10,
                 log_likelihood=False, seed=0)
"""


def run(code, **env):
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("JAX_COMPILATION", "BAYESGMM_C"))}
    out = subprocess.run(
        [sys.executable, "-c", code], env={**clean, **env}, capture_output=True, text=True, timeout=300
    )
    assert out.returncode == 0, out.stderr
    return out


def test_cache_directory_and_opt_outs(tmp_path):
    def cache_dir(**env):
        code = "import bayesgmm, jax; print(jax.config.jax_compilation_cache_dir)"
        return run(code, BAYESGMM_CACHE_DIR=str(tmp_path), **env).stdout.strip()

    assert cache_dir() == "None"
    from bayesgmm._compile_cache import version_tag

    # One directory per version of jax, jaxlib and bayesgmm.
    assert cache_dir(BAYESGMM_COMPILATION_CACHE="1") == str(tmp_path / version_tag())
    # A cache the user configured for JAX is left as it is.
    theirs = str(tmp_path / "theirs")
    assert cache_dir(BAYESGMM_COMPILATION_CACHE="1", JAX_COMPILATION_CACHE_DIR=theirs) == theirs
    code = f"import bayesgmm, jax; print(bayesgmm.enable_compilation_cache({str(tmp_path / 'x')!r}))"
    assert run(code).stdout.strip() == str(tmp_path / "x")


def test_second_process_loads_the_svi_programs(tmp_path):
    # Different hash seeds: the programs must not depend on the iteration order of sets.
    env = dict(BAYESGMM_CACHE_DIR=str(tmp_path), BAYESGMM_COMPILATION_CACHE="1")
    first = run(_FIT, **env, PYTHONHASHSEED="1")
    assert "PERSISTENT COMPILATION CACHE MISS for 'jit_batched'" in first.stderr
    assert any(tmp_path.glob("*/jit_batched-*"))
    second = run(_FIT, **env, PYTHONHASHSEED="2")
    for program in ("jit_batched", "jit__initial_states", "jit_draw", "jit__fit_program"):
        assert f"Persistent compilation cache hit for '{program}'" in second.stderr, program
    assert "PERSISTENT COMPILATION CACHE MISS for 'jit_batched'" not in second.stderr
