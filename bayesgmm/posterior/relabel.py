"""Undo label switching: one permutation of the components per posterior draw.

A mixture posterior is symmetric under permuting the components, so a sampler may
visit several labellings. Every method here finds, for each draw, a permutation
``perm`` (shape (n_components,)) such that new component ``k`` is old component
``perm[k]``, and :func:`relabel` applies it to every ``component``-dimmed variable.

The methods
-----------
``"ordering"``
    Sort the components by the mean of one feature (an identifiability constraint;
    sensible in 1-D when the means are well separated). Component 0 has the smallest mean.
``"ecr"``
    Equivalence classes representatives with a pivot (Papastamoulis & Iliopoulos
    2010): the hard allocation of each draw is matched to the allocation of a pivot
    draw (the one of highest log density) by the Hungarian algorithm.
``"stephens"``
    Stephens' (2000) Kullback-Leibler algorithm: alternately average the permuted
    responsibilities and re-assign every draw to that average; started from ECR.

After ECR and Stephens the components are numbered by decreasing posterior mean weight,
so that the order does not depend on the seed (component 0 is the largest).

``"auto"`` picks ``"ordering"`` for 1-D data whose sorted means have central 98%
posterior intervals that do not overlap, else ``"stephens"`` when the
responsibilities of all draws have at most ``2e7`` entries, else ``"ecr"``.

Stick-breaking variables
------------------------
Under the ``dp`` weight prior the posterior also holds ``sticks`` (dims chain, draw,
stick) and ``stick_remainder``, with ``weights = models.stick_breaking(sticks)`` and
``stick_remainder = weights[..., -1]``. Stick breaking depends on the order of the
components, so permuting ``weights`` leaves the sampled sticks describing the old
order. :func:`relabel` recomputes both from the relabelled weights (the inverse of
``stick_breaking``, ``bayesgmm.posterior.sticks.sticks_from_weights``), so that the two
identities hold for every relabelled draw. The sampler's own order is kept by
``relabel_permutation``: the sampled ``stick_remainder`` of a draw (the mass the
truncation gave to the sampler's last component, the quantity the truncation check of
``n_components_posterior`` reads) is the relabelled weight of the component ``k`` with
``relabel_permutation[k] == n_components - 1``.
"""

from __future__ import annotations

import arviz as az
import jax.numpy as jnp
import numpy as np
import xarray as xr
from scipy.optimize import linear_sum_assignment

from bayesgmm import densities, incomplete
from bayesgmm.posterior.draws import params_from_idata
from bayesgmm.posterior.noise import draw_noise_responsibilities, has_noise
from bayesgmm.posterior.sticks import rebreak_sticks

METHODS = ("ordering", "ecr", "stephens")
#: Groups whose draws are the posterior draws, so they are permuted together.
RELABEL_GROUPS = ("posterior", "posterior_predictive", "log_likelihood", "sample_stats", "assignments")
#: Largest n_draws * n_obs * n_components for which "auto" runs Stephens (160 MB in float64).
STEPHENS_MAX_ENTRIES = 20_000_000


def draw_responsibilities(
    idata: az.InferenceData, group: str = "posterior", batch_size: int = 64
) -> np.ndarray:
    """Responsibilities ``p(z_i = k | x_i, draw)`` of every draw.

    Parameters
    ----------
    idata : arviz.InferenceData
        Needs ``observed_data["X"]`` and the mixture parameters in ``group``.
    group : str, default "posterior"
    batch_size : int
        Draws evaluated at a time, to bound the working memory.

    Returns
    -------
    ndarray, shape (n_chains, n_draws, n_obs, n_components)
        With a noise component (``noise="uniform"``), the Gaussians' columns of the
        responsibilities with the noise (``posterior.noise``): a row sums to one minus
        its noise responsibility.

    Examples
    --------
    >>> from bayesgmm import fit_svi, load_dataset
    >>> X, _ = load_dataset("faithful")
    >>> idata = fit_svi(X, 2, seed=0)
    >>> draw_responsibilities(idata).shape  # (chain, draw, obs, component)
    (1, 1000, 272, 2)
    """
    if has_noise(idata, group):
        return draw_noise_responsibilities(idata, group)[..., :-1]
    params = params_from_idata(idata, group)
    X = jnp.asarray(idata.observed_data["X"].transpose("obs", "feature").values, dtype=params.means.dtype)
    # Rows with missing values (NaN): the responsibilities given their observed values.
    fn = incomplete.responsibilities_nan if bool(jnp.isnan(X).any()) else densities.responsibilities
    return np.asarray(densities.over_draws(fn, params, X, batch_size=batch_size))


