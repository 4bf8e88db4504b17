"""The bayesgmm command line, run in-process through ``main`` (one subprocess for ``--version``)."""

import io
import subprocess
import sys
import warnings
from contextlib import redirect_stderr, redirect_stdout

import arviz as az
import numpy as np
import pandas as pd
import pytest
from sklearn.mixture import GaussianMixture as SkGaussianMixture

import bayesgmm
from bayesgmm import compare_n_components, load, load_dataset
from bayesgmm._validation import check_covariance_type
from bayesgmm.cli import main

FAITHFUL = load_dataset("faithful", as_frame=True)
SVI = ["--inference", "svi", "--samples", "50", "--chains", "1", "--no-progress"]


def run(capsys, *argv):
    """Run the command line; return its status, stdout and stderr."""
    status = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return status, out, err


def assert_one_error(status, err, *words, code=2):
    """The command failed with ``code`` and said so in one ``bayesgmm: error:`` line naming ``words``."""
    assert status == code
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("bayesgmm: error: "), err
    for word in words:
        assert word in lines[0], (word, lines[0])
    assert "Traceback" not in err


def check_memberships(table, probs):
    """A memberships table against the model's own probabilities, shape (n_obs, n_components)."""
    assert list(table.columns) == [
        "row",
        *(f"prob_{k}" for k in range(probs.shape[1])),
        "component",
        "uncertainty",
    ]
    # Every data row is kept, in order: row is its 0-based index in the input file.
    np.testing.assert_array_equal(table["row"], np.arange(len(probs)))
    # CSV keeps every digit of a float; what is left is round-off of computing them again.
    np.testing.assert_allclose(table.filter(like="prob_").to_numpy(), probs, rtol=1e-12, atol=1e-15)
    np.testing.assert_array_equal(table["component"], probs.argmax(axis=1))
    np.testing.assert_allclose(table["uncertainty"], 1 - probs.max(axis=1), rtol=1e-12, atol=1e-15)


@pytest.fixture(scope="module")
def fits(tmp_path_factory):
    """One EM, one SVI and one NUTS fit of Old Faithful, saved with their memberships."""
    folder = tmp_path_factory.mktemp("fits")
    runs = {
        "em": ["--inference", "em"],
        "svi": SVI,
        "nuts": ["--warmup", "150", "--samples", "150", "--chains", "2", "--no-progress"],
    }
    out = {}
    for name, options in runs.items():
        model, members = folder / f"{name}.nc", folder / f"{name}.csv"
        # capsys is per test; this fixture is per module.
        stdout, stderr = io.StringIO(), io.StringIO()
        with redirect_stdout(stdout), redirect_stderr(stderr):
            status = main(["fit", *options, "--output", str(model), "--memberships", str(members)])
        assert status == 0, stderr.getvalue()
        out[name] = {
            "model": model,
            "memberships": members,
            "stdout": stdout.getvalue(),
            "stderr": stderr.getvalue(),
        }
    return out


def test_nuts_fit_prints_diagnostics_and_saves_the_model(fits):
    fit = fits["nuts"]
    assert "eruptions" in fit["stdout"] and "max R-hat" in fit["stdout"] and "divergences" in fit["stdout"]
    model = load(fit["model"])
    means = model.idata_.posterior["means"].mean(("chain", "draw")).values
    np.testing.assert_allclose(np.sort(means[:, 1]), [54.5, 80.0], rtol=0.03)


def test_svi_report_has_no_mcmc_diagnostics(fits):
    fit = fits["svi"]
    assert "PSIS-LOO" in fit["stdout"] and "R-hat" not in fit["stdout"]
    # Any diagnostics warning reads as the command's words, not as a Python source line.
    assert ".py:" not in fit["stderr"]


@pytest.mark.parametrize("name", ["em", "svi", "nuts"])
def test_memberships_file_matches_the_saved_model(fits, name):
    model = load(fits[name]["model"])
    check_memberships(pd.read_csv(fits[name]["memberships"]), model.predict_proba(FAITHFUL))


