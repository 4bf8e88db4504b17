import re
from importlib import resources

import numpy as np

from bayesgmm import load_dataset


def _provenance() -> str:
    return (resources.files("bayesgmm.datasets") / "data" / "PROVENANCE.md").read_text(encoding="utf-8")


def test_galaxies_is_mass_galaxies_and_the_note_names_its_observation_78():
    X, target = load_dataset("galaxies")
    assert target is None and X.shape == (82, 1)
    # R's MASS 7.3-58.2: galaxies[78] is 26690 and sum(galaxies) is 1707910.
    assert X[77, 0] == 26690.0
    assert X[:, 0].sum() == 1707910.0
    stated = re.search(r"observation 78 is (\d+)", _provenance())
    assert stated is not None and float(stated.group(1)) == X[77, 0]


def test_galaxies_velocities_are_sorted_integers():
    X, _ = load_dataset("galaxies")
    v = X[:, 0]
    assert np.all(np.diff(v) > 0) and np.array_equal(v, np.round(v))