def hungarian(cost: np.ndarray) -> np.ndarray:
    """Minimum-cost permutation of each cost matrix.

    Parameters
    ----------
    cost : ndarray, shape (n, n_components, n_components)
        ``cost[t, k, j]``: cost of making old component ``j`` the new component ``k``.

    Returns
    -------
    int ndarray, shape (n, n_components)
        ``perm[t, k]`` is the old component that becomes component ``k``.
    """
    # scipy solves one matrix per call; K is small, so the loop over draws is cheap.
    return np.stack([linear_sum_assignment(c)[1] for c in cost]).astype(np.int64)


def ordering_permutations(means: np.ndarray, feature: int = 0) -> np.ndarray:
    """Find the permutations that sort the components by ``means[..., feature]``.

    Parameters
    ----------
    means : ndarray, shape (n, n_components, n_features)
    feature : int

    Returns
    -------
    int ndarray, shape (n, n_components)

    Examples
    --------
    >>> ordering_permutations(np.array([[[2.0], [-1.0]]])).tolist()
    [[1, 0]]
    """
    return np.argsort(means[..., feature], axis=-1, kind="stable")


def ecr_permutations(resp: np.ndarray, pivot: int) -> np.ndarray:
    """ECR permutations that match each draw's hard allocation to the pivot's.

    Parameters
    ----------
    resp : ndarray, shape (n, n_obs, n_components)
        Responsibilities of ``n`` draws.
    pivot : int
        Index of the pivot draw.

    Returns
    -------
    int ndarray, shape (n, n_components)
    """
    n, n_obs, n_components = resp.shape
    ref_soft = resp[pivot]
    labels = np.argmax(resp, axis=-1)
    # agree[t, k, j]: observations the pivot puts in k and draw t in j, counted with one
    # bincount rather than through one-hot arrays of the size of resp.
    cells = (np.arange(n)[:, None] * n_components + labels[pivot]) * n_components + labels
    agree = np.bincount(cells.ravel(), minlength=n * n_components**2)
    agree = agree.reshape(n, n_components, n_components).astype(resp.dtype)
    # The soft overlap, scaled to sum below one, only breaks ties between equal counts
    # (e.g. empty components), which keeps the result unique and relabelling idempotent.
    soft = np.matmul(ref_soft.T, resp) / (n_obs + 1.0)  # BLAS, not einsum's loops
    return hungarian(-(agree + soft))


def stephens_permutations(
    resp: np.ndarray, init: np.ndarray | None = None, max_iter: int = 100
) -> tuple[np.ndarray, int]:
    """Stephens' Kullback-Leibler relabelling.

    Each iteration sets ``Q`` to the mean of the permuted responsibilities and then
    gives every draw the permutation closest to ``Q`` in Kullback-Leibler divergence;
    it stops when no permutation changes.

    Parameters
    ----------
    resp : ndarray, shape (n, n_obs, n_components)
    init : int ndarray, shape (n, n_components), optional
        Starting permutations; identity when omitted.
    max_iter : int

    Returns
    -------
    perms : int ndarray, shape (n, n_components)
    n_iter : int
    """
    n, _, n_components = resp.shape
    perms = np.tile(np.arange(n_components), (n, 1)) if init is None else np.asarray(init)
    n_iter = 0
    while n_iter < max_iter:
        n_iter += 1
        permuted = np.take_along_axis(resp, perms[:, None, :], axis=-1)
        log_q = np.log(np.clip(permuted.mean(axis=0), 1e-300, None))
        # KL(p_t[:, perm] || Q) = sum p log p (same for every perm) - sum_i p_t[i, perm[k]] log Q[i, k].
        new = hungarian(-np.einsum("tij,ik->tkj", resp, log_q))
        if np.array_equal(new, perms):
            break
        perms = new
    return perms, n_iter