def test_em_fit_is_the_sklearn_drop_in_and_summary_reports_its_criteria(fits, capsys):
    model = load(fits["em"]["model"])
    assert type(model) is bayesgmm.GaussianMixture and model.n_init == 5
    status, out, _ = run(capsys, "summary", fits["em"]["model"])
    assert status == 0
    # Oracle: scikit-learn's log-likelihood and BIC at the saved parameters.
    sk = SkGaussianMixture(2)
    for name in ("weights_", "means_", "covariances_", "precisions_cholesky_"):
        setattr(sk, name, getattr(model, name))
    X = FAITHFUL.to_numpy()
    assert f"log-likelihood: {sk.score(X) * len(X):.3f}" in out
    assert f"BIC: {sk.bic(X):.3f}" in out
    assert "mean[eruptions]" in out and "cov[eruptions, waiting]" in out
    # Oracle: scikit-learn's own fit from the same seed counts its iterations as n_iter_.
    reference = SkGaussianMixture(2, n_init=5, random_state=0).fit(X)
    assert reference.converged_
    assert f"EM converged after {reference.n_iter_} iterations" in out
    assert out.splitlines()[0] == "EM fit of 2 full components to faithful"
    # The parameters in the same precision as the Bayesian tables.
    assert f"{reference.means_.max():.3f}" in out and f"{reference.means_.max():.6f}" not in out


@pytest.mark.parametrize("name", ["svi", "nuts"])
def test_summary_of_a_bayesian_model_is_what_fit_printed(fits, capsys, name):
    status, out, _ = run(capsys, "summary", fits[name]["model"])
    assert status == 0
    table = fits[name]["stdout"].split("\n", 1)[1].split("model written")[0].strip()
    assert table in out


@pytest.mark.parametrize("name", ["em", "svi"])
def test_predict_on_a_csv_equals_predict_proba(fits, tmp_path, capsys, name):
    # Columns in another order and an extra one: the model's features are found by name.
    new = FAITHFUL.iloc[::-7][["waiting", "eruptions"]].assign(note="x")
    path = tmp_path / "new.csv"
    new.to_csv(path, index=False)
    expected = load(fits[name]["model"]).predict_proba(new[["eruptions", "waiting"]])
    status, out, err = run(
        capsys, "predict", fits[name]["model"], "--data", path, "--output", tmp_path / "m.csv"
    )
    assert status == 0, err
    check_memberships(pd.read_csv(tmp_path / "m.csv"), expected)
    status, out, _ = run(capsys, "predict", fits[name]["model"], "--data", path)
    assert status == 0
    check_memberships(pd.read_csv(pd.io.common.StringIO(out)), expected)


def test_plot_writes_pngs_for_each_kind_of_fit(fits, tmp_path, capsys):
    expected = {
        "nuts": {"ellipses.png", "uncertainty.png", "trace.png"},
        "svi": {"ellipses.png", "uncertainty.png", "elbo.png"},
        "em": {"ellipses.png", "uncertainty.png"},
    }
    for name, files in expected.items():
        folder = tmp_path / name
        extra = ["--data", "faithful"] if name == "em" else []
        status, out, err = run(capsys, "plot", fits[name]["model"], "--output-dir", folder, *extra)
        assert status == 0, err
        assert {p.name for p in folder.iterdir()} == files
        for f in files:
            assert str(folder / f) in out
            assert (folder / f).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_plot_of_an_em_model_needs_data(fits, capsys):
    status, _, err = run(capsys, "plot", fits["em"]["model"])
    assert_one_error(status, err, "--data")


def test_select_k_recommends_what_compare_n_components_does(capsys):
    status, out, _ = run(capsys, "select-k", "--max-k", 3, "--covariance-type", "full", "diag")
    assert status == 0
    table = compare_n_components(FAITHFUL, range(1, 4), ("full", "diag"))
    k, cov = table.attrs["recommended"]["bic"]
    assert f"recommended K: {k} ({cov} covariances)" in out
    assert table.to_string() in out


