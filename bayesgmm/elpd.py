"""Expected log pointwise predictive density (PSIS-LOO, WAIC) of NUTS and SVI fits.

ArviZ's ``loo`` and ``waic`` treat the draws as draws from the posterior. That holds
for NUTS, whose fits go to ArviZ unchanged. SVI's draws come from the guide ``q``,
narrower than the posterior under the ELBO, so ArviZ on them scores the guide's
predictive density, not the posterior's. An SVI fit stores, per draw, the log joint
density ``lp`` and the guide's log density ``log_q`` (both in the unconstrained space,
``sample_stats``), so its draws are importance-weighted towards the posterior:

* WAIC and the in-sample ``lppd`` use self-normalised importance sampling with the
  Pareto-smoothed weights of ``lp - log_q`` (PSIS, Vehtari et al. 2024).
* LOO uses, for observation ``i``, the combined weights
  ``log w_is = (lp_s - log_q_s) - log p(x_i | draw s)`` (the leave-one-out posterior
  over the guide), Pareto-smoothed per observation: PSIS-LOO with a posterior
  approximation as the proposal (Magnusson, Andersen, Jonasson & Vehtari 2019,
  "Bayesian leave-one-out cross-validation for large data").

With a guide narrower than the posterior the combined weights are heavy-tailed, and the
corrected LOO, though much closer to the posterior's than ArviZ's on the raw draws, stays
a little optimistic; the per-observation Pareto k (``pareto_k``) flags where.

The Pareto ``k`` of ``lp - log_q`` (``guide_pareto_k``) says whether the guide is
close enough to the posterior for the weights to correct it: above 0.7 the corrected
estimate is unreliable too, and the functions warn; refit with NUTS then. A fit
without the weights (``guide="map"``, minibatches, an observed subset or
``log_likelihood=False``) cannot be corrected, and the functions refuse it. Each
result names its method in ``loo_method`` / ``waic_method``: ``"psis"`` (posterior
draws, ArviZ) or ``"psis_importance"`` (guide draws, corrected here).
"""

from __future__ import annotations

import warnings

import arviz as az
import numpy as np
import xarray as xr
from arviz.stats.stats_utils import ELPDData
from scipy.special import logsumexp

#: Pareto k above which importance weights (of the guide, or of one observation) are unreliable.
PARETO_K_BAD = 0.7


def is_svi(idata: az.InferenceData) -> bool:
    """Tell whether the draws of ``idata`` come from an SVI guide, not from the posterior.

    Parameters
    ----------
    idata : arviz.InferenceData

    Returns
    -------
    bool
    """
    stats = idata.sample_stats if "sample_stats" in idata.groups() else {}
    return idata.attrs.get("inference") == "svi" or "log_q" in stats


def _log_likelihood(idata) -> np.ndarray:
    """``log_likelihood["X"]``, shape (n_chains, n_draws, n_obs)."""
    return idata.log_likelihood["X"].transpose("chain", "draw", "obs").values


def _guide_log_ratios(idata) -> np.ndarray:
    """``lp - log_q`` of every draw, shape (n_chains, n_draws); raises when absent."""
    stats = idata.sample_stats if "sample_stats" in idata.groups() else {}
    if "lp" not in stats or "log_q" not in stats or "log_likelihood" not in idata.groups():
        raise ValueError(
            "LOO and WAIC on SVI draws need the guide's importance weights (sample_stats lp and "
            "log_q) to correct the guide towards the posterior, and this fit has none: SVI stores "
            "them for full-batch fits with a spread guide and log_likelihood=True on at most "
            "max_observed rows. Refit with fit_nuts (or fit_svi full-batch with guide='fullrank')."
        )
    return (stats["lp"] - stats["log_q"]).transpose("chain", "draw").values


def _global_weights(log_ratios: np.ndarray) -> tuple[np.ndarray, float]:
    """Smooth the log importance ratios by PSIS and normalise them over all draws.

    Each chain's guide gets mass ``1 / n_chains``. Returns the log weights and the largest
    Pareto k of the chains.
    """
    n_chains = log_ratios.shape[0]
    with np.errstate(all="ignore"):
        lw, k_hat = az.psislw(log_ratios)
    return lw - np.log(n_chains), float(np.max(k_hat))


