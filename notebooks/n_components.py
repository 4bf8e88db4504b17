# ---
# jupyter:
#   jupytext:
#     formats: py:percent
#     text_representation:
#       extension: .py
#       format_name: percent
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # How many components?
#
# Two ways to answer it for the galaxy velocities, a classic test case (Roeder 1990) whose
# answer is genuinely uncertain:
#
# 1. **Within one fit**: give the mixture more components than it needs and a weight prior
#    that empties the superfluous ones (`weight_prior="sparse"`, an overfitted mixture, or
#    `"dp"`, a truncated Dirichlet process). The posterior of the number of *occupied*
#    components, `n_components_posterior`, is then the answer, to be read beside the prior
#    that the weight prior induces on it (`induced_prior_n_components`).
# 2. **Across fits**: fit K = 1, 2, ... and compare them by BIC and ICL (EM fits) and by LOO
#    (Bayesian fits) with `compare_n_components`.
#
# The test suite runs this notebook with `BAYESGMM_SMOKE=1`: short chains and fewer K, too
# short for the convergence checks, whose warnings (`bayesgmm.DiagnosticsWarning`) that run
# silences.

# %%
import os
import warnings

import matplotlib.pyplot as plt
import pandas as pd

import bayesgmm
import bayesgmm.plots as bp

SMOKE = os.environ.get("BAYESGMM_SMOKE") == "1"
if SMOKE:
    draws, K_MAX = dict(num_warmup=100, num_samples=100, num_chains=2), 5
    ks, loo_fit_kwargs = range(1, 3), dict(num_warmup=100, num_samples=100, num_chains=1)
    warnings.simplefilter("ignore", bayesgmm.DiagnosticsWarning)
else:
    draws, K_MAX = dict(num_warmup=1000, num_samples=1000, num_chains=4), 8
    ks, loo_fit_kwargs = range(1, 7), dict(num_warmup=500, num_samples=500, num_chains=2)

X = bayesgmm.load_dataset("galaxies", as_frame=True) / 1000  # velocities in 1000 km/s

# %% [markdown]
# ## Sparse and DP weight priors
# Both fits have `K_MAX = 8` components (5 in the smoke run). The sparse prior is a symmetric Dirichlet whose
# concentration has a Gamma prior concentrated near zero (`Priors.sparse_shape`,
# `sparse_rate`); the DP prior breaks sticks with a Gamma prior on its concentration
# (`dp_shape`, `dp_rate`).
#
# Overfitted mixtures are hard for NUTS: the empty components follow their prior, which is
# wide, and the weights of the nearly empty ones sit close to zero, where the posterior is
# strongly curved. Expect the fits to report divergent transitions and a large R-hat of the
# relabelled parameters (printed below). The number of occupied components is
# label-invariant, so the R-hat of the relabelled parameters matters less for it, but
# divergences mean the draws may be biased: raising `target_accept_prob` (e.g. 0.95) and running
# longer are the remedies, at the price of a slower fit.

# %%
fits = {}
for prior in ("sparse", "dp"):
    with warnings.catch_warnings(record=True) as caught:
        fits[prior] = bayesgmm.fit_nuts(X, K_MAX, weight_prior=prior, seed=0, **draws)
    for w in caught:
        print(f"{prior}: {w.message}")

# %% [markdown]
# The posterior of the number of occupied components (components with at least one galaxy
# assigned in a draw), beside the prior each weight prior induces on it for 82 observations:

# %%
fig, axes = plt.subplots(1, 2, figsize=(11, 3.8), sharey=True)
tables = {}
for ax, (prior, idata) in zip(axes, fits.items(), strict=True):
    posterior = bayesgmm.n_components_posterior(idata, seed=0)
    induced = bayesgmm.induced_prior_n_components(len(X), K_MAX, prior)
    tables[prior] = pd.DataFrame({"prior": induced["probability"], "posterior": posterior["probability"]})
    bp.plot_n_components(posterior, induced, ax=ax)
    ax.set_title(f"{prior} weight prior, K_max = {K_MAX}")
fig.tight_layout()
pd.concat(tables, axis=1).round(3)

# %% [markdown]
# The data move the prior: the posterior puts most of its mass on a few components, while both
# priors spread theirs much wider. How far the posterior still depends on the prior is worth
# checking by refitting with other `Priors(sparse_rate=...)` or `Priors(dp_rate=...)`: with 82
# observations, small clusters of three or four galaxies are where the answer is uncertain.
#
# For the DP, the truncation at `K_MAX` components should leave little mass in the last stick:
# `attrs["stick_remainder_mean"]` is its posterior mean.

# %%
posterior_dp = bayesgmm.n_components_posterior(fits["dp"], seed=0)
attrs = posterior_dp.attrs
print("posterior mode and mean of K_+ (dp):", attrs["mode"], round(attrs["mean"], 2))
print("posterior mean mass in the last stick:", round(attrs["stick_remainder_mean"], 4))

# %% [markdown]
# The posterior mean density of the sparse fit, with its 94% band:

# %%
ax = bp.plot_density_1d(fits["sparse"])
_ = ax.set(xlabel="velocity (1000 km/s)", title=f"sparse mixture, K_max = {K_MAX}")

# %% [markdown]
# ## Comparing fits with K = 1, 2, ...
# `compare_n_components` fits EM (several restarts per K) for BIC, AIC and ICL, and with
# `inference="nuts"` a small NUTS fit per K for LOO. Every criterion is shown on the deviance
# scale, lower is better (LOO as LOOIC = -2 elpd_loo, with two standard errors); the star marks
# each criterion's choice.
#
# `compare_n_components` warns about the models whose LOO is unreliable (observations with a
# Pareto k above 0.7, typically one of the rare outlying velocities), and its small NUTS fits
# warn about their own diagnostics (for K beyond what the data support, the chains often
# disagree). The warnings are collected here and printed; the column `pareto_k_bad` gives the
# share of observations with a high Pareto k.

# %%
with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter("always", UserWarning)
    if SMOKE:
        warnings.simplefilter("ignore", bayesgmm.DiagnosticsWarning)
    table = bayesgmm.compare_n_components(X, ks, inference="nuts", seed=0, fit_kwargs=loo_fit_kwargs)
for w in caught:
    print("-", w.message)
columns = ["bic", "icl", "elpd_loo", "se_loo", "elpd_diff", "dse", "pareto_k_bad", "recommended_by"]
table[columns].round(2)

# %%
ax = bp.plot_criteria(table, criteria=["bic", "icl", "elpd_loo"])
ax.set_title("galaxies: criteria over K")
print("recommended:", table.attrs["recommended"])

# %% [markdown]
# BIC and ICL penalise parameters harder than LOO, and ICL also penalises overlapping
# components (it adds the entropy of the assignments), so ICL tends to choose the fewest.
# LOO's choice uses the one-standard-error rule: the simplest model whose LOO is within one
# standard error of the best. The answers differ because the questions differ: BIC approximates
# the evidence for K, ICL asks for well separated clusters, LOO asks how well new galaxies are
# predicted. The sparse and DP posteriors above give a distribution over K instead of one
# choice.
