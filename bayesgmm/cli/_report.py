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
            f"\nwarning: {_of_rows(n_bad, loo.pareto_k.size)} Pareto k > 0.7 (leaving such a row out "
            "changes the posterior more than the draws can tell), so PSIS-LOO is unreliable there; "
        )
        line += _loo_advice(idata)
    return line


def _of_rows(n_bad: int, n_rows: int) -> str:
    """Return ``"1 of 300 rows has"`` or ``"2 of 300 rows have"``."""
    return f"{n_bad} of {n_rows} rows {'has' if n_bad == 1 else 'have'}"


def _loo_advice(idata: az.InferenceData) -> str:
    """Say which option of ``bayesgmm fit`` to change when some rows have a high Pareto k."""
    if idata.attrs.get("inference") == "svi":
        return "refit with --inference nuts (draws from the posterior, not from the guide) or more --samples."
    return "refit with more --samples, or with another -k or --covariance-type that fits those rows better."


#: Decimals of every parameter, statistic and R-hat the commands print (ESS: whole numbers).
DECIMALS = 3


def format_table(table: pd.DataFrame) -> str:
    """Return ``table`` as text, floats with :data:`DECIMALS` decimals and ESS as whole numbers.

    Examples
    --------
    >>> import pandas as pd
    >>> print(format_table(pd.DataFrame({"mean": [1.0], "ess_bulk": [512.4], "r_hat": [1.0]})))
         mean  ess_bulk   r_hat
    0   1.000       512   1.000
    """
    ess = [c for c in table.columns if str(c).startswith("ess_")]
    # Nullable integers: an entry without an ESS stays missing instead of failing the cast.
    table = table.round(dict.fromkeys(ess, 0)).astype(dict.fromkeys(ess, "Int64"))
    # A sign column (" " or "-"), as pandas' own float format has, keeps two spaces between columns.
    return table.to_string(float_format=lambda v: f"{v: .{DECIMALS}f}")


def svi_convergence(attrs: dict) -> tuple[str, str]:
    """Say whether an SVI fit's steps stopped early by its ELBO test, after how many steps.

    Parameters
    ----------
    attrs : dict
        The fit's ``attrs``: ``n_steps``, ``converged`` and (fits of this version on)
        ``max_steps``, ``tol``, ``chunk_size`` and ``convergence_lag_steps``.

    Returns
    -------
    title, line : str
        A short title (for the ELBO plot) and the line of the summary, which names the test.

    Examples
    --------
    >>> svi_convergence({"n_steps": 2800, "converged": 1, "max_steps": 20000})[0]
    'SVI converged early, after 2800 of 20000 steps'
    """
    n_steps, of = int(attrs["n_steps"]), ""
    if "max_steps" in attrs:
        of = f" of {int(attrs['max_steps'])}"
    if not int(attrs.get("converged", 0)):
        title = f"SVI did not converge in {n_steps} steps"
        return (
            title,
            f"{title}: the ELBO was still rising when the step limit stopped it; the draws may be off.",
        )
    title = f"SVI converged early, after {n_steps}{of} steps"
    if "chunk_size" not in attrs:
        return title, f"{title}: the ELBO stopped improving."
    rule = (
        f"in two chunks in a row, the mean ELBO of a {int(attrs['chunk_size'])}-step chunk rose by less "
        f"than 2 standard errors, or than tol={float(attrs['tol']):g} (relative, per chunk), over the "
        f"chunk {int(attrs['convergence_lag_steps'])} steps before"
    )
    return title, f"{title}, by its stopping test: {rule}."


def _legend(table: pd.DataFrame) -> str:
    """Say what good values of the diagnostics printed are."""
    good = [f"{c} {g}" for c, g in (("r_hat", "< 1.01"), ("ess_bulk", "> 400")) if c in table]
    return "good values: " + ", ".join([*good, "Pareto k < 0.7"])


