"""Posterior uncertainty over which component each observation belongs to.

Assignment draws live in their own InferenceData group ``assignments`` (variable
``assignments``, dims (chain, draw, obs), the smallest integer dtype that holds
the labels), so that ``arviz.summary(idata)`` on the posterior never sweeps over
``n_chains * n_draws * n_obs`` discrete values. :func:`relabel` maps them along
with the parameters.
"""

from __future__ import annotations

import arviz as az
import jax
import jax.numpy as jnp
import numpy as np
import xarray as xr

from bayesgmm import densities, incomplete
from bayesgmm._validation import as_key
from bayesgmm.noise_region import attrs_box
from bayesgmm.posterior.draws import params_from_idata
from bayesgmm.posterior.noise import draw_noise_responsibilities, has_noise, log_noise_draws, noise_row_terms
from bayesgmm.posterior.relabel import draw_responsibilities, is_relabelled, relabel


def _draw_labels(draw, X):
    p, key = draw
    # The joint log density is the unnormalised log responsibility: fine as logits.
    return jax.random.categorical(key, densities.joint_log_prob(p, X), axis=-1)


def _draw_labels_nan(draw, X):
    p, key = draw
    return jax.random.categorical(key, incomplete.joint_log_prob_nan(p, X), axis=-1)


def _noise_labels(gauss, key, log_noise, unseen):
    joint = jnp.concatenate([gauss, (log_noise + unseen)[:, None]], axis=1)
    z = jax.random.categorical(key, joint, axis=-1)
    return jnp.where(z == gauss.shape[-1], -1, z)


def _draw_labels_noise(draw, X, unseen):
    p, key, log_noise = draw
    return _noise_labels(densities.joint_log_prob(p, X), key, log_noise, unseen)


def _draw_labels_noise_nan(draw, X, unseen):
    p, key, log_noise = draw
    return _noise_labels(incomplete.joint_log_prob_nan(p, X), key, log_noise, unseen)


def sample_assignments(
    idata: az.InferenceData, seed: int | jax.Array = 0, batch_size: int = 64
) -> az.InferenceData:
    """Draw ``z_i ~ Categorical(p(z_i | x_i, draw))`` for every posterior draw.

    Parameters
    ----------
    idata : arviz.InferenceData
        Needs ``posterior`` and ``observed_data["X"]``.
    seed : int or JAX key, default 0
    batch_size : int
        Draws processed at a time.

    Returns
    -------
    arviz.InferenceData
        A new object with the group ``assignments`` holding ``assignments``
        (chain, draw, obs), integer component labels in the posterior's labelling,
        and the input's other groups and ``attrs``. With a noise component
        (``noise="uniform"``), -1 marks a row drawn into the noise.

    Examples
    --------
    >>> from bayesgmm import fit_svi, load_dataset
    >>> X, _ = load_dataset("faithful")
    >>> idata = fit_svi(X, 2, seed=0)
    >>> idata = sample_assignments(idata, seed=1)
    >>> idata.assignments["assignments"].dims
    ('chain', 'draw', 'obs')
    """
    params = params_from_idata(idata)
    n_chains, n_draws, n_components = params.weights.shape
    X = jnp.asarray(idata.observed_data["X"].transpose("obs", "feature").values, dtype=params.means.dtype)
    keys = jax.random.split(as_key(seed), n_chains * n_draws)
    keys = keys.reshape((n_chains, n_draws, *keys.shape[1:]))
    # Rows with missing values (NaN) are assigned given their observed values.
    nan = bool(np.isnan(np.asarray(X)).any())
    fn, draws, args = _draw_labels_nan if nan else _draw_labels, (params, keys), (X,)
    if has_noise(idata):
        fn = _draw_labels_noise_nan if nan else _draw_labels_noise
        draws = (*draws, jnp.asarray(log_noise_draws(idata), params.means.dtype))
        box = attrs_box(idata.attrs) if nan else None
        args = (X, jnp.asarray(noise_row_terms(np.asarray(X), box), params.means.dtype))
    z = np.asarray(densities.over_draws(fn, draws, *args, n_lead=2, batch_size=batch_size))
    dtype = np.int8 if n_components <= np.iinfo(np.int8).max else np.int32
    post = idata.posterior
    ds = xr.Dataset(
        {"assignments": (("chain", "draw", "obs"), z.astype(dtype))},
        coords={"chain": post["chain"], "draw": post["draw"], "obs": idata.observed_data["obs"]},
    )
    # Shallow copies: the new object shares the arrays but not the groups, so that changing
    # one of its groups does not change the input.
    groups = {g: idata[g].copy() for g in idata.groups() if g != "assignments"}
    return az.InferenceData(attrs=dict(idata.attrs), **groups, assignments=ds)


def _relabelled(idata, method: str):
    return idata if is_relabelled(idata) else relabel(idata, method)