@pytest.mark.parametrize("suffix", [".parquet", ".npy"])
def test_parquet_and_npy_input_give_the_fit_of_the_same_data(fits, tmp_path, capsys, suffix):
    path = tmp_path / f"faithful{suffix}"
    if suffix == ".npy":
        np.save(path, FAITHFUL.to_numpy())
    else:
        FAITHFUL.to_parquet(path)
    out_model, members = tmp_path / "m.nc", tmp_path / "m.csv"
    status, out, err = run(
        capsys, "fit", "--data", path, "--inference", "em", "--output", out_model, "--memberships", members
    )
    assert status == 0, err
    names = "x0, x1" if suffix == ".npy" else "eruptions, waiting"
    assert names in out
    # Same data, same seed: the same EM fit as from the bundled data set.
    model, reference = load(out_model), load(fits["em"]["model"])
    np.testing.assert_allclose(model.means_, reference.means_, rtol=1e-10)
    # A .npy file has no column names: the command names its columns x0, x1, ...
    X = FAITHFUL.set_axis(["x0", "x1"], axis=1) if suffix == ".npy" else FAITHFUL
    check_memberships(pd.read_csv(members), model.predict_proba(X))


def test_help_shows_defaults_and_examples(capsys):
    for command in ("fit", "summary", "predict", "plot", "select-k"):
        status, out, _ = run(capsys, command, "--help")
        assert status == 0 and "examples:" in out and f"bayesgmm {command}" in out
    status, out, _ = run(capsys, "fit", "--help")
    flat = " ".join(out.split())
    for default in ("number of components (default: 2)", "(default: nuts)", "(default: faithful)",
                    "(default: 4)", "(default: 1000)", "(default: dirichlet)"):  # fmt: skip
        assert default in flat
    status, out, _ = run(capsys, "--help")
    assert status == 0 and "select-k" in out and "examples:" in out


def test_cli_prints_its_version():
    out = subprocess.run(
        [sys.executable, "-m", "bayesgmm.cli", "--version"], capture_output=True, text=True, check=True
    )
    assert out.stdout.strip() == f"bayesgmm {bayesgmm.__version__}"


def test_non_numeric_columns_are_named_when_left_out(tmp_path, capsys):
    path = tmp_path / "mixed.csv"
    FAITHFUL.assign(site=["old"] * len(FAITHFUL)).to_csv(path, index=False)
    status, out, err = run(capsys, "fit", "--data", path, "--inference", "em", "--n-init", 1)
    assert status == 0
    assert "eruptions, waiting" in out
    assert err.startswith("bayesgmm: warning: ") and "leaving out the non-numeric site" in err


def _typo_csv(tmp_path):
    path = tmp_path / "typo.csv"
    path.write_text("a,b\n1.0,2.0\n3.1x,2.5\n4.0,5.0\n")
    return path


def _bad_file(case, folder):
    """A data file that cannot be fitted, and words the error must say."""
    path = folder / f"{case}.csv"
    if case == "empty":
        path.write_text("")
        return path, ["empty file"]
    if case == "directory":
        return folder, ["is a directory"]
    if case == "undecodable":
        path.write_bytes(b"\x80\x81\xc3\x28,\x9f\n" * 50)
        return path, ["cannot read", "CSV"]
    if case == "missing":
        return folder / "nowhere.csv", ["neither a bundled data set", "nowhere.csv"]
    if case == "typo":
        return _typo_csv(folder), ["'a'", "'3.1x'", "row 2"]
    if case == "nan":
        path.write_text("a,b\n1,2\n,3\n4,5\n")
        return path, ["NaN", "row 2"]
    path = folder / "cube.npy"
    np.save(path, np.zeros((2, 2, 2)))
    return path, ["shape (2, 2, 2)"]


@pytest.mark.parametrize("case", ["empty", "directory", "undecodable", "missing", "typo", "nan", "cube"])
def test_bad_data_files_get_one_line_and_status_2(tmp_path, capsys, case):
    path, words = _bad_file(case, tmp_path)
    status, out, err = run(capsys, "fit", "--data", path, "--inference", "em")
    assert_one_error(status, err, *words)
    assert "Fitting" not in out


@pytest.mark.parametrize(
    "argv",
    [
        ["fit", "--chains", "0"],
        ["fit", "--samples", "-3"],
        ["fit", "--warmup", "0"],
        ["fit", "-k", "0"],
        ["fit", "--n-init", "0"],
        ["select-k", "--max-k", "0"],
    ],
)
def test_non_positive_counts_are_refused(capsys, argv):
    status, _, err = run(capsys, *argv)
    assert_one_error(status, err, argv[1], "positive", "--help")


