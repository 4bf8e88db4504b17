"""The plain NumPyro mixture the benchmarks compare bayesgmm's NUTS with.

The model a user writes by hand on standardised data (zero mean, unit standard deviation per
feature): ``Dirichlet(ones)`` weights, ``Normal(0, 2)`` means, ``HalfNormal(1)`` scales per
feature, ``LKJCholesky(D, 2)`` correlations and ``MixtureSameFamily(Categorical,
MultivariateNormal(scale_tril=...))``, sampled by ``MCMC(NUTS(model))`` with NumPyro's defaults
(uniform init, target_accept_prob 0.8, float32) and one host device per chain,
``chain_method="parallel"``. Used by ``bench_first_fit.py`` and ``bench_nuts.py``.
"""

from __future__ import annotations


def set_devices(num_chains: int) -> None:
    """One host device per chain, as NumPyro's docs say; before JAX starts its backend."""
    import numpyro

    numpyro.set_host_device_count(num_chains)


def standardise(X):
    return (X - X.mean(0)) / X.std(0)


def model(X, n_components: int):
    import jax.numpy as jnp
    import numpyro
    import numpyro.distributions as dist

    n_features = X.shape[1]
    weights = numpyro.sample("weights", dist.Dirichlet(jnp.ones(n_components)))
    with numpyro.plate("component", n_components):
        means = numpyro.sample("means", dist.Normal(jnp.zeros(n_features), 2.0).to_event(1))
        scales = numpyro.sample("scales", dist.HalfNormal(jnp.ones(n_features)).to_event(1))
        corr = numpyro.sample("corr", dist.LKJCholesky(n_features, 2.0))
    tril = scales[..., :, None] * corr
    mix = dist.MixtureSameFamily(dist.Categorical(weights), dist.MultivariateNormal(means, scale_tril=tril))
    numpyro.sample("X", mix, obs=X)


def new_mcmc(num_warmup: int, num_samples: int, num_chains: int):
    from numpyro.infer import MCMC, NUTS

    return MCMC(NUTS(model), num_warmup=num_warmup, num_samples=num_samples, num_chains=num_chains,
                chain_method="parallel", progress_bar=False)  # fmt: skip


def run(mcmc, Z, n_components: int, seed: int):
    """``mcmc.run`` on standardised ``Z``; returns the draws by chain once they are computed."""
    import jax

    mcmc.run(jax.random.PRNGKey(seed), Z, n_components, extra_fields=("diverging",))
    return jax.block_until_ready(mcmc.get_samples(group_by_chain=True))
