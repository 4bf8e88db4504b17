"""Model comparison across the number of components: EM criteria and Bayesian LOO side by side.

One table per call: for every (n_components, covariance_type), EM's BIC, AIC and ICL
(mclust-style, several restarts) and, when Bayesian fits are asked for, PSIS-LOO and
WAIC with ArviZ's stacking weights, so that the classic answer and the Bayesian one to
"how many components?" can be read together.

SVI draws come from the guide, not the posterior: their LOO, WAIC and stacking weights
are importance-weighted towards the posterior (:mod:`bayesgmm.elpd`), and the table
says so in ``loo_method`` and ``guide_pareto_k``.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence

import arviz as az
import numpy as np
import pandas as pd
from numpy.typing import ArrayLike

from bayesgmm import elpd
from bayesgmm._validation import check_X
from bayesgmm.inference.em.fit import aic, bic, fit_em, icl, n_parameters
from bayesgmm.priors import Priors

#: Small Bayesian fits by default, so that a whole table is quick to compute.
_FIT_DEFAULTS = {
    "nuts": {"num_warmup": 300, "num_samples": 300, "num_chains": 2},
    "svi": {"guide": "fullrank", "num_samples": 500},
}

#: Pareto k above which the PSIS estimate of an observation's LOO density is unreliable.
PARETO_K_BAD = elpd.PARETO_K_BAD


def compare_n_components(
    X: ArrayLike,
    ks: Sequence[int] = range(1, 8),
    covariance_types: Sequence[str] = ("full",),
    inference: str | None = None,
    *,
    weight_prior: str = "dirichlet",
    priors: Priors | dict | None = None,
    n_init: int = 5,
    reg_covar: float = 1e-6,
    seed: int = 0,
    fit_kwargs: dict | None = None,
) -> pd.DataFrame:
    """Compare mixtures with different numbers of components (and covariance types).

    Parameters
    ----------
    X : array-like, shape (n_obs, n_features)
    ks : iterable of int
        Numbers of components to fit.
    covariance_types : sequence of str
        ``fit_em``'s names: scikit-learn's four, and for EM alone (``inference=None``) also
        mclust's fourteen models (``"EII"`` ... ``"VVV"``); :func:`criteria_table` lays the
        result out as mclust's BIC table.
    inference : {None, "nuts", "svi"}
        None compares EM fits only; otherwise each model is also fitted by
        ``fit_nuts`` / ``fit_svi`` (small runs, see ``fit_kwargs``) and compared by LOO.
    weight_prior, priors
        Passed to the Bayesian fits.
    n_init : int
        EM restarts per model; the best is kept.
    reg_covar : float
        EM's covariance regularisation.
    seed : int
    fit_kwargs : dict, optional
        Overrides the defaults of the Bayesian fits (NUTS: 300 warm-up and 300 draws
        on 2 chains; SVI: full-rank guide, 500 draws).

    Returns
    -------
    pandas.DataFrame
        One row per (``n_components``, ``covariance_type``) (a MultiIndex). EM columns:
        ``log_likelihood``, ``n_parameters``, ``bic``, ``aic``, ``icl`` (all "lower is
        better", scikit-learn's sign; NaN where every EM restart collapsed). Bayesian
        columns: ``elpd_loo``, ``se_loo``, ``p_loo``, ``elpd_diff`` and ``dse`` (to the
        best model by LOO, from ``arviz.compare``), ``stacking_weight``,
        ``pareto_k_bad`` (share of observations with Pareto k > 0.7), ``elpd_waic``,
        ``se_waic``, ``p_waic``, ``loo_method`` (``"psis"`` for NUTS's posterior draws,
        ``"psis_importance"`` for SVI's guide draws weighted towards the posterior, see
        :mod:`bayesgmm.elpd`) and ``guide_pareto_k`` (SVI: the Pareto k of the guide's
        importance weights; above 0.7 the correction is unreliable; NaN for NUTS).
        Column ``recommended_by`` names the criteria that
        pick each row; ``attrs["recommended"]`` maps each criterion to its
        (n_components, covariance_type): the minimum of ``bic``, ``aic`` and ``icl``,
        the maximum of ``elpd_waic`` and ``stacking_weight``, and for ``loo`` the
        one-standard-error rule: the fewest parameters among the models whose
        ``elpd_diff`` to the best is within one ``dse`` (LOO differences between
        nested mixtures are noisy; this rule does not add components that do not
        clearly predict better).

    Warns
    -----
    UserWarning
        Naming each model with Pareto k > 0.7 for some observation (its LOO is not
        reliable there; refit with more draws, or use k-fold cross-validation), and
        each SVI fit whose guide's Pareto k is above 0.7 (refit with NUTS). Every fit's own
        warnings (EM's empty components or convergence, the sampler's diagnostics) come
        with the model's name in front: ``"n_components=5, covariance_type='full': ..."``.

    Raises
    ------
    ValueError
        With ``inference="svi"`` when a fit has no importance weights to correct its
        draws with (more than ``max_observed`` rows, or ``guide="map"``).

    Examples
    --------
    >>> from bayesgmm import load_dataset
    >>> X, _ = load_dataset("faithful")
    >>> table = compare_n_components(X, range(1, 4))
    >>> table.attrs["recommended"]["bic"]
    (2, 'full')
    """
    X = check_X(X)
    rows, loos = [], {}
    for cov in covariance_types:
        for k in ks:
            name = f"n_components={k}, covariance_type={cov!r}"
            row = {
                "n_components": int(k),
                "covariance_type": cov,
                **_named_warnings(name, _em_row, X, k, cov, n_init, reg_covar, seed),
            }
            if inference is not None:
                idata = _named_warnings(
                    name, _bayes_fit, X, k, cov, inference, weight_prior, priors, seed, fit_kwargs
                )
                loos[(int(k), cov)], criteria = _loo_waic(idata, name)
                row.update(criteria)
            rows.append(row)
    table = pd.DataFrame(rows).set_index(["n_components", "covariance_type"])
    if inference is not None:
        table = table.join(_stacking(loos))
    table.attrs["recommended"] = recommend(table)
    table["recommended_by"] = [
        ", ".join(c for c, best in table.attrs["recommended"].items() if best == idx) for idx in table.index
    ]
    return table


def _named_warnings(name: str, fn, *args):
    """Call ``fn(*args)``, re-emitting each of its warnings with the model's name in front.

    A table over many models is only useful if a warning (a sampler's divergences, EM's
    convergence) says which of them it is about.
    """
    with warnings.catch_warnings(record=True) as heard:
        warnings.simplefilter("always")
        out = fn(*args)
    for w in heard:
        warnings.warn(f"{name}: {w.message}", w.category, stacklevel=3)
    return out


def _em_row(X, k, cov, n_init, reg_covar, seed) -> dict:
    n_par = n_parameters(k, X.shape[1], cov)
    try:
        res = fit_em(X, k, cov, n_init=n_init, reg_covar=reg_covar, seed=seed)
    except ValueError as err:
        warnings.warn(f"EM failed: {err}", stacklevel=3)
        return {"log_likelihood": np.nan, "n_parameters": n_par, "bic": np.nan, "aic": np.nan, "icl": np.nan}
    return {
        "log_likelihood": res.log_likelihood,
        "n_parameters": n_par,
        "bic": bic(res),
        "aic": aic(res),
        "icl": icl(res),
    }


def _bayes_fit(X, k, cov, inference, weight_prior, priors, seed, fit_kwargs):
    if inference not in _FIT_DEFAULTS:
        raise ValueError(f"inference must be None, 'nuts' or 'svi', got {inference!r}.")
    kwargs = {**_FIT_DEFAULTS[inference], **(fit_kwargs or {})}
    if inference == "nuts":
        from bayesgmm.inference.nuts import fit_nuts as fit
    else:
        from bayesgmm.inference.svi.fit import fit_svi as fit
    return fit(X, k, cov, priors=priors, weight_prior=weight_prior, seed=seed, **kwargs)


def _loo_waic(idata, name: str) -> tuple:
    """Compute the pointwise LOO of ``idata`` (for stacking) and its row of LOO and WAIC columns."""
    with warnings.catch_warnings():
        # ArviZ's and elpd's own warnings do not say which model; ours below do.
        warnings.simplefilter("ignore")
        loo = elpd.loo(idata)
        waic = elpd.waic(idata)
    guide_k = float(loo["guide_pareto_k"])
    if guide_k > PARETO_K_BAD:
        warnings.warn(
            f"{name}: the SVI guide's importance weights have Pareto k {guide_k:.2f} > {PARETO_K_BAD}; "
            "its LOO, WAIC and stacking weight, corrected by them, are unreliable. Refit with "
            "inference='nuts'.",
            UserWarning,
            stacklevel=3,
        )
    k_hat = np.asarray(loo.pareto_k)
    n_bad = int((k_hat > PARETO_K_BAD).sum())
    if n_bad:
        warnings.warn(
            f"{name}: {n_bad} of {k_hat.size} observations have Pareto k > {PARETO_K_BAD} "
            f"(max {k_hat.max():.2f}); the PSIS-LOO estimate is unreliable for them.",
            UserWarning,
            stacklevel=3,
        )
    return loo, {
        "elpd_loo": float(loo.elpd_loo),
        "se_loo": float(loo.se),
        "p_loo": float(loo.p_loo),
        "pareto_k_bad": n_bad / k_hat.size,
        "elpd_waic": float(waic.elpd_waic),
        "se_waic": float(waic.se),
        "p_waic": float(waic.p_waic),
        "loo_method": loo["loo_method"],
        "guide_pareto_k": guide_k,
    }


def _stacking(loos: dict) -> pd.DataFrame:
    """Compute ``elpd_diff``, ``dse`` and ``stacking_weight`` of each fit.

    From ``arviz.compare`` on the pointwise LOO of each fit (importance-weighted for SVI).
    """
    index = pd.MultiIndex.from_tuples(list(loos), names=["n_components", "covariance_type"])
    if len(loos) == 1:
        return pd.DataFrame({"elpd_diff": 0.0, "dse": 0.0, "stacking_weight": 1.0}, index=index)
    names = {f"{k}|{cov}": (k, cov) for k, cov in loos}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        cmp = az.compare({name: loos[key] for name, key in names.items()}, method="stacking")
    out = pd.DataFrame(
        {
            "elpd_diff": cmp["elpd_diff"].to_numpy(),
            "dse": cmp["dse"].to_numpy(),
            "stacking_weight": cmp["weight"].to_numpy(),
        },
        index=pd.MultiIndex.from_tuples([names[n] for n in cmp.index], names=index.names),
    )
    return out.reindex(index)


def recommend(table: pd.DataFrame) -> dict:
    """Find the (n_components, covariance_type) each criterion of a comparison table picks.

    See :func:`compare_n_components` for the rules.

    Parameters
    ----------
    table : pandas.DataFrame
        Rows of :func:`compare_n_components`.

    Returns
    -------
    dict
        Criterion name to ``(n_components, covariance_type)``.
    """
    out = {c: table[c].idxmin() for c in ("bic", "aic", "icl") if table[c].notna().any()}
    if "elpd_loo" in table:
        close = table[table["elpd_diff"] <= table["dse"]]
        out["loo"] = close.sort_values(["n_parameters", "elpd_loo"], ascending=[True, False]).index[0]
        out["waic"] = table["elpd_waic"].idxmax()
        out["stacking"] = table["stacking_weight"].idxmax()
    return {c: (int(k), cov) for c, (k, cov) in out.items()}


def criteria_table(table: pd.DataFrame, criterion: str = "bic", sign: str = "sklearn") -> pd.DataFrame:
    """Lay one criterion of :func:`compare_n_components` out as n_components x covariance_type.

    With ``sign="mclust"``, BIC and ICL are negated, ``2 log L - n_parameters log(n_obs)``
    (larger is better), as mclust's ``mclustBIC`` table reports them.

    Parameters
    ----------
    table : pandas.DataFrame
        The result of :func:`compare_n_components`.
    criterion : {"bic", "icl", "aic", "log_likelihood", "n_parameters"}
    sign : {"sklearn", "mclust"}

    Returns
    -------
    pandas.DataFrame
        One row per ``n_components``, one column per ``covariance_type``, in the table's order.

    Examples
    --------
    >>> from bayesgmm import load_dataset
    >>> X, _ = load_dataset("faithful")
    >>> table = compare_n_components(X, [1, 2], ["EII", "VVV"], n_init=2, reg_covar=0.0)
    >>> wide = criteria_table(table, sign="mclust")
    >>> list(wide.columns), list(wide.index)
    (['EII', 'VVV'], [1, 2])
    >>> wide.round(1).to_numpy().tolist()  # mclust 6.0.0: [[-4024.7, -2607.6], [-3453.0, -2322.2]]
    [[-4024.7, -2607.6], [-3453.0, -2322.2]]
    """
    if criterion not in table or criterion == "recommended_by":
        raise ValueError(
            f"criterion must be a column of the table, such as 'bic' or 'icl', got {criterion!r}."
        )
    if sign not in ("sklearn", "mclust"):
        raise ValueError(f"sign must be 'sklearn' or 'mclust', got {sign!r}.")
    if sign == "mclust" and criterion not in ("bic", "icl"):
        raise ValueError(f"sign='mclust' applies to 'bic' and 'icl', got criterion={criterion!r}.")
    wide = table[criterion].unstack("covariance_type")
    wide = wide[list(dict.fromkeys(table.index.get_level_values("covariance_type")))]
    return -wide if sign == "mclust" else wide
