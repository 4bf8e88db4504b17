"""Uncertainty over the number of components: posterior and induced prior of K_+.

An overfitted mixture (``weight_prior="sparse"`` or ``"dp"``, ``n_components`` an upper
bound) answers "how many components?" with the number of *occupied* components K_+,
the number of distinct labels among the assignments of the ``n_obs`` observations.
Its posterior comes from assignment draws; the prior it is compared with is the one
the weight prior induces on K_+ for the same ``n_obs``, which is far from uniform and
depends on ``n_obs``, so it must be computed, not guessed.
"""

from __future__ import annotations

import arviz as az
import jax
import numpy as np
import pandas as pd
import xarray as xr
from numpyro.infer import Predictive
from scipy import special, stats

from bayesgmm.models import WEIGHT_SITES, gmm_model
from bayesgmm.posterior.assignments import sample_assignments
from bayesgmm.priors import Priors

#: Nodes of the quadrature over a Gamma hyperprior (trapezoid rule in log concentration).
_N_NODES = 201


def occupied_counts(z: np.ndarray) -> np.ndarray:
    """Count the distinct labels along the last axis, leaving out -1 (the noise component).

    Parameters
    ----------
    z : int ndarray, shape (..., n_obs)
        Component labels; -1 marks a row assigned to a uniform noise component, which is
        not a cluster and so is not counted.

    Returns
    -------
    int ndarray, shape (...)

    Examples
    --------
    >>> occupied_counts(np.array([[0, 0, 3], [1, 2, 0], [-1, 2, 2]])).tolist()
    [2, 3, 1]
    """
    # Sorting and counting changes needs O(n_obs) memory per draw, not O(n_obs * n_components).
    z = np.sort(z, axis=-1)
    distinct = (np.diff(z, axis=-1) != 0).sum(axis=-1) + 1
    return distinct - (z[..., 0] < 0)


def n_components_posterior(idata: az.InferenceData, seed: int | jax.Array = 0) -> pd.DataFrame:
    """Posterior distribution of the number of occupied components K_+.

    Label-invariant, so no relabelling is needed.

    Parameters
    ----------
    idata : arviz.InferenceData
        A Bayesian fit; its ``assignments`` group is used, or drawn with
        ``sample_assignments(idata, seed)`` when absent.
    seed : int or JAX key, default 0
        Only used to draw assignments.

    Returns
    -------
    pandas.DataFrame
        Index ``n_occupied`` = 1..n_components (from 0 when, with a noise component, some
        draw assigns every row to the noise; rows assigned to the noise never count);
        columns ``count`` (draws with that many occupied components) and ``probability``
        (``count / n_draws``).
        ``attrs``: ``n_draws``, ``mode``, ``mean``, ``weight_prior`` and, for the dp
        prior, ``stick_remainder_mean`` (posterior mean of the mass in the last stick,
        in the sampler's order also after ``relabel``: see :func:`sampled_stick_remainder`).

    Examples
    --------
    Three draws of the assignments of four observations to three components (a fit's
    ``sample_assignments`` group, here written by hand):

    >>> import arviz as az, xarray as xr
    >>> z = np.array([[[0, 0, 1, 1], [2, 2, 1, 1], [0, 0, 0, 0]]])  # (chain, draw, obs)
    >>> idata = az.from_dict(
    ...     posterior={"weights": np.full((1, 3, 3), 1 / 3)},
    ...     dims={"weights": ["component"]},
    ... )
    >>> idata.add_groups(assignments=xr.Dataset({"assignments": (("chain", "draw", "obs"), z)}))
    >>> n_components_posterior(idata)["probability"].round(3).tolist()
    [0.333, 0.667, 0.0]
    """
    # Fit settings live in the InferenceData's own attrs (arviz.from_dict(attrs=...)).
    weight_prior = getattr(idata, "attrs", {}).get("weight_prior", "dirichlet")
    if "assignments" not in idata.groups():
        idata = sample_assignments(idata, seed=seed)
    z = idata.assignments["assignments"].transpose("chain", "draw", "obs").values
    n_components = idata.posterior.sizes["component"]
    k_plus = occupied_counts(z).ravel()
    counts = np.bincount(k_plus, minlength=n_components + 1)
    # Only a noise component can leave a draw with no occupied Gaussian: a row 0 then shows it.
    table = _table(counts, start=0) if counts[0] else _table(counts[1:])
    table.attrs["weight_prior"] = weight_prior
    if "stick_remainder" in idata.posterior:
        table.attrs["stick_remainder_mean"] = float(sampled_stick_remainder(idata.posterior).mean())
    return table


