"""Label-switching report and relabelled summaries on posteriors with known switching."""

import numpy as np
from posterior_helpers import (
    make_idata,
    permute_draws,
    random_perms,
    sample_data,
    synthetic_draws,
    true_params,
)

from bayesgmm import label_switching_report, relabel, summary
from bayesgmm.params import GMMParams


def _setup():
    params = true_params(2, 3)
    X = sample_data(params, 40, 0)
    return params, X, synthetic_draws(params, 4, 100, 1)


def _chain_perms(per_chain, n_draws=100):
    return np.repeat(np.asarray(per_chain)[:, None, :], n_draws, axis=1)


def test_chains_in_different_labellings_of_one_mode():
    _, X, draws = _setup()
    per_chain = [[0, 1, 2], [1, 2, 0], [0, 1, 2], [2, 1, 0]]
    report = label_switching_report(make_idata(permute_draws(draws, _chain_perms(per_chain)), X))
    assert report.verdict == "chains in different labellings of one mode"
    assert report.rhat.loc["means (raw)", "max_rhat"] > 1.5
    assert report.rhat.loc["means (relabelled)", "max_rhat"] < 1.05
    assert not report.switched.any()
    assert report.chains["fraction_switched"].eq(0).all()
    # Chains 0 and 2 share a labelling, 1 and 3 each have their own.
    dominant = report.chains["dominant_permutation"]
    assert dominant[0] == dominant[2] and len({dominant[0], dominant[1], dominant[3]}) == 3
    assert "different labellings" in str(report)


def test_switching_within_chains_is_located_draw_by_draw():
    _, X, draws = _setup()
    perms = _chain_perms([[0, 1, 2]] * 4)
    perms[1, 40:60] = [2, 0, 1]
    report = label_switching_report(make_idata(permute_draws(draws, perms), X))
    assert report.verdict == "label switching within chains"
    expected = np.zeros((4, 100), dtype=bool)
    expected[1, 40:60] = True
    np.testing.assert_array_equal(report.switched, expected)
    assert report.chains.loc[1, "fraction_switched"] == 0.2


def test_genuinely_different_modes_are_told_apart():
    params, X, draws = _setup()
    # Chain 3 sits in another mode: two components merged, one split.
    other = GMMParams(
        np.array([0.6, 0.2, 0.2]),
        np.asarray(params.means) * np.array([[1.0], [0.2], [0.2]]),
        params.scale_tril,
    )
    stuck = synthetic_draws(other, 1, 100, 9)
    merged = GMMParams(
        *(np.concatenate([np.asarray(a)[:3], np.asarray(b)]) for a, b in zip(draws, stuck, strict=True))
    )
    report = label_switching_report(make_idata(merged, X))
    assert report.verdict == "chains in different modes"
    assert report.rhat.loc["sorted_weights (label-invariant)", "max_rhat"] > 1.05
    assert report.chains["coclustering_distance"].idxmax() == 3


def test_no_switching_and_relabelled_input():
    _, X, draws = _setup()
    idata = make_idata(draws, X)
    assert label_switching_report(idata).verdict == "no label switching"
    switched = make_idata(permute_draws(draws, random_perms(4, 100, 3, 2)), X)
    # A relabelled posterior is mapped back to its raw draws through relabel_permutation.
    report = label_switching_report(relabel(switched, "ecr"))
    direct = label_switching_report(switched, method="ecr")
    np.testing.assert_allclose(report.rhat["max_rhat"].values, direct.rhat["max_rhat"].values)
    # Every draw is permuted at random, so most are away from the reference and from their chain's mode.
    assert report.off_reference.mean() > 0.5 and report.switched.mean() > 0.5
    assert report.verdict == "label switching within chains"


def test_summary_relabels_and_says_so():
    _, X, draws = _setup()
    switched = make_idata(permute_draws(draws, random_perms(4, 100, 3, 2)), X)
    table = summary(switched)
    assert table["r_hat"].max() < 1.05
    assert set(table["relabel"]) == {"stephens"} and table.attrs["relabel_method"] == "stephens"
    assert "relabel_permutation" not in switched.posterior
    # An already relabelled posterior is summarised as it is.
    assert set(summary(relabel(switched, "ecr"), var_names=["means"])["relabel"]) == {"ecr"}
