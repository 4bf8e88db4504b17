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
# # Label switching
#
# A mixture's likelihood does not change when its components are renumbered, so its posterior
# has one copy of every mode per permutation of the labels. A sampler that moves between those
# copies mixes well, but then "component 0" means different clusters in different draws, and
# per-component summaries (the mean of `means[0]`, R-hat) mix them up.
#
# This notebook fits an overfitted ("sparse") mixture to the galaxy velocities with NUTS, where
# the raw chains switch labels, and shows
#
# - the raw and the relabelled traces (`bayesgmm.relabel`, methods ECR and Stephens),
# - `bayesgmm.label_switching_report`, which tells switching labels apart from chains stuck in
#   different modes, something relabelling cannot repair.
#
# The fits below would warn (`bayesgmm.DiagnosticsWarning`) about their R-hat; this notebook
# silences those warnings and reads the diagnostics explicitly instead. The test suite runs it
# with `BAYESGMM_SMOKE=1`, which only shortens the chains.

# %%
import os
import time
import warnings

import pandas as pd

import bayesgmm
import bayesgmm.plots as bp

SMOKE = os.environ.get("BAYESGMM_SMOKE") == "1"
draws = dict(num_warmup=100, num_samples=100, num_chains=2)
if not SMOKE:
    draws = dict(num_warmup=1000, num_samples=1000, num_chains=4)
warnings.simplefilter("ignore", bayesgmm.DiagnosticsWarning)

X = bayesgmm.load_dataset("galaxies", as_frame=True) / 1000  # velocities in 1000 km/s
X.describe().T

# %% [markdown]
# ## A fit whose chains switch labels
# Six components, more than the data need, under the sparse weight prior: a small Dirichlet
# concentration empties the components the data do not need. Empty components carry no data,
# so nothing holds their labels in place and the sampler swaps them freely with each other
# and with small occupied ones.

# %%
raw = bayesgmm.fit_nuts(X, 6, weight_prior="sparse", seed=1, **draws)
relabelled = bayesgmm.relabel(raw)
print("relabelling method:", relabelled.posterior.attrs["relabel_method"])

# %% [markdown]
# The mean velocity of each component, chain after chain, before and after relabelling. Before,
# a colour jumps between levels: a switch of labels. After, each colour mostly stays on one level
# (the empty components, which follow their prior, wander wherever).

# %%
axes = bp.plot_relabel_traces(raw, relabelled, var="means")

# %% [markdown]
# The same for the weights: relabelling numbers the components by decreasing posterior mean
# weight, so component 0 is the largest cluster.

# %%
axes = bp.plot_relabel_traces(raw, relabelled, var="weights")

# %% [markdown]
# ## The switching report
# `label_switching_report` compares, per chain, each draw's labelling with the chain's dominant
# one, and puts the R-hat of the raw and relabelled parameters beside the R-hat of quantities
# that do not depend on the labels (sorted weights, the mixture density at reference points,
# the total log-likelihood). A large raw R-hat with small label-invariant ones is label
# switching, which relabelling repairs; large label-invariant R-hats mean the chains explore
# different modes, which no relabelling can repair. The verdict is the first that holds of
# "chains in different modes", "chains in different labellings of one mode", "label switching
# within chains" and "no label switching".

# %%
report = bayesgmm.label_switching_report(raw)
print("verdict:", report.verdict)
report.chains

# %%
report.rhat.round(3)

# %%
print("share of draws that left their chain's dominant labelling:", report.switched.mean().round(3))

# %% [markdown]
# ## ECR, Stephens and ordering
# `relabel` offers three methods (see `bayesgmm.relabel`): ECR matches each draw's hard
# allocation to a pivot draw's, Stephens' algorithm matches the responsibilities of every draw
# to their average (started from ECR; the default for posteriors of this size), and ordering
# sorts the components by their mean (a constraint that only makes sense in one dimension with
# well separated components). The relabelled weights under each:

# %%
rows = {}
for method in ("ordering", "ecr", "stephens"):
    start = time.perf_counter()
    weights = bayesgmm.relabel(raw, method=method).posterior["weights"]
    seconds = time.perf_counter() - start
    means = weights.mean(("chain", "draw")).values.round(3)
    rows[method] = {**dict(enumerate(means)), "seconds": round(seconds, 2)}
pd.DataFrame(rows).T

# %% [markdown]
# ECR and Stephens agree on the large components; ordering numbers them by velocity instead of
# weight, so its columns are a permutation of theirs plus the empty components' noise.
#
# ## Reading the fit after relabelling
# An overfitted mixture shows both problems at once. Its empty components swap labels freely
# within every chain: `fraction_switched` above is large, and relabelling repairs that. But its
# chains may also disagree about how many small clusters are occupied (a fourth component
# holding three or four galaxies, or not): that shows as a large R-hat of `sorted_weights`, a
# label-invariant quantity, and in the per-component R-hat of the small weights below. Longer
# chains or a prior that decides more firmly (`Priors(sparse_rate=...)`) are the remedies, and
# `n_components_posterior` (see the notebook on the number of components) reports that
# uncertainty as a distribution over K instead.
#
# `bayesgmm.summary` and `bayesgmm.fit_problems` read the diagnostics on the relabelled draws:

# %%
bayesgmm.summary(raw, var_names=["weights"])

# %%
for problem in bayesgmm.fit_problems(raw) or ["no problems found"]:
    print("-", problem)

# %% [markdown]
# ## Another fit: four components, flat Dirichlet prior
# With four components and no pressure to empty any of them, every component must hold some
# galaxies, and the posterior has several ways to split the small clusters. Whether the chains
# switch labels, sit in different labellings or in different modes is, again, for the report's
# label-invariant R-hats to say:

# %%
four = bayesgmm.fit_nuts(X, 4, seed=1, **draws)
report4 = bayesgmm.label_switching_report(four)
print("verdict:", report4.verdict)
report4.rhat.round(3)
