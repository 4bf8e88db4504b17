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
# # Real-world data: missing values, outliers, mclust's covariance models
#
# Real data have holes, gross errors, and clusters whose shapes share some features but not
# all. This notebook takes the bundled data sets, damages them in known ways and shows what
# bayesgmm does with them:
#
# 1. **Missing values** (missing at random): `missing="marginalize"` fits the likelihood of
#    the values that were observed, instead of dropping incomplete rows or inventing values;
#    `impute` fills the holes with conditional means.
# 2. **Outliers**: `noise="uniform"` adds mclust's noise component, a uniform density over
#    the data's bounding box, whose rows `predict` labels `-1`; with missing values too.
# 3. **mclust's fourteen covariance models** (`EII` ... `VVV`) by name, and mclust's BIC table
#    over models and numbers of components.
#
# The test suite runs this notebook with `BAYESGMM_SMOKE=1`, with fewer models to compare.

# %%
import os
import warnings

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from sklearn.metrics import adjusted_rand_score

import bayesgmm
from bayesgmm import GaussianMixture

SMOKE = os.environ.get("BAYESGMM_SMOKE") == "1"
if SMOKE:
    warnings.simplefilter("ignore", bayesgmm.DiagnosticsWarning)
rng = np.random.default_rng(0)

# %% [markdown]
# ## Missing values
#
# Iris, with one cell in five hidden at random (no row loses all four). Dropping the
# incomplete rows, what most tools do, keeps only about 40% of the flowers.

# %%
iris = bayesgmm.load_dataset("iris", as_frame=True)
features = iris.columns[:4]
X_full = iris[features].to_numpy()
species = iris["species"].to_numpy()

hidden = rng.random(X_full.shape) < 0.2
hidden[hidden.all(axis=1), 0] = False
X = np.where(hidden, np.nan, X_full)
complete = ~np.isnan(X).any(axis=1)
print(f"{hidden.mean():.0%} of cells missing; {complete.sum()} of {len(X)} rows complete")

# %% [markdown]
# Three fits of three components: EM on the rows that are complete, EM on every row with the
# missing values marginalised, and EM on the undamaged data for reference. The fit on all rows
# labels every flower, incomplete ones included, and agrees with the species about as well as
# the fit on the undamaged data.

# %%
on_complete = GaussianMixture(3, n_init=5, random_state=0).fit(X[complete])
marginal = GaussianMixture(3, n_init=5, random_state=0, missing="marginalize").fit(X)
reference = GaussianMixture(3, n_init=5, random_state=0).fit(X_full)

pd.DataFrame(
    {
        "rows used": [complete.sum(), len(X), len(X)],
        "adjusted Rand vs species (all rows)": [
            np.nan,  # it cannot label the incomplete rows
            adjusted_rand_score(species, marginal.predict(X)),
            adjusted_rand_score(species, reference.predict(X_full)),
        ],
        "adjusted Rand vs species (complete rows)": [
            adjusted_rand_score(species[complete], on_complete.predict(X[complete])),
            adjusted_rand_score(species[complete], marginal.predict(X[complete])),
            adjusted_rand_score(species[complete], reference.predict(X_full[complete])),
        ],
    },
    index=["complete rows only", "missing='marginalize'", "no values missing"],
).round(3)

# %% [markdown]
# `impute` replaces each hidden value by its conditional mean given the row's observed values,
# a mixture of the components' regressions weighted by the row's membership probabilities.
# Against the true values it does much better than the column means:

# %%
imputed = marginal.impute(X)
column_means = np.where(hidden, np.nanmean(X, axis=0), X)
rmse = pd.DataFrame(
    {
        "conditional mean (impute)": np.sqrt(
            np.nanmean(np.where(hidden, imputed - X_full, np.nan) ** 2, axis=0)
        ),
        "column mean": np.sqrt(np.nanmean(np.where(hidden, column_means - X_full, np.nan) ** 2, axis=0)),
    },
    index=features,
)
rmse.round(3)

# %% [markdown]
# ## Outliers
#
# Old Faithful with 3% of gross errors added: points spread uniformly over a box much wider
# than the data, as recording errors would be. A plain two-component fit bends its components
# towards them; with `noise="uniform"` they go to the noise component, labelled `-1`, and the
# two clusters are where the clean data put them.