def sampled_stick_remainder(post: xr.Dataset) -> xr.DataArray:
    """Return the mass the truncation gave to the sampler's last component, dims (chain, draw).

    This is ``stick_remainder`` as sampled. After ``relabel`` the stored
    ``stick_remainder`` is the last weight in the new labelling, so the sampler's last
    component is found through ``relabel_permutation`` (new ``k`` = sampled ``perm[k]``).

    Parameters
    ----------
    post : xarray.Dataset
        A ``posterior`` group with ``stick_remainder`` (the ``dp`` weight prior).

    Returns
    -------
    xarray.DataArray, dims (chain, draw)
    """
    if "relabel_permutation" not in post:
        return post["stick_remainder"]
    last = post.sizes["component"] - 1
    perm = post["relabel_permutation"].transpose("chain", "draw", "component").values
    weights = post["weights"].transpose("chain", "draw", "component").values
    k = np.argmax(perm == last, axis=-1)
    value = np.take_along_axis(weights, k[..., None], axis=-1)[..., 0]
    return post["stick_remainder"].transpose("chain", "draw").copy(data=value)


def _table(counts: np.ndarray, start: int = 1) -> pd.DataFrame:
    index = pd.Index(np.arange(start, start + len(counts)), name="n_occupied")
    n_draws = int(counts.sum())
    table = pd.DataFrame({"count": counts, "probability": counts / n_draws}, index=index)
    table.attrs.update(
        n_draws=n_draws,
        mode=int(index[np.argmax(counts)]),
        mean=float(np.dot(index, counts) / n_draws),
    )
    return table


def induced_prior_n_components(
    n_obs: int,
    n_components: int,
    weight_prior: str = "sparse",
    priors: Priors | None = None,
    method: str = "exact",
    n_draws: int = 20_000,
    seed: int = 0,
) -> pd.DataFrame:
    """Prior distribution of the number of occupied components among ``n_obs`` observations.

    Parameters
    ----------
    n_obs, n_components : int
    weight_prior : {"dirichlet", "sparse", "dp"}
    priors : Priors, optional
        The hyperparameters used by the fit (defaults to ``Priors()``).
    method : {"exact", "simulation"}
        ``"exact"``: a recursion over observations (symmetric Dirichlet, a Polya
        urn: the next observation opens a new component with probability
        ``(K - k) e / (n + K e)``) or over sticks (truncated DP: the count taken
        by stick k is Beta-binomial(remaining, 1, alpha)), integrated over the
        Gamma hyperprior by the trapezoid rule in log concentration.
        ``"simulation"``: Monte Carlo from ``gmm_model``'s own prior, ``n_draws``
        weight vectors each with ``n_obs`` multinomial assignments.
    n_draws : int
        Simulation size.
    seed : int

    Returns
    -------
    pandas.DataFrame
        Index ``n_occupied`` = 1..n_components; column ``probability`` and, for the
        simulation, ``count`` and ``mcse`` (binomial standard error). For ``dp``,
        ``attrs["expected_stick_remainder"]`` is the prior mean of the mass left in
        the last stick, ``E[(alpha / (1 + alpha)) ** (n_components - 1)]``.

    Examples
    --------
    >>> p = induced_prior_n_components(82, 8, "sparse")
    >>> round(float(p["probability"].sum()), 12)
    1.0
    """
    priors = Priors() if priors is None else priors
    if weight_prior not in WEIGHT_SITES:
        raise ValueError(f"weight_prior must be one of {tuple(WEIGHT_SITES)}, got {weight_prior!r}.")
    if method == "simulation":
        table = _simulate(n_obs, n_components, weight_prior, priors, n_draws, seed)
    elif method == "exact":
        alphas, nodes_w = _concentration_nodes(weight_prior, priors)
        occupancy = _occupancy_dp if weight_prior == "dp" else _occupancy_dirichlet
        probs = nodes_w @ occupancy(n_obs, n_components, alphas)
        index = pd.Index(np.arange(1, n_components + 1), name="n_occupied")
        table = pd.DataFrame({"probability": probs[1:]}, index=index)
    else:
        raise ValueError(f"method must be 'exact' or 'simulation', got {method!r}.")
    if weight_prior == "dp":
        alphas, nodes_w = _concentration_nodes("dp", priors)
        table.attrs["expected_stick_remainder"] = float(
            nodes_w @ (alphas / (1 + alphas)) ** (n_components - 1)
        )
    table.attrs.update(weight_prior=weight_prior, method=method, n_obs=n_obs)
    return table