def test_usage_errors_are_one_line(capsys):
    status, _, err = run(capsys, "fit", "--inference", "mcmc")
    assert_one_error(status, err, "invalid choice", "'mcmc'")
    status, _, err = run(capsys, "frobnicate")
    assert_one_error(status, err, "frobnicate")
    status, _, err = run(capsys, "fit", "--inference", "em", "--weight-prior", "dp")
    assert_one_error(status, err, "--weight-prior dp", "nuts or svi")


def test_columns_must_exist_and_be_numbers(tmp_path, capsys):
    path = tmp_path / "iris.csv"
    load_dataset("iris", as_frame=True).to_csv(path, index=False)
    status, _, err = run(
        capsys, "fit", "--data", path, "--columns", "sepal_length,species", "--inference", "em"
    )
    assert_one_error(status, err, "'species'", "not numeric")
    status, _, err = run(capsys, "fit", "--data", path, "--columns", "petal,species", "--inference", "em")
    assert_one_error(status, err, "petal", "not in the data")
    flags = tmp_path / "flags.csv"
    flags.write_text("a,flag\n1.0,True\n2.0,False\n")
    status, _, err = run(capsys, "fit", "--data", flags, "--columns", "a,flag", "--inference", "em")
    assert_one_error(status, err, "'flag'", "True/False")
    status, _, err = run(capsys, "fit", "--data", _typo_csv(tmp_path), "--columns", "a", "--inference", "em")
    assert_one_error(status, err, "'a'", "'3.1x'", "row 2")


@pytest.mark.parametrize("option", ["--output", "--memberships"])
def test_unwritable_outputs_are_refused_before_fitting(tmp_path, capsys, option):
    for target, words in ((tmp_path / "no" / "such" / "f.nc", ["does not exist"]), (tmp_path, ["directory"])):
        status, out, err = run(capsys, "fit", *SVI, option, target)
        assert_one_error(status, err, option, *words)
        assert "Fitting" not in out


def test_files_that_are_not_models_are_refused(tmp_path, capsys):
    plain = tmp_path / "plain.nc"
    az.from_dict(posterior={"mu": np.zeros((1, 5))}).to_netcdf(str(plain))
    text = tmp_path / "data.csv"
    FAITHFUL.to_csv(text, index=False)
    cases = {
        plain: "not a bayesgmm model",
        text: "not a readable netCDF",
        tmp_path / "none.nc": "no model file at",
        tmp_path: "is a directory",
    }
    for path, words in cases.items():
        for argv in (
            ["summary", path],
            ["predict", path, "--data", text],
            ["plot", path, "--output-dir", tmp_path],
        ):
            status, _, err = run(capsys, *argv)
            assert_one_error(status, err, words, "bayesgmm fit --output MODEL")
            # A command-line user has no save method to call.
            assert "save method" not in err


def test_predict_refuses_data_without_the_models_columns(fits, tmp_path, capsys):
    path = tmp_path / "other.csv"
    FAITHFUL.rename(columns={"waiting": "wait"}).to_csv(path, index=False)
    status, _, err = run(capsys, "predict", fits["em"]["model"], "--data", path)
    assert_one_error(status, err, "lacks waiting", "--columns")
    status, _, err = run(capsys, "predict", fits["em"]["model"], "--data", path, "--columns", "wait")
    assert_one_error(status, err, "2 features", "gives 1")
    # --columns maps the data's columns, in order, onto the model's features.
    status, out, err = run(
        capsys, "predict", fits["em"]["model"], "--data", path, "--columns", "eruptions,wait"
    )
    assert status == 0, err
    check_memberships(
        pd.read_csv(pd.io.common.StringIO(out)), load(fits["em"]["model"]).predict_proba(FAITHFUL)
    )


