"""Priors of the Bayesian mixture, in standardised units, with weakly informative defaults."""

from __future__ import annotations

import numbers
from dataclasses import asdict, dataclass

import jax


@jax.tree_util.register_dataclass
@dataclass(frozen=True)
class Priors:
    """Hyperparameters of the Bayesian Gaussian mixture.

    The model is fitted to data standardised per feature (zero mean, unit
    standard deviation), so every default below is on that scale: it adapts to
    the data's units without the user doing anything. Results are reported in
    the user's units.

    Parameters
    ----------
    weight_concentration : float, default 1.0
        Concentration ``alpha`` of the symmetric Dirichlet prior on the weights.
        1 is uniform on the simplex; values well below 1 favour empty
        components (a sparse, overfitted mixture).
    mean_loc : float, default 0.0
        Prior mean of every component mean (standardised units).
    mean_scale : float, default 2.0
        Prior standard deviation of the component means: ``Normal(0, 2)`` puts
        95% of the mass within four data standard deviations of the data mean.
    scale_loc : float, default 0.5
        Median of the log-normal prior on each component standard deviation
        (per feature for ``full``/``diag``/``tied``, one for ``spherical``; one
        shared by every component and feature for ``EII``, per feature and shared by
        every component for ``EEI``).
    scale_scale : float, default 1.0
        Log-scale spread of that log-normal prior. With the defaults, 95% of the
        prior mass lies in about (0.07, 3.5) data standard deviations. A
        log-normal, unlike a half-normal, keeps mass away from zero, which
        discourages components collapsing onto single points.
    lkj_concentration : float, default 2.0
        Concentration ``eta`` of the LKJ prior on each correlation matrix
        (``full`` and ``tied``): 1 is uniform over correlation matrices, 2 shrinks
        gently towards independence.
    sparse_shape, sparse_rate : float, default 10.0, 1000.0
        Gamma(shape, rate) hyperprior on the Dirichlet concentration e0 of the
        sparse (overfitted) mixture, ``weight_prior="sparse"``: mean 0.01, 95% in
        about (0.005, 0.017). A very small e0 empties the components the data do
        not need (Malsiner-Walli, Fruehwirth-Schnatter & Gruen 2016). With e0 near
        0.1 a spare component is about as likely to sit on top of a cluster with a
        few per cent of its weight as to be empty, which inflates the number of
        occupied components (seen in this package's tests); a tight hyperprior
        keeps e0 small without fixing it.
    dp_shape, dp_rate : float, default 2.0, 4.0
        Gamma(shape, rate) hyperprior on the concentration alpha of the truncated
        Dirichlet process, ``weight_prior="dp"``: the choice of Escobar & West
        (1995) for the galaxy data, mean 0.5, 95% in about (0.06, 1.4).
    noise_concentration : float, default 0.2
        Concentration of the noise weight in the Dirichlet prior over the
        ``n_components + 1`` weights of a fit with ``noise="uniform"``
        (Dirichlet(``weight_concentration``, ..., ``noise_concentration``)). Below 1 it
        favours a small noise weight without forbidding a large one: with three
        components and the default ``weight_concentration`` the noise weight is
        Beta(0.2, 3): mean 0.06, median 0.008, 95% below 0.32.

    Notes
    -----
    ``Priors`` is a JAX pytree whose leaves are the values, so that a compiled sampler
    takes them as arguments: new values reuse it.

    Examples
    --------
    >>> Priors(weight_concentration=0.5).mean_scale
    2.0
    """

    weight_concentration: float = 1.0
    mean_loc: float = 0.0
    mean_scale: float = 2.0
    scale_loc: float = 0.5
    scale_scale: float = 1.0
    lkj_concentration: float = 2.0
    sparse_shape: float = 10.0
    sparse_rate: float = 1000.0
    dp_shape: float = 2.0
    dp_rate: float = 4.0
    noise_concentration: float = 0.2

    def __post_init__(self) -> None:
        """Refuse values that are not positive and finite.

        Other leaves (traced values, arrays, JAX's placeholders) are what JAX builds
        while it transforms a ``Priors``; it checks no such thing.
        """
        positive = ("weight_concentration", "mean_scale", "scale_loc", "scale_scale", "lkj_concentration")
        for name in (*positive, "sparse_shape", "sparse_rate", "dp_shape", "dp_rate", "noise_concentration"):
            value = getattr(self, name)
            if isinstance(value, (str, bytes, bool)):
                raise TypeError(f"Priors.{name} must be a number, got {value!r}.")
            if isinstance(value, numbers.Real) and not (0 < value < float("inf")):
                raise ValueError(f"Priors.{name} must be a positive finite number, got {value!r}.")

    def to_dict(self) -> dict:
        """Return the fields as a dict, for JSON (``InferenceData.attrs["priors"]``)."""
        return asdict(self)