def _warn_guide(guide_k: float, what: str) -> None:
    if guide_k > PARETO_K_BAD:
        warnings.warn(
            f"The SVI guide is too far from the posterior for importance weighting to correct "
            f"{what} (Pareto k of lp - log_q: {guide_k:.2f} > {PARETO_K_BAD}); the estimate is "
            "unreliable. Refit with fit_nuts, or with a better guide (guide='fullrank', or "
            "renyi_alpha=0 with num_particles >= 16).",
            UserWarning,
            stacklevel=3,
        )


def _loo_weights(idata) -> tuple[np.ndarray, np.ndarray, float]:
    """Compute smoothed LOO log weights and their Pareto k.

    Returns the log weights (chain, draw, obs), normalised over (chain, draw); the Pareto k
    of each observation (the largest over chains); and the guide's Pareto k.
    """
    log_ratios = _guide_log_ratios(idata)
    ll = _log_likelihood(idata)
    # The draws of observation i's leave-one-out posterior: q-draws weighted by p(theta | x_-i) / q.
    combined = np.moveaxis(log_ratios[..., None] - ll, -1, 1)  # (chain, obs, draw)
    with np.errstate(all="ignore"):
        lw, k_hat = az.psislw(combined)
    # Each chain's guide gets mass 1 / n_chains.
    lw = np.moveaxis(lw, 1, -1) - np.log(ll.shape[0])
    _, guide_k = _global_weights(log_ratios)
    return lw, np.max(k_hat, axis=0), guide_k


def loo_log_weights(idata: az.InferenceData) -> xr.DataArray:
    """PSIS-LOO log weights of SVI draws, importance-weighted towards the posterior.

    Parameters
    ----------
    idata : arviz.InferenceData
        An SVI fit with ``sample_stats`` ``lp`` and ``log_q`` and ``log_likelihood["X"]``.

    Returns
    -------
    xarray.DataArray, dims (obs, __sample__)
        Smoothed log weights of each observation's leave-one-out posterior over the
        draws (``__sample__`` stacks chain and draw, as ArviZ does), normalised over
        the draws: the layout ``az.loo_pit`` and ``az.plot_loo_pit`` take as
        ``log_weights``. ``attrs["guide_pareto_k"]`` holds the guide's Pareto k.

    Raises
    ------
    ValueError
        For draws that are not from SVI (ArviZ's own weights are right for NUTS), or
        SVI fits without importance weights.

    Examples
    --------
    >>> from bayesgmm import fit_svi, load_dataset
    >>> X, _ = load_dataset("faithful")
    >>> idata = fit_svi(X, 2, seed=0)
    >>> loo_log_weights(idata).shape  # for az.plot_loo_pit(..., log_weights=...)
    (272, 1000)
    """
    if not is_svi(idata):
        raise ValueError("Not an SVI fit: ArviZ's PSIS-LOO weights (az.loo, az.loo_pit) are right for it.")
    lw, _, guide_k = _loo_weights(idata)
    log_lik = idata.log_likelihood["X"].transpose("chain", "draw", "obs")
    out = log_lik.copy(data=lw).rename("log_weights").stack(__sample__=("chain", "draw"))
    out.attrs = {"guide_pareto_k": guide_k}
    return out.transpose("obs", "__sample__")


def _weighted_lppd(idata) -> tuple[np.ndarray, np.ndarray, float]:
    """Compute the importance-weighted ``lppd_i`` and the guide's Pareto k.

    Returns ``lppd_i``, the posterior variance of ``log p(x_i | draw)`` and the guide's
    Pareto k.
    """
    lw, guide_k = _global_weights(_guide_log_ratios(idata))
    ll = _log_likelihood(idata)
    w = np.exp(lw)[..., None]
    lppd = logsumexp(lw[..., None] + ll, axis=(0, 1))
    mean = (w * ll).sum(axis=(0, 1))
    var = (w * (ll - mean) ** 2).sum(axis=(0, 1))
    return lppd, var, guide_k