def test_a_failing_fit_exits_1_with_one_line(monkeypatch, capsys):
    def broken(self, X, y=None):
        raise FloatingPointError("overflow in the M-step")

    monkeypatch.setattr(bayesgmm.GaussianMixture, "fit", broken)
    status, _, err = run(capsys, "fit", "--inference", "em")
    assert_one_error(status, err, "the fit failed", "FloatingPointError", "overflow in the M-step", code=1)


def test_warnings_are_the_commands_own_lines(monkeypatch, capsys):
    fit = bayesgmm.GaussianMixture.fit

    def warning_fit(self, X, y=None):
        warnings.warn("2 of 4 chains did not mix", bayesgmm.DiagnosticsWarning, stacklevel=2)
        return fit(self, X)

    monkeypatch.setattr(bayesgmm.GaussianMixture, "fit", warning_fit)
    status, _, err = run(capsys, "fit", "--inference", "em", "--n-init", 1)
    assert status == 0
    assert err.strip() == "bayesgmm: warning: 2 of 4 chains did not mix"


def test_plot_of_one_feature_draws_its_density(tmp_path, capsys):
    model = tmp_path / "galaxies.nc"
    status, _, err = run(capsys, "fit", "--data", "galaxies", "-k", 3, "--inference", "em", "--output", model)
    assert status == 0, err
    status, out, err = run(capsys, "plot", model, "--data", "galaxies", "--output-dir", tmp_path / "fig")
    assert status == 0, err
    assert {p.name for p in (tmp_path / "fig").iterdir()} == {"density.png", "uncertainty.png"}


def test_predict_piped_into_a_reader_that_stops_early_is_quiet(fits, tmp_path):
    """``bayesgmm predict ... | head -1``: the closed pipe ends the command without a traceback."""
    path = tmp_path / "many.csv"
    pd.concat([FAITHFUL] * 40).to_csv(path, index=False)
    cmd = [sys.executable, "-m", "bayesgmm.cli", "predict", str(fits["em"]["model"]), "--data", str(path)]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert proc.stdout.readline().startswith(b"row,prob_0,prob_1")
    proc.stdout.close()
    err = proc.stderr.read().decode()
    assert proc.wait(timeout=120) == 0 and "Traceback" not in err, err


def test_report_warns_when_loo_is_unreliable_for_some_rows():
    """Importance ratios 1 / p(x_0 | draw) Pareto(0.5)-tailed over draws give row 0 a k near 2."""
    from bayesgmm.cli._report import _loo_line

    rng = np.random.default_rng(0)
    ll = rng.normal(-1.0, 0.1, size=(2, 500, 20))
    ll[..., 0] = -np.log1p(rng.pareto(0.5, size=(2, 500)))
    idata = az.from_dict(posterior={"mu": ll[..., 1]}, log_likelihood={"X": ll}, dims={"X": ["obs"]})
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # ArviZ's own warning about the same k
        lines = _loo_line(idata).splitlines()
    assert lines[1].startswith("warning: 1 of 20 rows has Pareto k > 0.7")
    assert "--samples" in lines[1] and "PSIS-LOO is unreliable" in lines[1]
    ll[..., 0] = rng.normal(-1.0, 0.1, size=(2, 500))
    idata = az.from_dict(posterior={"mu": ll[..., 1]}, log_likelihood={"X": ll}, dims={"X": ["obs"]})
    assert "warning" not in _loo_line(idata)
    ll[..., :2] = -np.log1p(rng.pareto(0.5, size=(2, 500, 2)))
    idata = az.from_dict(posterior={"mu": ll[..., 2]}, log_likelihood={"X": ll}, dims={"X": ["obs"]})
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert _loo_line(idata).splitlines()[1].startswith("warning: 2 of 20 rows have Pareto k > 0.7")


def test_report_of_a_sparse_or_dp_fit_gives_the_posterior_of_occupied_components(fits):
    from bayesgmm.cli._report import bayes_report
    from bayesgmm.posterior.n_components import n_components_posterior

    idata = load(fits["svi"]["model"]).idata_
    assert "occupied components" not in fits["svi"]["stdout"]  # a Dirichlet fit: K is given
    idata.attrs["weight_prior"] = "sparse"
    line = next(x for x in bayes_report(idata).splitlines() if x.startswith("occupied components"))
    table = n_components_posterior(idata)
    expected = {int(k): round(p, 2) for k, p in table["probability"].items() if p >= 0.005}
    shown = line.split(": ", 1)[1].split(";")[0]
    assert {int(k): float(p) for k, p in (kp.split(": ") for kp in shown.split(", "))} == expected
    assert line.endswith(f"most probable {table.attrs['mode']}")


