"""What the commands print and write: posterior and EM summaries, membership tables."""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import arviz as az
    import numpy as np
    import pandas as pd


def _mcmc_lines(idata: az.InferenceData) -> list[str]:
    import arviz as az
    import numpy as np

    stats = idata.sample_stats
    n_draws = stats.sizes["chain"] * stats.sizes["draw"]
    max_depth = int(idata.attrs.get("max_tree_depth", 10))
    bfmi = az.bfmi(idata)
    return [
        f"divergences: {int(stats['diverging'].sum())} of {n_draws} draws",
        f"draws at max tree depth ({max_depth}): {int((stats['tree_depth'] >= max_depth).sum())}",
        f"E-BFMI per chain: {np.array2string(np.asarray(bfmi), precision=2)}",
    ]


def _loo_line(idata: az.InferenceData) -> str:
    import numpy as np

    from bayesgmm import elpd

    try:
        loo = elpd.loo(idata)
    except ValueError as exc:  # an SVI fit without importance weights
        return f"PSIS-LOO: not computed. {exc}"
    line = (
        f"PSIS-LOO elpd: {loo.elpd_loo:.2f} (SE {loo.se:.2f}), max Pareto k: {float(loo.pareto_k.max()):.2f}"
    )
    if loo["loo_method"] == "psis_importance":
        # SVI: the guide's draws are weighted towards the posterior; its own k says how well.
        line += f", importance-weighted SVI draws (guide Pareto k {loo['guide_pareto_k']:.2f})"
    n_bad = int((np.asarray(loo.pareto_k) > 0.7).sum())
    if n_bad:
        line += (
            f"\nwarning: {n_bad} of {loo.pareto_k.size} rows have Pareto k > 0.7, so PSIS-LOO is "
            "unreliable for them; refit with more --samples (or --inference nuts after svi)"
        )
    return line


def bayes_report(idata: az.InferenceData) -> str:
    """Posterior summary table of a NUTS or SVI fit with its diagnostics and PSIS-LOO.

    Parameters
    ----------
    idata : arviz.InferenceData
        A fitted ``BayesianGMM``'s ``idata_``.

    Returns
    -------
    str
        The table, then (NUTS) divergences, tree depth, E-BFMI, R-hat and ESS, then (sparse
        and dp weight priors) the posterior of the number of occupied components, then LOO.
    """
    from bayesgmm.posterior.summary import summary

    table = summary(idata, var_names=["weights", "means", "covariances"])
    lines = [table.to_string(), ""]
    if "diverging" in idata.sample_stats:
        lines += _mcmc_lines(idata)
    if "r_hat" in table:  # MCMC only: SVI's guide draws are independent, not a chain
        lines.append(f"max R-hat: {table['r_hat'].max():.3f}   min bulk ESS: {table['ess_bulk'].min():.0f}")
    if idata.attrs.get("weight_prior", "dirichlet") != "dirichlet":
        lines.append(_occupied_line(idata))
    lines.append(_loo_line(idata))
    return "\n".join(lines)


def _occupied_line(idata: az.InferenceData) -> str:
    """Return the posterior of the number of occupied components, the point of a sparse or dp prior."""
    from bayesgmm.posterior.n_components import n_components_posterior

    table = n_components_posterior(idata)
    shown = table[table["probability"] >= 0.005]["probability"]
    probabilities = ", ".join(f"{k}: {p:.2f}" for k, p in shown.items())
    mode = table.attrs["mode"]
    return f"occupied components (posterior probability): {probabilities}; most probable {mode}"


