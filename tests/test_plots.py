"""Every plot renders headless (Agg) with the artists it promises; none runs inference.

Posteriors are synthetic (known draws through ``build_inference_data``) and EM results
are built from known parameters, so no test pays for compiling a fit.
"""

import arviz as az
import matplotlib
import numpy as np
import pandas as pd
import pytest
import xarray as xr
from posterior_helpers import (
    make_idata,
    permute_draws,
    random_perms,
    sample_data,
    synthetic_draws,
    true_params,
)

matplotlib.use("Agg")
import jax.numpy as jnp  # noqa: E402
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.patches import Ellipse  # noqa: E402

import bayesgmm  # noqa: E402
import bayesgmm.plots as bp  # noqa: E402
from bayesgmm.inference.em.result import EMResult  # noqa: E402
from bayesgmm.params import GMMParams  # noqa: E402
from bayesgmm.ppc import add_predictive  # noqa: E402

N_COMPONENTS = 3


@pytest.fixture(autouse=True)
def close_figures():
    yield
    plt.close("all")


@pytest.fixture(scope="module")
def data_2d():
    return sample_data(true_params(2, N_COMPONENTS), 90, seed=0)


@pytest.fixture(scope="module")
def idata_2d(data_2d):
    return bayesgmm.relabel(make_idata(synthetic_draws(true_params(2, N_COMPONENTS), 2, 20, seed=1), data_2d))


@pytest.fixture(scope="module")
def raw_2d(data_2d):
    draws = synthetic_draws(true_params(2, N_COMPONENTS), 2, 20, seed=1)
    return make_idata(permute_draws(draws, random_perms(2, 20, N_COMPONENTS, seed=2)), data_2d)


@pytest.fixture(scope="module")
def idata_1d():
    params = true_params(1, 2)
    return make_idata(synthetic_draws(params, 2, 20, seed=3), sample_data(params, 80, seed=4))


def em_result(params, X):
    """An EMResult at known parameters (plots only read it)."""
    params = GMMParams(*(jnp.asarray(a) for a in params))
    lower_bounds = -3.0 + 1.0 / np.arange(1, 8)
    return EMResult(params, "full", -3.0 * len(X), lower_bounds[-1], lower_bounds, True, 7, np.asarray(X))


@pytest.fixture(scope="module")
def em_2d(data_2d):
    return em_result(true_params(2, N_COMPONENTS), data_2d)


def _ellipses(ax):
    return [p for p in ax.patches if isinstance(p, Ellipse)]


def _colorbar_axes(fig):
    return [a for a in fig.axes if a.get_label() == "<colorbar>"]


def test_plot_ellipses_from_posterior_draws(raw_2d):
    ax = bp.plot_ellipses(raw_2d, n_draws=10)
    assert len(_ellipses(ax)) == 10 * N_COMPONENTS + N_COMPONENTS
    assert (ax.get_xlabel(), ax.get_ylabel()) == ("x0", "x1")
    assert len(ax.get_legend().get_texts()) == N_COMPONENTS
    # Faint ellipses of the draws, bold ones at the mean.
    widths = sorted({p.get_linewidth() for p in _ellipses(ax)})
    assert widths == [0.8, 2.0]


def test_plot_ellipses_from_em_and_given_axes(em_2d):
    fig, ax = plt.subplots()
    out = bp.plot_ellipses(em_2d, ax=ax)
    assert out is ax
    assert len(_ellipses(ax)) == N_COMPONENTS
    assert "posterior" not in ax.get_legend().get_texts()[0].get_text()


def test_em_components_are_coloured_in_the_order_relabelling_gives_draws(em_2d, idata_2d):
    """The fixtures' weights increase with the index; relabelled draws run heaviest first."""
    em_ax, draws_ax = bp.plot_ellipses(em_2d), bp.plot_ellipses(idata_2d, n_draws=1)
    heaviest = int(np.argmax(np.asarray(em_2d.params.weights)))
    assert heaviest == N_COMPONENTS - 1
    bold = [p for p in _ellipses(em_ax) if p.get_linewidth() == 2.0]
    np.testing.assert_allclose(bold[0].center, np.asarray(em_2d.params.means)[heaviest])
    draws_bold = [p for p in _ellipses(draws_ax) if p.get_linewidth() == 2.0]
    for em_patch, draw_patch in zip(bold, draws_bold, strict=True):
        assert em_patch.get_edgecolor() == draw_patch.get_edgecolor()
        assert np.linalg.norm(np.subtract(em_patch.center, draw_patch.center)) < 1.0


def test_plot_ellipses_needs_two_features(idata_1d):
    with pytest.raises(ValueError, match="plot_density_1d"):
        bp.plot_ellipses(idata_1d)


