"""Every public function that takes an InferenceData and returns a new one keeps the
input's own ``attrs`` (the fit settings) and leaves the input as it was."""

import importlib
import inspect
import pkgutil

import arviz as az
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import bayesgmm
from bayesgmm import (
    BayesianGMM,
    add_predictive,
    fit_svi,
    n_components_posterior,
    relabel,
    sample_assignments,
)

#: Each public InferenceData -> InferenceData function, called as a user would.
CALLS = {
    "bayesgmm.posterior.relabel.relabel": lambda idata: relabel(idata, "ecr"),
    "bayesgmm.posterior.assignments.sample_assignments": lambda idata: sample_assignments(idata, seed=1),
    "bayesgmm.ppc.add_predictive": lambda idata: add_predictive(idata, seed=1),
    "bayesgmm.ppc.add_predictive[prior]": lambda idata: add_predictive(idata, "prior", seed=1),
}

MARKER = {"contract_marker": "kept?", "contract_number": 17}


def _returns_new_idata(fn) -> bool:
    try:
        sig = inspect.signature(fn)
    except (TypeError, ValueError):
        return False
    params = list(sig.parameters)
    return bool(params) and params[0] == "idata" and "InferenceData" in str(sig.return_annotation)


def public_idata_functions() -> set:
    """Public functions of every bayesgmm module whose first argument is ``idata`` and that
    are annotated to return an InferenceData."""
    found = set()
    for info in pkgutil.walk_packages(bayesgmm.__path__, "bayesgmm."):
        if any(part.startswith("_") for part in info.name.split(".")):
            continue
        module = importlib.import_module(info.name)
        for name, fn in inspect.getmembers(module, inspect.isfunction):
            if not name.startswith("_") and fn.__module__ == info.name and _returns_new_idata(fn):
                found.add(f"{info.name}.{name}")
    return found


@pytest.fixture(scope="module")
def X():
    rng = np.random.default_rng(3)
    return np.concatenate([rng.normal(0.0, 1.0, 20), rng.normal(8.0, 1.0, 20)])[:, None]


@pytest.fixture(scope="module")
def sparse_fit(X):
    # The settings of BayesianGMM(inference="svi") below, so that both share compiled programs.
    idata = fit_svi(X, 3, weight_prior="sparse", num_samples=40, prior_draws=10, seed=0)
    idata.attrs.update(MARKER)
    return idata


def test_every_public_idata_function_is_covered():
    # A new public function that returns an InferenceData must be added to CALLS.
    assert public_idata_functions() <= {name.split("[")[0] for name in CALLS}


def _snapshot(idata):
    return dict(idata.attrs), list(idata.groups()), {g: list(idata[g].data_vars) for g in idata.groups()}


@pytest.mark.parametrize("name", sorted(CALLS))
def test_attrs_kept_and_input_untouched(sparse_fit, name):
    before = _snapshot(sparse_fit)
    means = sparse_fit.posterior["means"].values.copy()
    out = CALLS[name](sparse_fit)
    assert isinstance(out, az.InferenceData) and out is not sparse_fit
    assert dict(out.attrs) == before[0]
    assert _snapshot(sparse_fit) == before
    np.testing.assert_array_equal(sparse_fit.posterior["means"].values, means)
    # The new object owns its attrs and groups: changing them leaves the input alone.
    out.attrs["contract_marker"] = "changed"
    out.posterior["contract_var"] = out.posterior["weights"]
    assert sparse_fit.attrs["contract_marker"] == "kept?"
    assert "contract_var" not in sparse_fit.posterior


_values = st.one_of(
    st.integers(-(2**31), 2**31 - 1),
    st.floats(allow_nan=False),
    st.text(max_size=8),
)


@settings(max_examples=10, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    attrs=st.dictionaries(st.text(min_size=1, max_size=8), _values, max_size=4),
    order=st.permutations(sorted(CALLS)),
)
def test_any_attrs_survive_any_chain_of_calls(sparse_fit, attrs, order):
    idata = sparse_fit.copy()
    idata.attrs = dict(attrs)
    for name in order:
        idata = CALLS[name](idata)
    assert dict(idata.attrs) == attrs


def test_relabelled_sparse_fit_reports_the_sparse_prior_and_saves_its_settings(sparse_fit, tmp_path):
    table = n_components_posterior(relabel(sparse_fit), seed=0)
    assert table.attrs["weight_prior"] == "sparse"
    path = tmp_path / "fit.nc"
    relabel(sparse_fit).to_netcdf(path)
    loaded = az.from_netcdf(path)
    assert loaded.attrs["weight_prior"] == "sparse" and loaded.attrs["inference"] == "svi"
    assert "pareto_k" in loaded.attrs


def test_estimator_fit_keeps_the_fit_settings(X):
    model = BayesianGMM(
        3, weight_prior="sparse", inference="svi", num_samples=40, num_chains=1, random_state=0
    )
    attrs = model.fit(X).idata_.attrs
    assert attrs["weight_prior"] == "sparse" and attrs["inference"] == "svi"
    assert {"pareto_k", "converged"} <= set(attrs)
    assert n_components_posterior(model.idata_, seed=0).attrs["weight_prior"] == "sparse"


def test_svi_summary_has_no_mcmc_columns(sparse_fit):
    # Guide draws are independent, not a Markov chain: R-hat and ESS would mislead.
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        table = bayesgmm.summary(sparse_fit)
    assert "mean" in table.columns and "sd" in table.columns
    assert not {"r_hat", "ess_bulk", "ess_tail", "mcse_mean"} & set(table.columns)