def _full_covariances(covariances: np.ndarray, covariance_type: str, shape: tuple[int, int]) -> np.ndarray:
    """Return scikit-learn's covariance arrays (any EM type's layout) as one matrix per component."""
    import numpy as np

    from bayesgmm.inference.em.mclust_models import sklearn_layout

    n_components, n_features = shape
    cov = np.asarray(covariances, dtype=float)
    covariance_type = sklearn_layout(covariance_type)
    if covariance_type == "tied":
        return np.broadcast_to(cov, (n_components, n_features, n_features))
    if covariance_type == "diag":
        return np.stack([np.diag(c) for c in cov])
    if covariance_type == "spherical":
        return cov[:, None, None] * np.eye(n_features)
    return cov


def em_parameters(model) -> pd.DataFrame:
    """Tabulate a fitted ``GaussianMixture``'s parameters, one row per component.

    Parameters
    ----------
    model : bayesgmm.GaussianMixture

    Returns
    -------
    pandas.DataFrame
        Columns ``weight``, ``mean[f]`` per feature ``f`` and ``cov[f, g]`` for each cell of
        the covariance matrix on and above its diagonal.
    """
    import numpy as np
    import pandas as pd

    n_components, n_features = model.means_.shape
    names = [str(n) for n in getattr(model, "feature_names_in_", [f"x{j}" for j in range(n_features)])]
    cov = _full_covariances(model.covariances_, model.covariance_type, model.means_.shape)
    table = {"weight": model.weights_}
    table |= {f"mean[{f}]": model.means_[:, j] for j, f in enumerate(names)}
    for a, b in zip(*np.triu_indices(n_features), strict=True):
        table[f"cov[{names[a]}, {names[b]}]"] = cov[:, a, b]
    return pd.DataFrame(table, index=pd.RangeIndex(n_components, name="component"))


def em_report(model, attrs: dict) -> str:
    """Parameters, log-likelihood, BIC and convergence of an EM fit.

    Parameters
    ----------
    model : bayesgmm.GaussianMixture
    attrs : dict
        ``n_obs``, ``log_likelihood``, ``bic`` and ``aic`` on the training data, as
        ``bayesgmm fit --output`` stores them; missing ones are said to be missing.

    Returns
    -------
    str
    """
    lines = [em_parameters(model).to_string(), ""]
    if "log_likelihood" in attrs:
        lines.append(
            f"log-likelihood: {attrs['log_likelihood']:.3f}   BIC: {attrs['bic']:.3f}   "
            f"AIC: {attrs['aic']:.3f}   ({attrs['n_obs']} observations)"
        )
    else:
        lines.append("log-likelihood and BIC: not stored in this file (it was not saved by 'bayesgmm fit').")
    state = "converged" if model.converged_ else "did not converge"
    lines.append(f"EM {state} after {model.n_iter_} iterations (best of n_init={model.n_init} restarts)")
    return "\n".join(lines)


def memberships(probs: np.ndarray) -> pd.DataFrame:
    """Membership table: each row's probabilities, most probable component and uncertainty.

    Parameters
    ----------
    probs : ndarray, shape (n_obs, n_components)
        Membership probabilities (``predict_proba``).

    Returns
    -------
    pandas.DataFrame
        Columns ``prob_0, ..., prob_{K-1}``, ``component`` (the most probable) and
        ``uncertainty`` (mclust's ``1 - max_k p_ik``).

    Examples
    --------
    >>> import numpy as np
    >>> memberships(np.array([[0.9, 0.1]])).columns.tolist()
    ['prob_0', 'prob_1', 'component', 'uncertainty']
    """
    import numpy as np
    import pandas as pd

    probs = np.asarray(probs, dtype=float)
    table = pd.DataFrame(probs, columns=[f"prob_{k}" for k in range(probs.shape[1])])
    table["component"] = probs.argmax(axis=1)
    table["uncertainty"] = 1.0 - probs.max(axis=1)
    return table


def write_memberships(probs: np.ndarray, path: str | None) -> None:
    """Write :func:`memberships` of ``probs`` as CSV to ``path``, or to stdout when it is None."""
    table = memberships(probs)
    if path is None:
        table.to_csv(sys.stdout, index=False)
    else:
        table.to_csv(path, index=False)
