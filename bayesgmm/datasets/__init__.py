"""Small real data sets bundled with bayesgmm, with their provenance.

See ``bayesgmm/datasets/data/PROVENANCE.md`` for sources and licences.
"""

from __future__ import annotations

from importlib import resources

import numpy as np
import pandas as pd

_DATASETS = {
    "faithful": (
        "faithful.csv",
        "Old Faithful geyser, Yellowstone: eruption duration (min) and waiting time to the next "
        "eruption (min), 272 eruptions (Haerdle 1991; R datasets::faithful).",
    ),
    "galaxies": (
        "galaxies.csv",
        "Velocities (km/s) of 82 galaxies in the Corona Borealis region (Postman, Huchra & Geller "
        "1986; Roeder 1990; R MASS::galaxies).",
    ),
    "iris": (
        "iris.csv",
        "Fisher's / Anderson's iris: four measurements (cm) of 150 flowers of three species; "
        "the species is returned as ``target`` (R datasets::iris).",
    ),
}


def dataset_names() -> list[str]:
    """Names accepted by :func:`load_dataset`."""
    return sorted(_DATASETS)


def load_dataset(name: str, as_frame: bool = False) -> pd.DataFrame | tuple[np.ndarray, np.ndarray | None]:
    """Load a bundled data set.

    Parameters
    ----------
    name : {"faithful", "galaxies", "iris"}
    as_frame : bool, default False
        Return the whole table as a :class:`pandas.DataFrame` instead of arrays.

    Returns
    -------
    X : ndarray, shape (n_obs, n_features)
        The numeric features (galaxies has one feature, ``velocity``).
    target : ndarray, shape (n_obs,) or None
        Known labels where the data set has them (iris species), else None.
        Only returned when ``as_frame`` is False.

    Examples
    --------
    >>> X, _ = load_dataset("faithful")
    >>> X.shape
    (272, 2)
    """
    if name not in _DATASETS:
        raise ValueError(f"Unknown dataset {name!r}; choose one of {dataset_names()}.")
    path = resources.files(__package__) / "data" / _DATASETS[name][0]
    with resources.as_file(path) as p:
        frame = pd.read_csv(p)
    if as_frame:
        return frame
    target = None
    if "species" in frame:
        target = frame.pop("species").to_numpy()
    return frame.to_numpy(dtype=float), target


def describe_dataset(name: str) -> str:
    """Describe in one paragraph a bundled data set and where it comes from."""
    if name not in _DATASETS:
        raise ValueError(f"Unknown dataset {name!r}; choose one of {dataset_names()}.")
    return _DATASETS[name][1]