def test_ellipse_patch_boundary_is_the_mass_contour():
    from scipy.stats import chi2

    from bayesgmm.plots.ellipses import ellipse_patch

    mean, cov = np.array([1.0, -2.0]), np.array([[4.0, 1.5], [1.5, 1.0]])
    e = ellipse_patch(mean, cov, level=0.5)
    t = np.linspace(0, 2 * np.pi, 50)
    boundary = e.get_patch_transform().transform(np.column_stack([np.cos(t), np.sin(t)]))
    d = boundary - mean
    mahalanobis2 = np.einsum("ni,ij,nj->n", d, np.linalg.inv(cov), d)
    np.testing.assert_allclose(mahalanobis2, chi2.ppf(0.5, df=2), rtol=1e-9)


def test_plot_uncertainty_has_a_colorbar(idata_2d, idata_1d):
    ax = bp.plot_uncertainty(idata_2d)
    cbars = _colorbar_axes(ax.figure)
    assert len(cbars) == 1 and cbars[0].get_ylabel() == "assignment uncertainty"
    assert (ax.get_xlabel(), ax.get_ylabel()) == ("x0", "x1")
    assert len(ax.collections[0].get_offsets()) == 90
    ax = bp.plot_uncertainty(idata_1d)
    assert ax.get_ylabel() == "assignment uncertainty"


def test_plot_coclustering_ordered_by_best_partition(idata_2d):
    ax = bp.plot_coclustering(idata_2d)
    assert len(ax.images) == 1 and ax.images[0].get_array().shape == (90, 90)
    assert _colorbar_axes(ax.figure)[0].get_ylabel() == "P(same component)"
    # One horizontal and one vertical line between each pair of neighbouring clusters.
    assert len(ax.lines) == 2 * (N_COMPONENTS - 1)
    image = np.asarray(ax.images[0].get_array())
    assert np.allclose(np.diag(image), 1.0)
    # Ordered: the first rows are one block that co-clusters strongly.
    assert image[:10, :10].min() > 0.9


def test_plot_coclustering_from_a_matrix():
    sim = np.kron(np.eye(2), np.ones((3, 3)))
    ax = bp.plot_coclustering(sim=sim, labels=np.array([0, 1, 0, 1, 0, 1]))
    assert "2 clusters" in ax.get_title()


def test_plot_n_components_bars_and_legend():
    post = pd.DataFrame({"probability": [0.1, 0.6, 0.3]}, index=pd.Index([1, 2, 3], name="n_occupied"))
    ax = bp.plot_n_components(post, {1: 0.2, 2: 0.3, 3: 0.3, 4: 0.2})
    assert len(ax.patches) == 3 + 4
    assert [t.get_text() for t in ax.get_legend().get_texts()] == ["posterior", "prior"]
    assert ax.get_xlabel() == "number of occupied components K"
    ax = bp.plot_n_components(np.array([0.5, 0.5]))
    assert len(ax.patches) == 2


def test_plot_criteria_lines_and_best_marks():
    table = pd.DataFrame(
        {"bic": [900.0, 800, 820], "icl": [900.0, 830, 860], "elpd_loo": [-450.0, -395, -396], "se_loo": 4.0},
        index=pd.Index([1, 2, 3], name="n_components"),
    )
    ax = bp.plot_criteria(table)
    labels = [t.get_text() for t in ax.get_legend().get_texts()]
    assert labels == ["BIC", "ICL", "LOOIC (-2 elpd_loo)"]
    stars = [line for line in ax.lines if line.get_marker() == "*"]
    assert len(stars) == 3 and all(round(s.get_xdata()[0]) == 2 for s in stars)
    # Lines that agree stay visible: each has its own marker and is shifted sideways a little.
    data_lines = [line for line in ax.lines if line.get_marker() not in ("*", "_")]
    assert len({line.get_marker() for line in data_lines}) == 3
    assert len({line.get_xdata()[1] for line in data_lines}) == 3
    assert all(abs(line.get_xdata()[1] - 2) < 0.25 for line in data_lines)
    assert ax.get_xlabel() == "number of components K"
    with pytest.raises(ValueError, match="criteria"):
        bp.plot_criteria(pd.DataFrame({"x": [1.0]}))


def test_plot_criteria_with_covariance_types():
    index = pd.MultiIndex.from_product([[1, 2], ["full", "diag"]], names=["n_components", "covariance_type"])
    ax = bp.plot_criteria(pd.DataFrame({"bic": [3.0, 4, 2, 5]}, index=index))
    assert [t.get_text() for t in ax.get_legend().get_texts()] == ["BIC (full)", "BIC (diag)"]


def test_plot_trace_objective_em_svi_and_arrays(em_2d, idata_2d):
    ax = bp.plot_trace_objective(em_2d)
    assert (ax.get_xlabel(), ax.get_ylabel()) == ("EM iteration", "mean log-likelihood")
    assert len(ax.lines[0].get_xdata()) == em_2d.n_iter
    elbo = xr.Dataset({"elbo": (("restart", "step"), -np.exp(-np.arange(50.0))[None].repeat(2, 0))})
    svi_like = az.InferenceData(posterior=idata_2d.posterior, elbo_trace=elbo)
    ax = bp.plot_trace_objective(svi_like)
    assert ax.get_ylabel() == "ELBO" and len(ax.lines) == 2
    assert len(ax.get_legend().get_texts()) == 2
    ax = bp.plot_trace_objective(np.arange(10.0), label="loss")
    assert ax.get_ylabel() == "loss"
    # Restarts that agree draw over each other: restart 0 stays on top, faint and smoothed lines alike.
    ax = bp.plot_trace_objective(np.tile(np.arange(200.0), (3, 1)))
    on_top = {line.get_zorder() for line in ax.lines[:2]}
    assert min(on_top) > max(line.get_zorder() for line in ax.lines[2:])
    with pytest.raises(ValueError, match="elbo_trace"):
        bp.plot_trace_objective(idata_2d)


