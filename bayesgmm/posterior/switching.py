"""Detect label switching, and tell chains in different labellings from chains in different modes.

Two chains that explore the same mode in different labellings differ only by a
permutation: every label-invariant quantity has the same distribution in both,
while raw per-component R-hat is large. Chains in genuinely different modes
differ in label-invariant quantities too. The report therefore puts, side by
side, the raw and relabelled R-hat of the parameters and the R-hat of

- ``sorted_weights``: the weights sorted in increasing order,
- ``log_density_ref``: the mixture log density at ``n_reference`` observations
  (evenly spaced ranks of the first feature), read from ``log_likelihood``,
- ``total_log_likelihood``: the log likelihood of all the data,

and, per chain, the distance between its co-clustering matrix and the pooled one.
"""

from __future__ import annotations

from dataclasses import dataclass

import arviz as az
import numpy as np
import pandas as pd
import xarray as xr

from bayesgmm.posterior.relabel import _permute_dataset, draw_responsibilities, is_relabelled, relabel


@dataclass
class SwitchingReport:
    """Result of :func:`label_switching_report`.

    Attributes
    ----------
    verdict : str
        The first that holds of ``"chains in different modes"`` (a label-invariant
        R-hat above ``rhat_threshold``), ``"chains in different labellings of one
        mode"`` (every chain spends most draws in its dominant labelling and these
        differ), ``"label switching within chains"`` (some draw left its chain's
        dominant labelling) and ``"no label switching"``.
    chains : pandas.DataFrame
        One row per chain: ``dominant_permutation`` (the labelling the chain
        spends most draws in, relative to the relabelled reference: new ``k`` =
        raw ``perm[k]``), ``fraction_switched`` (draws away from that dominant
        labelling), ``fraction_off_reference`` (draws not in the reference
        labelling) and ``coclustering_distance`` (largest absolute difference
        between the chain's co-clustering matrix and the pooled one).
    rhat : pandas.DataFrame
        Largest R-hat and smallest bulk ESS per quantity (raw and relabelled
        parameters, label-invariant quantities).
    switched : bool ndarray, shape (n_chains, n_draws)
        Draws whose labelling differs from their chain's dominant labelling.
    off_reference : bool ndarray, shape (n_chains, n_draws)
        Draws whose labelling differs from the reference.
    method : str
        Relabelling method used.
    """

    verdict: str
    chains: pd.DataFrame
    rhat: pd.DataFrame
    switched: np.ndarray
    off_reference: np.ndarray
    method: str

    def __str__(self) -> str:
        """Format the verdict and the per-chain and R-hat tables."""
        return (
            f"Label switching report (relabelled with {self.method!r}): {self.verdict}\n\n"
            f"{self.chains.to_string()}\n\n{self.rhat.to_string()}"
        )


def label_invariants(idata: az.InferenceData, n_reference: int = 10) -> xr.Dataset:
    """Compute label-invariant quantities of every draw.

    ``sorted_weights``, ``log_density_ref`` (the log density at ``n_reference`` reference
    observations) and ``total_log_likelihood``.

    Parameters
    ----------
    idata : arviz.InferenceData
    n_reference : int
        Number of reference observations, spread over the order of the first feature.

    Returns
    -------
    xarray.Dataset
        Dims (chain, draw, component), (chain, draw, ref) and (chain, draw).
    """
    X = idata.observed_data["X"].transpose("obs", "feature").values
    ranks = np.argsort(X[:, 0], kind="stable")
    ref = ranks[np.unique(np.linspace(0, X.shape[0] - 1, min(n_reference, X.shape[0])).astype(int))]
    ll = idata.log_likelihood["X"].transpose("chain", "draw", "obs")
    weights = idata.posterior["weights"].transpose("chain", "draw", "component").values
    return xr.Dataset(
        {
            "sorted_weights": (("chain", "draw", "component"), np.sort(weights, axis=-1)),
            "log_density_ref": (("chain", "draw", "ref"), ll.values[..., ref]),
            "total_log_likelihood": (("chain", "draw"), ll.values.sum(axis=-1)),
        },
        coords={"chain": ll["chain"].values, "draw": ll["draw"].values, "ref": ref},
    )


