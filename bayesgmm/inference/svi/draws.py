"""How far a variational guide is from the posterior: importance ratios of its draws.

For every draw, ``lp`` is the model's log joint density and ``log_q`` the guide's log
density, both in the unconstrained space (so ``lp`` has the same convention as the
``lp`` of NUTS's ``sample_stats``). Their difference is the log importance ratio of the
draw; the Pareto shape ``k`` of its upper tail (Yao et al., 2018, "Yes, but did it
work?") says whether the guide can be trusted: below 0.5 well, up to 0.7 roughly,
above 0.7 not at all.
"""

from __future__ import annotations

import json

import arviz as az
import jax
import jax.numpy as jnp
import numpy as np
import numpyro.distributions as dist
from numpyro.infer.util import potential_energy, unconstrain_fn

from bayesgmm._jit import jit

#: Draws whose log joint density is evaluated at once (memory is draws * n_obs * n_components).
_BATCH = 32


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


def importance_fn(tracing_svi, guide_name: str):
    """Jitted ``(params, draws, Z) -> (lp, log_q)`` for one chain's draws (leaves (n_draws, ...)).

    ``tracing_svi`` gives the set-up SVI (``loop.TracingSVI``); built once per fit
    configuration so that later fits reuse the compiled code. ``log_q`` is zeros for
    ``"map"``.
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


def importance_stats(fn, guide_name: str, params: list, sites: dict, Z):
    """Per-draw ``lp`` and ``log_q``, and the Pareto ``k`` of each chain.

    Parameters
    ----------
    fn : callable
        From ``importance_fn``.
    guide_name : str
        A key of ``svi.GUIDES``; ``"map"`` gives ``lp`` only.
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