def _concentration_nodes(weight_prior: str, priors: Priors):
    """Concentrations and their quadrature weights (summing to one) under the hyperprior."""
    if weight_prior == "dirichlet":
        return np.array([priors.weight_concentration]), np.ones(1)
    if weight_prior == "sparse":
        shape, rate = priors.sparse_shape, priors.sparse_rate
    else:
        shape, rate = priors.dp_shape, priors.dp_rate
    gamma = stats.gamma(shape, scale=1.0 / rate)
    # In t = log(alpha) the integrand is smooth and decays at both ends, where the
    # trapezoid rule converges fast; the ends hold 2e-12 of the hyperprior's mass.
    t = np.linspace(np.log(gamma.ppf(1e-12)), np.log(gamma.isf(1e-12)), _N_NODES)
    w = np.exp(gamma.logpdf(np.exp(t)) + t)
    return np.exp(t), w / w.sum()


def _occupancy_dirichlet(n_obs: int, n_components: int, alphas: np.ndarray) -> np.ndarray:
    """P(K_+ = k | alpha), k = 0..n_components, for Dirichlet(alpha, ..., alpha) weights.

    Returns an array of shape (n_alphas, n_components + 1), by the Polya urn: after
    ``n`` observations in ``k`` components the next opens a new one with probability
    ``(n_components - k) alpha / (n + n_components alpha)``.
    """
    k = np.arange(n_components + 1)
    p = np.zeros((len(alphas), n_components + 1))
    p[:, 0] = 1.0
    a = alphas[:, None]
    for n in range(n_obs):
        new = (n_components - k) * a / (n + n_components * a)
        p = p * (1.0 - new) + np.pad((p * new)[:, :-1], ((0, 0), (1, 0)))
    return p


def _occupancy_dp(n_obs: int, n_components: int, alphas: np.ndarray) -> np.ndarray:
    """P(K_+ = k | alpha), k = 0..n_components, for truncated stick-breaking weights.

    Given ``m`` observations not yet placed, stick ``k`` takes ``n ~ BetaBinomial(m, 1,
    alpha)`` of them (the Beta(1, alpha) stick integrated out); the last component gets
    whatever is left. State: (observations left, components occupied). Cost
    O(n_alphas * n_components**2 * n_obs**2).
    """
    m = np.arange(n_obs + 1)
    out = np.zeros((len(alphas), n_components + 1))
    for i, alpha in enumerate(alphas):
        # trans[m, r]: probability that r of m observations remain after one stick (n = m - r).
        n = m[:, None] - m[None, :]
        log_t = (
            special.gammaln(m[:, None] + 1)
            - special.gammaln(np.maximum(n, 0) + 1)
            - special.gammaln(m[None, :] + 1)
            + special.betaln(1 + np.maximum(n, 0), alpha + m[None, :])
            - special.betaln(1, alpha)
        )
        trans = np.where(n >= 0, np.exp(log_t), 0.0)
        state = np.zeros((n_obs + 1, n_components + 1))  # (left, occupied)
        state[n_obs, 0] = 1.0
        for _ in range(n_components - 1):
            stay = state * np.diag(trans)[:, None]  # the stick took nothing
            moved = trans.T @ state - stay  # it took at least one observation
            state = stay + np.pad(moved[:, :-1], ((0, 0), (1, 0)))
        # The last component is occupied when anything is left.
        out[i] = state[0] + np.pad(state[1:].sum(axis=0)[:-1], (1, 0))
    return out


def _simulate(n_obs, n_components, weight_prior, priors, n_draws, seed) -> pd.DataFrame:
    """Monte Carlo occupancy from the weights that ``gmm_model`` itself samples."""
    predictive = Predictive(gmm_model, num_samples=n_draws, return_sites=["weights"])
    weights = predictive(
        jax.random.PRNGKey(seed),
        n_components=n_components,
        n_features=1,
        n_obs=1,
        priors=priors,
        weight_prior=weight_prior,
    )["weights"]
    weights = np.asarray(weights, dtype=np.float64)
    weights = weights / weights.sum(axis=-1, keepdims=True)
    counts = np.random.default_rng(seed).multinomial(n_obs, weights)
    k_plus = (counts > 0).sum(axis=-1)
    table = _table(np.bincount(k_plus, minlength=n_components + 1)[1:])
    p = table["probability"].to_numpy()
    table["mcse"] = np.sqrt(p * (1 - p) / n_draws)
    return table
