"""Settings for the docstring examples (``pytest --doctest-modules bayesgmm``)."""

import matplotlib
import pytest

# Examples that plot must not open windows.
matplotlib.use("Agg")


@pytest.fixture(autouse=True)
def _close_figures():
    yield
    import matplotlib.pyplot as plt

    plt.close("all")
