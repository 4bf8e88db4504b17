"""Fit diagnostics: each problem is reported, in words that say what to try; healthy fits are quiet."""

import json
import warnings

import arviz as az
import numpy as np
import pytest

from bayesgmm import DiagnosticsWarning, fit_nuts, fit_problems
from bayesgmm._validation import standardize
from bayesgmm.inference.start import em_starts


def _nuts_idata(rng, n_chains=4, n_draws=400, chain_offsets=None, rho=0.0, energy=None, **stats):
    """A hand-made one-component 'NUTS fit' whose draws have known mixing properties."""
    shape = (n_chains, n_draws)
    noise = rng.normal(size=(*shape, 2))
    # AR(1) draws with autocorrelation rho: ESS is about n (1 - rho) / (1 + rho).
    means = np.empty_like(noise)
    means[:, 0] = noise[:, 0]
    for t in range(1, n_draws):
        means[:, t] = rho * means[:, t - 1] + np.sqrt(1 - rho**2) * noise[:, t]
    if chain_offsets is not None:
        means = means + np.asarray(chain_offsets, float)[:, None, None]
    posterior = {"weights": np.ones((*shape, 1)), "means": means[:, :, None, :]}
    sample_stats = {
        "diverging": stats.get("diverging", np.zeros(shape, bool)),
        "tree_depth": stats.get("tree_depth", np.full(shape, 3)),
        "energy": rng.normal(size=shape) if energy is None else energy,
    }
    idata = az.from_dict(posterior=posterior, sample_stats=sample_stats)
    idata.attrs.update(inference="nuts", max_tree_depth=10)
    return idata


def test_healthy_draws_are_quiet(rng):
    assert fit_problems(_nuts_idata(rng)) == []


def test_each_nuts_problem_is_reported(rng):
    shape = (4, 400)
    diverging = np.zeros(shape, bool)
    diverging[1, :7] = True
    (msg,) = fit_problems(_nuts_idata(rng, diverging=diverging))
    assert "7 of 1600" in msg and "target_accept_prob" in msg

    depth = np.full(shape, 3)
    depth[0, :5] = 10
    (msg,) = fit_problems(_nuts_idata(rng, tree_depth=depth))
    assert "5 of 1600" in msg and "max_tree_depth=10" in msg

    # A random walk in energy has E-BFMI near 0 (Betancourt 2016).
    (msg,) = fit_problems(_nuts_idata(rng, energy=rng.normal(size=shape).cumsum(axis=1)))
    assert "E-BFMI" in msg and "[0, 1, 2, 3]" in msg

    # One chain elsewhere: R-hat (and, through the between-chain variance, ESS) says so.
    problems = fit_problems(_nuts_idata(rng, chain_offsets=[0.0, 0.0, 0.0, 1.0]))
    assert any("R-hat" in msg and "different modes" in msg for msg in problems)

    # rho = 0.9: ESS about 1600 * 0.1 / 1.9 = 84, under 100 per chain (400).
    problems = fit_problems(_nuts_idata(rng, rho=0.9))
    assert any("ESS" in msg and "num_samples" in msg for msg in problems)


def test_svi_problems_are_reported():
    idata = az.from_dict(posterior={"means": np.zeros((1, 10, 1, 1))})
    idata.attrs.update(inference="svi", converged=1, pareto_k=json.dumps([0.3]))
    assert fit_problems(idata) == []
    idata.attrs.update(converged=0, pareto_k=json.dumps([0.95]))
    converged, pareto = fit_problems(idata)
    assert "max_steps" in converged
    assert "0.95" in pareto and "fit_nuts" in pareto


@pytest.fixture(scope="module")
def two_modes():
    # Three equal-spread clusters, mirrored so that the two ways of covering them with two
    # components, {left, middle + right} and {left + middle, right}, have equal likelihood.
    rng = np.random.default_rng(0)
    half = np.concatenate([rng.normal(-4.0, 1.0, 60), rng.normal(0.0, 1.0, 60)])
    return np.concatenate([half, -half])[:, None]


def test_chains_start_at_distinct_em_optima(two_modes):
    Z, _, _ = standardize(two_modes)
    starts = em_starts(Z, 2, "full", seed=0, n_init=8)
    assert len(starts) == 2
    # The two optima are mirror images of each other (up to the order of components).
    a, b = (np.sort(np.asarray(s.means).ravel()) for s in starts)
    # EM stops on a change of 1e-3 in the mean log-likelihood, short of the optima.
    np.testing.assert_allclose(a, -b[::-1], atol=0.02)


def test_competing_modes_are_flagged(two_modes):
    with pytest.warns(DiagnosticsWarning, match="R-hat"):
        idata = fit_nuts(two_modes, 2, num_warmup=150, num_samples=150, num_chains=2, seed=0)
    assert idata.attrs["n_starts"] >= 2


def test_em_best_starts_every_chain_at_one_optimum(two_modes):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DiagnosticsWarning)  # too few draws to mix
        idata = fit_nuts(two_modes, 2, num_warmup=150, num_samples=150, num_chains=2, seed=0, init="em-best")
    assert idata.attrs["n_starts"] == 1 and idata.attrs["init"] == "em-best"
