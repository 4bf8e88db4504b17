"""The subcommands ``fit``, ``summary``, ``predict`` and ``select-k``; each returns an exit status."""

from __future__ import annotations

import argparse
import sys
from typing import TYPE_CHECKING

from bayesgmm.cli._data import check_writable, read_data, select_columns
from bayesgmm.cli._errors import FIT_FAILED, OK, CliError
from bayesgmm.cli._parser import BAYES_COVARIANCE_TYPES
from bayesgmm.cli._report import bayes_report, em_report, fit_header, write_memberships

if TYPE_CHECKING:
    import pandas as pd


def _estimator(args: argparse.Namespace):
    if args.inference == "em":
        from bayesgmm import GaussianMixture

        return GaussianMixture(
            args.n_components,
            covariance_type=args.covariance_type,
            n_init=args.n_init,
            random_state=args.seed,
        )
    # Chains run in parallel on the CPU devices importing bayesgmm asked JAX for (see
    # bayesgmm._devices); more chains than devices are vectorised.
    from bayesgmm import BayesianGMM

    return BayesianGMM(
        args.n_components,
        args.covariance_type,
        inference=args.inference,
        weight_prior=args.weight_prior,
        num_warmup=args.warmup,
        num_samples=args.samples,
        num_chains=args.chains,
        random_state=args.seed,
        # Animated bars in a log or a pipe are control codes: draw them on a terminal only.
        progress_bar=not args.no_progress and sys.stderr.isatty(),
    )


def _check_fit_args(args: argparse.Namespace) -> None:
    if args.inference == "em" and args.weight_prior != "dirichlet":
        raise CliError(
            f"--weight-prior {args.weight_prior} needs a Bayesian fit: add --inference nuts or svi, "
            "or drop --weight-prior for EM."
        )
    if args.inference != "em":
        from bayesgmm._validation import check_covariance_type

        try:  # the Bayesian fits take fewer covariance models than EM: say so before reading data
            check_covariance_type(args.covariance_type)
        except ValueError:
            raise CliError(
                f"--covariance-type {args.covariance_type} is fitted by EM only: use --inference em, or "
                f"with --inference {args.inference} choose one of {', '.join(BAYES_COVARIANCE_TYPES)}."
            ) from None
    for option, path in (("--output", args.output), ("--memberships", args.memberships)):
        if path is not None:
            check_writable(path, option)


def _fitted(model, X: pd.DataFrame):
    try:
        return model.fit(X)
    except Exception as err:  # the data was checked: what is left is the fit itself failing
        raise CliError(
            f"the fit failed ({type(err).__name__}: {err}); try another --seed, fewer components "
            "or another --covariance-type.",
            FIT_FAILED,
        ) from err


def _em_criteria(model, X: pd.DataFrame, data: str) -> dict:
    """Training log-likelihood, BIC and AIC of an EM fit, which ``summary`` prints from the file."""
    return {
        "data": data,
        "n_obs": int(X.shape[0]),
        "log_likelihood": float(model.score(X) * X.shape[0]),
        "bic": float(model.bic(X)),
        "aic": float(model.aic(X)),
    }


def _save_em(model, attrs: dict, path: str) -> None:
    import arviz as az

    from bayesgmm import persistence

    idata = persistence.gaussian_mixture_data(model)
    persistence.save_model(model, az.InferenceData(attrs=attrs, constant_data=idata.constant_data), path)


def _save(model, criteria: dict | None, path: str) -> None:
    try:
        if criteria is None:
            model.save(path)
        else:
            _save_em(model, criteria, path)
    except OSError as err:  # checked before the fit, but the disk may have filled up since
        raise CliError(f"cannot write --output {path} ({err}): choose another path.") from err


def run_fit(args: argparse.Namespace) -> int:
    """``bayesgmm fit``: fit, print the summary, save the model and the memberships if asked."""
    _check_fit_args(args)
    X = select_columns(read_data(args.data), args.columns)
    if X.shape[0] < args.n_components:
        raise CliError(
            f"{args.data} has {X.shape[0]} rows, fewer than -k {args.n_components}: choose a smaller -k."
        )
    print(
        f"Fitting {args.n_components} {args.covariance_type} components to {args.data} "
        f"({X.shape[0]} obs x {X.shape[1]} features: {', '.join(X.columns)}) by {args.inference}",
        flush=True,
    )
    model = _fitted(_estimator(args), X)
    criteria = _em_criteria(model, X, args.data) if args.inference == "em" else None
    if criteria is None:
        # Saved with the model, so that 'bayesgmm summary' names the data as EM's summary does.
        model.idata_.attrs["data"] = args.data
    print(bayes_report(model.idata_) if criteria is None else em_report(model, criteria))
    if args.output:
        _save(model, criteria, args.output)
        print(f"model written to {args.output}")
    if args.memberships:
        write_memberships(model.predict_proba(X), args.memberships)
        print(f"memberships written to {args.memberships}")
    return OK


