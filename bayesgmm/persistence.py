"""Save fitted estimators to one netCDF file and load them back, without pickle.

A saved model is an ``arviz.InferenceData`` written by ``InferenceData.to_netcdf``, so
``arviz.from_netcdf`` opens every saved file. What makes it a bayesgmm model are the
file's own (root) attributes:

- ``bayesgmm_format``: ``"bayesgmm.model"``, the marker :func:`load` looks for;
- ``bayesgmm_format_version``: the layout's version (:data:`FORMAT_VERSION`); :func:`load`
  refuses files written by a newer one;
- ``bayesgmm_class``: the estimator's class name, ``"GaussianMixture"`` or ``"BayesianGMM"``;
- ``bayesgmm_params``: ``get_params()`` as JSON (arrays, tuples, ``Priors``, ``EMPrior``,
  NumPy random states and JAX keys are tagged so that they come back as they were);
- ``bayesgmm_version``: the ``bayesgmm.__version__`` that wrote the file;
- ``bayesgmm_n_features_in`` and ``bayesgmm_feature_names_in`` (JSON, ``null`` when the
  training data had no column names).

``BayesianGMM`` stores its ``idata_`` as it is (posterior, standardisation in ``constant_data``, the
fit's attributes and the noise's box), plus the attributes above. ``GaussianMixture`` stores its fitted
arrays (``weights_``, ``means_``, ``covariances_``, ``precisions_``, ``precisions_cholesky_``,
``converged_``, ``n_iter_``, ``lower_bound_``, ``lower_bounds_``; ``noise_weight_``, ``noise_volume_``,
``noise_lower_``, ``noise_upper_`` with noise) in ``constant_data``; not its ``em_result_`` (the data).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import arviz as az
import jax
import jax.numpy as jnp
import numpy as np
import xarray as xr
from sklearn.base import BaseEstimator

from bayesgmm.inference.em.mclust_models import sklearn_layout
from bayesgmm.inference.em.mstep import EMPrior
from bayesgmm.priors import Priors

FORMAT = "bayesgmm.model"
#: The layout written now; files of a higher version are refused by :func:`load`.
FORMAT_VERSION = 1
#: Root attributes written by :func:`save_model`; removed again from a loaded ``idata_``.
ATTR_KEYS = (
    "bayesgmm_format",
    "bayesgmm_format_version",
    "bayesgmm_class",
    "bayesgmm_params",
    "bayesgmm_version",
    "bayesgmm_n_features_in",
    "bayesgmm_feature_names_in",
)
#: The fitted arrays of ``GaussianMixture`` and their dims after ``component``/``feature``.
EM_ARRAYS = ("weights_", "means_", "covariances_", "precisions_", "precisions_cholesky_")
EM_SCALARS = {"converged_": bool, "n_iter_": int, "lower_bound_": float}
#: Saved only for a fit with ``noise="uniform"`` (the box: dims feature); None where absent (older files).
NOISE_SCALARS, NOISE_BOX = ("noise_weight_", "noise_volume_"), ("noise_lower_", "noise_upper_")
_COVARIANCE_DIMS = {
    "full": ("component", "feature", "feature_col"),
    "tied": ("feature", "feature_col"),
    "diag": ("component", "feature"),
    "spherical": ("component",),
}


def encode_params(params: dict) -> str:
    """Write estimator parameters (``get_params()``) as JSON.

    Parameters
    ----------
    params : dict
        Values may be None, numbers, strings, lists, tuples, dicts with string keys,
        NumPy arrays, ``Priors``, ``EMPrior``, NumPy ``RandomState`` / ``Generator``
        and JAX arrays.

    Returns
    -------
    str

    Raises
    ------
    TypeError
        For a value of another type, naming the parameter.

    Examples
    --------
    >>> text = encode_params({"means_init": np.zeros((2, 1)), "n_components": 2})
    >>> decode_params(text)["means_init"].shape
    (2, 1)
    """
    encoded = {}
    for name, value in params.items():
        try:
            encoded[name] = _encode(value)
        except TypeError as err:
            raise TypeError(f"Cannot save parameter {name}={value!r}: {err}") from None
    return json.dumps(encoded)


def _encode(value):
    if value is None or isinstance(value, bool | str):
        return value
    if isinstance(value, np.bool_ | np.integer | np.floating):
        return value.item()
    if isinstance(value, int | float):
        return value
    if isinstance(value, Priors):
        return {"__priors__": value.to_dict()}
    if isinstance(value, EMPrior):
        return {"__emprior__": {k: _encode(v) for k, v in value._asdict().items()}}
    if isinstance(value, np.random.RandomState):
        return {"__random_state__": _encode(value.get_state(legacy=False))}
    if isinstance(value, np.random.Generator):
        return {"__generator__": _encode(value.bit_generator.state)}
    if isinstance(value, jax.Array):
        return {"__jax_array__": _encode(np.asarray(value))}
    if isinstance(value, np.ndarray) and value.dtype.kind in "biuf":
        return {"__ndarray__": {"data": value.tolist(), "dtype": value.dtype.str, "shape": value.shape}}
    if isinstance(value, tuple):
        return {"__tuple__": [_encode(v) for v in value]}
    if isinstance(value, list):
        return [_encode(v) for v in value]
    if isinstance(value, dict) and all(isinstance(k, str) for k in value):
        return {k: _encode(v) for k, v in value.items()}
    raise TypeError(f"{type(value).__name__} values cannot be written as JSON")


def decode_params(text: str) -> dict:
    """Read parameters written by :func:`encode_params`.

    Parameters
    ----------
    text : str

    Returns
    -------
    dict
        Arrays, tuples, ``Priors``, ``EMPrior``, random states and JAX arrays rebuilt.

    Examples
    --------
    >>> decode_params(encode_params({"priors": Priors(mean_scale=3.0)}))["priors"].mean_scale
    3.0
    """
    return json.loads(text, object_hook=_decode)


def _decode(obj: dict):
    if len(obj) != 1:
        return obj
    ((tag, value),) = obj.items()
    if tag == "__ndarray__":
        return np.array(value["data"], dtype=value["dtype"]).reshape(value["shape"])
    if tag == "__tuple__":
        return tuple(value)
    if tag == "__priors__":
        return Priors(**value)
    if tag == "__emprior__":
        return EMPrior(**{k: jnp.asarray(v) for k, v in value.items()})
    if tag == "__jax_array__":
        return jnp.asarray(value)
    if tag == "__random_state__":
        rs = np.random.RandomState()
        rs.set_state(value)
        return rs
    if tag == "__generator__":
        bit_generator = getattr(np.random, value["bit_generator"])()
        bit_generator.state = value
        return np.random.Generator(bit_generator)
    return obj


def gaussian_mixture_data(estimator: BaseEstimator) -> az.InferenceData:
    """Put the fitted arrays of a ``GaussianMixture`` in an InferenceData (``constant_data``).

    Parameters
    ----------
    estimator : GaussianMixture
        Fitted.

    Returns
    -------
    arviz.InferenceData
        One group, ``constant_data``: the arrays of ``EM_ARRAYS`` with dims ``component``, ``feature``,
        ``feature_col`` (by covariance type), the scalars of ``EM_SCALARS``, ``lower_bounds_`` (dim
        ``iteration``) and with noise ``NOISE_SCALARS`` and the box ``NOISE_BOX`` (dim ``feature``).

    Examples
    --------
    >>> from bayesgmm import GaussianMixture
    >>> X = np.array([[0.0], [0.1], [5.0], [5.2]])
    >>> gm = GaussianMixture(2, covariance_type="diag", random_state=0).fit(X)
    >>> dict(gaussian_mixture_data(gm).constant_data["covariances_"].sizes)
    {'component': 2, 'feature': 1}
    """
    cov_dims = _COVARIANCE_DIMS[sklearn_layout(estimator.covariance_type)]
    dims = {"weights_": ("component",), "means_": ("component", "feature")}
    variables = {name: (dims.get(name, cov_dims), getattr(estimator, name)) for name in EM_ARRAYS}
    variables |= {name: ((), np.asarray(getattr(estimator, name))) for name in EM_SCALARS}
    variables["lower_bounds_"] = (("iteration",), np.asarray(estimator.lower_bounds_, np.float64))
    if getattr(estimator, "noise_weight_", None) is not None:  # absent: a fit without noise
        variables |= {name: ((), np.float64(getattr(estimator, name))) for name in NOISE_SCALARS}
        boxes = [name for name in NOISE_BOX if getattr(estimator, name, None) is not None]
        variables |= {n: (("feature",), np.asarray(getattr(estimator, n), np.float64)) for n in boxes}
    return az.InferenceData(constant_data=xr.Dataset(variables))


def gaussian_mixture_attributes(idata: az.InferenceData) -> dict:
    """Read the fitted attributes of a ``GaussianMixture`` back from :func:`gaussian_mixture_data`.

    Parameters
    ----------
    idata : arviz.InferenceData

    Returns
    -------
    dict
        Attribute name to value: arrays as saved, ``converged_`` a bool, ``n_iter_`` an
        int, ``lower_bound_`` a float and ``lower_bounds_`` a list of floats.

    Examples
    --------
    >>> from bayesgmm import GaussianMixture
    >>> X = np.array([[0.0], [0.1], [5.0], [5.2]])
    >>> gm = GaussianMixture(2, random_state=0).fit(X)
    >>> gaussian_mixture_attributes(gaussian_mixture_data(gm))["n_iter_"] == gm.n_iter_
    True
    """
    ds = idata.constant_data
    attributes = {name: ds[name].values for name in EM_ARRAYS}
    attributes |= {name: kind(ds[name].values.item()) for name, kind in EM_SCALARS.items()}
    attributes["lower_bounds_"] = [float(v) for v in ds["lower_bounds_"].values]
    attributes |= {name: float(ds[name].values) if name in ds else None for name in NOISE_SCALARS}
    attributes |= {name: ds[name].values if name in ds else None for name in NOISE_BOX}
    return attributes


def save_model(estimator: BaseEstimator, idata: az.InferenceData, path: str | os.PathLike) -> None:
    """Write a fitted estimator's data and settings to one netCDF file.

    Parameters
    ----------
    estimator : GaussianMixture or BayesianGMM
        Fitted; its class name, ``get_params()`` and feature names go in the file's attributes.
    idata : arviz.InferenceData
        What the estimator's predictions need; not modified (a shallow copy gets the attributes).
    path : str or path-like
        Overwritten if it exists.

    Examples
    --------
    >>> import os, tempfile
    >>> from bayesgmm import GaussianMixture
    >>> gm = GaussianMixture(2, random_state=0).fit(np.array([[0.0], [0.1], [5.0], [5.2]]))
    >>> path = os.path.join(tempfile.mkdtemp(), "gm.nc")
    >>> save_model(gm, gaussian_mixture_data(gm), path)
    >>> az.from_netcdf(path).attrs["bayesgmm_class"]
    'GaussianMixture'
    """
    from bayesgmm import __version__

    names = getattr(estimator, "feature_names_in_", None)
    meta = {
        "bayesgmm_format": FORMAT,
        "bayesgmm_format_version": FORMAT_VERSION,
        "bayesgmm_class": type(estimator).__name__,
        "bayesgmm_params": encode_params(estimator.get_params()),
        "bayesgmm_version": __version__,
        "bayesgmm_n_features_in": int(estimator.n_features_in_),
        "bayesgmm_feature_names_in": json.dumps(None if names is None else [str(n) for n in names]),
    }
    groups = {group: idata[group] for group in idata.groups()}
    az.InferenceData(attrs={**idata.attrs, **meta}, **groups).to_netcdf(str(path))


def read_model(path: str | os.PathLike) -> tuple[str, dict, az.InferenceData, dict]:
    """Read a file written by :func:`save_model`, refusing anything else with a ValueError.

    Parameters
    ----------
    path : str or path-like

    Returns
    -------
    class_name : str
    params : dict
        The estimator's ``get_params()``.
    idata : arviz.InferenceData
        Loaded into memory, the ``bayesgmm_*`` attributes removed.
    fitted : dict
        ``n_features_in_`` and, when the training data had column names, ``feature_names_in_``.

    Raises
    ------
    FileNotFoundError
        When ``path`` is not a file.
    ValueError
        When the file is not netCDF (corrupt, truncated), not a bayesgmm model, or of a
        newer format version.

    Examples
    --------
    >>> import os, tempfile
    >>> path = os.path.join(tempfile.mkdtemp(), "plain.nc")
    >>> _ = az.from_dict(posterior={"mu": np.zeros((1, 5))}).to_netcdf(path)
    >>> read_model(path)  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    ValueError: ... is a netCDF file but not a bayesgmm model ...
    """
    idata = _read_netcdf(path)
    attrs = dict(idata.attrs)
    if attrs.get("bayesgmm_format") != FORMAT:
        raise ValueError(
            f"{path} is a netCDF file but not a bayesgmm model (no bayesgmm_format={FORMAT!r} "
            "attribute): open it with arviz.from_netcdf, or save a fitted estimator with its "
            "save method and load that file."
        )
    version = attrs.get("bayesgmm_format_version")
    if not isinstance(version, int | np.integer) or version < 1:
        raise ValueError(f"{path} has an invalid bayesgmm_format_version {version!r}: save the model again.")
    if version > FORMAT_VERSION:
        raise ValueError(
            f"{path} is a bayesgmm model in format version {int(version)}, written by bayesgmm "
            f"{attrs.get('bayesgmm_version')}; this bayesgmm reads format versions up to "
            f"{FORMAT_VERSION}: upgrade bayesgmm to load it."
        )
    missing = [key for key in ATTR_KEYS if key not in attrs]
    if missing:
        raise ValueError(f"{path} is a damaged bayesgmm model (no {', '.join(missing)}): save it again.")
    fitted = {"n_features_in_": int(attrs["bayesgmm_n_features_in"])}
    names = json.loads(attrs["bayesgmm_feature_names_in"])
    if names is not None:
        fitted["feature_names_in_"] = np.asarray(names, dtype=object)
    idata.attrs = {k: v for k, v in attrs.items() if k not in ATTR_KEYS}
    return str(attrs["bayesgmm_class"]), decode_params(attrs["bayesgmm_params"]), idata, fitted


def _read_netcdf(path):
    if not Path(path).is_file():
        raise FileNotFoundError(f"No saved model at {path}: give the path that a save method wrote.")
    try:
        # Eagerly, so that the file is closed when this returns (arviz loads lazily by default).
        with az.rc_context({"data.load": "eager"}):
            return az.from_netcdf(str(path))
    except Exception as err:  # h5py, h5netcdf and xarray each raise their own on damaged files
        raise ValueError(
            f"{path} is not a readable netCDF file (corrupt or truncated?): {err}. "
            "Save the model again with its save method."
        ) from err


def load(path: str | os.PathLike) -> BaseEstimator:
    """Load an estimator saved by ``GaussianMixture.save`` or ``BayesianGMM.save``.

    Parameters
    ----------
    path : str or path-like
        A file written by a ``save`` method.

    Returns
    -------
    GaussianMixture or BayesianGMM
        Fitted, of the class that was saved, with the same parameters; its predictions
        equal those of the saved estimator.

    Raises
    ------
    FileNotFoundError
        When ``path`` is not a file.
    ValueError
        When the file is corrupt or truncated, is not a bayesgmm model, was written in a
        newer format version, or names an unknown estimator class.

    Examples
    --------
    >>> import os, tempfile, numpy as np
    >>> from bayesgmm import GaussianMixture
    >>> X = np.array([[0.0], [0.1], [5.0], [5.2]])
    >>> gm = GaussianMixture(2, random_state=0).fit(X)
    >>> path = os.path.join(tempfile.mkdtemp(), "gm.nc")
    >>> gm.save(path)
    >>> load(path).predict(X).tolist() == gm.predict(X).tolist()
    True
    """
    from bayesgmm.estimators import BayesianGMM, GaussianMixture

    classes = {cls.__name__: cls for cls in (GaussianMixture, BayesianGMM)}
    class_name, params, idata, fitted = read_model(path)
    if class_name not in classes:
        raise ValueError(
            f"{path} holds a bayesgmm model of class {class_name!r}, which this bayesgmm does not "
            f"know (it loads {', '.join(classes)}): load it with the bayesgmm that saved it."
        )
    estimator = classes[class_name](**params)
    estimator._set_fitted(idata)
    for name, value in fitted.items():
        setattr(estimator, name, value)
    return estimator
