"""Settings for the docstring examples (``pytest --doctest-modules bayesgmm``)."""

import matplotlib
import pytest
from _pytest.doctest import DoctestItem

# Examples that plot must not open windows.
matplotlib.use("Agg")


@pytest.fixture(autouse=True)
def _close_example_figures(request):
    yield
    if isinstance(request.node, DoctestItem):
        import matplotlib.pyplot as plt

        plt.close("all")