def load_model(path: str):
    """Load a model written by ``bayesgmm fit --output``, or say why the file is not one.

    Parameters
    ----------
    path : str

    Returns
    -------
    bayesgmm.GaussianMixture or bayesgmm.BayesianGMM

    Raises
    ------
    CliError
        For a missing file, a directory, or a file that is not a bayesgmm model.
    """
    from pathlib import Path

    from bayesgmm import load

    hint = "MODEL must be a file written by 'bayesgmm fit --output MODEL'."
    if not Path(path).exists():
        raise CliError(f"no model file at {path}: {hint}")
    if Path(path).is_dir():
        raise CliError(f"{path} is a directory, not a model file: {hint}")
    try:
        return load(path)
    except OSError as err:
        raise CliError(f"cannot read {path} ({err}): {hint}") from err
    except ValueError as err:
        text = str(err)
        if "save" not in text.lower():  # a newer file format: the message says to upgrade
            raise CliError(text) from err
        # The library's advice is about Python's save methods; keep what is wrong, say the CLI way.
        what = text[len(str(path)) :] if text.startswith(str(path)) else text
        raise CliError(f"{path}{what.split(': ', 1)[0]}: {hint}") from err


def run_summary(args: argparse.Namespace) -> int:
    """``bayesgmm summary``: the saved model's summary, as ``fit`` prints it."""
    model = load_model(args.model)
    if type(model).__name__ == "GaussianMixture":
        from bayesgmm import persistence

        attrs = persistence.read_model(args.model)[2].attrs
        print(fit_header("em", model.n_components, model.covariance_type, attrs))
        print(em_report(model, attrs))
        return OK
    attrs = {"weight_prior": model.weight_prior, **model.idata_.attrs}
    print(fit_header(model.inference, model.n_components, model.covariance_type, attrs))
    print(bayes_report(model.idata_))
    return OK


def model_columns(model, data: str, columns: str | None) -> pd.DataFrame | object:
    """Read the columns of ``data`` a saved model predicts from, checked against its features.

    Parameters
    ----------
    model : bayesgmm.GaussianMixture or bayesgmm.BayesianGMM
    data : str
        ``--data``.
    columns : str or None
        ``--columns``; given, they are the model's features in order, whatever their names.
        Without them, the model's own feature names are looked up in the data.

    Returns
    -------
    pandas.DataFrame, or ndarray when the model was fitted without column names
    """
    frame = read_data(data)
    names = getattr(model, "feature_names_in_", None)
    if columns is None and names is not None:
        missing = [str(n) for n in names if str(n) not in map(str, frame.columns)]
        if missing:
            raise CliError(
                f"the model was fitted on columns {', '.join(map(str, names))}; {data} lacks "
                f"{', '.join(missing)}: name the columns to use, in that order, with --columns."
            )
        columns = [str(n) for n in names]
    X = select_columns(frame, columns)
    if X.shape[1] != model.n_features_in_:
        raise CliError(
            f"the model was fitted on {model.n_features_in_} features but {data} gives {X.shape[1]} "
            f"({', '.join(X.columns)}): choose {model.n_features_in_} columns with --columns."
        )
    return X.to_numpy() if names is None else X.set_axis([str(n) for n in names], axis=1)


def run_predict(args: argparse.Namespace) -> int:
    """``bayesgmm predict``: membership probabilities of ``--data`` under a saved model."""
    if args.output:
        check_writable(args.output, "--output")
    model = load_model(args.model)
    probs = model.predict_proba(model_columns(model, args.data, args.columns))
    write_memberships(probs, args.output)
    if args.output:
        print(f"memberships of {len(probs)} rows written to {args.output}")
    return OK


def run_select_k(args: argparse.Namespace) -> int:
    """``bayesgmm select-k``: EM's BIC, AIC and ICL for K = 1, ..., ``--max-k``, and the pick."""
    X = select_columns(read_data(args.data), args.columns)
    if X.shape[0] < args.max_k:
        raise CliError(f"{args.data} has {X.shape[0]} rows, fewer than --max-k {args.max_k}: lower --max-k.")
    from bayesgmm import compare_n_components

    try:
        table = compare_n_components(
            X, range(1, args.max_k + 1), args.covariance_type, n_init=args.n_init, seed=args.seed
        )
    except Exception as err:  # the data was checked: what is left is the fits failing
        raise CliError(
            f"the comparison failed ({type(err).__name__}: {err}); try a smaller --max-k.", FIT_FAILED
        ) from err
    print(table.to_string())
    picks = table.attrs["recommended"]
    if "bic" not in picks:
        raise CliError("every EM fit failed, so no K can be recommended: check the data.", FIT_FAILED)
    k, cov = picks["bic"]
    others = ", ".join(f"{c.upper()} K = {kk} ({cc})" for c, (kk, cc) in picks.items() if c != "bic")
    print(f"\nrecommended K: {k} ({cov} covariances), the lowest BIC; {others}")
    return OK