def _well_separated_1d(means: np.ndarray) -> bool:
    """Tell whether adjacent sorted means have non-overlapping central 98% intervals."""
    ordered = np.sort(means[..., 0], axis=-1)
    lo, hi = np.quantile(ordered, [0.01, 0.99], axis=0)
    return bool(np.all(hi[:-1] < lo[1:]))


def choose_method(idata: az.InferenceData) -> str:
    """Choose the method ``relabel(method="auto")`` uses; the rule is in the module docstring.

    Parameters
    ----------
    idata : arviz.InferenceData

    Returns
    -------
    str
        One of ``METHODS``.
    """
    means = idata.posterior["means"].transpose(..., "component", "feature").values
    n_features = means.shape[-1]
    if n_features == 1 and _well_separated_1d(means.reshape(-1, *means.shape[-2:])):
        return "ordering"
    n_entries = means.shape[0] * means.shape[1] * idata.observed_data.sizes["obs"] * means.shape[-2]
    return "stephens" if n_entries <= STEPHENS_MAX_ENTRIES else "ecr"


def pivot_draw(idata: az.InferenceData) -> int:
    """Find the draw with the highest log density (label-invariant, so stable).

    Uses ``sample_stats["lp"]`` when present, else the summed ``log_likelihood["X"]``.

    Parameters
    ----------
    idata : arviz.InferenceData

    Returns
    -------
    int
        Its index among the draws of all chains, flattened (chain, draw).
    """
    if "sample_stats" in idata.groups() and "lp" in idata.sample_stats:
        score = idata.sample_stats["lp"].transpose("chain", "draw").values
    else:
        score = idata.log_likelihood["X"].sum("obs").transpose("chain", "draw").values
    return int(np.argmax(score.reshape(-1)))


def find_permutations(idata: az.InferenceData, method: str = "auto") -> tuple[np.ndarray, str]:
    """Find the per-draw permutations that undo label switching, without applying them.

    Parameters
    ----------
    idata : arviz.InferenceData
    method : {"auto", "ordering", "ecr", "stephens"}

    Returns
    -------
    perms : int ndarray, shape (n_chains, n_draws, n_components)
    method : str
        The method used (``"auto"`` resolved).
    """
    if method == "auto":
        method = choose_method(idata)
    if method not in METHODS:
        raise ValueError(f"method must be 'auto' or one of {METHODS}, got {method!r}.")
    means = idata.posterior["means"].transpose("chain", "draw", "component", "feature").values
    lead = means.shape[:2]
    if method == "ordering":
        perms = ordering_permutations(means.reshape(-1, *means.shape[2:]))
    else:
        resp = draw_responsibilities(idata)
        resp = resp.reshape(-1, *resp.shape[2:])
        perms = ecr_permutations(resp, pivot_draw(idata))
        if method == "stephens":
            perms, _ = stephens_permutations(resp, init=perms)
        perms = by_decreasing_weight(idata.posterior["weights"].values.reshape(-1, perms.shape[-1]), perms)
    return perms.reshape((*lead, -1)), method


