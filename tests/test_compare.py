"""compare_n_components: EM criteria across K, LOO/WAIC with stacking, Pareto-k warnings."""

import arviz as az
import numpy as np
import pytest

from bayesgmm import compare_n_components
from bayesgmm.compare import _loo_waic


def simulate(n_clusters, n_per=40, seed=0):
    rng = np.random.default_rng(seed)
    return np.concatenate([rng.normal(8.0 * j, 1.0, n_per) for j in range(n_clusters)])[:, None]


def test_em_table_picks_truth():
    X = simulate(3, seed=1)
    table = compare_n_components(X, range(1, 5), ("full", "spherical"))
    assert list(table.index.names) == ["n_components", "covariance_type"]
    assert len(table) == 8
    assert {"log_likelihood", "n_parameters", "bic", "aic", "icl", "recommended_by"} <= set(table.columns)
    assert table.attrs["recommended"]["bic"][0] == 3
    assert table.attrs["recommended"]["icl"][0] == 3
    assert "bic" in table.loc[table.attrs["recommended"]["bic"], "recommended_by"]
    # ICL = BIC + 2 * entropy >= BIC.
    assert (table["icl"] >= table["bic"] - 1e-9).all()


def test_pareto_k_warning_names_the_model():
    """An observation whose importance ratios 1 / p(x_i | draw) are Pareto(0.5)-tailed
    over draws has k near 2 > 0.7."""
    rng = np.random.default_rng(0)
    ll = rng.normal(-1.0, 0.1, size=(2, 500, 20))
    ll[..., 0] = -np.log1p(rng.pareto(0.5, size=(2, 500)))
    idata = az.from_dict(posterior={"mu": ll[..., 1]}, log_likelihood={"X": ll}, dims={"X": ["obs"]})
    with pytest.warns(UserWarning, match="n_components=4.*Pareto k > 0.7"):
        _, row = _loo_waic(idata, "n_components=4")
    assert 0 < row["pareto_k_bad"] <= 1


@pytest.mark.slow
def test_loo_and_bic_agree():
    """On well-separated clusters, LOO (one-SE rule) and BIC choose the same K."""
    X = simulate(3, seed=2)
    table = compare_n_components(X, range(1, 6), inference="nuts", fit_kwargs={"num_warmup": 200})
    rec = table.attrs["recommended"]
    assert rec["loo"] == rec["bic"] == (3, "full")
    assert table["stacking_weight"].sum() == pytest.approx(1.0)
    assert table.loc[(3, "full"), "elpd_diff"] == 0


def test_warnings_of_a_fit_name_its_model():
    """Three distinct values leave two of five components empty: that warning says which K."""
    X = np.repeat([0.0, 5.0, 10.0], 20)[:, None]
    with pytest.warns(UserWarning, match=r"^n_components=5, covariance_type='full': 2 of 5 components hold"):
        table = compare_n_components(X, [3, 5], ("full",))
    assert table.loc[(5, "full"), "log_likelihood"] == pytest.approx(table.loc[(3, "full"), "log_likelihood"])
