"""Draws from a fitted guide, and how far the guide is from the posterior.

``drawer`` compiles the draws of every kept restart at once. For every draw, ``lp`` is the
model's log joint density and ``log_q`` the guide's log density, both in the unconstrained
space (so ``lp`` has the same convention as the ``lp`` of NUTS's ``sample_stats``). Their
difference is the log importance ratio of the draw; the Pareto shape ``k`` of its upper tail
(Yao et al., 2018, "Yes, but did it work?") says whether the guide can be trusted: below 0.5
well, up to 0.7 roughly, above 0.7 not at all.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import arviz as az
import jax
import jax.numpy as jnp
import numpy as np
import numpyro.distributions as dist
from numpyro.handlers import seed, substitute, trace
from numpyro.infer import Predictive
from numpyro.infer.util import potential_energy, unconstrain_fn

from bayesgmm._jit import jit
from bayesgmm.inference.svi.objective import GuideNoise
from bayesgmm.models import WEIGHT_SITES

if TYPE_CHECKING:
    from numpyro.infer.svi import SVIState

    from bayesgmm.inference.prepare import FitSetup
    from bayesgmm.inference.svi.config import SVISettings
    from bayesgmm.inference.svi.data import DeviceRows
    from bayesgmm.inference.svi.program import Program

#: Draws whose log joint density is evaluated at once (memory is draws * n_obs * n_components).
_BATCH = 32


def map_restarts(fn: Callable, *args: Any) -> Any:
    """Return ``jax.vmap(fn)(*args)`` over the restarts (leading axis of every leaf).

    A single restart (the default) is run without ``vmap``, which saves tracing the
    batched program.

    Examples
    --------
    >>> map_restarts(lambda x: 2 * x, jnp.ones((1, 3))).shape
    (1, 3)
    """
    if jax.tree_util.tree_leaves(args)[0].shape[0] != 1:
        return jax.vmap(fn)(*args)
    out = fn(*jax.tree_util.tree_map(lambda a: a[0], args))
    return jax.tree_util.tree_map(lambda a: a[None], out)


def drawer(tracing_svi: Callable, model: Callable, names: list, n_draws: int) -> Callable:
    """Jitted ``(states, keys, Z) -> (params, sites)``, vectorised over restarts.

    The guide's noise for all draws is drawn at once and fed through ``GuideNoise``, which
    compiles faster than numpyro's draw per site and draw; the model then adds its
    deterministic sites (``scale_tril``, the dp prior's ``weights``).

    Parameters
    ----------
    tracing_svi : program.TracingSVI
    model : callable
        The full-data model.
    names : list of str
        The sites returned.
    n_draws : int
        Draws per restart.

    Returns
    -------
    callable
    """

    def draw(states, keys, Z):
        svi, n_noise = tracing_svi(Z)

        def one(state, key):
            params = svi.get_params(state)
            key_noise, key_model = jax.random.split(key)
            dtype = jax.tree_util.tree_leaves(params)[0].dtype
            noise = jax.random.normal(key_noise, (n_draws, n_noise), dtype)
            guide = substitute(svi.guide, data=params)

            def guide_draw(eps):
                sites = trace(GuideNoise(seed(guide, 0), eps)).get_trace(Z=Z)
                return {k: v["value"] for k, v in sites.items() if v["type"] == "sample"}

            latent = jax.vmap(guide_draw)(noise)
            predictive = Predictive(model, posterior_samples=latent, return_sites=names)
            return params, predictive(key_model, n_obs=1)

        return map_restarts(one, states, keys)

    return jit(draw, run_once=True)


def _guide_log_q(guide, guide_name: str, params: dict, u: dict):
    """Log density of the guide at one unconstrained draw ``u`` (dict of sites)."""
    if guide_name == "meanfield":
        return sum(
            dist.Normal(params[f"{name}_auto_loc"], params[f"{name}_auto_scale"]).log_prob(value).sum()
            for name, value in u.items()
        )
    # Pack the sites in the guide's own order (that of its initial values), not sorted.
    flat = jnp.concatenate([jnp.ravel(u[name]) for name in guide._init_locs])
    return guide.get_posterior(params).log_prob(flat)


def importance_fn(tracing_svi: Callable, guide_name: str) -> Callable:
    """Jitted ``(params, draws, Z) -> (lp, log_q)`` for one chain's draws (leaves (n_draws, ...)).

    ``tracing_svi`` gives the set-up SVI (``program.TracingSVI``); built once per fit
    configuration so that later fits reuse the compiled code. ``log_q`` is zeros for
    ``"map"``.

    Parameters
    ----------
    tracing_svi : program.TracingSVI
    guide_name : str

    Returns
    -------
    callable
    """

    def one_chain(params, draws, Z):
        # Full batch only, where the set-up is the same for any number of rows: that of
        # one row is the draw program's.
        svi, _ = tracing_svi(Z[:1])
        model, guide = svi.model, svi.guide
        u = jax.vmap(lambda d: unconstrain_fn(model, (), {"Z": Z}, d))(draws)
        lp = jax.lax.map(lambda v: -potential_energy(model, (), {"Z": Z}, v), u, batch_size=_BATCH)
        if guide_name == "map":
            return lp, jnp.zeros_like(lp)
        return lp, jax.vmap(lambda v: _guide_log_q(guide, guide_name, params, v))(u)

    return jit(one_chain)


def importance_stats(
    fn: Callable, guide_name: str, params: list, sites: dict, Z: jax.Array
) -> tuple[dict, dict]:
    """Return per-draw ``lp`` and ``log_q``, and the Pareto ``k`` of each chain.

    Parameters
    ----------
    fn : callable
        From ``importance_fn``.
    guide_name : str
        A key of ``config.GUIDES``; ``"map"`` gives ``lp`` only.
    params : list of dict
        The guide's parameters for each chain.
    sites : dict of arrays
        The guide's draws, leaves shaped (n_chains, n_draws, ...); holds every latent site.
    Z : array, shape (n_obs, n_features)
        Standardised data.

    Returns
    -------
    sample_stats : dict of ndarray, shape (n_chains, n_draws)
    attrs : dict
        ``pareto_k``: a JSON-ready list with one value per chain (absent for ``"map"``).
    """
    latent = [name for name in sites if name != "scale_tril"]
    stats = {"lp": [], "log_q": []}
    for chain, chain_params in enumerate(params):
        lp, log_q = fn(chain_params, {name: sites[name][chain] for name in latent}, Z)
        stats["lp"].append(np.asarray(lp))
        stats["log_q"].append(np.asarray(log_q))
    if guide_name == "map":
        return {"lp": np.stack(stats["lp"])}, {}
    stats = {k: np.stack(v) for k, v in stats.items()}
    with np.errstate(all="ignore"):
        k_hat = [float(az.psislw(lp - lq)[1]) for lp, lq in zip(stats["lp"], stats["log_q"], strict=True)]
    return stats, {"pareto_k": json.dumps(k_hat)}


def draw_kept(
    prog: Program,
    states: SVIState,
    elbo: np.ndarray,
    setup: FitSetup,
    settings: SVISettings,
    device: DeviceRows,
) -> tuple:
    """Draw from the kept restarts' guides: ``(kept, params, sites)``.

    The best restart is the one with the highest mean ELBO over the last chunk.

    Parameters
    ----------
    prog : program.Program
    states : numpyro.infer.svi.SVIState
        Of every restart.
    elbo : ndarray, shape (n_init, n_steps)
        The ELBO of every step.
    setup : prepare.FitSetup
    settings : config.SVISettings
    device : data.DeviceRows

    Returns
    -------
    kept : ndarray of int
        The kept restarts.
    params : dict
        Their guides' parameters (leading axis: kept restart).
    sites : dict
        Their draws, leaves shaped (n_kept, n_draws, ...).
    """
    final = elbo[:, -settings.schedule.chunk_size :].mean(axis=1)
    kept = (
        np.arange(settings.n_init) if settings.output.keep == "chains" else np.array([int(np.argmax(final))])
    )
    # Indexed on the host: op by op on the device, every leaf compiles a few small programs.
    kept_states = jax.tree_util.tree_map(lambda a: np.asarray(a)[kept], states)
    keys = jax.random.split(setup.keys["draws"], len(kept))
    params, fit_sites = prog.draw(kept_states, keys, device.draw_Z, settings.n_draws)
    jax.block_until_ready(fit_sites)
    return kept, params, fit_sites


def importance(
    prog: Program, setup: FitSetup, settings: SVISettings, device: DeviceRows, params: dict, fit_sites: dict
) -> tuple[dict | None, dict]:
    """Return ``sample_stats`` and the Pareto k of the kept guides, or ``(None, {})`` when not wanted.

    Full batch only, and only when ``log_likelihood`` is asked and the data are not subset.
    """
    output, data = settings.output, setup.data
    if not (
        output.log_likelihood and data.extra.batching.mode == "full" and data.n_obs <= output.max_observed
    ):
        return None, {}
    n_kept = jax.tree_util.tree_leaves(params)[0].shape[0]
    # On the host: uncommitted, they join the data on whichever devices hold its rows.
    params = jax.device_get(params)
    params_list = [jax.tree_util.tree_map(lambda a, r=r: a[r], params) for r in range(n_kept)]
    latent = _latent(fit_sites, setup.weight_prior)
    return importance_stats(prog.importance, settings.objective.guide, params_list, latent, device.data)


def _latent(sites: dict, weight_prior: str) -> dict:
    """Return the sampled sites among ``sites``: the dp and sparse priors' ``weights`` are deterministic."""
    return {k: v for k, v in sites.items() if k != "weights" or "weights" in WEIGHT_SITES[weight_prior]}
