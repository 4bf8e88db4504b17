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
# # Posterior predictive checks
#
# Does the fitted mixture produce data like the data? A posterior predictive check draws one
# replicate data set per posterior draw and compares it with the observed data: through test
# statistics (posterior predictive p-values), through the density of each feature, and through
# LOO-PIT, the calibration of each observation's leave-one-out predictive distribution.
#
# Two NUTS fits of the Old Faithful eruptions: one Gaussian, which cannot be right (the data
# have two clusters), and a mixture of two. Every check is made per feature: pooling the
# eruption durations (minutes, around 3.5) with the waiting times (minutes, around 70) into one
# density would compare nothing meaningful.
#
# The test suite runs this notebook with `BAYESGMM_SMOKE=1`: short chains, too short for the
# convergence checks, whose warnings (`bayesgmm.DiagnosticsWarning`) that run silences.

# %%
import os
import warnings

import arviz as az
import matplotlib.pyplot as plt
import numpy as np

import bayesgmm
import bayesgmm.plots as bp

SMOKE = os.environ.get("BAYESGMM_SMOKE") == "1"
draws = dict(num_warmup=100, num_samples=100, num_chains=2)
if SMOKE:
    warnings.simplefilter("ignore", bayesgmm.DiagnosticsWarning)
else:
    draws = dict(num_warmup=1000, num_samples=500, num_chains=4)

frame = bayesgmm.load_dataset("faithful", as_frame=True)
features = list(frame.columns)
fits = {k: bayesgmm.fit_nuts(frame, k, seed=0, **draws) for k in (1, 2)}

# %% [markdown]
# ## Replicate data sets
# `add_predictive` draws one replicate data set (272 eruptions) per posterior draw into the
# `posterior_predictive` group, as `X` (chain, draw, obs, feature) and one variable per feature
# (`X_0`, `X_1`) for ArviZ's per-variable functions.

# %%
fits = {k: bayesgmm.add_predictive(idata, seed=1) for k, idata in fits.items()}
fits[2].posterior_predictive

# %% [markdown]
# ## Test statistics and p-values
# `ppc_pvalues` computes, per feature, the mean, sd, skewness, kurtosis, quantiles, extremes,
# the number of modes of a kernel density estimate, and the correlation of the features, on the
# data and on every replicate. `p_value` is `P(T(y_rep) >= T(y))`; `p_two_sided` is small when
# the observed value is in either tail of the replicates. Values near 0 say the model does not
# reproduce that aspect of the data.

# %%
chosen = [f"{s}[{f}]" for f in features for s in ("sd", "skewness", "n_modes")] + ["corr[eruptions,waiting]"]
table = {
    k: bayesgmm.ppc_pvalues(idata).loc[chosen, ["observed", "replicated_mean", "p_two_sided"]]
    for k, idata in fits.items()
}
table[1].round(3)

# %% [markdown]
# One Gaussian reproduces the means, sds and the correlation (it has a parameter for each),
# but not the shape: the data have two modes and a negative skewness in each feature, which a
# Gaussian never produces. The two-component mixture reproduces them:

# %%
table[2].round(3)

# %% [markdown]
# The number of modes, observed (line) against replicated (histogram), for each feature and
# each fit:

# %%
fig, axes = plt.subplots(2, 2, figsize=(10, 6.5))
for row, (k, idata) in zip(axes, fits.items(), strict=True):
    for ax, feature in zip(row, features, strict=True):
        bp.plot_ppc_statistic(idata, f"n_modes[{feature}]", ax=ax)
        ax.set_title(f"{k} component(s): " + ax.get_title())
fig.tight_layout()

# %% [markdown]
# ## Your own statistic
# Any function of a data set (shape (..., n_obs, n_features) to (...)) can be a test statistic.
# Here: the share of eruptions lasting between 2.5 and 3.5 minutes, the gap between the clusters.


# %%
def gap_share(X):
    eruptions = X[..., 0]
    return ((eruptions > 2.5) & (eruptions < 3.5)).mean(axis=-1)


for k, idata in fits.items():
    row = bayesgmm.ppc_pvalues(idata, statistics={"gap share": gap_share}).loc["gap share"]
    print(f"{k} component(s): observed {row.observed:.3f}, replicated {row.replicated_mean:.3f}, "
          f"two-sided p = {row.p_two_sided:.3f}")  # fmt: skip

# %% [markdown]
# ## The density of each feature
# `plot_density_1d` draws the histogram of one feature under the posterior mean of its marginal
# density, with a 94% band over the posterior draws:

# %%
fig, axes = plt.subplots(2, 2, figsize=(10, 6.5))
for row, (k, idata) in zip(axes, fits.items(), strict=True):
    for j, ax in enumerate(row):
        bp.plot_density_1d(idata, feature=j, ax=ax)
        ax.set_title(f"{k} component(s): {features[j]}")
fig.tight_layout()

# %% [markdown]
# ## LOO-PIT
# For each observation, the probability integral transform of its value under its
# leave-one-out posterior predictive distribution (importance-weighted by PSIS). For a
# calibrated model these are uniform: the density of the LOO-PIT values (dark line) stays
# among the densities of uniform samples of the same size (light lines). A U shape means the
# predictive distributions are too narrow, a hump too wide, a tilt biased. One panel per
# feature (`y="X_0"`, `y="X_1"`).

# %%
fig, axes = plt.subplots(2, 2, figsize=(10, 6.5))
for row, (k, idata) in zip(axes, fits.items(), strict=True):
    for j, ax in enumerate(row):
        az.plot_loo_pit(idata, y=f"X_{j}", ax=ax)
        ax.set_title(f"{k} component(s): {features[j]}")
fig.tight_layout()

# %% [markdown]
# The single Gaussian's LOO-PIT of the eruption durations is far from uniform (its predictive
# distribution puts mass in the gap where no eruption is); the mixture's stays close to the
# uniform samples.
# The same comparison as one number, the LOO expected log predictive density:

# %%
{k: round(float(bayesgmm.loo(idata).elpd_loo), 1) for k, idata in fits.items()}

# %% [markdown]
# `np.nanmax` of the Pareto k values says whether LOO's importance weights can be trusted
# (below 0.7):

# %%
{k: round(float(np.nanmax(bayesgmm.loo(idata).pareto_k)), 2) for k, idata in fits.items()}