def loo(idata: az.InferenceData) -> ELPDData:
    """PSIS-LOO of a fit: ArviZ's for posterior draws, importance-weighted for SVI draws.

    Parameters
    ----------
    idata : arviz.InferenceData
        A NUTS or SVI fit with ``log_likelihood["X"]``.

    Returns
    -------
    arviz.ELPDData
        Pointwise, as ``az.loo(idata, pointwise=True)`` (``elpd_loo``, ``se``, ``p_loo``,
        ``loo_i`` (obs), ``pareto_k`` (obs), ...), so that ``az.compare`` takes it, plus
        ``loo_method`` (``"psis"`` or ``"psis_importance"``) and ``guide_pareto_k``
        (NaN for posterior draws).

    Warns
    -----
    UserWarning
        When the guide's Pareto k is above 0.7 (the correction is unreliable).

    Raises
    ------
    ValueError
        For an SVI fit without importance weights (see the module docstring).

    Examples
    --------
    >>> from bayesgmm import fit_svi, load_dataset
    >>> X, _ = load_dataset("faithful")
    >>> result = loo(fit_svi(X, 2, seed=0))
    >>> result["loo_method"]
    'psis_importance'
    """
    if not is_svi(idata):
        out = az.loo(idata, pointwise=True)
        out["loo_method"], out["guide_pareto_k"] = "psis", np.nan
        return out
    lw, k_hat, guide_k = _loo_weights(idata)
    _warn_guide(guide_k, "LOO")
    ll = _log_likelihood(idata)
    loo_i = logsumexp(lw + ll, axis=(0, 1))
    obs = idata.log_likelihood["obs"]
    lppd, _, _ = _weighted_lppd(idata)
    n_draws, n_obs = ll.shape[0] * ll.shape[1], ll.shape[2]
    good_k = min(1 - 1 / np.log10(n_draws), PARETO_K_BAD)
    values = {
        "elpd_loo": float(loo_i.sum()),
        "se": float(np.sqrt(n_obs * np.var(loo_i))),
        "p_loo": float(lppd.sum() - loo_i.sum()),
        "n_samples": n_draws,
        "n_data_points": n_obs,
        "warning": bool(np.any(k_hat > good_k) or guide_k > PARETO_K_BAD),
        "loo_i": xr.DataArray(loo_i, dims=("obs",), coords={"obs": obs}, name="loo_i"),
        "pareto_k": xr.DataArray(k_hat, dims=("obs",), coords={"obs": obs}, name="pareto_shape"),
        "scale": "log",
        "good_k": good_k,
        "loo_method": "psis_importance",
        "guide_pareto_k": guide_k,
    }
    return ELPDData(data=list(values.values()), index=list(values))


def waic(idata: az.InferenceData) -> ELPDData:
    """WAIC of a fit: ArviZ's for posterior draws, importance-weighted for SVI draws.

    The posterior mean and variance of ``log p(x_i | draw)`` are self-normalised
    importance-sampling estimates over the guide's draws with the PSIS-smoothed weights
    of ``lp - log_q``.

    Parameters
    ----------
    idata : arviz.InferenceData

    Returns
    -------
    arviz.ELPDData
        As ``az.waic(idata, pointwise=True)``, plus ``waic_method`` and ``guide_pareto_k``.

    Warns
    -----
    UserWarning
        When the guide's Pareto k is above 0.7.

    Examples
    --------
    >>> from bayesgmm import fit_svi, load_dataset
    >>> X, _ = load_dataset("faithful")
    >>> idata = fit_svi(X, 2, seed=0)
    >>> round(float(waic(idata)["elpd_waic"]))
    -1142
    """
    if not is_svi(idata):
        out = az.waic(idata, pointwise=True)
        out["waic_method"], out["guide_pareto_k"] = "psis", np.nan
        return out
    lppd, var, guide_k = _weighted_lppd(idata)
    _warn_guide(guide_k, "WAIC")
    waic_i = lppd - var
    ll = _log_likelihood(idata)
    obs = idata.log_likelihood["obs"]
    values = {
        "elpd_waic": float(waic_i.sum()),
        "se": float(np.sqrt(waic_i.size * np.var(waic_i))),
        "p_waic": float(var.sum()),
        "n_samples": ll.shape[0] * ll.shape[1],
        "n_data_points": waic_i.size,
        # ArviZ's warning rule: a posterior variance of the log density above 0.4.
        "warning": bool(np.any(var > 0.4) or guide_k > PARETO_K_BAD),
        "waic_i": xr.DataArray(waic_i, dims=("obs",), coords={"obs": obs}, name="waic_i"),
        "scale": "log",
        "waic_method": "psis_importance",
        "guide_pareto_k": guide_k,
    }
    return ELPDData(data=list(values.values()), index=list(values))