def test_em_fit_takes_mclust_models_and_summary_shows_their_covariances(tmp_path, capsys):
    path = tmp_path / "vev.nc"
    status, out, err = run(
        capsys, "fit", "--inference", "em", "-k", 2, "--covariance-type", "VEV", "--output", path
    )
    assert status == 0, err
    model = load(path)
    ref = bayesgmm.GaussianMixture(2, covariance_type="VEV", n_init=5, random_state=0).fit(FAITHFUL)
    assert model.covariance_type == "VEV"
    np.testing.assert_allclose(model.covariances_, ref.covariances_, rtol=1e-10)
    status, out, _ = run(capsys, "summary", path)
    assert status == 0
    # Each component's full matrix (VEV is stored in scikit-learn's full layout), as pandas prints it.
    for cov in ref.covariances_:
        assert all(f"{c:.3f}" in out for c in (cov[0, 0], cov[0, 1], cov[1, 1])), out


@pytest.mark.parametrize("inference", ["svi", "nuts"])
def test_bayesian_fit_refuses_a_model_only_em_fits(capsys, inference):
    status, _, err = run(capsys, "fit", "--inference", inference, "--covariance-type", "EVV")
    assert_one_error(status, err, "EVV", "EM only", "use --inference em", f"--inference {inference}")
    # The types it names are the ones a Bayesian fit takes.
    for name in err.split("choose one of ")[1].rstrip(".\n").split(", "):
        assert check_covariance_type(name)


def test_unknown_covariance_type_is_a_usage_error(capsys):
    status, _, err = run(capsys, "fit", "--covariance-type", "XYZ")
    assert status == 2 and "XYZ" in err and "Traceback" not in err


def test_select_k_compares_mclust_models(capsys):
    status, out, _ = run(capsys, "select-k", "--max-k", 2, "--covariance-type", "EII", "VVV")
    assert status == 0
    table = compare_n_components(FAITHFUL, range(1, 3), ("EII", "VVV"))
    assert table.to_string() in out


