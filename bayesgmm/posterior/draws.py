"""Read mixture parameters back out of an InferenceData."""

from __future__ import annotations

import arviz as az
import jax.numpy as jnp

from bayesgmm.params import GMMParams


def params_from_idata(idata: az.InferenceData, group: str = "posterior") -> GMMParams:
    """All draws of a group as one GMMParams in the user's units.

    Parameters
    ----------
    idata : arviz.InferenceData
        From ``fit_nuts``, ``fit_svi`` or ``EMResult.to_inference_data``.
    group : str, default "posterior"

    Returns
    -------
    GMMParams
        Leaves shaped (n_chains, n_draws, n_components, ...).

    Examples
    --------
    >>> from bayesgmm import fit_svi, load_dataset
    >>> X, _ = load_dataset("faithful")
    >>> idata = fit_svi(X, 2, seed=0)
    >>> params_from_idata(idata).means.shape  # (chain, draw, component, feature)
    (1, 1000, 2, 2)
    """
    ds = idata[group]
    weights = ds["weights"].transpose("chain", "draw", "component").values
    means = ds["means"].transpose("chain", "draw", "component", "feature").values
    if "scale_tril" in ds:
        tril = ds["scale_tril"].transpose("chain", "draw", "component", "feature", "feature_col").values
    else:
        cov = ds["covariances"].transpose("chain", "draw", "component", "feature", "feature_col").values
        tril = jnp.linalg.cholesky(cov)
    return GMMParams(jnp.asarray(weights), jnp.asarray(means), jnp.asarray(tril))