def _diagnostics(ds: xr.Dataset, label: str) -> list[dict]:
    rhat, ess = az.rhat(ds), az.ess(ds, method="bulk")
    return [
        {
            "quantity": f"{name}{label}",
            "max_rhat": float(rhat[name].max()),
            "min_ess_bulk": float(ess[name].min()),
        }
        for name in ds.data_vars
    ]


def _chain_table(perms: np.ndarray, resp: np.ndarray):
    n_chains, n_draws, n_components = perms.shape
    identity = np.arange(n_components)
    pooled = _coclustering(resp.reshape(-1, *resp.shape[2:]))
    rows, switched = [], np.zeros((n_chains, n_draws), dtype=bool)
    for c in range(n_chains):  # a handful of chains; the work inside is vectorised
        labellings, counts = np.unique(perms[c], axis=0, return_counts=True)
        dominant = labellings[np.argmax(counts)]
        switched[c] = np.any(perms[c] != dominant, axis=-1)
        rows.append(
            {
                "dominant_permutation": tuple(int(j) for j in dominant),
                "fraction_switched": float(switched[c].mean()),
                "fraction_off_reference": float(np.any(perms[c] != identity, axis=-1).mean()),
                "coclustering_distance": float(np.abs(_coclustering(resp[c]) - pooled).max()),
            }
        )
    table = pd.DataFrame(rows, index=pd.Index(np.arange(n_chains), name="chain"))
    return table, switched


def _coclustering(resp: np.ndarray) -> np.ndarray:
    """Mean of ``r r^T`` over draws; ``resp`` has shape (n_draws, n_obs, n_components)."""
    flat = np.moveaxis(resp, 1, 0).reshape(resp.shape[1], -1)
    return flat @ flat.T / resp.shape[0]


def label_switching_report(
    idata: az.InferenceData, method: str = "auto", n_reference: int = 10, rhat_threshold: float = 1.05
) -> SwitchingReport:
    """Which chains and draws switched labels, and whether chains sit in different modes.

    Parameters
    ----------
    idata : arviz.InferenceData
        Raw or relabelled posterior (a relabelled one is mapped back to its raw
        draws through ``relabel_permutation``).
    method : str, default "auto"
        Relabelling method, see :func:`relabel`.
    n_reference : int, default 10
        Number of reference observations for ``log_density_ref``.
    rhat_threshold : float, default 1.05
        Chains are called different modes when a label-invariant R-hat exceeds it.
        Looser than the usual 1.01 because the verdict should flag modes, not noise.

    Returns
    -------
    SwitchingReport

    Examples
    --------
    >>> from bayesgmm import fit_svi, load_dataset
    >>> X, _ = load_dataset("faithful")
    >>> idata = fit_svi(X, 2, seed=0)
    >>> label_switching_report(idata).verdict
    'no label switching'
    """
    relabelled = idata if is_relabelled(idata) else relabel(idata, method)
    perms = relabelled.posterior["relabel_permutation"].transpose("chain", "draw", "component").values
    params = ["weights", "means"]
    raw = _permute_dataset(relabelled.posterior[params], np.argsort(perms, axis=-1))
    resp = draw_responsibilities(relabelled)
    chains, switched = _chain_table(perms, resp)
    invariants = label_invariants(relabelled, n_reference)
    rhat = pd.DataFrame(
        _diagnostics(raw, " (raw)")
        + _diagnostics(relabelled.posterior[params], " (relabelled)")
        + _diagnostics(invariants, " (label-invariant)")
    ).set_index("quantity")
    invariant_rhat = max(float(az.rhat(invariants)[v].max()) for v in invariants.data_vars)
    if invariant_rhat > rhat_threshold:
        verdict = "chains in different modes"
    # A chain is stuck in a labelling when it spends most of its draws in it.
    elif (chains["fraction_switched"] < 0.5).all() and len(set(chains["dominant_permutation"])) > 1:
        verdict = "chains in different labellings of one mode"
    elif switched.any():
        verdict = "label switching within chains"
    else:
        verdict = "no label switching"
    off_reference = np.any(perms != np.arange(perms.shape[-1]), axis=-1)
    return SwitchingReport(
        verdict, chains, rhat, switched, off_reference, relabelled.posterior.attrs["relabel_method"]
    )