# %%
faithful, _ = bayesgmm.load_dataset("faithful")
n_out = int(0.03 * len(faithful))
low, high = faithful.min(axis=0), faithful.max(axis=0)
span = high - low
outliers = rng.uniform(low - span, high + span, size=(n_out, 2))
X_out = np.vstack([faithful, outliers])
is_outlier = np.r_[np.zeros(len(faithful), bool), np.ones(n_out, bool)]

clean = GaussianMixture(2, n_init=5, random_state=0).fit(faithful)
plain = GaussianMixture(2, n_init=5, random_state=0).fit(X_out)
noisy = GaussianMixture(2, n_init=5, random_state=0, noise="uniform").fit(X_out)


def sorted_means(gm):
    return gm.means_[np.argsort(gm.means_[:, 0])]


pd.DataFrame(
    np.hstack([sorted_means(g) for g in (clean, plain, noisy)]),
    index=["component 0", "component 1"],
    columns=pd.MultiIndex.from_product(
        [["clean data", "plain fit", "noise='uniform'"], ["eruptions", "waiting"]]
    ),
).round(2)

# %%
labels = noisy.predict(X_out)
print(f"noise weight {noisy.noise_weight_:.3f}; true outliers {is_outlier.mean():.3f}")
print(f"outliers labelled -1: {(labels[is_outlier] == -1).sum()} of {n_out}")
print(f"clean points labelled -1: {(labels[~is_outlier] == -1).sum()} of {len(faithful)}")

# %%
fig, ax = plt.subplots(figsize=(6, 4.5))
for k, colour in zip([-1, 0, 1], ["0.4", "C0", "C1"], strict=True):
    chosen = labels == k
    ax.scatter(*X_out[chosen].T, s=10, color=colour, label="noise (-1)" if k < 0 else f"component {k}")
ax.set(xlabel="eruptions (min)", ylabel="waiting (min)", title="Old Faithful with 3% gross errors")
ax.legend(loc="upper left", fontsize="small")

# %% [markdown]
# ## Outliers and missing values together
#
# `noise="uniform"` and `missing="marginalize"` combine. A row whose features `O` were
# observed has the noise density of the box's projection on `O`, `1 / prod_{j in O}
# (upper_j - lower_j)` (the box is the bounding box of each feature's observed values), and
# the Gaussians' densities of its observed values. Here a fifth of the cells of the damaged
# Old Faithful go missing, and the outliers are still found.

# %%
holes = rng.random(X_out.shape) < 0.2
holes[holes.all(axis=1), 0] = False
X_holes = np.where(holes, np.nan, X_out)
both = GaussianMixture(2, n_init=5, random_state=0, noise="uniform", missing="marginalize").fit(X_holes)
labels_holes = both.predict(X_holes)
print(
    f"noise weight {both.noise_weight_:.3f}; box {both.noise_lower_.round(1)} to {both.noise_upper_.round(1)}"
)
print(f"outliers labelled -1: {(labels_holes[is_outlier] == -1).sum()} of {n_out}")
print(f"clean points labelled -1: {(labels_holes[~is_outlier] == -1).sum()} of {len(faithful)}")

# %% [markdown]
# ## mclust's covariance models
#
# mclust parametrises each component's covariance by its volume, shape and orientation, each
# equal across components (`E`), varying (`V`) or the identity (`I`): `EII` is spherical with
# one volume, `VVV` unconstrained, `EEV` equal volume and shape with orientations of its own.
# `fit_em` and `GaussianMixture` take the fourteen names; scikit-learn's four are aliases
# (`spherical` = `VII`, `diag` = `VVI`, `tied` = `EEE`, `full` = `VVV`).
#
# `compare_n_components` fits every model and number of components, and `criteria_table`
# lays out its BIC as mclust's `mclustBIC` does, in mclust's sign (larger is better):

# %%
models = ["EII", "VVI", "EEE", "VVV"] if SMOKE else ["EII", "VII", "EEI", "VVI", "EEE", "EEV", "VEV", "VVV"]
table = bayesgmm.compare_n_components(faithful, range(1, 4 if SMOKE else 6), models, n_init=3)
bic = bayesgmm.compare.criteria_table(table, sign="mclust")
bic.round(1)

# %%
best = bic.stack().idxmax()
print(f"mclust's choice by BIC: {best[1]} with {best[0]} components")
