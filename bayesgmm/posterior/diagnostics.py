"""Fit diagnostics that speak up: what is wrong with a fit, in words that say what to try.

NUTS fits are checked for divergences, R-hat and bulk/tail ESS of the relabelled weights,
means and covariances (raw R-hat would flag mere label switching), E-BFMI and draws at the
maximum tree depth; SVI fits for the Pareto k of their importance weights and for
convergence of the ELBO. A healthy fit yields no message.
"""

from __future__ import annotations

import json
import warnings

import arviz as az
import numpy as np

#: Thresholds (Vehtari et al. 2021 for R-hat and ESS; Betancourt 2016 for E-BFMI).
MAX_RHAT = 1.01
MIN_ESS_PER_CHAIN = 100
MIN_BFMI = 0.3
MAX_PARETO_K = 0.7
PARAMETERS = ("weights", "means", "covariances")


class DiagnosticsWarning(UserWarning):
    """A fit whose diagnostics say its draws should not be trusted as they are."""


def fit_problems(idata: az.InferenceData) -> list[str]:
    """Messages describing what is wrong with a NUTS or SVI fit; empty when it looks healthy.

    Parameters
    ----------
    idata : arviz.InferenceData
        From :func:`bayesgmm.fit_nuts` or :func:`bayesgmm.fit_svi` (``attrs["inference"]``).

    Returns
    -------
    list of str
        One message per problem, each saying what to try.

    Examples
    --------
    Two chains of independent draws mix perfectly:

    >>> import arviz as az, numpy as np
    >>> noise = np.random.default_rng(0).normal(size=(2, 1000, 2))
    >>> idata = az.from_dict(posterior={"means": noise},
    ...                      sample_stats={"diverging": np.zeros((2, 1000), bool)})
    >>> idata.attrs["inference"] = "nuts"
    >>> fit_problems(idata)
    []
    """
    inference = idata.attrs.get("inference")
    if inference == "nuts":
        return _nuts_problems(idata)
    if inference == "svi":
        return _svi_problems(idata)
    return []


def warn_problems(idata: az.InferenceData, stacklevel: int = 2) -> list[str]:
    """Issue a :class:`DiagnosticsWarning` per problem of ``fit_problems`` and return them.

    Parameters
    ----------
    idata : arviz.InferenceData
    stacklevel : int
        Of the warnings, as for :func:`warnings.warn`, counted from the caller.

    Returns
    -------
    list of str
    """
    problems = fit_problems(idata)
    for message in problems:
        warnings.warn(message, DiagnosticsWarning, stacklevel=stacklevel + 1)
    return problems


def _nuts_problems(idata) -> list[str]:
    stats = idata.sample_stats
    n_chains, n_draws = idata.posterior.sizes["chain"], idata.posterior.sizes["draw"]
    problems = []
    if "diverging" in stats and int(stats["diverging"].sum()) > 0:
        n_div, n_all = int(stats["diverging"].sum()), n_chains * n_draws
        problems.append(
            f"{n_div} of {n_all} NUTS transitions diverged ({100 * n_div / n_all:.1f}%): "
            "the sampler could not follow the posterior's curvature there, so the draws may be biased. "
            "Try target_accept_prob=0.95 or 0.99, fewer components, or a more informative prior."
        )
    max_depth = idata.attrs.get("max_tree_depth")
    if max_depth is not None and "tree_depth" in stats:
        n_max = int((stats["tree_depth"] >= int(max_depth)).sum())
        if n_max:
            problems.append(
                f"{n_max} of {n_chains * n_draws} NUTS transitions hit max_tree_depth={int(max_depth)}: "
                "the sampler was stopped before its trajectory turned, which makes it slow to explore. "
                "Increase max_tree_depth, or check for a ridge or non-identified parameters."
            )
    if "energy" in stats:
        bfmi = np.atleast_1d(az.bfmi(idata))
        low = np.nonzero(bfmi < MIN_BFMI)[0]
        if low.size:
            problems.append(
                f"E-BFMI below {MIN_BFMI} in chain(s) {low.tolist()} (min {bfmi.min():.2f}): the momentum "
                "resampling explores the energy distribution poorly, often because of heavy tails or "
                "hierarchical funnels. Run a longer warmup or use a more informative prior."
            )
    if n_chains > 1 or n_draws > 1:
        problems.extend(_mixing_problems(idata, n_chains))
    return problems


def _mixing_problems(idata, n_chains) -> list[str]:
    from bayesgmm.posterior.relabel import is_relabelled, relabel

    names = [v for v in PARAMETERS if v in idata.posterior]
    if not names:
        return []
    relabelled = idata if is_relabelled(idata) or "observed_data" not in idata else relabel(idata)
    post = relabelled.posterior[names]
    with warnings.catch_warnings(), np.errstate(invalid="ignore", divide="ignore"):
        # Constant entries (a diag fit's zero covariances, one component's weight) have no
        # R-hat or ESS: ArviZ returns NaN for them, which is not a problem of the fit.
        warnings.simplefilter("ignore")
        rhat = _finite_max(az.rhat(post)) if n_chains > 1 else np.nan
        bulk = _finite_min(az.ess(post, method="bulk"))
        tail = _finite_min(az.ess(post, method="tail"))
    problems = []
    if rhat > MAX_RHAT:
        problems.append(
            f"max R-hat of the relabelled {', '.join(names)} is {rhat:.3f} > {MAX_RHAT}: the chains "
            "disagree, so they have not converged to one distribution; they may sit in different "
            "modes. Compare the chains (arviz.plot_trace, label_switching_report), run "
            "longer (num_warmup, num_samples), or reconsider n_components."
        )
    threshold = MIN_ESS_PER_CHAIN * n_chains
    if min(bulk, tail) < threshold:
        problems.append(
            f"min bulk ESS {bulk:.0f} and tail ESS {tail:.0f} of the relabelled parameters are below "
            f"{MIN_ESS_PER_CHAIN} per chain ({threshold}): too few effective draws for reliable "
            "means, quantiles and R-hat. Increase num_samples (and num_warmup)."
        )
    return problems


def _finite_max(ds) -> float:
    values = np.concatenate([np.ravel(ds[v].values) for v in ds.data_vars])
    values = values[np.isfinite(values)]
    return float(values.max()) if values.size else np.nan


def _finite_min(ds) -> float:
    values = np.concatenate([np.ravel(ds[v].values) for v in ds.data_vars])
    values = values[np.isfinite(values)]
    return float(values.min()) if values.size else np.inf


def _svi_problems(idata) -> list[str]:
    problems = []
    if "converged" in idata.attrs and not int(idata.attrs["converged"]):
        problems.append(
            "SVI stopped at max_steps before its ELBO stopped improving: the guide is not at an "
            "optimum. Increase max_steps, or raise the learning rate if the ELBO trace still climbs."
        )
    k_hat = json.loads(idata.attrs["pareto_k"]) if "pareto_k" in idata.attrs else []
    k_hat = [k for k in np.ravel(np.asarray(k_hat, float)) if np.isfinite(k)]
    if k_hat and max(k_hat) > MAX_PARETO_K:
        problems.append(
            f"Pareto k of the guide's importance weights is {max(k_hat):.2f} > {MAX_PARETO_K}: the "
            "variational posterior is a poor approximation of the posterior (typically too narrow), so "
            "its uncertainty is understated. Use guide='fullrank', renyi_alpha=0 with more "
            "num_particles, or fit_nuts."
        )
    return problems