def membership_probabilities(idata: az.InferenceData, ci: float = 0.94, method: str = "auto") -> xr.Dataset:
    """Posterior membership probabilities with equal-tailed credible intervals.

    The draws are relabelled first (unless ``idata`` already is), because a
    component's membership probability means nothing across labellings.

    Parameters
    ----------
    idata : arviz.InferenceData
    ci : float, default 0.94
        Mass of the equal-tailed interval over draws of ``p(z_i = k | x_i, draw)``.
    method : str, default "auto"
        Relabelling method, see :func:`relabel`.

    Returns
    -------
    xarray.Dataset
        ``mean``, ``lower``, ``upper`` (obs, component): the posterior mean
        ``p(z_i = k | X)`` and interval bounds; ``entropy`` (obs, nats) and
        ``uncertainty`` (obs, mclust's ``1 - max_k mean``), both of the mean
        probabilities. ``attrs["relabel_method"]`` says how draws were aligned.
        With a noise component (``noise="uniform"``) also ``noise`` (obs), the posterior
        probability that the row is noise (:func:`bayesgmm.posterior.noise.noise_probability`):
        ``mean`` then sums over components to ``1 - noise``, and ``entropy`` and
        ``uncertainty`` count the noise as one more column.

    Examples
    --------
    >>> from bayesgmm import fit_svi, load_dataset
    >>> X, _ = load_dataset("faithful")
    >>> idata = fit_svi(X, 2, seed=0)
    >>> import numpy as np
    >>> probs = membership_probabilities(idata)
    >>> bool(np.allclose(probs["mean"].sum("component"), 1.0))
    True
    """
    if not 0 < ci < 1:
        raise ValueError(f"ci must lie in (0, 1), got {ci}.")
    idata = _relabelled(idata, method)
    noisy = has_noise(idata)
    resp = draw_noise_responsibilities(idata) if noisy else draw_responsibilities(idata)
    resp = resp.reshape(-1, *resp.shape[2:])
    full = resp.mean(axis=0)
    lower, upper = np.quantile(resp, [(1 - ci) / 2, (1 + ci) / 2], axis=0)
    n_components = idata.posterior.sizes["component"]
    safe = np.clip(full, 1e-300, None)
    dims = ("obs", "component")
    coords = {"obs": idata.observed_data["obs"].values, "component": idata.posterior["component"].values}
    extra = {"noise": ("obs", full[:, -1])} if noisy else {}
    return xr.Dataset(
        {
            "mean": (dims, full[:, :n_components]),
            "lower": (dims, lower[:, :n_components]),
            "upper": (dims, upper[:, :n_components]),
            "entropy": ("obs", -np.sum(full * np.log(safe), axis=-1)),
            "uncertainty": ("obs", 1.0 - full.max(axis=-1)),
            **extra,
        },
        coords=coords,
        attrs={"ci": ci, "relabel_method": idata.posterior.attrs["relabel_method"]},
    )


def coclustering_matrix(idata: az.InferenceData, source: str = "responsibilities") -> xr.DataArray:
    """Posterior probability that two observations share a component.

    Label-invariant, so no relabelling is needed.

    Parameters
    ----------
    idata : arviz.InferenceData
    source : {"responsibilities", "assignments"}
        ``"responsibilities"`` is exact given the draws: ``z_i`` and ``z_j`` are
        independent given the parameters, so ``p(z_i = z_j | draw) = sum_k r_ik r_jk``,
        averaged over draws (the diagonal is one). ``"assignments"`` averages
        ``1[z_i = z_j]`` over the stored assignment draws (a Monte Carlo estimate).

    Returns
    -------
    xarray.DataArray, dims (obs, obs_col)

    Examples
    --------
    >>> from bayesgmm import fit_svi, load_dataset
    >>> X, _ = load_dataset("faithful")
    >>> idata = fit_svi(X, 2, seed=0)
    >>> coclustering_matrix(idata).shape  # (n_obs, n_obs)
    (272, 272)
    """
    if source == "responsibilities":
        memberships = draw_responsibilities(idata)
    elif source == "assignments":
        if "assignments" not in idata.groups():
            raise ValueError("No assignment draws; call sample_assignments(idata, seed) first.")
        z = idata.assignments["assignments"].transpose("chain", "draw", "obs").values
        memberships = np.eye(idata.posterior.sizes["component"])[z]
    else:
        raise ValueError(f"source must be 'responsibilities' or 'assignments', got {source!r}.")
    n_obs = memberships.shape[2]
    n_draws = memberships.shape[0] * memberships.shape[1]
    # One matrix product over (draw, component) pairs instead of a loop over draws.
    flat = np.moveaxis(memberships, 2, 0).reshape(n_obs, -1)
    sim = flat @ flat.T / n_draws
    if source == "responsibilities":
        np.fill_diagonal(sim, 1.0)
    obs = idata.observed_data["obs"].values
    coords = {"obs": obs, "obs_col": obs}
    return xr.DataArray(sim, dims=("obs", "obs_col"), coords=coords, attrs={"source": source})
