"""What an EM fit tells its user about its restarts: the best one, collapses, empty components."""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np
from sklearn.exceptions import ConvergenceWarning

_COLLAPSE_ADVICE = (
    "increase reg_covar (e.g. to 1e-4 or 1e-3 times the data variance), use fewer components, "
    "or try another init_params / random_state / more n_init"
)


def warn_empty(weights: np.ndarray, total_weight: float, eps: float) -> None:
    """Warn when a component holds (almost) no observation: the fit has fewer components."""
    # The M-step gives an empty component a count of 10 eps (scikit-learn's floor).
    floor = max(_EMPTY_COUNT, 100 * eps)
    empty = np.nonzero(np.asarray(weights, np.float64) * total_weight < floor)[0]
    if empty.size:
        warnings.warn(
            f"{empty.size} of {len(weights)} components hold no observation (components "
            f"{empty.tolist()}: effective count below {floor:.2g}); they sit at their "
            "regularised covariance and the fit has fewer components than asked. Use fewer "
            "n_components, another init_params or random_state, or more n_init.",
            UserWarning,
            stacklevel=3,
        )


#: Effective number of observations below which a component counts as empty.
_EMPTY_COUNT = 1e-6


_TIE_RTOL = 1e-12


def pick_best(state: Any, max_iter: int) -> int:
    """Return the restart with the largest lower bound among those that did not collapse."""
    ok = np.asarray(state.ok)
    if not ok.any():
        # scikit-learn's message first, for code that matches on it.
        raise ValueError(
            "Fitting the mixture model failed because some components have ill-defined empirical "
            "covariance (for instance caused by singleton or collapsed samples). Try to decrease the "
            "number of components, increase reg_covar, or scale the input data. In every restart a "
            "component's covariance stopped being positive definite (with reg_covar=0, an empty or "
            "single-point component does). To fix it, " + _COLLAPSE_ADVICE + "."
        )
    if not ok.all():
        warnings.warn(
            f"{int((~ok).sum())} of {ok.size} EM restarts collapsed and were discarded; "
            + _COLLAPSE_ADVICE
            + ".",
            UserWarning,
            stacklevel=3,
        )
    lb = np.where(ok, np.asarray(state.lower_bound), -np.inf)
    if max_iter == 0:
        return int(np.argmax(ok))
    # Restarts that reach the same optimum (often with the components in another order) differ
    # only by rounding, which depends on how the rows were summed (devices, processes, chunks):
    # the first of those ties is kept, so the choice does not depend on the layout.
    top = lb.max()
    return int(np.flatnonzero(lb >= top - _TIE_RTOL * max(1.0, abs(top)))[0])


def warn_not_converged(result: Any, max_iter: int, tol: float) -> None:
    """Warn when the best restart did not converge within ``max_iter`` iterations."""
    if max_iter > 0 and not result.converged:
        warnings.warn(
            f"EM did not converge: the best restart's mean log-likelihood still changed by more than "
            f"tol={tol} after max_iter={max_iter} iterations. Increase max_iter, loosen tol, or try "
            "another init_params or more n_init.",
            ConvergenceWarning,
            stacklevel=3,
        )


def print_history(estimator: Any) -> None:
    """Print a fitted estimator's lower bounds every ``verbose_interval`` iterations, as scikit-learn does."""
    lbs, interval = estimator.lower_bounds_, estimator.verbose_interval
    for i in range(interval - 1, len(lbs), interval):
        change = lbs[i] - (lbs[i - 1] if i else -np.inf)
        print(f"  Iteration {i + 1}\t lower bound {lbs[i]:.5f}\t change {change:.5f}")
    state = "converged" if estimator.converged_ else "did not converge"
    print(
        f"Best initialization {state} after {estimator.n_iter_} iterations; "
        f"lower bound {estimator.lower_bound_:.5f}."
    )
