"""Per-component posterior summaries that relabel first, so R-hat and ESS mean something."""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from typing import Any

import arviz as az
import numpy as np
import pandas as pd

from bayesgmm.posterior.relabel import is_relabelled, relabel


def summary(
    idata: az.InferenceData,
    var_names: Sequence[str] | None = ("weights", "means", "covariances"),
    method: str = "auto",
    **kwargs: Any,
) -> pd.DataFrame:
    """``arviz.summary`` of the mixture parameters after undoing label switching.

    Parameters
    ----------
    idata : arviz.InferenceData
        Relabelled with ``method`` unless it already went through :func:`relabel`.
    var_names : sequence of str
    method : str, default "auto"
        See :func:`relabel`.
    **kwargs
        Passed to ``arviz.summary`` (``hdi_prob``, ``kind``, ...).

    Returns
    -------
    pandas.DataFrame
        ArviZ's table (for SVI and EM fits only its ``kind="stats"`` columns: their
        draws are not Markov chains, so R-hat and ESS do not apply) plus a column
        ``relabel`` naming the relabelling method (also in ``DataFrame.attrs["relabel_method"]``).

    Examples
    --------
    >>> from bayesgmm import fit_svi, load_dataset
    >>> X, _ = load_dataset("faithful")
    >>> idata = fit_svi(X, 2, seed=0)
    >>> summary(idata)["mean"].round(2).iloc[:2].tolist()  # the relabelled weights
    [0.35, 0.65]
    """
    relabelled = idata if is_relabelled(idata) else relabel(idata, method)
    if idata.attrs.get("inference") in ("svi", "em"):
        # Independent draws from a guide (or one EM point) have no chains to compare: R-hat,
        # ESS and MCSE would describe the sampler of the guide, not a posterior's mixing.
        kwargs.setdefault("kind", "stats")
    # Constant entries (zero off-diagonal covariances of diag fits) have no R-hat: NaN, quietly.
    with np.errstate(invalid="ignore", divide="ignore"), warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*shape validation failed.*")
        warnings.filterwarnings("ignore", message="More chains")
        table = az.summary(relabelled, var_names=list(var_names), **kwargs)
    used = relabelled.posterior.attrs["relabel_method"]
    table["relabel"] = used
    table.attrs["relabel_method"] = used
    return table