def _stopped_by_the_elbo_test(elbo, chunk, lag_steps, tol):
    """Brute force of the stopping rule on an ELBO trace (restart, step): its last two chunks converged."""
    chunks = np.split(-elbo, elbo.shape[1] // chunk, axis=1)
    lag = min(len(chunks) - 2, lag_steps // chunk)
    for last in (-2, -1):
        before, now = chunks[last - lag], chunks[last]
        se = np.sqrt(before.var(axis=1) / chunk + now.var(axis=1) / chunk)
        gain = before.mean(axis=1) - now.mean(axis=1)
        if not np.all(gain < np.maximum(tol * lag * np.abs(now.mean(axis=1)), 2 * se)):
            return False
    return True


def test_svi_fit_says_it_converged_early_after_how_many_steps_and_by_what_test(fits, capsys):
    idata = load(fits["svi"]["model"]).idata_
    attrs = idata.attrs
    n_steps = idata.elbo_trace.sizes["step"]
    assert attrs["n_steps"] == n_steps < attrs["max_steps"] and attrs["converged"] == 1
    assert _stopped_by_the_elbo_test(
        idata.elbo_trace["elbo"].values, attrs["chunk_size"], attrs["convergence_lag_steps"], attrs["tol"]
    )
    line = next(x for x in fits["svi"]["stdout"].splitlines() if x.startswith("SVI converged"))
    assert line.startswith(f"SVI converged early, after {n_steps} of {attrs['max_steps']} steps")
    assert f"{attrs['chunk_size']}-step chunk" in line and "2 standard errors" in line
    assert f"tol={attrs['tol']:g}" in line and "two chunks in a row" in line
    status, out, _ = run(capsys, "summary", fits["svi"]["model"])
    assert status == 0 and line in out


def test_svi_that_ran_all_its_steps_says_it_did_not_converge():
    from bayesgmm.cli._report import svi_convergence

    title, line = svi_convergence({"n_steps": 20000, "converged": 0, "max_steps": 20000})
    assert title == "SVI did not converge in 20000 steps" and line.startswith(title)


def test_summary_headers_name_method_model_and_data(fits, capsys):
    for name in ("svi", "nuts"):
        status, out, _ = run(capsys, "summary", fits[name]["model"])
        assert status == 0
        assert (
            out.splitlines()[0]
            == f"{name.upper()} fit of 2 full components to faithful (weight prior dirichlet)"
        )


def test_nuts_table_footer_and_warnings_show_r_hat_alike(fits):
    out = fits["nuts"]["stdout"]
    table = out.split("\n", 1)[1].split("\n\n")[0].splitlines()
    assert table[0].split()[-2:] == ["r_hat", "relabel"]  # row names hold spaces: count from the right
    r_hats = [row.split()[-2] for row in table[1:]]
    assert all(len(r.split(".")[1]) == 3 for r in r_hats), r_hats
    footer = next(x for x in out.splitlines() if x.startswith("max R-hat"))
    assert footer.split()[2] == max(r_hats, key=float)
    assert "good values: r_hat < 1.01, ess_bulk > 400, Pareto k < 0.7" in out
    assert "good values: Pareto k < 0.7" in fits["svi"]["stdout"]


def test_plot_titles_say_how_svi_stopped_and_which_features_are_shown(fits, tmp_path, monkeypatch, capsys):
    import matplotlib.figure

    titles = {}

    def record(fig, path, **kwargs):
        titles[str(path).rsplit("/", 1)[-1]] = fig.axes[0].get_title()

    monkeypatch.setattr(matplotlib.figure.Figure, "savefig", record)
    status, _, err = run(capsys, "plot", fits["svi"]["model"], "--output-dir", tmp_path)
    assert status == 0, err
    n_steps = load(fits["svi"]["model"]).idata_.attrs["n_steps"]
    assert titles["elbo.png"] == f"SVI converged early, after {n_steps} of 20000 steps"
    assert "eruptions (x), waiting (y)" in titles["ellipses.png"]
    model = tmp_path / "iris.nc"
    status, _, err = run(
        capsys, "fit", "--data", "iris", "--inference", "em", "--n-init", 1, "--output", model
    )
    assert status == 0, err
    status, _, err = run(capsys, "plot", model, "--data", "iris", "--output-dir", tmp_path)
    assert status == 0, err
    names = load_dataset("iris", as_frame=True).select_dtypes("number").columns
    assert f"first 2 of 4 features: {names[0]} (x), {names[1]} (y)" in titles["ellipses.png"]


def test_bare_command_prints_the_help(capsys):
    status, out, err = run(capsys)
    assert status == 0 and err == ""
    assert out.startswith("usage: bayesgmm") and "select-k" in out


def test_progress_bars_are_drawn_on_a_terminal_only(monkeypatch):
    from bayesgmm.cli._commands import _estimator
    from bayesgmm.cli._parser import build_parser

    args = build_parser().parse_args(["fit", "--inference", "svi"])
    assert _estimator(args).progress_bar is False  # pytest's stderr is not a terminal
    monkeypatch.setattr(sys.stderr, "isatty", lambda: True, raising=False)
    assert _estimator(args).progress_bar is True
    no_progress = build_parser().parse_args(["fit", "--inference", "svi", "--no-progress"])
    assert _estimator(no_progress).progress_bar is False


def test_fit_help_names_the_covariance_types_of_each_method(capsys):
    status, out, _ = run(capsys, "fit", "--help")
    flat = " ".join(out.split())
    assert status == 0
    assert "--inference nuts and svi take full, tied, diag, spherical, EII, EEI, VVV, EEE, VVI, VII" in flat
    em_only = flat.split("--inference em takes those and ")[1].split(" (default")[0].split(", ")
    for name in em_only:
        with pytest.raises(ValueError, match="EM only"):
            check_covariance_type(name)
    assert "EVV" in em_only and "row, is the 0-based index of the data row" in flat