def by_decreasing_weight(weights: np.ndarray, perms: np.ndarray) -> np.ndarray:
    """Compose per-draw permutations with the one global order of decreasing mean weight.

    ECR and Stephens match every draw to a reference labelling (a pivot draw, an
    average), whose order is arbitrary: it changes with the seed and the sampler.
    Sorting the matched components by their posterior mean weight makes component 0
    the largest in every fit of the same data.

    Parameters
    ----------
    weights : ndarray, shape (n_draws, n_components)
        The draws' weights in the sampler's order.
    perms : int ndarray, shape (n_draws, n_components)
        New component ``k`` is old component ``perms[:, k]``.

    Returns
    -------
    int ndarray, shape (n_draws, n_components)

    Examples
    --------
    >>> w = np.array([[0.2, 0.8], [0.7, 0.3]])
    >>> by_decreasing_weight(w, np.array([[0, 1], [1, 0]])).tolist()
    [[1, 0], [0, 1]]
    """
    matched = np.take_along_axis(weights, perms, axis=-1).mean(axis=0)
    return perms[:, np.argsort(-matched, kind="stable")]


def _permute_dataset(ds: xr.Dataset, perms: np.ndarray) -> xr.Dataset:
    """Apply draw-level permutations to every variable of ``ds`` with a component dim."""
    index = xr.DataArray(perms, dims=("chain", "draw", "component"))
    out = ds.copy()
    for name, da in ds.data_vars.items():
        if name == "assignments":
            # Labels are values, not an axis: old label j becomes the k with perm[k] == j.
            inverse = np.argsort(perms, axis=-1)
            z = da.transpose("chain", "draw", ...)
            out[name] = z.copy(data=np.take_along_axis(inverse, z.values, axis=-1).astype(z.dtype))
        elif "component" in da.dims and "chain" in da.dims and "draw" in da.dims:
            permuted = da.isel(component=index).transpose(*da.dims)
            # C order, as a netCDF file reads back: reductions then round alike after a round trip.
            permuted = permuted.copy(data=np.ascontiguousarray(permuted.values))
            out[name] = permuted.assign_coords(component=ds["component"])
    return out


def is_relabelled(idata: az.InferenceData) -> bool:
    """Tell whether ``idata`` came out of :func:`relabel`.

    Parameters
    ----------
    idata : arviz.InferenceData

    Returns
    -------
    bool
    """
    return "relabel_method" in idata.posterior.attrs


def relabel(idata: az.InferenceData, method: str = "auto") -> az.InferenceData:
    """Undo label switching in a mixture posterior.

    Parameters
    ----------
    idata : arviz.InferenceData
        From ``fit_nuts`` / ``fit_svi`` (needs ``posterior`` and ``observed_data``).
    method : {"auto", "ordering", "ecr", "stephens"}
        See the module docstring for the methods and the ``"auto"`` rule.

    Returns
    -------
    arviz.InferenceData
        A new object. Every ``component``-dimmed variable of the groups in
        ``RELABEL_GROUPS`` is permuted draw by draw, ``assignments`` labels are
        mapped, ``posterior["relabel_permutation"]`` (chain, draw, component) holds
        the permutation relative to the original draws (new ``k`` = original
        ``perm[k]``; composed when relabelling twice) and
        ``posterior.attrs["relabel_method"]`` the method. The ``dp`` prior's ``sticks``
        and ``stick_remainder`` are recomputed from the relabelled weights (see the
        module docstring). The InferenceData's own ``attrs`` (the fit settings) are
        kept. The input is untouched.

    Examples
    --------
    >>> from bayesgmm import fit_svi, load_dataset
    >>> X, _ = load_dataset("faithful")
    >>> idata = fit_svi(X, 2, seed=0)
    >>> new = relabel(idata)
    >>> new.posterior.attrs["relabel_method"]
    'stephens'
    """
    perms, method = find_permutations(idata, method)
    groups = {}
    for group in idata.groups():
        ds = idata[group]
        groups[group] = _permute_dataset(ds, perms) if group in RELABEL_GROUPS else ds.copy()
    post = groups["posterior"]
    if "relabel_permutation" not in post:
        dims = ("chain", "draw", "component")
        post["relabel_permutation"] = xr.DataArray(perms, dims=dims, coords={k: post[k] for k in dims})
    post.attrs = {**idata.posterior.attrs, "relabel_method": method}
    rebreak_sticks(post)
    return az.InferenceData(attrs=dict(idata.attrs), **groups)
