"""``bayesgmm.summary``: one row per distinct covariance cell, values where the labels say."""

import warnings

import numpy as np
import pytest

from bayesgmm import fit_em, load_dataset, summary


@pytest.mark.parametrize(("covariance_type", "n_cov_rows"), [("full", 3 * 10), ("diag", 3 * 4)])
def test_each_covariance_cell_shown_once(covariance_type, n_cov_rows):
    frame = load_dataset("iris", as_frame=True).iloc[:, :4]
    result = fit_em(frame.to_numpy(), 3, covariance_type, seed=0)
    names = list(frame.columns)
    idata = result.to_inference_data(feature_names=names)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        table = summary(idata)
    cov_rows = [label for label in table.index if label.startswith("covariances[")]
    assert len(table) == 3 + 3 * 4 + n_cov_rows and len(cov_rows) == n_cov_rows
    # EM's one point has no spread, no interval and no chains: the table is the estimate.
    assert list(table.columns) == ["mean", "relabel"]
    # Components are numbered by decreasing weight (see relabel).
    order = np.argsort(-np.asarray(result.params.weights))
    cov = idata.posterior["covariances"].values[0, 0][order]
    for label in cov_rows:
        k, a, b = (part.strip() for part in label[len("covariances[") : -1].split(","))
        i, j = names.index(a), names.index(b)
        assert i >= j if covariance_type == "full" else i == j
        assert table.loc[label, "mean"] == pytest.approx(cov[int(k), i, j], abs=6e-4)


def test_em_fit_of_a_frame_names_its_features_everywhere():
    import matplotlib

    matplotlib.use("Agg")
    from bayesgmm.plots import plot_ellipses

    frame = load_dataset("iris", as_frame=True).iloc[:, :4]
    result = fit_em(frame, 3, seed=0)
    idata = result.to_inference_data()
    assert list(idata.posterior["feature"].values) == list(frame.columns)
    assert idata.attrs["inference"] == "em" and idata.attrs["covariance_type"] == "full"
    ax = plot_ellipses(result, features=(2, 3))
    assert (ax.get_xlabel(), ax.get_ylabel()) == ("petal_length", "petal_width")
