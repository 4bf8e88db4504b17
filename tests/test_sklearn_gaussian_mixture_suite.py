"""scikit-learn's own ``GaussianMixture`` tests, run against ``bayesgmm.GaussianMixture``.

The installed module ``sklearn.mixture.tests.test_gaussian_mixture`` is imported, not copied:
its module-level name ``GaussianMixture`` is replaced by ours for the duration of each test, and
each of its test functions is called with the parametrisations of its own ``parametrize`` marks.
Its other marks (``filterwarnings``, ``skipif``) are applied by pytest as they are there.

The fixtures it takes come from scikit-learn's ``conftest.py``, which is not loaded here; they are
given scikit-learn's default values (``global_random_seed`` 42) and both float dtypes (scikit-learn
runs float32 only when asked to; we claim float32, so we run it).
"""

import inspect
import itertools

import numpy as np
import pytest

import bayesgmm

sk_tests = pytest.importorskip("sklearn.mixture.tests.test_gaussian_mixture")

#: Tests of scikit-learn internals, not of the estimator's public behaviour.
EXCLUDED = {
    "test_suffstat_sk_full": "checks sklearn's private _estimate_gaussian_covariances_full",
    "test_suffstat_sk_tied": "checks sklearn's private _estimate_gaussian_covariances_tied",
    "test_suffstat_sk_diag": "checks sklearn's private _estimate_gaussian_covariances_diag",
    "test_gaussian_suffstat_sk_spherical": "checks the private _estimate_gaussian_covariances_spherical",
    "test_compute_log_det_cholesky": "checks sklearn's private _compute_log_det_cholesky",
    "test_gaussian_mixture_log_probabilities": "checks sklearn's private _estimate_log_gaussian_prob",
    "test_gaussian_mixture_precisions_init": "calls the private methods _set_parameters and _initialize",
    "test_gaussian_mixture_all_init_does_not_estimate_gaussian_parameters": (
        "counts calls of sklearn's private _estimate_gaussian_parameters, which bayesgmm never calls"
    ),
    "test_gaussian_mixture_array_api_compliance": (
        "array API dispatch (torch/cupy/array_api_strict inputs), which bayesgmm does not claim"
    ),
    "test_gaussian_mixture_raises_where_array_api_not_implemented": (
        "array API dispatch (torch/cupy/array_api_strict inputs), which bayesgmm does not claim"
    ),
}

#: Public-API tests where bayesgmm differs on purpose: expected to fail, strictly, so that a
#: change of behaviour shows up here.
KNOWN_DIFFERENCES: dict[str, str] = {}

#: Values of scikit-learn's global fixtures (sklearn/conftest.py defaults, float32 included).
FIXTURES = {
    "global_random_seed": [42],
    "global_dtype": [np.float64, np.float32],
}


def _parametrisations(func):
    """(kwargs, id) pairs: the cartesian product of ``func``'s parametrize marks and fixtures."""
    marks = getattr(func, "pytestmark", [])
    axes = []
    for mark in marks:
        if mark.name != "parametrize":
            continue
        names, values = mark.args[0], mark.args[1]
        names = [n.strip() for n in names.split(",")] if isinstance(names, str) else list(names)
        rows = []
        for value in values:
            value = value.values if hasattr(value, "values") and hasattr(value, "marks") else value
            rows.append(dict(zip(names, value if len(names) > 1 else (value,), strict=True)))
        axes.append(rows)
    given = {name for rows in axes for name in rows[0]}
    for name in inspect.signature(func).parameters:
        if name not in given:
            if name not in FIXTURES:
                raise LookupError(f"{func.__name__} takes fixture {name!r}, which this module cannot give")
            axes.append([{name: value} for value in FIXTURES[name]])
    for combo in itertools.product(*axes):
        kwargs = {k: v for part in combo for k, v in part.items()}
        ident = "-".join(getattr(v, "__name__", str(v)) for v in kwargs.values())
        yield kwargs, ident


def _cases():
    for name, func in vars(sk_tests).items():
        if not (name.startswith("test_") and inspect.isfunction(func)) or name in EXCLUDED:
            continue
        marks = [m for m in getattr(func, "pytestmark", []) if m.name != "parametrize"]
        if name in KNOWN_DIFFERENCES:
            marks.append(pytest.mark.xfail(strict=True, raises=ValueError, reason=KNOWN_DIFFERENCES[name]))
        for kwargs, ident in _parametrisations(func):
            yield pytest.param(name, kwargs, marks=marks, id=f"{name}[{ident}]" if ident else name)


@pytest.fixture
def retargeted(monkeypatch):
    """scikit-learn's test module with its ``GaussianMixture`` replaced by bayesgmm's."""
    monkeypatch.setattr(sk_tests, "GaussianMixture", bayesgmm.GaussianMixture)
    return sk_tests


@pytest.mark.parametrize("name, kwargs", list(_cases()))
def test_sklearn_gaussian_mixture(retargeted, name, kwargs):
    getattr(retargeted, name)(**kwargs)


def test_exclusions_name_existing_tests():
    # A renamed or removed upstream test must not leave a stale exclusion behind.
    assert set(EXCLUDED) | set(KNOWN_DIFFERENCES) <= {
        name for name in vars(sk_tests) if name.startswith("test_")
    }
