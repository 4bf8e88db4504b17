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
# # bayesgmm quickstart
#
# Fit a two-component Bayesian Gaussian mixture to the Old Faithful eruptions with NUTS, look at
# the diagnostics, the posterior of each component and the uncertainty of every assignment.
#
# The test suite runs this notebook with `BAYESGMM_SMOKE=1`, which only shortens the chains;
# chains that short do not pass the convergence checks, so that run silences their warnings
# (`bayesgmm.DiagnosticsWarning`).

# %%
import os
import warnings

import arviz as az
import numpy as np

import bayesgmm

SMOKE = os.environ.get("BAYESGMM_SMOKE") == "1"
draws = dict(num_warmup=150, num_samples=150, num_chains=2) if SMOKE else {}
if SMOKE:
    warnings.simplefilter("ignore", bayesgmm.DiagnosticsWarning)

X, _ = bayesgmm.load_dataset("faithful")
X.shape

# %% [markdown]
# ## Fit
# The data are standardised inside the fit; everything reported is in minutes.

# %%
gmm = bayesgmm.BayesianGMM(n_components=2, random_state=0, **draws).fit(X)
gmm.means_

# %% [markdown]
# ## Diagnostics
# `bayesgmm.summary` relabels the draws first (so that component 0 means the same thing in every
# draw) and then calls ArviZ.

# %%
bayesgmm.summary(gmm.idata_, var_names=["weights", "means"])

# %%
print("divergences:", int(gmm.idata_.sample_stats["diverging"].sum()))
az.loo(gmm.idata_)

# %% [markdown]
# ## Assignment uncertainty
# Posterior-averaged membership probabilities, with the mclust-style uncertainty `1 - max_k p_ik`.

# %%
proba = gmm.predict_proba(X)
uncertainty = 1 - proba.max(axis=1)
print("most uncertain eruptions:", np.argsort(uncertainty)[-5:], uncertainty.max().round(3))

# %% [markdown]
# ## Posterior predictive density
# `score_samples` is the log posterior predictive density, averaged over all draws.

# %%
grid = np.array([[2.0, 55.0], [3.5, 70.0], [4.3, 80.0]])
np.exp(gmm.score_samples(grid))
