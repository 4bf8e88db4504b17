"""bayesgmm: Bayesian Gaussian mixture models with NumPyro, ArviZ and a fast EM path.

Importing bayesgmm turns on JAX's 64-bit mode (``jax_enable_x64``) because EM
log-likelihoods and marginal likelihoods must match scikit-learn and brute-force
oracles to ~1e-6. Every fit still takes ``dtype=np.float32`` for speed. Set the
environment variable ``BAYESGMM_ENABLE_X64=0`` before importing to keep JAX's
default float32 mode (then only float32 fits are possible).

NUTS chains run in parallel on a multi-core CPU: importing bayesgmm asks JAX for
several CPU devices, one per chain (``bayesgmm._devices`` says when it does not, and
``BAYESGMM_CPU_DEVICES=0`` turns it off).

``bayesgmm.enable_compilation_cache()`` (or ``BAYESGMM_COMPILATION_CACHE=1`` at
import) turns on JAX's persistent compilation cache: compiled programs are kept on
disk, so a new process does not compile again. An SVI fit compiles its programs in two
threads while its EM start runs; ``BAYESGMM_COMPILE_THREADS=0`` compiles each on the thread
that needs it instead.
"""

import os as _os

import jax as _jax

# Before any other import: the modules below create JAX arrays.
if _os.environ.get("BAYESGMM_ENABLE_X64", "1") != "0":
    _jax.config.update("jax_enable_x64", True)

from bayesgmm._devices import configure_cpu_devices

configure_cpu_devices()

from bayesgmm._compile_cache import enable_compilation_cache, enable_on_import

enable_on_import()

import warnings as _warnings

with _warnings.catch_warnings():
    # ArviZ's daily notice announces its 1.x API, which bayesgmm's pin (arviz < 1) keeps out;
    # it would otherwise open every command-line run.
    _warnings.filterwarnings("ignore", message="\\s*ArviZ is undergoing", category=FutureWarning)
    import arviz as _arviz  # noqa: F401

from bayesgmm import plots
from bayesgmm.compare import compare_n_components, criteria_table
from bayesgmm.datasets import load_dataset
from bayesgmm.elpd import loo, waic
from bayesgmm.estimators.bayesian_gmm import BayesianGMM
from bayesgmm.estimators.gaussian_mixture import GaussianMixture
from bayesgmm.inference.em.fit import aic, bic, fit_em, icl
from bayesgmm.inference.em.result import EMResult
from bayesgmm.inference.nuts import fit_nuts
from bayesgmm.inference.svi.fit import fit_svi
from bayesgmm.params import GMMParams
from bayesgmm.persistence import load
from bayesgmm.posterior import impute, params_from_idata
from bayesgmm.posterior.assignments import (
    coclustering_matrix,
    membership_probabilities,
    sample_assignments,
)
from bayesgmm.posterior.diagnostics import DiagnosticsWarning, fit_problems
from bayesgmm.posterior.n_components import induced_prior_n_components, n_components_posterior
from bayesgmm.posterior.noise import noise_probability
from bayesgmm.posterior.partition import BestPartition, best_partition
from bayesgmm.posterior.relabel import relabel
from bayesgmm.posterior.summary import summary
from bayesgmm.posterior.switching import SwitchingReport, label_switching_report
from bayesgmm.ppc import add_predictive, count_modes, ppc_pvalues
from bayesgmm.priors import Priors
from bayesgmm.sharding import shard_rows

__version__ = "0.1.0"

__all__ = [
    "GMMParams",
    "enable_compilation_cache",
    "load_dataset",
    "EMResult",
    "GaussianMixture",
    "aic",
    "bic",
    "fit_em",
    "icl",
    "load",
    "BayesianGMM",
    "Priors",
    "fit_nuts",
    "params_from_idata",
    "BestPartition",
    "DiagnosticsWarning",
    "SwitchingReport",
    "best_partition",
    "coclustering_matrix",
    "impute",
    "fit_problems",
    "label_switching_report",
    "membership_probabilities",
    "noise_probability",
    "relabel",
    "sample_assignments",
    "summary",
    "fit_svi",
    "add_predictive",
    "count_modes",
    "loo",
    "plots",
    "ppc_pvalues",
    "waic",
    "compare_n_components",
    "criteria_table",
    "induced_prior_n_components",
    "n_components_posterior",
    "shard_rows",
]