def bayes_report(idata: az.InferenceData) -> str:
    """Posterior summary table of a NUTS or SVI fit with its diagnostics and PSIS-LOO.

    Parameters
    ----------
    idata : arviz.InferenceData
        A fitted ``BayesianGMM``'s ``idata_``.

    Returns
    -------
    str
        The table, then (NUTS) divergences, tree depth, E-BFMI, R-hat and ESS, (SVI) when
        and why the steps stopped, then (sparse and dp weight priors) the posterior of the
        number of occupied components, then LOO and what good diagnostic values are.
    """
    from bayesgmm.posterior.summary import summary

    # Unrounded, so that the table, the maxima under it and the warnings agree.
    table = summary(idata, var_names=["weights", "means", "covariances"], round_to="none")
    lines = [format_table(table), ""]
    if "diverging" in idata.sample_stats:
        lines += _mcmc_lines(idata)
    if "r_hat" in table:  # MCMC only: SVI's guide draws are independent, not a chain
        lines.append(
            f"max R-hat: {table['r_hat'].max():.{DECIMALS}f}   min bulk ESS: {table['ess_bulk'].min():.0f}"
        )
    if "n_steps" in idata.attrs and idata.attrs.get("inference") == "svi":
        lines.append(svi_convergence(idata.attrs)[1])
    if idata.attrs.get("weight_prior", "dirichlet") != "dirichlet":
        lines.append(_occupied_line(idata))
    lines += [_loo_line(idata), _legend(table)]
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
    lines = [format_table(em_parameters(model)), ""]
    if "log_likelihood" in attrs:
        lines.append(
            f"log-likelihood: {attrs['log_likelihood']:.3f}   BIC: {attrs['bic']:.3f}   "
            f"AIC: {attrs['aic']:.3f}   ({attrs['n_obs']} observations)"
        )
    else:
        lines.append("log-likelihood and BIC: not stored in this file (it was not saved by 'bayesgmm fit').")
    # n_iter_ counts as scikit-learn's does: the iterations of the restart kept, the last
    # being the one whose change of the mean log-likelihood fell below tol.
    state = "converged" if model.converged_ else f"did not converge within max_iter={model.max_iter}"
    lines.append(
        f"EM {state} after {model.n_iter_} iterations (tol={model.tol:g} on the change of the mean "
        f"log-likelihood) in the best of n_init={model.n_init} restarts"
    )
    return "\n".join(lines)


def fit_header(inference: str, n_components: int, covariance_type: str, attrs: dict) -> str:
    """Return the line above a saved model's summary: method, model and the data it was fitted to.

    Examples
    --------
    >>> fit_header("svi", 2, "full", {"data": "faithful", "weight_prior": "dirichlet"})
    'SVI fit of 2 full components to faithful (weight prior dirichlet)'
    """
    line = f"{inference.upper()} fit of {n_components} {covariance_type} components"
    if "data" in attrs:  # files saved by the Python API do not name their data
        line += f" to {attrs['data']}"
    if inference != "em":
        line += f" (weight prior {attrs.get('weight_prior', 'dirichlet')})"
    return line


def memberships(probs: np.ndarray) -> pd.DataFrame:
    """Membership table: each row's probabilities, most probable component and uncertainty.

    Parameters
    ----------
    probs : ndarray, shape (n_obs, n_components)
        Membership probabilities (``predict_proba``).

    Returns
    -------
    pandas.DataFrame
        Columns ``row`` (0-based index of the data row: every row of the input is kept,
        in order), ``prob_0, ..., prob_{K-1}``, ``component`` (the most probable) and
        ``uncertainty`` (mclust's ``1 - max_k p_ik``).

    Examples
    --------
    >>> import numpy as np
    >>> memberships(np.array([[0.9, 0.1]])).columns.tolist()
    ['row', 'prob_0', 'prob_1', 'component', 'uncertainty']
    """
    import numpy as np
    import pandas as pd

    probs = np.asarray(probs, dtype=float)
    table = pd.DataFrame({"row": np.arange(len(probs))})
    table[[f"prob_{k}" for k in range(probs.shape[1])]] = probs
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
