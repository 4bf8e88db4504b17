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
        ArviZ's table (for SVI fits only its ``kind="stats"`` columns: their draws are
        not Markov chains, so R-hat and ESS do not apply; for EM fits only ``mean``, the
        point estimate, since one point has no spread or interval) plus a column
        ``relabel`` naming the relabelling method (also in ``DataFrame.attrs["relabel_method"]``).
        A covariance matrix is symmetric, so ``covariances`` and ``scale_tril`` show each
        component's lower triangle (cell ``[k, a, b]`` with ``b`` not after ``a``), and
        only the diagonal for ``diag``, ``spherical``, ``EII`` and ``EEI`` fits, whose other
        cells are zero.

    Examples
    --------
    >>> from bayesgmm import fit_svi, load_dataset
    >>> X, _ = load_dataset("faithful")
    >>> idata = fit_svi(X, 2, seed=0)
    >>> table = summary(idata)
    >>> table["mean"].round(2).iloc[:2].tolist()  # the relabelled weights, largest first
    [0.65, 0.35]
    >>> for label in table.index[-3:]:  # one row per covariance cell
    ...     print(label)
    covariances[1, x0, x0]
    covariances[1, x1, x0]
    covariances[1, x1, x1]
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
        # One EM point has no spread: numpy warns about its standard deviation, which is dropped.
        warnings.filterwarnings("ignore", message="Degrees of freedom <= 0", category=RuntimeWarning)
        table = az.summary(relabelled, var_names=list(var_names), **kwargs)
    table = table[_cells_shown(relabelled, list(var_names), len(table), kwargs)]
    if idata.attrs.get("inference") == "em" and kwargs.get("kind", "stats") == "stats":
        table = table[["mean"]]
    used = relabelled.posterior.attrs["relabel_method"]
    table["relabel"] = used
    table.attrs["relabel_method"] = used
    return table


def _cells_shown(idata: az.InferenceData, var_names: list[str], n_rows: int, kwargs: dict) -> np.ndarray:
    """Mask of the table's rows that are not a repeated or structurally zero matrix cell.

    ``az.summary`` lists the cells of each variable in the order of its dims, variable by
    variable, so the mask is built from the posterior's shapes. With ``coords`` or
    ``filter_vars`` the rows are a subset and every row is kept.
    """
    if "coords" in kwargs or "filter_vars" in kwargs:
        return np.ones(n_rows, bool)
    diagonal_only = idata.attrs.get("covariance_type") in ("diag", "spherical", "EII", "EEI")
    masks = []
    for name in var_names:
        da = idata.posterior[name]
        cell_dims = [d for d in da.dims if d not in ("chain", "draw")]
        grid = np.indices([da.sizes[d] for d in cell_dims])
        keep = np.ones(grid.shape[1:], bool)
        if name in ("covariances", "scale_tril") and {"feature", "feature_col"} <= set(cell_dims):
            row, col = grid[cell_dims.index("feature")], grid[cell_dims.index("feature_col")]
            keep = row == col if diagonal_only else row >= col
        masks.append(keep.reshape(-1))
    mask = np.concatenate(masks) if masks else np.ones(0, bool)
    return mask if mask.size == n_rows else np.ones(n_rows, bool)