def test_plot_density_1d_band_and_legend(idata_1d):
    ax = bp.plot_density_1d(idata_1d, hdi_prob=0.9)
    labels = [t.get_text() for t in ax.get_legend().get_texts()]
    assert labels == ["data", "90% HDI", "posterior mean density"]
    assert (ax.get_xlabel(), ax.get_ylabel()) == ("x0", "density")
    band = ax.collections[0].get_paths()[0].vertices[:, 1]
    assert np.all(band >= 0)


def test_plot_density_1d_from_em_and_marginal(em_2d, idata_2d):
    ax = bp.plot_density_1d(em_2d, feature=1)
    assert "EM density" in [t.get_text() for t in ax.get_legend().get_texts()]
    ax = bp.plot_density_1d(idata_2d, feature=1)
    assert ax.get_xlabel() == "x1"


def test_marginal_density_integrates_to_one(idata_2d):
    from bayesgmm.plots._base import fit_params, thin_draws
    from bayesgmm.plots.predictive import marginal_density

    draws, _, _ = fit_params(idata_2d, relabel_draws=False)
    grid = np.linspace(-20, 20, 4001)
    dens = marginal_density(thin_draws(draws, 5), grid, feature=0)
    np.testing.assert_allclose(np.trapezoid(dens, grid, axis=1), 1.0, atol=1e-6)


def test_plot_relabel_traces_two_panels(raw_2d):
    axes = bp.plot_relabel_traces(raw_2d, bayesgmm.relabel(raw_2d), var="means")
    assert [a.get_title() for a in axes] == ["before relabelling", "after relabelling"]
    for ax in axes:
        assert len([line for line in ax.lines if len(line.get_xdata()) == 40]) == N_COMPONENTS
    assert axes[0].get_ylabel() == "means[x0]"
    assert len(axes[1].get_legend().get_texts()) == N_COMPONENTS
    axes = bp.plot_relabel_traces(raw_2d, bayesgmm.relabel(raw_2d), var="weights")
    assert axes[0].get_ylabel() == "weights"


def test_plot_compare_fits_three_panels(data_2d, em_2d, idata_2d, raw_2d):
    fig = bp.plot_compare_fits(data_2d, em_2d, idata_2d, raw_2d, n_draws=5)
    assert [a.get_title() for a in fig.axes] == ["EM", "SVI", "NUTS"]
    counts = [len(_ellipses(a)) for a in fig.axes]
    assert counts == [N_COMPONENTS, 6 * N_COMPONENTS, 6 * N_COMPONENTS]


def test_plot_compare_fits_1d(idata_1d):
    X = idata_1d.observed_data["X"].values
    em = em_result(true_params(1, 2), X)
    fig = bp.plot_compare_fits(X, em, idata_1d, idata_1d)
    assert [a.get_xlabel() for a in fig.axes] == ["x0"] * 3


def test_plot_pairs_grid():
    params = true_params(2, 2)
    X3 = np.column_stack([sample_data(params, 60, seed=5), np.random.default_rng(6).normal(size=60)])
    tril = np.broadcast_to(np.eye(3), (2, 3, 3))
    em = em_result(GMMParams(params.weights, np.column_stack([params.means, np.zeros(2)]), tril), X3)
    fig = bp.plot_pairs(em)
    axes = np.array(fig.axes).reshape(3, 3)
    assert [a.get_xlabel() for a in axes[-1]] == ["x0", "x1", "x2"]
    assert [a.get_ylabel() for a in axes[:, 0]] == ["x0", "x1", "x2"]
    assert all(len(_ellipses(axes[r, c])) == 2 for r in range(3) for c in range(3) if r != c)
    assert all(len(_ellipses(axes[r, r])) == 0 for r in range(3))


def test_plot_ppc_statistic(idata_1d):
    idata = add_predictive(idata_1d, seed=0)
    ax = bp.plot_ppc_statistic(idata, "n_modes[x0]")
    assert ax.get_title().startswith("P(T(y_rep) >= T(y)) = ")
    assert [t.get_text() for t in ax.get_legend().get_texts()] == ["replicated T(y_rep)", "observed T(y)"]
    with pytest.raises(ValueError, match="Unknown statistic"):
        bp.plot_ppc_statistic(idata, "nope")


def test_every_plot_is_exported():
    assert sorted(bp.__all__) == sorted(n for n in dir(bp) if n.startswith("plot_"))
