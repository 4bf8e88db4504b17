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
# # EM, SVI and NUTS on the same data
#
# Three ways to fit the same two-component mixture to the Old Faithful eruptions:
#
# - **EM** (`fit_em`): the maximum-likelihood parameters, one point, in milliseconds;
# - **SVI** (`fit_svi`): a Gaussian approximation of the posterior (full-rank guide in the
#   unconstrained space), fitted by stochastic optimisation;
# - **NUTS** (`fit_nuts`): draws from the posterior itself by Hamiltonian Monte Carlo.
#
# SVI and NUTS fit the same Bayesian model (same priors) and return the same kind of
# `arviz.InferenceData`, so every later step (summaries, plots, LOO) reads them alike.
#
# The test suite runs this notebook with `BAYESGMM_SMOKE=1`: far fewer draws and steps, too few
# for the convergence checks, whose warnings (`bayesgmm.DiagnosticsWarning`) that run silences.

# %%
import os
import time
import warnings

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

import bayesgmm
import bayesgmm.plots as bp

SMOKE = os.environ.get("BAYESGMM_SMOKE") == "1"
if SMOKE:
    nuts_kw = dict(num_warmup=100, num_samples=100, num_chains=2)
    svi_kw = dict(max_steps=1000, num_samples=200)
    warnings.simplefilter("ignore", bayesgmm.DiagnosticsWarning)
else:
    nuts_kw = dict(num_warmup=1000, num_samples=1000, num_chains=4)
    svi_kw = dict(max_steps=20_000, num_samples=4000)

frame = bayesgmm.load_dataset("faithful", as_frame=True)
X = frame.to_numpy()
frame.describe().loc[["count", "mean", "std"]]

# %% [markdown]
# ## Three fits
# Each fit is timed twice, with two seeds. The first call of a fit in a process includes JAX's
# compilation of its programs; a second fit of data of the same shape reuses them.


# %%
def timed(fit, seed):
    start = time.perf_counter()
    result = fit(seed)
    return result, time.perf_counter() - start


fits = {
    "EM": lambda seed: bayesgmm.fit_em(frame, 2, n_init=5, seed=seed),
    "SVI": lambda seed: bayesgmm.fit_svi(frame, 2, seed=seed, **svi_kw),
    "NUTS": lambda seed: bayesgmm.fit_nuts(frame, 2, seed=seed, **nuts_kw),
}
results, seconds = {}, {}
for name, fit in fits.items():
    results[name], first = timed(fit, 0)
    _, again = timed(fit, 1)
    seconds[name] = {"first call (s)": first, "second call (s)": again}
em, svi, nuts = results["EM"], results["SVI"], results["NUTS"]
pd.DataFrame(seconds).T.round(2)

# %% [markdown]
# On the first call most of the time of SVI and NUTS is compilation (SVI's also includes its
# EM start, run while its programs compile). Once compiled, EM is still the fastest by far: it
# only climbs to one optimum. SVI then fits its guide and scores its draws (importance weights
# against the exact posterior density, used by `bayesgmm.loo` and by the check of the guide
# below); NUTS pays for every draw with many gradient evaluations, which grows with the data
# and the number of draws.
#
# ## Parameters side by side
# `bayesgmm.summary` relabels the draws (numbering the components by decreasing weight) before
# ArviZ summarises them; the EM components are put in the same order.

# %%
names = ["weights", "means"]
order = np.argsort(-np.asarray(em.params.weights))
em_values = np.concatenate([np.asarray(em.params.weights)[order], np.asarray(em.params.means)[order].ravel()])
svi_summary = bayesgmm.summary(svi, var_names=names)
nuts_summary = bayesgmm.summary(nuts, var_names=names)
table = pd.DataFrame(
    {
        "EM": em_values,
        "SVI mean": svi_summary["mean"],
        "SVI sd": svi_summary["sd"],
        "NUTS mean": nuts_summary["mean"],
        "NUTS sd": nuts_summary["sd"],
    },
    index=nuts_summary.index,
)
table.round(3)

# %% [markdown]
# The three agree on where the components are: with 272 eruptions and two well separated
# clusters, the prior hardly matters and the posterior sits around the maximum-likelihood point.
# What differs is what else they say.
#
# ## The uncertainty each method gives
# - **EM** gives none about the parameters: one point, no standard error. (Its responsibilities
#   `em.responsibilities(X)` say how sure the assignment of each eruption is *given* those
#   parameters, not how sure the parameters are.)
# - **NUTS** gives the posterior's: standard deviations and credible intervals that are
#   exact up to Monte Carlo error (`mcse_mean` in `bayesgmm.summary`).
# - **SVI** gives the guide's, an approximation. `bayesgmm.loo` weights the guide's draws
#   towards the exact posterior, and the Pareto k of those importance weights
#   (`guide_pareto_k`) says how far the guide is from the posterior: below 0.7 its draws
#   can be trusted.
#
# The 94% highest-density intervals of SVI and NUTS:

# %%
widths = pd.DataFrame(
    {
        "SVI hdi width": svi_summary["hdi_97%"] - svi_summary["hdi_3%"],
        "NUTS hdi width": nuts_summary["hdi_97%"] - nuts_summary["hdi_3%"],
    }
)
widths["SVI / NUTS"] = widths["SVI hdi width"] / widths["NUTS hdi width"]
print(f"SVI guide's Pareto k: {float(bayesgmm.loo(svi)['guide_pareto_k']):.2f}")
widths.round(3)

# %% [markdown]
# The marginal posterior of one parameter, the mean waiting time of the longer eruptions,
# from both fits' relabelled draws, with the EM estimate:

# %%
fig, ax = plt.subplots(figsize=(6, 3.5))
for name, idata in [("SVI", svi), ("NUTS", nuts)]:
    draws = bayesgmm.relabel(idata).posterior["means"].sel(component=0, feature="waiting")
    ax.hist(np.ravel(draws), bins=40, density=True, alpha=0.5, label=name)
ax.axvline(table.loc["means[0, waiting]", "EM"], color="k", label="EM")
ax.set(xlabel="mean waiting time of component 0 (min)", ylabel="posterior density")
ax.legend()
fig.tight_layout()

# %% [markdown]
# ## Ellipses
# Each panel shows the data and the 90% ellipses of the components: EM's one set, and for SVI
# and NUTS the ellipses of a few posterior draws (thin) around the posterior mean (thick). The
# spread of the thin ellipses is the parameter uncertainty that EM does not show.

# %%
fig = bp.plot_compare_fits(X, em, svi, nuts, n_draws=30)
for ax in fig.axes:
    ax.set(xlabel="eruption (min)", ylabel="waiting (min)")

# %% [markdown]
# ## How the optimisers converged
# EM's log-likelihood per observation over its iterations, and SVI's ELBO over its steps.
# NUTS has no objective to climb; its checks are R-hat, ESS and divergences (see the
# quickstart).

# %%
fig, axes = plt.subplots(1, 2, figsize=(10, 3.5))
bp.plot_trace_objective(em, ax=axes[0]).set_title("EM")
bp.plot_trace_objective(svi, ax=axes[1]).set_title("SVI")
print("divergences in the NUTS fit:", int(nuts.sample_stats["diverging"].sum()))
